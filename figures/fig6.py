"""Fig. 6: smallest model at s=S — accuracy of CISPO, AReaL decoupled PPO, TOPR, GPPO and M2PO."""

from __future__ import annotations

import sys

import common

METHODS = ("cispo", "decoupled_ppo", "topr", "gppo", "m2po")


def build(argv: list[str] | None = None) -> int:
    ctx = common.load(common.parse_args(__doc__, argv))
    m, s = ctx.smallest, ctx.stale
    fig, (ax,) = common.panels(1)
    for method in METHODS:
        ctx.curve(ax, "acc", "acc", m, method, s)
    ax.set(title=f"{m}: off-policy baselines vs M2PO, s={s}", xlabel="optimizer update", ylabel=common.ACC_LABEL)
    common.legend(ax)
    return ctx.finish(fig, "fig6")


def main(argv: list[str] | None = None) -> int:
    return common.main_guard(build, argv)


if __name__ == "__main__":
    sys.exit(main())
