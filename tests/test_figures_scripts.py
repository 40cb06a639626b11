"""Figure scripts on synthetic results trees: Table 1 numbers equal hand-computed means, missing-run notes,
exit codes, the command line. (Every script drawing every figure is checked by tests/test_report.py, which
runs them all once for the report.)"""

from __future__ import annotations

import math
import subprocess
import sys

import pandas as pd
import pytest

from m2po.analysis.figure_list import SCRIPTS_DIR
from m2po.analysis.report import draw_figures, make_figures
from m2po.analysis.synthetic import SynthCell, scenario, write_synthetic_runs

STALE = 16


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    write_synthetic_runs(root / "runs", scenario("paper", stale=STALE))
    codes = make_figures(root / "runs", root / "figures", STALE, names=["table1"])
    assert codes == {"table1": 0}
    return root


def test_table1_matches_hand_computed_means(study) -> None:
    root = study
    t = pd.read_csv(root / "figures" / "table1.csv")
    ours = t[t["source"] == "ours"].set_index(["model", "method", "staleness", "metric"])
    # two seeds at ±0.01 around the cell's curve: mean = the curve; s.e. = max(0.01, 0.01/√2) = 0.01
    expected = {
        ("1M", "grpo", 0, "peak"): 80.0,
        ("1M", "grpo", STALE, "peak"): 68.0,
        ("1M", "gspo", STALE, "final"): 66.0,
        ("0.1M", "grpo_notr", STALE, "peak"): 80.0,
        ("0.1M", "grpo_notr", STALE, "final"): 20.0,
        ("0.1M", "m2po_released", STALE, "peak"): 78.0,
        ("0.1M", "grpo_notr", STALE, "peak_update"): 16.0,
    }
    for key, value in expected.items():
        row = ours.loc[key]
        assert math.isclose(row["mean"], value, abs_tol=1e-9), key
        assert row["n"] == 2
    assert math.isclose(ours.loc[("1M", "m2po", STALE, "peak"), "se"], 1.0, rel_tol=1e-9)
    paper = t[(t["source"] == "paper") & (t["metric"] == "Avg")]
    assert len(paper) == 22 and paper["mean"].max() == 55.1
    md = (root / "figures" / "table1.md").read_text()
    assert "| 1M | M2PO | 16 | 80.0 ± 1.0 | 80.0 ± 1.0 | 2 | +0.0 | +12.0 |" in md
    assert "| Qwen3-Base-4B | 50.7 | 40.1 | 43.2 | 51.3 | +0.6 | +11.2 |" in md


def test_missing_runs_are_noted_not_fatal(tmp_path) -> None:
    cells = {("0.1M", "grpo", 0, None): SynthCell([0.5, 0.6, 0.7, 0.8])}
    write_synthetic_runs(tmp_path / "runs", cells)
    argv = ["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "fig"), "--stale", "16"]
    assert draw_figures(["fig1"], argv) == {"fig1": 0}  # GRPO s=0 is there; the rest is noted
    assert (tmp_path / "fig" / "fig1.png").stat().st_size > 0
    assert draw_figures(["fig6"], argv) == {"fig6": 1}  # no series at all: drawn with the note, exit 1
    assert (tmp_path / "fig" / "fig6.png").stat().st_size > 0


def test_no_runs_at_all_exits_2(tmp_path) -> None:
    (tmp_path / "runs").mkdir()
    argv = ["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "fig")]
    assert draw_figures(["fig3", "table1"], argv) == {"fig3": 2, "table1": 2}
    assert not (tmp_path / "fig" / "fig3.png").exists()


def test_script_command_line(study, tmp_path) -> None:
    out = tmp_path / "fig"
    cmd = [sys.executable, str(SCRIPTS_DIR / "draw.py"), "fig3", "--runs", str(study / "runs"), "--out", str(out)]
    res = subprocess.run([*cmd, "--models", "1M", "--seeds", "1"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert (out / "fig3.png").stat().st_size > 10_000 and (out / "fig3.pdf").stat().st_size > 2_000


def test_a_figure_that_raises_is_reported_failed_and_the_next_is_drawn(tmp_path) -> None:
    src = tmp_path / "figures"
    src.mkdir()
    (src / "draw.py").write_text((SCRIPTS_DIR / "draw.py").read_text())
    (src / "fig2.py").write_text("def main(argv):\n    raise RuntimeError('planted')\n")
    (src / "fig3.py").write_text("def main(argv):\n    return 0\n")
    assert draw_figures(["fig2", "fig3"], [], figures_src=src) == {"fig2": 4, "fig3": 0}
    (src / "draw.py").write_text("raise SystemExit(9)\n")  # the program itself fails: no figure was drawn
    assert draw_figures(["fig2", "fig3"], [], figures_src=src) == {"fig2": 4, "fig3": 4}
