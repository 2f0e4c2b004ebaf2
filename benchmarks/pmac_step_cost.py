"""
Seconds per 1000 env steps of PMAC at the Hopper defaults, split into env stepping, SAC updates, model training and
rollouts, next to SB3's SAC at the same 20 updates per env step, measured in the same run.

PMAC("Hopper-v4") with the Table 2 values (20 gradient steps per env step, model_train_freq 250,
rollout_batch_size 100_000, 7x4x200 ensemble). Both agents first fill their real buffer with ``--warmup`` random
transitions (``learning_starts=warmup``) and then run ``--steps`` measured steps (``learn(warmup + steps)``); only
the measured window is timed. PMAC's parts come from its cumulative ``_timings`` dict read before/after the window;
SAC's update time from wrapping ``model.train``; env time = wall - the other parts.

Model training and rollouts are normalised per model step (one every ``model_train_freq`` env steps), so a window that
is not a multiple of 250 steps still gives a per-1000-step figure. The model cost grows during a real run (the real
buffer grows, and the rollout horizon follows the preset schedule), so the 100k-step projection is a lower bound
for PMAC.

Usage: ``python benchmarks/pmac_step_cost.py [--steps 500] [--warmup 5000] [--threads N] [--model-max-epochs E]``
(``--smoke`` for a quick check: rollout_batch_size 1000, max 2 model epochs; not the paper settings).
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import torch as th
from machine import cpu_model
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback

from sb3_pmac import PMAC


class WindowStart(BaseCallback):
    """Records the wall time (and PMAC timings) when the warm-up ends, i.e. at env step ``warmup``."""

    def __init__(self, warmup: int, snapshot) -> None:
        super().__init__()
        self.warmup = warmup
        self.snapshot = snapshot
        self.start: float | None = None
        self.state = None

    def _on_step(self) -> bool:
        if self.start is None and self.num_timesteps >= self.warmup:
            self.state = self.snapshot()
            self.start = time.perf_counter()
        return True


def measure_pmac(args: argparse.Namespace) -> dict[str, float]:
    trainer_kwargs = {} if args.model_max_epochs is None else {"max_epochs": args.model_max_epochs}
    kwargs = dict(learning_starts=args.warmup, model_trainer_kwargs=trainer_kwargs, seed=args.seed, device=args.device)
    if args.smoke:
        kwargs["rollout_batch_size"] = 1000
    model = PMAC("Hopper-v4", **kwargs)

    def snapshot():
        return dict(model._timings), model._n_model_steps

    cb = WindowStart(args.warmup, snapshot)
    model.learn(args.warmup + args.steps, callback=cb)
    end = time.perf_counter()
    t1, n1 = snapshot()
    t0, n0 = cb.state
    wall = end - cb.start
    n_model = n1 - n0
    d = {k: t1[k] - t0[k] for k in t1}
    per_step = 1000.0 / args.steps
    per_model = (1000.0 / model.model_train_freq / n_model) if n_model else 0.0
    return {
        "env": (wall - sum(d.values())) * per_step,
        "sac": d["sac"] * per_step,
        "model_train": d["model_train"] * per_model,
        "rollout": d["rollout"] * per_model,
        "n_model_steps": n_model,
        "rollout_batch_size": model.rollout_batch_size,
    }


def measure_sac(args: argparse.Namespace) -> dict[str, float]:
    model = SAC(
        "MlpPolicy",
        gym.make("Hopper-v4"),
        learning_starts=args.warmup,
        gradient_steps=20,
        train_freq=1,
        seed=args.seed,
        device=args.device,
    )
    train_time = [0.0]
    orig_train = model.train

    def timed_train(*a, **kw):
        start = time.perf_counter()
        orig_train(*a, **kw)
        train_time[0] += time.perf_counter() - start

    model.train = timed_train  # type: ignore[method-assign]
    cb = WindowStart(args.warmup, lambda: train_time[0])
    model.learn(args.warmup + args.steps, callback=cb)
    end = time.perf_counter()
    wall = end - cb.start
    sac = train_time[0] - cb.state
    per_step = 1000.0 / args.steps
    return {"env": (wall - sac) * per_step, "sac": sac * per_step, "model_train": 0.0, "rollout": 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=500, help="measured env steps after the warm-up")
    parser.add_argument("--warmup", type=int, default=5000, help="random warm-up steps (learning_starts)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--model-max-epochs", type=int, default=None, help="model_trainer_kwargs max_epochs")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="quick check: rollout_batch_size 1000, max 2 model epochs")
    args = parser.parse_args()
    if args.smoke and args.model_max_epochs is None:
        args.model_max_epochs = 2
    if args.threads is not None:
        th.set_num_threads(args.threads)

    print(f"CPU: {cpu_model()}  torch threads: {th.get_num_threads()}  CUDA: {th.cuda.is_available()}")
    print(
        f"warmup {args.warmup}, measured steps {args.steps}, model max_epochs {args.model_max_epochs}"
        f"{'  [SMOKE: not paper settings]' if args.smoke else ''}"
    )
    pmac = measure_pmac(args)
    sac = measure_sac(args)
    print(f"PMAC: {pmac['n_model_steps']} model steps in the window, rollout_batch_size {pmac['rollout_batch_size']}")
    if pmac["n_model_steps"] < 2:
        print("WARNING: fewer than 2 model steps in the measured window; increase --steps")

    rows = [("env stepping", "env"), ("SAC updates", "sac"), ("model training", "model_train"), ("rollouts", "rollout")]
    print(f"\n{'seconds / 1000 env steps':<26}{'PMAC':>10}{'SB3 SAC':>10}")
    for name, key in rows:
        print(f"{name:<26}{pmac[key]:>10.2f}{sac[key]:>10.2f}")
    total_p = sum(pmac[k] for _, k in rows)
    total_s = sum(sac[k] for _, k in rows)
    print(f"{'total':<26}{total_p:>10.2f}{total_s:>10.2f}")
    print(f"\nratio PMAC / SAC: {total_p / total_s:.2f}")
    print(f"projected hours for 100k steps: PMAC {total_p * 100 / 3600:.2f} h, SAC {total_s * 100 / 3600:.2f} h")


if __name__ == "__main__":
    main()
