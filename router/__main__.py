"""``python -m router --host 127.0.0.1 --port 8080 --environment prod``."""

import sys

from router.server import main

sys.exit(main())
