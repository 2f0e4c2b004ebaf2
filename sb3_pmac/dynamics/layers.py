"""
Building blocks of the probabilistic ensemble: a linear layer of ``ensemble_size`` independent members evaluated as one
batched matrix multiplication (``th.baddbmm`` over weights of shape ``[ensemble_size, in_features, out_features]``), and
the input normalizer fitted on each model-training set.
"""

from __future__ import annotations

import numpy as np
import torch as th
from torch import nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "relu": nn.ReLU,
}


def get_activation(activation: str | type[nn.Module]) -> type[nn.Module]:
    """
    Resolve an activation given by name (``"silu"``/``"swish"``, ``"relu"``) or by class.

    :param activation: name or ``nn.Module`` subclass
    :return: the activation class
    """
    if isinstance(activation, str):
        try:
            return _ACTIVATIONS[activation.lower()]
        except KeyError:
            raise ValueError(
                f"Unknown activation {activation!r}, expected one of {sorted(_ACTIVATIONS)} or an nn.Module class"
            ) from None
    if isinstance(activation, type) and issubclass(activation, nn.Module):
        return activation
    raise ValueError(f"activation must be a string or an nn.Module subclass, got {activation!r}")


class EnsembleLinear(nn.Module):
    """
    A linear layer holding one independent weight matrix per ensemble member.

    The weight has shape ``[ensemble_size, in_features, out_features]`` and the bias ``[ensemble_size, 1, out_features]``;
    the forward pass of all members is one ``th.baddbmm`` call.

    Initialization (as in MBPO): weights are drawn i.i.d. from a normal distribution with
    standard deviation ``1 / (2 sqrt(in_features))`` truncated at two standard deviations, biases are zero.
    Since every entry of the weight tensor is drawn independently, every member starts from a different point.

    :param ensemble_size: number of ensemble members
    :param in_features: input size
    :param out_features: output size
    :param weight_decay: L2 coefficient for this layer's weight (used by
        :meth:`~sb3_pmac.dynamics.ensemble.ProbabilisticEnsemble.loss`)
    """

    def __init__(self, ensemble_size: int, in_features: int, out_features: int, weight_decay: float = 0.0) -> None:
        super().__init__()
        self.ensemble_size = ensemble_size
        self.in_features = in_features
        self.out_features = out_features
        self.weight_decay = weight_decay
        self.weight = nn.Parameter(th.empty(ensemble_size, in_features, out_features))
        self.bias = nn.Parameter(th.empty(ensemble_size, 1, out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialize weights (truncated normal, std ``1 / (2 sqrt(in_features))``) and biases (zero)."""
        std = 1.0 / (2.0 * self.in_features**0.5)
        nn.init.trunc_normal_(self.weight, mean=0.0, std=std, a=-2.0 * std, b=2.0 * std)
        nn.init.zeros_(self.bias)

    def forward(self, x: th.Tensor, members: th.Tensor | None = None) -> th.Tensor:
        """
        :param x: input of shape ``[M, N, in_features]`` where ``M`` is ``ensemble_size``
            (or ``len(members)`` when ``members`` is given)
        :param members: optional indices of the members to evaluate (``x[k]`` goes through member ``members[k]``)
        :return: output of shape ``[M, N, out_features]``
        """
        if members is None:
            return th.baddbmm(self.bias, x, self.weight)
        return th.baddbmm(self.bias[members], x, self.weight[members])

    def l2_penalty(self) -> th.Tensor:
        """:return: ``weight_decay * 0.5 * ||W||^2`` summed over all members (biases are not decayed)."""
        return self.weight_decay * 0.5 * self.weight.pow(2).sum()

    def extra_repr(self) -> str:
        return (
            f"ensemble_size={self.ensemble_size}, in_features={self.in_features}, "
            f"out_features={self.out_features}, weight_decay={self.weight_decay}"
        )


#: A feature (or observation dimension) whose spread is at most this many machine epsilons of its magnitude (float32:
#: 1e-6 of the value, float64: 2e-15) is constant up to round-off: :class:`InputNormalizer` does not scale it, and the
#: rollouts' state bounds leave it unbounded (:meth:`~sb3_pmac.model_step.ModelStepSAC.rollout_state_bounds`)
ROUND_OFF_EPSILONS = 8


def round_off_spread(magnitude: np.ndarray, *dtypes: np.dtype | th.dtype) -> np.ndarray:
    """
    The largest spread of a feature of ``magnitude`` (e.g. its mean's absolute value) that is round-off in the coarsest
    of ``dtypes`` (e.g. the stored observations' and the model's): :data:`ROUND_OFF_EPSILONS` epsilons of the
    magnitude, at least ``1e-12``.
    """
    eps = max(th.finfo(dtype).eps if isinstance(dtype, th.dtype) else np.finfo(dtype).eps for dtype in dtypes)
    return np.maximum(ROUND_OFF_EPSILONS * eps * np.abs(magnitude), 1e-12)


class InputNormalizer(nn.Module):
    """
    Standardizes inputs with a mean and standard deviation estimated by :meth:`fit`.

    Statistics are registered buffers, so they are part of ``state_dict()`` and follow ``.to(device)``.
    A constant feature gets the standard deviation 1: one whose standard deviation is round-off in the normalizer's
    precision (:func:`round_off_spread` of its mean: at most 1e-6 of it in float32, e.g. 0.1 with a jitter of 1e-8;
    dividing by that std would turn the model's own noise on it into inputs 1e6 standard deviations out at the next
    rollout step). The statistics are computed in float64.

    :param size: number of input features
    """

    mean: th.Tensor
    std: th.Tensor

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("mean", th.zeros(1, size))
        self.register_buffer("std", th.ones(1, size))

    @th.no_grad()
    def fit(self, inputs: th.Tensor) -> None:
        """
        Estimate the statistics from a batch of inputs.

        :param inputs: tensor of shape ``[N, size]`` (any leading dimensions are flattened)
        """
        # in float64 (on the CPU: not every accelerator has it): float32 sums leave a constant column a std of ~1e-8
        # times its mean
        inputs = inputs.reshape(-1, self.size).to(device="cpu", dtype=th.float64)
        if inputs.shape[0] == 0:
            raise ValueError("Cannot fit the input normalizer on an empty batch")
        mean = inputs.mean(dim=0, keepdim=True)
        std = inputs.std(dim=0, correction=0, keepdim=True)
        constant = std <= th.from_numpy(round_off_spread(mean.numpy(), self.mean.dtype))
        std = th.where(constant, th.ones_like(std), std)
        self.mean.copy_(mean)  # (copy_ converts to the buffers' dtype and device)
        self.std.copy_(std)

    def forward(self, x: th.Tensor) -> th.Tensor:
        """:return: ``(x - mean) / std`` (broadcast over leading dimensions)"""
        return (x - self.mean) / self.std
