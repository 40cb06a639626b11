"""``python tests/slowed_cli.py SECONDS ARGS...``: ``m2po ARGS...`` with a pause after each grading round of
an evaluation, which widens the window for the tests that kill an evaluation half-way
(:func:`kill_mid_grading`). The pause is patched in here, so the production code carries no test hook."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from m2po.cli import main
from m2po.eval.runner import Evaluation
from m2po.eval.store import read_jsonl


def kill_mid_grading(args: list[str], grades: Path, n: int, pause: float, timeout: float) -> None:
    """Run ``m2po ARGS`` slowed by ``pause`` seconds per grading round and SIGKILL it (its whole process
    group, grading workers included) once a ``grade-*.jsonl`` shard in ``grades`` holds ``n`` records."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), str(pause), *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shards = list(grades.glob("grade-*.jsonl"))
            if shards and len(read_jsonl(shards[0])) >= n:
                break
            assert proc.poll() is None, "the evaluation finished before it could be killed"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


_grade_pending = Evaluation._grade_pending


def _slowed(self, *args, **kwargs):
    _grade_pending(self, *args, **kwargs)
    time.sleep(float(sys.argv[1]))


if __name__ == "__main__":
    Evaluation._grade_pending = _slowed
    sys.exit(main(sys.argv[2:]))
