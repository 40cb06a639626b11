"""The tiny study's pre-registered regime targets, measured (docs/tiny_protocol.md, "Regime targets").

The targets say whether the tiny task is in the LLM regime the paper's mechanisms need. They are
measured on the warm-start policy and on GRPO only (never on the compared methods):

1. warm start: share of response tokens with entropy < 0.1 nats >= 70 % (and the share above
   0.5 nats, stated) -- from ``<results>/regime/warm_start-<model>.json``
   (:func:`m2po.engine.regime.write_warm_start_regime`);
2. GRPO's clipped fraction on-policy (s = 0) <= 0.5 %;
3. GRPO's clipped fraction at s = S between 10x and 25x its on-policy value (paper, Fig. 7b: 9.4x
   and 24x); both clipped fractions are steady-state cell means (updates >= s; m2po.analysis.cells);
4. on-policy GRPO converges within the run: on the seed-mean accuracy curve of GRPO s = 0, the mean
   over the last quarter of the evaluations is within one s.e. of the curve's peak (s.e. of the peak
   evaluation: seed s.e., floored by the evaluation's own s.e. / sqrt(seeds)).

:func:`regime_table` returns one tidy row per (model, target): measured value, its s.e., the seeds
it rests on, the target and whether it is met, for the report to print beside the targets.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from .aggregate import accuracy, cell_stat, order_models, ratio_se, select
from .cells import Cells

LOW_SHARE_TARGET = 0.70
ON_POLICY_CLIP_MAX = 0.005
STALE_CLIP_RATIO = (10.0, 25.0)
COLUMNS = ["model", "target", "measured", "se", "n", "goal", "met", "detail"]


def warm_start_stats(results: str | Path) -> dict[str, dict]:
    """``{model: stats}`` from ``<results>/regime/warm_start-<model>.json``."""
    out = {}
    for path in sorted(Path(results, "regime").glob("warm_start-*.json")):
        out[path.stem.removeprefix("warm_start-")] = json.loads(path.read_text())
    return out


def convergence(cells: Cells, model: str) -> dict[str, float]:
    """Target 4 on GRPO s = 0, on the in-training evaluation curve (every ``run.eval_every`` updates): the cell's
    accuracy at each update (:func:`~m2po.analysis.aggregate.cell_stat` over the seeds) gives ``last_quarter``
    (mean of the last quarter of the points), ``peak``, ``peak_se``, ``peak_update`` and ``n`` (seeds)."""
    acc = select(accuracy(cells.tables.evals), model, "grpo", 0, cells.seeds)
    if acc.empty:
        return {"last_quarter": math.nan, "peak": math.nan, "peak_se": math.nan, "peak_update": math.nan, "n": 0}
    curve = {int(update): cell_stat(at, "acc", "acc_se") for update, at in acc.groupby("update")}
    means = pd.Series({update: st.mean for update, st in curve.items()}).sort_index()
    peak_update = int(means.idxmax())
    return {
        "last_quarter": float(means.iloc[-max(len(means) // 4, 1) :].mean()),
        "peak": curve[peak_update].mean,
        "peak_se": curve[peak_update].se,
        "peak_update": peak_update,
        "n": max(st.n for st in curve.values()),
    }


def regime_table(cells: Cells, results: str | Path, stale: int, models: list[str] | None = None) -> pd.DataFrame:
    """Every regime target per model, measured on ``cells`` and the warm starts under ``results``, vs its
    target (see the module docstring)."""
    ws = warm_start_stats(results)
    updates = cells.tables.updates
    if models is None:
        models = order_models(set(ws) | (set(updates["model"].unique()) if len(updates) else set()))
    rows = []
    for m in models:
        st = ws.get(m, {})
        low, high = st.get("share_below_low", math.nan), st.get("share_above_high", math.nan)
        n_tok = st.get("n_tokens", 0)
        rows.append(
            [m, "warm start: share of tokens < 0.1 nats", low, math.nan, n_tok, f">= {LOW_SHARE_TARGET:.0%}",
             _met(low >= LOW_SHARE_TARGET, low), f"{n_tok} response tokens, k = {st.get('k', 'n/a')} per problem"]
        )  # fmt: skip
        rows.append(
            [m, "warm start: share of tokens > 0.5 nats", high, math.nan, n_tok, "stated", "stated",
             f"mean entropy {st.get('mean', math.nan):.3f} nats"]
        )  # fmt: skip
        k0, ks = cells.clipped(m, "grpo", 0), cells.clipped(m, "grpo", stale)
        rows.append(
            [m, "GRPO clipped fraction, s = 0", k0.mean, k0.se, k0.n, f"<= {ON_POLICY_CLIP_MAX:.1%}",
             _met(k0.mean <= ON_POLICY_CLIP_MAX, k0.mean), "steady-state mean over updates"]
        )  # fmt: skip
        ratio = ks.mean / k0.mean if k0.ok and ks.ok and k0.mean > 0 else math.nan
        lo, hi = STALE_CLIP_RATIO
        rows.append(
            [m, f"GRPO clipped fraction, s = {stale} / s = 0", ratio, ratio_se(ks, k0), min(ks.n, k0.n),
             f"{lo:g}x to {hi:g}x", _met(lo <= ratio <= hi, ratio), f"s = {stale}: {ks.fmt(4)}; s = 0: {k0.fmt(4)}"]
        )  # fmt: skip
        c = convergence(cells, m)
        gap = c["last_quarter"] - c["peak"]
        rows.append(
            [m, "GRPO s = 0 converges: last-quarter mean − peak", gap, c["peak_se"], c["n"], ">= −1 s.e. of the peak",
             _met(gap >= -c["peak_se"], gap),
             f"peak {c['peak']:.3f} at update {c['peak_update']}, last quarter {c['last_quarter']:.3f}"]
        )  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def _met(ok: bool, value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    return "met" if ok else "not met"
