"""Average token clipping ratio (%) per model of GRPO s=S / GRPO s=0 / M2PO s=S, ours beside the paper's.

Ours: mean over seeds of each run's mean clipped fraction over its updates ≥ s (± s.e.); the paper's: its Fig. 7b.
Both panels share one y-scale (a bar of the same height is the same percentage), and the legend sits
above them, off the bars and the tick labels.
"""

from __future__ import annotations

import common
import numpy as np
import style

from m2po.analysis.aggregate import cell_stat, steady_mean
from m2po.analysis.paper import paper_values

WIDTH = 0.26


def _bars(ax, groups: list[str], series: list[tuple[str, str, list[float], list[float]]]) -> None:
    x = np.arange(len(groups))
    for i, (lab, color, vals, errs) in enumerate(series):
        pos = x + (i - 1) * WIDTH
        yerr = errs if any(e > 0 for e in errs) else None
        ax.bar(pos, vals, WIDTH, yerr=yerr, color=color, label=lab, capsize=2, edgecolor="white")
        for p, v, e in zip(pos, vals, errs):
            if np.isfinite(v):
                ax.annotate(
                    f"{v:.2f}",
                    (p, v + e),
                    ha="center",
                    va="bottom",
                    fontsize=6.5,
                    xytext=(0, 2),
                    textcoords="offset points",
                )
    ax.set_xticks(x, groups)
    ax.margins(y=0.3)


def _role(method: str, staleness: int) -> str:
    """One legend entry for both panels: the stale setting is each panel's own (its title says which)."""
    return style.label(method, 0) if staleness == 0 else f"{style.label(method)}, stale s"


def build(argv: list[str] | None = None) -> int:
    ctx = common.load(common.parse_args(__file__, __doc__, argv))
    s = ctx.stale
    clip = steady_mean(ctx.tables.updates, "clipped_frac")
    fig, (left, right) = common.panels(2)
    right.sharey(left)
    cells = (("grpo", s), ("grpo", 0), ("m2po", s))
    series = []
    for method, st in cells:
        stats = [cell_stat(ctx.cell_of(clip, m, method, st), "mean", "se") for m in ctx.models]
        for m, x in zip(ctx.models, stats):
            if not x.ok:
                ctx.missing.append(f"{m} {style.label(method, st)}")
        ctx.plotted += sum(x.ok for x in stats)
        series.append(
            (
                _role(method, st),
                style.series_style(method, st)["color"],
                [100 * x.mean for x in stats],
                [100 * x.se if np.isfinite(x.se) else 0 for x in stats],
            )
        )
    _bars(left, ctx.models, series)
    left.set(title=f"This run: mean clipping ratio (updates ≥ s), s={s}", ylabel="clipped tokens (%)")
    paper = paper_values()["fig7b_clip_ratio_percent"]
    p_stale = paper_values()["staleness"]
    keys = (f"grpo_s{p_stale}", "grpo_s0", f"m2po_s{p_stale}")
    pseries = [
        (
            _role(method, st),
            style.series_style(method, st)["color"],
            [paper[m][k] for m in paper],
            [0] * len(paper),
        )
        for (method, st), k in zip((("grpo", p_stale), ("grpo", 0), ("m2po", p_stale)), keys)
    ]
    _bars(right, list(paper), pseries)
    right.set(title=f"Paper Fig. 7b: average clipping ratio, s={p_stale}\n(same y-scale as the left panel)")
    for ax in (left, right):
        ax.grid(axis="x", visible=False)
    right.tick_params(labelleft=True)
    common.figure_legend(fig, [left, right])
    return ctx.finish(fig)


def main(argv: list[str] | None = None) -> int:
    return common.main_guard(build, argv)
