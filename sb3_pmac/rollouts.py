"""
Model rollouts (Algorithm 2, lines 7-10) and the rollout horizon schedule (paper Appendix D.1).

From a batch of start states drawn from the real buffer (per the policy mixture), the current actor and the
dynamics ensemble are rolled out for ``horizon`` steps in one batch; every predicted transition is written into
the model buffer :math:`\\mathbb{D}_m`. Branches stop when the termination function says so, and any non-finite
prediction is dropped (and counted), never stored.
"""

import dataclasses
import math
from collections.abc import Callable
from typing import Protocol

import torch as th

from sb3_pmac.buffers import ModelReplayBuffer

#: A horizon schedule: a fixed horizon, or ``(a, b, x, y)``: horizon ``x`` until epoch ``a``, growing linearly to
#: ``y`` at epoch ``b`` (paper Appendix D.1, MBPO). One epoch is 1000 environment steps.
HorizonSchedule = int | tuple[int, int, int, int]

PolicyFn = Callable[[th.Tensor], th.Tensor]
TerminationFn = Callable[[th.Tensor, th.Tensor, th.Tensor], th.Tensor]


class DynamicsSampler(Protocol):
    """What rollouts need from a dynamics model (see :class:`sb3_pmac.dynamics.ProbabilisticEnsemble`)."""

    def sample(
        self, observations: th.Tensor, actions: th.Tensor, deterministic: bool = False, generator: th.Generator | None = None
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor]: ...


def validate_horizon_schedule(schedule: HorizonSchedule) -> HorizonSchedule:
    """
    Check a horizon schedule and return it in canonical form (an ``int`` or a tuple of 4 ints).

    :param schedule: a positive int, or ``(a, b, x, y)`` with ``0 <= a < b`` and horizons ``x, y >= 1``
    :raises ValueError: for anything else
    """
    if isinstance(schedule, bool):
        raise ValueError(f"Malformed rollout horizon schedule {schedule!r}")
    if isinstance(schedule, int):
        if schedule < 1:
            raise ValueError(f"A fixed rollout horizon must be >= 1, got {schedule}")
        return schedule
    try:
        values = tuple(schedule)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"Malformed rollout horizon schedule {schedule!r}: expected an int or [a, b, x, y]") from None
    if len(values) != 4 or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError(f"Malformed rollout horizon schedule {schedule!r}: expected 4 ints [a, b, x, y]")
    start_epoch, end_epoch, start_horizon, end_horizon = values
    if not 0 <= start_epoch < end_epoch:
        raise ValueError(f"Rollout horizon schedule {schedule!r}: epochs must satisfy 0 <= a < b")
    if start_horizon < 1 or end_horizon < 1:
        raise ValueError(f"Rollout horizon schedule {schedule!r}: horizons must be >= 1")
    return (start_epoch, end_epoch, start_horizon, end_horizon)


def rollout_horizon(epoch: float, schedule: HorizonSchedule) -> int:
    """
    The rollout horizon at ``epoch``: :math:`h = \\min(\\max(x + \\frac{e-a}{b-a}(y-x), x), y)` (rounded down).

    Note: Table 1 of the paper prints the schedules as ``[x, y, a, b]`` (e.g. Hopper ``[1, 15, 20, 100]``); the
    formula, and MBPO, read them as ``[a, b, x, y]``. Here ``(20, 100, 1, 15)`` means horizon 1 until epoch 20,
    then linearly up to 15 at epoch 100.

    :param epoch: training epoch (environment steps / 1000)
    :param schedule: fixed horizon or ``(a, b, x, y)``
    """
    schedule = validate_horizon_schedule(schedule)
    if isinstance(schedule, int):
        return schedule
    start_epoch, end_epoch, start_horizon, end_horizon = schedule
    value = start_horizon + (epoch - start_epoch) / (end_epoch - start_epoch) * (end_horizon - start_horizon)
    low, high = min(start_horizon, end_horizon), max(start_horizon, end_horizon)
    return math.floor(min(max(value, low), high))


def max_rollout_horizon(schedule: HorizonSchedule) -> int:
    """Largest horizon the schedule ever reaches."""
    schedule = validate_horizon_schedule(schedule)
    return schedule if isinstance(schedule, int) else max(schedule[2], schedule[3])


def model_buffer_capacity(rollout_batch_size: int, horizon: int, rollouts_per_epoch: int, retain_epochs: int) -> int:
    """
    MBPO's model buffer size: rollout batch x horizon x rollouts per epoch x retained epochs.

    :param rollout_batch_size: start states per rollout
    :param horizon: current rollout horizon
    :param rollouts_per_epoch: rollouts per 1000 environment steps (1000 / ``model_train_freq``)
    :param retain_epochs: how many epochs of model data to keep
    """
    return int(rollout_batch_size * horizon * rollouts_per_epoch * retain_epochs)


@dataclasses.dataclass
class RolloutInfo:
    """What one call to :func:`rollout_model` did."""

    horizon: int
    n_start_states: int
    n_transitions: int
    n_terminated: int
    nan_predictions_dropped: int
    mean_length: float


@th.no_grad()
def rollout_model(
    dynamics: DynamicsSampler,
    policy_fn: PolicyFn,
    termination_fn: TerminationFn,
    start_observations: th.Tensor,
    horizon: int,
    model_buffer: ModelReplayBuffer,
    generator: th.Generator | None = None,
) -> RolloutInfo:
    """
    Roll the current policy in the learned model from ``start_observations`` for ``horizon`` steps, in one batch
    (Algorithm 2, lines 8-9), and write the predicted transitions into ``model_buffer``.

    At each step every branch asks a randomly chosen elite of the ensemble for its next state and reward.
    Branches whose prediction is not finite are dropped (and counted); terminated branches stop after their last
    transition is stored with ``done=1``.

    :param dynamics: the learned model (``sample(obs, actions) -> (next_obs, rewards, members)``)
    :param policy_fn: maps observations to actions in the buffer's action scale (SB3 stores actions in [-1, 1])
    :param termination_fn: ``(obs, actions, next_obs) -> done`` (see :mod:`sb3_pmac.termination`)
    :param start_observations: ``[N, obs_dim]`` start states, on the model's device
    :param horizon: number of model steps
    :param model_buffer: where the transitions go
    :param generator: optional torch generator for the model's sampling
    :return: statistics of the rollout
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    observations = start_observations
    n_start = int(observations.shape[0])
    n_transitions = n_terminated = n_dropped = 0
    for _ in range(horizon):
        if observations.shape[0] == 0:
            break
        actions = policy_fn(observations)
        next_observations, rewards, _ = dynamics.sample(observations, actions, generator=generator)
        rewards = rewards.reshape(-1)
        finite = th.isfinite(next_observations).all(dim=1) & th.isfinite(rewards)
        n_finite = int(finite.sum())
        if n_finite < observations.shape[0]:
            n_dropped += observations.shape[0] - n_finite
            observations, actions = observations[finite], actions[finite]
            next_observations, rewards = next_observations[finite], rewards[finite]
        dones = th.as_tensor(termination_fn(observations, actions, next_observations), device=observations.device)
        dones = dones.reshape(-1).bool()
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
    )
