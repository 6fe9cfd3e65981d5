"""``python -m simulator``: the same as ``tickstream simulator``."""

import sys

from simulator.cli import main

sys.exit(main())
