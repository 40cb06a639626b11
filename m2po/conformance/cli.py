"""``m2po conformance export --out DIR`` and ``m2po conformance check --vectors DIR --target TARGET``.

Also runnable as ``python -m m2po.conformance ...``, which imports only torch (no other stage of m2po).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

TARGET_HELP = (
    "m2po:NAME (our registry), verl:NAME (verl's registry, called as verl calls it; needs verl), "
    "MODULE:FUNCTION or FILE.py:FUNCTION (the public signature fn(log_prob, old_log_prob, advantages, "
    "response_mask, **params) -> (loss, metrics); needs --cases), or MODULE:ADAPTER (an "
    "m2po.conformance.adapters.Adapter, for other call conventions)"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="conformance_command", required=True)
    e = sub.add_parser("export", help="write the test vectors (index.json + safetensors)", description=export_doc())
    e.add_argument("--out", required=True, help="directory to write (created if missing)")
    c = sub.add_parser("check", help="run a loss against the vectors and print a table per case")
    c.add_argument("--vectors", required=True, help="directory written by `m2po conformance export`")
    c.add_argument("--target", required=True, help=TARGET_HELP)
    c.add_argument(
        "--cases",
        action="append",
        default=[],
        metavar="LOSS|PATTERN",
        help="restrict to one loss's cases (e.g. m2po) or to case names matching a pattern (e.g. 'm2po/scope_*'); "
        "repeatable or comma-separated; default: the cases of the loss the target names",
    )
    c.add_argument("--json", help="also write the per-case results to this JSON file")


def export_doc() -> str:
    return "Write every case with its expected keep-mask, loss and gradient, computed by the literal oracles."


def run(args: argparse.Namespace) -> int:
    if args.conformance_command == "export":
        from .export import export

        index = export(args.out)
        print(f"wrote {len(index['cases'])} cases (format version {index['version']}) to {args.out}")
        return 0
    from .check import VectorsError, check, exit_status, format_table, results_json
    from .targets import resolve_target

    patterns = [p for item in args.cases for p in item.split(",") if p]
    try:
        adapter = resolve_target(args.target)
        results = check(args.vectors, adapter, patterns or None)
    except (VectorsError, ValueError, ImportError) as e:
        print(f"m2po conformance check: {e}", file=sys.stderr)
        return 2
    print(format_table(results, args.target))
    if args.json:
        from m2po.fileio import atomic_write_text

        atomic_write_text(Path(args.json), results_json(results, args.target))
    return exit_status(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m m2po.conformance", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))
