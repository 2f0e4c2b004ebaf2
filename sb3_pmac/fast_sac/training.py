"""
The entry point :func:`~sb3_pmac.fast_sac.train` (SB3's ``SAC.train`` on the fast path, or SB3's own when the fast
path is unavailable), the stacked batches it draws (:func:`~sb3_pmac.fast_sac.sample_batches`) and SB3's own
``SAC.train`` as the reference (:func:`~sb3_pmac.fast_sac.reference_sac_train`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stable_baselines3.common.type_aliases import ReplayBufferSamples

from sb3_pmac.fast_sac.kernels import fast_path_available
from sb3_pmac.fast_sac.updates import SACUpdateStats, sac_updates
from sb3_pmac.mixed_sampler import stack_batches

if TYPE_CHECKING:
    from stable_baselines3 import SAC


def sample_batches(sampler: Any, gradient_steps: int, batch_size: int, env: Any = None) -> ReplayBufferSamples:
    """
    The batches of ``gradient_steps`` SAC updates in one draw, stacked ``[gradient_steps, batch_size, ...]``: every
    sample drawn as ``gradient_steps`` calls of ``sampler.sample(batch_size, env)`` would draw it (i.i.d. uniform).

    :param sampler: a replay buffer, or a sampler with its own ``sample_stacked(gradient_steps, batch_size, env)``
        (:meth:`MixedReplaySampler.sample_stacked <sb3_pmac.mixed_sampler.MixedReplaySampler.sample_stacked>`)
    :param env: the ``VecNormalize`` to normalize with, if any
    """
    if hasattr(sampler, "sample_stacked"):
        return sampler.sample_stacked(gradient_steps, batch_size, env)
    return stack_batches(sampler.sample(gradient_steps * batch_size, env=env), gradient_steps)


def train(algo: SAC, gradient_steps: int, batch_size: int, sampler: Any = None) -> SACUpdateStats | None:
    """
    ``SAC.train(gradient_steps, batch_size)`` of SB3 on the fast path: training mode, learning rate schedule, the
    batches of all the updates drawn at once from ``sampler`` (:func:`sample_batches`), :func:`sac_updates`,
    ``_n_updates`` and SB3's logger keys (``train/n_updates``, ``train/ent_coef``, ``train/actor_loss``,
    ``train/critic_loss``, ``train/ent_coef_loss``).

    When the fast path is unavailable (:func:`~sb3_pmac.fast_sac.fast_path_available`) SB3's ``SAC.train`` runs
    instead, drawing from ``sampler`` (:func:`reference_sac_train`).

    :param algo: the SAC algorithm
    :param gradient_steps: number of updates
    :param batch_size: samples per update
    :param sampler: what the batches are drawn from (default: ``algo.replay_buffer``)
    :return: the means of the updates, None when no update ran or when SB3's ``SAC.train`` ran (it logged them)
    """
    sampler = algo.replay_buffer if sampler is None else sampler
    if not fast_path_available(algo.device):
        reference_sac_train(algo, gradient_steps, batch_size, replay_buffer=sampler)
        return None
    if gradient_steps <= 0:
        return None
    algo.policy.set_training_mode(True)
    optimizers = [algo.actor.optimizer, algo.critic.optimizer]
    if algo.ent_coef_optimizer is not None:
        optimizers.append(algo.ent_coef_optimizer)
    algo._update_learning_rate(optimizers)
    stats = sac_updates(algo, sample_batches(sampler, gradient_steps, batch_size, env=algo._vec_normalize_env))
    algo._n_updates += gradient_steps
    algo.logger.record("train/n_updates", algo._n_updates, exclude="tensorboard")
    algo.logger.record("train/ent_coef", stats.ent_coef)
    algo.logger.record("train/actor_loss", stats.actor_loss)
    algo.logger.record("train/critic_loss", stats.critic_loss)
    if stats.ent_coef_loss is not None:
        algo.logger.record("train/ent_coef_loss", stats.ent_coef_loss)
    return stats


class _FixedBatches:
    """A replay buffer stand-in returning prepared batches in order (``sample`` ignores its arguments)."""

    def __init__(self, batches: ReplayBufferSamples) -> None:
        self.batches = batches
        self.index = 0

    def sample(self, batch_size: int, env: Any = None) -> ReplayBufferSamples:
        batch = ReplayBufferSamples(*(None if t is None else t[self.index] for t in self.batches))  # type: ignore[arg-type]
        self.index += 1
        return batch


def reference_sac_train(
    algo: SAC, gradient_steps: int, batch_size: int, replay_buffer: Any = None, batches: ReplayBufferSamples | None = None
) -> None:
    """
    SB3's original ``SAC.train`` on ``algo`` (the fallback of :func:`train`; tests, benchmark), drawing from
    ``replay_buffer`` (default: algo's own) or taking the stacked ``batches`` in order.
    """
    from stable_baselines3 import SAC

    if batches is not None:
        replay_buffer = _FixedBatches(batches)
    saved = algo.replay_buffer
    if replay_buffer is not None:
        algo.replay_buffer = replay_buffer
    try:
        SAC.train(algo, gradient_steps, batch_size)
    finally:
        algo.replay_buffer = saved
