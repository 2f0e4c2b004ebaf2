"""
Optuna samplers of PMAC and MBPO for rl-zoo3's hyperparameter search (``train ... -optimize``).

rl-zoo3 (2.9) calls ``HYPERPARAMS_SAMPLER[algo](trial, n_actions, n_envs, additional_args)`` and merges the returned
constructor arguments over the YAML entry; ``HYPERPARAMS_CONVERTER[algo](trial.params)`` turns the raw values of a
finished trial back into constructor arguments (``--trial-id``). :func:`sb3_pmac.zoo.register` adds both.

Tuned: the policy-adaptation rate alpha (PMAC only), the real-data ratio, the model training period (= policy
version length), the rollout horizon schedule, and SAC's learning rate, batch size, gamma, tau and network size.
``gradient_steps``, ``rollout_batch_size`` and ``learning_starts`` stay as in the YAML file, but the compute and
memory of a trial do not: ``model_train_freq`` and the horizon set the model rollouts per env step (``rollout_batch_size
x horizon / model_train_freq``) and the model buffer (that times ``epoch_length``), which differ up to 250-fold between
trials (Hopper with the YAML's 100 000 rollout starts: 0.1 M rows at horizon 1 and ``model_train_freq`` 1000, 25 M
rows or 2.7 GB at 25 and 100; 6 M at the paper's 15 and 250), and the adaptation rate sizes PMAC's model-training set
(:data:`ADAPTATION_RATE_RANGE`).
"""

import os
import socket
from typing import Any

import optuna

#: Rollout horizon choices: fixed horizons and MBPO's ``a-b-x-y`` schedules (horizon x until epoch a, y at epoch b)
HORIZON_CHOICES = ["1", "3", "5", "10", "20-100-1-15", "20-100-1-25", "20-300-1-25"]
#: Range of PMAC's adaptation rate alpha. Below 1, as the paper's Algorithm 1 requires: the bounded model-training set
#: grows as ``model_train_freq * (1 + alpha) / (1 - alpha)`` (19 epochs of data at 0.9, 99 at 0.98) and becomes the whole
#: replay buffer at 1, whose training cost grows with the run
ADAPTATION_RATE_RANGE = (0.5, 0.98)
#: SAC network sizes (actor and critics)
NET_ARCHS = {"small": [64, 64], "medium": [256, 256], "big": [400, 300]}


def parse_horizon_choice(choice: str | int) -> int | list[int]:
    """``"5"`` -> 5, ``"20-100-1-15"`` -> ``[20, 100, 1, 15]`` (a list, so that saved configs stay plain YAML)."""
    if isinstance(choice, int):
        return choice
    parts = [int(part) for part in str(choice).split("-")]
    if len(parts) == 1:
        return parts[0]
    if len(parts) != 4:
        raise ValueError(f"Malformed rollout horizon choice {choice!r}: expected 'h' or 'a-b-x-y'")
    return parts


def worker_id() -> str:
    """``host:pid`` of this process, stored on each trial (``trial.user_attrs["worker"]``) to tell workers apart."""
    return f"{socket.gethostname()}:{os.getpid()}"


def convert_pmac_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """Raw Optuna values (``trial.params``) -> PMAC/MBPO constructor arguments."""
    params = dict(sampled_params)
    hyperparams: dict[str, Any] = {}
    if "one_minus_gamma" in params:
        hyperparams["gamma"] = 1.0 - params.pop("one_minus_gamma")
    if "rollout_horizon" in params:
        hyperparams["rollout_horizon"] = parse_horizon_choice(params.pop("rollout_horizon"))
    if "net_arch" in params:
        hyperparams["policy_kwargs"] = {"net_arch": list(NET_ARCHS[params.pop("net_arch")])}
    hyperparams.update(params)  # adaptation_rate, real_ratio, model_train_freq, learning_rate, batch_size, tau
    return hyperparams


def _converted(trial: optuna.Trial, sampled: dict[str, Any]) -> dict[str, Any]:
    """
    The constructor arguments of ``sampled``, with the values that differ from Optuna's raw ones (gamma, the horizon
    schedule, the network) recorded on the trial as ``user_attrs``, as rl-zoo3's SAC sampler records gamma: its report
    (``report_*.csv``, ``user_attrs_*`` columns) then lists the values to retrain with (``-params``).
    """
    hyperparams = convert_pmac_params(sampled)
    trial.set_user_attr("worker", worker_id())
    trial.set_user_attr("gamma", hyperparams["gamma"])
    trial.set_user_attr("rollout_horizon", hyperparams["rollout_horizon"])
    trial.set_user_attr("net_arch", hyperparams["policy_kwargs"]["net_arch"])
    return hyperparams


def _sample_common(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "real_ratio": trial.suggest_float("real_ratio", 0.01, 0.5, log=True),
        "model_train_freq": trial.suggest_categorical("model_train_freq", [100, 250, 500, 1000]),
        "rollout_horizon": trial.suggest_categorical("rollout_horizon", HORIZON_CHOICES),
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-3, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [128, 256, 512]),
        "one_minus_gamma": trial.suggest_float("one_minus_gamma", 0.001, 0.03, log=True),
        "tau": trial.suggest_float("tau", 0.001, 0.02, log=True),
        "net_arch": trial.suggest_categorical("net_arch", list(NET_ARCHS)),
    }


def sample_pmac_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    Sampler for PMAC (rl-zoo3 signature).

    :param trial: the Optuna trial
    :param n_actions: action dimension (unused)
    :param n_envs: number of envs (unused)
    :param additional_args: rl-zoo3's extra arguments (unused: PMAC has no HER variant)
    :return: constructor arguments overriding the YAML entry
    """
    sampled = {"adaptation_rate": trial.suggest_float("adaptation_rate", *ADAPTATION_RATE_RANGE), **_sample_common(trial)}
    return _converted(trial, sampled)


def sample_mbpo_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    Sampler for MBPO: as :func:`sample_pmac_params` without the adaptation rate. MBPO draws its data uniformly; the
    rate only sizes its bounded model-training set, which stays at the default alpha = 0.9 (``model_train_freq`` x 19
    rows, as PMAC's default), so that trials compare at equal model-training cost.
    """
    return _converted(trial, _sample_common(trial))
