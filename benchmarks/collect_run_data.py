"""
Collect the transitions of a real learning run, in collection order, as a small ``.npz`` for
``benchmarks/model_replay.py`` (no pickle: ``np.load(..., allow_pickle=False)`` reads it).

    python benchmarks/collect_run_data.py --env Hopper-v4 --timesteps 52000 --out runs/hopper_sac_52k.npz

The run is SB3's SAC (1 update per env step, SB3 defaults, ``--learning-starts`` random warm-up steps, 5000 as in
PMAC): a cheap stand-in for a PMAC run whose policy keeps changing, so that the data of every window of
``model_train_freq`` steps comes from another policy. Each transition is labelled with its policy version
``index // --version-every`` (250: PMAC's ``model_train_freq``). The file holds ``observations``, ``actions``,
``rewards``, ``next_observations``, ``dones``, ``versions`` and the episode returns seen during the run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.monitor import Monitor

from sb3_pmac.env_presets import make_preset_env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Hopper-v4")
    parser.add_argument("--timesteps", type=int, default=52_000)
    parser.add_argument("--learning-starts", type=int, default=5000)
    parser.add_argument("--version-every", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    th.set_num_threads(args.threads)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)  # before training: a failed save would lose the run

    env = Monitor(make_preset_env(args.env))
    model = SAC("MlpPolicy", env, learning_starts=args.learning_starts, buffer_size=args.timesteps, seed=args.seed)
    start = time.perf_counter()
    model.learn(args.timesteps)
    buffer = model.replay_buffer
    n = buffer.buffer_size if buffer.full else buffer.pos
    returns = np.asarray(env.get_episode_rewards(), dtype=np.float32)
    np.savez_compressed(
        args.out,
        observations=buffer.observations[:n, 0].astype(np.float32),
        actions=buffer.actions[:n, 0].astype(np.float32),
        rewards=buffer.rewards[:n, 0].astype(np.float32),
        next_observations=buffer.next_observations[:n, 0].astype(np.float32),
        dones=(buffer.dones[:n, 0] * (1 - buffer.timeouts[:n, 0])).astype(np.float32),
        versions=np.arange(n, dtype=np.int64) // args.version_every,
        episode_returns=returns,
    )
    print(f"{n} transitions in {time.perf_counter() - start:.0f} s; last 10 episode returns {returns[-10:].round(1)}")


if __name__ == "__main__":
    main()
