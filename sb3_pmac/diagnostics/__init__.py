"""
Model diagnostics of PMAC and MBPO: local vs global one-step error, compounding error and policy-mixture statistics
(the paper's Fig. 1 and Fig. 3), online with :class:`ModelDiagnosticsCallback` or offline on saved agents with
:func:`evaluate_checkpoints` / ``python -m sb3_pmac.diagnostics``. See ``docs/diagnostics.md``.
"""

from sb3_pmac.diagnostics.callback import ModelDiagnosticsCallback
from sb3_pmac.diagnostics.checkpoints import (
    DiagnosticsInputError,
    algo_name,
    checkpoint_upto,
    evaluate_checkpoints,
    find_vecnormalize,
    load_agent,
    load_buffer,
    load_vecnormalize,
)
from sb3_pmac.diagnostics.cli import main
from sb3_pmac.diagnostics.metrics import (
    DiagnosticsConfig,
    evaluate_model,
    mixture_statistics,
    model_diagnostics,
)
from sb3_pmac.diagnostics.schema import (
    BASE_COLUMNS,
    DEFAULT_NEWEST_K,
    DIAGNOSTICS_CSV,
    ModelDiagnostics,
    append_csv_row,
    compounding_column,
    compounding_horizon,
    csv_columns,
    format_row,
    newest_share_column,
    one_step_column,
)

__all__ = [
    "BASE_COLUMNS",
    "DEFAULT_NEWEST_K",
    "DIAGNOSTICS_CSV",
    "DiagnosticsConfig",
    "DiagnosticsInputError",
    "ModelDiagnostics",
    "ModelDiagnosticsCallback",
    "algo_name",
    "append_csv_row",
    "checkpoint_upto",
    "compounding_column",
    "compounding_horizon",
    "csv_columns",
    "evaluate_checkpoints",
    "evaluate_model",
    "find_vecnormalize",
    "format_row",
    "load_agent",
    "load_buffer",
    "load_vecnormalize",
    "main",
    "mixture_statistics",
    "model_diagnostics",
    "newest_share_column",
    "one_step_column",
]
