"""What the launcher, the CPU mode and the smoke run share: the run's metrics path, the launcher's error,
and running a launch command in a run directory.

A leaf module (no torch, no verl), so that :mod:`~m2po.verl_plugin.launch`,
:mod:`~m2po.verl_plugin.cpu_mode`, :mod:`~m2po.verl_plugin.gpu_smoke`, the driver and the update log
share these without importing each other."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from m2po.errors import UserError

#: verl's file logger writes its JSONL metrics to the path in this variable.
METRICS_ENV = "VERL_FILE_LOGGER_PATH"
#: the file verl's logger writes in a run directory launched by the launcher
METRICS_FILE = "metrics.jsonl"
_SESSION = re.compile(r"^metrics\.session-(\d+)\.jsonl$")


def absolute(path: str) -> str:
    """``path`` with ``~`` expanded, made absolute (a Ray worker's working directory differs)."""
    return os.path.abspath(os.path.expanduser(path))


def run_env(out: str) -> dict[str, str]:
    """The run's environment: verl's file logger writes ``<out>/metrics.jsonl`` (absolute)."""
    return {METRICS_ENV: os.path.join(absolute(out), METRICS_FILE)}


def metrics_files(out_dir: str | Path) -> list[Path]:
    """A run's metrics logs, oldest first: ``metrics.session-<k>.jsonl`` by ``k``, then ``metrics.jsonl``."""
    out = Path(out_dir)
    sessions = sorted(
        (int(m.group(1)), p) for p in out.glob("metrics.session-*.jsonl") if (m := _SESSION.match(p.name))
    )
    files = [p for _, p in sessions]
    if (out / METRICS_FILE).exists():
        files.append(out / METRICS_FILE)
    return files


def rotate_metrics(out_dir: str | Path) -> Path | None:
    """Rename a non-empty ``metrics.jsonl`` to the next ``metrics.session-<k>.jsonl`` (before verl, which
    truncates the file, starts again in this run directory); returns the new path."""
    out = Path(out_dir)
    current = out / METRICS_FILE
    if not current.exists() or current.stat().st_size == 0:
        return None
    taken = [int(m.group(1)) for p in out.glob("metrics.session-*.jsonl") if (m := _SESSION.match(p.name))]
    target = out / f"metrics.session-{max(taken, default=0) + 1}.jsonl"
    current.rename(target)
    return target


class LaunchError(UserError, ValueError):
    """Bad launcher input: ``what`` went wrong, ``where`` (the flag or override), and how to ``fix`` it;
    printed as ``m2po launch: error: <what>, <key>, <fix>`` like every other subcommand's error."""

    def line(self, command: str = "launch") -> str:
        return super().line(command)


def run_in_dir(cmd: list[str], env: dict[str, str], out: str) -> int:
    """Run a launch command in run directory ``out``; an earlier session's ``metrics.jsonl`` is kept as
    ``metrics.session-<k>.jsonl`` first (verl's logger would truncate it)."""
    Path(out).mkdir(parents=True, exist_ok=True)
    rotate_metrics(out)
    return subprocess.call(cmd, env={**os.environ, **env})
