"""
The private torch kernels of the fast SAC path: their trial calls and the fallback switch
(:func:`~sb3_pmac.fast_sac.kernel_error`, :func:`~sb3_pmac.fast_sac.fast_path_available`,
:data:`~sb3_pmac.fast_sac.kernels.FAST_PATH_ENABLED`), and Adam's fused step called directly (``AdamStep``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, cast

import torch as th

#: Whether :func:`~sb3_pmac.fast_sac.train` (hence :meth:`PMAC.train <sb3_pmac.pmac.PMAC.train>`) uses the fast
#: path (else SB3's ``SAC.train``): set ``sb3_pmac.fast_sac.kernels.FAST_PATH_ENABLED = False`` to turn it off.
#: The fast path uses private torch kernels (fused Adam, ``threshold_backward``, ``tanh_backward``); when they fail
#: their trial call (another torch release, another signature), SB3's ``SAC.train`` is used
#: (:func:`~sb3_pmac.fast_sac.fast_path_available`).
FAST_PATH_ENABLED = hasattr(th, "_fused_adam_") and hasattr(th.ops.aten.threshold_backward, "grad_input")

#: ``threshold_backward(grad, result, 0, grad_input=out)``: ReLU's backward (autograd's ``ReluBackward0``) into ``out``
THRESHOLD_BACKWARD: Any = getattr(th.ops.aten.threshold_backward, "grad_input", None)
#: ``tanh_backward(grad, result)``: tanh's backward (autograd's ``TanhBackward0``; ``1 - result**2`` in one rounding)
TANH_BACKWARD: Any = getattr(th.ops.aten, "tanh_backward", None)


# ---------------------------------------------------------------------------------------------- Adam
def fused_adam_supported(optimizer: th.optim.Optimizer) -> bool:
    """
    Whether Adam's fused kernel can update this optimizer's parameters (a ``torch.optim.Adam``, not differentiable,
    floating-point parameters on a device with the fused kernel). The optimizer is not changed.
    """
    if type(optimizer) is not th.optim.Adam:
        return False
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    supported = _get_fused_kernels_supported_devices()
    return all(
        group["fused"]
        or (not group["differentiable"] and all(p.device.type in supported and p.is_floating_point() for p in group["params"]))
        for group in optimizer.param_groups
    )


def use_fused_adam(optimizer: th.optim.Optimizer) -> bool:
    """
    Switch an existing ``torch.optim.Adam`` to its fused kernel (``fused=True`` on its parameter groups; Adam states
    already created move their ``step`` to the parameter's device, as a fused Adam keeps it). Same algorithm. The fast
    SAC path does not use it (it calls the kernel without changing the optimizer, see ``AdamStep``).

    :return: whether the optimizer now runs fused (False: not an Adam, or a device/dtype without the fused kernel)
    """
    if not fused_adam_supported(optimizer):
        return False
    for group in optimizer.param_groups:
        if not group["fused"]:
            group["fused"], group["foreach"] = True, False
            for p in group["params"]:
                state = optimizer.state.get(p)
                if state and "step" in state:
                    state["step"] = state["step"].to(device=p.device, dtype=th.float32)
    return True


class AdamStep:
    """
    ``optimizer.step()`` with the given gradients. Where Adam's fused kernel supports the parameters it is called
    directly (what ``Adam.step`` does after its per-call bookkeeping; the same algorithm as the optimizer's own step),
    otherwise the gradients go to ``.grad`` and ``step()`` runs. Every gradient of the updates is handed to
    :meth:`step` (the gradient tests wrap it to record them). The optimizer's settings are left as the user made them
    (what ``save`` writes does not change): the kernel's step counters live on the parameters' device during the
    call and go back where the optimizer keeps them in :meth:`finish`.

    On the CPU, where ``_foreach_add_`` is a loop over tensors, the step counts of a parameter group (equal when
    all its parameters were always updated together, as in SAC) are counted in one tensor during the call and
    written back by :meth:`finish`.
    """

    def __init__(self, optimizer: th.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.groups: list[tuple[dict[str, Any], slice]] = []
        self.direct = fused_adam_supported(optimizer) and all(
            not group["capturable"] and not th.is_complex(p) for group in optimizer.param_groups for p in group["params"]
        )
        self._shared_steps: list[tuple[th.Tensor, list[th.Tensor]]] = []  # (counter, the steps it stands for)
        self._moved_steps: list[tuple[dict[str, Any], th.device]] = []  # (state, where the optimizer keeps its step)
        if not self.direct:
            return
        start = 0
        self.state_lists = []
        for group in optimizer.param_groups:
            n = len(group["params"])
            exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps = [], [], [], []
            for p in group["params"]:
                state = optimizer.state[p]
                if len(state) == 0:  # Adam's lazy initialization (its step counter where the optimizer keeps it)
                    keep_on = p.device if group["fused"] else th.device("cpu")
                    state["step"] = th.zeros((), dtype=th.float32, device=keep_on)
                    state["exp_avg"] = th.zeros_like(p, memory_format=th.preserve_format)
                    state["exp_avg_sq"] = th.zeros_like(p, memory_format=th.preserve_format)
                    if group["amsgrad"]:
                        state["max_exp_avg_sq"] = th.zeros_like(p, memory_format=th.preserve_format)
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
                if group["amsgrad"]:
                    max_exp_avg_sqs.append(state["max_exp_avg_sq"])
                if state["step"].device != p.device:  # the kernel wants it on the parameter's device
                    self._moved_steps.append((state, state["step"].device))
                    state["step"] = state["step"].to(device=p.device, dtype=th.float32)
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
        """Write the shared step counters back into the optimizer's states, on the device the optimizer keeps them."""
        for counter, steps in self._shared_steps:
            for step in steps:
                step.copy_(counter)
        self._shared_steps = []
        for state, device in self._moved_steps:
            state["step"] = state["step"].to(device)
        self._moved_steps = []


# ---------------------------------------------------------------------------------------------- trial calls
# A private kernel may change its signature (or its meaning) in another torch release without being removed: each is
# tried once per device type, called as the fast path calls it, on tiny tensors, before the fast path is used.
_KERNEL_ERRORS: dict[str, str | None] = {}  # device type -> None (all the kernels passed their trial) or what failed
_FALLBACK_WARNED = False


def _trial_fused_adam(device: th.device, decoupled_weight_decay: bool) -> None:
    param = th.zeros(2, device=device)
    optimizer = th.optim.Adam([param], lr=0.5)
    optimizer.param_groups[0]["decoupled_weight_decay"] = decoupled_weight_decay  # -> th._fused_adamw_
    adam_step = AdamStep(optimizer)
    adam_step.step((th.ones(2, device=device),))
    adam_step.finish()
    if not th.allclose(param.cpu(), th.full((2,), -0.5)):  # Adam's first step: -lr * sign(grad)
        raise RuntimeError(f"unexpected result {param.tolist()} (expected [-0.5, -0.5])")


def _trial_threshold_backward(device: th.device) -> None:
    if THRESHOLD_BACKWARD is None:
        raise AttributeError("torch.ops.aten.threshold_backward has no grad_input overload")
    out = th.empty(3, device=device)
    grad, result = th.tensor([1.0, 2.0, 3.0], device=device), th.tensor([0.0, 1.0, 0.0], device=device)
    THRESHOLD_BACKWARD(grad, result, 0, grad_input=out)
    if out.tolist() != [0.0, 2.0, 0.0]:
        raise RuntimeError(f"unexpected result {out.tolist()} (expected [0.0, 2.0, 0.0])")


def _trial_tanh_backward(device: th.device) -> None:
    if TANH_BACKWARD is None:
        raise AttributeError("torch.ops.aten has no tanh_backward")
    result = TANH_BACKWARD(th.tensor([1.0, 2.0], device=device), th.tensor([0.5, 0.0], device=device))
    if result.tolist() != [0.75, 2.0]:
        raise RuntimeError(f"unexpected result {result.tolist()} (expected [0.75, 2.0])")


_KERNEL_TRIALS: tuple[tuple[str, Callable[[th.device], None]], ...] = (
    ("torch._fused_adam_", lambda device: _trial_fused_adam(device, False)),
    ("torch._fused_adamw_", lambda device: _trial_fused_adam(device, True)),
    ("torch.ops.aten.threshold_backward.grad_input", _trial_threshold_backward),
    ("torch.ops.aten.tanh_backward", _trial_tanh_backward),
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
    Whether :func:`~sb3_pmac.fast_sac.train` should use the fast path: ``FAST_PATH_ENABLED`` and the private kernels
    pass their trial call (:func:`kernel_error`). When a kernel fails, warns once (which kernel, and that SB3's
    ``SAC.train`` is used) and returns False from then on.
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
