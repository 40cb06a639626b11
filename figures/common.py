"""Plumbing shared by the figure scripts: arguments, loading, seed-band series, missing-run notes, saving.

Each figure ``figures/<id>.py`` is named by its entry of the figure list (:mod:`m2po.analysis.figure_list`:
its title, its outputs ``<id>.png`` and ``.pdf``) and drawn by ``python figures/draw.py <id> ... --runs
results/<profile>/runs --out results/<profile>/figures [--models 0.1M 1M] [--stale 32] [--seeds 0 1 2]
[--smooth 5]``, the one program the Snakefile and ``m2po report`` run. A series whose runs are missing is
left out and named in a note at the figure's lower right; a figure with no series at all is still written
(with the note) but its code is 1; a runs directory with no loadable run gives 2; an output that cannot be
written gives 3.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import style

from m2po.analysis.aggregate import accuracy, order_models, seed_band, select, smooth
from m2po.analysis.figure_list import EXIT_NOT_WRITTEN, figure
from m2po.analysis.runs import RunTables, load_runs
from m2po.errors import DISK_FULL, NOT_WRITABLE, from_os_error
from m2po.fileio import atomic_write_bytes

ACC_LABEL = "held-out accuracy (%)"


class NoData(RuntimeError):
    """The runs directory holds no loadable run."""


def parse_args(script: str, notes: str, argv: list[str] | None, extra: Callable | None = None) -> argparse.Namespace:
    """The options of the figure drawn by ``script`` (its ``__file__``): its entry of the figure list
    (:mod:`m2po.analysis.figure_list`) is the description, ``notes`` (its docstring) how it is drawn."""
    fig = figure(Path(script).stem)
    p = argparse.ArgumentParser(
        prog=f"python figures/draw.py {fig.id}",
        description=f"{fig.paper}: {fig.title}",
        epilog=notes,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--runs", required=True, help="results/<profile>/runs")
    p.add_argument("--out", required=True, help="output folder (results/<profile>/figures)")
    p.add_argument("--models", nargs="+", help="models to show (default: all, smallest first)")
    p.add_argument("--stale", type=int, help="the stale setting s (default: the largest staleness present)")
    p.add_argument("--seeds", nargs="+", type=int, help="seeds to include (default: all)")
    p.add_argument("--smooth", type=int, default=5, help="rolling-mean window in updates for per-update metrics")
    if extra:
        extra(p)
    args = p.parse_args(argv)
    args.figure = fig.id
    return args


@dataclass
class Ctx:
    """One figure's data and bookkeeping."""

    args: argparse.Namespace
    tables: RunTables
    acc: pd.DataFrame
    models: list[str]
    stale: int
    missing: list[str] = field(default_factory=list)
    plotted: int = 0

    @property
    def largest(self) -> str:
        return self.models[-1]

    @property
    def smallest(self) -> str:
        return self.models[0]

    def frame(self, table: str) -> pd.DataFrame:
        return self.acc if table == "acc" else getattr(self.tables, table)

    def cell(self, table: str, model: str, method: str, s: int, tau: float | str = "default") -> pd.DataFrame:
        return self.cell_of(self.frame(table), model, method, s, tau)

    def cell_of(self, df: pd.DataFrame, model: str, method: str, s: int, tau: float | str = "default") -> pd.DataFrame:
        """Rows of ``df`` for one (model, method, s) cell and the selected seeds."""
        return select(df, model, method, s, self.args.seeds, tau)

    def curve(
        self,
        ax: plt.Axes,
        table: str,
        value: str,
        model: str,
        method: str,
        s: int,
        smooth_window: int = 0,
        positive: bool = False,
        **kw: object,
    ) -> pd.DataFrame | None:
        """Plot the seed mean of ``value`` vs updates with a ± s.e. band; note and skip a missing cell.

        ``positive`` (log axes): values ≤ 0 are dropped and the band is drawn only where it stays > 0.
        """
        st = {**style.series_style(method, s), **kw}
        df = self.cell(table, model, method, s)
        if df.empty or df[value].dropna().empty:
            self.missing.append(f"{model} {st['label']}")
            return None
        if positive:
            df = df[df[value] > 0]
        if smooth_window > 1:
            df = smooth(df, value, smooth_window)
        b = seed_band(df.dropna(subset=[value]), value)
        n = df["run_id"].nunique()
        marker = "o" if table == "acc" else None
        ax.plot(
            b["update"], b["mean"], color=st["color"], ls=st["ls"], marker=marker, ms=3, label=f"{st['label']} (n={n})"
        )
        if n > 1:
            where = (b["lo"] > 0) if positive else None
            ax.fill_between(b["update"], b["lo"], b["hi"], color=st["color"], alpha=0.18, lw=0, where=where)
        self.plotted += 1
        return b

    def finish(self, fig: plt.Figure) -> int:
        """Add the missing-run note, save PNG and PDF (named by the figure's id); 1 if nothing was plotted, else 0."""
        name = self.args.figure
        notes = list(dict.fromkeys(self.missing))
        if self.plotted == 0:
            notes.insert(0, "NO DATA for this figure")
        if notes:
            width = int(fig.get_figwidth() * 16)
            text = "\n".join(textwrap.wrap("missing runs: " + "; ".join(notes), width))
            fig.tight_layout()
            fig.text(0.995, 0.0, text, ha="right", va="top", fontsize=6.5, color="#B00020")
        out = Path(self.args.out)
        out.mkdir(parents=True, exist_ok=True)
        for ext in ("png", "pdf"):  # drawn in memory, then written atomically: never half a figure
            buf = io.BytesIO()
            fig.savefig(buf, format=ext)
            atomic_write_bytes(out / f"{name}.{ext}", buf.getvalue())
        plt.close(fig)
        if self.plotted == 0:
            print(f"{name}: no data for any series", file=sys.stderr)
            return 1
        return 0


#: (results tree, its tidy files' sizes and times) -> its run tables and accuracy table (percent)
_LOADED: dict[tuple, tuple[RunTables, pd.DataFrame]] = {}


def _tables_and_accuracy(runs: str | Path) -> tuple[RunTables, pd.DataFrame]:
    """The run tables under ``runs`` and their accuracy table in percent, read and computed once per process
    while the files stay the same (``figures/draw.py`` draws every figure from one results tree); each figure
    gets its own copies."""
    root = Path(runs).resolve()
    files = sorted(root.glob("*/*.csv"))
    key = (str(root), tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files))
    if key not in _LOADED:
        tables = load_runs(runs)
        acc = accuracy(tables.evals, tables.benchmarks)
        acc[["acc", "acc_se"]] = acc[["acc", "acc_se"]].astype(float) * 100  # percent, like Table 1 and the report
        _LOADED.clear()
        _LOADED[key] = (tables, acc)
    tables, acc = _LOADED[key]
    return RunTables(*(t.copy() for t in tables)), acc.copy()


def load(args: argparse.Namespace) -> Ctx:
    """Load the runs named by ``args``; NoData if there is none."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    style.apply()
    tables, acc = _tables_and_accuracy(args.runs)
    if tables.updates.empty:
        raise NoData(f"no loadable run under {args.runs}")
    present = order_models(tables.updates["model"].unique())
    models = [m for m in args.models if m in present] if args.models else present
    if not models:
        raise NoData(f"none of the models {args.models} under {args.runs} (present: {present})")
    stale = args.stale
    if stale is None:
        levels = [int(s) for s in tables.updates["staleness"].unique() if int(s) > 0]
        stale = max(levels) if levels else 0
    return Ctx(args, tables, acc, models, stale)


def panels(n: int, ncols: int | None = None) -> tuple[plt.Figure, list[plt.Axes]]:
    """A row (or grid) of ``n`` panels of the shared size."""
    ncols = ncols or min(n, 3)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(style.PANEL[0] * ncols, style.PANEL[1] * nrows + 0.3), squeeze=False
    )
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def legend(ax: plt.Axes, **kw: object) -> None:
    """A legend when the panel has labelled artists (a panel whose runs are all missing has none)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**{"loc": "best", **kw})


def figure_legend(fig: plt.Figure, axes: list[plt.Axes], ncol: int = 3) -> None:
    """One legend for the figure, below its panels: it never sits on the data or on a tick label."""
    handles, labels = {}, {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
            labels.setdefault(lab, lab)
    if handles:
        fig.tight_layout()
        fig.legend(list(handles.values()), list(labels), loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=ncol)


def levels(ctx: Ctx, model: str, method: str) -> list[int]:
    """Staleness values present for (model, method), ascending."""
    df = select(ctx.tables.updates, model, method, None, ctx.args.seeds)
    return sorted(int(s) for s in df["staleness"].unique())


def main_guard(fn: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run a figure's ``build(argv)``; a missing runs tree and an output that cannot be written (a full disk,
    a read-only folder) become one line on stderr and their exit codes (``EXIT_CODES`` of the figure list)."""
    try:
        return fn(argv)
    except NoData as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in DISK_FULL | NOT_WRITABLE:
            raise
        print(f"error: {from_os_error(e)}", file=sys.stderr)
        return EXIT_NOT_WRITTEN


def staleness_sweep_figure(script: str, notes: str, argv: list[str] | None, method: str, label: str) -> int:
    """Fig. 2 / Fig. 11: ``method``'s accuracy at every swept staleness, one panel per model."""
    ctx = load(parse_args(script, notes, argv))
    fig, axes = panels(len(ctx.models))
    for ax, m in zip(axes, ctx.models):
        lv = levels(ctx, m, method)
        for s in lv:
            ctx.curve(ax, "acc", "acc", m, method, s, **style.sweep_style(method, s, lv))
        if not lv:
            ctx.missing.append(f"{m} {label} (any s)")
        ax.set(title=f"{m}: {label} accuracy by staleness", xlabel="optimizer update", ylabel=ACC_LABEL)
        legend(ax)
    return ctx.finish(fig)
