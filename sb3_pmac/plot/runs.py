"""
Finding and reading the runs of learning curves: the learning-curve runner's ``evaluations.csv``, SB3
``EvalCallback``'s ``evaluations.npz`` (rl-zoo3 logs) and SB3 ``Monitor`` files, identified as (env, algorithm, run).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.monitor import Monitor

# File names that make a folder a run directory, in ``--source auto`` order of preference:
#: The evaluations of a run as CSV (the source ``eval_csv``)
EVAL_CSV = "evaluations.csv"
#: The evaluations of a run as written by SB3's ``EvalCallback`` (the source ``eval_npz``)
EVAL_NPZ = "evaluations.npz"
#: The suffix of SB3's ``Monitor`` files (training episodes, the source ``monitor``)
MONITOR_SUFFIX = Monitor.EXT
#: Sources of a learning curve
SOURCES = ("eval_csv", "eval_npz", "monitor")
#: The env name of a run whose env cannot be told from its files or folders
UNKNOWN_ENV = "unknown env"

_SEED_DIR = re.compile(r"^seed_(\d+)$")
#: rl-zoo3's run folder ``<env id>_<n>`` (and an optional uuid); the env id must carry a version (``Hopper-v4``), so
#: that a folder such as ``pmac_1`` is not read as the env "pmac"
_ZOO_RUN_DIR = re.compile(r"^(?P<env>.+?-v\d+)_(?P<run>\d+)(?:_[0-9a-fA-F]{8}-[0-9a-fA-F-]{27})?$")


class PlotError(ValueError):
    """No readable data, or inconsistent inputs (reported by the command line without a traceback)."""


@dataclass
class Curve:
    """
    One run's learning curve.

    :param algo: algorithm name (folder name or ``run.json``'s ``algo``, or the ``ALGO=`` given on the command line)
    :param env: environment id
    :param run: run name within (env, algo): ``seed_0``, ``Hopper-v4_3``, ...
    :param steps: environment steps, increasing
    :param returns: mean evaluation return (``eval_*`` sources) or training episode return (``monitor``) at ``steps``
    :param source: one of :data:`~sb3_pmac.plot.runs.SOURCES`
    :param path: the run directory
    """

    algo: str
    env: str
    run: str
    steps: np.ndarray
    returns: np.ndarray
    source: str
    path: Path


def _read_csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV file, skipping a leading ``#`` comment line (SB3 Monitor) and ragged last lines."""
    with open(path, newline="") as file:
        lines = file.read().splitlines()
    if lines and lines[0].startswith("#"):
        lines = lines[1:]
    rows = [row for row in csv.reader(lines) if row]
    if not rows:
        return [], []
    header = [name.strip() for name in rows[0]]
    return header, [row for row in rows[1:] if len(row) == len(header)]  # a line being written is dropped


def _to_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def read_columns(path: str | Path) -> dict[str, np.ndarray]:
    """
    Numeric columns of a CSV file (an empty or non-numeric cell is ``nan``).

    :param path: CSV file with a header line (an SB3 Monitor ``#{json}`` first line is skipped)
    :return: column name -> float array
    """
    header, rows = _read_csv_rows(Path(path))
    return {name: np.array([_to_float(row[i]) for row in rows], dtype=float) for i, name in enumerate(header)}


def last_per_step(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Finite points sorted by step, keeping the last row of a repeated step (a resumed run re-evaluating a step)."""
    keep = np.isfinite(steps) & np.isfinite(values)
    steps, values = steps[keep], values[keep]
    if len(steps) and np.any(np.diff(steps) <= 0):
        reversed_steps = steps[::-1]
        _, first_in_reversed = np.unique(reversed_steps, return_index=True)  # sorted unique steps, last occurrence
        index = len(steps) - 1 - first_in_reversed
        steps, values = steps[index], values[index]
    return steps, values


def load_evaluations_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """
    ``(timesteps, mean_return)`` of an ``evaluations.csv`` written by ``benchmarks/learning_curves.py``.

    :param path: the file, or the run directory holding it
    """
    path = Path(path)
    columns = read_columns(path / EVAL_CSV if path.is_dir() else path)
    if "timesteps" not in columns or "mean_return" not in columns:
        raise PlotError(f"{path}: expected columns timesteps,mean_return (got {sorted(columns)})")
    return last_per_step(columns["timesteps"], columns["mean_return"])


def load_evaluations_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """
    ``(timesteps, mean return over the evaluation episodes)`` of an SB3 ``EvalCallback`` log.

    :param path: ``evaluations.npz``, or the folder holding it
    """
    path = Path(path)
    with np.load(path / EVAL_NPZ if path.is_dir() else path) as data:
        timesteps = np.asarray(data["timesteps"], dtype=float).reshape(-1)
        results = np.asarray(data["results"], dtype=float)
    returns = results.reshape(len(timesteps), -1).mean(axis=1) if results.size else np.zeros(0)
    return last_per_step(timesteps, returns)


def monitor_files(run_dir: str | Path) -> list[Path]:
    """SB3 Monitor files of a folder: ``monitor.csv`` and ``<i>.monitor.csv`` (one per env of a VecEnv)."""
    return sorted(path for path in Path(run_dir).iterdir() if path.is_file() and path.name.endswith(MONITOR_SUFFIX))


def monitor_env_id(path: str | Path) -> str | None:
    """The ``env_id`` of a Monitor file's ``#{json}`` header, if any."""
    with open(path) as file:
        first = file.readline()
    if not first.startswith("#"):
        return None
    try:
        env_id = json.loads(first[1:]).get("env_id")
    except (json.JSONDecodeError, AttributeError):
        return None
    return str(env_id) if env_id else None


def load_monitor(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """
    Training episodes of SB3 Monitor files: ``(cumulative steps at each episode's end, episode return)``.

    One file is read in its row order (a resumed run appends rows whose ``t`` restarts from 0); the files of a
    ``VecEnv`` (``0.monitor.csv``, ``1.monitor.csv``, ...) are merged by wall-clock time ``t``, like
    ``stable_baselines3.common.monitor.load_results``, within each resumed part (a file's part ends where its ``t``
    goes back), so that the episodes of a resume come after those of the run it continues.
    That function is not used: it sorts a single file by ``t``
    too (reordering a resumed run), keeps a half-written last line, and needs pandas.

    :param path: a Monitor file, or a folder holding Monitor files
    """
    path = Path(path)
    files = monitor_files(path) if path.is_dir() else [path]
    if not files:
        raise PlotError(f"{path}: no *monitor.csv file")
    lengths, returns, times, parts = [], [], [], []
    for file in files:
        columns = read_columns(file)
        if not {"r", "l"} <= columns.keys():
            raise PlotError(f"{file}: not an SB3 Monitor file (expected columns r,l,t; got {sorted(columns)})")
        lengths.append(columns["l"])
        returns.append(columns["r"])
        time = columns.get("t", np.arange(len(columns["r"]), dtype=float))
        times.append(time)
        parts.append(np.concatenate([[0], np.cumsum(np.diff(time) < 0)]) if len(time) else np.zeros(0))
    length, episode_return = np.concatenate(lengths), np.concatenate(returns)
    if len(files) > 1:
        order = np.lexsort((np.concatenate(times), np.concatenate(parts)))  # by resumed part, then by time
        length, episode_return = length[order], episode_return[order]
    keep = np.isfinite(length) & np.isfinite(episode_return)
    return np.cumsum(length[keep]), episode_return[keep]


def _run_source(run_dir: Path, source: str) -> str | None:
    """Which source a folder offers (``source="auto"``: the first of :data:`~sb3_pmac.plot.runs.SOURCES` present), or None."""
    present = {
        "eval_csv": (run_dir / EVAL_CSV).is_file(),
        "eval_npz": (run_dir / EVAL_NPZ).is_file(),
        "monitor": bool(monitor_files(run_dir)),
    }
    if source == "auto":
        return next((name for name in SOURCES if present[name]), None)
    if source == "eval":
        return next((name for name in ("eval_csv", "eval_npz") if present[name]), None)
    return source if present.get(source) else None


def _read_run_json(run_dir: Path) -> dict[str, Any]:
    try:
        record = json.loads((run_dir / "run.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def identify_run(run_dir: str | Path) -> tuple[str, str, str]:
    """
    ``(algo, env, run name)`` of a run directory, from (first that applies):

    * ``run.json`` (``algo``, ``env``, ``seed``): ``benchmarks/learning_curves.py``;
    * rl-zoo3's ``<algo>/<env>_<n>/`` with its ``<env>/config.yml`` sub-folder;
    * a Monitor file header's ``env_id``;
    * the folder names: ``<env>/<algo>/seed_<n>/`` or ``<algo>/<env>_<n>/`` (an env id with its version, e.g.
      ``Hopper-v4_1``); otherwise the algorithm is the parent folder's name and the env unknown.
    """
    run_dir = Path(run_dir).resolve()
    record = _read_run_json(run_dir)
    algo = str(record.get("algo") or run_dir.parent.name)
    seed_dir = _SEED_DIR.match(run_dir.name)
    zoo_dir = _ZOO_RUN_DIR.match(run_dir.name)
    env: str | None = str(record["env"]) if record.get("env") else None
    if env is None:
        env = next((sub.name for sub in sorted(run_dir.iterdir()) if sub.is_dir() and (sub / "config.yml").is_file()), None)
    if env is None:
        env = next((found for file in monitor_files(run_dir) if (found := monitor_env_id(file))), None)
    if env is None and seed_dir:
        env = run_dir.parent.parent.name
    if env is None and zoo_dir:
        env = zoo_dir["env"]
    run = f"seed_{record['seed']}" if record.get("seed") is not None else run_dir.name
    return algo, env or UNKNOWN_ENV, run


def find_run_dirs(
    root: str | Path, source: str = "auto", marker: Callable[[Path, str], str | None] = _run_source
) -> list[Path]:
    """
    Run directories under ``root`` (itself included), not looking inside a run directory.

    :param root: folder to search recursively
    :param source: ``auto``, ``eval`` or one of :data:`~sb3_pmac.plot.runs.SOURCES`
    :param marker: ``marker(folder, source)`` is not None for a run directory
    """
    found = []
    for folder, subfolders, _ in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith((".", "__")))
        if marker(Path(folder), source) is not None:
            found.append(Path(folder))
            subfolders[:] = []
    return found


def split_label(argument: str | Path) -> tuple[str | None, Path]:
    """
    ``"ALGO=PATH"`` -> ``("ALGO", PATH)``; a plain path (or an existing path containing ``=``) -> ``(None, PATH)``.

    :raises PlotError: when ``PATH`` does not exist
    """
    text = str(argument)
    label, path = None, Path(text)
    if "=" in text and not path.exists():
        label, name = text.split("=", 1)
        path = Path(name)
    if not path.exists():
        raise PlotError(f"{path}: no such file or folder")
    return label, path


def _load_curve(run_dir: Path, source: str) -> tuple[np.ndarray, np.ndarray]:
    if source == "eval_csv":
        return load_evaluations_csv(run_dir)
    if source == "eval_npz":
        return load_evaluations_npz(run_dir)
    return load_monitor(run_dir)


def _file_source(path: Path) -> str:
    if path.name.endswith(MONITOR_SUFFIX):
        return "monitor"
    if path.suffix == ".npz":
        return "eval_npz"
    return "eval_csv"


def load_runs(
    root: str | Path | Sequence[str | Path],
    source: str = "auto",
    algos: Sequence[str] | None = None,
    envs: Sequence[str] | None = None,
    min_steps: float | None = None,
    verbose: bool = True,
) -> dict[str, dict[str, list[Curve]]]:
    """
    Learning curves found under one or several folders (or files), grouped by env then algorithm.

    :param root: folder(s) or file(s); ``"ALGO=PATH"`` names the algorithm of every run under ``PATH``
    :param source: ``auto`` (per run directory: ``evaluations.csv``, else ``evaluations.npz``, else Monitor files),
        ``eval`` (either evaluation file), ``eval_csv``, ``eval_npz`` or ``monitor``
    :param algos: keep only these algorithms (case-insensitive)
    :param envs: keep only these envs
    :param min_steps: drop runs whose last step is below this (e.g. runs that have just started)
    :param verbose: print skipped runs to stderr
    :return: ``{env: {algo: [Curve, ...]}}``
    :raises PlotError: when nothing readable is found
    """
    roots = [root] if isinstance(root, (str, Path)) else list(root)
    wanted_algos = {algo.lower() for algo in algos} if algos else None
    runs: dict[str, dict[str, list[Curve]]] = {}
    skipped = []
    seen: set[Path] = set()
    for argument in roots:
        label, path = split_label(argument)
        if path.is_file():
            candidates = [(path.parent, _file_source(path))]
        else:
            candidates = [(run_dir, str(_run_source(run_dir, source))) for run_dir in find_run_dirs(path, source)]
        for run_dir, run_source in candidates:
            found = (path if path.is_file() else run_dir).resolve()
            if found in seen:
                continue  # found twice (a folder and a run inside it): one run
            seen.add(found)
            algo, env, run = identify_run(run_dir)
            algo = label or algo
            if (wanted_algos is not None and algo.lower() not in wanted_algos) or (envs and env not in envs):
                continue
            try:
                steps, returns = _load_curve(path if path.is_file() else run_dir, run_source)
            except (OSError, ValueError, KeyError) as error:
                skipped.append(f"{run_dir}: unreadable ({error})")
                continue
            if len(steps) == 0:
                skipped.append(f"{run_dir}: no data yet")
                continue
            if min_steps is not None and steps[-1] < min_steps:
                skipped.append(f"{run_dir}: only {steps[-1]:.0f} steps (< --min-steps {min_steps:.0f})")
                continue
            curve = Curve(algo, env, run, steps, returns, run_source, run_dir)
            runs.setdefault(env, {}).setdefault(algo, []).append(curve)
    if verbose:
        for line in skipped:
            print(f"skipped {line}", file=sys.stderr)
        for env, by_algo in runs.items():
            for algo, curves in by_algo.items():
                settings = sorted({str(value) for curve in curves if (value := _read_run_json(curve.path).get("settings"))})
                if len(settings) > 1:
                    print(f"warning: {algo} on {env} averages runs of different settings ({', '.join(settings)}, "
                          "run.json): give them apart as ALGO=PATH", file=sys.stderr)  # fmt: skip
    if not runs:
        details = "".join(f"\n  skipped {line}" for line in skipped)
        raise PlotError(
            f"No readable runs in {', '.join(map(str, roots))} (source={source}"
            + (f", algos={list(algos)}" if algos else "")
            + (f", envs={list(envs)}" if envs else "")
            + "): expected <env>/<algo>/seed_<n>/evaluations.csv (benchmarks/learning_curves.py), evaluations.npz "
            "(SB3 EvalCallback, rl-zoo3 logs) or *monitor.csv files (SB3 Monitor)" + details
        )
    return runs
