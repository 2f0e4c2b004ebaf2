"""The horizon schedule of Algorithm 2 (Appendix D.1, MBPO's) and MBPO's model-buffer capacity rule."""

import numpy as np
import pytest

from sb3_pmac.horizon import epoch_at, horizon_at, max_horizon, model_buffer_capacity, validate_horizon_schedule


@pytest.mark.parametrize(
    "schedule, epoch, expected",
    [
        ((20, 100, 1, 15), 0, 1),  # Hopper: 1 until epoch 20 ...
        ((20, 100, 1, 15), 20, 1),
        ((20, 100, 1, 15), 60, 8),  # 1 + 40/80 * 14 = 8
        ((20, 100, 1, 15), 99.9, 14),
        ((20, 100, 1, 15), 100, 15),  # ... 15 from epoch 100 on
        ((20, 100, 1, 15), 500, 15),
        ((20, 100, 1, 25), 40, 7),  # Ant: 1 + 20/80 * 24 = 7
        ((20, 300, 1, 25), 160, 13),  # Humanoid: 1 + 140/280 * 24 = 13
        ((20, 300, 1, 25), 300, 25),
        (1, 250, 1),  # Walker2d, HalfCheetah, Pusher
        (5, 0, 5),
        ((2, 4, 10, 5), 0, 10),  # a falling schedule: 10 until epoch 2, then down to 5 by epoch 4
        ((2, 4, 10, 5), 2, 10),
        ((2, 4, 10, 5), 3, 7),  # floor(10 + 1/2 * (5 - 10)) = floor(7.5)
        ((2, 4, 10, 5), 4, 5),
        ((2, 4, 10, 5), 9, 5),
    ],
)
def test_horizon_schedule(schedule, epoch, expected):
    assert horizon_at(epoch, schedule) == expected


def test_schedule_is_monotone_and_bounded():
    values = [horizon_at(e / 10, (20, 100, 1, 15)) for e in range(0, 1500)]
    assert values == sorted(values) and min(values) == 1 and max(values) == 15
    assert max_horizon((20, 300, 1, 25)) == 25 and max_horizon(3) == 3
    assert max_horizon((2, 4, 10, 5)) == 10  # a falling schedule's largest horizon is its first


@pytest.mark.parametrize(
    "schedule",
    [0, -1, True, 1.5, "15", (1, 15, 20), (100, 20, 1, 15), (20, 20, 1, 15), (20, 100, 0, 15), (20, 100, 1.0, 15), None],
)
def test_malformed_schedule(schedule):
    with pytest.raises(ValueError):
        validate_horizon_schedule(schedule)


@pytest.mark.parametrize(
    "schedule",
    [np.float64(3.0), np.True_, np.array([20.0, 100.0, 1.0, 15.0]), np.array([[20, 100, 1, 15]]), [20, 100, np.True_, 15]],
)
def test_malformed_numpy_schedule(schedule):
    with pytest.raises(ValueError, match="Malformed rollout horizon schedule"):
        validate_horizon_schedule(schedule)


@pytest.mark.parametrize(
    "schedule, expected",
    [
        (np.int64(3), 3),
        (np.int32(1), 1),
        (np.array([20, 100, 1, 15]), (20, 100, 1, 15)),
        (np.array([20, 300, 1, 25], dtype=np.int32), (20, 300, 1, 25)),
        ([np.int64(20), 100, np.uint8(1), 15], (20, 100, 1, 15)),
        (range(0, 4), (0, 1, 2, 3)),
    ],
)
def test_numpy_integers_give_plain_ints(schedule, expected):
    canonical = validate_horizon_schedule(schedule)
    assert canonical == expected
    assert all(type(value) is int for value in (canonical if isinstance(canonical, tuple) else (canonical,)))
    assert horizon_at(60, schedule) == horizon_at(60, expected) and max_horizon(schedule) == max_horizon(expected)


def test_model_buffer_capacity_mbpo():
    # MBPO Hopper: 100k rollouts x horizon x 4 rollouts per epoch x 1 retained epoch
    assert model_buffer_capacity(100_000, 1, 4, 1) == 400_000
    assert model_buffer_capacity(100_000, 15, 4, 1) == 6_000_000
    # MBPO does not round the rollouts per epoch: model_train_freq 400 or 300 of 1000 steps keep 2.5 or 3.33 rollouts
    assert model_buffer_capacity(100, 1, 1000 / 400, 1) == 250 and model_buffer_capacity(100, 1, 1000 / 300, 1) == 333
    assert model_buffer_capacity(100, 2, 1000 / 600, 3) == 3 * 333
    # ... but at least the latest rollout (model_train_freq 2000: half a rollout per epoch)
    assert model_buffer_capacity(100, 1, 1000 / 2000, 1) == 100


def test_epochs_count_from_the_end_of_the_warm_up():
    # MBPO's code: epoch = (steps - warm-up) / 1000; Hopper's horizon reaches 2 at epoch 20 + 80/14 = 25.71
    assert epoch_at(4000, 5000, 1000) == 0 and epoch_at(5000, 5000, 1000) == 0 and epoch_at(65_000, 5000, 1000) == 60
    assert [horizon_at(epoch_at(t, 5000, 1000), (20, 100, 1, 15)) for t in (25_000, 30_700, 30_800, 105_000)] == [1, 1, 2, 15]


def test_agent_model_buffer_keeps_the_epochs_asked_for_whatever_the_model_train_freq():
    import warnings

    from sb3_pmac import MBPO

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for freq, expected in ((250, 400), (400, 250), (300, 333), (2000, 100)):
            agent = MBPO("MlpPolicy", "Pendulum-v1", model_train_freq=freq, rollout_batch_size=100, rollout_horizon=1)
            assert agent.model_buffer_capacity_at(1) == expected, freq  # (it kept 200 rollout rows at 400: 0.8 epochs)
