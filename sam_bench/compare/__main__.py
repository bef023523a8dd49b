"""``python -m sam_bench.compare BASELINE CURRENT``: the regression check (:mod:`.cli`)."""

import sys

from sam_bench.compare.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m sam_bench.compare"))
