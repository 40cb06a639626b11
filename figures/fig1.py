"""Largest model — accuracy (left) and token clipping ratio (right).

Series: GRPO s=0, GRPO s=S, GRPO no-TR s=S (accuracy only), M2PO s=S.
"""

from __future__ import annotations

import common


def build(argv: list[str] | None = None) -> int:
    ctx = common.load(common.parse_args(__file__, __doc__, argv))
    m, s = ctx.largest, ctx.stale
    fig, (left, right) = common.panels(2)
    for method, st in (("grpo", 0), ("grpo", s), ("grpo_notr", s), ("m2po", s)):
        ctx.curve(left, "acc", "acc", m, method, st)
    for method, st in (("grpo", 0), ("grpo", s), ("m2po", s)):
        ctx.curve(right, "updates", "clipped_frac", m, method, st, smooth_window=ctx.args.smooth)
    left.set(title=f"{m}: accuracy, stale s={s} vs on-policy", xlabel="optimizer update", ylabel=common.ACC_LABEL)
    right.set(
        title=f"{m}: clipped/masked token fraction (rolling mean {ctx.args.smooth})",
        xlabel="optimizer update",
        ylabel="clipping ratio",
    )
    for ax in (left, right):
        common.legend(ax)
    return ctx.finish(fig)


def main(argv: list[str] | None = None) -> int:
    return common.main_guard(build, argv)
