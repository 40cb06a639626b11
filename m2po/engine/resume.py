"""What ``m2po train --out X --resume`` checks before it trains a single update.

A resume continues a run bit for bit, so everything that could make it continue something else
is refused with one line naming the problem: no run in ``X`` (a typo), a checkpoint that is
missing although the logs show one was written, a corrupt checkpoint, a log cut shorter than
the checkpoint and not restorable, or a config that differs from the run's in a key that changes
the numbers. Keys that only change what is shown or kept (:data:`COSMETIC`) may change, and
``run.total_updates`` may be raised to extend a finished run.

Each checkpoint also stores the bytes of the three logs up to its update, so a log that was cut or
deleted (a pipeline that removes a failed job's outputs does that) is restored exactly.
"""

from __future__ import annotations

import errno
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError, load_config, to_dict
from ..errors import NOT_WRITABLE, UserError
from ..fileio import atomic_write_bytes
from .train_config import TrainConfig

#: Keys that may differ on resume: they change what is shown, how often evaluations and checkpoints
#: are written, or where the warm starts are cached, never a training number (evaluations draw
#: from their own seeded generator, so their frequency does not touch the training random stream).
COSMETIC = (
    "run.progress",
    "run.log_every",
    "run.eval_every",
    "run.checkpoint_every",
    "run.queue_in_memory",
    "warm_start.cache_dir",
)
#: the run's logs, by the key the checkpoint stores them under
LOG_FILES = {"updates": "updates.csv", "evals": "evals.csv", "tokens": "tokens.csv"}


def checkpoint_path(out: Path) -> Path:
    return out / "checkpoints" / "last.pt"


@dataclass
class ResumePlan:
    """``state`` is the loaded checkpoint (None: the run never reached one and restarts at update 0)."""

    out: Path
    state: dict[str, Any] | None
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    complete: bool = False

    @property
    def update(self) -> int:
        return int(self.state["update"]) if self.state else 0


def _flat(cfg: TrainConfig) -> dict[str, Any]:
    """``section.key -> value`` (a dict-valued key such as ``algo.loss_params`` stays one value)."""
    return {f"{section}.{key}": v for section, keys in to_dict(cfg).items() for key, v in keys.items()}


def config_changes(saved: TrainConfig, new: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (run's value, new value)}`` for every key that differs."""
    a, b = _flat(saved), _flat(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _data_rows(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as f:
        return max(0, sum(1 for _ in f) - 1)


def load_checkpoint_state(path: Path, last_update_logged: int) -> dict[str, Any]:
    """The checkpoint at ``path``; a :class:`UserError` when it cannot be read."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(state, dict) or "update" not in state or "model" not in state:
            raise ValueError("not a training checkpoint")
        return state
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile, KeyError) as e:
        if isinstance(e, OSError) and e.errno in NOT_WRITABLE | {errno.ENOENT}:
            raise  # not readable: the one-line error names the file and says so
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise UserError(
            f"the checkpoint is corrupt or truncated ({reason})",
            path,
            f"restore it from a backup, or start the run again with another --out (its logs reach update "
            f"{last_update_logged})",
        ) from None


def plan_resume(out: Path, cfg: TrainConfig) -> ResumePlan:
    """Check that the run in ``out`` can continue under ``cfg``; a :class:`UserError` says why not."""
    config_file = out / "config.yaml"
    if not config_file.is_file():
        raise UserError("nothing to resume: no run here", out, "check --out, or drop --resume to start a new run")
    try:
        saved = load_config(TrainConfig, config_file)
    except ConfigError as e:
        raise UserError(f"the run's config is not readable ({e})", config_file, "restore the run's config.yaml") from e
    changes = config_changes(saved, cfg)
    total = changes.pop("run.total_updates", None)
    refused = {k: v for k, v in changes.items() if k not in COSMETIC}
    if refused:
        shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in ((k, *v) for k, v in refused.items()))
        raise UserError(
            f"the config differs from the run's in {shown}",
            config_file,
            "resume with the run's own config (drop those --set/--config), or start a new run with another --out",
        )
    rows = _data_rows(out / LOG_FILES["updates"])
    ckpt = checkpoint_path(out)
    if not ckpt.exists():
        every = saved.run.checkpoint_every
        if rows >= every:
            raise UserError(
                f"the checkpoint is missing although updates.csv has {rows} updates (one is written every {every})",
                ckpt,
                "restore checkpoints/last.pt, or start the run again with another --out",
            )
        note = f"no checkpoint yet (the run stopped before update {every}): starting {out} again from update 0"
        return ResumePlan(out, None, changes, [note])
    state = load_checkpoint_state(ckpt, rows - 1)
    update = int(state["update"])
    if total is not None and cfg.run.total_updates < update:
        raise UserError(
            f"run.total_updates={cfg.run.total_updates} is below the {update} updates already made",
            "run.total_updates",
            f"give at least {update} (raising it extends the run)",
        )
    plan = ResumePlan(out, state, changes)
    if total is not None:
        changes["run.total_updates"] = total
        plan.notes.append(f"extending {out} from {total[0]} to {total[1]} updates")
    for key, (a, b) in changes.items():
        if key != "run.total_updates":
            plan.notes.append(f"{key}: {a!r} -> {b!r} (allowed: it changes no training number)")
    plan.notes += check_logs(out, state)
    plan.complete = update >= cfg.run.total_updates
    return plan


def check_logs(out: Path, state: dict[str, Any]) -> list[str]:
    """Notes on logs that no longer hold the checkpoint's rows (the checkpoint restores them); a
    :class:`UserError` when it cannot (a checkpoint written before logs were stored in it)."""
    notes = []
    stored = state.get("logs")
    for key, name in LOG_FILES.items():
        path = out / name
        need = int(state["log_rows"][key])
        if stored is not None:
            want = stored[key]
            have = path.read_bytes() if path.exists() else b""
            if not have.startswith(want):
                kept = _data_rows(path)
                notes.append(f"restored {name} from the checkpoint ({kept} rows on disk, {need} expected)")
        elif _data_rows(path) < need or not _complete_rows(path, need):
            raise UserError(
                f"{name} holds fewer complete rows than the checkpoint at update {state['update']} needs ({need})",
                path,
                "restore the log, or start the run again with another --out",
            )
    return notes


def _complete_rows(path: Path, rows: int) -> bool:
    """The header and the first ``rows`` rows all end with a newline."""
    with path.open("rb") as f:
        lines = f.readlines()
    return all(line.endswith(b"\n") for line in lines[: rows + 1])


def restore_logs(out: Path, state: dict[str, Any]) -> None:
    """Rewrite each log as the checkpoint stored it (a finished run whose log was cut)."""
    for key, name in LOG_FILES.items():
        want = (state.get("logs") or {}).get(key)
        path = out / name
        if want is not None and (not path.exists() or path.read_bytes() != want):
            atomic_write_bytes(path, want)
