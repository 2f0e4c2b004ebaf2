"""
Offline diagnostics: :func:`~sb3_pmac.diagnostics.evaluate_checkpoints` evaluates the saved agents of a run with the
run's final replay buffer, each checkpoint seeing only the data it had collected (the rows the callback would have
written online).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from sb3_pmac.buffer_files import load_buffers
from sb3_pmac.buffers import PolicyVersionedReplayBuffer
from sb3_pmac.compat import saved_data
from sb3_pmac.diagnostics.metrics import DiagnosticsConfig, evaluate_model
from sb3_pmac.diagnostics.schema import append_csv_row, check_diagnostics_csv, format_row
from sb3_pmac.diagnostics.transitions import learn_restarts
from sb3_pmac.env_presets import make_preset_env
from sb3_pmac.mbpo import MBPO
from sb3_pmac.pmac import PMAC


class DiagnosticsInputError(ValueError):
    """Inputs of :func:`evaluate_checkpoints` that do not fit together (reported by the command line without a traceback)."""


#: The classes a saved agent can be loaded with, by name
ALGOS: dict[str, type[PMAC]] = {"pmac": PMAC, "mbpo": MBPO}


def load_agent(path: str | os.PathLike[str], algo: str | None = None, device: str = "auto") -> PMAC:
    """
    Load a saved PMAC or MBPO agent (the replay buffer is not loaded).

    MBPO is PMAC with the adaptive switches off, and the switches are saved with the agent: either class restores
    either algorithm. ``algo`` only picks the class of the returned object (a class that does not match the saved
    switches warns that the agent goes on as saved); None picks it from the saved switches, without a warning.

    :param path: the agent's zip file
    :param algo: ``"pmac"``, ``"mbpo"`` or None (as saved)
    :param device: torch device
    """
    if algo is None:
        saved = saved_data(os.fspath(path))
        uniform = saved.get("adapt_model_training") is False and saved.get("adapt_rollout_starts") is False
        cls: type[PMAC] = MBPO if uniform else PMAC
    else:
        cls = ALGOS[algo.lower()]
    return cls.load(os.fspath(path), device=device)


def load_buffer(path: str | os.PathLike[str], allow_pickle: bool = False) -> PolicyVersionedReplayBuffer:
    """
    Load a replay buffer file written by :meth:`~sb3_pmac.pmac.PMAC.save_replay_buffer` (the model buffer it carries
    is dropped).

    :param path: the ``.npz`` file (see :func:`~sb3_pmac.buffer_files.load_buffers`)
    :param allow_pickle: also read a pickle (the buffer files of earlier versions); reading a pickle executes the
        code it holds: only for files you trust
    """
    return load_buffers(path, allow_pickle=allow_pickle)[0]


def algo_name(agent: PMAC) -> str:
    """
    ``"pmac"``, ``"mbpo"`` or an ablation (``"pmac_model_only"``, ``"pmac_rollout_only"``) of an agent; ``"_tv"`` is
    appended for PMAC's ``mixture="tv"`` (the folder names of ``benchmarks/learning_curves.py``).
    """
    if not agent.adapt_model_training and not agent.adapt_rollout_starts:
        return "mbpo"
    name = "pmac"
    if not agent.adapt_rollout_starts:
        name = "pmac_model_only"
    elif not agent.adapt_model_training:
        name = "pmac_rollout_only"
    return f"{name}_tv" if getattr(agent, "mixture", "exponential") == "tv" else name


def check_spaces(agent: PMAC, env: gym.Env, env_id: str) -> None:
    """``ValueError`` unless ``env`` has the agent's observation and action spaces (the agent was trained on ``env_id``)."""
    mismatches = [
        f"{kind} space {agent_space} (the agent) != {env_space} (make_preset_env({env_id!r}))"
        for kind, agent_space, env_space in (
            ("observation", agent.observation_space, env.observation_space),
            ("action", agent.action_space, env.action_space),
        )
        if agent_space != env_space
    ]
    if mismatches:
        raise DiagnosticsInputError(
            f"The agent does not fit --env {env_id}: " + "; ".join(mismatches) + ". Was it trained on another env?"
        )


def find_vecnormalize(agent_path: str | os.PathLike[str], env_id: str) -> Path | None:
    """
    The ``VecNormalize`` statistics saved next to an agent, or None: SB3's ``CheckpointCallback(save_vecnormalize=True)``
    file of the same checkpoint (``<prefix>_vecnormalize_<steps>_steps.pkl`` for ``<prefix>_<steps>_steps.zip``), else
    rl-zoo3's ``<env_id>/vecnormalize.pkl`` in the agent's folder (written at the end of the run, or at a new best
    evaluation; rl-zoo3's ``enjoy`` uses it for every checkpoint of the run).
    """
    path = Path(agent_path)
    candidates = []
    checkpoint = re.fullmatch(r"(?P<prefix>.+)_(?P<steps>\d+)_steps", path.stem)
    if checkpoint:
        candidates.append(path.parent / f"{checkpoint['prefix']}_vecnormalize_{checkpoint['steps']}_steps.pkl")
    candidates.append(path.parent / env_id / "vecnormalize.pkl")
    return next((candidate for candidate in candidates if candidate.is_file()), None)


def load_vecnormalize(path: str | os.PathLike[str], env: gym.Env) -> VecNormalize:
    """
    ``VecNormalize`` statistics for evaluation, as rl-zoo3's ``enjoy`` loads them: ``training=False`` (frozen),
    ``norm_reward=False``. The file is a pickle, like the parts of the agent file SB3 unpickles: only for files you trust.

    :param path: the ``vecnormalize.pkl`` file (``VecNormalize.save``)
    :param env: an env with the agent's spaces (only its spaces are used: ``ValueError`` if they do not fit the file's)
    """
    try:
        vec_normalize = VecNormalize.load(os.fspath(path), DummyVecEnv([lambda: env]))
    except AssertionError as error:  # SB3's check of the spaces
        raise DiagnosticsInputError(f"{os.fspath(path)} does not fit the env: {error}") from None
    vec_normalize.training = False
    vec_normalize.norm_reward = False
    return vec_normalize


def checkpoint_upto(agent: PMAC, buffer: PolicyVersionedReplayBuffer) -> int:
    """
    The number of buffer positions a checkpoint had collected (``upto="auto"``), from the run's final buffer.

    ``num_timesteps // n_envs`` when the buffer's policy versions agree with the checkpoint's ``policy_version`` (the
    positions before it hold versions up to the checkpoint's, the positions after it versions from it on). A run
    continued with ``num_timesteps`` reset on the buffer of an earlier run (rl-zoo3's ``train -i``) counts its steps
    from a later position: the one of the starts of ``learn`` (:func:`~sb3_pmac.diagnostics.transitions.learn_restarts`)
    whose position agrees with the versions is used. ``ValueError`` (pass ``upto``) when none or several agree.
    """
    size = buffer.size()
    if buffer.n_written > buffer.buffer_size:
        raise DiagnosticsInputError(
            "upto='auto' needs a replay buffer that never wrapped around: positions no longer follow the order of the "
            "steps; pass upto=None (--upto all) to measure on the whole buffer"
        )
    steps = int(agent.num_timesteps) // buffer.n_envs
    version = int(agent.policy_version)
    versions = buffer.policy_versions[:size]

    def agrees(upto: int) -> bool:
        return 1 <= upto <= size and versions[upto - 1] <= version and (upto == size or versions[upto] >= version)

    candidates = [int(start) + steps for start in learn_restarts(buffer)]
    found = [upto for upto in candidates if agrees(upto)]
    if len(found) == 1:
        return found[0]
    lower = int(np.searchsorted(versions, version, side="left"))  # versions never decrease along a buffer
    upper = int(np.searchsorted(versions, version, side="right"))
    where = (
        f"the buffer holds version {version}'s data at positions {lower} to {upper - 1}"
        if upper > lower
        else f"the buffer holds no data of its policy version {version}"
    )
    reason = (
        f"several starts of learn agree with its policy version ({found})"
        if found
        else "no start of learn in the buffer agrees with its policy version"
    )
    raise DiagnosticsInputError(
        f"Cannot tell which buffer positions the checkpoint had collected: its num_timesteps is {agent.num_timesteps} "
        f"({steps} positions), {where} and {reason}. Was its run continued from another with num_timesteps reset "
        "(rl-zoo3's train -i), or is the buffer from another run? Pass upto (--upto N: the number of positions it had "
        "collected, counted from the start of the buffer)"
    )


def _vecnormalize_path(
    agent_path: str | os.PathLike[str], env_id: str, vecnormalize: str | os.PathLike[str] | None
) -> str | os.PathLike[str] | None:
    """The ``vecnormalize`` argument of :func:`evaluate_checkpoints` resolved for one agent."""
    if vecnormalize is None or (isinstance(vecnormalize, str) and vecnormalize == "none"):
        return None
    if not (isinstance(vecnormalize, str) and vecnormalize == "auto"):
        return vecnormalize
    found = find_vecnormalize(agent_path, env_id)
    return found


def _saved_steps(path: str | os.PathLike[str]) -> int | None:
    """An agent file's ``num_timesteps``, read from its ``data`` entry alone (no tensor read); None if unreadable."""
    try:
        steps = saved_data(os.fspath(path)).get("num_timesteps")
    except (OSError, ValueError):
        return None
    return steps if isinstance(steps, int) and not isinstance(steps, bool) else None


def _in_step_order(paths: Sequence[str | os.PathLike[str]]) -> list[str | os.PathLike[str]]:
    """
    Agent files in the order of their training step, the ``num_timesteps`` saved with each (read without loading the
    agent; not the digits of the file name: ``best_model.zip`` or ``final_agent.zip`` have none, and a name prefix
    may hold some). Files whose step cannot be read (missing, not an agent file) come first, so that loading them
    fails before anything is evaluated; agents of the same step keep the order given, with a warning (their rows have
    the same ``timesteps``: e.g. a final model saved after the step's updates and a checkpoint saved before them).

    :param paths: agent zip files
    :return: the same paths, sorted
    """
    steps = [_saved_steps(path) for path in paths]
    order = sorted(range(len(paths)), key=lambda index: (steps[index] is not None, steps[index] or 0))
    by_step: dict[int, list[str]] = {}
    for index in order:
        step = steps[index]
        if step is not None:
            by_step.setdefault(step, []).append(os.fspath(paths[index]))
    for step, names in by_step.items():
        if len(names) > 1:
            warnings.warn(
                f"{len(names)} agents were saved at the same step {step}: {', '.join(names)}. Their rows have the same "
                "timesteps and may differ (e.g. a final or best model saved after the step's updates and a checkpoint "
                "saved before them); plots keep one row per step",
                UserWarning,
                stacklevel=3,
            )
    return [paths[index] for index in order]


def _observation_count(vec_normalize: VecNormalize) -> float | None:
    """
    The number of observations ``VecNormalize``'s observation statistics have seen (``obs_rms.count``), or None when it
    does not normalize observations. In one training it is ``num_timesteps + n_envs + 1e-4``: the ``n_envs``
    observations of the first reset and of every step (an episode's reset observation replaces the step's), after
    ``RunningMeanStd``'s initial ``1e-4``; statistics of count ``S + n_envs`` are from step ``S``.
    """
    obs_rms = getattr(vec_normalize, "obs_rms", None)
    if not getattr(vec_normalize, "norm_obs", False) or not isinstance(obs_rms, RunningMeanStd):
        return None
    return float(obs_rms.count)


def _check_vecnormalize_steps(
    path: str | os.PathLike[str], agent: PMAC, vecnormalize_path: str | os.PathLike[str], vec_normalize: VecNormalize
) -> None:
    """Warn when the statistics ``vec_normalize`` are not from the checkpoint's step (:func:`_observation_count`)."""
    count = _observation_count(vec_normalize)
    if count is None:
        return
    steps = round(count) - int(agent.n_envs)
    if steps == agent.num_timesteps:
        return
    warnings.warn(
        f"{os.fspath(path)} was saved at step {agent.num_timesteps}, but the VecNormalize statistics "
        f"{os.fspath(vecnormalize_path)} seem to be from step {steps} (obs_rms.count "
        f"{count:.10g}; one training counts num_timesteps + n_envs ({agent.n_envs}) + 1e-4): "
        f"the policy sees observations normalized as at step {steps}, so the row differs from the one the callback "
        "computed online. rl-zoo3 saves vecnormalize.pkl only at the end of a run (and at a new best evaluation): save "
        "statistics with each checkpoint, CheckpointCallback(save_vecnormalize=True). Expected for a run continued on "
        "an earlier run's statistics (rl-zoo3's train -i), which --buffer with --upto auto recognizes",
        UserWarning,
        stacklevel=3,
    )


def evaluate_checkpoints(
    paths: Sequence[str | os.PathLike[str]],
    env_id: str,
    buffer_path: str | os.PathLike[str] | None = None,
    csv_path: str | os.PathLike[str] | None = None,
    config: DiagnosticsConfig | None = None,
    *,
    upto: int | Literal["auto"] | None = "auto",
    algo: str | None = None,
    device: str = "auto",
    verbose: int = 0,
    allow_pickle: bool = False,
    vecnormalize: str | os.PathLike[str] | None = "auto",
    env_kwargs: dict[str, Any] | None = None,
    **options: Any,
) -> list[dict[str, float]]:
    """
    Diagnostics of the checkpoints of one run (``agent_<timesteps>.zip``), evaluated in the order of the
    ``num_timesteps`` saved with them (agents of the same step warn: their rows have the same ``timesteps``).

    Each checkpoint holds the model, policy and policy mixture at its time; the run's final replay buffer holds the
    data: with ``upto="auto"`` each checkpoint only sees the positions it had collected (:func:`checkpoint_upto`:
    ``num_timesteps // n_envs``, from the start of the buffer or, for a run continued with ``num_timesteps`` reset, from
    the start of its ``learn``), which requires a buffer that never wrapped around.

    An agent trained on a ``VecNormalize`` env acts on normalized observations: its statistics are loaded (as
    rl-zoo3's ``enjoy`` does, frozen and without reward normalization) and the policy sees the evaluation env's raw
    observations through them; the model and the errors stay on raw observations.

    :param paths: agent zip files
    :param env_id: environment id; the evaluation env is ``make_preset_env(env_id)`` (the observations of training)
    :param buffer_path: the run's replay buffer file (:meth:`~sb3_pmac.pmac.PMAC.save_replay_buffer`); None: NaN global
        error and mixture statistics
    :param csv_path: CSV file the rows are appended to (None: no file). An existing file must be a diagnostics CSV
        (``ValueError`` before anything is evaluated otherwise; the file is left unchanged)
    :param config: what to measure (:class:`~sb3_pmac.diagnostics.DiagnosticsConfig`; default: its defaults with
        ``seed=0``, the same seed for every checkpoint). A ``horizon`` of None is the largest horizon of the first
        agent's rollout schedule, for every checkpoint
    :param upto: ``"auto"``: each checkpoint's own step count; an int: the same for all; None: the whole buffer
    :param algo: class to load with (``"pmac"``, ``"mbpo"``; None: as saved)
    :param device: torch device
    :param verbose: 1: print a table per checkpoint
    :param allow_pickle: also read a ``buffer_path`` that is a pickle (the buffer files of earlier versions); reading
        a pickle executes the code it holds: only for files you trust
    :param vecnormalize: the ``VecNormalize`` statistics the policy sees observations through: a ``vecnormalize.pkl``
        file (``VecNormalize.save``; a pickle: only for files you trust) for every checkpoint; ``"auto"``: the file
        :func:`find_vecnormalize` finds next to each agent (none found: raw observations; an agent file copied without
        its statistics cannot be told from one trained without them); None: none (raw observations). Statistics
        saved at another step than the checkpoint warn (the row then differs from the online one): in one training
        ``obs_rms.count`` is ``num_timesteps + n_envs`` (+ 1e-4), e.g. rl-zoo3's ``vecnormalize.pkl`` of the end of
        the run with an earlier checkpoint; not checked for a checkpoint that ``upto="auto"`` places after the data of
        an earlier ``learn`` (a continued run, whose statistics may go on from the earlier run's)
    :param env_kwargs: keyword arguments of the evaluation env (``make_preset_env(env_id, env_kwargs)``): those the
        training env was made with (e.g. rl-zoo3's ``env_kwargs``), so that the errors are measured on its dynamics
    :param options: fields of :class:`~sb3_pmac.diagnostics.DiagnosticsConfig` that replace ``config``'s
    :return: one row per checkpoint with a trained model (a checkpoint of the random warm-up, before the first model
        training, is skipped with a warning, as :class:`~sb3_pmac.diagnostics.ModelDiagnosticsCallback` skips it)
    """
    if config is None:
        options.setdefault("seed", 0)
    config = DiagnosticsConfig.from_options(config, **options)
    if csv_path is not None:
        check_diagnostics_csv(csv_path)
    try:
        env = make_preset_env(env_id, env_kwargs)
    except (gym.error.Error, TypeError) as error:  # an unknown id, kwargs the env does not take
        given = f", {env_kwargs}" if env_kwargs else ""
        raise DiagnosticsInputError(f"Cannot make the evaluation env make_preset_env({env_id!r}{given}): {error}") from error
    normalizers: dict[str, VecNormalize] = {}
    rows = []
    try:
        buffer = load_buffer(buffer_path, allow_pickle=allow_pickle) if buffer_path is not None else None
        for path in _in_step_order(paths):
            agent = load_agent(path, algo=algo, device=device)
            check_spaces(agent, env, env_id)
            if agent.model_rounds_trained == 0:  # a warm-up checkpoint: the callback skips it too
                warnings.warn(
                    f"{os.fspath(path)} holds no trained model yet (saved during the random warm-up, at step "
                    f"{agent.num_timesteps}): skipped, as ModelDiagnosticsCallback skips such steps",
                    UserWarning,
                    stacklevel=2,
                )
                continue
            if buffer is not None:
                buffer.device = agent.device
            config = config.with_run_horizon(agent)
            agent_upto = None
            if buffer is not None and upto is not None:
                agent_upto = checkpoint_upto(agent, buffer) if upto == "auto" else int(upto)
            vecnormalize_path = _vecnormalize_path(path, env_id, vecnormalize)
            if vecnormalize_path is not None:
                key = os.path.abspath(vecnormalize_path)
                if key not in normalizers:
                    normalizers[key] = load_vecnormalize(vecnormalize_path, env)
                agent._vec_normalize_env = normalizers[key]  # what rollout_policy normalizes with
                if verbose >= 1:
                    print(f"{os.fspath(path)}: observations normalized with {vecnormalize_path} (VecNormalize)")
                # a checkpoint that --upto auto places after the data of an earlier learn (a continued run) may
                # legitimately use statistics that go on from that run's
                continued = upto == "auto" and agent_upto is not None and agent_upto != agent.num_timesteps // agent.n_envs
                if not continued:
                    _check_vecnormalize_steps(path, agent, vecnormalize_path, normalizers[key])
            row = evaluate_model(agent, env, config, upto=agent_upto, replay_buffer=buffer)
            rows.append(row)
            if csv_path is not None:
                append_csv_row(csv_path, row)
            if verbose >= 1:
                print(f"== {os.fspath(path)} ({algo_name(agent)}, upto={agent_upto})")
                print(format_row(row))
    finally:
        env.close()
    return rows
