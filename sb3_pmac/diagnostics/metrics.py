"""
Model diagnostics of PMAC and MBPO: :func:`~sb3_pmac.diagnostics.evaluate_model` and its
:class:`~sb3_pmac.diagnostics.DiagnosticsConfig`.

Local vs global one-step error (the paper's Sec. 2.2, Fig. 1), H-step compounding error (Sec. 5.2, Fig. 3(d)) and the
statistics of the mixture the model-training data is drawn with (Sec. 3.2, Algorithm 1). ``docs/diagnostics.md``
defines each quantity and maps it to the paper.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.vec_env import VecEnv

from sb3_pmac.buffers import PolicyVersionedReplayBuffer
from sb3_pmac.checks import check_positive
from sb3_pmac.diagnostics.schema import DEFAULT_NEWEST_K, ModelDiagnostics, check_newest_k
from sb3_pmac.diagnostics.transitions import (
    PolicyStream,
    agent_buffer,
    buffer_sample,
    buffer_version_counts,
    check_upto,
    collect_stream,
    trajectory_starts,
)
from sb3_pmac.horizon import max_horizon
from sb3_pmac.pmac import PMAC
from sb3_pmac.policy_mixture import PolicyMixture
from sb3_pmac.random_state import preserved_rng_states

ModelPrediction = Literal["mean", "sample"]
_PREDICT_CHUNK = 8192


@dataclasses.dataclass(frozen=True)
class DiagnosticsConfig:
    """
    What one evaluation measures and how; the same for :func:`evaluate_model`,
    :class:`~sb3_pmac.diagnostics.ModelDiagnosticsCallback`, :func:`~sb3_pmac.diagnostics.evaluate_checkpoints` and
    ``python -m sb3_pmac.diagnostics``, which also take each field as a keyword argument.

    :param n_local: number of fresh transitions of the current policy for the local error
    :param n_global: size of the uniform sample of the replay buffer for the global error (all if it holds fewer)
    :param horizon: number ``H`` of compounding steps. None: the agent's current rollout horizon in
        :func:`evaluate_model`; the largest horizon of the agent's rollout schedule, fixed for the whole run so that
        every row has the same columns, in the callback and :func:`~sb3_pmac.diagnostics.evaluate_checkpoints`
    :param n_trajectories: number of real trajectories the model is rolled along (the paper uses 10); their start
        states are evenly spaced over the ``n_local`` transitions (``n_local + H - 1`` env steps are run in all)
    :param newest_k: the ``k`` of the ``mixture_newest_<k>_share`` statistics
    :param model_prediction: ``"mean"``: mean of the elites' predicted means (deterministic); ``"sample"``: as in the
        model rollouts (random elite, Gaussian noise)
    :param seed: seed of the evaluation env's reset and of the policy's (and model's) sampling during an evaluation;
        None: drawn from the current global random state (which is restored afterwards in any case)
    """

    n_local: int = 1000
    n_global: int = 5000
    horizon: int | None = None
    n_trajectories: int = 100
    newest_k: Sequence[int] = DEFAULT_NEWEST_K
    model_prediction: ModelPrediction = "mean"
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.model_prediction not in ("mean", "sample"):
            raise ValueError(f"model_prediction must be 'mean' or 'sample', got {self.model_prediction!r}")
        check_positive(n_local=self.n_local, n_global=self.n_global, horizon=self.horizon, n_trajectories=self.n_trajectories)
        object.__setattr__(self, "newest_k", check_newest_k(self.newest_k))

    @classmethod
    def from_options(cls, config: DiagnosticsConfig | None = None, **options: Any) -> DiagnosticsConfig:
        """``config`` (None: the defaults) with the fields named in ``options`` replaced."""
        if config is None:
            return cls(**options)
        if not isinstance(config, cls):
            raise TypeError(f"config must be a DiagnosticsConfig, got {type(config).__name__}")
        return dataclasses.replace(config, **options) if options else config

    def with_run_horizon(self, agent: PMAC) -> DiagnosticsConfig:
        """This config, with ``horizon=None`` replaced by the largest horizon of ``agent``'s rollout schedule."""
        if self.horizon is not None:
            return self
        return dataclasses.replace(self, horizon=max_horizon(agent.rollout_horizon))


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
        # float64 observations keep their precision in s + (s' - s); the model itself runs in float32
        obs = th.as_tensor(observations[start : start + _PREDICT_CHUNK], device=agent.device)
        obs = obs if obs.dtype == th.float64 else obs.float()
        act = th.as_tensor(actions[start : start + _PREDICT_CHUNK], dtype=th.float32, device=agent.device)
        if model_prediction == "mean":
            mean, _ = model.predict(obs.float(), act)  # [n_elites, N, obs_dim + 1]: (s' - s, r) of every elite
            mean = mean.mean(dim=0)
            next_obs, rewards = obs + mean[:, :-1].to(obs.dtype), mean[:, -1]
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


def _compounding_errors(
    agent: PMAC, stream: PolicyStream, starts: np.ndarray, horizon: int, model_prediction: ModelPrediction
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

    :param mixture: the policy mixture used for sampling (its :meth:`~sb3_pmac.policy_mixture.PolicyMixture.probabilities`)
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
    shares = {k: float(np.sum(probabilities[-k:])) for k in check_newest_k(newest_k)}
    return effective, shares


def evaluate_model(
    agent: PMAC,
    env: gym.Env,
    config: DiagnosticsConfig | None = None,
    *,
    upto: int | None = None,
    replay_buffer: PolicyVersionedReplayBuffer | None = None,
    **options: Any,
) -> dict[str, float]:
    """
    Local, global and compounding model errors and mixture statistics of ``agent``, as one flat row (the columns of
    :func:`~sb3_pmac.diagnostics.csv_columns`). The numpy, python and torch random states are restored and the actor
    put back in its mode afterwards: an evaluation has no effect on training. ``model_diagnostics`` is the same
    function under its former name (a plain alias, kept for compatibility).

    Global error and mixture statistics are NaN when there is no replay buffer. Observations are compared raw
    (unnormalized, as stored in the buffer and predicted by the model).

    :param agent: a PMAC or MBPO agent whose dynamics model has been trained
    :param env: a separate evaluation env (never used for training) yielding raw observations, e.g.
        ``make_preset_env(env_id)``; it is reset at the start of every call
    :param config: what to measure (default: :class:`DiagnosticsConfig`'s defaults)
    :param upto: only use replay buffer positions ``< upto`` (data of the first ``upto`` steps if the buffer never
        wrapped and ``n_envs == 1``) for the global error and the mixture counts
    :param replay_buffer: the real replay buffer (default: the agent's)
    :param options: fields of :class:`DiagnosticsConfig` (``n_local=100, seed=0``, ...) that replace ``config``'s
    :return: ``{column: value}`` with exactly the keys :func:`csv_columns(H, newest_k) <sb3_pmac.diagnostics.csv_columns>`,
        in that order
    """
    if not isinstance(agent, PMAC):
        raise TypeError(f"Model diagnostics need a PMAC or MBPO agent, got {type(agent).__name__}")
    if isinstance(env, VecEnv):
        raise TypeError("Pass a plain gymnasium env yielding raw observations (e.g. make_preset_env(env_id)), not a VecEnv")
    config = DiagnosticsConfig.from_options(config, **options)
    horizon = config.horizon if config.horizon is not None else agent.current_rollout_horizon()
    check_positive(horizon=horizon)
    seed, model_prediction = config.seed, config.model_prediction
    buffer = replay_buffer if replay_buffer is not None else agent_buffer(agent)
    if buffer is not None and upto is not None:
        upto = check_upto(buffer, upto)

    with preserved_rng_states(agent.device), _evaluation_mode(agent):
        if seed is None:
            seed_sequence = np.random.SeedSequence(np.random.randint(2**31))
        else:
            seed_sequence = np.random.SeedSequence(seed)
            _seed_rngs(seed, agent.device)
        env_seed = int(seed_sequence.generate_state(1)[0]) if seed is None else seed
        rng = np.random.default_rng(seed_sequence)

        # Local error and compounding error: one stream of fresh transitions of the current policy
        n_local = config.n_local
        starts = trajectory_starts(n_local, config.n_trajectories)
        stream = collect_stream(agent, env, max(n_local, int(starts[-1]) + horizon), env_seed)
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
        shares = {k: math.nan for k in config.newest_k}
        if buffer is not None:
            observations, actions, rewards, next_observations = buffer_sample(buffer, config.n_global, upto, rng)
            global_obs_mse, global_reward_mse = _one_step_errors(
                agent, observations, actions, rewards, next_observations, model_prediction
            )
            versions, counts = buffer_version_counts(buffer, upto)
            mixture = agent.data_mixture(agent.adapt_model_training)  # the mixture the model-training data is drawn with
            effective, shares = mixture_statistics(mixture, versions, counts, config.newest_k)

    return ModelDiagnostics(
        timesteps=int(agent.num_timesteps),
        local_obs_mse=local_obs_mse,
        local_reward_mse=local_reward_mse,
        global_obs_mse=global_obs_mse,
        global_reward_mse=global_reward_mse,
        mixture_effective_versions=effective,
        mixture_newest_shares=shares,
        compounding_obs_mse=compounding,
    ).to_dict()


#: Former name of :func:`evaluate_model` (a plain alias, kept for compatibility).
model_diagnostics = evaluate_model
