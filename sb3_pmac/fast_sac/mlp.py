"""
Linear/ReLU MLPs with hand-written forward and backward passes (``ReluMLPs``): ``n`` networks of the same shapes
run together (``n = 1``: one network), activations and gradients in buffers kept between calls (``Workspace``).
"""

from __future__ import annotations

import weakref
from typing import Any

import torch as th
from torch import nn

from sb3_pmac.fast_sac import kernels

_WORKSPACES: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], th.Tensor]] = weakref.WeakKeyDictionary()

#: An MLP as ``[(linear, relu after it)]``
Layers = list[tuple[nn.Linear, bool]]


class Workspace:
    """Scratch tensors of one algorithm, kept between calls (outside the algorithm, so never saved with it)."""

    def __init__(self, owner: Any, device: th.device, dtype: th.dtype) -> None:
        self.tensors = _WORKSPACES.setdefault(owner, {})
        self.device, self.dtype = device, dtype

    def get(self, key: tuple[Any, ...], *shape: int) -> th.Tensor:
        tensor = self.tensors.get(key)
        if tensor is None or tensor.shape != shape or tensor.device != self.device or tensor.dtype != self.dtype:
            tensor = self.tensors[key] = th.empty(shape, device=self.device, dtype=self.dtype)
        return tensor


def relu_mlp_layers(module: nn.Module) -> Layers | None:
    """``[(linear, relu after it)]`` of an ``nn.Sequential`` of Linear layers each followed by at most one ReLU."""
    if type(module) is not nn.Sequential:
        return None
    layers: Layers = []
    for layer in module:
        if type(layer) is nn.Linear:
            layers.append((layer, False))
        elif type(layer) is nn.ReLU and layers and not layers[-1][1]:
            layers[-1] = (layers[-1][0], True)
        else:
            return None
    return layers


class ReluMLPs:
    """
    ``n`` Linear/ReLU MLPs of the same shapes (SAC's twin critics; ``n = 1``: the actor's trunk), run together:
    batched matrix products (``baddbmm``, ``bmm``) on their parameters stacked ``[n, ...]`` in one flat tensor,
    activations ``[n, batch, ...]``. The products and ReLU masks are autograd's (``AddmmBackward0``,
    ``ReluBackward0``), without a new tensor per operation, and only the gradients asked for are computed.

    While :meth:`attach` is in effect, the networks' own parameters *are* views into that flat tensor
    (``param.data``): there is no second copy that could diverge, optimizers and modules see every change, and a
    Polyak update of all parameters is one operation on the flat tensors. :meth:`release` gives the parameters their
    own tensors back (with the values reached). A backward pass may take the first rows of the batch only (the
    actor runs on the observations and the next observations at once, and backpropagates the former).
    """

    @staticmethod
    def stackable(nets: list[Layers]) -> bool:
        first = nets[0]
        return all(
            len(layers) == len(first)
            and all(
                a.weight.shape == b.weight.shape and (a.bias is None) == (b.bias is None) and relu_a == relu_b
                for (a, relu_a), (b, relu_b) in zip(layers, first, strict=True)
            )
            for layers in nets
        )

    def __init__(
        self, nets: list[Layers], workspace: Workspace, name: str, batch_size: int, buffers: str | None = None
    ) -> None:
        """:param buffers: the name of the activation and gradient buffers (default ``name``), to share them"""
        ws, n = workspace, len(nets)
        buffers = buffers or name
        self.n, self.batch_size = n, batch_size
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
        self.outputs = [ws.get((buffers, "out", i), n, batch_size, out) for i, (out, _) in enumerate(shapes)]
        self.input_grads = [ws.get((buffers, "gin", i), n, batch_size, inp) for i, (_, inp) in enumerate(shapes)]
        self.top_grad = ws.get((buffers, "gtop"), n, batch_size, shapes[-1][0])
        self.weight_grads_t = [
            ws.get((buffers, "gwt", i), n, inp, out) if inp < out else None for i, (out, inp) in enumerate(shapes)
        ]
        self._own_tensors: list[tuple[th.Tensor, th.Tensor]] | None = None
        self._rows: dict[int, tuple[list[th.Tensor], ...]] = {}

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

    def _stacked(self, x: th.Tensor) -> th.Tensor:
        """``[batch, in]`` shared by the ``n`` networks -> ``[n, batch, in]`` (a view); ``[n, batch, in]`` unchanged."""
        return x.unsqueeze(0).expand(self.n, *x.shape) if x.dim() == 2 else x

    def forward(self, x: th.Tensor) -> th.Tensor:
        """
        :param x: the input, ``[batch, in]`` (shared by the networks) or ``[n, batch, in]``
        :return: the ``n`` outputs ``[n, batch, out]`` (a buffer, valid until the next forward)
        """
        h = self._stacked(x)
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
        Backpropagate ``grad`` ``[n, rows, out]`` (w.r.t. the first ``rows`` outputs of the last :meth:`forward`,
        whose input began with ``x``, ``[rows, in]``); parameter gradients into :attr:`grads`.

        :return: the ``n`` gradients w.r.t. ``x``, ``[n, rows, in]`` (a buffer), if ``input_grad``
        """
        rows = grad.shape[1]
        if rows not in self._rows:  # views of the buffers' first rows
            self._rows[rows] = tuple([t[:, :rows] for t in ts] for ts in (self.outputs, self.input_grads, [self.top_grad]))
        outputs, input_grads, (top_grad,) = self._rows[rows]
        owned = False
        for i in range(len(self.weights) - 1, -1, -1):
            if self.relus[i]:  # ReluBackward0: threshold_backward(grad, result, 0)
                grad = kernels.THRESHOLD_BACKWARD(grad, outputs[i], 0, grad_input=grad if owned else top_grad)
            if param_grads:  # as AddmmBackward0: grad.t() @ input, and the bias gets the grad summed over the batch
                layer_input = self._stacked(x) if i == 0 else outputs[i - 1]
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
                grad = th.mul(grad, self.weights[i], out=input_grads[i])
            else:
                grad = th.bmm(grad, self.weights[i], out=input_grads[i])
            owned = True
        return grad
