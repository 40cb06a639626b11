"""The reproduction report of one results tree: ``results/<profile>/report.md`` + ``report.html``, ``claims.csv``.

Contents: the run inventory, every figure (relative links to ``figures/<name>.png``) with one sentence
computed from the data, Table 1 beside the paper's, and the four headline claims of PAPER.md §9 judged
on this study's numbers with the deciding numbers and rules (:mod:`m2po.analysis.claims`).

The figures are (re)drawn by the scripts of ``figures/`` (run in-process) unless ``make_figures`` is
False; a figure that cannot be drawn is reported as missing, never fatal.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import math
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from ..errors import DISK_FULL, NOT_WRITABLE, UserError, check_writable
from ..fileio import atomic_write_text
from .aggregate import order_models
from .cells import Cells
from .claims import HOLDS, Rules, Verdict, claims_frame, judge_claims
from .findings import SENTENCES
from .html import to_html
from .paper import FIGURES_DIR, paper_values
from .runs import load_runs, scan_runs
from .table1 import build_table1, table1_markdown, write_table1

log = logging.getLogger("m2po.analysis")

#: figure scripts in report order, with what each shows (the scripts' titles say the same)
FIGURES = {
    "fig1": "Largest model: accuracy of GRPO s=0 / GRPO s=S / no-TR s=S / M2PO s=S, and their clipping ratio.",
    "fig2": "GRPO accuracy at every swept staleness.",
    "fig3": "Prosperity before collapse: GRPO s=0, GRPO s=S, GRPO without trust region s=S.",
    "fig4a": "GRPO token clipping ratio, s=S vs s=0.",
    "fig4b": "Mean token entropy vs |r − 1| for GRPO s=S (ε = 0.2 marked).",
    "fig5": "Training reward of GRPO s=0, GRPO s=S, M2PO s=S.",
    "fig6": "Smallest model, s=S: CISPO, AReaL decoupled PPO, TOPR, GPPO and M2PO.",
    "fig7a": "Clipping ratio of GRPO s=S, M2PO s=S (masked fraction), GRPO s=0.",
    "fig7b": "Average clipping ratio per model, ours beside the paper's Fig. 7b.",
    "fig8": "τ ablation: M2PO s=S peak and final accuracy vs τ.",
    "fig9a": "M2PO s=S: trust-region M2 per update before and after the mask.",
    "fig9b": "KL estimate k3 per update of GRPO s=0, GRPO s=S, M2PO s=S.",
    "fig11": "M2PO accuracy at every swept staleness.",
}
FIGURE_SCRIPTS = [*FIGURES, "table1"]


def resolve_results(results: str | Path, profile: str) -> Path:
    """``results`` itself when it holds ``runs/``, else ``results/<profile>``."""
    results = Path(results)
    if not (results / "runs").is_dir() and (results / profile / "runs").is_dir():
        return results / profile
    return results


def run_figure_script(name: str, argv: list[str], figures_src: str | Path | None = None) -> int:
    """Run ``figures/<name>.py``'s ``main(argv)`` in-process; its exit code (1 on an exception)."""
    src = Path(figures_src) if figures_src else FIGURES_DIR
    path = src / f"{name}.py"
    if not path.exists():
        log.warning("figure script %s not found", path)
        return 1
    if str(src) not in sys.path:
        sys.path.insert(0, str(src))
    spec = importlib.util.spec_from_file_location(f"m2po_figure_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            spec.loader.exec_module(module)
            rc = int(module.main(argv) or 0)
    except OSError as e:
        if e.errno in DISK_FULL | NOT_WRITABLE:  # every later figure would fail the same way: say it once
            raise
        log.warning("figure %s failed: %s: %s", name, type(e).__name__, e)
        return 1
    except Exception as e:  # one broken figure must not sink the report
        log.warning("figure %s failed: %s: %s", name, type(e).__name__, e)
        return 1
    if rc:
        log.warning("figure %s exited %d: %s", name, rc, err.getvalue().strip()[-300:])
    return rc


def make_figures(
    runs: Path,
    out: Path,
    stale: int,
    models: list[str] | None = None,
    seeds: list[int] | None = None,
    figures_src: str | Path | None = None,
    names: list[str] | None = None,
) -> dict[str, int]:
    """Run every figure script (or ``names``) on ``runs`` into ``out``; exit code per script."""
    argv = ["--runs", str(runs), "--out", str(out), "--stale", str(stale)]
    if models:
        argv += ["--models", *models]
    if seeds:
        argv += ["--seeds", *map(str, seeds)]
    return {n: run_figure_script(n, argv, figures_src) for n in (names or FIGURE_SCRIPTS)}


def _fmt_wall(values: pd.Series, exact: pd.Series) -> str:
    v = values.dropna()
    if v.empty:
        return ""
    approx = "" if exact.fillna(False).astype(bool).all() else "≈"
    return f"{approx}{v.median() / 60:.1f} min"


def _complete(flags: pd.Series) -> str:
    known = [bool(f) for f in flags if f is not None and not (isinstance(f, float) and math.isnan(f))]
    return f"{sum(known)}/{len(flags)}" if known else "unknown"


def inventory_markdown(inv: pd.DataFrame) -> str:
    """Runs per cell (model, method, s, τ): count, seeds, complete, updates, median wall time."""
    if inv.empty:
        return "No run directories found.\n"
    ok = inv[inv["status"] == "ok"].copy()
    lines = [
        "| Model | Method | s | τ | Runs | Seeds | Complete | Updates | Wall time (median) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    if len(ok):
        ok["tau_s"] = ok["tau"].map(lambda t: "" if pd.isna(t) else f"{t:g}")
        ok["_order"] = ok["model"].map({m: i for i, m in enumerate(order_models(ok["model"].unique()))})
        for (_, model, method, s, tau), g in ok.groupby(["_order", "model", "method", "staleness", "tau_s"]):
            seeds = ",".join(str(int(x)) for x in sorted(g["seed"]))
            upd = f"{int(g['last_update'].min())}" + (
                f"–{int(g['last_update'].max())}" if g["last_update"].nunique() > 1 else ""
            )
            lines.append(
                f"| {model} | {method} | {int(s)} | {tau} | {len(g)} | {seeds} | "
                f"{_complete(g['complete'])} | {upd} | {_fmt_wall(g['wall_s'], g['wall_exact'])} |"
            )
    text = "\n".join(lines) + "\n"
    bad = inv[inv["status"] != "ok"]
    if len(bad):
        text += "\nSkipped directories:\n\n" + "\n".join(f"- `{r.run_id}`: {r.status}" for r in bad.itertuples())
        text += "\n"
    text += (
        "\n*Wall time: from the manifest when it records one, else (≈) last log write minus the "
        "manifest's creation time.*\n"
    )
    return text


def claims_markdown(verdicts: list[Verdict], rules: Rules) -> str:
    """The overall verdict per claim, then every decided part with its numbers and rule."""
    lines = ["| Claim | Verdict (all models) | Per model |", "|---|---|---|"]
    for v in verdicts:
        if v.part == "all" and v.model == "all models":
            lines.append(f"| {v.claim}. {v.statement} | **{v.verdict}** | {v.evidence} |")
    lines += [
        "",
        "| Claim part | Model | Statistic | Value | s.e. | Verdict | Numbers | Rule |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v in verdicts:
        if v.part == "all":
            continue
        ratio = " / " in v.statistic
        val = "n/a" if not math.isfinite(v.value) else f"{v.value:.3g}×" if ratio else f"{v.value:+.4f}"
        se = f"{v.se:.4f}" if math.isfinite(v.se) else ""
        lines.append(f"| {v.part} | {v.model} | {v.statistic} | {val} | {se} | {v.verdict} | {v.evidence} | {v.rule} |")
    lines += [
        "",
        f"Decision constants: z = {rules.z} s.e.; matching margin {rules.match_margin} (accuracy fraction); "
        f'smallest claimed accuracy effect {rules.min_effect}; "rises sharply" = ×{rules.clip_rise}; '
        f'"order of magnitude" = ≤ {rules.clip_ratio}×. A cell\'s s.e. is the larger of the seed s.e. and the '
        "evaluation s.e./√n; a difference's s.e. is √(se₁² + se₂²). Clipping ratios are steady-state means "
        "(updates ≥ s). Parts with a missing run are inconclusive.",
    ]
    return "\n".join(lines) + "\n"


def check_selection(
    tables, runs: Path, models: list[str] | None, seeds: list[int] | None, stale: int | None
) -> tuple[list[str], int]:
    """The models and stale setting to report; a :class:`UserError` when a selection matches no run
    (a report of "inconclusive" claims about nothing would look like a result)."""
    u = tables.updates
    if u.empty:
        raise UserError("no loadable run", runs, "train runs first (`make reproduce`) or check --results")
    present = order_models(u["model"].unique())
    unknown = [m for m in models or [] if m not in present]
    if unknown:
        raise UserError(f"no runs of model(s) {', '.join(unknown)}", runs, f"choose from {', '.join(present)}")
    seeds_present = sorted(int(x) for x in u["seed"].unique())
    if seeds and not set(seeds) & set(seeds_present):
        raise UserError(
            f"no runs with seed(s) {', '.join(map(str, seeds))}",
            runs,
            f"choose from {', '.join(map(str, seeds_present))}",
        )
    levels = sorted(int(x) for x in u["staleness"].unique())
    if stale is None:
        stale = max([lv for lv in levels if lv > 0], default=0)
    elif stale not in levels:
        raise UserError(f"no runs at staleness {stale}", runs, f"choose --stale from {', '.join(map(str, levels))}")
    return models or present, stale


def build_report(
    results_dir: str | Path,
    profile: str,
    stale: int | None = None,
    models: list[str] | None = None,
    seeds: list[int] | None = None,
    figures: bool = True,
    figures_src: str | Path | None = None,
    rules: Rules | None = None,
) -> Path:
    """Write ``report.md``, ``report.html`` and ``claims.csv`` (plus figures and Table 1) under the results
    tree of ``profile``; returns the path of ``report.md``."""
    root = resolve_results(results_dir, profile)
    runs, fig_dir = root / "runs", root / "figures"
    rules = rules or Rules()
    if not runs.is_dir():
        raise UserError("no runs folder", runs, "give --results results/<profile> (the folder holding runs/)")
    inv = scan_runs(runs)
    tables = load_runs(runs, warn=False)
    models, stale = check_selection(tables, runs, models, seeds, stale)
    check_writable(root, "make it writable, or copy the results tree somewhere writable")
    codes = make_figures(runs, fig_dir, stale, models, seeds, figures_src) if figures and models else {}
    cells = Cells(tables, seeds)
    t1 = build_table1(tables, stale, models, seeds)
    write_table1(t1, fig_dir, stale)
    verdicts = judge_claims(tables, stale, models, seeds, rules)
    atomic_write_text(root / "claims.csv", claims_frame(verdicts).to_csv(index=False))

    md = [
        f"# M2PO reproduction report — profile `{profile}`",
        "",
        f"Generated {datetime.now(UTC).isoformat(timespec='seconds')} from `{runs}`. Stale setting s = {stale} "
        f"optimizer updates; models: {', '.join(models) or 'none'}"
        f"{'; seeds ' + ', '.join(map(str, seeds)) if seeds else ''}. Paper: arXiv 2510.01161 (s = 256).",
        "",
        "Conventions: accuracy = held-out accuracy of one evaluation (tiny engine: sampled, temperature 1; paper "
        "profile: 8-benchmark Avg); curves and bars show the mean over seeds with a ± 1 s.e. band; per-update "
        "metrics are smoothed with a centred rolling mean; peak = best evaluation of a run, final = last.",
        "",
        "## Run inventory",
        "",
        inventory_markdown(inv),
        "## Headline claims (PAPER.md §9)",
        "",
        claims_markdown(verdicts, rules),
        "## Table 1",
        "",
        table1_markdown(t1, stale),
        "Tidy numbers: [figures/table1.csv](figures/table1.csv).",
        "",
        "## Figures",
        "",
    ]
    pv = paper_values()
    for name, what in FIGURES.items():
        fn = SENTENCES[name]
        kwargs = {"paper": pv.get("fig7b_clip_ratio_percent")} if name == "fig7b" else {}
        try:
            sentence = fn(cells, models, stale, **kwargs) if models else "No runs."
        except Exception as e:  # a sentence must not sink the report
            sentence = f"(summary unavailable: {type(e).__name__}: {e})"
        exists = (fig_dir / f"{name}.png").exists()
        status = "" if codes.get(name, 0) == 0 else " *(drawn without data for any series)*"
        md += [f"### {name} — {what}", ""]
        md += [f"![{name}](figures/{name}.png)" if exists else f"*{name}.png was not produced.*", ""]
        md += [f"[PDF](figures/{name}.pdf){status}. {sentence}", ""]
    holds = sum(v.verdict == HOLDS for v in verdicts if v.part == "all" and v.model == "all models")
    md += ["## Summary", "", f"{holds} of 4 headline claims hold on this study's numbers (see the rules above).", ""]
    text = "\n".join(md)
    md_path = root / "report.md"
    atomic_write_text(md_path, text)
    atomic_write_text(root / "report.html", to_html(text, f"M2PO reproduction report — {profile}"))
    return md_path
