"""
SAC updates per second: SB3's ``SAC.train`` against PMAC's update path (:func:`sb3_pmac.fast_sac.train`).

Same run, same sizes: 256x256 actor and twin critics, batch 256, Hopper-like obs 11 / action 3, replay buffer
pre-filled with random transitions, ``gradient_steps`` (20, PMAC's default) updates per call as PMAC makes them.
The two agents run in alternating calls (so that load from other processes hits both alike) after a warm-up:

* ``SB3 SAC.train``: ``model.train(gradient_steps, batch_size)`` (a sample per update, SB3's networks and optimizers);
* ``fast``: ``fast_sac.train(model, gradient_steps, batch_size)`` (one draw for the call, ``sac_updates``, the logs);
* ``fast (autograd)``: ``sample_batches`` + ``sac_updates(..., manual_backward=False)`` (autograd instead of the
  hand-written backward).

Usage: ``python benchmarks/sac_updates.py [--threads N] [--updates 2000] [--device cpu|cuda|all]``
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from machine import cpu_model
from stable_baselines3 import SAC
from stable_baselines3.common.logger import configure

from sb3_pmac import fast_sac
from sb3_pmac.fast_sac import sac_updates, sample_batches


class BoxEnv(gym.Env):
    """Spaces of the benchmark (the env is never stepped)."""

    def __init__(self, obs_dim: int, action_dim: int) -> None:
        self.observation_space = spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (action_dim,), np.float32)

    def reset(self, seed=None, options=None):
        return np.zeros(self.observation_space.shape, np.float32), {}

    def step(self, action):
        return np.zeros(self.observation_space.shape, np.float32), 0.0, False, False, {}


def make_agent(args: argparse.Namespace, device: str) -> SAC:
    """A SAC agent of the benchmark's sizes with a full replay buffer of random transitions."""
    model = SAC(
        "MlpPolicy",
        BoxEnv(args.obs_dim, args.action_dim),
        buffer_size=args.buffer_size,
        batch_size=args.batch_size,
        policy_kwargs=dict(net_arch=[args.hidden, args.hidden]),
        device=device,
        seed=0,
    )
    model.set_logger(configure(None, []))
    buffer = model.replay_buffer
    rng = np.random.default_rng(0)
    buffer.observations[:] = rng.standard_normal(buffer.observations.shape, dtype=np.float32)
    buffer.next_observations[:] = rng.standard_normal(buffer.next_observations.shape, dtype=np.float32)
    buffer.actions[:] = rng.uniform(-1, 1, buffer.actions.shape).astype(np.float32)
    buffer.rewards[:] = rng.standard_normal(buffer.rewards.shape, dtype=np.float32)
    buffer.dones[:] = rng.random(buffer.dones.shape) < 0.01
    buffer.full = True
    return model


def timed_calls(args: argparse.Namespace) -> int:
    """Calls of ``gradient_steps`` updates timed per path: ``--updates`` rounded down to whole calls (at least one)."""
    return max(1, args.updates // args.gradient_steps)


def run_device(args: argparse.Namespace, device: str) -> list[tuple[str, float]]:
    """:return: ``(name, updates per second)`` of each update path on ``device``."""
    steps, batch = args.gradient_steps, args.batch_size
    sb3, fast, fast_autograd = (make_agent(args, device) for _ in range(3))
    paths = {
        "SB3 SAC.train": lambda: sb3.train(steps, batch),
        "fast": lambda: fast_sac.train(fast, steps, batch),
        "fast (autograd)": lambda: sac_updates(
            fast_autograd, sample_batches(fast_autograd.replay_buffer, steps, batch), manual_backward=False
        ),
    }
    if args.no_autograd:
        del paths["fast (autograd)"]
    sync = th.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(max(1, args.warmup // steps)):
        for call in paths.values():
            call()
    sync()
    elapsed = dict.fromkeys(paths, 0.0)
    for _ in range(timed_calls(args)):
        for name, call in paths.items():
            start = time.perf_counter()
            call()
            sync()
            elapsed[name] += time.perf_counter() - start
    n_updates = timed_calls(args) * steps
    return [(name, n_updates / seconds) for name, seconds in elapsed.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument("--updates", type=int, default=2000, help="timed updates per path")
    parser.add_argument("--warmup", type=int, default=100, help="untimed updates per path first")
    parser.add_argument("--device", default="all", help="cpu, cuda, or all (cpu, and cuda when available)")
    parser.add_argument("--gradient-steps", type=int, default=20, help="updates per call")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--obs-dim", type=int, default=11)
    parser.add_argument("--action-dim", type=int, default=3)
    parser.add_argument("--buffer-size", type=int, default=100_000)
    parser.add_argument("--no-autograd", action="store_true", help="skip the 'fast (autograd)' path")
    args = parser.parse_args()
    if args.threads is not None:
        th.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if args.device.startswith("cuda") and not th.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available here (an empty table would read as a success)")
    devices = [d for d in devices if not d.startswith("cuda") or th.cuda.is_available()]

    print(f"torch {th.__version__}, CPU: {cpu_model()}, torch.get_num_threads() = {th.get_num_threads()}")
    timed = timed_calls(args) * args.gradient_steps
    print(
        f"networks {args.hidden}x{args.hidden} (actor, twin critics), batch {args.batch_size}, obs {args.obs_dim}, "
        f"action {args.action_dim}, {args.gradient_steps} updates per call, {timed} timed updates per path"
    )
    header = f"{'device':<8} {'path':<18} {'updates/s':>10} {'vs SB3':>7}"
    print(header)
    print("-" * len(header))
    for device in devices:
        if device.startswith("cuda"):
            print(f"# {device}: {th.cuda.get_device_name(device)}")
        results = run_device(args, device)
        baseline = results[0][1]
        for name, rate in results:
            print(f"{device:<8} {name:<18} {rate:>10.1f} {rate / baseline:>6.2f}x")


if __name__ == "__main__":
    main()
