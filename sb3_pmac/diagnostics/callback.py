"""
:class:`~sb3_pmac.diagnostics.ModelDiagnosticsCallback`: :func:`~sb3_pmac.diagnostics.evaluate_model` every
``eval_freq`` steps during training (the paper evaluates every 1000 steps for Fig. 3), to the SB3 logger, a CSV file
and :attr:`~sb3_pmac.diagnostics.ModelDiagnosticsCallback.history`.
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Any

import gymnasium as gym
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from sb3_pmac.checks import check_positive
from sb3_pmac.diagnostics.metrics import DiagnosticsConfig, evaluate_model
from sb3_pmac.diagnostics.schema import TIMESTEPS, append_csv_row, check_diagnostics_csv, csv_columns, csv_timesteps
from sb3_pmac.env_presets import make_preset_env
from sb3_pmac.pmac import PMAC


class ModelDiagnosticsCallback(BaseCallback):
    """
    Evaluate the dynamics model every ``eval_freq`` environment steps with
    :func:`~sb3_pmac.diagnostics.evaluate_model` (off by default: nothing runs unless this callback is passed to
    ``learn``).

    An evaluation is due whenever ``num_timesteps`` reaches a multiple of ``eval_freq``; it runs at the end of that
    step's rollout (the step's transitions are in the replay buffer and its gradient updates are not done yet: the row
    of step ``T`` uses the buffer positions ``< T``, like ``upto=T`` offline), and is skipped while the model has never
    been trained (during the warm-up). A model step due at step ``T`` itself has run by then (PMAC runs it as soon as
    the step's transitions are stored), so that row measures the new model, while a checkpoint saved at step ``T`` (SB3's
    ``CheckpointCallback``) holds the previous one; with the default settings model steps come at ``learning_starts +
    1 + k * model_train_freq`` (5001, 5251, ...) and never fall on a multiple of 1000.
    Each value is recorded in the SB3 logger as ``model/<key>`` (all keys
    but ``timesteps``, which is ``time/total_timesteps``), with the seconds of all evaluations so far as
    ``time/diagnostics_s`` (:attr:`elapsed_s`), and the logger is dumped, as SB3's ``EvalCallback`` does; the row is
    appended to ``csv_path`` and kept in :attr:`history`.

    The compounding horizon is fixed for the whole run, so that every CSV row has the same columns: ``horizon=None``
    means the largest horizon of the agent's rollout schedule (e.g. 15 for Hopper), the horizon the model rollouts
    reach at the end of the schedule. Every evaluation uses the same ``seed`` (common random numbers: the rows differ
    only through the agent) and the same evaluation env; the training's random states are restored afterwards.

    With ``eval_env=None`` the callback builds its evaluation env when training starts, as
    ``make_preset_env(env_id)`` (:func:`~sb3_pmac.env_presets.make_preset_env`): ``env_id`` is the agent's own when it
    was created from an id (``PMAC("Hopper-v4")``), else the id of the training env's gymnasium spec (an env made with
    ``gym.make``, ``make_vec_env`` or rl-zoo3), made with that spec's env kwargs (e.g. rl-zoo3's ``env_kwargs``) and
    time limit, so that the evaluation env has the training env's dynamics. This is how rl-zoo3 can create the
    callback from the ``callback:`` entry of a hyperparameter file, which can only hold plain values.

    :param eval_env: a separate env for fresh transitions of the current policy (raw observations), e.g.
        ``make_preset_env(env_id)``; None: built from the training env's id (see above; ``ValueError`` when there is
        none). Its observation space must have the shape of the agent's.
    :param eval_freq: evaluate every ``eval_freq`` environment steps
    :param config: what to measure (:class:`~sb3_pmac.diagnostics.DiagnosticsConfig`; default: its defaults)
    :param csv_path: CSV file the rows are appended to (None: no file); a relative path is relative to the working
        directory at construction. Missing folders are created; an existing file is appended to (use one file per
        run: a file that holds rows after the step training starts at, another run's, warns when training starts)
    :param verbose: 1: print each row's main errors
    :param options: fields of :class:`~sb3_pmac.diagnostics.DiagnosticsConfig` that replace ``config``'s
        (``n_local``, ``n_global``, ``horizon``, ``n_trajectories``, ``newest_k``, ``model_prediction``, ``seed``)
    """

    def __init__(
        self,
        eval_env: gym.Env | None = None,
        eval_freq: int = 1000,
        config: DiagnosticsConfig | None = None,
        *,
        csv_path: str | os.PathLike[str] | None = None,
        verbose: int = 0,
        **options: Any,
    ) -> None:
        super().__init__(verbose)
        check_positive(eval_freq=eval_freq)
        #: what each evaluation measures (its horizon is resolved when the callback is initialised)
        self.config = DiagnosticsConfig.from_options(config, **options)
        if isinstance(eval_env, VecEnv):
            raise TypeError("Pass a plain gymnasium env with raw observations (e.g. make_preset_env(env_id)), not a VecEnv")
        #: the evaluation env (built at the start of training when none was given)
        self.eval_env = eval_env
        self._builds_eval_env = eval_env is None
        self._eval_env_id: str | None = None
        self._eval_env_kwargs: dict[str, Any] = {}
        self.eval_freq = int(eval_freq)
        self.csv_path = os.path.abspath(os.fspath(csv_path)) if csv_path is not None else None
        #: one :func:`~sb3_pmac.diagnostics.evaluate_model` row per evaluation
        self.history: list[dict[str, float]] = []
        #: seconds spent in evaluations so far (logged as ``time/diagnostics_s``, next to PMAC's ``time/`` counters)
        self.elapsed_s = 0.0
        self._last_bucket = 0

    @property
    def horizon(self) -> int | None:
        """The compounding horizon (None until the callback is initialised when none was given)."""
        return self.config.horizon

    @property
    def agent(self) -> PMAC:
        """The PMAC / MBPO agent being trained."""
        assert isinstance(self.model, PMAC)
        return self.model

    def _init_callback(self) -> None:
        if not isinstance(self.model, PMAC):
            raise TypeError(f"ModelDiagnosticsCallback needs a PMAC or MBPO agent, got {type(self.model).__name__}")
        if self.csv_path is not None:
            check_diagnostics_csv(self.csv_path)  # refuse another kind of CSV before training, not at the first row
            self._check_rows_of_another_run()
        self.config = self.config.with_run_horizon(self.model)
        if self._builds_eval_env:
            env_id, make_kwargs = self._training_env_spec()
            if self.eval_env is None or (env_id, make_kwargs) != (self._eval_env_id, self._eval_env_kwargs):
                self.eval_env = make_preset_env(env_id, **make_kwargs)
                self._eval_env_id, self._eval_env_kwargs = env_id, make_kwargs
        assert self.eval_env is not None
        eval_shape = getattr(self.eval_env.observation_space, "shape", None)
        if eval_shape != self.model.observation_space.shape:
            raise ValueError(
                f"The diagnostics env's observations have shape {eval_shape}, the agent's {self.model.observation_space.shape}"
                + (f" (env built with make_preset_env({self._eval_env_id!r}))" if self._builds_eval_env else "")
                + ": pass an eval_env that yields the training env's raw observations"
            )

    def _check_rows_of_another_run(self) -> None:
        """
        Warn when ``csv_path`` already holds rows after the step training starts at: this run's rows would follow
        another run's (e.g. a second run into the same file). A run continued with ``reset_num_timesteps=False`` starts
        at or after its last row and does not warn.
        """
        assert self.csv_path is not None and self.model is not None
        start = int(self.model.num_timesteps)
        later = [step for step in csv_timesteps(self.csv_path) if step > start]
        if later:
            warnings.warn(
                f"{self.csv_path} already holds {len(later)} rows after step {start}, where training starts (up to step "
                f"{max(later)}): the rows of this run are appended after them, so the file will hold rows of two runs "
                "(read as one run by the plots). Use one file per run: pass another csv_path, or delete or rename the file",
                UserWarning,
                stacklevel=2,
            )

    def _training_env_spec(self) -> tuple[str, dict[str, Any]]:
        """
        The id of the env the agent trains on and the ``gym.make`` arguments that made it: its own ``env_id`` (made by
        :func:`~sb3_pmac.env_presets.make_preset_env` alone), else the gymnasium spec of the training env, with the
        spec's env kwargs (``gym.make(id, g=2.0)``, rl-zoo3's ``env_kwargs``) and time limit.
        """
        env_id = getattr(self.model, "env_id", None)
        if isinstance(env_id, str) and env_id:
            return env_id, {}
        training_env = self.model.get_env()
        if training_env is not None:
            try:
                spec = training_env.get_attr("spec", indices=[0])[0]
            except (AttributeError, IndexError):
                spec = None
            if getattr(spec, "id", None):
                kwargs = {key: value for key, value in dict(spec.kwargs or {}).items() if key != "render_mode"}
                make_kwargs: dict[str, Any] = {"env_kwargs": kwargs} if kwargs else {}
                if spec.max_episode_steps is not None:
                    make_kwargs["max_episode_steps"] = spec.max_episode_steps
                return str(spec.id), make_kwargs
        raise ValueError(
            "ModelDiagnosticsCallback(eval_env=None) builds its evaluation env from the training env's id, but the "
            "agent was not created from an env id and its training env has no gymnasium spec (an env instance not "
            "made with gym.make): pass eval_env, e.g. make_preset_env(env_id)"
        )

    def _on_training_start(self) -> None:
        self._last_bucket = self.model.num_timesteps // self.eval_freq

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        # At the end of a rollout (every step with the default train_freq=1) the step's transitions are stored and the
        # gradient updates of the step not yet done: the buffer holds exactly the data of steps < num_timesteps.
        self.num_timesteps = self.model.num_timesteps
        bucket = self.num_timesteps // self.eval_freq
        if bucket > self._last_bucket:
            self._last_bucket = bucket
            # only once a model exists (a first training that produced no usable model does not count)
            if self.agent.model_rounds_trained > 0:
                self.evaluate()

    @property
    def columns(self) -> list[str]:
        """The CSV columns (fixed for the run)."""
        assert self.horizon is not None, "the horizon is resolved when the callback is initialised"
        return csv_columns(self.horizon, self.config.newest_k)

    def evaluate(self) -> dict[str, float]:
        """
        Evaluate now, record, write and keep the row.

        :return: the row
        """
        assert self.eval_env is not None, "the evaluation env is built when the callback is initialised"
        start = time.perf_counter()
        row = evaluate_model(self.agent, self.eval_env, self.config)
        self.elapsed_s += time.perf_counter() - start
        self.history.append(row)
        for key, value in row.items():
            if key != TIMESTEPS:
                self.logger.record(f"model/{key}", value)
        self.logger.record("time/diagnostics_s", self.elapsed_s)
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self.logger.dump(self.num_timesteps)
        if self.csv_path is not None:
            append_csv_row(self.csv_path, row)
        if self.verbose >= 1:
            print(
                f"[diagnostics] {self.num_timesteps} steps: local obs mse {row['local_obs_mse']:.5g}, "
                f"global obs mse {row['global_obs_mse']:.5g}, effective versions {row['mixture_effective_versions']:.3g}"
            )
        return row
