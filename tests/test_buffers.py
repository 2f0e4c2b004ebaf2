import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from scipy import stats

from sb3_pmac.buffers import PolicyVersionedReplayBuffer
from sb3_pmac.model_buffer import ModelReplayBuffer
from sb3_pmac.policy_mixture import PolicyMixture

OBS_SPACE = spaces.Box(-np.inf, np.inf, (3,), np.float32)
ACTION_SPACE = spaces.Box(-1, 1, (2,), np.float32)


def fill(buffer: PolicyVersionedReplayBuffer, steps_per_version: list[int]) -> None:
    """
    Add one version per entry (a new one each, the first of a fresh buffer being version 0), with transitions whose
    observation encodes (version, step) so that samples can be traced back.
    """
    n_envs = buffer.n_envs
    for steps in steps_per_version:
        version = buffer.start_new_version() if buffer.n_written > 0 else buffer.current_version
        for step in range(steps):
            obs = np.tile(np.array([version, step, 0], dtype=np.float32), (n_envs, 1))
            obs[:, 2] = np.arange(n_envs)
            buffer.add(obs, obs + 1, np.zeros((n_envs, 2)), np.zeros(n_envs), np.zeros(n_envs), [{}] * n_envs)


def make_buffer(size: int, n_envs: int = 1) -> PolicyVersionedReplayBuffer:
    return PolicyVersionedReplayBuffer(size, OBS_SPACE, ACTION_SPACE, device="cpu", n_envs=n_envs)


def test_versions_tagged_and_counted():
    buffer = make_buffer(1000)
    fill(buffer, [100, 50, 25])
    versions, counts = buffer.version_counts()
    np.testing.assert_array_equal(versions, [0, 1, 2])
    np.testing.assert_array_equal(counts, [100, 50, 25])
    np.testing.assert_array_equal(buffer.policy_versions[:175], np.repeat([0, 1, 2], [100, 50, 25]))
    with pytest.raises(ValueError, match="must not decrease"):
        buffer.set_policy_version(1)
    # the buffer owns the versions: a new one is the next id, with no data until transitions are added
    assert buffer.start_new_version() == buffer.current_version == 3
    assert buffer.version_counts()[0].tolist() == [0, 1, 2]


@pytest.mark.parametrize("mode", ["exponential", "uniform"])
def test_mixture_sampling_frequencies(mode):
    """10^5 draws: per-version frequencies match the mixture (chi-square), uniform within each version."""
    buffer, mixture = make_buffer(20_000), PolicyMixture(0.7, mode=mode)
    steps = [2000, 250, 250, 100, 250, 250]
    fill(buffer, steps)
    np.random.seed(0)
    samples = buffer.sample_by_mixture(100_000, mixture)
    obs = samples.observations.numpy()
    drawn_versions = obs[:, 0].astype(int)
    observed = np.bincount(drawn_versions, minlength=len(steps))
    algorithm_1 = PolicyMixture(0.7).weights(np.arange(len(steps)))
    if mode == "exponential":
        expected_probs = algorithm_1  # every version has data: probabilities are the Algorithm 1 weights
    else:
        expected_probs = np.array(steps) / sum(steps)
    _, p_value = stats.chisquare(observed, expected_probs * len(drawn_versions))
    assert p_value > 1e-3, (observed, expected_probs)
    # a clearly wrong distribution is rejected by the same test (the test can fail)
    wrong = np.array(steps) / sum(steps) if mode == "exponential" else algorithm_1
    assert stats.chisquare(observed, wrong * len(drawn_versions))[1] < 1e-6
    # uniform within the first version: its steps are equally likely
    steps_v0 = obs[drawn_versions == 0, 1].astype(int)
    _, p_within = stats.chisquare(np.bincount(steps_v0 // 100, minlength=20))
    assert p_within > 1e-3
    # next_observations belong to the same transitions
    np.testing.assert_allclose(samples.next_observations.numpy(), obs + 1)


def test_every_transition_of_a_version_can_be_drawn():
    """
    Within a version every transition is equally likely, the first and the newest included: with versions of 2, 3 and
    1 transitions, each step of each version gets about 1/n of its version's draws (an offset that left out a
    version's last transition, its newest, went unseen by the 100-step bins above).
    """
    buffer, mixture = make_buffer(100), PolicyMixture(0.5)
    lengths = [2, 3, 1]
    fill(buffer, lengths)
    np.random.seed(0)
    obs = buffer.sample_by_mixture(30_000, mixture).observations.numpy()
    versions, steps = obs[:, 0].astype(int), obs[:, 1].astype(int)
    for version, n in enumerate(lengths):
        per_step = np.bincount(steps[versions == version], minlength=n)
        assert len(per_step) == n  # no step beyond the version's transitions
        assert (per_step > 0.8 * per_step.sum() / n).all(), (version, per_step)


def test_empty_current_version_drops_out():
    """The version started at a model training has no data yet: the others renormalise."""
    buffer, mixture = make_buffer(1000), PolicyMixture(0.5)
    fill(buffer, [100, 100])
    new_version = buffer.start_new_version()
    assert new_version == buffer.current_version == 2
    np.random.seed(1)
    drawn = buffer.sample_by_mixture(20_000, mixture).observations[:, 0].numpy().astype(int)
    assert new_version not in drawn
    # weights [0.25, 0.25, 0.5] restricted to versions 0 and 1 -> 50/50
    assert abs(np.mean(drawn == 1) - 0.5) < 0.02


def test_wraparound_drops_old_versions():
    buffer, mixture = make_buffer(300), PolicyMixture(0.9)
    fill(buffer, [200, 100, 200])  # 500 transitions into 300 slots: version 0 fully overwritten
    versions, counts = buffer.version_counts()
    np.testing.assert_array_equal(versions, [1, 2])
    np.testing.assert_array_equal(counts, [100, 200])
    fill(buffer, [50])  # overwrites 50 more: version 1 keeps its 50 newest
    versions, counts = buffer.version_counts()
    np.testing.assert_array_equal(versions, [1, 2, 3])
    np.testing.assert_array_equal(counts, [50, 200, 50])
    assert buffer.oldest_version == 1
    np.random.seed(2)
    obs = buffer.sample_by_mixture(10_000, mixture).observations.numpy()
    drawn = obs[:, 0].astype(int)
    assert set(np.unique(drawn)) == {1, 2, 3}
    # only the live (newest) steps of version 1 are drawn: steps 50..99 survived
    assert obs[drawn == 1, 1].min() >= 50
    # the buffer's uniform sample() still works for SAC
    assert buffer.sample(64).observations.shape == (64, 3)


def test_n_envs():
    buffer, mixture = make_buffer(4000, n_envs=4), PolicyMixture(0.9)
    fill(buffer, [300, 200, 100])  # positions; 4 transitions each
    _, counts = buffer.version_counts()
    np.testing.assert_array_equal(counts, [1200, 800, 400])
    np.random.seed(3)
    obs = buffer.sample_by_mixture(40_000, mixture).observations.numpy()
    env_ids = obs[:, 2].astype(int)
    np.testing.assert_allclose(np.bincount(env_ids, minlength=4) / len(env_ids), 0.25, atol=0.01)
    weights = mixture.weights(np.arange(3))
    np.testing.assert_allclose(np.bincount(obs[:, 0].astype(int), minlength=3) / len(obs), weights, atol=0.01)


def test_sampling_cost_does_not_scan_buffer():
    """Per-call work depends on the batch and the number of versions, not on the buffer size."""
    buffer = make_buffer(1_000_000)
    mixture = PolicyMixture(0.9)
    # Fake a full buffer cheaply: write the bookkeeping as add() would over 10^6 positions.
    buffer._segment_versions, buffer._segment_starts, buffer._segment_ends = [0], [0], [1_000_000]
    buffer._n_written, buffer.full = 1_000_000, True
    calls = {"n": 0}
    original = np.random.choice

    def counting_choice(*args, **kwargs):
        calls["n"] += 1
        assert args[0] == 1  # chooses among versions, not among positions
        return original(*args, **kwargs)

    np.random.choice = counting_choice  # type: ignore[assignment]
    try:
        batch_inds, _ = buffer.sample_indices_by_mixture(256, mixture)
    finally:
        np.random.choice = original  # type: ignore[assignment]
    assert calls["n"] == 1 and batch_inds.shape == (256,)


def test_optimize_memory_usage_rejected():
    with pytest.raises(ValueError, match="optimize_memory_usage"):
        PolicyVersionedReplayBuffer(100, OBS_SPACE, ACTION_SPACE, optimize_memory_usage=True, handle_timeout_termination=False)


def test_model_buffer_ring_and_resize():
    buffer = ModelReplayBuffer(capacity=10, obs_dim=2, action_dim=1)

    def batch(start: int, n: int):
        values = th.arange(start, start + n, dtype=th.float32)
        return values[:, None].repeat(1, 2), values[:, None], values, values[:, None].repeat(1, 2) + 1, (values % 2 == 0)

    buffer.add(*batch(0, 6))
    assert buffer.size() == 6
    partial = buffer.sample(200)  # only the stored rows: an empty row (zeros) has next observation 0, not 0 + 1
    np.testing.assert_allclose(partial.next_observations, partial.observations + 1)
    buffer.add(*batch(6, 7))  # 13 in total: the 10 newest (3..12) are kept
    assert buffer.size() == 10
    stored = sorted(buffer.observations[:, 0].tolist())
    assert stored == list(range(3, 13))
    sample = buffer.sample(500)
    assert sample.rewards.shape == (500, 1) and sample.dones.shape == (500, 1)
    np.testing.assert_allclose(sample.observations[:, 0], sample.rewards[:, 0])
    np.testing.assert_allclose(sample.next_observations, sample.observations + 1)
    np.testing.assert_allclose(sample.dones[:, 0], (sample.rewards[:, 0] % 2 == 0).float())
    buffer.resize(4)  # keeps the newest
    assert sorted(buffer.observations[:, 0].tolist()) == [9, 10, 11, 12]
    buffer.resize(8)
    buffer.add(*batch(13, 2))
    assert sorted(buffer.observations[: buffer.size(), 0].tolist()) == [9, 10, 11, 12, 13, 14]
    # a batch larger than the capacity keeps its tail
    buffer.add(*batch(100, 20))
    assert sorted(buffer.observations[:, 0].tolist()) == list(range(112, 120))
    clone = ModelReplayBuffer(capacity=1, obs_dim=2, action_dim=1)
    clone.load_state_dict(buffer.state_dict())
    assert clone.capacity == 8 and sorted(clone.observations[:, 0].tolist()) == list(range(112, 120))
    with pytest.raises(ValueError):
        ModelReplayBuffer(capacity=0, obs_dim=2, action_dim=1)


@pytest.mark.parametrize("n_envs", [1, 2])
@pytest.mark.parametrize("mode", ["exponential", "uniform"])
def test_select_indices_by_mixture_is_stratified_and_without_replacement(mode, n_envs):
    np.random.seed(3)
    buffer, mixture = make_buffer(1000, n_envs=n_envs), PolicyMixture(0.6, mode=mode)
    fill(buffer, [300, 40, 100, 7, 60])
    versions, counts = buffer.version_counts()
    probs = mixture.probabilities(versions, counts)
    for n_rows in (100, 333, 2000):
        batch_inds, env_inds = buffer.select_indices_by_mixture(n_rows, mixture)
        assert len(batch_inds) == len(env_inds) == n_rows
        drawn_versions = buffer.policy_versions[batch_inds]
        for version, count, p in zip(versions, counts, probs, strict=True):
            mine = drawn_versions == version
            n_version = int(mine.sum())
            assert np.floor(n_rows * p) - 1e-9 <= n_version <= np.ceil(n_rows * p) + 1e-9  # stratified, not multinomial
            keys = batch_inds[mine] * n_envs + env_inds[mine]
            multiplicity = np.bincount(np.unique(keys, return_inverse=True)[1])
            # without replacement where the weights allow: multiplicities differ by at most one within a version
            assert multiplicity.max() - multiplicity.min() <= 1 and multiplicity.max() == -(-n_version // count)
            if n_version >= count:
                assert len(multiplicity) == count  # every transition of the version is used


def test_select_indices_by_mixture_expectation_and_exact_uniform():
    np.random.seed(0)
    buffer, mixture = make_buffer(1000), PolicyMixture(0.5)
    fill(buffer, [50, 50, 50, 50])
    versions, _ = buffer.version_counts()
    # Expected draws per version are exact (systematic rounding): mean over repetitions ~ n * p
    totals = np.zeros(len(versions))
    for _ in range(400):
        drawn = buffer.policy_versions[buffer.select_indices_by_mixture(37, mixture)[0]]
        totals += [(drawn == v).sum() for v in versions]
    np.testing.assert_allclose(totals / 400, 37 * mixture.probabilities(versions), atol=0.05)
    # MBPO's exact mode: uniform weights and n = stored gives every transition once
    batch_inds, _ = buffer.select_indices_by_mixture(200, PolicyMixture(mode="uniform"))
    np.testing.assert_array_equal(np.sort(batch_inds), np.arange(200))
