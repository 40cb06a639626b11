"""``m2po eval`` end to end with the tiny backend: records, k reuse, and resuming after SIGKILL.

The interrupted-run test kills a real ``m2po eval`` subprocess mid-run and proves from the cache
shards that the rerun regenerates and regrades only what was missing: every grade line written
before the kill is still there, byte for byte, with the first run's id, and every (problem, sample)
is graded exactly once overall.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from slowed_cli import kill_mid_grading

from m2po.cli import main
from m2po.engine.task import ArithmeticTask, generate_problems, to_dataset_rows
from m2po.eval.problems import write_parquet
from m2po.eval.runner import EvalConfig, Evaluation
from m2po.eval.store import read_jsonl

RECORD_FIELDS = {
    "benchmark",
    "problem_id",
    "sample_idx",
    "response",
    "extracted",
    "status",
    "correct",
    "grader",
    "grader_version",
    "timeout_s",
    "model",
}


def make_data(root: Path, n: int, name: str = "tiny_arith") -> Path:
    _, test = generate_problems(ArithmeticTask(seed=1, n_train=0, n_test=n))
    write_parquet(to_dataset_rows(test, "test", name), root / name / "test.parquet")
    return root


def cfg(data: Path, out: Path, **kw) -> EvalConfig:
    base = dict(
        model="tiny:0.1M:0",
        backend="tiny",
        benchmarks=["tiny_arith"],
        data_dir=data,
        out_dir=out,
        k=2,
        max_new_tokens=4,
        extraction="raw",
        workers=2,
        timeout_s=5,
        progress=False,
        n_boot=200,
    )
    base.update(kw)
    return EvalConfig(**base)


def shard(out: Path, kind: str) -> Path:
    (p,) = (out / "cache" / "tiny_arith").glob(f"{kind}-*.jsonl")
    return p


def test_records_summary_and_k_reuse(tmp_path):
    data = make_data(tmp_path / "data", 6)
    out = tmp_path / "out"
    ev = Evaluation(cfg(data, out, update=7))
    rows = ev.run()
    recs = read_jsonl(out / "samples" / "tiny_arith.jsonl")
    assert len(recs) == 12 and RECORD_FIELDS <= set(recs[0])
    assert {r["status"] for r in recs} <= {"correct", "incorrect", "no_answer", "timeout", "error"}
    assert recs[0]["grader"] == "math_verify" and recs[0]["timeout_s"] == 5.0 and recs[0]["grader_version"]
    assert rows[0]["benchmark"] == "tiny_arith" and rows[0]["k"] == 2 and rows[0]["update"] == 7
    header = (out / "summary.csv").read_text().splitlines()[0].split(",")
    assert header[:8] == ["update", "benchmark", "avg_at_k", "ci_low", "ci_high", "k", "n_problems", "n_timeouts"]
    assert {"n_errors", "n_no_answer"} <= set(header)
    assert (out / "summary.md").exists() and (out / "pass_at_k.csv").exists()
    assert ev.counts["tiny_arith"]["generated"] == 12
    # k 2 -> 4 reuses the first two samples of every problem: only 12 new ones are generated
    ev2 = Evaluation(cfg(data, out, k=4))
    ev2.run()
    assert ev2.counts["tiny_arith"] == {
        "cached_generations": 12,
        "cached_grades": 12,
        "generated": 12,
        "graded": 12,
        "graded_by_pool": 12,
    }
    # another grader setting regrades everything but regenerates nothing
    ev3 = Evaluation(cfg(data, out, k=4, timeout_s=6))
    ev3.run()
    assert ev3.counts["tiny_arith"]["generated"] == 0 and ev3.counts["tiny_arith"]["graded"] == 24
    # a changed ground truth invalidates that problem's grades only
    rows_ = to_dataset_rows(generate_problems(ArithmeticTask(seed=1, n_train=0, n_test=6))[1], "test", "tiny_arith")
    rows_[0]["reward_model"]["ground_truth"] = "12345"
    write_parquet(rows_, data / "tiny_arith" / "test.parquet")
    ev4 = Evaluation(cfg(data, out, k=4, timeout_s=6))
    ev4.run()
    assert ev4.counts["tiny_arith"]["generated"] == 0 and ev4.counts["tiny_arith"]["graded"] == 4


def test_known_answers_are_graded_correct(tmp_path, monkeypatch):
    """A backend that answers right (raw) or boxes the answer (boxed) scores 100%."""
    from m2po.eval.backends import tiny

    data = make_data(tmp_path / "data", 4)

    class Oracle:
        name = "tiny"
        model_fingerprint = "oracle"

        def __init__(self, *a, **k):
            pass

        def generate(self, requests, params):
            out = []
            for r in requests:
                a, op, b = re.fullmatch(r"(\d+)([-+*])(\d+)=", r.messages[-1]["content"]).groups()
                out.append([str({"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op])] * r.n)
            return out

    monkeypatch.setattr(tiny, "TinyBackend", Oracle)
    rows = Evaluation(cfg(data, tmp_path / "o", model="tiny:0.1M:5")).run()
    assert rows[0]["avg_at_k"] == 1.0 and rows[0]["ci_low"] == 1.0


@pytest.mark.slow
def test_sigkill_then_resume(tmp_path):
    data = make_data(tmp_path / "data", 24)
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "m2po.cli",
        "eval",
        "--model",
        "tiny:0.1M:1",
        "--backend",
        "tiny",
        "--benchmarks",
        "tiny_arith",
        "--data",
        str(data),
        "--out",
        str(out),
        "--k",
        "4",
        "--max-new-tokens",
        "4",
        "--batch-problems",
        "2",
        "--workers",
        "2",
        "--no-progress",
    ]
    total = 24 * 4
    kill_mid_grading(cmd[3:], out / "cache" / "tiny_arith", n=16, pause=0.4, timeout=120)
    first_grades = read_jsonl(shard(out, "grade"))
    first_gens = read_jsonl(shard(out, "gen"))
    assert 16 <= len(first_grades) < total and len(first_gens) < total
    before = shard(out, "grade").read_bytes()
    cut = before.rfind(b"\n") + 1  # complete lines written before the kill
    (run1,) = {g["run_id"] for g in first_grades}

    assert main(cmd[3:]) == 0  # the same command, resumed in this process (saves a torch import)
    info = json.loads((out / "run.json").read_text())
    counts = info["counts"]["tiny_arith"]
    assert counts["cached_grades"] == len(first_grades)
    assert counts["graded"] == total - len(first_grades)  # nothing finished was regraded
    assert counts["generated"] == total - len(first_gens)  # nothing finished was regenerated
    after = shard(out, "grade").read_bytes()
    assert after[:cut] == before[:cut]  # finished verdicts untouched
    all_grades = read_jsonl(shard(out, "grade"))
    keys = [(g["problem_id"], g["sample_idx"]) for g in all_grades]
    assert len(keys) == len(set(keys)) == total  # each sample graded exactly once
    recs = read_jsonl(out / "samples" / "tiny_arith.jsonl")
    assert sum(r["graded_by_run"] == run1 for r in recs) == len(first_grades)

    # a third run finds everything done: no model load, no grading
    assert main(cmd[3:]) == 0
    counts = json.loads((out / "run.json").read_text())["counts"]["tiny_arith"]
    assert counts["generated"] == 0 and counts["graded"] == 0


def test_grade_command(tmp_path, capsys):
    from m2po.eval import cli_grade

    rows = [
        {"id": "a", "response": "\\boxed{\\frac12}", "answer": "0.5"},
        {"id": "b", "response": "\\boxed{3}", "answer": "4"},
        {"id": "c", "response": "no box", "answer": "4"},
        {"id": "d", "response": "\\boxed{9^{9^{9^{9}}}}", "answer": "1"},
        {"id": "e", "response": "\\boxed{x = 3}", "answer": "3"},
    ]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    outp = tmp_path / "out.jsonl"
    import argparse

    parser = argparse.ArgumentParser()
    cli_grade.add_arguments(parser)
    args = parser.parse_args(
        ["--input", str(inp), "--output", str(outp), "--workers", "2", "--timeout", "2", "--no-progress"]
    )
    assert cli_grade.run(args) == 0
    res = read_jsonl(outp)
    assert [r["id"] for r in res] == list("abcde")  # input order kept
    assert [r["status"] for r in res] == ["correct", "incorrect", "no_answer", "timeout", "correct"]
    assert [r["correct"] for r in res] == [True, False, False, False, True]
    assert res[0]["grader_version"] and res[0]["timeout_s"] == 2.0
    assert not (tmp_path / "out.jsonl.partial").exists()
    assert "timeout=1" in capsys.readouterr().out
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"response": "x"}\n')
    assert main(["grade", "--input", str(bad), "--output", str(outp)]) == 2
