import pickle
from fractions import Fraction

import numpy as np
import pytest

from sb3_pmac.compat import legacy_policy_version
from sb3_pmac.policy_mixture import PolicyMixture, check_adaptation_rate
from sb3_pmac.tv_mixture import TVPolicyMixture


def iterative_algorithm_1(alpha: float, k: int) -> np.ndarray:
    """The weights of versions 0..k after k applications of Algorithm 1, step by step (the first starts at 1)."""
    weights = [1.0]
    for _ in range(k):
        weights = [alpha * w for w in weights]  # lines 2-4: every historical weight decays
        weights.append((1 - alpha) * sum(weights) / alpha)  # Eq. (4)
    return np.array(weights)


@pytest.mark.parametrize("alpha", [0.5, 0.9, 0.99])
def test_closed_form_equals_the_iteration(alpha):
    mixture = PolicyMixture(adaptation_rate=alpha)
    for k in range(40):
        expected = iterative_algorithm_1(alpha, k)
        versions = np.arange(k + 1)
        np.testing.assert_allclose(mixture.weights(versions), expected / expected.sum(), rtol=1e-12, atol=0)
        np.testing.assert_allclose(mixture.log_weights(versions), np.log(expected / expected.sum()), rtol=1e-12)
        # restricted to any subset (versions without data drop out): the same weights renormalised
        subset = versions[(versions % 3 == 0) | (versions == k)]
        kept = expected[subset]
        np.testing.assert_allclose(mixture.probabilities(subset), kept / kept.sum(), rtol=1e-12, atol=0)
        inverse_simpson = 1 / np.sum((expected / expected.sum()) ** 2)
        assert mixture.effective_number_of_policies(versions) == pytest.approx(inverse_simpson, rel=1e-12)


def test_exact_small_values_and_the_first_version_factor():
    # after k = 3 additions with alpha = 0.9: w = [0.729, 0.081, 0.09, 0.1]
    np.testing.assert_allclose(PolicyMixture(0.9).weights(np.arange(4)), [0.729, 0.081, 0.09, 0.1], rtol=1e-12)
    # w_i = (1 - alpha) alpha^(k-i) for i >= 1, but the first version keeps alpha^k: 1 / (1 - alpha) times more
    probs = PolicyMixture(0.5).probabilities(np.array([0, 1]))
    np.testing.assert_allclose(probs, [0.5, 0.5], rtol=1e-15)  # 0.5 vs (1 - 0.5) * 1
    probs = PolicyMixture(0.5).probabilities(np.array([1, 2]))
    np.testing.assert_allclose(probs, [1 / 3, 2 / 3], rtol=1e-15)
    probs = PolicyMixture(0.8).probabilities(np.array([0, 3]))
    np.testing.assert_allclose(probs, np.array([0.8**3, 0.2]) / (0.8**3 + 0.2), rtol=1e-14)
    # the order of the versions passed does not matter, counts are ignored (weights per version)
    mixture = PolicyMixture(0.7)
    order = np.array([3, 0, 5, 1])
    probs = mixture.probabilities(np.sort(order), counts=np.array([10, 1000, 5, 7]))
    np.testing.assert_allclose(mixture.probabilities(order), probs[np.argsort(np.argsort(order))], rtol=1e-15)


def test_uniform_mode_is_uniform_over_transitions():
    mixture = PolicyMixture(mode="uniform")
    counts = np.array([5000, 250, 250, 100])
    np.testing.assert_allclose(mixture.probabilities(np.arange(4), counts), counts / counts.sum())
    np.testing.assert_allclose(mixture.weights(np.arange(4), counts), counts / counts.sum())
    np.testing.assert_allclose(mixture.probabilities(np.array([7, 9])), [0.5, 0.5])  # no counts: equal
    assert mixture.effective_number_of_policies(np.arange(4), counts) == pytest.approx(
        1 / np.sum((counts / counts.sum()) ** 2)
    )
    with pytest.raises(ValueError, match="counts"):
        mixture.probabilities(np.arange(2), np.array([0, 0]))


def test_alpha_one_is_equal_weight_per_policy():
    mixture = PolicyMixture(1.0)
    np.testing.assert_allclose(mixture.weights(np.arange(5)), np.full(5, 0.2))
    np.testing.assert_allclose(mixture.probabilities(np.array([0, 10**12])), [0.5, 0.5])
    assert mixture.effective_number_of_policies(np.arange(5)) == pytest.approx(5.0)


def test_huge_version_ids_neither_underflow_nor_overflow():
    mixture = PolicyMixture(0.9)
    k = 10**15  # alpha^k underflows float64 (and k * log(alpha) loses the last digits): only id differences count
    versions = np.array([k - 2, k - 1, k])
    np.testing.assert_allclose(mixture.probabilities(versions), np.array([0.81, 0.9, 1.0]) / 2.71, rtol=1e-14)
    # 10^5 versions: the oldest weights are far below float64's range, still exact in log space
    versions = np.arange(100_000)
    log_w = mixture.log_weights(versions)
    assert np.all(np.isfinite(log_w))
    k = 99_999
    np.testing.assert_allclose(log_w[1], np.log(0.1) + (k - 1) * np.log(0.9), rtol=1e-9)
    np.testing.assert_allclose(log_w[-1], np.log(0.1), rtol=1e-9)
    np.testing.assert_allclose(log_w[0], k * np.log(0.9), rtol=1e-9)  # the first version: alpha^k
    weights = mixture.weights(versions)
    assert not np.any(np.isnan(weights))
    np.testing.assert_allclose(weights.sum(), 1.0)
    assert mixture.effective_number_of_policies(versions) == pytest.approx(1.9 / 0.1, rel=1e-6)  # (1+a)/(1-a)


def test_empty_and_invalid_versions():
    mixture = PolicyMixture(0.9)
    with pytest.raises(ValueError, match="No policy version"):
        mixture.probabilities(np.array([], dtype=np.int64))
    assert mixture.effective_number_of_policies(np.array([], dtype=np.int64)) == 0.0
    with pytest.raises(ValueError, match="non-negative"):
        mixture.probabilities(np.array([-1, 0]))


@pytest.mark.parametrize(
    "alpha", [0.0, -0.1, 1.5, float("nan"), "0.9", True, np.True_, np.float32("nan"), np.float64(1.5), np.int64(0), 1j]
)
def test_invalid_adaptation_rate(alpha):
    with pytest.raises(ValueError, match="adaptation_rate"):
        PolicyMixture(alpha)
    with pytest.raises(ValueError, match="adaptation_rate"):
        check_adaptation_rate(alpha)


@pytest.mark.parametrize("alpha", [np.float32(0.9), np.float64(0.5), np.float16(0.25), np.int64(1), 1, Fraction(1, 4)])
def test_any_real_adaptation_rate_in_range(alpha):
    rate = check_adaptation_rate(alpha)
    assert type(rate) is float and rate == float(alpha)
    mixture = PolicyMixture(alpha)
    assert type(mixture.adaptation_rate) is float and mixture.adaptation_rate == rate
    np.testing.assert_array_equal(mixture.weights(np.arange(3)), PolicyMixture(rate).weights(np.arange(3)))


def test_invalid_mode():
    with pytest.raises(ValueError, match="mode"):
        PolicyMixture(0.9, mode="tv-distance")  # type: ignore[arg-type]


def test_state_dict_and_pickle_roundtrip():
    mixture = PolicyMixture(0.7)
    clone = PolicyMixture()
    clone.load_state_dict(mixture.state_dict())
    assert clone.adaptation_rate == 0.7 and clone.mode == "exponential"
    np.testing.assert_array_equal(clone.weights(np.arange(3, 8)), mixture.weights(np.arange(3, 8)))
    pickled = pickle.loads(pickle.dumps(PolicyMixture(mode="uniform")))
    assert vars(pickled) == vars(PolicyMixture(mode="uniform"))
    # a state dict of an earlier release (with its version list) loads its settings
    clone.load_state_dict({"adaptation_rate": 0.5, "mode": "exponential", "versions": [3], "log_weights": [0.0]})
    assert clone.adaptation_rate == 0.5


def legacy_state(alpha: float, n_added: int, oldest: int) -> dict:
    """The pickled fields of an earlier release's PolicyMixture after n_added add_policy and a drop before oldest."""
    weights = iterative_algorithm_1(alpha, n_added - 1)[oldest:]
    log_w = np.log(weights / weights.sum())
    return {
        "adaptation_rate": alpha,
        "mode": "exponential",
        "_versions": np.concatenate([np.arange(n_added), np.zeros(32 - n_added, dtype=np.int64)]),
        "_stored": np.concatenate([np.zeros(oldest), log_w - 1.5, np.zeros(32 - n_added)]),
        "_start": oldest,
        "_end": n_added,
        "_offset": 1.5,
        "_next_version": n_added,
    }


def test_unpickling_a_mixture_of_an_earlier_release():
    state = legacy_state(0.9, n_added=7, oldest=2)
    mixture = PolicyMixture.__new__(PolicyMixture)
    mixture.__setstate__(state)
    assert vars(mixture).keys() == {"adaptation_rate", "mode", "_legacy_current_version"}
    # the weights it held are those of the closed form for its versions
    held = state["_versions"][2:7]
    np.testing.assert_allclose(mixture.log_weights(held), state["_stored"][2:7] + state["_offset"], rtol=1e-12)
    assert legacy_policy_version(mixture) == 6  # the agent takes the current version over
    assert vars(mixture).keys() == {"adaptation_rate", "mode"}
    with pytest.raises(ValueError, match="policy version"):
        legacy_policy_version(mixture)
    # the TV mixture kept the measured distance of each held version (NaN: not measured)
    tv_state = {
        "adaptation_rate": 1.0,
        "mode": "tv",
        "max_rate": 0.02,
        "eps": 1e-6,
        "_versions": np.arange(16),
        "_stored": np.array([np.nan, 0.3, 0.2, 0.1, np.nan, *np.zeros(11)]),
        "_start": 1,
        "_end": 5,
        "_offset": 0.0,
        "_next_version": 5,
    }
    tv = pickle.loads(pickle.dumps(TVPolicyMixture()))
    tv.__setstate__(tv_state)
    np.testing.assert_array_equal(tv.measured_versions, [1, 2, 3])
    np.testing.assert_array_equal(tv.distances(np.arange(5)), [np.nan, 0.3, 0.2, 0.1, np.nan])
    assert tv.max_rate == 0.02 and legacy_policy_version(tv) == 4
