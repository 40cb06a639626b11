"""Metrics of the paper's protocol: avg@k with a bootstrap CI, unbiased pass@k, maj@k, the 8-benchmark Avg.

Conventions (why they are what they are):
- avg@k = mean over problems of the per-problem mean over its first k samples — the paper's
  "pass@1 averaged over k samples" (paper §6 and App. B). Every benchmark weighs its problems equally.
- The CI resamples *problems* (not samples): the k samples of a problem are correlated, so
  resampling samples would understate the uncertainty. Percentile bootstrap, seeded.
- pass@k uses the unbiased estimator of Chen et al. 2021 (1 - C(n-c, k) / C(n, k)), computed as a
  product so large n does not overflow.
- A ``timeout``/``error``/``no_answer`` sample counts as not correct in every metric — and is
  counted in its own column, so a harness problem (timeouts) is never mistaken for a model one.
- The paper's "Avg" is the unweighted mean of the eight benchmarks' avg@k; it is NaN (and the
  missing ones are named) unless all eight are present: a partial average is not the paper's number.
- All accuracies are fractions in [0, 1]; the Markdown table shows percent like the paper.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

SUMMARY_COLUMNS = [
    "update",
    "benchmark",
    "avg_at_k",
    "ci_low",
    "ci_high",
    "k",
    "n_problems",
    "n_timeouts",
    "n_errors",
    "n_no_answer",
    "n_samples",
    "maj_at_k",
]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with ``n`` samples of which ``c`` are correct (k <= n)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


def avg_at_k(per_problem: Sequence[Sequence[bool]]) -> float:
    """Mean over problems of the mean over that problem's samples."""
    if not per_problem:
        return math.nan
    return float(np.mean([np.mean(np.asarray(s, dtype=np.float64)) for s in per_problem]))


def bootstrap_ci(
    per_problem_scores: Sequence[float], n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of per-problem scores, resampling problems with replacement."""
    x = np.asarray(per_problem_scores, dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    a = (1.0 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def pass_at_k_curve(per_problem: Sequence[Sequence[bool]]) -> dict[int, float]:
    """pass@k for every k up to the smallest sample count, each averaged over problems."""
    if not per_problem:
        return {}
    n_min = min(len(s) for s in per_problem)
    return {
        k: float(np.mean([pass_at_k(len(s), int(sum(bool(v) for v in s)), k) for s in per_problem]))
        for k in range(1, n_min + 1)
    }


def _answer_key(extracted: str | None) -> str | None:
    return None if extracted is None else "".join(extracted.split())


def maj_at_k(per_problem: Sequence[Sequence[tuple[str | None, bool]]]) -> float:
    """Majority-vote accuracy: per problem, the most frequent extracted answer (whitespace-insensitive
    string match; ties broken by first occurrence; samples without an answer do not vote) is right
    when a sample giving it was graded correct."""
    if not per_problem:
        return math.nan
    hits = []
    for samples in per_problem:
        keys = [(_answer_key(e), ok) for e, ok in samples if e is not None]
        if not keys:
            hits.append(0.0)
            continue
        counts = Counter(k for k, _ in keys)
        best = max(counts.values())
        winner = next(k for k, _ in keys if counts[k] == best)
        hits.append(1.0 if any(ok for k, ok in keys if k == winner) else 0.0)
    return float(np.mean(hits))


def group_by_problem(records: Iterable[dict[str, Any]], k: int | None = None) -> dict[str, list[dict[str, Any]]]:
    """Records of one benchmark grouped by problem, sorted by sample_idx, first ``k`` kept."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[str(r["problem_id"])].append(r)
    out = {}
    for pid, rs in groups.items():
        rs = sorted(rs, key=lambda r: int(r["sample_idx"]))
        out[pid] = rs[:k] if k is not None else rs
    return out


def summarize_benchmark(
    records: Iterable[dict[str, Any]],
    benchmark: str,
    k: int,
    update: int | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[int, float]]:
    """``(summary row, pass@k curve)`` of one benchmark's per-sample records."""
    groups = group_by_problem(records, k)
    flat = [r for rs in groups.values() for r in rs]
    per_problem = [[bool(r["correct"]) for r in rs] for rs in groups.values()]
    scores = [float(np.mean(s)) for s in per_problem]
    lo, hi = bootstrap_ci(scores, n_boot=n_boot, seed=seed)
    status = Counter(str(r.get("status")) for r in flat)
    row = {
        "update": update,
        "benchmark": benchmark,
        "avg_at_k": avg_at_k(per_problem),
        "ci_low": lo,
        "ci_high": hi,
        "k": k,
        "n_problems": len(groups),
        "n_timeouts": status.get("timeout", 0),
        "n_errors": status.get("error", 0),
        "n_no_answer": status.get("no_answer", 0),
        "n_samples": len(flat),
        "maj_at_k": maj_at_k([[(r.get("extracted"), bool(r["correct"])) for r in rs] for rs in groups.values()]),
    }
    return row, pass_at_k_curve(per_problem)


def paper_average(avg_by_benchmark: dict[str, float], members: Sequence[str]) -> tuple[float, list[str]]:
    """``(unweighted mean of avg@k over ``members``, missing members)``; NaN unless all are present."""
    missing = [m for m in members if m not in avg_by_benchmark or not math.isfinite(avg_by_benchmark[m])]
    if missing or not members:
        return math.nan, missing
    return float(np.mean([avg_by_benchmark[m] for m in members])), []
