"""GRPO token clipping ratio vs updates, s=S against s=0, per model."""

from __future__ import annotations

import common


def build(argv: list[str] | None = None) -> int:
    ctx = common.load(common.parse_args(__file__, __doc__, argv))
    s = ctx.stale
    fig, axes = common.panels(len(ctx.models))
    for ax, m in zip(axes, ctx.models):
        for st in (s, 0):
            ctx.curve(ax, "updates", "clipped_frac", m, "grpo", st, smooth_window=ctx.args.smooth)
        ax.set(
            title=f"{m}: GRPO clipping ratio (rolling mean {ctx.args.smooth})",
            xlabel="optimizer update",
            ylabel="clipped token fraction",
        )
        common.legend(ax)
    return ctx.finish(fig)


def main(argv: list[str] | None = None) -> int:
    return common.main_guard(build, argv)
