"""
Algorithm 2's model step, once per interaction epoch of ``model_train_freq`` environment steps: a new policy version,
the dynamics model trained on real data drawn per the policy mixture (lines 2-4, Eq. 5), and model rollouts from start
states drawn per the same mixture into the model buffer (lines 7-10).

:class:`ModelStepSAC` is SB3's ``SAC`` with these methods; it has no constructor of its own and is not meant to be
used alone: :class:`~sb3_pmac.pmac.PMAC` (and so :class:`~sb3_pmac.mbpo.MBPO`) builds the attributes annotated below
and calls :meth:`~ModelStepSAC._model_step` from its ``train``.
"""

import time
import warnings
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.sac import SAC

from sb3_pmac.buffers import PolicyVersionedReplayBuffer
from sb3_pmac.dynamics import ModelTrainer, ModelTrainingInfo, ProbabilisticEnsemble
from sb3_pmac.dynamics.layers import round_off_spread
from sb3_pmac.dynamics.model_trainer import DEFAULT_MODEL_GRAD_STEPS
from sb3_pmac.horizon import HorizonSchedule, epoch_at, horizon_at, model_buffer_capacity
from sb3_pmac.model_buffer import ModelReplayBuffer
from sb3_pmac.policy_mixture import PolicyMixture, bounded_train_size
from sb3_pmac.rollouts import RolloutInfo, rollout_model
from sb3_pmac.termination import TerminationFn
from sb3_pmac.termination.agreement import termination_agreement
from sb3_pmac.tv_mixture import TVPolicyMixture, actor_gaussian, measure_tv_distances

#: Real rewards whose mean or standard deviation exceed this (in absolute value) make raw model targets warn: on
#: Pendulum-v1 with a constant bonus per step, 100 was fitted well (model rewards 94.2 against 93.4), 1000 was not
REWARD_SCALE_WARNING = 100.0


class ModelStepSAC(SAC):
    """
    SAC with Algorithm 2's model step (:meth:`_model_step`): the part of PMAC that trains the dynamics model and fills
    the model buffer. See :class:`~sb3_pmac.pmac.PMAC` for the parameters.
    """

    # Built by PMAC's constructor and ``_setup_model``
    replay_buffer: PolicyVersionedReplayBuffer  # type: ignore[assignment]
    policy_mixture: PolicyMixture | None
    policy_version: int
    adaptation_rate: float
    adapt_model_training: bool
    adapt_rollout_starts: bool
    model_train_freq: int
    model_training: str
    ensemble_size: int
    n_elites: int
    dynamics_kwargs: dict[str, Any]
    model_trainer_kwargs: dict[str, Any]
    model_train_size: int | None
    rollout_batch_size: int
    rollout_horizon: HorizonSchedule
    epoch_length: int
    model_retain_epochs: int
    model_buffer_size: int | None
    termination_fn: TerminationFn | None
    dynamics_model: ProbabilisticEnsemble
    model_trainer: ModelTrainer
    model_buffer: ModelReplayBuffer
    _uniform_mixture: PolicyMixture
    _n_model_steps: int
    _model_step_in_progress: bool
    _timings: dict[str, float]
    _last_model_info: ModelTrainingInfo | None
    _last_rollout_info: RolloutInfo | None
    _last_tv_distances: np.ndarray | None
    _nan_predictions_dropped: int
    _out_of_bounds_dropped: int
    _out_of_bounds_warned: bool
    _kept_model_warned: bool
    _no_finite_data_warned: bool
    _empty_model_buffer_warned: bool
    _reward_scale_warned: bool
    _termination_fn_warned: bool
    _data_range_cache: tuple[Any, int, np.ndarray | None, np.ndarray | None] | None
    _model_rounds_trained: int
    _nonfinite_rows_dropped: int
    _nonfinite_warned: bool
    _model_rounds_kept: int

    def _setup_dynamics_model(self) -> None:
        """Build the ensemble :math:`\\hat T_\\theta`, its trainer (the budget of ``model_training``) and the model buffer."""
        assert isinstance(self.observation_space, spaces.Box) and isinstance(self.action_space, spaces.Box)
        obs_dim = int(np.prod(self.observation_space.shape))
        action_dim = int(np.prod(self.action_space.shape))

        self.dynamics_model = ProbabilisticEnsemble(
            obs_dim,
            action_dim,
            ensemble_size=self.ensemble_size,
            n_elites=self.n_elites,
            device=self.device,
            **self.dynamics_kwargs,
        )
        if self.model_training == "bounded":
            trainer_defaults: dict[str, Any] = {"max_grad_steps": DEFAULT_MODEL_GRAD_STEPS, "max_epochs": None}
        else:
            trainer_defaults = {"max_epochs": None}  # MBPO: until early stopping
        trainer_kwargs = {"seed": self.seed, **trainer_defaults, **self.model_trainer_kwargs}
        self.model_trainer = ModelTrainer(self.dynamics_model, **trainer_kwargs)
        # a loaded agent's count of trained models goes on (the trainer is rebuilt, not saved)
        self.model_trainer.n_trained = int(getattr(self, "_model_rounds_trained", 0))
        # Allocated at the first rollout, when the horizon (hence MBPO's capacity) is known
        self.model_buffer = ModelReplayBuffer(1, obs_dim, action_dim, device=self.device)

    def set_random_seed(self, seed: int | None = None) -> None:
        """
        SB3's seeding (python, numpy, torch, the action space) and the model trainer's own generator (its hold-out
        splits and minibatch orders), so that re-seeding an agent repeats its run as SB3's ``set_random_seed`` does.

        :param seed: the seed (None: nothing is re-seeded, as in SB3)
        """
        super().set_random_seed(seed)
        if seed is not None and getattr(self, "model_trainer", None) is not None:  # (None while _setup_model runs)
            self.model_trainer.rng = np.random.default_rng(seed)

    def _model_step(self) -> None:
        """
        Algorithm 2, lines 2-4 and 7-10, once per interaction epoch of ``model_train_freq`` env steps:

        1. a new policy version (the policy about to collect the next epoch) and Algorithm 1's weights :math:`w^k`;
        2. the model's training data drawn from the real buffer :math:`\\mathbb{D}_e` per :math:`w^k` (uniformly for
           MBPO) and the ensemble :math:`\\hat T_\\theta` trained on it (Eq. 5, :meth:`train_dynamics_model`);
        3. ``rollout_batch_size`` start states drawn per :math:`w^k`, the current actor rolled out in the model for the
           scheduled horizon :math:`H` into the model buffer :math:`\\mathbb{D}_m` (:meth:`rollout`).
        """
        assert self.policy_mixture is not None
        # Line 2: Algorithm 1 (the policy about to collect the next interaction epoch becomes a new version; the
        # mixture's weights follow from the version ids of the buffer's data). A model step that was interrupted (an
        # exception, Ctrl-C) is run again in the version it started: a new one would hold the few transitions
        # collected in between and still weigh as much as a whole policy.
        if not self._model_step_in_progress:
            self.policy_version = self.replay_buffer.start_new_version()
            self._n_model_steps += 1
            self._model_step_in_progress = True

        # Lines 3-4: training data drawn according to w^k, maximum likelihood (Eq. 5)
        start = time.perf_counter()
        if isinstance(self.policy_mixture, TVPolicyMixture) and self.uses_policy_mixture:
            # PDML: w^k from the distances between each version's policy and the current one
            versions, self._last_tv_distances = self._measure_tv_distances()
            self.policy_mixture.set_distances(versions, self._last_tv_distances)
        self._last_model_info = self.train_dynamics_model()
        self._timings["model_train"] += time.perf_counter() - start
        self._check_model_training(self._last_model_info)

        # Lines 7-10: rollouts from start states drawn according to w^k (once a model has been trained)
        self._check_termination_fn()
        start = time.perf_counter()
        self._last_rollout_info = self.rollout() if self.model_rounds_trained > 0 else None
        self._timings["rollout"] += time.perf_counter() - start
        if self.model_buffer.size() == 0 and not self._empty_model_buffer_warned:
            self._empty_model_buffer_warned = True  # once per agent (rollout/model_buffer_size goes on)
            warnings.warn(
                f"The model buffer is empty after the model step at step {self.num_timesteps} (no trained model yet, "
                "or every rollout prediction was non-finite or out of range): SAC trains on real data only until a "
                "model step fills it (said once; rollout/model_buffer_size in the logs)",
                UserWarning,
                stacklevel=2,
            )
        self._model_step_in_progress = False
        self._log_model_step()

    @property
    def model_rounds_trained(self) -> int:
        """Model trainings that produced a model (those that kept the previous one do not count)."""
        return self._model_rounds_trained  # agents of earlier releases: their model steps (sb3_pmac.compat)

    def _check_model_training(self, info: ModelTrainingInfo) -> None:
        """Count (and say) the non-finite rows dropped and the trainings that kept the previous model."""
        self._model_rounds_trained += 0 if info.reverted else 1
        self._nonfinite_rows_dropped += info.n_nonfinite
        self._model_rounds_kept += int(info.reverted)
        if info.n_nonfinite > 0 and not self._nonfinite_warned:
            self._nonfinite_warned = True  # once per agent: the rows stay in the buffer (train/model_nonfinite_rows_dropped)
            warnings.warn(
                f"{info.n_nonfinite} transitions with NaN or infinite values were left out of the model's training data "
                f"at step {self.num_timesteps} (SB3's VecCheckNan finds where they come from; said once, the count "
                "goes on in the logs)",
                UserWarning,
                stacklevel=3,
            )
        if not info.reverted:
            return
        kept = "the previous model is kept" if self.model_rounds_trained > 0 else "no model yet: no rollouts"
        if info.n_train == 0 and not self._no_finite_data_warned:
            self._no_finite_data_warned = True  # once per agent (train/model_trainings_kept_previous counts them)
            warnings.warn(
                f"The model training at step {self.num_timesteps} had no finite data: every one of its "
                f"{info.n_nonfinite} rows held NaN or infinite values: {kept} (said once; "
                "train/model_trainings_kept_previous counts them)",
                UserWarning,
                stacklevel=3,
            )
        elif info.n_train > 0 and not self._kept_model_warned:
            self._kept_model_warned = True  # once per agent (train/model_trainings_kept_previous counts them)
            warnings.warn(
                f"The model training at step {self.num_timesteps} produced no usable model: its predictions were not "
                f"finite, although its {info.n_train} training rows were (values too large for float32 arithmetic, "
                f"e.g. an observation or reward of 1e20 in the replay buffer): {kept} (said once; "
                "train/model_trainings_kept_previous counts them)",
                UserWarning,
                stacklevel=3,
            )

    def _check_termination_fn(self) -> None:
        """Warn (once) when the termination function disagrees with the env's own terminations on the real data."""
        if self._termination_fn_warned or self.termination_fn is None:
            return
        agreement = termination_agreement(self.termination_fn, self.replay_buffer, seed=self.num_timesteps)
        if agreement.disagrees():
            self._termination_fn_warned = True
            warnings.warn(
                f"The termination function of the model rollouts ({type(self.termination_fn).__name__}) disagrees with "
                f"the env on the real data at step {self.num_timesteps}: it misses {agreement.n_missed} of "
                f"{agreement.n_terminal} real terminations and ends {agreement.n_false} of {agreement.n_nonterminal} "
                "real non-terminal transitions checked, so model transitions bootstrap where the env would not. Pass "
                "termination_fn=... that reads the env's observations as they are stored (sb3_pmac.termination has "
                "the MuJoCo rules) or register one with sb3_pmac.termination.register_termination_fn()",
                UserWarning,
                stacklevel=3,
            )

    #: ``mixture="tv"``: number of states drawn (uniformly, with replacement) from each version's data to average its
    #: distance to the current policy (:func:`~sb3_pmac.tv_mixture.measure_tv_distances`); set it on the instance to change it.
    tv_states_per_version: int = 64

    def _measure_tv_distances(self) -> tuple[np.ndarray, np.ndarray]:
        """``mixture="tv"``: per-version distance to the current policy (:func:`~sb3_pmac.tv_mixture.measure_tv_distances`)."""
        normalize = self._vec_normalize_env.normalize_obs if self._vec_normalize_env is not None else None
        return measure_tv_distances(
            self.replay_buffer,
            lambda obs: actor_gaussian(self.actor, obs),
            int(self.tv_states_per_version),
            normalize_obs=normalize,  # type: ignore[arg-type]
            device=self.device,
        )

    def data_mixture(self, adapt: bool) -> PolicyMixture:
        """The mixture data is drawn with: the policy mixture if ``adapt`` (PMAC), else uniform over transitions (MBPO)."""
        assert self.policy_mixture is not None
        return self.policy_mixture if adapt else self._uniform_mixture

    @property
    def uses_policy_mixture(self) -> bool:
        """Whether the model's training data or the rollout starts are drawn per the policy mixture (PMAC, ablations)."""
        return self.adapt_model_training or self.adapt_rollout_starts

    @property
    def n_model_steps(self) -> int:
        """Model steps (interaction epochs: new version, model training, rollouts) run so far."""
        return self._n_model_steps

    def model_training_rows(self) -> int:
        """Number of real transitions in the next model training set (see ``model_training``)."""
        stored = self.replay_buffer.size() * self.replay_buffer.n_envs
        if self.model_training == "full":
            return stored
        if self.model_train_size is not None:
            return int(self.model_train_size)
        # model_train_freq counts transitions of all envs (num_timesteps), so a version holds ~model_train_freq rows
        return min(stored, bounded_train_size(self.model_train_freq, self.adaptation_rate, stored))

    def train_dynamics_model(self) -> ModelTrainingInfo:
        """Train the ensemble on transitions drawn from the real buffer per the policy mixture (Algorithm 2, l. 3-4)."""
        mixture = self.data_mixture(self.adapt_model_training)
        batch_inds, env_inds = self.replay_buffer.select_indices_by_mixture(self.model_training_rows(), mixture)
        data = self.replay_buffer.get_transitions(batch_inds, env_inds)  # raw (unnormalized) observations
        self._check_reward_scale(data.rewards)
        return self.model_trainer.train(
            data.observations,
            data.actions,
            data.rewards,
            data.next_observations,
            sample_ids=batch_inds * self.replay_buffer.n_envs + env_inds,
        )

    def _check_reward_scale(self, rewards: th.Tensor) -> None:
        """
        Warn (once per agent) when the real rewards' mean or spread exceed :data:`REWARD_SCALE_WARNING` and the model
        fits raw targets: the rollouts' rewards then go wrong without any other sign (the states are predicted well, so
        neither the out-of-range check nor the losses' trend shows it).
        """
        if self._reward_scale_warned or self.dynamics_model.normalize_targets:
            return
        values = rewards.detach().double().reshape(-1)
        values = values[th.isfinite(values)]
        if values.numel() == 0:
            return
        mean, std = float(values.mean()), float(values.std(unbiased=False))
        if max(abs(mean), std) > REWARD_SCALE_WARNING:
            self._reward_scale_warned = True
            warnings.warn(
                f"The real rewards have mean {mean:.4g} and standard deviation {std:.4g}: the dynamics model fits raw "
                "targets (as MBPO's model does), and predicts rewards of this scale poorly (Pendulum-v1 with a constant "
                "bonus of 1000 per step: model rewards 746 +- 432 against real ones of 994 +- 4; with 10 000: about 0), "
                "which nothing else shows. Pass dynamics_kwargs=dict(normalize_targets=True) (targets standardized per "
                "dimension), or scale the env's rewards with a gymnasium wrapper (TransformReward; SB3's VecNormalize "
                "does not help here: the replay buffer, which the model trains on, keeps the original rewards)",
                UserWarning,
                stacklevel=4,
            )

    def current_rollout_horizon(self) -> int:
        """
        The horizon of the schedule at the current epoch. As in MBPO's code, epochs count from the end of the random
        warm-up: ``(num_timesteps - learning_starts) / epoch_length``.
        """
        return horizon_at(epoch_at(self.num_timesteps, self.learning_starts, self.epoch_length), self.rollout_horizon)

    def model_buffer_capacity_at(self, horizon: int) -> int:
        """
        The model buffer's capacity at rollout horizon ``horizon``: ``model_buffer_size`` when set, else MBPO's rule
        (:func:`~sb3_pmac.horizon.model_buffer_capacity`).
        """
        if self.model_buffer_size is not None:
            return int(self.model_buffer_size)
        rollouts_per_epoch = self.epoch_length / self.model_train_freq  # as MBPO: 1000 / 400 = 2.5, not 2
        return model_buffer_capacity(self.rollout_batch_size, horizon, rollouts_per_epoch, self.model_retain_epochs)

    def rollout(self) -> RolloutInfo:
        """Roll the current actor in the learned model from start states drawn per the mixture (Algorithm 2, l. 7-10)."""
        horizon = self.current_rollout_horizon()
        self.model_buffer.resize(self.model_buffer_capacity_at(horizon))
        mixture = self.data_mixture(self.adapt_rollout_starts)
        starts = self.replay_buffer.sample_by_mixture(self.rollout_batch_size, mixture).observations
        assert self.termination_fn is not None
        bounds, constants = self.rollout_state_bounds(), self.rollout_constant_features()
        policy, termination = self.rollout_policy, self.termination_fn
        info = rollout_model(
            self.dynamics_model, policy, termination, starts, horizon, self.model_buffer, state_bounds=bounds,
            constant_features=constants,
        )  # fmt: skip
        self._nan_predictions_dropped += info.nan_predictions_dropped
        self._nonfinite_rows_dropped += info.nonfinite_starts_dropped
        self._out_of_bounds_dropped += info.out_of_bounds_dropped
        predictions = info.n_transitions + info.nan_predictions_dropped + info.out_of_bounds_dropped
        if info.out_of_bounds_dropped > 0.1 * max(predictions, 1) and not self._out_of_bounds_warned:
            self._out_of_bounds_warned = True
            warnings.warn(
                f"{info.out_of_bounds_dropped} of {predictions} model predictions at step {self.num_timesteps} left the "
                f"real data's range (per dimension, by more than {self.rollout_bounds_margin} times its width) and were "
                "dropped. A model that drifts that far is trained too little for its data (few gradient steps per "
                "training: model_trainer_kwargs' max_epochs / max_grad_steps) or fitted on targets of very different "
                "scales (e.g. a nearly constant observation, or rewards far from 1): then try "
                "dynamics_kwargs=dict(normalize_targets=True)",
                UserWarning,
                stacklevel=3,
            )
        return info

    #: Model rollouts drop a branch whose predicted state leaves the real data's range by more than this many times
    #: the range's width in some dimension (:meth:`rollout_state_bounds`); ``None`` turns the bounds off. Set it on
    #: the instance to change it. On Hopper's 100k-step campaign buffers no prediction at horizon 15 went beyond 0.6.
    rollout_bounds_margin: float | None = 1.0

    def rollout_state_bounds(self) -> tuple[th.Tensor, th.Tensor] | None:
        """
        Bounds of the states model rollouts may reach: per dimension, the range of the real (finite) observations
        widened by ``rollout_bounds_margin`` times its width on each side; a dimension constant in the data (also
        up to round-off in the coarser of the observations' and the model's precision,
        :func:`~sb3_pmac.dynamics.layers.round_off_spread`) is left unbounded. A guard against models
        that diverge (a branch beyond it is dropped, as a non-finite one is), not a constraint on ordinary
        extrapolation. The range is kept up to date from the transitions added since the last
        call (the extremes of transitions the buffer has since overwritten stay in it). The observation space's own
        finite bounds are not applied, as MBPO applies none: an imperfect model predicts states the env cannot produce
        (e.g. Pendulum's ``cos`` above 1), which stay in the rollouts unless they leave this wider range.

        :return: ``(low, high)`` on the agent's device, in the precision of the stored observations (float64 ones
            keep small ranges at large magnitudes), or ``None`` when ``rollout_bounds_margin`` is ``None`` or no
            finite observation is stored
        """
        if self.rollout_bounds_margin is None:
            return None
        data_range = self._real_data_range()
        if data_range is None:
            return None
        low, high = data_range
        margin = float(self.rollout_bounds_margin) * (high - low)
        constant = self._constant_features(low, high)
        low, high = np.where(constant, -np.inf, low - margin), np.where(constant, np.inf, high + margin)
        dtype = self._rollout_dtype()
        return th.as_tensor(low, dtype=dtype, device=self.device), th.as_tensor(high, dtype=dtype, device=self.device)

    #: Whether model rollouts keep the features that are constant in the real data at their constant value
    #: (:meth:`rollout_constant_features`); ``False``: the model's predictions as they are, as in MBPO
    rollout_fix_constant_features: bool = True

    def rollout_constant_features(self) -> tuple[th.Tensor, th.Tensor] | None:
        """
        The observation features constant in the real data (up to round-off, as :meth:`rollout_state_bounds` tells
        them) and their values, which model rollouts keep: a model fitted on a constant target still predicts it with
        noise (on Pusher-v5, whose goal position is fixed, the model buffer's goal coordinates spread with a standard
        deviation of 0.27 after two model trainings and 0.01 after six, up to 2.3 and 0.17 away from the constant),
        and states the env never produces would reach SAC.

        :return: ``(mask, values)`` on the agent's device, or ``None`` when ``rollout_fix_constant_features`` is False,
            no finite observation is stored, or no feature is constant
        """
        if not self.rollout_fix_constant_features:
            return None
        data_range = self._real_data_range()
        if data_range is None:
            return None
        low, high = data_range
        constant = self._constant_features(low, high)
        if not constant.any():
            return None
        dtype = self._rollout_dtype()
        values = th.as_tensor((low + high) / 2, dtype=dtype, device=self.device)
        return th.as_tensor(constant, device=self.device), values

    def _constant_features(self, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """
        The features whose real range is within round-off in the coarser of the stored observations' and the model's
        precision (a float32 value with a 1-ulp jitter, also when the env hands it out as float64): the model cannot
        resolve such a range, and its noise would leave it at every step.
        """
        stored_dtype = self.replay_buffer.observations.dtype
        dtypes: list[np.dtype | th.dtype] = [self.dynamics_model.max_logvar.dtype]
        if stored_dtype.kind == "f":
            dtypes.append(stored_dtype)
        return high - low <= round_off_spread(np.maximum(np.abs(low), np.abs(high)), *dtypes)

    def _rollout_dtype(self) -> th.dtype:
        """The precision of the rollouts' states: the stored observations' or the model's, the finer."""
        return th.promote_types(th.from_numpy(self.replay_buffer.observations[:0]).dtype, self.dynamics_model.max_logvar.dtype)

    def _real_data_range(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-dimension (min, max) of the finite real observations and next observations, in float64, kept up to date."""
        buffer = self.replay_buffer
        cache = self._data_range_cache
        n_written = buffer.n_written
        if cache is not None and cache[0] is buffer and 0 <= n_written - cache[1] <= buffer.buffer_size:
            positions = np.arange(cache[1], n_written) % buffer.buffer_size  # only the rows added since
            low, high = cache[2], cache[3]
        else:  # first call, another buffer (load_replay_buffer), or more new rows than the buffer holds
            positions = np.arange(buffer.size())
            low = high = None
        obs_dim = buffer.obs_shape[0]
        for stored in (buffer.observations, buffer.next_observations):
            rows = stored[positions].reshape(-1, obs_dim)
            rows = rows[np.isfinite(rows).all(axis=1)]
            if len(rows) > 0:
                rows_low, rows_high = rows.min(axis=0).astype(np.float64), rows.max(axis=0).astype(np.float64)
                low = rows_low if low is None else np.minimum(low, rows_low)
                high = rows_high if high is None else np.maximum(high, rows_high)
        self._data_range_cache = (buffer, n_written, low, high)
        return None if low is None or high is None else (low, high)

    def rollout_policy(self, observations: th.Tensor) -> th.Tensor:
        """
        The current actor, stochastic, on raw observations (normalized first when the env is a VecNormalize).

        With gSDE (``use_sde=True``) the actor's noise is ``features(s) @ M`` with one exploration matrix ``M`` for
        the whole batch: every branch, at every model step, would get the same noise function, i.e. a single action
        per state. Each row here gets the noise of its own fresh matrix instead, drawn from its exact distribution
        (a Gaussian whose variance is ``features(s)**2 @ std**2``, SB3's ``StateDependentNoiseDistribution``), as if
        every branch were an env with its own matrix, resampled at every step.
        """
        if self._vec_normalize_env is not None:
            normalized = self._vec_normalize_env.normalize_obs(observations.cpu().numpy())
            observations = th.as_tensor(normalized, device=self.device)
        if not self.actor.use_sde:
            return self.actor(observations, deterministic=False)
        mean_actions, log_std, kwargs = self.actor.get_action_dist_params(observations)
        distribution = self.actor.action_dist.proba_distribution(mean_actions, log_std, kwargs["latent_sde"])
        actions = distribution.distribution.rsample()  # Normal(mean, sqrt(latent**2 @ std**2)): a fresh matrix per row
        return actions if distribution.bijector is None else distribution.bijector.forward(actions)

    def _log_model_step(self) -> None:
        assert self.policy_mixture is not None
        model_info, rollout_info = self._last_model_info, self._last_rollout_info
        if model_info is not None:
            self.logger.record("train/model_loss", model_info.train_loss)
            self.logger.record("train/model_holdout_loss", model_info.holdout_mse)
            self.logger.record("train/model_holdout_nll", model_info.holdout_nll)
            self.logger.record("train/model_epochs", model_info.epochs)
            self.logger.record("train/model_grad_steps", model_info.grad_steps)
            self.logger.record("train/model_train_rows", model_info.n_train + model_info.n_holdout)
            self.logger.record("train/n_elites", len(model_info.elite_indices))
        # real transitions with a NaN or infinite value left out of model training and rollout starts, so far
        self.logger.record("train/model_nonfinite_rows_dropped", self._nonfinite_rows_dropped)
        self.logger.record("train/model_trainings_kept_previous", self._model_rounds_kept)
        # Algorithm 1's weights over the versions from the oldest with data to the current one (which has none yet)
        versions = np.arange(self.replay_buffer.oldest_version, self.policy_version + 1)
        self.logger.record("train/policy_version", self.policy_version)
        if self.uses_policy_mixture:  # MBPO draws uniformly: no mixture to describe
            self.logger.record("train/mixture_effective_policies", self.policy_mixture.effective_number_of_policies(versions))
        if self._last_tv_distances is not None and len(self._last_tv_distances) > 0:
            # mixture="tv": distances of the versions with data to the current policy, and the newest chunk's share
            self.logger.record("train/mixture_tv_mean", float(np.mean(self._last_tv_distances)))
            self.logger.record("train/mixture_tv_min", float(np.min(self._last_tv_distances)))
            self.logger.record("train/mixture_tv_max", float(np.max(self._last_tv_distances)))
            # (the newest chunk never weighs less than an older version: its share is the largest weight)
            self.logger.record("train/mixture_newest_share", float(self.policy_mixture.weights(versions).max(initial=0.0)))
        if rollout_info is not None:
            self.logger.record("rollout/model_horizon", rollout_info.horizon)
            self.logger.record("rollout/model_rollout_length", rollout_info.mean_length)
        self.logger.record("rollout/model_buffer_size", self.model_buffer.size())
        self.logger.record("rollout/nan_predictions_dropped", self._nan_predictions_dropped)
        self.logger.record("rollout/out_of_bounds_dropped", self._out_of_bounds_dropped)
        self.logger.record("time/model_train_s", self._timings["model_train"])
        self.logger.record("time/rollout_s", self._timings["rollout"])
