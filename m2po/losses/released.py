"""M2PO as released in the authors' code (Infini-AI-Lab/M2PO, verl fork), value for value.

docs/losses.md compares it with Algorithm 1. Per call (the authors call it per micro-batch and rank),
over the trust-region tokens only (released tolerances: |A| > 1e-12, |r − 1| > 1e-12), with v = (log r)² and n
tokens:

1. if n = 0 or mean(v) ≤ τ + 1e-12: no constraint (ratio bounds [0, 1e5], as released);
2. otherwise find the cap c: the largest sorted value v_(k−1) such that the winsorised sum
   Σ min(v_i, v_k − 1e-12) at the next value does not yet reach τ·n — a *winsorised* mean, so
   masked tokens still count and the denominator stays n. t = √(c − 1e-12);
3. apply the ordinary PPO clip with bounds [e^−t, e^t] (ε_low = 1 − e^−t, ε_high = e^t − 1;
   optional floors ε_low ≥ floor_low, ε_high ≥ floor_high, inactive in the released runs).
   Gradient-wise this zeroes the trust-region tokens with |log r| > t.

Differences from the released function, none of which changes a value it returns: the
threshold search is one sort and one cumulative sum (the released loop syncs the device once
per token), τ = 0 gives t = 0 instead of a crash (the loop unpacks a float), √ of a value
below 1e-12 is taken as 0 instead of a complex number, and r is computed from log r clamped to
±20 (docs/losses.md) — the released code has no clamp and returns NaN gradients beyond that.
bf16/fp16 inputs are upcast to float32 first.
"""

from __future__ import annotations

import math

import torch

from ..loss_names import PAPER_TAU
from .common import PolicyBatch, trust_region, validate_tau
from .ppo import ppo_clip_objective
from .registry import register_policy_loss

_TOL = 1e-12


def released_threshold(log_ratio: torch.Tensor, tr: torch.Tensor, tau: float) -> tuple[float | None, float, float]:
    """The released search, vectorised. Returns (t, M2, M2_after); t is None when M2 is within the budget
    (unconstrained: ratio bounds [0, 1e5], as released).

    Arithmetic follows the released loop exactly: v and its cumulative sum in the tensor dtype,
    the comparison (v_k − 1e-12)·(n−k−1) + Σ_{i≤k} v_i ≥ τ·n − 1e-12 in Python-float (float64)
    precision.
    """
    v = log_ratio.detach()[tr].square()
    n = v.numel()
    if n == 0:
        return None, 0.0, 0.0
    m2_now = float(v.sum()) / n
    if m2_now <= tau + _TOL:
        return None, m2_now, m2_now
    target = tau * n
    if target <= _TOL:
        return 0.0, m2_now, 0.0
    sorted_v, _ = torch.sort(v)
    csum = torch.cumsum(sorted_v, 0)
    sv, cs = sorted_v.to(torch.float64), csum.to(torch.float64)
    rest = torch.arange(n - 1, -1, -1, device=v.device, dtype=torch.float64)
    reached = (sv - _TOL) * rest + cs >= target - _TOL
    # First True. In exact arithmetic the last index always qualifies (M2 > τ); in float32 the
    # sum behind M2 and the cumulative sum can straddle τ·n, and then the loop runs off its end
    # (the released code crashes there, unpacking its fallback value): take k = n − 1.
    k = int(torch.argmax(reached.to(torch.uint8))) if bool(reached.any()) else n - 1
    if k == 0:
        return 0.0, m2_now, float(csum[-1]) / n
    cap = float(sorted_v[k - 1])
    m2_after = (cap * (n - k) + float(csum[k - 1])) / n
    return math.sqrt(max(cap - _TOL, 0.0)), m2_now, m2_after


@register_policy_loss(
    "m2po_released", reference="Infini-AI-Lab/M2PO compute_m2po_policy_loss (docs/losses.md)", tau_param="tau"
)
def m2po_released(
    batch: PolicyBatch,
    tau: float = PAPER_TAU,
    floor_low: float | None = None,
    floor_high: float | None = None,
):
    """The authors' released M2PO: winsorised-M2 threshold t → PPO clip with bounds [e^−t, e^t].

    ``tau`` — M2 budget (0.04). ``floor_low``/``floor_high`` — optional lower limits on
    ε_low/ε_high (the released signature's 0.3/0.5, inactive in the released runs: None).
    """
    tau = validate_tau(tau)
    tr = trust_region(batch, tol=_TOL)
    t, m2_now, m2_after = released_threshold(batch.log_ratio, tr, tau)
    if t is None:
        eps_low, eps_high = 1.0, 1e5 - 1
    else:
        eps_low = 1 - float(torch.exp(torch.tensor(-t, dtype=torch.float32)))
        eps_high = float(torch.exp(torch.tensor(t, dtype=torch.float32))) - 1
    if floor_low is not None:
        eps_low = max(eps_low, floor_low)
    if floor_high is not None:
        eps_high = max(eps_high, floor_high)
    obj = ppo_clip_objective(batch, batch.ratio, 1 - eps_low, 1 + eps_high)
    obj.extra_metrics = {
        "m2po_released/tau": tau,
        "m2po_released/t": math.inf if t is None else t,
        "m2po_released/clip_low": eps_low,
        "m2po_released/clip_high": eps_high,
        "m2po_released/m2_winsorized": m2_after,
    }
    return obj
