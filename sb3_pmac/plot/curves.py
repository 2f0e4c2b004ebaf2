"""
Learning curves: one panel per env, one line per algorithm (mean over seeds) with a +/- one standard deviation band,
like the paper's Fig. 2 (PMAC against MBPO and SAC).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from sb3_pmac.plot.aggregation import Summary, order_algos, summarize_runs
from sb3_pmac.plot.runs import Curve, PlotError
from sb3_pmac.plot.style import algo_color, display_name, pyplot

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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


def _runs_text(summary: Summary) -> str:
    """
    ``3 runs``, or where fewer runs go on (``truncate=False``): ``3 runs to 10,000 steps, 1 to 60,000``. Runs, not
    seeds: runs of the same seed (e.g. rl-zoo3 runs in several log folders) count each.
    """
    n_at = summary.n_at
    if n_at is None or len(n_at) == 0 or n_at.min() == n_at.max():
        return f"{summary.n_runs} run{'s' if summary.n_runs != 1 else ''}"
    first, *rest = [i for i in range(len(n_at)) if i == len(n_at) - 1 or n_at[i + 1] != n_at[i]]  # segment ends
    head = f"{n_at[first]} run{'s' if n_at[first] != 1 else ''} to {summary.steps[first]:,.0f} steps"
    return ", ".join([head, *(f"{n_at[i]} to {summary.steps[i]:,.0f}" for i in rest)])


def _legend_label(name: str, summary: Summary) -> str:
    cut = f", cut at {summary.steps[-1]:,.0f} steps" if summary.truncated else ""
    return f"{name} ({_runs_text(summary)}{cut})"


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
    truncate: bool = True,
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
    :param truncate: cut each algorithm's runs to its shortest one (default), else average the runs present at each
        step (runs still going: the legend says how many runs each part of the line averages)
    """
    plt = pyplot()
    label_map = _parse_labels(labels, algos)
    summaries = summarize_runs(runs, n_points=n_points, x_max=x_max, window=window, verbose=False, truncate=truncate)
    envs = [env for env in sorted(summaries) if order_algos(summaries[env], algos)]
    if not envs:
        raise PlotError(
            f"no runs of algorithms {list(algos or [])} (found {sorted({a for s in summaries.values() for a in s})})"
        )
    all_algos = order_algos([algo for env in envs for algo in summaries[env]], algos)
    colors = {algo: algo_color(index) for index, algo in enumerate(all_algos)}
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
