"""What each claim part could have detected, and what an inconclusive part rules out (docs/tiny_protocol.md).

For every part of :func:`m2po.analysis.claims.judge_claims` (``part != "all"``):

* ``mde``: the minimal detectable effect, z·se of the part's statistic (z = 2, the rules' z): a
  true effect smaller than this could not have made a "better" part hold;
* ``lo`` / ``hi``: the interval statistic ± z·se; the data rule out values outside it. For the ratio
  parts (2b, 4: a ratio of two clipped fractions) the interval is (a − z·se_a)/(b + z·se_b) to
  (a + z·se_a)/(b − z·se_b) and the s.e. is the delta-method s.e. of the ratio;
* ``ruled_out``: the sentence a report prints for an inconclusive part, e.g. "the data rule out
  peak(M2PO s=64) − peak(GRPO s=64) > +0.021 and < −0.013".
"""

from __future__ import annotations

import math
import re

import pandas as pd

from .aggregate import ratio_se
from .cells import Cells
from .claims import INCONCLUSIVE, Rules, Verdict

COLUMNS = ["claim", "part", "model", "verdict", "statistic", "value", "se", "mde", "lo", "hi", "ruled_out"]
#: ratio parts: (method of the numerator, its staleness "s" or "0") / (method, staleness)
_RATIOS = {"2b": (("grpo", "s"), ("grpo", "0")), "4": (("m2po", "s"), ("grpo", "s"))}


def _ratio_interval(cells: Cells, model: str, stale: int, part: str, z: float) -> tuple[float, float, float]:
    (ma, sa), (mb, sb) = _RATIOS[part]
    a = cells.clipped(model, ma, stale if sa == "s" else 0)
    b = cells.clipped(model, mb, stale if sb == "s" else 0)
    se = ratio_se(a, b)
    if not math.isfinite(se):
        return math.nan, math.nan, math.nan
    lo = max(a.mean - z * a.se, 0.0) / (b.mean + z * b.se)
    hi = (a.mean + z * a.se) / (b.mean - z * b.se) if b.mean - z * b.se > 0 else math.inf
    return se, lo, hi


def power_frame(verdicts: list[Verdict], cells: Cells, stale: int, rules: Rules | None = None) -> pd.DataFrame:
    """One row per claim part of ``verdicts`` (judged on ``cells``) with its MDE and the values the data rule out
    (module docstring)."""
    r = rules or Rules()
    rows = []
    for v in verdicts:
        if v.part == "all":
            continue
        key = re.match(r"^(\d+[ab]?)", v.part)
        part = key.group(1) if key else v.part
        if part in _RATIOS:
            se, lo, hi = _ratio_interval(cells, v.model, stale, part, r.z)
        else:
            se = v.se
            lo, hi = v.value - r.z * se, v.value + r.z * se
        mde = r.z * se if math.isfinite(se) else math.nan
        ruled = ""
        if v.verdict == INCONCLUSIVE and math.isfinite(lo) and math.isfinite(hi):
            ruled = f"the data rule out {v.statistic} < {lo:+.3g} and > {hi:+.3g}"
        elif v.verdict == INCONCLUSIVE and math.isfinite(lo):
            ruled = f"the data rule out {v.statistic} < {lo:+.3g}"
        rows.append([v.claim, v.part, v.model, v.verdict, v.statistic, v.value, se, mde, lo, hi, ruled])
    return pd.DataFrame(rows, columns=COLUMNS)
