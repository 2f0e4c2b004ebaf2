"""The TV policy mixture (``mixture="tv"``, the weighting of the authors' PDML code) and its distance bound."""

import math
import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import TINY_PMAC_KWARGS
from gymnasium import spaces
from scipy import stats
from stable_baselines3.common.logger import configure

from sb3_pmac import PMAC
from sb3_pmac.buffers import PolicyVersionedReplayBuffer
from sb3_pmac.policy_mixture import PolicyMixture
from sb3_pmac.tv_mixture import UNIFORM_ACTION_LOG_STD, TVPolicyMixture, actor_gaussian, gaussian_tv_upper_bound


def tv_mixture(distances, max_rate=0.02, eps=1e-6) -> TVPolicyMixture:
    """A mixture with the distances of versions 0..len(distances)-1 measured (version len(distances) has none)."""
    mixture = TVPolicyMixture(max_rate=max_rate, eps=eps)
    mixture.set_distances(np.arange(len(distances)), distances)
    return mixture


# ---------------------------------------------------------------------------------------------- weights
def test_weights_exact_when_an_older_version_outweighs_max_rate():
    # Older versions: 1/xi = 2, 4, 10 -> 2/16, 4/16, 10/16. The newest chunk (version 3, no distance needed) gets
    # max(0.02 / 0.98, 10/16) = 10/16: as much as the closest older version.
    mixture = tv_mixture([0.5, 0.25, 0.1], eps=1e-12)
    probs = mixture.probabilities(np.arange(4))
    np.testing.assert_allclose(probs, np.array([2, 4, 10, 10]) / 26, rtol=1e-9)


def test_weights_exact_when_max_rate_wins():
    # 100 older versions at the same distance weigh 1/100 each, below max_rate / (1 - max_rate): the newest chunk
    # holds exactly the share max_rate and the others share the rest equally.
    for max_rate in (0.02, 0.3):
        mixture = tv_mixture(np.full(100, 0.3), max_rate=max_rate)
        probs = mixture.probabilities(np.arange(101))
        assert probs[-1] == pytest.approx(max_rate, rel=1e-12)
        np.testing.assert_allclose(probs[:-1], (1 - max_rate) / 100, rtol=1e-12)
    # max_rate=0: the newest chunk weighs as much as the closest older version
    probs = tv_mixture([0.2, 0.1], max_rate=0.0, eps=1e-12).probabilities(np.arange(3))
    np.testing.assert_allclose(probs, np.array([5, 10, 10]) / 25, rtol=1e-9)


def test_newest_is_the_newest_version_with_data():
    mixture = tv_mixture([0.4, 0.2, 0.1, 0.05])  # versions 0..4, 0..3 measured
    # At a model step the new version (4) has no data: version 3, the chunk just collected, is the newest one
    probs = mixture.probabilities(np.arange(4))
    inverse = 1 / (np.array([0.4, 0.2, 0.1]) + 1e-6)
    expected = np.append(inverse / inverse.sum(), max(0.02 / 0.98, inverse.max() / inverse.sum()))
    np.testing.assert_allclose(probs, expected / expected.sum(), rtol=1e-9)
    # The order of the versions passed does not matter
    order = np.array([2, 0, 3, 1])
    np.testing.assert_allclose(mixture.probabilities(order), probs[order], rtol=1e-12)
    # A single version with data gets every draw; counts are ignored (weights per version)
    np.testing.assert_allclose(mixture.probabilities(np.array([2])), [1.0])
    np.testing.assert_allclose(mixture.probabilities(np.arange(4), counts=np.array([1, 1000, 5, 7])), probs)
    # weights: the mixture as last measured (version 4, unmeasured, weighs 0), which is what the model step draws
    np.testing.assert_allclose(mixture.weights(np.arange(5)), np.append(probs, 0.0), rtol=1e-12)
    assert mixture.effective_number_of_policies(np.arange(5)) == pytest.approx(1 / np.sum(probs**2))


def test_identical_policies_get_equal_weights():
    for distance in (0.0, 0.37):
        probs = tv_mixture(np.full(6, distance)).probabilities(np.arange(7))
        np.testing.assert_allclose(probs[:-1], probs[0], rtol=1e-12)
        assert probs[-1] >= probs[0]


def test_weights_decrease_with_distance():
    rng = np.random.default_rng(0)
    distances = rng.uniform(0, 1, 50)
    probs = tv_mixture(distances).probabilities(np.arange(51))
    order = np.argsort(distances)
    assert np.all(np.diff(probs[:-1][order]) < 0)  # strictly monotonic: farther, lighter
    # a version moved far away loses weight, the others gain
    far = distances.copy()
    far[10] = 1.0
    moved = tv_mixture(far).probabilities(np.arange(51))
    assert moved[10] < probs[10] and np.all(np.delete(moved, 10) >= np.delete(probs, 10))
    assert probs[-1] == pytest.approx(probs[:-1].max())  # the newest chunk never weighs less than an older one


def test_log_space_many_versions_and_tiny_distances():
    distances = np.geomspace(1e-300, 1.0, 100_000)
    mixture = tv_mixture(distances, eps=1e-300)
    probs = mixture.probabilities(np.arange(100_000))
    assert np.all(np.isfinite(probs)) and probs.sum() == pytest.approx(1.0)
    assert np.all(np.diff(probs[:-1]) <= 0) and probs[-1] == pytest.approx(0.02)
    log_weights = mixture.log_weights(np.arange(100_001))
    assert np.all(np.isfinite(log_weights[:-1])) and log_weights[-1] == -np.inf
    # 1 / eps overflows float64 here (eps is subnormal): the weights are computed in log space
    probs = tv_mixture([0.0, 0.0, 1.0], eps=1e-320).probabilities(np.arange(4))
    np.testing.assert_allclose(probs, [1 / 3, 1 / 3, 0.0, 1 / 3], atol=1e-300)


def test_set_distances_replaces_and_state_roundtrip():
    mixture = tv_mixture([0.3, 0.2, 0.1, 0.4, 0.5])
    mixture.set_distances(np.array([2, 3, 4]), np.array([0.1, 0.2, 0.3]))  # versions 0 and 1 become unmeasured
    distances = mixture.distances(np.arange(6))
    assert np.isnan(distances[:2]).all() and np.isnan(distances[-1])
    np.testing.assert_array_equal(distances[2:5], [0.1, 0.2, 0.3])
    np.testing.assert_array_equal(mixture.measured_versions, [2, 3, 4])
    with pytest.raises(KeyError, match="No distance"):
        mixture.probabilities(np.arange(5))
    probs = mixture.probabilities(np.array([2, 3, 4]))
    # weights as last measured: the unmeasured versions weigh 0
    np.testing.assert_allclose(mixture.weights(np.arange(6)), [0.0, 0.0, *probs, 0.0], rtol=1e-12)
    clone = TVPolicyMixture()
    clone.load_state_dict(mixture.state_dict())
    assert clone.max_rate == mixture.max_rate
    np.testing.assert_array_equal(clone.measured_versions, [2, 3, 4])
    np.testing.assert_allclose(clone.probabilities(np.array([2, 3, 4])), probs)
    pickled = pickle.loads(pickle.dumps(mixture))
    np.testing.assert_allclose(pickled.weights(np.arange(6)), mixture.weights(np.arange(6)))
    # a state dict of an earlier release (held versions, NaN where none was measured) loads the measured ones
    old_state = {**mixture.state_dict(), "versions": np.arange(1, 6), "distances": [np.nan, 0.1, 0.2, 0.3, np.nan]}
    clone.load_state_dict({**old_state, "next_version": 6})
    np.testing.assert_array_equal(clone.measured_versions, [2, 3, 4])
    np.testing.assert_allclose(clone.probabilities(np.array([2, 3, 4])), probs)
    with pytest.raises(ValueError, match="TVPolicyMixture"):
        PolicyMixture().load_state_dict(mixture.state_dict())
    with pytest.raises(ValueError, match="Not a TVPolicyMixture"):
        TVPolicyMixture().load_state_dict(PolicyMixture().state_dict())
    # before any measurement every version weighs the same
    np.testing.assert_allclose(TVPolicyMixture().weights(np.array([0, 1])), [0.5, 0.5])


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda m: m.set_distances(np.array([0, 1]), np.array([0.1])), ValueError),
        (lambda m: m.set_distances(np.array([0, 0]), np.array([0.1, 0.2])), ValueError),
        (lambda m: m.set_distances(np.array([0]), np.array([-0.1])), ValueError),
        (lambda m: m.set_distances(np.array([0]), np.array([np.nan])), ValueError),
        (lambda m: m.set_distances(np.array([-1]), np.array([0.1])), ValueError),
        (lambda m: m.probabilities(np.array([9, 10])), KeyError),
        (lambda m: m.probabilities(np.array([], dtype=np.int64)), ValueError),
    ],
)
def test_bad_mixture_inputs(call, error):
    with pytest.raises(error):
        call(tv_mixture([0.1, 0.2]))


@pytest.mark.parametrize("kwargs", [dict(max_rate=1.0), dict(max_rate=-0.01), dict(max_rate=True), dict(eps=0.0)])
def test_bad_mixture_parameters(kwargs):
    with pytest.raises(ValueError, match="max_rate" if "max_rate" in kwargs else "eps"):
        TVPolicyMixture(**kwargs)


def test_policy_mixture_points_to_the_tv_class():
    with pytest.raises(ValueError, match="TVPolicyMixture"):
        PolicyMixture(mode="tv")


# ---------------------------------------------------------------------------------------------- the TV bound
def exact_tv_1d(mu1: float, s1: float, mu2: float, s2: float) -> float:
    """Closed form: the densities cross at the roots of a quadratic; TV is the mass difference between the roots."""
    if math.isclose(s1, s2):
        mid = (mu1 + mu2) / 2
        return abs(stats.norm.cdf(mid, mu1, s1) - stats.norm.cdf(mid, mu2, s2))
    # log N(x; mu1, s1) = log N(x; mu2, s2)  <=>  a x^2 + b x + c = 0
    a = 1 / (2 * s2**2) - 1 / (2 * s1**2)
    b = mu1 / s1**2 - mu2 / s2**2
    c = mu2**2 / (2 * s2**2) - mu1**2 / (2 * s1**2) + math.log(s2 / s1)
    x1, x2 = np.sort(np.roots([a, b, c]).real)
    mass = lambda mu, s: stats.norm.cdf(x2, mu, s) - stats.norm.cdf(x1, mu, s)  # noqa: E731
    return abs(mass(mu1, s1) - mass(mu2, s2))


def bound_1d(mu1, s1, mu2, s2) -> float:
    t = lambda v: th.tensor([[float(v)]])  # noqa: E731
    return float(gaussian_tv_upper_bound(t(mu1), t(math.log(s1)), t(mu2), t(math.log(s2)))[0])


def test_bound_against_closed_form_1d():
    rng = np.random.default_rng(1)
    for _ in range(300):
        mu1, mu2 = rng.normal(0, 1.5, 2)
        s1, s2 = np.exp(rng.uniform(-2.5, 1, 2))
        exact, bound = exact_tv_1d(mu1, s1, mu2, s2), bound_1d(mu1, s1, mu2, s2)
        assert exact - 1e-9 <= bound <= 1.0, (mu1, s1, mu2, s2, exact, bound)
        assert bound == pytest.approx(bound_1d(mu2, s2, mu1, s1), abs=1e-12)  # symmetric, like TV
    assert bound_1d(0.3, 0.5, 0.3, 0.5) == 0.0
    # Close policies: Pinsker is tight up to sqrt(2 pi) / 2 = 1.25 for a mean shift
    exact, bound = exact_tv_1d(0.0, 0.2, 0.01, 0.2), bound_1d(0.0, 0.2, 0.01, 0.2)
    assert bound / exact == pytest.approx(math.sqrt(2 * math.pi) / 2, rel=1e-3)
    # Far policies: the bound tends to 1 (Bretagnolle-Huber), never above
    assert 0.99 < bound_1d(0.0, 0.1, 5.0, 0.1) <= 1.0


def test_bound_takes_the_smaller_kl_direction_by_hand():
    """Values worked out by hand with the closed-form KL of two Gaussians, where the two directions differ."""
    # p = N(0, 1), q = N(0, 2^2): KL(p||q) = ln 2 + 1/8 - 1/2 = 0.318147, KL(q||p) = -ln 2 + 4/2 - 1/2 = 0.806853;
    # Pinsker on the smaller: sqrt(0.318147 / 2) = 0.398840 (Bretagnolle-Huber gives 0.522)
    kl = math.log(2) + 1 / 8 - 1 / 2
    assert bound_1d(0.0, 1.0, 0.0, 2.0) == pytest.approx(math.sqrt(kl / 2), rel=1e-7)  # (float32 inputs)
    assert bound_1d(0.0, 1.0, 0.0, 2.0) == pytest.approx(0.398840, abs=1e-6)
    # p = N(0, 1), q = N(3, 0.5^2): KL(p||q) = ln 0.5 + (1 + 9) / 0.5 - 1/2 = 18.807, KL(q||p) = ln 2 + 9.25 / 2 - 1/2
    # = 4.818147; Bretagnolle-Huber on the smaller: sqrt(1 - exp(-4.818147)) = 0.995950 (the larger gives 1 - 3e-9)
    kl = math.log(2) + 9.25 / 2 - 1 / 2
    assert bound_1d(0.0, 1.0, 3.0, 0.5) == pytest.approx(math.sqrt(1 - math.exp(-kl)), rel=1e-7)
    assert bound_1d(0.0, 1.0, 3.0, 0.5) == pytest.approx(0.995950, abs=1e-6)
    # several dimensions: the KLs add up over the dimensions before the bound
    two = gaussian_tv_upper_bound(th.zeros(1, 2), th.zeros(1, 2), th.zeros(1, 2), th.full((1, 2), math.log(2.0)))
    assert float(two[0]) == pytest.approx(math.sqrt(2 * (math.log(2) + 1 / 8 - 1 / 2) / 2), rel=1e-7)


@pytest.mark.parametrize("use_sde", [False, True])
def test_actor_gaussian_is_the_distribution_sb3_samples_from(use_sde):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = PMAC("MlpPolicy", "Pendulum-v1", seed=0, use_sde=use_sde, **TINY_PMAC_KWARGS)
    obs = th.as_tensor(np.random.default_rng(0).normal(size=(64, 3)), dtype=th.float32)
    with th.no_grad():
        mean, log_std = actor_gaussian(model.actor, obs)
        model.actor(obs, deterministic=False)  # SB3 sets up the Gaussian it samples (before tanh) from
    gaussian = model.actor.action_dist.distribution
    th.testing.assert_close(mean, gaussian.loc)
    th.testing.assert_close(log_std.exp(), gaussian.scale.expand_as(mean))


def test_tanh_squashing_keeps_tv():
    """SAC's actions are tanh of the Gaussian: TV between the squashed laws (integrated on (-1, 1)) is unchanged."""
    grid = np.linspace(-1 + 1e-12, 1 - 1e-12, 2_000_001)
    u = np.arctanh(grid)
    for mu1, s1, mu2, s2 in [(0.0, 1.0, 0.5, 0.6), (1.5, 0.3, 1.2, 0.5), (-0.4, 2.0, 0.1, 0.1)]:
        squashed_1 = stats.norm.pdf(u, mu1, s1) / (1 - grid**2)
        squashed_2 = stats.norm.pdf(u, mu2, s2) / (1 - grid**2)
        squashed_tv = 0.5 * np.trapezoid(np.abs(squashed_1 - squashed_2), grid)
        assert squashed_tv == pytest.approx(exact_tv_1d(mu1, s1, mu2, s2), abs=2e-4)


def test_bound_against_monte_carlo_in_several_dimensions():
    rng = np.random.default_rng(2)
    for _ in range(5):
        mean_p, mean_q = rng.normal(0, 0.5, (2, 6))
        log_std_p, log_std_q = rng.uniform(-1.5, 0.5, (2, 6))
        # TV = E_p[max(0, 1 - q/p)], 200k samples (standard error < 0.002)
        x = mean_p + np.exp(log_std_p) * rng.standard_normal((200_000, 6))
        log_ratio = (stats.norm.logpdf(x, mean_q, np.exp(log_std_q)) - stats.norm.logpdf(x, mean_p, np.exp(log_std_p))).sum(1)
        monte_carlo = np.mean(np.maximum(0.0, 1.0 - np.exp(log_ratio)))
        bound = float(gaussian_tv_upper_bound(*(th.as_tensor(v) for v in (mean_p, log_std_p, mean_q, log_std_q))))
        assert monte_carlo - 0.01 <= bound <= 1.0


def test_uniform_warm_up_stand_in():
    """Uniform actions on [-1, 1] are tanh of a logistic(0, 1/2): the Gaussian stand-in is at TV 0.054 of it."""
    assert math.exp(UNIFORM_ACTION_LOG_STD) == pytest.approx(math.pi / math.sqrt(12))
    u = np.linspace(-30, 30, 2_000_001)
    logistic, gaussian = stats.logistic.pdf(u, scale=0.5), stats.norm.pdf(u, scale=math.exp(UNIFORM_ACTION_LOG_STD))
    assert 0.5 * np.trapezoid(np.abs(logistic - gaussian), u) == pytest.approx(0.054, abs=1e-3)
    assert np.trapezoid(logistic * u**2, u) == pytest.approx(math.pi**2 / 12, rel=1e-6)  # matched variance


# ---------------------------------------------------------------------------------------------- buffer
def test_buffer_stores_policy_params():
    obs_space, action_space = spaces.Box(-1, 1, (3,), np.float32), spaces.Box(-1, 1, (2,), np.float32)
    buffer = PolicyVersionedReplayBuffer(10, obs_space, action_space, device="cpu", n_envs=2, store_policy_params=True)
    obs, zeros = np.zeros((2, 3), np.float32), np.zeros(2)
    buffer.set_policy_params(np.array([[0.1, 0.2], [0.3, 0.4]]), np.full((2, 2), -1.0))
    buffer.add(obs, obs, np.zeros((2, 2)), zeros, zeros, [{}, {}])
    buffer.add(obs, obs, np.zeros((2, 2)), zeros, zeros, [{}, {}])  # no parameters given: unknown
    np.testing.assert_allclose(buffer.policy_means[0], [[0.1, 0.2], [0.3, 0.4]])
    np.testing.assert_allclose(buffer.policy_log_stds[0], -1.0)
    assert np.isnan(buffer.policy_means[1]).all() and np.isnan(buffer.policy_log_stds[1]).all()
    clone = pickle.loads(pickle.dumps(buffer))
    np.testing.assert_array_equal(clone.policy_means[:1], buffer.policy_means[:1])
    # Without the option nothing is stored (no memory), set_policy_params is a no-op
    plain = PolicyVersionedReplayBuffer(10, obs_space, action_space, device="cpu")
    plain.set_policy_params(np.zeros((1, 2)), np.zeros((1, 2)))
    plain.add(obs[:1], obs[:1], np.zeros((1, 2)), zeros[:1], zeros[:1], [{}])
    assert plain.policy_means is None
    # A buffer pickled before the option existed loads without it
    state = plain.__dict__.copy()
    for key in ("store_policy_params", "policy_means", "policy_log_stds", "_pending_policy_params"):
        del state[key]
    old = PolicyVersionedReplayBuffer.__new__(PolicyVersionedReplayBuffer)
    old.__setstate__(state)
    assert not old.store_policy_params and old.policy_means is None


# ---------------------------------------------------------------------------------------------- PMAC, mixture="tv"
def pendulum(**kwargs) -> PMAC:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no termination function for Pendulum
        return PMAC("MlpPolicy", "Pendulum-v1", **{**TINY_PMAC_KWARGS, "mixture": "tv", **kwargs})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """PMAC with mixture='tv' after 400 steps (model steps at 101, 151, ..., 351), with the logged keys."""
    model = pendulum(seed=1)
    model.set_logger(configure(str(tmp_path_factory.mktemp("log")), ["csv"]))
    keys: set[str] = set()
    original_log = model._log_model_step

    def spy_log():
        original_log()
        keys.update(model.logger.name_to_value)

    model._log_model_step = spy_log
    model.learn(400)
    model._log_model_step = original_log
    return model, keys


def test_pmac_tv_construction(trained):
    model, keys = trained
    assert isinstance(model.policy_mixture, TVPolicyMixture) and model.policy_mixture.max_rate == 0.02
    assert model.mixture == "tv" and model.replay_buffer.store_policy_params
    assert model._n_model_steps == 6 and model.policy_version == 6
    # distances were measured at the last model step for the versions that had data (0..5), not for version 6
    distances = model.policy_mixture.distances(np.arange(7))
    assert np.all((distances[:-1] >= 0) & (distances[:-1] <= 1)) and np.isnan(distances[-1])
    np.testing.assert_array_equal(model.policy_mixture.measured_versions, np.arange(6))
    assert {"train/mixture_tv_mean", "train/mixture_tv_min", "train/mixture_tv_max", "train/mixture_newest_share"} <= keys
    # the warm-up transitions are recorded as the uniform stand-in, the others with the actor's parameters
    np.testing.assert_array_equal(model.replay_buffer.policy_log_stds[:100], np.float32(UNIFORM_ACTION_LOG_STD))
    assert not np.allclose(model.replay_buffer.policy_log_stds[101:400], UNIFORM_ACTION_LOG_STD)
    assert np.isfinite(model.replay_buffer.policy_means[:400]).all()


def test_stored_policy_params_are_the_collecting_actors_gaussian():
    """Without SAC updates the actor stays the collecting one: each stored mean/std is its Gaussian at that obs."""
    model = pendulum(seed=2, gradient_steps=0)
    model.learn(500)
    buffer = model.replay_buffer
    obs = th.as_tensor(buffer.observations[100:500, 0])
    with th.no_grad():
        mean, log_std = actor_gaussian(model.actor, obs)
    np.testing.assert_allclose(buffer.policy_means[100:500, 0], mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(buffer.policy_log_stds[100:500, 0], log_std.numpy(), rtol=1e-5, atol=1e-6)
    # and the stored actions were drawn from it: atanh(action) standardized is N(0, 1) (400 draws: standard errors
    # 0.05 of the mean and 0.035 of the std, the bounds more than 5 of them away)
    z = (np.arctanh(np.clip(buffer.actions[100:500, 0], -1 + 1e-6, 1 - 1e-6)) - mean.numpy()) / log_std.exp().numpy()
    assert abs(z.mean()) < 0.3 and abs(z.std() - 1) < 0.2


def test_tv_with_vecnormalize_compares_the_actors_on_the_observations_they_acted_on():
    """The stored Gaussian and the distances are the actor's on normalized observations, the buffer's are raw."""
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    venv = VecNormalize(DummyVecEnv([lambda: gym.make("Pendulum-v1")]), norm_reward=False, training=False)
    venv.obs_rms.mean, venv.obs_rms.var = np.array([0.5, -0.5, 3.0]), np.array([4.0, 4.0, 9.0])  # frozen, not identity
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = PMAC("MlpPolicy", venv, seed=3, **{**TINY_PMAC_KWARGS, "mixture": "tv", "learning_rate": 0.0})
    model.learn(250)  # SAC updates of learning rate 0: the actor that collected every version is the current one
    buffer = model.replay_buffer
    raw = buffer.observations[100:250, 0]
    with th.no_grad():
        mean, log_std = actor_gaussian(model.actor, th.as_tensor(venv.normalize_obs(raw)))
        raw_mean, _ = actor_gaussian(model.actor, th.as_tensor(raw))
    np.testing.assert_allclose(buffer.policy_means[100:250, 0], mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(buffer.policy_log_stds[100:250, 0], log_std.numpy(), rtol=1e-5, atol=1e-6)
    assert np.abs(raw_mean.numpy() - mean.numpy()).max() > 1e-2  # (raw observations would give another Gaussian)
    versions, distances = model._measure_tv_distances()
    assert list(versions) == [0, 1, 2, 3] and distances[0] > 0.1  # the random warm-up is far from the actor
    np.testing.assert_allclose(distances[1:], 0.0, atol=1e-6)  # the same actor on the same normalized states


def test_pmac_tv_distances_match_a_full_computation(trained):
    model, _ = trained
    np.random.seed(0)  # the draws below use numpy's global generator, left by whichever tests ran before
    buffer = model.replay_buffer
    versions, starts, lengths = buffer.version_ranges()
    model.tv_states_per_version = 4000
    try:
        measured_versions, measured = model._measure_tv_distances()
    finally:
        del model.tv_states_per_version  # back to the class default
    np.testing.assert_array_equal(measured_versions, versions)
    for version, start, length, distance in zip(versions, starts, lengths, measured, strict=True):
        rows = np.arange(start, start + length)
        obs = th.as_tensor(buffer.observations[rows, 0])
        mean, log_std = actor_gaussian(model.actor, obs)
        old = (th.as_tensor(buffer.policy_means[rows, 0]), th.as_tensor(buffer.policy_log_stds[rows, 0]))
        full = float(gaussian_tv_upper_bound(mean.detach(), log_std.detach(), *old).mean())
        assert distance == pytest.approx(full, abs=0.01), version


def test_pmac_tv_draws_follow_the_mixture(trained):
    model, _ = trained
    np.random.seed(0)  # the draws below use numpy's global generator, left by whichever tests ran before
    versions, counts = model.replay_buffer.version_counts()
    probs = model.policy_mixture.probabilities(versions)
    uniform = counts / counts.sum()
    assert np.abs(probs - uniform).max() > 0.05  # the test can tell the two apart

    captured = {}
    original_train = model.model_trainer.train

    def spy_train(*columns, sample_ids=None, **kwargs):
        captured["ids"] = sample_ids
        return original_train(*(column[:300] for column in columns), sample_ids=sample_ids[:300], **kwargs)

    model.model_trainer.train, model.model_train_size = spy_train, 40_000
    try:
        model.train_dynamics_model()  # model training data: 40k rows drawn per the tv probabilities
    finally:
        model.model_trainer.train, model.model_train_size = original_train, None
    drawn = np.bincount(model.replay_buffer.policy_versions[captured["ids"]], minlength=versions.max() + 1)[versions]
    assert np.abs(drawn / drawn.sum() - probs).max() < 0.01
    # rollout start states too
    starts = model.replay_buffer.sample_indices_by_mixture(40_000, model.data_mixture(model.adapt_rollout_starts))[0]
    drawn = np.bincount(model.replay_buffer.policy_versions[starts], minlength=versions.max() + 1)[versions]
    assert np.abs(drawn / drawn.sum() - probs).max() < 0.01


def test_pmac_tv_far_version_gets_less_weight(trained):
    model, _ = trained
    buffer = model.replay_buffer
    saved = buffer.policy_means.copy(), buffer.policy_log_stds.copy()
    saved_versions = model.policy_mixture.measured_versions
    saved_distances = model.policy_mixture.distances(saved_versions)
    try:
        versions, starts, lengths = buffer.version_ranges()
        # version 2 collected by the current actor itself (distance 0), version 3 by a policy far away (distance ~1)
        same = np.arange(starts[2], starts[2] + lengths[2])
        mean, log_std = actor_gaussian(model.actor, th.as_tensor(buffer.observations[same, 0]))
        buffer.policy_means[same, 0], buffer.policy_log_stds[same, 0] = mean.detach().numpy(), log_std.detach().numpy()
        buffer.policy_means[starts[3] : starts[3] + lengths[3]] += 10.0
        measured_versions, distances = model._measure_tv_distances()
        assert distances[2] < 1e-6 and distances[3] > 0.99
        model.policy_mixture.set_distances(measured_versions, distances)
        probs = model.policy_mixture.probabilities(versions[:-1])  # as at a model step: version 5 is the newest chunk
        assert probs[2] == probs[:-1].max() and probs[3] == probs.min()
    finally:
        buffer.policy_means[:], buffer.policy_log_stds[:] = saved
        model.policy_mixture.set_distances(saved_versions, saved_distances)


def test_pmac_tv_ablation_switches():
    # adapt_model_training=False: model data uniform, rollout starts per the tv mixture (distances still measured)
    model = pendulum(seed=3, adapt_model_training=False)
    model.learn(160)  # model steps at 101 and 151
    uniform = model.data_mixture(model.adapt_model_training)
    assert uniform is not model.policy_mixture and uniform is model.data_mixture(False)
    versions, counts = model.replay_buffer.version_counts()
    np.testing.assert_allclose(uniform.probabilities(versions, counts), counts / counts.sum())
    assert model.data_mixture(model.adapt_rollout_starts) is model.policy_mixture
    np.testing.assert_array_equal(model.policy_mixture.measured_versions, [0, 1])  # those with data at step 151
    assert np.all(np.isfinite(model.policy_mixture.distances(np.array([0, 1]))))
    assert np.isfinite(model.replay_buffer.policy_means[: model.replay_buffer.size()]).all()
    # both switches off (MBPO's data): no distances are measured
    off = pendulum(seed=4, adapt_model_training=False, adapt_rollout_starts=False)
    off.learn(160)
    assert off._last_tv_distances is None and len(off.policy_mixture.measured_versions) == 0
    assert np.isnan(off.policy_mixture.distances(np.arange(off.policy_version + 1))).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mixture="uniform"), "mixture"),
        (dict(mixture="TV"), "mixture"),
        (dict(max_rate=1.0), "max_rate"),
        (dict(max_rate=-0.1), "max_rate"),
        (dict(max_rate="0.02"), "max_rate"),
    ],
)
def test_pmac_bad_mixture_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pendulum(**kwargs)
