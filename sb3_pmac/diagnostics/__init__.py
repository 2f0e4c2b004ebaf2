"""Model diagnostics (moved to a sub-package; split into modules by the next commit)."""

from sb3_pmac.diagnostics.metrics import *  # noqa: F403
from sb3_pmac.diagnostics.metrics import __all__  # noqa: F401
