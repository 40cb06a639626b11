"""Grading cost of the tiny study's evaluation stage, with and without the verdict memo (same samples, same run).

Workload: the stage's own jobs (:func:`m2po.eval.stage.evaluate_checkpoint`: each checkpoint on the full
held-out set, k samples per problem, graded by math-verify in one worker like the pipeline's tiny rule).
Checkpoints: those of ``results/tiny/runs`` when ``make reproduce`` has run (the first
``M2PO_BENCH_STAGE_RUNS`` runs, 4 by default), else the supervised warm start of the 0.1M model (cached)
sampled with a different seed per pseudo-run and checkpoint. Each job is evaluated twice into fresh folders:
without the memo (every sample goes to a grading worker) and with one memo shared by all jobs, as the
pipeline shares ``results/tiny/cache/verdicts``. Generation is identical in both (seeded) and not counted:
the table compares the seconds the runner spent grading (``run.json`` ``seconds.grade``, the pool's start-up
included) and how many samples reached a worker.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .timing import print_table

RUNS = int(os.environ.get("M2PO_BENCH_STAGE_RUNS", "4"))
K = int(os.environ.get("M2PO_BENCH_STAGE_K", "4"))
RESULTS = Path(os.environ.get("M2PO_BENCH_STAGE_RESULTS", "results/tiny"))


def _jobs(tmp: Path) -> tuple[list[tuple[str, list, int]], Path, str]:
    """``[(job name, checkpoints, response length)]``, the data folder and where the checkpoints come from."""
    from m2po.eval.stage import Checkpoint, find_checkpoints, run_response_length

    runs = sorted(p for p in (RESULTS / "runs").glob("*") if (p / "final_model.pt").exists())[:RUNS]
    data = RESULTS / "data"
    if runs and (data / "tiny_arith" / "test.parquet").exists():
        jobs = [(r.name, find_checkpoints(r), run_response_length(r)) for r in runs]
        return jobs, data, f"{len(runs)} runs of {RESULTS}"
    from m2po.engine.sft import SFT_PRESETS, warm_start
    from m2po.engine.task import generate_problems, to_dataset_rows
    from m2po.engine.train_config import RolloutSection, TaskSection, WarmStartSection
    from m2po.eval.problems import write_parquet

    task = TaskSection().arithmetic_task()  # the study's task: its held-out set and cached warm start
    model = warm_start(SFT_PRESETS["0.1M"], task, WarmStartSection().resolved_cache_dir(), progress=False)
    data = tmp / "data"
    write_parquet(to_dataset_rows(generate_problems(task)[1], "test"), data / "tiny_arith" / "test.parquet")
    length = RolloutSection().max_new_tokens
    pseudo = [[Checkpoint(f"seed{2 * i + j}", 2 * i + j, Path(model), "tiny") for j in (0, 1)] for i in range(RUNS)]
    jobs = [(f"pseudo-run-{i}", ckpts, length) for i, ckpts in enumerate(pseudo)]
    return jobs, data, f"{RUNS} pseudo-runs of 2 checkpoints: the 0.1M warm start sampled with distinct seeds"


def _stage(jobs: list, data: Path, root: Path, memo: Path | None) -> tuple[float, int, int]:
    """Run every job's evaluation into ``root``; (grading seconds, samples graded by a worker, samples)."""
    from m2po.eval.runner import EvalConfig
    from m2po.eval.stage import evaluate_checkpoint

    grade_s, by_pool, samples = 0.0, 0, 0
    for name, ckpts, length in jobs:
        run = root / name
        run.mkdir(parents=True)
        for c in ckpts:

            def make_config(model: str, out: Path, update: int, seed: int = c.update, n: int = length) -> EvalConfig:
                return EvalConfig(
                    model=model, backend="tiny", benchmarks=["tiny_arith"], data_dir=data, out_dir=out, k=K,
                    max_new_tokens=n, seed=seed, extraction="tiny", workers=1, batch_problems=250, update=update,
                    memo_dir=memo, progress=False,
                )  # fmt: skip

            evaluate_checkpoint(run, c, make_config)
            info = json.loads((run / "eval" / c.name / "run.json").read_text())
            grade_s += info["seconds"]["tiny_arith"]["grade"]
            by_pool += info["counts"]["tiny_arith"]["graded_by_pool"]
            samples += info["counts"]["tiny_arith"]["graded"]
    return grade_s, by_pool, samples


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        jobs, data, source = _jobs(tmp)
        plain = _stage(jobs, data, tmp / "plain", None)
        memo = _stage(jobs, data, tmp / "memo", tmp / "verdicts")
    assert plain[2] == memo[2], "both passes grade the same samples"
    print_table(
        f"Tiny eval stage grading, with and without the verdict memo ({source}; k={K}, 1 worker)",
        ["grading", "seconds", "samples", "graded by a worker", "ms per sample"],
        [
            ["every sample", plain[0], plain[2], plain[1], 1000 * plain[0] / plain[2]],
            ["verdict memo", memo[0], memo[2], memo[1], 1000 * memo[0] / memo[2]],
        ],
    )
    print(f"\nmemo speed-up of grading: {plain[0] / memo[0]:.1f}x (same samples, this run)")


if __name__ == "__main__":
    main()
