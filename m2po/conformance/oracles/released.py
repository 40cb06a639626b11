"""The authors' released M2PO search (Infini-AI-Lab/M2PO, described in the paper's §3 discussion) as a
literal per-token loop, written from the description of the released search, not from its code.

Per call, over the trust-region tokens (released tolerances |A| > 1e-12, |r − 1| > 1e-12) with
v = (log r)² and n tokens: no constraint when mean(v) ≤ τ + 1e-12 (clip bounds [0, 1e5]); otherwise the
first k (ascending) where the winsorised sum (v_k − 1e-12)·(n−k−1) + Σ_{i≤k} v_i reaches τ·n − 1e-12
gives t = √(v_{k−1} − 1e-12) (0 when k = 0), and the loss is the PPO clip with bounds [e^−t, e^t].
"""

from __future__ import annotations

import math
import struct

import torch

from .inputs import flat_bools

RELEASED_EPS_LOW_UNCONSTRAINED = 1.0
RELEASED_EPS_HIGH_UNCONSTRAINED = 99999.0


def _rounder(dtype):
    """Round a Python float to ``dtype`` (IEEE round-to-nearest-even), like a torch op's result."""
    if dtype == torch.float64:
        return lambda x: x
    return lambda x: struct.unpack("f", struct.pack("f", x))[0]


def released_bounds(log_prob, old_log_prob, adv, mask, tau, floor_low=None, floor_high=None):
    """The released threshold search, token by token. Returns ``(t, low, high)``.

    ``t`` is None when unconstrained; ``low``/``high`` are the ratio bounds 1 − ε_low, 1 + ε_high in the
    input dtype. Arithmetic the released code does in the input dtype is reproduced per token with
    Python floats rounded to that dtype (an IEEE op on two float32 values is exact in float64, so one
    rounding gives the float32 result); sum/sort/cumsum are torch ops in the dtype, as released.
    bf16/fp16 inputs are upcast to float32 first (contract).
    """
    dtype = log_prob.dtype if log_prob.dtype in (torch.float32, torch.float64) else torch.float32
    rnd = _rounder(dtype)
    lp_t = log_prob.detach().to(dtype)
    olp_t = old_log_prob.detach().to(dtype)
    ratio = [float(x) for x in torch.exp(lp_t - olp_t).reshape(-1).tolist()]
    lp = [float(x) for x in lp_t.reshape(-1).tolist()]
    olp = [float(x) for x in olp_t.reshape(-1).tolist()]
    a_all = [float(x) for x in adv.detach().to(dtype).reshape(-1).tolist()]
    msk = flat_bools(mask)
    # Python-float thresholds compared against a tensor are first cast to the tensor's dtype
    a_tol, r_hi, r_lo = rnd(1e-12), rnd(1 + 1e-12), rnd(1 - 1e-12)

    v = []
    for i in range(len(msk)):
        if not msk[i]:
            continue
        r_i, a_i = ratio[i], a_all[i]
        if (a_i > a_tol and r_i > r_hi) or (a_i < -a_tol and r_i < r_lo):
            d = rnd(olp[i] - lp[i])
            v.append(rnd(d * d))
    n = len(v)

    t = None
    constrained = False
    if n > 0:
        vt = torch.tensor(v, dtype=dtype)
        m2_now = float(vt.sum()) / n
        if m2_now > tau + 1e-12:
            constrained = True
            srt = torch.sort(vt).values
            csum = torch.cumsum(srt, 0)
            srt_l = [float(x) for x in srt.tolist()]
            csum_l = [float(x) for x in csum.tolist()]
            S = tau * n
            if S <= 1e-12:
                t = 0.0
            else:
                k = 0
                for k in range(n):  # noqa: B007 - Python keeps the last k when nothing stops
                    if (srt_l[k] - 1e-12) * (n - k - 1) + csum_l[k] >= S - 1e-12:
                        break
                t = 0.0 if k == 0 else math.sqrt(max(srt_l[k - 1] - 1e-12, 0.0))
    if constrained:
        eps_low = 1 - float(torch.exp(torch.tensor(-t, dtype=torch.float32)))
        eps_high = float(torch.exp(torch.tensor(t, dtype=torch.float32))) - 1
    else:
        eps_low = RELEASED_EPS_LOW_UNCONSTRAINED
        eps_high = RELEASED_EPS_HIGH_UNCONSTRAINED
    if floor_low is not None:
        eps_low = max(eps_low, floor_low)
    if floor_high is not None:
        eps_high = max(eps_high, floor_high)
    return t, rnd(1 - eps_low), rnd(1 + eps_high)


def released_loop(log_prob, old_log_prob, adv, mask, tau, floor_low=None, floor_high=None):
    """Per-token loop of the released search + PPO clipped surrogate (token-mean).

    Returns (loss: float, t: float | None, clipped: bool tensor of the input shape); ``t`` is None
    when unconstrained. The ratio is ``torch.exp`` of the whole ``[batch, len]`` difference in the
    input dtype, as in the released code, and per-token products are rounded to that dtype.
    """
    t, lo_b, hi_b = released_bounds(log_prob, old_log_prob, adv, mask, tau, floor_low, floor_high)
    dtype = log_prob.dtype if log_prob.dtype in (torch.float32, torch.float64) else torch.float32
    rnd = _rounder(dtype)
    ratio = [float(x) for x in torch.exp(log_prob.detach().to(dtype) - old_log_prob.detach().to(dtype)).reshape(-1)]
    a_all = [float(x) for x in adv.detach().to(dtype).reshape(-1).tolist()]
    msk = flat_bools(mask)
    terms = []
    clipped = [False] * len(msk)
    for i in range(len(msk)):
        if not msk[i]:
            continue
        r_i, a_i = ratio[i], a_all[i]
        l_unclipped = rnd(-a_i * r_i)
        l_clipped = rnd(-a_i * min(max(r_i, lo_b), hi_b))
        terms.append(max(l_unclipped, l_clipped))
        clipped[i] = l_clipped > l_unclipped
    loss = math.fsum(terms) / len(terms)
    return loss, t, torch.tensor(clipped, dtype=torch.bool).reshape(tuple(log_prob.shape))
