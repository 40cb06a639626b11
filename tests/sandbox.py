"""A full disk and a read-only folder, for real: a small ``tmpfs`` (or a read-only one) mounted in a
private mount namespace (``unshare -rm``: no root needed where user namespaces are enabled), so the
command under test gets the kernel's own ENOSPC / EROFS. Tests that need it skip where the machine
allows no namespaces."""

from __future__ import annotations

import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

M2PO = [sys.executable, "-m", "m2po.cli"]


@cache
def namespace_prefix() -> list[str] | None:
    for prefix in (["unshare", "-rm"], ["unshare", "-m"]):
        try:
            res = subprocess.run(
                [*prefix, "sh", "-c", "mount -t tmpfs -o size=16k tmpfs /mnt 2>/dev/null || mount -t tmpfs tmpfs /tmp"],
                capture_output=True,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if res.returncode == 0:
            return prefix
    return None


def require_namespaces() -> list[str]:
    prefix = namespace_prefix()
    if prefix is None:
        pytest.skip("no private mount namespace on this machine (unshare -rm): cannot make a real full disk")
    return prefix


def mount_tmpfs(folder: Path, size_kb: int | None = None, read_only: bool = False) -> str:
    """Shell lines that mount a fresh tmpfs on ``folder`` (created first)."""
    opts = ",".join([*(["ro"] if read_only else []), f"size={size_kb or 1024}k"])
    return f"mkdir -p {shlex.quote(str(folder))}\nmount -t tmpfs -o {opts} tmpfs {shlex.quote(str(folder))}\n"


def bind_read_only(folder: Path) -> str:
    """Shell lines that make an existing ``folder`` read-only (a read-only bind mount of itself)."""
    q = shlex.quote(str(folder))
    return f"mount --bind {q} {q}\nmount -o remount,bind,ro {q}\n"


def m2po(*argv: object) -> str:
    return " ".join(shlex.quote(str(a)) for a in [*M2PO, *argv])


def run_script(script: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run ``script`` (sh, stops at the first failing mount) in a private mount namespace."""
    prefix = require_namespaces()
    return subprocess.run([*prefix, "sh", "-c", script], capture_output=True, text=True, timeout=timeout)


def last_error_line(stderr: str, command: str) -> str:
    """The one ``m2po <command>: error: ...`` line, checking there is no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith(f"m2po {command}: error: ")]
    assert len(lines) == 1, stderr
    return lines[0]
