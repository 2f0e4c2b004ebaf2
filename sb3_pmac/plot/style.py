"""What the learning-curve and diagnostics figures share: matplotlib without a display, algorithm names and colours."""

from __future__ import annotations

import sys
from typing import Any

from sb3_pmac.plot.runs import PlotError

#: Display names of known algorithms (others are shown as named)
DEFAULT_LABELS = {
    "pmac": "PMAC", "mbpo": "MBPO", "sac": "SAC", "td3": "TD3", "ppo": "PPO", "tqc": "TQC",
    "pmac_tv": "PMAC (TV mixture)", "sac_zoo": "SB3 SAC (rl-zoo3)",  # names of benchmarks/learning_curves.py's runs
}  # fmt: skip


def pyplot() -> Any:
    """
    ``matplotlib.pyplot``, with the Agg backend (no display needed) unless pyplot was imported before.

    :raises PlotError: when matplotlib is not installed (it comes with the ``[zoo]`` extra)
    """
    try:
        import matplotlib
    except ImportError as error:
        raise PlotError(f"the plots need matplotlib ({error}): pip install 'sb3-pmac[zoo]'") from None

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # no display: choose the backend before pyplot is first imported
    import matplotlib.pyplot as plt

    return plt


def display_name(algo: str, labels: dict[str, str] | None = None) -> str:
    """The legend name of ``algo``: its label, else :data:`~sb3_pmac.plot.style.DEFAULT_LABELS`, else ``algo``."""
    return (labels or {}).get(algo.lower()) or DEFAULT_LABELS.get(algo.lower(), algo)


def algo_color(index: int) -> str:
    """The colour of the ``index``-th algorithm of a figure (matplotlib's default cycle)."""
    return f"C{index % 10}"
