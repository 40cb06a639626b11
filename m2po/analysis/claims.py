"""The four headline claims of the paper (docs/tiny_protocol.md §9) judged on one study's numbers.

Every claim is split into parts, each decided per model by an explicit rule on a statistic ``d``
and its standard error ``se`` (cell s.e. of :mod:`m2po.analysis.aggregate`; a difference of two
cells has se = √(se₁² + se₂²)); ``z`` = 2 (≈ 95 %). Three kinds of rule:

* **better** (``d`` claimed > 0): holds if d − z·se > 0; does not hold if d + z·se < δ (the data
  rule out an effect of the smallest size δ the claim implies); otherwise inconclusive.
* **not worse** (``d`` claimed ≥ −m, m the matching margin): holds if d − z·se ≥ −m; does not
  hold if d + z·se < −m; otherwise inconclusive.
* **ratio** (``a`` ≤ k·``b`` or ``a`` ≥ k·``b``): decided on the bounds mean ± z·se of each side.

A part with a missing cell, or no s.e. at all, is inconclusive. A claim holds for a model when
all its parts hold, does not hold when any part does not hold, and is inconclusive otherwise; the
overall verdict over models uses the same rule. The margins (:class:`Rules`) are scaled to a
small study: the paper's "−0.5 … +3.6 points" (claim 3) is a spread over six LLMs whose own
evaluation noise is below a point, while one tiny evaluation of 200 problems has an s.e. of about
3 points.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import pandas as pd

from .aggregate import Stat, order_models
from .cells import Cells

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive at this scale"

STATEMENTS = {
    1: "No-TR under staleness learns as fast as on-policy, then collapses (prosperity before collapse).",
    2: "ε-clipped GRPO degrades steadily as s grows; its clipping ratio rises sharply.",
    3: "M2PO at stale s is within −0.5…+3.6 points of on-policy GRPO and beats stale GRPO by 2.8–11.2 points.",
    4: "M2PO's masked/clipped fraction under staleness is an order of magnitude below GRPO's.",
}


@dataclass(frozen=True)
class Rules:
    """The decision constants (accuracies are fractions: 0.03 = 3 points)."""

    z: float = 2.0  #: standard errors for a decision
    match_margin: float = 0.03  #: "as good as": at most this far below (claims 1a, 3a)
    min_effect: float = 0.01  #: smallest accuracy effect a "better/worse" claim implies (1b, 2a, 3b)
    clip_rise: float = 2.0  #: "rises sharply": GRPO's clipping ratio at s at least this multiple of s=0's (2b)
    clip_ratio: float = 0.1  #: "an order of magnitude": M2PO's ≤ this fraction of GRPO's (4)


@dataclass
class Verdict:
    """One decided part (or a whole claim when ``part`` is ``all``)."""

    claim: int
    part: str
    model: str
    statistic: str
    value: float
    se: float
    verdict: str
    rule: str
    evidence: str
    statement: str = field(default="")


def _diff(a: Stat, b: Stat) -> tuple[float, float]:
    if not (a.ok and b.ok):
        return math.nan, math.nan
    return a.mean - b.mean, math.hypot(a.se, b.se)


def _better(d: float, se: float, r: Rules) -> str:
    if not (math.isfinite(d) and math.isfinite(se)):
        return INCONCLUSIVE
    if d - r.z * se > 0:
        return HOLDS
    return FAILS if d + r.z * se < r.min_effect else INCONCLUSIVE


def _not_worse(d: float, se: float, r: Rules) -> str:
    if not (math.isfinite(d) and math.isfinite(se)):
        return INCONCLUSIVE
    if d - r.z * se >= -r.match_margin:
        return HOLDS
    return FAILS if d + r.z * se < -r.match_margin else INCONCLUSIVE


def combine(verdicts: list[str]) -> str:
    """All hold -> holds; any does not hold -> does not hold; else inconclusive (also for none)."""
    if any(v == FAILS for v in verdicts):
        return FAILS
    return HOLDS if verdicts and all(v == HOLDS for v in verdicts) else INCONCLUSIVE


def _f(x: Stat, digits: int = 1) -> str:
    """A cell in percent, like Table 1: ``80.0 ± 1.0% (n=2)``."""
    if not x.ok:
        return "n/a"
    se = f" ± {100 * x.se:.{digits}f}" if math.isfinite(x.se) else ""
    return f"{100 * x.mean:.{digits}f}{se}% (n={x.n})"


def _pts(x: float) -> str:
    """A margin in accuracy points (``0.03`` -> ``3``)."""
    return f"{100 * x:g}"


def _claim1(c: Cells, m: str, s: int, r: Rules) -> list[Verdict]:
    notr_pk, g0_pk = c.acc(m, "grpo_notr", s), c.acc(m, "grpo", 0)
    notr_fi, g0_fi = c.acc(m, "grpo_notr", s, "final"), c.acc(m, "grpo", 0, "final")
    d, se = _diff(notr_pk, g0_pk)
    a = Verdict(
        1,
        "1a prosperity",
        m,
        f"peak(no-TR s={s}) − peak(GRPO s=0)",
        d,
        se,
        _not_worse(d, se, r),
        f"not worse: d − {r.z:g}·se ≥ −{_pts(r.match_margin)} points",
        f"peak no-TR s={s} {_f(notr_pk)} vs GRPO s=0 {_f(g0_pk)}",
    )
    e, se_e = _diff(g0_fi, notr_fi)
    drop, se_drop = _diff(notr_pk, notr_fi)
    v = _better(e, se_e, r)
    if v == HOLDS and not drop - r.z * se_drop > 0:
        v = INCONCLUSIVE
    b = Verdict(
        1,
        "1b collapse",
        m,
        f"final(GRPO s=0) − final(no-TR s={s})",
        e,
        se_e,
        v,
        f"better: d − {r.z:g}·se > 0 and no-TR peak − final > {r.z:g}·se; fails if d + {r.z:g}·se < "
        f"{_pts(r.min_effect)} point",
        f"final no-TR {_f(notr_fi)} (peak {_f(notr_pk)}) vs GRPO s=0 final {_f(g0_fi)}, within {c.max_update} updates",
    )
    return [a, b]


def _claim2(c: Cells, m: str, s: int, r: Rules) -> list[Verdict]:
    g0, gs = c.acc(m, "grpo", 0), c.acc(m, "grpo", s)
    e, se = _diff(g0, gs)
    v = _better(e, se, r)
    levels = c.staleness_levels(m, "grpo")
    peaks = {lv: c.acc(m, "grpo", lv) for lv in levels}
    rises = [_diff(peaks[b], peaks[a]) for a, b in zip(levels, levels[1:])]
    steady = not any(math.isfinite(dd) and dd - r.z * ss > 0 for dd, ss in rises)
    if v == HOLDS and not steady:
        v = FAILS
    sweep = ", ".join(f"s={lv}: {100 * peaks[lv].mean:.1f}%" for lv in levels)
    a = Verdict(
        2,
        "2a accuracy degrades",
        m,
        f"peak(GRPO s=0) − peak(GRPO s={s})",
        e,
        se,
        v,
        f"better: d − {r.z:g}·se > 0, and no significant rise between consecutive s",
        f"GRPO peak by staleness: {sweep}",
    )
    k0, ks = c.clipped(m, "grpo", 0), c.clipped(m, "grpo", s)
    ratio = ks.mean / k0.mean if k0.ok and ks.ok and k0.mean > 0 else math.nan
    if not (k0.ok and ks.ok and math.isfinite(k0.se) and math.isfinite(ks.se)):
        v2 = INCONCLUSIVE
    elif ks.mean - r.z * ks.se >= r.clip_rise * (k0.mean + r.z * k0.se):
        v2 = HOLDS
    elif ks.mean + r.z * ks.se < r.clip_rise * (k0.mean - r.z * k0.se):
        v2 = FAILS
    else:
        v2 = INCONCLUSIVE
    b = Verdict(
        2,
        "2b clipping rises",
        m,
        f"clip(GRPO s={s}) / clip(GRPO s=0)",
        ratio,
        math.nan,
        v2,
        f"ratio: clip_s − {r.z:g}·se ≥ {r.clip_rise:g}·(clip_0 + {r.z:g}·se); fails if clip_s + {r.z:g}·se < "
        f"{r.clip_rise:g}·(clip_0 − {r.z:g}·se)",
        f"mean clipped tokens (updates ≥ s) GRPO s={s} {_f(ks, 2)} vs s=0 {_f(k0, 2)}",
    )
    return [a, b]


def _claim3(c: Cells, m: str, s: int, r: Rules) -> list[Verdict]:
    m2, g0, gs = c.acc(m, "m2po", s), c.acc(m, "grpo", 0), c.acc(m, "grpo", s)
    d, se = _diff(m2, g0)
    a = Verdict(
        3,
        "3a matches on-policy",
        m,
        f"peak(M2PO s={s}) − peak(GRPO s=0)",
        d,
        se,
        _not_worse(d, se, r),
        f"not worse: d − {r.z:g}·se ≥ −{_pts(r.match_margin)} points (paper: −0.5…+3.6 points)",
        f"M2PO s={s} {_f(m2)} vs GRPO s=0 {_f(g0)}",
    )
    e, se_e = _diff(m2, gs)
    b = Verdict(
        3,
        "3b beats stale GRPO",
        m,
        f"peak(M2PO s={s}) − peak(GRPO s={s})",
        e,
        se_e,
        _better(e, se_e, r),
        f"better: d − {r.z:g}·se > 0; fails if d + {r.z:g}·se < {_pts(r.min_effect)} point (paper: +2.8…+11.2 points)",
        f"M2PO s={s} {_f(m2)} vs GRPO s={s} {_f(gs)}",
    )
    return [a, b]


def _claim4(c: Cells, m: str, s: int, r: Rules) -> list[Verdict]:
    km, kg = c.clipped(m, "m2po", s), c.clipped(m, "grpo", s)
    ratio = km.mean / kg.mean if km.ok and kg.ok and kg.mean > 0 else math.nan
    if not (km.ok and kg.ok and math.isfinite(km.se) and math.isfinite(kg.se)) or kg.mean <= 0:
        v = INCONCLUSIVE
    elif km.mean + r.z * km.se <= r.clip_ratio * (kg.mean - r.z * kg.se):
        v = HOLDS
    elif km.mean - r.z * km.se > r.clip_ratio * (kg.mean + r.z * kg.se):
        v = FAILS
    else:
        v = INCONCLUSIVE
    return [
        Verdict(
            4,
            "4 clip order of magnitude",
            m,
            f"clip(M2PO s={s}) / clip(GRPO s={s})",
            ratio,
            math.nan,
            v,
            f"ratio: m + {r.z:g}·se ≤ {r.clip_ratio:g}·(g − {r.z:g}·se); fails if m − {r.z:g}·se > "
            f"{r.clip_ratio:g}·(g + {r.z:g}·se)",
            f"mean clipped/masked tokens (updates ≥ s) M2PO {_f(km, 2)} vs GRPO {_f(kg, 2)}",
        )
    ]


def judge_claims(c: Cells, stale: int, models: list[str] | None = None, rules: Rules | None = None) -> list[Verdict]:
    """Every part of every claim per model, then one ``all`` row per claim and model and one per claim overall.
    ``c``: the study's cells (its seeds already chosen)."""
    r = rules or Rules()
    updates = c.tables.updates
    models = models or order_models(updates["model"].unique() if len(updates) else [])
    out: list[Verdict] = []
    for claim, fn in ((1, _claim1), (2, _claim2), (3, _claim3), (4, _claim4)):
        per_model = []
        for m in models:
            parts = fn(c, m, stale, r)
            verdict = combine([p.verdict for p in parts])
            out.extend(parts)
            if len(parts) > 1:
                out.append(
                    Verdict(
                        claim,
                        "all",
                        m,
                        "",
                        math.nan,
                        math.nan,
                        verdict,
                        "all parts hold / any fails",
                        "; ".join(f"{p.part}: {p.verdict}" for p in parts),
                    )
                )
            per_model.append(verdict)
        out.append(
            Verdict(
                claim,
                "all",
                "all models",
                "",
                math.nan,
                math.nan,
                combine(per_model),
                "holds on every model / fails on any",
                "; ".join(f"{m}: {v}" for m, v in zip(models, per_model)),
            )
        )
    for v in out:
        v.statement = STATEMENTS[v.claim]
    return out


def claims_frame(verdicts: list[Verdict]) -> pd.DataFrame:
    """The verdicts as a tidy frame (``claims.csv``)."""
    cols = ["claim", "part", "model", "verdict", "statistic", "value", "se", "rule", "evidence", "statement"]
    return pd.DataFrame([asdict(v) for v in verdicts], columns=cols)
