"""
The historical policy mixture of PMAC: the paper's **Algorithm 1** (policy-adaptation mechanism).

PMAC keeps one weight :math:`w_i` per *policy version* :math:`\\pi_i` (a new version starts every interaction
epoch of ``model_train_freq`` environment steps). Before each interaction epoch (Algorithm 2, line 2):

1. every existing weight is multiplied by the policy-adaptation rate :math:`\\alpha` (Algorithm 1, lines 2-4);
2. the new (current) policy gets :math:`w_{k+1} = (1-\\alpha) \\sum_{i \\le k} w_i / \\alpha` (Eq. 4), i.e. the share
   :math:`1-\\alpha` of the total, which stays constant (the first policy starts with weight 1).

So after ``k`` additions the weights are, in closed form, :math:`w_i = (1-\\alpha)\\,\\alpha^{k-i}` for the versions
``i = 1..k`` and :math:`w_0 = \\alpha^k` for the first one: geometric decay towards the past,
:math:`w_i \\propto \\alpha^{k-i}`. Model-training data and rollout start states are then drawn *per policy* with
these weights, and uniformly among that policy's transitions (see :mod:`sb3_pmac.buffers`).

``mode="uniform"`` gives plain MBPO on the same object: every stored *transition* is equally likely, i.e. a
version's probability is proportional to the number of its transitions still in the replay buffer (with equal
counts this is the paper's Eq. 2, :math:`w_i = 1/k`).

Weights are kept in log space, so nothing underflows or turns into NaN after millions of versions.

The inverse-TV weighting of the authors' later code (PDML) is in :mod:`sb3_pmac.tv_mixture`.
"""

from typing import Any, Literal

import numpy as np

MixtureMode = Literal["exponential", "uniform", "tv"]


class PolicyMixture:
    """
    Weights over the historical policy versions :math:`\\Pi^k` (paper: policy mixture distribution :math:`w^k`).

    :param adaptation_rate: The policy-adaptation rate :math:`\\alpha` in (0, 1] (paper default 0.9).
        Each call to :meth:`add_policy` multiplies the old weights by ``adaptation_rate``; the newest policy always
        holds the share ``1 - adaptation_rate``. ``adaptation_rate=1`` is the limit of the closed form
        :math:`\\alpha^{k-i}`: every *policy* gets the same weight (Eq. 4 itself would give new policies weight 0).
    :param mode: ``"exponential"`` (Algorithm 1, PMAC) or ``"uniform"`` (MBPO: uniform over transitions).
    """

    def __init__(self, adaptation_rate: float = 0.9, mode: MixtureMode = "exponential") -> None:
        check_adaptation_rate(adaptation_rate)
        if mode not in ("exponential", "uniform"):
            hint = " (the TV weighting is TVPolicyMixture)" if mode == "tv" else ""
            raise ValueError(f"Unknown policy mixture mode {mode!r}, expected 'exponential' or 'uniform'{hint}")
        self.adaptation_rate = float(adaptation_rate)
        self.mode: MixtureMode = mode
        # Versions held are _versions[_start:_end] (increasing ids, matching the replay buffer's policy versions).
        # log w_i = _stored[i] + _offset: decaying every weight by alpha is one update of _offset, so adding a policy
        # is O(1) (amortised, the arrays double when full) even with 10^5 versions held.
        self._versions = np.zeros(16, dtype=np.int64)
        self._stored = np.zeros(16, dtype=np.float64)
        self._start = 0
        self._end = 0
        self._offset = 0.0
        self._next_version = 0

    # ------------------------------------------------------------------ Algorithm 1
    def add_policy(self) -> int:
        """
        Algorithm 1: decay the weights of all historical policies by :math:`\\alpha` and add the current policy with
        the weight of Eq. 4. The total weight stays one (the first policy starts with weight 1).

        :return: the id of the new policy version
        """
        version = self._next_version
        self._next_version += 1
        n_held = self._end - self._start
        if n_held == 0:
            self._offset = 0.0
            new_stored = 0.0  # the weights are initialised to sum up to one
        elif self.adaptation_rate == 1.0:
            # Limit alpha -> 1 of w_i ~ alpha^(k-i): every policy weighs the same, 1 / (n + 1) after the addition.
            new_stored = float(self._stored[self._end - 1])
            self._offset += np.log(n_held / (n_held + 1))
        else:
            # Lines 2-4: w_i <- alpha * w_i for every historical policy (the total drops from 1 to alpha).
            self._offset += np.log(self.adaptation_rate)
            # Eq. (4): w_new = (1 - alpha) * sum_i(w_i) / alpha = 1 - alpha, so that the total is one again.
            new_stored = float(np.log1p(-self.adaptation_rate)) - self._offset
        self._append(version, new_stored)
        return version

    def _append(self, version: int, stored: float) -> None:
        if self._end == len(self._versions):
            n_held = self._end - self._start
            capacity = max(16, 2 * n_held)
            versions, log_stored = np.zeros(capacity, dtype=np.int64), np.zeros(capacity, dtype=np.float64)
            versions[:n_held] = self._versions[self._start : self._end]
            log_stored[:n_held] = self._stored[self._start : self._end]
            self._versions, self._stored, self._start, self._end = versions, log_stored, 0, n_held
        self._versions[self._end] = version
        self._stored[self._end] = stored
        self._end += 1

    # ------------------------------------------------------------------ bookkeeping
    def drop_versions_before(self, version: int) -> int:
        """
        Forget the versions older than ``version`` (their data was overwritten in the replay buffer)
        and renormalise the remaining weights so that they sum to one again.

        :param version: oldest version to keep
        :return: number of versions dropped
        """
        held = self._versions[self._start : self._end]
        n_dropped = int(np.searchsorted(held, version, side="left"))
        if n_dropped > 0:
            self._start += n_dropped
            self._renormalize()
        return n_dropped

    def _renormalize(self) -> None:
        if self._end > self._start:
            self._offset = -logsumexp(self._stored[self._start : self._end])
            if not np.isfinite(self._offset):
                raise FloatingPointError("policy mixture weights are no longer finite")

    @property
    def versions(self) -> np.ndarray:
        """Ids of the policy versions held, oldest first."""
        return self._versions[self._start : self._end].copy()

    @property
    def current_version(self) -> int:
        """Id of the newest policy version (-1 before the first :meth:`add_policy`)."""
        return self._next_version - 1

    @property
    def n_policies(self) -> int:
        """Number of policy versions held."""
        return self._end - self._start

    @property
    def log_weights(self) -> np.ndarray:
        """Log of the Algorithm 1 weights :math:`w_i` (exact even where :math:`w_i` underflows in float64)."""
        return self._stored[self._start : self._end] + self._offset

    @property
    def weights(self) -> np.ndarray:
        """The Algorithm 1 weights :math:`w_i` of the versions held (they sum to one)."""
        return np.exp(self.log_weights)

    def probabilities(self, versions: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
        """
        Probability of drawing a sample from each of ``versions`` (the versions that still have data).

        Exponential mode: the Algorithm 1 weights restricted to ``versions`` and renormalised (versions without data
        drop out); each version's probability does not depend on how many transitions it holds.
        Uniform mode (MBPO): proportional to ``counts``, so that every transition is equally likely.

        :param versions: version ids (must be held by the mixture in exponential mode)
        :param counts: number of transitions of each version (required in uniform mode)
        :return: probabilities summing to one, same order as ``versions``
        """
        versions = np.asarray(versions, dtype=np.int64)
        if len(versions) == 0:
            raise ValueError("No policy version with data to sample from")
        if self.mode == "uniform":
            if counts is None:
                counts = np.ones(len(versions))
            counts = np.asarray(counts, dtype=np.float64)
            if np.any(counts < 0) or counts.sum() <= 0:
                raise ValueError("counts must be non-negative with a positive sum")
            return counts / counts.sum()
        log_w = self._stored[self._start : self._end][self._positions(versions)]
        probs = np.exp(log_w - log_w.max())
        return probs / probs.sum()

    def _positions(self, versions: np.ndarray) -> np.ndarray:
        """Positions of ``versions`` among the versions held (``KeyError`` if one is not held)."""
        held = self._versions[self._start : self._end]
        positions = np.searchsorted(held, versions)
        if len(held) == 0 or np.any(positions >= len(held)) or np.any(held[np.minimum(positions, len(held) - 1)] != versions):
            raise KeyError(f"Versions {versions} are not all held by the mixture (held: {held})")
        return positions

    def effective_number_of_policies(self) -> float:
        """Inverse Simpson index :math:`1 / \\sum_i w_i^2`: how many versions the mixture effectively spans."""
        if self.n_policies == 0:
            return 0.0
        log_w = self.log_weights
        w = np.exp(log_w - logsumexp(log_w))
        return float(1.0 / np.sum(w**2))

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """State to save with the agent."""
        return {
            "adaptation_rate": self.adaptation_rate,
            "mode": self.mode,
            "versions": self.versions,
            "log_weights": self.log_weights,
            "next_version": self._next_version,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state produced by :meth:`state_dict`."""
        if state["mode"] not in ("exponential", "uniform"):
            raise ValueError(f"Not a PolicyMixture state (mode {state['mode']!r}): load it into a TVPolicyMixture")
        self.adaptation_rate = float(state["adaptation_rate"])
        self.mode = state["mode"]
        self._versions = np.asarray(state["versions"], dtype=np.int64).copy()
        self._stored = np.asarray(state["log_weights"], dtype=np.float64).copy()
        self._start, self._end, self._offset = 0, len(self._versions), 0.0
        self._next_version = int(state["next_version"])

    def __repr__(self) -> str:
        return (
            f"PolicyMixture(adaptation_rate={self.adaptation_rate}, mode={self.mode!r}, n_policies={self.n_policies}, "
            f"current_version={self.current_version})"
        )


def check_adaptation_rate(adaptation_rate: float) -> None:
    """Raise ``ValueError`` unless ``adaptation_rate`` (:math:`\\alpha`) is a number in (0, 1]."""
    if isinstance(adaptation_rate, bool) or not isinstance(adaptation_rate, (int, float)):
        raise ValueError(f"adaptation_rate (alpha) must be in (0, 1], got {adaptation_rate!r}")
    if not 0.0 < float(adaptation_rate) <= 1.0:
        raise ValueError(f"adaptation_rate (alpha) must be in (0, 1], got {adaptation_rate!r}")


def logsumexp(values: np.ndarray) -> float:
    """:math:`\\log \\sum_i e^{v_i}` without overflow."""
    peak = float(np.max(values))
    return peak + float(np.log(np.sum(np.exp(values - peak))))


def __getattr__(name: str) -> Any:
    # TVPolicyMixture lived here before sb3_pmac.tv_mixture: agents saved then pickled it under this module
    if name in ("TVPolicyMixture", "gaussian_tv_upper_bound", "UNIFORM_ACTION_LOG_STD"):
        from sb3_pmac import tv_mixture

        return getattr(tv_mixture, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
