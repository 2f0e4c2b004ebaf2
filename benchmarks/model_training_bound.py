"""
How much can model training be bounded before the model gets worse? Replays PMAC's model trainings on the data of a
real run and compares bounded trainer settings with unbounded training (early stopping only).

    python benchmarks/model_training_bound.py --buffer results/Hopper-v4/pmac/seed_0/final_buffer.pkl \\
        --start 2000 --end 10000 --configs unbounded=none e10=10 e5=5 e2=2

For every ``--every`` env steps ``t`` in ``[start, end)`` (250 = PMAC's ``model_train_freq``) each configuration
trains its own ensemble (warm-started from its previous round, as in PMAC) on ``t`` transitions drawn from the first
``t`` positions of the buffer with Algorithm 1's weights (alpha 0.9 over the recorded policy versions), then is
evaluated on

* ``holdout``: the trainer's own holdout MSE (elites, normalized targets as in ``ModelTrainingInfo.holdout_mse``);
* ``next``: the MSE of the elite-mean prediction of ``[next_obs - obs, reward]`` on the next ``--every`` real
  transitions ``[t, t + every)``, i.e. data of the policy that is about to use the model (raw units).

Prints one row per configuration: mean epochs per round, seconds per round, mean ``next`` error and its ratio to the
unbounded configuration (the tolerance check), mean holdout MSE.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch as th
from machine import cpu_model
from stable_baselines3.common.save_util import load_from_pkl

from sb3_pmac.dynamics import ModelTrainer, ProbabilisticEnsemble
from sb3_pmac.policy_mixture import PolicyMixture


def parse_config(text: str) -> tuple[str, int | None]:
    name, _, value = text.partition("=")
    return name, None if value.lower() in ("none", "") else int(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--buffer", required=True, help="replay buffer pickle written by PMAC.save_replay_buffer")
    parser.add_argument("--start", type=int, default=2000)
    parser.add_argument("--end", type=int, default=10000)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--configs", nargs="+", default=["unbounded=none", "e10=10", "e5=5"], help="name=max_epochs")
    parser.add_argument("--max-train-size", type=int, default=None, help="training-set cap applied to bounded configs")
    parser.add_argument("--alpha", type=float, default=0.9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    th.set_num_threads(args.threads)

    buffer = load_from_pkl(args.buffer)
    n_stored = buffer.buffer_size if buffer.full else buffer.pos
    if buffer.full or buffer.n_envs != 1:
        raise SystemExit("Needs a buffer that never wrapped, with n_envs == 1")
    end = min(args.end, n_stored - args.every)
    obs, actions = buffer.observations[:n_stored, 0].astype(np.float32), buffer.actions[:n_stored, 0].astype(np.float32)
    next_obs = buffer.next_observations[:n_stored, 0].astype(np.float32)
    rewards = buffer.rewards[:n_stored, 0].astype(np.float32)
    versions = buffer.policy_versions[:n_stored]
    obs_dim, action_dim = obs.shape[1], actions.shape[1]

    configs = [parse_config(text) for text in args.configs]
    models, trainers = {}, {}
    for index, (name, max_epochs) in enumerate(configs):
        th.manual_seed(args.seed)
        models[name] = ProbabilisticEnsemble(obs_dim, action_dim)
        cap = None if max_epochs is None else args.max_train_size
        trainers[name] = ModelTrainer(models[name], max_epochs=max_epochs, max_train_size=cap, seed=args.seed + index)
    stats: dict[str, dict[str, list[float]]] = {
        name: {"epochs": [], "seconds": [], "next": [], "holdout": []} for name, _ in configs
    }
    rng = np.random.default_rng(args.seed)

    for t in range(args.start, end + 1, args.every):
        # Algorithm 1 over the versions recorded up to t (one add_policy per version, as PMAC does)
        held = np.unique(versions[:t])
        mixture = PolicyMixture(args.alpha)
        for _ in range(int(held.max()) + 1):
            mixture.add_policy()
        counts = np.array([(versions[:t] == v).sum() for v in held])
        probs = mixture.probabilities(held, counts)
        chosen = rng.choice(len(held), size=t, p=probs)
        rows = np.concatenate([np.flatnonzero(versions[:t] == v) for v in held])
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        picks = rows[offsets[chosen] + (rng.random(t) * counts[chosen]).astype(np.int64)]
        future = slice(t, t + args.every)
        target = np.concatenate([next_obs[future] - obs[future], rewards[future, None]], axis=1)
        for name, _ in configs:
            info = trainers[name].train(obs[picks], actions[picks], rewards[picks], next_obs[picks], sample_ids=picks)
            with th.no_grad():
                mean, _ = models[name].predict(th.as_tensor(obs[future]), th.as_tensor(actions[future]))
            pred = mean.mean(0).numpy()  # elite mean of [next_obs - obs, reward]
            for key, value in (("epochs", info.epochs), ("seconds", info.seconds), ("holdout", info.holdout_mse),
                               ("next", float(np.mean((pred - target) ** 2)))):  # fmt: skip
                stats[name][key].append(value)
        print(f"t={t}: " + ", ".join(f"{n} {stats[n]['epochs'][-1]} ep next {stats[n]['next'][-1]:.4f}" for n, _ in configs),
              flush=True)  # fmt: skip

    reference = configs[0][0]
    print(f"\n{cpu_model()}, {args.threads} thread(s); rounds every {args.every} steps from {args.start} to {end}")
    print(f"{'config':>10} {'max_epochs':>10} {'epochs/round':>12} {'s/round':>8} {'next_mse':>9} {'vs ' + reference:>14} "
          f"{'holdout_mse':>11}")  # fmt: skip
    for name, max_epochs in configs:
        s = stats[name]
        ratio = np.mean(s["next"]) / np.mean(stats[reference]["next"])
        print(f"{name:>10} {max_epochs!s:>10} {np.mean(s['epochs']):>12.1f} {np.mean(s['seconds']):>8.2f} "
              f"{np.mean(s['next']):>9.4f} {ratio:>14.3f} {np.mean(s['holdout']):>11.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
