"""
Make the agents of ``tests/test_legacy_agents.py``: small PMAC / MBPO / PMAC(mixture="tv") agents and their replay
buffers saved by an earlier version, with the deterministic actions they predict on fixed observations. Run once with
that version's ``sb3_pmac`` importable; the files are committed, never regenerated:

    python tests/data/make_legacy_agents.py               # legacy_*: release 0.x (commit b374772, before the restructure)
    PYTHONPATH=<checkout of fd46779> python tests/data/make_legacy_agents.py campaign
                                                          # campaign_*: the Hopper campaign's code (commit fd46779)
"""

import sys
import warnings
from pathlib import Path

import numpy as np
import torch as th

from sb3_pmac import MBPO, PMAC

HERE = Path(__file__).parent
KWARGS = dict(
    learning_starts=100,
    model_train_freq=50,
    rollout_batch_size=100,
    gradient_steps=1,
    batch_size=32,
    buffer_size=400,
    dynamics_kwargs=dict(hidden_sizes=(16, 16), weight_decays=None),
    model_trainer_kwargs=dict(max_epochs=2),
    policy_kwargs=dict(net_arch=[16, 16]),
    seed=0,
    device="cpu",
)
VARIANTS = {"pmac": (PMAC, {}), "mbpo": (MBPO, {}), "pmac_tv": (PMAC, {"mixture": "tv"})}


def main(prefix: str = "legacy") -> None:
    th.set_num_threads(1)
    warnings.filterwarnings("ignore")
    observations = np.random.default_rng(0).normal(size=(8, 11)).astype(np.float32)
    expected = {"observations": observations}
    for name, (cls, extra) in VARIANTS.items():
        model = cls("Hopper-v5", **KWARGS, **extra)
        model.learn(220)
        model.save(HERE / f"{prefix}_{name}.zip")
        # (the legacy release wrote a pickle whatever the suffix; later ones an .npz archive, under this name too)
        model.save_replay_buffer(HERE / f"{prefix}_{name}_buffer.pkl")
        expected[f"{name}_actions"] = model.predict(observations, deterministic=True)[0]
        expected[f"{name}_num_timesteps"] = np.asarray(model.num_timesteps)
    np.savez(HERE / f"{prefix}_expected.npz", **expected)


if __name__ == "__main__":
    main(*sys.argv[1:])
