"""
Replays the model trainings of a real run on its own data, with several model-training configurations side by side:
same data, same policy sequence, only the configuration differs. Two questions:

1. **Local vs global error, PMAC vs MBPO** (paper §3, Fig. 3): does a model trained on the policy mixture
   (``exponential``, Algorithm 1) have a smaller error on the current policy's data than one trained on uniform data
   (``uniform``, MBPO), and a larger error on the whole history?
2. **Bounded model work** (how few epochs per model training keep the error within a tolerance of unbounded training).

    python benchmarks/model_replay.py --buffer results/Hopper-v4/pmac/seed_0/final_buffer.pkl --start 2000 \\
        --end 10000 --configs pmac=none,exponential mbpo=none,uniform pmac_e10=10,exponential mbpo_e10=10,uniform

A configuration is ``name=max_epochs,mixture`` (``max_epochs``: an int or ``none`` = early stopping only).
At every ``--every`` env steps ``t`` in ``[start, end]`` (250 = PMAC's ``model_train_freq``) each configuration trains
its own ensemble (warm-started from its previous round, as PMAC does) on ``t`` transitions drawn from the first ``t``
buffer positions with its mixture's weights over the recorded policy versions, then is evaluated (elite-mean
prediction of ``[next_obs - obs, reward]``, raw units, MSE over all entries) on

* ``local``: the next ``--every`` real transitions ``[t, t + every)``: fresh data of the policy that is about to use
  the model (never trained on);
* ``global``: ``--n-global`` transitions drawn uniformly from the first ``t`` positions (the whole history);
* ``holdout``: the trainer's own holdout MSE (elites, as in ``ModelTrainingInfo.holdout_mse``).

Prints one row per configuration: mean epochs and seconds per round, mean local / global error and the local error's
ratio to the first configuration, over all rounds and over the second half of the rounds (after the cold start).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import torch as th
from machine import cpu_model
from stable_baselines3.common.save_util import load_from_pkl

from sb3_pmac.dynamics import ModelTrainer, ProbabilisticEnsemble
from sb3_pmac.policy_mixture import PolicyMixture

Config = tuple[str, int | None, str]  # (name, max_epochs, mixture)
KEYS = ("epochs", "seconds", "local", "global", "holdout")


def parse_config(text: str) -> Config:
    name, _, value = text.partition("=")
    epochs, _, mixture = value.partition(",")
    mixture = mixture or "exponential"
    if mixture not in ("exponential", "uniform"):
        raise SystemExit(f"unknown mixture {mixture!r} in {text!r}")
    return name, None if epochs.lower() in ("none", "") else int(epochs), mixture


@dataclass
class RunData:
    """The transitions of a run in collection order (a buffer that never wrapped, one env)."""

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_obs: np.ndarray
    versions: np.ndarray

    @classmethod
    def from_buffer(cls, path: str) -> RunData:
        buffer = load_from_pkl(path)
        if buffer.full or buffer.n_envs != 1:
            raise SystemExit("Needs a buffer that never wrapped, with n_envs == 1")
        n = buffer.pos
        return cls(
            obs=buffer.observations[:n, 0].astype(np.float32),
            actions=buffer.actions[:n, 0].astype(np.float32),
            rewards=buffer.rewards[:n, 0].astype(np.float32),
            next_obs=buffer.next_observations[:n, 0].astype(np.float32),
            versions=buffer.policy_versions[:n],
        )

    def error(self, model: ProbabilisticEnsemble, rows: np.ndarray | slice) -> float:
        """MSE of the elite-mean prediction of ``[next_obs - obs, reward]`` on ``rows`` (raw units)."""
        with th.no_grad():
            mean, _ = model.predict(th.as_tensor(self.obs[rows]), th.as_tensor(self.actions[rows]))
        target = np.concatenate([self.next_obs[rows] - self.obs[rows], self.rewards[rows, None]], axis=1)
        return float(np.mean((mean.mean(0).numpy() - target) ** 2))


def replay(data: RunData, configs: list[Config], args: argparse.Namespace, end: int) -> dict[str, dict[str, list[float]]]:
    """
    The rounds: at each ``t`` every configuration trains (warm-started) on ``t`` rows drawn with its mixture from the
    first ``t`` transitions, then is evaluated on local and global data. Ctrl-C ends early with the rounds done.
    """
    models, trainers = {}, {}
    for name, max_epochs, _ in configs:
        th.manual_seed(args.seed)  # every configuration starts from the same initial ensemble
        models[name] = ProbabilisticEnsemble(data.obs.shape[1], data.actions.shape[1])
        trainers[name] = ModelTrainer(models[name], max_epochs=max_epochs, seed=args.seed)
    stats: dict[str, dict[str, list[float]]] = {name: {key: [] for key in KEYS} for name, _, _ in configs}
    rng = np.random.default_rng(args.seed)
    try:
        for t in range(args.start, end + 1, args.every):
            # versions occupy contiguous position ranges (the buffer never wrapped): first position and count of each
            held, firsts, counts = np.unique(data.versions[:t], return_index=True, return_counts=True)
            local = slice(t, t + args.every)
            global_rows = rng.integers(0, t, size=args.n_global)
            # Algorithm 1 over the versions recorded up to t (one add_policy per version), or MBPO's uniform draw
            probabilities = {}
            for mode in {mixture_mode for _, _, mixture_mode in configs}:
                mixture = PolicyMixture(args.alpha, mode=mode)  # type: ignore[arg-type]
                if mode == "exponential":
                    for _ in range(int(held.max()) + 1):
                        mixture.add_policy()
                probabilities[mode] = mixture.probabilities(held, counts)
            for name, _, mixture_mode in configs:
                # per version with the mixture's weights, then uniformly inside the version (as the replay buffer does)
                chosen = rng.choice(len(held), size=t, p=probabilities[mixture_mode])
                picks = firsts[chosen] + (rng.random(t) * counts[chosen]).astype(np.int64)
                info = trainers[name].train(
                    data.obs[picks], data.actions[picks], data.rewards[picks], data.next_obs[picks], sample_ids=picks
                )
                values = (info.epochs, info.seconds, data.error(models[name], local),
                          data.error(models[name], global_rows), info.holdout_mse)  # fmt: skip
                for key, value in zip(KEYS, values, strict=True):
                    stats[name][key].append(value)
            row = (f"{n} {stats[n]['epochs'][-1]} ep local {stats[n]['local'][-1]:.4f} global {stats[n]['global'][-1]:.4f}"
                   for n, _, _ in configs)  # fmt: skip
            print(f"t={t}: " + ", ".join(row), flush=True)
    except KeyboardInterrupt:
        print("interrupted: summary of the rounds done")
        n_done = min(len(stats[name]["local"]) for name, _, _ in configs)
        for name, _, _ in configs:
            for key in KEYS:
                del stats[name][key][n_done:]
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--buffer", required=True, help="replay buffer pickle written by PMAC.save_replay_buffer")
    parser.add_argument("--start", type=int, default=2000)
    parser.add_argument("--end", type=int, default=10000)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--configs", nargs="+", default=["pmac=none,exponential", "mbpo=none,uniform"])
    parser.add_argument("--n-global", type=int, default=5000)
    parser.add_argument("--alpha", type=float, default=0.9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    th.set_num_threads(args.threads)

    data = RunData.from_buffer(args.buffer)
    end = min(args.end, len(data.obs) - args.every)
    configs = [parse_config(text) for text in args.configs]
    stats = replay(data, configs, args, end)

    reference = configs[0][0]
    n_rounds = len(stats[reference]["local"])
    half = n_rounds // 2
    print(f"\n{cpu_model()}, {args.threads} thread(s); {n_rounds} rounds every {args.every} steps from {args.start} to {end}")
    print(f"{'config':>16} {'max_epochs':>10} {'mixture':>11} {'epochs/round':>12} {'s/round':>8} {'local':>8} "
          f"{'global':>8} {'local/global':>12} {'local vs ' + reference:>16} {'2nd half: local':>16} "
          f"{'vs ' + reference:>12}")  # fmt: skip
    for name, max_epochs, mixture_mode in configs:
        s = {key: np.asarray(value) for key, value in stats[name].items()}
        ref_local = np.asarray(stats[reference]["local"])
        print(f"{name:>16} {max_epochs!s:>10} {mixture_mode:>11} {s['epochs'].mean():>12.1f} {s['seconds'].mean():>8.2f} "
              f"{s['local'].mean():>8.4f} {s['global'].mean():>8.4f} {s['local'].mean() / s['global'].mean():>12.2f} "
              f"{s['local'].mean() / ref_local.mean():>16.3f} {s['local'][half:].mean():>16.4f} "
              f"{s['local'][half:].mean() / ref_local[half:].mean():>12.3f}")  # fmt: skip
    if len(configs) > 1:
        wins = np.mean(np.asarray(stats[configs[0][0]]["local"]) < np.asarray(stats[configs[1][0]]["local"]))
        print(f"rounds where {configs[0][0]} has the lower local error than {configs[1][0]}: {wins:.0%}")


if __name__ == "__main__":
    main()
