"""M2PO s=S — second moment M2 of the trust-region tokens per update, before and after the mask (log y)."""

from __future__ import annotations

import common

from m2po.analysis.paper import paper_values


def build(argv: list[str] | None = None) -> int:
    ctx = common.load(common.parse_args(__file__, __doc__, argv))
    s = ctx.stale
    tau = float(paper_values()["tau"])
    fig, axes = common.panels(len(ctx.models))
    for ax, m in zip(axes, ctx.models):
        w = ctx.args.smooth
        ctx.curve(
            ax,
            "updates",
            "m2",
            m,
            "m2po",
            s,
            smooth_window=w,
            positive=True,
            color="#7F7F7F",
            label="M2 original (before mask)",
        )
        ctx.curve(ax, "updates", "m2_after", m, "m2po", s, smooth_window=w, positive=True, label="M2 after M2PO mask")
        ax.axhline(tau, color="#B00020", lw=0.9, ls=":", label=f"τ = {tau}")
        ax.set_yscale("log")
        ax.set(
            title=f"{m}: M2PO s={s}, M2 per update (rolling mean {w})",
            xlabel="optimizer update",
            ylabel="M2 = mean (log r)² (log scale)",
        )
        common.legend(ax)
    return ctx.finish(fig)


def main(argv: list[str] | None = None) -> int:
    return common.main_guard(build, argv)
