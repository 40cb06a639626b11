"""Fig. 2: GRPO (ε-clip) accuracy at every swept staleness, one panel per model."""

from __future__ import annotations

import sys

import common
import style


def build(argv: list[str] | None = None) -> int:
    ctx = common.load(common.parse_args(__doc__, argv))
    fig, axes = common.panels(len(ctx.models))
    for ax, m in zip(axes, ctx.models):
        lv = common.levels(ctx, m, "grpo")
        for s in lv:
            ctx.curve(ax, "acc", "acc", m, "grpo", s, **style.sweep_style("grpo", s, lv))
        if not lv:
            ctx.missing.append(f"{m} GRPO (any s)")
        ax.set(title=f"{m}: GRPO accuracy by staleness", xlabel="optimizer update", ylabel=common.ACC_LABEL)
        common.legend(ax)
    return ctx.finish(fig, "fig2")


def main(argv: list[str] | None = None) -> int:
    return common.main_guard(build, argv)


if __name__ == "__main__":
    sys.exit(main())
