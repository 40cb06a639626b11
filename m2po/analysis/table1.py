"""Table 1 of this run beside the paper's: peak and final accuracy per model and method.

Our numbers are in percent like the paper's: per cell, the mean over seeds of each run's best
(``peak``) and last (``final``) evaluation, ± the s.e. of :func:`m2po.analysis.aggregate.cell_stat`.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..fileio import atomic_write_text
from .aggregate import accuracy, cell_stat, order_models, per_run_accuracy, select
from .paper import paper_model_rows, paper_table1
from .runs import RunTables
from .sections import markdown_table

TABLE1_COLUMNS = ["source", "model", "method", "staleness", "metric", "mean", "se", "n", "unit"]
LABELS = {
    "grpo": "GRPO",
    "grpo_notr": "GRPO no-TR",
    "gspo": "GSPO",
    "m2po": "M2PO",
    "m2po_released": "M2PO (released code)",
}


def table1_cells(stale: int) -> list[tuple[str, int]]:
    """The (method, staleness) rows of our Table 1."""
    return [
        ("grpo", 0),
        ("grpo", stale),
        ("gspo", stale),
        ("m2po", stale),
        ("grpo_notr", stale),
        ("m2po_released", stale),
    ]


def build_table1(
    tables: RunTables,
    stale: int,
    models: list[str] | None = None,
    seeds: list[int] | None = None,
    paper_path: str | Path | None = None,
) -> pd.DataFrame:
    """Tidy Table 1: our rows (``source = ours``, metrics ``peak``/``final``/``peak_update``) then the paper's
    (``source = paper``, metric = benchmark or ``Avg``). Accuracies in percent."""
    acc = accuracy(tables.evals, tables.benchmarks)
    per_run = per_run_accuracy(acc)
    rows = []
    for model in models or order_models(acc["model"].unique()):
        for method, s in table1_cells(stale):
            cell = select(per_run, model=model, method=method, staleness=s, seeds=seeds)
            for metric, se_col, scale, unit in (
                ("peak", "peak_se", 100.0, "percent"),
                ("final", "final_se", 100.0, "percent"),
                ("peak_update", None, 1.0, "updates"),
            ):
                st = cell_stat(cell, metric, se_col)
                rows.append(["ours", model, method, s, metric, st.mean * scale, st.se * scale, st.n, unit])
    paper = paper_table1(paper_path)
    for _, r in paper.iterrows():
        for metric in [c for c in paper.columns if c not in ("model", "method", "s")]:
            rows.append(
                ["paper", r["model"], r["method"], int(r["s"]), metric, float(r[metric]), math.nan, math.nan, "percent"]
            )
    return pd.DataFrame(rows, columns=TABLE1_COLUMNS)


def _cell(t: pd.DataFrame, source: str, model: str, method: str, s: int, metric: str) -> tuple[float, float, float]:
    m = t[
        (t["source"] == source)
        & (t["model"] == model)
        & (t["method"] == method)
        & (t["staleness"] == s)
        & (t["metric"] == metric)
    ]
    if m.empty:
        return math.nan, math.nan, 0
    r = m.iloc[0]
    return float(r["mean"]), float(r["se"]), float(r["n"]) if source == "ours" else 1


def _pm(mean: float, se: float, digits: int = 1) -> str:
    if not math.isfinite(mean):
        return "—"
    return f"{mean:.{digits}f} ± {se:.{digits}f}" if math.isfinite(se) else f"{mean:.{digits}f}"


def table1_markdown(t: pd.DataFrame, stale: int, paper_stale: int = 256) -> str:
    """Two Markdown tables: ours (with the paper's Avg where the model is one of the paper's) and the paper's."""
    ours = t[t["source"] == "ours"]
    header = ["Model", "Method", "s", "Peak (%)", "Final (%)", "Seeds", "Δ vs GRPO s=0", f"Δ vs GRPO s={stale}"]
    header.append("Paper Avg (%)")
    rows = []
    for model in order_models(ours["model"].unique()):
        g0 = _cell(t, "ours", model, "grpo", 0, "peak")[0]
        gs = _cell(t, "ours", model, "grpo", stale, "peak")[0]
        prow = paper_model_rows(model)
        for method, s in table1_cells(stale):
            pk, pk_se, n = _cell(t, "ours", model, method, s, "peak")
            fi, fi_se, _ = _cell(t, "ours", model, method, s, "final")
            d0 = f"{pk - g0:+.1f}" if math.isfinite(pk - g0) and (method, s) != ("grpo", 0) else ""
            ds = f"{pk - gs:+.1f}" if math.isfinite(pk - gs) and method != "grpo" else ""
            pa = prow[(prow["method"] == method) & (prow["s"] == (paper_stale if s else 0))]["Avg"]
            paper = f"{float(pa.iloc[0]):.1f}" if len(pa) else ""
            rows.append(
                [model, LABELS.get(method, method), str(s), _pm(pk, pk_se), _pm(fi, fi_se), str(int(n)), d0, ds, paper]
            )
    lines = [
        "**This run** — accuracy in percent, mean ± s.e. over seeds; peak = best evaluation, final = last; "
        "Δ = difference of peak means (points).",
        "",
        *markdown_table(header, rows),
    ]
    paper = t[(t["source"] == "paper") & (t["metric"] == "Avg")]
    lines += [
        "",
        f"**Paper, Table 1** — Avg accuracy in percent over eight benchmarks at the best checkpoint, "
        f"s = {paper_stale}.",
        "",
        f"| Model | GRPO s=0 | GRPO s={paper_stale} | GSPO s={paper_stale} | M2PO s={paper_stale} | "
        f"M2PO − GRPO s=0 | M2PO − GRPO s={paper_stale} |",
        "|---|---|---|---|---|---|---|",
    ]
    for model in dict.fromkeys(paper["model"]):
        v = {
            (m, s): _cell(t, "paper", model, m, s, "Avg")[0]
            for m, s in (("grpo", 0), ("grpo", paper_stale), ("gspo", paper_stale), ("m2po", paper_stale))
        }
        cells = [f"{x:.1f}" if math.isfinite(x) else "—" for x in v.values()]
        m2, g0, gs = v[("m2po", paper_stale)], v[("grpo", 0)], v[("grpo", paper_stale)]
        lines.append(f"| {model} | {' | '.join(cells)} | {m2 - g0:+.1f} | {m2 - gs:+.1f} |")
    return "\n".join(lines) + "\n"


def write_table1(t: pd.DataFrame, out_dir: str | Path, stale: int, stage: str = "") -> tuple[Path, Path]:
    """Write ``table1.csv`` (tidy) and ``table1.md`` into ``out_dir``; ``stage``: the evaluation stage's table
    (:func:`m2po.analysis.benchmarks.stage_table1`), put first."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / "table1.csv", out / "table1.md"
    atomic_write_text(csv_path, t.to_csv(index=False))
    atomic_write_text(md_path, (stage + "\n" if stage else "") + table1_markdown(t, stale))
    return csv_path, md_path
