"""Atomic file writes, used by every stage: a reader (or a resumed run) never sees half a file.

Each writes to a temporary file in the destination folder, then ``os.replace``s it over the
final name, so a crash or SIGKILL leaves either the old file or the new one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .errors import os_error_with_path
from .interrupts import deferred


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(f)`` on a temporary binary file, fsync it, then move it to ``path``.

    The file gets mode 0666 less the umask, like ``open`` (``mkstemp`` alone would leave 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with deferred():  # Ctrl-C and SIGTERM wait for the write (m2po.interrupts)
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
    except OSError as e:  # a full disk: say which file (a failed write does not)
        Path(tmp).unlink(missing_ok=True)
        raise os_error_with_path(e, path) from None
    except RuntimeError as e:  # torch.save reports a failed write as "unexpected pos"; the OSError is its context
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e.__context__, OSError):
            raise os_error_with_path(e.__context__, path) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` streamed to a temporary file, then renamed."""
    import torch  # here, so that stages writing only text do not import torch

    atomic_write(path, lambda f: torch.save(obj, f))


def repair_tail(path: Path) -> int:
    """Cut an append-only log back to its last newline (drop the unterminated line a killed write left);
    return the number of bytes removed."""
    if not path.exists():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return 0
        block = 1 << 16
        pos = size
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                keep = start + nl + 1
                f.truncate(keep)
                return size - keep
            pos = start
        f.truncate(0)
        return size
