"""``python -m sb3_pmac.diagnostics``: see :mod:`sb3_pmac.diagnostics.cli`."""

import sys

from sb3_pmac.diagnostics.cli import main

main(sys.argv[1:])
