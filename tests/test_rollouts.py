import pytest
import torch as th

from sb3_pmac.model_buffer import ModelReplayBuffer
from sb3_pmac.rollouts import rollout_model


class ShiftModel:
    """next = obs + action, reward = obs[:, 0]; member index = 0. Optionally NaN for chosen rows."""

    def __init__(self, nan_rows_first_step: int = 0):
        self.nan_rows_first_step = nan_rows_first_step
        self.calls = 0

    def sample(self, observations, actions, deterministic=False, generator=None):
        next_obs = observations + actions
        rewards = observations[:, 0].clone()
        if self.calls == 0 and self.nan_rows_first_step:
            next_obs[: self.nan_rows_first_step, 1] = float("nan")
        self.calls += 1
        return next_obs, rewards, th.zeros(len(observations), dtype=th.long)


def policy_fn(observations):
    return th.ones_like(observations)  # every step adds 1 to every coordinate


def terminate_above_3(observations, actions, next_observations):
    return next_observations[:, 0] > 3


def test_rollout_shapes_and_values():
    start = th.zeros((50, 2))
    start[:, 0] = th.arange(50) % 5 - 10  # never terminates within the horizon
    buffer = ModelReplayBuffer(1000, obs_dim=2, action_dim=2)
    info = rollout_model(ShiftModel(), policy_fn, terminate_above_3, start, horizon=4, model_buffer=buffer)
    assert info.n_transitions == 200 == buffer.size()
    assert info.n_terminated == 0 and info.mean_length == 4.0 and info.nan_predictions_dropped == 0
    data = buffer.get_transitions(th.arange(200))
    th.testing.assert_close(data.next_observations, data.observations + 1)
    th.testing.assert_close(data.rewards[:, 0], data.observations[:, 0])
    # step t of the rollout starts from start + t
    th.testing.assert_close(data.observations[150:], start + 3)


def test_rollout_stops_terminated_branches():
    start = th.zeros((4, 1))
    start[:, 0] = th.tensor([0.0, 1.0, 2.0, 3.0])  # terminate after 4, 3, 2, 1 steps (next obs > 3)
    buffer = ModelReplayBuffer(100, obs_dim=1, action_dim=1)
    info = rollout_model(ShiftModel(), policy_fn, terminate_above_3, start, horizon=10, model_buffer=buffer)
    assert info.n_transitions == 4 + 3 + 2 + 1
    assert info.n_terminated == 4
    data = buffer.get_transitions(th.arange(buffer.size()))
    # exactly the transitions that crossed the threshold are marked done
    th.testing.assert_close(data.dones[:, 0], (data.next_observations[:, 0] > 3).float())
    assert data.observations[:, 0].max() <= 3


def test_rollout_drops_nan_predictions():
    start = th.zeros((10, 2))
    start[:, 0] = -100
    buffer = ModelReplayBuffer(100, obs_dim=2, action_dim=2)
    info = rollout_model(ShiftModel(nan_rows_first_step=3), policy_fn, terminate_above_3, start, 3, buffer)
    assert info.nan_predictions_dropped == 3
    assert info.n_transitions == 7 * 3
    stored = buffer.get_transitions(th.arange(buffer.size()))
    assert th.isfinite(stored.next_observations).all() and th.isfinite(stored.observations).all()


def test_rollout_rejects_bad_horizon():
    with pytest.raises(ValueError):
        rollout_model(ShiftModel(), policy_fn, terminate_above_3, th.zeros((1, 1)), 0, ModelReplayBuffer(10, 1, 1))


def test_rollout_drops_predictions_outside_the_state_bounds():
    start = th.zeros((6, 2))
    start[:, 0] = th.arange(6.0)  # the branch leaves [-10, 4] in dimension 0 after 4, 3, 2, 1, 0, 0 steps
    buffer = ModelReplayBuffer(100, obs_dim=2, action_dim=2)
    bounds = (th.tensor([-10.0, -10.0]), th.tensor([4.0, 10.0]))
    info = rollout_model(ShiftModel(), policy_fn, lambda *_: th.zeros(len(_[0]), dtype=th.bool), start, horizon=6,
                         model_buffer=buffer, state_bounds=bounds)  # fmt: skip
    assert info.n_transitions == buffer.size() == 4 + 3 + 2 + 1 and info.out_of_bounds_dropped == 6
    assert info.nan_predictions_dropped == 0
    data = buffer.get_transitions(th.arange(buffer.size()))
    assert data.next_observations[:, 0].max() <= 4 and data.next_observations[:, 1].max() <= 4
    # no bounds: the same rollout keeps every branch for the whole horizon
    info = rollout_model(ShiftModel(), policy_fn, lambda *_: th.zeros(len(_[0]), dtype=th.bool), start, horizon=6,
                         model_buffer=ModelReplayBuffer(100, obs_dim=2, action_dim=2))  # fmt: skip
    assert info.n_transitions == 36 and info.out_of_bounds_dropped == 0


def test_nan_and_out_of_bounds_predictions_are_counted_once_each():
    """A NaN prediction also fails the bounds comparison: it is counted as NaN only, not as out of bounds too."""
    start = th.zeros((10, 2))
    start[:, 0] = -100
    start[9, 0] = 50  # leaves the upper bound 10 of dimension 0 at the first step
    buffer = ModelReplayBuffer(100, obs_dim=2, action_dim=2)
    bounds = (th.full((2,), -1e3), th.tensor([10.0, 1e3]))
    info = rollout_model(ShiftModel(nan_rows_first_step=3), policy_fn, terminate_above_3, start, horizon=3,
                         model_buffer=buffer, state_bounds=bounds)  # fmt: skip
    assert info.nan_predictions_dropped == 3
    assert info.out_of_bounds_dropped == 1
    assert info.n_transitions == 6 * 3 == buffer.size()


def test_model_buffer_refuses_columns_that_would_broadcast():
    buffer = ModelReplayBuffer(100, obs_dim=2, action_dim=1)
    obs, actions = th.zeros(4, 2), th.zeros(4, 1)
    with pytest.raises(ValueError, match=r"rewards of shape \(1,\), expected \(4,\)"):  # was copied onto all 4 rows
        buffer.add(obs, actions, th.ones(1), obs, th.zeros(4))
    with pytest.raises(ValueError, match=r"dones of shape \(\), expected \(4,\)"):
        buffer.add(obs, actions, th.ones(4), obs, th.tensor(0.0))
    with pytest.raises(ValueError, match=r"actions of shape \(4, 2\)"):
        buffer.add(obs, th.zeros(4, 2), th.ones(4), obs, th.zeros(4))
    buffer.add(obs, actions, th.arange(4.0).reshape(4, 1), obs, th.zeros(4, 1))  # [N, 1] columns are [N]
    assert buffer.size() == 4 and buffer.rewards[:4].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_constant_features_keep_their_value_in_every_predicted_state():
    start = th.zeros((20, 2))
    start[:, 0] = -10.0
    start[:, 1] = 0.5  # the constant feature
    buffer = ModelReplayBuffer(1000, obs_dim=2, action_dim=2)
    constants = (th.tensor([False, True]), th.tensor([0.5, 0.5], dtype=th.float64))  # (values cast to the model's)
    info = rollout_model(ShiftModel(), policy_fn, terminate_above_3, start, 3, buffer, constant_features=constants)
    data = buffer.get_transitions(th.arange(info.n_transitions))
    assert info.n_transitions == 60 and data.next_observations.dtype == th.float32
    assert (data.next_observations[:, 1] == 0.5).all() and (data.observations[:, 1] == 0.5).all()
    th.testing.assert_close(data.next_observations[:, 0], data.observations[:, 0] + 1)  # the others as predicted
    # the terminations see the kept value: a rule on feature 1 never fires
    buffer = ModelReplayBuffer(1000, obs_dim=2, action_dim=2)
    info = rollout_model(ShiftModel(), policy_fn, lambda o, a, n: n[:, 1] > 1, start, 3, buffer, constant_features=constants)
    assert info.n_terminated == 0 and info.n_transitions == 60
    without = rollout_model(ShiftModel(), policy_fn, lambda o, a, n: n[:, 1] > 1, start, 3, ModelReplayBuffer(1000, 2, 2))
    assert without.n_terminated == 20  # 0.5 + 1 > 1 at the first step
