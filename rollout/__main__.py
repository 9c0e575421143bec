"""``python -m rollout`` is the ``rollout`` console script."""

import sys

from rollout.cli import main

sys.exit(main())
