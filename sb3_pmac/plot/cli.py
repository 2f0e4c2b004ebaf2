"""``python -m sb3_pmac.plot curves|diagnostics``: the learning-curve and model-diagnostics figures as image files."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sb3_pmac.diagnostics.schema import DIAGNOSTICS_CSV, TIMESTEPS
from sb3_pmac.plot.aggregation import format_table, order_algos, summarize_runs
from sb3_pmac.plot.curves import plot_curves
from sb3_pmac.plot.diagnostics_plots import PANELS, _one_env, load_diagnostics, plot_diagnostics
from sb3_pmac.plot.runs import EVAL_CSV, EVAL_NPZ, SOURCES, PlotError, load_runs
from sb3_pmac.plot.style import pyplot

if TYPE_CHECKING:
    from matplotlib.figure import Figure

HELP = f"""Learning curves and model diagnostics figures (matplotlib, Agg backend: no display needed).

Learning curves of several algorithms, mean over seeds with a shaded +/- one standard deviation, one panel per env:

    python -m sb3_pmac.plot curves results --out curves.png --out curves.svg
    python -m sb3_pmac.plot curves results/InvertedPendulum-v5 --algos pmac mbpo sac --out ip.png
    python -m sb3_pmac.plot curves logs/ --source monitor --smooth 20 --x-max 100000 --out train.png
    python -m sb3_pmac.plot curves pmac=results/Hopper-v5/pmac sac=logs/sac --labels pmac="PMAC (ours)" --out mixed.png

Each positional argument is a folder (searched recursively) or a file, optionally prefixed by ALGO= to name the
algorithm of every run found there. A run directory is a folder holding one of, in this order of preference
(--source auto):

* {EVAL_CSV} (timesteps,mean_return,std_return,wall_s): benchmarks/learning_curves.py, laid out as
  <root>/<env>/<algo>/seed_<n>/ with a run.json naming the algorithm and env;
* {EVAL_NPZ} (timesteps, results of shape (n_evals, n_episodes)): SB3's EvalCallback, e.g. in
  rl-zoo3's <logs>/<algo>/<env>_<run>/;
* monitor.csv / 0.monitor.csv, 1.monitor.csv, ... (SB3 Monitor): training episode returns against the
  cumulative number of steps (of finished episodes, all envs of a VecEnv merged in wall-clock order).

Runs of the same (env, algorithm) are averaged (the legend and the table count runs: two runs of one seed count
twice): they are aligned on their common range of steps (truncated to the shortest run, which the legend and a printed
note say) and linearly interpolated onto the union of their evaluation steps (onto --n-points evenly spaced steps for
monitor data). A table algo, env, runs, final mean +/- std, steps goes to stdout.

One-step and compounding model errors and the policy mixture over training, from {DIAGNOSTICS_CSV} files
(python -m sb3_pmac.diagnostics or its callback; columns timesteps, local_obs_mse, global_obs_mse, ...,
mixture_effective_versions, compounding_obs_mse_h<h>):

    python -m sb3_pmac.plot diagnostics --csv pmac=runs/pmac_diag.csv --csv mbpo=runs/mbpo_diag.csv --out diag.png
    python -m sb3_pmac.plot diagnostics results/Hopper-v5 --at-step 50000 --separate --out diag.svg

rl-zoo3's own plot scripts also work on rl-zoo3 log folders with our algorithms registered:
python -m sb3_pmac.zoo all_plots --algo pmac mbpo sac --env Hopper-v4 -f logs/ (evaluations.npz),
python -m sb3_pmac.zoo plot_train --algo pmac --env Hopper-v4 -f logs/ (monitor files) and plot_from_file.
curves here reads the runner's CSV files as well, and mixes sources (runner results next to zoo logs).
"""


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


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def make_parser() -> argparse.ArgumentParser:
    """The ``python -m sb3_pmac.plot`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m sb3_pmac.plot", description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter
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
    curves.add_argument("--smooth", type=_positive_int, default=1, help="moving average of each run over N points")
    curves.add_argument("--x-max", type=float, help="last step shown")
    curves.add_argument("--min-steps", type=float, help="leave out runs shorter than this (e.g. just started)")
    curves.add_argument(
        "--n-points", type=_positive_int, help="common grid size (default: union of eval steps; 200 for monitor)"
    )
    curves.add_argument("--ncols", type=int, default=3, help="panels per row")

    diagnostics = commands.add_parser("diagnostics", help="local/global and compounding model errors, policy mixture")
    diagnostics.add_argument("paths", nargs="*", help="diagnostics CSV files or folders, optionally ALGO=PATH")
    diagnostics.add_argument("--csv", action="append", default=[], help="ALGO=PATH or PATH (repeatable)")
    diagnostics.add_argument("--out", action="append", help="image file, format by suffix (default diagnostics.png)")
    diagnostics.add_argument("--env", help="env to plot when the inputs hold several")
    diagnostics.add_argument("--algos", nargs="+", help="algorithms to show, in this order")
    diagnostics.add_argument(
        "--at-step", type=float, help="step of the compounding-error panel (default: the last step every run has reached)"
    )
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
    by_algo = _one_env(runs, args.env)  # (several envs without --env: the error plot_diagnostics would raise)
    if args.algos and not order_algos(by_algo, args.algos):
        raise PlotError(f"none of --algos {' '.join(args.algos)} in the inputs (found {', '.join(sorted(by_algo))})")
    first_rows = [float(np.nanmin(run.columns[TIMESTEPS])) for group in by_algo.values() for run in group]
    if args.at_step is not None and first_rows and args.at_step < min(first_rows):
        raise PlotError(f"--at-step {args.at_step:g} is before every run's first row (step {min(first_rows):g})")
    outputs = args.out or ["diagnostics.png"]
    figure = None
    for panels in [[panel] for panel in PANELS] if args.separate else [list(PANELS)]:
        if figure is not None:
            pyplot().close(figure)
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
    pyplot().close(figure)
    return 0
