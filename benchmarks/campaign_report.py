"""
The report of the Hopper campaign (issue 14) from whatever runs exist, partial ones included:

    python benchmarks/campaign_report.py

reads ``results/campaign/<env>/<algo>/seed_<n>/`` (``evaluations.csv``, ``progress.csv``, ``diagnostics.csv``,
``run.json``, and ``machine.json`` where recorded: copy the latest with ``python <campaign checkout>/benchmarks/campaign.py
sync .`` first), draws the learning
curves and the model errors (:mod:`sb3_pmac.plot`) into ``docs/results/hopper_campaign_*.png`` and writes the markdown
(where the runs stand, returns at 25k/50k/75k/100k steps with rliable's IQM and stratified-bootstrap intervals, PMAC
against MBPO at those steps (mean difference, rliable's probability of improvement, exact rank test), the steps each
run took to reach a score, the issue's targets, model errors, the bound control's table, the critics' peaks
(divergence), the gaits (last training episodes), wall time split) between the ``<!-- campaign:start -->`` and
``<!-- campaign:end -->`` markers of ``docs/results.md``.
``--print`` writes the markdown to stdout instead and leaves the figures as they are. The IQM needs ``rliable`` (the
``[zoo]`` extra).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sb3_pmac.diagnostics.schema import TIMESTEPS
from sb3_pmac.plot import PlotError, load_diagnostics, load_runs, plot_curves, plot_diagnostics, read_columns
from sb3_pmac.plot.runs import last_per_step
from sb3_pmac.plot.style import pyplot

ROOT = Path(__file__).resolve().parent.parent
ENV_ID = "Hopper-v4"
ALGOS = ("pmac", "mbpo", "sac_zoo")
SEEDS = (0, 1, 2)
LABELS = {"pmac": "PMAC", "mbpo": "MBPO", "sac_zoo": "SB3 SAC (rl-zoo3)"}
REPORT_STEPS = (25_000, 50_000, 75_000, 100_000)
#: A run's score at step t: the mean of its evaluations at steps in (t - WINDOW, t] (t-4000 ... t every 1000 steps)
WINDOW = 5000
START_MARKER = "<!-- campaign:start -->"
END_MARKER = "<!-- campaign:end -->"
CURVES_PNG = "hopper_campaign_curves.png"
MODEL_ERROR_PNG = "hopper_campaign_model_error.png"
#: A run's machine, written into its folder by hand when the run (re)starts: ``{"cpu": "<lscpu's model name>"}``. The
#: Hopper campaign's runner (pinned at its commit) does not record it, and the campaign's machine can change between
#: sessions: a run that starts over on another machine gets a new file. (Later runners record ``machines`` in
#: ``run.json``, which the report reads where there is no ``machine.json``.)
MACHINE_FILE = "machine.json"
#: The extra that installs rliable
RLIABLE_EXTRA = "zoo"
#: rl-zoo3's benchmark.md: SAC on Hopper-v3 after 1M steps, one trained agent, mean and std over 236 episodes
ZOO_SAC_1M = (2325.547, 1129.676, 236)
COMMAND = "python benchmarks/campaign_report.py"


class MissingRliable(RuntimeError):
    """rliable cannot be imported (not installed, or its dependency ``arch`` fails to import)."""


def load_rliable() -> tuple[Any, Any]:
    """``(rliable.library, rliable.metrics)``, imported on first use; :class:`MissingRliable` says how to install them."""
    try:
        from rliable import library, metrics
    except Exception as error:  # not only ImportError: arch < 8 (rliable's pin) raises TypeError under pandas 3
        hint = "" if isinstance(error, ImportError) else " (rliable 1.2 needs arch < 8, which needs pandas < 3)"
        raise MissingRliable(
            f"the IQM and its bootstrap intervals need rliable: pip install -e '.[{RLIABLE_EXTRA}]' "
            f"(or pip install rliable); importing it failed with {type(error).__name__}: {error}{hint}"
        ) from error
    return library, metrics


@dataclass
class Run:
    """One run of the campaign: its evaluations (steps, mean return, wall time) and its ``run.json`` and progress."""

    algo: str
    seed: int
    path: Path
    steps: np.ndarray
    returns: np.ndarray
    wall_s: np.ndarray
    record: dict[str, Any]
    progress: dict[str, np.ndarray]
    #: ``machine.json`` of the run, written by hand when a run (re)starts on a machine (``{"cpu": ...}``); ``{}``
    #: where none was recorded
    machine: dict[str, Any] = field(default_factory=dict)
    #: the columns of ``diagnostics.csv`` (``{}`` where there is none), rows in the file's order
    diagnostics: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def diagnostics_steps(self) -> np.ndarray:
        """The steps of the run's diagnostics rows (empty without ``diagnostics.csv``)."""
        steps = self.diagnostics.get(TIMESTEPS, np.zeros(0))
        return steps[np.isfinite(steps)]

    @property
    def cpu(self) -> str:
        """``machine.json``'s CPU, else the machines the runner recorded in ``run.json`` (later runners do)."""
        if "cpu" in self.machine:
            return str(self.machine["cpu"])
        machines = self.record.get("machines") or []
        if len(machines) == 1:
            return f"{machines[0]['cpu']}, {machines[0]['cpus']} CPUs"
        return "; ".join(f"{m['cpu']}, {m['cpus']} CPUs from step {m['from_step']}" for m in machines) or "not recorded"

    @property
    def last_step(self) -> int:
        return int(self.steps[-1])

    @property
    def target(self) -> int:
        return int(self.record.get("timesteps") or self.last_step)

    @property
    def finished(self) -> bool:
        return bool(self.record.get("finished"))

    @property
    def status(self) -> str:
        return "finished" if self.finished else f"partial: {fmt_steps(self.last_step)} of {fmt_steps(self.target)} steps"


def fmt_steps(steps: float) -> str:
    """``25000`` -> ``25 000``."""
    return f"{steps:,.0f}".replace(",", " ")


def load_campaign(results: Path, env: str = ENV_ID, algos: Sequence[str] = ALGOS) -> dict[str, list[Run]]:
    """The runs under ``results`` (``<env>/<algo>/seed_<n>/``), by algorithm, sorted by seed."""
    curves = load_runs(results, source="eval_csv", algos=algos, envs=[env], verbose=False).get(env, {})
    campaign: dict[str, list[Run]] = {}
    for algo, algo_curves in curves.items():
        for curve in algo_curves:
            evaluations = read_columns(curve.path / "evaluations.csv")
            _, wall = last_per_step(evaluations["timesteps"], evaluations["wall_s"])
            progress_file = curve.path / "progress.csv"
            diagnostics_file = curve.path / "diagnostics.csv"
            run = Run(
                algo=algo,
                seed=int(curve.run.removeprefix("seed_")),
                path=curve.path,
                steps=curve.steps,
                returns=curve.returns,
                wall_s=wall,
                record=json.loads((curve.path / "run.json").read_text()),
                progress=read_columns(progress_file) if progress_file.is_file() else {},
                machine=_read_json(curve.path / MACHINE_FILE),
                diagnostics=read_columns(diagnostics_file) if diagnostics_file.is_file() else {},
            )
            campaign.setdefault(algo, []).append(run)
    for runs in campaign.values():
        runs.sort(key=lambda run: run.seed)
    return campaign


def window_score(run: Run, step: int, window: int = WINDOW) -> float | None:
    """The mean of the run's evaluations at steps in ``(step - window, step]``; None if the run has not reached ``step``."""
    inside = (run.steps > step - window) & (run.steps <= step)
    if run.last_step < step or not inside.any():
        return None
    return float(run.returns[inside].mean())


@dataclass
class ScoreRow:
    """The scores of one algorithm's runs at one step; ``iqm`` and ``ci`` are filled by :func:`add_iqm`."""

    step: int
    algo: str
    scores: list[float]
    n_runs: int
    furthest: int
    iqm: float | None = None
    ci: tuple[float, float] | None = None
    seeds: list[int] = field(default_factory=list)  # the seed of each score (empty: not known)

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))

    @property
    def std(self) -> float:
        """Standard deviation over runs, ``ddof=0`` (the figure's band)."""
        return float(np.std(self.scores))


def score_rows(
    campaign: dict[str, list[Run]], steps: Sequence[int] = REPORT_STEPS, algos: Sequence[str] = ALGOS, window: int = WINDOW
) -> list[ScoreRow]:
    """One row per (step, algorithm) in that order: the window scores of the runs that reached the step."""
    rows = []
    for step in steps:
        for algo in algos:
            runs = campaign.get(algo, [])
            scored = [(run.seed, score) for run in runs if (score := window_score(run, step, window)) is not None]
            furthest = max((run.last_step for run in runs), default=0)
            scores, seeds = [score for _, score in scored], [seed for seed, _ in scored]
            rows.append(ScoreRow(step, algo, scores, len(runs), furthest, seeds=seeds))
    return rows


def add_iqm(rows: Sequence[ScoreRow], reps: int = 10_000, seed: int = 0) -> None:
    """
    rliable's interquartile mean of each row's scores and its 95 % stratified-bootstrap interval (percentile method,
    ``reps`` resamples of the runs), for rows with at least one score. rliable draws from NumPy's global generator: it
    is seeded with ``seed`` here and restored afterwards, so that a report is reproducible.
    """
    library, metrics = load_rliable()
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        for row in rows:
            if not row.scores:
                continue
            scores = {row.algo: np.asarray(row.scores, dtype=float)[:, None]}  # (runs, tasks = 1)
            points, intervals = library.get_interval_estimates(
                scores, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=reps
            )
            row.iqm = float(points[row.algo][0])
            row.ci = (float(intervals[row.algo][0, 0]), float(intervals[row.algo][1, 0]))
    finally:
        np.random.set_state(state)


@dataclass
class Comparison:
    """
    Algorithm ``a`` against ``b`` at one step, on the runs of each that reached it: the difference of the means,
    rliable's probability of improvement P(a > b) (the share of (a run, b run) pairs in which ``a`` scores higher, ties
    counting half), and the one-sided exact Mann-Whitney p-value of "a scores higher than b" with the smallest p-value
    these numbers of runs allow (1 / C(n_a + n_b, n_a): 0.05 with 3 runs of each). Tied scores (unlikely for mean
    returns) keep the exact distribution of untied ranks, which makes the p-value conservative, not the normal
    approximation scipy's default method would switch to.
    """

    step: int
    a: str
    b: str
    n_a: int
    n_b: int
    mean_difference: float
    p_improvement: float
    p_value: float
    smallest_p_value: float


def _on_common_seeds(row_a: ScoreRow, row_b: ScoreRow) -> tuple[ScoreRow, ScoreRow]:
    """
    The two rows restricted to the seeds both have scores for (while a campaign goes on, a slower run of one algorithm
    must not leave its side while the other side keeps its own seed); rows without seeds are kept whole.
    """
    if not row_a.seeds or not row_b.seeds:
        return row_a, row_b
    common = sorted(set(row_a.seeds) & set(row_b.seeds))

    def keep(row: ScoreRow) -> ScoreRow:
        scores = [score for seed, score in zip(row.seeds, row.scores, strict=True) if seed in common]
        return ScoreRow(row.step, row.algo, scores, row.n_runs, row.furthest, seeds=common)

    return keep(row_a), keep(row_b)


def compare(rows: Sequence[ScoreRow], a: str = "pmac", b: str = "mbpo") -> list[Comparison]:
    """
    ``a`` against ``b`` at every step of ``rows`` where both have a score, on the seeds both have reached
    (:func:`_on_common_seeds`). No bootstrap intervals: with 2 or 3 runs of each, percentile intervals are too narrow
    to mean anything (they span the few resampled means); the exact rank test says what so few runs can and cannot show.
    """
    from scipy.stats import mannwhitneyu

    _, metrics = load_rliable()
    by_key = {(row.step, row.algo): row for row in rows}
    comparisons = []
    for step in sorted({row.step for row in rows}):
        row_a, row_b = by_key.get((step, a)), by_key.get((step, b))
        if row_a is None or row_b is None or not row_a.scores or not row_b.scores:
            continue
        x, y = (np.asarray(row.scores, dtype=float) for row in _on_common_seeds(row_a, row_b))
        if not len(x) or not len(y):
            continue
        test = mannwhitneyu(x, y, alternative="greater", method="exact")
        comparisons.append(
            Comparison(
                step=step,
                a=a,
                b=b,
                n_a=len(x),
                n_b=len(y),
                mean_difference=float(x.mean() - y.mean()),
                p_improvement=float(metrics.probability_of_improvement(x[:, None], y[:, None])),
                p_value=float(test.pvalue),
                smallest_p_value=1.0 / math.comb(len(x) + len(y), len(x)),
            )
        )
    return comparisons


#: Scores whose first step each run reaches the report gives (sample efficiency run by run)
THRESHOLDS = (1000, 2000, 3000)


def first_step_reaching(run: Run, threshold: float, window: int = WINDOW) -> int | None:
    """The first evaluation step at which the run's score (:func:`window_score`) is ``threshold`` or more; None if none."""
    for step in np.unique(run.steps):  # sorted
        score = window_score(run, int(step), window)
        if score is not None and score >= threshold:
            return int(step)
    return None


def threshold_table(
    campaign: dict[str, list[Run]], algos: Sequence[str], window: int = WINDOW, thresholds: Sequence[int] = THRESHOLDS
) -> list[str]:
    """One row per run: the first step its score reached each threshold, or how far it has gone without."""
    lines = [
        "| run | " + " | ".join(f"score ≥ {threshold}" for threshold in thresholds) + " |",
        "| --- | " + " | ".join("---" for _ in thresholds) + " |",
    ]
    for algo in algos:
        for run in campaign.get(algo, []):
            cells = []
            for threshold in thresholds:
                step = first_step_reaching(run, threshold, window)
                cells.append(fmt_steps(step) if step is not None else f"not by {fmt_steps(run.last_step)}")
            lines.append(f"| {_label(algo)} seed {run.seed} | " + " | ".join(cells) + " |")
    return lines


#: The issue's targets, "hopes, not pass marks": PMAC's mean return at the last reported step, and from which step on
#: PMAC's IQM should be above MBPO's
RETURN_TARGET = 3000
LEAD_FROM = 50_000


def targets_table(rows: Sequence[ScoreRow], campaign: dict[str, list[Run]], n_seeds: int) -> list[str]:
    """
    The issue's three targets against the scores (:func:`score_rows`, with IQMs) and the diagnostics: PMAC's mean at the
    last step of ``rows`` >= ``RETURN_TARGET``; PMAC's IQM above MBPO's at every step from ``LEAD_FROM`` on; PMAC's local
    error below MBPO's (:func:`local_error_wins`). A result from fewer than ``n_seeds`` runs per algorithm says so.
    """
    by_key = {(row.step, row.algo): row for row in rows}

    def runs_note(*found: ScoreRow) -> str:
        fewest = min(len(row.scores) for row in found)
        return "" if fewest >= n_seeds else f" (so far: {fewest} of {n_seeds} runs)"

    def verdict(met: str, *found: ScoreRow) -> str:
        return met if min(len(row.scores) for row in found) >= n_seeds else f"pending ({met} so far)"

    lines = ["| target (issue 14: hopes, not pass marks) | result | met |", "| --- | --- | --- |"]
    last = max((row.step for row in rows), default=None)
    pmac_last = by_key.get((last, "pmac")) if last is not None else None
    if pmac_last is not None and pmac_last.scores:
        each = ", ".join(f"{score:.0f}" for score in pmac_last.scores)
        met = verdict("yes" if pmac_last.mean >= RETURN_TARGET else "no", pmac_last)
        lines.append(
            f"| PMAC's mean return at {fmt_steps(last)} steps >= {RETURN_TARGET} | {pmac_last.mean:.0f} (runs: {each})"
            f"{runs_note(pmac_last)} | {met} |"
        )
    pairs = [
        (step, by_key[(step, "pmac")], by_key[(step, "mbpo")])
        for step in sorted({row.step for row in rows})
        if step >= LEAD_FROM and (step, "pmac") in by_key and (step, "mbpo") in by_key
        and by_key[(step, "pmac")].iqm is not None and by_key[(step, "mbpo")].iqm is not None
    ]  # fmt: skip
    if pairs:
        ahead = [a.iqm > b.iqm for _, a, b in pairs]  # type: ignore[operator]
        values = "; ".join(f"{fmt_steps(step)}: {a.iqm:.0f} vs {b.iqm:.0f}" for step, a, b in pairs)
        found = [row for _, a, b in pairs for row in (a, b)]
        met = verdict(f"{'yes' if all(ahead) else 'no'}, {sum(ahead)} of {len(ahead)} steps", *found)
        lines.append(f"| PMAC's IQM above MBPO's from {fmt_steps(LEAD_FROM)} steps on | {values}{runs_note(*found)} | {met} |")
    wins, compared = local_error_wins(campaign)
    if compared:
        on_own_data = "yes" if wins == compared else "mostly" if wins > compared / 2 else "no"
        lines.append(
            f"| PMAC's local one-step error below MBPO's | at {wins} of the {compared} diagnostics steps both reached "
            "(means over runs), each agent on its own policy's fresh transitions | "
            f"{on_own_data} on each agent's own data; not a like-for-like test (see the model errors) |"
        )
    return lines


def comparison_table(comparisons: Sequence[Comparison]) -> list[str]:
    if not comparisons:
        return ["No step has scores of both algorithms yet."]
    a, b = _label(comparisons[0].a), _label(comparisons[0].b)
    lines = [
        f"| steps | runs {a} / {b} | mean {a} - {b} | P({a} > {b}) | one-sided p (smallest possible) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for c in comparisons:
        lines.append(
            f"| {fmt_steps(c.step)} | {c.n_a} / {c.n_b} | {c.mean_difference:+.0f} | {c.p_improvement:.2f} | "
            f"{c.p_value:.2f} ({c.smallest_p_value:.2f}) |"
        )
    return lines


@dataclass
class WallTime:
    """
    Where a run's wall time went: ``hours`` in all; after the random warm-up (``trained_steps`` steps since the first
    SAC update), seconds per 1000 steps in all and per ``time/`` key (model training, rollouts, SAC) and the rest.
    """

    hours: float
    trained_steps: int
    per_1000: dict[str, float]


TIME_KEYS = {"model training": "time/model_train_s", "rollouts": "time/rollout_s", "SAC": "time/sac_s"}


def wall_time(run: Run) -> WallTime:
    """The wall time of ``evaluations.csv`` (evaluations included) split by the last ``progress.csv`` row's timings."""
    total = float(run.wall_s[-1])
    steps = run.progress.get("time/total_timesteps", np.zeros(0))
    updates = run.progress.get("train/n_updates", np.full(len(steps), np.nan))
    trained = np.flatnonzero(np.isfinite(updates))
    if not len(trained):
        return WallTime(total / 3600, 0, {})
    warmup_end = float(steps[trained[0] - 1]) if trained[0] > 0 else 0.0  # the last step without an update
    trained_steps = run.last_step - warmup_end
    if trained_steps <= 0:
        return WallTime(total / 3600, 0, {})
    trained_wall = total - float(np.interp(warmup_end, run.steps, run.wall_s, left=0.0))
    scale = 1000 / trained_steps
    per_1000 = {"total": trained_wall * scale}
    timed = 0.0
    for name, key in TIME_KEYS.items():
        values = run.progress.get(key, np.zeros(0))
        values = values[np.isfinite(values)]
        if len(values):
            per_1000[name] = float(values[-1]) * scale
            timed += float(values[-1])
    if len(per_1000) > 1:
        per_1000["rest"] = (trained_wall - timed) * scale
    return WallTime(total / 3600, int(trained_steps), per_1000)


#: Where a run's critic is read "late": from this step on (after the early phase in which high-UTD critics can diverge)
LATE_STEP = 30_000
#: SAC's discount (SB3's default, kept by the paper's settings and rl-zoo3's Hopper entry)
GAMMA = 0.99
#: Training episodes shorter than this do not set the reward-per-step scale (a short fall can have a high mean)
MIN_EPISODE_LENGTH = 100


@dataclass
class CriticPeaks:
    """
    A run's critic over training from ``progress.csv``'s logged values (each the mean of one ``train`` call's updates,
    one row every ``log_interval`` episodes): the largest critic loss and the largest minus actor loss (the actor's
    Q-value estimate, less its small entropy term), with their steps, the largest of both from ``LATE_STEP`` on, and a
    scale: the best training episode's mean reward per step over ``1 - GAMMA`` (episodes of ``MIN_EPISODE_LENGTH``+
    steps, ``monitor.csv``), roughly the largest discounted return the run's policies reached.
    """

    critic_loss: float
    critic_step: int
    q_estimate: float
    q_step: int
    late_critic_loss: float
    late_q_estimate: float
    return_scale: float


def training_episodes(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """The returns and lengths of the run's training episodes in order (``monitor.csv``; empty without the file)."""
    monitor = run.path / "monitor.csv"
    if not monitor.is_file():
        return np.zeros(0), np.zeros(0)
    episodes = read_columns(monitor)
    return episodes.get("r", np.zeros(0)), episodes.get("l", np.zeros(0))


def critic_peaks(run: Run) -> CriticPeaks | None:
    """The run's :class:`CriticPeaks` (None before its first logged SAC update)."""
    steps = run.progress.get("time/total_timesteps", np.zeros(0))
    critic = run.progress.get("train/critic_loss", np.full(len(steps), np.nan))
    q_values = -run.progress.get("train/actor_loss", np.full(len(steps), np.nan))
    logged = np.isfinite(critic) & np.isfinite(q_values) & np.isfinite(steps)
    if not logged.any():
        return None
    steps, critic, q_values = steps[logged], critic[logged], q_values[logged]
    late = steps >= LATE_STEP
    scale = np.nan
    rewards, lengths = training_episodes(run)
    long_enough = lengths >= MIN_EPISODE_LENGTH
    if long_enough.any():
        scale = float(np.max(rewards[long_enough] / lengths[long_enough])) / (1 - GAMMA)
    return CriticPeaks(
        critic_loss=float(critic.max()),
        critic_step=int(steps[np.argmax(critic)]),
        q_estimate=float(q_values.max()),
        q_step=int(steps[np.argmax(q_values)]),
        late_critic_loss=float(critic[late].max()) if late.any() else np.nan,
        late_q_estimate=float(q_values[late].max()) if late.any() else np.nan,
        return_scale=scale,
    )


def _measured_runs(
    campaign: dict[str, list[Run]], algos: Sequence[str], measure: Callable[[Run], Any]
) -> Iterator[tuple[str, Run, Any]]:
    """``("PMAC seed 0", run, measure(run))`` for every run of ``algos`` in order, runs whose measure is None left out."""
    for algo in algos:
        for run in campaign.get(algo, []):
            value = measure(run)
            if value is not None:
                yield f"{_label(algo)} seed {run.seed}", run, value


def critic_table(campaign: dict[str, list[Run]], algos: Sequence[str]) -> list[str]:
    """One row per run with a logged SAC update: :class:`CriticPeaks`."""
    late = f"{LATE_STEP // 1000}k"
    lines = [
        f"| run | largest critic loss (step) | largest Q estimate (step) | from {late} on: critic loss, Q estimate | "
        "best reward per step / (1 - gamma) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, _, peaks in _measured_runs(campaign, algos, critic_peaks):
        from_late = (
            f"{_fmt(peaks.late_critic_loss)}, {_fmt(peaks.late_q_estimate)}" if np.isfinite(peaks.late_q_estimate) else "-"
        )
        lines.append(
            f"| {name} | {_fmt(peaks.critic_loss)} ({fmt_steps(peaks.critic_step)}) | "
            f"{_fmt(peaks.q_estimate)} ({fmt_steps(peaks.q_step)}) | {from_late} | "
            f"{_fmt(peaks.return_scale) if np.isfinite(peaks.return_scale) else '-'} |"
        )
    return lines


#: Training episodes at the end of a run that say how its policy moves (the gait table)
LAST_EPISODES = 20
#: Hopper's time limit: an episode of this length did not fall
TIME_LIMIT = 1000


@dataclass
class Gait:
    """
    How a run's policy ends its training episodes (``monitor.csv``, stochastic actions): over its last
    ``LAST_EPISODES`` episodes, the mean length, the mean return, the mean return per step and how many ran to the
    time limit. A policy that hops fast and falls has short episodes of a high return per step; one that hops to the
    time limit, long ones.
    """

    episodes: int
    length: float
    episode_return: float
    per_step: float
    at_limit: int


def gait(run: Run, last: int = LAST_EPISODES) -> Gait | None:
    """The run's :class:`Gait` (None without ``monitor.csv`` or episodes)."""
    rewards, lengths = (column[-last:] for column in training_episodes(run))
    if not len(lengths):
        return None
    return Gait(
        episodes=len(lengths),
        length=float(lengths.mean()),
        episode_return=float(rewards.mean()),
        per_step=float(np.mean(rewards / lengths)),
        at_limit=int(np.sum(lengths >= TIME_LIMIT)),
    )


def gait_table(campaign: dict[str, list[Run]], algos: Sequence[str]) -> list[str]:
    """One row per run with training episodes: :class:`Gait`, at the step the run has reached."""
    lines = [
        "| run | at step | episodes | mean length | mean return | return per step | at the time limit |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, run, found in _measured_runs(campaign, algos, gait):
        lines.append(
            f"| {name} | {fmt_steps(run.last_step)} | {found.episodes} | {found.length:.0f} | "
            f"{found.episode_return:.0f} | {found.per_step:.2f} | {found.at_limit} of {found.episodes} |"
        )
    return lines


LOCAL, GLOBAL = "local_obs_mse", "global_obs_mse"
COMPOUNDING_PREFIX = "compounding_obs_mse_h"


def longest_compounding_column(run: Run) -> str | None:
    """The diagnostics column of the compounding error at the longest horizon recorded, e.g. ``compounding_obs_mse_h10``."""
    horizons = [int(name.removeprefix(COMPOUNDING_PREFIX)) for name in run.diagnostics if name.startswith(COMPOUNDING_PREFIX)]
    return f"{COMPOUNDING_PREFIX}{max(horizons)}" if horizons else None


def diagnostics_at(run: Run, step: int) -> dict[str, float] | None:
    """
    The run's last diagnostics row at or before ``step`` (as the compounding panel picks it), as ``{column: value}``;
    None if the run has not reached ``step`` or has no row by then.
    """
    steps = run.diagnostics.get(TIMESTEPS, np.zeros(0))
    before = np.flatnonzero(np.isfinite(steps) & (steps <= step))
    if run.last_step < step or not len(before):
        return None
    row = before[-1]
    return {name: float(values[row]) for name, values in run.diagnostics.items()}


@dataclass
class ModelErrorRow:
    """The model errors of one algorithm's runs at one step (one value per run that has reached it)."""

    step: int
    algo: str
    local: list[float]
    global_: list[float]
    compounding: list[float]
    horizon: int | None

    @property
    def ratios(self) -> list[float]:
        """Each run's local over global error."""
        return [local / global_ for local, global_ in zip(self.local, self.global_, strict=True) if global_ > 0]


def model_error_rows(
    campaign: dict[str, list[Run]], steps: Sequence[int] = REPORT_STEPS, algos: Sequence[str] = ("pmac", "mbpo")
) -> list[ModelErrorRow]:
    """One row per (step, algorithm) in that order: local, global and longest-horizon compounding error of each run."""
    rows = []
    for step in steps:
        for algo in algos:
            local, global_, compounding, horizons = [], [], [], set()
            for run in campaign.get(algo, []):
                values = diagnostics_at(run, step)
                if values is None or LOCAL not in values or GLOBAL not in values:
                    continue
                local.append(values[LOCAL])
                global_.append(values[GLOBAL])
                column = longest_compounding_column(run)
                if column is not None and np.isfinite(values[column]):
                    compounding.append(values[column])
                    horizons.add(int(column.removeprefix(COMPOUNDING_PREFIX)))
            horizon = min(horizons) if len(horizons) == 1 else None
            rows.append(ModelErrorRow(step, algo, local, global_, compounding if horizon else [], horizon))
    return rows


def local_error_wins(campaign: dict[str, list[Run]], a: str = "pmac", b: str = "mbpo") -> tuple[int, int]:
    """
    At how many of the diagnostics steps that both algorithms' runs reached the mean local error over ``a``'s runs is
    below the mean over ``b``'s: ``(wins of a, steps compared)``.
    """

    def means(algo: str) -> dict[float, float]:
        by_step: dict[float, list[float]] = {}
        for run in campaign.get(algo, []):
            if TIMESTEPS not in run.diagnostics or LOCAL not in run.diagnostics:
                continue
            for step, value in zip(run.diagnostics[TIMESTEPS], run.diagnostics[LOCAL], strict=True):
                if np.isfinite(step) and np.isfinite(value):
                    by_step.setdefault(float(step), []).append(float(value))
        return {step: float(np.mean(values)) for step, values in by_step.items()}

    mean_a, mean_b = means(a), means(b)
    shared = sorted(set(mean_a) & set(mean_b))
    return sum(mean_a[step] < mean_b[step] for step in shared), len(shared)


def _spread(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return f"{np.mean(values):.3g} ± {np.std(values):.2g}" if len(values) > 1 else f"{values[0]:.3g}"


def model_error_table(rows: Sequence[ModelErrorRow]) -> list[str]:
    horizons = {row.horizon for row in rows if row.horizon is not None}
    h = f"h = {horizons.pop()}" if len(horizons) == 1 else "longest h"
    lines = [
        f"| steps | algorithm | runs | local obs MSE | global obs MSE | local / global | compounding obs MSE, {h} |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        if not row.local:
            lines.append(f"| {fmt_steps(row.step)} | {_label(row.algo)} | 0 | not reached | - | - | - |")
            continue
        lines.append(
            f"| {fmt_steps(row.step)} | {_label(row.algo)} | {len(row.local)} | {_spread(row.local)} | "
            f"{_spread(row.global_)} | {_spread(row.ratios)} | {_spread(row.compounding)} |"
        )
    return lines


BOUND_CONTROL_CSV = "bound_control.csv"
SELECTION_LABELS = {"exponential": "Algorithm 1", "uniform": "uniform (MBPO)"}
#: The errors the paired table compares, by the bound control CSV's columns
PAIRED_ERRORS = {"local": "local_obs_mse", "global": "global_obs_mse", "h10": "compounding_h10"}


def _algo_and_seed(label: str) -> tuple[str, str]:
    """A bound control label's algorithm and seed: ``"mbpo_seed1"`` -> ``("mbpo", "1")``."""
    algo, _, seed = label.partition("_seed")
    return algo, seed


def bound_control_records(path: Path) -> list[dict[str, str]]:
    """
    The rows of ``benchmarks/bound_control.py``'s CSV by run, then step (they are appended as the checkpoints are
    measured); a checkpoint's rows keep their order. Empty without the file.
    """
    if not path.is_file():
        return []
    with open(path, newline="") as file:
        records = list(csv.DictReader(file))
    records.sort(key=lambda record: (record["label"], float(record["num_timesteps"])))
    return records


@dataclass
class SelectionPair:
    """One checkpoint's model retrained on its whole buffer with each selection: Algorithm 1's and uniform."""

    run: str
    step: float
    errors: dict[str, dict[str, float]]  # selection -> {"local": .., "global": .., "h10": ..}

    def ratio(self, error: str) -> float:
        """Algorithm 1's error over the uniform selection's."""
        return self.errors["exponential"][error] / self.errors["uniform"][error]


def selection_pairs(records: Sequence[dict[str, str]]) -> list[SelectionPair]:
    """The checkpoints retrained with both selections (``config`` full), in the records' order."""
    found: dict[tuple[str, float], dict[str, dict[str, float]]] = {}
    for record in records:
        if record["config"] != "full" or record["selection"] not in SELECTION_LABELS:
            continue
        key = (record["label"], float(record["num_timesteps"]))
        errors = {name: float(record[column]) for name, column in PAIRED_ERRORS.items()}
        found.setdefault(key, {})[record["selection"]] = errors
    return [
        SelectionPair(label, step, errors) for (label, step), errors in found.items() if set(errors) >= set(SELECTION_LABELS)
    ]


def selection_pairs_table(pairs: Sequence[SelectionPair]) -> list[str]:
    """The paired checkpoints: each error of Algorithm 1's retrained model over the uniform one's, and a count."""
    if not pairs:
        return []
    lines = [
        "| run | steps | local obs MSE: Algorithm 1 / uniform | global obs MSE: Algorithm 1 / uniform "
        "| compounding obs MSE, h = 10: Algorithm 1 / uniform |",
        "| --- | --- | --- | --- | --- |",
    ]
    for pair in pairs:
        algo, seed = _algo_and_seed(pair.run)
        cells = [
            f"{pair.errors['exponential'][error]:.3g} / {pair.errors['uniform'][error]:.3g} = {pair.ratio(error):.2f}"
            for error in PAIRED_ERRORS
        ]
        lines.append(f"| {_label(algo)} seed {seed} | {fmt_steps(pair.step)} | {' | '.join(cells)} |")
    lower = {error: sum(pair.ratio(error) < 1 for pair in pairs) for error in PAIRED_ERRORS}
    seeds = sorted({_algo_and_seed(pair.run)[1] for pair in pairs})
    lines += [
        "",
        f"Algorithm 1's retrained model has the lower local error at {lower['local']} of the {len(pairs)} paired "
        f"checkpoints, the lower global error at {lower['global']} and the lower compounding error at h = 10 at "
        f"{lower['h10']} ({_seeds_text(seeds)}; a ratio below 1: Algorithm 1's error is the smaller).",
    ]
    return lines


def bound_control_table(records: Sequence[dict[str, str]]) -> list[str]:
    """
    The rows of ``benchmarks/bound_control.py``'s CSV (:func:`bound_control_records`) as a table: per checkpoint, the
    model as the run trained it (bounded) and the same model retrained on the whole buffer with each selection, by run
    and step. Empty without rows.
    """
    if not records:
        return []
    lines = [
        "| run | steps | model | selection | rows | gradient steps | training s | local obs MSE | global obs MSE "
        "| compounding obs MSE, h = 10 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for record in records:
        algo, seed = _algo_and_seed(record["label"])
        bounded = record["config"] == "saved"
        lines.append(
            f"| {_label(algo)} seed {seed} | {fmt_steps(float(record['num_timesteps']))} | "
            f"{'as the run trained it (bounded)' if bounded else 'retrained on the whole buffer'} | "
            f"{SELECTION_LABELS.get(record['selection'], record['selection'])} | "
            f"{_rows(record['train_rows'])} | "
            f"{_bound(record.get('max_grad_steps', '')) if bounded else fmt_steps(float(record['grad_steps']))} | "
            f"{'-' if bounded else record['train_s']} | {float(record['local_obs_mse']):.3g} | "
            f"{float(record['global_obs_mse']):.3g} | {float(record['compounding_h10']):.3g} |"
        )
    return lines


def _seeds_text(seeds: Sequence[str]) -> str:
    """``["1"]`` -> "one seed: 1"; ``["1", "2"]`` -> "2 seeds: 1 and 2"; none -> "no run yet"."""
    if not seeds:
        return "no run yet"
    return f"one seed: {seeds[0]}" if len(seeds) == 1 else f"{len(seeds)} seeds: {', '.join(seeds[:-1])} and {seeds[-1]}"


def _rows(value: str) -> str:
    return fmt_steps(float(value)) if value else "-"


def _bound(value: str) -> str:
    return f"≤ {fmt_steps(float(value))} per training" if value else "-"


def replace_between_markers(text: str, content: str, start: str = START_MARKER, end: str = END_MARKER) -> str:
    """``text`` with what lies between the ``start`` and ``end`` lines replaced by ``content``; the rest unchanged."""
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise ValueError(f"expected one {start} line followed by one {end} line")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{content.strip(chr(10))}\n{end}{tail}"


def _label(algo: str) -> str:
    return LABELS.get(algo, algo)


def _fmt(value: float, like: float | None = None) -> str:
    """Returns to the unit from 100 on, else to one decimal (as ``like`` when given: a row's values alike)."""
    return f"{value:.0f}" if abs(value if like is None else like) >= 100 else f"{value:.1f}"


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def status_table(campaign: dict[str, list[Run]], algos: Sequence[str], seeds: Sequence[int]) -> list[str]:
    lines = [
        "| algorithm | seed | status | last evaluation (10 episodes) | wall time | CPU |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for algo in algos:
        by_seed = {run.seed: run for run in campaign.get(algo, [])}
        for seed in sorted({*seeds, *by_seed}):
            run = by_seed.get(seed)
            if run is None:
                lines.append(f"| {_label(algo)} | {seed} | not started | - | - | - |")
            else:
                last = f"{_fmt(float(run.returns[-1]))} at {fmt_steps(run.last_step)}"
                wall = f"{run.wall_s[-1] / 3600:.2f} h"
                lines.append(f"| {_label(algo)} | {seed} | {run.status} | {last} | {wall} | {run.cpu} |")
    return lines


def returns_table(rows: Sequence[ScoreRow], n_seeds: int, with_iqm: bool) -> list[str]:
    lines = [
        "| steps | algorithm | runs at this step | each run (seed: score) | mean ± std | IQM [bootstrap interval] |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        reached = f"{len(row.scores)} of {max(n_seeds, row.n_runs)}"
        if not row.scores:
            furthest = f"furthest run: {fmt_steps(row.furthest)}" if row.n_runs else "no run yet"
            lines.append(f"| {fmt_steps(row.step)} | {_label(row.algo)} | {reached} | - | not reached ({furthest}) | - |")
            continue
        each = ", ".join(f"{seed}: {score:.0f}" for seed, score in zip(row.seeds, row.scores, strict=True)) or "-"
        iqm = "-"
        if with_iqm and row.iqm is not None and row.ci is not None:
            ci = (
                f"[{_fmt(row.ci[0], row.mean)}, {_fmt(row.ci[1], row.mean)}]"
                if len(row.scores) > 1
                else "(1 run: no interval)"
            )
            iqm = f"{_fmt(row.iqm, row.mean)} {ci}"
        spread = f"{_fmt(row.mean)} ± {_fmt(row.std, row.mean)}"
        lines.append(f"| {fmt_steps(row.step)} | {_label(row.algo)} | {reached} | {each} | {spread} | {iqm} |")
    mean, std, episodes = ZOO_SAC_1M
    lines += [
        "| 25 000 - 100 000 | PMAC, MBPO in the paper (Fig. 2, Hopper, 5 seeds) | - | - | not given in text | - |",
        f"| 1 000 000 | SB3 SAC, rl-zoo3 benchmark (Hopper-v3, one agent, {episodes} episodes) | - | - | "
        f"{mean:.0f} ± {std:.0f} (std over episodes) | - |",
    ]
    return lines


def wall_table(campaign: dict[str, list[Run]], algos: Sequence[str]) -> list[str]:
    columns = ["total", *TIME_KEYS, "rest"]
    lines = [
        "| run | steps | wall time | at this rate to the end | trained steps | s / 1000 steps: " + " | ".join(columns) + " |",
        "| --- " * (5 + len(columns)) + "|",
    ]
    for algo in algos:
        for run in campaign.get(algo, []):
            split = wall_time(run)
            cells = [f"{split.per_1000[column]:.0f}" if column in split.per_1000 else "-" for column in columns]
            left = (run.target - run.last_step) / 1000 * split.per_1000.get("total", np.nan) / 3600
            projected = "done" if run.finished else (f"{split.hours + left:.1f} h" if np.isfinite(left) else "-")
            lines.append(
                f"| {_label(algo)} seed {run.seed} | {fmt_steps(run.last_step)} | {split.hours:.2f} h | {projected} | "
                f"{fmt_steps(split.trained_steps)} | " + " | ".join(cells) + " |"
            )
    return lines


def _commits(campaign: dict[str, list[Run]]) -> str:
    commits = sorted({str(run.record.get("commit", "?"))[:7] for runs in campaign.values() for run in runs})
    return ", ".join(f"`{commit}`" for commit in commits)


def settings_text(campaign: dict[str, list[Run]]) -> str:
    records = [run.record for runs in campaign.values() for run in runs]
    evals = sorted({(r.get("eval_episodes"), float(r.get("eval_freq") or 0)) for r in records}, key=str)
    diagnostics = sorted({float(r["diagnostics_freq"]) for r in records if r.get("diagnostics_freq")})
    ent_coefs = sorted({str(r.get("agent_kwargs", {}).get("ent_coef")) for r in records if r.get("algo") != "sac_zoo"})
    eval_text = "; ".join(f"{episodes} deterministic episodes every {fmt_steps(freq)} steps" for episodes, freq in evals)
    return (
        "Settings (`benchmarks/campaign.py`: `benchmarks/learning_curves.py --settings paper`, 100 000 steps, one "
        "thread per run, two runs at a time at nice 19 on 2-vCPU machines without GPU, whose CPU the status table "
        "gives: wall times are comparable only between runs on the same CPU). PMAC and MBPO: "
        "Table 2's values (ensemble of 7 with 5 elites, model of 4 layers of 200 units, SAC of 2 layers of 256 "
        "units, batch 256, learning rate 3e-4, real ratio 0.05, 20 SAC updates per env step, model training every "
        "250 steps, 100 000 rollout starts, 5000 random warm-up steps), PMAC's adaptation rate 0.9; the SAC of "
        f"mbpo_pytorch, the paper's base code: fixed entropy coefficient {' / '.join(ent_coefs) or '0.2'}; bounded "
        "model training (the package default: 4750 rows drawn by the mixture, at most 400 gradient steps per "
        "training); rollout horizon 1 → 15 over epochs 20 → 100 (1000 steps each, counted after the 5000-step "
        "warm-up). SB3 SAC (rl-zoo3): SB3's `SAC` with the installed rl-zoo3's Hopper-v4 hyperparameters (SB3's "
        "defaults, 1 update per step, entropy coefficient tuned, 10 000 warm-up steps). Evaluation on a separate "
        f"env: {eval_text or 'none yet'}. Model diagnostics (PMAC, MBPO) every "
        f"{' / '.join(fmt_steps(freq) for freq in diagnostics) or '5000'} steps (local: 1000 fresh transitions of the "
        "current policy; global: 5000 transitions drawn from the replay buffer; compounding: 100 start states, "
        f"h = 1 ... 10; observation MSE, raw units). Code: commit {_commits(campaign)} (`run.json`)."
    )


def overview(campaign: dict[str, list[Run]], algos: Sequence[str], seeds: Sequence[int]) -> str:
    runs = [run for algo in algos for run in campaign.get(algo, [])]
    expected = len(algos) * len(seeds)
    finished = sum(run.finished for run in runs)
    if runs and finished == len(runs) == expected:
        return f"**All {expected} runs finished.**"
    reached = ", ".join(
        f"{_label(run.algo)} seed {run.seed} at {fmt_steps(run.last_step)}" for run in runs if not run.finished
    )
    return (
        f"**Partial results**: {len(runs)} of {expected} runs started, {finished} finished"
        + (f"; still running: {reached} (of {fmt_steps(max(run.target for run in runs))} steps)" if reached else "")
        + ". Every number below is from the steps reached so far; the conclusion waits for the finished runs."
    )


@dataclass
class ReportOptions:
    """What to read and where to write (the command line's options)."""

    results: Path = ROOT / "results" / "campaign"
    doc: Path = ROOT / "docs" / "results.md"
    figures: Path = ROOT / "docs" / "results"
    env: str = ENV_ID
    algos: tuple[str, ...] = ALGOS
    seeds: tuple[int, ...] = SEEDS
    steps: tuple[int, ...] = REPORT_STEPS
    window: int = WINDOW
    x_max: int = 100_000
    reps: int = 10_000
    iqm: bool = True


def curves_figure(campaign: dict[str, list[Run]], options: ReportOptions, path: Path) -> None:
    """Mean ± std over the runs present at each step (partial runs included), with rl-zoo3's SAC at 1M steps."""
    runs = load_runs(options.results, source="eval_csv", algos=options.algos, envs=[options.env], verbose=False)
    reached = ", ".join(
        f"{_label(algo)} {fmt_steps(max(run.last_step for run in campaign[algo]))}"
        for algo in options.algos
        if algo in campaign
    )
    finished = all(run.finished for runs_ in campaign.values() for run in runs_)
    title = f"{options.env}, campaign of issue 14" + ("" if finished else f" (partial: furthest {reached} steps)")
    labels = {algo: _label(algo) for algo in options.algos}
    figure = plot_curves(
        runs,
        algos=options.algos,
        labels=labels,
        title=title,
        x_max=options.x_max,
        ncols=1,
        panel_size=(8.0, 4.8),
        truncate=False,
    )
    ax = figure.axes[0]
    ax.axhline(ZOO_SAC_1M[0], color="gray", linestyle="--", label="SB3 SAC, rl-zoo3 benchmark, 1M steps (Hopper-v3)")
    ax.set_xlim(0, options.x_max)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save(figure, path)


def compounding_steps(campaign: dict[str, list[Run]], steps: Sequence[int]) -> list[float]:
    """The report steps that a diagnostics row has reached, then the latest row's step if it is not one of them."""
    rows = [run.diagnostics_steps for runs in campaign.values() for run in runs if len(run.diagnostics_steps)]
    if not rows:
        return []
    latest = float(max(row.max() for row in rows))
    chosen = [float(step) for step in steps if step <= latest]
    return chosen if latest in chosen else [*chosen, latest]


def model_error_figure(options: ReportOptions, at_steps: list[float], path: Path) -> None:
    """
    Local and global one-step error over training (the seeds present at each step), compounding error against the
    horizon at ``at_steps`` (each run's last row at or before the step, of the runs that have reached it): the paper's
    Fig. 3a and 3d.
    """
    runs = load_diagnostics([options.results], envs=[options.env])
    model_based = [algo for algo in options.algos if algo != "sac_zoo"]
    figure = plot_diagnostics(
        runs,
        env=options.env,
        at_step=at_steps,
        algos=model_based,
        panels=("errors", "compounding"),
        title=f"{options.env}, campaign of issue 14: model errors (mean ± std over seeds)",
        panel_size=(4.6, 3.6),
        truncate=False,
    )
    _save(figure, path)


def _save(figure: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    pyplot().close(figure)
    print(f"wrote {path}", file=sys.stderr)


def _image(doc: Path, figure: Path, alt: str) -> str:
    return f"![{alt}]({Path(os.path.relpath(figure, doc.parent)).as_posix()})"


def report_markdown(campaign: dict[str, list[Run]], options: ReportOptions, draw: bool = True) -> str:
    """
    The generated part of the section: where the runs stand, settings, figures (drawn here unless ``draw`` is false)
    and tables. Figures are referenced relative to ``options.doc``; the model-error figure only once a diagnostics row
    exists.
    """
    rows = score_rows(campaign, options.steps, options.algos, options.window)
    if options.iqm:
        add_iqm(rows, reps=options.reps)
    curves_png, errors_png = options.figures / CURVES_PNG, options.figures / MODEL_ERROR_PNG
    if draw:
        curves_figure(campaign, options, curves_png)
    at_steps = compounding_steps(campaign, options.steps)
    if at_steps and draw:
        model_error_figure(options, at_steps, errors_png)
    window_evals = f"t - {fmt_steps(options.window - 1000)} ... t" if options.window > 1000 else "t"
    lines = [
        f"<!-- generated by `{COMMAND}`: edit the script, not these lines -->",
        "",
        overview(campaign, options.algos, options.seeds),
        "",
        settings_text(campaign),
        "",
        *status_table(campaign, options.algos, options.seeds),
        "",
        "### Campaign learning curves",
        "",
        "Mean ± standard deviation over the runs that have reached each step (fewer runs further on while the "
        "campaign goes on: the legend says how many); evaluation returns, not smoothed. Dashed: SB3 SAC after 1M "
        "steps in rl-zoo3's benchmark.",
        "",
        _image(options.doc, curves_png, f"{options.env} campaign learning curves"),
        "",
        f"### Campaign returns at {', '.join(f'{step // 1000}k' for step in options.steps)} steps",
        "",
        f"A run's score at step t is the mean of its evaluations at {window_evals} ({options.window // 1000} "
        "evaluations of 10 episodes each, every 1000 steps), so that one noisy evaluation does not decide; mean and "
        "standard deviation (ddof = 0, the figure's band; the sample std of 2 or 3 runs is 41 % or 22 % larger) over "
        "the runs that have reached t, and each run's score, which with so few runs says more than both. IQM: "
        "rliable's interquartile mean of the runs' scores with its stratified-bootstrap interval "
        f"({options.reps} resamples, percentile method). With 3 runs or fewer the IQM trims nothing (25 % of 3 runs "
        "is less than one run): it equals the mean; and the percentile interval of 2 or 3 runs is the lowest to the "
        "highest score, the range of the runs, which covers the median of runs like these only 50 % (2 runs) or "
        "75 % (3 runs) of the time: not a 95 % interval.",
        "",
        *returns_table(rows, len(options.seeds), options.iqm),
        "",
    ]
    if options.iqm and {"pmac", "mbpo"} <= set(options.algos):
        lines += [
            "### Campaign: PMAC against MBPO at equal steps",
            "",
            "The same scores, PMAC's against MBPO's, on the seeds both algorithms have reached at the step (while "
            "the campaign goes on, one algorithm's slower run is left out of both sides): the difference of the "
            "means; rliable's probability of "
            "improvement P(PMAC > MBPO), the share of (PMAC run, MBPO run) pairs in which PMAC scores higher (ties "
            "count half; 0.5: no difference); and the one-sided exact Mann-Whitney p-value of PMAC scoring higher, "
            "with the smallest p-value these numbers of runs allow (PMAC ahead in every pair). With 3 runs of each "
            "that smallest value is 0.05, and with fewer runs no p-value can be small: these runs can at best hint at "
            "a difference, not establish one, which is why the table gives no bootstrap intervals (with 2-3 runs they "
            "only span the few resampled means). With 3 runs or fewer rliable's IQM equals the mean, so the mean "
            "difference is also the IQM difference.",
            "",
            *comparison_table(compare(rows)),
            "",
        ]
        lines += [
            "### Campaign: steps to reach a score",
            "",
            "The first step at which each run's score (the mean of its evaluations over the last "
            f"{options.window // 1000} evaluation steps, as above) reached {', '.join(map(str, THRESHOLDS))}: sample "
            "efficiency run by run, which with 2-3 runs says more than a mean.",
            "",
            *threshold_table(campaign, options.algos, options.window),
            "",
        ]
        targets = targets_table(rows, campaign, len(options.seeds))
        if len(targets) > 2:
            lines += [
                "### Campaign: the issue's targets",
                "",
                "The three targets issue 14 set (hopes, not pass marks), against the tables above and below.",
                "",
                *targets,
                "",
            ]
    lines += [
        "### Campaign model errors",
        "",
    ]
    model_based = [algo for algo in options.algos if algo != "sac_zoo"]
    control_records = bound_control_records(options.results / options.env / BOUND_CONTROL_CSV)
    control = bound_control_table(control_records)
    pairs = selection_pairs(control_records)
    control_seeds = sorted({_algo_and_seed(record["label"])[1] for record in control_records})
    if at_steps:
        lines += [
            "Left: one-step observation error on fresh transitions of the current policy (local, solid) and on the "
            "replay buffer (global, dashed) over training (the paper's Fig. 3a). Right: compounding error against the "
            f"horizon h at {', '.join(fmt_steps(step) for step in at_steps)} steps (each run's last row at or "
            "before the step, of the runs that have reached it; the legends count them; Fig. 3d). Mean ± std over "
            "seeds.",
            "",
            _image(options.doc, errors_png, f"{options.env} campaign model errors"),
            "",
            "How to read it: each agent's local error is measured on transitions of *its own* current policy, so "
            "PMAC's and MBPO's local errors are on different data, and a policy that keeps to a small region of the "
            "state space (a Hopper that does not get going) is easier to predict than one that hops far. A lower local "
            "error of the agent with the lower return would therefore be no evidence against the paper's argument, and "
            "a lower local error of the agent with the higher return, as here, is no evidence for it: the local "
            "stream is about one steady 1000-step episode of a Hopper that hops against several short ones of one "
            "that falls. Comparisons on equal data are the bound control below "
            f"({_seeds_text(control_seeds)}) and the replay in "
            '"Controlled: the same data, two data selections" (one run, early rounds; `benchmarks/model_replay.py`: '
            "the same buffer, models trained on PMAC's and on MBPO's selection). Both "
            "agents use bounded model training here (MBPO: 4750 "
            "transitions drawn uniformly per training); MBPO's own code trains on the whole buffer "
            '(`model_training="full"`), which this campaign does not run'
            + ("; what that changes for the models of these runs: the subsection below." if control else "."),
            "",
            "The same errors in numbers: each run's diagnostics row at or before the step, mean ± std (ddof = 0) over "
            "the runs that have reached it; *local / global* is each run's ratio, then averaged.",
            "",
            *model_error_table(model_error_rows(campaign, options.steps, model_based)),
        ]
        if {"pmac", "mbpo"} <= set(model_based):
            wins, compared = local_error_wins(campaign)
            if compared:
                lines += [
                    "",
                    f"At {wins} of the {compared} diagnostics steps that runs of both have reached, PMAC's local error "
                    "(mean over its runs) is below MBPO's.",
                ]
        if control:
            lines += [
                "",
                "#### The bound on the runs' own data",
                "",
                "How much of a run's model error is the bounded training's? `benchmarks/bound_control.py` takes a "
                "checkpoint of a run (agent and replay buffer), measures the model as the run trained it, then "
                "retrains that model (warm start) on the whole buffer as MBPO's code trains every round "
                '(`model_training="full"`: as many rows as the buffer holds, early stopping with patience 5, here at '
                "most 100 epochs; every member on all rows, as the runs train, not on its own bootstrap resample as in "
                "MBPO's own model: docs/algorithm.md), once with each selection, and measures each model on the same "
                "1000 fresh transitions "
                "of the run's current policy "
                "(same seed; only the model differs between a checkpoint's rows). The two retrained models of a "
                "checkpoint compare the selections on equal data under the same training rule, with three limits: both "
                "start from the run's own model (trained with one of the two selections), each checkpoint is one seed "
                "and one stream of 1000 correlated transitions, and no uncertainty is given (MBPO seed 1 at 100k: "
                "0.0124 here as trained, 0.0160 in the run's own diagnostics at that step, on another stream: "
                "differences of 10-20 % between two rows may be within what another stream would change). Bounded "
                "rows: the run's "
                "training-set size and cap on gradient steps per training (one training every 250 steps).",
                "",
                *control,
            ]
            if pairs:
                lines += [
                    "",
                    "The checkpoints retrained with both selections, paired (same buffer, same starting model, same "
                    "fresh transitions): each error of the model retrained with Algorithm 1's weights over the one "
                    "retrained uniformly.",
                    "",
                    *selection_pairs_table(pairs),
                ]
    else:
        lines.append("No diagnostics row yet (the first is written once a model has been trained).")
    critics = critic_table(campaign, options.algos)
    if len(critics) > 2:
        lines += [
            "",
            "### Campaign critics",
            "",
            "Whether a run's SAC critic diverged on the way (high update-to-data ratios and model data make that "
            "more likely): per run, the largest critic loss and the largest *Q estimate* (minus the actor loss, "
            "i.e. the critic's value of the actor's actions less the small entropy term) among the values logged "
            "in `progress.csv` (each the mean of one `train` call, one row every 4 episodes: peaks between rows are "
            f"not seen), with their steps, and the largest of both from {fmt_steps(LATE_STEP)} steps on. For scale, "
            f"the best training episode's mean reward per step (episodes of {MIN_EPISODE_LENGTH} steps or more, "
            f"`monitor.csv`) over 1 - gamma (gamma = {GAMMA}): about the largest discounted return the run's policies "
            "reached. A Q estimate far above it is overestimation, not a better policy.",
            "",
            *critics,
        ]
    gaits = gait_table(campaign, options.algos)
    if len(gaits) > 2:
        lines += [
            "",
            "### Campaign gaits",
            "",
            f"How each run's policy moves at the end: its last {LAST_EPISODES} training episodes (`monitor.csv`) "
            "before the step the run has reached: mean length, mean return, mean return per step, and how many ran to "
            f"the {TIME_LIMIT}-step time limit instead of falling. Training episodes sample SAC's stochastic actions: "
            "a policy that the deterministic evaluations see hop to the time limit can still fall here when its "
            "actions are perturbed, so these returns can be far below the evaluations'. A Hopper that hops fast and "
            "falls has short episodes with a high return per step.",
            "",
            *gaits,
        ]
    lines += [
        "",
        "### Campaign wall time",
        "",
        "Wall time so far (evaluations included), and in all if the remaining steps cost what the trained steps "
        "have cost on average (a lower bound: the rollouts grow with the horizon); seconds per 1000 steps after the "
        "random warm-up (*trained steps*: "
        "since the first SAC update), split by the agents' `time/` counters of `progress.csv`: model training, model "
        "rollouts, SAC updates, and the rest (env steps, evaluations, diagnostics, logging). SB3's SAC has no such "
        "counters.",
        "",
        *wall_table(campaign, options.algos),
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> tuple[ReportOptions, bool]:
    """The report's options and whether to print the markdown instead of writing it into ``--doc``."""
    defaults = ReportOptions()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=defaults.results, help="the campaign's results folder")
    parser.add_argument("--doc", type=Path, default=defaults.doc, help="markdown file with the campaign markers")
    parser.add_argument("--figures", type=Path, default=defaults.figures, help="folder of the PNG figures")
    parser.add_argument("--env", default=defaults.env)
    parser.add_argument("--algos", nargs="+", default=list(defaults.algos))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(defaults.seeds), help="the seeds planned per algorithm")
    parser.add_argument("--steps", nargs="+", type=int, default=list(defaults.steps), help="steps of the returns table")
    parser.add_argument("--window", type=int, default=defaults.window, help="score window in steps, ending at the step")
    parser.add_argument("--x-max", type=int, default=defaults.x_max, help="last step of the learning-curve figure")
    parser.add_argument("--reps", type=int, default=defaults.reps, help="bootstrap resamples")
    parser.add_argument("--print", action="store_true", help="write the markdown to stdout, not into --doc; draw no figures")
    args = parser.parse_args(argv)
    options = ReportOptions(
        results=args.results,
        doc=args.doc,
        figures=args.figures,
        env=args.env,
        algos=tuple(args.algos),
        seeds=tuple(args.seeds),
        steps=tuple(args.steps),
        window=args.window,
        x_max=args.x_max,
        reps=args.reps,
    )
    return options, args.print


def main(argv: list[str] | None = None) -> int:
    options, print_only = parse_args(argv)
    try:
        campaign = load_campaign(options.results, options.env, options.algos)
        unknown = [algo for algo in options.algos if algo not in campaign and algo not in LABELS]
        if unknown:
            raise ValueError(
                f"--algos {' '.join(unknown)}: no runs under {options.results / options.env} and not one of the "
                f"campaign's algorithms ({', '.join(LABELS)})"
            )
        markdown = report_markdown(campaign, options, draw=not print_only)
        if print_only:
            print(markdown, end="")
        else:
            options.doc.write_text(replace_between_markers(options.doc.read_text(), markdown))
            print(f"wrote the campaign section of {options.doc}", file=sys.stderr)
    except (MissingRliable, PlotError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
