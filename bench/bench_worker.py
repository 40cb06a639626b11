"""Runs per minute of the tiny study's training and evaluation stage: one process for several runs (the
pipeline: ``m2po train-worker``, then ``m2po eval-run --run A B ...`` per shard) against one process per run
(the baseline: ``m2po train``, ``m2po eval-run --run A``), the same runs, measured in the same benchmark.

The runs are the first ``N_RUNS`` GRPO runs of the 0.1M model in ``workflow/config/tiny.yaml`` (with
the profile's own overrides, so the per-run work is the study's; the loss does not change what a
process costs), trained into a temporary folder; the
warm start is built first and shared, and not counted. Both sides run their runs one after the
other on one core, so the ratio isolates the per-process cost (interpreter start, imports, set-up)
that the worker pays once per shard instead of once per run. The evaluation stage then grades each side's
runs with the pipeline's tiny eval options (the whole held-out set, k = 4, one grading worker, a verdict memo
per side), per run on the baseline's runs and in one process on the worker's; the two sides' logs and
``benchmarks.csv`` must be byte-identical.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from m2po.engine.worker import run_jobs
from m2po.pipeline import TINY_EVAL_JOB_ARGS, eval_protocol_args, expand_grid, train_overrides, warm_start_overrides

from .timing import print_table

ROOT = Path(__file__).resolve().parents[1]
N_RUNS = 4
MODEL = "0.1M"


def _m2po(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "m2po.cli", *args], check=True, capture_output=True, text=True)


def _eval_run(runs: list[str], data: str, memo: str, config: dict) -> None:
    """``m2po eval-run`` as the tiny pipeline's eval job runs it (workflow/rules/eval.smk)."""
    _m2po("eval-run", "--run", *runs, "--backend", "tiny", "--data", data, *eval_protocol_args(config),
          "--memo", memo, *TINY_EVAL_JOB_ARGS)  # fmt: skip


def main() -> None:
    config = yaml.safe_load((ROOT / "workflow/config/tiny.yaml").read_text())
    runs = [r for r in expand_grid(config) if r.model == MODEL and r.method == "grpo"][:N_RUNS]
    with tempfile.TemporaryDirectory() as tmp:
        cache = f"warm_start.cache_dir={tmp}/cache"
        run_jobs([{"warm_start_only": True, "overrides": [*warm_start_overrides(MODEL, config), cache]}], log=print)

        def jobs(folder: str) -> list[dict]:
            return [
                {"out": f"{tmp}/{folder}/{r.run_id}", "overrides": [*train_overrides(r, config), cache]} for r in runs
            ]

        t0 = time.perf_counter()
        for job in jobs("single"):
            _m2po("train", "--out", job["out"], *[a for o in job["overrides"] for a in ("--set", o)])
        single = time.perf_counter() - t0

        t0 = time.perf_counter()
        _m2po("train-worker", "--jobs", json.dumps(jobs("worker")))
        worker = time.perf_counter() - t0
        same = _identical(Path(tmp), runs, "updates.csv")

        _m2po("data", "build", "--datasets", *config["eval"]["benchmarks"], "--out", f"{tmp}/data")
        # the one process first: the page cache it warms (imports, the parquet) then favours the baseline
        t0 = time.perf_counter()
        _eval_run([f"{tmp}/worker/{r.run_id}" for r in runs], f"{tmp}/data", f"{tmp}/memo-worker", config)
        eval_worker = time.perf_counter() - t0
        t0 = time.perf_counter()
        for r in runs:
            _eval_run([f"{tmp}/single/{r.run_id}"], f"{tmp}/data", f"{tmp}/memo-single", config)
        eval_single = time.perf_counter() - t0
        same_eval = _identical(Path(tmp), runs, "benchmarks.csv")
    names = ", ".join(r.run_id for r in runs)
    print_table(
        f"Tiny study training: {len(runs)} runs of {MODEL} ({names}), one core",
        ["process per run (runs/min)", "one worker (runs/min)", "speed-up", "identical logs"],
        [[60 * len(runs) / single, 60 * len(runs) / worker, single / worker, str(same)]],
    )
    print_table(
        f"Tiny study evaluation stage: the same {len(runs)} runs (best and final models), k = {config['eval']['k']}, "
        "1 core",
        ["process per run (runs/min)", "one process (runs/min)", "speed-up", "identical benchmarks.csv"],
        [[60 * len(runs) / eval_single, 60 * len(runs) / eval_worker, eval_single / eval_worker, str(same_eval)]],
    )


def _identical(tmp: Path, runs: list, name: str) -> bool:
    """Whether every run's ``name`` is the same bytes on both sides."""
    return all((tmp / "single" / r.run_id / name).read_bytes() == (tmp / "worker" / r.run_id / name).read_bytes()
               for r in runs)  # fmt: skip


if __name__ == "__main__":
    main()
