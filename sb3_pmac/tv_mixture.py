"""
The inverse-TV policy mixture of the authors' public code for the final version of the paper (PDML, ICML 2023):
PMAC's ``mixture="tv"``, an alternative to Algorithm 1 (:mod:`sb3_pmac.policy_mixture`).

Each older policy version weighs the inverse of an upper bound of the total-variation distance between the policy
that collected its data and the current one (:func:`gaussian_tv_upper_bound`, measured on the states it visited by
:func:`measure_tv_distances`); the newest chunk of data gets a share set by ``max_rate``. The docs' algorithm page
compares this weighting with Algorithm 1.
"""

import math
import numbers
from typing import Any, Protocol

import numpy as np
import torch as th

from sb3_pmac.compat import measured_distances
from sb3_pmac.policy_mixture import PolicyMixture, as_versions, logsumexp

#: Pre-tanh log standard deviation that stands for SAC's random warm-up actions in the TV variant. An action drawn
#: uniformly from [-1, 1] is :math:`\tanh(u)` with :math:`u` logistic of scale 1/2 (density
#: :math:`\operatorname{sech}^2(u)/2`, variance :math:`\pi^2/12`); the warm-up behaviour is recorded as the
#: moment-matched Gaussian :math:`\mathcal{N}(0, \pi^2/12)` per action dimension: an approximation, at a
#: total-variation distance of about 0.054 (KL about 0.01 nats) from the exact logistic law in each dimension
#: (measured in ``tests/test_tv_mixture.py``). Only the distances of warm-up data use it.
UNIFORM_ACTION_LOG_STD = 0.5 * math.log(math.pi**2 / 12.0)


class ActorGaussian(Protocol):
    """The current actor's pre-squash Gaussian at (normalized) observations: ``obs -> (mean, log_std)``."""

    def __call__(self, observations: th.Tensor) -> tuple[th.Tensor, th.Tensor]: ...


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
    PMAC's model step starts a new version (the one about to collect the next interaction epoch), it has no data yet
    and gets no draws, so the newest version with data is the one before it. With a single version with data it gets
    every draw.

    The mixture keeps only the distances last measured, by version id (the versions are the replay buffer's).

    :param max_rate: share :math:`r` of the newest chunk of data, in [0, 1) (0.02 in the authors' code)
    :param eps: :math:`\\epsilon` added to the distances before inverting them (> 0): versions at distance 0 get the
        finite weight :math:`1/\\epsilon`, all the same
    """

    def __init__(self, max_rate: float = 0.02, eps: float = 1e-6) -> None:
        check_max_rate(max_rate)
        if not isinstance(eps, (int, float)) or not 0.0 < float(eps) < 1.0:
            raise ValueError(f"eps must be in (0, 1), got {eps!r}")
        super().__init__(adaptation_rate=1.0, mode="exponential")
        self.mode = "tv"
        self.max_rate = float(max_rate)
        self.eps = float(eps)
        self._distances: dict[int, float] = {}  # measured distance xi_i of each version id

    def set_distances(self, versions: np.ndarray, distances: np.ndarray) -> None:
        """
        Set the measured distances :math:`\\xi_i` to the current policy; they replace those measured before (the
        versions not listed become unmeasured).

        :param versions: version ids (the versions that have data)
        :param distances: non-negative distance of each version (an upper bound of the TV distance, in [0, 1] when it
            comes from :func:`gaussian_tv_upper_bound`)
        """
        versions = as_versions(versions)
        distances = np.asarray(distances, dtype=np.float64).reshape(-1)
        if len(versions) != len(distances):
            raise ValueError(f"Got {len(versions)} versions but {len(distances)} distances")
        if len(np.unique(versions)) != len(versions):
            raise ValueError(f"Versions must not repeat, got {versions}")
        if not np.all(np.isfinite(distances)) or np.any(distances < 0):
            raise ValueError(f"Distances must be finite and non-negative, got {distances}")
        self._distances = dict(zip(versions.tolist(), distances.tolist(), strict=True))

    def distances(self, versions: np.ndarray) -> np.ndarray:
        """The measured distance of each of ``versions``, same order (NaN where none is measured)."""
        return np.array([self._distances.get(v, np.nan) for v in as_versions(versions).tolist()], dtype=np.float64)

    @property
    def measured_versions(self) -> np.ndarray:
        """Ids of the versions with a measured distance, oldest first."""
        return np.array(sorted(self._distances), dtype=np.int64)

    def _log_mixture(self, distances: np.ndarray, newest: int) -> np.ndarray:
        """Normalised log-weights of versions with the given distances; ``newest`` indexes the newest one."""
        log_w = np.empty(len(distances), dtype=np.float64)
        older = np.arange(len(distances)) != newest
        if not np.any(older):
            log_w[newest] = 0.0
            return log_w
        older_log_w = -np.log(distances[older] + self.eps)
        older_log_w -= logsumexp(older_log_w)  # the older versions' weights sum to one
        log_w[older] = older_log_w
        share = math.log(self.max_rate) - math.log1p(-self.max_rate) if self.max_rate > 0 else -np.inf
        log_w[newest] = max(share, float(older_log_w.max()))
        return log_w - logsumexp(log_w)

    def probabilities(self, versions: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
        """
        Probability of drawing a sample from each of ``versions`` (the versions that still have data).

        The newest of ``versions`` gets the ``max_rate`` rule, the others weigh the inverse of their distance (see
        the class description); ``counts`` is not used.

        :param versions: version ids; all but the newest must have a measured distance
        :param counts: ignored (the weights are per version)
        :return: probabilities summing to one, same order as ``versions``
        """
        versions = as_versions(versions)
        if len(versions) == 0:
            raise ValueError("No policy version with data to sample from")
        distances = self.distances(versions)
        newest = int(np.argmax(versions))
        missing = np.isnan(distances) & (np.arange(len(versions)) != newest)
        if np.any(missing):
            raise KeyError(f"No distance measured for versions {versions[missing]} (call set_distances first)")
        return np.exp(self._log_mixture(distances, newest))

    def log_weights(self, versions: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
        """
        Log-weights of ``versions`` as last measured: the mixture over those with a measured distance (the newest of
        them gets the ``max_rate`` rule), ``-inf`` for the others; uniform when none is measured. ``counts`` is not
        used.
        """
        distances = self.distances(versions)
        measured = ~np.isnan(distances)
        if not np.any(measured):
            return np.full(len(distances), -math.log(len(distances)) if len(distances) else 0.0)
        log_w = np.full(len(distances), -np.inf)
        log_w[measured] = self._log_mixture(distances[measured], int(np.argmax(as_versions(versions)[measured])))
        return log_w

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """State to save with the agent."""
        versions = self.measured_versions
        return {
            "mode": self.mode,
            "max_rate": self.max_rate,
            "eps": self.eps,
            "versions": versions,
            "distances": self.distances(versions),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state produced by :meth:`state_dict` (or by an earlier release: unmeasured versions are NaN)."""
        if state.get("mode") != "tv":
            raise ValueError(f"Not a TVPolicyMixture state (mode {state.get('mode')!r})")
        self.max_rate, self.eps = float(state["max_rate"]), float(state["eps"])
        self._distances = measured_distances(as_versions(state["versions"]), np.asarray(state["distances"], dtype=np.float64))

    def __repr__(self) -> str:
        return f"TVPolicyMixture(max_rate={self.max_rate}, eps={self.eps}, n_measured={len(self._distances)})"


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


def check_max_rate(max_rate: float) -> None:
    """Raise ``ValueError`` unless ``max_rate`` is a real number in [0, 1) (numpy's scalars included, as for alpha)."""
    if isinstance(max_rate, bool) or not isinstance(max_rate, numbers.Real) or not 0.0 <= float(max_rate) < 1.0:
        raise ValueError(f"max_rate must be in [0, 1), got {max_rate!r}")


def actor_gaussian(actor: Any, observations: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """
    Pre-squash mean and log standard deviation of an SB3 SAC actor at (normalized) observations; with gSDE, the
    marginal standard deviation over the noise matrix.
    """
    mean, log_std, kwargs = actor.get_action_dist_params(observations)
    if kwargs:  # gSDE: the std depends on the state through the latent features
        distribution = actor.action_dist.proba_distribution(mean, log_std, **kwargs)
        log_std = th.log(distribution.distribution.stddev)
    return mean, log_std.expand_as(mean)


def measure_tv_distances(
    buffer: Any,
    current_gaussian: ActorGaussian,
    n_states: int,
    normalize_obs: Any = None,
    device: th.device | str = "cpu",
    chunk_size: int = 65_536,
) -> tuple[np.ndarray, np.ndarray]:
    """
    Distance of each version's policy to the current policy (PDML's :math:`\\xi_{\\pi_i}`).

    For every version with data in the real buffer, ``n_states`` of its transitions are drawn (uniformly, with
    replacement); at each one, :func:`gaussian_tv_upper_bound` bounds the total-variation distance between the
    Gaussian the collecting actor had at that observation (stored with the transition) and the current actor's
    Gaussian there; the version's distance is the mean over its draws. So each version is compared with the policy
    that actually collected its data, on the states it visited. (The authors' code snapshots the actor every
    ``model_train_freq`` steps, pairs each chunk with the snapshot at its end, and averages over all stored states.)
    Random warm-up actions count as their moment-matched Gaussian (:data:`UNIFORM_ACTION_LOG_STD`); a transition
    stored without parameters counts as distance 1.

    :param buffer: a :class:`~sb3_pmac.buffers.PolicyVersionedReplayBuffer` created with ``store_policy_params=True``
    :param current_gaussian: the current actor's Gaussian (:func:`actor_gaussian`)
    :param n_states: states drawn per version
    :param normalize_obs: the ``VecNormalize.normalize_obs`` the actor sees observations through, if any
    :param device: where the actor runs
    :param chunk_size: states evaluated at once
    :return: ``(versions, distances)``, the distances in [0, 1]
    """
    versions, starts, lengths = buffer.version_ranges()
    if buffer.policy_means is None or buffer.policy_log_stds is None:
        raise ValueError("mixture='tv' needs a replay buffer created with store_policy_params=True")
    if len(versions) == 0:
        return versions, np.zeros(0)
    offsets = (np.random.random((len(versions), n_states)) * lengths[:, None]).astype(np.int64)
    batch_inds = ((starts[:, None] + offsets) % buffer.buffer_size).reshape(-1)
    env_inds = np.random.randint(0, buffer.n_envs, size=batch_inds.shape)
    observations = buffer.observations[batch_inds, env_inds]
    if normalize_obs is not None:  # the actor sees normalized observations; the buffer stores raw ones
        observations = normalize_obs(observations)
    behaviour = (buffer.policy_means[batch_inds, env_inds], buffer.policy_log_stds[batch_inds, env_inds])
    bounds = []
    with th.no_grad():
        for chunk in range(0, len(batch_inds), chunk_size):
            rows = slice(chunk, chunk + chunk_size)
            mean, log_std = current_gaussian(th.as_tensor(observations[rows], dtype=th.float32, device=device))
            old_mean, old_log_std = (th.as_tensor(column[rows], device=device) for column in behaviour)
            bounds.append(gaussian_tv_upper_bound(mean, log_std, old_mean, old_log_std).cpu().numpy())
    bound = np.concatenate(bounds)
    bound[np.isnan(bound)] = 1.0  # unknown collecting policy: the largest distance
    return versions, bound.reshape(len(versions), n_states).mean(axis=1)
