"""The paper's evaluation path on a CPU, except vLLM: a checkpoint of verl's own trainer loop (the CPU mode's
FSDP layout, global_step_N/actor) -> verl's model merger -> the HF backend on two benchmarks built by the data
stage from the real files -> benchmarks.csv -> a Table 1 row beside the paper's.

It evaluates the run that test_verl_cpu_mode.py's fit -> kill -> resume leaves (the ``verl_smoke_run``
fixture); run alone, it makes a smoke run first (``launch --cpu --smoke``, about a minute)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from m2po.cli import main

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("M2PO_DATA_DIR") or ROOT.parent / "shared" / "data")
RUN_ID = "Qwen2.5-Math-7B-m2po-s4-seed0"  # the smoke run trains m2po at staleness 4 (a tiny Qwen2 stands in)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DATA_DIR.is_dir(), reason=f"offline data folder {DATA_DIR} not found (M2PO_DATA_DIR)"),
]


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def _steps(run: Path) -> list[int]:
    folder = run / "checkpoints"
    steps = [d.name.removeprefix("global_step_") for d in folder.glob("global_step_*") if (d / "actor").is_dir()]
    return sorted(int(s) for s in steps)


@pytest.fixture(scope="module")
def verl_run(verl_smoke_run, tmp_path_factory) -> Path:
    """``runs/<RUN_ID>`` -> a finished CPU-mode run with verl checkpoints (the shared one when it exists)."""
    run = verl_smoke_run
    if not (run / "updates.csv").exists() or not _steps(run):
        from m2po.verl_plugin.cpu_platform import PLATFORM_ENV, loopback_interface

        run = tmp_path_factory.mktemp("own_smoke") / "run"
        env = {**os.environ, **PLATFORM_ENV, "GLOO_SOCKET_IFNAME": loopback_interface()}
        cmd = [sys.executable, "-m", "m2po.verl_plugin.launch", "--cpu", "--smoke", "--out", str(run)]
        res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    runs = tmp_path_factory.mktemp("results") / "runs"
    runs.mkdir()
    os.symlink(run, runs / RUN_ID)
    return runs / RUN_ID


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """MATH500 and AMC23 as the data stage writes them (the paper's prompt, verl's schema), from the real files."""
    from m2po.data.build import BuildOptions, build
    from m2po.data.spec import load_sources

    out = tmp_path_factory.mktemp("data")
    opts = BuildOptions(out=out, datasets=("math500", "amc23"), offline_dir=DATA_DIR, check_parse=False, progress=False)
    build(load_sources(), opts)
    return out


def test_verl_checkpoint_merged_evaluated_and_in_table1(verl_run, data):
    from m2po.analysis.benchmarks import benchmark_table_markdown, build_benchmark_table
    from m2po.analysis.runs import load_runs
    from m2po.analysis.table1 import LABELS

    step = _steps(verl_run)[-1]
    updates = int(_csv(verl_run / "updates.csv")[-1]["update"]) + 1  # optimizer updates made by the last step
    cmd = [
        "eval-run", "--run", str(verl_run), "--step", str(step), "--backend", "hf", "--benchmarks", "math500",
        "amc23", "--data", str(data), "--limit", "3", "--k", "2", "--max-new-tokens", "12", "--workers", "1",
        "--batch-size", "6", "--no-progress",
    ]  # fmt: skip
    assert main(cmd) == 0
    out = verl_run / "eval" / f"global_step_{step}"
    rows = _csv(out / "benchmarks.csv")
    assert [r["benchmark"] for r in rows] == ["math500", "amc23"]
    for r in rows:
        assert int(r["update"]) == updates and int(r["n_problems"]) == 3 and int(r["k"]) == 2
        assert r["backend"] == "hf" and r["extraction"] == "boxed" and r["grader"] == "math_verify"
        assert r["checkpoint"] == f"checkpoints/global_step_{step}/actor"
        assert int(r["n_samples"]) == 6 >= sum(int(r[c]) for c in ("n_no_answer", "n_timeouts", "n_errors"))
        # avg@k recomputed from the graded samples themselves: the mean over problems of each one's share correct
        samples = [json.loads(line) for line in (out / "samples" / f"{r['benchmark']}.jsonl").read_text().splitlines()]
        by_problem: dict[str, list[bool]] = {}
        for sample in samples:
            by_problem.setdefault(sample["problem_id"], []).append(bool(sample["correct"]))
        assert len(by_problem) == 3 and all(len(v) == 2 for v in by_problem.values())
        want = sum(sum(v) / len(v) for v in by_problem.values()) / len(by_problem)
        assert float(r["avg_at_k"]) == pytest.approx(want, abs=1e-6)
    assert not list(out.glob("merged-*"))  # verl's merged Hugging Face model is deleted once graded
    assert (verl_run / "checkpoints" / f"global_step_{step}" / "actor").is_dir()  # the checkpoint stays
    stamp = (out / "run.json").stat().st_mtime_ns
    assert main(cmd) == 0 and (out / "run.json").stat().st_mtime_ns == stamp  # finished: no merge, no evaluation

    assert main(["eval-run", "--run", str(verl_run), "--collect"]) == 0
    assert _csv(verl_run / "benchmarks.csv") == rows
    tables = load_runs(verl_run.parent, warn=False)
    t = build_benchmark_table(tables, [("m2po", 4)])
    ours = {r.benchmark: r for r in t.itertuples()}
    assert set(ours) == {"MATH500", "AMC23", "Avg"}
    for name, r in zip(("MATH500", "AMC23"), rows, strict=True):
        assert ours[name].mean == pytest.approx(100 * float(r["avg_at_k"]))
        assert ours[name].lo <= ours[name].mean <= ours[name].hi
    assert ours["Avg"].mean == pytest.approx((ours["MATH500"].mean + ours["AMC23"].mean) / 2)
    assert ours["Avg"].best_update == str(updates) and ours["Avg"].n == 1
    md = benchmark_table_markdown(t, LABELS)
    lines = md.splitlines()
    assert lines[0].startswith("| Model | Method | s | MATH500 | AMC23 | Avg |")
    assert lines[2].startswith("| Qwen2.5-Math-7B | M2PO | 4 | ")
    assert lines[3].startswith("|  | *paper: M2PO* | 256 | 84.0 | 63.8 | 48.8 |")  # Table 1 of the paper


def test_planted_answers_through_the_verl_checkpoint_give_the_hand_known_accuracy(
    verl_run, data, tmp_path, monkeypatch
):
    """The same path (verl's merger, the HF backend loading the merged model, math-verify) with the generation
    planted: sample 0 of every problem answers ``\\boxed{<its ground truth>}`` (read from the data stage's
    parquet), sample 1 a number no problem has. By hand: avg@2 = 0.5 and pass@2 = 1 on both benchmarks."""
    import pandas as pd

    from m2po.eval.backends.hf import HFBackend

    truth = {}
    for name in ("math500", "amc23"):
        frame = pd.read_parquet(data / name / "test.parquet")
        for prompt, reward in zip(frame["prompt"], frame["reward_model"], strict=True):
            truth[prompt[-1]["content"]] = reward["ground_truth"]

    def planted(self, requests, params):
        return [[f"\\boxed{{{truth[r.messages[-1]['content']]}}}", "\\boxed{-987654321}"][: r.n] for r in requests]

    monkeypatch.setattr(HFBackend, "generate", planted)
    run = tmp_path / "runs" / RUN_ID  # the run's files linked, its evaluations not
    run.mkdir(parents=True)
    for item in verl_run.iterdir():
        if item.name not in ("eval", "benchmarks.csv"):
            os.symlink(item.resolve(), run / item.name)
    step = _steps(run)[-1]
    cmd = [
        "eval-run", "--run", str(run), "--step", str(step), "--backend", "hf", "--benchmarks", "math500", "amc23",
        "--data", str(data), "--limit", "3", "--k", "2", "--workers", "1", "--no-progress",
    ]  # fmt: skip
    assert main(cmd) == 0
    rows = _csv(run / "eval" / f"global_step_{step}" / "benchmarks.csv")
    assert [r["benchmark"] for r in rows] == ["math500", "amc23"]
    for r in rows:
        assert (float(r["avg_at_k"]), float(r["pass_at_k"]), int(r["n_samples"])) == (0.5, 1.0, 6), r


def test_stage_constants_are_the_verl_plugins():
    """m2po.eval.stage reads the schedule from the trainer YAML and names the queue manifest without importing
    m2po.verl_plugin (which imports verl): the same values as the plugin's."""
    from m2po.eval import stage
    from m2po.verl_plugin.buffer import QUEUE_MANIFEST
    from m2po.verl_plugin.launch import UPDATES_PER_STEP

    assert stage.QUEUE_MANIFEST == QUEUE_MANIFEST
    assert stage.verl_schedule() == (50, UPDATES_PER_STEP)
