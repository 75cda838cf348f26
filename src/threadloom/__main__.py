"""``python -m threadloom``."""

import sys

from threadloom.cli import main

sys.exit(main())
