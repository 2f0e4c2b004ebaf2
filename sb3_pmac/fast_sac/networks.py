"""
SAC's networks as the updates run them: the squashed Gaussian of SB3's actor without distribution objects, the actor
and critics for the autograd path (``ActorSampler``, ``Critic``) and for the hand-written one (``ManualNets``, on
``ReluMLPs`` of :mod:`sb3_pmac.fast_sac.mlp`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, cast

import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.distributions import SquashedDiagGaussianDistribution
from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.sac import policies as sac_policies
from stable_baselines3.sac.policies import Actor
from torch import nn

from sb3_pmac.fast_sac import kernels
from sb3_pmac.fast_sac.mlp import Layers, ReluMLPs, Workspace, relu_mlp_layers

if TYPE_CHECKING:
    from stable_baselines3 import SAC

_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))  # as in torch.distributions.Normal.log_prob


def squashed_gaussian_sample(mean: th.Tensor, log_std: th.Tensor, epsilon: float) -> tuple[th.Tensor, th.Tensor]:
    """
    SB3's ``Actor.action_log_prob`` from the actor's outputs (``log_std`` before clamping): the same operations as
    ``SquashedDiagGaussianDistribution.log_prob_from_params`` with ``torch.distributions.Normal`` (same noise draw,
    same values and gradients), without building the distribution objects and validating their arguments.

    :return: actions ``tanh(mean + noise * std)`` and their log-probabilities ``[batch, 1]``
    """
    log_std = th.clamp(log_std, sac_policies.LOG_STD_MIN, sac_policies.LOG_STD_MAX)  # (read as SB3 reads them)
    # DiagGaussianDistribution: std = ones_like(mean) * exp(log_std) (the same values and gradients as exp)
    std = log_std.exp()
    # Normal.rsample: the same draw as torch.distributions' _standard_normal
    gaussian = mean + th.empty_like(mean).normal_() * std
    actions = th.tanh(gaussian)
    # Normal.log_prob, summed over the action dimensions, then the tanh correction
    log_prob = (-((gaussian - mean) ** 2) / (2 * std**2) - std.log() - _LOG_SQRT_2PI).sum(dim=1)
    log_prob = log_prob - th.sum(th.log(1 - actions**2 + epsilon), dim=1)
    return actions, log_prob.reshape(-1, 1)


def _flat_features(module: nn.Module) -> bool:
    """Whether the features of ``module`` are its (float, flat) Box observations themselves."""
    return (
        type(module.features_extractor) is FlattenExtractor
        and isinstance(module.observation_space, spaces.Box)
        and (len(module.observation_space.shape) == 1)
    )


def _squashed_gaussian_actor(actor: Actor) -> bool:
    """
    Whether ``actor`` is SB3's squashed Gaussian actor on its flat observations (no gSDE): SB3's own ``Actor`` class,
    not a subclass, whose overrides (``get_action_dist_params``, ...) the recomputation below would skip.
    """
    return (
        type(actor) is Actor
        and not actor.use_sde
        and type(actor.action_dist) is SquashedDiagGaussianDistribution
        and _flat_features(actor)
    )


# ---------------------------------------------------------------------------------------------- autograd path
class ActorSampler:
    """``actor.action_log_prob`` (squashed Gaussian, reparametrized) without the distribution objects."""

    def __init__(self, actor: Actor) -> None:
        self.actor = actor
        self.fast = _squashed_gaussian_actor(actor)
        if self.fast:
            self.epsilon = actor.action_dist.epsilon

    def __call__(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """:return: actions and their log-probabilities ``[batch, 1]``, computed as SB3 computes them."""
        if not self.fast:
            actions, log_prob = self.actor.action_log_prob(obs)
            return actions, log_prob.reshape(-1, 1)
        latent = self.actor.latent_pi(obs.float())
        log_std = cast(nn.Linear, self.actor.log_std)(latent)  # (gSDE's log_std, a parameter: not the fast case)
        return squashed_gaussian_sample(self.actor.mu(latent), log_std, self.epsilon)


class Critic:
    """``ContinuousCritic.forward`` with its input ``cat([features, actions])`` built once for several calls."""

    def __init__(self, critic: nn.Module) -> None:
        self.critic = critic
        self.fast = type(critic) is ContinuousCritic and _flat_features(critic)  # (a subclass may override forward)

    def inputs(self, obs: th.Tensor, actions: th.Tensor) -> th.Tensor | tuple[th.Tensor, th.Tensor]:
        """The critic's input ``cat([features, actions])`` (or ``(obs, actions)`` for the module call)."""
        if self.fast:
            return th.cat([obs.float(), actions], dim=-1)
        return obs, actions

    def __call__(self, inputs: th.Tensor | tuple[th.Tensor, th.Tensor]) -> list[th.Tensor]:
        if not self.fast:
            return list(self.critic(*inputs))
        return [q_net(inputs) for q_net in cast(ContinuousCritic, self.critic).q_networks]


# ---------------------------------------------------------------------------------------------- hand-written path
class SquashedGaussian:
    """
    :func:`squashed_gaussian_sample` without autograd: :meth:`sample` makes the same operations (the same noise draw,
    the same values) and :meth:`backward` the operations autograd's backward pass makes on them (its formulas, and its
    order of summation where a tensor gets gradients from several operations), for a loss of the actions and of the
    log-probabilities (the same gradient for every sample, as in SAC's losses).
    """

    def __init__(self, epsilon: float) -> None:
        self.epsilon = epsilon
        self.saved: tuple[th.Tensor, ...] = ()

    def sample(self, mean: th.Tensor, log_std: th.Tensor, rows: int) -> tuple[th.Tensor, th.Tensor]:
        """
        Samples of several batches of ``rows`` rows at once (the actor's outputs on the observations and on the next
        observations), their noise drawn batch after batch as separate samples would draw it; :meth:`backward` is for
        the first batch (what it needs is kept until the next ``sample``).

        :return: actions ``tanh(mean + noise * std)`` and their log-probabilities ``[n_rows, 1]``
        """
        log_std_clamped = th.clamp(log_std, sac_policies.LOG_STD_MIN, sac_policies.LOG_STD_MAX)
        std = log_std_clamped.exp()
        noise = th.empty_like(mean)
        for start in range(0, noise.shape[0], rows):
            noise[start : start + rows].normal_()
        gaussian = mean + noise * std
        actions = th.tanh(gaussian)
        diff = gaussian - mean
        denominator = 2 * std**2
        density = (diff**2).neg_().div_(denominator)  # -((gaussian - mean) ** 2) / (2 * std**2)
        log_prob = (density - std.log()).sub_(_LOG_SQRT_2PI).sum(dim=1)
        squash = (1 - actions**2).add_(self.epsilon)
        log_prob = log_prob.sub_(th.sum(th.log(squash), dim=1)).reshape(-1, 1)
        passes = log_std_clamped[:rows] == log_std[:rows]  # clamp's backward: it passes where min <= log_std <= max
        self.saved = (*(t[:rows] for t in (noise, std, actions, diff, denominator, density, squash)), passes)
        return actions, log_prob

    def backward(self, log_prob_grad: th.Tensor, actions_grad: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """
        :param log_prob_grad: the gradient of the loss w.r.t. each log-probability (a scalar tensor)
        :param actions_grad: the gradient of the loss w.r.t. the actions, ``[rows, action_dim]``
        :return: the gradients w.r.t. ``mean`` and ``log_std`` of the first batch of the last :meth:`sample`
        """
        noise, std, actions, diff, denominator, density, squash, passes = self.saved
        grad = log_prob_grad.expand_as(actions)
        # -sum(log(1 - actions**2 + eps)): LogBackward0, RsubBackward1, PowBackward0; then TanhBackward0
        gaussian_grad = kernels.TANH_BACKWARD(actions_grad + (grad / squash) * (2 * actions), actions)
        # -((gaussian - mean) ** 2) / (2 * std**2): DivBackward0 (self), NegBackward0, PowBackward0
        diff_grad = (grad / denominator).neg_() * (2 * diff)
        gaussian_grad = diff_grad + gaussian_grad
        mean_grad = gaussian_grad + diff_grad.neg_()  # AddBackward0 + SubBackward0
        # std: 2 * std**2 (DivBackward0's other, MulBackward0, PowBackward0), std.log(), noise * std, summed so
        neg_grad = grad.neg()
        std_grad = (neg_grad * (density / denominator)).mul_(2) * (2 * std)
        std_grad = std_grad.add_(neg_grad / std).add_(gaussian_grad * noise)
        log_std_grad = th.where(passes, std_grad.mul_(std), 0.0)  # ExpBackward0, ClampBackward1
        return mean_grad, log_std_grad


class ManualNets:
    """
    The actor as a ``ReluMLPs`` trunk (``n = 1``) with two linear heads, the critics and
    their targets as stacked ``ReluMLPs`` (:meth:`build` returns None when the networks are not of that form).
    """

    @staticmethod
    def build(algo: SAC, batch_size: int, device: th.device, dtype: th.dtype) -> ManualNets | None:
        actor, critic, critic_target = algo.actor, algo.critic, algo.critic_target
        if not (
            _squashed_gaussian_actor(actor)
            and type(actor.mu) is nn.Linear
            and type(actor.log_std) is nn.Linear
            and type(critic) is ContinuousCritic
            and type(critic_target) is ContinuousCritic
            and _flat_features(critic)
            and _flat_features(critic_target)
            and len(critic.q_networks) == len(critic_target.q_networks) > 0
        ):
            return None
        trunk = relu_mlp_layers(actor.latent_pi) if len(actor.latent_pi) > 0 else []
        q_layers = [relu_mlp_layers(q) for q in critic.q_networks]
        target_layers = [relu_mlp_layers(q) for q in critic_target.q_networks]
        if trunk is None or any(layers is None or len(layers) == 0 for layers in q_layers + target_layers):
            return None
        if not ReluMLPs.stackable(q_layers + target_layers):  # type: ignore[operator]
            return None
        if trunk and not trunk[-1][1]:
            return None  # SB3's latent_pi ends with its activation
        params = [p for module in (actor, critic, critic_target) for p in module.parameters()]
        if any(p.device != device or p.dtype != dtype for p in params):
            return None
        return ManualNets(algo, trunk, q_layers, target_layers, batch_size, device, dtype)  # type: ignore[arg-type]

    def __init__(
        self,
        algo: SAC,
        trunk: Layers,
        q_layers: list[Layers],
        target_layers: list[Layers],
        batch_size: int,
        device: th.device,
        dtype: th.dtype,
    ) -> None:
        ws = Workspace(algo, device, dtype)
        actor = algo.actor
        # the actor runs on the observations and the next observations at once: [2 * batch, ...]
        self.trunk = ReluMLPs([trunk], ws, "actor", 2 * batch_size) if trunk else None
        self.critics = ReluMLPs(q_layers, ws, "critics", batch_size)
        # the targets' activations are used up before the critics run: the same buffers (in cache)
        self.targets = ReluMLPs(target_layers, ws, "critic_targets", batch_size, buffers="critics")
        # Polyak update on the flat tensors when they hold exactly the parameters SB3's polyak_update pairs up
        sb3_pairs: dict[th.Tensor, th.Tensor] = dict(
            zip(algo.critic.parameters(), algo.critic_target.parameters(), strict=True)
        )
        self.flat_polyak = len(sb3_pairs) == len(self.critics.params) and all(
            sb3_pairs.get(param) is target
            for (param, _), (target, _) in zip(self.critics.params, self.targets.params, strict=True)
        )
        self.heads = (cast(nn.Linear, actor.mu), cast(nn.Linear, actor.log_std))
        self.gaussian = SquashedGaussian(actor.action_dist.epsilon)
        latent_dim = self.heads[0].weight.shape[1]
        # [1, batch, latent] (the trunk's gradient) and the second head's part
        self.latent_grad = ws.get(("latent_grad", 0), 1, batch_size, latent_dim)
        self.head_latent_grad = ws.get(("latent_grad", 1), batch_size, latent_dim)
        q_input_dim = q_layers[0][0][0].weight.shape[1]
        self.q_input = ws.get(("q_input",), batch_size, q_input_dim)
        self.q_input_stacked = self.q_input.unsqueeze(0).expand(len(q_layers), batch_size, q_input_dim)
        self.q_grad = ws.get(("q_grad",), len(q_layers), batch_size, 1)
        self.critic_grads = self.critics.grads
        self.actor_grads: dict[th.Tensor, th.Tensor] = dict(self.trunk.grads) if self.trunk else {}
        for head in self.heads:
            self.actor_grads[head.weight] = ws.get(("head_gw", id(head)), *head.weight.shape)
            if head.bias is not None:
                self.actor_grads[head.bias] = ws.get(("head_gb", id(head)), head.bias.shape[0])
        self._mlps = [mlp for mlp in (self.trunk, self.critics, self.targets) if mlp is not None]

    def covers(self, actor_params: list[th.Tensor], critic_params: list[th.Tensor]) -> bool:
        """Whether every parameter of the optimizers gets its gradient here."""
        return all(p in self.actor_grads for p in actor_params) and all(p in self.critic_grads for p in critic_params)

    def attach(self) -> None:
        """The parameters of the networks become views into their flat tensors (``ReluMLPs.attach``)."""
        for mlp in self._mlps:
            mlp.attach()

    def release(self) -> None:
        for mlp in self._mlps:
            mlp.release()

    def actor_outputs(self, observations: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """
        ``(latent, mean, log_std before clamping)`` (no autograd) of observations ``[1, 2 * batch, obs_dim]`` (the
        observations and the next observations).
        """
        latent = self.trunk.forward(observations)[0] if self.trunk is not None else observations[0]
        mu, log_std = self.heads
        return latent, F.linear(latent, mu.weight, mu.bias), F.linear(latent, log_std.weight, log_std.bias)

    def actor_backward(self, latent: th.Tensor, obs: th.Tensor, log_prob_grad: th.Tensor, actions_grad: th.Tensor) -> None:
        """
        Gradients of the actor's parameters (into :attr:`actor_grads`) for the actions of the first batch of the last
        ``gaussian.sample``, on the observations ``obs`` ``[1, batch, obs_dim]`` (the first rows of the last
        :meth:`actor_outputs`, whose ``latent`` they were).
        """
        mean_grad, log_std_grad = self.gaussian.backward(log_prob_grad, actions_grad)
        (mu, log_std), grads = self.heads, self.actor_grads
        for head, grad in ((mu, mean_grad), (log_std, log_std_grad)):
            th.mm(grad.t(), latent, out=grads[head.weight])
            if head.bias is not None:
                th.sum(grad, dim=0, out=grads[head.bias])
        if self.trunk is not None:
            # autograd sums the two heads' gradients of the latent (a + b: the same in either order)
            th.mm(mean_grad, mu.weight, out=self.latent_grad[0])
            self.latent_grad[0].add_(th.mm(log_std_grad, log_std.weight, out=self.head_latent_grad))
            self.trunk.backward(self.latent_grad, obs, param_grads=True, input_grad=False)
