"""
Inputs that used to run silently wrong or fail late (a review of extremes and user rules): Table 1's horizon order, a
termination rule that does not return one value per transition or cannot run on a batch, a factory-less registration,
``real_ratio=1`` and a buffer too small for the mixture's support.
"""

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th

from sb3_pmac import MBPO, PMAC
from sb3_pmac.horizon import validate_horizon_schedule, warn_table_1_order
from sb3_pmac.termination import NeverTerminate, register_termination_fn
from sb3_pmac.termination.rules import terminations


def _tiny(**kwargs):
    from conftest import TINY_PMAC_KWARGS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return PMAC("MlpPolicy", "Pendulum-v1", **{**TINY_PMAC_KWARGS, **kwargs})


def test_table_1_horizon_order_warns():
    with pytest.warns(UserWarning, match=r"Table 1 order.*\[20, 100, 1, 15\]"):
        assert validate_horizon_schedule([1, 15, 20, 100]) == (1, 15, 20, 100)
        warn_table_1_order(validate_horizon_schedule([1, 15, 20, 100]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for schedule in ([20, 100, 1, 15], [20, 300, 1, 25], 5):  # MBPO's Hopper and Humanoid, a fixed horizon
            warn_table_1_order(validate_horizon_schedule(schedule))
        # fast ramps of short runs: from epoch 0 (Table 1's order would give horizon 0), or a falling horizon
        for schedule in ([0, 1, 1, 5], [0, 10, 1, 15], [2, 4, 10, 5]):
            warn_table_1_order(validate_horizon_schedule(schedule))
    for copied in ([1, 25, 20, 100], [1, 25, 20, 300]):  # MBPO's Ant and Humanoid in Table 1's order
        with pytest.warns(UserWarning, match="Table 1 order"):
            warn_table_1_order(validate_horizon_schedule(copied))


def test_table_1_horizon_order_warns_once_per_agent():
    """Said where the schedule enters (the constructor), not again at every place that reads it."""
    from conftest import TINY_PMAC_KWARGS

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = PMAC("MlpPolicy", "Pendulum-v1", **{**TINY_PMAC_KWARGS, "rollout_horizon": [1, 15, 20, 100]})
        model.learn(220)  # model steps at 101, 151, 201
    assert model.n_model_steps == 3
    assert sum("Table 1 order" in str(warning.message) for warning in caught) == 1


def test_termination_outputs_need_one_value_per_transition():
    obs, action = th.zeros(5, 3), th.zeros(5, 1)
    assert terminations(lambda o, a, n: np.ones((5, 1)), obs, action, obs).tolist() == [True] * 5
    for wrong in (lambda o, a, n: (n.abs() > 1).any(), lambda o, a, n: n.abs() > 1):  # a scalar, a per-dimension mask
        with pytest.raises(ValueError, match="one bool per transition"):
            terminations(wrong, obs, action, obs)


def per_transition_rule(obs, action, next_obs):
    return bool(abs(next_obs[0]) > 1)  # written for one transition: fails on a batch


def test_a_rule_that_cannot_run_on_a_batch_fails_when_learning_starts():
    model = _tiny(termination_fn=per_transition_rule, learning_starts=5000)
    with pytest.raises(ValueError, match="fails on a batch of 4 transitions"):
        model.learn(10)  # not at the first model step, after the 5000-step warm-up
    assert model.num_timesteps == 0
    # the trial draws leave the agent's own generator (its warm-up actions) alone
    first, second = _tiny(seed=3), _tiny(seed=3, termination_fn=NeverTerminate())
    for model in (first, second):
        model.learn(20)
    np.testing.assert_array_equal(first.replay_buffer.actions[:20], second.replay_buffer.actions[:20])


def test_the_trial_call_passes_actions_in_the_scale_of_the_rollouts():
    # model rollouts and the agreement check pass actions scaled to [-1, 1] (the buffer's scale): the trial call when
    # learning starts drew them in the env's units, so a rule could pass the trial and fail in the rollouts
    seen = []

    def rule(obs, action, next_obs):
        seen.append(action.clone())
        return th.zeros(len(obs), dtype=th.bool)

    from conftest import TINY_PMAC_KWARGS

    env = gym.wrappers.RescaleAction(gym.make("Pendulum-v1"), np.float32(-10.0), np.float32(10.0))
    PMAC("MlpPolicy", env, termination_fn=rule, **TINY_PMAC_KWARGS).learn(1)
    (actions,) = seen
    assert actions.shape == (4, 1) and actions.abs().max() <= 1.0 and actions.abs().max() > 0.5


def test_registering_the_rule_instead_of_its_factory_is_refused():
    with pytest.raises(TypeError, match="factory env -> termination function"):
        register_termination_fn("SomeEnv", per_transition_rule)


def test_settings_that_do_not_do_what_they_look_like_warn():
    from conftest import TINY_PMAC_KWARGS

    kwargs = {**TINY_PMAC_KWARGS, "real_ratio": 1.0}
    with pytest.warns(UserWarning, match="real_ratio=1.0"):
        PMAC("MlpPolicy", "Pendulum-v1", **kwargs)
    # Algorithm 1's support at alpha = 0.9: 19 interaction epochs; a buffer of fewer than 38 wraps into weighted ones,
    # and the warm-up version (learning_starts=100 transitions, 10 times the weight of a later version of its age) first
    kwargs = {**TINY_PMAC_KWARGS, "buffer_size": 1000, "model_train_freq": 50}
    with pytest.warns(UserWarning, match="buffer_size=1000 .* and the 100 warm-up transitions.* use buffer_size >= 2000"):
        PMAC("MlpPolicy", "Pendulum-v1", **kwargs)
    with pytest.warns(UserWarning, match="use buffer_size >= 2000"):
        PMAC("MlpPolicy", "Pendulum-v1", **{**kwargs, "buffer_size": 1999})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # MBPO's uniform selection weighs transitions: nothing to say
        MBPO("MlpPolicy", "Pendulum-v1", **kwargs)
        PMAC("MlpPolicy", "Pendulum-v1", **{**kwargs, "buffer_size": 2000})
    from sb3_pmac.checks import smallest_unwrapped_buffer

    assert smallest_unwrapped_buffer(50, 0.9, 100) == 2000  # the figure the warning names
    assert smallest_unwrapped_buffer(250, 0.9, 5000) == 14_500  # the defaults: 2 x 4750 + 5000
    assert smallest_unwrapped_buffer(50, 0.9) == 1900 and smallest_unwrapped_buffer(50, 1.0, 100) == 0


def test_a_real_share_that_rounds_to_no_real_transition_warns():
    from conftest import TINY_PMAC_KWARGS

    # 8 x 0.05 = 0.4: MBPO's floor gives 0 real transitions per batch
    with pytest.warns(UserWarning, match=r"real_ratio=0.05 of batch_size=8 rounds down.*use batch_size >= 20"):
        PMAC("MlpPolicy", "Pendulum-v1", **{**TINY_PMAC_KWARGS, "batch_size": 8, "real_ratio": 0.05})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 20 x 0.05 = 1 (round-off aside), and real_ratio=0 says what it does
        PMAC("MlpPolicy", "Pendulum-v1", **{**TINY_PMAC_KWARGS, "batch_size": 20, "real_ratio": 0.05})
        PMAC("MlpPolicy", "Pendulum-v1", **{**TINY_PMAC_KWARGS, "batch_size": 8, "real_ratio": 0.0})


def test_a_model_buffer_larger_than_half_the_memory_warns_at_construction(monkeypatch):
    import sb3_pmac.checks

    monkeypatch.setattr(sb3_pmac.checks, "physical_memory", lambda: 10**9)  # a 1 GB machine
    # Hopper's schedule reaches horizon 15: 100 000 starts x 15 x 4 rollouts per epoch = 6e6 transitions of 108 bytes
    with pytest.warns(UserWarning, match=r"6,000,000 transitions \(0\.6 GB\) at rollout horizon 15"):
        PMAC("Hopper-v4", buffer_size=10**6, rollout_batch_size=100_000)
    # model_train_freq=1 on Pendulum: 1000 rollouts per epoch of 100 000 starts = 1e8 transitions (3.6 GB)
    with pytest.warns(UserWarning, match=r"100,000,000 transitions \(3\.6 GB\)"):
        PMAC("MlpPolicy", "Pendulum-v1", model_train_freq=1, buffer_size=10**6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # (gymnasium's DeprecationWarning of the v4 envs aside)
        PMAC("Hopper-v4", model_buffer_size=10**6)  # a fixed capacity: 0.1 GB
        PMAC("Hopper-v4", rollout_batch_size=10_000)
    # a fixed capacity too large: its own message (allocated at the first rollout, whatever the horizon)
    with pytest.warns(UserWarning, match=r"model_buffer_size=10,000,000 transitions \(1\.1 GB\).*first model rollout") as said:
        PMAC("Hopper-v4", model_buffer_size=10**7)
    assert not any("rollout_batch_size x horizon" in str(w.message) and "lower one of them" in str(w.message) for w in said)


def test_learn_within_the_warm_up_warns():
    """``PMAC(...).learn(2000)`` with the paper's 5000 warm-up steps would silently collect random transitions only."""
    # learning_starts=100; seeded: an unseeded tiny model drops over 10 % of its first model predictions in some runs,
    # and that warning would fail the no-warning check at step 101 below
    model = _tiny(seed=0)
    with pytest.warns(UserWarning, match=r"learn\(total_timesteps=100\) ends at step 100, within the random warm-up"):
        model.learn(100)
    assert model.n_model_steps == 0 and model._n_updates == 0  # what the warning says: nothing was trained
    with pytest.warns(UserWarning, match=r"learn\(total_timesteps=40\) ends at step 40"):
        model.learn(40)  # a new run (num_timesteps reset)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a continued call is a chunk of a loop: not warned about
        for _ in range(3):
            model.learn(20, reset_num_timesteps=False)  # continued: counts from step 40, to step 100
    assert model.num_timesteps == 100 and model._n_updates == 0
    fresh = _tiny(seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # SB3's chunked loop from the start: learn(n, reset_num_timesteps=False) calls
        fresh.learn(60, reset_num_timesteps=False)
    assert fresh.num_timesteps == 60
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.learn(1, reset_num_timesteps=False)  # to step 101: one SAC update and the first model step, no warning
    assert model._n_updates == 1 and model.n_model_steps == 1
