"""The one list of figures (m2po.analysis.figure_list) against what it lists: every figure in figures/ is on
it and every entry has its figures/<id>.py, a report sentence and a row in docs/figures.md; a figure names
itself by the list (title in --help, outputs under its id); the report runs figures/draw.py, the one
program the Snakefile runs too, and imports no figure."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from m2po.analysis.figure_list import EXIT_CODES, EXIT_NOT_WRITTEN, FIGURES, PLOTS, SCRIPTS_DIR, figure
from m2po.analysis.findings import SENTENCES

ROOT = Path(__file__).resolve().parents[1]


#: the paper's figures this package redraws (Fig. 1-9 and 11 with their panels, and Table 1), written from
#: the paper, not from the list: dropping an entry from the list (and its script) must fail here
PAPER_FIGURES = [
    "fig1", "fig2", "fig3", "fig4a", "fig4b", "fig5", "fig6", "fig7a", "fig7b", "fig8", "fig9a", "fig9b", "fig11",
    "table1",
]  # fmt: skip


def test_the_list_is_what_figures_holds():
    ids = [f.id for f in FIGURES]
    assert len(ids) == len(set(ids)) == 14
    assert ids == PAPER_FIGURES
    assert SCRIPTS_DIR == ROOT / "figures"
    drawn = {p.stem for p in SCRIPTS_DIR.glob("*.py") if p.stem not in ("draw", "common", "style")}
    assert drawn == set(ids)  # no figure off the list, no entry without its figures/<id>.py
    for f in FIGURES:
        assert (ROOT / f.script).is_file() and SCRIPTS_DIR / f"{f.id}.py" == ROOT / f.script
    assert [f.id for f in PLOTS] == [i for i in ids if i != "table1"]


def test_every_figure_has_its_sentence_and_its_docs_row():
    assert list(SENTENCES) == [f.id for f in PLOTS]
    docs = (ROOT / "docs" / "figures.md").read_text()
    rows = set(re.findall(r"^\| (fig\w+|table1) \|", docs, flags=re.M))
    assert rows == {f.id for f in FIGURES}


def test_outputs_and_lookup():
    assert figure("fig4b").outputs("res/figures") == ["res/figures/fig4b.png", "res/figures/fig4b.pdf"]
    assert figure("table1").outputs("x") == ["x/table1.csv", "x/table1.md"]
    assert figure("fig11").paper == "Fig. 11" and figure("table1").is_table
    with pytest.raises(KeyError, match="known: fig1, fig2"):
        figure("fig10")
    assert EXIT_CODES[EXIT_NOT_WRITTEN] == "output not written"


def test_a_figure_describes_itself_from_the_list():
    res = subprocess.run(
        [sys.executable, str(ROOT / "figures" / "draw.py"), "fig9b", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "Fig. 9b: KL estimate k3 per update of GRPO s=0, GRPO s=S, M2PO s=S." in " ".join(res.stdout.split())


def test_the_report_runs_the_one_program_and_imports_no_figure():
    src = (ROOT / "m2po" / "analysis" / "report.py").read_text()
    tree = ast.parse(src)
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "importlib" not in imported and "importlib.util" not in imported
    assert "sys.path" not in src
    assert '"draw.py"' in src
    for f in (ROOT / "figures").glob("*.py"):  # figures/draw.py is the only program there
        assert "sys.path" not in f.read_text(), f
        assert ('if __name__ == "__main__":' in f.read_text()) == (f.name == "draw.py"), f
