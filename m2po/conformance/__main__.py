"""``python -m m2po.conformance export|check ...`` (imports torch only)."""

import sys

from .cli import main

sys.exit(main())
