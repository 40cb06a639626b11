"""The analysis of the evaluation stage's benchmarks.csv on hand-written files: the Avg per checkpoint, the
best checkpoint by Avg, Table 1's cells with their intervals, and the stage's numbers replacing the in-training
evaluation in the accuracy table (curves), in peak/final (claims) and in the report — all against values
computed here by hand."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from m2po.analysis.aggregate import accuracy, per_run_accuracy
from m2po.analysis.benchmarks import benchmark_table_markdown, build_benchmark_table
from m2po.analysis.runs import load_runs
from m2po.analysis.synthetic import SynthCell, write_synthetic_runs
from m2po.analysis.table1 import LABELS
from m2po.eval.stage import BENCHMARK_COLUMNS

PAPER = ["aime2024", "aime2025", "amc23", "amc24", "math500", "minerva_math", "gaokao2023en", "olympiadbench"]
LABEL = ["AIME24", "AIME25", "AMC23", "AMC24", "MATH500", "Minerva", "Gaokao", "Olympiad"]
MODEL = "Qwen2.5-Math-7B"


def _write(run: Path, rows: list[dict]) -> None:
    with (run / "benchmarks.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=BENCHMARK_COLUMNS, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in BENCHMARK_COLUMNS})


def _row(update: int, bench: str, acc: float, se: float) -> dict:
    return {"update": update, "benchmark": bench, "k": 16 if bench.startswith("aime") else 4, "avg_at_k": acc,
            "se": se, "ci_low": acc - 0.05, "ci_high": acc + 0.05, "n_problems": 30, "grader": "math_verify",
            "grader_version": "0.9.0", "extraction": "boxed", "backend": "vllm", "temperature": 1.0, "top_p": 1.0,
            "max_new_tokens": 2560, "checkpoint": f"checkpoints/global_step_{update // 4}/actor"}  # fmt: skip


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, dict]:
    """Two seeds of M2PO s=16 with training evaluations at 0, 8, 16, 24 and graded checkpoints at 8 and 24:
    per seed and checkpoint, benchmark b has accuracy base + b/100 (b = 0..7) and s.e. 0.01 (b + 1)."""
    runs = tmp_path_factory.mktemp("stage") / "runs"
    cells = {(MODEL, "m2po", 16, None): SynthCell([0.1, 0.2, 0.3, 0.4], seeds=(0, 1))}
    paths = write_synthetic_runs(runs, cells)
    base = {0: {8: 0.30, 24: 0.25}, 1: {8: 0.20, 24: 0.40}}  # seed 0: best at 8; seed 1: best at 24
    for path in paths:
        seed = int(path.name.split("seed")[1])
        _write(
            path, [_row(u, b, base[seed][u] + i / 100, 0.01 * (i + 1)) for u in (8, 24) for i, b in enumerate(PAPER)]
        )
    return runs, base


def test_accuracy_is_the_stage_avg_where_graded(tree):
    runs, base = tree
    t = load_runs(runs, warn=False)
    acc = accuracy(t.evals, t.benchmarks)
    run0 = acc[acc["seed"] == 0].set_index("update")
    assert list(run0.index) == [0, 8, 16, 24]
    assert list(run0["source"]) == ["training", "eval_stage", "training", "eval_stage"]
    mean_offset = np.mean([i / 100 for i in range(8)])  # 0.035
    assert run0.loc[8, "acc"] == pytest.approx(0.30 + mean_offset)
    se = math.sqrt(sum((0.01 * (i + 1)) ** 2 for i in range(8))) / 8  # independent benchmarks
    assert run0.loc[24, "acc_se"] == pytest.approx(se)
    assert run0.loc[24, "acc_lo"] == pytest.approx(0.25 + mean_offset - 1.96 * se)
    assert run0.loc[16, "acc"] == pytest.approx(0.3 - 0.01)  # the training evaluation (seed offset −noise)
    per_run = per_run_accuracy(acc).set_index("seed")
    # peak and final among the graded checkpoints only: seed 0 peaks at 8, seed 1 at 24
    assert per_run.loc[0, "peak_update"] == 8 and per_run.loc[0, "peak"] == pytest.approx(0.335)
    assert per_run.loc[0, "final_update"] == 24 and per_run.loc[0, "final"] == pytest.approx(0.285)
    assert per_run.loc[1, "peak_update"] == 24 and per_run.loc[1, "peak"] == pytest.approx(0.435)
    assert per_run.loc[0, "acc0"] == pytest.approx(0.1 - 0.01)


def test_table1_cells_are_the_best_checkpoints_mean_with_their_interval(tree):
    runs, base = tree
    t = build_benchmark_table(load_runs(runs, warn=False), [("m2po", 16)])
    cell = {r.benchmark: r for r in t.itertuples()}
    assert list(cell) == [*LABEL, "Avg"]
    for i, label in enumerate(LABEL):
        values = np.array([base[0][8] + i / 100, base[1][24] + i / 100])  # each seed's best checkpoint
        seed_se = values.std(ddof=1) / math.sqrt(2)
        se = max(seed_se, 0.01 * (i + 1) / math.sqrt(2))
        assert cell[label].mean == pytest.approx(100 * values.mean())
        assert cell[label].se == pytest.approx(100 * se)
        assert cell[label].lo == pytest.approx(100 * (values.mean() - 1.96 * se))
    avg = np.array([0.335, 0.435])
    assert cell["Avg"].mean == pytest.approx(100 * avg.mean())
    assert cell["Avg"].best_update == "8,24" and cell["Avg"].n == 2
    md = benchmark_table_markdown(t, LABELS).splitlines()
    assert md[0] == "| Model | Method | s | " + " | ".join(LABEL) + " | Avg | Selected update(s) | Seeds |"
    assert md[2].startswith(f"| {MODEL} | M2PO | 16 | 35.0 [")  # AIME24: seed 0 at 8 (30 %), seed 1 at 24 (40 %)
    assert md[3] == "|  | *paper: M2PO* | 256 | 33.3 | 17.5 | 63.8 | 40.6 | 84.0 | 38.1 | 66.4 | 47.1 | 48.8 |  |  |"


def test_a_tiny_runs_kept_checkpoint_is_the_selected_one_even_when_another_grades_higher(tmp_path):
    """Selection by the in-training evaluation (the checkpoint the run kept), measurement by the stage: the
    final checkpoint grading higher does not make it the peak (docs/tiny_protocol.md §8)."""
    cells = {("0.1M", "grpo_notr", 16, None): SynthCell([0.1, 0.5, 0.3, 0.2], seeds=(0,))}
    (run,) = write_synthetic_runs(tmp_path / "runs", cells)
    rows = [_row(8, "tiny_arith", 0.40, 0.02), _row(24, "tiny_arith", 0.45, 0.02)]
    rows[0]["checkpoint"], rows[1]["checkpoint"] = "checkpoints/best_model-u000008.pt", "final_model.pt"
    _write(run, rows)
    tables = load_runs(tmp_path / "runs", warn=False)
    per_run = per_run_accuracy(accuracy(tables.evals, tables.benchmarks)).iloc[0]
    assert (per_run["peak_update"], per_run["peak"]) == (8, pytest.approx(0.40))
    assert (per_run["final_update"], per_run["final"]) == (24, pytest.approx(0.45))
    t = build_benchmark_table(tables, [("grpo_notr", 16)])
    avg = t[t["benchmark"] == "Avg"].iloc[0]
    assert avg["mean"] == pytest.approx(40.0) and avg["best_update"] == "8"
    assert (avg["lo"], avg["hi"]) == (pytest.approx(35.0), pytest.approx(45.0))  # the stage's own interval


def test_table1_cell_counts_only_the_seeds_with_a_value():
    """A seed whose benchmark value is missing (NaN) is left out of its cell: one seed left keeps its own
    evaluation's interval; with more, n and the s.e. are over the seeds that have a value (hand-computed)."""
    from m2po.analysis.benchmarks import _cell_value

    nan = float("nan")
    one = pd.DataFrame({"v": [0.30, nan], "se": [0.02, 0.05], "lo": [0.25, nan], "hi": [0.36, nan]})
    assert _cell_value(one, "v", "se", "lo", "hi") == pytest.approx((30.0, 25.0, 36.0, 2.0, 1))
    two = pd.DataFrame({"v": [0.30, nan, 0.50], "se": [0.02, 0.9, 0.04], "lo": [0, 0, 0], "hi": [1, 1, 1]})
    se = max(np.std([0.30, 0.50], ddof=1) / math.sqrt(2), (0.02 + 0.04) / 2 / math.sqrt(2))  # 0.1 vs 0.021
    assert _cell_value(two, "v", "se", "lo", "hi") == pytest.approx((40.0, 100 * (0.4 - 1.96 * se),
                                                                     100 * (0.4 + 1.96 * se), 100 * se, 2))  # fmt: skip
