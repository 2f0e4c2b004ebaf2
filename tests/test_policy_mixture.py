import numpy as np
import pytest

from sb3_pmac.policy_mixture import PolicyMixture


def closed_form_weights(alpha: float, k: int) -> np.ndarray:
    """Algorithm 1 after k additions beyond the first policy: w_0 = alpha^k, w_i = (1 - alpha) alpha^(k - i)."""
    weights = (1 - alpha) * alpha ** (k - np.arange(k + 1, dtype=np.float64))
    weights[0] = alpha**k
    return weights


@pytest.mark.parametrize("alpha", [0.5, 0.9, 0.99])
def test_matches_closed_form(alpha):
    mixture = PolicyMixture(adaptation_rate=alpha)
    for k in range(40):
        assert mixture.add_policy() == k
        np.testing.assert_allclose(mixture.weights, closed_form_weights(alpha, k), rtol=1e-10, atol=0)
    # w_i proportional to alpha^(k-i) among the versions after the first
    weights = mixture.weights
    np.testing.assert_allclose(weights[2:] / weights[1:-1], 1 / alpha, rtol=1e-10)


def test_step_by_step_algorithm_1():
    alpha = 0.9
    mixture = PolicyMixture(alpha)
    mixture.add_policy()
    np.testing.assert_allclose(mixture.weights, [1.0])
    for _ in range(10):
        before = mixture.weights
        mixture.add_policy()
        after = mixture.weights
        # old weights multiplied by alpha (Algorithm 1, lines 2-4)
        np.testing.assert_allclose(after[:-1], alpha * before, rtol=1e-12)
        # Eq. (4): new weight = (1 - alpha) * sum(decayed old) / alpha
        np.testing.assert_allclose(after[-1], (1 - alpha) * after[:-1].sum() / alpha, rtol=1e-12)
        # invariants: constant total, newest share 1 - alpha
        np.testing.assert_allclose(after.sum(), before.sum(), rtol=1e-12)
        np.testing.assert_allclose(after[-1] / after.sum(), 1 - alpha, rtol=1e-12)


def test_probabilities_per_policy_ignore_counts_and_renormalize():
    mixture = PolicyMixture(0.9)
    for _ in range(5):
        mixture.add_policy()
    versions = np.array([1, 2, 3])
    probs = mixture.probabilities(versions, counts=np.array([10, 1000, 5]))
    expected = mixture.weights[1:4] / mixture.weights[1:4].sum()
    np.testing.assert_allclose(probs, expected)
    with pytest.raises(KeyError):
        mixture.probabilities(np.array([7]))


def test_uniform_mode_is_uniform_over_transitions():
    mixture = PolicyMixture(mode="uniform")
    for _ in range(4):
        mixture.add_policy()
    counts = np.array([5000, 250, 250, 100])
    np.testing.assert_allclose(mixture.probabilities(np.arange(4), counts), counts / counts.sum())
    # Same object, same bookkeeping as the exponential mode
    assert mixture.current_version == 3 and mixture.n_policies == 4


def test_drop_versions_renormalizes():
    mixture = PolicyMixture(0.8)
    for _ in range(6):
        mixture.add_policy()
    full = mixture.weights
    assert mixture.drop_versions_before(2) == 2
    np.testing.assert_array_equal(mixture.versions, [2, 3, 4, 5])
    np.testing.assert_allclose(mixture.weights.sum(), 1.0)
    np.testing.assert_allclose(mixture.weights, full[2:] / full[2:].sum())
    # Adding after a drop keeps the invariants
    mixture.add_policy()
    np.testing.assert_allclose(mixture.weights.sum(), 1.0)
    np.testing.assert_allclose(mixture.weights[-1], 0.2)


def test_no_underflow_after_many_versions():
    mixture = PolicyMixture(0.9)
    for _ in range(100_000):
        mixture.add_policy()
    log_w = mixture.log_weights
    assert np.all(np.isfinite(log_w))
    # log w_1 = log(1 - alpha) + (k - 1) log(alpha): far below float64's range, still exact in log space
    k = 99_999
    np.testing.assert_allclose(log_w[1], np.log(0.1) + (k - 1) * np.log(0.9), rtol=1e-9)
    np.testing.assert_allclose(log_w[-1], np.log(0.1), rtol=1e-9)
    weights = mixture.weights
    assert not np.any(np.isnan(weights))
    np.testing.assert_allclose(weights.sum(), 1.0)
    probs = mixture.probabilities(mixture.versions[-3:])
    np.testing.assert_allclose(probs, np.array([0.81, 0.9, 1.0]) / 2.71)
    assert mixture.effective_number_of_policies() == pytest.approx(1.9 / 0.1, rel=1e-6)  # (1+a)/(1-a)


def test_alpha_one_is_equal_weight_per_policy():
    mixture = PolicyMixture(1.0)
    for _ in range(5):
        mixture.add_policy()
    np.testing.assert_allclose(mixture.weights, np.full(5, 0.2))


@pytest.mark.parametrize("alpha", [0.0, -0.1, 1.5, float("nan"), "0.9"])
def test_invalid_adaptation_rate(alpha):
    with pytest.raises(ValueError, match="adaptation_rate"):
        PolicyMixture(alpha)


def test_invalid_mode():
    with pytest.raises(ValueError, match="mode"):
        PolicyMixture(0.9, mode="tv-distance")  # type: ignore[arg-type]


def test_state_dict_roundtrip():
    mixture = PolicyMixture(0.7)
    for _ in range(8):
        mixture.add_policy()
    mixture.drop_versions_before(3)
    clone = PolicyMixture()
    clone.load_state_dict(mixture.state_dict())
    np.testing.assert_array_equal(clone.versions, mixture.versions)
    np.testing.assert_allclose(clone.weights, mixture.weights)
    assert clone.add_policy() == mixture.add_policy() == 8
    np.testing.assert_allclose(clone.weights, mixture.weights)
