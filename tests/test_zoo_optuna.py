"""
``sb3_pmac.zoo_optuna`` without rl-zoo3: the search space of both samplers against the module's documentation, the
horizon choices' parsing, the converter (which rl-zoo3 calls on a stored trial's parameters) and the worker id.
"""

import os
import socket

import pytest

optuna = pytest.importorskip("optuna", reason="optuna not installed (pip install -e '.[zoo]')")

from sb3_pmac.horizon import validate_horizon_schedule  # noqa: E402
from sb3_pmac.zoo_optuna import (  # noqa: E402
    convert_pmac_params,
    parse_horizon_choice,
    sample_mbpo_params,
    sample_pmac_params,
    worker_id,
)


def sampled_trial(sampler, seed: int = 0):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()
    return trial, sampler(trial, 1, 1, {})


@pytest.mark.parametrize("sampler", [sample_pmac_params, sample_mbpo_params])
def test_search_space_is_the_documented_one(sampler):
    """
    The module's docstring: horizons from 1 to MBPO's schedules ending at 25 (the paper's 1 -> 15 included),
    ``model_train_freq`` from 100 to 1000 (the paper's 250 included); SAC's learning rate, batch size, tau and network.
    """
    trial, _ = sampled_trial(sampler)
    d = trial.distributions
    floats = {name: (d[name].low, d[name].high, d[name].log) for name in ("real_ratio", "learning_rate", "tau")}
    assert floats == {"real_ratio": (0.01, 0.5, True), "learning_rate": (1e-4, 1e-3, True), "tau": (0.001, 0.02, True)}
    assert tuple(d["model_train_freq"].choices) == (100, 250, 500, 1000)
    assert tuple(d["batch_size"].choices) == (128, 256, 512)
    assert tuple(d["net_arch"].choices) == ("small", "medium", "big")
    horizons = tuple(d["rollout_horizon"].choices)
    assert horizons == ("1", "3", "5", "10", "20-100-1-15", "20-100-1-25", "20-300-1-25")
    parsed = [parse_horizon_choice(choice) for choice in horizons]
    assert [20, 100, 1, 15] in parsed and max(h if isinstance(h, int) else h[3] for h in parsed) == 25
    for horizon in parsed:
        validate_horizon_schedule(horizon)


def test_every_horizon_choice_is_drawn():
    """All the choices, the schedules included, come up in a random search (200 trials: each has 7 choices)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(200):
        trial = study.ask()
        params = sample_pmac_params(trial, 1, 1, {})
        seen.add(trial.params["rollout_horizon"])
        study.tell(trial, 0.0)
        assert params["rollout_horizon"] == parse_horizon_choice(trial.params["rollout_horizon"])
    assert len(seen) == 7


@pytest.mark.parametrize("choice", ["1-2", "1-2-3", "20-100-1-15-3", "", "a-b-c-d"])
def test_malformed_horizon_choices_are_refused(choice):
    with pytest.raises(ValueError):
        parse_horizon_choice(choice)


def test_horizon_choice_types():
    assert parse_horizon_choice(7) == 7 and parse_horizon_choice("10") == 10 and isinstance(parse_horizon_choice("10"), int)
    assert parse_horizon_choice("20-300-1-25") == [20, 300, 1, 25]


def test_converter_leaves_the_trials_parameters_alone():
    """rl-zoo3 hands ``HYPERPARAMS_CONVERTER`` a trial's ``params``: converting must not change them."""
    trial, _ = sampled_trial(sample_pmac_params, seed=3)
    raw = dict(trial.params)
    frozen = optuna.trial.FrozenTrial(
        number=0, state=optuna.trial.TrialState.COMPLETE, value=0.0, datetime_start=None, datetime_complete=None,
        params=raw, distributions=trial.distributions, user_attrs={}, system_attrs={}, intermediate_values={},
        trial_id=0,
    )  # fmt: skip
    first = convert_pmac_params(frozen.params)
    assert frozen.params == raw and set(raw) == set(trial.distributions)
    assert convert_pmac_params(frozen.params) == first  # a second conversion (--trial-id again) gives the same
    assert set(first) == {"adaptation_rate", "real_ratio", "model_train_freq", "rollout_horizon", "learning_rate",
                          "batch_size", "gamma", "tau", "policy_kwargs"}  # fmt: skip


def test_worker_id_is_this_process():
    """``host:pid`` of the worker itself (two workers started from one shell have the same parent)."""
    assert worker_id() == f"{socket.gethostname()}:{os.getpid()}"
    trial, _ = sampled_trial(sample_mbpo_params)
    assert trial.user_attrs["worker"] == f"{socket.gethostname()}:{os.getpid()}"
