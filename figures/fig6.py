"""Smallest model at s=S — accuracy of CISPO, AReaL decoupled PPO, TOPR, GPPO and M2PO.

A method that collapses (its last evaluation below half its best) would squeeze every other curve
into a sliver of the axis: the left panel shows all methods on the full scale, the right one zooms
on the methods that do not collapse. The legend sits below the panels, off the data.
"""

from __future__ import annotations

import common
import style

METHODS = ("cispo", "decoupled_ppo", "topr", "gppo", "m2po")
#: a curve "collapses" when its last point is below this fraction of its best
COLLAPSE = 0.5


def build(argv: list[str] | None = None) -> int:
    ctx = common.load(common.parse_args(__file__, __doc__, argv))
    m, s = ctx.smallest, ctx.stale
    bands = {}
    for method in METHODS:
        df = ctx.cell("acc", m, method, s)
        if not df.empty:
            b = df.groupby("update")["acc"].mean()
            bands[method] = b
    collapsed = [me for me, b in bands.items() if len(b) and b.iloc[-1] < COLLAPSE * b.max()]
    steady = [me for me in METHODS if me not in collapsed]
    fig, axes = common.panels(2 if collapsed and any(me in bands for me in steady) else 1)
    for method in METHODS:
        ctx.curve(axes[0], "acc", "acc", m, method, s)
    axes[0].set(title=f"{m}: off-policy baselines vs M2PO, s={s}", xlabel="optimizer update", ylabel=common.ACC_LABEL)
    if len(axes) == 2:
        plotted = ctx.plotted
        for method in steady:
            ctx.curve(axes[1], "acc", "acc", m, method, s)
        ctx.plotted = plotted  # the zoom repeats curves already counted
        names = ", ".join(style.label(me) for me in collapsed)
        verb = "collapses" if len(collapsed) == 1 else "collapse"
        axes[1].set(title=f"zoom: without {names} ({verb})", xlabel="optimizer update", ylabel=common.ACC_LABEL)
    common.figure_legend(fig, axes)
    return ctx.finish(fig)


def main(argv: list[str] | None = None) -> int:
    return common.main_guard(build, argv)
