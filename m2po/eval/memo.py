"""A persistent memo of grading verdicts, shared by every sample, checkpoint, run and process.

Why: with a string extraction (``boxed``, ``raw``, ``tiny``) the verdict is a pure function of
(extracted answer, ground truth, grader settings): math-verify never sees the rest of the response.
The samples of an evaluation repeat those pairs a lot (the tiny study's tens of thousands of samples
share a few thousand pairs; AIME's 16 samples often give the same answer), so each distinct pair is
graded once and looked up afterwards.

Layout: ``<dir>/verdicts-<key>.jsonl`` where ``key`` hashes the grader settings (grader name,
math-verify version, hard and soft timeouts), so another math-verify version or timeout starts a
new file. One line per verdict: ``{"answer": ..., "ground_truth": ..., "status": ..., "check": ...}``, where
``check`` hashes the other three, so a line that two writers garbled never passes for a verdict.

Concurrency: every line is appended with ONE ``os.write`` on a descriptor opened with ``O_APPEND``;
on a local filesystem the kernel serialises such appends, so two evaluation jobs writing at once
never interleave inside a line. A writer killed mid-write leaves a line without its newline; the
next append then glues onto it and that line no longer parses: a reader skips every line that is
not a complete verdict, so a kill loses at most one or two cached verdicts, which are simply graded
again. Nothing is ever rewritten or truncated. (On NFS ``O_APPEND`` is not atomic: concurrent writers
may overwrite each other's lines, which costs verdicts but never gives a wrong one, thanks to ``check``.)

Only ``correct`` and ``incorrect`` are stored. ``timeout`` and ``error`` depend on the machine's load or
a worker's fate, not on the pair, and ``no_answer`` is decided before grading.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..errors import os_error_with_path
from ..grader import MAX_ANSWER_CHARS, GradeResult, extract_answer

#: the verdicts worth remembering: deterministic functions of the pair
MEMO_STATUSES = ("correct", "incorrect")


def memo_key(grader: dict[str, Any]) -> str:
    """A 12-hex id of the grader settings a verdict depends on."""
    return hashlib.sha256(json.dumps(grader, sort_keys=True).encode()).hexdigest()[:12]


def _check(answer: str, ground_truth: str, status: str) -> str:
    return hashlib.sha256(json.dumps([answer, ground_truth, status]).encode()).hexdigest()[:8]


class VerdictMemo:
    """``memo.get(answer, ground_truth)`` -> status or None; ``memo.put(answer, ground_truth, status)``.

    Verdicts other processes append while this one runs are picked up by :meth:`refresh` (called by
    :meth:`get` on a miss, at most once per ``refresh_every`` misses).
    """

    def __init__(self, directory: str | os.PathLike[str], grader: dict[str, Any], refresh_every: int = 64) -> None:
        self.grader = dict(grader)
        self.path = Path(directory) / f"verdicts-{memo_key(self.grader)}.jsonl"
        self._verdicts: dict[tuple[str, str], str] = {}
        self._offset = 0  # bytes of the file already read
        self._fd: int | None = None
        self._misses_since_refresh = 0
        self.refresh_every = refresh_every
        self.hits = 0
        self.misses = 0
        self.added = 0
        self.refresh()

    def __len__(self) -> int:
        return len(self._verdicts)

    def refresh(self) -> None:
        """Read the lines appended since the last read (by any process)."""
        self._misses_since_refresh = 0
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1  # a line still being written is read next time
        for raw in data[:end].split(b"\n"):
            self._learn(raw)
        self._offset += end

    def _learn(self, raw: bytes) -> None:
        try:
            rec = json.loads(raw)
            answer, ground_truth, status = rec["answer"], rec["ground_truth"], rec["status"]
            ok = rec["check"] == _check(answer, ground_truth, status) and status in MEMO_STATUSES
        except (ValueError, KeyError, TypeError):
            return  # an empty line, or one glued onto a write cut short by a kill
        if ok:
            self._verdicts[(answer, ground_truth)] = status

    def get(self, answer: str, ground_truth: str) -> str | None:
        """The stored verdict of the pair, or None (counted as a hit or a miss)."""
        status = self._verdicts.get((answer, ground_truth))
        if status is None and self._misses_since_refresh >= self.refresh_every:
            self.refresh()
            status = self._verdicts.get((answer, ground_truth))
        if status is None:
            self.misses += 1
            self._misses_since_refresh += 1
        else:
            self.hits += 1
        return status

    def put(self, answer: str, ground_truth: str, status: str) -> None:
        """Remember a verdict (only ``correct``/``incorrect``; a pair already known is not written again)."""
        if status not in MEMO_STATUSES or (answer, ground_truth) in self._verdicts:
            return
        self._verdicts[(answer, ground_truth)] = status
        rec = {"answer": answer, "ground_truth": ground_truth, "status": status}
        line = json.dumps({**rec, "check": _check(answer, ground_truth, status)}, ensure_ascii=True)
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(self._fd, (line + "\n").encode("ascii"))
        except OSError as e:  # a full disk: name the file
            raise os_error_with_path(e, self.path) from None
        self.added += 1

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> VerdictMemo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict[str, int]:
        return {"memo_hits": self.hits, "memo_misses": self.misses, "memo_added": self.added, "memo_size": len(self)}


def known_verdict(memo: VerdictMemo, task: Any, extraction: str) -> tuple[GradeResult | None, tuple[str, str] | None]:
    """``(verdict, pair)`` of a grading task (``response``, ``ground_truth``) without a grading worker:
    ``no_answer`` when nothing is extractable, else the memo's verdict of ``pair`` = (extracted answer, ground
    truth); ``(None, pair)`` on a miss; ``(None, None)`` when the pool must grade it on its own (invalid unicode,
    a runaway answer: the worker reports why)."""
    try:
        task.response.encode("utf-8")
        task.ground_truth.encode("utf-8")
    except UnicodeEncodeError:
        return None, None
    extracted = extract_answer(task.response, extraction)
    if extracted is None:
        return GradeResult("no_answer", False, None), None
    if len(extracted) > MAX_ANSWER_CHARS:
        return None, None
    status = memo.get(extracted, task.ground_truth)
    if status is None:
        return None, (extracted, task.ground_truth)
    return GradeResult(status, status == "correct", extracted), None
