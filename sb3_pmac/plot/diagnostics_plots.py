"""
Model diagnostics figure of the ``diagnostics.csv`` files of :mod:`sb3_pmac.diagnostics` (column names from
:mod:`sb3_pmac.diagnostics.schema`): (a) local vs global one-step error over training (the paper's Fig. 1, Fig. 3(a-c)),
(b) compounding error against the horizon (Fig. 3(d)), (c) the mixture's effective number of versions; mean +/- std
over seeds.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sb3_pmac.diagnostics.schema import (
    DIAGNOSTICS_CSV,
    MIXTURE_EFFECTIVE_VERSIONS,
    TIMESTEPS,
    compounding_horizon,
    one_step_column,
)
from sb3_pmac.plot.aggregation import aggregate, order_algos
from sb3_pmac.plot.runs import UNKNOWN_ENV, PlotError, find_run_dirs, identify_run, read_columns, split_label
from sb3_pmac.plot.style import algo_color, display_name, pyplot

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


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
    found = [(h, name) for name in columns if (h := compounding_horizon(name)) is not None]
    return sorted(found)


def _has_diagnostics(folder: Path, _source: str) -> str | None:
    return "diagnostics" if (folder / DIAGNOSTICS_CSV).is_file() else None


def _diagnostics_columns(columns: Iterable[str]) -> list[str]:
    """The columns of ``columns`` that the figure draws (one-step errors, mixture, compounding errors)."""
    drawn = {one_step_column(scope, kind) for scope in ("local", "global") for kind in ("obs", "reward")}
    return [name for name in columns if name in drawn or name == MIXTURE_EFFECTIVE_VERSIONS or compounding_horizon(name)]


def _last_run_rows(columns: dict[str, np.ndarray], file: Path) -> dict[str, np.ndarray]:
    """
    The rows of the last run of a file that several runs appended to (its timesteps go back), with a note; the file's
    rows unchanged otherwise. (A resumed run repeats a step, which does not count as going back.)
    """
    steps = columns[TIMESTEPS]
    back = np.flatnonzero(np.diff(steps) < 0) + 1
    if not len(back):
        return columns
    print(
        f"note: {file} holds the rows of {len(back) + 1} runs (timesteps go back at rows {', '.join(map(str, back + 1))}); "
        "the last run's rows are used (write one file per run)",
        file=sys.stderr,
    )
    return {name: values[back[-1] :] for name, values in columns.items()}


def load_diagnostics(
    inputs: Sequence[str | Path], envs: Sequence[str] | None = None
) -> dict[str, dict[str, list[DiagnosticsRun]]]:
    """
    Diagnostics CSV files, grouped by env then algorithm.

    A file found twice (e.g. a folder and a run inside it, both given) counts once. A file that several runs appended
    to (its timesteps go back) gives its last run's rows. A file whose env is not known (neither ``run.json`` nor the
    runner layout tells it) is given the env of the other inputs when they are of one env, or, named on its own, the
    env of ``envs`` when it names one.

    :param inputs: ``"ALGO=PATH"`` or ``PATH``; a file is one run (its algorithm: ``ALGO``, else ``run.json`` or the
        runner layout ``<env>/<algo>/seed_<n>/diagnostics.csv``, else the file name), a folder is searched for
        ``diagnostics.csv`` files
    :param envs: keep only these envs
    :return: ``{env: {algo: [DiagnosticsRun, ...]}}``
    :raises PlotError: when nothing readable is found
    """
    found: list[DiagnosticsRun] = []
    seen: set[Path] = set()
    for argument in inputs:
        label, path = split_label(argument)
        files = (
            [path] if path.is_file() else [folder / DIAGNOSTICS_CSV for folder in find_run_dirs(path, "", _has_diagnostics)]
        )
        for file in files:
            if file.resolve() in seen:
                continue
            seen.add(file.resolve())
            if file.name == DIAGNOSTICS_CSV:
                algo, env, run = identify_run(file.parent)
            else:
                algo, env, run = file.stem, UNKNOWN_ENV, file.stem
            try:
                columns = read_columns(file)
            except (OSError, UnicodeDecodeError, ValueError) as error:
                print(f"skipped {file}: not a readable CSV file ({type(error).__name__})", file=sys.stderr)
                continue
            if TIMESTEPS not in columns or len(columns[TIMESTEPS]) == 0:
                print(f"skipped {file}: no timesteps column or no rows", file=sys.stderr)
                continue
            if not _diagnostics_columns(columns):
                print(f"skipped {file}: no model-diagnostics columns (not a {DIAGNOSTICS_CSV})", file=sys.stderr)
                continue
            if env == UNKNOWN_ENV and path.is_file() and envs is not None and len(envs) == 1:
                env = envs[0]
            found.append(DiagnosticsRun(label or algo, env, run, _last_run_rows(columns, file), file))
    known_envs = {entry.env for entry in found} - {UNKNOWN_ENV}
    if len(known_envs) == 1:  # files of one's own naming beside runs of one env: that env
        only_env = next(iter(known_envs))
        found = [replace(entry, env=only_env) if entry.env == UNKNOWN_ENV else entry for entry in found]
    runs: dict[str, dict[str, list[DiagnosticsRun]]] = {}
    for entry in found:
        if not envs or entry.env in envs:
            runs.setdefault(entry.env, {}).setdefault(entry.algo, []).append(entry)
    if not runs and found:
        raise PlotError(f"no diagnostics for env {', '.join(envs or [])} in {', '.join(map(str, inputs))} (found envs "
                        f"{sorted({entry.env for entry in found})})")  # fmt: skip
    if not runs:
        raise PlotError(
            f"No readable diagnostics in {', '.join(map(str, inputs))}: expected CSV files with a timesteps column, or "
            f"folders holding <env>/<algo>/seed_<n>/{DIAGNOSTICS_CSV}"
        )
    return runs


def _column_curves(runs: Sequence[DiagnosticsRun], column: str) -> list[tuple[np.ndarray, np.ndarray]]:
    return [
        (run.columns[TIMESTEPS], run.columns[column])
        for run in runs
        if column in run.columns and np.isfinite(run.columns[column]).any()
    ]


def _draw_band(ax: Axes, steps: np.ndarray, mean: np.ndarray, std: np.ndarray, log: bool = False, **kwargs: Any) -> None:
    if len(steps) <= 2:
        kwargs.setdefault("marker", "o")  # a line of one or two points would hardly show
    (line,) = ax.plot(steps, mean, **kwargs)
    low = np.maximum(mean - std, mean * 1e-3) if log else mean - std  # keep the band positive on a log axis
    ax.fill_between(steps, low, mean + std, color=line.get_color(), alpha=0.15, linewidth=0)


def _runs_label(n_runs: int, cut_at: float | None = None) -> str:
    runs = f"{n_runs} run{'s' if n_runs != 1 else ''}"
    return f"{runs}, cut at {cut_at:,.0f}" if cut_at is not None else runs


def _aggregate_over_training(
    algo: str, curves: list[tuple[np.ndarray, np.ndarray]], truncate: bool, what: str, verbose: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """:func:`aggregate` of one algorithm's runs of a panel over training, with the legend's run count (and the step
    the runs were cut at, also printed as a note, when ``truncate`` cut longer runs to the shortest)."""
    steps, mean, std = aggregate(curves, truncate=truncate)
    longest = max(float(np.nanmax(run_steps[np.isfinite(values)])) for run_steps, values in curves)
    cut_at = float(steps[-1]) if truncate and longest > steps[-1] else None
    if cut_at is not None and verbose:
        print(f"note: {algo} {what}: runs end between {cut_at:.0f} and {longest:.0f} steps; cut at {cut_at:.0f} "
              "(shortest run)", file=sys.stderr)  # fmt: skip
    return steps, mean, std, _runs_label(len(curves), cut_at)


def draw_model_errors(
    ax: Axes,
    runs: dict[str, list[DiagnosticsRun]],
    kind: str = "obs",
    algos: Sequence[str] | None = None,
    truncate: bool = True,
    verbose: bool = True,
) -> None:
    """
    Panel (a): local and global one-step model errors over training (log scale), mean +/- std over seeds.
    One color per algorithm; solid line: local (recent-policy states), dashed: global (whole buffer). The legend counts
    the runs and says where longer ones were cut.

    :param ax: where to draw
    :param runs: ``{algo: [DiagnosticsRun, ...]}`` of one env
    :param kind: ``obs`` or ``reward``
    :param algos: order/filter
    :param truncate: cut an algorithm's seeds to the shortest (default), else average the seeds present at each step
    :param verbose: print a note to stderr where runs were cut
    """
    for index, algo in enumerate(order_algos(runs, algos)):
        for scope, style in (("local", "-"), ("global", "--")):
            curves = _column_curves(runs[algo], one_step_column(scope, kind))
            if curves:
                what = f"{scope} {kind} error"
                steps, mean, std, count = _aggregate_over_training(algo, curves, truncate, what, verbose and scope == "local")
                label = f"{display_name(algo)} {scope} ({count})"
                _draw_band(ax, steps, mean, std, log=True, color=algo_color(index), linestyle=style, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("Environment steps")
    ax.set_ylabel(f"One-step {kind} MSE")
    ax.set_title(f"Local vs global model error ({kind})")


def _last_step(run: DiagnosticsRun) -> float:
    steps = run.columns[TIMESTEPS]
    return float(np.nanmax(steps)) if np.isfinite(steps).any() else math.nan


def _row_at(run: DiagnosticsRun, at_step: float | None) -> int | None:
    steps = run.columns[TIMESTEPS]
    candidates = np.flatnonzero(np.isfinite(steps) & (steps <= at_step)) if at_step is not None else np.arange(len(steps))
    return int(candidates[-1]) if len(candidates) else None


def compounding_errors(
    runs: Sequence[DiagnosticsRun], at_step: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[float]]:
    """
    Compounding observation error against the horizon, mean and std over runs.

    :param runs: runs of one algorithm
    :param at_step: use each run's last row with ``timesteps <= at_step``, of the runs that have reached ``at_step``
        (a row at or after it; the others are left out: an earlier row would mix training stages); default: each run's
        last row
    :return: ``(horizons, mean, std, steps used per run)``
    """
    horizons = sorted({h for run in runs for h, _ in compounding_columns(run.columns)})
    rows, used_steps = [], []
    for run in runs:
        row = _row_at(run, at_step)
        if row is None or (at_step is not None and not _last_step(run) >= at_step):
            continue
        by_h = {h: name for h, name in compounding_columns(run.columns)}
        rows.append([run.columns[by_h[h]][row] if h in by_h else math.nan for h in horizons])
        used_steps.append(float(run.columns[TIMESTEPS][row]))
    if not rows or not horizons:
        return np.zeros(0), np.zeros(0), np.zeros(0), used_steps
    values = np.array(rows, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a horizon missing in every run: nan, no warning
        return np.array(horizons), np.nanmean(values, axis=0), np.nanstd(values, axis=0), used_steps


def common_step(runs: dict[str, list[DiagnosticsRun]], algos: Sequence[str] | None = None, truncate: bool = True) -> float:
    """
    The default step of the compounding panel: the last step that every shown run with compounding errors has reached
    (``truncate``), else the last step of the longest run.

    :param runs: ``{algo: [DiagnosticsRun, ...]}`` of one env
    :param algos: order/filter
    :param truncate: see :func:`plot_diagnostics`
    :return: the step (``nan`` without compounding errors)
    """
    ends = [_last_step(run) for algo in order_algos(runs, algos) for run in runs[algo] if compounding_columns(run.columns)]
    ends = [end for end in ends if np.isfinite(end)]
    return (min(ends) if truncate else max(ends)) if ends else math.nan


def draw_compounding(
    ax: Axes,
    runs: dict[str, list[DiagnosticsRun]],
    at_step: float | None = None,
    algos: Sequence[str] | None = None,
    truncate: bool = True,
    verbose: bool = True,
) -> None:
    """
    Panel (b): compounding observation error of model rollouts against the horizon ``h`` (log scale), at ``at_step``,
    mean +/- std over the runs that have reached it (the legend counts them; a note names the others).

    :param ax: where to draw
    :param runs: ``{algo: [DiagnosticsRun, ...]}`` of one env
    :param at_step: training step (each run's last row at or before it); default: :func:`common_step`
    :param algos: order/filter
    :param truncate: default step: the last one every run has reached (default), else the longest run's
    :param verbose: print a note to stderr naming the runs left out
    """
    from matplotlib.ticker import MaxNLocator

    if at_step is None:
        at_step = common_step(runs, algos, truncate)
    steps_used: list[float] = []
    for index, algo in enumerate(order_algos(runs, algos)):
        with_columns = [run for run in runs[algo] if compounding_columns(run.columns)]
        horizons, mean, std, used = compounding_errors(with_columns, None if math.isnan(at_step) else at_step)
        left_out = [run.run for run in with_columns if not _last_step(run) >= at_step]
        if left_out and verbose:
            print(f"note: {algo}: compounding error at step {at_step:.0f} without {', '.join(left_out)} (not there yet)",
                  file=sys.stderr)  # fmt: skip
        if len(horizons):
            label = f"{display_name(algo)} ({_runs_label(len(used))})"
            _draw_band(ax, horizons, mean, std, log=True, color=algo_color(index), marker="o", label=label)
            steps_used.extend(used)
    ax.set_yscale("log")
    ax.set_xlabel("Rollout horizon h")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # horizons are whole steps
    ax.set_ylabel("Compounding obs MSE")
    where = (
        f"step {min(steps_used):,.0f}"
        if steps_used and min(steps_used) == max(steps_used)
        else (f"steps {min(steps_used):,.0f}-{max(steps_used):,.0f}" if steps_used else "no data")
    )
    ax.set_title(f"Compounding error ({where})")


def draw_mixture(
    ax: Axes,
    runs: dict[str, list[DiagnosticsRun]],
    algos: Sequence[str] | None = None,
    truncate: bool = True,
    verbose: bool = True,
) -> None:
    """
    Panel (c): the effective number of versions of the mixture that draws the model's training data, over training,
    mean +/- std over seeds (MBPO's uniform mixture included; rows without mixture data are left out).

    :param ax: where to draw
    :param runs: ``{algo: [DiagnosticsRun, ...]}`` of one env
    :param algos: order/filter
    :param truncate: cut an algorithm's seeds to the shortest (default), else average the seeds present at each step
    :param verbose: print a note to stderr where runs were cut
    """
    for index, algo in enumerate(order_algos(runs, algos)):
        curves = _column_curves(runs[algo], MIXTURE_EFFECTIVE_VERSIONS)
        if curves:
            steps, mean, std, count = _aggregate_over_training(algo, curves, truncate, "mixture", verbose)
            _draw_band(ax, steps, mean, std, color=algo_color(index), label=f"{display_name(algo)} ({count})")
    ax.set_xlabel("Environment steps")
    ax.set_ylabel("Effective versions")
    ax.set_title("Policy mixture")


#: The panels of :func:`~sb3_pmac.plot.plot_diagnostics`, in their order in the figure
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
    at_step: float | Sequence[float] | None = None,
    kind: str = "obs",
    algos: Sequence[str] | None = None,
    panels: Sequence[str] = PANELS,
    title: str | None = None,
    panel_size: tuple[float, float] = (5.0, 3.8),
    truncate: bool = True,
    verbose: bool = True,
) -> Figure:
    """
    Model diagnostics figure: (a) local vs global one-step error, (b) compounding error vs horizon, (c) mixture
    effective versions; one panel each, in ``panels``' order (``figure.axes[i]``), with one compounding panel per
    step when ``at_step`` is a list.

    :param runs: :func:`load_diagnostics`' result, or ``{algo: [DiagnosticsRun, ...]}`` of one env
    :param env: which env of ``runs`` (needed when it holds several)
    :param at_step: step of the compounding-error panel (default: :func:`common_step`), or a list of steps: one
        compounding panel each, in this order; each panel averages the runs that have reached its step
    :param kind: ``obs`` or ``reward`` errors in panel (a)
    :param algos: algorithms to show, in this order
    :param panels: subset of :data:`~sb3_pmac.plot.diagnostics_plots.PANELS`
    :param title: figure title (default: the env)
    :param panel_size: inches per panel
    :param truncate: panels (a) and (c): cut each algorithm's seeds to the shortest (default), else average the seeds
        present at each step (runs still going); panel (b)'s default step: the last one every run has reached
        (default), else the longest run's
    :param verbose: print notes to stderr: where runs were cut, which runs a compounding panel leaves out
    """
    by_algo = _one_env(runs, env)
    plt = pyplot()
    steps: list[float | None] = list(at_step) if isinstance(at_step, Sequence) else [at_step]
    layout = [(panel, step) for panel in panels for step in (steps if panel == "compounding" else [None])]
    if not layout:
        raise PlotError(f"no panel to draw (panels={list(panels)}, at_step={at_step})")
    figure, axes = plt.subplots(1, len(layout), figsize=(panel_size[0] * len(layout), panel_size[1]), squeeze=False)
    for ax, (panel, step) in zip(axes[0], layout, strict=True):
        if panel == "errors":
            draw_model_errors(ax, by_algo, kind=kind, algos=algos, truncate=truncate, verbose=verbose)
        elif panel == "compounding":
            draw_compounding(ax, by_algo, at_step=step, algos=algos, truncate=truncate, verbose=verbose)
        elif panel == "mixture":
            draw_mixture(ax, by_algo, algos=algos, truncate=truncate, verbose=verbose)
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
