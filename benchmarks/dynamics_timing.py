"""
Timings of the dynamics ensemble at the default size (7 members, 4 x 200 SiLU, Hopper-like obs_dim 11, action_dim 3).

(a) one training epoch over 100k training transitions (batch 256), via ``ModelTrainer.train(max_epochs=1)``
(b) one ``ProbabilisticEnsemble.sample`` call on 100k states (samples grouped by chosen elite: ~N rows of compute)
(c) the same rollout step computed n_elites-wide (every elite on every state, then pick) and ensemble-wide, for comparison

Usage: ``python benchmarks/dynamics_timing.py [--threads 2] [--device cpu] [--n-samples 100000] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
import torch as th

from sb3_pmac.dynamics import ModelTrainer, ProbabilisticEnsemble


def timed(fn: Callable[[], object], repeats: int, device: th.device) -> float:
    """:return: the fastest of ``repeats`` runs of ``fn``, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            th.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            th.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n-samples", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--obs-dim", type=int, default=11)
    parser.add_argument("--action-dim", type=int, default=3)
    args = parser.parse_args()

    th.set_num_threads(args.threads)
    th.manual_seed(0)
    device = th.device(args.device)
    obs_dim, action_dim, n = args.obs_dim, args.action_dim, args.n_samples
    rng = np.random.default_rng(0)
    model = ProbabilisticEnsemble(obs_dim, action_dim, device=device)

    # (a) one epoch on n training rows: give n + 5000 rows, the holdout takes max_holdout_size = 5000 of them
    n_rows = n + 5000
    obs = rng.standard_normal((n_rows, obs_dim)).astype(np.float32)
    actions = rng.uniform(-1, 1, (n_rows, action_dim)).astype(np.float32)
    next_obs = (obs + 0.1 * np.tanh(obs) + 0.05 * rng.standard_normal(obs.shape)).astype(np.float32)
    rewards = (obs.sum(1) + actions.sum(1)).astype(np.float32)
    trainer = ModelTrainer(model, max_epochs=1, holdout_ratio=0.2, max_holdout_size=5000)
    infos = []
    epoch_time = timed(lambda: infos.append(trainer.train(obs, actions, rewards, next_obs, rng=0)), 1, device)
    n_train, n_steps = infos[-1].n_train, int(np.ceil(infos[-1].n_train / trainer.batch_size))

    # (b), (c): one rollout step on n states
    obs_t = th.as_tensor(obs[:n], device=device)
    act_t = th.as_tensor(actions[:n], device=device)
    generator = th.Generator(device=device).manual_seed(0)

    def elite_wide() -> None:
        mean, logvar = model.predict(obs_t, act_t)  # [n_elites, n, out]
        slots = th.randint(model.n_elites, (n,), device=device, generator=generator)
        rows = th.arange(n, device=device)
        pred = mean[slots, rows] + th.exp(0.5 * logvar[slots, rows]) * th.randn(n, model.output_dim, device=device)
        _ = obs_t + pred[:, :obs_dim]

    def ensemble_wide() -> None:
        with th.no_grad():
            model(th.cat([obs_t, act_t], dim=1))

    grouped = timed(lambda: model.sample(obs_t, act_t, generator=generator), args.repeats, device)
    elite = timed(elite_wide, args.repeats, device)
    full = timed(ensemble_wide, args.repeats, device)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"device={device} threads={args.threads} obs_dim={obs_dim} action_dim={action_dim} "
        f"ensemble={model.ensemble_size} elites={model.n_elites} hidden={model.hidden_sizes} load(1min)={load:.2f}"
    )
    print(f"{'measurement':<62} {'seconds':>9}")
    print("-" * 72)
    print(f"{f'(a) train epoch, {n_train} rows, {n_steps} steps of [7, 256] (+holdout eval)':<62} {epoch_time:>9.3f}")
    print(f"{'    per optimizer step':<62} {epoch_time / n_steps:>9.4f}")
    print(f"{f'(b) sample() on {n} states (grouped by elite, ~N rows)':<62} {grouped:>9.3f}")
    print(f"{f'(c) n_elites-wide step on {n} states ({model.n_elites} x N rows)':<62} {elite:>9.3f}")
    print(f"{f'    ensemble-wide forward on {n} states ({model.ensemble_size} x N rows)':<62} {full:>9.3f}")


if __name__ == "__main__":
    main()
