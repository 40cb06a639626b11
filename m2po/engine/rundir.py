"""The run directory contract (docs/architecture.md, contract 2): resolved config, manifest, tidy logs, checkpoints.

Logs are CSV appended one row at a time and flushed, so a killed run loses nothing that a
checkpoint does not restore: each checkpoint records how many rows each log had, and a resumed
run first truncates the logs back to that point, then rewrites the same rows.
"""

from __future__ import annotations

import csv
import io
import json
import platform
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

import m2po

from ..errors import os_error_with_path
from ..fileio import atomic_torch_save, atomic_write_bytes
from ..interrupts import deferred


def format_value(v: Any) -> str:
    """Deterministic text for a CSV cell (repr of floats round-trips exactly)."""
    if isinstance(v, float):
        return repr(v)
    return "" if v is None else str(v)


class CsvLog:
    """Append-only CSV with a fixed header; rows are flushed as they are written."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = path
        self.columns = columns
        self.rows = 0
        self.last: dict[str, Any] | None = None  # the last row this process wrote (progress display)
        if path.exists():
            with path.open(newline="") as f:
                self.rows = max(0, sum(1 for _ in f) - 1)
        else:
            atomic_write_bytes(path, (",".join(columns) + "\n").encode())

    def append(self, row: dict[str, Any]) -> None:
        self.extend([row])

    def extend(self, rows: list[dict[str, Any]]) -> None:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        for row in rows:
            missing = [c for c in self.columns if c not in row]
            if missing:
                raise KeyError(f"{self.path.name}: row lacks columns {missing}")
            writer.writerow([format_value(row[c]) for c in self.columns])
        try:
            with deferred(), self.path.open("a", newline="") as f:
                f.write(buf.getvalue())
                f.flush()
        except OSError as e:  # a full disk: name the file (a failed write does not)
            raise os_error_with_path(e, self.path) from None
        self.rows += len(rows)
        if rows:
            self.last = rows[-1]

    def truncate(self, rows: int) -> None:
        """Keep the header and the first ``rows`` rows (rewritten atomically)."""
        with self.path.open(newline="") as f:
            lines = f.readlines()
        atomic_write_bytes(self.path, "".join(lines[: rows + 1]).encode())
        self.rows = rows

    def restore(self, data: bytes) -> None:
        """Replace the file with ``data`` (the header and rows a checkpoint stored)."""
        atomic_write_bytes(self.path, data)
        self.rows = max(0, data.count(b"\n") - 1)


def git_commit() -> str | None:
    try:
        root = Path(m2po.__file__).resolve().parents[1]
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def write_manifest(out_dir: Path, extra: dict[str, Any]) -> None:
    manifest = {
        "m2po_version": m2po.__version__,
        "torch_version": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git_commit": git_commit(),
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
    }
    atomic_write_bytes(out_dir / "manifest.json", (json.dumps(manifest, indent=2, default=str) + "\n").encode())


def record_wall_time(out_dir: Path, seconds: float) -> None:
    """Add this process's training wall time to ``manifest.json`` (summed over resumes)."""
    path = out_dir / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else {}
    manifest["wall_seconds"] = round(manifest.get("wall_seconds", 0.0) + seconds, 3)
    atomic_write_bytes(path, (json.dumps(manifest, indent=2, default=str) + "\n").encode())


class BestCheckpoint:
    """``checkpoints/best_model-u<update>.pt``: the model at the run's best evaluation so far (sampled accuracy,
    first maximum, update 0 — the untrained start — excluded), the checkpoint the paper's selection rule (§6:
    the best evaluated checkpoint) picks, kept for the evaluation stage (``m2po eval-run``) beside
    ``final_model.pt``. A new best is written before the previous file is deleted. The best so far is read
    back from ``evals.csv``, which a resume restores exactly."""

    PATTERN = "best_model-u*.pt"

    def __init__(self, folder: Path, evals: CsvLog) -> None:
        self.folder = folder
        self.evals = evals
        self.best: float | None = None
        self._read = False

    @staticmethod
    def path_for(folder: Path, update: int) -> Path:
        return folder / f"best_model-u{update:06d}.pt"

    def _logged_best(self, rows: int) -> float | None:
        with self.evals.path.open(newline="") as f:
            rows_read = [r for i, r in enumerate(csv.DictReader(f)) if i < rows]
        values = [float(r["sampled_acc"]) for r in rows_read if int(r["update"]) > 0]
        return max(values, default=None)

    def offer(self, update: int, acc: float, state_dict: Callable[[], dict[str, torch.Tensor]]) -> bool:
        """Save the model if ``acc`` (just logged as the last row of evals.csv) beats every earlier evaluation."""
        if update == 0:
            return False
        if not self._read:
            self.best, self._read = self._logged_best(self.evals.rows - 1), True
        if self.best is not None and acc <= self.best:
            return False
        self.best = acc
        path = self.path_for(self.folder, update)
        atomic_torch_save(state_dict(), path)
        for old in self.folder.glob(self.PATTERN):
            if old != path:
                old.unlink(missing_ok=True)
        return True
