"""Metrics on hand-made result sets, against values computed by hand (in the comments)."""

from __future__ import annotations

import math

import pytest

from m2po.eval.metrics import (
    avg_at_k,
    bootstrap_ci,
    maj_at_k,
    pass_at_k,
    pass_at_k_curve,
    summarize_benchmark,
)
from m2po.eval.report import PAPER_AVG, load_sample_records, summaries_from_records, to_csv, to_markdown
from m2po.eval.suites import load_suites


def recs(benchmark: str, table: dict[str, list[int]], extracted: dict[str, list[str | None]] | None = None):
    """Per-sample records from {problem: [1, 0, ...]} (1 = correct)."""
    out = []
    for pid, row in table.items():
        for i, c in enumerate(row):
            ex = extracted[pid][i] if extracted else str(c)
            out.append(
                {
                    "benchmark": benchmark,
                    "problem_id": pid,
                    "sample_idx": i,
                    "correct": bool(c),
                    "status": "correct" if c else "incorrect",
                    "extracted": ex,
                }
            )
    return out


# p1: 2 of 4 right, p2: 4 of 4, p3: 0 of 4
TABLE = {"p1": [1, 1, 0, 0], "p2": [1, 1, 1, 1], "p3": [0, 0, 0, 0]}


def test_avg_at_k_by_hand():
    # (0.5 + 1 + 0) / 3
    assert avg_at_k(list(TABLE.values())) == pytest.approx(0.5)
    # unequal sample counts: problems weigh equally, not samples: (1/2 + 1/1) / 2 = 0.75
    assert avg_at_k([[1, 0], [1]]) == pytest.approx(0.75)
    assert math.isnan(avg_at_k([]))


def test_pass_at_k_by_hand():
    # n=4, c=2: pass@1 = 1/2; pass@2 = 1 - C(2,2)/C(4,2) = 1 - 1/6; pass@3 = 1 (only 2 wrong)
    assert pass_at_k(4, 2, 1) == pytest.approx(0.5)
    assert pass_at_k(4, 2, 2) == pytest.approx(5 / 6)
    assert pass_at_k(4, 2, 3) == 1.0
    assert pass_at_k(4, 0, 4) == 0.0
    assert pass_at_k(16, 1, 1) == pytest.approx(1 / 16)
    curve = pass_at_k_curve(list(TABLE.values()))
    # k=1: (1/2 + 1 + 0)/3; k=2: (5/6 + 1 + 0)/3 = 11/18; k=3, 4: (1 + 1 + 0)/3
    assert curve == pytest.approx({1: 0.5, 2: 11 / 18, 3: 2 / 3, 4: 2 / 3})
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 2, 5)


@pytest.mark.parametrize("n", [1, 5, 16, 40])
def test_pass_at_k_matches_binomial_formula(n: int):
    for c in range(n + 1):
        for k in range(1, n + 1):
            exact = 1 - math.comb(n - c, k) / math.comb(n, k)
            assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)


def test_maj_at_k_by_hand():
    # p1: "3" x2 (right), "4", "5" -> majority "3" right; p2: "7","8","8" with 7 right -> majority "8" wrong;
    # p3: tie "a"/"b" -> first occurrence "b" (wrong), p4: no answers at all -> wrong
    per_problem = [
        [("3", True), ("3", True), ("4", False), ("5", False)],
        [("7", True), ("8", False), ("8", False)],
        [("b", False), ("a", True), (None, False), ("a", True), ("b", False)],
        [(None, False), (None, False)],
    ]
    assert maj_at_k(per_problem) == pytest.approx(1 / 4)
    # whitespace does not split votes
    assert maj_at_k([[("x + 1", True), ("x+1", True), ("2", False)]]) == 1.0


def test_bootstrap_ci():
    assert bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)
    lo, hi = bootstrap_ci([0.0, 1.0], n_boot=4000)
    assert (lo, hi) == (0.0, 1.0)  # resampled means are 0, 1/2 or 1, each end with prob. 1/4
    scores = [i / 20 for i in range(21)]
    a = bootstrap_ci(scores, seed=3)
    assert a == bootstrap_ci(scores, seed=3)  # seeded
    assert a[0] < 0.5 < a[1]
    assert all(math.isnan(x) for x in bootstrap_ci([]))


def test_summary_row_counts_and_first_k():
    r = recs("b", TABLE)
    r[0]["status"] = "timeout"  # p1 sample 0 (was correct): a timeout is never correct
    r[0]["correct"] = False
    r[5]["status"] = "error"
    r[5]["correct"] = False
    r[9]["status"] = "no_answer"
    extra = {"benchmark": "b", "problem_id": "p3", "sample_idx": 4, "correct": True, "status": "correct"}
    row, curve = summarize_benchmark([*r, extra], "b", k=4, update=50)
    # p1 [0,1,0,0] = .25, p2 [1,0,1,1] = .75, p3 [0,0,0,0] (5th sample beyond k ignored) -> 1/3
    assert row["avg_at_k"] == pytest.approx(1 / 3)
    assert (row["n_timeouts"], row["n_errors"], row["n_no_answer"]) == (1, 1, 1)
    assert (row["n_problems"], row["n_samples"], row["k"], row["update"]) == (3, 12, 4, 50)
    assert row["ci_low"] <= row["avg_at_k"] <= row["ci_high"]
    assert curve[1] == pytest.approx(1 / 3)


def test_paper_average_by_hand(tmp_path):
    spec = load_suites()
    paper = spec.paper_average
    assert paper == [
        "aime2024",
        "aime2025",
        "amc23",
        "amc24",
        "math500",
        "minerva_math",
        "gaokao2023en",
        "olympiadbench",
    ]
    # benchmark i gets avg@k = i/8 (i = 1..8): 2 problems, k=4, (i right of 8 samples in total)
    by_bench, ks = {}, {}
    for i, b in enumerate(paper, start=1):
        flat = [1] * i + [0] * (8 - i)
        by_bench[b] = recs(b, {"q1": flat[:4], "q2": flat[4:]})
        ks[b] = 4
    by_bench["gsm8k"] = recs("gsm8k", {"q1": [1, 1, 1, 1]})  # 100%, but not in the paper's Avg
    ks["gsm8k"] = 4
    rows, curves = summaries_from_records(by_bench, ks, spec, update=100)
    avg = rows[-1]
    assert avg["benchmark"] == PAPER_AVG
    assert avg["avg_at_k"] == pytest.approx(sum(i / 8 for i in range(1, 9)) / 8)  # 0.5625, gsm8k excluded
    assert avg["ci_low"] <= avg["avg_at_k"] <= avg["ci_high"]
    assert avg["missing"] == ""
    assert {r["benchmark"]: r["avg_at_k"] for r in rows[:-1]}["amc23"] == pytest.approx(3 / 8)
    # one benchmark missing: no average (the paper's number needs all eight), and it says which
    del by_bench["amc24"]
    rows, _ = summaries_from_records(by_bench, ks, spec)
    assert math.isnan(rows[-1]["avg_at_k"]) and rows[-1]["missing"] == "amc24"
    csv_text = to_csv(rows, ["update", "benchmark", "avg_at_k", "ci_low", "ci_high", "k", "n_problems", "n_timeouts"])
    assert csv_text.splitlines()[0] == "update,benchmark,avg_at_k,ci_low,ci_high,k,n_problems,n_timeouts"
    md = to_markdown(rows, spec)
    assert "| AMC23 | 4 | 37.5 |" in md and "missing: amc24" in md


def test_load_sample_records(tmp_path):
    from m2po.eval.store import write_jsonl_atomic

    write_jsonl_atomic(tmp_path / "samples" / "x.jsonl", recs("x", {"p": [1, 0]}))
    assert [r["correct"] for r in load_sample_records(tmp_path)["x"]] == [True, False]
