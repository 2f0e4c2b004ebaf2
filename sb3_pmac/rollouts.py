"""
Model rollouts (Algorithm 2, lines 7-10); their horizon comes from :mod:`sb3_pmac.horizon`.

From a batch of start states drawn from the real buffer (per the policy mixture), the current actor and the
dynamics ensemble are rolled out for ``horizon`` steps in one batch; every predicted transition is written into
the model buffer :math:`\\mathbb{D}_m`. Branches stop when the termination function says so, and any non-finite
prediction, or one outside the given state bounds, is dropped (and counted), never stored.
"""

import dataclasses
from collections.abc import Callable
from typing import Protocol

import torch as th

from sb3_pmac.model_buffer import ModelReplayBuffer
from sb3_pmac.termination import TerminationFn
from sb3_pmac.termination.rules import terminations

PolicyFn = Callable[[th.Tensor], th.Tensor]


class DynamicsSampler(Protocol):
    """What rollouts need from a dynamics model (see :class:`~sb3_pmac.dynamics.ensemble.ProbabilisticEnsemble`)."""

    def sample(
        self, observations: th.Tensor, actions: th.Tensor, deterministic: bool = False, generator: th.Generator | None = None
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor]: ...


@dataclasses.dataclass
class RolloutInfo:
    """What one call to :func:`rollout_model` did."""

    horizon: int
    n_start_states: int
    n_transitions: int
    n_terminated: int
    nan_predictions_dropped: int
    mean_length: float
    nonfinite_starts_dropped: int = 0
    out_of_bounds_dropped: int = 0


@th.no_grad()
def rollout_model(
    dynamics: DynamicsSampler,
    policy_fn: PolicyFn,
    termination_fn: TerminationFn,
    start_observations: th.Tensor,
    horizon: int,
    model_buffer: ModelReplayBuffer,
    generator: th.Generator | None = None,
    state_bounds: tuple[th.Tensor, th.Tensor] | None = None,
    constant_features: tuple[th.Tensor, th.Tensor] | None = None,
) -> RolloutInfo:
    """
    Roll the current policy in the learned model from ``start_observations`` for ``horizon`` steps, in one batch
    (Algorithm 2, lines 8-9), and write the predicted transitions into ``model_buffer``.

    At each step every branch asks a randomly chosen elite of the ensemble for its next state and reward.
    Start states with a NaN or infinite value and branches whose prediction is not finite are dropped (and counted);
    terminated branches stop after their last transition is stored with ``done=1``.

    :param dynamics: the learned model (``sample(obs, actions) -> (next_obs, rewards, members)``)
    :param policy_fn: maps observations to actions in the buffer's action scale (SB3 stores actions in [-1, 1])
    :param termination_fn: ``(obs, actions, next_obs) -> done`` (see :mod:`sb3_pmac.termination`)
    :param start_observations: ``[N, obs_dim]`` start states, on the model's device
    :param horizon: number of model steps
    :param model_buffer: where the transitions go
    :param generator: optional torch generator for the model's sampling
    :param state_bounds: ``(low, high)``, each ``[obs_dim]``: a branch whose predicted next state leaves this box is
        dropped like a non-finite one (counted in ``out_of_bounds_dropped``); ``None``: no bounds
    :param constant_features: ``(mask, values)``, each ``[obs_dim]``: the predicted next states take ``values`` where
        ``mask`` is True (features constant in the real data, where the model's prediction can only add noise);
        ``None``: the predictions as they are
    :return: statistics of the rollout
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    observations = start_observations
    n_start = int(observations.shape[0])
    finite_starts = th.isfinite(observations).all(dim=1)
    n_nonfinite_starts = n_start - int(finite_starts.sum())
    if n_nonfinite_starts > 0:
        observations = observations[finite_starts]
    n_transitions = n_terminated = n_dropped = n_out_of_bounds = 0
    for _ in range(horizon):
        if observations.shape[0] == 0:
            break
        actions = policy_fn(observations)
        next_observations, rewards, _ = dynamics.sample(observations, actions, generator=generator)
        if constant_features is not None:
            mask, values = constant_features
            next_observations = th.where(mask, values.to(next_observations.dtype), next_observations)
        rewards = rewards.reshape(-1)
        finite = th.isfinite(next_observations).all(dim=1) & th.isfinite(rewards)
        keep = finite
        if state_bounds is not None:
            keep = finite & ((next_observations >= state_bounds[0]) & (next_observations <= state_bounds[1])).all(dim=1)
        n_finite = int(keep.sum())
        if n_finite < observations.shape[0]:
            n_nonfinite = observations.shape[0] - int(finite.sum())
            n_dropped += n_nonfinite
            n_out_of_bounds += observations.shape[0] - n_finite - n_nonfinite
            observations, actions = observations[keep], actions[keep]
            next_observations, rewards = next_observations[keep], rewards[keep]
        dones = terminations(termination_fn, observations, actions, next_observations)
        model_buffer.add(observations, actions, rewards, next_observations, dones)
        n_transitions += n_finite
        n_done = int(dones.sum())
        n_terminated += n_done
        observations = next_observations[~dones] if n_done > 0 else next_observations
    return RolloutInfo(
        horizon=horizon,
        n_start_states=n_start,
        n_transitions=n_transitions,
        n_terminated=n_terminated,
        nan_predictions_dropped=n_dropped,
        mean_length=n_transitions / max(n_start, 1),
        nonfinite_starts_dropped=n_nonfinite_starts,
        out_of_bounds_dropped=n_out_of_bounds,
    )
