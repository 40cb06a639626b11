"""``m2po eval``: sample k responses per problem, grade them in isolated workers, report avg@k / pass@k.

Defaults follow the paper's protocol (PAPER.md §6, eval/suites.yaml): temperature 1.0, k = 16 for
AIME24/25 and 4 elsewhere. Reruns with the same ``--out`` resume: finished samples are neither
regenerated nor regraded. Heavy imports (torch, transformers) happen in ``run`` only.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from ..errors import DISK_FULL, UserError, from_os_error

#: (option, smallest allowed value, strict ">" instead of ">=", what to write instead)
_RANGES = (
    ("k", 1, False, "e.g. --k 4 (the paper: 16 for AIME, 4 elsewhere)"),
    ("limit", 1, False, "drop --limit to evaluate every problem"),
    ("max_new_tokens", 1, False, "e.g. --max-new-tokens 2560"),
    ("batch_problems", 1, False, "e.g. --batch-problems 8"),
    ("batch_size", 1, False, "e.g. --batch-size 8"),
    ("workers", 0, False, "0 uses one per core"),
    ("threads", 0, False, "0 uses torch's default"),
    ("tensor_parallel_size", 1, False, "e.g. --tensor-parallel-size 1"),
    ("max_model_len", 1, False, "e.g. --max-model-len 4096 (prompt + response)"),
    ("timeout", 0, True, "e.g. --timeout 10"),
    ("temperature", 0, False, "the paper samples at 1.0"),
    ("top_p", 0, True, "a number in (0, 1]; the paper uses 1.0"),
)


def check_ranges(args: argparse.Namespace) -> None:
    """Refuse numbers outside their range before anything runs (``--k 0`` never falls back to a default)."""
    for name, low, strict, fix in _RANGES:
        value = getattr(args, name)
        if value is None:
            continue
        if (value <= low) if strict else (value < low):
            flag = "--" + name.replace("_", "-")
            raise UserError(f"{flag} must be {'>' if strict else '>='} {low}, got {value}", flag, fix)
    if args.top_p is not None and args.top_p > 1:
        raise UserError(f"--top-p must be <= 1, got {args.top_p}", "--top-p", "a number in (0, 1]")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", required=True, help="model dir / .gguf (hf, vllm), checkpoint .pt or tiny:<size>[:<seed>]"
    )
    p.add_argument("--out", required=True, type=Path, help="output directory (also the resumable cache)")
    p.add_argument("--model-id", default="", help="name recorded in the records (default: the model's file name)")
    p.add_argument("--update", type=int, default=None, help="optimizer update of this checkpoint (summary column)")
    p.add_argument(
        "--memo",
        type=Path,
        default=None,
        help="folder of the verdict memo shared across evaluations (default: OUT/cache/verdicts; docs/eval.md)",
    )
    add_protocol_arguments(p, data_required=True)


def add_protocol_arguments(
    p: argparse.ArgumentParser, backend_default: str | None = "hf", data_required: bool = False
) -> None:
    """What is evaluated and how: backend, benchmarks, sampling, grading (shared with ``m2po eval-run``)."""
    p.add_argument(
        "--backend",
        choices=("hf", "vllm", "tiny"),
        default=backend_default,
        help=f"generation engine (default {backend_default})",
    )
    p.add_argument("--benchmarks", nargs="+", default=["paper"], help="benchmark or suite names (paper, all, smoke)")
    p.add_argument(
        "--data", type=Path, required=data_required, help="directory with <benchmark>/test.parquet (`m2po data build`)"
    )
    p.add_argument("--k", type=int, default=None, help="samples per problem for every benchmark (default: suite's)")
    p.add_argument("--limit", type=int, default=None, help="first N problems of each benchmark")
    p.add_argument("--temperature", type=float, default=None, help="default: suite protocol (1.0)")
    p.add_argument("--top-p", type=float, default=None, help="default: suite protocol (1.0; released code: 0.7)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="default: suite protocol (2560)")
    p.add_argument("--seed", type=int, default=None, help="default: suite protocol (0)")
    p.add_argument(
        "--extraction",
        choices=("boxed", "math_verify", "raw", "tiny"),
        default=None,
        help="answer extraction: last \\boxed{} (default), math-verify's own, raw (the whole response), "
        "tiny (the tiny task's final answer; the tiny backend's default)",
    )
    p.add_argument("--workers", type=int, default=0, help="grading worker processes (default: one per core)")
    p.add_argument("--timeout", type=float, default=10.0, help="hard wall-clock grading timeout per sample, seconds")
    p.add_argument("--no-memo", action="store_true", help="grade every sample, without the verdict memo")
    p.add_argument("--batch-problems", type=int, default=8, help="prompts per generation batch (resume granularity)")
    p.add_argument("--batch-size", type=int, default=8, help="hf: sequences per model.generate call")
    p.add_argument("--device", default="cpu", help="hf: torch device")
    p.add_argument("--threads", type=int, default=1, help="hf on CPU: torch threads while generating (0: torch's)")
    p.add_argument("--dtype", default="float32", help="hf: torch dtype; vllm: dtype (default bfloat16 there)")
    p.add_argument("--tensor-parallel-size", type=int, default=1, help="vllm: GPUs per model")
    p.add_argument("--max-model-len", type=int, default=None, help="vllm: context length (default: the model's)")
    p.add_argument("--suites", default=None, help="suite spec YAML (default: eval/suites.yaml)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    p.add_argument("--sleep-between-batches", type=float, default=0.0, help=argparse.SUPPRESS)  # tests only


def eval_config(args: argparse.Namespace, model: str, out: Path, update: int | None, model_id: str = "") -> Any:
    """The :class:`~m2po.eval.runner.EvalConfig` of parsed protocol arguments, for one model."""
    from .runner import EvalConfig

    if args.data is None:
        raise UserError("no benchmark data given", "--data", "give the folder `m2po data build` wrote")
    backend_kwargs: dict = {}
    if args.backend == "hf":
        backend_kwargs = {
            "batch_size": args.batch_size,
            "device": args.device,
            "dtype": args.dtype,
            "threads": args.threads,
        }
    elif args.backend == "vllm":
        backend_kwargs = {"tensor_parallel_size": args.tensor_parallel_size}
        if args.max_model_len:
            backend_kwargs["max_model_len"] = args.max_model_len
        if args.dtype != "float32":
            backend_kwargs["dtype"] = args.dtype
    extraction = args.extraction or ("tiny" if args.backend == "tiny" else "boxed")
    memo = None if args.no_memo else (getattr(args, "memo", None) or Path(out) / "cache" / "verdicts")
    return EvalConfig(
        model=model,
        backend=args.backend,
        benchmarks=args.benchmarks,
        data_dir=args.data,
        out_dir=out,
        k=args.k,
        limit=args.limit,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        extraction=extraction,
        workers=args.workers,
        timeout_s=args.timeout,
        batch_problems=args.batch_problems,
        model_id=model_id,
        update=update,
        suites_path=args.suites,
        backend_kwargs=backend_kwargs,
        memo_dir=memo,
        progress=not args.no_progress,
        sleep_between_batches=args.sleep_between_batches,
    )


def retry_hint(e: OSError) -> UserError:
    """A full disk during an evaluation: one line that says the same command continues from its cache."""
    return from_os_error(e, "free some space, then run the same command again: it continues from its cache")


def run(args: argparse.Namespace) -> int:
    from .runner import evaluate

    check_ranges(args)
    cfg = eval_config(args, args.model, args.out, args.update, args.model_id)
    try:
        rows = evaluate(cfg)
    except OSError as e:
        if e.errno not in DISK_FULL:
            raise
        raise retry_hint(e) from e
    print((args.out / "summary.md").read_text(), end="")
    bad = sum(int(r["n_timeouts"]) + int(r["n_errors"]) for r in rows if r["benchmark"] != "paper_avg8")
    if bad:
        print(
            f"WARNING: {bad} samples were not graded cleanly (timeout/error); they count as incorrect, "
            "see the n_timeouts / n_errors columns",
            file=sys.stderr,
        )
    avg = rows[-1]
    if not math.isfinite(avg["avg_at_k"]) and avg.get("missing"):
        print(f"paper 8-benchmark average not computed; missing: {avg['missing']}", file=sys.stderr)
    return 0
