"""The evaluation stage of the pipeline: a training run's checkpoints graded on the benchmarks.

Between training and figures (workflow/rules/eval.smk): every checkpoint the run saved is evaluated
with :mod:`m2po.eval.runner` (k samples per problem, math-verify in isolated workers, the verdict memo)
into ``<run>/eval/<checkpoint>/``, and the run's ``benchmarks.csv`` gathers one row per (checkpoint
update, benchmark) (:data:`BENCHMARK_COLUMNS`). The paper's 8-benchmark "Avg" is derived from those rows
by the analysis (:func:`m2po.analysis.aggregate.accuracy`), never stored.

Checkpoints of a run directory:

* the tiny engine: ``checkpoints/best_model-u<update>.pt`` (the model at the run's best in-training
  evaluation: the checkpoint the paper's selection rule picks, §6) and ``final_model.pt`` (update =
  ``run.total_updates``);
* verl: ``checkpoints/global_step_<N>/actor`` (verl's FSDP layout, every ``trainer.save_freq`` = 50
  steps and the last one). It is first converted into a Hugging Face folder by verl's own model merger
  (``python -m verl.model_merger merge --backend fsdp``), evaluated, and the merged folder is deleted
  once graded. Its update count is ``updates_done`` of ``m2po_stale_queue.json`` beside ``actor/``.

A checkpoint whose evaluation finished with the same settings (``eval/<name>/stage.json``) is skipped
without loading (or merging) anything; an interrupted one continues from its sample caches.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import UserError
from ..fileio import atomic_write_text
from .metrics import group_by_problem
from .report import to_csv

if TYPE_CHECKING:  # the runner imports the backends: loaded only when a checkpoint is evaluated
    from .runner import Evaluation

#: one row per (checkpoint update, benchmark); accuracies are fractions in [0, 1]
BENCHMARK_COLUMNS = [
    "update",
    "benchmark",
    "k",
    "avg_at_k",
    "se",
    "ci_low",
    "ci_high",
    "pass_at_k",
    "n_problems",
    "n_samples",
    "n_no_answer",
    "n_timeouts",
    "n_errors",
    "grader",
    "grader_version",
    "extraction",
    "backend",
    "temperature",
    "top_p",
    "max_new_tokens",
    "checkpoint",
]
BENCHMARKS_CSV = "benchmarks.csv"
STAGE_JSON = "stage.json"
_BEST = re.compile(r"^best_model-u(\d+)\.pt$")
_STEP = re.compile(r"^global_step_(\d+)$")
#: the stale queue's manifest in a verl checkpoint (m2po.verl_plugin.buffer.QUEUE_MANIFEST; not imported:
#: m2po.verl_plugin imports verl)
QUEUE_MANIFEST = "m2po_stale_queue.json"


@dataclass(frozen=True)
class Checkpoint:
    """One saved model of a run: evaluated into ``<run>/eval/<name>/``."""

    name: str
    update: int
    path: Path  # the tiny model file, or verl's actor folder
    kind: str  # "tiny" | "verl"


def _run_setting(run: Path, section: str, key: str) -> int:
    """An integer setting of a tiny run's resolved ``config.yaml`` (e.g. ``run.total_updates``)."""
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").exists() else None
    value = ((cfg or {}).get(section) or {}).get(key)
    if not isinstance(value, int):
        raise UserError(f"the run's config names no {section}.{key}", run / "config.yaml", "is this a tiny run?")
    return value


def run_response_length(run: Path) -> int:
    """A tiny run's ``rollout.max_new_tokens``: its samples are evaluated at the length it was trained with."""
    return _run_setting(run, "rollout", "max_new_tokens")


def verl_update(step_dir: Path) -> int:
    """Optimizer updates made by verl checkpoint ``global_step_<N>``: ``updates_done`` of the stale queue's
    manifest beside ``actor/`` (prefill steps and skipped steps make none), else N x (updates per step) (a
    plain verl run)."""
    manifest = step_dir / QUEUE_MANIFEST
    if manifest.exists():
        return int(json.loads(manifest.read_text())["updates_done"])
    return verl_schedule()[1] * int(_STEP.match(step_dir.name).group(1))  # type: ignore[union-attr]


def find_checkpoints(run: Path) -> list[Checkpoint]:
    """Every checkpoint of a run directory (tiny engine or verl), by update; a tiny best that is also the
    final model is listed once."""
    ckpts: dict[str, Checkpoint] = {}
    folder = run / "checkpoints"
    if folder.is_dir():
        for d in folder.iterdir():
            m = _STEP.match(d.name)
            if m and (d / "actor").is_dir():
                ckpts[d.name] = Checkpoint(d.name, verl_update(d), d / "actor", "verl")
    tiny: dict[int, Checkpoint] = {}
    for p in folder.glob("best_model-u*.pt") if folder.is_dir() else []:
        if m := _BEST.match(p.name):
            tiny[int(m.group(1))] = Checkpoint(f"u{int(m.group(1)):06d}", int(m.group(1)), p, "tiny")
    if (run / "final_model.pt").exists():
        total = _run_setting(run, "run", "total_updates")
        tiny[total] = Checkpoint(f"u{total:06d}", total, run / "final_model.pt", "tiny")
    ckpts.update({c.name: c for c in tiny.values()})
    return sorted(ckpts.values(), key=lambda c: (c.update, c.name))


def every_nth(items: Sequence[Any], every: int) -> list[Any]:
    """Every ``every``-th item (the ``every``-th, the 2·``every``-th, ...) and always the last one."""
    if every < 1:
        raise UserError(f"--every must be >= 1, got {every}", "--every", "1 evaluates every checkpoint")
    keep = [x for i, x in enumerate(items) if (i + 1) % every == 0]
    if items and (not keep or keep[-1] is not items[-1]):
        keep.append(items[-1])
    return keep


#: the verl runs' trainer config (the launcher and ``python -m m2po.verl_plugin.main`` compose it)
VERL_TRAINER_YAML = Path(__file__).resolve().parents[2] / "workflow" / "verl_hydra" / "m2po_trainer.yaml"


def verl_schedule(trainer_yaml: Path = VERL_TRAINER_YAML) -> tuple[int, int]:
    """``(trainer.save_freq, optimizer updates per step)`` of the verl runs' trainer config (50 and 256 / 64 = 4),
    read from the YAML rather than from :mod:`m2po.verl_plugin` (which imports verl)."""
    import yaml

    cfg = yaml.safe_load(trainer_yaml.read_text())
    per_step = int(cfg["data"]["train_batch_size"]) // int(cfg["actor_rollout_ref"]["actor"]["ppo_mini_batch_size"])
    return int(cfg["trainer"]["save_freq"]), per_step


def planned_verl_steps(staleness: int, every: int = 1, steps: int = 1000) -> list[int]:
    """The global steps a paper run will checkpoint (the known schedule the pipeline's dry run lists):
    every ``trainer.save_freq`` steps of ``steps + staleness / (updates per step)`` (the launcher adds the
    prefill steps) and the last one, thinned to every ``every``-th (the last always kept)."""
    freq, per_step = verl_schedule()
    total = steps + staleness // per_step
    saved = list(range(freq, total + 1, freq))
    if not saved or saved[-1] != total:
        saved.append(total)
    return every_nth(saved, every)


def merge_verl(actor: Path, target: Path) -> Path:
    """verl's own model merger: FSDP shards of ``actor`` -> a Hugging Face model folder ``target``."""
    shutil.rmtree(target, ignore_errors=True)  # a merge cut short leaves a partial folder
    cmd = [sys.executable, "-m", "verl.model_merger", "merge", "--backend", "fsdp"]
    cmd += ["--local_dir", str(actor), "--target_dir", str(target)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0 or not (target / "config.json").exists():
        tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
        raise UserError(f"verl's model merger failed ({' / '.join(tail)})", actor, "check the checkpoint's files")
    return target


def _settings_digest(cfg: Any, ckpt_fingerprint: str) -> dict[str, Any]:
    """What makes a finished checkpoint evaluation reusable: the protocol and the checkpoint's bytes."""
    keep = ("backend", "benchmarks", "k", "limit", "temperature", "top_p", "max_new_tokens", "seed", "extraction")
    return {
        **{key: getattr(cfg, key) for key in keep},
        "timeout_s": cfg.timeout_s,
        "data_dir": str(Path(cfg.data_dir).resolve()),
        "checkpoint": ckpt_fingerprint,
    }


def evaluate_checkpoint(run: Path, ckpt: Checkpoint, make_config: Any, merge_dir: Path | None = None) -> list[dict]:
    """Evaluate one checkpoint into ``<run>/eval/<name>/`` and return its :data:`BENCHMARK_COLUMNS` rows.

    ``make_config(model, out, update)`` builds the :class:`~m2po.eval.eval_config.EvalConfig`. Skipped (nothing
    loaded or merged) when ``stage.json`` shows a finished evaluation with the same settings."""
    from .backends.base import fingerprint
    from .runner import Evaluation

    out = run / "eval" / ckpt.name
    settings = _settings_digest(make_config(str(ckpt.path), out, ckpt.update), fingerprint(ckpt.path))
    stamp = out / STAGE_JSON
    if stamp.exists() and (out / BENCHMARKS_CSV).exists():
        if json.loads(stamp.read_text()).get("settings") == settings:
            return read_rows(out / BENCHMARKS_CSV)
    model, merged = ckpt.path, None
    if ckpt.kind == "verl":
        merged = merge_verl(ckpt.path, (merge_dir or out) / f"merged-{run.name}-{ckpt.name}")
        model = merged
    cfg = make_config(str(model), out, ckpt.update)
    cfg.model_id = cfg.model_id or f"{run.name}@{ckpt.name}"
    evaluation = Evaluation(cfg)
    rows = checkpoint_rows(evaluation, evaluation.run(), ckpt, run)
    atomic_write_text(out / BENCHMARKS_CSV, to_csv(rows, BENCHMARK_COLUMNS))
    atomic_write_text(stamp, json.dumps({"settings": settings, "counts": evaluation.counts}, indent=1) + "\n")
    if merged is not None:
        shutil.rmtree(merged, ignore_errors=True)  # graded: the checkpoint itself stays
    return rows


def checkpoint_rows(evaluation: Evaluation, summary: list[dict[str, Any]], ckpt: Checkpoint, run: Path) -> list[dict]:
    """The :data:`BENCHMARK_COLUMNS` rows of a finished :class:`~m2po.eval.runner.Evaluation` of ``ckpt``: its
    ``summary`` rows (the ones in its summary.csv) with the s.e. over problems, pass@k and the protocol."""
    params, grading, records = evaluation.params, evaluation.grader, evaluation.records
    out_rows = []
    for row in summary:
        b = row["benchmark"]
        if b not in records:
            continue  # the paper_avg8 row: derived by the analysis, not stored
        k = int(row["k"])
        scores = [float(np.mean([bool(r["correct"]) for r in rs])) for rs in group_by_problem(records[b], k).values()]
        se = float(np.std(scores, ddof=1) / math.sqrt(len(scores))) if len(scores) > 1 else math.nan
        out_rows.append(
            {
                **{c: row[c] for c in ("update", "benchmark", "k", "avg_at_k", "ci_low", "ci_high", "n_problems")},
                "se": se,
                "pass_at_k": evaluation.curves[b].get(k, math.nan),
                **{c: row[c] for c in ("n_samples", "n_no_answer", "n_timeouts", "n_errors")},
                "grader": grading["grader"],
                "grader_version": grading["grader_version"],
                "extraction": grading["extraction"],
                "backend": evaluation.cfg.backend,
                "temperature": params.temperature,
                "top_p": params.top_p,
                "max_new_tokens": params.max_new_tokens,
                "checkpoint": str(ckpt.path.relative_to(run)) if ckpt.path.is_relative_to(run) else str(ckpt.path),
            }
        )
    return out_rows


def read_rows(path: Path) -> list[dict[str, Any]]:
    import csv

    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def collect(run: Path) -> Path:
    """``<run>/benchmarks.csv`` from every finished checkpoint evaluation under ``<run>/eval/``, by update.

    A tiny run's evaluation counts only while its checkpoint is still the run's, same bytes: the trainer
    replaces ``best_model-u*.pt`` when a better evaluation comes, and a run trained again writes new files.
    A verl checkpoint's evaluation counts even after the checkpoint was deleted (to free disk)."""
    from .backends.base import fingerprint

    current = {c.name: c for c in find_checkpoints(run)}
    rows: list[dict[str, Any]] = []
    for part in sorted((run / "eval").glob(f"*/{BENCHMARKS_CSV}")):
        stamp = part.parent / STAGE_JSON
        if not stamp.exists():
            continue
        name = part.parent.name
        if not _STEP.match(name):
            ckpt = current.get(name)
            graded = json.loads(stamp.read_text())["settings"]["checkpoint"]
            if ckpt is None or fingerprint(ckpt.path) != graded:
                print(f"{run.name}: eval/{name} graded a checkpoint the run no longer has: left out", file=sys.stderr)
                continue
        rows += read_rows(part)
    if not rows:
        raise UserError("no finished checkpoint evaluation", run / "eval", "evaluate the run first (m2po eval-run)")
    rows.sort(key=lambda r: int(r["update"]))  # stable: benchmarks keep their suite order
    path = run / BENCHMARKS_CSV
    atomic_write_text(path, to_csv(rows, BENCHMARK_COLUMNS))
    return path
