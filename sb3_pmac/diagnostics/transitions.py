"""
The real transitions the model diagnostics are computed on.

Fresh transitions of the current policy in a separate env (the local and compounding errors, Fig. 1 and Fig. 3 of
the paper) and the real replay buffer: a uniform sample (the global error) and its policy versions (the mixture).
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import torch as th

from sb3_pmac.buffers import PolicyVersionedReplayBuffer
from sb3_pmac.pmac import PMAC


@dataclasses.dataclass
class PolicyStream:
    """Consecutive real transitions of the current policy (episodes back to back)."""

    observations: np.ndarray
    actions: np.ndarray  # buffer scale ([-1, 1] for SAC's squashed actions)
    rewards: np.ndarray
    next_observations: np.ndarray  # the last observation of an episode is its terminal observation
    episode_ends: np.ndarray  # True where the episode terminated or was truncated after this transition


@th.no_grad()
def collect_stream(agent: PMAC, env: gym.Env, n_steps: int, seed: int | None) -> PolicyStream:
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
    return PolicyStream(
        observations=np.asarray(observations).reshape(n_steps, -1),
        actions=np.asarray(actions, dtype=np.float32).reshape(n_steps, -1),
        rewards=np.asarray(rewards),
        next_observations=np.asarray(next_observations).reshape(n_steps, -1),
        episode_ends=np.asarray(ends, dtype=bool),
    )


def trajectory_starts(n_local: int, n_trajectories: int) -> np.ndarray:
    """Start indices of the compounding-error trajectories: evenly spaced over the first ``n_local`` transitions."""
    n_trajectories = min(n_trajectories, n_local)
    return np.unique(np.round(np.linspace(0, n_local - 1, n_trajectories)).astype(np.int64))


def agent_buffer(agent: PMAC) -> PolicyVersionedReplayBuffer | None:
    """
    The agent's real replay buffer, or None when it holds no data (e.g. an agent loaded without
    ``load_replay_buffer``: :meth:`PMAC.load <sb3_pmac.pmac.PMAC.load>` allocates its buffer empty).
    """
    buffer = getattr(agent, "replay_buffer", None)
    if buffer is None or buffer.size() == 0:
        return None
    return buffer


def check_upto(buffer: PolicyVersionedReplayBuffer, upto: int) -> int:
    """``upto`` as an int; ``ValueError`` unless it counts positions of a buffer that never wrapped around."""
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


def buffer_version_counts(buffer: PolicyVersionedReplayBuffer, upto: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Policy versions with data and their numbers of transitions, in positions ``< upto`` (all positions)."""
    if upto is None:
        return buffer.version_counts()
    versions, counts = np.unique(buffer.policy_versions[:upto], return_counts=True)
    return versions, counts * buffer.n_envs


def buffer_sample(
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


def learn_restarts(buffer: PolicyVersionedReplayBuffer) -> np.ndarray:
    """
    Buffer positions where a ``learn`` call started on data of an earlier one: position 0 and every position whose
    observation is not the previous position's next observation although that transition did not end its episode (SB3
    resets the env when ``learn`` resets ``num_timesteps``, e.g. rl-zoo3's ``train -i``, which goes on with the buffer
    of the first run). A run that ended exactly at the end of an episode leaves no trace (the next one starts as any
    episode does). Only for a buffer that never wrapped around.

    :return: the positions, increasing, 0 first
    """
    size = buffer.size()
    if size < 2:
        return np.zeros(1, dtype=np.int64)
    observations = buffer.observations[1:size].reshape(size - 1, buffer.n_envs, -1)
    previous_next = buffer.next_observations[: size - 1].reshape(size - 1, buffer.n_envs, -1)
    jumped = (observations != previous_next).any(axis=2)
    ended = buffer.dones[: size - 1].reshape(size - 1, buffer.n_envs).astype(bool)
    restarts = np.flatnonzero((jumped & ~ended).any(axis=1)) + 1
    return np.concatenate([np.zeros(1, dtype=np.int64), restarts.astype(np.int64)])
