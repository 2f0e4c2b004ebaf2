"""
PMAC: Policy-adaptation Model-based Actor-Critic (Wang, Wongkamjan and Huang, 2022), and MBPO as its special case.
"""

import io
import pathlib
import time
import warnings
from contextlib import nullcontext
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.save_util import load_from_zip_file, recursive_getattr
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import check_for_correct_spaces, get_device
from stable_baselines3.sac import SAC
from stable_baselines3.sac.policies import SACPolicy

from sb3_pmac import fast_sac
from sb3_pmac.buffer_files import load_buffers, save_buffers
from sb3_pmac.buffers import PolicyVersionedReplayBuffer
from sb3_pmac.checks import (
    DEFAULT_ADAPTATION_RATE,
    DEFAULT_MAX_RATE,
    DEFAULT_MIXTURE,
    MixtureName,
    ModelTrainingMode,
    check_component_kwargs,
    check_load_overrides,
    check_load_values,
    check_pmac_arguments,
    check_policy_name,
    check_spaces,
    warn_model_buffer_memory,
    warn_questionable_settings,
    warn_unused_mixture_arguments,
    warn_unused_sac_arguments,
)
from sb3_pmac.compat import legacy_defaults, legacy_policy_version, saved_data
from sb3_pmac.dynamics import ModelTrainingInfo
from sb3_pmac.env_presets import apply_presets
from sb3_pmac.horizon import HorizonSchedule, max_horizon, validate_horizon_schedule, warn_table_1_order
from sb3_pmac.mixed_sampler import MixedReplaySampler
from sb3_pmac.model_step import ModelStepSAC
from sb3_pmac.policy_mixture import PolicyMixture
from sb3_pmac.random_state import get_global_rng_states, preserved_rng_states, set_global_rng_states
from sb3_pmac.rollouts import RolloutInfo
from sb3_pmac.termination import TerminationFn, get_termination_fn
from sb3_pmac.termination.rules import terminations
from sb3_pmac.tv_mixture import UNIFORM_ACTION_LOG_STD, TVPolicyMixture, actor_gaussian

SelfPMAC = TypeVar("SelfPMAC", bound="PMAC")


class PMAC(ModelStepSAC):
    """
    Policy-adaptation Model-based Actor-Critic (PMAC): MBPO whose model-training data and rollout start states are
    drawn per policy version with the weights of Algorithm 1, tilted towards the current policy.

    Paper: https://arxiv.org/abs/2207.12141 (defaults: Table 2). Algorithm 2 is :meth:`train` and the model step
    :meth:`~sb3_pmac.model_step.ModelStepSAC._model_step`; the docs' algorithm page maps the paper to the code and
    describes the PDML variant (``mixture="tv"``).

    :param policy: The policy model to use (``MlpPolicy``), or an environment id as shorthand:
        ``PMAC("Hopper-v4")`` is ``PMAC("MlpPolicy", "Hopper-v4")``
    :param env: The environment to learn from (if registered in Gym, can be str; then the paper's preset for that
        task is applied: horizon schedule, MBPO's truncated observations for Ant and Humanoid)
    :param learning_rate: learning rate of the SAC networks (Adam)
    :param buffer_size: size of the real replay buffer
    :param learning_starts: number of random warm-up steps before learning (5000 in the paper)
    :param batch_size: Minibatch size of each SAC update
    :param tau: the soft update coefficient ("Polyak update", between 0 and 1)
    :param gamma: the discount factor
    :param train_freq: Update the agent every ``train_freq`` steps (``(n, "step")`` or ``(n, "episode")``); the SAC
        updates only: model steps run every ``model_train_freq`` environment steps in any case
    :param gradient_steps: SAC updates per ``train_freq`` (20 per environment step in the paper); 0 collects
        without training (no model steps either), -1 makes as many updates as environment steps collected
    :param action_noise: the action noise type (None by default)
    :param replay_buffer_class: Replay buffer class; must be a :class:`~sb3_pmac.buffers.PolicyVersionedReplayBuffer` (default)
    :param replay_buffer_kwargs: Keyword arguments to pass to the replay buffer on creation.
    :param optimize_memory_usage: Not supported by PMAC (raises ``ValueError``)
    :param n_steps: n-step returns of SB3's SAC; only 1 is supported (model rollouts produce one-step transitions)
    :param ent_coef: Entropy regularization coefficient. Default 0.2, fixed, as in the SAC of the paper's base code
        (mbpo_pytorch) and the rl-zoo3 YAMLs; ``"auto"`` (SB3's default) learns it towards ``target_entropy``, starting
        from 1 (``"auto_0.1"``: from 0.1)
    :param target_update_interval: update the target network every ``target_update_interval`` gradient steps
    :param target_entropy: target entropy when learning ``ent_coef`` (``ent_coef="auto"``); with a fixed ``ent_coef``
        it has no effect (a value other than ``"auto"`` then warns)
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE)
    :param sde_sample_freq: Sample a new noise matrix every n steps when using gSDE
    :param use_sde_at_warmup: Whether to use gSDE instead of uniform sampling during the warm up phase
    :param adaptation_rate: the policy-adaptation rate :math:`\\alpha` of Algorithm 1, in (0, 1] (0.9 in the paper):
        the weights of ``mixture="exponential"``; with ``model_training="bounded"`` it also sizes the training set
        (see ``model_train_size``), for every mixture and for MBPO
    :param mixture: the policy mixture that weights the versions where ``adapt_model_training`` /
        ``adapt_rollout_starts`` ask for it: ``"exponential"`` (Algorithm 1 of the paper, :math:`w_i \\propto
        \\alpha^{k-i}`) or ``"tv"`` (the authors' PDML code: inverse total-variation distance to the current policy,
        :class:`~sb3_pmac.tv_mixture.TVPolicyMixture`). ``"tv"`` stores ``2 * action_dim`` more floats per real
        transition and measures each version's distance on ``tv_states_per_version`` of its states at every model step
    :param max_rate: ``mixture="tv"`` only: share of the newest chunk of data (the last ``model_train_freq`` steps) in
        the mixture, in [0, 1); it is a floor, raised to the weight of the closest older version when that is larger,
        as in the authors' code (default 0.02, their value)
    :param adapt_model_training: draw the model's training data per the policy mixture (else uniformly)
    :param adapt_rollout_starts: draw the rollout start states per the policy mixture (else uniformly)
    :param real_ratio: share :math:`\\rho` of real transitions in each SAC batch, in [0, 1] (0.05 in the paper)
    :param model_train_freq: environment steps between model trainings = length of an interaction epoch, i.e. of
        one policy version (250 in the paper)
    :param rollout_batch_size: number of start states per model rollout (100k as in MBPO)
    :param rollout_horizon: horizon schedule: an int, or ``(a, b, x, y)``: horizon ``x`` until epoch ``a``, then
        linearly up to ``y`` at epoch ``b`` (Appendix D.1). ``None``: the env's preset, else 1
    :param epoch_length: environment steps per epoch of the horizon schedule (1000)
    :param model_retain_epochs: epochs of model data kept in the model buffer (MBPO: 1)
    :param model_buffer_size: capacity of the model buffer; ``None`` sizes it as MBPO does: rollout batch x horizon x
        rollouts per epoch x retained epochs (it then grows with the horizon)
    :param ensemble_size: number of networks in the dynamics ensemble (7)
    :param n_elites: number of elite networks used for rollouts (5)
    :param dynamics_kwargs: extra arguments of :class:`~sb3_pmac.dynamics.ensemble.ProbabilisticEnsemble`
        (``hidden_sizes``, ``activation``, ``weight_decays``, ...)
    :param model_trainer_kwargs: extra arguments of :class:`~sb3_pmac.dynamics.model_trainer.ModelTrainer`
        (``learning_rate``, ``batch_size``, ``holdout_ratio``, ``max_grad_steps``, ``max_epochs``, ``bootstrap``, ...)
    :param model_training: ``"bounded"`` (default): each model training draws ``model_train_size`` transitions per
        the mixture and takes at most ``max_grad_steps`` (``DEFAULT_MODEL_GRAD_STEPS``) gradient steps next to early
        stopping, so its cost does not grow with the buffer. ``"full"``: as many transitions as the buffer holds
        (MBPO's selection: every stored transition once), early stopping only, as in the authors' code; its cost
        grows linearly with the run
    :param model_train_size: ``model_training="bounded"``: transitions drawn from the real buffer per model
        training (without replacement where the mixture allows); ``None``: Algorithm 1's effective support,
        ``model_train_freq * (1 + alpha) / (1 - alpha)`` (4750 at the defaults), capped at the buffer's size
    :param max_train_repeat_per_step: the update ramp of the paper's base code (mbpo_pytorch's
        ``max_train_repeat_per_step``, 5 there): within each epoch of ``epoch_length`` steps after the warm-up, a step's
        SAC updates are skipped while the epoch's updates so far exceed this many times the steps since the warm-up.
        With 5 and ``gradient_steps=20`` that averages 5, 10 and 15 updates per step in the first three epochs and 20
        from then on (about 30 000 fewer updates early on). ``None`` (default): ``gradient_steps`` from the first step,
        as Table 2 says (MBPO's original code, on softlearning, raises the cap to the updates per step, so it never
        binds). The model steps are not affected
    :param termination_fn: ``(obs, action, next_obs) -> done`` for model rollouts, on batched tensors (raw
        observations; actions scaled to [-1, 1], as SB3 stores them); ``None``: looked up from the env
        (see :mod:`sb3_pmac.termination`)
    :param use_presets: apply the paper's preset of the env's task when its id is known (given as a string, or the
        spec id of the env passed): the horizon schedule (unless ``rollout_horizon`` is given) and, for an id given as
        a string, MBPO's truncated Ant/Humanoid observations; ``verbose=1`` prints what was applied
    :param stats_window_size: Window size for the rollout logging
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation
    :param verbose: Verbosity level: 0 for no output, 1 for info messages, 2 for debug messages
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    #: ``"MlpPolicy"`` only: SAC's other policies are refused (:func:`~sb3_pmac.checks.check_policy_name`)
    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": SAC.policy_aliases["MlpPolicy"]}
    #: Whether the policy mixture is Algorithm 1 (PMAC) by default; ``MBPO`` turns both switches off.
    _adapt_by_default: ClassVar[bool] = True

    def __init__(
        self,
        policy: str | type[SACPolicy],
        env: GymEnv | str | None = None,
        learning_rate: float | Schedule = 3e-4,
        buffer_size: int = 1_000_000,
        learning_starts: int = 5000,
        batch_size: int = 256,
        tau: float = 0.005,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 20,
        action_noise: ActionNoise | None = None,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        optimize_memory_usage: bool = False,
        n_steps: int = 1,
        ent_coef: str | float = 0.2,
        target_update_interval: int = 1,
        target_entropy: str | float = "auto",
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        use_sde_at_warmup: bool = False,
        adaptation_rate: float = DEFAULT_ADAPTATION_RATE,
        mixture: MixtureName = DEFAULT_MIXTURE,
        max_rate: float = DEFAULT_MAX_RATE,
        adapt_model_training: bool | None = None,
        adapt_rollout_starts: bool | None = None,
        real_ratio: float = 0.05,
        model_train_freq: int = 250,
        rollout_batch_size: int = 100_000,
        rollout_horizon: HorizonSchedule | None = None,
        epoch_length: int = 1000,
        model_retain_epochs: int = 1,
        model_buffer_size: int | None = None,
        ensemble_size: int = 7,
        n_elites: int = 5,
        dynamics_kwargs: dict[str, Any] | None = None,
        model_trainer_kwargs: dict[str, Any] | None = None,
        model_training: ModelTrainingMode = "bounded",
        model_train_size: int | None = None,
        max_train_repeat_per_step: int | None = None,
        termination_fn: TerminationFn | None = None,
        use_presets: bool = True,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        check_policy_name(policy, type(self).__name__, self.policy_aliases)
        # Shorthand PMAC("Hopper-v4"): the first argument is an env id
        if env is None and isinstance(policy, str) and policy not in self.policy_aliases:
            policy, env = "MlpPolicy", policy
        env, env_id, rollout_horizon = apply_presets(type(self).__name__, env, rollout_horizon, use_presets, verbose)
        if env is not None:
            check_spaces(env, type(self).__name__)  # type: ignore[arg-type]
        elif _init_setup_model:  # SB3's load builds the agent without an env (and without setting it up)
            raise ValueError(
                f"{type(self).__name__} needs an environment: {type(self).__name__}('MlpPolicy', env) or an env id, "
                f"e.g. {type(self).__name__}('Hopper-v4')"
            )
        self.rollout_horizon = validate_horizon_schedule(rollout_horizon)
        warn_table_1_order(self.rollout_horizon)
        check_pmac_arguments(
            optimize_memory_usage=optimize_memory_usage,
            n_steps=n_steps,
            replay_buffer_class=replay_buffer_class,
            learning_starts=learning_starts,
            gradient_steps=gradient_steps,
            real_ratio=real_ratio,
            adaptation_rate=adaptation_rate,
            mixture=mixture,
            max_rate=max_rate,
            model_training=model_training,
            model_train_freq=model_train_freq,
            rollout_batch_size=rollout_batch_size,
            epoch_length=epoch_length,
            model_retain_epochs=model_retain_epochs,
            ensemble_size=ensemble_size,
            n_elites=n_elites,
            buffer_size=buffer_size,
            batch_size=batch_size,
            model_buffer_size=model_buffer_size,
            model_train_size=model_train_size,
            max_train_repeat_per_step=max_train_repeat_per_step,
        )
        check_component_kwargs(dynamics_kwargs=dynamics_kwargs, model_trainer_kwargs=model_trainer_kwargs)
        replay_buffer_class = replay_buffer_class or PolicyVersionedReplayBuffer
        if mixture == "tv":
            # the distances need the collecting policy's Gaussian parameters of every real transition
            replay_buffer_kwargs = {**(replay_buffer_kwargs or {}), "store_policy_params": True}

        super().__init__(
            policy,
            env,  # type: ignore[arg-type]
            learning_rate=learning_rate,
            buffer_size=buffer_size,
            learning_starts=learning_starts,
            batch_size=batch_size,
            tau=tau,
            gamma=gamma,
            train_freq=train_freq,
            gradient_steps=int(gradient_steps),  # numpy integers too, as SB3 accepts them
            action_noise=action_noise,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            optimize_memory_usage=False,
            ent_coef=ent_coef,
            target_update_interval=target_update_interval,
            target_entropy=target_entropy,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            use_sde_at_warmup=use_sde_at_warmup,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
        )
        self.env_id = env_id
        self.adaptation_rate = float(adaptation_rate)
        self.mixture = mixture
        self.max_rate = float(max_rate)
        self.adapt_model_training = self._adapt_by_default if adapt_model_training is None else bool(adapt_model_training)
        self.adapt_rollout_starts = self._adapt_by_default if adapt_rollout_starts is None else bool(adapt_rollout_starts)
        warn_unused_sac_arguments(type(self).__name__, ent_coef=ent_coef, target_entropy=target_entropy)
        warn_unused_mixture_arguments(
            type(self).__name__,
            self.uses_policy_mixture,
            adaptation_rate=adaptation_rate,
            mixture=mixture,
            max_rate=max_rate,
            model_training=model_training,
            model_train_size=model_train_size,
        )
        warn_questionable_settings(
            type(self).__name__,
            real_ratio=real_ratio,
            buffer_size=buffer_size,
            model_train_freq=model_train_freq,
            adaptation_rate=adaptation_rate,
            adaptive=self.uses_policy_mixture and mixture == "exponential",
            learning_starts=learning_starts,
            batch_size=batch_size,
        )
        self.real_ratio = float(real_ratio)
        self.model_train_freq = int(model_train_freq)
        self.rollout_batch_size = int(rollout_batch_size)
        self.epoch_length = int(epoch_length)
        self.model_retain_epochs = int(model_retain_epochs)
        self.model_buffer_size = model_buffer_size
        if env is not None:
            largest = max_horizon(self.rollout_horizon)
            assert self.observation_space.shape is not None and self.action_space.shape is not None
            warn_model_buffer_memory(
                type(self).__name__,
                self.model_buffer_capacity_at(largest),
                obs_dim=int(np.prod(self.observation_space.shape)),
                action_dim=int(np.prod(self.action_space.shape)),
                horizon=largest,
                fixed=model_buffer_size is not None,
            )
        self.ensemble_size = int(ensemble_size)
        self.n_elites = int(n_elites)
        self.dynamics_kwargs = dict(dynamics_kwargs or {})
        self.model_trainer_kwargs = dict(model_trainer_kwargs or {})
        self.model_training = model_training
        self.model_train_size = model_train_size
        self.max_train_repeat_per_step = None if max_train_repeat_per_step is None else int(max_train_repeat_per_step)
        self._updates_epoch = -1  # the epoch (after the warm-up) whose SAC updates _epoch_updates counts
        self._epoch_updates = 0
        self.termination_fn = termination_fn
        self._user_termination_fn = termination_fn is not None  # else derived from the env, again on set_env / load

        # Algorithm 1 state, saved with the agent: the mixture's settings and the current policy version (the replay
        # buffer owns the versions but is not saved with the agent; -1: not set yet, or an agent of an earlier release)
        self.policy_mixture: PolicyMixture | None = None
        self.policy_version = -1
        self._next_model_step = 0  # num_timesteps at which the next interaction epoch starts
        self._n_model_steps = 0
        self._model_step_in_progress = False  # True from a model step's new version until its rollouts are done
        self._model_rounds_trained = 0  # model trainings that produced a model (non-finite data: see _model_step)
        self._nonfinite_rows_dropped = 0
        self._nonfinite_warned = False  # said that non-finite transitions are left out of model training
        self._model_rounds_kept = 0
        self._kept_model_warned = False  # said that a model training produced no usable model
        self._no_finite_data_warned = False  # said that a model training had no finite row
        self._reward_scale_warned = False  # said that the rewards' scale is one raw model targets fit poorly
        self._empty_model_buffer_warned = False  # said that a model step left the model buffer empty
        self._timings = {"model_train": 0.0, "rollout": 0.0, "sac": 0.0}
        self._last_model_info: ModelTrainingInfo | None = None
        self._last_rollout_info: RolloutInfo | None = None
        self._last_tv_distances: np.ndarray | None = None
        self._nan_predictions_dropped = 0
        self._out_of_bounds_dropped = 0  # model predictions beyond rollout_state_bounds(), dropped
        self._out_of_bounds_warned = False
        # (buffer, n_written, low, high) of rollout_state_bounds' running range; not saved with the agent
        self._data_range_cache = None
        self._termination_fn_warned = False  # warned that the termination function disagrees with the env
        self._rng_states: dict[str, Any] | None = None
        if _init_setup_model:
            self._setup_model()

    # ------------------------------------------------------------------ set-up
    def _setup_model(self) -> None:
        if self.replay_buffer_class is None or not issubclass(self.replay_buffer_class, PolicyVersionedReplayBuffer):
            # an agent of another algorithm loaded as PMAC (e.g. PMAC.load of a SAC file): say so before SB3 builds it
            raise ValueError(
                f"{type(self).__name__} needs a PolicyVersionedReplayBuffer, got replay_buffer_class="
                f"{self.replay_buffer_class}: was this agent saved by another algorithm (e.g. SAC)? Load it with that "
                f"algorithm's load; to start {type(self).__name__} from a SAC agent's networks, build one and call "
                "set_parameters(path, exact_match=False)"
            )
        # The real replay buffer is allocated here, also by ``load`` (as SB3 does): numpy does not touch the pages of
        # an empty buffer's large arrays, so an agent loaded for evaluation costs little memory for it (Humanoid, 10^6
        # transitions: 18 MB resident).
        super()._setup_model()
        self._setup_dynamics_model()
        self._uniform_mixture = PolicyMixture(mode="uniform")
        if self.policy_mixture is None:
            if self.mixture == "tv":
                self.policy_mixture = TVPolicyMixture(self.max_rate)
            else:
                self.policy_mixture = PolicyMixture(self.adaptation_rate)
            self.policy_version = 0  # version 0: the warm-up policy
        elif self.policy_version < 0:  # saved by an earlier release: its mixture counted the versions
            self.policy_version = legacy_policy_version(self.policy_mixture)
        self.replay_buffer.set_policy_version(max(self.replay_buffer.current_version, self.policy_version))
        if self.termination_fn is None and self.env is not None:
            self.termination_fn = get_termination_fn(self.env)

    def _setup_learn(
        self, total_timesteps: int, callback: MaybeCallback = None, *args: Any, **kwargs: Any
    ) -> tuple[int, BaseCallback]:
        if not isinstance(self.replay_buffer, PolicyVersionedReplayBuffer):  # e.g. a SAC agent's buffer, assigned
            raise TypeError(
                f"{type(self).__name__}'s replay buffer must be a PolicyVersionedReplayBuffer (it records which policy "
                f"version collected each transition), got {type(self.replay_buffer).__name__}: to train on an SB3 "
                "agent's transitions, save them with its save_replay_buffer and read the file with "
                "load_replay_buffer(path, allow_pickle=True), which stores them as policy version 0"
            )
        # a buffer assigned by the user keeps its own version counter: the newer of the two goes on (as in
        # load_replay_buffer), so that version ids never go backwards
        self.policy_version = max(self.policy_version, self.replay_buffer.current_version)
        self.replay_buffer.set_policy_version(self.policy_version)
        if self.termination_fn is None:
            self.termination_fn = get_termination_fn(self.env)  # type: ignore[arg-type]
        self._try_termination_fn()
        return super()._setup_learn(total_timesteps, callback, *args, **kwargs)

    def _try_termination_fn(self) -> None:
        """
        Call the termination function once on 4 transitions drawn from the spaces, so that a rule that cannot run on
        a batch fails when learning starts, not at the first model step after the warm-up. Actions in [-1, 1], the
        scale of the replay buffer and of the model rollouts (SB3 stores the policy's actions scaled to it).
        """
        assert self.termination_fn is not None
        rng = np.random.default_rng(0)  # its own generator: the agent's (warm-up actions) are left alone

        def draw(space: spaces.Space, low: Any, high: Any) -> th.Tensor:
            assert isinstance(space, spaces.Box)
            values = np.clip(rng.standard_normal((4, *space.shape)), low, high)
            return th.as_tensor(values, dtype=th.float32, device=self.device)

        obs_space, action_space = self.observation_space, self.action_space
        assert isinstance(obs_space, spaces.Box)
        obs = draw(obs_space, obs_space.low, obs_space.high)
        actions = draw(action_space, -1.0, 1.0)
        next_obs = draw(obs_space, obs_space.low, obs_space.high)
        try:
            with th.no_grad():
                terminations(self.termination_fn, obs.reshape(4, -1), actions.reshape(4, -1), next_obs.reshape(4, -1))
        except Exception as error:
            raise ValueError(
                f"The termination function {self.termination_fn!r} fails on a batch of 4 transitions (tensors "
                f"obs [4, {obs[0].numel()}], action [4, {actions[0].numel()}], next_obs; it must return one bool per "
                f"transition, as the model rollouts call it on batches): {type(error).__name__}: {error}"
            ) from error

    # ------------------------------------------------------------------ Algorithm 2
    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        """
        One step of Algorithm 2: the model step when an interaction epoch starts, then ``gradient_steps`` SAC updates
        on batches of ``real_ratio`` real and ``1 - real_ratio`` model transitions.

        The SAC updates are those of SB3's ``SAC.train`` (same losses, same order of optimizer steps), run by
        :func:`sb3_pmac.fast_sac.train` on batches drawn all at once; set
        ``sb3_pmac.fast_sac.kernels.FAST_PATH_ENABLED = False`` to run SB3's ``SAC.train`` itself.
        """
        if self.replay_buffer.size() == 0:  # SB3 samples with replacement: any stored transition is enough
            return
        self._model_step_if_due()  # (done by _on_step already when learn() collects)
        if self._updates_ramped_off():
            return
        start = time.perf_counter()
        sampler = MixedReplaySampler(self.replay_buffer, self.model_buffer, self.real_ratio)
        fast_sac.train(self, gradient_steps, batch_size, sampler)
        self._epoch_updates += gradient_steps
        self._timings["sac"] += time.perf_counter() - start
        self.logger.record("time/sac_s", self._timings["sac"])

    def _updates_ramped_off(self) -> bool:
        """
        Whether ``max_train_repeat_per_step`` skips this step's SAC updates: the base code's rule, the updates of the
        current epoch so far above the cap times the steps since the warm-up (this step not counted; both restart with
        ``learn(reset_num_timesteps=True)``).
        """
        if self.max_train_repeat_per_step is None:
            return False
        steps = max(self.num_timesteps - self.learning_starts - 1, 0)  # the first SAC update comes at step 0
        epoch = steps // self.epoch_length
        if epoch != self._updates_epoch:
            self._updates_epoch, self._epoch_updates = epoch, 0
        return self._epoch_updates > self.max_train_repeat_per_step * steps

    def _on_step(self) -> None:
        """
        After every environment step of ``learn``: the model step when an interaction epoch starts, i.e. every
        ``model_train_freq`` steps once learning has started, whatever ``train_freq`` is (with ``train_freq=(n,
        "episode")`` the SAC updates wait for the episodes' ends, the model steps do not).
        """
        super()._on_step()
        if self.gradient_steps != 0 and self.num_timesteps > self.learning_starts and self.replay_buffer.size() > 0:
            self._model_step_if_due()

    def min_model_step_rows(self) -> int:
        """
        Real transitions the buffer must hold before a model step runs: one interaction epoch (``model_train_freq``), or
        the whole buffer when it is smaller. A due model step waits until then. This matters when learning resumes on an
        empty buffer (an agent loaded without :meth:`load_replay_buffer`), where a model step on a few transitions
        would overwrite the loaded model, and when ``learning_starts < model_train_freq``, where the warm-up version
        would otherwise hold a handful of transitions and still get the weight of a whole version.
        """
        return min(self.model_train_freq, self.replay_buffer.buffer_size * self.replay_buffer.n_envs)

    def _model_step_if_due(self) -> None:
        if self.replay_buffer.size() * self.replay_buffer.n_envs < self.min_model_step_rows():
            return  # due, but too little data yet: runs as soon as there is enough
        if self.num_timesteps >= self._next_model_step:
            self._model_step()
            due = self._next_model_step + self.model_train_freq
            # On the schedule, so that versions average model_train_freq transitions when n_envs steps at a time
            # overshoot it; from now when this step came a whole period late (the first one, or after waiting for data).
            late = self._next_model_step == 0 or due <= self.num_timesteps
            self._next_model_step = self.num_timesteps + self.model_train_freq if late else due

    def _sample_action(
        self, learning_starts: int, action_noise: ActionNoise | None = None, n_envs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        action, buffer_action = super()._sample_action(learning_starts, action_noise, n_envs)
        if getattr(self.replay_buffer, "store_policy_params", False):
            # mixture="tv": remember the Gaussian that drew this action (action noise, if any, is not part of it)
            if self.num_timesteps < learning_starts and not (self.use_sde and self.use_sde_at_warmup):
                shape = buffer_action.shape  # uniform random warm-up action: its moment-matched Gaussian before tanh
                self.replay_buffer.set_policy_params(np.zeros(shape), np.full(shape, UNIFORM_ACTION_LOG_STD))
            else:
                obs_tensor, _ = self.policy.obs_to_tensor(self._last_obs)  # type: ignore[arg-type]
                with th.no_grad():
                    mean, log_std = actor_gaussian(self.actor, obs_tensor)  # type: ignore[arg-type]
                self.replay_buffer.set_policy_params(mean.cpu().numpy(), log_std.cpu().numpy())
        return action, buffer_action

    def _current_version_holds_data(self) -> bool:
        versions, _ = self.replay_buffer.version_counts()  # type: ignore[union-attr]
        return bool(len(versions)) and int(versions[-1]) == self.replay_buffer.current_version  # type: ignore[union-attr]

    # ------------------------------------------------------------------ SB3 API
    def learn(
        self: SelfPMAC,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "PMAC",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfPMAC:
        if reset_num_timesteps:
            self._next_model_step = 0
            self._updates_epoch = -1
            self._timings = dict.fromkeys(self._timings, 0.0)  # time/ keys count this run's seconds, as SB3's do
            if (
                self.learning_starts > 0
                and self.policy_version > 0
                and isinstance(self.replay_buffer, PolicyVersionedReplayBuffer)  # (_setup_learn refuses other buffers)
                and self._current_version_holds_data()
            ):
                # SB3 repeats the random warm-up when num_timesteps restarts: its transitions are a version of their
                # own, not the last policy's (a new version then starts with the first model step, as at the start).
                # A version without data is used as it is: a run that stored nothing must not age the older data
                self.policy_version = self.replay_buffer.start_new_version()
        if reset_num_timesteps and 0 < total_timesteps <= self.learning_starts:
            # a run that ends within its warm-up (a continued call, reset_num_timesteps=False, is taken as one chunk of
            # a longer loop and not warned about)
            warnings.warn(
                f"{type(self).__name__}: learn(total_timesteps={total_timesteps}) ends at step {total_timesteps}, within "
                f"the random warm-up (learning_starts={self.learning_starts}): the agent only collects random transitions, "
                "with no SAC update and no model training; pass more steps or a lower learning_starts (or continue the "
                "run with learn(..., reset_num_timesteps=False))",
                UserWarning,
                stacklevel=2,
            )
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    def set_env(self, env: GymEnv, force_reset: bool = True) -> None:
        """
        SB3's ``set_env``; the termination function is derived from the new env unless one was passed. As in SB3, an
        env that is refused (other spaces, or observation wrappers a termination rule cannot read through) raises
        before anything is replaced.
        """
        venv = self._wrap_env(env, self.verbose)
        check_for_correct_spaces(venv, self.observation_space, self.action_space)
        termination_fn = self.termination_fn if self._user_termination_fn else get_termination_fn(venv)
        super().set_env(venv, force_reset)
        self.termination_fn = termination_fn

    def _derive_termination_fn(self) -> None:
        """The termination function of the current env, unless the user passed one."""
        if not self._user_termination_fn:
            self.termination_fn = get_termination_fn(self.env)  # type: ignore[arg-type]

    def _excluded_save_params(self) -> list[str]:
        return [
            *super()._excluded_save_params(),
            "dynamics_model",
            "model_trainer",
            "model_buffer",
            "_uniform_mixture",
            "_last_model_info",
            "_last_rollout_info",
            "_last_tv_distances",
            "_data_range_cache",
        ]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts, saved_pytorch_variables = super()._get_torch_save_params()
        return [*state_dicts, "dynamics_model", "model_trainer.optimizer"], saved_pytorch_variables

    def save(
        self,
        path: str | pathlib.Path | io.BufferedIOBase,
        exclude: Any = None,
        include: Any = None,
    ) -> None:
        """
        Save the agent (policy, critics, dynamics model and its optimizer, policy mixture, random states). The replay
        buffers are not part of it (as in SB3): :meth:`save_replay_buffer` saves the real one and the model buffer.
        """
        if include is not None and "model_buffer" in include:
            warnings.warn(
                f"{type(self).__name__}.save(include=['model_buffer']) has no effect: the model buffer is rebuilt when "
                "the agent loads; save_replay_buffer() saves it with the real replay buffer, load_replay_buffer() "
                "restores both",
                UserWarning,
                stacklevel=2,
            )
        self._rng_states = self._get_rng_states()
        try:
            super().save(path, exclude=exclude, include=include)
        finally:
            self._rng_states = None

    @classmethod
    def load(  # type: ignore[override]
        cls: type[SelfPMAC],
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        restore_random_state: bool = False,
        **kwargs: Any,
    ) -> SelfPMAC:
        """
        Load an agent (see ``BaseAlgorithm.load`` for the parameters). Its replay buffer is allocated empty, as SB3
        allocates it (numpy does not touch an empty buffer's pages: loading for evaluation costs little memory for it);
        fill it with :meth:`load_replay_buffer` or by adding transitions. The agent's own generators (the warm-up action
        sampler, the model trainer's) continue where they were saved. The process-wide numpy, python and torch
        generators are left alone (SB3's own ``load`` re-seeds them with the agent's seed), unless
        ``restore_random_state=True``: then they are restored to their state at ``save``, so that ``learn(...,
        reset_num_timesteps=False)`` continues the run exactly as an uninterrupted run would, provided the env is in its
        state at ``save`` and ``force_reset=False`` (the default ``True`` resets it) and the replay buffer is loaded
        with :meth:`load_replay_buffer`. Keyword arguments are set on the agent, as in SB3 (rl-zoo3's ``-i`` passes its
        hyperparameters this way): ``adaptation_rate`` and ``max_rate`` reach the policy mixture; ``ensemble_size``,
        ``n_elites``, ``dynamics_kwargs`` and ``mixture`` must equal the saved values (``ValueError`` otherwise);
        ``termination_fn`` (or ``custom_objects={"termination_fn": ...}``) replaces the saved function and is kept when
        the env changes (``None``: derived from the env, as in the constructor); the settings the constructor checks
        (``model_train_freq``, ``real_ratio``, ``rollout_horizon``, ...) are checked as there (``ValueError``);
        ``seed=s`` seeds the agent anew, as SB3's ``load`` does (its own and the process-wide generators, and the model
        trainer's, as :meth:`set_random_seed` does, even when ``model_trainer_kwargs`` holds a seed), instead of
        continuing the saved generators.

        :param restore_random_state: restore the process-wide numpy, python and torch generators saved with the agent
        """
        for key in ("dynamics_kwargs", "model_trainer_kwargs", "replay_buffer_kwargs"):
            if key in kwargs and kwargs[key] is None:  # None means {}, as in the constructor
                kwargs[key] = {}
        saved = saved_data(path)
        check_load_overrides(saved, kwargs, cls.__name__)
        if "replay_buffer_kwargs" in kwargs and saved.get("mixture") == "tv":
            # the TV distances need the collecting policy's parameters of every transition, as in the constructor
            kwargs["replay_buffer_kwargs"] = {**kwargs["replay_buffer_kwargs"], "store_policy_params": True}
        seeded = kwargs.get("seed") is not None
        if seeded and restore_random_state:
            raise ValueError("load with seed=... seeds the agent anew: restore_random_state=True cannot apply too")
        given_termination = kwargs.get("termination_fn", (custom_objects or {}).get("termination_fn"))
        if "termination_fn" in kwargs or "termination_fn" in (custom_objects or {}):
            # the user's function, kept on set_env; None: derived from the env, as in the constructor
            kwargs["_user_termination_fn"] = given_termination is not None
        for key, value in legacy_defaults(saved).items():
            kwargs.setdefault(key, value)
        kwargs = check_load_values(saved, kwargs)
        with nullcontext() if seeded else preserved_rng_states(get_device(device)):
            # SB3's load re-seeds the global generators with the agent's seed (in _setup_model): undone here, unless
            # a seed is given (then SB3's seeding is what the user asks for)
            model = super().load(path, env, device, custom_objects, print_system_info, force_reset, **kwargs)
        if "adaptation_rate" in kwargs and not isinstance(model.policy_mixture, TVPolicyMixture):
            assert model.policy_mixture is not None
            model.policy_mixture.adaptation_rate = model.adaptation_rate
        if "max_rate" in kwargs and isinstance(model.policy_mixture, TVPolicyMixture):
            model.policy_mixture.max_rate = model.max_rate
        switches = {"adapt_model_training", "adapt_rollout_starts"}
        if cls._adapt_by_default and not model.uses_policy_mixture and not switches & kwargs.keys():
            warnings.warn(
                f"{path!s} holds an agent that draws its data uniformly (adapt_model_training=False, "
                f"adapt_rollout_starts=False: MBPO, or PMAC's ablation): {cls.__name__}.load keeps its saved settings, so "
                "it goes on as MBPO; to train it as PMAC, load it with adapt_model_training=True, "
                "adapt_rollout_starts=True",
                UserWarning,
                stacklevel=2,
            )
        if not cls._adapt_by_default and model.uses_policy_mixture:
            warnings.warn(
                f"{path!s} holds an agent that draws data per the policy mixture (adapt_model_training="
                f"{model.adapt_model_training}, adapt_rollout_starts={model.adapt_rollout_starts}), i.e. a PMAC agent: "
                f"{cls.__name__}.load keeps its saved settings, so it goes on as PMAC; load it with PMAC.load",
                UserWarning,
                stacklevel=2,
            )
        if env is not None:
            model._derive_termination_fn()  # the new env's settings
        if seeded:  # SB3 seeded its generators anew; the trainer's too, whatever seed its kwargs hold (set_random_seed)
            model.model_trainer.rng = np.random.default_rng(model.seed)
        elif model._rng_states is not None:
            model._set_rng_states(model._rng_states, restore_global=restore_random_state)
        model._rng_states = None
        return model

    def set_parameters(
        self,
        load_path_or_dict: str | pathlib.Path | io.BufferedIOBase | dict[str, Any],
        exact_match: bool = True,
        device: th.device | str = "auto",
    ) -> None:
        """
        SB3's ``set_parameters`` (see there), e.g. to start from a SAC agent's networks. Parameters of an object this
        agent does not have are refused with the reason (``exact_match=True``) or skipped with a warning
        (``exact_match=False``; SB3 fails on them with an ``AttributeError``): SAC's entropy-coefficient optimizer
        (``ent_coef="auto"``, SB3's default) when this agent's coefficient is fixed (``ent_coef=0.2``, PMAC's default).

        :param load_path_or_dict: a saved agent (path or file) or a dict as :meth:`get_parameters` returns it
        :param exact_match: whether the parameters must be exactly those of this agent's objects
        :param device: the device to load the tensors to
        """
        params: dict[str, Any]
        if isinstance(load_path_or_dict, dict):
            params = load_path_or_dict
        else:
            _, params, _ = load_from_zip_file(load_path_or_dict, device=device, load_data=False)
        absent = [name for name in params if _resolves_to_none(self, name)]
        if absent:
            reason = (
                f"{', '.join(absent)}: this agent has none (its entropy coefficient is fixed, ent_coef={self.ent_coef!r}; "
                "SAC's learned coefficient, ent_coef='auto', has an optimizer)"
                if absent == ["ent_coef_optimizer"]
                else f"{', '.join(absent)}: this agent has none"
            )
            if exact_match:
                raise ValueError(
                    f"set_parameters: the parameters hold {reason}. Build the agent alike (e.g. ent_coef='auto'), or "
                    "pass exact_match=False to skip them"
                )
            warnings.warn(f"set_parameters skipped {reason}", UserWarning, stacklevel=2)
            params = {name: value for name, value in params.items() if name not in absent}
        super().set_parameters(params, exact_match, device)
        if getattr(self, "model_trainer", None) is not None:  # the saved optimizer state brought its rate back
            self.model_trainer.apply_learning_rate()

    def save_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase) -> None:
        """
        Save the real replay buffer (with policy versions) and the model buffer in one ``.npz`` file of plain arrays,
        which :meth:`load_replay_buffer` reads without executing code (see :mod:`sb3_pmac.buffer_files`).

        :param path: file path (``.npz`` is appended when it has no suffix; a path with a suffix, e.g. SB3's
            ``replay_buffer.pkl``, is written as given) or open binary file
        """
        assert self.replay_buffer is not None, "The replay buffer is not defined"
        save_buffers(path, self.replay_buffer, self.model_buffer, self.verbose)

    def load_replay_buffer(
        self,
        path: str | pathlib.Path | io.BufferedIOBase,
        truncate_last_traj: bool = True,
        allow_pickle: bool = False,
    ) -> None:
        """
        Load a buffer file written by :meth:`save_replay_buffer` (policy versions and model buffer included).

        :param path: the path given to :meth:`save_replay_buffer` (or the file it wrote), or open binary file
        :param truncate_last_traj: SB3's option for ``HerReplayBuffer``, which PMAC does not use (ignored)
        :param allow_pickle: also read a pickle: the buffer files of earlier sb3_pmac versions, and SB3's replay buffer
            files (``SAC.save_replay_buffer``), whose transitions load as one policy version, 0, the warm-up's; the
            file's buffer size is kept. Reading a pickle executes the code it holds: only for files you trust. Without
            it a pickle raises ``ValueError``
        """
        buffer, model_state = load_buffers(
            path,
            self.observation_space,
            self.action_space,
            device=self.device,
            verbose=self.verbose,
            allow_pickle=allow_pickle,
            buffer_class=self.replay_buffer_class,  # type: ignore[arg-type]
            buffer_kwargs=self.replay_buffer_kwargs,
        )
        if self.mixture == "tv" and not buffer.store_policy_params:
            raise ValueError("mixture='tv' needs the collecting policy's parameters, which this buffer file does not hold")
        if buffer.n_envs != self.n_envs:
            raise ValueError(f"The buffer file holds transitions of {buffer.n_envs} envs, the agent has {self.n_envs}")
        buffer.device = self.device
        if model_state is not None:  # first: a state that does not fit raises before the agent changes
            self.model_buffer.load_state_dict(model_state)
        # the agent's policy version and the buffer's: the newer one goes on (they are equal when saved together)
        self.policy_version = max(self.policy_version, buffer.current_version)
        buffer.set_policy_version(self.policy_version)
        self.replay_buffer = buffer
        self._data_range_cache = None  # (it holds the previous buffer: released now, not at the next model step)

    def _get_rng_states(self) -> dict[str, Any]:
        return {
            **get_global_rng_states(self.device),  # (CUDA's too on a GPU: actions, rollouts and batches draw from it)
            "action_space": self.action_space.np_random.bit_generator.state,
            "model_trainer": self.model_trainer.rng.bit_generator.state,
        }

    def _set_rng_states(self, states: dict[str, Any], restore_global: bool) -> None:
        if restore_global:
            set_global_rng_states(states, self.device)
        self.action_space.np_random.bit_generator.state = states["action_space"]
        self.model_trainer.rng.bit_generator.state = states["model_trainer"]


def _resolves_to_none(agent: PMAC, name: str) -> bool:
    """Whether the saved parameters' object ``name`` (e.g. ``"ent_coef_optimizer"``) is ``None`` on ``agent``."""
    try:
        return recursive_getattr(agent, name) is None
    except Exception:  # not an object name at all: SB3's set_parameters says so
        return False
