"""
Short PMAC-vs-MBPO comparison: same settings, several seeds, evaluation on a separate env every ``--eval-freq`` steps.

    python benchmarks/compare_pmac_mbpo.py --env InvertedPendulum-v5 --timesteps 3000 --seeds 0 1

Prints one row per (algorithm, seed) with the evaluation returns over training and the wall time. The defaults are
reduced (64x64 SAC, 5 updates per step, 5000 rollout starts, <= 10 model epochs) so that a run takes minutes on a
2-core CPU; pass ``--paper-settings`` for Table 2's values.
"""

import argparse
import tempfile
import time
import warnings

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.monitor import Monitor

from sb3_pmac import MBPO, PMAC
from sb3_pmac.env_presets import make_preset_env


def run(algo: type[PMAC], env_id: str, timesteps: int, seed: int, eval_freq: int, paper: bool) -> tuple[list[float], float]:
    kwargs = {}
    if not paper:
        kwargs = dict(
            learning_starts=300,
            rollout_batch_size=5000,
            gradient_steps=5,
            model_trainer_kwargs=dict(max_epochs=10),
            policy_kwargs=dict(net_arch=[64, 64]),
            ent_coef="auto",  # the learned coefficient these reduced comparisons were made with (class default: 0.2)
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = algo("MlpPolicy", env_id, seed=seed, **kwargs)
        eval_env = Monitor(make_preset_env(env_id))
        eval_env.reset(seed=seed + 100)
        callback = EvalCallback(eval_env, eval_freq=eval_freq, n_eval_episodes=5, log_path=tempfile.mkdtemp(), verbose=0)
        start = time.perf_counter()
        model.learn(timesteps, callback=callback)
    returns = [float(x) for x in np.mean(callback.evaluations_results, axis=1)]
    return returns, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="InvertedPendulum-v5")
    parser.add_argument("--timesteps", type=int, default=3000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--eval-freq", type=int, default=500)
    parser.add_argument("--algos", nargs="+", default=["pmac", "mbpo"], choices=["pmac", "mbpo"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--paper-settings", action="store_true")
    args = parser.parse_args(argv)
    for name in ("timesteps", "eval_freq", "threads"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.eval_freq > args.timesteps:
        parser.error(f"--eval-freq {args.eval_freq} is above --timesteps {args.timesteps}: no evaluation would run")
    try:
        make_preset_env(args.env).close()  # said now, not from inside the first run
    except (gym.error.Error, TypeError) as error:
        parser.error(f"cannot make --env {args.env}: {error}")
    th.set_num_threads(args.threads)
    gym.logger.min_level = 40
    print(f"{'algo':6} {'seed':>4} {'time_s':>7}  eval returns every {args.eval_freq} steps (mean of 5 episodes)")
    finals: dict[str, list[float]] = {}
    for name in args.algos:
        algo = PMAC if name == "pmac" else MBPO
        for seed in args.seeds:
            returns, seconds = run(algo, args.env, args.timesteps, seed, args.eval_freq, args.paper_settings)
            finals.setdefault(name, []).append(returns[-1])
            print(f"{name:6} {seed:>4} {seconds:>7.0f}  " + " ".join(f"{r:7.1f}" for r in returns), flush=True)
    for name, values in finals.items():
        print(f"{name}: final return {np.mean(values):.1f} +/- {np.std(values):.1f} over seeds {args.seeds}")


if __name__ == "__main__":
    main()
