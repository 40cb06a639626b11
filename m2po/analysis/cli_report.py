"""``m2po report --results results/tiny --profile tiny [--stale 32] [--models ...] [--seeds ...] [--no-figures]``."""

from __future__ import annotations

import argparse
import logging

from .claims import Rules


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", required=True, help="results/<profile> (holding runs/), or results/ with --profile")
    p.add_argument("--profile", default="tiny", help="profile name, for the title (and results/<profile> lookup)")
    p.add_argument("--stale", type=int, help="the stale setting s (default: the largest staleness present)")
    p.add_argument("--models", nargs="+", help="models to include (default: all, smallest first)")
    p.add_argument("--seeds", nargs="+", type=int, help="seeds to include (default: all)")
    p.add_argument("--no-figures", action="store_true", help="do not (re)draw figures; link what exists")
    p.add_argument(
        "--figures-src", help="folder of figures/draw.py and the figure modules (default: figures/ of the source tree)"
    )
    p.add_argument("--z", type=float, default=Rules.z, help="standard errors for a claim decision")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    from .report import build_report

    path = build_report(
        args.results,
        args.profile,
        stale=args.stale,
        models=args.models,
        seeds=args.seeds,
        figures=not args.no_figures,
        figures_src=args.figures_src,
        rules=Rules(z=args.z),
    )
    print(f"report written to {path} (and {path.with_suffix('.html').name}, claims.csv)")
    return 0
