"""
Seeds of one (env, algorithm) aggregated: aligned on their common steps (linear interpolation; or, with
``truncate=False``, averaged over the seeds that reach each step), mean and standard deviation over seeds, and the text
table of final returns printed by ``python -m sb3_pmac.plot curves``.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sb3_pmac.plot.runs import Curve, PlotError, last_per_step

#: Default order of known algorithms in legends and tables (others follow, alphabetically)
PREFERRED_ORDER = ("pmac", "mbpo", "sac")
#: Steps of the common grid when averaging monitor (training episode) curves
MONITOR_GRID_POINTS = 200


@dataclass
class Summary:
    """
    The seeds of one (env, algorithm) aggregated by :func:`aggregate`.

    :param steps: common steps
    :param mean: mean over seeds at ``steps``
    :param std: standard deviation over seeds (``ddof=0``) at ``steps``
    :param n_seeds: number of runs averaged (runs, not distinct seeds; also :attr:`n_runs`)
    :param longest: last step of the longest run (``> steps[-1]`` when the runs were truncated to the shortest one)
    :param sources: the curves' sources
    :param n_at: number of runs averaged at each of ``steps`` (all of them unless aggregated with ``truncate=False``)
    """

    steps: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    n_seeds: int
    longest: float
    sources: tuple[str, ...]
    n_at: np.ndarray | None = None

    @property
    def n_runs(self) -> int:
        """Number of runs averaged (two runs of the same seed count twice)."""
        return self.n_seeds

    @property
    def truncated(self) -> bool:
        """Whether a longer run was cut to the shortest one's last step."""
        return bool(self.longest > self.steps[-1])


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
    return last_per_step(np.asarray(steps, dtype=float)[order], np.asarray(values, dtype=float)[order])


def aggregate(
    curves: Sequence[Curve | tuple[Any, Any]],
    grid: int | np.ndarray | None = None,
    x_max: float | None = None,
    window: int = 1,
    ddof: int = 0,
    truncate: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    Mean and standard deviation over runs, on common steps.

    The runs are cut to their common range ``[max of first steps, min of last steps]`` (truncation to the shortest run)
    and linearly interpolated onto ``grid``; with ``truncate=False`` the range is ``[min of first steps, max of last
    steps]`` and each step averages the runs whose own range holds it (partial runs: fewer seeds further on).

    :param curves: :class:`Curve` objects or ``(steps, values)`` pairs (unsorted steps are sorted; ``nan`` dropped)
    :param grid: ``None``: the union of the runs' steps within the common range (the runs' own steps when they share
        them); an int ``n``: ``n`` evenly spaced steps over the common range (1: its last step); an array: these steps
        (outside the common range dropped)
    :param x_max: drop the steps above it first
    :param window: moving average (:func:`smooth`) of each run over this many points, before interpolation
    :param ddof: delta degrees of freedom of the standard deviation (0: population std, as rl-zoo3's plots); ``nan``
        where no more than ``ddof`` runs are averaged
    :param truncate: cut the runs to their common range (default), else average the runs present at each step
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
    firsts, lasts = [steps[0] for steps, _ in pairs], [steps[-1] for steps, _ in pairs]
    start, end = (max(firsts), min(lasts)) if truncate else (min(firsts), max(lasts))
    if start > end:
        raise PlotError(f"the runs do not overlap (latest start {start:g} > earliest end {end:g})")
    if grid is None:
        points = np.unique(np.concatenate([steps[(steps >= start) & (steps <= end)] for steps, _ in pairs]))
    elif isinstance(grid, (int, np.integer)):
        points = np.linspace(start, end, int(grid)) if end > start and grid > 1 else np.array([end])
    else:
        points = np.asarray(grid, dtype=float)
        points = points[(points >= start) & (points <= end)]
    values = np.stack([np.interp(points, steps, run, left=np.nan, right=np.nan) for steps, run in pairs])
    counts = np.isfinite(values).sum(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # steps with no more than ddof runs: nan, no warning
        std = np.where(counts > ddof, np.nanstd(values, axis=0, ddof=ddof), np.nan)
    return points, np.nanmean(values, axis=0), std


def runs_at(curves: Sequence[Curve | tuple[Any, Any]], steps: np.ndarray, x_max: float | None = None) -> np.ndarray:
    """How many of ``curves`` cover each of ``steps`` (between their first and last step at or below ``x_max``)."""
    counts = np.zeros(len(steps), dtype=int)
    for curve in curves:
        run_steps, _ = _as_xy(curve)
        run_steps = run_steps[run_steps <= x_max] if x_max is not None else run_steps
        if len(run_steps):
            counts += (steps >= run_steps[0]) & (steps <= run_steps[-1])
    return counts


def summarize(
    curves: Sequence[Curve], n_points: int | None = None, x_max: float | None = None, window: int = 1, truncate: bool = True
) -> Summary:
    """
    :func:`aggregate` of one (env, algorithm)'s runs, with the bookkeeping for legends and tables.

    :param curves: the runs (seeds)
    :param n_points: common grid size; default: the union of evaluation steps,
        :data:`~sb3_pmac.plot.aggregation.MONITOR_GRID_POINTS` evenly spaced steps when a run comes from Monitor files
    :param x_max: drop the steps above it
    :param window: moving average over this many points (:func:`smooth`)
    :param truncate: cut the runs to the shortest one (default), else average the runs present at each step
    """
    sources = tuple(sorted({curve.source for curve in curves}))
    if n_points is None and "monitor" in sources:
        n_points = MONITOR_GRID_POINTS
    steps, mean, std = aggregate(curves, grid=n_points, x_max=x_max, window=window, truncate=truncate)
    ends = [curve.steps[curve.steps <= x_max] if x_max is not None else curve.steps for curve in curves]
    longest = max(float(run_steps[-1]) for run_steps in ends if len(run_steps))
    n_seeds = sum(len(run_steps) > 0 for run_steps in ends)
    return Summary(steps, mean, std, n_seeds, longest, sources, runs_at(curves, steps, x_max))


def order_algos(names: Iterable[str], algos: Sequence[str] | None = None) -> list[str]:
    """
    Algorithm names in display order: ``algos``' order (case-insensitive; others dropped) when given, else
    :data:`~sb3_pmac.plot.aggregation.PREFERRED_ORDER` first, then alphabetical.
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
    truncate: bool = True,
) -> dict[str, dict[str, Summary]]:
    """
    :func:`summarize` of every (env, algorithm) of :func:`load_runs`' result.

    :param runs: ``{env: {algo: [Curve, ...]}}``, as :func:`load_runs` returns
    :param n_points: see :func:`summarize`
    :param x_max: see :func:`summarize`
    :param window: see :func:`summarize`
    :param verbose: print truncations and mixed sources to stderr
    :param truncate: see :func:`summarize`
    :return: ``{env: {algo: Summary}}``
    """
    summaries: dict[str, dict[str, Summary]] = {}
    for env in sorted(runs):
        for algo, curves in runs[env].items():
            summary = summarize(curves, n_points=n_points, x_max=x_max, window=window, truncate=truncate)
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
    A text table ``algo, env, runs, final (mean +/- std over the runs at the last common step), steps`` (runs, not
    distinct seeds).

    :param summaries: :func:`summarize_runs`' result
    :param algos: algorithm order/filter (see :func:`order_algos`)
    """
    rows = [("algo", "env", "runs", "final return", "steps")]
    for env, by_algo in summaries.items():
        for algo in order_algos(by_algo, algos):
            summary = by_algo[algo]
            steps = f"{summary.steps[-1]:.0f}" + (f" (longest {summary.longest:.0f})" if summary.truncated else "")
            final = f"{summary.mean[-1]:.2f} ± {summary.std[-1]:.2f}"
            rows.append((algo, env, str(summary.n_runs), final, steps))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows)
