"""Summary tables of an evaluation: tidy CSV (contract 3/4) and a Markdown table like the paper's Table 1.

Kept apart from the runner so the report stage (and the figure scripts) can rebuild the tables from
the per-sample records alone: ``summaries_from_records`` needs nothing but ``samples/*.jsonl``.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import atomic_write_text
from .metrics import SUMMARY_COLUMNS, group_by_problem, paper_average, summarize_benchmark
from .store import read_jsonl
from .suites import SuiteSpec

PAPER_AVG = "paper_avg8"


def paper_average_row(
    records_by_benchmark: dict[str, list[dict[str, Any]]],
    rows: Sequence[dict[str, Any]],
    members: Sequence[str],
    update: int | None,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """The paper's "Avg" as a summary row; its CI bootstraps each benchmark's problems independently
    and averages the eight resampled means (the Avg's own sampling distribution)."""
    by_name = {r["benchmark"]: r for r in rows}
    avg, missing = paper_average({b: float(r["avg_at_k"]) for b, r in by_name.items()}, members)
    lo = hi = math.nan
    if not missing:
        rng_means = []
        for i, b in enumerate(members):
            groups = group_by_problem(records_by_benchmark[b], int(by_name[b]["k"]))
            scores = np.array([np.mean([bool(r["correct"]) for r in rs]) for rs in groups.values()])
            rng = np.random.default_rng(seed + i)
            rng_means.append(scores[rng.integers(0, scores.size, size=(n_boot, scores.size))].mean(axis=1))
        dist = np.mean(rng_means, axis=0)
        lo, hi = float(np.quantile(dist, 0.025)), float(np.quantile(dist, 0.975))
    present = [by_name[b] for b in members if b in by_name]
    return {
        "update": update,
        "benchmark": PAPER_AVG,
        "avg_at_k": avg,
        "ci_low": lo,
        "ci_high": hi,
        "k": None,
        "n_problems": sum(int(r["n_problems"]) for r in present),
        "n_timeouts": sum(int(r["n_timeouts"]) for r in present),
        "n_errors": sum(int(r["n_errors"]) for r in present),
        "n_no_answer": sum(int(r["n_no_answer"]) for r in present),
        "n_samples": sum(int(r["n_samples"]) for r in present),
        "maj_at_k": math.nan,
        "missing": ",".join(missing),
    }


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_fmt(r.get(c)) for c in columns])
    return buf.getvalue()


def to_markdown(rows: Sequence[dict[str, Any]], spec: SuiteSpec | None = None, title: str = "") -> str:
    """avg@k in percent with its 95% CI, plus the counts a reader needs to trust it."""

    def pct(x: Any) -> str:
        return f"{100 * x:.1f}" if isinstance(x, float) and math.isfinite(x) else "–"

    lines = [f"### {title}", ""] if title else []
    lines += [
        "| benchmark | k | avg@k (%) | 95% CI | maj@k (%) | problems | no answer | timeouts | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = r["benchmark"]
        label = spec.resolve(name).label if spec is not None and name != PAPER_AVG else name
        lo = r.get("ci_low")
        ci = f"[{pct(lo)}, {pct(r['ci_high'])}]" if isinstance(lo, float) and math.isfinite(lo) else "–"
        extra = f" (missing: {r['missing']})" if r.get("missing") else ""
        lines.append(
            f"| {label}{extra} | {_fmt(r.get('k'))} | {pct(r['avg_at_k'])} | {ci} | {pct(r.get('maj_at_k'))} "
            f"| {r['n_problems']} | {r['n_no_answer']} | {r['n_timeouts']} | {r['n_errors']} |"
        )
    return "\n".join(lines) + "\n"


def write_tables(
    out_dir: Path,
    rows: Sequence[dict[str, Any]],
    curves: dict[str, dict[int, float]],
    spec: SuiteSpec | None,
    title: str = "",
) -> None:
    """``summary.csv``, ``summary.md`` and ``pass_at_k.csv`` (tidy: update, benchmark, k, pass_at_k)."""
    atomic_write_text(out_dir / "summary.csv", to_csv(rows, [*SUMMARY_COLUMNS, "missing"]))
    atomic_write_text(out_dir / "summary.md", to_markdown(rows, spec, title))
    update = rows[0]["update"] if rows else None
    pk = [{"update": update, "benchmark": b, "k": k, "pass_at_k": v} for b, c in curves.items() for k, v in c.items()]
    atomic_write_text(out_dir / "pass_at_k.csv", to_csv(pk, ["update", "benchmark", "k", "pass_at_k"]))


def summaries_from_records(
    records_by_benchmark: dict[str, list[dict[str, Any]]],
    k_by_benchmark: dict[str, int],
    spec: SuiteSpec,
    update: int | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[list[dict[str, Any]], dict[str, dict[int, float]]]:
    """Per-benchmark rows (in the given order), then the paper-Avg row; and the pass@k curves."""
    rows, curves = [], {}
    for b, recs in records_by_benchmark.items():
        row, curve = summarize_benchmark(recs, b, k_by_benchmark[b], update=update, n_boot=n_boot, seed=seed)
        rows.append(row)
        curves[b] = curve
    rows.append(paper_average_row(records_by_benchmark, rows, spec.paper_average, update, n_boot, seed))
    return rows, curves


def load_sample_records(out_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """``samples/<benchmark>.jsonl`` of a finished evaluation, by benchmark."""
    return {p.stem: read_jsonl(p) for p in sorted((out_dir / "samples").glob("*.jsonl"))}
