"""GRPO s=S — mean token entropy vs |r − 1| (binned token sample, updates ≥ s), GRPO's ε = 0.2 marked."""

from __future__ import annotations

import common
import numpy as np
import pandas as pd
import style

from m2po.analysis.paper import paper_values

EDGES = [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, np.inf]
MIN_TOKENS = 10


def binned_entropy(tokens: pd.DataFrame) -> pd.DataFrame:
    """Per |r−1| bin with ≥ MIN_TOKENS tokens: the median |r−1| (x), mean entropy, its s.e. and the count."""
    dev = (tokens["ratio"] - 1.0).abs()
    g = tokens.assign(dev=dev, bin=pd.cut(dev, EDGES, right=False)).groupby("bin", observed=True)
    out = g.agg(x=("dev", "median"), mean=("entropy", "mean"), std=("entropy", "std"), n=("entropy", "size"))
    out["se"] = (out["std"] / np.sqrt(out["n"])).fillna(0.0)
    return out[out["n"] >= MIN_TOKENS].reset_index()


def build(argv: list[str] | None = None) -> int:
    ctx = common.load(common.parse_args(__file__, __doc__, argv))
    s = ctx.stale
    fig, (ax,) = common.panels(1)
    for i, m in enumerate(ctx.models):
        tok = ctx.cell("tokens", m, "grpo", s)
        tok = tok[tok["update"] >= s].dropna(subset=["ratio", "entropy"])
        b = binned_entropy(tok) if len(tok) else pd.DataFrame()
        if b.empty:
            ctx.missing.append(f"{m} GRPO s={s} token sample")
            continue
        color = style.model_color(i)
        ax.errorbar(
            b["x"],
            b["mean"],
            yerr=b["se"],
            marker="o",
            ms=3.5,
            capsize=2,
            color=color,
            label=f"{m} ({len(tok)} tokens, {tok['run_id'].nunique()} runs)",
        )
        ctx.plotted += 1
    eps = float(paper_values()["grpo_eps"])
    ax.axvline(eps, color="#B00020", ls=":", lw=1.0, label=f"ε = {eps} (GRPO clip)")
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlim(left=0)
    ax.set(
        title=f"GRPO s={s}: token entropy vs distance of the ratio from 1",
        xlabel="|r − 1| (bin median, symlog)",
        ylabel="mean token entropy (nats)",
    )
    common.legend(ax)
    return ctx.finish(fig)


def main(argv: list[str] | None = None) -> int:
    return common.main_guard(build, argv)
