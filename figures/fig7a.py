"""Token clipping ratio vs updates of GRPO s=S, M2PO s=S (masked fraction) and GRPO s=0, per model."""

from __future__ import annotations

import common


def build(argv: list[str] | None = None) -> int:
    ctx = common.load(common.parse_args(__file__, __doc__, argv))
    s = ctx.stale
    fig, axes = common.panels(len(ctx.models))
    for ax, m in zip(axes, ctx.models):
        for method, st in (("grpo", s), ("m2po", s), ("grpo", 0)):
            ctx.curve(ax, "updates", "clipped_frac", m, method, st, smooth_window=ctx.args.smooth)
        ax.set(
            title=f"{m}: clipping ratio, s={s} (rolling mean {ctx.args.smooth})",
            xlabel="optimizer update",
            ylabel="clipped / masked token fraction",
        )
        common.legend(ax)
    return ctx.finish(fig)


def main(argv: list[str] | None = None) -> int:
    return common.main_guard(build, argv)
