"""
Fast SAC updates: ``gradient_steps`` updates of Stable-Baselines3's SAC with the same math, less overhead.

PMAC (like MBPO) makes 20 SAC updates per environment step, so the update loop dominates its run time. Besides its
matrix products, SB3's ``SAC.train`` spends much of an update on overhead: one replay-buffer sample per update,
``torch.distributions`` objects (with argument validation) for every action, per-tensor Adam steps, a Python loop over
the parameters for the Polyak update, ``.item()`` host syncs for the logs, and the critics' weight gradients from the
actor loss, computed and then zeroed unused. :func:`sac_updates` makes the same updates:

* the same losses, computed with the same operations (the actor's action noise is drawn by the same calls in the same
  order, so that from the same seed and batches the parameters match SB3's to rounding, see the tests);
* the same order of optimizer steps (entropy coefficient, critics, actor), each on the loss at the parameters of that
  moment (the actor loss sees the critics just updated); the targets' Polyak update every ``target_update_interval``
  updates of the call, with SB3's arithmetic (``target * (1 - tau) + tau * param``);

and differs where the result does not depend on it:

* the batches of all the updates of a call are drawn at once, stacked ``[gradient_steps, batch_size, ...]``
  (:func:`sample_batches`: the same distribution, i.i.d. uniform samples; not the same random stream as SB3's);
* Adam's fused kernel: ``fused=True`` is set on the existing optimizers (:func:`use_fused_adam`) and the kernel is
  called directly with the gradients;
* no host sync in the loop: the losses stay tensors until one sync at the end of the call.

With SB3's default ``MlpPolicy`` networks (Linear/ReLU MLPs, no gSDE), the *manual* path also:

* runs the networks with hand-written backward passes (the products and ReLU masks of autograd's ``AddmmBackward0``
  / ``ReluBackward0``) into buffers kept between calls, computing only the gradients used (the actor loss gets the
  critics' input gradients only); autograd remains for the small tensors (squashed Gaussian, losses);
* runs the twin critics (and twin targets) as one batched network (``baddbmm``/``bmm`` on ``[n_critics, ...]``): for
  the call, the critics' own parameters are views into one stacked tensor (``param.data``; no copy that could
  diverge, released afterwards), which also makes the Polyak update two operations on flat tensors.

Other networks (gSDE, other activations, features extractors with parameters) take the *autograd* path: SB3's modules
or plain ``F.linear`` calls, ``torch.autograd.grad`` of each loss with respect to its optimizer's parameters only.

:func:`reference_sac_train` runs SB3's own ``SAC.train`` (tests, benchmark); ``FAST_PATH_ENABLED = False`` makes
:meth:`PMAC.train <sb3_pmac.pmac.PMAC.train>` use it, and so does a private torch kernel that fails its trial call
(:func:`fast_path_available`).

Every gradient of the updates passes through ``_AdamStep.step``: ``tests/test_sac_gradients.py`` wraps it to compare
the gradients with autograd's on SB3's own ``SAC.train`` (and to check that a 1% error in any one of them is caught).
"""

from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.distributions import SquashedDiagGaussianDistribution
from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.sac.policies import LOG_STD_MAX, LOG_STD_MIN, Actor
from torch import nn

if TYPE_CHECKING:
    from stable_baselines3 import SAC

#: Whether :meth:`PMAC.train <sb3_pmac.pmac.PMAC.train>` uses :func:`sac_updates` (else SB3's ``SAC.train``).
#: The fast path uses private torch kernels (fused Adam, ``threshold_backward``); without them, or when they fail
#: their trial call (another torch release, another signature), PMAC falls back to SB3's ``SAC.train``
#: (:func:`fast_path_available`).
FAST_PATH_ENABLED = hasattr(th, "_fused_adam_") and hasattr(th.ops.aten.threshold_backward, "grad_input")

_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))  # as in torch.distributions.Normal.log_prob
_FIELDS = ("observations", "actions", "next_observations", "dones", "rewards")

BatchSource = ReplayBufferSamples | Callable[[int], ReplayBufferSamples]


@dataclass(frozen=True)
class SACUpdateStats:
    """Means over the updates of one call, as SB3 logs them (``ent_coef_loss`` is None for a fixed ``ent_coef``)."""

    actor_loss: float
    critic_loss: float
    ent_coef: float
    ent_coef_loss: float | None
    n_updates: int


# ---------------------------------------------------------------------------------------------- batches
def stack_batches(samples: ReplayBufferSamples, gradient_steps: int) -> ReplayBufferSamples:
    """View ``gradient_steps * batch_size`` samples as ``gradient_steps`` batches: ``[gradient_steps, batch_size, ...]``."""
    return ReplayBufferSamples(
        *(None if t is None else t.reshape(gradient_steps, t.shape[0] // gradient_steps, *t.shape[1:]) for t in samples)  # type: ignore[arg-type]
    )


def sample_batches(buffer: Any, gradient_steps: int, batch_size: int, env: Any = None) -> ReplayBufferSamples:
    """
    The batches of ``gradient_steps`` SAC updates in one draw, stacked ``[gradient_steps, batch_size, ...]``.

    Every sample is drawn uniformly with replacement, independently, as ``gradient_steps`` calls of
    ``buffer.sample(batch_size, env)`` would draw them. A :class:`~sb3_pmac.buffers.MixedReplaySampler` keeps its
    split: every batch holds its ``n_real`` real samples first, then its ``n_model`` model samples.

    :param buffer: a replay buffer (``sample(n, env=...)``) or a ``MixedReplaySampler``
    :param gradient_steps: number of batches
    :param batch_size: samples per batch
    :param env: the ``VecNormalize`` to normalize with, if any
    """
    from sb3_pmac.buffers import MixedReplaySampler  # local: buffers does not depend on this module

    if not isinstance(buffer, MixedReplaySampler):
        return stack_batches(buffer.sample(gradient_steps * batch_size, env=env), gradient_steps)
    n_real, n_model = buffer.split(batch_size)
    parts = []
    if n_real > 0:
        parts.append(stack_batches(buffer.real_buffer.sample(gradient_steps * n_real, env=env), gradient_steps))
    if n_model > 0:
        model = buffer.model_buffer.sample(gradient_steps * n_model)
        if env is not None:
            model = MixedReplaySampler._normalize(model, env)
        parts.append(stack_batches(model, gradient_steps))
    if len(parts) == 1:
        return parts[0]
    return ReplayBufferSamples(*(th.cat([getattr(part, name) for part in parts], dim=1) for name in _FIELDS))


# ---------------------------------------------------------------------------------------------- optimizers
def use_fused_adam(optimizer: th.optim.Optimizer) -> bool:
    """
    Switch an existing ``torch.optim.Adam`` to its fused kernel (``fused=True`` on its parameter groups; Adam states
    already created move their ``step`` to the parameter's device, as a fused Adam keeps it). Same algorithm.

    :return: whether the optimizer now runs fused (False: not an Adam, or a device/dtype without the fused kernel)
    """
    if type(optimizer) is not th.optim.Adam:
        return False
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    supported = _get_fused_kernels_supported_devices()
    for group in optimizer.param_groups:
        if group["fused"]:
            continue
        if group["differentiable"] or any(
            p.device.type not in supported or not p.is_floating_point() for p in group["params"]
        ):
            return False
    for group in optimizer.param_groups:
        if not group["fused"]:
            group["fused"], group["foreach"] = True, False
            for p in group["params"]:
                state = optimizer.state.get(p)
                if state and "step" in state:
                    state["step"] = state["step"].to(device=p.device, dtype=th.float32)
    return True


class _AdamStep:
    """
    ``optimizer.step()`` with the given gradients. For a fused Adam the kernel is called directly (what
    ``Adam.step`` does after its per-call bookkeeping); otherwise the gradients go to ``.grad`` and ``step()`` runs.
    Every gradient of the updates is handed to :meth:`step` (the gradient tests wrap it to record them).

    On the CPU, where ``_foreach_add_`` is a loop over tensors, the step counts of a parameter group (equal when
    all its parameters were always updated together, as in SAC) are counted in one tensor during the call and
    written back by :meth:`finish`.
    """

    def __init__(self, optimizer: th.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.groups: list[tuple[dict[str, Any], slice]] = []
        self.direct = use_fused_adam(optimizer) and all(
            not group["capturable"] and not th.is_complex(p) for group in optimizer.param_groups for p in group["params"]
        )
        self._shared_steps: list[tuple[th.Tensor, list[th.Tensor]]] = []  # (counter, the steps it stands for)
        if not self.direct:
            return
        start = 0
        self.state_lists = []
        for group in optimizer.param_groups:
            n = len(group["params"])
            exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps = [], [], [], []
            for p in group["params"]:
                state = optimizer.state[p]
                if len(state) == 0:  # Adam's lazy initialization, fused flavour
                    state["step"] = th.zeros((), dtype=th.float32, device=p.device)
                    state["exp_avg"] = th.zeros_like(p, memory_format=th.preserve_format)
                    state["exp_avg_sq"] = th.zeros_like(p, memory_format=th.preserve_format)
                    if group["amsgrad"]:
                        state["max_exp_avg_sq"] = th.zeros_like(p, memory_format=th.preserve_format)
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
                if group["amsgrad"]:
                    max_exp_avg_sqs.append(state["max_exp_avg_sq"])
                steps.append(state["step"])
            counters = steps
            if n > 1 and all(s.device.type == "cpu" for s in steps) and len({float(s) for s in steps}) == 1:
                counter = steps[0].clone()
                self._shared_steps.append((counter, steps))
                counters = [counter] * n
            self.groups.append((group, slice(start, start + n)))
            self.state_lists.append((exp_avgs, exp_avg_sqs, max_exp_avg_sqs, counters))
            start += n

    def step(self, grads: tuple[th.Tensor | None, ...]) -> None:
        if self.direct and all(g is not None for g in grads):
            for (group, index), (exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps) in zip(
                self.groups, self.state_lists, strict=True
            ):
                params, group_grads = self.params[index], cast(list[th.Tensor], list(grads[index]))
                beta1, beta2 = group["betas"]
                if len(steps) > 1 and steps[0] is steps[1]:
                    steps[0].add_(1)  # the group's shared counter
                else:
                    th._foreach_add_(steps, 1)
                fused = th._fused_adamw_ if group.get("decoupled_weight_decay", False) else th._fused_adam_
                fused(
                    params,
                    group_grads,
                    exp_avgs,
                    exp_avg_sqs,
                    max_exp_avg_sqs,
                    steps,
                    amsgrad=group["amsgrad"],
                    lr=group["lr"],
                    beta1=float(beta1),
                    beta2=float(beta2),
                    weight_decay=group["weight_decay"],
                    eps=group["eps"],
                    maximize=group["maximize"],
                    grad_scale=None,
                    found_inf=None,
                )
            return
        self.finish()
        self.direct = False  # the optimizer's own step from now on
        for p, g in zip(self.params, grads, strict=True):
            p.grad = g
        self.optimizer.step()
        for p in self.params:  # the gradients may be scratch buffers: do not leave them behind
            p.grad = None

    def finish(self) -> None:
        """Write the shared step counters back into the optimizer's states."""
        for counter, steps in self._shared_steps:
            for step in steps:
                step.copy_(counter)
        self._shared_steps = []


# ---------------------------------------------------------------------------------------------- networks
_ACTIVATIONS: dict[type, Callable[[th.Tensor], th.Tensor]] = {nn.ReLU: F.relu, nn.Tanh: th.tanh, nn.Identity: lambda x: x}
_ACTIVATIONS_INPLACE: dict[type, Callable[[th.Tensor], th.Tensor]] = {
    nn.ReLU: F.relu_,
    nn.Tanh: th.tanh_,
    nn.Identity: lambda x: x,
}


def _mlp_plan(module: nn.Module) -> list[tuple[Any, ...]] | None:
    """An ``nn.Sequential`` of Linear layers and plain activations as ``(weight, bias)`` / ``(activation type,)``."""
    if type(module) is nn.Linear:
        return [(module.weight, module.bias)]
    if type(module) is not nn.Sequential:
        return None
    plan: list[tuple[Any, ...]] = []
    for layer in module:
        if type(layer) is nn.Linear:
            plan.append((layer.weight, layer.bias))
        elif type(layer) in _ACTIVATIONS and not getattr(layer, "inplace", False):
            plan.append((type(layer),))
        else:
            return None
    return plan


def _run_mlp(plan: list[tuple[Any, ...]], x: th.Tensor, inplace: bool) -> th.Tensor:
    """Run a plan of :func:`_mlp_plan`; ``inplace`` (no-grad passes only) applies activations in place, never to ``x``."""
    activations = _ACTIVATIONS
    for layer in plan:
        if len(layer) == 2:
            x = F.linear(x, layer[0], layer[1])
            if inplace:  # x is now a fresh tensor of ours
                activations = _ACTIVATIONS_INPLACE
        else:
            x = activations[layer[0]](x)
    return x


def _flat_features(module: nn.Module) -> bool:
    """Whether the features of ``module`` are its (float, flat) Box observations themselves."""
    return (
        type(module.features_extractor) is FlattenExtractor
        and isinstance(module.observation_space, spaces.Box)
        and (len(module.observation_space.shape) == 1)
    )


class _ActorSampler:
    """``actor.action_log_prob`` (squashed Gaussian, reparametrized) without the distribution objects."""

    def __init__(self, actor: Actor) -> None:
        self.actor = actor
        self.latent = _mlp_plan(actor.latent_pi)
        self.fast = (
            not actor.use_sde
            and type(actor.action_dist) is SquashedDiagGaussianDistribution
            and _flat_features(actor)
            and self.latent is not None
            and type(actor.mu) is nn.Linear
            and type(actor.log_std) is nn.Linear
        )
        if self.fast:
            self.epsilon = actor.action_dist.epsilon

    def __call__(self, obs: th.Tensor, grad: bool) -> tuple[th.Tensor, th.Tensor]:
        """:return: actions and their log-probabilities ``[batch, 1]``, computed as SB3 computes them."""
        if not self.fast:
            actions, log_prob = self.actor.action_log_prob(obs)
            return actions, log_prob.reshape(-1, 1)
        mu, log_std_layer = cast(nn.Linear, self.actor.mu), cast(nn.Linear, self.actor.log_std)
        latent = _run_mlp(self.latent, obs.float(), inplace=not grad)  # type: ignore[arg-type]
        mean = F.linear(latent, mu.weight, mu.bias)
        log_std = F.linear(latent, log_std_layer.weight, log_std_layer.bias)
        return _squashed_gaussian_sample(mean, log_std, self.epsilon)


def _squashed_gaussian_sample(mean: th.Tensor, log_std: th.Tensor, epsilon: float) -> tuple[th.Tensor, th.Tensor]:
    """
    SB3's ``Actor.action_log_prob`` from the actor's outputs (``log_std`` before clamping): the same operations as
    ``SquashedDiagGaussianDistribution.log_prob_from_params`` with ``torch.distributions.Normal`` (same noise draw,
    same values and gradients), without building the distribution objects and validating their arguments.

    :return: actions ``tanh(mean + noise * std)`` and their log-probabilities ``[batch, 1]``
    """
    log_std = th.clamp(log_std, LOG_STD_MIN, LOG_STD_MAX)
    # DiagGaussianDistribution: std = ones_like(mean) * exp(log_std) (the same values and gradients as exp)
    std = log_std.exp()
    # Normal.rsample: the same draw as torch.distributions' _standard_normal
    gaussian = mean + th.empty_like(mean).normal_() * std
    actions = th.tanh(gaussian)
    # Normal.log_prob, summed over the action dimensions, then the tanh correction
    log_prob = (-((gaussian - mean) ** 2) / (2 * std**2) - std.log() - _LOG_SQRT_2PI).sum(dim=1)
    log_prob = log_prob - th.sum(th.log(1 - actions**2 + epsilon), dim=1)
    return actions, log_prob.reshape(-1, 1)


class _Critic:
    """``ContinuousCritic.forward`` as plain ops on the critic's own parameters."""

    def __init__(self, critic: nn.Module) -> None:
        self.critic = critic
        plans = [_mlp_plan(q_net) for q_net in getattr(critic, "q_networks", [])]
        self.fast = isinstance(critic, ContinuousCritic) and _flat_features(critic) and len(plans) > 0 and None not in plans
        self.plans = plans

    def inputs(self, obs: th.Tensor, actions: th.Tensor) -> th.Tensor | tuple[th.Tensor, th.Tensor]:
        """The critic's input ``cat([features, actions])`` (or ``(obs, actions)`` for the generic module call)."""
        if self.fast:
            return th.cat([obs.float(), actions], dim=-1)
        return obs, actions

    def __call__(self, inputs: th.Tensor | tuple[th.Tensor, th.Tensor], inplace: bool = False) -> list[th.Tensor]:
        if not self.fast:
            return list(self.critic(*inputs))
        return [_run_mlp(plan, inputs, inplace) for plan in self.plans]  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- ReLU MLPs by hand
# SB3's default networks (Linear + ReLU MLPs) run with a hand-written backward pass into buffers kept between calls:
# the same matrix products and ReLU masks as autograd's (AddmmBackward0, ReluBackward0), but no new [batch, hidden]
# tensor per operation and only the gradients that are used. The small parts (losses, squashed Gaussian) keep autograd.
_THRESHOLD_BACKWARD: Any = getattr(th.ops.aten.threshold_backward, "grad_input", None)
_WORKSPACES: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], th.Tensor]] = weakref.WeakKeyDictionary()


class _Workspace:
    """Scratch tensors of one algorithm, kept between calls (outside the algorithm, so never saved with it)."""

    def __init__(self, owner: Any, device: th.device, dtype: th.dtype) -> None:
        self.tensors = _WORKSPACES.setdefault(owner, {})
        self.device, self.dtype = device, dtype

    def get(self, key: tuple[Any, ...], *shape: int) -> th.Tensor:
        tensor = self.tensors.get(key)
        if tensor is None or tensor.shape != shape or tensor.device != self.device or tensor.dtype != self.dtype:
            tensor = self.tensors[key] = th.empty(shape, device=self.device, dtype=self.dtype)
        return tensor


def _relu_mlp_layers(module: nn.Module) -> list[tuple[nn.Linear, bool]] | None:
    """``[(linear, relu after it)]`` of an ``nn.Sequential`` of Linear layers each followed by at most one ReLU."""
    if type(module) is not nn.Sequential:
        return None
    layers: list[tuple[nn.Linear, bool]] = []
    for layer in module:
        if type(layer) is nn.Linear:
            layers.append((layer, False))
        elif type(layer) is nn.ReLU and layers and not layers[-1][1]:
            layers[-1] = (layers[-1][0], True)
        else:
            return None
    return layers


class _ReluMLP:
    """
    Forward and backward passes of a Linear/ReLU MLP on a ``[batch, in]`` input, activations and gradients in
    workspace buffers. The gradients of the parameters (after :meth:`backward` with ``param_grads``) are in
    :attr:`grads` (``{parameter: gradient}``).
    """

    def __init__(self, layers: list[tuple[nn.Linear, bool]], workspace: _Workspace, name: str, batch_size: int) -> None:
        self.layers = [(linear.weight, linear.bias, relu) for linear, relu in layers]
        self.weights_t = [linear.weight.t() for linear, _ in layers]  # views, valid while the parameters stay put
        ws, n = workspace, batch_size
        self.outputs = [ws.get((name, "out", i), n, w.shape[0]) for i, (w, _, _) in enumerate(self.layers)]
        # gradient w.r.t. each layer's input: gin[i] is [batch, in_i]
        self.input_grads = [ws.get((name, "gin", i), n, w.shape[1]) for i, (w, _, _) in enumerate(self.layers)]
        self.top_grad = ws.get((name, "gtop"), n, self.layers[-1][0].shape[0]) if self.layers else None
        self.grads: dict[th.Tensor, th.Tensor] = {}
        self._weight_grads_t: list[th.Tensor | None] = []
        for i, (weight, bias, _) in enumerate(self.layers):
            self.grads[weight] = ws.get((name, "gw", i), *weight.shape)
            narrow = weight.shape[1] < weight.shape[0]
            self._weight_grads_t.append(ws.get((name, "gwt", i), weight.shape[1], weight.shape[0]) if narrow else None)
            if bias is not None:
                self.grads[bias] = ws.get((name, "gb", i), bias.shape[0])

    def forward(self, x: th.Tensor) -> th.Tensor:
        """The output (a buffer, valid until the next forward); as ``F.linear`` and ``relu`` compute it."""
        for (_, bias, relu), weight_t, out in zip(self.layers, self.weights_t, self.outputs, strict=True):
            if bias is not None:
                th.addmm(bias, x, weight_t, out=out)
            else:
                th.mm(x, weight_t, out=out)
            if relu:
                out.relu_()
            x = out
        return x

    def backward(self, grad: th.Tensor, x: th.Tensor, param_grads: bool, input_grad: bool) -> th.Tensor | None:
        """
        Backpropagate ``grad`` (w.r.t. the output of the last :meth:`forward`, whose input was ``x``).

        :return: the gradient w.r.t. ``x`` if ``input_grad`` (a buffer), else None
        """
        owned = False
        for i in range(len(self.layers) - 1, -1, -1):
            weight, bias, relu = self.layers[i]
            if relu:  # ReluBackward0: threshold_backward(grad, result, 0)
                target = grad if owned else self.top_grad
                grad = _THRESHOLD_BACKWARD(grad, self.outputs[i], 0, grad_input=target)
            if param_grads:  # AddmmBackward0 (mm_mat2_backward for weight.t()): grad.t() @ input, bias: summed grad
                layer_input = x if i == 0 else self.outputs[i - 1]
                weight_grad_t = self._weight_grads_t[i]
                if weight_grad_t is not None:  # narrow input: input.t() @ grad is the faster product
                    th.mm(layer_input.t(), grad, out=weight_grad_t)
                    self.grads[weight].copy_(weight_grad_t.t())
                else:
                    th.mm(grad.t(), layer_input, out=self.grads[weight])
                if bias is not None:
                    th.sum(grad, dim=0, out=self.grads[bias])
            if i == 0 and not input_grad:
                return None
            if weight.shape[0] == 1:  # an outer product: the same single products, elementwise
                grad = th.mul(grad, weight, out=self.input_grads[i])
            else:
                grad = th.mm(grad, weight, out=self.input_grads[i])
            owned = True
        return grad


class _StackedReluMLPs:
    """
    ``n`` Linear/ReLU MLPs of the same shapes (SAC's critics) run together: batched matrix products (``baddbmm``,
    ``bmm``) on their parameters stacked ``[n, ...]`` in one flat tensor, activations ``[n, batch, ...]``.

    While :meth:`attach` is in effect, the networks' own parameters *are* views into that flat tensor
    (``param.data``): there is no second copy that could diverge, optimizers and modules see every change, and a
    Polyak update of all parameters is one operation on the flat tensors. :meth:`release` gives the parameters their
    own tensors back (with the values reached).
    """

    @staticmethod
    def stackable(nets: list[list[tuple[nn.Linear, bool]]]) -> bool:
        first = nets[0]
        return all(
            len(layers) == len(first)
            and all(
                a.weight.shape == b.weight.shape and (a.bias is None) == (b.bias is None) and relu_a == relu_b
                for (a, relu_a), (b, relu_b) in zip(layers, first, strict=True)
            )
            for layers in nets
        )

    def __init__(self, nets: list[list[tuple[nn.Linear, bool]]], workspace: _Workspace, name: str, batch_size: int) -> None:
        ws, n = workspace, len(nets)
        self.n = n
        self.relus = [relu for _, relu in nets[0]]
        shapes = [tuple(linear.weight.shape) for linear, _ in nets[0]]
        has_bias = [linear.bias is not None for linear, _ in nets[0]]
        total = sum(n * (out * inp + (out if bias else 0)) for (out, inp), bias in zip(shapes, has_bias, strict=True))
        self.flat = ws.get((name, "flat"), total)
        self.grad_flat = ws.get((name, "grad_flat"), total)
        self.weights: list[th.Tensor] = []
        self.biases: list[th.Tensor | None] = []
        self.weight_grads: list[th.Tensor] = []
        self.bias_grads: list[th.Tensor | None] = []
        self.params: list[tuple[th.Tensor, th.Tensor]] = []  # (parameter, its view in the flat tensor)
        self.grads: dict[th.Tensor, th.Tensor] = {}
        offset = 0
        for layer, ((out, inp), bias) in enumerate(zip(shapes, has_bias, strict=True)):
            size = n * out * inp
            self.weights.append(self.flat[offset : offset + size].view(n, out, inp))
            self.weight_grads.append(self.grad_flat[offset : offset + size].view(n, out, inp))
            offset += size
            if bias:
                self.biases.append(self.flat[offset : offset + n * out].view(n, out))
                self.bias_grads.append(self.grad_flat[offset : offset + n * out].view(n, out))
                offset += n * out
            else:
                self.biases.append(None)
                self.bias_grads.append(None)
            for k, layers in enumerate(nets):
                linear = layers[layer][0]
                self.params.append((linear.weight, self.weights[layer][k]))
                self.grads[linear.weight] = self.weight_grads[layer][k]
                if bias:
                    self.params.append((linear.bias, self.biases[layer][k]))  # type: ignore[index]
                    self.grads[linear.bias] = self.bias_grads[layer][k]  # type: ignore[index]
        self.weights_t = [weight.transpose(1, 2) for weight in self.weights]
        self.biases_unsqueezed = [None if bias is None else bias.unsqueeze(1) for bias in self.biases]
        self.outputs = [ws.get((name, "out", i), n, batch_size, out) for i, (out, _) in enumerate(shapes)]
        self.input_grads = [ws.get((name, "gin", i), n, batch_size, inp) for i, (_, inp) in enumerate(shapes)]
        self.top_grad = ws.get((name, "gtop"), n, batch_size, shapes[-1][0])
        self.weight_grads_t = [
            ws.get((name, "gwt", i), n, inp, out) if inp < out else None for i, (out, inp) in enumerate(shapes)
        ]
        self._own_tensors: list[tuple[th.Tensor, th.Tensor]] | None = None

    def attach(self) -> None:
        """Make the parameters views into the flat tensor (their values copied in)."""
        own = []
        for param, view in self.params:
            view.copy_(param.detach())
            own.append((param, param.data))
            param.data = view
        self._own_tensors = own

    def release(self) -> None:
        """Give the parameters their own tensors back, holding the current values."""
        if self._own_tensors is None:
            return
        for param, tensor in self._own_tensors:
            tensor.copy_(param.detach())
            param.data = tensor
        self._own_tensors = None

    def forward(self, x: th.Tensor) -> th.Tensor:
        """:return: the ``n`` outputs ``[n, batch, out]`` on the shared input ``x`` (a buffer)."""
        h = x.unsqueeze(0).expand(self.n, *x.shape)
        for weight_t, bias, relu, out in zip(self.weights_t, self.biases_unsqueezed, self.relus, self.outputs, strict=True):
            if bias is not None:
                th.baddbmm(bias, h, weight_t, out=out)
            else:
                th.bmm(h, weight_t, out=out)
            if relu:
                out.relu_()
            h = out
        return h

    def backward(self, grad: th.Tensor, x: th.Tensor, param_grads: bool, input_grad: bool) -> th.Tensor | None:
        """
        Backpropagate ``grad`` ``[n, batch, out]`` (w.r.t. the outputs of the last :meth:`forward` on ``x``);
        parameter gradients into :attr:`grads`.

        :return: the ``n`` gradients w.r.t. ``x``, ``[n, batch, in]``, if ``input_grad``
        """
        owned = False
        for i in range(len(self.weights) - 1, -1, -1):
            if self.relus[i]:  # ReluBackward0: threshold_backward(grad, result, 0)
                grad = _THRESHOLD_BACKWARD(grad, self.outputs[i], 0, grad_input=grad if owned else self.top_grad)
            if param_grads:  # as AddmmBackward0: grad.t() @ input, and the bias gets the grad summed over the batch
                layer_input = x.unsqueeze(0).expand(self.n, *x.shape) if i == 0 else self.outputs[i - 1]
                weight_grad_t = self.weight_grads_t[i]
                if weight_grad_t is not None:  # narrow input: input.t() @ grad is the faster product
                    th.bmm(layer_input.transpose(1, 2), grad, out=weight_grad_t)
                    self.weight_grads[i].copy_(weight_grad_t.transpose(1, 2))
                else:
                    th.bmm(grad.transpose(1, 2), layer_input, out=self.weight_grads[i])
                if self.bias_grads[i] is not None:
                    th.sum(grad, dim=1, out=self.bias_grads[i])
            if i == 0 and not input_grad:
                return None
            if self.weights[i].shape[1] == 1:  # an outer product: the same single products, elementwise
                grad = th.mul(grad, self.weights[i], out=self.input_grads[i])
            else:
                grad = th.bmm(grad, self.weights[i], out=self.input_grads[i])
            owned = True
        return grad


class _ManualNets:
    """
    The actor as a :class:`_ReluMLP` trunk with two linear heads, the critics and their targets as
    :class:`_StackedReluMLPs` (:meth:`build` returns None when the networks are not of that form).
    """

    @staticmethod
    def build(algo: SAC, batch_size: int, device: th.device, dtype: th.dtype) -> _ManualNets | None:
        actor, critic, critic_target = algo.actor, algo.critic, algo.critic_target
        if not (
            not actor.use_sde
            and type(actor.action_dist) is SquashedDiagGaussianDistribution
            and type(actor.mu) is nn.Linear
            and type(actor.log_std) is nn.Linear
            and _flat_features(actor)
            and isinstance(critic, ContinuousCritic)
            and isinstance(critic_target, ContinuousCritic)
            and _flat_features(critic)
            and _flat_features(critic_target)
            and len(critic.q_networks) == len(critic_target.q_networks) > 0
        ):
            return None
        trunk = _relu_mlp_layers(actor.latent_pi) if len(actor.latent_pi) > 0 else []
        q_layers = [_relu_mlp_layers(q) for q in critic.q_networks]
        target_layers = [_relu_mlp_layers(q) for q in critic_target.q_networks]
        if trunk is None or any(layers is None or len(layers) == 0 for layers in q_layers + target_layers):
            return None
        if not _StackedReluMLPs.stackable(q_layers + target_layers):  # type: ignore[operator]
            return None
        if trunk and not trunk[-1][1]:
            return None  # SB3's latent_pi ends with its activation
        params = [p for module in (actor, critic, critic_target) for p in module.parameters()]
        if any(p.device != device or p.dtype != dtype for p in params):
            return None
        return _ManualNets(algo, trunk, q_layers, target_layers, batch_size, device, dtype)  # type: ignore[arg-type]

    def __init__(
        self,
        algo: SAC,
        trunk: list[tuple[nn.Linear, bool]],
        q_layers: list[list[tuple[nn.Linear, bool]]],
        target_layers: list[list[tuple[nn.Linear, bool]]],
        batch_size: int,
        device: th.device,
        dtype: th.dtype,
    ) -> None:
        ws = _Workspace(algo, device, dtype)
        actor = algo.actor
        self.trunk = _ReluMLP(trunk, ws, "actor", batch_size) if trunk else None
        self.next_trunk = _ReluMLP(trunk, ws, "actor_next", batch_size) if trunk else None
        self.critics = _StackedReluMLPs(q_layers, ws, "critics", batch_size)
        self.targets = _StackedReluMLPs(target_layers, ws, "critic_targets", batch_size)
        # Polyak update on the flat tensors when they hold exactly the parameters SB3's polyak_update pairs up
        sb3_pairs: dict[th.Tensor, th.Tensor] = dict(
            zip(algo.critic.parameters(), algo.critic_target.parameters(), strict=True)
        )
        self.flat_polyak = len(sb3_pairs) == len(self.critics.params) and all(
            sb3_pairs.get(param) is target
            for (param, _), (target, _) in zip(self.critics.params, self.targets.params, strict=True)
        )
        self.heads = (cast(nn.Linear, actor.mu), cast(nn.Linear, actor.log_std))
        self.epsilon = actor.action_dist.epsilon
        latent_dim = self.heads[0].weight.shape[1]
        self.latent_grads = (
            ws.get(("latent_grad", 0), batch_size, latent_dim),
            ws.get(("latent_grad", 1), batch_size, latent_dim),
        )
        q_input_dim = q_layers[0][0][0].weight.shape[1]
        self.q_input = ws.get(("q_input",), batch_size, q_input_dim)
        self.critic_grads = self.critics.grads
        self.actor_grads: dict[th.Tensor, th.Tensor] = dict(self.trunk.grads) if self.trunk else {}
        for head in self.heads:
            self.actor_grads[head.weight] = ws.get(("head_gw", id(head)), *head.weight.shape)
            if head.bias is not None:
                self.actor_grads[head.bias] = ws.get(("head_gb", id(head)), head.bias.shape[0])

    def covers(self, actor_params: list[th.Tensor], critic_params: list[th.Tensor]) -> bool:
        """Whether every parameter of the optimizers gets its gradient here."""
        return all(p in self.actor_grads for p in actor_params) and all(p in self.critic_grads for p in critic_params)

    def actor_outputs(self, obs: th.Tensor, trunk: _ReluMLP | None) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """``(latent, mean, log_std before clamping)`` (no autograd)."""
        latent = trunk.forward(obs) if trunk is not None else obs
        mu, log_std = self.heads
        return latent, F.linear(latent, mu.weight, mu.bias), F.linear(latent, log_std.weight, log_std.bias)

    def actor_backward(self, latent: th.Tensor, obs: th.Tensor, mean_grad: th.Tensor, log_std_grad: th.Tensor) -> None:
        """Gradients of the actor's parameters from those of its two heads' outputs (into :attr:`actor_grads`)."""
        latent_grad = None
        for head, grad, buffer in zip(self.heads, (mean_grad, log_std_grad), self.latent_grads, strict=True):
            th.mm(grad.t(), latent, out=self.actor_grads[head.weight])
            if head.bias is not None:
                th.sum(grad, dim=0, out=self.actor_grads[head.bias])
            if self.trunk is not None:
                head_latent_grad = th.mm(grad, head.weight, out=buffer)
                # autograd sums the two heads' gradients of the latent (a + b: the same in either order)
                latent_grad = head_latent_grad if latent_grad is None else latent_grad.add_(head_latent_grad)
        if self.trunk is not None:
            self.trunk.backward(latent_grad, obs, param_grads=True, input_grad=False)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- private kernels
# A private kernel may change its signature (or its meaning) in another torch release without being removed: each is
# tried once per device type, called as the fast path calls it, on tiny tensors, before the fast path is used.
_KERNEL_ERRORS: dict[str, str | None] = {}  # device type -> None (all the kernels passed their trial) or what failed
_FALLBACK_WARNED = False


def _trial_fused_adam(device: th.device, decoupled_weight_decay: bool) -> None:
    param = th.zeros(2, device=device)
    optimizer = th.optim.Adam([param], lr=0.5)
    optimizer.param_groups[0]["decoupled_weight_decay"] = decoupled_weight_decay  # -> th._fused_adamw_
    adam_step = _AdamStep(optimizer)
    adam_step.step((th.ones(2, device=device),))
    adam_step.finish()
    if not th.allclose(param.cpu(), th.full((2,), -0.5)):  # Adam's first step: -lr * sign(grad)
        raise RuntimeError(f"unexpected result {param.tolist()} (expected [-0.5, -0.5])")


def _trial_threshold_backward(device: th.device) -> None:
    if _THRESHOLD_BACKWARD is None:
        raise AttributeError("torch.ops.aten.threshold_backward has no grad_input overload")
    out = th.empty(3, device=device)
    grad, result = th.tensor([1.0, 2.0, 3.0], device=device), th.tensor([0.0, 1.0, 0.0], device=device)
    _THRESHOLD_BACKWARD(grad, result, 0, grad_input=out)
    if out.tolist() != [0.0, 2.0, 0.0]:
        raise RuntimeError(f"unexpected result {out.tolist()} (expected [0.0, 2.0, 0.0])")


_KERNEL_TRIALS: tuple[tuple[str, Callable[[th.device], None]], ...] = (
    ("torch._fused_adam_", lambda device: _trial_fused_adam(device, False)),
    ("torch._fused_adamw_", lambda device: _trial_fused_adam(device, True)),
    ("torch.ops.aten.threshold_backward.grad_input", _trial_threshold_backward),
)


def kernel_error(device: th.device | str = "cpu") -> str | None:
    """
    Whether the private torch kernels of the fast path work on ``device``'s type: each is called once (per device
    type, at first use) as the fast path calls it, on tiny tensors.

    :return: None if they all did as expected, else which kernel failed and how
    """
    device_type = th.device(device).type
    if device_type not in _KERNEL_ERRORS:
        error = None
        for name, trial in _KERNEL_TRIALS:
            try:
                with th.no_grad():
                    trial(th.device(device_type))
            except Exception as exc:  # any failure of a private kernel: fall back, do not crash training
                error = f"{name} failed its trial call ({type(exc).__name__}: {exc})"
                break
        _KERNEL_ERRORS[device_type] = error
    return _KERNEL_ERRORS[device_type]


def fast_path_available(device: th.device | str = "cpu") -> bool:
    """
    Whether :meth:`PMAC.train <sb3_pmac.pmac.PMAC.train>` should use :func:`sac_updates`: ``FAST_PATH_ENABLED`` and
    the private kernels pass their trial call (:func:`kernel_error`). When a kernel fails, warns once (which kernel,
    and that SB3's ``SAC.train`` is used) and returns False from then on.
    """
    global _FALLBACK_WARNED
    if not FAST_PATH_ENABLED:
        return False
    error = kernel_error(device)
    if error is None:
        return True
    if not _FALLBACK_WARNED:
        _FALLBACK_WARNED = True
        warnings.warn(f"Fast SAC updates unavailable: {error}; SB3's SAC.train is used instead", UserWarning, stacklevel=2)
    return False


# ---------------------------------------------------------------------------------------------- the updates
def sac_updates(
    algo: SAC,
    batches: BatchSource,
    gradient_steps: int | None = None,
    batch_size: int | None = None,
    manual_backward: bool | None = None,
) -> SACUpdateStats:
    """
    ``gradient_steps`` SAC updates of ``algo``'s networks, with the math of SB3's ``SAC.train`` (see module doc).

    Does not touch the learning rate schedule, the training mode, ``_n_updates`` or the logger: the caller does
    (as :meth:`PMAC.train <sb3_pmac.pmac.PMAC.train>` does).

    :param algo: the SAC algorithm (its ``actor``, ``critic``, ``critic_target``, optimizers, ``log_ent_coef`` /
        ``ent_coef_tensor``, ``target_entropy``, ``gamma``, ``tau``, ``target_update_interval``, ``use_sde``)
    :param batches: stacked batches ``[gradient_steps, batch_size, ...]`` (see :func:`sample_batches`), or a callable
        ``n -> ReplayBufferSamples`` drawing ``n`` samples (called once for ``gradient_steps * batch_size``)
    :param gradient_steps: number of updates (default: the stacked batches' first dimension)
    :param batch_size: samples per update (only for a callable ``batches``; default ``algo.batch_size``)
    :param manual_backward: hand-written backward passes for Linear/ReLU networks (SB3's default ``MlpPolicy``);
        ``None``: whenever the networks allow it, ``False``: autograd throughout, ``True``: required
    :return: the mean losses and entropy coefficient over the updates, as Python floats (one sync)
    :raises RuntimeError: when a private torch kernel of the fast path fails its trial call (:func:`kernel_error`)
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
    return _Updates(algo, batches, manual_backward).run(n_steps)


class _Updates:
    """The state shared by the updates of one :func:`sac_updates` call."""

    def __init__(self, algo: SAC, batches: ReplayBufferSamples, manual_backward: bool | None) -> None:
        self.algo = algo
        self.batches = batches
        self.actor_adam, self.critic_adam = _AdamStep(algo.actor.optimizer), _AdamStep(algo.critic.optimizer)
        self.learn_ent_coef = algo.ent_coef_optimizer is not None and algo.log_ent_coef is not None
        if self.learn_ent_coef:
            self.ent_coef_adam = _AdamStep(algo.ent_coef_optimizer)  # type: ignore[arg-type]
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
            self.nets = _ManualNets.build(algo, obs.shape[1], obs.device, th.float32)
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
                # the critics' parameters live in the stacked tensors meanwhile (views: nothing to diverge)
                self.nets.critics.attach()
                self.nets.targets.attach()
                try:
                    with th.no_grad():
                        self._run_manual(n_steps, self.nets)
                finally:
                    self.nets.critics.release()
                    self.nets.targets.release()
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

    def _ent_coef(self, step: int, log_prob: th.Tensor) -> th.Tensor:
        """The entropy coefficient of this update; when learned, its optimizer step (on the value before the step)."""
        algo = self.algo
        if not self.learn_ent_coef:
            ent_coef = algo.ent_coef_tensor
        else:
            log_ent_coef = cast(th.Tensor, algo.log_ent_coef)
            ent_coef = th.exp(log_ent_coef.detach())
            with th.no_grad():
                # ent_coef_loss = -(log_ent_coef * (log_prob + target_entropy).detach()).mean(), and its gradient
                entropy_error = log_prob.detach() + self.target_entropy
                self.stats[3].append(-(log_ent_coef * entropy_error).mean())
                ent_coef_grad = (entropy_error * (-1.0 / entropy_error.numel())).sum(dim=0)
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
        sample_actions = _ActorSampler(actor)
        q_nets, q_targets = _Critic(algo.critic), _Critic(algo.critic_target)
        obs_all, next_obs_all, rewards_all = batches.observations, batches.next_observations, batches.rewards
        q_inputs_all = q_nets.inputs(obs_all, batches.actions) if q_nets.fast else None
        critic_adam, actor_adam = self.critic_adam, self.actor_adam
        for step in range(n_steps):
            obs, next_obs = obs_all[step], next_obs_all[step]
            if algo.use_sde:
                actor.reset_noise()
            actions_pi, log_prob = sample_actions(obs, grad=True)
            ent_coef = self._ent_coef(step, log_prob)

            with th.no_grad():
                next_actions, next_log_prob = sample_actions(next_obs, grad=False)
                next_q = th.cat(q_targets(q_targets.inputs(next_obs, next_actions), inplace=True), dim=1)
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

    def _run_manual(self, n_steps: int, nets: _ManualNets) -> None:
        """The updates with the hand-written backward passes of :class:`_ManualNets` (runs under ``no_grad``)."""
        batches = self.batches
        obs_all, next_obs_all, rewards_all = batches.observations.float(), batches.next_observations.float(), batches.rewards
        obs_dim = obs_all.shape[-1]
        q_inputs_all = th.cat([obs_all, batches.actions], dim=-1)  # the critics' input cat([obs, actions]), all updates
        critic_params, actor_params = self.critic_adam.params, self.actor_adam.params
        critic_grads, actor_grads = nets.critic_grads, nets.actor_grads
        q_input, epsilon = nets.q_input, nets.epsilon
        for step in range(n_steps):
            obs, next_obs = obs_all[step], next_obs_all[step]
            latent, mean, log_std = nets.actor_outputs(obs, nets.trunk)
            with th.enable_grad():
                mean.requires_grad_()
                log_std.requires_grad_()
                actions_pi, log_prob = _squashed_gaussian_sample(mean, log_std, epsilon)
            ent_coef = self._ent_coef(step, log_prob)

            # Target Q-values
            _, next_mean, next_log_std = nets.actor_outputs(next_obs, nets.next_trunk)
            next_actions, next_log_prob = _squashed_gaussian_sample(next_mean, next_log_std, epsilon)
            th.cat([next_obs, next_actions], dim=1, out=q_input)
            # SB3: th.cat(critic_target(...), dim=1): [batch, n_critics]
            next_q = th.min(nets.targets.forward(q_input)[..., 0].t(), dim=1, keepdim=True)[0]
            next_q = next_q - ent_coef * next_log_prob
            target_q = rewards_all[step] + self.not_done_discounts[step] * next_q

            # Critic loss and step
            q_inputs = q_inputs_all[step]
            current_q = nets.critics.forward(q_inputs).detach().requires_grad_()  # [n_critics, batch, 1]
            with th.enable_grad():
                critic_loss = cast(th.Tensor, 0.5 * sum(F.mse_loss(q, target_q) for q in current_q.unbind(0)))
                (q_grad,) = th.autograd.grad(critic_loss, (current_q,))
            nets.critics.backward(q_grad, q_inputs, param_grads=True, input_grad=False)
            self.critic_adam.step(tuple(critic_grads[p] for p in critic_params))
            self.stats[1].append(critic_loss.detach())

            # Actor loss (with the critics just updated) and step
            th.cat([obs, actions_pi.detach()], dim=1, out=q_input)
            q_pi = nets.critics.forward(q_input).detach().requires_grad_()
            with th.enable_grad():
                min_q_pi = th.min(q_pi[..., 0].t(), dim=1, keepdim=True)[0]
                actor_loss = (ent_coef * log_prob - min_q_pi).mean()
                (q_grad,) = th.autograd.grad(actor_loss, (q_pi,), retain_graph=True)
            # d actor_loss / d actions through the critics: their input gradients' action columns, summed
            input_grads = nets.critics.backward(q_grad, q_input, param_grads=False, input_grad=True)
            actions_grad = input_grads[:, :, obs_dim:].sum(dim=0)  # type: ignore[index]
            with th.enable_grad():
                mean_grad, log_std_grad = th.autograd.grad(
                    (actor_loss, actions_pi), (mean, log_std), grad_outputs=(th.ones_like(actor_loss), actions_grad)
                )
            nets.actor_backward(latent, obs, mean_grad, log_std_grad)
            self.actor_adam.step(tuple(actor_grads[p] for p in actor_params))
            self.stats[0].append(actor_loss.detach())
            self._polyak(step)


# ---------------------------------------------------------------------------------------------- SB3's path
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
    SB3's original ``SAC.train`` on ``algo`` (for comparisons), drawing from ``replay_buffer`` (default: algo's own)
    or taking the stacked ``batches`` in order.
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
