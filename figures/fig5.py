"""Training reward (rollout-batch mean, rolling mean) of GRPO s=0, GRPO s=S and M2PO s=S, per model."""

from __future__ import annotations

import common


def build(argv: list[str] | None = None) -> int:
    ctx = common.load(common.parse_args(__file__, __doc__, argv))
    s = ctx.stale
    fig, axes = common.panels(len(ctx.models))
    for ax, m in zip(axes, ctx.models):
        for method, st in (("grpo", 0), ("grpo", s), ("m2po", s)):
            ctx.curve(ax, "updates", "reward_mean", m, method, st, smooth_window=ctx.args.smooth)
        ax.set(
            title=f"{m}: training reward (rolling mean {ctx.args.smooth})",
            xlabel="optimizer update",
            ylabel="mean reward of the mini-batch",
        )
        common.legend(ax)
    return ctx.finish(fig)


def main(argv: list[str] | None = None) -> int:
    return common.main_guard(build, argv)
