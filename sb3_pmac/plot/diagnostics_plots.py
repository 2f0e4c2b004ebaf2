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
from dataclasses import dataclass
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
        label, path = split_label(argument)
        files = (
            [path] if path.is_file() else [folder / DIAGNOSTICS_CSV for folder in find_run_dirs(path, "", _has_diagnostics)]
        )
        for file in files:
            if file.name == DIAGNOSTICS_CSV:
                algo, env, run = identify_run(file.parent)
            else:
                algo, env, run = file.stem, UNKNOWN_ENV, file.stem
            columns = read_columns(file)
            if TIMESTEPS not in columns or len(columns[TIMESTEPS]) == 0:
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
        (run.columns[TIMESTEPS], run.columns[column])
        for run in runs
        if column in run.columns and np.isfinite(run.columns[column]).any()
    ]


def _draw_band(ax: Axes, steps: np.ndarray, mean: np.ndarray, std: np.ndarray, log: bool = False, **kwargs: Any) -> None:
    (line,) = ax.plot(steps, mean, **kwargs)
    low = np.maximum(mean - std, mean * 1e-3) if log else mean - std  # keep the band positive on a log axis
    ax.fill_between(steps, low, mean + std, color=line.get_color(), alpha=0.15, linewidth=0)


def draw_model_errors(
    ax: Axes,
    runs: dict[str, list[DiagnosticsRun]],
    kind: str = "obs",
    algos: Sequence[str] | None = None,
    truncate: bool = True,
) -> None:
    """
    Panel (a): local and global one-step model errors over training (log scale), mean +/- std over seeds.
    One color per algorithm; solid line: local (recent-policy states), dashed: global (whole buffer).

    :param ax: where to draw
    :param runs: ``{algo: [DiagnosticsRun, ...]}`` of one env
    :param kind: ``obs`` or ``reward``
    :param algos: order/filter
    :param truncate: cut an algorithm's seeds to the shortest (default), else average the seeds present at each step
    """
    for index, algo in enumerate(order_algos(runs, algos)):
        for scope, style in (("local", "-"), ("global", "--")):
            curves = _column_curves(runs[algo], one_step_column(scope, kind))
            if curves:
                steps, mean, std = aggregate(curves, truncate=truncate)
                _draw_band(
                    ax,
                    steps,
                    mean,
                    std,
                    log=True,
                    color=algo_color(index),
                    linestyle=style,
                    label=f"{display_name(algo)} {scope}",
                )
    ax.set_yscale("log")
    ax.set_xlabel("Environment steps")
    ax.set_ylabel(f"One-step {kind} MSE")
    ax.set_title(f"Local vs global model error ({kind})")


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
        used_steps.append(float(run.columns[TIMESTEPS][row]))
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
            _draw_band(ax, horizons, mean, std, log=True, color=algo_color(index), marker="o", label=display_name(algo))
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
        curves = _column_curves(runs[algo], MIXTURE_EFFECTIVE_VERSIONS)
        if curves:
            steps, mean, std = aggregate(curves)
            _draw_band(ax, steps, mean, std, color=algo_color(index), label=display_name(algo))
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
) -> Figure:
    """
    Model diagnostics figure: (a) local vs global one-step error, (b) compounding error vs horizon, (c) mixture
    effective versions; one panel each, in ``panels``' order (``figure.axes[i]``), with one compounding panel per
    step when ``at_step`` is a list.

    :param runs: :func:`load_diagnostics`' result, or ``{algo: [DiagnosticsRun, ...]}`` of one env
    :param env: which env of ``runs`` (needed when it holds several)
    :param at_step: step of the compounding-error panel (default: each run's last row), or a list of steps: one
        compounding panel each, in this order
    :param kind: ``obs`` or ``reward`` errors in panel (a)
    :param algos: algorithms to show, in this order
    :param panels: subset of :data:`~sb3_pmac.plot.diagnostics_plots.PANELS`
    :param title: figure title (default: the env)
    :param panel_size: inches per panel
    :param truncate: panel (a): cut each algorithm's seeds to the shortest (default), else average the seeds present
        at each step (runs still going)
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
            draw_model_errors(ax, by_algo, kind=kind, algos=algos, truncate=truncate)
        elif panel == "compounding":
            draw_compounding(ax, by_algo, at_step=step, algos=algos)
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
