"""
Peak RSS of PMAC's buffers at 10^6 transitions for Humanoid's truncated observations (obs 45, action 17), next to
the replay buffer of SB3's SAC (``stable_baselines3.common.buffers.ReplayBuffer``, SAC's default) of the same size.

Each configuration runs in a fresh subprocess and writes every row (numpy/torch zeros are allocated lazily, so an
empty buffer would under-report). Peak RSS is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of that subprocess
(includes the Python/torch baseline, reported as its own row); ``vs SB3 SAC``: each peak over the SB3 buffer's.

Usage: ``python benchmarks/memory.py [--size 1000000]``
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

OBS_DIM, ACTION_DIM = 45, 17
TARGET_GB = 4.0
CHUNK = 100_000


def fill_real(size: int, sb3: bool = False):
    """A full replay buffer of ``size`` transitions: PMAC's versioned one, or SB3's ``ReplayBuffer`` (``sb3=True``)."""
    import numpy as np
    from gymnasium import spaces
    from stable_baselines3.common.buffers import ReplayBuffer

    from sb3_pmac.buffers import PolicyVersionedReplayBuffer

    obs_space = spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
    act_space = spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
    buffer_class = ReplayBuffer if sb3 else PolicyVersionedReplayBuffer
    buf = buffer_class(size, obs_space, act_space, device="cpu")
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((1, OBS_DIM)).astype(np.float32)
    act = rng.uniform(-1, 1, (1, ACTION_DIM)).astype(np.float32)
    rew, done = np.ones(1, np.float32), np.zeros(1, np.float32)
    infos = [{}]
    for _ in range(size):
        buf.add(obs, obs, act, rew, done, infos)
    assert buf.full or buf.pos == size
    return buf


def fill_model(size: int):
    import torch as th

    from sb3_pmac.model_buffer import ModelReplayBuffer

    buf = ModelReplayBuffer(size, OBS_DIM, ACTION_DIM, "cpu")
    for start in range(0, size, CHUNK):
        n = min(CHUNK, size - start)
        buf.add(th.randn(n, OBS_DIM), th.rand(n, ACTION_DIM), th.randn(n), th.randn(n, OBS_DIM), th.zeros(n))
    assert buf.size() == size
    return buf


def child(config: str, size: int) -> None:
    import numpy  # noqa: F401  (baseline includes the libraries)
    import torch  # noqa: F401

    import sb3_pmac.buffers  # noqa: F401

    keep = []
    if config == "sb3":
        # both buffers stay alive together (else the second reuses the first's freed memory)
        keep.append(fill_real(size, sb3=True))
    if config in ("real", "both"):
        keep.append(fill_real(size))
    if config in ("model", "both"):
        keep.append(fill_model(size))
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"peak_gb": kb * 1024 / 1e9}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.size)
        return

    configs = [
        ("baseline (imports only)", "none"),
        (f"SB3 SAC ReplayBuffer {args.size:,}", "sb3"),
        (f"PolicyVersionedReplayBuffer {args.size:,}", "real"),
        (f"ModelReplayBuffer {args.size:,}", "model"),
        (f"both ({args.size:,} each)", "both"),
    ]
    print(f"Humanoid truncated obs {OBS_DIM}, action {ACTION_DIM}; every row written; fresh process per config")
    print(f"{'configuration':<44}{'peak RSS GB':>12}{'vs SB3 SAC':>11}{'target GB':>11}{'ok?':>6}")
    sb3_peak = None
    for name, config in configs:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", config, "--size", str(args.size)], capture_output=True, text=True
        )
        if proc.returncode != 0:  # the child's own error, not a bare CalledProcessError
            raise SystemExit(f"error: the measurement of {name!r} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        peak = json.loads(proc.stdout.strip().splitlines()[-1])["peak_gb"]
        ok = "yes" if peak <= TARGET_GB else "NO"
        sb3_peak = peak if config == "sb3" else sb3_peak
        ratio = f"{peak / sb3_peak:.2f}x" if sb3_peak else ""
        print(f"{name:<44}{peak:>12.2f}{ratio:>11}{TARGET_GB:>11.1f}{ok:>6}")


if __name__ == "__main__":
    main()
