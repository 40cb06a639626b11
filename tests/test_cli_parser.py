"""The ``m2po`` parser imports the module of the subcommand that runs, and no other (m2po/cli.py)."""

from __future__ import annotations

import json
import subprocess
import sys

from m2po.cli import SUBCOMMANDS


def _modules_after(argv: list[str]) -> set[str]:
    """The subcommand modules (and torch) imported once ``build_parser(argv)`` has parsed ``argv``, in a fresh
    process."""
    code = (
        "import json, sys\n"
        "from m2po.cli import SUBCOMMANDS, build_parser\n"
        f"build_parser({argv!r}).parse_args({argv!r})\n"
        "print(json.dumps(sorted(m for m in [*(m for m, _ in SUBCOMMANDS.values()), 'torch'] if m in sys.modules)))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return set(json.loads(res.stdout))


def test_only_the_named_subcommand_is_imported():
    assert _modules_after(["report", "--results", "r"]) == {"m2po.analysis.cli_report"}  # no torch
    assert _modules_after(["data", "build", "--out", "d"]) == {"m2po.data.cli"}
    assert {"m2po.engine.worker", "torch"} <= _modules_after(["train-worker", "--jobs", "[]"])


def test_help_lists_every_subcommand_and_a_subcommand_has_its_options():
    res = subprocess.run([sys.executable, "-m", "m2po.cli", "--help"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert all(name in res.stdout for name in SUBCOMMANDS)
    res = subprocess.run(
        [sys.executable, "-m", "m2po.cli", "report", "--help"], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0 and "--no-figures" in res.stdout
    res = subprocess.run([sys.executable, "-m", "m2po.cli", "nope"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "invalid choice: 'nope'" in res.stderr
