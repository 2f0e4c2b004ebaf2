"""
Learning curves and model diagnostics figures (matplotlib, Agg backend: no display needed).

Learning curves of several algorithms, mean over seeds with a shaded +/- one standard deviation, one panel per env::

    python -m sb3_pmac.plot curves results --out curves.png --out curves.svg
    python -m sb3_pmac.plot curves results/InvertedPendulum-v5 --algos pmac mbpo sac --out ip.png
    python -m sb3_pmac.plot curves logs/ --source monitor --smooth 20 --x-max 100000 --out train.png
    python -m sb3_pmac.plot curves pmac=results/Hopper-v5/pmac sac=logs/sac --labels pmac="PMAC (ours)" --out mixed.png

Each positional argument is a folder (searched recursively) or a file, optionally prefixed by ``ALGO=`` to name the
algorithm of every run found there. A run directory is a folder holding one of, in this order of preference
(``--source auto``):

* ``evaluations.csv`` (``timesteps,mean_return,std_return,wall_s``): ``benchmarks/learning_curves.py``, laid out as
  ``<root>/<env>/<algo>/seed_<n>/`` with a ``run.json`` naming the algorithm and env;
* ``evaluations.npz`` (``timesteps``, ``results`` of shape ``(n_evals, n_episodes)``): SB3's ``EvalCallback``, e.g. in
  rl-zoo3's ``<logs>/<algo>/<env>_<run>/``;
* ``monitor.csv`` / ``0.monitor.csv``, ``1.monitor.csv``, ... (SB3 ``Monitor``): training episode returns against the
  cumulative number of steps (of finished episodes, all envs of a ``VecEnv`` merged in wall-clock order).

Runs of the same (env, algorithm) are seeds: they are aligned on their common range of steps (truncated to the shortest
run, which the legend and a printed note say) and linearly interpolated onto the union of their evaluation steps (onto
``--n-points`` evenly spaced steps for monitor data). A table ``algo, env, seeds, final mean +/- std, steps`` goes to
stdout.

One-step and compounding model errors and the policy mixture over training, from ``diagnostics.csv`` files
(``sb3_pmac/diagnostics.py``; columns ``timesteps``, ``local_obs_mse``, ``global_obs_mse``, ...,
``mixture_effective_versions``, ``compounding_obs_mse_h<h>``)::

    python -m sb3_pmac.plot diagnostics --csv pmac=runs/pmac_diag.csv --csv mbpo=runs/mbpo_diag.csv --out diag.png
    python -m sb3_pmac.plot diagnostics results/Hopper-v5 --at-step 50000 --separate --out diag.svg

The same from Python::

    from sb3_pmac.plot import load_runs, plot_curves

    figure = plot_curves(load_runs("results"), algos=["pmac", "mbpo", "sac"])
    figure.savefig("curves.png")

rl-zoo3's own plot scripts also work on rl-zoo3 log folders with our algorithms registered:
``python -m sb3_pmac.zoo all_plots --algo pmac mbpo sac --env Hopper-v4 -f logs/`` (``evaluations.npz``),
``python -m sb3_pmac.zoo plot_train --algo pmac --env Hopper-v4 -f logs/`` (monitor files) and ``plot_from_file``.
``curves`` here reads the runner's CSV files as well, and mixes sources (runner results next to zoo logs).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: File names that make a folder a run directory, in ``--source auto`` order of preference
EVAL_CSV = "evaluations.csv"
EVAL_NPZ = "evaluations.npz"
MONITOR_SUFFIX = "monitor.csv"
DIAGNOSTICS_CSV = "diagnostics.csv"
#: Sources of a learning curve
SOURCES = ("eval_csv", "eval_npz", "monitor")
#: Display names of known algorithms (others are shown as named)
DEFAULT_LABELS = {"pmac": "PMAC", "mbpo": "MBPO", "sac": "SAC", "td3": "TD3", "ppo": "PPO", "tqc": "TQC"}
#: Default order of known algorithms in legends and tables (others follow, alphabetically)
PREFERRED_ORDER = ("pmac", "mbpo", "sac")
#: Steps of the common grid when averaging monitor (training episode) curves
MONITOR_GRID_POINTS = 200
UNKNOWN_ENV = "unknown env"

_SEED_DIR = re.compile(r"^seed_(\d+)$")
_ZOO_RUN_DIR = re.compile(r"^(?P<env>.+?)_(?P<run>\d+)(?:_[0-9a-fA-F]{8}-[0-9a-fA-F-]{27})?$")
_COMPOUNDING = re.compile(r"^compounding_obs_mse_h(\d+)$")


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
    :param source: one of :data:`SOURCES`
    :param path: the run directory
    """

    algo: str
    env: str
    run: str
    steps: np.ndarray
    returns: np.ndarray
    source: str
    path: Path


@dataclass
class Summary:
    """
    The seeds of one (env, algorithm) aggregated by :func:`aggregate`.

    :param steps: common steps
    :param mean: mean over seeds at ``steps``
    :param std: standard deviation over seeds (``ddof=0``) at ``steps``
    :param n_seeds: number of runs averaged
    :param longest: last step of the longest run (``> steps[-1]`` when the runs were truncated to the shortest one)
    :param sources: the curves' sources
    """

    steps: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    n_seeds: int
    longest: float
    sources: tuple[str, ...]

    @property
    def truncated(self) -> bool:
        """Whether a longer run was cut to the shortest one's last step."""
        return bool(self.longest > self.steps[-1])


# ---------------------------------------------------------------------------------------------------------------------
# Readers


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


def _last_per_step(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    return _last_per_step(columns["timesteps"], columns["mean_return"])


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
    return _last_per_step(timesteps, returns)


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
    ``VecEnv`` (``0.monitor.csv``, ``1.monitor.csv``, ...) are merged by wall-clock time ``t`` first, like
    ``stable_baselines3.common.monitor.load_results``.

    :param path: a Monitor file, or a folder holding Monitor files
    """
    path = Path(path)
    files = monitor_files(path) if path.is_dir() else [path]
    if not files:
        raise PlotError(f"{path}: no *monitor.csv file")
    lengths, returns, times = [], [], []
    for file in files:
        columns = read_columns(file)
        if not {"r", "l"} <= columns.keys():
            raise PlotError(f"{file}: not an SB3 Monitor file (expected columns r,l,t; got {sorted(columns)})")
        lengths.append(columns["l"])
        returns.append(columns["r"])
        times.append(columns.get("t", np.arange(len(columns["r"]), dtype=float)))
    length, episode_return = np.concatenate(lengths), np.concatenate(returns)
    if len(files) > 1:
        order = np.argsort(np.concatenate(times), kind="stable")
        length, episode_return = length[order], episode_return[order]
    keep = np.isfinite(length) & np.isfinite(episode_return)
    return np.cumsum(length[keep]), episode_return[keep]


# ---------------------------------------------------------------------------------------------------------------------
# Finding runs


def _run_source(run_dir: Path, source: str) -> str | None:
    """Which source a folder offers (``source="auto"``: the first of :data:`SOURCES` present), or None."""
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
    * the folder names: ``<env>/<algo>/seed_<n>/`` or ``<algo>/<env>_<n>/``; otherwise the algorithm is the parent
      folder's name and the env unknown.
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
    :param source: ``auto``, ``eval`` or one of :data:`SOURCES`
    :param marker: ``marker(folder, source)`` is not None for a run directory
    """
    found = []
    for folder, subfolders, _ in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith((".", "__")))
        if marker(Path(folder), source) is not None:
            found.append(Path(folder))
            subfolders[:] = []
    return found


def _split_label(argument: str | Path) -> tuple[str | None, Path]:
    """``"ALGO=PATH"`` -> ``("ALGO", PATH)``; a plain path (or an existing path containing ``=``) -> ``(None, PATH)``."""
    text = str(argument)
    if "=" in text and not Path(text).exists():
        label, path = text.split("=", 1)
        return label, Path(path)
    return None, Path(text)


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
    for argument in roots:
        label, path = _split_label(argument)
        if not path.exists():
            raise PlotError(f"{path}: no such file or folder")
        if path.is_file():
            candidates = [(path.parent, _file_source(path))]
        else:
            candidates = [(run_dir, str(_run_source(run_dir, source))) for run_dir in find_run_dirs(path, source)]
        for run_dir, run_source in candidates:
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


# ---------------------------------------------------------------------------------------------------------------------
# Aggregation


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """
    Trailing moving average: point ``i`` is the mean of ``values[max(0, i - window + 1) : i + 1]`` (same length).

    :param values: 1D array
    :param window: number of points averaged (1: unchanged)
    """
    values = np.asarray(values, dtype=float)
    if window <= 1 or len(values) == 0:
        return values
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    index = np.arange(1, len(values) + 1)
    start = np.maximum(index - window, 0)
    return (cumulative[index] - cumulative[start]) / (index - start)


def _as_xy(curve: Curve | tuple[Any, Any]) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(curve, Curve):
        steps, values = curve.steps, curve.returns
    else:
        steps, values = curve
    order = np.argsort(np.asarray(steps, dtype=float), kind="stable")
    return _last_per_step(np.asarray(steps, dtype=float)[order], np.asarray(values, dtype=float)[order])


def aggregate(
    curves: Sequence[Curve | tuple[Any, Any]],
    grid: int | np.ndarray | None = None,
    x_max: float | None = None,
    window: int = 1,
    ddof: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    Mean and standard deviation over runs, on common steps.

    The runs are cut to their common range ``[max of first steps, min of last steps]`` (truncation to the shortest run)
    and linearly interpolated onto ``grid``.

    :param curves: :class:`Curve` objects or ``(steps, values)`` pairs (unsorted steps are sorted; ``nan`` dropped)
    :param grid: ``None``: the union of the runs' steps within the common range (the runs' own steps when they share
        them); an int ``n``: ``n`` evenly spaced steps over the common range; an array: these steps (outside the common
        range dropped)
    :param x_max: drop the steps above it first
    :param window: moving average (:func:`smooth`) of each run over this many points, before interpolation
    :param ddof: delta degrees of freedom of the standard deviation (0: population std, as rl-zoo3's plots)
    :return: ``(steps, mean, std)``
    :raises PlotError: no data, or runs that do not overlap
    """
    pairs = []
    for curve in curves:
        steps, values = _as_xy(curve)
        values = smooth(values, window)
        if x_max is not None:
            steps, values = steps[steps <= x_max], values[steps <= x_max]
        if len(steps):
            pairs.append((steps, values))
    if not pairs:
        raise PlotError("no data to aggregate" + (f" at or below x_max={x_max}" if x_max is not None else ""))
    start, end = max(steps[0] for steps, _ in pairs), min(steps[-1] for steps, _ in pairs)
    if start > end:
        raise PlotError(f"the runs do not overlap (latest start {start:g} > earliest end {end:g})")
    if grid is None:
        points = np.unique(np.concatenate([steps[(steps >= start) & (steps <= end)] for steps, _ in pairs]))
    elif isinstance(grid, (int, np.integer)):
        points = np.linspace(start, end, int(grid)) if end > start else np.array([start])
    else:
        points = np.asarray(grid, dtype=float)
        points = points[(points >= start) & (points <= end)]
    values = np.stack([np.interp(points, steps, curve_values) for steps, curve_values in pairs])
    std = values.std(axis=0, ddof=ddof) if len(pairs) > ddof else np.full(len(points), np.nan)
    return points, values.mean(axis=0), std


def summarize(curves: Sequence[Curve], n_points: int | None = None, x_max: float | None = None, window: int = 1) -> Summary:
    """
    :func:`aggregate` of one (env, algorithm)'s runs, with the bookkeeping for legends and tables.

    :param curves: the runs (seeds)
    :param n_points: common grid size; default: the union of evaluation steps, :data:`MONITOR_GRID_POINTS` evenly
        spaced steps when a run comes from Monitor files
    :param x_max: drop the steps above it
    :param window: moving average over this many points (:func:`smooth`)
    """
    sources = tuple(sorted({curve.source for curve in curves}))
    if n_points is None and "monitor" in sources:
        n_points = MONITOR_GRID_POINTS
    steps, mean, std = aggregate(curves, grid=n_points, x_max=x_max, window=window)
    ends = [curve.steps[curve.steps <= x_max] if x_max is not None else curve.steps for curve in curves]
    longest = max(float(run_steps[-1]) for run_steps in ends if len(run_steps))
    return Summary(steps, mean, std, sum(len(run_steps) > 0 for run_steps in ends), longest, sources)


def order_algos(names: Iterable[str], algos: Sequence[str] | None = None) -> list[str]:
    """
    Algorithm names in display order: ``algos``' order (case-insensitive; others dropped) when given, else
    :data:`PREFERRED_ORDER` first, then alphabetical.
    """
    names = list(dict.fromkeys(names))
    if algos:
        by_lower = {name.lower(): name for name in names}
        return [by_lower[algo.lower()] for algo in algos if algo.lower() in by_lower]
    rank = {name: index for index, name in enumerate(PREFERRED_ORDER)}
    return sorted(names, key=lambda name: (rank.get(name.lower(), len(rank)), name.lower()))


def summarize_runs(
    runs: dict[str, dict[str, list[Curve]]],
    n_points: int | None = None,
    x_max: float | None = None,
    window: int = 1,
    verbose: bool = True,
) -> dict[str, dict[str, Summary]]:
    """
    :func:`summarize` of every (env, algorithm) of :func:`load_runs`' result.

    :param verbose: print truncations and mixed sources to stderr
    :return: ``{env: {algo: Summary}}``
    """
    summaries: dict[str, dict[str, Summary]] = {}
    for env in sorted(runs):
        for algo, curves in runs[env].items():
            summary = summarize(curves, n_points=n_points, x_max=x_max, window=window)
            summaries.setdefault(env, {})[algo] = summary
            if verbose and summary.truncated:
                print(
                    f"note: {algo} on {env}: runs end between {summary.steps[-1]:.0f} and {summary.longest:.0f} "
                    f"steps; truncated to {summary.steps[-1]:.0f} (shortest run)",
                    file=sys.stderr,
                )
            if verbose and len(summary.sources) > 1:
                print(
                    f"warning: {algo} on {env} mixes sources {summary.sources} (use ALGO=PATH to separate them)",
                    file=sys.stderr,
                )
    return summaries


def format_table(summaries: dict[str, dict[str, Summary]], algos: Sequence[str] | None = None) -> str:
    """
    A text table ``algo, env, seeds, final (mean +/- std over seeds at the last common step), steps``.

    :param summaries: :func:`summarize_runs`' result
    :param algos: algorithm order/filter (see :func:`order_algos`)
    """
    rows = [("algo", "env", "seeds", "final return", "steps")]
    for env, by_algo in summaries.items():
        for algo in order_algos(by_algo, algos):
            summary = by_algo[algo]
            steps = f"{summary.steps[-1]:.0f}" + (f" (longest {summary.longest:.0f})" if summary.truncated else "")
            final = f"{summary.mean[-1]:.2f} ± {summary.std[-1]:.2f}"
            rows.append((algo, env, str(summary.n_seeds), final, steps))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows)


# ---------------------------------------------------------------------------------------------------------------------
# Figures


def _pyplot() -> Any:
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # no display: choose the backend before pyplot is first imported
    import matplotlib.pyplot as plt

    return plt


def _parse_labels(labels: Sequence[str] | dict[str, str] | None, algos: Sequence[str] | None) -> dict[str, str]:
    """``{"pmac": "PMAC (ours)"}`` from a dict, ``["pmac=PMAC (ours)", ...]``, or labels in ``algos``' order."""
    if labels is None:
        return {}
    if isinstance(labels, dict):
        return {key.lower(): value for key, value in labels.items()}
    if all("=" in label for label in labels):
        return {key.lower(): value for key, value in (label.split("=", 1) for label in labels)}
    if not algos or len(algos) != len(labels):
        raise PlotError(f"--labels {list(labels)}: give one label per --algos entry, or ALGO=LABEL pairs")
    return {algo.lower(): label for algo, label in zip(algos, labels, strict=True)}


def display_name(algo: str, labels: dict[str, str] | None = None) -> str:
    """The legend name of ``algo``: its label, else :data:`DEFAULT_LABELS`, else ``algo``."""
    return (labels or {}).get(algo.lower()) or DEFAULT_LABELS.get(algo.lower(), algo)


def _legend_label(name: str, summary: Summary) -> str:
    seeds = f"{summary.n_seeds} seed{'s' if summary.n_seeds != 1 else ''}"
    cut = f", cut at {summary.steps[-1]:,.0f} steps" if summary.truncated else ""
    return f"{name} ({seeds}{cut})"


def _y_label(sources: Iterable[str]) -> str:
    sources = set(sources)
    if sources <= {"eval_csv", "eval_npz"}:
        return "Evaluation return"
    if sources == {"monitor"}:
        return "Training episode return"
    return "Return"


def plot_curves(
    runs: dict[str, dict[str, list[Curve]]],
    algos: Sequence[str] | None = None,
    labels: Sequence[str] | dict[str, str] | None = None,
    title: str | None = None,
    x_max: float | None = None,
    window: int = 1,
    n_points: int | None = None,
    ncols: int = 3,
    panel_size: tuple[float, float] = (5.0, 3.6),
) -> Figure:
    """
    Learning curves: one panel per env, one line per algorithm (mean over seeds) with a +/- std band.

    In each panel, ``ax.lines[i]`` is the mean of the ``i``-th algorithm present there (in :func:`order_algos` order).

    :param runs: :func:`load_runs`' result
    :param algos: algorithms to show, in this order (default: all)
    :param labels: legend names: ``{algo: label}``, ``["algo=label", ...]``, or a list in ``algos``' order
    :param title: figure title
    :param x_max: last step shown
    :param window: moving average of each run over this many points (:func:`smooth`)
    :param n_points: common grid size (see :func:`summarize`)
    :param ncols: panels per row
    :param panel_size: inches per panel
    """
    plt = _pyplot()
    label_map = _parse_labels(labels, algos)
    summaries = summarize_runs(runs, n_points=n_points, x_max=x_max, window=window, verbose=False)
    envs = [env for env in sorted(summaries) if order_algos(summaries[env], algos)]
    if not envs:
        raise PlotError(
            f"no runs of algorithms {list(algos or [])} (found {sorted({a for s in summaries.values() for a in s})})"
        )
    all_algos = order_algos([algo for env in envs for algo in summaries[env]], algos)
    colors = {algo: f"C{index % 10}" for index, algo in enumerate(all_algos)}
    ncols = max(1, min(ncols, len(envs)))
    nrows = math.ceil(len(envs) / ncols)
    figure, axes = plt.subplots(nrows, ncols, figsize=(panel_size[0] * ncols, panel_size[1] * nrows), squeeze=False)
    for ax, env in zip(axes.flat, envs, strict=False):
        for algo in order_algos(summaries[env], algos):
            summary = summaries[env][algo]
            label = _legend_label(display_name(algo, label_map), summary)
            ax.plot(
                summary.steps, summary.mean, color=colors[algo], label=label, marker="o" if len(summary.steps) == 1 else None
            )
            ax.fill_between(
                summary.steps, summary.mean - summary.std, summary.mean + summary.std, color=colors[algo], alpha=0.2
            )
        ax.set_title(env)
        ax.set_xlabel("Environment steps")
        ax.set_ylabel(_y_label(source for summary in summaries[env].values() for source in summary.sources))
        if x_max is not None:
            ax.set_xlim(right=x_max)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(envs) :]:
        ax.set_visible(False)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


@dataclass
class DiagnosticsRun:
    """
    One ``diagnostics.csv``.

    :param algo: algorithm name
    :param env: environment id
    :param run: run name (``seed_<n>`` or the file name)
    :param columns: column name -> values (``nan`` for empty cells)
    :param path: the file
    """

    algo: str
    env: str
    run: str
    columns: dict[str, np.ndarray]
    path: Path


def compounding_columns(columns: Iterable[str]) -> list[tuple[int, str]]:
    """``[(h, "compounding_obs_mse_h<h>"), ...]`` sorted by the horizon ``h`` as a number (``h10`` after ``h9``)."""
    found = [(int(match[1]), name) for name in columns if (match := _COMPOUNDING.match(name))]
    return sorted(found)


def _has_diagnostics(folder: Path, _source: str) -> str | None:
    return "diagnostics" if (folder / DIAGNOSTICS_CSV).is_file() else None


def load_diagnostics(
    inputs: Sequence[str | Path], envs: Sequence[str] | None = None
) -> dict[str, dict[str, list[DiagnosticsRun]]]:
    """
    Diagnostics CSV files, grouped by env then algorithm.

    :param inputs: ``"ALGO=PATH"`` or ``PATH``; a file is one run (its algorithm: ``ALGO``, else ``run.json`` or the
        runner layout ``<env>/<algo>/seed_<n>/diagnostics.csv``, else the file name), a folder is searched for
        ``diagnostics.csv`` files
    :param envs: keep only these envs
    :return: ``{env: {algo: [DiagnosticsRun, ...]}}``
    :raises PlotError: when nothing readable is found
    """
    runs: dict[str, dict[str, list[DiagnosticsRun]]] = {}
    for argument in inputs:
        label, path = _split_label(argument)
        if not path.exists():
            raise PlotError(f"{path}: no such file or folder")
        files = (
            [path] if path.is_file() else [folder / DIAGNOSTICS_CSV for folder in find_run_dirs(path, "", _has_diagnostics)]
        )
        for file in files:
            if file.name == DIAGNOSTICS_CSV:
                algo, env, run = identify_run(file.parent)
            else:
                algo, env, run = file.stem, UNKNOWN_ENV, file.stem
            columns = read_columns(file)
            if "timesteps" not in columns or len(columns["timesteps"]) == 0:
                print(f"skipped {file}: no timesteps column or no rows", file=sys.stderr)
                continue
            if envs and env not in envs:
                continue
            runs.setdefault(env, {}).setdefault(label or algo, []).append(
                DiagnosticsRun(label or algo, env, run, columns, file)
            )
    if not runs:
        raise PlotError(
            f"No readable diagnostics in {', '.join(map(str, inputs))}: expected CSV files with a timesteps column, or "
            f"folders holding <env>/<algo>/seed_<n>/{DIAGNOSTICS_CSV}"
        )
    return runs


def _column_curves(runs: Sequence[DiagnosticsRun], column: str) -> list[tuple[np.ndarray, np.ndarray]]:
    return [
        (run.columns["timesteps"], run.columns[column])
        for run in runs
        if column in run.columns and np.isfinite(run.columns[column]).any()
    ]


def _draw_band(ax: Axes, steps: np.ndarray, mean: np.ndarray, std: np.ndarray, log: bool = False, **kwargs: Any) -> None:
    (line,) = ax.plot(steps, mean, **kwargs)
    low = np.maximum(mean - std, mean * 1e-3) if log else mean - std  # keep the band positive on a log axis
    ax.fill_between(steps, low, mean + std, color=line.get_color(), alpha=0.15, linewidth=0)


def draw_model_errors(
    ax: Axes, runs: dict[str, list[DiagnosticsRun]], kind: str = "obs", algos: Sequence[str] | None = None
) -> None:
    """
    Panel (a): local and global one-step model errors over training (log scale), mean +/- std over seeds.
    One color per algorithm; solid line: local (recent-policy states), dashed: global (whole buffer).

    :param ax: where to draw
    :param runs: ``{algo: [DiagnosticsRun, ...]}`` of one env
    :param kind: ``obs`` or ``reward``
    :param algos: order/filter
    """
    for index, algo in enumerate(order_algos(runs, algos)):
        for scope, style in (("local", "-"), ("global", "--")):
            curves = _column_curves(runs[algo], f"{scope}_{kind}_mse")
            if curves:
                steps, mean, std = aggregate(curves)
                _draw_band(
                    ax,
                    steps,
                    mean,
                    std,
                    log=True,
                    color=f"C{index % 10}",
                    linestyle=style,
                    label=f"{display_name(algo)} {scope}",
                )
    ax.set_yscale("log")
    ax.set_xlabel("Environment steps")
    ax.set_ylabel(f"One-step {kind} MSE")
    ax.set_title(f"Local vs global model error ({kind})")


def _row_at(run: DiagnosticsRun, at_step: float | None) -> int | None:
    steps = run.columns["timesteps"]
    candidates = np.flatnonzero(np.isfinite(steps) & (steps <= at_step)) if at_step is not None else np.arange(len(steps))
    return int(candidates[-1]) if len(candidates) else None


def compounding_errors(
    runs: Sequence[DiagnosticsRun], at_step: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[float]]:
    """
    Compounding observation error against the horizon, mean and std over runs.

    :param runs: runs of one algorithm
    :param at_step: use each run's last row with ``timesteps <= at_step`` (default: its last row)
    :return: ``(horizons, mean, std, steps used per run)``
    """
    horizons = sorted({h for run in runs for h, _ in compounding_columns(run.columns)})
    rows, used_steps = [], []
    for run in runs:
        row = _row_at(run, at_step)
        if row is None:
            continue
        by_h = {h: name for h, name in compounding_columns(run.columns)}
        rows.append([run.columns[by_h[h]][row] if h in by_h else math.nan for h in horizons])
        used_steps.append(float(run.columns["timesteps"][row]))
    if not rows or not horizons:
        return np.zeros(0), np.zeros(0), np.zeros(0), used_steps
    values = np.array(rows, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a horizon missing in every run: nan, no warning
        return np.array(horizons), np.nanmean(values, axis=0), np.nanstd(values, axis=0), used_steps


def draw_compounding(
    ax: Axes, runs: dict[str, list[DiagnosticsRun]], at_step: float | None = None, algos: Sequence[str] | None = None
) -> None:
    """
    Panel (b): compounding observation error of model rollouts against the horizon ``h`` (log scale), at the last row
    or at ``at_step``, mean +/- std over seeds.

    :param ax: where to draw
    :param runs: ``{algo: [DiagnosticsRun, ...]}`` of one env
    :param at_step: training step (each run's last row at or before it); default: the last row
    :param algos: order/filter
    """
    steps_used: list[float] = []
    for index, algo in enumerate(order_algos(runs, algos)):
        horizons, mean, std, used = compounding_errors(runs[algo], at_step)
        if len(horizons):
            _draw_band(ax, horizons, mean, std, log=True, color=f"C{index % 10}", marker="o", label=display_name(algo))
            steps_used.extend(used)
    ax.set_yscale("log")
    ax.set_xlabel("Rollout horizon h")
    ax.set_ylabel("Compounding obs MSE")
    where = (
        f"step {min(steps_used):,.0f}"
        if steps_used and min(steps_used) == max(steps_used)
        else (f"steps {min(steps_used):,.0f}-{max(steps_used):,.0f}" if steps_used else "no data")
    )
    ax.set_title(f"Compounding error ({where})")


def draw_mixture(ax: Axes, runs: dict[str, list[DiagnosticsRun]], algos: Sequence[str] | None = None) -> None:
    """
    Panel (c): the effective number of versions of the mixture that draws the model's training data, over training,
    mean +/- std over seeds (MBPO's uniform mixture included; rows without mixture data are left out).

    :param ax: where to draw
    :param runs: ``{algo: [DiagnosticsRun, ...]}`` of one env
    :param algos: order/filter
    """
    for index, algo in enumerate(order_algos(runs, algos)):
        curves = _column_curves(runs[algo], "mixture_effective_versions")
        if curves:
            steps, mean, std = aggregate(curves)
            _draw_band(ax, steps, mean, std, color=f"C{index % 10}", label=display_name(algo))
    ax.set_xlabel("Environment steps")
    ax.set_ylabel("Effective versions")
    ax.set_title("Policy mixture")


PANELS = ("errors", "compounding", "mixture")


def _finish_panel(ax: Axes) -> None:
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="gray")


def plot_diagnostics(
    runs: dict[str, dict[str, list[DiagnosticsRun]]] | dict[str, list[DiagnosticsRun]],
    env: str | None = None,
    at_step: float | None = None,
    kind: str = "obs",
    algos: Sequence[str] | None = None,
    panels: Sequence[str] = PANELS,
    title: str | None = None,
    panel_size: tuple[float, float] = (5.0, 3.8),
) -> Figure:
    """
    Model diagnostics figure: (a) local vs global one-step error, (b) compounding error vs horizon, (c) mixture
    effective versions; one panel each, in ``panels``' order (``figure.axes[i]``).

    :param runs: :func:`load_diagnostics`' result, or ``{algo: [DiagnosticsRun, ...]}`` of one env
    :param env: which env of ``runs`` (needed when it holds several)
    :param at_step: step of the compounding-error panel (default: each run's last row)
    :param kind: ``obs`` or ``reward`` errors in panel (a)
    :param algos: algorithms to show, in this order
    :param panels: subset of :data:`PANELS`
    :param title: figure title (default: the env)
    :param panel_size: inches per panel
    """
    by_algo = _one_env(runs, env)
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(panels), figsize=(panel_size[0] * len(panels), panel_size[1]), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        if panel == "errors":
            draw_model_errors(ax, by_algo, kind=kind, algos=algos)
        elif panel == "compounding":
            draw_compounding(ax, by_algo, at_step=at_step, algos=algos)
        elif panel == "mixture":
            draw_mixture(ax, by_algo, algos=algos)
        else:
            raise PlotError(f"unknown panel {panel!r}, expected one of {PANELS}")
        _finish_panel(ax)
    if title is None and _is_grouped_by_env(runs):
        title = env or next(iter(runs))
    if title and title != UNKNOWN_ENV:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def _is_grouped_by_env(runs: dict[str, Any]) -> bool:
    return all(isinstance(value, dict) for value in runs.values())


def _one_env(runs: dict[str, Any], env: str | None) -> dict[str, list[DiagnosticsRun]]:
    if not _is_grouped_by_env(runs):
        return runs
    if env is not None:
        if env not in runs:
            raise PlotError(f"no diagnostics for env {env!r} (found {sorted(runs)})")
        return runs[env]
    if len(runs) > 1:
        raise PlotError(f"diagnostics of several envs {sorted(runs)}: choose one with --env")
    return next(iter(runs.values()))


# ---------------------------------------------------------------------------------------------------------------------
# Command line


def _save(figure: Figure, outputs: Sequence[str]) -> None:
    for output in outputs:  # all checked before any is written
        if Path(output).suffix.lower().lstrip(".") not in figure.canvas.get_supported_filetypes():
            raise PlotError(f"{output}: unknown image format {Path(output).suffix!r} (use .png, .svg, .pdf, ...)")
    for output in outputs:
        path = Path(output)
        if path.parent != Path():
            path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=150, bbox_inches="tight")
        print(f"wrote {path}", file=sys.stderr)


def _panel_path(output: str, panel: str) -> str:
    path = Path(output)
    return str(path.with_name(f"{path.stem}_{panel}{path.suffix}"))


def make_parser() -> argparse.ArgumentParser:
    """The ``python -m sb3_pmac.plot`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m sb3_pmac.plot", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    curves = commands.add_parser("curves", help="learning curves (mean +/- std over seeds), one panel per env")
    curves.add_argument("paths", nargs="+", help="folders or files, optionally ALGO=PATH")
    curves.add_argument("--out", action="append", help="image file, format by suffix (repeatable; default curves.png)")
    curves.add_argument("--source", choices=["auto", "eval", *SOURCES], default="auto", help="which files to read")
    curves.add_argument("--algos", nargs="+", help="algorithms to show, in this order")
    curves.add_argument("--envs", nargs="+", help="envs to show")
    curves.add_argument("--labels", nargs="+", help="legend names: one per --algos entry, or ALGO=LABEL pairs")
    curves.add_argument("--title", help="figure title")
    curves.add_argument("--smooth", type=int, default=1, help="moving average of each run over N points")
    curves.add_argument("--x-max", type=float, help="last step shown")
    curves.add_argument("--min-steps", type=float, help="leave out runs shorter than this (e.g. just started)")
    curves.add_argument("--n-points", type=int, help="common grid size (default: union of eval steps; 200 for monitor)")
    curves.add_argument("--ncols", type=int, default=3, help="panels per row")

    diagnostics = commands.add_parser("diagnostics", help="local/global and compounding model errors, policy mixture")
    diagnostics.add_argument("paths", nargs="*", help="diagnostics CSV files or folders, optionally ALGO=PATH")
    diagnostics.add_argument("--csv", action="append", default=[], help="ALGO=PATH or PATH (repeatable)")
    diagnostics.add_argument("--out", action="append", help="image file, format by suffix (default diagnostics.png)")
    diagnostics.add_argument("--env", help="env to plot when the inputs hold several")
    diagnostics.add_argument("--algos", nargs="+", help="algorithms to show, in this order")
    diagnostics.add_argument("--at-step", type=float, help="step of the compounding-error panel (default: last row)")
    diagnostics.add_argument("--kind", choices=["obs", "reward"], default="obs", help="one-step error of panel (a)")
    diagnostics.add_argument("--separate", action="store_true", help="one file per panel: OUT_errors.png, ...")
    diagnostics.add_argument("--title", help="figure title (default: the env)")
    return parser


def _run_curves(args: argparse.Namespace) -> Figure:
    runs = load_runs(args.paths, source=args.source, algos=args.algos, envs=args.envs, min_steps=args.min_steps)
    summaries = summarize_runs(runs, n_points=args.n_points, x_max=args.x_max, window=args.smooth)
    print(format_table(summaries, args.algos))
    figure = plot_curves(
        runs,
        algos=args.algos,
        labels=args.labels,
        title=args.title,
        x_max=args.x_max,
        window=args.smooth,
        n_points=args.n_points,
        ncols=args.ncols,
    )
    _save(figure, args.out or ["curves.png"])
    return figure


def _run_diagnostics(args: argparse.Namespace) -> Figure:
    inputs = [*args.paths, *args.csv]
    if not inputs:
        raise PlotError("give diagnostics CSV files or folders (positional, or --csv ALGO=PATH)")
    runs = load_diagnostics(inputs, envs=[args.env] if args.env else None)
    outputs = args.out or ["diagnostics.png"]
    figure = None
    for panels in [[panel] for panel in PANELS] if args.separate else [list(PANELS)]:
        if figure is not None:
            _pyplot().close(figure)
        figure = plot_diagnostics(
            runs, env=args.env, at_step=args.at_step, kind=args.kind, algos=args.algos, panels=panels, title=args.title
        )
        _save(figure, [_panel_path(output, panels[0]) for output in outputs] if args.separate else outputs)
    assert figure is not None
    return figure


def main(argv: list[str] | None = None) -> int:
    """
    Entry point of ``python -m sb3_pmac.plot``.

    :param argv: command line arguments (default: ``sys.argv[1:]``)
    :return: exit status (1 with a message on stderr when there is nothing readable to plot)
    """
    args = make_parser().parse_args(argv)
    try:
        figure = _run_curves(args) if args.command == "curves" else _run_diagnostics(args)
    except PlotError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    _pyplot().close(figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
