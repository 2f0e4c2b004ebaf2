"""
:func:`~sb3_pmac.fast_sac.sac_updates`: ``gradient_steps`` updates of SB3's SAC with its math (see
``docs/algorithm.md``, "Fast SAC updates"), on the hand-written networks of ``ManualNets`` or with autograd, and the
means of their losses (:class:`~sb3_pmac.fast_sac.SACUpdateStats`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import torch as th
import torch.nn.functional as F
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from sb3_pmac.fast_sac.kernels import AdamStep, kernel_error
from sb3_pmac.fast_sac.networks import ActorSampler, Critic, ManualNets
from sb3_pmac.mixed_sampler import stack_batches

if TYPE_CHECKING:
    from stable_baselines3 import SAC

#: The batches of :func:`~sb3_pmac.fast_sac.sac_updates`: SB3's samples stacked ``[gradient_steps, batch_size, ...]``,
#: or a function that draws them for a given ``gradient_steps``
BatchSource = ReplayBufferSamples | Callable[[int], ReplayBufferSamples]


@dataclass(frozen=True)
class SACUpdateStats:
    """Means over the updates of one call, as SB3 logs them (``ent_coef_loss`` is None for a fixed ``ent_coef``)."""

    actor_loss: float
    critic_loss: float
    ent_coef: float
    ent_coef_loss: float | None
    n_updates: int


def sac_updates(
    algo: SAC,
    batches: BatchSource,
    gradient_steps: int | None = None,
    batch_size: int | None = None,
    manual_backward: bool | None = None,
) -> SACUpdateStats:
    """
    ``gradient_steps`` SAC updates of ``algo``'s networks, with the math of SB3's ``SAC.train``.

    Does not touch the learning rate schedule, the training mode, ``_n_updates`` or the logger: the caller does
    (as :func:`~sb3_pmac.fast_sac.train` does).

    :param algo: the SAC algorithm (its ``actor``, ``critic``, ``critic_target``, optimizers, ``log_ent_coef`` /
        ``ent_coef_tensor``, ``target_entropy``, ``gamma``, ``tau``, ``target_update_interval``, ``use_sde``)
    :param batches: stacked batches ``[gradient_steps, batch_size, ...]`` (see
        :func:`~sb3_pmac.fast_sac.sample_batches`), or a callable ``n -> ReplayBufferSamples`` drawing ``n`` samples
        (called once for ``gradient_steps * batch_size``)
    :param gradient_steps: number of updates (default: the stacked batches' first dimension)
    :param batch_size: samples per update (only for a callable ``batches``; default ``algo.batch_size``)
    :param manual_backward: hand-written backward passes for Linear/ReLU networks (SB3's default ``MlpPolicy``);
        ``None``: whenever the networks allow it, ``False``: autograd throughout, ``True``: required
    :return: the mean losses and entropy coefficient over the updates, as Python floats (one sync)
    :raises RuntimeError: when a private torch kernel of the fast path fails its trial call
        (:func:`~sb3_pmac.fast_sac.kernel_error`)
    """
    error = kernel_error(algo.device)
    if error is not None:
        raise RuntimeError(f"sac_updates needs torch's private kernels: {error}. Use reference_sac_train (SAC.train)")
    if not isinstance(batches, ReplayBufferSamples):
        if gradient_steps is None:
            raise ValueError("gradient_steps is needed when batches is a callable")
        batches = stack_batches(batches(gradient_steps * (batch_size or algo.batch_size)), gradient_steps)
    n_steps = batches.observations.shape[0] if gradient_steps is None else int(gradient_steps)
    if n_steps <= 0 or batches.observations.shape[0] < n_steps:
        raise ValueError(f"Need batches for {n_steps} > 0 updates, got {batches.observations.shape[0]}")
    if batches.observations.shape[0] > n_steps:
        batches = ReplayBufferSamples(*(None if t is None else t[:n_steps] for t in batches))  # type: ignore[arg-type]
    return _Updates(algo, batches, manual_backward).run(n_steps)


class _Updates:
    """The state shared by the updates of one :func:`sac_updates` call."""

    def __init__(self, algo: SAC, batches: ReplayBufferSamples, manual_backward: bool | None) -> None:
        self.algo = algo
        self.batches = batches
        self.actor_adam, self.critic_adam = AdamStep(algo.actor.optimizer), AdamStep(algo.critic.optimizer)
        self.learn_ent_coef = algo.ent_coef_optimizer is not None and algo.log_ent_coef is not None
        if self.learn_ent_coef:
            self.ent_coef_adam = AdamStep(algo.ent_coef_optimizer)  # type: ignore[arg-type]
            self.target_entropy = float(algo.target_entropy)  # type: ignore[arg-type]
        self.polyak_params: list[th.Tensor] = list(algo.critic.parameters())
        self.polyak_targets: list[th.Tensor] = list(algo.critic_target.parameters())
        if len(self.polyak_params) != len(self.polyak_targets):
            raise ValueError("critic and critic_target have different numbers of parameters")
        self.bn_stats: list[th.Tensor] = list(algo.batch_norm_stats)
        self.bn_targets: list[th.Tensor] = list(algo.batch_norm_stats_target)
        self.tau = float(algo.tau)
        obs = batches.observations
        self.nets = None
        if manual_backward is not False:
            self.nets = ManualNets.build(algo, obs.shape[1], obs.device, th.float32)
            if self.nets is not None and not self.nets.covers(self.actor_adam.params, self.critic_adam.params):
                self.nets = None
            if manual_backward and self.nets is None:
                raise ValueError("manual_backward=True needs SB3's MlpPolicy networks (Linear/ReLU, no gSDE)")

    def run(self, n_steps: int) -> SACUpdateStats:
        batches, algo = self.batches, self.algo
        # SB3: rewards + (1 - dones) * discounts * next_q  ->  (1 - dones) * discounts precomputed elementwise
        discounts = batches.discounts if batches.discounts is not None else algo.gamma
        self.not_done_discounts = (1 - batches.dones) * discounts
        # Per update: actor loss, critic loss, ent_coef, ent_coef loss (0-dim tensors; synced once at the end)
        self.stats: tuple[list[th.Tensor], ...] = ([], [], [], [])
        adam_steps = [self.actor_adam, self.critic_adam] + ([self.ent_coef_adam] if self.learn_ent_coef else [])
        try:
            if self.nets is not None:
                # the parameters live in the flat tensors meanwhile (views: nothing to diverge)
                self.nets.attach()
                try:
                    with th.no_grad():
                        self._run_manual(self.nets)
                finally:
                    self.nets.release()
            else:
                self._run_autograd(n_steps)
        finally:
            for adam_step in adam_steps:
                adam_step.finish()
        columns = [column for column in self.stats if column]
        means = th.stack([th.stack(column).double().mean() for column in columns]).tolist()
        return SACUpdateStats(
            actor_loss=means[0],
            critic_loss=means[1],
            ent_coef=means[2],
            ent_coef_loss=means[3] if self.learn_ent_coef else None,
            n_updates=n_steps,
        )

    def _ent_coef(self, log_prob: th.Tensor) -> th.Tensor:
        """The entropy coefficient of this update; when learned, its optimizer step (on the value before the step)."""
        algo = self.algo
        if not self.learn_ent_coef:
            ent_coef = algo.ent_coef_tensor
        else:
            log_ent_coef = cast(th.Tensor, algo.log_ent_coef).detach()
            ent_coef = th.exp(log_ent_coef)
            # ent_coef_loss = -(log_ent_coef * (log_prob + target_entropy).detach()).mean(): its gradient (as autograd
            # computes it), and the loss as log_ent_coef * gradient
            entropy_error = log_prob.detach() + self.target_entropy
            ent_coef_grad = (entropy_error * (-1.0 / entropy_error.numel())).sum(dim=0)
            self.stats[3].append(th.mul(log_ent_coef, ent_coef_grad).reshape(()))
            self.ent_coef_adam.step((ent_coef_grad,))
        self.stats[2].append(ent_coef.detach().reshape(()))
        return ent_coef

    def _polyak(self, step: int) -> None:
        if step % self.algo.target_update_interval == 0:
            with th.no_grad():
                if self.nets is not None and self.nets.flat_polyak and not self.bn_stats:
                    # the same elementwise operations on all parameters at once (stacked in the flat tensors)
                    self.nets.targets.flat.mul_(1 - self.tau)
                    self.nets.targets.flat.add_(self.nets.critics.flat, alpha=self.tau)
                    return
                # polyak_update: target.mul_(1 - tau); th.add(target, param, alpha=tau, out=target)
                th._foreach_mul_(self.polyak_targets, 1 - self.tau)
                th._foreach_add_(self.polyak_targets, self.polyak_params, alpha=self.tau)
                if self.bn_stats:  # polyak_update(..., tau=1.0): copy the running statistics
                    th._foreach_mul_(self.bn_targets, 0.0)
                    th._foreach_add_(self.bn_targets, self.bn_stats, alpha=1.0)

    def _run_autograd(self, n_steps: int) -> None:
        """The updates with autograd: any SB3 SAC networks (gSDE, other activations, features extractors...)."""
        algo, batches = self.algo, self.batches
        actor = algo.actor
        sample_actions = ActorSampler(actor)
        q_nets, q_targets = Critic(algo.critic), Critic(algo.critic_target)
        obs_all, next_obs_all, rewards_all = batches.observations, batches.next_observations, batches.rewards
        q_inputs_all = q_nets.inputs(obs_all, batches.actions) if q_nets.fast else None
        critic_adam, actor_adam = self.critic_adam, self.actor_adam
        for step in range(n_steps):
            obs, next_obs = obs_all[step], next_obs_all[step]
            if algo.use_sde:
                actor.reset_noise()
            actions_pi, log_prob = sample_actions(obs)
            ent_coef = self._ent_coef(log_prob)

            with th.no_grad():
                next_actions, next_log_prob = sample_actions(next_obs)
                next_q = th.cat(q_targets(q_targets.inputs(next_obs, next_actions)), dim=1)
                next_q = th.min(next_q, dim=1, keepdim=True)[0]
                next_q = next_q - ent_coef * next_log_prob
                target_q = rewards_all[step] + self.not_done_discounts[step] * next_q

            q_inputs = q_inputs_all[step] if q_inputs_all is not None else (obs, batches.actions[step])
            critic_loss = cast(th.Tensor, 0.5 * sum(F.mse_loss(q, target_q) for q in q_nets(q_inputs)))
            critic_adam.step(th.autograd.grad(critic_loss, critic_adam.params, allow_unused=True))
            self.stats[1].append(critic_loss.detach())

            # The actor loss sees the critics just updated; only the actor's gradients are computed
            min_q_pi = th.min(th.cat(q_nets(q_nets.inputs(obs, actions_pi)), dim=1), dim=1, keepdim=True)[0]
            actor_loss = (ent_coef * log_prob - min_q_pi).mean()
            actor_adam.step(th.autograd.grad(actor_loss, actor_adam.params, allow_unused=True))
            self.stats[0].append(actor_loss.detach())
            self._polyak(step)

    def _run_manual(self, nets: ManualNets) -> None:
        """
        The updates with the hand-written passes of :class:`ManualNets` (runs under ``no_grad``). The losses'
        gradients are written out as autograd computes them: ``MseLossBackward0`` (``(q - target) / batch``), the
        minimum's ``MinBackward0`` (``-1 / batch`` scattered to the smaller Q-value), ``MeanBackward0``.
        """
        batches = self.batches
        obs_all, next_obs_all, rewards_all = batches.observations.float(), batches.next_observations.float(), batches.rewards
        n_steps, batch_size, obs_dim = obs_all.shape
        n_critics = len(nets.critics.weights[0])
        q_inputs_all = th.cat([obs_all, batches.actions], dim=-1)  # the critics' input cat([obs, actions]), all updates
        actor_inputs_all = th.cat([obs_all, next_obs_all], dim=1)  # the actor runs on both at once: [2 * batch, obs]
        critic_grads = tuple(nets.critic_grads[p] for p in self.critic_adam.params)
        actor_grads = tuple(nets.actor_grads[p] for p in self.actor_adam.params)
        q_input, q_input_stacked, q_grad, gaussian = nets.q_input, nets.q_input_stacked, nets.q_grad, nets.gaussian
        steps = zip(  # per update, the networks' inputs as they take them: [n_networks, rows, ...]
            obs_all.unsqueeze(1).unbind(0),
            next_obs_all.unbind(0),
            actor_inputs_all.unsqueeze(1).unbind(0),
            q_inputs_all.unsqueeze(1).expand(n_steps, n_critics, *q_inputs_all.shape[1:]).unbind(0),
            rewards_all.unbind(0),
            self.not_done_discounts.unbind(0),
            strict=True,
        )
        for step, (obs, next_obs, actor_inputs, q_inputs, rewards, not_done_discounts) in enumerate(steps):
            # The actor on the observations and the next observations, their noise drawn in SB3's order
            latent, mean, log_std = nets.actor_outputs(actor_inputs)
            actions, log_prob = gaussian.sample(mean, log_std, rows=batch_size)
            actions_pi, log_prob, next_actions, next_log_prob = (
                actions[:batch_size],
                log_prob[:batch_size],
                actions[batch_size:],
                log_prob[batch_size:],
            )
            ent_coef = self._ent_coef(log_prob)

            # Target Q-values: SB3's th.min(th.cat(critic_target(...), dim=1), dim=1, keepdim=True)[0], [batch, 1]
            th.cat([next_obs, next_actions], dim=1, out=q_input)
            next_q = th.min(nets.targets.forward(q_input_stacked), dim=0)[0]
            next_q = next_q - ent_coef * next_log_prob
            target_q = rewards + not_done_discounts * next_q

            # Critic loss 0.5 * sum of the critics' mean squared errors, its gradient (q - target) / batch, step
            error = nets.critics.forward(q_inputs) - target_q  # [n_critics, batch, 1]
            self.stats[1].append(th.dot(error.view(-1), error.view(-1)) * (0.5 / batch_size))
            nets.critics.backward(error.mul_(1 / batch_size), q_inputs, param_grads=True, input_grad=False)
            self.critic_adam.step(critic_grads)

            # Actor loss (with the critics just updated): mean(ent_coef * log_prob - min_q), its gradient, step
            th.cat([obs[0], actions_pi], dim=1, out=q_input)
            min_q, argmin = th.min(nets.critics.forward(q_input_stacked), dim=0)
            self.stats[0].append((ent_coef * log_prob - min_q).mean())
            q_grad.zero_().scatter_(0, argmin.unsqueeze(0), -1 / batch_size)
            # d actor_loss / d actions through the critics: their input gradients' action columns, summed
            input_grads = nets.critics.backward(q_grad, q_input_stacked, param_grads=False, input_grad=True)
            actions_grad = input_grads[:, :, obs_dim:].sum(dim=0)  # type: ignore[index]
            nets.actor_backward(latent[:batch_size], obs, ent_coef * (1 / batch_size), actions_grad)
            self.actor_adam.step(actor_grads)
            self._polyak(step)
