"""
The entry point :func:`~sb3_pmac.fast_sac.train` (SB3's ``SAC.train`` on the fast path, or SB3's own when the fast
path is unavailable), the stacked batches it draws (:func:`~sb3_pmac.fast_sac.sample_batches`) and SB3's own
``SAC.train`` as the reference (:func:`~sb3_pmac.fast_sac.reference_sac_train`).
"""

from __future__ import annotations

import warnings
import weakref
from typing import TYPE_CHECKING, Any

import torch as th
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


def _has_global_module_hooks() -> bool:
    hooks = th.nn.modules.module
    names = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks", "_global_backward_pre_hooks")
    return any(getattr(hooks, name, None) for name in names)


#: Per agent: its actor, critic and critic target, their modules and the actor's and critic's parameters (listed again
#: when a network is replaced, e.g. by ``set_parameters``; hooks and ``requires_grad`` are read at every call)
_networks: weakref.WeakKeyDictionary[Any, tuple[tuple[Any, ...], list[th.nn.Module], list[th.Tensor]]] = (
    weakref.WeakKeyDictionary()
)


def _modules_and_params(algo: SAC) -> tuple[list[th.nn.Module], list[th.Tensor]]:
    networks: tuple[th.nn.Module, ...] = (algo.actor, algo.critic, algo.critic_target)
    cached = _networks.get(algo)
    if cached is not None and all(a is b for a, b in zip(cached[0], networks, strict=True)):
        return cached[1], cached[2]
    modules = [module for network in networks for module in network.modules()]
    params: list[th.Tensor] = [p for network in networks[:2] for p in network.parameters()]
    _networks[algo] = (networks, modules, params)
    return modules, params


def fast_path_declines(algo: SAC) -> str | None:
    """
    Why the fast path cannot run ``algo``'s updates as SB3 would, or None. It computes SB3's gradients without calling
    the modules and without ``.grad``, so it declines what would see the difference: parameters frozen with
    ``requires_grad=False`` (SB3's optimizers skip them), forward or backward hooks on the actor's or critics' modules
    (or global ones), gradient hooks on their parameters (``register_hook``, ``register_post_accumulate_grad_hook``),
    and Dict observations (which PMAC refuses; plain SAC may have them).

    :param algo: the SAC algorithm
    :return: the reason, or None when the fast path applies
    """
    from gymnasium import spaces

    if isinstance(algo.observation_space, spaces.Dict):
        return "Dict observations"
    modules, params = _modules_and_params(algo)
    if any(not p.requires_grad for p in params):
        return "parameters frozen with requires_grad=False"
    if any(p._backward_hooks or getattr(p, "_post_accumulate_grad_hooks", None) for p in params):
        return "gradient hooks on parameters"
    if _has_global_module_hooks() or any(
        m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks for m in modules
    ):
        return "module hooks"
    return None


#: Agents told once that their updates run SB3's ``SAC.train`` (:func:`fast_path_declines`)
_told: weakref.WeakSet[Any] = weakref.WeakSet()


def train(algo: SAC, gradient_steps: int, batch_size: int, sampler: Any = None) -> SACUpdateStats | None:
    """
    ``SAC.train(gradient_steps, batch_size)`` of SB3 on the fast path: training mode, learning rate schedule, the
    batches of all the updates drawn at once from ``sampler`` (:func:`sample_batches`), :func:`sac_updates`,
    ``_n_updates`` and SB3's logger keys (``train/n_updates``, ``train/ent_coef``, ``train/actor_loss``,
    ``train/critic_loss``, ``train/ent_coef_loss``).

    When the fast path is unavailable (:func:`~sb3_pmac.fast_sac.fast_path_available`) or declines the agent's
    configuration (:func:`fast_path_declines`: frozen parameters, hooks; said once per agent with a warning) SB3's
    ``SAC.train`` runs instead, drawing from ``sampler`` (:func:`reference_sac_train`). The fast path leaves the
    parameters' ``.grad`` as they were (it hands the gradients to the optimizers directly).

    :param algo: the SAC algorithm
    :param gradient_steps: number of updates
    :param batch_size: samples per update
    :param sampler: what the batches are drawn from (default: ``algo.replay_buffer``)
    :return: the means of the updates, None when no update ran or when SB3's ``SAC.train`` ran (it logged them)
    """
    sampler = algo.replay_buffer if sampler is None else sampler
    declined = fast_path_declines(algo)
    if declined is not None and algo not in _told:
        _told.add(algo)
        warnings.warn(
            f"{type(algo).__name__}: the SAC updates run SB3's own SAC.train (slower), as the fast path cannot honour "
            f"{declined}",
            UserWarning,
            stacklevel=3,
        )
    if declined is not None or not fast_path_available(algo.device):
        if hasattr(sampler, "sample"):
            reference_sac_train(algo, gradient_steps, batch_size, replay_buffer=sampler)
        elif gradient_steps > 0:  # a sampler of stacked batches only
            batches = sample_batches(sampler, gradient_steps, batch_size, env=algo._vec_normalize_env)
            reference_sac_train(algo, gradient_steps, batch_size, batches=batches)
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
