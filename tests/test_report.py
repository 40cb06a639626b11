"""The report: every figure drawn and linked, Table 1, the claims decided right on data built to hold,
to fail and to be too noisy, claims.csv, the HTML, the CLI module and the paper's values."""

from __future__ import annotations

import argparse
import math

import pandas as pd
import pytest

from m2po.analysis.cells import Cells
from m2po.analysis.claims import FAILS, HOLDS, INCONCLUSIVE, Rules, claims_frame, combine, judge_claims
from m2po.analysis.figure_list import PLOTS
from m2po.analysis.html import simple_markdown
from m2po.analysis.paper import paper_table1, paper_values
from m2po.analysis.report import build_report
from m2po.analysis.runs import load_runs
from m2po.analysis.synthetic import SynthCell, scenario, write_synthetic_runs

STALE = 16


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("results") / "tiny"
    write_synthetic_runs(root / "runs", scenario("paper", stale=STALE))
    path = build_report(root.parent, "tiny", stale=STALE)
    return root, path


def _overall(verdicts) -> dict[int, str]:
    return {v.claim: v.verdict for v in verdicts if v.part == "all" and v.model == "all models"}


def test_report_draws_and_links_every_figure(report) -> None:
    root, path = report
    assert path == root / "report.md"
    md = path.read_text()
    for name in [f.id for f in PLOTS]:
        png, pdf = root / "figures" / f"{name}.png", root / "figures" / f"{name}.pdf"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000, name
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 2_000, name
        assert f"![{name}](figures/{name}.png)" in md
    assert "`figures/<name>.pdf`" in md  # the PDFs are named once, beside the report
    assert "drawn without data" not in md and "was not produced" not in md
    html = (root / "report.html").read_text()
    assert html.count("<img") == len(PLOTS) and "<table" in html
    assert (root / "figures" / "table1.csv").exists() and (root / "figures" / "table1.md").exists()


def test_report_sentences_and_inventory_come_from_the_data(report) -> None:
    md = report[1].read_text()
    assert "| 1M | m2po | 16 | 0.16 | 2 | 0,1 | 2/2 | 24 | 1.0 min |" in md  # wall time from the manifest
    assert "M2PO s=16 80.0 ± 1.0% (n=2)" in md  # fig1: peak of the largest model's M2PO
    assert "GRPO s=16 clips 5.00" in md and "(12.5×)" in md  # fig4a: 0.05 vs 0.004
    assert "τ=0.16: 65.0 ± 1.0% (n=2)" in md  # fig8
    assert "4 of 4 headline claims hold" in md


def test_claims_hold_on_paper_like_data(report) -> None:
    root, _ = report
    claims = pd.read_csv(root / "claims.csv")
    overall = claims[(claims["part"] == "all") & (claims["model"] == "all models")]
    assert list(overall["verdict"]) == [HOLDS] * 4
    parts = claims[claims["part"] != "all"]
    assert set(parts["verdict"]) == {HOLDS}
    assert set(parts["model"]) == {"0.1M", "1M"}
    c4 = parts[parts["part"].str.startswith("4")].iloc[0]
    assert math.isclose(c4["value"], 0.003 / 0.05, rel_tol=1e-9)


def test_claims_fail_on_contrary_data(tmp_path) -> None:
    write_synthetic_runs(tmp_path / "runs", scenario("contrary", stale=STALE))
    verdicts = judge_claims(Cells(load_runs(tmp_path / "runs", warn=False)), STALE)
    assert _overall(verdicts) == {1: FAILS, 2: FAILS, 3: FAILS, 4: FAILS}
    by_part = {(v.part, v.model): v.verdict for v in verdicts}
    assert by_part[("1a prosperity", "1M")] == HOLDS  # no-TR is as good as on-policy ...
    assert by_part[("1b collapse", "1M")] == FAILS  # ... and never collapses
    assert by_part[("3b beats stale GRPO", "1M")] == FAILS


def test_claims_inconclusive_when_noisy_or_missing(tmp_path) -> None:
    noisy = {"noise": 0.05, "eval_se": 0.05}
    cells = {
        ("1M", "grpo", 0, None): SynthCell([0.5, 0.6, 0.7, 0.8], clip=0.01, **noisy),
        ("1M", "grpo", STALE, None): SynthCell([0.5, 0.6, 0.7, 0.72], clip=0.02, **noisy),
        ("1M", "m2po", STALE, None): SynthCell([0.5, 0.6, 0.7, 0.75], clip=0.0015, **noisy),
    }
    write_synthetic_runs(tmp_path / "runs", cells)
    verdicts = judge_claims(Cells(load_runs(tmp_path / "runs", warn=False)), STALE)
    by_part = {v.part: v for v in verdicts if v.model == "1M"}
    assert by_part["3a matches on-policy"].verdict == INCONCLUSIVE  # −0.05 ± 0.07
    assert by_part["3b beats stale GRPO"].verdict == INCONCLUSIVE  # +0.03 ± 0.07
    assert by_part["1a prosperity"].verdict == INCONCLUSIVE  # no no-TR run
    assert math.isnan(by_part["1a prosperity"].value)
    assert by_part["4 clip order of magnitude"].verdict == HOLDS  # 0.0015 vs 0.02: decided by the clip data
    assert _overall(verdicts)[3] == INCONCLUSIVE
    # a looser z decides what z = 2 could not
    loose = judge_claims(Cells(load_runs(tmp_path / "runs", warn=False)), STALE, rules=Rules(z=0.1))
    assert {v.part: v.verdict for v in loose if v.model == "1M"}["3b beats stale GRPO"] == HOLDS
    frame = claims_frame(verdicts)
    assert list(frame.columns[:4]) == ["claim", "part", "model", "verdict"] and frame["statement"].str.len().min() > 20


def test_combine() -> None:
    assert combine([HOLDS, HOLDS]) == HOLDS
    assert combine([HOLDS, INCONCLUSIVE]) == INCONCLUSIVE
    assert combine([INCONCLUSIVE, FAILS]) == FAILS
    assert combine([]) == INCONCLUSIVE


def test_paper_values_reproduce_the_claim_ranges() -> None:
    t = paper_table1()
    assert len(t) == 22 and list(t.columns[-1:]) == ["Avg"]
    avg = t.pivot_table(index="model", columns=["method", "s"], values="Avg")
    vs_on = (avg[("m2po", 256)] - avg[("grpo", 0)]).round(1)
    vs_stale = (avg[("m2po", 256)] - avg[("grpo", 256)]).round(1)
    pv = paper_values()
    assert [vs_on.min(), vs_on.max()] == pv["claim3"]["vs_on_policy_points"]
    assert [vs_stale.min(), vs_stale.max()] == pv["claim3"]["vs_stale_grpo_points"]
    assert pv["tau"] == 0.04 and pv["fig7b_clip_ratio_percent"]["Qwen2.5-32B"]["grpo_s256"] == 1.22


def test_cli_report_module(report, capsys) -> None:
    from m2po.analysis import cli_report

    p = argparse.ArgumentParser()
    cli_report.add_arguments(p)
    root, _ = report
    args = p.parse_args(["--results", str(root), "--profile", "tiny", "--stale", str(STALE), "--no-figures"])
    assert cli_report.run(args) == 0
    assert "report written to" in capsys.readouterr().out
    assert "![fig1](figures/fig1.png)" in (root / "report.md").read_text()


def test_simple_markdown_fallback() -> None:
    html = simple_markdown(
        "# T\n\ntext **b** and `c`\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n- x\n- y\n\n![f](figures/f.png)"
    )
    assert "<h1>T</h1>" in html and "<strong>b</strong>" in html and "<code>c</code>" in html
    assert "<th>a</th>" in html and "<td>2</td>" in html and "<li>y</li>" in html
    assert '<img alt="f" src="figures/f.png">' in html
