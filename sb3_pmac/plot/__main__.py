import sys

from sb3_pmac.plot.runs import main

sys.exit(main())
