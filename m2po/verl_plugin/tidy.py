"""A verl run's logs → the run directory's tidy logs (docs/architecture.md, contracts 2 and 3).

    python -m m2po.verl_plugin.tidy results/paper/runs/<run_id>

A verl run (:mod:`m2po.verl_plugin.launch`) writes two logs into its run directory: verl's file logger
writes ``metrics.jsonl`` (``VERL_FILE_LOGGER_PATH``: one line ``{"step": <global step>, "data": {<verl
metric>: value}}`` per step, plus one for the validation before training, step 0), and
:class:`~m2po.verl_plugin.trainer.M2POTrainer` writes ``updates.jsonl``, one record per optimizer update
(:mod:`m2po.verl_plugin.update_log`). :func:`tidy_run` turns them into

* ``updates.csv`` with the tiny engine's columns (``m2po.engine.bookkeeping.UPDATE_COLUMNS``), from
  ``updates.jsonl``;
* ``evals.csv`` with the verl columns ``update, benchmark, avg_at_k, ci_low, ci_high, k, n_problems,
  n_timeouts`` (what :func:`m2po.analysis.accuracy` reads), from ``metrics.jsonl``;
* ``tokens.csv``: the header only (verl logs no per-token sample; Fig. 4b needs the tiny engine's).

**Granularity: one row per optimizer update.** ``update`` is the global 0-based index of the update
(updates verl skipped for a non-finite gradient norm are not updates and make no row), ``step`` the
0-based training step whose rollout batch it trained on (prefill steps, which only generate, are not
training steps), i.e. ``update // n`` with ``n`` updates per step unless verl skipped one;
``behaviour_version`` the number of updates the policy that generated the batch had made and
``staleness = update − behaviour_version``, both from the trainer's queue. The loss metrics
(``m2po.losses.METRIC_NAMES``: ``m2``, ``m2_after``, ``masked_frac``, the ratio statistics, ``kl_*``,
``ess``, ``n_tokens``, …) are the exact values of the update's optimizer mini-batch over all its micro-batches
and data-parallel ranks (:func:`m2po.verl_plugin.adapter.exact_minibatch_metrics`); ``loss`` and
``grad_norm`` are verl's values for that optimizer step, ``lr`` the learning rate it used. Two columns
exist once per step and are repeated on each of the step's rows: ``reward_mean`` (the rollout batch's
mean score over its non-aborted responses, verl's ``critic/score/mean``) and ``entropy`` (the
token-mean entropy of the batch under the policy that computed its log-probs: the behaviour policy,
or the proximal one for ``decoupled_ppo``).

A run without ``updates.jsonl`` whose ``metrics.jsonl`` has training steps (written before per-update
records existed, or not by the M2PO trainer) fails with a message saying so: verl's step averages cannot
be split into updates, and a table mixing per-step and per-update rows would mislead the figures.

**Evaluations.** verl's validation metric ``val-{core,aux}/<data_source>/<var>/mean@<k>`` (``var`` =
``acc`` from our reward function, else ``score``/``reward``; the largest ``k``) becomes one ``evals.csv``
row per data source: ``avg_at_k`` = the mean accuracy over ``k`` samples per problem, ``k``, and
``update`` = the number of updates the validated policy has made (the validation runs after the step's
update; step 0 is the initial policy). ``ci_low``, ``ci_high``, ``n_problems`` and ``n_timeouts`` are not
in verl's log and stay empty (the offline ``m2po eval`` of the checkpoints fills them). A step logged
twice keeps the later values.

**Resumed runs.** verl 0.9.1's ``FileLogger`` opens the file with ``"wb"``, so a resumed run would
*truncate* ``metrics.jsonl``. The launcher therefore renames an existing one to
``metrics.session-<k>.jsonl`` (:func:`rotate_metrics`) before it starts verl again, and
:func:`read_run_metrics` reads every session in order, then ``metrics.jsonl``. A validation line at a
resumed step without training keys takes its update count from the next step's ``m2po/updates_done``.
``updates.jsonl`` is append-only across sessions; a resumed session's marker discards the records of the
updates it redoes (:func:`m2po.verl_plugin.update_log.read_update_log`).
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import re
import sys
from pathlib import Path
from typing import Any

from m2po.engine.bookkeeping import TOKEN_COLUMNS, UPDATE_COLUMNS
from m2po.engine.rundir import atomic_write_bytes, format_value

from .launch_common import METRICS_FILE, metrics_files, rotate_metrics
from .update_log import UPDATES_LOG, MetricsFormatError, json_lines, read_update_log

__all__ = [
    "EVAL_COLUMNS",
    "METRICS_FILE",
    "UPDATES_LOG",
    "MetricsFormatError",
    "eval_records",
    "eval_rows",
    "metrics_files",
    "read_metrics",
    "read_run_metrics",
    "rotate_metrics",
    "tidy_run",
    "update_rows",
]

#: the verl runs' evaluation columns (docs/architecture.md, contract 3)
EVAL_COLUMNS = ["update", "benchmark", "avg_at_k", "ci_low", "ci_high", "k", "n_problems", "n_timeouts"]

#: keys that mark a step in which the actor was updated (for logs without ``m2po/prefill``)
_TRAIN_MARKERS = ("actor/loss", "actor/pg_loss", "actor/grad_norm")
_VAL_KEY = re.compile(r"^val-(?:core|aux)/(?P<source>.+)/(?P<var>[^/]+)/mean@(?P<k>\d+)$")
_VAL_VARS = ("acc", "score", "reward")  # preference order


def read_metrics(path: str | Path) -> dict[int, dict[str, Any]]:
    """``{global step: metrics}`` of a verl ``metrics.jsonl``, lines of the same step merged in file order
    (later values win). Blank lines are skipped; anything else malformed raises
    :class:`MetricsFormatError` naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: a verl run writes it when launched with VERL_FILE_LOGGER_PATH "
            f"(python -m m2po.verl_plugin.launch sets it) and trainer.logger including 'file'"
        )
    steps: dict[int, dict[str, Any]] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line, obj in json_lines(path, f):
            step = obj.get("step") if isinstance(obj, dict) else None
            data = obj.get("data") if isinstance(obj, dict) else None
            if isinstance(step, bool) or not isinstance(step, int | float) or not isinstance(data, dict):
                raise MetricsFormatError(
                    f'{path}:{lineno}: expected verl\'s file-logger line {{"step": <int>, "data": {{...}}}}, '
                    f"got {line.strip()[:120]!r}"
                )
            steps.setdefault(int(step), {}).update(data)
    return steps


def read_run_metrics(out_dir: str | Path) -> dict[int, dict[str, Any]]:
    """:func:`read_metrics` over every session of a run (later sessions win for a step logged twice)."""
    files = metrics_files(out_dir)
    if not files:
        return read_metrics(Path(out_dir) / METRICS_FILE)  # raises, naming the file
    steps: dict[int, dict[str, Any]] = {}
    for path in files:
        for step, data in read_metrics(path).items():
            steps.setdefault(step, {}).update(data)
    return steps


def _num(value: Any) -> float | None:
    """A finite-or-not float, or None for anything that is not a number (null, strings, lists)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _as_int(value: float | None) -> int | None:
    return int(round(value)) if value is not None and math.isfinite(value) else None


def _is_training(data: dict[str, Any]) -> bool:
    prefill = _num(data.get("m2po/prefill"))
    if prefill is not None:
        return prefill == 0.0
    return any(_num(data.get(k)) is not None for k in _TRAIN_MARKERS)


def _updates_per_step(data: dict[str, Any], default: int) -> int:
    """``n`` from the trainer's staleness range of the step (it spans the step's n updates), else ``default``."""
    lo, hi = _as_int(_num(data.get("m2po/staleness_min"))), _as_int(_num(data.get("m2po/staleness_max")))
    return hi - lo + 1 if lo is not None and hi is not None and hi >= lo else default


def eval_rows(data: dict[str, Any], update: int) -> list[dict[str, Any]]:
    """One ``evals.csv`` row per data source with a ``val-*/<source>/<var>/mean@<k>`` metric in ``data``."""
    best: dict[str, tuple[int, int, float]] = {}  # source -> (var rank, -k, value): smallest wins
    for key, value in data.items():
        m = _VAL_KEY.match(key)
        v = _num(value)
        if not m or v is None or m.group("var") not in _VAL_VARS:
            continue
        cand = (_VAL_VARS.index(m.group("var")), -int(m.group("k")), v)
        source = m.group("source")
        if source not in best or cand[:2] < best[source][:2]:
            best[source] = cand
    return [
        {"update": update, "benchmark": source, "avg_at_k": v, "ci_low": None, "ci_high": None, "k": -neg_k,
         "n_problems": None, "n_timeouts": None}
        for source, (_, neg_k, v) in sorted(best.items())
    ]  # fmt: skip


def eval_records(steps: dict[int, dict[str, Any]], updates_per_step: int = 4) -> list[dict[str, Any]]:
    """``evals.csv`` rows from :func:`read_metrics`'s ``{step: metrics}`` (module docstring)."""
    order = sorted(steps)
    evals: list[dict[str, Any]] = []
    done = 0  # optimizer updates made so far
    for idx, g in enumerate(order):
        data = steps[g]
        known = _as_int(_num(data.get("m2po/updates_done")))
        if _is_training(data):
            done = known if known is not None else done + _updates_per_step(data, updates_per_step)
        elif known is not None:  # a prefill step
            done = known
        elif idx + 1 < len(order) and order[idx + 1] == g + 1:
            # a line without the trainer's keys (validation before training; at a resumed step the file
            # was truncated): updates done = the next step's count before its own update
            nxt = steps[g + 1]
            nxt_done = _as_int(_num(nxt.get("m2po/updates_done")))
            if nxt_done is not None:
                done = nxt_done - (_updates_per_step(nxt, updates_per_step) if _is_training(nxt) else 0)
        evals.extend(eval_rows(data, done))
    return evals


def update_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``updates.csv`` rows (``UPDATE_COLUMNS``) from :func:`~m2po.verl_plugin.update_log.read_update_log`'s
    records; a column a record lacks is an empty cell."""
    return [{c: record.get(c) for c in UPDATE_COLUMNS} for record in records]


def _csv_bytes(columns: list[str], rows: list[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([format_value(row.get(c)) for c in columns])
    return buf.getvalue().encode()


def tidy_run(out_dir: str | Path, updates_per_step: int = 4) -> None:
    """Write ``updates.csv``, ``evals.csv`` and a header-only ``tokens.csv`` into ``out_dir`` from its
    ``updates.jsonl`` and ``metrics.jsonl`` (each file replaced atomically; nothing written on error).
    ``updates_per_step`` is used only for an evaluation whose log has no ``m2po/staleness_min/max`` to
    infer it from (the paper's runs: 256 / 64 = 4)."""
    out = Path(out_dir)
    log = out / UPDATES_LOG
    if not log.exists() and not metrics_files(out):
        raise FileNotFoundError(
            f"{out} holds neither {UPDATES_LOG} nor {METRICS_FILE}: a verl run writes them when launched with "
            f"`python -m m2po.verl_plugin.launch` (the M2PO trainer; VERL_FILE_LOGGER_PATH, trainer.logger 'file')"
        )
    steps = read_run_metrics(out) if metrics_files(out) else {}
    if log.exists():
        updates = update_rows(read_update_log(log))
    elif trained := [g for g, data in sorted(steps.items()) if _is_training(data)]:
        raise MetricsFormatError(
            f"{log} does not exist, but {out / METRICS_FILE} logs training steps ({trained[0]}..{trained[-1]}): "
            "updates.csv has one row per optimizer update, which only the M2PO trainer's updates.jsonl records "
            "(metrics.jsonl holds verl's step averages); this run was made without it (an older m2po, or not "
            "through `python -m m2po.verl_plugin.main`/`launch`)"
        )
    else:
        updates = []
    evals = eval_records(steps, updates_per_step)
    atomic_write_bytes(out / "updates.csv", _csv_bytes(UPDATE_COLUMNS, updates))
    atomic_write_bytes(out / "evals.csv", _csv_bytes(EVAL_COLUMNS, evals))
    atomic_write_bytes(out / "tokens.csv", _csv_bytes(TOKEN_COLUMNS, []))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m m2po.verl_plugin.tidy", description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", type=Path, help="the run directory holding updates.jsonl and metrics.jsonl")
    p.add_argument("--updates-per-step", type=int, default=4, help="n, if the log does not show it (default 4)")
    args = p.parse_args(argv)
    try:
        tidy_run(args.out_dir, args.updates_per_step)
    except (FileNotFoundError, MetricsFormatError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out_dir}/updates.csv, evals.csv, tokens.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
