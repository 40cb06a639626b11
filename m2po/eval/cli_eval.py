"""``m2po eval``: sample k responses per problem, grade them in isolated workers, report avg@k / pass@k.

Defaults follow the paper's protocol (paper §6 and App. B, eval/suites.yaml): temperature 1.0, k = 16 for
AIME24/25 and 4 elsewhere. Reruns with the same ``--out`` resume: finished samples are neither
regenerated nor regraded. Heavy imports (torch, transformers) happen in ``run`` only.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

from ..config import add_config_arguments, config_flag, config_from_args
from ..errors import DISK_FULL, UserError, from_os_error
from .eval_config import BackendOptions, EvalConfig

#: (field, smallest allowed value, strict ">" instead of ">=", what to write instead)
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
    ("timeout_s", 0, True, "e.g. --timeout 10"),
    ("temperature", 0, False, "the paper samples at 1.0"),
    ("top_p", 0, True, "a number in (0, 1]; the paper uses 1.0"),
)

#: the fields of one ``m2po eval`` invocation; every other flag is shared with ``m2po eval-run``
_RUN_FIELDS = ("model", "out_dir", "model_id", "update", "memo_dir")
#: what is evaluated and how (the :class:`EvalConfig` fields given by a flag)
PROTOCOL_FIELDS = (
    "backend", "benchmarks", "data_dir", "k", "limit", "temperature", "top_p", "max_new_tokens", "seed",
    "extraction", "workers", "timeout_s", "batch_problems", "suites_path", "progress",
)  # fmt: skip


def _flag(name: str) -> str:
    fields = {f.name: f for cls in (EvalConfig, BackendOptions) for f in dataclasses.fields(cls)}
    return config_flag(fields[name])


def check_ranges(args: argparse.Namespace) -> None:
    """Refuse numbers outside their range before anything runs (``--k 0`` never falls back to a default)."""
    for name, low, strict, fix in _RANGES:
        value = getattr(args, name)
        if value is None:
            continue
        if (value <= low) if strict else (value < low):
            flag = _flag(name)
            raise UserError(f"{flag} must be {'>' if strict else '>='} {low}, got {value}", flag, fix)
    if args.top_p is not None and args.top_p > 1:
        raise UserError(f"--top-p must be <= 1, got {args.top_p}", "--top-p", "a number in (0, 1]")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, EvalConfig, _RUN_FIELDS)
    add_protocol_arguments(p, data_required=True)


def add_protocol_arguments(
    p: argparse.ArgumentParser, backend_default: str | None = "hf", data_required: bool = False
) -> None:
    """What is evaluated and how: backend, benchmarks, sampling, grading (shared with ``m2po eval-run``)."""
    add_config_arguments(
        p,
        EvalConfig,
        PROTOCOL_FIELDS,
        backend={
            "default": backend_default,
            "required": False,
            "help": f"generation engine (default {backend_default})",
        },
        data_dir={"required": data_required},
        extraction={"default": None},  # by backend: tiny for the tiny backend, else boxed
    )
    p.add_argument("--no-memo", action="store_true", help="grade every sample, without the verdict memo")
    add_config_arguments(p, BackendOptions, [f.name for f in dataclasses.fields(BackendOptions)])


def eval_config(args: argparse.Namespace, model: str, out: Path, update: int | None, model_id: str = "") -> EvalConfig:
    """The :class:`EvalConfig` of parsed protocol arguments, for one model."""
    if args.data_dir is None:
        raise UserError("no benchmark data given", "--data", "give the folder `m2po data build` wrote")
    memo = None if args.no_memo else (getattr(args, "memo_dir", None) or Path(out) / "cache" / "verdicts")
    return config_from_args(
        EvalConfig,
        args,
        model=model,
        out_dir=out,
        update=update,
        model_id=model_id,
        extraction=args.extraction or ("tiny" if args.backend == "tiny" else "boxed"),
        backend_kwargs=config_from_args(BackendOptions, args).kwargs(args.backend),
        memo_dir=memo,
    )


def retry_hint(e: OSError) -> UserError:
    """A full disk during an evaluation: one line that says the same command continues from its cache."""
    return from_os_error(e, "free some space, then run the same command again: it continues from its cache")


def run(args: argparse.Namespace) -> int:
    from .runner import evaluate

    check_ranges(args)
    cfg = eval_config(args, args.model, args.out_dir, args.update, args.model_id)
    try:
        rows = evaluate(cfg)
    except OSError as e:
        if e.errno not in DISK_FULL:
            raise
        raise retry_hint(e) from e
    print((args.out_dir / "summary.md").read_text(), end="")
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
