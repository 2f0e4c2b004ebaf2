"""Supervised training of the :class:`~sb3_pmac.dynamics.ensemble.ProbabilisticEnsemble` (MBPO-style early stopping)."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch as th

from sb3_pmac.dynamics.ensemble import ProbabilisticEnsemble

ArrayLike = np.ndarray | th.Tensor

#: Gradient steps per model training of PMAC's ``model_training="bounded"`` (``max_grad_steps``; chosen with
#: ``benchmarks/model_replay.py``, see ``docs/results.md``).
DEFAULT_MODEL_GRAD_STEPS = 400


@dataclass
class ModelTrainingInfo:
    """
    Summary of one call to :meth:`ModelTrainer.train`.

    :param epochs: number of training epochs run (the last one may be partial when ``max_grad_steps`` ended it)
    :param train_loss: mean total loss (:meth:`~sb3_pmac.dynamics.ensemble.ProbabilisticEnsemble.loss`) over the
        minibatches of the last epoch
    :param holdout_mse: holdout mean squared error of the final (restored) model, averaged over the elites, in the
        units the model is fitted in: the targets' own, or standardized ones with ``normalize_targets`` (not
        comparable across that option); NaN when the call reverted
    :param holdout_mse_per_member: holdout MSE of every member, shape ``[ensemble_size]``
    :param holdout_nll: holdout Gaussian NLL (Eq. 5, averaged over samples and dimensions), averaged over the elites
        (same units as ``holdout_mse``)
    :param elite_indices: the ``n_elites`` members with the lowest holdout MSE, best first
    :param n_train: number of training rows
    :param n_holdout: number of holdout rows (0: no holdout, the evaluation used training rows instead)
    :param seconds: wall-clock duration of the call
    :param grad_steps: number of optimizer steps taken
    :param n_nonfinite: rows dropped before training because a value was NaN or infinite (or beyond the range of the
        model's dtype, e.g. 1e39 in float32)
    :param reverted: True when the call left the model as it was before it (no finite row, or the trained model's
        elites predicted non-finite values, e.g. after one finite but huge target such as a reward of 1e20 among
        ordinary ones): the last good model is kept
    """

    epochs: int
    train_loss: float
    holdout_mse: float
    holdout_mse_per_member: np.ndarray
    holdout_nll: float
    elite_indices: np.ndarray
    n_train: int
    n_holdout: int
    seconds: float
    grad_steps: int = 0
    n_nonfinite: int = 0
    reverted: bool = False


def _drop_nonfinite_rows(
    inputs: th.Tensor, targets: th.Tensor, ids: np.ndarray | None
) -> tuple[th.Tensor, th.Tensor, np.ndarray | None, int]:
    """
    Drop the rows with a NaN or infinite value (one would turn every weight to NaN).

    :return: the finite rows of ``inputs``, ``targets`` and ``ids``, and the number of rows dropped
    """
    finite = th.isfinite(inputs).all(dim=1) & th.isfinite(targets).all(dim=1)
    n_dropped = int(inputs.shape[0] - finite.sum())
    if n_dropped == 0:
        return inputs, targets, ids, 0
    return inputs[finite], targets[finite], None if ids is None else ids[finite.cpu().numpy()], n_dropped


def _to_numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, th.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


class ModelTrainer:
    """
    Trains a probabilistic ensemble on a dataset of transitions, as MBPO does.

    * Holdout split: a random ``holdout_ratio`` share of the *distinct* transitions (``sample_ids``) is held out,
      capped at ``max_holdout_size`` rows. A transition may appear several times in the dataset (the caller draws
      it per policy with the mixture's weights, without replacement only where the weights allow: a heavily weighted
      version with few transitions repeats them); all its copies go to the same side of the split (no leak), and
      multiplicities are kept so that the holdout is weighted like the training set.
    * Each epoch, every member visits the training rows in its own random order (minibatches ``[E, batch_size, in]``,
      one Adam step per minibatch on :meth:`~sb3_pmac.dynamics.ensemble.ProbabilisticEnsemble.loss`).
    * Early stopping: after each epoch a member improves when its holdout MSE decreases by more than
      ``improvement_threshold`` (relative) with respect to its best value; the best parameters of each member are kept.
      Training stops after ``patience`` epochs without any member improving, at ``max_epochs``, or after
      ``max_grad_steps`` optimizer steps (a budget per call that does not depend on the dataset size; the epoch it
      interrupts is evaluated like a full one). Each member is then restored to its best parameters and the
      ``n_elites`` members with the lowest holdout MSE become the elites.
    * ``bootstrap=True``: every member trains on its own bootstrap resample of the training rows (drawn once per call,
      as in PETS and MBPO's own model) instead of all of them (as the base code's PyTorch model); the holdout stays
      shared.

    The optimizer is created once and kept across calls to :meth:`train`: after moving or casting the model
    (``model.to(...)``, ``model.double()``), make a new trainer (Adam's moments keep the old device and dtype). Each call
    trains at ``learning_rate`` (an attribute that can be changed between calls), also after the optimizer's state has
    been loaded from a file that holds another rate.

    :param model: the ensemble to train
    :param learning_rate: Adam learning rate (1e-3 in the authors' MBPO code)
    :param batch_size: minibatch size per member
    :param holdout_ratio: share of the distinct transitions held out for validation, in ``[0, 1)``;
        0 disables the holdout (evaluation and elite selection then use up to ``max_holdout_size`` training rows)
    :param max_holdout_size: maximum number of holdout rows
    :param max_epochs: maximum number of epochs per call (``None``: only early stopping)
    :param max_train_size: if set, a random subset of at most this many training rows is used
    :param max_grad_steps: maximum number of optimizer steps per call (``None``: no limit)
    :param bootstrap: train each member on its own bootstrap resample of the training rows
    :param patience: number of consecutive epochs without improvement before stopping
    :param improvement_threshold: minimal relative decrease of a member's holdout MSE counted as an improvement
    :param verbose: 0: silent, 1: one line per call, 2: one line per epoch
    :param seed: seed of the trainer's random generator (splits and minibatch orders)
    """

    def __init__(
        self,
        model: ProbabilisticEnsemble,
        learning_rate: float = 1e-3,
        batch_size: int = 256,
        holdout_ratio: float = 0.2,
        max_holdout_size: int = 5000,
        max_epochs: int | None = 100,
        max_train_size: int | None = None,
        max_grad_steps: int | None = None,
        bootstrap: bool = False,
        patience: int = 5,
        improvement_threshold: float = 0.01,
        verbose: int = 0,
        seed: int | None = None,
    ) -> None:
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {learning_rate}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0.0 <= holdout_ratio < 1.0:
            raise ValueError(f"holdout_ratio must be in [0, 1), got {holdout_ratio}")
        if max_holdout_size <= 0:
            raise ValueError(f"max_holdout_size must be positive, got {max_holdout_size}")
        if max_epochs is not None and max_epochs <= 0:
            raise ValueError(f"max_epochs must be positive or None, got {max_epochs}")
        if max_train_size is not None and max_train_size <= 0:
            raise ValueError(f"max_train_size must be positive or None, got {max_train_size}")
        if max_grad_steps is not None and max_grad_steps <= 0:
            raise ValueError(f"max_grad_steps must be positive or None, got {max_grad_steps}")
        if patience <= 0:
            raise ValueError(f"patience must be positive, got {patience}")
        if not 0.0 <= improvement_threshold < 1.0:
            raise ValueError(f"improvement_threshold must be in [0, 1), got {improvement_threshold}")

        self.model = model
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.holdout_ratio = holdout_ratio
        self.max_holdout_size = max_holdout_size
        self.max_epochs = max_epochs
        self.max_train_size = max_train_size
        self.max_grad_steps = max_grad_steps
        self.bootstrap = bool(bootstrap)
        self.patience = patience
        self.improvement_threshold = improvement_threshold
        self.verbose = verbose
        self.optimizer = th.optim.Adam(model.parameters(), lr=learning_rate)
        #: number of calls that trained the model (calls that kept the previous model, see
        #: ``ModelTrainingInfo.reverted``, do not count)
        self.n_trained = 0
        #: the generator of the splits and minibatch orders (its state is saved with the agent)
        self.rng = np.random.default_rng(seed)

    # ------------------------------------------------------------------ data helpers

    def split(self, n_rows: int, sample_ids: np.ndarray | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """
        Split row indices into training and holdout rows.

        :param n_rows: number of rows
        :param sample_ids: id (e.g. replay buffer index) of each row, or ``None`` to split rows independently
        :param rng: random generator
        :return: training row indices and holdout row indices
        """
        if sample_ids is None:
            n_holdout = min(int(n_rows * self.holdout_ratio), self.max_holdout_size)
            perm = rng.permutation(n_rows)
            return np.sort(perm[n_holdout:]), np.sort(perm[:n_holdout])
        unique_ids, inverse, counts = np.unique(sample_ids, return_inverse=True, return_counts=True)
        n_holdout_ids = int(len(unique_ids) * self.holdout_ratio)
        chosen = rng.permutation(len(unique_ids))[:n_holdout_ids]
        # Cap the number of rows (copies included): keep the longest prefix of the chosen ids that fits
        chosen = chosen[np.cumsum(counts[chosen]) <= self.max_holdout_size]
        is_holdout_id = np.zeros(len(unique_ids), dtype=bool)
        is_holdout_id[chosen] = True
        holdout_mask = is_holdout_id[inverse.reshape(-1)]
        return np.flatnonzero(~holdout_mask), np.flatnonzero(holdout_mask)

    @th.no_grad()
    def evaluate(
        self, inputs: th.Tensor | np.ndarray, targets: th.Tensor | np.ndarray, chunk_size: int = 8192
    ) -> tuple[np.ndarray, np.ndarray]:
        """
        Per-member MSE and Gaussian NLL (Eq. 5, averaged) of a dataset shared by all members, in the units the model
        is fitted in (standardized targets with ``normalize_targets``, see
        :meth:`~sb3_pmac.dynamics.ensemble.ProbabilisticEnsemble.mse`).

        :param inputs: ``[N, input_dim]`` (tensor or array; converted to the model's dtype and device)
        :param targets: ``[N, output_dim]``
        :param chunk_size: rows evaluated at once
        :return: MSE and NLL, each ``[ensemble_size]``
        :raises ValueError: for other shapes, or no rows
        """
        model = self.model
        inputs = th.as_tensor(inputs, device=model.device, dtype=model.max_logvar.dtype)
        targets = th.as_tensor(targets, device=model.device, dtype=model.max_logvar.dtype)
        if inputs.dim() != 2 or inputs.shape[1] != model.input_dim:
            raise ValueError(f"inputs must have shape [N, {model.input_dim}], got {list(inputs.shape)}")
        if targets.shape != (inputs.shape[0], model.output_dim):
            raise ValueError(f"targets must have shape [{inputs.shape[0]}, {model.output_dim}], got {list(targets.shape)}")
        n = inputs.shape[0]
        if n == 0:
            raise ValueError("evaluate: no rows (an empty dataset has no error to report)")
        mse = th.zeros(self.model.ensemble_size, device=inputs.device)
        nll = th.zeros_like(mse)
        for start in range(0, n, chunk_size):
            x, y = inputs[start : start + chunk_size], targets[start : start + chunk_size]
            weight = x.shape[0] / n
            mean, logvar = self.model.fitted_outputs(x)  # (the units of the loss: standardized with normalize_targets)
            sq_err = (mean - self.model.fitted_targets(y).unsqueeze(0)).pow(2)
            mse += weight * sq_err.mean(dim=(1, 2))
            nll += weight * (sq_err * th.exp(-logvar) + logvar).mean(dim=(1, 2))
        return mse.cpu().numpy(), nll.cpu().numpy()

    # ------------------------------------------------------------------ training

    def _prepare(
        self,
        observations: ArrayLike,
        actions: ArrayLike,
        rewards: ArrayLike,
        next_observations: ArrayLike,
        sample_ids: ArrayLike | None,
    ) -> tuple[th.Tensor, th.Tensor, np.ndarray | None]:
        """
        Convert and check the dataset; :return: model inputs ``[N, in]``, targets ``[N, out]`` and ids ``[N]``.

        The targets ``s' - s`` are computed in the observations' precision, then converted to the model's dtype: float64
        observations of large magnitude (positions, odometers) keep their small changes, which float32 observations
        would round away (float32 data: the float32 difference, as always).
        """
        model = self.model
        device, dtype = model.device, model.max_logvar.dtype

        def as_tensor(x: ArrayLike) -> th.Tensor:  # (its dtype and device: see the targets)
            return x.detach() if isinstance(x, th.Tensor) else th.as_tensor(np.asarray(x))

        obs, act, rew, next_obs = (as_tensor(x) for x in (observations, actions, rewards, next_observations))
        n_rows = obs.shape[0]
        if obs.shape != (n_rows, model.obs_dim) or next_obs.shape != obs.shape:
            raise ValueError(
                f"observations and next_observations must have shape [N, {model.obs_dim}], "
                f"got {list(obs.shape)} and {list(next_obs.shape)}"
            )
        if act.shape != (n_rows, model.action_dim):
            raise ValueError(f"actions must have shape [{n_rows}, {model.action_dim}], got {list(act.shape)}")
        if rew.numel() != n_rows:
            raise ValueError(f"rewards must have {n_rows} entries, got shape {list(rew.shape)}")
        ids = None
        if sample_ids is not None:
            ids = _to_numpy(sample_ids).reshape(-1)
            if ids.shape[0] != n_rows:
                raise ValueError(f"sample_ids must have {n_rows} entries, got {ids.shape[0]}")
        # s' - s in the more precise of the data's and the model's dtypes, on the data's device (which may not take
        # float64), then in the model's dtype on its device
        precise = th.promote_types(th.promote_types(obs.dtype, next_obs.dtype), dtype)
        targets = model.make_targets(*(x.to(device=next_obs.device, dtype=precise) for x in (obs, rew, next_obs)))
        inputs = model.make_inputs(obs.to(device=device, dtype=dtype), act.to(device=device, dtype=dtype))
        return inputs, targets.to(device=device, dtype=dtype), ids

    def _train_epoch(
        self,
        inputs: th.Tensor,
        targets: th.Tensor,
        rng: np.random.Generator,
        member_rows: np.ndarray | None = None,
        max_steps: int | None = None,
    ) -> tuple[float, int]:
        """
        One pass over the training rows, each member in its own random order.

        :param member_rows: ``[ensemble_size, n]`` rows of each member (its bootstrap resample); ``None``: all rows
        :param max_steps: stop after this many minibatches
        :return: mean total loss over the minibatches, number of minibatches
        """
        if member_rows is None:
            n_train = inputs.shape[0]
            member_rows = np.broadcast_to(np.arange(n_train), (self.model.ensemble_size, n_train))
        order = th.as_tensor(rng.permuted(member_rows, axis=1), device=inputs.device)
        n_rows = order.shape[1]
        losses: list[th.Tensor] = []
        for start in range(0, n_rows, self.batch_size):
            if max_steps is not None and len(losses) >= max_steps:
                break
            batch = order[:, start : start + self.batch_size]
            loss, _ = self.model.loss(inputs[batch], targets[batch])
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            losses.append(loss.detach())
        return th.stack(losses).mean().item(), len(losses)

    def train(
        self,
        observations: ArrayLike,
        actions: ArrayLike,
        rewards: ArrayLike,
        next_observations: ArrayLike,
        sample_ids: ArrayLike | None = None,
        rng: np.random.Generator | int | None = None,
    ) -> ModelTrainingInfo:
        """
        Fit the ensemble (maximum likelihood, Eq. 5) on a dataset of transitions.

        :param observations: ``[N, obs_dim]``
        :param actions: ``[N, action_dim]`` (scaled to ``[-1, 1]``)
        :param rewards: ``[N]`` or ``[N, 1]``
        :param next_observations: ``[N, obs_dim]``
        :param sample_ids: optional ``[N]`` id of each row (its replay buffer index); rows sharing an id are never
            split between training and holdout
        :param rng: random generator or seed for this call (default: the trainer's generator)
        :return: training summary
        :raises ValueError: for no rows, or a model moved to another dtype or device after this trainer's first training
        """
        start_time = time.perf_counter()
        model = self.model
        if rng is None:
            rng = self.rng
        elif not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        inputs, targets, ids = self._prepare(observations, actions, rewards, next_observations, sample_ids)
        self._check_call(inputs)
        device = inputs.device
        inputs, targets, ids, n_nonfinite = _drop_nonfinite_rows(inputs, targets, ids)
        if inputs.shape[0] == 0:
            return self._kept(start_time, n_nonfinite)
        self.apply_learning_rate()
        # The model before this call, kept in case training diverges (finite data with extreme values)
        previous = (copy.deepcopy(model.state_dict()), copy.deepcopy(self.optimizer.state_dict()))

        train_idx, holdout_idx = self.split(inputs.shape[0], ids, rng)
        if self.max_train_size is not None and len(train_idx) > self.max_train_size:
            train_idx = np.sort(rng.choice(train_idx, size=self.max_train_size, replace=False))
        n_train, n_holdout = len(train_idx), len(holdout_idx)
        if n_train == 0:
            raise ValueError(f"No training rows left after the holdout split ({inputs.shape[0]} rows, {n_holdout} held out)")
        train_rows = th.as_tensor(train_idx, device=device)
        train_in, train_tg = inputs[train_rows], targets[train_rows]
        if n_holdout > 0:
            eval_rows = th.as_tensor(holdout_idx, device=device)
            eval_in, eval_tg = inputs[eval_rows], targets[eval_rows]
        else:
            # No holdout: evaluate (early stopping, elites) on a subset of the training rows
            eval_rows = th.as_tensor(rng.permutation(n_train)[: self.max_holdout_size], device=device)
            eval_in, eval_tg = train_in[eval_rows], train_tg[eval_rows]

        model.fit_normalizers(train_in, train_tg)
        model.train()

        member_params = model.member_parameters()
        snapshots = [p.detach().clone() for p in member_params]  # best parameters of each member
        best_mse = np.full(model.ensemble_size, np.inf)
        member_rows = rng.integers(0, n_train, size=(model.ensemble_size, n_train)) if self.bootstrap else None
        epochs_since_improvement = 0
        epoch = grad_steps = 0
        train_loss = float("nan")
        while (self.max_epochs is None or epoch < self.max_epochs) and (
            self.max_grad_steps is None or grad_steps < self.max_grad_steps
        ):
            steps_left = None if self.max_grad_steps is None else self.max_grad_steps - grad_steps
            train_loss, steps = self._train_epoch(train_in, train_tg, rng, member_rows, steps_left)
            grad_steps += steps
            epoch += 1
            holdout_mse, _ = self.evaluate(eval_in, eval_tg)
            improved = holdout_mse < best_mse * (1.0 - self.improvement_threshold)
            if improved.any():
                best_mse[improved] = holdout_mse[improved]
                mask = th.as_tensor(improved, device=device)
                for param, snapshot in zip(member_params, snapshots, strict=True):
                    snapshot[mask] = param.detach()[mask]
                epochs_since_improvement = 0
            else:
                epochs_since_improvement += 1
            if self.verbose >= 2:
                print(
                    f"[dynamics] epoch {epoch}: train loss {train_loss:.4f}, "
                    f"holdout mse {np.array2string(holdout_mse, precision=4)}, improved {int(improved.sum())}"
                )
            if epochs_since_improvement >= self.patience:
                break

        # Restore the best parameters of every member and select the elites
        with th.no_grad():
            for param, snapshot in zip(member_params, snapshots, strict=True):
                param.copy_(snapshot)
        holdout_mse, holdout_nll = self.evaluate(eval_in, eval_tg)
        elites = np.argsort(holdout_mse, kind="stable")[: model.n_elites]
        if not (np.isfinite(holdout_mse[elites]).all() and np.isfinite(holdout_nll[elites]).all()):
            model.load_state_dict(previous[0])
            self.optimizer.load_state_dict(previous[1])
            return self._kept(start_time, n_nonfinite, epoch, grad_steps, n_train, n_holdout)
        model.set_elites(th.as_tensor(elites, dtype=th.long))
        self.n_trained += 1

        info = ModelTrainingInfo(
            epochs=epoch,
            train_loss=train_loss,
            holdout_mse=float(holdout_mse[elites].mean()),
            holdout_mse_per_member=holdout_mse,
            holdout_nll=float(holdout_nll[elites].mean()),
            elite_indices=elites,
            n_train=n_train,
            n_holdout=n_holdout,
            seconds=time.perf_counter() - start_time,
            grad_steps=grad_steps,
            n_nonfinite=n_nonfinite,
        )
        if self.verbose >= 1:
            print(
                f"[dynamics] {info.epochs} epochs ({grad_steps} steps) on {n_train} rows ({n_holdout} holdout) "
                f"in {info.seconds:.1f}s: "
                f"train loss {info.train_loss:.4f}, elite holdout mse {info.holdout_mse:.5f}, "
                f"nll {info.holdout_nll:.4f}, elites {elites.tolist()}"
            )
        return info

    def apply_learning_rate(self) -> None:
        """
        Set the optimizer's rate to ``learning_rate`` (each :meth:`train` call does, as SB3 re-applies its rate before
        each update): an optimizer state loaded with an agent (SB3's ``set_parameters``) brings back the rate it was
        saved with, which this replaces.
        """
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate

    def _check_call(self, inputs: th.Tensor) -> None:
        """Clear errors for no rows, and where the optimizer's state no longer fits the model (moved with ``.to()``/
        ``.double()``; Adam would fail inside its kernel)."""
        if inputs.shape[0] == 0:
            raise ValueError("train: no transitions (pass at least one row)")
        parameter = self.model.max_logvar
        state = self.optimizer.state.get(parameter, {})
        moment = state.get("exp_avg") if isinstance(state, dict) else None
        if isinstance(moment, th.Tensor) and (moment.dtype != parameter.dtype or moment.device != parameter.device):
            raise ValueError(
                f"The model is now {parameter.dtype} on {parameter.device}, but this ModelTrainer's optimizer state is "
                f"{moment.dtype} on {moment.device}: build a new ModelTrainer after moving the model (.to(), .double())"
            )

    def _kept(
        self, start_time: float, n_nonfinite: int, epochs: int = 0, grad_steps: int = 0, n_train: int = 0, n_holdout: int = 0
    ) -> ModelTrainingInfo:
        """The summary of a call that kept the model as it was (``ModelTrainingInfo.reverted``)."""
        nan_per_member = np.full(self.model.ensemble_size, np.nan)
        info = ModelTrainingInfo(
            epochs=epochs,
            train_loss=float("nan"),
            holdout_mse=float("nan"),
            holdout_mse_per_member=nan_per_member,
            holdout_nll=float("nan"),
            elite_indices=self.model.elite_indices.cpu().numpy(),
            n_train=n_train,
            n_holdout=n_holdout,
            seconds=time.perf_counter() - start_time,
            grad_steps=grad_steps,
            n_nonfinite=n_nonfinite,
            reverted=True,
        )
        if self.verbose >= 1:
            print(f"[dynamics] kept the previous model ({n_nonfinite} non-finite rows dropped, {n_train} rows trained on)")
        return info
