"""``m2po eval-run``: the pipeline's evaluation stage for training runs -> ``<run>/benchmarks.csv`` of each.

    m2po eval-run --run results/tiny/runs/<id> --backend tiny --benchmarks tiny_arith --data results/tiny/data
    m2po eval-run --run results/tiny/runs/<id1> results/tiny/runs/<id2> ...  # one process for several runs
    m2po eval-run --run results/paper/runs/<id> --step 50 --backend vllm --data results/paper/data [--top-p 0.7]
    m2po eval-run --run results/paper/runs/<id> --collect        # gather what the --step jobs evaluated
    m2po eval-run --run RUN --list                               # the run's checkpoints and their updates

Every checkpoint the run saved (``--every N``: every N-th and the last; ``--step``: those verl global
steps) is evaluated into ``<run>/eval/<checkpoint>/`` like ``m2po eval`` (the same protocol options,
resumable caches), then ``benchmarks.csv`` is written from every finished checkpoint (docs/eval.md).
Several ``--run`` directories are evaluated one after the other in one process (the tiny pipeline's job per
training shard): the imports, the backend's libraries and the grading workers' forkserver are paid once. Every
directory is checked before the first is evaluated; the first run that fails stops the command (what was
evaluated before it is kept, and a rerun skips every finished checkpoint).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import add_config_arguments
from ..errors import DISK_FULL, UserError
from .cli_eval import add_protocol_arguments, check_ranges, eval_config, retry_hint
from .eval_config import EvalConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--run",
        required=True,
        type=Path,
        nargs="+",
        action="extend",
        help="the run directory (results/<profile>/runs/<run_id>); several (`--run A B` or `--run A --run B`) "
        "are evaluated in turn in one process, stopping at the first that fails",
    )
    p.add_argument("--every", type=int, default=1, help="evaluate every N-th checkpoint (the last always)")
    p.add_argument("--step", type=int, nargs="+", help="verl: only these global steps (global_step_<N>)")
    p.add_argument("--collect", action="store_true", help="only write benchmarks.csv from what was evaluated")
    p.add_argument(
        "--list",
        action="store_true",
        help="print the run's checkpoints and exit (with several runs, each line starts with its run directory)",
    )
    add_config_arguments(
        p,
        EvalConfig,
        ["memo_dir"],
        memo_dir={"help": "folder of the verdict memo (default: RUN/eval/verdicts; the tiny pipeline shares one)"},
    )
    p.add_argument(
        "--merge-dir",
        type=Path,
        default=None,
        help="verl: where verl's merger writes the Hugging Face model (default: RUN/eval/<checkpoint>/); "
        "it is deleted once graded",
    )
    add_protocol_arguments(p, backend_default=None)


def run(args: argparse.Namespace) -> int:
    runs: list[Path] = args.run
    for run_dir in runs:  # every run is checked before the first one is evaluated
        if not run_dir.is_dir():
            raise UserError("no such run directory", run_dir, "give results/<profile>/runs/<run_id>")
    if args.step and len(runs) > 1:
        raise UserError("--step names one run's checkpoints", "--run", "give a single --run with --step")
    if not (args.list or args.collect):
        if args.backend is None:
            raise UserError("no backend given", "--backend", "tiny (tiny engine), vllm (GPU) or hf (CPU)")
        check_ranges(args)
    for run_dir in runs:
        _evaluate_run(args, run_dir)
    return 0


def _evaluate_run(args: argparse.Namespace, run_dir: Path) -> None:
    """``--list``, ``--collect`` or the evaluation of one run directory (see the module docstring)."""
    from .stage import collect, evaluate_checkpoint, every_nth, find_checkpoints, run_response_length

    ckpts = find_checkpoints(run_dir)
    if args.list:
        run_column = f"{run_dir}\t" if len(args.run) > 1 else ""  # several runs: say whose checkpoint
        for c in ckpts:
            print(f"{run_column}{c.name}\tupdate {c.update}\t{c.kind}\t{c.path}")
        return
    if args.collect:
        print(f"wrote {collect(run_dir)}")
        return
    if args.step:
        wanted = {f"global_step_{n}" for n in args.step}
        missing = sorted(wanted - {c.name for c in ckpts})
        if missing:
            raise UserError(f"no checkpoint {', '.join(missing)}", run_dir / "checkpoints", "did the training finish?")
        ckpts = [c for c in ckpts if c.name in wanted]
    else:
        ckpts = every_nth(ckpts, args.every)
    if not ckpts:
        raise UserError("no checkpoint to evaluate", run_dir / "checkpoints", "train the run first")
    memo_dir = args.memo_dir or run_dir / "eval" / "verdicts"
    max_new_tokens = args.max_new_tokens
    if args.backend == "tiny" and max_new_tokens is None:
        max_new_tokens = run_response_length(run_dir)
    settings = argparse.Namespace(**{**vars(args), "memo_dir": memo_dir, "max_new_tokens": max_new_tokens})

    def make_config(model: str, out: Path, update: int):
        return eval_config(settings, model, out, update)

    try:
        for c in ckpts:
            rows = evaluate_checkpoint(run_dir, c, make_config, args.merge_dir)
            summary = ", ".join(f"{r['benchmark']} {100 * float(r['avg_at_k']):.1f}%" for r in rows)
            print(f"{run_dir.name} {c.name} (update {c.update}): {summary}", file=sys.stderr)
    except OSError as e:
        if e.errno not in DISK_FULL:
            raise
        raise retry_hint(e) from e
    if not args.step:
        print(f"wrote {collect(run_dir)}")
