"""
Learning-curve and model-diagnostics figures: runs found and read (:mod:`~sb3_pmac.plot.runs`), seeds aggregated
(:mod:`~sb3_pmac.plot.aggregation`), drawn (:mod:`~sb3_pmac.plot.curves`, :mod:`~sb3_pmac.plot.diagnostics_plots`);
``python -m sb3_pmac.plot curves|diagnostics`` (:mod:`~sb3_pmac.plot.cli`).
"""

from sb3_pmac.plot.aggregation import (
    MONITOR_GRID_POINTS,
    PREFERRED_ORDER,
    Summary,
    aggregate,
    format_table,
    order_algos,
    runs_at,
    smooth,
    summarize,
    summarize_runs,
)
from sb3_pmac.plot.cli import main, make_parser
from sb3_pmac.plot.curves import plot_curves
from sb3_pmac.plot.diagnostics_plots import (
    PANELS,
    DiagnosticsRun,
    compounding_columns,
    compounding_errors,
    draw_compounding,
    draw_mixture,
    draw_model_errors,
    load_diagnostics,
    plot_diagnostics,
)
from sb3_pmac.plot.runs import (
    EVAL_CSV,
    EVAL_NPZ,
    MONITOR_SUFFIX,
    SOURCES,
    UNKNOWN_ENV,
    Curve,
    PlotError,
    find_run_dirs,
    identify_run,
    load_evaluations_csv,
    load_evaluations_npz,
    load_monitor,
    load_runs,
    monitor_env_id,
    monitor_files,
    read_columns,
)
from sb3_pmac.plot.style import DEFAULT_LABELS, display_name

__all__ = [
    "DEFAULT_LABELS",
    "EVAL_CSV",
    "EVAL_NPZ",
    "MONITOR_GRID_POINTS",
    "MONITOR_SUFFIX",
    "PANELS",
    "PREFERRED_ORDER",
    "SOURCES",
    "UNKNOWN_ENV",
    "Curve",
    "DiagnosticsRun",
    "PlotError",
    "Summary",
    "aggregate",
    "compounding_columns",
    "compounding_errors",
    "display_name",
    "draw_compounding",
    "draw_mixture",
    "draw_model_errors",
    "find_run_dirs",
    "format_table",
    "identify_run",
    "load_diagnostics",
    "load_evaluations_csv",
    "load_evaluations_npz",
    "load_monitor",
    "load_runs",
    "main",
    "make_parser",
    "monitor_env_id",
    "monitor_files",
    "order_algos",
    "plot_curves",
    "plot_diagnostics",
    "read_columns",
    "runs_at",
    "smooth",
    "summarize",
    "summarize_runs",
]
