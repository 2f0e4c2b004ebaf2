import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import TINY_PMAC_KWARGS
from gymnasium import spaces
from gymnasium.envs.classic_control.pendulum import PendulumEnv
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger, configure

from sb3_pmac import MBPO, PMAC
from sb3_pmac.termination import HopperTermination, NeverTerminate

TINY = TINY_PMAC_KWARGS


def pendulum(**kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no termination function for Pendulum
        return PMAC("MlpPolicy", "Pendulum-v1", **{**TINY, **kwargs})


# ---------------------------------------------------------------------------------------------- construction
def test_shorthand_env_id_and_hopper_presets():
    model = PMAC("Hopper-v4", buffer_size=1000)
    assert model.policy_class.__name__ == "SACPolicy" or "MlpPolicy" in str(model.policy_class)
    assert model.env_id == "Hopper-v4"
    assert model.rollout_horizon == (20, 100, 1, 15)
    assert isinstance(model.termination_fn, HopperTermination)
    assert model.observation_space.shape == (11,)
    # Table 2 defaults
    assert (model.learning_starts, model.gradient_steps, model.batch_size) == (5000, 20, 256)
    assert (model.real_ratio, model.model_train_freq, model.adaptation_rate) == (0.05, 250, 0.9)
    assert (model.dynamics_model.ensemble_size, model.dynamics_model.n_elites) == (7, 5)
    assert model.dynamics_model.hidden_sizes == [200, 200, 200, 200]
    assert [layer.out_features for layer in model.actor.latent_pi if hasattr(layer, "out_features")] == [256, 256]
    # horizon schedule in use, epochs counted from the end of the 5000 warm-up steps as in MBPO's code:
    # h = min(max(1 + (e - 20) / 80 * 14, 1), 15) with e = (t - 5000) / 1000
    for steps, horizon in [(0, 1), (25_000, 1), (26_000, 1), (31_000, 2), (60_000, 7), (65_000, 8), (100_000, 14),
                           (105_000, 15), (300_000, 15)]:  # fmt: skip
        model.num_timesteps = steps
        assert model.current_rollout_horizon() == horizon
    model.learning_starts = 0  # the same formula without a warm-up
    model.num_timesteps = 60_000
    assert model.current_rollout_horizon() == 8


@pytest.mark.parametrize(
    "env_id, obs_dim, horizon",
    [
        ("Humanoid-v5", 45, (20, 300, 1, 25)),
        ("Humanoid-v4", 45, (20, 300, 1, 25)),
        ("Ant-v5", 27, (20, 100, 1, 25)),
        ("Ant-v4", 27, (20, 100, 1, 25)),
        ("Walker2d-v5", 17, 1),
        ("HalfCheetah-v4", 17, 1),
        ("Pusher-v5", 23, 1),
    ],
)
def test_presets_per_task(env_id, obs_dim, horizon):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = PMAC(env_id, buffer_size=1000)
    assert model.observation_space.shape == (obs_dim,)
    assert model.rollout_horizon == horizon


def test_the_users_env_kwargs_win_over_a_presets():
    """Ant-v5's preset leaves the contact forces out (27 dims); asking for them back gives gymnasium's 105."""
    from sb3_pmac.env_presets import make_preset_env

    assert make_preset_env("Ant-v5").observation_space.shape == (27,)
    with_forces = make_preset_env("Ant-v5", {"include_cfrc_ext_in_observation": True})
    assert with_forces.observation_space.shape == (105,) and with_forces.unwrapped._include_cfrc_ext_in_observation


def test_truncated_humanoid_keeps_the_positions_asked_for():
    """Humanoid-v4 with its x, y positions in the observation: truncated to every position and velocity (47), not 45."""
    from sb3_pmac.env_presets import make_preset_env

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        env = make_preset_env("Humanoid-v4", {"exclude_current_positions_from_observation": False})
        obs, _ = env.reset(seed=0)
    data = env.unwrapped.data
    assert obs.shape == (47,)
    np.testing.assert_allclose(obs, np.concatenate([data.qpos, data.qvel]))  # qpos (24) then qvel (23), complete


def test_namespaced_ids_get_no_preset():
    """Another package's env named like a paper task (``my_ns/Humanoid-v4``) keeps its observations and horizon 1."""
    import gymnasium as gym

    from sb3_pmac.env_presets import get_preset, make_preset_env

    env_id = "pmac_ns/Humanoid-v4"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point="gymnasium.envs.mujoco.humanoid_v4:HumanoidEnv")
    assert get_preset(env_id) is None and get_preset("Humanoid-v4") is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert make_preset_env(env_id).observation_space.shape == (376,)  # not MBPO's 45 entries
        model = PMAC(env_id, buffer_size=1000)
    assert model.observation_space.shape == (376,) and model.rollout_horizon == 1


def test_explicit_arguments_override_presets():
    model = PMAC("Hopper-v4", buffer_size=1000, rollout_horizon=3, termination_fn=NeverTerminate(), learning_starts=10)
    assert model.rollout_horizon == 3 and isinstance(model.termination_fn, NeverTerminate) and model.learning_starts == 10
    model = PMAC("Hopper-v4", buffer_size=1000, rollout_horizon=[10, 20, 2, 4])  # YAML lists work
    assert model.rollout_horizon == (10, 20, 2, 4)


class UnknownToyEnv(PendulumEnv):
    """A continuous env no termination function is registered for."""


def test_sb3_form_and_unknown_env_warning():
    with pytest.warns(UserWarning, match="termination"):
        model = PMAC("MlpPolicy", gym.wrappers.TimeLimit(UnknownToyEnv(), 200), **TINY)
    assert isinstance(model.termination_fn, NeverTerminate)
    assert model.rollout_horizon == 1


def test_mbpo_is_uniform():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = MBPO("MlpPolicy", "Pendulum-v1", **TINY)
    assert not model.adapt_model_training and not model.adapt_rollout_starts
    assert pendulum().adapt_model_training and pendulum().adapt_rollout_starts
    ablation = pendulum(adapt_rollout_starts=False)
    assert ablation.adapt_model_training and not ablation.adapt_rollout_starts


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(adaptation_rate=0.0), "adaptation_rate"),
        (dict(adaptation_rate=1.1), "adaptation_rate"),
        (dict(real_ratio=-0.1), "real_ratio"),
        (dict(real_ratio=1.5), "real_ratio"),
        (dict(n_elites=8, ensemble_size=7), "n_elites"),
        (dict(model_train_freq=0), "model_train_freq"),
        (dict(model_train_freq=True), "model_train_freq"),  # a bool is no count
        (dict(rollout_batch_size=-5), "rollout_batch_size"),
        (dict(epoch_length=0), "epoch_length"),
        (dict(model_retain_epochs=0), "model_retain_epochs"),
        (dict(model_buffer_size=0), "model_buffer_size"),
        (dict(ensemble_size=0, n_elites=0), "ensemble_size"),
        (dict(rollout_horizon=(100, 20, 1, 15)), "horizon"),
        (dict(rollout_horizon=(1, 15, 20)), "horizon"),
        (dict(rollout_horizon=0), "horizon"),
        (dict(optimize_memory_usage=True), "optimize_memory_usage"),
        (dict(gradient_steps=-2), "gradient_steps"),
        (dict(gradient_steps=2.5), "gradient_steps"),
        (dict(gradient_steps=True), "gradient_steps"),
        (dict(learning_starts=-1), "learning_starts"),
        (dict(dynamics_kwargs=dict(ensemble_size=3, device="cpu")), r"dynamics_kwargs cannot hold device .*, ensemble_size"),
        (dict(model_trainer_kwargs=dict(model=None)), "model_trainer_kwargs cannot hold model"),
        (dict(max_train_repeat_per_step=0), "max_train_repeat_per_step"),
        (dict(max_train_repeat_per_step=2.5), "max_train_repeat_per_step"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pendulum(**kwargs)


class DictObsEnv(gym.Env):
    observation_space = spaces.Dict({"a": spaces.Box(-1, 1, (2,))})
    action_space = spaces.Box(-1, 1, (1,))


class ImageObsEnv(gym.Env):
    observation_space = spaces.Box(0, 255, (32, 32, 3), np.uint8)
    action_space = spaces.Box(-1, 1, (1,))


@pytest.mark.parametrize(
    "env, match",
    [
        ("CartPole-v1", "continuous"),
        (gym.make("CartPole-v1"), "continuous"),
        (DictObsEnv(), "Dict"),
        (ImageObsEnv(), "image"),
    ],
)
def test_unsupported_spaces(env, match):
    with pytest.raises(ValueError, match=match):
        PMAC("MlpPolicy", env)


# ---------------------------------------------------------------------------------------------- Algorithm 2 schedule
def test_mixture_advances_once_per_interaction_epoch():
    model = pendulum(seed=0)
    model.learn(300)
    # model steps at 101, 151, 201, 251 (train() runs once more than learning_starts transitions are stored)
    assert model._n_model_steps == 4
    assert model.policy_version == model.replay_buffer.current_version == 4
    versions, counts = model.replay_buffer.version_counts()
    np.testing.assert_array_equal(versions, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(counts, [101, 50, 50, 50, 49])
    np.testing.assert_allclose(model.policy_mixture.weights(versions)[-1], 0.1)
    # MBPO's buffer is versioned the same way (for diagnostics) but samples uniformly
    assert model.model_buffer.size() > 0 and model.model_buffer.capacity == 200 * 1 * 20 * 1


class IterativeAlgorithm1:
    """The reference: Algorithm 1 as earlier releases ran it, one list of weights updated at every model step."""

    def __init__(self, alpha):
        self.alpha, self.versions, self.weights = alpha, [0], [1.0]  # the first policy starts with weight 1

    def add_policy(self):
        self.weights = [self.alpha * w for w in self.weights]  # lines 2-4
        self.weights.append((1 - self.alpha) * sum(self.weights) / self.alpha)  # Eq. (4)
        self.versions.append(self.versions[-1] + 1)

    def drop_versions_before(self, version):
        keep = [i for i, v in enumerate(self.versions) if v >= version]
        total = sum(self.weights[i] for i in keep)
        self.versions, self.weights = [self.versions[i] for i in keep], [self.weights[i] / total for i in keep]

    def probabilities(self, versions):
        weights = np.array([self.weights[self.versions.index(v)] for v in versions])
        return weights / weights.sum()

    def effective_number_of_policies(self):
        weights = np.array(self.weights) / sum(self.weights)
        return 1 / np.sum(weights**2)


@pytest.mark.parametrize("alpha", [0.5, 0.9])
def test_probabilities_match_the_iterative_algorithm_1(alpha):
    """At every model step (the buffer wraps around: old versions drop out), the same as the old iteration."""
    model = pendulum(adaptation_rate=alpha, buffer_size=180, seed=0)
    reference, checked = IterativeAlgorithm1(alpha), []
    model_step = model._model_step

    def checked_model_step():
        reference.add_policy()
        model_step()
        buffer = model.replay_buffer
        reference.drop_versions_before(buffer.oldest_version)
        assert reference.versions[-1] == model.policy_version == buffer.current_version
        versions, counts = buffer.version_counts()
        expected = reference.probabilities(versions)
        np.testing.assert_allclose(model.policy_mixture.probabilities(versions, counts), expected, rtol=1e-12)
        held = np.arange(buffer.oldest_version, model.policy_version + 1)
        np.testing.assert_array_equal(held, reference.versions)
        effective = model.policy_mixture.effective_number_of_policies(held)
        assert effective == pytest.approx(reference.effective_number_of_policies(), rel=1e-12)
        checked.append(versions)

    model._model_step = checked_model_step
    model.learn(350)
    assert len(checked) == 5 and checked[-1][0] > 0  # model steps at 101, ..., 301; version 0 overwritten


def versions_of(model, batch_inds):
    return model.replay_buffer.policy_versions[batch_inds]


#: (adapt_model_training, adapt_rollout_starts) of PMAC, MBPO and the paper's two ablations (Appendix C.1)
SWITCHES = {"pmac": (True, True), "mbpo": (False, False), "ablation_rollout_only": (False, True),
            "ablation_model_only": (True, False)}  # fmt: skip


@pytest.mark.parametrize("algo", list(SWITCHES))
def test_model_data_and_rollout_starts_follow_the_mixture(algo):
    """Each switch decides its own selection only: the model's training data, the rollout starts."""
    adapt_model_training, adapt_rollout_starts = SWITCHES[algo]
    kwargs = dict(adaptation_rate=0.5, model_train_size=40_000, seed=1)
    kwargs.update(adapt_model_training=adapt_model_training, adapt_rollout_starts=adapt_rollout_starts)
    model = pendulum(**kwargs)
    model.learn(400)
    assert model._last_model_info.n_train + model._last_model_info.n_holdout == 40_000
    versions, counts = model.replay_buffer.version_counts()
    with_data = counts > 0
    weights = model.policy_mixture.probabilities(versions[with_data])
    uniform = counts[with_data] / counts[with_data].sum()

    # Model training data: the trainer's sample_ids are buffer indices (n_envs = 1)
    captured = {}
    original_train = model.model_trainer.train

    def spy_train(*columns, sample_ids=None, **kwargs):
        captured["ids"] = sample_ids
        return original_train(*(column[:500] for column in columns), sample_ids=sample_ids[:500], **kwargs)

    model.model_trainer.train = spy_train
    model.train_dynamics_model()
    drawn = np.bincount(versions_of(model, captured["ids"]), minlength=versions.max() + 1)[versions[with_data]]
    freq = drawn / drawn.sum()
    expected, other = (weights, uniform) if adapt_model_training else (uniform, weights)
    assert np.abs(freq - expected).max() < 0.01
    assert np.abs(freq - other).max() > 0.05  # the two distributions are distinguishable here

    # Rollout starts: drawn from the buffer with the mixture (PMAC) or uniformly (MBPO)
    captured_starts = {}
    original_sample = model.replay_buffer.sample_indices_by_mixture

    def spy_sample(batch_size, mixture):
        batch_inds, env_inds = original_sample(batch_size, mixture)
        captured_starts["ids"] = batch_inds
        return batch_inds, env_inds

    model.replay_buffer.sample_indices_by_mixture = spy_sample
    model.rollout_batch_size = 50_000
    model.rollout()
    drawn = np.bincount(versions_of(model, captured_starts["ids"]), minlength=versions.max() + 1)[versions[with_data]]
    freq = drawn / drawn.sum()
    expected, other = (weights, uniform) if adapt_rollout_starts else (uniform, weights)
    assert np.abs(freq - expected).max() < 0.01 and np.abs(freq - other).max() > 0.05


def test_the_horizon_schedule_reaches_the_rollouts_and_the_model_buffer():
    model = pendulum(seed=4, rollout_horizon=(0, 2, 1, 3), epoch_length=100, model_retain_epochs=2)
    seen = []
    model_step = model._model_step

    def recorded_model_step():
        model_step()
        seen.append((model.num_timesteps, model._last_rollout_info.horizon, model.model_buffer.capacity))
        seen_logged.append(model.logger.name_to_value["rollout/model_horizon"])

    seen_logged: list[float] = []
    model._model_step = recorded_model_step
    model.learn(350)
    # epoch e = (t - 100) / 100 at the model steps t = 101, 151, ...: horizon floor(1 + e (3 - 1) / 2), at most 3;
    # capacity = 200 rollouts x horizon x (100 / 50 model steps per epoch) x 2 retained epochs = 800 x horizon
    assert seen == [(101, 1, 800), (151, 1, 800), (201, 2, 1600), (251, 2, 1600), (301, 3, 2400)]
    assert seen_logged == [1, 1, 2, 2, 3]


@pytest.mark.parametrize("cls", [PMAC, MBPO])
def test_bounded_model_training_budget_and_selection(cls):
    # alpha 0.5, 50 steps per version: the mixture's effective support is 50 * 1.5 / 0.5 = 150 transitions
    kwargs = {**TINY, "adaptation_rate": 0.5, "model_trainer_kwargs": dict(max_grad_steps=7, patience=100), "seed": 2}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = cls("MlpPolicy", "Pendulum-v1", **kwargs)
    assert model.model_training == "bounded"
    model.learn(400)
    info = model._last_model_info
    assert info.n_train + info.n_holdout == model.model_training_rows() == 150 and info.grad_steps == 7
    assert {float(s["step"]) for s in model.model_trainer.optimizer.state.values()} == {7.0 * model._n_model_steps}

    captured = {}
    original_train = model.model_trainer.train

    def spy_train(*columns, sample_ids=None, **kw):
        captured["ids"] = sample_ids
        return original_train(*columns, sample_ids=sample_ids, **kw)

    model.model_trainer.train = spy_train
    model.train_dynamics_model()
    versions, counts = model.replay_buffer.version_counts()
    probs = model.data_mixture(model.adapt_model_training).probabilities(versions, counts)
    drawn_versions = versions_of(model, captured["ids"])
    for version, count, p in zip(versions, counts, probs, strict=True):
        mine = captured["ids"][drawn_versions == version]
        assert np.floor(150 * p) <= len(mine) <= np.ceil(150 * p)  # per-version frequencies of the mixture
        assert len(np.unique(mine)) == min(len(mine), count)  # no repeats while the version has unused data
    if cls is PMAC:  # the newest version with data holds (1 - alpha) of the weight of the versions with data
        assert abs(probs[-1] - 0.5) < 1e-9


@pytest.mark.parametrize("n_envs", [1, 2])
def test_full_model_training_is_exact_mbpo(n_envs):
    from stable_baselines3.common.env_util import make_vec_env

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        env = make_vec_env("Pendulum-v1", n_envs=n_envs, seed=0)
        model = MBPO("MlpPolicy", env, **{**TINY, "model_trainer_kwargs": {}}, model_training="full")
    assert model.model_trainer.max_epochs is None and model.model_trainer.max_grad_steps is None
    model.learn(300)
    captured = {}
    model.model_trainer.train = lambda *columns, sample_ids=None, **kw: captured.setdefault("ids", sample_ids)
    model.train_dynamics_model()
    # every stored transition once (ids are position x n_envs + env: all 300 transitions of the n_envs envs)
    np.testing.assert_array_equal(np.sort(captured["ids"]), np.arange(300))
    with pytest.raises(ValueError, match="model_training"):
        PMAC("MlpPolicy", "Pendulum-v1", model_training="all")
    with pytest.raises(ValueError, match="model_train_size"):
        PMAC("MlpPolicy", "Pendulum-v1", model_training="full", model_train_size=100)


def test_sac_batches_mix_real_and_model_data():
    model = pendulum(seed=2, batch_size=100, real_ratio=0.25)
    model.learn(200)
    from sb3_pmac.mixed_sampler import MixedReplaySampler

    sampler = MixedReplaySampler(model.replay_buffer, model.model_buffer, model.real_ratio)
    assert sampler.split(100) == (25, 75)
    # Mark the model data so that its share in a batch can be counted
    model.model_buffer.rewards[:] = 1e6
    batch = sampler.sample(100)
    assert int((batch.rewards[:, 0] == 1e6).sum()) == 75
    # floor(batch x ratio) of the exact product: 100 x 0.29 is 28.999999999999996 in floating point
    for ratio, real in ((0.29, 29), (0.57, 57), (0.58, 58), (0.05, 5), (0.999, 99)):
        assert MixedReplaySampler(model.replay_buffer, model.model_buffer, ratio).split(100) == (real, 100 - real)
    assert MixedReplaySampler(model.replay_buffer, model.model_buffer, 0.05).split(256) == (12, 244)  # the paper's


def rows_found(rows: th.Tensor, stored: th.Tensor, atol: float = 0.0) -> th.Tensor:
    """Which of ``rows`` ``[n, d]`` equal (within ``atol``) a row of ``stored`` ``[m, d]``."""
    if len(stored) == 0:
        return th.zeros(len(rows), dtype=th.bool)
    return ((rows[:, None, :] - stored[None]).abs() <= atol).all(-1).any(-1)


def spy_on_sac_batches(monkeypatch, check) -> None:
    """Call ``check(batches)`` on every stack of batches the fast SAC path trains on, when it is drawn."""
    from sb3_pmac.fast_sac import training

    original = training.sample_batches

    def spy(sampler, gradient_steps, batch_size, env=None):
        batches = original(sampler, gradient_steps, batch_size, env)
        check(batches)
        return batches

    monkeypatch.setattr(training, "sample_batches", spy)


def test_learn_trains_sac_on_real_ratio_real_and_the_rest_model_transitions(monkeypatch):
    """Algorithm 2, line 11, in the agent: every update's batch holds floor(B x real_ratio) real transitions."""
    model = pendulum(seed=2, batch_size=100, real_ratio=0.25, gradient_steps=2)
    splits = []

    def check(batches):  # a real transition's next state is in the real buffer, a model one's only in the model buffer
        real = th.as_tensor(model.replay_buffer.next_observations[: model.replay_buffer.size(), 0])
        fake = model.model_buffer.next_observations[: model.model_buffer.size()]
        for batch in batches.next_observations:  # [batch_size, obs_dim] per update
            in_real, in_model = rows_found(batch, real), rows_found(batch, fake)
            splits.append((int(in_real.sum()), int(in_model.sum()), int((in_real & in_model).sum())))

    spy_on_sac_batches(monkeypatch, check)
    model.learn(200)
    assert len(splits) == 2 * (200 - 100)  # 2 updates per step after the warm-up, the model trained before the first
    assert set(splits) == {(25, 75, 0)}


def test_model_transitions_are_normalized_like_the_real_ones_with_vecnormalize(monkeypatch):
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    venv = VecNormalize(make_vec_env("Pendulum-v1", n_envs=2, seed=0), gamma=0.99)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = PMAC("MlpPolicy", venv, seed=0, **{**TINY, "real_ratio": 0.25, "batch_size": 40})
    checked = []

    def check(batches):  # real rows (the first 10 of each batch) and model rows, taken back to raw units, are stored ones
        buffer, real = model.model_buffer, model.replay_buffer
        if buffer.size() == 0:
            return
        for part, stored in (
            (slice(0, 10), th.as_tensor(real.next_observations[: real.size()].reshape(-1, 3))),
            (slice(10, 40), buffer.next_observations[: buffer.size()]),
        ):
            normalized = batches.next_observations[:, part].reshape(-1, 3)
            obs = th.as_tensor(venv.unnormalize_obs(normalized.numpy()))
            assert rows_found(obs, stored, atol=1e-4).all() and not rows_found(normalized, stored).any()
        rewards = batches.rewards[:, 10:].reshape(-1) * np.sqrt(venv.ret_rms.var + venv.epsilon)
        assert rows_found(rewards[:, None], buffer.rewards[: buffer.size(), None], atol=1e-4).all()
        checked.append(batches.next_observations.shape[0] * 30)

    spy_on_sac_batches(monkeypatch, check)
    model.learn(300)
    assert abs(venv.obs_rms.mean).max() > 0.1 and venv.ret_rms.var > 1.5  # (a normalization that changes the values)
    assert sum(checked) == 30 * 100  # 100 updates after the warm-up (2 envs: 200 steps), 30 model rows each
    # rollouts start from raw stored states (the actor normalizes them itself: rollout_policy)
    model.model_buffer.reset()
    model.rollout_bounds_margin = None
    model.rollout()  # horizon 1: every row is a branch's first step
    starts = model.model_buffer.observations[: model.model_buffer.size()]
    assert len(starts) == 200 and rows_found(starts, th.as_tensor(model.replay_buffer.observations[:150].reshape(-1, 3))).all()


@pytest.mark.parametrize("vec_normalize", [False, True])
def test_the_model_trains_on_stored_transitions_in_raw_units(vec_normalize):
    """Each training row is (s, a, r, s') of one stored transition: raw observations and rewards, actions in [-1, 1]."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    env = make_vec_env("Pendulum-v1", n_envs=2, seed=0)
    if vec_normalize:
        env = VecNormalize(env, gamma=0.99)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = PMAC("MlpPolicy", env, seed=0, **TINY)
    trained_on = []
    train = model.model_trainer.train

    def spy(observations, actions, rewards, next_observations, **kwargs):
        buffer, size = model.replay_buffer, model.replay_buffer.size()
        stored = np.concatenate([buffer.observations[:size], buffer.actions[:size], buffer.rewards[:size, :, None],
                                 buffer.next_observations[:size]], axis=-1).reshape(size * 2, -1)  # fmt: skip
        rows = np.concatenate([observations, actions, np.reshape(rewards, (-1, 1)), next_observations], axis=1)
        assert rows_found(th.as_tensor(rows), th.as_tensor(stored)).all()
        trained_on.append(rows)
        return train(observations, actions, rewards, next_observations, **kwargs)

    model.model_trainer.train = spy
    model.learn(300)
    rows = np.concatenate(trained_on)
    assert len(trained_on) == 4  # model steps at 102, 152, 202, 252 (2 envs: 50 steps of all envs per version)
    assert np.abs(rows[:, 2]).max() > 2 and np.abs(rows[:, 7]).max() > 2  # raw angular velocities (|.| <= 8)
    assert np.abs(rows[:, 3]).max() <= 1 and np.abs(rows[:, 3]).max() > 0.9  # actions in SB3's [-1, 1] scale
    # Pendulum's reward of the row's own s and env action 2a: the columns are in their places
    np.testing.assert_allclose(rows[:, 4], -(np.arctan2(rows[:, 1], rows[:, 0]) ** 2) - 0.1 * rows[:, 2] ** 2
                               - 0.001 * (2 * rows[:, 3]) ** 2, rtol=1e-4, atol=1e-4)  # fmt: skip


def test_model_rollouts_run_the_current_actor_and_the_termination_rule():
    """The rows of a model step's rollouts: actions drawn from the current actor, dones from the env's rule."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = PMAC("MlpPolicy", "Hopper-v4", seed=0, **{**TINY, "rollout_batch_size": 2000, "rollout_horizon": 3})
        model.learn(250)
    model.rollout_bounds_margin = None  # (the barely trained model's predictions leave the data's range: keep them)
    model.model_buffer.reset()
    info = model.rollout()
    buffer, n = model.model_buffer, model.model_buffer.size()
    assert n == info.n_transitions > 2000  # every branch's first step, and the steps of those that did not end
    obs, actions, next_obs, dones = buffer.observations[:n], buffer.actions[:n], buffer.next_observations[:n], buffer.dones[:n]
    expected = HopperTermination()(obs, actions, next_obs)
    assert th.equal(dones.bool(), expected.bool()) and 0 < int(dones.sum()) < n
    # SB3's actor: a = tanh(u), u ~ N(mean(s), std(s)): the standardized u of the stored actions are N(0, 1)
    with th.no_grad():
        mean, log_std, _ = model.actor.get_action_dist_params(obs)
    z = (th.atanh(actions.clamp(-1 + 1e-6, 1 - 1e-6)) - mean) / log_std.exp()
    assert abs(float(z.mean())) < 0.05 and abs(float(z.std()) - 1) < 0.05


# ---------------------------------------------------------------------------------------------- logging
class KeysCallback(BaseCallback):
    def __init__(self):
        super().__init__()
        self.keys: set[str] = set()

    def _on_step(self) -> bool:
        self.keys.update(self.model.logger.name_to_value.keys())
        return True


def test_logger_keys(tmp_path):
    model = pendulum(seed=3)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    callback = KeysCallback()
    model.learn(450, callback=callback, log_interval=1)
    expected = {
        "train/actor_loss",
        "train/critic_loss",
        "train/ent_coef_loss",
        "train/model_loss",
        "train/model_holdout_loss",
        "train/n_elites",
        "rollout/model_horizon",
        "rollout/model_buffer_size",
        "rollout/nan_predictions_dropped",
        "time/model_train_s",
        "time/rollout_s",
        "time/sac_s",
    }
    assert expected <= callback.keys
    header = (tmp_path / "progress.csv").read_text().splitlines()[0].split(",")
    assert "train/model_holdout_loss" in header and "rollout/model_horizon" in header


def logged_model_step(model) -> dict:
    """The values the model step logs, for the agent's current state."""
    logger = Logger(folder=None, output_formats=[])
    model.set_logger(logger)
    model._log_model_step()
    return dict(logger.name_to_value)


def test_model_step_logs_the_values_its_keys_name():
    model = pendulum(seed=3, rollout_horizon=2)
    model.learn(450)
    values, info = logged_model_step(model), model._last_model_info
    assert (values["train/model_loss"], values["train/model_holdout_loss"]) == (info.train_loss, info.holdout_mse)
    assert values["train/model_holdout_nll"] == info.holdout_nll and values["train/n_elites"] == 5
    # the last model step came at step 401: all 401 stored rows (below the bound of 50 x 19 = 950)
    assert values["train/model_train_rows"] == info.n_train + info.n_holdout == 401
    assert values["train/policy_version"] == model.policy_version == 7  # (450 - 100) / 50 interaction epochs
    # Algorithm 1's weights over versions 0..k by hand: the warm-up alpha^k, version i (1-alpha) alpha^(k-i)
    k, alpha = 7, 0.9
    weights = np.array([alpha**k] + [(1 - alpha) * alpha ** (k - i) for i in range(1, k + 1)])
    assert weights.sum() == pytest.approx(1.0)
    assert values["train/mixture_effective_policies"] == pytest.approx(1 / np.sum(weights**2))
    assert (values["rollout/model_horizon"], values["rollout/model_buffer_size"]) == (2, model.model_buffer.size())
    assert 1 < values["rollout/model_rollout_length"] <= 2  # branches of 1 or 2 steps
    assert values["time/model_train_s"] == model._timings["model_train"] > 0


def test_tv_mixture_logs_its_distances_and_the_newest_share():
    model = pendulum(seed=3, mixture="tv")
    model.learn(450)
    values, distances = logged_model_step(model), model._last_tv_distances
    assert len(distances) == 7  # versions 0..6 hold data, the current one (7) none yet
    for name, value in (("mean", np.mean(distances)), ("min", np.min(distances)), ("max", np.max(distances))):
        assert values[f"train/mixture_tv_{name}"] == pytest.approx(value)
    assert values["train/mixture_tv_min"] < values["train/mixture_tv_max"]
    weights = model.policy_mixture.weights(np.arange(8))
    assert weights[7] == 0 and values["train/mixture_newest_share"] == pytest.approx(weights[6])  # the newest chunk's


def test_mixture_keys_only_where_a_mixture_selects_data():
    for cls, adaptive in ((PMAC, True), (MBPO, False)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model = cls("MlpPolicy", "Pendulum-v1", seed=0, **{**TINY, "learning_starts": 60})
        callback = KeysCallback()
        model.learn(160, callback=callback)
        assert "train/policy_version" in callback.keys  # the versions are kept (and logged) for both
        assert ("train/mixture_effective_policies" in callback.keys) == adaptive, cls.__name__


# ---------------------------------------------------------------------------------------------- progress bar
def test_progress_bar_counts_the_steps(capsys):
    model = pendulum(seed=6, learning_starts=50)
    model.learn(120, progress_bar=True)
    assert model.num_timesteps == 120 and "120/120" in capsys.readouterr().out  # SB3's bar, driven to the end
    model.learn(30, reset_num_timesteps=False)
    assert model.num_timesteps == 150 and "/" not in capsys.readouterr().out  # no bar unless asked


# ---------------------------------------------------------------------------------------------- learning
def random_returns(env: gym.Env, n_episodes: int) -> list[float]:
    returns = []
    for episode in range(n_episodes):
        env.reset(seed=1000 + episode)
        env.action_space.seed(episode)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return returns


def test_learns_inverted_pendulum():
    """A short PMAC run (2000 steps, reduced sizes) clearly beats a random policy on InvertedPendulum-v5."""
    from stable_baselines3.common.evaluation import evaluate_policy

    model = PMAC(
        "MlpPolicy",
        "InvertedPendulum-v5",
        learning_starts=300,
        rollout_batch_size=5000,
        gradient_steps=5,
        model_trainer_kwargs=dict(max_epochs=10),
        policy_kwargs=dict(net_arch=[64, 64]),
        seed=2,
    )
    model.learn(2000)
    eval_env = gym.make("InvertedPendulum-v5")
    eval_env.reset(seed=123)
    mean_return, _ = evaluate_policy(model, eval_env, n_eval_episodes=5, deterministic=True, warn=False)
    random_mean = float(np.mean(random_returns(eval_env, 20)))
    assert random_mean < 12
    # measured here: about 35-40 after 2000 steps (SAC alone, same settings: about 100; both solve it later)
    assert mean_return > max(20.0, 2.5 * random_mean), (mean_return, random_mean)


@pytest.mark.slow
def test_learns_pendulum_slow():
    """Pendulum with longer training: PMAC reaches a swing-up return (random: about -1200)."""
    from stable_baselines3.common.evaluation import evaluate_policy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = PMAC("MlpPolicy", "Pendulum-v1", learning_starts=1000, rollout_batch_size=20_000, gradient_steps=10, seed=0)
    model.learn(10_000)
    eval_env = gym.make("Pendulum-v1")
    mean_return, _ = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True, warn=False)
    assert float(np.mean(random_returns(eval_env, 10))) < -900
    assert mean_return > -400, mean_return


def test_tensorboard_log_names(tmp_path):
    pytest.importorskip("tensorboard")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        PMAC("MlpPolicy", "Pendulum-v1", tensorboard_log=str(tmp_path), **{**TINY, "learning_starts": 60}).learn(120)
        MBPO("MlpPolicy", "Pendulum-v1", tensorboard_log=str(tmp_path), **{**TINY, "learning_starts": 60}).learn(120)
    runs = sorted(path.name for path in tmp_path.iterdir())
    assert runs == ["MBPO_1", "PMAC_1"]
    assert any(path.name.startswith("events.out.tfevents") for path in (tmp_path / "PMAC_1").iterdir())


class NearlyConstantFeature(gym.ObservationWrapper):
    """Pendulum plus a 4th feature of spread ``eps`` around 1 (e.g. a sensor bias that barely drifts)."""

    def __init__(self, env, eps, dtype=np.float32):
        super().__init__(env)
        self.eps = eps
        self.observation_space = spaces.Box(-np.inf, np.inf, (4,), dtype)

    def observation(self, observation):  # computed in float32, handed out in the space's dtype
        return (
            np.r_[observation, 1.0 + self.eps * self.np_random.standard_normal()]
            .astype(np.float32)
            .astype(self.observation_space.dtype)
        )


def test_rollouts_stay_within_the_range_of_the_real_data():
    # a feature of spread 1e-4 (a thousand float32 steps: not round-off) is standardized by its small std: the model's
    # noise on it (raw targets) sends the next inputs far away and the rollouts diverge (|obs| ~ 1e11 without the bounds)
    env = gym.wrappers.TimeLimit(NearlyConstantFeature(PendulumEnv(), 1e-4), 200)
    kwargs = {**TINY, "model_trainer_kwargs": {}, "rollout_horizon": 5, "seed": 0}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = PMAC("MlpPolicy", env, termination_fn=NeverTerminate(), **kwargs)
        model.learn(400)
    low, high = model.rollout_state_bounds()
    n = model.replay_buffer.size()
    real = np.concatenate([model.replay_buffer.observations[:n, 0], model.replay_buffer.next_observations[:n, 0]])
    width = real.max(axis=0) - real.min(axis=0)
    np.testing.assert_allclose(low.numpy(), real.min(axis=0) - width, rtol=1e-6)
    np.testing.assert_allclose(high.numpy(), real.max(axis=0) + width, rtol=1e-6)
    stored = model.model_buffer.next_observations[: model.model_buffer.size()]
    assert ((stored >= low) & (stored <= high)).all()
    assert model._out_of_bounds_dropped > 0.5 * 6 * 200  # most predictions of the 6 model steps left the range
    assert model.logger.name_to_value["rollout/out_of_bounds_dropped"] == model._out_of_bounds_dropped
    assert sum("left the real data's range" in str(w.message) for w in caught) == 1

    # the same run without the bounds stores the diverged states (what the bounds are for)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unbounded = PMAC("MlpPolicy", env, termination_fn=NeverTerminate(), **kwargs)
        unbounded.rollout_bounds_margin = None
        unbounded.learn(400)
    assert unbounded.model_buffer.next_observations[: unbounded.model_buffer.size()].abs().max() > 1e3


@pytest.mark.parametrize("eps", [0.0, 1e-9])  # exactly constant, and constant up to float32 round-off
def test_model_rollouts_keep_a_constant_feature_at_its_value(eps):
    env = gym.wrappers.TimeLimit(NearlyConstantFeature(PendulumEnv(), eps), 200)
    kwargs = {**TINY, "rollout_horizon": 3, "seed": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = PMAC("MlpPolicy", env, termination_fn=NeverTerminate(), **kwargs)
        model.learn(200)
    n = model.replay_buffer.size()
    real = model.replay_buffer.next_observations[:n, 0, 3]
    mask, values = model.rollout_constant_features()
    assert mask.tolist() == [False, False, False, True] and real.min() <= values[3].item() <= real.max()
    stored = model.model_buffer.next_observations[: model.model_buffer.size()]
    assert model.model_buffer.size() > 0 and (stored[:, 3] == values[3].float()).all()
    assert (stored[:, :3].std(dim=0) > 0.01).all()  # the other features as the model predicts them

    with warnings.catch_warnings():  # MBPO's rollouts: the model's noise on the constant
        warnings.simplefilter("ignore")
        as_predicted = PMAC("MlpPolicy", env, termination_fn=NeverTerminate(), **kwargs)
        as_predicted.rollout_fix_constant_features = False
        as_predicted.learn(200)
    assert as_predicted.rollout_constant_features() is None
    stored = as_predicted.model_buffer.next_observations[: as_predicted.model_buffer.size()]
    assert stored[:, 3].std() > 1e-4


def test_standardized_targets_keep_the_nearly_constant_feature_in_range_and_survive_save_load(tmp_path):
    env = gym.wrappers.TimeLimit(NearlyConstantFeature(PendulumEnv(), 1e-4), 200)
    dynamics_kwargs = {**TINY["dynamics_kwargs"], "normalize_targets": True}
    kwargs = {**TINY, "model_trainer_kwargs": {}, "rollout_horizon": 5, "seed": 0, "dynamics_kwargs": dynamics_kwargs}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = PMAC("MlpPolicy", env, termination_fn=NeverTerminate(), **kwargs)
        model.learn(400)
    # (test_rollouts_stay_within_the_range_of_the_real_data: raw targets drop most predictions here)
    assert model._out_of_bounds_dropped == 0 and model.model_buffer.size() == 6 * 200 * 5
    assert not [w for w in caught if "left the real data's range" in str(w.message)]
    stored = model.model_buffer.next_observations[: model.model_buffer.size()]
    assert (stored[:, 3] - 1).abs().max() < 1e-3  # the feature stays where the data is

    model.save(tmp_path / "agent")
    loaded = PMAC.load(tmp_path / "agent")
    assert loaded.dynamics_model.normalize_targets
    inputs = th.randn(5, 5)
    with th.no_grad():
        for actual, expected in zip(loaded.dynamics_model(inputs), model.dynamics_model(inputs), strict=True):
            assert th.equal(actual, expected)


def test_a_feature_constant_up_to_round_off_is_treated_as_constant():
    """A float32 feature 1 +- 1e-7 (one float32 step) behaves as an exactly constant one: not scaled by the model,
    not bounded in the rollouts (its std used to scale the model's noise into inputs 1e6 stds out, and its 2e-7 wide
    range dropped most branches: 1200 of 6000 here)."""
    kwargs = {**TINY, "model_trainer_kwargs": {}, "rollout_horizon": 5, "seed": 0}
    runs = {}
    for eps, dtype in ((1e-7, np.float32), (0.0, np.float32), (1e-7, np.float64)):
        env = gym.wrappers.TimeLimit(NearlyConstantFeature(PendulumEnv(), eps, dtype), 200)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runs[eps, dtype] = PMAC("MlpPolicy", env, termination_fn=NeverTerminate(), **kwargs).learn(400)
    model, exact = runs[1e-7, np.float32], runs[0.0, np.float32]
    # the same feature handed out as float64 (as MuJoCo envs hand out theirs): the float32 model cannot resolve it either
    as_float64 = runs[1e-7, np.float64]
    assert as_float64.replay_buffer.observations.dtype == np.float64
    assert as_float64.rollout_state_bounds()[1][3].item() == np.inf
    assert as_float64.model_buffer.size() > 0.8 * 6 * 200 * 5
    n = model.replay_buffer.size()
    assert np.ptp(model.replay_buffer.observations[:n, 0, 3]) > 0  # not exactly constant
    assert model.dynamics_model.input_normalizer.std[0, 3].item() == 1.0
    low, high = model.rollout_state_bounds()
    assert (low[3].item(), high[3].item()) == (-np.inf, np.inf) and np.isfinite(low[:3].numpy()).all()
    # (the tiny model drops some branches on Pendulum's own features, as without the 4th feature)
    assert model.model_buffer.size() > 0.8 * 6 * 200 * 5
    assert abs(model._out_of_bounds_dropped - exact._out_of_bounds_dropped) <= 0.1 * exact._out_of_bounds_dropped + 10
    assert exact._out_of_bounds_dropped < 0.15 * 6 * 200 * 5


def test_rollout_state_bounds_follow_new_data_and_keep_float64_precision():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = PMAC("MlpPolicy", gym.make("Hopper-v5"), **{**TINY, "learning_starts": 1000, "buffer_size": 300})
    model.learn(250)
    buffer = model.replay_buffer
    assert buffer.observations.dtype == np.float64

    def full_scan():
        stored = np.concatenate([buffer.observations[: buffer.size(), 0], buffer.next_observations[: buffer.size(), 0]])
        return stored.min(axis=0), stored.max(axis=0)

    low, high = model.rollout_state_bounds()
    data_low, data_high = full_scan()
    np.testing.assert_array_equal(low.numpy(), data_low - (data_high - data_low))
    # kept up to date from the new rows only, also when the buffer wraps around (300 positions, 420 written)
    model.learn(170, reset_num_timesteps=False)
    assert buffer.full and buffer.n_written == 420
    low, high = model.rollout_state_bounds()
    cached_range = model._data_range_cache[2:]
    assert (cached_range[0] <= full_scan()[0]).all() and (cached_range[1] >= full_scan()[1]).all()  # new rows in
    model._data_range_cache = None  # a fresh scan sees the stored rows only (extremes of overwritten ones go)
    np.testing.assert_array_equal(model._real_data_range()[0], full_scan()[0])
    # a feature of range 100 at magnitude 1e8 (float32 spacing: 8): the bounds stay in float64 and hold the data
    buffer.observations[:, 0, 1] = 1e8 + np.random.default_rng(0).uniform(0, 100, buffer.buffer_size)
    buffer.next_observations[:, 0, 1] = buffer.observations[:, 0, 1]
    model._data_range_cache = None
    low, high = model.rollout_state_bounds()
    assert low.dtype == th.float64
    assert (buffer.observations[:, 0, 1] >= low[1].item()).all() and (buffer.observations[:, 0, 1] <= high[1].item()).all()
    width = np.ptp(buffer.observations[:, 0, 1])
    assert abs(high[1].item() - low[1].item() - 3 * width) < 1e-6  # 3 widths, exact (float32 would be 8s off)
    # ... a range of 1 there is below what the float32 model resolves (round-off, 8 epsilons: 95): unbounded
    buffer.observations[:, 0, 1] = 1e8 + np.random.default_rng(0).uniform(0, 1, buffer.buffer_size)
    buffer.next_observations[:, 0, 1] = buffer.observations[:, 0, 1]
    model._data_range_cache = None
    low, high = model.rollout_state_bounds()
    assert (low[1].item(), high[1].item()) == (-np.inf, np.inf)


def test_the_tv_mixture_gets_max_rate():
    from sb3_pmac.tv_mixture import TVPolicyMixture

    model = PMAC("MlpPolicy", "Pendulum-v1", **{**TINY_PMAC_KWARGS, "mixture": "tv", "max_rate": 0.1})
    assert isinstance(model.policy_mixture, TVPolicyMixture) and model.policy_mixture.max_rate == 0.1


def test_real_ratio_bounds_are_inclusive():
    assert pendulum(real_ratio=0.0).real_ratio == 0.0  # SAC on model data only
    assert pendulum(real_ratio=1.0).real_ratio == 1.0
    for bad in (-0.01, 1.01):
        with pytest.raises(ValueError, match="real_ratio must be in"):
            pendulum(real_ratio=bad)


def test_model_step_logs_grad_steps_and_each_drop_count():
    model = pendulum(seed=3, rollout_horizon=2)
    model.learn(450)
    model._nan_predictions_dropped, model._out_of_bounds_dropped = 3, 5  # distinct counts
    values, info = logged_model_step(model), model._last_model_info
    assert info.grad_steps != info.epochs  # (so that the two keys tell their values apart)
    assert (values["train/model_grad_steps"], values["train/model_epochs"]) == (info.grad_steps, info.epochs)
    assert (values["rollout/nan_predictions_dropped"], values["rollout/out_of_bounds_dropped"]) == (3, 5)


def test_out_of_bounds_warning_above_ten_percent_of_predictions(monkeypatch):
    import sb3_pmac.model_step as model_step
    from sb3_pmac.rollouts import RolloutInfo

    model = pendulum(seed=3, rollout_horizon=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model.learn(150)  # a trained model and real data to draw start states from
    for dropped, warns in ((10, False), (11, True)):  # of 100 predictions
        info = RolloutInfo(horizon=1, n_start_states=100, n_transitions=100 - dropped, n_terminated=0,
                           nan_predictions_dropped=0, mean_length=1.0, out_of_bounds_dropped=dropped)  # fmt: skip
        monkeypatch.setattr(model_step, "rollout_model", lambda *args, _info=info, **kwargs: _info)
        model._out_of_bounds_warned = False
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.rollout()
        assert any("left the real data's range" in str(w.message) for w in caught) == warns, dropped
