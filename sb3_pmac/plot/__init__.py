"""Learning-curve and diagnostics figures (moved to a sub-package; split into modules by the next commit)."""

from sb3_pmac.plot.runs import *  # noqa: F403
