"""Append-only JSONL shards: the resumable cache of generations and grades.

Why JSONL and not parquet/SQLite: one ``write`` + ``flush`` per record is the whole commit
protocol. A SIGKILL can only leave a *truncated last line*, which ``read_jsonl`` skips and
``JsonlShard`` cuts off before appending again, so a killed run loses at most the record in flight
and a rerun skips everything already on disk. (``flush`` hands the bytes to the OS, which survives
the process being killed; ``fsync=True`` additionally survives a power loss, at ~1 ms a record.)

Strings are written with ``ensure_ascii=True``: a response with lone surrogates (invalid unicode a
tokenizer may emit) still round-trips as ``\\udXXX`` escapes instead of failing the write.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import os_error_with_path
from ..fileio import atomic_write_text, repair_tail


def iter_jsonl(path: str | os.PathLike[str], strict: bool = False) -> Iterator[dict[str, Any]]:
    """Records of a JSONL file; a missing file is empty.

    A last line without its newline (a write cut short) is ignored. A corrupt line elsewhere is an
    error only with ``strict`` (otherwise skipped): shards are only ever appended to, so mid-file
    damage means something outside this module touched the file.
    """
    p = Path(path)
    if not p.exists():
        return
    with open(p, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    complete, tail = lines[:-1], lines[-1]
    for n, raw in enumerate(complete, 1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw.decode("utf-8", errors="surrogateescape"))
        except json.JSONDecodeError as e:
            if strict:
                raise ValueError(f"{p}:{n}: corrupt JSONL line ({e})") from None
            continue
        if isinstance(rec, dict):
            yield rec
    if tail.strip():  # no trailing newline: complete JSON is still accepted (hand-written input files)
        try:
            rec = json.loads(tail.decode("utf-8", errors="surrogateescape"))
        except json.JSONDecodeError:
            return
        if isinstance(rec, dict):
            yield rec


def read_jsonl(path: str | os.PathLike[str], strict: bool = False) -> list[dict[str, Any]]:
    return list(iter_jsonl(path, strict=strict))


def dumps(record: dict[str, Any]) -> str:
    """One JSONL line (with its newline); NaN is written as null so every line is strict JSON."""
    clean = {k: (None if isinstance(v, float) and v != v else v) for k, v in record.items()}
    return json.dumps(clean, ensure_ascii=True, sort_keys=False) + "\n"


class JsonlShard:
    """An append-only JSONL file opened for one run.

    On open a partial last line (a killed writer) is truncated away, so the next record starts on
    its own line. Use as a context manager; ``append`` flushes every record.
    """

    def __init__(self, path: str | os.PathLike[str], fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._f: IO[str] | None = None

    def __enter__(self) -> JsonlShard:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_tail(self.path)
        self._f = open(self.path, "a", encoding="utf-8")

    def append(self, record: dict[str, Any]) -> None:
        if self._f is None:
            self.open()
        assert self._f is not None
        try:
            self._f.write(dumps(record))
            self._f.flush()
            if self.fsync:
                os.fsync(self._f.fileno())
        except OSError as e:  # a full disk: name the file (a failed write does not)
            raise os_error_with_path(e, self.path) from None

    def close(self) -> None:
        if self._f is not None:
            f, self._f = self._f, None
            try:
                f.close()
            except OSError as e:  # the flush of what a full disk refused
                raise os_error_with_path(e, self.path) from None


def write_jsonl_atomic(path: str | os.PathLike[str], records: Iterable[dict[str, Any]]) -> None:
    """Write a whole JSONL file atomically (:func:`m2po.fileio.atomic_write_text`): readers never see half a file."""
    atomic_write_text(path, "".join(dumps(r) for r in records))
