"""``updates.jsonl``: one record per optimizer update of a verl run, written by the M2PO trainer.

verl logs one value per metric and *step* (its ``reduce_metrics`` averages the step's ``n`` updates), but
the run-directory contract (``updates.csv``) and the paper's figures have optimizer updates on the x axis.
The per-update values exist on the driver inside the step: verl's ``_update_actor`` returns one value per
optimizer mini-batch for every actor metric, made exact per mini-batch by the M2PO worker
(:func:`m2po.verl_plugin.adapter.exact_minibatch_metrics`). :class:`~m2po.verl_plugin.trainer.M2POTrainer`
turns them into records (:func:`update_records`) and appends them here before verl can save the step's
checkpoint; :mod:`m2po.verl_plugin.tidy` turns the file into ``updates.csv``.

Format: one JSON object per line, either an update record ``{"update": u, "step": i, "global_step": g,
"staleness": .., "behaviour_version": .., <updates.csv columns>...}`` or a session marker
``{"session": {"updates_done": U, "global_step": g}}`` written when the trainer starts (fresh, or resumed
from a checkpoint with ``U`` updates done). Reading (:func:`read_update_log`) replays the file: a marker
discards the records of updates ``>= U`` written before it (the steps after the checkpoint that a killed
session made and the resumed one redoes, or never reaches); a record logged twice keeps the later one.

Why a file of its own and not more keys in verl's ``metrics.jsonl``: verl saves the step's checkpoint
*before* it logs the step's metrics line (and validates in between), so a job killed in that window
resumes after a step whose metrics line never existed; the records of a step are on disk before its
checkpoint. The file is append-only (a resumed session adds a marker, nothing is rewritten or
truncated by verl's ``"wb"`` logger) and written by one process: the driver (the Ray TaskRunner; in the
CPU mode rank 0), like ``metrics.jsonl``. Each step's records are one ``write`` plus ``fsync``; a line
torn by a kill is cut off when the next session starts, and a torn last line is ignored when reading.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from m2po.fileio import repair_tail
from m2po.losses import METRIC_NAMES

from .launch_common import METRICS_ENV

__all__ = [
    "RECORD_KEYS",
    "UPDATES_LOG",
    "MetricsFormatError",
    "UpdateLog",
    "read_update_log",
    "update_log_path",
    "update_records",
]

UPDATES_LOG = "updates.jsonl"


def update_log_path(checkpoint_dir: str | os.PathLike[str]) -> Path:
    """Where a run's ``updates.jsonl`` goes: next to verl's ``metrics.jsonl`` (the folder of
    ``$VERL_FILE_LOGGER_PATH``, the run directory when launched by ``m2po.verl_plugin.launch``), else in
    the checkpoint folder ``trainer.default_local_dir``. Absolute, as the launcher makes both."""
    metrics = os.environ.get(METRICS_ENV)
    folder = Path(metrics).parent if metrics else Path(checkpoint_dir)
    return folder.absolute() / UPDATES_LOG


#: the per-update metrics of a record -> the verl metric keys they come from (first present wins); lists
#: with one value per optimizer mini-batch in ``_update_actor``'s output
RECORD_KEYS: dict[str, tuple[str, ...]] = {
    "loss": ("actor/loss", "actor/pg_loss"),
    **{name: (f"actor/m2po/{name}",) for name in METRIC_NAMES},
    "grad_norm": ("actor/grad_norm",),
    "lr": ("actor/update_lr",),
}
# verl's own names, for a run with one of verl's losses (means of micro-batch values, not exact)
RECORD_KEYS["clipped_frac"] += ("actor/pg_clipfrac",)
RECORD_KEYS["kl_k1"] += ("actor/ppo_kl",)


class MetricsFormatError(ValueError):
    """A line of a run's log (``metrics.jsonl``, ``updates.jsonl``) is not what its writer writes."""


def _per_minibatch(metrics: dict[str, Any], keys: tuple[str, ...], count: int) -> list[float | None]:
    for key in keys:
        values = metrics.get(key)
        if values is None:
            continue
        values = list(values) if isinstance(values, list | tuple) else [values]
        if len(values) == count:
            return [float(v) for v in values]
    return [None] * count


def update_records(
    metrics: dict[str, Any],
    *,
    first_update: int,
    behaviour_version: int,
    step: int,
    global_step: int,
    updates_per_step: int,
    step_values: dict[str, float | None] | None = None,
) -> list[dict[str, Any]]:
    """The records of one training step from verl's ``_update_actor`` metrics (one value per mini-batch).

    A mini-batch whose gradient norm is not finite made no update (verl skips its optimizer step) and gets
    no record, so ``update`` counts the updates taken, from ``first_update``; ``staleness = update −
    behaviour_version``. ``step_values`` (values that exist once per step: the rollout batch's
    ``reward_mean``, ``entropy``) are repeated on each record."""
    norms = _per_minibatch(metrics, RECORD_KEYS["grad_norm"], updates_per_step)
    if norms == [None] * updates_per_step:
        raise ValueError(
            f"_update_actor returned no actor/grad_norm with one value per mini-batch ({updates_per_step}); "
            f"got {metrics.get('actor/grad_norm')!r}"
        )
    columns = {col: _per_minibatch(metrics, keys, updates_per_step) for col, keys in RECORD_KEYS.items()}
    records = []
    update = first_update
    for j, norm in enumerate(norms):
        if norm is None or not math.isfinite(norm):
            continue
        record: dict[str, Any] = {
            "update": update,
            "step": step,
            "global_step": global_step,
            "minibatch": j,
            "staleness": update - behaviour_version,
            "behaviour_version": behaviour_version,
            **(step_values or {}),
        }
        record.update({col: values[j] for col, values in columns.items()})
        records.append(record)
        update += 1
    return records


class UpdateLog:
    """Appends records to ``path`` (``updates.jsonl``); one writer per run."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"UpdateLog({str(self.path)!r})"

    def _append(self, lines: Sequence[dict[str, Any]]) -> None:
        data = "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)

    def start_session(self, updates_done: int, global_step: int) -> None:
        """Mark the start of a session that continues from ``updates_done`` updates (0: a fresh run)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_tail(self.path)  # an unterminated last line (a write cut by a kill): the next starts on its own
        self._append([{"session": {"updates_done": int(updates_done), "global_step": int(global_step)}}])

    def append(self, records: Sequence[dict[str, Any]]) -> None:
        """Append one step's records in one write (then fsync)."""
        if records:
            self._append(records)


def json_lines(path: Path, lines: Iterable[str]) -> Iterator[tuple[int, str, Any]]:
    """``(line number, line, parsed value)`` of every non-blank line of the JSONL file ``path``; a line that
    is not JSON raises :class:`MetricsFormatError` naming the file and line."""
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise MetricsFormatError(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno})") from e
        yield lineno, line, obj


def read_update_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of ``path`` that the run's final timeline keeps (module docstring), by update index.

    A malformed line raises :class:`MetricsFormatError` naming the file and line, except an unterminated
    last line (a write cut short by a kill), which is ignored."""
    path = Path(path)
    # the text after the last newline is "" or an unterminated line (a write cut short, never acknowledged)
    lines = path.read_text(encoding="utf-8").split("\n")[:-1]
    records: dict[int, dict[str, Any]] = {}
    for lineno, line, obj in json_lines(path, lines):
        session = obj.get("session") if isinstance(obj, dict) else None
        if isinstance(session, dict) and isinstance(session.get("updates_done"), int):
            start = session["updates_done"]
            records = {u: r for u, r in records.items() if u < start}
        elif isinstance(obj, dict) and isinstance(obj.get("update"), int) and not isinstance(obj["update"], bool):
            records[obj["update"]] = obj
        else:
            raise MetricsFormatError(
                f'{path}:{lineno}: expected an update record {{"update": <int>, ...}} or a session marker '
                f'{{"session": {{"updates_done": <int>, ...}}}}, got {line.strip()[:120]!r}'
            )
    return [records[u] for u in sorted(records)]
