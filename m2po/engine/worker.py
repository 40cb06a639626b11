"""Many runs in one process: ``m2po train-worker --jobs JSON``.

Why: a tiny run trains in seconds, while a fresh ``m2po train`` process pays ~2 s of imports and
the pipeline's job start-up on top; the study's ~100 runs would spend a large share of the
10-minute budget starting processes. A worker takes a list of jobs and runs them one after the
other in this process. Each job is exactly what ``m2po train --out OUT --resume --set ...`` would
do, with the same result byte for byte (tested): before every run the worker restores the
process-global state a fresh process starts with (torch's global RNG, the thread count), and
every run's own random streams are seeded from its config as usual.

A job is a JSON object:

* ``{"out": DIR, "overrides": ["key=value", ...], "config": FILE or null}`` trains one run into
  DIR exactly as ``m2po train --out DIR --resume auto`` would: a finished run is skipped (its logs
  restored from the checkpoint if they were cut), a run with a checkpoint resumes from it exactly,
  otherwise it starts afresh (so a killed worker can simply be started again).
* ``{"warm_start_only": true, "overrides": [...], "regime_out": FILE or null}`` builds (or
  finds) the cached warm start of that config and, with ``regime_out``, writes its token-entropy
  statistics (:mod:`m2po.engine.regime`) there.

``--jobs`` takes the JSON list itself or ``@FILE``. The worker stops at the first failing job
and exits non-zero naming it (the jobs before it are complete and resumable).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError, load_config
from .train_config import TrainConfig

#: The seed of torch's global generator in a fresh process (captured before anything reseeds it).
_FRESH_TORCH_SEED = torch.initial_seed()


def _reset_process_state(cfg: TrainConfig) -> None:
    """What a fresh ``m2po train`` process would start a run with."""
    torch.manual_seed(_FRESH_TORCH_SEED)
    torch.set_num_threads(cfg.run.threads)


def train_one(cfg: TrainConfig, out: str | Path) -> str:
    """Train, resume or skip one run in this process, as ``m2po train --out OUT --resume auto`` would
    (the same :func:`m2po.engine.resume.plan_resume` checks); returns what was done."""
    from .loop import Trainer
    from .resume import plan_resume, restore_logs

    out = Path(out)
    plan = plan_resume(out, cfg) if (out / "config.yaml").is_file() else None
    if plan is not None and plan.complete:
        assert plan.state is not None
        restore_logs(out, plan.state)
        return "complete"
    if plan is None and out.exists():
        shutil.rmtree(out)  # a folder without a run config: nothing to continue, start afresh
    _reset_process_state(cfg)
    Trainer(cfg, out, resume=plan or False).train()
    return "resumed" if plan is not None and plan.state is not None else "trained"


def warm_start_only(cfg: TrainConfig, regime_out: str | None) -> str:
    from .build import build_run

    _reset_process_state(cfg)
    path = build_run(cfg).manifest.get("warm_start", {}).get("path")
    if regime_out and path:
        from .regime import write_warm_start_regime

        write_warm_start_regime(path, regime_out)
    return f"warm start {path}"


def run_jobs(jobs: list[dict[str, Any]], log=print) -> None:
    """Run the jobs in order (see the module docstring); raises on the first failure."""
    for i, job in enumerate(jobs):
        cfg = load_config(TrainConfig, job.get("config"), list(job.get("overrides", [])))
        t0 = time.perf_counter()
        if job.get("warm_start_only"):
            what = warm_start_only(cfg, job.get("regime_out"))
        else:
            if not job.get("out"):
                raise ValueError(f"job {i}: needs 'out' (the run directory) or warm_start_only: true")
            what = f"{job['out']}: {train_one(cfg, job['out'])}"
        log(f"[{i + 1}/{len(jobs)}] {what} ({time.perf_counter() - t0:.1f}s)")


def parse_jobs(text: str) -> list[dict[str, Any]]:
    """The ``--jobs`` argument: a JSON list, or ``@FILE`` holding one."""
    source = "--jobs"
    if text.startswith("@"):
        source = text[1:]
        text = Path(source).read_text()
    jobs = json.loads(text)
    if not isinstance(jobs, list) or not all(isinstance(j, dict) for j in jobs):
        raise ValueError(f"{source}: expected a JSON list of job objects")
    return jobs


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", required=True, help="JSON list of jobs, or @FILE (see m2po.engine.worker)")


def run(args: argparse.Namespace) -> int:
    try:
        jobs = parse_jobs(args.jobs)
    except (OSError, ValueError) as e:
        print(f"m2po train-worker: bad --jobs: {e}", file=sys.stderr)
        return 2
    try:
        run_jobs(jobs, log=lambda msg: print(msg, flush=True))
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"m2po train-worker: {e}", file=sys.stderr)
        return 2
    return 0
