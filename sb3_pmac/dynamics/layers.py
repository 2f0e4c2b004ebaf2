"""
Building blocks of the probabilistic ensemble: a linear layer of ``ensemble_size`` independent members evaluated as one
batched matrix multiplication (``th.baddbmm`` over weights of shape ``[ensemble_size, in_features, out_features]``), and
the input normalizer fitted on each model-training set.
"""

from __future__ import annotations

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


class InputNormalizer(nn.Module):
    """
    Standardizes inputs with a mean and standard deviation estimated by :meth:`fit`.

    Statistics are registered buffers, so they are part of ``state_dict()`` and follow ``.to(device)``.
    Standard deviations below ``1e-12`` (constant features) are replaced by 1.

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
        inputs = inputs.reshape(-1, self.size).to(device=self.mean.device, dtype=self.mean.dtype)
        if inputs.shape[0] == 0:
            raise ValueError("Cannot fit the input normalizer on an empty batch")
        mean = inputs.mean(dim=0, keepdim=True)
        std = inputs.std(dim=0, correction=0, keepdim=True)
        std = th.where(std < 1e-12, th.ones_like(std), std)
        self.mean.copy_(mean)
        self.std.copy_(std)

    def forward(self, x: th.Tensor) -> th.Tensor:
        """:return: ``(x - mean) / std`` (broadcast over leading dimensions)"""
        return (x - self.mean) / self.std
