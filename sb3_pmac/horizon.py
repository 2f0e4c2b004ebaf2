"""
The rollout horizon schedule :math:`H` of Algorithm 2 (paper Appendix D.1, MBPO's schedules) and MBPO's model-buffer
capacity rule, which grows with :math:`H`.
"""

import math
import numbers
import warnings

#: A horizon schedule: a fixed horizon, or ``(a, b, x, y)``: horizon ``x`` until epoch ``a``, growing linearly to
#: ``y`` at epoch ``b`` (paper Appendix D.1, MBPO). One epoch is ``epoch_length`` (1000) environment steps.
HorizonSchedule = int | tuple[int, int, int, int]


def epoch_at(num_timesteps: int, learning_starts: int, epoch_length: int) -> float:
    """
    The epoch of the schedule at ``num_timesteps``: as in MBPO's code (and the authors'), epochs count from the end of
    the random warm-up, ``(num_timesteps - learning_starts) / epoch_length`` (0 during the warm-up).
    """
    return max(0, num_timesteps - learning_starts) / epoch_length


def validate_horizon_schedule(schedule: HorizonSchedule) -> HorizonSchedule:
    """
    Check a horizon schedule and return it in canonical form (a plain ``int`` or a tuple of 4 plain ints).

    Integers of any kind are accepted (numpy's included), and the 4 values as any sequence or 1-D array of
    integers; floats (even ``15.0``) and bools are not.

    :param schedule: a positive int, or ``(a, b, x, y)`` with ``0 <= a < b`` and horizons ``x, y >= 1``
    :raises ValueError: for anything else
    """
    if _is_int(schedule):
        horizon = int(schedule)  # type: ignore[arg-type]
        if horizon < 1:
            raise ValueError(f"A fixed rollout horizon must be >= 1, got {horizon}")
        return horizon
    try:
        items = tuple(schedule)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"Malformed rollout horizon schedule {schedule!r}: expected an int or [a, b, x, y]") from None
    if len(items) != 4 or not all(_is_int(v) for v in items):
        raise ValueError(f"Malformed rollout horizon schedule {schedule!r}: expected 4 ints [a, b, x, y]")
    values = tuple(int(v) for v in items)
    start_epoch, end_epoch, start_horizon, end_horizon = values
    if not 0 <= start_epoch < end_epoch:
        raise ValueError(f"Rollout horizon schedule {schedule!r}: epochs must satisfy 0 <= a < b")
    if start_horizon < 1 or end_horizon < 1:
        raise ValueError(f"Rollout horizon schedule {schedule!r}: horizons must be >= 1")
    return (start_epoch, end_epoch, start_horizon, end_horizon)


def warn_table_1_order(schedule: HorizonSchedule, stacklevel: int = 3) -> None:
    """
    Warn when a schedule (as :func:`validate_horizon_schedule` returns it) looks copied in the paper's Table 1 order
    ``(x, y, a, b)``: horizons longer than the last epoch, and the values read in that order a valid schedule too (a
    first horizon ``x >= 1``, epochs ``a < b``; a schedule from epoch 0 or with a falling horizon is not a copy). Called
    once, where the user's schedule enters (PMAC's constructor), not wherever the schedule is read.

    :param schedule: a validated schedule
    :param stacklevel: the warning's stack level, counted from this function
    """
    if isinstance(schedule, int):
        return
    start_epoch, end_epoch, start_horizon, end_horizon = schedule
    read_as_table_1 = start_epoch >= 1 and start_horizon < end_horizon  # x >= 1 and a < b in the order (x, y, a, b)
    if read_as_table_1 and max(start_horizon, end_horizon) > end_epoch:
        warnings.warn(
            f"Rollout horizon schedule {list(schedule)!r} reads as epochs {start_epoch} -> {end_epoch}, horizon "
            f"{start_horizon} -> {end_horizon}: horizons longer than the last epoch usually mean the paper's Table 1 "
            f"order (x, y, a, b) was copied; the order here is [a, b, x, y] (MBPO's Hopper: [20, 100, 1, 15])",
            UserWarning,
            stacklevel=stacklevel,
        )


def _is_int(value: object) -> bool:
    """Whether ``value`` is an integer (Python's or numpy's), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def horizon_at(epoch: float, schedule: HorizonSchedule) -> int:
    """
    The rollout horizon at ``epoch``: :math:`h = \\min(\\max(x + \\frac{e-a}{b-a}(y-x), x), y)` (rounded down).

    Note: Table 1 of the paper prints the schedules as ``[x, y, a, b]`` (e.g. Hopper ``[1, 15, 20, 100]``); the
    formula, and MBPO, read them as ``[a, b, x, y]``. Here ``(20, 100, 1, 15)`` means horizon 1 until epoch 20,
    then linearly up to 15 at epoch 100.

    :param epoch: training epoch (:func:`epoch_at`)
    :param schedule: fixed horizon or ``(a, b, x, y)``
    """
    schedule = validate_horizon_schedule(schedule)
    if isinstance(schedule, int):
        return schedule
    start_epoch, end_epoch, start_horizon, end_horizon = schedule
    value = start_horizon + (epoch - start_epoch) / (end_epoch - start_epoch) * (end_horizon - start_horizon)
    low, high = min(start_horizon, end_horizon), max(start_horizon, end_horizon)
    return math.floor(min(max(value, low), high))


def max_horizon(schedule: HorizonSchedule) -> int:
    """Largest horizon the schedule ever reaches."""
    schedule = validate_horizon_schedule(schedule)
    return schedule if isinstance(schedule, int) else max(schedule[2], schedule[3])


def model_buffer_capacity(rollout_batch_size: int, horizon: int, rollouts_per_epoch: float, retain_epochs: int) -> int:
    """
    MBPO's model buffer size: retained epochs x ``int(rollout batch x horizon x rollouts per epoch)``, and at least one
    rollout's worth (``rollout batch x horizon``: with fewer than one rollout per epoch, MBPO's size would not hold the
    latest rollout).

    :param rollout_batch_size: start states per rollout
    :param horizon: current rollout horizon
    :param rollouts_per_epoch: rollouts per epoch, ``epoch_length / model_train_freq`` (not rounded: 1000 / 400 = 2.5)
    :param retain_epochs: how many epochs of model data to keep
    """
    per_epoch = int(round(rollout_batch_size * horizon * rollouts_per_epoch, 6))  # (round: 999.9999999 -> 1000)
    return max(retain_epochs * per_epoch, rollout_batch_size * horizon)
