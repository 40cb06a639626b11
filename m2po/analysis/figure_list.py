"""The one list of the paper's figures and Table 1 that the study draws: id, paper label, title, script, outputs.

The Snakefile's ``figures`` job draws every entry (``workflow/rules/figures.smk``), the report gives each its section in
this order (:mod:`m2po.analysis.report`) with one sentence from :mod:`m2po.analysis.findings`, and the tests
check every entry; nothing else lists the figures. ``figures/<id>.py`` draws an entry from the tidy run logs
only, and one program runs them, ``python figures/draw.py ID [ID ...] --runs results/<profile>/runs --out
results/<profile>/figures [...]`` (all of them in one process, for the Snakefile's job and for the report). The
module itself imports nothing beyond the standard library.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

#: exit code of drawing one figure (``figures/draw.py`` prints it per figure): 0 drawn; 1 drawn, but with no
#: data for any series (the figure says so); 2 no loadable run under --runs (nothing written); 3 its output
#: could not be written (a full disk, a read-only folder: one line on stderr says where)
EXIT_CODES = {
    0: "drawn",
    1: "drawn without data for any series",
    2: "no loadable run",
    3: "output not written",
    4: "failed (traceback in the log)",
}
EXIT_NOT_WRITTEN = 3
EXIT_FAILED = 4


def draw_line(fig_id: str, code: int) -> str:
    """The line ``figures/draw.py`` prints after each figure; :func:`drawn_codes` reads them back."""
    return f"draw: {fig_id} exit {code}"


def drawn_codes(output: str) -> dict[str, int]:
    """Figure id -> exit code, from the :func:`draw_line` lines of ``figures/draw.py``'s output."""
    return {m[1]: int(m[2]) for m in re.finditer(r"^draw: (\S+) exit (\d+)$", output, flags=re.M)}


#: the figure scripts live beside the package in the source tree (``figures/``), not inside it
SCRIPTS_DIR = Path(__file__).resolve().parents[2] / "figures"


@dataclass(frozen=True)
class Figure:
    """One figure (or table) of the paper: ``figures/<id>.py`` writes :meth:`outputs` into the figures folder."""

    id: str
    paper: str  #: its label in the paper ("Fig. 4a", "Table 1")
    title: str  #: what it shows, in the study's terms (s = S is the stale setting, --stale)

    @property
    def is_table(self) -> bool:
        return self.id.startswith("table")

    @property
    def script(self) -> str:
        """Its module ``figures/<id>.py`` (``main(argv)``), relative to the repository root."""
        return f"figures/{self.id}.py"

    def outputs(self, folder: str | Path = "") -> list[str]:
        """The files it writes into ``folder``: PNG and PDF for a figure, CSV and Markdown for a table."""
        exts = ("csv", "md") if self.is_table else ("png", "pdf")
        return [str(Path(folder) / f"{self.id}.{ext}") for ext in exts]


#: report order: the figures, then Table 1 (whose numbers the report also shows in its own section)
FIGURES: tuple[Figure, ...] = (
    Figure(
        "fig1",
        "Fig. 1",
        "Largest model: accuracy of GRPO s=0 / GRPO s=S / no-TR s=S / M2PO s=S, and their clipping ratio.",
    ),
    Figure("fig2", "Fig. 2", "GRPO accuracy at every swept staleness."),
    Figure("fig3", "Fig. 3", "Prosperity before collapse: GRPO s=0, GRPO s=S, GRPO without trust region s=S."),
    Figure("fig4a", "Fig. 4a", "GRPO token clipping ratio, s=S vs s=0."),
    Figure("fig4b", "Fig. 4b", "Mean token entropy vs |r − 1| for GRPO s=S (ε = 0.2 marked)."),
    Figure("fig5", "Fig. 5", "Training reward of GRPO s=0, GRPO s=S, M2PO s=S."),
    Figure("fig6", "Fig. 6", "Smallest model, s=S: CISPO, AReaL decoupled PPO, TOPR, GPPO and M2PO."),
    Figure("fig7a", "Fig. 7a", "Clipping ratio of GRPO s=S, M2PO s=S (masked fraction), GRPO s=0."),
    Figure("fig7b", "Fig. 7b", "Average clipping ratio per model, ours beside the paper's Fig. 7b."),
    Figure("fig8", "Fig. 8", "τ ablation: M2PO s=S peak and final accuracy vs τ."),
    Figure("fig9a", "Fig. 9a", "M2PO s=S: trust-region M2 per update before and after the mask."),
    Figure("fig9b", "Fig. 9b", "KL estimate k3 per update of GRPO s=0, GRPO s=S, M2PO s=S."),
    Figure("fig11", "Fig. 11", "M2PO accuracy at every swept staleness."),
    Figure(
        "table1",
        "Table 1",
        "Peak and final accuracy per model and method (and the evaluation stage's benchmarks) beside the paper's.",
    ),
)

#: the figures proper (each with a PNG, a PDF and a sentence in the report)
PLOTS: tuple[Figure, ...] = tuple(f for f in FIGURES if not f.is_table)


def figure(fig_id: str) -> Figure:
    """The entry of ``fig_id`` (KeyError naming the known ids)."""
    for f in FIGURES:
        if f.id == fig_id:
            return f
    raise KeyError(f"unknown figure {fig_id!r}; known: {', '.join(f.id for f in FIGURES)}")
