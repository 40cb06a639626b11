"""Runs per minute of the tiny study's training: one ``m2po train-worker`` process for several runs
(the pipeline) against one ``m2po train`` process per run (the baseline), the same runs, measured in
the same benchmark.

The runs are the first ``N_RUNS`` GRPO runs of the 0.1M model in ``workflow/config/tiny.yaml`` (with
the profile's own overrides, so the per-run work is the study's; the loss does not change what a
process costs), trained into a temporary folder; the
warm start is built first and shared, and not counted. Both sides run their runs one after the
other on one core, so the ratio isolates the per-process cost (interpreter start, imports, set-up)
that the worker pays once per shard instead of once per run.
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
from m2po.pipeline import expand_grid, train_overrides, warm_start_overrides

from .timing import print_table

ROOT = Path(__file__).resolve().parents[1]
N_RUNS = 4
MODEL = "0.1M"


def _m2po(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "m2po.cli", *args], check=True, capture_output=True, text=True)


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
        same = all(
            (Path(tmp) / "single" / r.run_id / "updates.csv").read_bytes()
            == (Path(tmp) / "worker" / r.run_id / "updates.csv").read_bytes()
            for r in runs
        )
    print_table(
        f"Tiny study training: {len(runs)} runs of {MODEL} ({', '.join(r.run_id for r in runs)}), one core",
        ["process per run (runs/min)", "one worker (runs/min)", "speed-up", "identical logs"],
        [[60 * len(runs) / single, 60 * len(runs) / worker, single / worker, str(same)]],
    )


if __name__ == "__main__":
    main()
