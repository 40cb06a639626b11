"""``m2po train --config FILE [--set key=value ...] --out DIR [--resume [auto]]``.

Errors a user can fix end in one line and exit 2 (:mod:`m2po.errors`); Ctrl-C (exit 130) and
SIGTERM (exit 143) stop a run with one line saying how to resume it, its spill folder removed.
"""

from __future__ import annotations

import argparse
import signal
import sys
from importlib import resources
from pathlib import Path

from .. import interrupts
from ..config import config_help, load_config
from ..errors import DISK_FULL, NOT_WRITABLE, UserError, check_writable, from_os_error
from .train_config import TrainConfig


def resolve_config_path(name: str) -> str:
    """A file path, or the name of a packaged config such as ``tiny/m2po-s32``."""
    if Path(name).exists():
        return name
    packaged = resources.files("m2po") / "configs" / (name if name.endswith(".yaml") else f"{name}.yaml")
    if packaged.is_file():
        return str(packaged)
    raise UserError("no such config file or packaged config", f"--config {name}", "e.g. --config tiny/m2po-s32")


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
    p.add_argument(
        "--resume",
        nargs="?",
        const="yes",
        choices=("yes", "auto"),
        help="continue the run in --out from its last checkpoint (it must exist); `--resume auto` starts a new "
        "run when --out holds none (pipelines). Raise run.total_updates with --set to extend a finished run.",
    )
    p.add_argument("--help-config", action="store_true", help="print every config key with its help and exit")
    p.add_argument(
        "--warm-start-only",
        action="store_true",
        help="build (or find) the cached supervised warm start of this config and exit",
    )


def interrupted_line(out: Path, trainer: object | None) -> str:
    """``interrupted at update N; resume with `m2po train --out X --resume` ...``."""
    from .resume import checkpoint_path

    if not (out / "config.yaml").exists():
        return f"m2po train: interrupted before {out} held a run; nothing was written"
    update = getattr(trainer, "update", 0)
    ckpt = checkpoint_path(out)
    where = (
        f"it continues from the checkpoint at update {getattr(trainer, 'saved_update', '?')}"
        if ckpt.exists()
        else "no checkpoint yet: it starts again from update 0"
    )
    return f"m2po train: interrupted at update {update}; resume with `m2po train --out {out} --resume` ({where})"


def run(args: argparse.Namespace) -> int:
    if args.help_config:
        print(config_help(TrainConfig))
        return 0
    if not args.out and not args.warm_start_only:
        raise UserError("--out DIR is required", "--out", "e.g. --out runs/m2po-s32")
    out = Path(args.out) if args.out else None
    resume = bool(args.resume) and out is not None and (out / "config.yaml").is_file()
    if args.resume == "yes" and not resume:
        raise UserError(
            "nothing to resume: no run here",
            out,
            "check --out, or drop --resume to start a new run (`--resume auto` starts one when there is none)",
        )
    path = None
    if resume and not args.config:
        path = str(out / "config.yaml")
    elif args.config:
        path = resolve_config_path(args.config)
    cfg = load_config(TrainConfig, path, args.overrides)
    if args.warm_start_only:
        from .build import build_run

        print(f"warm start ready: {build_run(cfg).manifest.get('warm_start', {}).get('path')}")
        return 0
    assert out is not None
    return train(cfg, out, resume)


def train(cfg: TrainConfig, out: Path, resume: bool) -> int:
    from .loop import Trainer
    from .progress import summary
    from .resume import plan_resume, restore_logs

    check_writable(out, f"make {out} writable or choose another --out")
    if cfg.model.kind == "tiny" and cfg.warm_start.enabled:
        check_writable(cfg.warm_start.resolved_cache_dir(), "make it writable or set warm_start.cache_dir")
    plan = plan_resume(out, cfg) if resume else None
    if plan is not None:
        for note in plan.notes:
            print(f"m2po train: {note}", file=sys.stderr)
        if plan.complete:
            assert plan.state is not None
            restore_logs(out, plan.state)
            print(
                f"m2po train: {out} is complete ({plan.update} of {cfg.run.total_updates} updates); to extend it, "
                f"raise run.total_updates: m2po train --out {out} --resume --set run.total_updates="
                f"{2 * cfg.run.total_updates}"
            )
            return 0
    previous = interrupts.install(signal.SIGINT, signal.SIGTERM)  # never mid-write; carry the signal number
    trainer = None
    try:
        trainer = Trainer(cfg, out, resume=plan or False)
        trainer.train()
    except KeyboardInterrupt as e:
        signum = e.args[0] if e.args and e.args[0] in (signal.SIGINT, signal.SIGTERM) else signal.SIGINT
        if trainer is not None:
            trainer.close()
        print(interrupted_line(out, trainer), file=sys.stderr)
        return 128 + signum
    except OSError as e:
        if trainer is not None:
            trainer.close()
        if e.errno not in DISK_FULL | NOT_WRITABLE:
            raise
        resumable = trainer is not None and (out / "config.yaml").exists()
        then = f"then resume with `m2po train --out {out} --resume`" if resumable else "then run the command again"
        fix = f"free some space, {then}" if e.errno in DISK_FULL else f"make {out} writable, {then}"
        raise from_os_error(e, fix) from None
    finally:
        interrupts.restore(previous)
    print(summary(out, cfg.run.total_updates, trainer.wall_seconds))
    return 0
