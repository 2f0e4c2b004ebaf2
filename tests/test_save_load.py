"""
Save / load / resume / learn for every agent variant (sb3-contrib's ``tests/test_save_load.py`` style): ``PMAC``,
``MBPO`` and ``PMAC(mixture="tv")``.

One seeded run per variant (``saved_runs``, shared by the tests of this module): 180 steps (model steps at 101 and
151, so the save falls inside an interaction epoch), a snapshot of everything that must survive saving, ``save`` +
``save_replay_buffer``, a copy of the env at that point, then 80 more steps (model steps at 201 and 251) and a second
snapshot. Tests load from the saved files into fresh agents and compare with the snapshots; none of them changes the
shared run.
"""

import copy
import dataclasses
import pathlib
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch as th
from conftest import TINY_PMAC_KWARGS
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.save_util import load_from_pkl
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from sb3_pmac import MBPO, PMAC
from sb3_pmac.compat import LEGACY_MIXTURE_FIELDS
from sb3_pmac.tv_mixture import TVPolicyMixture

#: id -> (class, extra keyword arguments)
VARIANTS: dict[str, tuple[type[PMAC], dict[str, Any]]] = {
    "pmac": (PMAC, {}),
    "mbpo": (MBPO, {}),
    "pmac_tv": (PMAC, {"mixture": "tv"}),
}
SEED = 4
STEPS_BEFORE_SAVE, STEPS_AFTER_SAVE = 180, 80


def make_model(variant: str, env: Any = "Pendulum-v1", **kwargs: Any) -> PMAC:
    cls, extra = VARIANTS[variant]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no termination function for Pendulum
        return cls("MlpPolicy", env, **{**TINY_PMAC_KWARGS, "device": "cpu", **extra, **kwargs})


def expected_settings(variant: str) -> dict[str, Any]:
    """What the variant's constructor must set (checked next to the saved values, so that equality is not vacuous)."""
    cls, extra = VARIANTS[variant]
    adapt = cls is not MBPO
    return {
        "mixture": extra.get("mixture", "exponential"),
        "adapt_model_training": adapt,
        "adapt_rollout_starts": adapt,
        "model_training": "bounded",
        "max_rate": 0.02,
    }


def parameters(module: th.nn.Module) -> th.Tensor:
    return th.nn.utils.parameters_to_vector(module.parameters()).detach().clone()


def stochastic_rollout_actions(model: PMAC, observations: np.ndarray) -> th.Tensor:
    """``model.rollout_policy`` (sampled actions) under a fixed torch seed, without touching the global RNG state."""
    with th.random.fork_rng(devices=[]), th.no_grad():
        th.manual_seed(0)
        return model.rollout_policy(th.as_tensor(observations)).clone()


def assert_same(actual: Any, expected: Any, where: str = "") -> None:
    """Exact equality of nested dicts / lists of tensors, arrays and plain values (NaN equals NaN)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), where
        for key in expected:
            assert_same(actual[key], expected[key], f"{where}/{key}")
    elif isinstance(expected, list | tuple):
        assert isinstance(actual, list | tuple) and len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same(a, e, f"{where}/{i}")
    elif isinstance(expected, th.Tensor):
        th.testing.assert_close(actual, expected, rtol=0, atol=0, equal_nan=True, msg=where)
    elif isinstance(expected, np.ndarray):
        np.testing.assert_array_equal(actual, expected, err_msg=where)
    else:
        assert actual == expected, where


def held_versions(model: PMAC) -> np.ndarray:
    """The versions from the oldest with data to the current one (which has none yet after a model step)."""
    return np.arange(model.replay_buffer.oldest_version, model.policy_version + 1)


def snapshot(model: PMAC, observations: np.ndarray, inputs: th.Tensor) -> dict[str, Any]:
    """Everything the tests compare, copied (the run goes on afterwards)."""
    buffer = model.replay_buffer
    actions, _ = model.predict(observations, deterministic=True)
    with th.no_grad():
        mean, logvar = model.dynamics_model(inputs)
    return {
        "num_timesteps": model.num_timesteps,
        "actions": actions,
        "rollout_actions": stochastic_rollout_actions(model, observations),
        "dynamics": (mean.clone(), logvar.clone()),
        "elites": model.dynamics_model.elite_indices.clone(),
        "policy": parameters(model.policy),
        "dynamics_model": parameters(model.dynamics_model),
        "log_ent_coef": model.log_ent_coef.detach().clone(),
        "model_optimizer": copy.deepcopy(model.model_trainer.optimizer.state_dict()),
        "mixture_type": type(model.policy_mixture),
        "mixture": copy.deepcopy(model.policy_mixture.state_dict()),
        "policy_version": model.policy_version,
        "held_versions": held_versions(model),
        "mixture_weights": model.policy_mixture.weights(held_versions(model)),
        "settings": {key: getattr(model, key) for key in expected_settings("pmac")},
        "schedule": (model.rollout_horizon, model.real_ratio),
        "model_training_rows": model.model_training_rows(),
        "version_counts": tuple(a.copy() for a in buffer.version_counts()),
        "policy_versions": buffer.policy_versions.copy(),
        "observations": buffer.observations.copy(),
        "n_written": buffer.n_written,
        "policy_means": None if buffer.policy_means is None else buffer.policy_means.copy(),
        "policy_log_stds": None if buffer.policy_log_stds is None else buffer.policy_log_stds.copy(),
        "model_buffer": copy.deepcopy(model.model_buffer.state_dict()),
    }


@dataclasses.dataclass
class SavedRun:
    agent: pathlib.Path
    buffer: pathlib.Path
    env: VecEnv  # the env as it was when the agent was saved: deep-copy it before use
    observations: np.ndarray  # probe states and actions
    inputs: th.Tensor
    at_save: dict[str, Any]
    after: dict[str, Any]  # the uninterrupted run, STEPS_AFTER_SAVE steps after the save

    def fresh_env(self) -> VecEnv:
        return copy.deepcopy(self.env)


def saved_run(variant: str, directory: pathlib.Path) -> SavedRun:
    observations = np.random.RandomState(0).uniform(-1, 1, (20, 3)).astype(np.float32)
    actions = np.random.RandomState(1).uniform(-1, 1, (20, 1)).astype(np.float32)
    inputs = th.as_tensor(np.concatenate([observations, actions], 1))
    model = make_model(variant, seed=SEED)
    model.learn(STEPS_BEFORE_SAVE)
    at_save = snapshot(model, observations, inputs)
    model.save(directory / "agent")
    model.save_replay_buffer(directory / "buffer")
    env = copy.deepcopy(model.get_env())
    model.learn(STEPS_AFTER_SAVE, reset_num_timesteps=False)  # the uninterrupted run
    after = snapshot(model, observations, inputs)
    return SavedRun(directory / "agent.zip", directory / "buffer.npz", env, observations, inputs, at_save, after)


@pytest.fixture(scope="module")
def saved_runs(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], SavedRun]:
    """``saved_runs(variant)``: the variant's shared run, made on first use (each xdist worker makes its own)."""
    runs: dict[str, SavedRun] = {}

    def get(variant: str) -> SavedRun:
        if variant not in runs:
            runs[variant] = saved_run(variant, tmp_path_factory.mktemp(variant))
        return runs[variant]

    return get


def load(variant: str, run: SavedRun, **kwargs: Any) -> PMAC:
    cls, _ = VARIANTS[variant]
    model = cls.load(run.agent, device="cpu", **kwargs)
    assert type(model) is cls
    return model


# ---------------------------------------------------------------------------------------------- save / load
def test_mbpo_load_of_a_pmac_agent_warns_and_keeps_its_settings(saved_runs):
    pmac_run, mbpo_run = saved_runs("pmac"), saved_runs("mbpo")
    with pytest.warns(UserWarning, match="PMAC agent.*load it with PMAC.load"):
        loaded = MBPO.load(pmac_run.agent, device="cpu")
    assert loaded.adapt_model_training and loaded.adapt_rollout_starts  # the saved settings win, as in SB3
    with pytest.warns(UserWarning, match="goes on as MBPO"):  # (tests/test_load_overrides.py)
        assert not PMAC.load(mbpo_run.agent, device="cpu").adapt_model_training
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for cls, run in ((MBPO, mbpo_run), (PMAC, pmac_run)):
            assert cls.load(run.agent, device="cpu").adapt_model_training == (run is pmac_run)


@pytest.mark.parametrize("variant", VARIANTS)
def test_save_load_predict_dynamics_and_state(variant, saved_runs):
    run = saved_runs(variant)
    saved = run.at_save
    loaded = load(variant, run)
    assert loaded.replay_buffer.buffer_size == loaded.buffer_size and loaded.replay_buffer.size() == 0  # empty, as SB3
    assert loaded.num_timesteps == saved["num_timesteps"] == STEPS_BEFORE_SAVE
    assert saved["settings"] == expected_settings(variant)
    for key, value in saved["settings"].items():
        assert getattr(loaded, key) == value, key
    assert (loaded.rollout_horizon, loaded.real_ratio) == saved["schedule"]

    # the policy: deterministic actions, and the stochastic actor of the model rollouts
    actions, _ = loaded.predict(run.observations, deterministic=True)
    np.testing.assert_array_equal(actions, saved["actions"])
    assert_same(stochastic_rollout_actions(loaded, run.observations), saved["rollout_actions"], "rollout_policy")
    assert_same(parameters(loaded.policy), saved["policy"], "policy")
    # the dynamics model, its elites and its optimizer
    with th.no_grad():
        assert_same(loaded.dynamics_model(run.inputs), saved["dynamics"], "dynamics outputs")
    assert_same(loaded.dynamics_model.elite_indices, saved["elites"], "elites")
    optimizer_state = loaded.model_trainer.optimizer.state_dict()
    assert len(saved["model_optimizer"]["state"]) > 0  # Adam moments exist: the model was trained
    assert_same(optimizer_state, saved["model_optimizer"], "model optimizer")
    # the policy mixture (tv: measured distances), its weights, and the current policy version
    assert type(loaded.policy_mixture) is saved["mixture_type"]
    assert (saved["mixture_type"] is TVPolicyMixture) == (variant == "pmac_tv")
    assert loaded.policy_version == saved["policy_version"] == 2  # model steps at 101 and 151
    assert_same(loaded.policy_mixture.state_dict(), saved["mixture"], "mixture")
    np.testing.assert_array_equal(saved["held_versions"], [0, 1, 2])
    np.testing.assert_array_equal(loaded.policy_mixture.weights(saved["held_versions"]), saved["mixture_weights"])
    if variant == "pmac_tv":
        assert np.isfinite(loaded.policy_mixture.distances(saved["held_versions"][:-1])).all()
    # which mixture the data is drawn with (MBPO: uniform for both)
    for adapt in (loaded.adapt_model_training, loaded.adapt_rollout_starts):
        assert (loaded.data_mixture(adapt) is loaded.policy_mixture) == (variant != "mbpo")


@pytest.mark.parametrize("variant", VARIANTS)
def test_replay_buffer_roundtrip_keeps_versions(variant, saved_runs):
    run = saved_runs(variant)
    saved = run.at_save
    loaded = load(variant, run, env=run.fresh_env())
    loaded.load_replay_buffer(run.buffer)
    buffer = loaded.replay_buffer
    assert buffer.buffer_size == TINY_PMAC_KWARGS["buffer_size"]
    assert buffer.n_written == saved["n_written"] == STEPS_BEFORE_SAVE
    versions, counts = buffer.version_counts()
    assert_same((versions, counts), saved["version_counts"], "version_counts")
    np.testing.assert_array_equal(versions, [0, 1, 2])
    np.testing.assert_array_equal(buffer.policy_versions, saved["policy_versions"])
    np.testing.assert_array_equal(buffer.observations, saved["observations"])
    assert loaded.model_training_rows() == saved["model_training_rows"] > 0
    # mixture="tv": the collecting policy's Gaussian of every transition
    assert buffer.store_policy_params == (variant == "pmac_tv")
    assert_same(buffer.policy_means, saved["policy_means"], "policy_means")
    assert_same(buffer.policy_log_stds, saved["policy_log_stds"], "policy_log_stds")
    if variant == "pmac_tv":
        assert np.isfinite(buffer.policy_means[:STEPS_BEFORE_SAVE]).all()
    # the model buffer travels in the same file
    assert loaded.model_buffer.size() > 0
    assert_same(loaded.model_buffer.state_dict(), saved["model_buffer"], "model buffer")


def test_including_the_model_buffer_in_save_says_where_it_is_saved(tmp_path):
    """SB3's save(include=[...]) idiom cannot carry the model buffer (rebuilt at load): said, not silently lost."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = PMAC("MlpPolicy", "Pendulum-v1", seed=0, **TINY_PMAC_KWARGS)
        model.learn(150)
    assert model.model_buffer.size() > 0
    with pytest.warns(UserWarning, match=r"include=\['model_buffer'\]\) has no effect.*save_replay_buffer"):
        model.save(tmp_path / "agent", include=["model_buffer"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the ordinary save says nothing
        model.save(tmp_path / "agent", include=["replay_buffer"])
    model.save_replay_buffer(tmp_path / "buffers")
    loaded = PMAC.load(tmp_path / "agent")
    loaded.load_replay_buffer(tmp_path / "buffers")
    assert loaded.model_buffer.size() == model.model_buffer.size()  # the way that keeps it


def test_tv_refuses_a_replay_buffer_without_policy_params(tmp_path):
    make_model("pmac").save_replay_buffer(tmp_path / "plain")
    with pytest.raises(ValueError, match="does not hold"):
        make_model("pmac_tv").load_replay_buffer(tmp_path / "plain")


# ---------------------------------------------------------------------------------------------- resume / continue
@pytest.mark.parametrize("variant", VARIANTS)
def test_resume_equals_uninterrupted_run(variant, saved_runs):
    """Load agent and buffers at step 180 on the env as it was, learn 80 steps: bit for bit the uninterrupted run."""
    run = saved_runs(variant)
    straight = run.after
    # restore_random_state: the process-wide numpy / python / torch generators too, as they were at save
    resumed = load(variant, run, env=run.fresh_env(), force_reset=False, restore_random_state=True)
    resumed.load_replay_buffer(run.buffer)
    resumed.learn(STEPS_AFTER_SAVE, reset_num_timesteps=False)
    now = snapshot(resumed, run.observations, run.inputs)
    assert now["num_timesteps"] == straight["num_timesteps"] == STEPS_BEFORE_SAVE + STEPS_AFTER_SAVE
    assert resumed.policy_version == 4  # model steps at 201 and 251 happened after the resume
    for key in ("policy", "dynamics_model", "log_ent_coef", "elites", "model_optimizer", "mixture", "policy_version",
                "held_versions", "mixture_weights", "version_counts",
                "policy_versions", "observations", "policy_means", "policy_log_stds", "model_buffer",
                "actions"):  # fmt: skip
        assert_same(now[key], straight[key], key)
    assert not th.equal(straight["policy"], run.at_save["policy"])  # the steps after the save did train
    if variant == "pmac_tv":  # the model steps after the resume measured the distances again
        assert np.isfinite(resumed.policy_mixture.distances(held_versions(resumed)[:-1])).all()


@pytest.mark.parametrize("variant", VARIANTS)
def test_continue_after_load_without_replay_buffer(variant, saved_runs):
    run = saved_runs(variant)
    loaded = load(variant, run, env=run.fresh_env(), seed=SEED)  # seeded: which model predictions are kept is random
    version = loaded.policy_version
    loaded.learn(50, reset_num_timesteps=False)  # empty buffer: collect a batch (32) first, no second warm-up
    assert loaded.num_timesteps == STEPS_BEFORE_SAVE + 50
    buffer = loaded.replay_buffer
    assert buffer.buffer_size == TINY_PMAC_KWARGS["buffer_size"] and buffer.size() == buffer.n_written == 50
    assert loaded.policy_version == buffer.current_version > version  # model steps resumed once data was there
    versions, counts = buffer.version_counts()
    assert versions[0] == version and counts.sum() == 50  # new data continues the loaded version numbering
    assert loaded.model_buffer.size() > 0


# ---------------------------------------------------------------------------------------------- learn
@pytest.mark.parametrize("variant", VARIANTS)
def test_seed_reproducible(variant, saved_runs):
    """A second run with the shared run's seed repeats it exactly."""
    saved = saved_runs(variant).at_save
    model = make_model(variant, seed=SEED)
    model.learn(STEPS_BEFORE_SAVE)
    now = snapshot(model, np.zeros((1, 3), np.float32), th.zeros(1, 4))
    for key in ("policy", "dynamics_model", "log_ent_coef", "model_optimizer", "mixture", "policy_version", "observations",
                "policy_means", "policy_log_stds", "model_buffer"):  # fmt: skip
        assert_same(now[key], saved[key], key)


@pytest.mark.parametrize("variant", VARIANTS)
def test_vec_env_and_vecnormalize(variant):
    venv = VecNormalize(make_vec_env("Pendulum-v1", n_envs=2, seed=0), gamma=0.99)
    model = make_model(variant, env=venv, seed=0)
    model.learn(260)
    buffer = model.replay_buffer
    versions, counts = buffer.version_counts()
    assert counts.sum() == 260 and buffer.n_written == 130 and versions[0] == 0 and len(versions) > 2
    # the replay buffer stores raw observations: Pendulum's angular velocity reaches beyond normalized ranges
    stored = buffer.observations[: buffer.size()].reshape(-1, 3)
    assert np.abs(stored[:, :2]).max() <= 1.0 + 1e-6 and np.abs(stored[:, 2]).max() > 1.0
    assert model.model_buffer.size() > 0
    # model rollouts start from raw states: the rollout policy normalizes them for the actor
    raw = stored[:20]
    with th.random.fork_rng(devices=[]), th.no_grad():
        th.manual_seed(0)
        on_normalized = model.actor(th.as_tensor(venv.normalize_obs(raw)), deterministic=False)
        th.manual_seed(0)
        on_raw = model.actor(th.as_tensor(raw), deterministic=False)
    assert_same(stochastic_rollout_actions(model, raw), on_normalized, "rollout_policy")
    assert not th.allclose(on_normalized, on_raw)
    if variant == "pmac_tv":  # distances measured on normalized states, every transition with its Gaussian
        assert np.isfinite(model.policy_mixture.distances(held_versions(model)[:-1])).all()
        assert np.isfinite(buffer.policy_means[: buffer.size()]).all()


@pytest.mark.parametrize("variant", VARIANTS)
def test_learn_with_gsde(variant):
    model = make_model(variant, seed=5, use_sde=True)
    model.learn(160)
    assert model.actor.use_sde and model.num_timesteps == 160
    assert model.policy_version == 2  # model steps at 101 and 151
    assert model.model_buffer.size() > 0 and th.isfinite(model.model_buffer.state_dict()["observations"]).all()
    if variant == "pmac_tv":
        log_stds = model.replay_buffer.policy_log_stds[101:160, 0, 0]
        assert np.isfinite(log_stds).all() and np.ptp(log_stds) > 0  # gSDE: the std depends on the state
        assert np.isfinite(model.policy_mixture.distances(held_versions(model)[:-1])).all()


# ---------------------------------------------------------------------------------------------- earlier releases
@pytest.mark.parametrize("variant", VARIANTS)
def test_agent_of_an_earlier_release_keeps_its_policy_version(variant):
    """Their policy mixtures counted the versions (the agent did not save one): the version is taken from there."""
    data = pathlib.Path(__file__).parent / "data"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = VARIANTS[variant][0].load(data / f"legacy_{variant}.zip", device="cpu")
        buffer = load_from_pkl(data / f"legacy_{variant}_buffer.pkl")
    assert model.policy_version == buffer.current_version >= 2  # saved together
    assert not {*LEGACY_MIXTURE_FIELDS, "_legacy_current_version"} & set(vars(model.policy_mixture))
    assert isinstance(model.policy_mixture, TVPolicyMixture) == (variant == "pmac_tv")
    if variant == "pmac_tv":  # the distances measured at the last model step survive
        measured = model.policy_mixture.measured_versions
        assert 0 < len(measured) and measured.max() < model.policy_version
        assert np.isfinite(model.policy_mixture.distances(measured)).all()
