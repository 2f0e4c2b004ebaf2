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

The weights are computed from the version ids in this closed form (the replay buffer owns the versions:
:meth:`~sb3_pmac.buffers.PolicyVersionedReplayBuffer.start_new_version`), in log space and from id differences, so
nothing underflows or turns into NaN after millions of versions.

The inverse-TV weighting of the authors' later code (PDML) is in :mod:`sb3_pmac.tv_mixture`.
"""

import math
import numbers
from typing import Any, Literal

import numpy as np

from sb3_pmac.compat import upgrade_mixture_state

MixtureMode = Literal["exponential", "uniform", "tv"]


class PolicyMixture:
    """
    Weights over the historical policy versions :math:`\\Pi^k` (paper: policy mixture distribution :math:`w^k`).

    The mixture holds no versions: the replay buffer does (:class:`~sb3_pmac.buffers.PolicyVersionedReplayBuffer`,
    one id per interaction epoch, counted from 0), and the weights of any set of version ids are computed from the
    ids in closed form, in log space: after ``k`` applications of Algorithm 1 the weight of version ``i`` is
    :math:`(1-\\alpha)\\,\\alpha^{k-i}` (:math:`\\alpha^k` for the first version, ``i = 0``), and ``k`` cancels
    when the weights are normalised over the versions considered.

    :param adaptation_rate: The policy-adaptation rate :math:`\\alpha` in (0, 1] (paper default 0.9).
        Each new version multiplies the old weights by ``adaptation_rate``; the newest policy always holds the share
        ``1 - adaptation_rate``. ``adaptation_rate=1`` is the limit of the closed form :math:`\\alpha^{k-i}`: every
        *policy* gets the same weight (Eq. 4 itself would give new policies weight 0).
    :param mode: ``"exponential"`` (Algorithm 1, PMAC) or ``"uniform"`` (MBPO: uniform over transitions).
    """

    def __init__(self, adaptation_rate: float = 0.9, mode: MixtureMode = "exponential") -> None:
        rate = check_adaptation_rate(adaptation_rate)
        if mode not in ("exponential", "uniform"):
            hint = " (the TV weighting is TVPolicyMixture)" if mode == "tv" else ""
            raise ValueError(f"Unknown policy mixture mode {mode!r}, expected 'exponential' or 'uniform'{hint}")
        self.adaptation_rate = rate
        self.mode: MixtureMode = mode

    # ------------------------------------------------------------------ Algorithm 1 in closed form
    def _unnormalized_log_weights(self, versions: np.ndarray, counts: np.ndarray | None) -> np.ndarray:
        """Log-weights of ``versions`` up to a common constant (exact for any ids: only id differences are used)."""
        if self.mode == "uniform":
            counts = np.ones(len(versions)) if counts is None else np.asarray(counts, dtype=np.float64).reshape(-1)
            if len(counts) != len(versions):
                raise ValueError(f"Got {len(versions)} versions but {len(counts)} counts")
            if np.any(counts < 0) or counts.sum() <= 0:
                raise ValueError("counts must be non-negative with a positive sum")
            with np.errstate(divide="ignore"):
                return np.log(counts)
        if self.adaptation_rate == 1.0:
            return np.zeros(len(versions))  # limit alpha -> 1 of alpha^(k-i): every policy weighs the same
        # w_i = (1 - alpha) alpha^(k-i) for i >= 1 and w_0 = alpha^k: divided by (1 - alpha) alpha^(k-newest),
        # log w_i = (newest - i) log(alpha), minus log(1 - alpha) for the first version (it started with weight 1).
        log_w = (versions.max() - versions).astype(np.float64) * np.log(self.adaptation_rate)
        log_w[versions == 0] -= np.log1p(-self.adaptation_rate)
        return log_w

    def log_weights(self, versions: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
        """
        Log of the Algorithm 1 weights :math:`w_i` of ``versions``, normalised over them (exact even where
        :math:`w_i` underflows in float64).

        :param versions: version ids (non-negative, in any order)
        :param counts: number of transitions of each version (uniform mode only: the weights are proportional to it;
            all equal when not given)
        :return: log-weights, same order as ``versions`` (they sum to one once exponentiated)
        """
        versions = as_versions(versions)
        if len(versions) == 0:
            return np.zeros(0)
        log_w = self._unnormalized_log_weights(versions, counts)
        return log_w - logsumexp(log_w)

    def weights(self, versions: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
        """The weights :math:`w_i` of ``versions``, normalised over them (see :meth:`log_weights`)."""
        return np.exp(self.log_weights(versions, counts))

    def probabilities(self, versions: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
        """
        Probability of drawing a sample from each of ``versions`` (the versions that still have data).

        Exponential mode: the Algorithm 1 weights restricted to ``versions`` and renormalised (versions without data
        drop out); each version's probability does not depend on how many transitions it holds.
        Uniform mode (MBPO): proportional to ``counts``, so that every transition is equally likely.

        :param versions: version ids
        :param counts: number of transitions of each version (required in uniform mode)
        :return: probabilities summing to one, same order as ``versions``
        """
        versions = as_versions(versions)
        if len(versions) == 0:
            raise ValueError("No policy version with data to sample from")
        log_w = self._unnormalized_log_weights(versions, counts)
        probs = np.exp(log_w - log_w.max())
        return probs / probs.sum()

    def effective_number_of_policies(self, versions: np.ndarray, counts: np.ndarray | None = None) -> float:
        """
        Inverse Simpson index :math:`1 / \\sum_i w_i^2` of the weights of ``versions`` (see :meth:`weights`): how
        many versions the mixture effectively spans (0 without versions).
        """
        weights = self.weights(versions, counts)
        return float(1.0 / np.sum(weights**2)) if len(weights) > 0 else 0.0

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """State to save with the agent."""
        return {"adaptation_rate": self.adaptation_rate, "mode": self.mode}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state produced by :meth:`state_dict` (the version lists of earlier releases are ignored)."""
        if state["mode"] not in ("exponential", "uniform"):
            raise ValueError(f"Not a PolicyMixture state (mode {state['mode']!r}): load it into a TVPolicyMixture")
        self.adaptation_rate = float(state["adaptation_rate"])
        self.mode = state["mode"]

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Mixtures pickled by earlier releases kept their own version list (now the replay buffer's)
        self.__dict__.update(upgrade_mixture_state(state))

    def __repr__(self) -> str:
        return f"PolicyMixture(adaptation_rate={self.adaptation_rate}, mode={self.mode!r})"


def bounded_train_size(steps_per_version: int, adaptation_rate: float, stored: int) -> int:
    """
    The bounded model-training set of PMAC's ``model_training="bounded"``: the effective support of Algorithm 1's
    mixture in transitions, i.e. the effective number of policies :math:`(1 + \\alpha) / (1 - \\alpha)` (inverse
    Simpson index of :math:`w_i \\propto \\alpha^{k-i}`) times the transitions per version; ``stored`` when
    ``alpha = 1`` (every policy weighs the same).
    """
    if adaptation_rate >= 1.0:
        return stored
    return math.ceil(round(steps_per_version * (1.0 + adaptation_rate) / (1.0 - adaptation_rate), 6))


def as_versions(versions: np.ndarray) -> np.ndarray:
    """``versions`` as a 1-d int64 array of non-negative ids (``ValueError`` otherwise)."""
    versions = np.asarray(versions, dtype=np.int64).reshape(-1)
    if np.any(versions < 0):
        raise ValueError(f"Policy versions are non-negative ids, got {versions}")
    return versions


def check_adaptation_rate(adaptation_rate: float) -> float:
    """
    Check the policy-adaptation rate :math:`\\alpha`: any real number in (0, 1] (numpy's scalars included).

    :param adaptation_rate: the rate to check
    :return: the rate as a plain ``float``
    :raises ValueError: for a bool, a non-number (e.g. a string), NaN or a number outside (0, 1]
    """
    if isinstance(adaptation_rate, bool) or not isinstance(adaptation_rate, numbers.Real):
        raise ValueError(f"adaptation_rate (alpha) must be a real number in (0, 1], got {adaptation_rate!r}")
    rate = float(adaptation_rate)
    if not 0.0 < rate <= 1.0:  # (False for NaN)
        raise ValueError(f"adaptation_rate (alpha) must be in (0, 1], got {rate!r}")
    return rate


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
