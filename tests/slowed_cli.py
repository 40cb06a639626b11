"""``python tests/slowed_cli.py SECONDS ARGS...``: ``m2po ARGS...`` with a pause after each grading round of
an evaluation, which widens the window for the tests that kill an evaluation half-way. The pause is
patched in here, so the production code carries no test hook."""

from __future__ import annotations

import sys
import time

from m2po.cli import main
from m2po.eval.runner import Evaluation

_grade_pending = Evaluation._grade_pending


def _slowed(self, *args, **kwargs):
    _grade_pending(self, *args, **kwargs)
    time.sleep(float(sys.argv[1]))


if __name__ == "__main__":
    Evaluation._grade_pending = _slowed
    sys.exit(main(sys.argv[2:]))
