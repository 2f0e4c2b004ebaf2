"""Agents and replay buffers saved by an earlier release (tests/data/make_legacy_agents.py) still load and act the same."""

import warnings
from pathlib import Path

import numpy as np
import pytest

from sb3_pmac import MBPO, PMAC

DATA = Path(__file__).parent / "data"
VARIANTS = {"pmac": PMAC, "mbpo": MBPO, "pmac_tv": PMAC}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_legacy_agent_loads_predicts_the_same_and_keeps_learning(name):
    expected = np.load(DATA / "legacy_expected.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = VARIANTS[name].load(DATA / f"legacy_{name}.zip", device="cpu")
    assert type(model) is VARIANTS[name]
    assert model.num_timesteps == int(expected[f"{name}_num_timesteps"])
    actions, _ = model.predict(expected["observations"], deterministic=True)
    np.testing.assert_allclose(actions, expected[f"{name}_actions"], rtol=0, atol=1e-6)
    assert (model.mixture == "tv") == (name == "pmac_tv")
    assert model.model_training == "full"  # saved before bounded model training existed: keeps its behaviour
    # saved before trainings could keep the previous model: each of its model steps trained one
    assert model.model_rounds_trained == model._n_model_steps > 0
    # saved when the default was SB3's learned coefficient: keeps it (the default is a fixed 0.2 now)
    assert model.ent_coef == "auto" and model.ent_coef_optimizer is not None and model.log_ent_coef is not None
    saved_log_ent_coef = float(model.log_ent_coef)
    assert saved_log_ent_coef != 0.0  # trained away from its initial value, log(1)

    import gymnasium as gym

    model.set_env(gym.make("Hopper-v5"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.load_replay_buffer(DATA / f"legacy_{name}_buffer.pkl", allow_pickle=True)  # a pickle
    versions, counts = model.replay_buffer.version_counts()
    assert counts.sum() == model.num_timesteps and len(versions) >= 3
    assert model.model_buffer.size() > 0
    model.learn(60, reset_num_timesteps=False)
    assert model.num_timesteps == int(expected[f"{name}_num_timesteps"]) + 60
    assert float(model.log_ent_coef) != saved_log_ent_coef  # still learned


def test_new_agents_keep_their_model_training_mode(tmp_path):
    for mode in ("bounded", "full"):
        model = PMAC("Hopper-v5", buffer_size=100, model_training=mode, learning_starts=10)
        model.save(tmp_path / mode)
        with open(tmp_path / f"{mode}.zip", "rb") as stream:  # from a stream too: it is read twice
            assert PMAC.load(stream).model_training == mode
        assert PMAC.load(tmp_path / mode).model_training == mode


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_campaign_era_agent_loads_predicts_the_same_and_keeps_learning(name):
    """Agents saved by the Hopper campaign's code (commit fd46779: bounded model training, SB3's learned entropy
    coefficient still the default, replay buffers still pickles)."""
    import gymnasium as gym

    expected = np.load(DATA / "campaign_expected.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = VARIANTS[name].load(DATA / f"campaign_{name}.zip", env=gym.make("Hopper-v5"), device="cpu")
    assert type(model) is VARIANTS[name] and (model.mixture == "tv") == (name == "pmac_tv")
    assert model.num_timesteps == int(expected[f"{name}_num_timesteps"])
    actions, _ = model.predict(expected["observations"], deterministic=True)
    np.testing.assert_allclose(actions, expected[f"{name}_actions"], rtol=0, atol=1e-6)
    # saved when bounded training was the default and the entropy coefficient SB3's learned one: both kept
    assert model.model_training == "bounded" and model.ent_coef == "auto" and model.ent_coef_optimizer is not None
    saved_log_ent_coef = float(model.log_ent_coef)
    assert model.uses_policy_mixture == (name != "mbpo")
    assert model.model_rounds_trained > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.load_replay_buffer(DATA / f"campaign_{name}_buffer.pkl", allow_pickle=True)  # that code wrote pickles
    versions, counts = model.replay_buffer.version_counts()
    # 220 steps: 100 warm-up steps, then a version per 50 steps (the newest, started at step 200, holds 20)
    assert counts.sum() == model.num_timesteps == 220 and counts.tolist() == [101, 50, 50, 19], counts
    assert model.model_buffer.size() > 0
    weights = model.policy_mixture.weights(versions) if name != "mbpo" else None
    if name == "pmac":  # Algorithm 1: (1 - alpha) alpha^(k - i), and alpha^k for the first (warm-up) version
        np.testing.assert_allclose(weights / weights[-1], [0.9**3 / 0.1, 0.9**2, 0.9, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.learn(60, reset_num_timesteps=False)
    assert model.num_timesteps == 280 and model.replay_buffer.version_counts()[1].sum() == 280
    assert float(model.log_ent_coef) != saved_log_ent_coef  # still learned


def test_saved_data_leaves_an_open_file_where_it_was(tmp_path):
    import io
    import json
    import zipfile

    from sb3_pmac.compat import saved_data

    stream = io.BytesIO()
    with zipfile.ZipFile(stream, "w") as archive:
        archive.writestr("data", json.dumps({"gamma": 0.99}))
    stream.seek(3)
    assert saved_data(stream) == {"gamma": 0.99} and stream.tell() == 3  # SB3's load reads the stream next
    (tmp_path / "agent.zip").write_bytes(stream.getvalue())
    assert saved_data(tmp_path / "agent.zip") == {"gamma": 0.99}
