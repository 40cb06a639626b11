"""``m2po train --config FILE [--set key=value ...] --out DIR [--resume]``."""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from ..config import ConfigError, config_help, load_config
from .train_config import TrainConfig


def resolve_config_path(name: str) -> str:
    """A file path, or the name of a packaged config such as ``tiny/m2po-s32``."""
    if Path(name).exists():
        return name
    packaged = resources.files("m2po") / "configs" / (name if name.endswith(".yaml") else f"{name}.yaml")
    if packaged.is_file():
        return str(packaged)
    raise FileNotFoundError(f"--config {name!r}: no such file and no packaged config m2po/configs/{name}.yaml")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file, or a packaged config name like tiny/m2po-s32")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one key, e.g. --set algo.staleness=32 (repeatable)",
    )
    p.add_argument("--out", help="run directory (config.yaml, manifest.json, updates.csv, evals.csv, checkpoints/)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--help-config", action="store_true", help="print every config key with its help and exit")
    p.add_argument(
        "--warm-start-only",
        action="store_true",
        help="build (or find) the cached supervised warm start of this config and exit",
    )


def run(args: argparse.Namespace) -> int:
    if args.help_config:
        print(config_help(TrainConfig))
        return 0
    if not args.out and not args.warm_start_only:
        print("m2po train: --out DIR is required", file=sys.stderr)
        return 2
    try:
        path = None
        if args.resume and (Path(args.out) / "config.yaml").exists() and not args.config:
            path = str(Path(args.out) / "config.yaml")
        elif args.config:
            path = resolve_config_path(args.config)
        cfg = load_config(TrainConfig, path, args.overrides)
    except (ConfigError, FileNotFoundError) as e:
        print(f"m2po train: bad config: {e}", file=sys.stderr)
        return 2
    if args.warm_start_only:
        from .setup import build_run

        print(f"warm start ready: {build_run(cfg).manifest.get('warm_start', {}).get('path')}")
        return 0
    from .loop import Trainer

    try:
        trainer = Trainer(cfg, args.out, resume=args.resume)
    except FileExistsError as e:
        print(f"m2po train: {e}", file=sys.stderr)
        return 2
    out = trainer.train()
    print(f"run written to {out}")
    return 0
