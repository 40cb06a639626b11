"""The many-runs worker: runs in one process are byte-identical to one-process-per-run runs, a
finished run is skipped, a killed one resumes, a folder without a checkpoint starts afresh; and the
per-epoch shuffle gives the same problem order as reshuffling for every batch."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from m2po.engine.loop import ProblemStream, Trainer
from m2po.engine.worker import parse_jobs, run_jobs

# The original "answer" task: the worked task of the tiny study is trained with GRPO only until its
# protocol is committed and the study runs (docs/tiny_protocol.md); the worker is format-agnostic.
FAST = [
    "warm_start.steps=300",
    "rollout.max_new_tokens=4",
    "rollout.prompts_per_batch=4",
    "rollout.group_size=4",
    "run.eval_problems=16",
    "run.eval_samples=2",
    "run.eval_every=4",
    "run.total_updates=8",
    "run.checkpoint_every=4",
    "run.progress=false",
    "run.token_sample=8",
]
RUNS = {
    "grpo-s0": ["algo.loss=grpo", "algo.staleness=0", "run.seed=1"],
    "grpo-s4": ["algo.loss=grpo", "algo.staleness=4", "run.seed=2"],
    "m2po-s4": ["algo.loss=m2po", "algo.staleness=4", "run.seed=1"],
}
FILES = ("updates.csv", "evals.csv", "tokens.csv")


def _m2po(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "m2po.cli", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def single_process_runs(tmp_path_factory) -> tuple[Path, Path]:
    """Each run by its own ``m2po train`` process (the baseline); the warm start is shared."""
    root = tmp_path_factory.mktemp("single")
    cache = root / "cache"
    for name, overrides in RUNS.items():
        args = ["train", "--out", str(root / name)]
        for o in [*FAST, f"warm_start.cache_dir={cache}", *overrides]:
            args += ["--set", o]
        res = _m2po(*args)
        assert res.returncode == 0, res.stderr
    return root, cache


def _jobs(root: Path, cache: Path) -> list[dict]:
    return [
        {"out": str(root / name), "overrides": [*FAST, f"warm_start.cache_dir={cache}", *overrides]}
        for name, overrides in RUNS.items()
    ]


def _same_run(a: Path, b: Path) -> None:
    for f in FILES:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    ma, mb = torch.load(a / "final_model.pt"), torch.load(b / "final_model.pt")
    assert ma.keys() == mb.keys() and all(torch.equal(ma[k], mb[k]) for k in ma)


def test_worker_runs_are_byte_identical_to_single_process_runs(single_process_runs, tmp_path) -> None:
    single, cache = single_process_runs
    res = _m2po("train-worker", "--jobs", json.dumps(_jobs(tmp_path, cache)))
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("trained") == len(RUNS)
    for name in RUNS:
        _same_run(single / name, tmp_path / name)


def test_worker_skips_finished_runs_resumes_killed_ones_and_restarts_empty_ones(
    single_process_runs, tmp_path, monkeypatch
) -> None:
    single, cache = single_process_runs
    jobs = _jobs(tmp_path, cache)
    run_jobs(jobs[:1], log=lambda _: None)
    first = {f: (tmp_path / "grpo-s0" / f).read_bytes() for f in FILES}
    # a run killed right after its first checkpoint (update 4 of 8)
    save = Trainer._save_checkpoint

    def save_then_die(self) -> None:
        save(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_jobs(jobs[1:2], log=lambda _: None)
    monkeypatch.setattr(Trainer, "_save_checkpoint", save)
    assert torch.load(tmp_path / "grpo-s4" / "checkpoints" / "last.pt", weights_only=False)["update"] == 4
    # a run killed before its first checkpoint: a folder with a partial log and no checkpoint
    (tmp_path / "m2po-s4").mkdir()
    (tmp_path / "m2po-s4" / "updates.csv").write_text("update\n0\n")
    said: list[str] = []
    run_jobs(jobs, log=said.append)
    assert [line.split(": ")[1].split(" ")[0] for line in said] == ["complete", "resumed", "trained"]
    assert {f: (tmp_path / "grpo-s0" / f).read_bytes() for f in FILES} == first
    for name in RUNS:
        _same_run(single / name, tmp_path / name)


def test_bad_jobs_are_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="JSON list"):
        parse_jobs('{"out": "x"}')
    (tmp_path / "jobs.json").write_text(json.dumps([{"out": "x"}]))
    assert parse_jobs(f"@{tmp_path / 'jobs.json'}") == [{"out": "x"}]
    with pytest.raises(ValueError, match="'out'"):
        run_jobs([{"overrides": []}], log=lambda _: None)
    res = _m2po("train-worker", "--jobs", "[{")
    assert res.returncode == 2 and "bad --jobs" in res.stderr


def test_problem_stream_shuffles_once_per_epoch_with_the_same_order() -> None:
    problems = [{"question": str(i)} for i in range(37)]

    def reference(seed: int, n_batches: int, size: int) -> list[str]:
        """The order of reshuffling the whole list for every batch (the original implementation)."""
        out, epoch, position = [], 0, 0
        for _ in range(n_batches):
            for _ in range(size):
                if position == len(problems):
                    epoch, position = epoch + 1, 0
                order = list(range(len(problems)))
                random.Random(seed * 1_000_003 + epoch).shuffle(order)
                out.append(problems[order[position]]["question"])
                position += 1
        return out

    stream = ProblemStream(problems, seed=5)
    taken = [p["question"] for _ in range(20) for p in stream.take(8)]
    assert taken == reference(5, 20, 8)
    resumed = ProblemStream(problems, seed=5)
    resumed.load_state_dict({"epoch": 2, "position": 3})
    stream.load_state_dict({"epoch": 2, "position": 3})
    assert resumed.take(50) == stream.take(50)
