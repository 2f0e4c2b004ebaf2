"""
PMAC's cost per env step over a whole run: seconds per 1000 env steps at several points ``t`` of a run, split into
env stepping, SAC updates, model training and rollouts, next to SB3's SAC at the same 20 updates per env step measured
in the same call; the measured curve is integrated into projected hours for whole runs.

    python benchmarks/collect_run_data.py --env Hopper-v4 --timesteps 52000 --out runs/hopper_sac_52k.npz
    python benchmarks/pmac_step_cost.py --data runs/hopper_sac_52k.npz --at 5000 25000 50000 100000 --threads 2

At each ``t``, a ``PMAC("Hopper-v4")`` with the Table 2 values (20 gradient steps per env step, model every 250
steps, rollout batch 100k, 7 x 4x200 ensemble, the default bounded model training) gets a real buffer holding ``t``
transitions of a real run (``--data``, reused cyclically past its end; without ``--data``: random transitions of the
env, with the observations PMAC trains on, MBPO's truncated ones for Ant and Humanoid), tagged with policy versions
as PMAC tags them (the 5000 warm-up steps, then one version per 250 steps), its policy version advanced to match, and
``num_timesteps = t``, so that the horizon schedule (epochs counted after the warm-up) and the mixture are those of
step ``t`` of a real run. ``--prime-rounds`` model steps (untimed) warm the ensemble
up, then ``--steps`` env steps of ``learn`` are timed. PMAC's parts come from its cumulative ``_timings``; env time
= wall - the other parts. Model training and rollouts are normalised per model step (one every 250 env steps).

Random transitions are not a trained policy's: the model's rollouts from them end early (terminations, predictions
out of the data's range); ``--full-rollouts`` runs every branch the whole horizon (no termination rule, no state
bounds), which bounds the rollouts' cost from above:

    python benchmarks/pmac_step_cost.py --env Humanoid-v4 --at 5000 100000 200000 300000 --project 300000 \
        --threads 1 --steps 250 --full-rollouts

SB3's SAC (same networks, same entropy coefficient ``--ent-coef``, 20 updates per env step) is timed on ``--steps``
steps after its warm-up; its cost does not depend on ``t``. The projection integrates the piecewise-linear curve
through the measured points (constant beyond the last one) from ``learning_starts`` to the run's end, plus the
warm-up's env steps.
"""

from __future__ import annotations

import argparse
import inspect
import os
import time
import warnings

import gymnasium as gym
import numpy as np
import torch as th
from machine import cpu_model
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure

from sb3_pmac import PMAC
from sb3_pmac.checks import smallest_unwrapped_buffer
from sb3_pmac.env_presets import make_preset_env
from sb3_pmac.termination import NeverTerminate

PARTS = (("env stepping", "env"), ("SAC updates", "sac"), ("model training", "model_train"), ("rollouts", "rollout"))


class WindowStart(BaseCallback):
    """Records the wall time (and a snapshot) at the first step at or after ``start``."""

    def __init__(self, start: int, snapshot) -> None:
        super().__init__()
        self.start_step = start
        self.snapshot = snapshot
        self.start: float | None = None
        self.state = None

    def _on_step(self) -> bool:
        if self.start is None and self.num_timesteps >= self.start_step:
            self.state = self.snapshot()
            self.start = time.perf_counter()
        return True


def run_transitions(args: argparse.Namespace, n: int) -> dict[str, np.ndarray]:
    """``n`` transitions in collection order: the run data (cyclically) or random env transitions."""
    if args.data:
        with np.load(args.data, allow_pickle=False) as data:
            columns = {key: data[key] for key in ("observations", "actions", "rewards", "next_observations", "dones")}
        env = make_preset_env(args.env)
        dims = (columns["observations"].shape[-1], columns["actions"].shape[-1])
        expected = (int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape)))
        env.close()
        if dims != expected:
            raise SystemExit(f"error: --data {args.data} holds observations/actions of sizes {dims}, --env {args.env} "
                             f"has {expected}: pass the env the data was collected on")  # fmt: skip
        index = np.arange(n) % len(columns["observations"])
        return {key: value[index] for key, value in columns.items()}
    env = make_preset_env(args.env)  # PMAC's observations (MBPO's truncated ones for Ant and Humanoid)
    obs, _ = env.reset(seed=args.seed)
    rows: dict[str, list] = {key: [] for key in ("observations", "actions", "rewards", "next_observations", "dones")}
    for _ in range(n):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        for key, value in zip(rows, (obs, action, reward, next_obs, float(terminated)), strict=True):
            rows[key].append(value)
        obs = env.reset()[0] if terminated or truncated else next_obs
    return {key: np.asarray(value, dtype=np.float32) for key, value in rows.items()}


def fill_like_a_run(model: PMAC, data: dict[str, np.ndarray], t: int) -> None:
    """The real buffer and policy version of step ``t`` of a run (warm-up, then one version per 250 steps)."""
    buffer = model.replay_buffer
    low, high = model.action_space.low, model.action_space.high
    for i in range(t):
        if i >= model.learning_starts and (i - model.learning_starts) % model.model_train_freq == 0:
            model.policy_version = buffer.start_new_version()
        action = np.clip(data["actions"][i], low, high)
        scaled = 2.0 * (action - low) / (high - low) - 1.0
        buffer.add(data["observations"][i][None], data["next_observations"][i][None], scaled[None],
                   data["rewards"][i : i + 1], data["dones"][i : i + 1], [{}])  # fmt: skip
    model.num_timesteps = t
    model._next_model_step = t


def measure_pmac(args: argparse.Namespace, t: int, data: dict[str, np.ndarray]) -> dict[str, float]:
    # the buffer never wraps (t + steps rows), and is at least as large as PMAC's defaults need for it not to warn
    # about a wrapping buffer (14 500: twice the mixture's support of 4750 transitions and the 5000 warm-up ones)
    defaults = {name: parameter.default for name, parameter in inspect.signature(PMAC.__init__).parameters.items()}
    floor = smallest_unwrapped_buffer(defaults["model_train_freq"], defaults["adaptation_rate"], defaults["learning_starts"])
    buffer_size = max(t + args.steps, floor)
    # --full-rollouts: no branch ends (the rule disagrees with the env's terminations: PMAC's warning is expected)
    kwargs = {"termination_fn": NeverTerminate()} if args.full_rollouts else {}
    model = PMAC(args.env, seed=args.seed, device=args.device, buffer_size=buffer_size, ent_coef=args.ent_coef, **kwargs)
    if args.full_rollouts:
        model.rollout_bounds_margin = None
    model.set_logger(configure(None, []))
    fill_like_a_run(model, data, t)
    for _ in range(args.prime_rounds):
        model._model_step()  # untimed: the ensemble learns the data as it would have over the run
    model._next_model_step = t

    def snapshot():
        return dict(model._timings), model._n_model_steps

    window = WindowStart(t, snapshot)
    model.learn(args.steps, callback=window, reset_num_timesteps=False)
    wall = time.perf_counter() - window.start  # type: ignore[operator]
    (t1, n1), (t0, n0) = snapshot(), window.state  # type: ignore[misc]
    spent = {key: t1[key] - t0[key] for key in t1}
    n_model = n1 - n0
    per_step = 1000.0 / args.steps
    per_model = 1000.0 / model.model_train_freq / n_model if n_model else 0.0
    return {
        "env": (wall - sum(spent.values())) * per_step,
        "sac": spent["sac"] * per_step,
        "model_train": spent["model_train"] * per_model,
        "rollout": spent["rollout"] * per_model,
        "horizon": model.current_rollout_horizon(),
        "n_model_steps": n_model,
        "model_grad_steps": float(model._last_model_info.grad_steps) if model._last_model_info else 0.0,
        "model_rows": float(model.model_training_rows()),
        "learning_starts": model.learning_starts,
    }


def measure_sac(args: argparse.Namespace) -> dict[str, float]:
    warmup = 1000
    model = SAC(
        "MlpPolicy",
        make_preset_env(args.env),
        learning_starts=warmup,
        gradient_steps=20,
        ent_coef=args.ent_coef,
        seed=args.seed,
        device=args.device,
    )
    train_time = [0.0]
    original_train = model.train

    def timed_train(*a, **kw):
        start = time.perf_counter()
        original_train(*a, **kw)
        train_time[0] += time.perf_counter() - start

    model.train = timed_train  # type: ignore[method-assign]
    window = WindowStart(warmup, lambda: train_time[0])
    model.learn(warmup + args.steps, callback=window)
    wall = time.perf_counter() - window.start  # type: ignore[operator]
    sac = train_time[0] - window.state  # type: ignore[operator]
    per_step = 1000.0 / args.steps
    return {"env": (wall - sac) * per_step, "sac": sac * per_step, "model_train": 0.0, "rollout": 0.0}


def projected_hours(points: list[tuple[int, float]], total: int, learning_starts: int, warmup_cost: float) -> float:
    """Integral of the seconds-per-1000-steps curve from ``learning_starts`` to ``total``, in hours."""
    ts, costs = np.array([p[0] for p in points], dtype=float), np.array([p[1] for p in points], dtype=float)
    grid = np.linspace(learning_starts, total, 2001)
    seconds = np.trapezoid(np.interp(grid, ts, costs), grid) / 1000.0
    return (seconds + learning_starts * warmup_cost / 1000.0) / 3600.0


def ent_coef(value: str) -> float | str:
    """``--ent-coef``: a number, or SB3's ``auto`` / ``auto_<init>`` (learned)."""
    return value if value.startswith("auto") else float(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Hopper-v4")
    parser.add_argument("--data", default=None, help="run data (.npz from collect_run_data.py); default: random")
    parser.add_argument("--at", type=int, nargs="+", default=[5000, 25000, 50000, 100000])
    parser.add_argument("--steps", type=int, default=500, help="timed env steps at each t (a multiple of 250)")
    parser.add_argument("--prime-rounds", type=int, default=3, help="untimed model steps before each window")
    parser.add_argument("--project", type=int, nargs="+", default=[100_000, 125_000], help="run lengths to project")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--full-rollouts",
        action="store_true",
        help="every model branch runs the whole horizon (no termination rule, no state bounds): the rollouts' cost "
        "when no branch ends, an upper bound for data that is not a trained policy's (random transitions)",
    )
    parser.add_argument(
        "--ent-coef", type=ent_coef, default=0.2, help="entropy coefficient of both PMAC and SAC (PMAC's default 0.2)"
    )
    args = parser.parse_args()
    args.at = sorted(set(args.at))  # the projection integrates over the steps in order
    if args.data and not os.path.isfile(args.data):
        parser.error(f"--data {args.data}: no such file (benchmarks/collect_run_data.py writes one)")
    if args.threads is not None:
        th.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    gym.logger.min_level = 40

    print(f"CPU: {cpu_model()}  torch threads: {th.get_num_threads()}  CUDA: {th.cuda.is_available()}  env {args.env}")
    data = run_transitions(args, max(args.at))
    sac = measure_sac(args)
    sac_total = sum(sac[key] for _, key in PARTS)
    rows = []
    for t in args.at:
        start = time.perf_counter()
        pmac = measure_pmac(args, t, data)
        total = sum(pmac[key] for _, key in PARTS)
        rows.append((t, pmac, total))
        print(f"t={t}: {total:.1f} s / 1000 steps (horizon {pmac['horizon']}, {pmac['n_model_steps']} model steps, "
              f"{time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip

    header = f"{'seconds / 1000 env steps':<26}" + "".join(f"{'t=' + str(t):>10}" for t, _, _ in rows) + f"{'SB3 SAC':>10}"
    print("\n" + header)
    for name, key in PARTS:
        print(f"{name:<26}" + "".join(f"{p[key]:>10.1f}" for _, p, _ in rows) + f"{sac[key]:>10.1f}")
    print(f"{'total':<26}" + "".join(f"{total:>10.1f}" for _, _, total in rows) + f"{sac_total:>10.1f}")
    print(
        f"{'model + rollouts share':<26}" + "".join(f"{(p['model_train'] + p['rollout']) / tot:>10.0%}" for _, p, tot in rows)
    )
    print(f"{'ratio SB3 SAC / PMAC':<26}" + "".join(f"{sac_total / total:>10.2f}" for _, _, total in rows))
    print(f"{'rollout horizon':<26}" + "".join(f"{p['horizon']:>10}" for _, p, _ in rows))
    print(
        f"{'model rows / grad steps':<26}"
        + "".join(f"{p['model_rows']:>5.0f}/{p['model_grad_steps']:<4.0f}" for _, p, _ in rows)
    )
    print(f"cost at t={rows[-1][0]} / cost at t={rows[0][0]}: {rows[-1][2] / rows[0][2]:.2f}")
    learning_starts = int(rows[0][1]["learning_starts"])
    points = [(t, total) for t, _, total in rows]
    for total_steps in args.project:
        hours = projected_hours(points, total_steps, learning_starts, rows[0][1]["env"])
        sac_hours = (total_steps - learning_starts) * sac_total / 1000 / 3600 + learning_starts * sac["env"] / 1000 / 3600
        print(f"projected {args.env} {total_steps}: PMAC {hours:.2f} h, SB3 SAC (20 updates/step) {sac_hours:.2f} h")


if __name__ == "__main__":
    main()
