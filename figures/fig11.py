"""Fig. 11: M2PO accuracy at every swept staleness (τ = 0.04), one panel per model."""

from __future__ import annotations

import sys

import common
import style


def build(argv: list[str] | None = None) -> int:
    ctx = common.load(common.parse_args(__doc__, argv))
    fig, axes = common.panels(len(ctx.models))
    for ax, m in zip(axes, ctx.models):
        lv = common.levels(ctx, m, "m2po")
        for s in lv:
            ctx.curve(ax, "acc", "acc", m, "m2po", s, **style.sweep_style("m2po", s, lv))
        if not lv:
            ctx.missing.append(f"{m} M2PO (any s)")
        ax.set(title=f"{m}: M2PO accuracy by staleness", xlabel="optimizer update", ylabel=common.ACC_LABEL)
        common.legend(ax)
    return ctx.finish(fig, "fig11")


def main(argv: list[str] | None = None) -> int:
    return common.main_guard(build, argv)


if __name__ == "__main__":
    sys.exit(main())
