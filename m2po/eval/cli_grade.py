"""``m2po grade``: grade a JSONL file of responses with math-verify in isolated, time-bounded workers.

Each input line needs ``response`` and ``answer`` (the ground truth, not null); every other field is
kept. An input that is missing, not UTF-8, or has a line that is not a JSON object, or lacks a field,
is refused before anything is graded or written, naming the file lines.
Each output line adds ``status`` (correct / incorrect / no_answer / timeout / error), ``correct``,
``extracted`` and the grader's provenance. Resumable: verdicts go to ``<output>.partial`` as they
arrive, a rerun skips the lines already there, and the output is written atomically at the end in
input order.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import DISK_FULL, UserError, check_writable, from_os_error

_JSON_TYPES = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


def _lines(numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:10])) + (f" and {len(numbers) - 10} more" if len(numbers) > 10 else "")
    return f"line{'s' if len(numbers) > 1 else ''} {shown}"


def read_input(path: Path) -> list[dict[str, Any]]:
    """The records of a JSONL input, strictly: every non-blank line must be a JSON object with
    ``response`` and a non-null ``answer``; otherwise a :class:`UserError` naming the file lines."""
    if not path.is_file():
        raise UserError("no such file", path, "check --input")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise UserError(f"not UTF-8 text (a binary file?) at line {line}", path, "give a JSONL file") from None
    rows: list[dict[str, Any]] = []
    bad: dict[str, list[int]] = {}
    lacking: list[int] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            bad.setdefault("not valid JSON", []).append(lineno)
            continue
        if not isinstance(rec, dict):
            bad.setdefault(f"{_JSON_TYPES.get(type(rec), type(rec).__name__)}, not a JSON object", []).append(lineno)
            continue
        if "response" not in rec or rec.get("answer") is None:
            lacking.append(lineno)
        rows.append(rec)
    if bad:
        what = "; ".join(f"{_lines(n)}: {reason}" for reason, n in bad.items())
        raise UserError(what, path, "fix or remove those lines (one JSON object per line)")
    if lacking:
        raise UserError(
            f"{_lines(lacking)} lack `response` or a non-null `answer`",
            path,
            "give every line both fields (`answer` is the ground truth)",
        )
    if not rows:
        raise UserError("no records to grade", path, "give one JSON object per line")
    return rows


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True, type=Path, help="JSONL with `response` and `answer` per line")
    p.add_argument("--output", required=True, type=Path, help="JSONL written with `status` and `correct` added")
    p.add_argument("--workers", type=int, default=0, help="worker processes (default: one per core)")
    p.add_argument("--timeout", type=float, default=10.0, help="hard wall-clock timeout per sample, seconds")
    p.add_argument(
        "--extraction",
        choices=("boxed", "math_verify", "raw", "tiny"),
        default="boxed",
        help="last \\boxed{} (default), math-verify's own extraction, the raw response, or the tiny task's answer",
    )
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")


def run(args: argparse.Namespace) -> int:

    from ..grader import GRADER_NAME, grader_version
    from .pool import GradeTask
    from .store import read_jsonl

    rows = read_input(args.input)
    if args.output.resolve() == args.input.resolve():
        raise UserError("--output is the input file, which grading would overwrite", args.output, "write elsewhere")
    check_writable(args.output.parent, "make it writable or choose another --output")
    if args.workers < 0:
        raise UserError(f"--workers must be >= 0, got {args.workers}", "--workers", "0 uses one per core")
    if args.timeout <= 0:
        raise UserError(f"--timeout must be > 0 seconds, got {args.timeout}", "--timeout", "e.g. --timeout 10")
    provenance = {
        "grader": GRADER_NAME,
        "grader_version": grader_version(),
        "extraction": args.extraction,
        "timeout_s": float(args.timeout),
    }
    partial = args.output.with_name(args.output.name + ".partial")
    done = {int(r["line"]): r for r in read_jsonl(partial) if r.get("provenance") == provenance}
    tasks = [GradeTask(i, str(r["response"]), str(r["answer"])) for i, r in enumerate(rows) if i not in done]
    try:
        done = _grade(args, rows, tasks, done, partial, provenance)
        _write_output(args, rows, done, provenance, len(tasks))
    except OSError as e:
        if e.errno not in DISK_FULL:
            raise
        fix = f"free some space, then run the same command again: it continues from {partial.name}"
        raise from_os_error(e, fix) from e
    partial.unlink(missing_ok=True)
    return 0


def _grade(args, rows, tasks, done, partial, provenance) -> dict:
    from tqdm import tqdm

    from .pool import GradingPool, default_workers
    from .store import JsonlShard

    with (
        JsonlShard(partial) as shard,
        GradingPool(
            workers=args.workers or default_workers(), timeout_s=args.timeout, extraction=args.extraction
        ) as pool,
    ):
        for task, res in tqdm(pool.imap(tasks), total=len(tasks), desc="grade", disable=args.no_progress):
            rec = {
                "line": task.key,
                "status": res.status,
                "correct": res.correct,
                "extracted": res.extracted,
                "detail": res.detail,
                "provenance": provenance,
            }
            shard.append(rec)
            done[task.key] = rec
    return done


def _write_output(args, rows, done, provenance, n_now: int) -> None:
    from .store import write_jsonl_atomic

    out = []
    for i, r in enumerate(rows):
        g = done[i]
        out.append(
            {
                **r,
                "status": g["status"],
                "correct": g["correct"],
                "extracted": g["extracted"],
                "detail": g["detail"],
                **provenance,
            }
        )
    write_jsonl_atomic(args.output, out)
    counts = Counter(r["status"] for r in out)
    print(
        f"graded {len(out)} ({n_now} now): "
        + ", ".join(f"{s}={counts.get(s, 0)}" for s in ("correct", "incorrect", "no_answer", "timeout", "error"))
    )
