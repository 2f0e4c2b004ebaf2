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

:class:`TVPolicyMixture` (``mode="tv"``) is the weighting of the authors' public code for the final version of the
paper (PDML, ICML 2023, https://github.com/si0wang/PDML): instead of a fixed geometric decay, each older version
weighs the *inverse* of its policy distance :math:`\\xi_{\\pi_i}` (an upper bound of the total-variation distance
between that version's policy and the current one, :func:`gaussian_tv_upper_bound`), and the newest chunk of data gets
a share set by ``max_rate``. The distances are measured by the agent (:meth:`PMAC._measure_tv_distances
<sb3_pmac.pmac.PMAC._measure_tv_distances>`) and handed over with :meth:`TVPolicyMixture.set_distances`.
"""

import math
from typing import Any, Literal

import numpy as np
import torch as th

MixtureMode = Literal["exponential", "uniform", "tv"]

#: Pre-tanh log standard deviation that stands for SAC's random warm-up actions in the TV variant. An action drawn
#: uniformly from [-1, 1] is :math:`\tanh(u)` with :math:`u` logistic of scale 1/2 (density
#: :math:`\operatorname{sech}^2(u)/2`, variance :math:`\pi^2/12`); the warm-up behaviour is recorded as the
#: moment-matched Gaussian :math:`\mathcal{N}(0, \pi^2/12)` per action dimension: an approximation, at a
#: total-variation distance of about 0.054 (KL about 0.01 nats) from the exact logistic law in each dimension
#: (measured in ``tests/test_tv_mixture.py``). Only the distances of warm-up data use it.
UNIFORM_ACTION_LOG_STD = 0.5 * math.log(math.pi**2 / 12.0)


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
        if not isinstance(adaptation_rate, (int, float)) or not 0.0 < float(adaptation_rate) <= 1.0:
            raise ValueError(f"adaptation_rate (alpha) must be in (0, 1], got {adaptation_rate!r}")
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
            self._offset = -_logsumexp(self._stored[self._start : self._end])
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
        w = np.exp(log_w - _logsumexp(log_w))
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


class TVPolicyMixture(PolicyMixture):
    """
    Policy mixture weighted by inverse policy distance: the variant of the authors' public PDML code (``mode="tv"``).

    Before each model training the agent measures, for every version :math:`i` that has data, an upper bound
    :math:`\\xi_i` of the expected total-variation distance between the policy that collected that version's
    transitions and the current policy (:func:`gaussian_tv_upper_bound`), and hands the bounds over with
    :meth:`set_distances`. Data is then drawn per version (each version's probability does not depend on how many
    transitions it holds, as in Algorithm 1) with the weights:

    * each *older* version (every version with data but the newest):
      :math:`w_i = \\frac{1/(\\xi_i + \\epsilon)}{\\sum_j 1/(\\xi_j + \\epsilon)}`, so the older versions' weights sum
      to one;
    * the *newest* version with data (the chunk of ``model_train_freq`` steps collected in the interaction epoch that
      just ended, by the policy closest to the current one):
      :math:`w_{new} = \\max\\big(\\frac{r}{1 - r},\\ \\max_i w_i\\big)` with :math:`r` = ``max_rate``.

    So the newest chunk holds the share ``max_rate`` of the draws, unless an older version weighs more than that, in
    which case the newest chunk weighs as much as that (closest) older version. As in the authors' code, ``max_rate``
    is a **floor** of the newest chunk's share, not a cap, despite its name: with many versions (late in training)
    the share is ``max_rate``; with few versions, more. The authors pair each chunk with the policy snapshot taken at
    the chunk's *end*, so their newest chunk sits at distance 0 from the current policy (infinite weight), and this
    rule replaces that weight. Here the newest chunk's distance is measured like any other (it is in
    :attr:`distances`), but its weight follows the same rule, so that a few hundred transitions neither dominate the
    model's data (:math:`1/\\xi` of the newest chunk is usually the largest) nor weigh less than any older chunk.

    "Newest" is the newest of the versions passed to :meth:`probabilities`, i.e. of those that still have data. When
    PMAC's model step calls :meth:`add_policy`, the new version (the one about to collect the next interaction epoch)
    has no data yet and gets no draws, so the newest version with data is the one before it. With a single version
    with data it gets every draw.

    :param max_rate: share :math:`r` of the newest chunk of data, in [0, 1) (0.02 in the authors' code)
    :param eps: :math:`\\epsilon` added to the distances before inverting them (> 0): versions at distance 0 get the
        finite weight :math:`1/\\epsilon`, all the same
    """

    def __init__(self, max_rate: float = 0.02, eps: float = 1e-6) -> None:
        _check_max_rate(max_rate)
        if not isinstance(eps, (int, float)) or not 0.0 < float(eps) < 1.0:
            raise ValueError(f"eps must be in (0, 1), got {eps!r}")
        super().__init__(adaptation_rate=1.0, mode="exponential")
        self.mode = "tv"
        self.max_rate = float(max_rate)
        self.eps = float(eps)
        # In this class _stored[i] holds the measured distance xi_i of each held version (NaN: not measured)
        # and _offset stays 0.

    def add_policy(self) -> int:
        """
        Register a new policy version (the one about to collect data), with no distance measured yet.

        :return: the id of the new policy version
        """
        version = self._next_version
        self._next_version += 1
        self._append(version, np.nan)
        return version

    def _renormalize(self) -> None:
        pass  # weights are normalised when they are used

    def set_distances(self, versions: np.ndarray, distances: np.ndarray) -> None:
        """
        Set the measured distances :math:`\\xi_i` to the current policy; versions not listed become unmeasured.

        :param versions: held version ids (the versions that have data)
        :param distances: non-negative distance of each version (an upper bound of the TV distance, in [0, 1] when it
            comes from :func:`gaussian_tv_upper_bound`)
        """
        versions = np.asarray(versions, dtype=np.int64).reshape(-1)
        distances = np.asarray(distances, dtype=np.float64).reshape(-1)
        if len(versions) != len(distances):
            raise ValueError(f"Got {len(versions)} versions but {len(distances)} distances")
        if len(np.unique(versions)) != len(versions):
            raise ValueError(f"Versions must not repeat, got {versions}")
        if not np.all(np.isfinite(distances)) or np.any(distances < 0):
            raise ValueError(f"Distances must be finite and non-negative, got {distances}")
        positions = self._positions(versions)
        held = self._stored[self._start : self._end]
        held[:] = np.nan
        held[positions] = distances

    @property
    def distances(self) -> np.ndarray:
        """The measured distance of each held version, oldest first (NaN where none is measured)."""
        return self._stored[self._start : self._end].copy()

    def _log_mixture(self, distances: np.ndarray, newest: int) -> np.ndarray:
        """Normalised log-weights of versions with the given distances; ``newest`` indexes the newest one."""
        log_w = np.empty(len(distances), dtype=np.float64)
        older = np.arange(len(distances)) != newest
        if not np.any(older):
            log_w[newest] = 0.0
            return log_w
        older_log_w = -np.log(distances[older] + self.eps)
        older_log_w -= _logsumexp(older_log_w)  # the older versions' weights sum to one
        log_w[older] = older_log_w
        share = math.log(self.max_rate) - math.log1p(-self.max_rate) if self.max_rate > 0 else -np.inf
        log_w[newest] = max(share, float(older_log_w.max()))
        return log_w - _logsumexp(log_w)

    def probabilities(self, versions: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
        """
        Probability of drawing a sample from each of ``versions`` (the versions that still have data).

        The newest of ``versions`` gets the ``max_rate`` rule, the others weigh the inverse of their distance (see
        the class description); ``counts`` is not used.

        :param versions: held version ids; all but the newest must have a measured distance
        :param counts: ignored (the weights are per version)
        :return: probabilities summing to one, same order as ``versions``
        """
        versions = np.asarray(versions, dtype=np.int64)
        if len(versions) == 0:
            raise ValueError("No policy version with data to sample from")
        distances = self._stored[self._start : self._end][self._positions(versions)]
        newest = int(np.argmax(versions))
        missing = np.isnan(distances) & (np.arange(len(versions)) != newest)
        if np.any(missing):
            raise KeyError(f"No distance measured for versions {versions[missing]} (call set_distances first)")
        return np.exp(self._log_mixture(distances, newest))

    @property
    def log_weights(self) -> np.ndarray:
        """
        Log-weights of the held versions as last measured: the mixture over the versions with a measured distance
        (the newest of them gets the ``max_rate`` rule), ``-inf`` for the others; uniform before any measurement.
        """
        distances = self._stored[self._start : self._end]
        measured = ~np.isnan(distances)
        if not np.any(measured):
            return np.full(len(distances), -math.log(len(distances)) if len(distances) else 0.0)
        log_w = np.full(len(distances), -np.inf)
        log_w[measured] = self._log_mixture(distances[measured], int(np.sum(measured)) - 1)
        return log_w

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """State to save with the agent."""
        return {
            "mode": self.mode,
            "max_rate": self.max_rate,
            "eps": self.eps,
            "versions": self.versions,
            "distances": self.distances,
            "next_version": self._next_version,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state produced by :meth:`state_dict`."""
        if state.get("mode") != "tv":
            raise ValueError(f"Not a TVPolicyMixture state (mode {state.get('mode')!r})")
        self.max_rate, self.eps = float(state["max_rate"]), float(state["eps"])
        self._versions = np.asarray(state["versions"], dtype=np.int64).copy()
        self._stored = np.asarray(state["distances"], dtype=np.float64).copy()
        self._start, self._end, self._offset = 0, len(self._versions), 0.0
        self._next_version = int(state["next_version"])

    def __repr__(self) -> str:
        return (
            f"TVPolicyMixture(max_rate={self.max_rate}, n_policies={self.n_policies}, current_version={self.current_version})"
        )


def gaussian_tv_upper_bound(mean_p: th.Tensor, log_std_p: th.Tensor, mean_q: th.Tensor, log_std_q: th.Tensor) -> th.Tensor:
    """
    Upper bound of the total-variation distance between two diagonal Gaussians, one per row.

    With the closed-form KL divergence of diagonal Gaussians, the smaller of both directions,
    :math:`\\kappa = \\min(KL(p\\|q), KL(q\\|p))`, the bound is
    :math:`\\min\\big(\\sqrt{\\kappa/2},\\ \\sqrt{1 - e^{-\\kappa}}\\big) \\le 1` (Pinsker's inequality and the
    Bretagnolle-Huber inequality; Pinsker is the tighter one for :math:`\\kappa < 1.59`).

    Total variation and KL are unchanged when one bijection is applied to both distributions, such as SAC's tanh
    squashing and the rescaling to the action bounds: the bound for the pre-squash Gaussians (SAC's ``mean_actions``
    and ``log_std``) is a bound for the squashed policies as well.

    The authors' code uses Pinsker's bound alone, with :math:`KL(\\pi_{current}\\|\\pi_i)`, and its KL expression takes
    the standard deviations where the variances belong; here the variances are used.

    :param mean_p: means of :math:`p`, shape ``[..., action_dim]``
    :param log_std_p: log standard deviations of :math:`p`, same shape (or broadcastable)
    :param mean_q: means of :math:`q`
    :param log_std_q: log standard deviations of :math:`q`
    :return: the bound per row, shape ``[...]``, in float64
    """
    mean_p, log_std_p, mean_q, log_std_q = (t.to(th.float64) for t in (mean_p, log_std_p, mean_q, log_std_q))
    log_var_ratio = 2.0 * (log_std_p - log_std_q)  # log(var_p / var_q)
    squared_gap = (mean_p - mean_q) ** 2
    # var_p/var_q - 1 - log(var_p/var_q) = expm1(d) - d: no cancellation when the two variances are close
    kl_pq = 0.5 * (th.expm1(log_var_ratio) - log_var_ratio + squared_gap * th.exp(-2.0 * log_std_q)).sum(-1)
    kl_qp = 0.5 * (th.expm1(-log_var_ratio) + log_var_ratio + squared_gap * th.exp(-2.0 * log_std_p)).sum(-1)
    kl = th.minimum(kl_pq, kl_qp).clamp_min(0.0)
    return th.minimum(th.sqrt(kl / 2.0), th.sqrt(-th.expm1(-kl)))


def _check_max_rate(max_rate: float) -> None:
    if isinstance(max_rate, bool) or not isinstance(max_rate, (int, float)) or not 0.0 <= float(max_rate) < 1.0:
        raise ValueError(f"max_rate must be in [0, 1), got {max_rate!r}")


def _logsumexp(values: np.ndarray) -> float:
    peak = float(np.max(values))
    return peak + float(np.log(np.sum(np.exp(values - peak))))
