"""
Offline diagnostics: :func:`~sb3_pmac.diagnostics.evaluate_checkpoints` evaluates the saved agents of a run with the
run's final replay buffer, each checkpoint seeing only the data it had collected (the rows the callback would have
written online).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any, Literal

from sb3_pmac.buffer_files import load_buffers
from sb3_pmac.buffers import PolicyVersionedReplayBuffer
from sb3_pmac.diagnostics.metrics import DiagnosticsConfig, evaluate_model
from sb3_pmac.diagnostics.schema import append_csv_row, check_diagnostics_csv, format_row
from sb3_pmac.env_presets import make_preset_env
from sb3_pmac.mbpo import MBPO
from sb3_pmac.pmac import PMAC

#: The classes a saved agent can be loaded with, by name
ALGOS: dict[str, type[PMAC]] = {"pmac": PMAC, "mbpo": MBPO}


def load_agent(path: str | os.PathLike[str], algo: str | None = None, device: str = "auto") -> PMAC:
    """
    Load a saved PMAC or MBPO agent (the replay buffer is not loaded).

    MBPO is PMAC with the adaptive switches off, and the switches are saved with the agent: loading with
    :class:`~sb3_pmac.pmac.PMAC` restores either algorithm. ``algo`` only picks the class of the returned object
    (``"mbpo"`` for a PMAC agent warns that it goes on as PMAC).

    :param path: the agent's zip file
    :param algo: ``"pmac"``, ``"mbpo"`` or None (as saved)
    :param device: torch device
    """
    cls = PMAC if algo is None else ALGOS[algo.lower()]
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


def _checkpoint_sort_key(path: str | os.PathLike[str]) -> int:
    match = re.search(r"agent_(\d+)", os.path.basename(os.fspath(path)))
    return int(match.group(1)) if match else -1


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
    **options: Any,
) -> list[dict[str, float]]:
    """
    Diagnostics of the checkpoints of one run (``agent_<timesteps>.zip``, evaluated in the order of their steps).

    Each checkpoint holds the model, policy and policy mixture at its time; the run's final replay buffer holds the
    data: with ``upto="auto"`` each checkpoint only sees the positions it had collected (``num_timesteps // n_envs``),
    which requires a buffer that never wrapped around.

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
    :param options: fields of :class:`~sb3_pmac.diagnostics.DiagnosticsConfig` that replace ``config``'s
    :return: one row per checkpoint
    """
    if config is None:
        options.setdefault("seed", 0)
    config = DiagnosticsConfig.from_options(config, **options)
    if csv_path is not None:
        check_diagnostics_csv(csv_path)
    buffer = load_buffer(buffer_path, allow_pickle=allow_pickle) if buffer_path is not None else None
    env = make_preset_env(env_id)
    rows = []
    try:
        for path in sorted(paths, key=_checkpoint_sort_key):
            agent = load_agent(path, algo=algo, device=device)
            if buffer is not None:
                buffer.device = agent.device
            config = config.with_run_horizon(agent)
            checkpoint_upto = None
            if buffer is not None and upto is not None:
                checkpoint_upto = agent.num_timesteps // buffer.n_envs if upto == "auto" else int(upto)
            row = evaluate_model(agent, env, config, upto=checkpoint_upto, replay_buffer=buffer)
            rows.append(row)
            if csv_path is not None:
                append_csv_row(csv_path, row)
            if verbose >= 1:
                print(f"== {os.fspath(path)} ({algo_name(agent)}, upto={checkpoint_upto})")
                print(format_row(row))
    finally:
        env.close()
    return rows
