"""The evaluation stage (m2po eval-run) on tiny runs: the checkpoints the run saved (its best in-training
evaluation and its final model), benchmarks.csv against numbers recomputed from the graded samples, the
known verl schedule, and a SIGKILLed job that, run again, grades only the samples still missing."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from slowed_cli import kill_mid_grading

from m2po.cli import main
from m2po.config import load_config
from m2po.engine.loop import Trainer
from m2po.engine.rundir import BestCheckpoint, CsvLog
from m2po.engine.task import ArithmeticTask, generate_problems, to_dataset_rows
from m2po.engine.train_config import TrainConfig
from m2po.eval.backends import tiny as tiny_backend
from m2po.eval.problems import write_parquet
from m2po.eval.stage import BENCHMARK_COLUMNS, every_nth, find_checkpoints, planned_verl_steps
from m2po.eval.store import read_jsonl

RUN_ID = "0.1M-m2po-s4-seed0"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, Path]:
    """A short tiny run without warm start (a random start learns little, but saves checkpoints like any run),
    and its held-out set as the data stage writes it (the run's own task config)."""
    root = tmp_path_factory.mktemp("stage")
    overrides = [
        "warm_start.enabled=false",
        "algo.staleness=4",
        "rollout.prompts_per_batch=8",
        "rollout.group_size=4",
        "rollout.max_new_tokens=4",
        "task.n_test=60",
        "run.total_updates=12",
        "run.eval_every=4",
        "run.checkpoint_every=4",
        "run.eval_problems=60",
        "run.progress=false",
    ]
    cfg = load_config(TrainConfig, overrides=overrides)
    Trainer(cfg, root / "runs" / RUN_ID).train()
    _, test = generate_problems(ArithmeticTask(seed=0, n_train=cfg.task.n_train, n_test=60))
    write_parquet(to_dataset_rows(test, "test"), root / "data" / "tiny_arith" / "test.parquet")
    return root / "runs" / RUN_ID, root / "data"


def _evals(run: Path) -> list[dict]:
    with (run / "evals.csv").open() as f:
        return list(csv.DictReader(f))


def test_run_keeps_its_best_and_final_checkpoints(tiny_run):
    run, _ = tiny_run
    evals = [r for r in _evals(run) if int(r["update"]) > 0]
    best = max(evals, key=lambda r: float(r["sampled_acc"]))  # first maximum, update 0 excluded
    assert [p.name for p in (run / "checkpoints").glob("best_model-u*.pt")] == [
        f"best_model-u{int(best['update']):06d}.pt"
    ]
    ckpts = find_checkpoints(run)
    assert [c.update for c in ckpts] == sorted({int(best["update"]), 12})
    assert ckpts[-1].path == run / "final_model.pt" and {c.kind for c in ckpts} == {"tiny"}


def test_best_checkpoint_follows_the_first_maximum_and_survives_a_resume(tmp_path):
    log = CsvLog(tmp_path / "evals.csv", ["update", "sampled_acc"])
    folder = tmp_path / "checkpoints"
    best = BestCheckpoint(folder, log)
    saved = {}
    for update, acc in [(0, 0.9), (4, 0.3), (8, 0.6), (12, 0.6), (16, 0.4)]:
        log.append({"update": update, "sampled_acc": acc})
        weights = {"w": torch.full((2,), float(update))}
        if best.offer(update, acc, lambda w=weights: w):
            saved[update] = weights
    assert sorted(saved) == [4, 8]  # update 0 (the untrained start) never counts; 0.6 at 12 ties the best
    (path,) = folder.glob("best_model-u*.pt")
    assert path.name == "best_model-u000008.pt" and torch.equal(torch.load(path)["w"], saved[8]["w"])
    resumed = BestCheckpoint(folder, CsvLog(tmp_path / "evals.csv", ["update", "sampled_acc"]))
    log2 = resumed.evals
    log2.append({"update": 20, "sampled_acc": 0.55})
    assert not resumed.offer(20, 0.55, dict)  # the best so far is read back from evals.csv


def test_planned_verl_steps_is_the_known_schedule():
    assert planned_verl_steps(0) == list(range(50, 1001, 50))  # 1000 steps, save_freq 50
    # s = 256: 64 prefill steps on top, so 1064 in all: 50, ..., 1050 and the last step
    assert planned_verl_steps(256) == [*range(50, 1051, 50), 1064]
    assert planned_verl_steps(256, every=2) == [*range(100, 1001, 100), 1064]
    assert planned_verl_steps(128, every=5) == [250, 500, 750, 1000, 1032]
    assert every_nth([1, 2, 3], 1) == [1, 2, 3] and every_nth([1, 2, 3], 5) == [3] and every_nth([], 2) == []


def _stage_cmd(run: Path, data: Path, *extra: str) -> list[str]:
    return [
        "eval-run", "--run", str(run), "--backend", "tiny", "--benchmarks", "tiny_arith", "--data", str(data),
        "--k", "4", "--workers", "1", "--no-progress", *extra,
    ]  # fmt: skip


def _rows(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def _planted_generate(self, requests, params):
    """A backend whose accuracy is known by hand: for ``a?b=`` sample i is right iff i < a % 5."""
    out = []
    for req in requests:
        a, op, b = re.fullmatch(r"(\d+)([-+*])(\d+)=", req.messages[-1]["content"]).groups()
        answer = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
        out.append([str(answer) if i < int(a) % 5 else str(answer + 1) for i in range(req.n)])
    return out


def _planted_accuracy(data: Path) -> tuple[float, float]:
    """The hand oracle of ``_planted_generate``, from the problems alone: problem a?b= scores min(a % 5, 4) / 4
    (avg@4) and passes iff a % 5 > 0."""
    firsts = [int(re.match(r"\d+", q).group()) for q in pd.read_parquet(data / "tiny_arith" / "test.parquet")[
        "extra_info"].map(lambda e: e["question"])]  # fmt: skip
    want_avg, want_pass = np.mean([min(a % 5, 4) / 4 for a in firsts]), np.mean([a % 5 > 0 for a in firsts])
    assert 0 < want_avg < 1
    return float(want_avg), float(want_pass)


def test_benchmarks_csv_matches_the_graded_samples(tiny_run, tmp_path, monkeypatch):
    run, data = tiny_run
    monkeypatch.setattr(tiny_backend.TinyBackend, "generate", _planted_generate)
    assert main(_stage_cmd(run, data, "--memo", str(tmp_path / "verdicts"))) == 0
    want_avg, want_pass = _planted_accuracy(data)
    rows = _rows(run / "benchmarks.csv")
    ckpts = find_checkpoints(run)
    assert list(rows[0]) == BENCHMARK_COLUMNS
    assert [int(r["update"]) for r in rows] == [c.update for c in ckpts]
    for row, c in zip(rows, ckpts, strict=True):
        samples = read_jsonl(run / "eval" / c.name / "samples" / "tiny_arith.jsonl")
        assert {s["update"] for s in samples} == {c.update} and len(samples) == 60 * 4
        by_problem: dict[str, list[bool]] = {}
        for s in samples:
            by_problem.setdefault(s["problem_id"], []).append(bool(s["correct"]))
            if s["extracted"] is not None and s["extracted"].isdigit():  # an integer answer: numeric equality
                assert s["correct"] == (int(s["extracted"]) == int(s["ground_truth"])), s
        scores = np.array([np.mean(v) for v in by_problem.values()])
        assert float(row["avg_at_k"]) == pytest.approx(scores.mean(), abs=1e-6)
        assert float(row["se"]) == pytest.approx(scores.std(ddof=1) / math.sqrt(60), abs=1e-6)
        assert float(row["pass_at_k"]) == pytest.approx(np.mean([any(v) for v in by_problem.values()]), abs=1e-6)
        assert float(row["avg_at_k"]) == pytest.approx(want_avg, abs=1e-6)
        assert float(row["pass_at_k"]) == pytest.approx(want_pass, abs=1e-6)
        assert float(row["ci_low"]) <= float(row["avg_at_k"]) <= float(row["ci_high"])
        assert int(row["n_problems"]) == 60 and int(row["k"]) == 4 and int(row["n_samples"]) == 240
        assert int(row["n_no_answer"]) == sum(s["status"] == "no_answer" for s in samples)
        assert row["grader"] == "math_verify" and row["grader_version"] and row["extraction"] == "tiny"
        assert row["backend"] == "tiny" and row["max_new_tokens"] == "4"  # the run's own response length
        assert row["checkpoint"] == str(c.path.relative_to(run))
    # run again: every checkpoint is finished with these settings, so nothing is loaded, generated or graded
    stamps = {c.name: (run / "eval" / c.name / "run.json").stat().st_mtime_ns for c in ckpts}
    assert main(_stage_cmd(run, data, "--memo", str(tmp_path / "verdicts"))) == 0
    assert stamps == {c.name: (run / "eval" / c.name / "run.json").stat().st_mtime_ns for c in ckpts}
    assert _rows(run / "benchmarks.csv") == rows
    # the evaluation of a best checkpoint the run has since replaced is left out of benchmarks.csv
    stale = run / "eval" / "u000002"
    shutil.copytree(run / "eval" / ckpts[-1].name, stale)
    text = (stale / "benchmarks.csv").read_text()
    assert "\n12," in text  # the copied rows are the final checkpoint's (update 12)
    (stale / "benchmarks.csv").write_text(text.replace("\n12,", "\n2,"))
    assert main(["eval-run", "--run", str(run), "--collect"]) == 0
    assert _rows(run / "benchmarks.csv") == rows
    shutil.rmtree(stale)


def _linked_copy(run: Path, dest: Path) -> Path:
    """A copy of a run without its evaluations (its files linked)."""
    dest.mkdir(parents=True)
    for name in ("config.yaml", "evals.csv", "updates.csv", "final_model.pt", "checkpoints"):
        os.symlink(run / name, dest / name)
    return dest


def test_several_runs_in_one_process_each_get_their_own_settings_and_benchmarks(
    tiny_run, tmp_path, monkeypatch, capsys
):
    """The tiny pipeline's job per training shard: ``--run A --run B`` evaluates both runs in one process, each
    with what is its own when no option says otherwise (its response length from its config.yaml, its verdict
    memo under its own folder), into its own benchmarks.csv with the hand-known accuracy."""
    run, data = tiny_run
    monkeypatch.setattr(tiny_backend.TinyBackend, "generate", _planted_generate)
    first, second = _linked_copy(run, tmp_path / "a" / RUN_ID), _linked_copy(run, tmp_path / "b" / RUN_ID)
    (second / "config.yaml").unlink()  # the second run says it was trained with 6-token responses, not 4
    text = (run / "config.yaml").read_text()
    assert "  max_new_tokens: 4\n" in text
    (second / "config.yaml").write_text(text.replace("  max_new_tokens: 4\n", "  max_new_tokens: 6\n"))
    cmd = _stage_cmd(first, data) + ["--run", str(second)]  # the flag repeated: both runs, in that order
    assert main(cmd) == 0
    want_avg, _ = _planted_accuracy(data)
    names = [c.name for c in find_checkpoints(run)]
    for r, length in ((first, "4"), (second, "6")):
        rows = _rows(r / "benchmarks.csv")
        assert [int(x["update"]) for x in rows] == [c.update for c in find_checkpoints(run)]
        assert all(float(x["avg_at_k"]) == pytest.approx(want_avg, abs=1e-6) for x in rows)
        assert {x["max_new_tokens"] for x in rows} == {length}
        assert {x["checkpoint"] for x in rows} == {str(c.path.relative_to(run)) for c in find_checkpoints(run)}
        assert sorted(p.name for p in (r / "eval").iterdir()) == sorted([*names, "verdicts"])  # its own memo
    capsys.readouterr()
    assert main(["eval-run", "--run", str(first), str(second), "--list"]) == 0
    listed = [line.split("\t")[:2] for line in capsys.readouterr().out.splitlines()]
    assert listed == [[str(r), n] for r in (first, second) for n in names]  # each checkpoint under its run
    assert main(["eval-run", "--run", str(first), str(second), "--step", "50", "--backend", "tiny"]) == 2
    (first / "benchmarks.csv").unlink()
    assert main(["eval-run", "--run", str(first), str(tmp_path / "missing"), "--collect"]) == 2
    assert not (first / "benchmarks.csv").exists()  # every run is checked before the first is touched


def test_benchmarks_csv_interval_is_the_evaluations_own_under_another_seed(tiny_run, tmp_path, monkeypatch):
    """``--seed 3``: the bootstrap interval in benchmarks.csv is the one summary.csv of the same evaluation
    reports (both resample with the evaluation's seed), it contains the hand-known accuracy, and it is not
    the interval the default seed draws from the same (planted) samples."""
    run, data = tiny_run
    monkeypatch.setattr(tiny_backend.TinyBackend, "generate", _planted_generate)
    fresh, default = _linked_copy(run, tmp_path / "s3" / RUN_ID), _linked_copy(run, tmp_path / "s0" / RUN_ID)
    assert main(_stage_cmd(fresh, data, "--memo", str(tmp_path / "verdicts"), "--seed", "3")) == 0
    assert main(_stage_cmd(default, data, "--memo", str(tmp_path / "verdicts"))) == 0
    want_avg, _ = _planted_accuracy(data)
    for row, row0 in zip(_rows(fresh / "benchmarks.csv"), _rows(default / "benchmarks.csv"), strict=True):
        name = f"u{int(row['update']):06d}"
        (summary,) = [r for r in _rows(fresh / "eval" / name / "summary.csv") if r["benchmark"] == "tiny_arith"]
        assert (row["ci_low"], row["ci_high"]) == (summary["ci_low"], summary["ci_high"])
        assert float(row["ci_low"]) < want_avg < float(row["ci_high"])
        assert row["avg_at_k"] == row0["avg_at_k"] and (row["ci_low"], row["ci_high"]) != (
            row0["ci_low"],
            row0["ci_high"],
        )


@pytest.mark.slow
def test_killed_eval_job_grades_only_the_missing_samples(tiny_run, tmp_path):
    run, data = tiny_run
    fresh = _linked_copy(run, tmp_path / RUN_ID)
    ckpts = find_checkpoints(fresh)
    memo = tmp_path / "verdicts"
    cmd = [sys.executable, "-m", "m2po.cli", *_stage_cmd(fresh, data, "--memo", str(memo), "--batch-problems", "4")]
    last = fresh / "eval" / ckpts[-1].name / "cache" / "tiny_arith"
    kill_mid_grading(cmd[3:], last, n=40, pause=0.3, timeout=180)  # inside the last checkpoint's evaluation
    assert not (fresh / "benchmarks.csv").exists()
    (shard,) = last.glob("grade-*.jsonl")
    before = read_jsonl(shard)
    total = 60 * 4
    assert 40 <= len(before) < total
    finished = fresh / "eval" / ckpts[0].name / "run.json"
    assert len(ckpts) == 2  # the fixture's run keeps its best (u4) and its final checkpoint
    finished_at = finished.stat().st_mtime_ns

    assert main(cmd[3:]) == 0  # the same job again
    counts = json.loads((fresh / "eval" / ckpts[-1].name / "stage.json").read_text())["counts"]["tiny_arith"]
    assert counts["cached_grades"] == len(before)
    assert counts["graded"] == total - len(before)  # only the missing samples were graded
    keys = [(g["problem_id"], g["sample_idx"]) for g in read_jsonl(shard)]
    assert len(keys) == len(set(keys)) == total  # every sample graded exactly once over both jobs
    assert finished.stat().st_mtime_ns == finished_at  # finished before the kill: not evaluated again
    assert [int(r["update"]) for r in _rows(fresh / "benchmarks.csv")] == [c.update for c in ckpts]
