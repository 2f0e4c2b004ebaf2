"""Probabilistic ensemble dynamics model (PETS / MBPO style) used by PMAC.

The model maps a state-action pair ``(s, a)`` to a diagonal Gaussian over the target ``(s' - s, r)``.
All ensemble members are evaluated together: every layer is a single batched matrix multiplication
(``th.baddbmm``) over a weight tensor of shape ``[ensemble_size, in_features, out_features]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch as th
from torch import nn
from torch.nn import functional as F

from sb3_pmac.dynamics.layers import EnsembleLinear, InputNormalizer, get_activation

#: MBPO's L2 coefficients of its dynamics model's 5 linear layers (4 hidden layers of 200 units, then the output)
MBPO_WEIGHT_DECAYS = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)


def mbpo_weight_decays(n_layers: int) -> list[float]:
    """
    MBPO's weight-decay profile for ``n_layers`` linear layers: :data:`MBPO_WEIGHT_DECAYS` for 5, otherwise its values
    interpolated linearly over the relative depth (first layer 2.5e-5, output layer 1e-4, e.g. 3 layers: 2.5e-5,
    7.5e-5, 1e-4; a lone output layer: 1e-4).

    :param n_layers: number of linear layers, hidden ones and the output layer
    """
    if n_layers == len(MBPO_WEIGHT_DECAYS):
        return list(MBPO_WEIGHT_DECAYS)
    if n_layers == 1:  # no hidden layer: the output layer's value
        return [MBPO_WEIGHT_DECAYS[-1]]
    depth, mbpo_depth = np.linspace(0.0, 1.0, n_layers), np.linspace(0.0, 1.0, len(MBPO_WEIGHT_DECAYS))
    return [float(value) for value in np.interp(depth, mbpo_depth, MBPO_WEIGHT_DECAYS)]


class ProbabilisticEnsemble(nn.Module):
    """
    Ensemble of probabilistic neural networks predicting a diagonal Gaussian over ``(s' - s, r)``.

    Each member ``b`` outputs a mean ``mu_b(s, a)`` and a log-variance ``logvar_b(s, a)`` of dimension ``obs_dim + 1``
    (first ``obs_dim`` entries: state difference ``s' - s``, last entry: reward). The log-variance is softly bounded
    by learned bounds (PETS / MBPO)::

        logvar = max_logvar - softplus(max_logvar - raw)
        logvar = min_logvar + softplus(logvar - min_logvar)

    so it always lies in ``[min_logvar, max_logvar + log(1 + exp(min_logvar - max_logvar))]``
    (the upper excess is below ``3e-5`` with the default bounds).

    Inputs are standardized by an :class:`~sb3_pmac.dynamics.layers.InputNormalizer` inside :meth:`forward` (fitted by
    the trainer). With ``normalize_targets=True`` the targets are standardized too (a second normalizer, fitted on the
    training targets): the network, the log-variance bounds, the loss and :meth:`mse` work in standardized target units,
    and :meth:`forward`, :meth:`predict` and :meth:`sample` convert back (``mean * std + mu``, ``logvar + 2 log std``).
    MBPO and mbrl-lib fit the raw targets, which is the default; standardized targets make the fit independent of each
    dimension's scale (rewards of 1e3, observations of 1e-4, a nearly constant feature), where the raw fit fails
    because the log-variance bounds are absolute.

    :param obs_dim: observation dimension
    :param action_dim: action dimension (actions are expected to be scaled to ``[-1, 1]``)
    :param ensemble_size: number of members (7 in PMAC, Table 2)
    :param n_elites: number of elite members used by :meth:`sample` (5 in MBPO)
    :param hidden_sizes: hidden layer sizes (4 x 200 in PMAC, Table 2)
    :param activation: ``"silu"`` / ``"swish"`` (as MBPO), ``"relu"``, or an ``nn.Module`` class
    :param weight_decays: L2 coefficient of each linear layer (``len(hidden_sizes) + 1`` values); ``None`` disables
        weight decay. ``"mbpo"`` (default): MBPO's values, :data:`MBPO_WEIGHT_DECAYS` for its 4 hidden layers, and for
        another depth the same profile spread over the layers (:func:`mbpo_weight_decays`)
    :param logvar_bound_penalty: coefficient of the ``max_logvar.sum() - min_logvar.sum()`` penalty
    :param min_logvar: initial value of the learned lower bound on the log-variance
    :param max_logvar: initial value of the learned upper bound on the log-variance
    :param normalize_targets: standardize the targets ``(s' - s, r)`` per dimension (see above); ``False``: MBPO's
        raw targets
    :param device: device of the parameters
    """

    elite_indices: th.Tensor

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        ensemble_size: int = 7,
        n_elites: int = 5,
        hidden_sizes: Sequence[int] = (200, 200, 200, 200),
        activation: str | type[nn.Module] = "silu",
        weight_decays: Sequence[float] | Literal["mbpo"] | None = "mbpo",
        logvar_bound_penalty: float = 0.01,
        min_logvar: float = -10.0,
        max_logvar: float = 0.5,
        normalize_targets: bool = False,
        device: th.device | str = "cpu",
    ) -> None:
        super().__init__()
        if obs_dim <= 0 or action_dim <= 0:
            raise ValueError(f"obs_dim and action_dim must be positive, got obs_dim={obs_dim}, action_dim={action_dim}")
        if ensemble_size <= 0:
            raise ValueError(f"ensemble_size must be positive, got {ensemble_size}")
        if not 0 < n_elites <= ensemble_size:
            raise ValueError(f"n_elites must be in [1, ensemble_size={ensemble_size}], got {n_elites}")
        hidden_sizes = list(hidden_sizes)
        if any(h <= 0 for h in hidden_sizes):
            raise ValueError(f"hidden_sizes must be positive, got {hidden_sizes}")
        n_layers = len(hidden_sizes) + 1
        if weight_decays is None:
            weight_decays = [0.0] * n_layers
        elif isinstance(weight_decays, str):
            if weight_decays != "mbpo":
                raise ValueError(f"weight_decays must be a sequence of floats, None or 'mbpo', got {weight_decays!r}")
            weight_decays = mbpo_weight_decays(n_layers)
        weight_decays = list(weight_decays)
        if len(weight_decays) != n_layers:
            raise ValueError(
                f"weight_decays needs one value per linear layer (len(hidden_sizes) + 1 = {n_layers}), "
                f"got {len(weight_decays)}: {weight_decays} ('mbpo', the default, fits any depth; None: no weight decay)"
            )
        if any(wd < 0 for wd in weight_decays):
            raise ValueError(f"weight_decays must be non-negative, got {weight_decays}")
        if logvar_bound_penalty < 0:
            raise ValueError(f"logvar_bound_penalty must be non-negative, got {logvar_bound_penalty}")
        if not min_logvar < max_logvar:
            raise ValueError(f"min_logvar must be smaller than max_logvar, got {min_logvar} >= {max_logvar}")

        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.input_dim = obs_dim + action_dim
        self.output_dim = obs_dim + 1
        self.ensemble_size = ensemble_size
        self.n_elites = n_elites
        self.hidden_sizes = hidden_sizes
        self.logvar_bound_penalty = logvar_bound_penalty

        activation_class = get_activation(activation)
        sizes = [self.input_dim, *hidden_sizes]
        self.hidden_layers = nn.ModuleList(
            [EnsembleLinear(ensemble_size, sizes[i], sizes[i + 1], weight_decays[i]) for i in range(len(hidden_sizes))]
        )
        self.activation = activation_class()
        # The last layer outputs the mean and the unbounded log-variance side by side
        self.output_layer = EnsembleLinear(ensemble_size, sizes[-1], 2 * self.output_dim, weight_decays[-1])

        self.max_logvar = nn.Parameter(th.full((1, self.output_dim), float(max_logvar)))
        self.min_logvar = nn.Parameter(th.full((1, self.output_dim), float(min_logvar)))
        self.input_normalizer = InputNormalizer(self.input_dim)
        # a submodule only when used, so that the state_dict of a model without it is what it always was
        self.target_normalizer: InputNormalizer | None = InputNormalizer(self.output_dim) if normalize_targets else None
        self.register_buffer("elite_indices", th.arange(n_elites, dtype=th.long))
        self.to(device)

    # ------------------------------------------------------------------ helpers

    @property
    def device(self) -> th.device:
        """Device of the parameters."""
        return self.max_logvar.device

    @property
    def layers(self) -> list[EnsembleLinear]:
        """All linear layers, input to output."""
        return [*self.hidden_layers, self.output_layer]

    def member_parameters(self) -> list[nn.Parameter]:
        """:return: the parameters with one slice per member (leading dimension ``ensemble_size``)."""
        return [p for layer in self.layers for p in (layer.weight, layer.bias)]

    def make_inputs(self, observations: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """:return: the model input ``[observations, actions]`` concatenated along the last dimension."""
        return th.cat([observations, actions], dim=-1)

    def make_targets(self, observations: th.Tensor, rewards: th.Tensor, next_observations: th.Tensor) -> th.Tensor:
        """:return: the regression target ``[next_observations - observations, rewards]``."""
        return th.cat([next_observations - observations, rewards.reshape(*observations.shape[:-1], 1)], dim=-1)

    def _network(self, x: th.Tensor, members: th.Tensor | None = None) -> tuple[th.Tensor, th.Tensor]:
        """
        Evaluate (already normalized) inputs ``[M, N, input_dim]``.

        :param x: normalized inputs
        :param members: member index of each of the ``M`` slices (``None``: all members, ``M = ensemble_size``)
        :return: mean and bounded log-variance, each ``[M, N, output_dim]``
        """
        for layer in self.hidden_layers:
            x = self.activation(layer(x, members))
        out = self.output_layer(x, members)
        mean, raw_logvar = out[..., : self.output_dim], out[..., self.output_dim :]
        logvar = self.max_logvar - F.softplus(self.max_logvar - raw_logvar)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return mean, logvar

    @property
    def normalize_targets(self) -> bool:
        """Whether the targets are standardized (``normalize_targets`` of the constructor)."""
        return self.target_normalizer is not None

    def fit_normalizers(self, inputs: th.Tensor, targets: th.Tensor) -> None:
        """
        Fit the input normalizer (and the target normalizer, with ``normalize_targets``) on a training set.

        :param inputs: ``[N, input_dim]`` raw inputs
        :param targets: ``[N, output_dim]`` targets ``(s' - s, r)``
        """
        self.input_normalizer.fit(inputs)
        if self.target_normalizer is not None:
            self.target_normalizer.fit(targets)

    def fitted_targets(self, targets: th.Tensor) -> th.Tensor:
        """:return: ``targets`` in the units the network is fitted in (standardized with ``normalize_targets``)."""
        return targets if self.target_normalizer is None else self.target_normalizer(targets)

    def fitted_outputs(self, inputs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """
        :meth:`forward` in the units the network is fitted in (the loss's and :meth:`mse`'s): the same as
        :meth:`forward` unless ``normalize_targets``.
        """
        x = self._expand(inputs, "inputs", self.input_dim)
        return self._network(self.input_normalizer(x))

    def _to_target_units(self, mean: th.Tensor, logvar: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Network outputs in the targets' own units (unchanged unless ``normalize_targets``)."""
        if self.target_normalizer is None:
            return mean, logvar
        std = self.target_normalizer.std
        return mean * std + self.target_normalizer.mean, logvar + 2.0 * th.log(std)

    def _expand(self, x: th.Tensor | np.ndarray, name: str, size: int) -> th.Tensor:
        """In the model's dtype and on its device, ``[N, size]`` broadcast to ``[E, N, size]``; ``[E, N, size]`` checked."""
        x = th.as_tensor(x, device=self.device, dtype=self.max_logvar.dtype)
        if x.dim() == 2 and x.shape[-1] == size:
            return x.unsqueeze(0).expand(self.ensemble_size, -1, -1)
        if x.dim() == 3 and x.shape[0] == self.ensemble_size and x.shape[-1] == size:
            return x
        raise ValueError(f"{name} must have shape [N, {size}] or [{self.ensemble_size}, N, {size}], got {list(x.shape)}")

    @staticmethod
    def _check_rows(outputs: th.Tensor, targets: th.Tensor) -> None:
        """Targets with as many rows as the inputs (``[1, out]`` would broadcast silently)."""
        if targets.shape[1] != outputs.shape[1]:
            raise ValueError(f"targets have {targets.shape[1]} rows, the inputs {outputs.shape[1]}")

    # ------------------------------------------------------------------ public API

    def forward(self, inputs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """
        Predict the Gaussian over ``(s' - s, r)`` for every member.

        :param inputs: raw (unnormalized) ``[s, a]`` inputs, either ``[N, input_dim]`` (the same batch for every member)
            or ``[ensemble_size, N, input_dim]`` (one batch per member); a tensor or array of any float dtype and
            device (converted to the model's)
        :return: mean and log-variance, each ``[ensemble_size, N, output_dim]``
        """
        return self._to_target_units(*self.fitted_outputs(inputs))

    def loss(self, inputs: th.Tensor, targets: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """
        Training loss: Gaussian negative log-likelihood of Eq. 5 of the PMAC paper plus regularizers.

        For member ``b``, Eq. 5 is ``sum_t (mu_b - y_t)^T Sigma_b^{-1} (mu_b - y_t) + log det Sigma_b`` with a diagonal
        ``Sigma_b = diag(exp(logvar_b))``; as in MBPO we average (instead of summing) over samples and output dimensions:
        ``nll_b = mean_{t, d} [(mu_b - y)^2 * exp(-logvar_b) + logvar_b]``.

        ``total = sum_b nll_b + logvar_bound_penalty * (max_logvar.sum() - min_logvar.sum())
        + sum_l weight_decay_l * 0.5 * ||W_l||^2``.

        :param inputs: ``[ensemble_size, N, input_dim]`` (or ``[N, input_dim]``, shared by all members)
        :param targets: ``[ensemble_size, N, output_dim]`` (or ``[N, output_dim]``) targets ``(s' - s, r)``, in their
            own units (standardized here with ``normalize_targets``)
        :return: the total scalar loss to minimize and the per-member Eq. 5 NLL ``[ensemble_size]``
        """
        targets = self.fitted_targets(self._expand(targets, "targets", self.output_dim))
        mean, logvar = self.fitted_outputs(inputs)
        self._check_rows(mean, targets)
        nll = ((mean - targets).pow(2) * th.exp(-logvar) + logvar).mean(dim=(1, 2))
        total = nll.sum() + self.logvar_bound_penalty * (self.max_logvar.sum() - self.min_logvar.sum())
        for layer in self.layers:
            total = total + layer.l2_penalty()
        return total, nll

    @th.no_grad()
    def mse(self, inputs: th.Tensor, targets: th.Tensor) -> th.Tensor:
        """
        Per-member mean squared error of the predicted mean (used on the holdout set and to select elites), in the
        units the network is fitted in: the targets' own, or standardized ones with ``normalize_targets`` (every
        dimension then counts alike).

        :param inputs: ``[N, input_dim]`` or ``[ensemble_size, N, input_dim]``
        :param targets: ``[N, output_dim]`` or ``[ensemble_size, N, output_dim]``
        :return: tensor ``[ensemble_size]``
        """
        targets = self.fitted_targets(self._expand(targets, "targets", self.output_dim))
        mean, _ = self.fitted_outputs(inputs)
        self._check_rows(mean, targets)
        return (mean - targets).pow(2).mean(dim=(1, 2))

    def set_elites(self, indices: Sequence[int] | th.Tensor) -> None:
        """
        Set the elite members used by :meth:`sample` and :meth:`predict`.

        :param indices: ``n_elites`` distinct member indices
        """
        indices = th.as_tensor(indices, dtype=th.long).flatten().cpu()
        if indices.numel() != self.n_elites:
            raise ValueError(f"Expected {self.n_elites} elite indices, got {indices.numel()}")
        if indices.unique().numel() != indices.numel():
            raise ValueError(f"Elite indices must be distinct, got {indices.tolist()}")
        if indices.min() < 0 or indices.max() >= self.ensemble_size:
            raise ValueError(f"Elite indices must be in [0, {self.ensemble_size}), got {indices.tolist()}")
        self.elite_indices.copy_(indices)

    def _check_batch(
        self, observations: th.Tensor | np.ndarray, actions: th.Tensor | np.ndarray
    ) -> tuple[th.Tensor, th.Tensor]:
        """``observations [N, obs_dim]`` and ``actions [N, action_dim]`` as tensors (dtype and device kept), checked."""
        observations, actions = th.as_tensor(observations), th.as_tensor(actions)
        if observations.dim() != 2 or observations.shape[-1] != self.obs_dim:
            raise ValueError(f"observations must have shape [N, {self.obs_dim}], got {list(observations.shape)}")
        if actions.dim() != 2 or actions.shape != (observations.shape[0], self.action_dim):
            raise ValueError(
                f"actions must have shape [{observations.shape[0]}, {self.action_dim}], got {list(actions.shape)}"
            )
        return observations, actions

    @th.no_grad()
    def predict(self, observations: th.Tensor | np.ndarray, actions: th.Tensor | np.ndarray) -> tuple[th.Tensor, th.Tensor]:
        """
        Mean and log-variance of ``(s' - s, r)`` predicted by every elite member.

        :param observations: ``[N, obs_dim]`` (tensor or array, any float dtype and device: converted to the model's)
        :param actions: ``[N, action_dim]``
        :return: mean and log-variance, each ``[n_elites, N, output_dim]`` (order of ``elite_indices``)
        """
        observations, actions = self._check_batch(observations, actions)
        dtype = self.max_logvar.dtype
        observations = observations.to(device=self.device, dtype=dtype)
        actions = actions.to(device=self.device, dtype=dtype)
        x = self.input_normalizer(self.make_inputs(observations, actions))
        return self._to_target_units(*self._network(x.unsqueeze(0).expand(self.n_elites, -1, -1), self.elite_indices))

    @th.no_grad()
    def sample(
        self,
        observations: th.Tensor | np.ndarray,
        actions: th.Tensor | np.ndarray,
        deterministic: bool = False,
        generator: th.Generator | None = None,
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """
        One model-rollout step: every sample is predicted by an elite member chosen uniformly at random
        (PMAC Sec. 4 "Model Rollouts"; restricted to elites as in MBPO).

        The samples are grouped by chosen member and padded to the largest group, so that the cost is one batched pass
        over ``n_elites * max_group ~ N`` rows instead of evaluating every member on every sample.

        :param observations: ``[N, obs_dim]`` (tensor or array)
        :param actions: ``[N, action_dim]`` (scaled to ``[-1, 1]``)
        :param deterministic: use the predicted mean instead of sampling from the Gaussian
        :param generator: optional random generator (member choice and Gaussian noise); its device may differ
            from the model's
        :return: next observations ``[N, obs_dim]``, rewards ``[N]`` and the chosen member index ``[N]``. The next
            observations are ``observations`` plus the predicted change in the observations' dtype when it is more
            precise than the model's (float64 states of large magnitude keep their small changes), else in the model's
        """
        observations, actions = self._check_batch(observations, actions)
        device = self.device
        states = observations.to(device=device, dtype=th.promote_types(observations.dtype, self.max_logvar.dtype))
        observations = states.to(dtype=self.max_logvar.dtype)
        actions = actions.to(device=device, dtype=self.max_logvar.dtype)
        n = observations.shape[0]
        rand_device = generator.device if generator is not None else device

        slots = th.randint(self.n_elites, (n,), generator=generator, device=rand_device).to(device)
        members = self.elite_indices[slots]
        if n == 0:
            return states.clone(), observations.new_zeros(0), members

        # Group the samples by chosen elite slot: sorted position -> (slot, rank inside the slot's group)
        order = th.argsort(slots, stable=True)
        sorted_slots = slots[order]
        counts = th.bincount(slots, minlength=self.n_elites)
        starts = th.cumsum(counts, dim=0) - counts
        ranks = th.arange(n, device=device) - starts[sorted_slots]
        max_group = int(counts.max().item())

        x = self.input_normalizer(self.make_inputs(observations, actions))
        padded = x.new_zeros(self.n_elites, max_group, self.input_dim)
        padded[sorted_slots, ranks] = x[order]
        mean_padded, logvar_padded = self._to_target_units(*self._network(padded, self.elite_indices))

        mean = th.empty(n, self.output_dim, device=device, dtype=x.dtype)
        logvar = th.empty_like(mean)
        mean[order] = mean_padded[sorted_slots, ranks]
        logvar[order] = logvar_padded[sorted_slots, ranks]

        if deterministic:
            prediction = mean
        else:
            noise = th.randn(mean.shape, generator=generator, device=rand_device, dtype=mean.dtype).to(device)
            prediction = mean + th.exp(0.5 * logvar) * noise
        next_observations = states + prediction[:, : self.obs_dim].to(states.dtype)
        rewards = prediction[:, -1]
        return next_observations, rewards, members
