"""
The versioned real replay buffer of PMAC.

:class:`PolicyVersionedReplayBuffer` is the real sample buffer :math:`\\mathbb{D}_e`: SB3's ``ReplayBuffer`` that also
remembers which *policy version* collected each transition, and can draw samples **per policy, then uniformly within
that policy's transitions** with the weights of a :class:`~sb3_pmac.policy_mixture.PolicyMixture` (Algorithm 2, lines 3
and 8). Its ordinary ``sample`` (SB3's) stays uniform, for SAC's real share of each batch. The model buffer
:math:`\\mathbb{D}_m` is :mod:`sb3_pmac.model_buffer`, the mixed SAC batches :mod:`sb3_pmac.mixed_sampler`.

With ``store_policy_params=True`` (PMAC's ``mixture="tv"``) the real buffer also keeps, for every transition, the
Gaussian parameters of the policy that collected it (pre-squash mean and log standard deviation of the actor for that
observation), from which the distance of each version's policy to the current one is measured.

Versions are written in increasing order into a ring buffer, so each version occupies one contiguous range of
insertion positions. The buffer keeps those ranges (in absolute insertion counts, not scanned per call), which makes
mixture sampling O(batch + number of versions) however large the buffer is.
"""

from typing import TYPE_CHECKING, Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

if TYPE_CHECKING:
    from sb3_pmac.policy_mixture import PolicyMixture


class PolicyVersionedReplayBuffer(ReplayBuffer):
    """
    Replay buffer that stores the policy version of every transition (the real sample buffer of PMAC).

    The buffer owns the policy versions (ids counted from 0): call :meth:`start_new_version` when a new interaction
    epoch starts; every transition added afterwards is tagged with that version. Works with ``n_envs > 1`` (all
    environments of one step share the version) and with wrap-around: versions whose transitions have all been
    overwritten disappear from :meth:`version_counts`.

    :param buffer_size: Max number of transitions in the buffer
    :param observation_space: Observation space
    :param action_space: Action space
    :param device: PyTorch device
    :param n_envs: Number of parallel environments
    :param optimize_memory_usage: Not supported (raises ``ValueError``): the versioned sampling needs
        ``next_observations`` stored per transition.
    :param handle_timeout_termination: Handle timeout termination (due to timelimit) separately and treat the task
        as infinite horizon task.
    :param store_policy_params: Also store the collecting policy's Gaussian parameters per transition
        (``policy_means``, ``policy_log_stds``; call :meth:`set_policy_params` before each :meth:`add`).
        Costs ``2 * action_dim`` float32 per transition (e.g. 136 MB for 10^6 Humanoid transitions).
    """

    policy_versions: np.ndarray
    policy_means: np.ndarray | None
    policy_log_stds: np.ndarray | None

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        store_policy_params: bool = False,
    ):
        if optimize_memory_usage:
            raise ValueError("PolicyVersionedReplayBuffer does not support optimize_memory_usage=True")
        super().__init__(
            buffer_size,
            observation_space,
            action_space,
            device=device,
            n_envs=n_envs,
            optimize_memory_usage=False,
            handle_timeout_termination=handle_timeout_termination,
        )
        # Policy version of each buffer position (all envs of one position share it).
        self.policy_versions = np.zeros((self.buffer_size,), dtype=np.int64)
        self.current_version = 0
        # Contiguous ranges of absolute insertion positions, one per version: [start, end).
        self._segment_versions: list[int] = []
        self._segment_starts: list[int] = []
        self._segment_ends: list[int] = []
        self._n_written = 0  # positions written since creation (each holds n_envs transitions)
        # Gaussian parameters of the collecting policy per transition (NaN: unknown), for the TV policy mixture
        self.store_policy_params = bool(store_policy_params)
        self.policy_means = self.policy_log_stds = None
        if self.store_policy_params:
            shape = (self.buffer_size, self.n_envs, self.action_dim)
            self.policy_means = np.zeros(shape, dtype=np.float32)
            self.policy_log_stds = np.zeros(shape, dtype=np.float32)
        self._pending_policy_params: tuple[np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------ writing
    def start_new_version(self) -> int:
        """
        Start a new policy version (a new interaction epoch starts): the transitions added from now on are tagged
        with ``current_version + 1``.

        :return: the id of the new version
        """
        self.current_version += 1
        return self.current_version

    def set_policy_version(self, version: int) -> None:
        """
        Tag the transitions added from now on with ``version`` (e.g. a new buffer continuing a saved agent's versions).

        :param version: the new policy version (must not be older than the current one)
        """
        version = int(version)
        if version < self.current_version:
            raise ValueError(f"Policy versions must not decrease: {version} < {self.current_version}")
        self.current_version = version

    def set_policy_params(self, mean: np.ndarray, log_std: np.ndarray) -> None:
        """
        Gaussian parameters of the policy that collects the transitions of the next :meth:`add` (one row per env):
        the pre-squash mean and log standard deviation of the actor for those observations. A transition added
        without them is stored with NaN (unknown policy). Does nothing unless the buffer stores policy parameters.

        :param mean: ``[n_envs, action_dim]``
        :param log_std: ``[n_envs, action_dim]``
        """
        if not self.store_policy_params:
            return
        shape = (self.n_envs, self.action_dim)
        mean = np.asarray(mean, dtype=np.float32).reshape(shape)
        log_std = np.broadcast_to(np.asarray(log_std, dtype=np.float32), shape)
        self._pending_policy_params = (mean, log_std)

    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        self.policy_versions[self.pos] = self.current_version
        if self.policy_means is not None and self.policy_log_stds is not None:
            if self._pending_policy_params is None:
                self.policy_means[self.pos] = self.policy_log_stds[self.pos] = np.nan
            else:
                self.policy_means[self.pos], self.policy_log_stds[self.pos] = self._pending_policy_params
            self._pending_policy_params = None
        if not self._segment_versions or self._segment_versions[-1] != self.current_version:
            self._segment_versions.append(self.current_version)
            self._segment_starts.append(self._n_written)
            self._segment_ends.append(self._n_written)
        super().add(obs, next_obs, action, reward, done, infos)
        self._n_written += 1
        self._segment_ends[-1] = self._n_written

    def reset(self) -> None:
        super().reset()
        self._segment_versions, self._segment_starts, self._segment_ends = [], [], []
        self._n_written = 0
        self._pending_policy_params = None

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Buffers pickled before policy parameters could be stored load as buffers without them
        state.setdefault("store_policy_params", False)
        state.setdefault("policy_means", None)
        state.setdefault("policy_log_stds", None)
        state.setdefault("_pending_policy_params", None)
        self.__dict__.update(state)

    # ------------------------------------------------------------------ version bookkeeping
    @property
    def n_written(self) -> int:
        """Positions written since the buffer was created (more than ``buffer_size`` once it wrapped around)."""
        return self._n_written

    def _drop_overwritten_segments(self) -> int:
        """Forget the versions whose transitions have all been overwritten; return the first live absolute position."""
        oldest = max(0, self._n_written - self.buffer_size)
        while self._segment_versions and self._segment_ends[0] <= oldest:
            del self._segment_versions[0], self._segment_starts[0], self._segment_ends[0]
        return oldest

    def version_ranges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """
        Live range of every version that still has transitions in the buffer.

        :return: ``(versions, starts, lengths)``: absolute start position and number of positions of each version
        """
        oldest = self._drop_overwritten_segments()
        versions = np.asarray(self._segment_versions, dtype=np.int64)
        starts = np.maximum(np.asarray(self._segment_starts, dtype=np.int64), oldest)
        lengths = np.asarray(self._segment_ends, dtype=np.int64) - starts
        keep = lengths > 0
        return versions[keep], starts[keep], lengths[keep]

    def version_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """
        :return: ``(versions, counts)``: the versions with data in the buffer and their number of transitions
        """
        versions, _, lengths = self.version_ranges()
        return versions, lengths * self.n_envs

    @property
    def oldest_version(self) -> int:
        """Oldest policy version that still has transitions in the buffer (the current one if the buffer is empty)."""
        versions, _, _ = self.version_ranges()
        return int(versions[0]) if len(versions) > 0 else self.current_version

    # ------------------------------------------------------------------ sampling per policy (Algorithm 2, lines 3 and 8)
    def sample_indices_by_mixture(self, batch_size: int, mixture: "PolicyMixture") -> tuple[np.ndarray, np.ndarray]:
        """
        Draw positions per policy, then uniformly within that policy's transitions.

        First a version is drawn for each sample with the mixture's probabilities (over the versions that still have
        data), then a position uniformly inside that version's range and an env index uniformly.

        :param batch_size: number of samples (drawn with replacement)
        :param mixture: the policy mixture giving the per-version weights
        :return: ``(batch_inds, env_inds)`` buffer indices of the samples
        """
        versions, starts, lengths = self.version_ranges()
        if len(versions) == 0:
            raise ValueError("Cannot sample from an empty replay buffer")
        probs = mixture.probabilities(versions, counts=lengths * self.n_envs)
        chosen = np.random.choice(len(versions), size=batch_size, p=probs)
        offsets = (np.random.random(batch_size) * lengths[chosen]).astype(np.int64)
        batch_inds = (starts[chosen] + offsets) % self.buffer_size
        env_inds = np.random.randint(0, self.n_envs, size=batch_size)
        return batch_inds, env_inds

    def select_indices_by_mixture(self, n_rows: int, mixture: "PolicyMixture") -> tuple[np.ndarray, np.ndarray]:
        """
        A dataset of ``n_rows`` transitions per policy with the mixture's weights, drawn *without replacement
        where the weights allow* (the model's training set, Algorithm 2 line 3).

        Each version gets ``n_rows * p_i`` rows, rounded systematically (floor or ceiling, the expectation exact, the
        total exactly ``n_rows``). A version asked for ``n_i`` rows out of its ``c_i`` transitions gives each of
        them ``n_i // c_i`` times and ``n_i % c_i`` distinct others once more, drawn uniformly: every transition of a
        version is equally likely, as in :meth:`sample_indices_by_mixture`, but no transition repeats while another
        of its version is unused. So with uniform weights (MBPO) and ``n_rows`` = the buffer's size, every stored
        transition appears exactly once.

        :param n_rows: number of rows
        :param mixture: the policy mixture giving the per-version weights
        :return: ``(batch_inds, env_inds)`` buffer indices of the rows, grouped by version
        """
        versions, starts, lengths = self.version_ranges()
        if len(versions) == 0:
            raise ValueError("Cannot select from an empty replay buffer")
        counts = lengths * self.n_envs
        chosen, flat = draw_rows_per_version(mixture.probabilities(versions, counts=counts), counts, n_rows)
        return (starts[chosen] + flat // self.n_envs) % self.buffer_size, flat % self.n_envs

    def sample_by_mixture(
        self, batch_size: int, mixture: "PolicyMixture", env: VecNormalize | None = None
    ) -> ReplayBufferSamples:
        """
        Sample transitions per policy with the mixture's weights (see :meth:`sample_indices_by_mixture`).

        :param batch_size: number of samples (drawn with replacement)
        :param mixture: the policy mixture giving the per-version weights
        :param env: associated VecNormalize to normalize the observations/rewards when sampling
        """
        batch_inds, env_inds = self.sample_indices_by_mixture(batch_size, mixture)
        return self.get_transitions(batch_inds, env_inds, env=env)

    def get_transitions(
        self, batch_inds: np.ndarray, env_inds: np.ndarray, env: VecNormalize | None = None
    ) -> ReplayBufferSamples:
        """
        The transitions stored at the given indices (``dones`` exclude timeouts, as in SB3).

        :param batch_inds: buffer positions
        :param env_inds: env index of each sample
        :param env: associated VecNormalize to normalize the observations/rewards
        """
        data = (
            self._normalize_obs(self.observations[batch_inds, env_inds, :], env),
            self.actions[batch_inds, env_inds, :],
            self._normalize_obs(self.next_observations[batch_inds, env_inds, :], env),
            (self.dones[batch_inds, env_inds] * (1 - self.timeouts[batch_inds, env_inds])).reshape(-1, 1),
            self._normalize_reward(self.rewards[batch_inds, env_inds].reshape(-1, 1), env),
        )
        return ReplayBufferSamples(*tuple(map(self.to_torch, data)))


def draw_rows_per_version(probabilities: np.ndarray, counts: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """
    ``n_rows`` draws per version, without replacement where the weights allow (see
    :meth:`PolicyVersionedReplayBuffer.select_indices_by_mixture`).

    :param probabilities: probability of each version (sums to one)
    :param counts: number of transitions of each version
    :param n_rows: number of rows to draw
    :return: ``(version, offset)`` of each row: the index of its version and its position among that version's
        transitions, grouped by version
    """
    rows_per_version = _systematic_counts(n_rows * np.asarray(probabilities, dtype=np.float64), n_rows)
    chosen, offsets = [], []
    for index, (count, n_version) in enumerate(zip(counts, rows_per_version, strict=True)):
        if n_version == 0:
            continue
        repeats, extra = divmod(int(n_version), int(count))
        distinct = np.random.choice(count, size=extra, replace=False)
        offsets.append(np.concatenate([np.tile(np.arange(count), repeats), distinct]))
        chosen.append(np.full(n_version, index))
    return np.concatenate(chosen).astype(np.int64), np.concatenate(offsets).astype(np.int64)


def _systematic_counts(expected: np.ndarray, total: int) -> np.ndarray:
    """
    Integer counts with the given expectations that sum to ``total``: each is the floor or the ceiling of its
    expectation (systematic sampling: one uniform offset on the cumulative sums).
    """
    cumulative = np.cumsum(expected, dtype=np.float64)
    cumulative *= total / cumulative[-1]
    nearest = np.round(cumulative)
    cumulative = np.where(np.abs(cumulative - nearest) < 1e-7, nearest, cumulative)  # exact integers stay exact
    bounds = np.floor(cumulative + np.random.random()).astype(np.int64)
    bounds[-1] = total
    return np.diff(bounds, prepend=0)


# Import paths of earlier releases (the classes moved to their own modules)
from sb3_pmac.mixed_sampler import MixedReplaySampler, stack_batches  # noqa: E402, F401
from sb3_pmac.model_buffer import ModelReplayBuffer  # noqa: E402, F401
