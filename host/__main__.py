"""``python -m spikeforge``: the ``spikeforge`` command."""

import sys

from .cli import main

sys.exit(main())
