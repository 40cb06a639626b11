"""The report and figures as a researcher reads them: the verdict first, a table of contents, accuracies
in one unit, no empty columns, rules in a legend rather than in table cells, images embedded in the
HTML, no reference to files a user does not have; each warning once with integer counts; fig6, fig7b
and fig8 drawn so they cannot mislead."""

from __future__ import annotations

import csv
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest

from m2po.analysis.figure_list import PLOTS
from m2po.analysis.report import build_report
from m2po.analysis.synthetic import SynthCell, scenario, write_synthetic_runs

STALE = 16
FIGURES_SRC = Path(__file__).resolve().parents[1] / "figures"


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, str, str]:
    root = tmp_path_factory.mktemp("results") / "tiny"
    write_synthetic_runs(root / "runs", scenario("paper", stale=STALE))
    md = build_report(root.parent, "tiny", stale=STALE).read_text()
    return root, md, (root / "report.html").read_text()


def test_verdict_comes_first_then_the_contents(report):
    _, md, _ = report
    body = [ln for ln in md.splitlines() if ln.strip()]
    assert body[0].startswith("# M2PO reproduction report")
    assert body[1].startswith("**Verdict: 4 of 4 headline claims hold on this study's numbers")
    contents = md.index("**Contents**")
    assert contents < md.index("## Headline claims") < md.index("## Table 1") < md.index("## Figures")
    for anchor in ("claims", "table-1", "figures", "inventory", *(f.id for f in PLOTS)):
        assert f"(#{anchor})" in md[contents : md.index("## Headline claims")], anchor
        assert f'<a id="{anchor}"></a>' in md, anchor


def test_accuracies_are_in_percent_throughout(report):
    _, md, _ = report
    text = "\n".join(ln for ln in md.splitlines() if not ln.startswith("Mean training reward"))  # a reward
    assert not re.search(r"\b0\.\d{3} ± 0\.\d{3}\b", text), "an accuracy written as a fraction"
    assert "80.0 ± 1.0% (n=2)" in md  # claims, figure sentences
    assert "| 0.1M | M2PO | 16 | 80.0 ± 1.0 | 80.0 ± 1.0 | 2 |" in md  # Table 1
    assert "+12.0 pts" in md


def test_tables_have_no_empty_columns(report):
    _, md, _ = report
    for block in re.findall(r"((?:^\|.*\|\n)+)", md, flags=re.M):
        rows = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in block.strip().splitlines()]
        header, body = rows[0], rows[2:]
        for i, name in enumerate(header):
            assert any(r[i] for r in body), f"column {name!r} is empty in every row"
    assert "Paper Avg" not in md  # the paper trained none of the tiny models


def test_rules_are_a_legend_not_table_cells(report):
    _, md, _ = report
    claims = md[md.index("## Headline claims") : md.index("## Table 1")]
    table = [ln for ln in claims.splitlines() if ln.startswith("|")]
    assert "Rule" not in table[0]
    assert not any("d − 2·se" in ln for ln in table)
    legend = claims[claims.index("Rules (") :]
    for part in ("1a prosperity", "1b collapse", "2a accuracy degrades", "2b clipping rises", "3a matches on-policy"):
        assert f"- **{part}** — " in legend


def test_no_reference_to_files_a_user_does_not_have(report):
    root, md, _ = report
    assert "PAPER.md" not in md and "ARCHITECTURE.md" not in md and "/work/shared" not in md
    for target in re.findall(r"\]\(([^)#]+)\)", md):  # every relative link resolves beside the report
        assert (root / target).exists(), target


def test_html_embeds_every_image(report):
    root, _, html = report
    imgs = re.findall(r'<img [^>]*src="([^"]+)"', html)
    assert len(imgs) == len(PLOTS)
    assert all(src.startswith("data:image/png;base64,") for src in imgs)
    moved = root.parent / "mailed.html"  # no other file is needed
    moved.write_text(html)
    assert 'src="figures/' not in moved.read_text()


def test_each_warning_once_with_integer_counts(tmp_path):
    root = tmp_path / "tiny"
    write_synthetic_runs(root / "runs", scenario("paper", stale=STALE))
    partial = root / "runs" / f"1M-grpo-s{STALE}-seed1" / "updates.csv"
    rows = partial.read_text().splitlines(keepends=True)
    partial.write_text("".join(rows[:11]))  # 10 of 24 updates
    res = subprocess.run(
        [sys.executable, "-m", "m2po.cli", "report", "--results", str(root)], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("WARNING")]
    assert len(warnings) == len(set(warnings)), "\n".join(warnings)
    assert f"WARNING run 1M-grpo-s{STALE}-seed1 is partial: 10 of 24 updates" in warnings


# -- the figures -----------------------------------------------------------------------------------------------


def _figure(name: str, runs: Path, out: Path, monkeypatch) -> matplotlib.figure.Figure:
    """Draw ``figures/<name>.py`` in this process (the test looks inside its matplotlib figure; the report and
    the Snakefile run figures/draw.py) and return its figure (kept open)."""
    sys.path.insert(0, str(FIGURES_SRC))
    import common

    kept = {}
    original = common.Ctx.finish

    def keep(self, fig):
        kept["fig"] = fig
        fig.canvas.draw()
        kept["renderer"] = fig.canvas.get_renderer()
        return original(self, fig)

    monkeypatch.setattr(common.Ctx, "finish", keep)
    monkeypatch.setattr(matplotlib.pyplot, "close", lambda *a, **k: None)
    spec = importlib.util.spec_from_file_location(f"fig_{name}", FIGURES_SRC / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--runs", str(runs), "--out", str(out), "--stale", str(STALE)]) == 0
    return kept["fig"], kept["renderer"]


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.fixture(scope="module")
def runs(report) -> Path:
    return report[0] / "runs"


def test_fig6_legend_off_the_data_and_collapse_in_its_own_panel(runs, tmp_path, monkeypatch):
    fig, renderer = _figure("fig6", runs, tmp_path, monkeypatch)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2
    legend = fig.legends[0].get_window_extent(renderer)
    for ax in axes:
        assert not _overlaps(legend, ax.get_window_extent(renderer))
    lo, hi = axes[1].get_ylim()
    assert lo > 40, "the zoom leaves out the collapsing methods (they fall to 10 %)"
    assert "collapse" in axes[1].get_title()


def test_fig7b_panels_share_the_y_scale_and_the_legend_touches_no_tick(runs, tmp_path, monkeypatch):
    fig, renderer = _figure("fig7b", runs, tmp_path, monkeypatch)
    left, right = [ax for ax in fig.axes if ax.get_visible()]
    assert left.get_ylim() == right.get_ylim()
    assert "same y-scale" in right.get_title()
    legend = fig.legends[0].get_window_extent(renderer)
    for ax in (left, right):
        assert ax.get_legend() is None
        for label in ax.get_yticklabels() + ax.get_xticklabels():
            if label.get_text():
                assert not _overlaps(legend, label.get_window_extent(renderer)), label.get_text()


def test_fig8_log_tau_axis_and_a_single_tau_is_a_point(tmp_path, monkeypatch):
    cells = scenario("paper", stale=STALE)
    cells = {k: v for k, v in cells.items() if not (k[0] == "0.1M" and k[1] == "m2po" and k[3] is not None)}
    cells[("0.1M", "m2po", STALE, 0.01)] = SynthCell([0.5, 0.6, 0.7, 0.75], tau_in_id=True)
    del cells[("0.1M", "m2po", STALE, None)]  # 0.1M: one τ only (0.01)
    write_synthetic_runs(tmp_path / "runs", cells)
    fig, _ = _figure("fig8", tmp_path / "runs", tmp_path / "out", monkeypatch)
    (ax,) = [a for a in fig.axes if a.get_visible()]
    assert ax.get_xscale() == "log"
    lines = {c.get_label(): c.lines[0] for c in ax.containers}  # errorbar: (data line, caps, bars)
    single = [ln for lab, ln in lines.items() if lab.startswith("0.1M")]
    assert single and all(ln.get_linestyle() == "None" and len(ln.get_xdata()) == 1 for ln in single)
    several = [ln for lab, ln in lines.items() if lab.startswith("1M")]
    assert several and all(ln.get_linestyle() != "None" for ln in several)


def test_table1_csv_keeps_percent_and_integer_seed_counts(report):
    root, _, _ = report
    with (root / "figures" / "table1.csv").open() as f:
        ours = [r for r in csv.DictReader(f) if r["source"] == "ours" and r["metric"] == "peak"]
    assert {r["unit"] for r in ours} == {"percent"}


def test_power_and_regime_sections_print_hand_computed_values():
    import pandas as pd

    from m2po.analysis.claims import INCONCLUSIVE
    from m2po.analysis.sections import power_markdown, regime_markdown

    power = pd.DataFrame(
        [
            # a difference: d = 0.010, se = 0.008 -> MDE 1.6 pts, interval -0.6 to +2.6 pts
            [3, "3b beats stale GRPO", "0.1M", INCONCLUSIVE, "peak(M2PO s=64) − peak(GRPO s=64)", 0.010, 0.008,
             0.016, -0.006, 0.026, ""],
            # a ratio: holds, so no "rules out" text
            [4, "4 order of magnitude", "0.1M", "holds", "clip(M2PO s=64) / clip(GRPO s=64)", 0.05, 0.01, 0.02,
             0.03, 0.07, ""],
        ],
        columns=["claim", "part", "model", "verdict", "statistic", "value", "se", "mde", "lo", "hi", "ruled_out"],
    )  # fmt: skip
    text = power_markdown(power)
    row3 = next(ln for ln in text.splitlines() if ln.startswith("| 3b"))
    assert "| 1.6 pts |" in row3 and "-0.6 to +2.6 pts" in row3 and "< -0.6 and > +2.6 pts" in row3
    row4 = next(ln for ln in text.splitlines() if ln.startswith("| 4 "))
    assert "0.02×" in row4 and "0.03× to 0.07×" in row4 and "< 0.03×" not in row4

    regime = pd.DataFrame(
        [
            ["0.1M", "warm start: share of tokens < 0.1 nats", 0.878, float("nan"), 36889, ">= 70%", "met", "d"],
            ["0.1M", "GRPO clipped fraction, s = 0", 0.0013, 0.00005, 8, "<= 0.5%", "met", "d"],
            ["0.1M", "GRPO clipped fraction, s = 64 / s = 0", 11.5, 0.4, 8, "10x to 25x", "met", "d"],
            ["0.1M", "GRPO s = 0 converges: last-quarter mean − peak", -0.008, 0.006, 8, ">= −1 s.e.", "not met", "d"],
        ],
        columns=["model", "target", "measured", "se", "n", "goal", "met", "detail"],
    )
    lines = regime_markdown(regime).splitlines()
    assert any("| 87.80 % |" in ln and "| 36889 |" in ln for ln in lines)
    assert any("| 0.13 % ± 0.01 |" in ln for ln in lines)
    assert any("| 11.5× ± 0.4 |" in ln for ln in lines)
    assert any("| -0.8 pts (1 s.e. = 0.6) |" in ln and "not met" in ln for ln in lines)


def test_report_has_power_and_regime_sections(report):
    root, md, _ = report
    assert md.index("## Headline claims") < md.index("## What the study could detect") < md.index("## Regime")
    assert md.index("## Regime of the study") < md.index("## Table 1")
    assert (root / "power.csv").exists() and (root / "regime.csv").exists()
