"""Table 1 from the evaluation stage: per model and method, every benchmark and the Avg at the selected checkpoint.

Reads the runs' ``benchmarks.csv`` (:mod:`m2po.eval.stage`) only. Per run, the selected checkpoint is taken
(:func:`m2po.analysis.aggregate.selected_checkpoint`: the one a tiny run kept for its best in-training
evaluation, else the graded checkpoint with the best Avg — the paper's rule, §6), the one the claims'
"peak" reads too; a cell (model,
method, s) then reports, for each benchmark and the Avg, the mean over seeds of those checkpoints' values
with a 95 % interval: one seed, the stage's own interval (bootstrap over problems; the Avg's ± 1.96 s.e.);
several seeds, mean ± 1.96 s.e. with the s.e. of :func:`~m2po.analysis.aggregate.cell_stat` (the larger of
the seeds' s.e. and the evaluations' s.e. / √n). Accuracies in percent, like the paper's row beside it.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..fileio import atomic_write_text
from .aggregate import cell_stat, order_models, paper_benchmarks, select, selected_checkpoint, stage_accuracy
from .paper import paper_model_rows
from .runs import RunTables
from .sections import markdown_table

BENCH_COLUMNS = ["source", "model", "method", "staleness", "benchmark", "mean", "lo", "hi", "se", "n", "best_update"]


def _label(name: str) -> str:
    from ..eval.suites import load_suites

    canonical = paper_benchmarks().get(name.lower(), name)
    return load_suites().resolve(canonical).label


def best_checkpoints(tables: RunTables) -> pd.DataFrame:
    """Per run graded by the stage: the Avg row of its selected checkpoint (:func:`selected_checkpoint`)."""
    acc = stage_accuracy(tables.benchmarks)
    acc = acc[acc["acc"].notna()].sort_values(["run_id", "update"])
    if acc.empty:
        return acc
    return acc.loc[[selected_checkpoint(g) for _, g in acc.groupby("run_id")]].reset_index(drop=True)


def _cell_value(cell: pd.DataFrame, value: str, se: str, lo: str, hi: str) -> tuple[float | int, ...]:
    """``(mean, lo, hi, se, n)`` in percent of one cell (one row per seed; module docstring) over its seeds with a
    value: one such run keeps its evaluation's own interval, several get mean ± 1.96 s.e. of
    :func:`~m2po.analysis.aggregate.cell_stat`."""
    cell = cell[cell[value].notna()]
    if len(cell) == 1:
        row = cell.iloc[0]
        return 100 * float(row[value]), 100 * float(row[lo]), 100 * float(row[hi]), 100 * float(row[se]), 1
    st = cell_stat(cell, value, se)
    return 100 * st.mean, 100 * (st.mean - 1.96 * st.se), 100 * (st.mean + 1.96 * st.se), 100 * st.se, st.n


def build_benchmark_table(
    tables: RunTables, cells: list[tuple[str, int]], models: list[str] | None = None, seeds: list[int] | None = None
) -> pd.DataFrame:
    """Tidy rows (:data:`BENCH_COLUMNS`): ours per (model, method, s) of ``cells`` and benchmark (``Avg`` last),
    in percent; empty when the stage has graded no run."""
    best = best_checkpoints(tables)
    rows: list[list] = []
    if best.empty:
        return pd.DataFrame(columns=BENCH_COLUMNS)
    b = tables.benchmarks
    at_best = b.merge(best[["run_id", "update"]], on=["run_id", "update"])
    for model in models or order_models(best["model"].unique()):
        for method, s in cells:
            runs = select(best, model, method, s, seeds)
            if runs.empty:
                continue
            updates = ",".join(str(int(u)) for u in runs["update"])
            picked = at_best[at_best["run_id"].isin(runs["run_id"])]
            for name in dict.fromkeys(picked["benchmark"]):
                g = picked[picked["benchmark"] == name]
                value = _cell_value(g, "avg_at_k", "se", "ci_low", "ci_high")
                rows.append(["ours", model, method, s, _label(str(name)), *value, updates])
            value = _cell_value(runs, "acc", "acc_se", "acc_lo", "acc_hi")
            rows.append(["ours", model, method, s, "Avg", *value, updates])
    return pd.DataFrame(rows, columns=BENCH_COLUMNS)


def _ci(mean: float, lo: float, hi: float) -> str:
    if not math.isfinite(mean):
        return "—"
    return f"{mean:.1f} [{lo:.1f}, {hi:.1f}]" if math.isfinite(lo) and math.isfinite(hi) else f"{mean:.1f}"


def benchmark_table_markdown(t: pd.DataFrame, labels: dict[str, str], paper_stale: int = 256) -> str:
    """One row per (model, method, s) with every benchmark and the Avg as ``mean [95 % CI]``, each followed
    by the paper's row for the same model, method and (paper) staleness when the paper has one."""
    if t.empty:
        return ""
    names = list(dict.fromkeys(n for n in t["benchmark"] if n != "Avg"))
    single = len(names) == 1  # the tiny study: Avg is that one benchmark, shown once
    header = ["Model", "Method", "s", *([f"{names[0]} = Avg"] if single else [*names, "Avg"]), "Selected update(s)"]
    header.append("Seeds")
    rows = []
    keys = ["model", "method", "staleness"]
    for (model, method, s), g in t.groupby(keys, sort=False):
        cell = {r.benchmark: r for r in g.itertuples()}
        avg = cell["Avg"]
        values = [_ci(cell[n].mean, cell[n].lo, cell[n].hi) if n in cell else "—" for n in names]
        values = values if single else [*values, _ci(avg.mean, avg.lo, avg.hi)]
        label = labels.get(method, method)
        rows.append([model, label, str(s), *values, avg.best_update, str(avg.n)])
        paper = paper_model_rows(model)
        p = paper[(paper["method"] == method) & (paper["s"] == (paper_stale if s else 0))]
        if len(p):
            r = p.iloc[0]
            cells = [f"{float(r[n]):.1f}" if n in r.index else "" for n in names]
            cells = cells if single else [*cells, f"{float(r['Avg']):.1f}"]
            rows.append(["", f"*paper: {label}*", str(int(r["s"])), *cells, "", ""])
    return "\n".join(markdown_table(header, rows)) + "\n"


def protocol_markdown(tables: RunTables) -> str:
    """The evaluation protocol the stage used, read off ``benchmarks.csv`` (what a reader needs to trust it)."""
    b = tables.benchmarks
    if b.empty or "backend" not in b.columns:
        return ""

    def values(col: str) -> str:
        return ", ".join(str(v) for v in dict.fromkeys(b[col].dropna()))

    ks = b.groupby("benchmark", sort=False)["k"].agg(lambda k: "/".join(str(int(x)) for x in dict.fromkeys(k)))
    per_run = b.groupby("run_id")["update"].nunique()
    problems = b.groupby("benchmark", sort=False)["n_problems"].max()
    return (
        f"**Protocol of the evaluation stage** (from the runs' `benchmarks.csv`): backend {values('backend')}; "
        + "; ".join(f"{_label(str(n))}: avg@{ks[n]} over {int(problems[n])} problems" for n in ks.index)
        + f"; temperature {values('temperature')}, top-p {values('top_p')}, at most {values('max_new_tokens')} new "
        f"tokens; graded by {values('grader')} {values('grader_version')} (answer extraction: "
        f"{values('extraction')}); {int(per_run.min())}–{int(per_run.max())} checkpoints graded per run, "
        f"{len(per_run)} runs. Per run the selected checkpoint is reported: the one the run kept for its best "
        "in-training evaluation where it kept one (then selection and measurement use different samples), else "
        "the graded checkpoint with the best Avg (the paper's rule); "
        "intervals are 95 %: a bootstrap over problems for one benchmark and one seed, ± 1.96 s.e. for an Avg "
        "over several benchmarks and for means over seeds.\n"
    )


def stage_table1(tables: RunTables, cells: list[tuple[str, int]], labels: dict[str, str], **select_kw) -> tuple:
    """``(tidy rows, Markdown)`` of the stage's Table 1 with its protocol; ``(empty, "")`` before the stage ran."""
    t = build_benchmark_table(tables, cells, **select_kw)
    if t.empty:
        return t, ""
    md = [
        "**Evaluation stage** — accuracy in percent at each run's selected checkpoint, mean [95 % interval]; "
        "the paper's row (Table 1, its best checkpoint) below ours where the paper trained that model.",
        "",
        benchmark_table_markdown(t, labels),
        protocol_markdown(tables),
    ]
    return t, "\n".join(md)


def write_benchmark_table(t: pd.DataFrame, out_dir: str | Path) -> Path:
    """``table1_benchmarks.csv``: the tidy rows of the stage's Table 1."""
    path = Path(out_dir) / "table1_benchmarks.csv"
    atomic_write_text(path, t.to_csv(index=False))
    return path
