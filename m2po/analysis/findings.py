"""One sentence per figure of the figure list (:mod:`m2po.analysis.figure_list`), computed from the data
the figure shows (for the report); each function is named by its figure's id.

Accuracies and clipping ratios are in percent, ``mean ± s.e.% (n=seeds)`` (one unit throughout the
report, as in Table 1); "steady" means over the updates ≥ s of each run (:mod:`m2po.analysis.aggregate`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ..loss_names import PAPER_TAU
from .aggregate import Stat, select
from .cells import Cells
from .figure_list import PLOTS

LABEL = {
    "grpo": "GRPO",
    "grpo_notr": "no-TR",
    "m2po": "M2PO",
    "m2po_released": "M2PO (released)",
    "gspo": "GSPO",
    "cispo": "CISPO",
    "decoupled_ppo": "AReaL",
    "topr": "TOPR",
    "gppo": "GPPO",
}


def _a(x: Stat) -> str:
    """An accuracy: ``80.0 ± 1.0% (n=2)``."""
    if not x.ok:
        return "n/a (no run)"
    se = f" ± {100 * x.se:.1f}" if math.isfinite(x.se) else ""
    return f"{100 * x.mean:.1f}{se}% (n={x.n})"


def _pct(x: Stat, digits: int = 2) -> str:
    if not x.ok:
        return "n/a"
    se = f" ± {100 * x.se:.{digits}f}" if math.isfinite(x.se) else ""
    return f"{100 * x.mean:.{digits}f}{se}%"


def _lab(method: str, s: int) -> str:
    return f"{LABEL.get(method, method)} s={s}"


def _peaks(c: Cells, m: str, cells: list[tuple[str, int]], what: str = "peak") -> str:
    """``GRPO s=0 75.0 ± 3.1% (n=1), ...``; cells without a run are listed once at the end."""
    have = [(me, s, c.acc(m, me, s, what)) for me, s in cells]
    text = ", ".join(f"{_lab(me, s)} {_a(x)}" for me, s, x in have if x.ok)
    missing = [_lab(me, s) for me, s, x in have if not x.ok]
    return (text or "none") + (f" (no runs of {', '.join(missing)})" if missing else "")


def fig1(c: Cells, models: list[str], s: int) -> str:
    m = models[-1]
    notr_fi = c.acc(m, "grpo_notr", s, "final")
    return (
        f"On {m}, peak accuracy: {_peaks(c, m, [('grpo', 0), ('grpo', s), ('grpo_notr', s), ('m2po', s)])}"
        f" (no-TR final {_a(notr_fi)}); mean clipping ratio GRPO s={s} {_pct(c.clipped(m, 'grpo', s))}, "
        f"M2PO s={s} {_pct(c.clipped(m, 'm2po', s))}, GRPO s=0 {_pct(c.clipped(m, 'grpo', 0))}."
    )


def _sweep(c: Cells, models: list[str], method: str) -> str:
    parts = []
    for m in models:
        lv = c.staleness_levels(m, method)
        body = ", ".join(f"s={v}: {_a(c.acc(m, method, v))}" for v in lv) or "no runs"
        parts.append(f"{m}: {body}")
    return f"{LABEL[method]} peak accuracy by staleness — " + "; ".join(parts) + "."


def fig2(c: Cells, models: list[str], s: int) -> str:
    return _sweep(c, models, "grpo")


def fig11(c: Cells, models: list[str], s: int) -> str:
    return _sweep(c, models, "m2po")


def fig3(c: Cells, models: list[str], s: int) -> str:
    parts = []
    for m in models:
        pk, fi = c.acc(m, "grpo_notr", s), c.acc(m, "grpo_notr", s, "final")
        parts.append(
            f"{m}: no-TR s={s} peaks at {_a(pk)} and ends at {_a(fi)}; GRPO s=0 ends at "
            f"{_a(c.acc(m, 'grpo', 0, 'final'))}, GRPO s={s} at {_a(c.acc(m, 'grpo', s, 'final'))}"
        )
    return "; ".join(parts) + f" (runs of {c.max_update} updates)."


def fig4a(c: Cells, models: list[str], s: int) -> str:
    parts = []
    for m in models:
        a, b = c.clipped(m, "grpo", s), c.clipped(m, "grpo", 0)
        ratio = f" ({a.mean / b.mean:.1f}×)" if a.ok and b.ok and b.mean > 0 else ""
        parts.append(f"{m}: GRPO s={s} clips {_pct(a)} of tokens vs {_pct(b)} at s=0{ratio}")
    return "Mean clipping ratio over updates ≥ s — " + "; ".join(parts) + "."


def fig4b(c: Cells, models: list[str], s: int, eps: float = 0.2) -> str:
    parts = []
    for m in models:
        tok = select(c.tables.tokens, m, "grpo", s, c.seeds) if len(c.tables.tokens) else c.tables.tokens
        tok = tok[tok["update"] >= s].dropna(subset=["ratio", "entropy"]) if len(tok) else tok
        if tok.empty:
            parts.append(f"{m}: no token sample of GRPO s={s}")
            continue
        out = (tok["ratio"] - 1).abs() > eps
        inside, outside = tok.loc[~out, "entropy"], tok.loc[out, "entropy"]
        o = f"{outside.mean():.3f} nats ({len(outside)} tokens)" if len(outside) else "no tokens"
        parts.append(
            f"{m}: tokens with |r−1| > {eps} (the ones GRPO clips) have mean entropy {o} vs "
            f"{inside.mean():.3f} ({len(inside)} tokens) inside the trust region"
        )
    return "; ".join(parts) + "."


def fig5(c: Cells, models: list[str], s: int) -> str:
    parts = []
    for m in models:
        body = ", ".join(
            f"{_lab(me, st)} {c.last_quarter(m, me, st, 'reward_mean').fmt(3)}"
            for me, st in (("grpo", 0), ("grpo", s), ("m2po", s))
        )
        parts.append(f"{m}: {body}")
    return "Mean training reward over the last quarter of updates — " + "; ".join(parts) + "."


def fig6(c: Cells, models: list[str], s: int) -> str:
    m = models[0]
    cells = [(me, s) for me in ("cispo", "decoupled_ppo", "topr", "gppo", "m2po")]
    final = [(me, st) for me, st in cells if c.acc(m, me, st, "final").ok]
    return f"On {m}, peak accuracy: {_peaks(c, m, cells)}; final: {_peaks(c, m, final, 'final')}."


def fig7a(c: Cells, models: list[str], s: int) -> str:
    parts = [
        f"{m}: GRPO s={s} {_pct(c.clipped(m, 'grpo', s))}, M2PO s={s} {_pct(c.clipped(m, 'm2po', s))}, "
        f"GRPO s=0 {_pct(c.clipped(m, 'grpo', 0))}"
        for m in models
    ]
    return "Mean clipped (GRPO) / masked (M2PO) token fraction over updates ≥ s — " + "; ".join(parts) + "."


def fig7b(c: Cells, models: list[str], s: int, paper: dict | None = None) -> str:
    ours = "; ".join(
        f"{m} {_pct(c.clipped(m, 'grpo', s))} / {_pct(c.clipped(m, 'grpo', 0))} / {_pct(c.clipped(m, 'm2po', s))}"
        for m in models
    )
    text = f"Average clipping ratio GRPO s={s} / GRPO s=0 / M2PO s={s}: {ours}"
    if paper:
        ref = "; ".join(f"{m} " + " / ".join(f"{v:.2f}%" for v in vals.values()) for m, vals in paper.items())
        text += f"; the paper (s=256): {ref}"
    return text + "."


def fig8(c: Cells, models: list[str], s: int) -> str:
    parts = []
    for m in models:
        taus = c.taus(m, "m2po", s)
        body = ", ".join(f"τ={t:g}: {_a(c.acc(m, 'm2po', s, tau=t))}" for t in taus) or "no runs"
        parts.append(f"{m}: {body}")
    return f"M2PO s={s} peak accuracy by τ — " + "; ".join(parts) + "."


def fig9a(c: Cells, models: list[str], s: int, tau: float = PAPER_TAU) -> str:
    parts = []
    for m in models:
        before, after = c.steady(m, "m2po", s, "m2"), c.steady(m, "m2po", s, "m2_after")
        parts.append(f"{m}: M2 {before.fmt(4)} before the mask, {after.fmt(4)} after (τ = {tau})")
    return f"M2PO s={s}, mean trust-region M2 over updates ≥ s — " + "; ".join(parts) + "."


def fig9b(c: Cells, models: list[str], s: int) -> str:
    parts = []
    for m in models:
        body = ", ".join(
            f"{_lab(me, st)} {c.steady(m, me, st, 'kl_k3').fmt(4)}"
            for me, st in (("grpo", 0), ("grpo", s), ("m2po", s))
        )
        parts.append(f"{m}: {body}")
    return "Mean KL estimate k3 over updates ≥ s — " + "; ".join(parts) + "."


def _sentences() -> dict[str, Callable[..., str]]:
    """Each figure of the list -> the function of this module named by its id (an entry without one is an
    error here, at import, not a missing sentence in some report)."""
    missing = [f.id for f in PLOTS if not callable(globals().get(f.id))]
    if missing:
        raise ImportError(f"m2po.analysis.findings has no sentence for figure(s) {', '.join(missing)}")
    return {f.id: globals()[f.id] for f in PLOTS}


#: figure id -> its sentence, in the order of the figure list
SENTENCES: dict[str, Callable[..., str]] = _sentences()
