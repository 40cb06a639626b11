"""Accuracy, selection, smoothing and seed aggregation on the tidy tables of :mod:`m2po.analysis.runs`.

Conventions (used by every figure, table and claim):

* **Accuracy** of one evaluation. Where the evaluation stage graded a checkpoint (``benchmarks.csv``):
  its "Avg", the unweighted mean of the benchmarks' ``avg_at_k`` — the paper's eight when they were
  evaluated (the tiny study's one held-out set otherwise; ``n_benchmarks`` says how many) — with s.e.
  √(Σ se²) / n (benchmarks are independent samples) and a 95 % interval ± 1.96 s.e. (one benchmark: its
  own bootstrap CI); ``source = "eval_stage"``. Elsewhere the in-training evaluation (``evals.csv``,
  ``source = "training"``): the tiny engine's ``sampled_acc`` (one sample per held-out problem at
  temperature 1), or verl's validation (the mean of the paper benchmarks present). Fractions in [0, 1]
  (percent inputs are divided by 100). Its own s.e.: ``sampled_acc_se``, or the 95 % CI half-width / 1.96.
* **Band over seeds**: mean ± one standard error of the mean across seeds (sample std, ddof = 1, over
  √n); a single seed has no band.
* **Smoothing** (noisy per-update metrics only, never accuracy): a centred rolling mean over
  ``window`` consecutive updates within each run, ``min_periods = 1`` (no lag, ends use fewer points).
* **Peak / final accuracy** of a run: its best / last evaluation (the paper reports the best
  checkpoint). Where the evaluation stage graded the run, among its checkpoints, and "best" is the
  **selected checkpoint** (:func:`selected_checkpoint`): the one the run kept for its best in-training
  evaluation (a tiny run's ``best_model-u*.pt``; selection and measurement then use different samples,
  docs/tiny_protocol.md §8), else the graded checkpoint with the best Avg (the paper's rule). A cell (model,
  method, s, τ) reports the mean over seeds and the s.e. max(seed s.e., evaluation s.e. / √n), so one seed
  still carries its evaluation noise.
* **Steady-state mean** of a per-update metric (clipping ratio, M2, KL): the mean over the updates
  ``update ≥ s`` of a run at staleness ``s`` (before that the queue holds warm-up batches of
  growing age); its s.e. for one seed is the per-update std / √count.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .runs import DEFAULT_TAU, META_COLUMNS, TAU_METHODS

PAPER_AVG_ROW = "paper_avg8"


def paper_benchmarks() -> dict[str, str]:
    """Name or alias -> canonical name, for the eight benchmarks of the paper's "Avg" (the packaged suites)."""
    from ..eval.suites import load_suites

    in_average = {n: b.aliases for n, b in load_suites().benchmarks.items() if b.in_average}
    return {alias: name for name, aliases in in_average.items() for alias in (name, *aliases)}


ACC_COLUMNS = [*META_COLUMNS, "update", "acc", "acc_se", "acc_lo", "acc_hi", "n_benchmarks", "source", "checkpoint"]
#: the file name of the checkpoint a tiny run keeps for its best in-training evaluation (m2po.engine.rundir)
SELECTED_BY_TRAINING = "best_model-u"


def accuracy(evals: pd.DataFrame, benchmarks: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (run, evaluation update): ``acc``, ``acc_se``, ``acc_lo``/``acc_hi`` (95 %), ``n_benchmarks``,
    ``source`` plus the metadata. The evaluation stage's Avg (``benchmarks``) replaces the in-training
    evaluation at every update the stage graded (module docstring)."""
    train = _training_accuracy(evals)
    stage = stage_accuracy(benchmarks) if benchmarks is not None else pd.DataFrame(columns=ACC_COLUMNS)
    stage = stage[stage["acc"].notna()]
    if stage.empty:
        return train
    graded = set(zip(stage["run_id"], stage["update"].astype(int), strict=True))
    keep = [(r, int(u)) not in graded for r, u in zip(train["run_id"], train["update"], strict=True)]
    parts = [df for df in (train[keep], stage) if len(df)]
    acc = pd.concat(parts, ignore_index=True)
    return acc[ACC_COLUMNS].sort_values(["run_id", "update"]).reset_index(drop=True)


def stage_accuracy(benchmarks: pd.DataFrame) -> pd.DataFrame:
    """Per (run, checkpoint update) of the evaluation stage's ``benchmarks.csv``: the Avg (module docstring)."""
    if benchmarks.empty or "avg_at_k" not in benchmarks.columns:
        return pd.DataFrame(columns=ACC_COLUMNS)
    names = paper_benchmarks()
    keys = [*META_COLUMNS, "update"]
    rows = []
    for key, grp in benchmarks.groupby(keys, dropna=False):
        grp = grp.drop_duplicates("benchmark", keep="last")
        paper = grp["benchmark"].astype(str).str.lower().map(names).notna()
        members = grp[paper] if paper.any() else grp
        n = len(members)
        acc = float(members["avg_at_k"].mean())
        if n == 1:
            m = members.iloc[0]
            se, lo, hi = float(m["se"]), float(m["ci_low"]), float(m["ci_high"])
        else:
            se = math.sqrt(float((members["se"] ** 2).sum())) / n
            lo, hi = acc - 1.96 * se, acc + 1.96 * se
        row = dict(zip(keys, key, strict=True))
        checkpoint = str(members["checkpoint"].iloc[0]) if "checkpoint" in members.columns else ""
        row.update(acc=acc, acc_se=se, acc_lo=lo, acc_hi=hi, n_benchmarks=n, source="eval_stage")
        row["checkpoint"] = checkpoint
        rows.append(row)
    return pd.DataFrame(rows, columns=ACC_COLUMNS)


def selected_checkpoint(graded: pd.DataFrame) -> Any:
    """The index of one run's selected row among its graded checkpoints (finite ``acc``, sorted by update):
    the checkpoint the run kept for its best in-training evaluation, if graded (the latest such file, should
    a crash have left two), else the best Avg, first maximum (the paper's rule)."""
    kept = graded[graded["checkpoint"].astype(str).str.contains(SELECTED_BY_TRAINING, regex=False)]
    return kept.index[-1] if len(kept) else graded["acc"].idxmax()


def _training_accuracy(evals: pd.DataFrame) -> pd.DataFrame:
    """The in-training evaluations (``evals.csv``) as accuracy rows (``source = "training"``)."""
    cols = ACC_COLUMNS
    if evals.empty:
        return pd.DataFrame(columns=cols)
    keys = [*META_COLUMNS, "update"]
    out = []
    if "sampled_acc" in evals.columns:
        tiny = evals[evals["sampled_acc"].notna()].copy()
        if len(tiny):
            tiny["_se2"] = tiny.get("sampled_acc_se", pd.Series(np.nan, index=tiny.index)) ** 2
            g = tiny.groupby(keys, dropna=False)
            agg = g.agg(acc=("sampled_acc", "mean"), _se2=("_se2", "sum"), n_benchmarks=("sampled_acc", "size"))
            agg["acc_se"] = np.sqrt(agg["_se2"]) / agg["n_benchmarks"]
            out.append(agg.drop(columns="_se2").reset_index())
    if "avg_at_k" in evals.columns:
        verl = evals[evals["avg_at_k"].notna()].copy()
        if len(verl):
            out.append(_paper_average(verl, keys))
    if not out:
        return pd.DataFrame(columns=cols)
    acc = pd.concat(out, ignore_index=True)
    acc["acc_lo"], acc["acc_hi"] = acc["acc"] - 1.96 * acc["acc_se"], acc["acc"] + 1.96 * acc["acc_se"]
    acc["source"], acc["checkpoint"] = "training", ""
    return acc[cols].sort_values(["run_id", "update"]).reset_index(drop=True)


def _paper_average(verl: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    names = paper_benchmarks()
    scale = 100.0 if verl["avg_at_k"].max() > 1.0 else 1.0
    verl["_acc"] = verl["avg_at_k"] / scale
    if {"ci_low", "ci_high"} <= set(verl.columns):
        verl["_se"] = (verl["ci_high"] - verl["ci_low"]) / scale / (2 * 1.96)
    else:
        verl["_se"] = np.nan
    verl["_canon"] = verl["benchmark"].astype(str).str.lower().map(names)
    rows = []
    for key, grp in verl.groupby(keys, dropna=False):
        row = dict(zip(keys, key, strict=True))
        avg_row = grp[grp["benchmark"] == PAPER_AVG_ROW]
        members = grp[grp["_canon"].notna()].drop_duplicates("_canon")
        if len(avg_row) and math.isfinite(float(avg_row["_acc"].iloc[0])):
            row.update(acc=float(avg_row["_acc"].iloc[0]), acc_se=float(avg_row["_se"].iloc[0]), n_benchmarks=8)
        elif len(members):
            n = len(members)
            row.update(acc=members["_acc"].mean(), acc_se=math.sqrt((members["_se"] ** 2).sum()) / n, n_benchmarks=n)
        else:  # no paper benchmark at all (a smoke suite): the mean of what is there
            row.update(acc=grp["_acc"].mean(), acc_se=math.nan, n_benchmarks=len(grp))
        rows.append(row)
    return pd.DataFrame(rows)


def select(
    df: pd.DataFrame,
    model: str | None = None,
    method: str | None = None,
    staleness: int | None = None,
    seeds: list[int] | None = None,
    tau: float | str = "default",
) -> pd.DataFrame:
    """Rows of one cell. ``tau="default"`` keeps only τ = 0.04 runs of the τ methods (not the τ sweep);
    ``tau="any"`` keeps all; a number keeps that τ. Other methods ignore ``tau``."""
    m = pd.Series(True, index=df.index)
    if model is not None:
        m &= df["model"] == model
    if method is not None:
        m &= df["method"] == method
    if staleness is not None:
        m &= df["staleness"] == staleness
    if seeds:
        m &= df["seed"].isin(seeds)
    if tau != "any":
        want = DEFAULT_TAU if tau == "default" else float(tau)
        is_tau_method = df["method"].isin(TAU_METHODS)
        m &= ~is_tau_method | np.isclose(df["tau"].astype(float), want, rtol=0, atol=1e-9)
    return df[m]


def smooth(df: pd.DataFrame, value: str, window: int) -> pd.DataFrame:
    """A copy with ``value`` replaced by its centred rolling mean over ``window`` updates, per run."""
    if window <= 1 or df.empty:
        return df
    df = df.sort_values(["run_id", "update"]).copy()
    df[value] = df.groupby("run_id")[value].transform(lambda s: s.rolling(window, center=True, min_periods=1).mean())
    return df


def seed_band(df: pd.DataFrame, value: str, x: str = "update") -> pd.DataFrame:
    """Per ``x``: ``mean``, ``se`` (0 for one seed), ``n`` and the band ``lo``/``hi`` = mean ∓ se."""
    if df.empty:
        return pd.DataFrame(columns=[x, "mean", "se", "n", "lo", "hi"])
    g = df.groupby(x)[value]
    out = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n": g.count()}).reset_index()
    out["se"] = (out["std"] / np.sqrt(out["n"])).fillna(0.0)
    out["lo"], out["hi"] = out["mean"] - out["se"], out["mean"] + out["se"]
    return out.drop(columns="std")


def per_run_accuracy(acc: pd.DataFrame) -> pd.DataFrame:
    """Per run: ``acc0`` (first eval), ``peak``/``peak_update``/``peak_se`` (best eval), ``final``/``final_update``/
    ``final_se`` (last eval) and ``n_evals`` (evaluations compared); peak and final among the evaluation
    stage's checkpoints when it graded the run (``source``), else among all evaluations."""
    rows = []
    for run_id, every in acc.dropna(subset=["acc"]).sort_values("update").groupby("run_id"):
        staged = every[every["source"] == "eval_stage"] if "source" in every.columns else every.iloc[:0]
        grp = staged if len(staged) else every
        i_peak = selected_checkpoint(grp) if len(staged) else grp["acc"].idxmax()
        last = grp.iloc[-1]
        row = {c: grp.iloc[0][c] for c in META_COLUMNS}
        row.update(
            acc0=float(every.iloc[0]["acc"]),
            peak=float(grp.loc[i_peak, "acc"]),
            peak_update=int(grp.loc[i_peak, "update"]),
            peak_se=float(grp.loc[i_peak, "acc_se"]),
            final=float(last["acc"]),
            final_update=int(last["update"]),
            final_se=float(last["acc_se"]),
            n_evals=len(grp),
        )
        row["run_id"] = run_id
        rows.append(row)
    return pd.DataFrame(
        rows,
        columns=[
            *META_COLUMNS,
            "acc0",
            "peak",
            "peak_update",
            "peak_se",
            "final",
            "final_update",
            "final_se",
            "n_evals",
        ],
    )


def steady_mean(updates: pd.DataFrame, value: str) -> pd.DataFrame:
    """Per run: the mean of ``value`` over its updates ``update ≥ staleness`` (``mean``, ``se``, ``count``);
    a run that never got that far uses all its updates."""
    cols = [*META_COLUMNS, "mean", "se", "count"]
    if updates.empty:
        return pd.DataFrame(columns=cols)
    keep = updates["update"] >= updates["staleness"]
    reached = keep.groupby(updates["run_id"]).transform("any")
    g = updates[keep | ~reached].groupby("run_id")
    v = g[value]
    out = g[META_COLUMNS[1:]].first().assign(mean=v.mean(), count=v.count())
    out["se"] = v.std(ddof=1) / np.sqrt(out["count"])
    return out.reset_index()[cols]


@dataclass(frozen=True)
class Stat:
    """A cell's mean over seeds with its s.e. (see the module docstring) and the seed values."""

    mean: float
    se: float
    n: int
    values: tuple[float, ...] = ()

    @property
    def ok(self) -> bool:
        return self.n > 0 and math.isfinite(self.mean)

    def fmt(self, digits: int = 2, scale: float = 1.0) -> str:
        """``0.81 ± 0.02 (n=3)``; ``n/a`` for an empty cell."""
        if not self.ok:
            return "n/a"
        se = f" ± {self.se * scale:.{digits}f}" if math.isfinite(self.se) else ""
        return f"{self.mean * scale:.{digits}f}{se} (n={self.n})"


def ratio_se(a: Stat, b: Stat) -> float:
    """Delta-method s.e. of ``a.mean / b.mean`` (nan unless both cells have a finite s.e. and b.mean > 0)."""
    if not (a.ok and b.ok and b.mean > 0 and math.isfinite(a.se) and math.isfinite(b.se)):
        return math.nan
    r = a.mean / b.mean
    return abs(r) * math.hypot(a.se / a.mean if a.mean else 0.0, b.se / b.mean)


def cell_stat(per_run: pd.DataFrame, value: str, eval_se: str | None = None) -> Stat:
    """Mean over the seeds (rows) of ``per_run[value]``; s.e. = max(seed s.e., mean eval s.e. / √n)."""
    v = per_run[value].astype(float).dropna() if len(per_run) else pd.Series(dtype=float)
    n = len(v)
    if n == 0:
        return Stat(math.nan, math.nan, 0)
    seed_se = float(v.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    floor = math.nan
    if eval_se is not None and eval_se in per_run.columns:
        e = per_run[eval_se].astype(float).dropna()
        floor = float(e.mean() / math.sqrt(n)) if len(e) else math.nan
    se = float(np.nanmax([seed_se, floor])) if not (math.isnan(seed_se) and math.isnan(floor)) else math.nan
    return Stat(float(v.mean()), se, n, tuple(float(x) for x in v))


def order_models(models: Any) -> list[str]:
    """Models from smallest to largest by the size in their name (``0.1M`` < ``1M`` < ``7B``), then by name."""
    units = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}

    def key(name: str) -> tuple[float, str]:
        sizes = [float(n) * units[u.upper()] for n, u in re.findall(r"(\d+(?:\.\d+)?)([KkMBT])(?![a-z])", name)]
        return (max(sizes) if sizes else math.inf, name)

    return sorted({str(m) for m in models}, key=key)
