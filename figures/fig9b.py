"""KL(π_behav‖π_θ) estimate k3 = mean(r − 1 − log r) per update for GRPO s=0, GRPO s=S and M2PO s=S."""

from __future__ import annotations

import common


def build(argv: list[str] | None = None) -> int:
    ctx = common.load(common.parse_args(__file__, __doc__, argv))
    s = ctx.stale
    fig, axes = common.panels(len(ctx.models))
    for ax, m in zip(axes, ctx.models):
        for method, st in (("grpo", 0), ("grpo", s), ("m2po", s)):
            ctx.curve(ax, "updates", "kl_k3", m, method, st, smooth_window=ctx.args.smooth, positive=True)
        ax.set_yscale("log")
        ax.set(
            title=f"{m}: KL estimate k3 per update (rolling mean {ctx.args.smooth})",
            xlabel="optimizer update",
            ylabel="KL k3 (log scale)",
        )
        common.legend(ax)
    return ctx.finish(fig)


def main(argv: list[str] | None = None) -> int:
    return common.main_guard(build, argv)
