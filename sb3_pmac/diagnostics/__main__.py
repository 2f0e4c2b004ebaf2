import sys

from sb3_pmac.diagnostics.metrics import main

main(sys.argv[1:])
