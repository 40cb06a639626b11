"""``m2po data build``: the command line of the data stage (dispatched by :mod:`m2po.cli`).

Mode: ``--offline DIR`` (or the environment variable ``M2PO_DATA_DIR``) reads the local layout
of the offline data folder (docs/data.md); without either, datasets load from the Hugging Face hub. Exit status 0 on
success (count mismatches are loud warnings), 2 on an error (a missing source, a bad spec, or
any problem under ``--strict``), with the message naming file and row.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from ..errors import UserError, check_writable

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    b = sub.add_parser("build", help="Build datasets into OUT/<dataset>/<split>.parquet + manifest.json.")
    b.add_argument(
        "--datasets",
        nargs="+",
        default=["all"],
        metavar="NAME",
        help="Datasets or groups from data/sources.yaml (all, eval, paper_eval, train, deepscaler, math500, "
        "..., tiny_arith). Default: all.",
    )
    b.add_argument(
        "--offline",
        type=Path,
        default=None,
        metavar="DIR",
        help="Read local files from DIR (the offline data folder, docs/data.md) instead of the hub; "
        "default: $M2PO_DATA_DIR if set.",
    )
    b.add_argument("--out", type=Path, required=True, metavar="DIR", help="Output folder.")
    b.add_argument(
        "--strict",
        action="store_true",
        help="Fail (exit 2, nothing written) on any unexpected skipped row, checksum or count mismatch.",
    )
    b.add_argument(
        "--no-fallback",
        action="store_true",
        help="Fail instead of using the offline DeepScaleR fallback when the real file is absent.",
    )
    b.add_argument("--sources", type=Path, default=None, metavar="FILE", help="Source spec (data/sources.yaml).")
    b.add_argument("--no-parse-check", action="store_true", help="Skip the math-verify parse check of ground truths.")
    b.add_argument("--workers", type=int, default=None, help="Processes for the parse check (default min(4, cpus)).")
    b.add_argument("--no-progress", action="store_true", help="No progress bars.")


def _offline_dir(arg: Path | None) -> Path | None:
    if arg is not None:
        return arg
    env = os.environ.get("M2PO_DATA_DIR", "").strip()
    return Path(env) if env else None


def run(args: argparse.Namespace) -> int:
    from .build import BuildOptions, build
    from .readers import DataError
    from .spec import load_sources

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    offline = _offline_dir(args.offline)
    if offline is not None and not offline.is_dir():
        raise UserError("no such offline data folder", offline, "check --offline or $M2PO_DATA_DIR")
    check_writable(args.out, "make it writable or choose another --out")
    try:
        sources = load_sources(args.sources)
        opts = BuildOptions(
            out=args.out,
            datasets=tuple(args.datasets),
            offline_dir=offline,
            strict=args.strict,
            allow_fallback=not args.no_fallback,
            check_parse=not args.no_parse_check,
            progress=not args.no_progress,
            workers=args.workers,
        )
        manifests = build(sources, opts)
    except DataError as e:
        raise UserError(str(e)) from e
    print(f"{'dataset':<14} {'kept':>7} {'skipped':>8} {'no-answer':>9} {'unparseable':>11}  notes")
    for m in manifests:
        c, gp = m["counts"], m["ground_truth_parse"]
        notes = ("FALLBACK " if m["is_fallback"] else "") + ("" if c["count_ok"] else "COUNT MISMATCH")
        print(
            f"{m['dataset']:<14} {c['kept']:>7} {c['skipped']:>8} {c['answer_missing']:>9} "
            f"{gp['n_unparseable'] if gp['checked'] else '-':>11}  {notes}"
        )
    print(f"wrote {args.out}/report.md, contamination.csv, contamination.md")
    return 0
