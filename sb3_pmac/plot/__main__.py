"""``python -m sb3_pmac.plot``: see :mod:`sb3_pmac.plot.cli`."""

import sys

from sb3_pmac.plot.cli import main

sys.exit(main())
