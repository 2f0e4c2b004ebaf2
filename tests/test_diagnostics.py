"""Tests of sb3_pmac.diagnostics: local/global/compounding model errors, mixture statistics, callback, offline CLI."""

import csv
import importlib.util
import math
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import TINY_PMAC_KWARGS
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from sb3_pmac import MBPO, PMAC
from sb3_pmac.diagnostics import (
    DiagnosticsConfig,
    ModelDiagnosticsCallback,
    append_csv_row,
    csv_columns,
    evaluate_checkpoints,
    evaluate_model,
    main,
    mixture_statistics,
    model_diagnostics,
)
from sb3_pmac.policy_mixture import PolicyMixture
from sb3_pmac.termination import NeverTerminate
from sb3_pmac.tv_mixture import TVPolicyMixture

GAIN, DRIFT = 0.1, 0.2
TOY_ID = "DiagnosticsToy-v0"


def toy_next(obs, actions):
    """The toy dynamics, for numpy arrays and torch tensors alike: s' = s + 0.1 a + 0.2 (never terminates)."""
    return obs + GAIN * actions + DRIFT


def toy_reward(obs):
    """r = -(1 + |s|^2) <= -1."""
    return -(1 + (obs**2).sum(-1))


class ToyEnv(gym.Env):
    """
    Deterministic 2-d toy env: ``s' = s + 0.1 a + 0.2 + kink * tanh(4 a)``, ``r = -(1 + |s|^2)``, start state uniform
    in [-0.5, 0.5]^2, truncated after ``max_steps`` steps. With ``kink=0`` the dynamics are linear in ``(s, a)``.
    """

    def __init__(self, max_steps: int = 20, kink: float = 0.0) -> None:
        self.observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.max_steps = max_steps
        self.kink = kink

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = self.np_random.uniform(-0.5, 0.5, 2).astype(np.float32)
        self.t = 0
        return self.state.copy(), {}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        reward = float(toy_reward(self.state))
        self.state = toy_next(self.state, action)
        if self.kink:
            self.state = (self.state + self.kink * np.tanh(4 * action)).astype(np.float32)
        self.t += 1
        return self.state.copy(), reward, False, self.t >= self.max_steps, {}


if TOY_ID not in gym.registry:
    gym.register(TOY_ID, entry_point=ToyEnv)


class ToyModel(th.nn.Module):
    """
    A stand-in for the ensemble that knows the toy dynamics (kink=0): elite ``i`` predicts the true next state plus
    ``obs_biases[i]`` and the true reward plus ``reward_bias``; ``identity=True``: ``s' = s``, ``r = 0``.
    """

    def __init__(self, obs_biases=(0.0,), reward_bias: float = 0.0, identity: bool = False) -> None:
        super().__init__()
        self.obs_biases = th.tensor(obs_biases, dtype=th.float32)
        self.n_elites = len(obs_biases)
        self.reward_bias = reward_bias
        self.identity = identity

    def _elite(self, obs, actions, elite):
        if self.identity:
            return obs.clone(), th.zeros(obs.shape[0])
        return toy_next(obs, actions) + self.obs_biases[elite], toy_reward(obs) + self.reward_bias

    def predict(self, obs, actions):
        means = []
        for elite in range(self.n_elites):
            next_obs, reward = self._elite(obs, actions, elite)
            means.append(th.cat([next_obs - obs, reward[:, None]], dim=1))
        mean = th.stack(means)
        return mean, th.zeros_like(mean)

    def sample(self, obs, actions, deterministic=False, generator=None):
        elites = th.randint(self.n_elites, (obs.shape[0],), generator=generator)
        next_obs, reward = self._elite(obs, actions, 0)
        bias = self.obs_biases[elites][:, None] - self.obs_biases[0]
        return next_obs + bias, reward, elites


def make_agent(algo=PMAC, env=None, **kwargs) -> PMAC:
    params = {**TINY_PMAC_KWARGS, "learning_starts": 60, "termination_fn": NeverTerminate(), "seed": 0, **kwargs}
    return algo("MlpPolicy", env if env is not None else ToyEnv(), **params)


@pytest.fixture(scope="module")
def toy_agent() -> PMAC:
    """A PMAC agent whose buffer holds 60 random warm-up transitions of the toy env (no training yet)."""
    agent = make_agent()
    agent.learn(60)
    assert agent.replay_buffer.size() == 60 and agent._n_model_steps == 0
    return agent


SMALL = dict(n_local=100, n_global=1000, n_trajectories=20, seed=1)


def test_csv_columns():
    assert csv_columns(3) == [
        "timesteps",
        "local_obs_mse",
        "local_reward_mse",
        "global_obs_mse",
        "global_reward_mse",
        "mixture_effective_versions",
        "mixture_newest_1_share",
        "mixture_newest_5_share",
        "compounding_obs_mse_h1",
        "compounding_obs_mse_h2",
        "compounding_obs_mse_h3",
    ]
    assert csv_columns(1, newest_k=(2,))[-2:] == ["mixture_newest_2_share", "compounding_obs_mse_h1"]


def test_schema_reads_without_torch():
    """The CSV schema (which sb3_pmac.plot reads the files with) loads on its own: no torch, no sb3_pmac package."""
    import sb3_pmac.diagnostics.schema as schema

    # `import sb3_pmac.diagnostics.schema` runs sb3_pmac/__init__.py (torch): load the file alone instead
    code = textwrap.dedent(f"""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location("standalone_schema", {schema.__file__!r})
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        assert module.csv_columns(2)[-1] == "compounding_obs_mse_h2"
        assert "torch" not in sys.modules and "sb3_pmac" not in sys.modules, sorted(sys.modules)
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_perfect_model_has_zero_error(toy_agent):
    toy_agent.dynamics_model = ToyModel()
    row = evaluate_model(toy_agent, ToyEnv(), horizon=10, **SMALL)
    assert list(row) == csv_columns(10)
    assert row["timesteps"] == 60
    errors = {key: value for key, value in row.items() if "mse" in key}
    assert len(errors) == 14
    for key, value in errors.items():
        assert 0 <= value < 1e-10, key
    # single version, all data from it
    assert row["mixture_effective_versions"] == pytest.approx(1.0)
    assert row["mixture_newest_1_share"] == row["mixture_newest_5_share"] == pytest.approx(1.0)


def test_wrong_model_has_large_error(toy_agent):
    # s' = s, r = 0: the true step is 0.1 a + 0.2 in [0.1, 0.3] per entry (|a| <= 1) and r <= -1
    toy_agent.dynamics_model = ToyModel(identity=True)
    row = evaluate_model(toy_agent, ToyEnv(), horizon=5, **SMALL)
    for prefix in ("local", "global"):
        assert row[f"{prefix}_obs_mse"] >= (DRIFT - GAIN) ** 2
        assert row[f"{prefix}_reward_mse"] >= 1.0
    for h in range(1, 6):
        assert row[f"compounding_obs_mse_h{h}"] >= (h * (DRIFT - GAIN)) ** 2 * (1 - 1e-6)


def test_compounding_error_of_a_biased_model_is_exact(toy_agent):
    # s' = s + 0.1 a + 0.2 + b with the recorded actions: after h steps the model is off by h * b in every entry
    bias, reward_bias = 0.05, 0.5
    toy_agent.dynamics_model = ToyModel(obs_biases=(bias,), reward_bias=reward_bias)
    row = evaluate_model(toy_agent, ToyEnv(), horizon=8, **SMALL)
    for key in ("local_obs_mse", "global_obs_mse"):
        assert row[key] == pytest.approx(bias**2, rel=1e-4)
    for key in ("local_reward_mse", "global_reward_mse"):
        assert row[key] == pytest.approx(reward_bias**2, rel=1e-4)
    compounding = [row[f"compounding_obs_mse_h{h}"] for h in range(1, 9)]
    np.testing.assert_allclose(compounding, [(h * bias) ** 2 for h in range(1, 9)], rtol=1e-4)
    assert np.all(np.diff(compounding) > 0)


def test_compounding_only_counts_trajectories_alive_in_the_real_env(toy_agent):
    # Episodes of 4 steps: no trajectory can be followed for 5 steps
    toy_agent.dynamics_model = ToyModel(obs_biases=(0.05,))
    row = evaluate_model(toy_agent, ToyEnv(max_steps=4), horizon=6, **SMALL)
    np.testing.assert_allclose(
        [row[f"compounding_obs_mse_h{h}"] for h in range(1, 5)], [(h * 0.05) ** 2 for h in range(1, 5)], rtol=1e-4
    )
    assert math.isnan(row["compounding_obs_mse_h5"]) and math.isnan(row["compounding_obs_mse_h6"])


def test_elite_mean_versus_sampled_prediction(toy_agent):
    # Two elites off by +b and -b: their mean is exact, a sampled elite is off by b
    bias = 0.1
    toy_agent.dynamics_model = ToyModel(obs_biases=(bias, -bias))
    mean_row = evaluate_model(toy_agent, ToyEnv(), horizon=1, **SMALL)
    sample_row = evaluate_model(toy_agent, ToyEnv(), horizon=1, model_prediction="sample", **SMALL)
    for key in ("local_obs_mse", "global_obs_mse", "compounding_obs_mse_h1"):
        assert mean_row[key] < 1e-10
        assert sample_row[key] == pytest.approx(bias**2, rel=1e-4)


def test_evaluation_is_reproducible_and_leaves_training_state_alone(toy_agent):
    toy_agent.dynamics_model = ToyModel(obs_biases=(0.05,))
    toy_agent.policy.set_training_mode(True)
    states = (np.random.get_state()[1].copy(), th.get_rng_state().clone())
    first = evaluate_model(toy_agent, ToyEnv(), horizon=3, **SMALL)
    assert np.array_equal(np.random.get_state()[1], states[0]) and th.equal(th.get_rng_state(), states[1])
    assert toy_agent.policy.training and toy_agent.actor.training
    assert evaluate_model(toy_agent, ToyEnv(), horizon=3, **SMALL) == first
    # another seed: other transitions (the errors of this biased model do not depend on them)
    other = evaluate_model(toy_agent, ToyEnv(), horizon=3, **{**SMALL, "seed": 2})
    assert other["local_obs_mse"] == pytest.approx(first["local_obs_mse"], rel=1e-4)


def test_config_and_keyword_arguments_are_the_same(toy_agent):
    toy_agent.dynamics_model = ToyModel(obs_biases=(0.05,))
    row = evaluate_model(toy_agent, ToyEnv(), horizon=3, **SMALL)
    config = DiagnosticsConfig(horizon=3, **SMALL)
    assert evaluate_model(toy_agent, ToyEnv(), config) == row
    assert evaluate_model(toy_agent, ToyEnv(), DiagnosticsConfig(horizon=5, **SMALL), horizon=3) == row  # keywords win
    assert model_diagnostics is evaluate_model  # the former name, a plain alias
    callback = ModelDiagnosticsCallback(ToyEnv(), 50, config, n_local=7)
    assert callback.config == DiagnosticsConfig(horizon=3, **{**SMALL, "n_local": 7}) and callback.horizon == 3
    with pytest.raises(TypeError):
        evaluate_model(toy_agent, ToyEnv(), n_locals=10)
    with pytest.raises(TypeError, match="DiagnosticsConfig"):
        evaluate_model(toy_agent, ToyEnv(), 100)  # type: ignore[arg-type]


def test_bad_arguments(toy_agent):
    with pytest.raises(ValueError, match="n_local"):
        evaluate_model(toy_agent, ToyEnv(), n_local=0)
    with pytest.raises(ValueError, match="model_prediction"):
        evaluate_model(toy_agent, ToyEnv(), model_prediction="median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exceeds"):
        evaluate_model(toy_agent, ToyEnv(), upto=61, **SMALL)
    with pytest.raises(TypeError, match="VecEnv"):
        evaluate_model(toy_agent, DummyVecEnv([ToyEnv]))  # type: ignore[arg-type]


def test_upto_restricts_global_error_to_the_first_steps():
    agent = make_agent()
    agent.dynamics_model = ToyModel()
    env = ToyEnv()
    add_transitions(agent, env, 30, lambda obs: np.full(2, 0.5, dtype=np.float32))
    # transitions past position 30 are corrupted: the model is only wrong about them
    add_transitions(agent, env, 30, lambda obs: np.full(2, 0.5, dtype=np.float32), next_obs_offset=1.0)
    assert evaluate_model(agent, ToyEnv(), horizon=1, upto=30, **SMALL)["global_obs_mse"] < 1e-10
    assert evaluate_model(agent, ToyEnv(), horizon=1, **SMALL)["global_obs_mse"] == pytest.approx(0.5, rel=1e-4)


def add_transitions(agent: PMAC, env: ToyEnv, n: int, action_fn, next_obs_offset: float = 0.0) -> None:
    """Add ``n`` transitions of ``env`` under ``action_fn`` to the agent's buffer (current buffer version)."""
    obs, _ = env.reset(seed=agent.replay_buffer.pos)
    for _ in range(n):
        action = action_fn(obs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        agent.replay_buffer.add(
            obs[None], next_obs[None] + next_obs_offset, action[None], np.array([reward]), np.array([terminated]), [{}]
        )
        obs = env.reset()[0] if terminated or truncated else next_obs


def test_model_trained_on_old_data_has_larger_local_than_global_error():
    # The dynamics bend with the action (kink * tanh(4 a)): a model that only saw the old policy's actions in
    # [-1, -0.5] cannot know the steps of the current policy, whose actions are close to +0.96.
    th.manual_seed(0)
    env_kwargs = dict(kink=0.5)
    agent = make_agent(model_trainer_kwargs=dict(max_epochs=40, batch_size=64))
    rng = np.random.default_rng(0)
    old_env, new_env = ToyEnv(**env_kwargs), ToyEnv(**env_kwargs)
    add_transitions(agent, old_env, 800, lambda obs: rng.uniform(-1.0, -0.5, 2).astype(np.float32))
    agent.policy_version = agent.replay_buffer.start_new_version()
    # the current policy: tanh(N(2, 0.05^2)) ~ 0.96
    with th.no_grad():
        for layer, bias in ((agent.actor.mu, 2.0), (agent.actor.log_std, -3.0)):
            layer.weight.zero_()
            layer.bias.fill_(bias)
    policy = agent.policy
    add_transitions(agent, new_env, 200, lambda obs: policy.scale_action(policy.predict(obs)[0]).astype(np.float32))
    old = agent.replay_buffer.get_transitions(np.arange(800), np.zeros(800, dtype=np.int64))
    agent.model_trainer.train(old.observations, old.actions, old.rewards, old.next_observations, rng=0)

    row = evaluate_model(agent, ToyEnv(**env_kwargs), n_local=200, n_global=1000, horizon=2, n_trajectories=20, seed=0)
    # global ~ 0.8 * (small error on old data) + 0.2 * (local error): about 0.2 * local for seeds 0..5
    assert row["global_obs_mse"] < 0.5 * row["local_obs_mse"]
    assert row["local_obs_mse"] > 0.1
    # 2 versions with data, PMAC weights 0.9 (old) and 0.1 (current)
    assert row["mixture_newest_1_share"] == pytest.approx(0.1)


def fill_versions(agent: PMAC, counts) -> None:
    """Buffer data for versions 0..K-1 with ``counts``, then a new version K without data (as after a model step)."""
    env = ToyEnv()
    for version, count in enumerate(counts):
        if version > 0:
            assert agent.replay_buffer.start_new_version() == version
        add_transitions(agent, env, count, lambda obs: np.zeros(2, dtype=np.float32))
    agent.policy_version = agent.replay_buffer.start_new_version()


COUNTS = [30, 10, 20, 5, 40, 15, 25]


@pytest.mark.parametrize(
    "algo, switches",
    [(PMAC, {}), (MBPO, {}), (PMAC, {"adapt_rollout_starts": False}), (PMAC, {"adapt_model_training": False})],
    ids=["pmac", "mbpo", "ablation_model_only", "ablation_rollout_only"],
)
def test_mixture_statistics_closed_form(algo, switches):
    """The statistics describe the mixture the model's training data is drawn with (adapt_model_training's)."""
    agent = make_agent(algo, **switches)
    agent.dynamics_model = ToyModel()
    fill_versions(agent, COUNTS)
    row = evaluate_model(agent, ToyEnv(), horizon=1, newest_k=(1, 3, 5, 10), **SMALL)
    k_max = len(COUNTS)
    if agent.adapt_model_training:
        # Algorithm 1 after K = 7 additions: w_0 = a^K, w_i = (1 - a) a^(K - i); the data-less version K drops out,
        # which leaves p_0 = a^(K-1), p_i = (1 - a) a^(K-1-i) for i = 1..K-1.
        alpha = 0.9
        probs = np.array([alpha ** (k_max - 1)] + [(1 - alpha) * alpha ** (k_max - 1 - i) for i in range(1, k_max)])
        assert row["mixture_newest_1_share"] == pytest.approx(1 - alpha)
        assert row["mixture_newest_5_share"] == pytest.approx(1 - alpha**5)
    else:
        probs = np.array(COUNTS) / sum(COUNTS)  # MBPO: every transition equally likely
        assert row["mixture_newest_1_share"] == pytest.approx(25 / 145)
    assert probs.sum() == pytest.approx(1.0)
    assert row["mixture_effective_versions"] == pytest.approx(1 / np.sum(probs**2))
    for k in (1, 3, 5):
        assert row[f"mixture_newest_{k}_share"] == pytest.approx(probs[-k:].sum())
    assert row["mixture_newest_10_share"] == pytest.approx(1.0)


def test_mixture_statistics_function():
    mixture = PolicyMixture(mode="uniform")
    effective, shares = mixture_statistics(mixture, np.array([3, 1, 2]), np.array([10, 10, 20]), newest_k=(1, 2))
    assert effective == pytest.approx(1 / (0.25**2 + 0.25**2 + 0.5**2))
    assert shares == {1: pytest.approx(10 / 40), 2: pytest.approx(30 / 40)}  # version 3 is the newest
    tv = TVPolicyMixture()
    tv.set_distances(np.array([0]), np.array([0.1]))  # no distance for version 5: not from the same model step
    with pytest.raises(ValueError, match="same run"):
        mixture_statistics(tv, np.array([0, 5, 7]), np.array([1, 1, 1]))


def test_policy_sees_normalized_observations():
    venv = VecNormalize(DummyVecEnv([ToyEnv]), clip_obs=1e6)
    agent = make_agent(env=venv)
    agent.dynamics_model = ToyModel()
    agent.learn(60)
    venv.obs_rms.mean = np.full(2, 100.0)
    venv.obs_rms.var = np.ones(2)
    seen = []
    handle = agent.actor.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    try:
        row = evaluate_model(agent, ToyEnv(), horizon=2, **SMALL)
    finally:
        handle.remove()
    inputs = th.cat(seen)
    assert len(inputs) >= SMALL["n_local"] and inputs.max() < -90  # raw observations lie in [-0.5, 7]
    assert row["local_obs_mse"] < 1e-10 and row["global_obs_mse"] < 1e-10  # the model sees raw observations


def test_callback_policy_sees_the_training_envs_normalized_observations():
    """With a VecNormalize training env the callback's policy acts on normalized observations (the agent's)."""
    venv = VecNormalize(DummyVecEnv([ToyEnv]), clip_obs=1e6)
    agent = make_agent(env=venv)
    callback = ModelDiagnosticsCallback(ToyEnv(), eval_freq=50, horizon=2, **{**SMALL, "seed": 3})
    agent.learn(110, callback=callback)
    assert [row["timesteps"] for row in callback.history] == [100]
    venv.obs_rms.mean = np.full(2, 100.0)
    venv.obs_rms.var = np.ones(2)
    seen = []
    handle = agent.actor.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    try:
        row = callback.evaluate()
    finally:
        handle.remove()
    inputs = th.cat(seen)
    assert len(inputs) >= SMALL["n_local"] and inputs.max() < -90  # raw observations lie in [-0.5, 7]
    assert row == evaluate_model(agent, ToyEnv(), callback.config)
    agent._vec_normalize_env = None
    assert row["local_obs_mse"] != evaluate_model(agent, ToyEnv(), callback.config)["local_obs_mse"]


def test_append_csv_row_keeps_columns_consistent(tmp_path):
    path = tmp_path / "sub" / "rows.csv"
    append_csv_row(path, {"timesteps": 1, "a": 0.5})
    append_csv_row(path, {"timesteps": 2, "a": 0.25})
    with open(path) as file:
        assert file.read().splitlines() == ["timesteps,a", "1,0.5", "2,0.25"]
    append_csv_row(path, {"timesteps": 3, "a": 1.0, "b": float("nan")})
    with open(path) as file:
        assert file.read().splitlines() == ["timesteps,a,b", "1,0.5,", "2,0.25,", "3,1.0,nan"]


# ------------------------------------------------------------------------------------------------ callback and CLI
class MemoryWriter(KVWriter):
    """Keeps every dump of the SB3 logger."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def write(self, key_values, key_excluded, step=0) -> None:
        self.rows.append(dict(key_values))


class SaveAgent(BaseCallback):
    """Save ``agent_<timesteps>.zip`` every ``freq`` steps (as benchmarks/learning_curves.py --keep-checkpoints)."""

    def __init__(self, folder, freq: int) -> None:
        super().__init__()
        self.folder, self.freq = folder, freq

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:  # when ModelDiagnosticsCallback evaluates
        if self.model.num_timesteps % self.freq == 0:
            self.model.save(self.folder / f"agent_{self.model.num_timesteps}")


CALLBACK_SIZES = dict(n_local=60, n_global=500, n_trajectories=10, horizon=3)
RUN_KWARGS = dict(learning_starts=100, rollout_horizon=(0, 1, 1, 3), epoch_length=300)  # h = 2 at t = 300


@pytest.fixture(scope="module")
def callback_runs(tmp_path_factory):
    """The same seeded run without and with the diagnostics callback (and checkpoints, and the final buffer)."""
    folder = tmp_path_factory.mktemp("run")
    plain = make_agent(**RUN_KWARGS).learn(300)

    agent = make_agent(**RUN_KWARGS)
    writer = MemoryWriter()
    agent.set_logger(Logger(folder=None, output_formats=[writer]))
    diagnostics = ModelDiagnosticsCallback(
        ToyEnv(), eval_freq=50, csv_path=str(folder / "diag.csv"), seed=123, **CALLBACK_SIZES
    )
    agent.learn(300, callback=CallbackList([diagnostics, SaveAgent(folder, 150)]))
    agent.save_replay_buffer(folder / "final_buffer.npz")
    return plain, agent, diagnostics, writer, folder


def test_callback_does_not_change_training(callback_runs):
    plain, agent, diagnostics, _, _ = callback_runs
    assert len(diagnostics.history) > 0
    for module in ("actor", "critic", "dynamics_model"):
        first, second = getattr(plain, module).state_dict(), getattr(agent, module).state_dict()
        assert first.keys() == second.keys()
        for name in first:
            assert th.equal(first[name], second[name]), f"{module}.{name}"
    assert plain.policy_version == agent.policy_version == agent.replay_buffer.current_version


def test_callback_rows_csv_and_logger(callback_runs):
    _, agent, diagnostics, writer, folder = callback_runs
    # due at 50, 100, ..., 300; the model is first trained at step 101
    assert [row["timesteps"] for row in diagnostics.history] == [150, 200, 250, 300]
    assert diagnostics.columns == csv_columns(3)
    for row in diagnostics.history:
        assert list(row) == csv_columns(3)
        assert all(np.isfinite(value) for value in row.values())
        assert row["local_obs_mse"] > 0 and row["global_obs_mse"] > 0
    # the rollout horizon grows from 1 to 2, the columns do not
    assert agent.current_rollout_horizon() == 2
    # every version from the oldest with data to the current one has data at step 300 (no model step since):
    # Algorithm 1's own statistic over them
    versions = np.arange(agent.replay_buffer.oldest_version, agent.policy_version + 1)
    assert diagnostics.history[-1]["mixture_effective_versions"] == pytest.approx(
        agent.policy_mixture.effective_number_of_policies(versions)
    )
    default = ModelDiagnosticsCallback(ToyEnv())
    default.init_callback(agent)
    assert default.horizon == 3 and default.columns == csv_columns(3)  # the largest horizon of the schedule
    with open(folder / "diag.csv", newline="") as file:
        reader = csv.DictReader(file)
        assert reader.fieldnames == csv_columns(3)
        rows = list(reader)
    assert len(rows) == 4
    for written, row in zip(rows, diagnostics.history, strict=True):
        assert int(written["timesteps"]) == row["timesteps"]
        for key in csv_columns(3)[1:]:
            assert float(written[key]) == pytest.approx(row[key], rel=1e-12)
    logged = [values for values in writer.rows if "model/local_obs_mse" in values]
    assert len(logged) == 4
    for values, row in zip(logged, diagnostics.history, strict=True):
        assert values["time/total_timesteps"] == row["timesteps"]
        for key in csv_columns(3)[1:]:
            assert values[f"model/{key}"] == row[key]
    # the evaluations' cumulative seconds: growing, the last one the callback's total
    seconds = [values["time/diagnostics_s"] for values in logged]
    assert 0 < seconds[0] < seconds[-1] == diagnostics.elapsed_s and seconds == sorted(seconds)
    # other dumps of the logger (training) carry no model/ keys
    assert any("train/actor_loss" in values for values in writer.rows)


def test_callback_rejects_sac():
    from stable_baselines3 import SAC

    with pytest.raises(TypeError, match="PMAC or MBPO"):
        SAC("MlpPolicy", ToyEnv(), learning_starts=10).learn(5, callback=ModelDiagnosticsCallback(ToyEnv()))


def test_offline_checkpoints_reproduce_the_online_rows(callback_runs):
    _, _, diagnostics, _, folder = callback_runs
    paths = [folder / "agent_300.zip", folder / "agent_150.zip"]
    rows = evaluate_checkpoints(
        paths, TOY_ID, folder / "final_buffer.npz", csv_path=folder / "offline.csv", seed=123, device="cpu", **CALLBACK_SIZES
    )
    online = {row["timesteps"]: row for row in diagnostics.history}
    assert [row["timesteps"] for row in rows] == [150, 300]
    for row in rows:
        assert list(row) == csv_columns(3)
        for key, value in row.items():
            assert value == pytest.approx(online[row["timesteps"]][key], rel=1e-6), key


def test_cli_main(callback_runs, capsys):
    _, _, diagnostics, _, folder = callback_runs
    out = folder / "cli.csv"
    sizes = ["--n-local", "60", "--n-global", "500", "--n-trajectories", "10", "--horizon", "3", "--device", "cpu"]
    argv = [str(folder / "agent_150.zip"), "--env", TOY_ID, "--csv", str(out), "--seed", "123", *sizes]
    main([*argv, "--buffer", str(folder / "final_buffer.npz"), "--upto", "150", "--algo", "pmac"])
    main(argv)  # without a buffer: no global error, no mixture statistics
    printed = capsys.readouterr().out
    assert "local_obs_mse" in printed and "compounding_obs_mse_h3" in printed and "(pmac, upto=150)" in printed
    with open(out, newline="") as file:
        reader = csv.DictReader(file)
        assert reader.fieldnames == csv_columns(3)
        with_buffer, without_buffer = list(reader)
    online = diagnostics.history[0]
    assert online["timesteps"] == 150
    for key in csv_columns(3):
        assert float(with_buffer[key]) == pytest.approx(online[key], rel=1e-6), key
    for key in ("global_obs_mse", "global_reward_mse", "mixture_effective_versions", "mixture_newest_1_share"):
        assert math.isnan(float(without_buffer[key]))
    assert float(without_buffer["local_obs_mse"]) == pytest.approx(online["local_obs_mse"], rel=1e-6)


def test_cli_refuses_a_monitor_csv(callback_runs, tmp_path):
    """An existing CSV that is not a diagnostics CSV (here SB3's Monitor file) is refused, byte for byte unchanged."""
    folder = callback_runs[-1]
    path = tmp_path / "monitor.csv"
    path.write_text('#{"t_start": 1700000000.0, "env_id": "DiagnosticsToy-v0"}\nr,l,t\n-25.1,20,0.31\n-24.8,20,0.52\n')
    before = path.read_bytes()
    argv = [str(folder / "agent_150.zip"), "--env", TOY_ID, "--csv", str(path), "--device", "cpu", "--n-local", "10"]
    with pytest.raises(SystemExit, match=r"monitor\.csv is not a diagnostics CSV file"):
        main([*argv, "--buffer", str(folder / "final_buffer.npz")])
    assert path.read_bytes() == before


def test_cli_reads_a_pickled_buffer_only_with_allow_pickle(callback_runs, tmp_path):
    from stable_baselines3.common.save_util import save_to_pkl

    from sb3_pmac.buffer_files import load_buffers

    _, _, diagnostics, _, folder = callback_runs
    buffer, model_state = load_buffers(folder / "final_buffer.npz")
    buffer.model_buffer_state = model_state  # the file of an earlier version: a pickle
    save_to_pkl(tmp_path / "final_buffer.pkl", buffer)
    sizes = ["--n-local", "60", "--n-global", "500", "--n-trajectories", "10", "--horizon", "3", "--device", "cpu"]
    argv = [str(folder / "agent_150.zip"), "--env", TOY_ID, "--seed", "123", "--upto", "150", *sizes]
    with pytest.raises(SystemExit, match=r"error: .*pickle.*--allow-pickle"):  # the message, no traceback
        main([*argv, "--buffer", str(tmp_path / "final_buffer.pkl")])
    (row,) = main([*argv, "--buffer", str(tmp_path / "final_buffer.pkl"), "--allow-pickle"])
    for key, value in diagnostics.history[0].items():
        assert row[key] == pytest.approx(value, rel=1e-6), key


def test_cli_module_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "sb3_pmac.diagnostics", "--help"], capture_output=True, text=True, check=True, timeout=120
    )
    assert "AGENT_ZIP" in result.stdout and "--upto" in result.stdout


# ------------------------------------------------------------------------------- callback without an eval env (rl-zoo3)
def _diagnostics_run(env, tmp_path, **callback_kwargs) -> tuple[PMAC, ModelDiagnosticsCallback]:
    """150 steps (model first trained at step 61) with a callback that builds its own evaluation env."""
    agent = make_agent(env=env)
    callback = ModelDiagnosticsCallback(eval_freq=50, seed=0, **{**CALLBACK_SIZES, "horizon": 2, **callback_kwargs})
    agent.learn(150, callback=callback)
    return agent, callback


def test_callback_builds_its_env_from_the_agents_env_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    agent, callback = _diagnostics_run(TOY_ID, tmp_path, csv_path="out/diagnostics.csv")  # PMAC("MlpPolicy", TOY_ID)
    assert agent.env_id == TOY_ID
    assert isinstance(callback.eval_env.unwrapped, ToyEnv) and callback.eval_env is not agent.get_env()
    assert [row["timesteps"] for row in callback.history] == [100, 150]
    assert callback.csv_path == str(tmp_path / "out" / "diagnostics.csv")  # relative to the cwd at construction
    monkeypatch.chdir(tmp_path.parent)
    with open(tmp_path / "out" / "diagnostics.csv", newline="") as file:
        assert [int(row["timesteps"]) for row in csv.DictReader(file)] == [100, 150]


def test_callback_builds_its_env_from_the_training_envs_spec(tmp_path):
    venv = VecNormalize(DummyVecEnv([lambda: gym.make(TOY_ID)]))  # a wrapped VecEnv, as rl-zoo3 builds them
    agent, callback = _diagnostics_run(venv, tmp_path)
    assert agent.env_id is None
    assert callback.eval_env.spec.id == TOY_ID and callback._eval_env_id == TOY_ID
    assert len(callback.history) == 2 and all(np.isfinite(value) for value in callback.history[-1].values())


def test_callback_builds_its_env_with_the_training_envs_kwargs_and_time_limit(tmp_path):
    """An env made with other dynamics (rl-zoo3's ``env_kwargs``) is evaluated on those dynamics, not the registered ones."""
    venv = DummyVecEnv([lambda: gym.make(TOY_ID, kink=0.5, max_steps=15, max_episode_steps=12)])
    _, callback = _diagnostics_run(venv, tmp_path)
    assert callback.eval_env.unwrapped.kink == 0.5 and callback.eval_env.unwrapped.max_steps == 15
    assert callback.eval_env.spec.max_episode_steps == 12
    given = ModelDiagnosticsCallback(gym.make(TOY_ID, kink=0.5, max_steps=15, max_episode_steps=12), eval_freq=50,
                                     seed=0, **{**CALLBACK_SIZES, "horizon": 2})  # fmt: skip
    make_agent(env=DummyVecEnv([lambda: gym.make(TOY_ID, kink=0.5, max_steps=15, max_episode_steps=12)])).learn(
        150, callback=given
    )
    assert callback.history == given.history  # the same rows as with that env passed by hand
    linear = ModelDiagnosticsCallback(gym.make(TOY_ID), eval_freq=50, seed=0, **{**CALLBACK_SIZES, "horizon": 2})
    make_agent(env=DummyVecEnv([lambda: gym.make(TOY_ID, kink=0.5, max_steps=15, max_episode_steps=12)])).learn(
        150, callback=linear
    )
    assert linear.history[-1]["local_obs_mse"] != callback.history[-1]["local_obs_mse"]  # the registered env differs


def test_callback_without_env_id_or_spec_asks_for_an_eval_env(tmp_path):
    with pytest.raises(ValueError, match="pass eval_env"):
        _diagnostics_run(DummyVecEnv([ToyEnv]), tmp_path)  # an env instance: no gymnasium spec
    with pytest.raises(ValueError, match="shape"):
        _diagnostics_run(TOY_ID, tmp_path, eval_env=gym.make("Pendulum-v1"))  # 3-d observations, the agent's are 2-d
    with pytest.raises(TypeError, match="VecEnv"):
        ModelDiagnosticsCallback(DummyVecEnv([ToyEnv]))  # type: ignore[arg-type]


def _subprocess_env() -> dict[str, str]:
    """This source tree first on the path of a subprocess."""
    repo = str(Path(__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)}


def _run_python(code: str, cwd, timeout: float = 120) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=_subprocess_env()
    )
    assert result.returncode == 0, f"STDOUT:\n{result.stdout[-3000:]}\nSTDERR:\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.mark.skipif(importlib.util.find_spec("rl_zoo3") is None, reason="rl-zoo3 not installed")
def test_rl_zoo3_creates_the_callback_from_hyperparameters(tmp_path):
    # in a subprocess: importing rl_zoo3 patches gymnasium for the whole process
    code = textwrap.dedent(
        """
        import torch as th
        from rl_zoo3.utils import get_callback_list
        from stable_baselines3.common.env_util import make_vec_env
        from sb3_pmac import PMAC
        from sb3_pmac.diagnostics import ModelDiagnosticsCallback

        hyperparams = {"callback": [{"sb3_pmac.diagnostics.ModelDiagnosticsCallback": {
            "eval_freq": 150, "n_local": 50, "n_global": 200, "n_trajectories": 5, "csv_path": "diag/diagnostics.csv"}}]}
        th.set_num_threads(1)
        (callback,) = get_callback_list(hyperparams)
        assert type(callback) is ModelDiagnosticsCallback and callback.eval_env is None and callback.eval_freq == 150
        model = PMAC("MlpPolicy", make_vec_env("InvertedPendulum-v5"), seed=0, **TINY)
        model.learn(150, callback=[callback])
        print(callback.eval_env.spec.id, [row["timesteps"] for row in callback.history])
        """
    )
    out = _run_python(f"TINY = {TINY_PMAC_KWARGS!r}\n{code}", tmp_path)
    assert out.split() == ["InvertedPendulum-v5", "[150]"]
    assert (tmp_path / "diag" / "diagnostics.csv").is_file()


ZOO_CONF = """
InvertedPendulum-v5:
  n_timesteps: 300
  policy: 'MlpPolicy'
  policy_kwargs: "dict(net_arch=[32, 32])"
  buffer_size: 10000
  batch_size: 32
  learning_starts: 100
  gradient_steps: 1
  model_train_freq: 100
  rollout_batch_size: 200
  ensemble_size: 3
  n_elites: 2
  dynamics_kwargs:
    hidden_sizes: [32, 32]
    weight_decays: null
  model_trainer_kwargs:
    max_epochs: 3
  callback:
    - sb3_pmac.diagnostics.ModelDiagnosticsCallback:
        eval_freq: 100
        n_local: 100
        n_global: 500
        n_trajectories: 10
        csv_path: diagnostics/InvertedPendulum-v5/pmac/seed_0/diagnostics.csv
        seed: 0
"""


@pytest.mark.skipif(importlib.util.find_spec("rl_zoo3") is None, reason="rl-zoo3 not installed")
def test_rl_zoo3_train_with_the_callback_in_the_yaml_file(tmp_path):
    (tmp_path / "pmac_diagnostics.yml").write_text(ZOO_CONF)
    args = ["train", "--algo", "pmac", "--env", "InvertedPendulum-v5", "-conf", "pmac_diagnostics.yml"]
    args += ["--seed", "0", "--num-threads", "1", "-f", "logs"]
    result = subprocess.run(
        [sys.executable, "-m", "sb3_pmac.zoo", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**_subprocess_env(), "MPLBACKEND": "Agg"},
    )
    assert result.returncode == 0, f"STDOUT:\n{result.stdout[-3000:]}\nSTDERR:\n{result.stderr[-3000:]}"
    assert "model/" in result.stdout and "local_obs_mse" in result.stdout  # the SB3 logger's table
    with open(tmp_path / "diagnostics" / "InvertedPendulum-v5" / "pmac" / "seed_0" / "diagnostics.csv", newline="") as file:
        reader = csv.DictReader(file)
        rows = list(reader)
    assert reader.fieldnames == csv_columns(1)  # InvertedPendulum: rollout horizon 1
    assert [int(row["timesteps"]) for row in rows] == [200, 300]  # the model is first trained at step 101
    assert all(math.isfinite(float(value)) for row in rows for value in row.values())


def test_callback_refuses_another_kind_of_csv_before_training(tmp_path):
    monitor = tmp_path / "monitor.csv"
    monitor.write_text('#{"t_start": 0.0, "env_id": "Toy"}\nr,l,t\n1.0,10,0.1\n')
    before = monitor.read_bytes()
    agent = make_agent(env=TOY_ID)
    callback = ModelDiagnosticsCallback(eval_freq=50, seed=0, csv_path=monitor, **{**CALLBACK_SIZES, "horizon": 2})
    with pytest.raises(ValueError, match=r"monitor\.csv"):
        agent.learn(150, callback=callback)
    assert agent.num_timesteps == 0 and monitor.read_bytes() == before  # refused at the start, the file untouched


def test_callback_warns_when_its_csv_holds_rows_of_another_run(tmp_path):
    """A second run into the same file warns when training starts; a run continued on its own rows does not."""
    path = tmp_path / "diagnostics.csv"
    sizes = {**CALLBACK_SIZES, "horizon": 2}

    def two_runs_warnings(record) -> list[str]:
        return [str(w.message) for w in record if "rows of two runs" in str(w.message)]

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        first = make_agent()
        callback = ModelDiagnosticsCallback(ToyEnv(), eval_freq=50, csv_path=path, seed=0, **sizes)
        first.learn(150, callback=callback)  # rows at 100 and 150
        first.learn(50, callback=callback, reset_num_timesteps=False)  # starts at its last row, 150: one run
    assert two_runs_warnings(record) == []
    with open(path, newline="") as file:
        assert [int(row["timesteps"]) for row in csv.DictReader(file)] == [100, 150, 200]
    second = make_agent(seed=1)
    with pytest.warns(UserWarning, match=r"already holds 3 rows after step 0, .*up to step 200.*rows of two runs"):
        second.learn(100, callback=ModelDiagnosticsCallback(ToyEnv(), eval_freq=50, csv_path=path, seed=0, **sizes))


def test_predictions_keep_the_precision_of_float64_observations():
    # (model_prediction="sample" goes through ProbabilisticEnsemble.sample, whose float64 sum test_dynamics checks)
    from sb3_pmac.diagnostics.metrics import _predict

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        agent = PMAC("MlpPolicy", "Pendulum-v1", **TINY_PMAC_KWARGS, seed=0)
    observations = np.array([[1e4, 2e4, 5e4], [1e4 + 1e-3, -3e4, 7e4]])  # float32 spacing at 5e4: 0.004
    actions = np.zeros((2, 1))
    next_obs, _ = _predict(agent, observations, actions, "mean")
    with th.no_grad():
        mean, _ = agent.dynamics_model.predict(th.as_tensor(observations, dtype=th.float32), th.zeros(2, 1))
    change = next_obs - observations  # exactly the elites' mean change, added in float64
    np.testing.assert_allclose(change, mean.mean(dim=0)[:, :-1].double().numpy(), rtol=1e-6, atol=1e-9)
    # a float32 sum would leave changes that are multiples of the float32 spacing of the observations
    spacing = np.spacing(observations.astype(np.float32)).astype(np.float64)
    ratio = change / spacing
    assert np.abs(ratio - np.round(ratio)).max() > 1e-3


def test_buffer_version_counts_with_upto_counts_transitions_of_every_env() -> None:
    """``upto`` counts transitions (positions x envs) as the whole buffer's counts do, not positions."""
    from sb3_pmac.buffers import PolicyVersionedReplayBuffer
    from sb3_pmac.diagnostics.transitions import buffer_version_counts

    obs_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    act_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    buffer = PolicyVersionedReplayBuffer(100, obs_space, act_space, device="cpu", n_envs=2)
    for steps in (5, 3):
        if buffer.n_written > 0:
            buffer.start_new_version()
        for _ in range(steps):
            buffer.add(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 2)), np.zeros(2), np.zeros(2), [{}] * 2)
    versions, counts = buffer_version_counts(buffer, upto=7)
    np.testing.assert_array_equal(versions, [0, 1])
    np.testing.assert_array_equal(counts, [10, 4])  # positions x n_envs, as buffer.version_counts()
    np.testing.assert_array_equal(buffer_version_counts(buffer, None)[1], buffer.version_counts()[1])


def test_newest_k_of_zero_is_refused():
    from sb3_pmac.diagnostics.schema import check_newest_k

    assert check_newest_k([5, 1, 5]) == (5, 1)
    with pytest.raises(ValueError, match="positive"):
        check_newest_k([1, 0])
