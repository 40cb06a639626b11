"""Prosperity before collapse — accuracy of GRPO s=0, GRPO s=S and GRPO without trust region s=S, per model."""

from __future__ import annotations

import common


def build(argv: list[str] | None = None) -> int:
    ctx = common.load(common.parse_args(__file__, __doc__, argv))
    s = ctx.stale
    fig, axes = common.panels(len(ctx.models))
    for ax, m in zip(axes, ctx.models):
        for method, st in (("grpo", 0), ("grpo", s), ("grpo_notr", s)):
            ctx.curve(ax, "acc", "acc", m, method, st)
        ax.set(title=f"{m}: with vs without trust region, s={s}", xlabel="optimizer update", ylabel=common.ACC_LABEL)
        common.legend(ax)
    return ctx.finish(fig)


def main(argv: list[str] | None = None) -> int:
    return common.main_guard(build, argv)
