"""Τ ablation — peak (solid) and final (dotted) accuracy of M2PO s=S vs τ, one line per model.

Runs without ``-tau`` in their id take τ from their config (else 0.04). τ is swept by factors (0.01 …
0.16), so its axis is logarithmic (symmetric-log when τ = 0 is among the runs); a model with a single τ
is drawn as points, not as a line.
"""

from __future__ import annotations

import common
import style

from m2po.analysis.aggregate import cell_stat, per_run_accuracy, select
from m2po.analysis.paper import paper_values


def build(argv: list[str] | None = None) -> int:
    ctx = common.load(common.parse_args(__file__, __doc__, argv))
    s = ctx.stale
    per_run = per_run_accuracy(ctx.acc)
    fig, (ax,) = common.panels(1)
    all_taus: set[float] = set()
    for i, m in enumerate(ctx.models):
        cell = select(per_run, m, "m2po", s, ctx.args.seeds, tau="any")
        taus = sorted(cell["tau"].dropna().unique())
        if not taus:
            ctx.missing.append(f"{m} M2PO s={s} (any τ)")
            continue
        color = style.model_color(i)
        all_taus.update(taus)
        for what, ls, mfc in (("peak", "-", color), ("final", ":", "white")):
            ls = ls if len(taus) > 1 else "none"
            st = [cell_stat(cell[cell["tau"] == t], what, f"{what}_se") for t in taus]
            ns = sorted({x.n for x in st})
            seeds = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
            ax.errorbar(
                taus,
                [x.mean for x in st],
                yerr=[x.se for x in st],
                color=color,
                ls=ls,
                marker="o",
                ms=4,
                mfc=mfc,
                capsize=2,
                label=f"{m} {what} ({seeds} seeds per τ)",
            )
        ctx.plotted += 1
    tau = float(paper_values()["tau"])
    ax.axvline(tau, color="#7F7F7F", ls="--", lw=0.9, label=f"paper τ = {tau}")
    ticks = sorted(all_taus | {tau})
    positive = [t for t in ticks if t > 0]
    if len(positive) < len(ticks):  # τ = 0 cannot sit on a log axis: linear up to the smallest τ > 0
        ax.set_xscale("symlog", linthresh=min(positive, default=tau))
    else:
        ax.set_xscale("log")
        ax.set_xlim(min(ticks) / 1.5, max(ticks) * 1.5)
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set(title=f"M2PO s={s}: accuracy vs threshold τ", xlabel="τ (log scale)", ylabel=common.ACC_LABEL)
    common.figure_legend(fig, [ax], ncol=2)
    return ctx.finish(fig)


def main(argv: list[str] | None = None) -> int:
    return common.main_guard(build, argv)
