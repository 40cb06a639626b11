"""``m2po grade``: grade a JSONL file of responses with math-verify in isolated, time-bounded workers.

Each input line needs ``response`` and ``answer`` (the ground truth); every other field is kept.
Each output line adds ``status`` (correct / incorrect / no_answer / timeout / error), ``correct``,
``extracted`` and the grader's provenance. Resumable: verdicts go to ``<output>.partial`` as they
arrive, a rerun skips the lines already there, and the output is written atomically at the end in
input order.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True, type=Path, help="JSONL with `response` and `answer` per line")
    p.add_argument("--output", required=True, type=Path, help="JSONL written with `status` and `correct` added")
    p.add_argument("--workers", type=int, default=0, help="worker processes (default: one per core)")
    p.add_argument("--timeout", type=float, default=10.0, help="hard wall-clock timeout per sample, seconds")
    p.add_argument(
        "--extraction",
        choices=("boxed", "math_verify", "raw"),
        default="boxed",
        help="last \\boxed{} (default), math-verify's own extraction, or the raw response",
    )
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .grader import GRADER_NAME, grader_version
    from .pool import GradeTask, GradingPool, default_workers
    from .store import JsonlShard, read_jsonl, write_jsonl_atomic

    rows = read_jsonl(args.input)
    bad = [i for i, r in enumerate(rows) if "response" not in r or "answer" not in r]
    if bad:
        print(f"{args.input}: lines {bad[:10]} lack `response` or `answer`", file=sys.stderr)
        return 2
    provenance = {
        "grader": GRADER_NAME,
        "grader_version": grader_version(),
        "extraction": args.extraction,
        "timeout_s": float(args.timeout),
    }
    partial = args.output.with_name(args.output.name + ".partial")
    done = {int(r["line"]): r for r in read_jsonl(partial) if r.get("provenance") == provenance}
    tasks = [GradeTask(i, str(r["response"]), str(r["answer"])) for i, r in enumerate(rows) if i not in done]
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
    partial.unlink(missing_ok=True)
    counts = Counter(r["status"] for r in out)
    print(
        f"graded {len(out)} ({len(tasks)} now): "
        + ", ".join(f"{s}={counts.get(s, 0)}" for s in ("correct", "incorrect", "no_answer", "timeout", "error"))
    )
    return 0
