"""Benchmark contamination: which benchmark questions also appear in a training set.

Two questions overlap when their normalised texts are equal (:func:`normalise_question_text`:
NFKC, lowercase, no ``$``/braces/math delimiters/LaTeX spacing and sizing commands, no
whitespace). Exact equality of the whole normalised question keeps false positives near zero;
paraphrases and partial overlaps are not caught (docs/data.md says so).

The tables are computed over what is in OUT (every ``manifest.json``), so they always describe
the files a run will read, whichever ``--datasets`` the last build named: each training split
against every benchmark of the same ``ability`` (and a generated dataset's own held-out split).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from ..fileio import atomic_write_text
from .normalize import normalise_question_text

__all__ = ["COLUMNS", "contamination_rows", "find_overlap", "load_manifests", "markdown_table", "write_contamination"]

COLUMNS = ("train_dataset", "benchmark", "n_benchmark", "n_overlap", "overlap_ids", "train_is_fallback")


def load_manifests(out: Path) -> list[dict[str, Any]]:
    """Every dataset manifest in OUT: training sets first, then by name."""
    found = []
    for f in sorted(out.glob("*/manifest.json")):
        try:
            found.append(json.loads(f.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return sorted(found, key=lambda m: (m.get("role") != "train", m.get("dataset", "")))


def find_overlap(train_questions: Iterable[str], benchmark: Iterable[tuple[str, str]]) -> list[str]:
    """Ids of the ``(id, question)`` benchmark items whose normalised text is in the training set."""
    keys = {normalise_question_text(q) for q in train_questions}
    return [pid for pid, q in benchmark if normalise_question_text(q) in keys]


def _questions(path: Path) -> list[tuple[str, str]]:
    table = pq.read_table(path, columns=["extra_info"]).column("extra_info").to_pylist()
    return [(e["id"], e["question"]) for e in table]


def contamination_rows(out: Path) -> list[dict[str, Any]]:
    """One row per (training split, benchmark) pair present in OUT."""
    manifests = load_manifests(out)
    rows = []
    for m in manifests:
        if m.get("role") != "train" or "train" not in m.get("splits", {}):
            continue
        train_items = _questions(out / m["dataset"] / "train.parquet")
        keys = {normalise_question_text(q) for _, q in train_items}
        folder = out / m["dataset"]
        targets = [(f"{m['dataset']}/{s}", folder / i["file"]) for s, i in m["splits"].items() if s != "train"]
        for b in manifests:
            if b.get("role") == "eval" and b.get("ability") == m.get("ability"):
                for info in b["splits"].values():
                    targets.append((b["dataset"], out / b["dataset"] / info["file"]))
        for bench, path in targets:
            items = _questions(path)
            ids = [pid for pid, q in items if normalise_question_text(q) in keys]
            rows.append(
                {
                    "train_dataset": m["dataset"],
                    "benchmark": bench,
                    "n_benchmark": len(items),
                    "n_overlap": len(ids),
                    "overlap_ids": ";".join(ids),
                    "train_is_fallback": bool(m.get("is_fallback")),
                }
            )
    return rows


def markdown_table(rows: list[dict[str, Any]], max_ids: int = 12) -> str:
    if not rows:
        return "_No training set and benchmark of the same ability in OUT: nothing to compare._\n"
    lines = [
        "| training set | benchmark | n | overlapping | % | ids |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in rows:
        ids = r["overlap_ids"].split(";") if r["overlap_ids"] else []
        more = f", ... (+{len(ids) - max_ids})" if len(ids) > max_ids else ""
        shown = ", ".join(f"`{i}`" for i in ids[:max_ids]) + more
        train = r["train_dataset"] + (" (FALLBACK)" if r["train_is_fallback"] else "")
        pct = 100.0 * r["n_overlap"] / r["n_benchmark"] if r["n_benchmark"] else 0.0
        lines.append(f"| {train} | {r['benchmark']} | {r['n_benchmark']} | {r['n_overlap']} | {pct:.1f} | {shown} |")
    return "\n".join(lines) + "\n"


def write_contamination(out: Path) -> list[dict[str, Any]]:
    """Write OUT/contamination.csv (tidy) and OUT/contamination.md; returns the rows."""
    rows = contamination_rows(out)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "contamination.csv", buf.getvalue())
    md = (
        "# Contamination: benchmark questions found in a training set\n\n"
        "Exact match of normalised question text (docs/data.md, `m2po.data.normalize.normalise_question_text`).\n\n"
        + markdown_table(rows)
    )
    atomic_write_text(out / "contamination.md", md)
    return rows
