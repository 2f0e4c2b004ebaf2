"""
Model diagnostics of PMAC and MBPO: local vs global one-step error, compounding error and policy-mixture statistics.

These are the quantities behind the paper's motivation (Sec. 2.2, Fig. 1) and its analysis of the policy-adaptation
mechanism (Sec. 5.2, Fig. 3). All of them are computed by :func:`evaluate_model`, online every ``eval_freq`` steps with
:class:`ModelDiagnosticsCallback`, or offline on saved agents with ``python -m sb3_pmac.diagnostics`` /
:func:`evaluate_checkpoints`. The dynamics model predicts with the mean of its elites (deterministic, the default
``model_prediction="mean"``) or samples like the model rollouts do (``"sample"``: a random elite, Gaussian noise).

* **Local (one-step) error** (Fig. 1 "local error", Fig. 3(a-c)): prediction error on transitions freshly collected by
  the agent's *current* policy, stochastic as in training, in a separate real environment (``env``) that is never
  used for training. This is the error the model rollouts actually suffer from, the first term of Theorem 3.1 (Eq. 3).
  ``local_obs_mse`` is :math:`\\frac{1}{N d}\\sum_{t,j} (\\hat s'_{t,j} - s'_{t,j})^2` over ``n_local`` transitions and
  the ``d`` observation entries; ``local_reward_mse`` is :math:`\\frac{1}{N}\\sum_t (\\hat r_t - r_t)^2`.
* **Global (one-step) error** (Fig. 1 "global error"): the same errors on a uniform sample of ``n_global`` transitions
  of the whole real replay buffer, i.e. of the data of all historical policies (all of them if the buffer holds
  fewer). With ``upto``, only buffer positions ``< upto`` are used: the data seen by step ``upto`` when the buffer
  never wrapped and ``n_envs == 1`` (offline diagnostics of checkpoints of one run with that run's final buffer).
* **H-step compounding error** (Fig. 3(d)): real trajectories of the current policy in ``env`` are recorded; from
  ``n_trajectories`` of their states (evenly spaced along the recorded stream, so distributed like the policy's
  state visitation, as the rollout start states of training are), the model is rolled out with the *same* recorded
  actions for ``h = 1..H`` steps. ``compounding_obs_mse_h<h>`` is the observation MSE between the model's and the real
  ``h``-step state, averaged over the trajectories still alive at step ``h`` in the real env (not terminated or
  truncated before; NaN if none is). ``H`` defaults to the agent's current rollout horizon.
* **Mixture statistics** (Sec. 3.2, Fig. 3(e-f)): the probabilities with which the *model-training* data is drawn per
  policy version (PMAC: Algorithm 1, restricted to the versions with data; MBPO: uniform over transitions, i.e.
  proportional to each version's number of transitions; PMAC's ``mixture="tv"``: the inverse policy distances last
  measured), computed with
  :meth:`PolicyMixture.probabilities <sb3_pmac.policy_mixture.PolicyMixture.probabilities>` and the buffer's
  :meth:`version_counts <sb3_pmac.buffers.PolicyVersionedReplayBuffer.version_counts>` (counts of positions
  ``< upto`` with ``upto``). ``mixture_effective_versions`` is the inverse Simpson index :math:`1 / \\sum_i p_i^2`,
  ``mixture_newest_<k>_share`` the total probability of the ``k`` newest versions that have data.

Observations are compared raw (unnormalized, as stored in the buffer and predicted by the model); with a
``VecNormalize`` training env the policy sees normalized observations, as in the model rollouts.

The result is a flat dict whose keys are the CSV columns shared with :mod:`sb3_pmac.plot` (:func:`csv_columns`):
``timesteps, local_obs_mse, local_reward_mse, global_obs_mse, global_reward_mse, mixture_effective_versions,
mixture_newest_<k>_share`` (one per ``k`` of ``newest_k``, default 1 and 5) and ``compounding_obs_mse_h<h>`` for
``h = 1..H``. Global error and mixture statistics are NaN when no replay buffer is available.

Evaluation has no side effect on training: the numpy, python and torch random states are saved and restored around
it (the diagnostics env has its own random generator), and the actor is put back in its previous training mode.

Offline::

    python -m sb3_pmac.diagnostics run/agent_50000.zip --env Hopper-v4 --buffer run/final_buffer.pkl --upto 50000 \\
        --horizon 10 --csv diagnostics.csv --seed 0
    python -m sb3_pmac.diagnostics run/agent_*.zip --env Hopper-v4 --buffer run/final_buffer.pkl --csv diagnostics.csv
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import math
import os
import random
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.save_util import load_from_pkl
from stable_baselines3.common.vec_env import VecEnv

from sb3_pmac.buffers import PolicyVersionedReplayBuffer
from sb3_pmac.checks import check_positive
from sb3_pmac.env_presets import make_preset_env
from sb3_pmac.pmac import MBPO, PMAC
from sb3_pmac.policy_mixture import PolicyMixture
from sb3_pmac.random_state import preserved_rng_states
from sb3_pmac.rollouts import max_rollout_horizon

ModelPrediction = Literal["mean", "sample"]

#: The columns every diagnostics row starts with (then the newest-k shares and the compounding errors).
BASE_COLUMNS = (
    "timesteps",
    "local_obs_mse",
    "local_reward_mse",
    "global_obs_mse",
    "global_reward_mse",
    "mixture_effective_versions",
)
DEFAULT_NEWEST_K = (1, 5)
_PREDICT_CHUNK = 8192

__all__ = [
    "BASE_COLUMNS",
    "DEFAULT_NEWEST_K",
    "ModelDiagnostics",
    "ModelDiagnosticsCallback",
    "algo_name",
    "append_csv_row",
    "csv_columns",
    "evaluate_checkpoints",
    "evaluate_model",
    "format_table",
    "load_agent",
    "load_buffer",
    "main",
    "mixture_statistics",
    "model_diagnostics",
    "preserved_rng_states",
]


def csv_columns(horizon: int, newest_k: Sequence[int] = DEFAULT_NEWEST_K) -> list[str]:
    """
    The keys of :func:`evaluate_model`'s result, in CSV column order.

    :param horizon: number of compounding steps ``H``
    :param newest_k: the ``k`` of the ``mixture_newest_<k>_share`` columns
    """
    return [
        *BASE_COLUMNS,
        *(f"mixture_newest_{k}_share" for k in _check_newest_k(newest_k)),
        *(f"compounding_obs_mse_h{h}" for h in range(1, int(horizon) + 1)),
    ]


@dataclasses.dataclass
class ModelDiagnostics:
    """
    Result of :func:`model_diagnostics` (see the module docstring for each quantity).

    :param timesteps: the agent's ``num_timesteps``
    :param local_obs_mse: next-observation MSE on fresh transitions of the current policy
    :param local_reward_mse: reward MSE on the same transitions
    :param global_obs_mse: next-observation MSE on a uniform sample of the replay buffer (NaN without a buffer)
    :param global_reward_mse: reward MSE on the same sample (NaN without a buffer)
    :param mixture_effective_versions: :math:`1/\\sum_i p_i^2` of the model-training mixture (NaN without a buffer)
    :param mixture_newest_shares: ``{k: share of the k newest versions}`` (NaN without a buffer)
    :param compounding_obs_mse: observation MSE after ``h = 1..H`` model steps (index ``h - 1``)
    """

    timesteps: int
    local_obs_mse: float
    local_reward_mse: float
    global_obs_mse: float
    global_reward_mse: float
    mixture_effective_versions: float
    mixture_newest_shares: dict[int, float]
    compounding_obs_mse: list[float]

    def to_dict(self) -> dict[str, float]:
        """The flat row of the CSV schema (:func:`csv_columns`)."""
        row: dict[str, float] = {name: getattr(self, name) for name in BASE_COLUMNS}
        for k, share in self.mixture_newest_shares.items():
            row[f"mixture_newest_{k}_share"] = share
        for h, error in enumerate(self.compounding_obs_mse, start=1):
            row[f"compounding_obs_mse_h{h}"] = error
        return row


# ---------------------------------------------------------------------------------------------------------- helpers
def _check_newest_k(newest_k: Sequence[int]) -> list[int]:
    values = list(dict.fromkeys(int(k) for k in newest_k))  # unique, order kept
    if any(k < 1 for k in values):
        raise ValueError(f"newest_k must hold positive ints, got {list(newest_k)}")
    return values


@contextlib.contextmanager
def _evaluation_mode(agent: PMAC) -> Iterator[None]:
    """The policy in evaluation mode; every module's ``training`` flag is put back on exit."""
    modes = [(module, module.training) for module in agent.policy.modules()]
    agent.policy.set_training_mode(False)
    try:
        yield
    finally:
        for module, mode in modes:
            module.training = mode


def _seed_rngs(seed: int, device: th.device) -> None:
    """Seed the generators used during an evaluation (only those saved by :func:`preserved_rng_states`)."""
    np.random.seed(seed)
    random.seed(seed)
    th.default_generator.manual_seed(seed)  # not th.manual_seed: that would also (lazily) seed every CUDA device
    if device.type == "cuda":
        th.cuda.manual_seed(seed)


def _agent_buffer(agent: PMAC) -> PolicyVersionedReplayBuffer | None:
    """The agent's real replay buffer, or None when it holds no data (e.g. loaded without ``load_replay_buffer``)."""
    buffer = getattr(agent, "replay_buffer", None)
    if buffer is None or not getattr(agent, "_buffers_allocated", True) or buffer.size() == 0:
        return None
    return buffer


def _check_upto(buffer: PolicyVersionedReplayBuffer, upto: int) -> int:
    upto = int(upto)
    if upto < 1:
        raise ValueError(f"upto must be a positive number of buffer positions, got {upto}")
    if buffer.n_written > buffer.buffer_size:
        raise ValueError(
            "upto needs a replay buffer that never wrapped around: positions no longer follow the order of the steps"
        )
    if upto > buffer.size():
        raise ValueError(f"upto={upto} exceeds the {buffer.size()} positions held by the replay buffer")
    return upto


def _training_mixture(agent: PMAC) -> PolicyMixture:
    """The mixture the model-training data is drawn with (PMAC: Algorithm 1, MBPO: uniform over transitions)."""
    return agent.data_mixture(agent.adapt_model_training)


@th.no_grad()
def _predict(
    agent: PMAC, observations: np.ndarray, actions: np.ndarray, model_prediction: ModelPrediction
) -> tuple[np.ndarray, np.ndarray]:
    """
    One model step on raw observations and buffer-scale actions.

    :return: predicted next observations ``[N, obs_dim]`` and rewards ``[N]`` (float64)
    """
    model = agent.dynamics_model
    next_parts, reward_parts = [], []
    for start in range(0, len(observations), _PREDICT_CHUNK):
        obs = th.as_tensor(observations[start : start + _PREDICT_CHUNK], dtype=th.float32, device=agent.device)
        act = th.as_tensor(actions[start : start + _PREDICT_CHUNK], dtype=th.float32, device=agent.device)
        if model_prediction == "mean":
            mean, _ = model.predict(obs, act)  # [n_elites, N, obs_dim + 1]: (s' - s, r) of every elite
            mean = mean.mean(dim=0)
            next_obs, rewards = obs + mean[:, :-1], mean[:, -1]
        else:
            next_obs, rewards, _ = model.sample(obs, act, deterministic=False)
        next_parts.append(next_obs.double().cpu().numpy())
        reward_parts.append(rewards.reshape(-1).double().cpu().numpy())
    obs_dim = observations.shape[1]
    if not next_parts:
        return np.zeros((0, obs_dim)), np.zeros(0)
    return np.concatenate(next_parts), np.concatenate(reward_parts)


def _one_step_errors(
    agent: PMAC,
    observations: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    next_observations: np.ndarray,
    model_prediction: ModelPrediction,
) -> tuple[float, float]:
    """:return: next-observation MSE (mean over samples and entries) and reward MSE."""
    predicted_obs, predicted_rewards = _predict(agent, observations, actions, model_prediction)
    obs_mse = float(np.mean((predicted_obs - np.asarray(next_observations, dtype=np.float64)) ** 2))
    reward_mse = float(np.mean((predicted_rewards - np.asarray(rewards, dtype=np.float64).reshape(-1)) ** 2))
    return obs_mse, reward_mse


@dataclasses.dataclass
class _Stream:
    """Consecutive real transitions of the current policy (episodes back to back)."""

    observations: np.ndarray
    actions: np.ndarray  # buffer scale ([-1, 1] for SAC's squashed actions)
    rewards: np.ndarray
    next_observations: np.ndarray  # the last observation of an episode is its terminal observation
    episode_ends: np.ndarray  # True where the episode terminated or was truncated after this transition


@th.no_grad()
def _collect_stream(agent: PMAC, env: gym.Env, n_steps: int, seed: int | None) -> _Stream:
    """Run the current policy (stochastic, as in training) in ``env`` for ``n_steps`` steps from a reset."""
    observations, actions, rewards, next_observations, ends = [], [], [], [], []
    obs, _ = env.reset(seed=seed)
    for _ in range(n_steps):
        obs_array = np.asarray(obs, dtype=np.float64)
        obs_tensor = th.as_tensor(obs_array[None], dtype=th.float32, device=agent.device)
        scaled_action = agent.rollout_policy(obs_tensor).cpu().numpy()[0]
        env_action = agent.policy.unscale_action(scaled_action) if agent.policy.squash_output else scaled_action
        next_obs, reward, terminated, truncated, _ = env.step(env_action)
        observations.append(obs_array)
        actions.append(scaled_action)
        rewards.append(float(reward))
        next_observations.append(np.asarray(next_obs, dtype=np.float64))
        ends.append(bool(terminated or truncated))
        obs = env.reset()[0] if terminated or truncated else next_obs
    return _Stream(
        observations=np.asarray(observations).reshape(n_steps, -1),
        actions=np.asarray(actions, dtype=np.float32).reshape(n_steps, -1),
        rewards=np.asarray(rewards),
        next_observations=np.asarray(next_observations).reshape(n_steps, -1),
        episode_ends=np.asarray(ends, dtype=bool),
    )


def _trajectory_starts(n_local: int, n_trajectories: int) -> np.ndarray:
    """Start indices of the compounding-error trajectories: evenly spaced over the first ``n_local`` transitions."""
    n_trajectories = min(n_trajectories, n_local)
    return np.unique(np.round(np.linspace(0, n_local - 1, n_trajectories)).astype(np.int64))


def _compounding_errors(
    agent: PMAC, stream: _Stream, starts: np.ndarray, horizon: int, model_prediction: ModelPrediction
) -> list[float]:
    """
    Roll the model from ``stream.observations[starts]`` with the recorded actions.

    :return: observation MSE at steps ``h = 1..horizon``, over the trajectories still alive in the real env (NaN: none)
    """
    errors = []
    model_obs = stream.observations[starts]
    alive = np.ones(len(starts), dtype=bool)
    for h in range(1, horizon + 1):
        index = starts + h - 1
        if h > 1:
            alive &= ~stream.episode_ends[index - 1]
        model_obs, _ = _predict(agent, model_obs, stream.actions[index], model_prediction)
        if not alive.any():
            errors.append(math.nan)
            continue
        squared = (model_obs[alive] - stream.next_observations[index[alive]]) ** 2
        errors.append(float(np.mean(squared)))
    return errors


def mixture_statistics(
    mixture: PolicyMixture, versions: np.ndarray, counts: np.ndarray, newest_k: Sequence[int] = DEFAULT_NEWEST_K
) -> tuple[float, dict[int, float]]:
    """
    Effective number of versions and share of the newest versions of the probabilities the buffer is sampled with.

    :param mixture: the policy mixture used for sampling (its :meth:`~PolicyMixture.probabilities`)
    :param versions: versions that have data, oldest first
    :param counts: number of transitions of each version
    :param newest_k: the ``k`` of the newest-``k`` shares
    :return: :math:`1/\\sum_i p_i^2` and ``{k: sum of the probabilities of the k newest versions}``
    """
    versions = np.asarray(versions, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    order = np.argsort(versions, kind="stable")
    versions, counts = versions[order], counts[order]
    keep = counts > 0
    versions, counts = versions[keep], counts[keep]
    try:
        probabilities = mixture.probabilities(versions, counts)
    except KeyError as error:
        raise ValueError(
            f"The agent's policy mixture cannot weigh the buffer's policy versions {versions.tolist()} ({error}): "
            "are the agent and the replay buffer from the same run (and point in time, see upto)?"
        ) from error
    effective = float(1.0 / np.sum(probabilities**2))
    shares = {k: float(np.sum(probabilities[-k:])) for k in _check_newest_k(newest_k)}
    return effective, shares


def _buffer_version_counts(buffer: PolicyVersionedReplayBuffer, upto: int | None) -> tuple[np.ndarray, np.ndarray]:
    if upto is None:
        return buffer.version_counts()
    versions, counts = np.unique(buffer.policy_versions[:upto], return_counts=True)
    return versions, counts * buffer.n_envs


def _global_sample(
    buffer: PolicyVersionedReplayBuffer, n_global: int, upto: int | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A uniform sample without replacement (all transitions if fewer) of positions ``< upto`` (all positions)."""
    n_positions = buffer.size() if upto is None else upto
    n_transitions = n_positions * buffer.n_envs
    flat = np.arange(n_transitions) if n_global >= n_transitions else rng.choice(n_transitions, n_global, replace=False)
    batch_inds, env_inds = flat // buffer.n_envs, flat % buffer.n_envs
    return (
        buffer.observations[batch_inds, env_inds],
        buffer.actions[batch_inds, env_inds],
        buffer.rewards[batch_inds, env_inds],
        buffer.next_observations[batch_inds, env_inds],
    )


# ---------------------------------------------------------------------------------------------------------- public API
def model_diagnostics(
    agent: PMAC,
    env: gym.Env,
    n_local: int = 1000,
    n_global: int = 5000,
    horizon: int | None = None,
    n_trajectories: int = 100,
    upto: int | None = None,
    seed: int | None = None,
    newest_k: Sequence[int] = DEFAULT_NEWEST_K,
    model_prediction: ModelPrediction = "mean",
    replay_buffer: PolicyVersionedReplayBuffer | None = None,
) -> ModelDiagnostics:
    """
    Compute the model diagnostics of ``agent`` (see the module docstring); :func:`evaluate_model` returns them flat.

    :param agent: a PMAC or MBPO agent whose dynamics model has been trained
    :param env: a separate evaluation env (never used for training) yielding raw observations, e.g.
        ``make_preset_env(env_id)``; it is reset at the start of every call
    :param n_local: number of fresh transitions of the current policy for the local error
    :param n_global: size of the uniform sample of the replay buffer for the global error (all if it holds fewer)
    :param horizon: number ``H`` of compounding steps (None: the agent's current rollout horizon)
    :param n_trajectories: number of real trajectories the model is rolled along (the paper uses 10); their start
        states are evenly spaced over the ``n_local`` transitions (``n_local + H - 1`` env steps are run in all)
    :param upto: only use replay buffer positions ``< upto`` (data of the first ``upto`` steps if the buffer never
        wrapped and ``n_envs == 1``) for the global error and the mixture counts
    :param seed: seed of the evaluation env's reset and of the policy's (and model's) sampling during the evaluation;
        None: drawn from the current global random state (which is restored afterwards in any case)
    :param newest_k: the ``k`` of the ``mixture_newest_<k>_share`` statistics
    :param model_prediction: ``"mean"``: mean of the elites' predicted means (deterministic); ``"sample"``: as in the
        model rollouts (random elite, Gaussian noise)
    :param replay_buffer: the real replay buffer (default: the agent's; NaN global error and mixture statistics when
        there is none)
    :return: the diagnostics
    """
    if not isinstance(agent, PMAC):
        raise TypeError(f"Model diagnostics need a PMAC or MBPO agent, got {type(agent).__name__}")
    if isinstance(env, VecEnv):
        raise TypeError("Pass a plain gymnasium env yielding raw observations (e.g. make_preset_env(env_id)), not a VecEnv")
    if model_prediction not in ("mean", "sample"):
        raise ValueError(f"model_prediction must be 'mean' or 'sample', got {model_prediction!r}")
    if horizon is None:
        horizon = agent.current_rollout_horizon()
    check_positive(n_local=n_local, n_global=n_global, horizon=horizon, n_trajectories=n_trajectories)
    newest_k = _check_newest_k(newest_k)
    buffer = replay_buffer if replay_buffer is not None else _agent_buffer(agent)
    if buffer is not None and upto is not None:
        upto = _check_upto(buffer, upto)

    with preserved_rng_states(agent.device), _evaluation_mode(agent):
        if seed is None:
            seed_sequence = np.random.SeedSequence(np.random.randint(2**31))
        else:
            seed_sequence = np.random.SeedSequence(seed)
            _seed_rngs(seed, agent.device)
        env_seed = int(seed_sequence.generate_state(1)[0]) if seed is None else seed
        rng = np.random.default_rng(seed_sequence)

        # Local error and compounding error: one stream of fresh transitions of the current policy
        starts = _trajectory_starts(n_local, n_trajectories)
        stream = _collect_stream(agent, env, max(n_local, int(starts[-1]) + horizon), env_seed)
        local_obs_mse, local_reward_mse = _one_step_errors(
            agent,
            stream.observations[:n_local],
            stream.actions[:n_local],
            stream.rewards[:n_local],
            stream.next_observations[:n_local],
            model_prediction,
        )
        compounding = _compounding_errors(agent, stream, starts, horizon, model_prediction)

        # Global error and mixture statistics: the replay buffer
        global_obs_mse = global_reward_mse = effective = math.nan
        shares = {k: math.nan for k in newest_k}
        if buffer is not None:
            observations, actions, rewards, next_observations = _global_sample(buffer, n_global, upto, rng)
            global_obs_mse, global_reward_mse = _one_step_errors(
                agent, observations, actions, rewards, next_observations, model_prediction
            )
            versions, counts = _buffer_version_counts(buffer, upto)
            effective, shares = mixture_statistics(_training_mixture(agent), versions, counts, newest_k)

    return ModelDiagnostics(
        timesteps=int(agent.num_timesteps),
        local_obs_mse=local_obs_mse,
        local_reward_mse=local_reward_mse,
        global_obs_mse=global_obs_mse,
        global_reward_mse=global_reward_mse,
        mixture_effective_versions=effective,
        mixture_newest_shares=shares,
        compounding_obs_mse=compounding,
    )


def evaluate_model(
    agent: PMAC,
    env: gym.Env,
    n_local: int = 1000,
    n_global: int = 5000,
    horizon: int | None = None,
    n_trajectories: int = 100,
    upto: int | None = None,
    seed: int | None = None,
    newest_k: Sequence[int] = DEFAULT_NEWEST_K,
    model_prediction: ModelPrediction = "mean",
    replay_buffer: PolicyVersionedReplayBuffer | None = None,
) -> dict[str, float]:
    """
    Local, global and compounding model errors and mixture statistics of ``agent``, as one flat row (see the module
    docstring for each quantity). The random states are restored and the actor put back in its mode afterwards.

    :param agent: a PMAC or MBPO agent whose dynamics model has been trained
    :param env: a separate evaluation env (never used for training) yielding raw observations, e.g.
        ``make_preset_env(env_id)``; it is reset at the start of every call
    :param n_local: number of fresh transitions of the current policy for the local error
    :param n_global: size of the uniform sample of the replay buffer for the global error (all if it holds fewer)
    :param horizon: number ``H`` of compounding steps (None: the agent's current rollout horizon)
    :param n_trajectories: number of real trajectories the model is rolled along (evenly spaced starts)
    :param upto: only use replay buffer positions ``< upto`` for the global error and the mixture counts
    :param seed: seed of the evaluation (env reset, policy and model sampling); None: drawn from the global state
    :param newest_k: the ``k`` of the ``mixture_newest_<k>_share`` statistics
    :param model_prediction: ``"mean"`` (elite mean, deterministic) or ``"sample"`` (as the model rollouts)
    :param replay_buffer: the real replay buffer (default: the agent's; none: NaN global error and mixture statistics)
    :return: ``{column: value}`` with exactly the keys :func:`csv_columns(H, newest_k) <csv_columns>`, in that order
    """
    return model_diagnostics(
        agent,
        env,
        n_local=n_local,
        n_global=n_global,
        horizon=horizon,
        n_trajectories=n_trajectories,
        upto=upto,
        seed=seed,
        newest_k=newest_k,
        model_prediction=model_prediction,
        replay_buffer=replay_buffer,
    ).to_dict()


def append_csv_row(path: str | os.PathLike[str], row: Mapping[str, Any]) -> None:
    """
    Append a row to a CSV file, writing the header first if the file is new or empty.

    If the file's columns differ from the row's (e.g. rows of another compounding horizon), the file is rewritten
    with the union of the columns (existing ones first); missing cells stay empty.

    :param path: CSV file
    :param row: column -> value
    """
    path = os.fspath(path)
    columns = list(row)
    if os.path.exists(path) and os.path.getsize(path) > 0:
        with open(path, newline="") as file:
            reader = csv.DictReader(file)
            header = list(reader.fieldnames or [])
            if header == columns:
                rows = None
            else:
                rows = list(reader)
        if rows is None:
            with open(path, "a", newline="") as file:
                csv.DictWriter(file, fieldnames=columns).writerow(row)
            return
        union = header + [column for column in columns if column not in header]
        with open(path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=union, restval="")
            writer.writeheader()
            writer.writerows(rows)
            writer.writerow(row)
        return
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerow(row)


class ModelDiagnosticsCallback(BaseCallback):
    """
    Evaluate the dynamics model every ``eval_freq`` environment steps with :func:`evaluate_model` (off by default:
    nothing runs unless this callback is passed to ``learn``).

    An evaluation is due whenever ``num_timesteps`` reaches a multiple of ``eval_freq``; it runs at the end of that
    step's rollout (the step's transitions are in the replay buffer, its gradient updates and model step are not done
    yet: the row of step ``T`` uses the buffer positions ``< T``, like ``upto=T`` offline), and is skipped while the model
    has never been trained (during the warm-up). Each value is recorded in the SB3 logger as ``model/<key>`` (all keys
    but ``timesteps``, which is ``time/total_timesteps``) and the logger is dumped, as SB3's ``EvalCallback`` does; the
    row is appended to ``csv_path`` and kept in :attr:`history`.

    The compounding horizon is fixed for the whole run, so that every CSV row has the same columns: ``horizon=None``
    means the largest horizon of the agent's rollout schedule (e.g. 15 for Hopper), the horizon the model rollouts
    reach at the end of the schedule. Every evaluation uses the same ``seed`` (common random numbers: the rows differ
    only through the agent) and the same evaluation env; the training's random states are restored afterwards.

    With ``eval_env=None`` the callback builds its evaluation env when training starts, as
    ``make_preset_env(env_id)`` (:func:`~sb3_pmac.env_presets.make_preset_env`): ``env_id`` is the agent's own when it
    was created from an id (``PMAC("Hopper-v4")``), else the id of the training env's gymnasium spec (an env made with
    ``gym.make``, ``make_vec_env`` or rl-zoo3). This is how rl-zoo3 can create the callback from the ``callback:``
    entry of a hyperparameter file, which can only hold plain values.

    :param eval_env: a separate env for fresh transitions of the current policy (raw observations), e.g.
        ``make_preset_env(env_id)``; None: built from the training env's id (see above; ``ValueError`` when there is
        none). Its observation space must have the shape of the agent's.
    :param eval_freq: evaluate every ``eval_freq`` environment steps
    :param n_local: number of fresh transitions for the local error
    :param n_global: size of the replay buffer sample for the global error
    :param horizon: number of compounding steps (None: the largest horizon of the agent's rollout schedule)
    :param n_trajectories: number of trajectories for the compounding error
    :param newest_k: the ``k`` of the ``mixture_newest_<k>_share`` statistics
    :param model_prediction: ``"mean"`` (elite mean, deterministic) or ``"sample"`` (as the model rollouts)
    :param csv_path: CSV file the rows are appended to (None: no file); a relative path is relative to the working
        directory at construction. Missing folders are created; an existing file is appended to
    :param seed: seed of every evaluation (env reset, policy sampling); None: drawn from the training's random state
    :param verbose: 1: print each row's main errors
    """

    def __init__(
        self,
        eval_env: gym.Env | None = None,
        eval_freq: int = 1000,
        n_local: int = 1000,
        n_global: int = 5000,
        horizon: int | None = None,
        n_trajectories: int = 100,
        newest_k: Sequence[int] = DEFAULT_NEWEST_K,
        model_prediction: ModelPrediction = "mean",
        csv_path: str | os.PathLike[str] | None = None,
        seed: int | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        check_positive(eval_freq=eval_freq, n_local=n_local, n_global=n_global, n_trajectories=n_trajectories, horizon=horizon)
        if isinstance(eval_env, VecEnv):
            raise TypeError("Pass a plain gymnasium env with raw observations (e.g. make_preset_env(env_id)), not a VecEnv")
        #: the evaluation env (built at the start of training when none was given)
        self.eval_env = eval_env
        self._builds_eval_env = eval_env is None
        self._eval_env_id: str | None = None
        self.eval_freq = int(eval_freq)
        self.n_local = int(n_local)
        self.n_global = int(n_global)
        self.horizon = horizon
        self.n_trajectories = int(n_trajectories)
        self.newest_k = _check_newest_k(newest_k)
        self.model_prediction: ModelPrediction = model_prediction
        self.csv_path = os.path.abspath(os.fspath(csv_path)) if csv_path is not None else None
        self.seed = seed
        #: one :func:`evaluate_model` row per evaluation
        self.history: list[dict[str, float]] = []
        self._last_bucket = 0

    @property
    def agent(self) -> PMAC:
        """The PMAC / MBPO agent being trained."""
        assert isinstance(self.model, PMAC)
        return self.model

    def _init_callback(self) -> None:
        if not isinstance(self.model, PMAC):
            raise TypeError(f"ModelDiagnosticsCallback needs a PMAC or MBPO agent, got {type(self.model).__name__}")
        if self.horizon is None:
            self.horizon = max_rollout_horizon(self.model.rollout_horizon)
        if self._builds_eval_env:
            env_id = self._training_env_id()
            if self.eval_env is None or env_id != self._eval_env_id:
                self.eval_env = make_preset_env(env_id)
                self._eval_env_id = env_id
        assert self.eval_env is not None
        eval_shape = getattr(self.eval_env.observation_space, "shape", None)
        if eval_shape != self.model.observation_space.shape:
            raise ValueError(
                f"The diagnostics env's observations have shape {eval_shape}, the agent's {self.model.observation_space.shape}"
                + (f" (env built with make_preset_env({self._eval_env_id!r}))" if self._builds_eval_env else "")
                + ": pass an eval_env that yields the training env's raw observations"
            )

    def _training_env_id(self) -> str:
        """The id of the env the agent trains on: its own ``env_id``, else the gymnasium spec of the training env."""
        env_id = getattr(self.model, "env_id", None)
        if isinstance(env_id, str) and env_id:
            return env_id
        training_env = self.model.get_env()
        if training_env is not None:
            try:
                spec = training_env.get_attr("spec", indices=[0])[0]
            except (AttributeError, IndexError):
                spec = None
            if getattr(spec, "id", None):
                return str(spec.id)
        raise ValueError(
            "ModelDiagnosticsCallback(eval_env=None) builds its evaluation env from the training env's id, but the "
            "agent was not created from an env id and its training env has no gymnasium spec (an env instance not "
            "made with gym.make): pass eval_env, e.g. make_preset_env(env_id)"
        )

    def _on_training_start(self) -> None:
        self._last_bucket = self.model.num_timesteps // self.eval_freq

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        # At the end of a rollout (every step with the default train_freq=1) the step's transitions are stored and the
        # gradient updates of the step not yet done: the buffer holds exactly the data of steps < num_timesteps.
        self.num_timesteps = self.model.num_timesteps
        bucket = self.num_timesteps // self.eval_freq
        if bucket > self._last_bucket:
            self._last_bucket = bucket
            if self.agent._n_model_steps > 0:
                self.evaluate()

    @property
    def columns(self) -> list[str]:
        """The CSV columns (fixed for the run)."""
        assert self.horizon is not None, "the horizon is resolved when the callback is initialised"
        return csv_columns(self.horizon, self.newest_k)

    def evaluate(self) -> dict[str, float]:
        """Evaluate now, record, write and keep the row; :return: the row."""
        assert self.eval_env is not None, "the evaluation env is built when the callback is initialised"
        row = evaluate_model(
            self.agent,
            self.eval_env,
            n_local=self.n_local,
            n_global=self.n_global,
            horizon=self.horizon,
            n_trajectories=self.n_trajectories,
            seed=self.seed,
            newest_k=self.newest_k,
            model_prediction=self.model_prediction,
        )
        self.history.append(row)
        for key, value in row.items():
            if key != "timesteps":
                self.logger.record(f"model/{key}", value)
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self.logger.dump(self.num_timesteps)
        if self.csv_path is not None:
            append_csv_row(self.csv_path, row)
        if self.verbose >= 1:
            print(
                f"[diagnostics] {self.num_timesteps} steps: local obs mse {row['local_obs_mse']:.5g}, "
                f"global obs mse {row['global_obs_mse']:.5g}, effective versions {row['mixture_effective_versions']:.3g}"
            )
        return row


# ---------------------------------------------------------------------------------------------------------- offline
_ALGOS: dict[str, type[PMAC]] = {"pmac": PMAC, "mbpo": MBPO}


def load_agent(path: str | os.PathLike[str], algo: str | None = None, device: str = "auto") -> PMAC:
    """
    Load a saved PMAC or MBPO agent (the replay buffer is not loaded).

    MBPO is PMAC with the adaptive switches off, and the switches are saved with the agent: loading with
    :class:`PMAC` restores either algorithm. ``algo`` only picks the class of the returned object.

    :param path: the agent's zip file
    :param algo: ``"pmac"``, ``"mbpo"`` or None (as saved)
    :param device: torch device
    """
    cls = PMAC if algo is None else _ALGOS[algo.lower()]
    return cls.load(os.fspath(path), device=device)


def load_buffer(path: str | os.PathLike[str]) -> PolicyVersionedReplayBuffer:
    """
    Load a replay buffer file written by :meth:`PMAC.save_replay_buffer` (the model buffer it carries is dropped).

    :param path: the pickle file
    """
    buffer = load_from_pkl(os.fspath(path))
    if not isinstance(buffer, PolicyVersionedReplayBuffer):
        raise TypeError(f"Expected a PolicyVersionedReplayBuffer, the file holds {type(buffer).__name__}")
    buffer.__dict__.pop("model_buffer_state", None)
    return buffer


def algo_name(agent: PMAC) -> str:
    """
    ``"pmac"``, ``"mbpo"`` or an ablation (``"pmac_model_only"``, ``"pmac_rollout_only"``) of an agent; ``"_tv"`` is
    appended for PMAC's ``mixture="tv"`` (the folder names of ``benchmarks/learning_curves.py``).
    """
    if not agent.adapt_model_training and not agent.adapt_rollout_starts:
        return "mbpo"
    name = "pmac"
    if not agent.adapt_rollout_starts:
        name = "pmac_model_only"
    elif not agent.adapt_model_training:
        name = "pmac_rollout_only"
    return f"{name}_tv" if getattr(agent, "mixture", "exponential") == "tv" else name


def _checkpoint_sort_key(path: str | os.PathLike[str]) -> int:
    match = re.search(r"agent_(\d+)", os.path.basename(os.fspath(path)))
    return int(match.group(1)) if match else -1


def evaluate_checkpoints(
    paths: Sequence[str | os.PathLike[str]],
    env_id: str,
    buffer_path: str | os.PathLike[str] | None = None,
    csv_path: str | os.PathLike[str] | None = None,
    n_local: int = 1000,
    n_global: int = 5000,
    horizon: int | None = None,
    n_trajectories: int = 100,
    seed: int | None = 0,
    newest_k: Sequence[int] = DEFAULT_NEWEST_K,
    model_prediction: ModelPrediction = "mean",
    upto: int | Literal["auto"] | None = "auto",
    algo: str | None = None,
    device: str = "auto",
    verbose: int = 0,
) -> list[dict[str, float]]:
    """
    Diagnostics of the checkpoints of one run (``agent_<timesteps>.zip``, evaluated in the order of their steps).

    Each checkpoint holds the model, policy and policy mixture at its time; the run's final replay buffer holds the
    data: with ``upto="auto"`` each checkpoint only sees the positions it had collected (``num_timesteps // n_envs``),
    which requires a buffer that never wrapped around.

    :param paths: agent zip files
    :param env_id: environment id; the evaluation env is ``make_preset_env(env_id)`` (the observations of training)
    :param buffer_path: the run's replay buffer file (:meth:`PMAC.save_replay_buffer`); None: NaN global error and
        mixture statistics
    :param csv_path: CSV file the rows are appended to (None: no file)
    :param n_local: see :func:`model_diagnostics`
    :param n_global: see :func:`model_diagnostics`
    :param horizon: compounding steps, the same for every checkpoint (None: the largest horizon of the first
        agent's rollout schedule)
    :param n_trajectories: see :func:`model_diagnostics`
    :param seed: seed of every evaluation (the same for all checkpoints)
    :param newest_k: see :func:`model_diagnostics`
    :param model_prediction: see :func:`model_diagnostics`
    :param upto: ``"auto"``: each checkpoint's own step count; an int: the same for all; None: the whole buffer
    :param algo: class to load with (``"pmac"``, ``"mbpo"``; None: as saved)
    :param device: torch device
    :param verbose: 1: print a table per checkpoint
    :return: one row per checkpoint
    """
    env = make_preset_env(env_id)
    buffer = load_buffer(buffer_path) if buffer_path is not None else None
    rows = []
    try:
        for path in sorted(paths, key=_checkpoint_sort_key):
            agent = load_agent(path, algo=algo, device=device)
            if buffer is not None:
                buffer.device = agent.device
            if horizon is None:
                horizon = max_rollout_horizon(agent.rollout_horizon)
            checkpoint_upto = None
            if buffer is not None and upto is not None:
                checkpoint_upto = agent.num_timesteps // buffer.n_envs if upto == "auto" else int(upto)
            row = evaluate_model(
                agent,
                env,
                n_local=n_local,
                n_global=n_global,
                horizon=horizon,
                n_trajectories=n_trajectories,
                upto=checkpoint_upto,
                seed=seed,
                newest_k=newest_k,
                model_prediction=model_prediction,
                replay_buffer=buffer,
            )
            rows.append(row)
            if csv_path is not None:
                append_csv_row(csv_path, row)
            if verbose >= 1:
                print(f"== {os.fspath(path)} ({algo_name(agent)}, upto={checkpoint_upto})")
                print(format_table(row))
    finally:
        env.close()
    return rows


def format_table(row: Mapping[str, float]) -> str:
    """Two aligned columns, key and value."""
    width = max(len(key) for key in row)
    return "\n".join(f"{key:<{width}}  {value:.6g}" for key, value in row.items())


def _parse_upto(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--upto must be an int or 'auto', got {value!r}") from None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line of ``python -m sb3_pmac.diagnostics``."""
    parser = argparse.ArgumentParser(
        prog="python -m sb3_pmac.diagnostics",
        description="Model diagnostics (local/global/compounding error, policy-mixture statistics) of saved agents.",
    )
    parser.add_argument("agents", nargs="+", metavar="AGENT_ZIP", help="saved agent(s); several: checkpoints of one run")
    parser.add_argument("--env", required=True, help="environment id (evaluated on make_preset_env(ENV))")
    parser.add_argument("--buffer", default=None, help="replay buffer file (global error and mixture statistics)")
    parser.add_argument(
        "--upto",
        type=_parse_upto,
        default=None,
        help="only buffer positions < UPTO; 'auto': each agent's own step count (default: 'auto' with several agents, "
        "else the whole buffer)",
    )
    parser.add_argument("--horizon", type=int, default=None, help="compounding steps (default: max of the schedule)")
    parser.add_argument("--csv", default=None, help="CSV file the rows are appended to")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--algo", choices=sorted(_ALGOS), default=None, help="class to load with (default: as saved)")
    parser.add_argument("--n-local", type=int, default=1000)
    parser.add_argument("--n-global", type=int, default=5000)
    parser.add_argument("--n-trajectories", type=int, default=100)
    parser.add_argument("--newest-k", type=int, nargs="+", default=list(DEFAULT_NEWEST_K))
    parser.add_argument("--model-prediction", choices=["mean", "sample"], default="mean")
    parser.add_argument("--device", default="auto")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> list[dict[str, float]]:
    """
    ``python -m sb3_pmac.diagnostics AGENT_ZIP [AGENT_ZIP ...] --env ENV_ID [--buffer BUFFER_PKL] [--upto N|auto]
    [--horizon H] [--csv out.csv] [--seed S] [--algo pmac|mbpo]``: print the diagnostics of each agent as a table
    and append them to the CSV.

    :param argv: command-line arguments (default: ``sys.argv[1:]``)
    :return: the rows
    """
    args = parse_args(argv)
    upto = args.upto
    if upto is None and len(args.agents) > 1:
        upto = "auto"
    return evaluate_checkpoints(
        args.agents,
        args.env,
        buffer_path=args.buffer,
        csv_path=args.csv,
        n_local=args.n_local,
        n_global=args.n_global,
        horizon=args.horizon,
        n_trajectories=args.n_trajectories,
        seed=args.seed,
        newest_k=args.newest_k,
        model_prediction=args.model_prediction,
        upto=upto,
        algo=args.algo,
        device=args.device,
        verbose=1,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
