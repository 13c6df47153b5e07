"""``python -m whoiscrawl.simulator``: see ``cli``."""

import sys

from whoiscrawl.simulator.cli import main

sys.exit(main())
