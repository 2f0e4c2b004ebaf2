"""
The SAC batches of PMAC and MBPO (Algorithm 2, line 11; paper §4 "Policy Learning"): a share :math:`\\rho` of real
transitions and the rest from the model buffer, drawn one batch at a time (SB3's ``sample``) or for several updates at
once (the fast SAC path).
"""

import math

import torch as th
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

from sb3_pmac.model_buffer import ModelReplayBuffer


class MixedReplaySampler:
    """
    SAC batches of PMAC: a ``real_ratio`` share of real transitions (uniform over the real buffer) and the rest from
    the model buffer, concatenated (paper §4 "Policy Learning", mixture weight :math:`\\rho`).

    It has the ``sample(batch_size, env)`` method of a replay buffer, so SB3's ``SAC.train`` can draw from it, and
    :meth:`sample_stacked` draws the batches of several updates at once (the fast SAC path).
    When the model buffer is empty every sample is real. Model transitions are stored with raw observations and are
    normalized here like the real ones when the env is a ``VecNormalize``.

    :param real_buffer: the real replay buffer
    :param model_buffer: the model replay buffer
    :param real_ratio: share of real transitions per batch, in [0, 1]
    """

    def __init__(self, real_buffer: ReplayBuffer, model_buffer: ModelReplayBuffer, real_ratio: float) -> None:
        if not 0.0 <= real_ratio <= 1.0:
            raise ValueError(f"real_ratio must be in [0, 1], got {real_ratio}")
        self.real_buffer = real_buffer
        self.model_buffer = model_buffer
        self.real_ratio = real_ratio

    def split(self, batch_size: int) -> tuple[int, int]:
        """
        Number of real and model samples in a batch: ``floor(batch_size * real_ratio)`` real (MBPO rounds the real share
        down), the product rounded to 9 decimals first so that ``100 * 0.29 = 28.999999999999996`` gives 29.
        """
        if self.model_buffer.size() == 0:
            return batch_size, 0
        n_real = math.floor(round(batch_size * self.real_ratio, 9))
        return n_real, batch_size - n_real

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> ReplayBufferSamples:
        """One batch: its ``n_real`` real samples first, then its ``n_model`` model samples (:meth:`split`)."""
        return ReplayBufferSamples(*(None if t is None else t[0] for t in self.sample_stacked(1, batch_size, env)))  # type: ignore[arg-type]

    def sample_stacked(self, gradient_steps: int, batch_size: int, env: VecNormalize | None = None) -> ReplayBufferSamples:
        """
        The batches of ``gradient_steps`` SAC updates in one draw, stacked ``[gradient_steps, batch_size, ...]``:
        every sample drawn uniformly with replacement, independently, as ``gradient_steps`` calls of :meth:`sample`
        would draw it; every batch holds its ``n_real`` real samples first, then its ``n_model`` model samples.
        """
        n_real, n_model = self.split(batch_size)
        parts = []
        if n_real > 0:
            parts.append(stack_batches(self.real_buffer.sample(gradient_steps * n_real, env=env), gradient_steps))
        if n_model > 0:
            model = self.model_buffer.sample(gradient_steps * n_model)
            if env is not None:
                model = self._normalize(model, env)
            parts.append(stack_batches(model, gradient_steps))
        if len(parts) == 1:
            return parts[0]
        columns = ("observations", "actions", "next_observations", "dones", "rewards")
        return ReplayBufferSamples(*(th.cat([getattr(part, name) for part in parts], dim=1) for name in columns))

    @staticmethod
    def _normalize(samples: ReplayBufferSamples, env: VecNormalize) -> ReplayBufferSamples:
        device = samples.observations.device

        def normalize_obs(obs: th.Tensor) -> th.Tensor:
            return th.as_tensor(env.normalize_obs(obs.cpu().numpy()), device=device, dtype=th.float32)

        rewards = th.as_tensor(env.normalize_reward(samples.rewards.cpu().numpy()), device=device, dtype=th.float32)
        return samples._replace(
            observations=normalize_obs(samples.observations),
            next_observations=normalize_obs(samples.next_observations),
            rewards=rewards,
        )


def stack_batches(samples: ReplayBufferSamples, gradient_steps: int) -> ReplayBufferSamples:
    """View ``gradient_steps * batch_size`` samples as ``gradient_steps`` batches: ``[gradient_steps, batch_size, ...]``."""
    return ReplayBufferSamples(
        *(None if t is None else t.reshape(gradient_steps, t.shape[0] // gradient_steps, *t.shape[1:]) for t in samples)  # type: ignore[arg-type]
    )
