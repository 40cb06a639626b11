"""Ctrl-C and SIGTERM that never cut a write in half.

:func:`handler` turns SIGINT and SIGTERM into ``KeyboardInterrupt(signum)`` (so cleanup runs and the
exit status can say which signal it was, 130 or 143). Inside :func:`deferred` (every atomic write uses
it) the signal is only noted and raised when the write is done: ``torch.save`` calls back into Python
for each record and would turn an interrupt there into an unrelated ``RuntimeError``.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_depth = 0
_pending: int | None = None


def handler(signum: int, frame: FrameType | None) -> None:
    global _pending
    if _depth:
        _pending = signum
        return
    raise KeyboardInterrupt(signum)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM (when :func:`handler` is installed) until the block is done."""
    global _depth, _pending
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
    if _depth == 0 and _pending is not None:
        signum, _pending = _pending, None
        raise KeyboardInterrupt(signum)


def install(*signums: int) -> dict[int, object]:
    """Install :func:`handler` for ``signums`` (main thread only); returns the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.signal(s, handler) for s in signums}


def restore(previous: dict[int, object]) -> None:
    for s, h in previous.items():
        signal.signal(s, h)  # type: ignore[arg-type]
