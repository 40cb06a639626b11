"""Load a results tree of run directories (docs/architecture.md, contract 2) into tidy pandas frames.

A run directory is ``<runs_dir>/<run_id>/`` with ``config.yaml``, ``manifest.json``, ``updates.csv``,
``evals.csv``, (tiny engine) ``tokens.csv`` and, once the evaluation stage has run, ``benchmarks.csv``
(one row per checkpoint update and benchmark, :data:`m2po.eval.stage.BENCHMARK_COLUMNS`).
``run_id = <model>-<method>-s<staleness>-seed<seed>`` plus ``-tau<τ>`` when τ is swept; it is parsed from
the right because model names contain dots and dashes (``Qwen2.5-Math-7B-m2po_released-s256-seed1-tau0.08``).

Robustness: a directory whose name does not parse, or whose ``updates.csv`` is missing, empty or
unreadable, is skipped with a warning naming it. A run with fewer updates than its config asked for
(still running, or killed) is loaded and flagged ``complete = False`` in the inventory (``None`` when
the config does not say how many updates were planned). Rows cut off
mid-write are dropped.

The metadata column ``staleness`` is the run's nominal s; the per-update staleness that
``updates.csv`` logs (which ramps up during the first s updates) is kept as ``staleness_logged``.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import yaml

from ..loss_names import LOSS_NAMES, PAPER_TAU, TAU_LOSSES

log = logging.getLogger("m2po.analysis")

#: every loss name the engines know, longest first so that ``grpo_notr`` wins over ``grpo``
METHODS = tuple(sorted(LOSS_NAMES, key=len, reverse=True))
#: losses whose behaviour depends on τ; for the others the ``tau`` column is NaN
TAU_METHODS = TAU_LOSSES
#: the paper's τ (Algorithm 1); a run without ``-tau`` and without a τ in its config uses it
DEFAULT_TAU = PAPER_TAU
META_COLUMNS = ["run_id", "model", "method", "staleness", "seed", "tau"]
#: the manifest key of a run's wall time (the tiny engine's ``record_wall_time``; verl runs have none)
_WALL_KEY = "wall_seconds"

_RUN_ID = re.compile(
    r"^(?P<model>.+)-(?P<method>" + "|".join(METHODS) + r")-s(?P<staleness>\d+)-seed(?P<seed>\d+)"
    r"(?:-tau(?P<tau>\d*\.?\d+(?:[eE][+-]?\d+)?))?$"
)


@dataclass(frozen=True)
class RunMeta:
    """What a run id says about its run."""

    run_id: str
    model: str
    method: str
    staleness: int
    seed: int
    tau: float | None  # None: not in the id


class RunTables(NamedTuple):
    """The tidy tables of a results tree, each with the ``META_COLUMNS`` first (``benchmarks``: the evaluation
    stage's, empty where it has not run)."""

    updates: pd.DataFrame
    evals: pd.DataFrame
    tokens: pd.DataFrame
    benchmarks: pd.DataFrame = pd.DataFrame(columns=META_COLUMNS)


def parse_run_id(run_id: str) -> RunMeta:
    """Split a run id into model, method, staleness, seed and (optional) τ; ValueError if it does not parse."""
    m = _RUN_ID.match(run_id)
    if not m:
        raise ValueError(
            f"run id {run_id!r} is not <model>-<method>-s<staleness>-seed<seed>[-tau<τ>] "
            f"with method in {sorted(METHODS)}"
        )
    tau = m.group("tau")
    return RunMeta(
        run_id=run_id,
        model=m.group("model"),
        method=m.group("method"),
        staleness=int(m.group("staleness")),
        seed=int(m.group("seed")),
        tau=float(tau) if tau is not None else None,
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


#: text columns of the logs (every other column is numeric)
TEXT_COLUMNS = ("benchmark", "grader", "grader_version", "extraction", "backend", "checkpoint")


def _read_csv(path: Path) -> pd.DataFrame | None:
    """A log CSV with numeric columns coerced; rows cut off mid-write dropped. None if absent/unreadable."""
    if not path.exists():
        return None
    try:
        df = pd.read_csv(path, on_bad_lines="skip")
    except (OSError, ValueError, pd.errors.ParserError):
        return None
    for col in df.columns:  # a column with a garbled cell parses as text: coerce it back to numbers
        if col not in TEXT_COLUMNS and not pd.api.types.is_numeric_dtype(df[col]):
            df[col] = pd.to_numeric(df[col], errors="coerce")
    if "update" in df.columns:
        df = df[df["update"].notna()].copy()
        df["update"] = df["update"].astype(int)
    return df


def _resolve_tau(meta: RunMeta, config: dict[str, Any]) -> float:
    """τ of the id, else ``algo.loss_params.tau`` of the config, else 0.04 — for the τ methods only."""
    if meta.method not in TAU_METHODS:
        return math.nan
    if meta.tau is not None:
        return meta.tau
    params = (config.get("algo") or {}).get("loss_params") or {}
    tau = params.get("tau") if isinstance(params, dict) else None
    return float(tau) if isinstance(tau, int | float) else DEFAULT_TAU


def _wall_seconds(run_dir: Path, manifest: dict[str, Any]) -> tuple[float, bool]:
    """``(seconds, exact)``: the manifest's ``wall_seconds`` if present, else last log write − creation."""
    value = manifest.get(_WALL_KEY)
    if isinstance(value, int | float):
        return float(value), True
    created = manifest.get("created_utc")
    try:
        start = datetime.fromisoformat(str(created)).timestamp()
    except ValueError:
        return math.nan, False
    mtimes = [p.stat().st_mtime for p in (run_dir / "updates.csv", run_dir / "evals.csv") if p.exists()]
    return (max(mtimes) - start if mtimes else math.nan), False


def scan_runs(runs_dir: str | Path, warn: bool = True) -> pd.DataFrame:
    """The inventory: one row per run directory, loadable or not (``status`` says which and why)."""
    inv = _cached(Path(runs_dir))[1]
    if warn:
        _warn(inv)
    return inv.copy()


def _is_false(flag: object) -> bool:
    """``complete`` is known to be False (it may be a bool, a numpy bool, None or NaN)."""
    return flag is not None and not (isinstance(flag, float) and math.isnan(flag)) and not bool(flag)


#: warnings already given by this process (the report's figure scripts load the same tree 13 times)
_WARNED: set[str] = set()


def _count(x: object) -> str:
    return str(int(x)) if isinstance(x, int | float) and math.isfinite(x) else "?"


def _warn(inv: pd.DataFrame) -> None:
    for _, r in inv.iterrows():
        if r["status"] != "ok":
            message = f"run {r['run_id']} {r['status']}"
        elif _is_false(r["complete"]):
            done, planned = _count(r["last_update"]), _count(r.get("planned_updates"))
            message = f"run {r['run_id']} is partial: {done} of {planned} updates"
        else:
            continue
        if message not in _WARNED:
            _WARNED.add(message)
            log.warning("%s", message)


def _scan(runs_dir: Path) -> tuple[pd.DataFrame, dict[str, dict[str, pd.DataFrame | None]]]:
    """The inventory and, per loadable run, its updates and evals frames (read once)."""
    rows: list[dict[str, Any]] = []
    frames: dict[str, dict[str, pd.DataFrame | None]] = {}
    if not runs_dir.is_dir():
        columns = [*META_COLUMNS, "status", "complete", "n_updates", "n_evals", "n_graded", "path"]
        return pd.DataFrame(columns=columns), frames
    for d in sorted(p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        row: dict[str, Any] = {"run_id": d.name, "path": str(d)}
        try:
            meta = parse_run_id(d.name)
        except ValueError as e:
            row["status"] = f"skipped: {e}"
            rows.append(row)
            continue
        config = _read_yaml(d / "config.yaml")
        manifest = _read_json(d / "manifest.json")
        row.update(model=meta.model, method=meta.method, staleness=meta.staleness, seed=meta.seed)
        row["tau"] = _resolve_tau(meta, config)
        updates = _read_csv(d / "updates.csv")
        evals = _read_csv(d / "evals.csv")
        benchmarks = _read_csv(d / "benchmarks.csv")
        planned = (config.get("run") or {}).get("total_updates")
        n_upd = 0 if updates is None else len(updates)
        row.update(
            n_updates=n_upd,
            last_update=int(updates["update"].max()) + 1 if n_upd else 0,
            planned_updates=planned if isinstance(planned, int) else math.nan,
            n_evals=0 if evals is None else int(evals["update"].nunique()),
            n_graded=0 if benchmarks is None or "update" not in benchmarks else int(benchmarks["update"].nunique()),
        )
        row["wall_s"], row["wall_exact"] = _wall_seconds(d, manifest)
        if updates is None or n_upd == 0:
            row["status"] = "skipped: updates.csv missing, empty or unreadable"
        else:
            row["status"] = "ok"
            frames[d.name] = {"updates": updates, "evals": evals, "benchmarks": benchmarks}
        # None: the config does not say how many updates were planned (e.g. a verl run)
        row["complete"] = (
            (row["status"] == "ok" and row["last_update"] >= planned) if isinstance(planned, int) else None
        )
        rows.append(row)
    inv = pd.DataFrame(rows)
    return inv, frames


def load_runs(runs_dir: str | Path, include_partial: bool = True, warn: bool = True) -> RunTables:
    """Every loadable run of ``runs_dir`` as ``(updates, evals, tokens)`` tidy frames with run metadata.

    Frames are empty (with the metadata columns) when nothing loads. ``include_partial=False`` drops
    runs that stopped before ``run.total_updates``.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir() and warn:
        log.warning("runs directory %s does not exist", runs_dir)
    cached, inv = _cached(runs_dir)
    if warn:
        _warn(inv)
    tables = RunTables(*(df.copy() for df in cached))
    if not include_partial:
        complete = set(inv[~inv["complete"].map(_is_false)]["run_id"])
        tables = RunTables(*(df[df["run_id"].isin(complete)].reset_index(drop=True) for df in tables))
    return tables


#: the last tree loaded, keyed by the names, sizes and mtimes of its files (figure scripts run in one
#: process by the report load the same tree 14 times)
_CACHE: dict[tuple, tuple[RunTables, pd.DataFrame]] = {}


def _cached(runs_dir: Path) -> tuple[RunTables, pd.DataFrame]:
    key = _signature(runs_dir)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = _load(runs_dir)
    return _CACHE[key]


def _signature(runs_dir: Path) -> tuple:
    files = []
    if runs_dir.is_dir():
        for p in sorted(runs_dir.glob("*/*")):
            if p.is_file() and p.suffix in (".csv", ".yaml", ".json"):
                st = p.stat()
                files.append((str(p), st.st_size, st.st_mtime_ns))
    return (str(runs_dir.resolve()), tuple(files))


def _load(runs_dir: Path) -> tuple[RunTables, pd.DataFrame]:
    inv, frames = _scan(runs_dir)
    names = RunTables._fields
    parts: dict[str, list[pd.DataFrame]] = {name: [] for name in names}
    ids: dict[str, list[str]] = {name: [] for name in names}
    for run_id, got in frames.items():
        got["tokens"] = _read_csv(runs_dir / run_id / "tokens.csv")
        for name in parts:
            df = got.get(name)
            if df is not None and len(df):
                # a log column named like a metadata column (updates.csv's per-update staleness) -> <name>_logged
                parts[name].append(df.rename(columns={c: f"{c}_logged" for c in META_COLUMNS if c in df.columns}))
                ids[name].append(run_id)
    meta = inv[inv["status"] == "ok"][META_COLUMNS].set_index("run_id") if len(inv) else None
    out = {}
    for name, dfs in parts.items():
        if not dfs:
            out[name] = pd.DataFrame(columns=META_COLUMNS)
            continue
        df = pd.concat(dfs, keys=ids[name], names=["run_id", "_row"]).reset_index(level="_row", drop=True)
        df = meta.join(df, how="inner").reset_index() if meta is not None else df.reset_index()
        df["staleness"] = df["staleness"].astype(int)
        df["seed"] = df["seed"].astype(int)
        out[name] = df
    for df in out.values():
        df["tau"] = df["tau"].astype(float)
    return RunTables(*(out[name] for name in names)), inv
