"""The reproduction report of one results tree: ``results/<profile>/report.md`` + ``report.html``, ``claims.csv``.

Contents (:mod:`m2po.analysis.sections`): the verdict on the paper's four headline claims first, a table
of contents, the claims judged on this study's numbers with the deciding numbers and rules
(:mod:`m2po.analysis.claims`), Table 1 beside the paper's, every figure with one sentence computed from
the data, the run inventory. ``report.html`` embeds the figures, so it survives being moved or mailed.

The figures of :mod:`m2po.analysis.figure_list` are (re)drawn, all in one process, by ``figures/draw.py``,
the program the Snakefile's figures job runs, unless ``figures`` is False; a figure that cannot be drawn is
reported as missing, never fatal. Table 1 (``table1.csv``/``.md``) the report builds and writes itself.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from ..errors import UserError, check_writable
from ..fileio import atomic_write_text
from .aggregate import order_models
from .benchmarks import stage_table1, write_benchmark_table
from .cells import Cells
from .claims import Rules, claims_frame, judge_claims
from .figure_list import EXIT_CODES, EXIT_FAILED, FIGURES, PLOTS, SCRIPTS_DIR, drawn_codes
from .findings import SENTENCES
from .html import to_html
from .paper import paper_values
from .power import power_frame
from .regime import regime_table
from .runs import load_runs, scan_runs
from .sections import (
    anchor,
    claims_markdown,
    contents_markdown,
    inventory_markdown,
    power_markdown,
    regime_markdown,
    verdict_markdown,
)
from .table1 import LABELS, build_table1, table1_cells, table1_markdown, write_table1

log = logging.getLogger("m2po.analysis")


def resolve_results(results: str | Path, profile: str) -> Path:
    """``results`` itself when it holds ``runs/``, else ``results/<profile>``."""
    results = Path(results)
    if not (results / "runs").is_dir() and (results / profile / "runs").is_dir():
        return results / profile
    return results


def draw_figures(names: list[str], argv: list[str], figures_src: str | Path | None = None) -> dict[str, int]:
    """Draw the figures ``names`` with ``argv`` by ``python figures/draw.py names... argv``, the one program the
    Snakefile's figures job runs too, all in one process; the exit code of each figure drawn
    (:data:`~m2po.analysis.figure_list.EXIT_CODES`; missing: not reached, after an output could not be written)."""
    draw = Path(figures_src or SCRIPTS_DIR) / "draw.py"
    res = subprocess.run([sys.executable, str(draw), *names, *argv], capture_output=True, text=True)
    codes = drawn_codes(res.stdout)
    if res.returncode and not codes:  # the program itself failed (not one figure): none was drawn
        log.warning("figures/draw.py exited %d: %s", res.returncode, res.stderr.strip()[-300:])
        return dict.fromkeys(names, EXIT_FAILED)
    for name, code in codes.items():
        if code:
            log.warning("figure %s: %s", name, EXIT_CODES.get(code, f"exit {code}"))
    if any(code not in (0, 1) for code in codes.values()):
        log.warning("figures/draw.py: %s", res.stderr.strip()[-300:])
    return codes


def make_figures(
    runs: Path,
    out: Path,
    stale: int,
    models: list[str] | None = None,
    seeds: list[int] | None = None,
    figures_src: str | Path | None = None,
    names: list[str] | None = None,
) -> dict[str, int]:
    """Draw every figure of the list (or ``names``) on ``runs`` into ``out``; exit code per figure drawn.
    Drawing stops at the first output that cannot be written (a full disk or a read-only folder): every
    later one would fail the same way, and the report's own writes then say where, once."""
    argv = ["--runs", str(runs), "--out", str(out), "--stale", str(stale)]
    if models:
        argv += ["--models", *models]
    if seeds:
        argv += ["--seeds", *map(str, seeds)]
    return draw_figures(names or [f.id for f in FIGURES], argv, figures_src)


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
    # the plots only: Table 1 is built below anyway (the report prints it), and written once, from there
    plots = [f.id for f in PLOTS]
    codes = make_figures(runs, fig_dir, stale, models, seeds, figures_src, plots) if figures and models else {}
    cells = Cells(tables, seeds)
    t1 = build_table1(tables, stale, models, seeds)
    bench, stage = stage_table1(tables, table1_cells(stale), LABELS, models=models, seeds=seeds)
    if stage:
        write_benchmark_table(bench, fig_dir)
    write_table1(t1, fig_dir, stale, stage)
    verdicts = judge_claims(cells, stale, models, rules)
    atomic_write_text(root / "claims.csv", claims_frame(verdicts).to_csv(index=False))
    power = power_frame(verdicts, cells, stale, rules)
    atomic_write_text(root / "power.csv", power.to_csv(index=False))
    regime = regime_table(cells, root, stale, models)
    atomic_write_text(root / "regime.csv", regime.to_csv(index=False))

    md = [
        f"# M2PO reproduction report — profile `{profile}`",
        "",
        verdict_markdown(verdicts),
        contents_markdown({f.id: f.title for f in PLOTS}),
        anchor("claims"),
        "## Headline claims",
        "",
        "The paper's four headline claims, each split into parts decided per model on this study's numbers "
        f"(stale setting s = {stale} optimizer updates; the paper's runs use s = 256).",
        "",
        claims_markdown(verdicts, rules),
        anchor("power"),
        "## What the study could detect",
        "",
        power_markdown(power),
        anchor("regime"),
        "## Regime of the study",
        "",
        regime_markdown(regime),
        anchor("table-1"),
        "## Table 1",
        "",
        *([stage, ""] if stage else []),
        table1_markdown(t1, stale),
        "Tidy numbers: `figures/table1.csv`"
        + (" and `figures/table1_benchmarks.csv`" if stage else "")
        + " beside this report.",
        "",
        anchor("figures"),
        "## Figures",
        "",
        "Each figure is also a PDF beside this report (`figures/<name>.pdf`).",
        "",
    ]
    pv = paper_values()
    for fig in PLOTS:
        name, what = fig.id, fig.title
        fn = SENTENCES[name]
        kwargs = {"paper": pv.get("fig7b_clip_ratio_percent")} if name == "fig7b" else {}
        try:
            sentence = fn(cells, models, stale, **kwargs) if models else "No runs."
        except Exception as e:  # a sentence must not sink the report
            sentence = f"(summary unavailable: {type(e).__name__}: {e})"
        exists = (fig_dir / f"{name}.png").exists()
        code = codes.get(name) if codes else 0  # no codes: figures not drawn by this call (--no-figures)
        if code is None:
            status = "*(not drawn this time: an earlier figure's output could not be written; see the log)* "
        else:
            status = "" if code == 0 else f"*({EXIT_CODES.get(code, f'exit {code}')})* "
        md += [anchor(name), f"### {name} — {what}", ""]
        md += [f"![{name}](figures/{name}.png)" if exists else f"*{name}.png was not produced.*", ""]
        md += [f"{status}{sentence}", ""]
    md += [
        anchor("inventory"),
        "## Run inventory",
        "",
        inventory_markdown(inv),
        anchor("conventions"),
        "## Conventions",
        "",
        f"Generated {datetime.now(UTC).isoformat(timespec='seconds')} from `{runs}`; models: "
        f"{', '.join(models)}{'; seeds ' + ', '.join(map(str, seeds)) if seeds else ''}. Paper: "
        'Zheng, Zhao, Chen, "Prosperity before Collapse", arXiv 2510.01161.',
        "",
        "Accuracy is the held-out accuracy of one evaluation, in percent throughout: the evaluation stage's Avg "
        "where it graded the checkpoint (`benchmarks.csv`: the 8-benchmark Avg in the paper profile, the held-out "
        "set in the tiny one; peak and final then come from the graded checkpoints), else the in-training "
        "evaluation (tiny engine: one sample per problem at temperature 1); differences are in percentage points. "
        "Curves and "
        "bars show the mean over seeds with a ± 1 s.e. band; per-update metrics are smoothed with a centred "
        "rolling mean; peak = best evaluation of a run, final = last.",
        "",
    ]
    text = "\n".join(md)
    md_path = root / "report.md"
    atomic_write_text(md_path, text)
    atomic_write_text(root / "report.html", to_html(text, f"M2PO reproduction report — {profile}", base_dir=root))
    return md_path
