"""Algorithm 1 of the M2PO paper (Zheng, Zhao, Chen, arXiv 2510.01161, §5.2) as a literal greedy loop.

Written from the paper, not from ``m2po.losses``: T <- the trust-region tokens; while T is non-empty and
mean_T (log r)² > τ, remove the token with the largest (log r)² (among equal maxima the one with the
largest flat, row-major index). Plain Python over lists of floats, float64 arithmetic.
"""

from __future__ import annotations

import math

import torch

from .inputs import flat_bools, flat_floats, flat_log_ratio


def trust_region(log_ratio: list[float], adv: list[float], mask: list[bool]) -> list[bool]:
    """(A>0 and log r>0) or (A<0 and log r<0), response tokens only."""
    out = []
    for lr, a, m in zip(log_ratio, adv, mask, strict=True):
        out.append(bool(m) and ((a > 0 and lr > 0) or (a < 0 and lr < 0)))
    return out


def greedy_algorithm1(
    log_ratio: list[float], adv: list[float], mask: list[bool], tau: float, over: str = "trust_region"
) -> list[bool]:
    """Literal Algorithm 1 over a flat (row-major) token list; returns the keep mask.

    True for every token not removed, padding included. The mean test is written as sum > tau * count.
    ``over="all"`` runs the same loop over *every* response token instead of the trust-region ones: not
    the paper's rule, but the alternative semantics the conformance vectors separate from it.
    """
    n_tok = len(log_ratio)
    if over == "trust_region":
        candidates = trust_region(log_ratio, adv, mask)
    elif over == "all":
        candidates = [bool(m) for m in mask]
    else:
        raise ValueError(f"over must be 'trust_region' or 'all', got {over!r}")
    m2 = [log_ratio[i] * log_ratio[i] for i in range(n_tok)]
    T = [i for i in range(n_tok) if candidates[i]]
    keep = [True] * n_tok
    while T and math.fsum(m2[i] for i in T) > tau * len(T):
        j = T[0]
        for i in T:
            if m2[i] > m2[j] or (m2[i] == m2[j] and i > j):
                j = i
        keep[j] = False
        T.remove(j)
    return keep


def greedy_mask_tensor(log_prob, old_log_prob, advantages, response_mask, tau: float) -> torch.Tensor:
    """Tensor front-end of ``greedy_algorithm1`` (returns a bool tensor of the input shape)."""
    lr = flat_log_ratio(log_prob, old_log_prob)
    keep = greedy_algorithm1(lr, flat_floats(advantages), flat_bools(response_mask), tau)
    return torch.tensor(keep, dtype=torch.bool).reshape(log_prob.shape)


def is_valid_maximal_prefix(
    log_ratio: list[float], adv: list[float], mask: list[bool], keep: list[bool], tau: float
) -> str | None:
    """Robust check that ``keep`` is an Algorithm-1 mask, tolerant to float32/float64 rounding.

    Returns None when valid, otherwise a description of the first violation:
      * every token outside the trust region (padding included) is kept;
      * the kept trust-region tokens have mean (log r)^2 <= tau (relative slack 1e-9);
      * every removed trust-region token has (log r)^2 >= the largest kept value (slack 1e-6);
      * adding back the smallest removed token would make the mean exceed tau (slack 1e-9).
    """
    tr = trust_region(log_ratio, adv, mask)
    kept, removed = [], []
    for i, (t, k) in enumerate(zip(tr, keep, strict=True)):
        if not t:
            if not k:
                return f"token {i} outside the trust region was masked"
            continue
        (kept if k else removed).append(log_ratio[i] * log_ratio[i])
    tiny = 1e-30
    if kept and math.fsum(kept) > tau * len(kept) * (1 + 1e-9) + tiny:
        return f"kept mean {math.fsum(kept) / len(kept)!r} > tau {tau!r}"
    if removed:
        if kept and min(removed) < max(kept) * (1 - 1e-6):
            return f"removed value {min(removed)!r} < kept value {max(kept)!r}"
        back = math.fsum(kept) + min(removed)
        if not back > tau * (len(kept) + 1) * (1 - 1e-9) - tiny:
            return f"could keep one more token (mean {back / (len(kept) + 1)!r} <= tau {tau!r})"
    return None


def well_separated(log_ratio: list[float], adv: list[float], mask: list[bool], tau: float, rel=1e-6) -> bool:
    """True when Algorithm 1's decision is insensitive to float32-level rounding.

    (The implementation may square log r in float32 and sum in another order; only near-exact
    threshold hits, or near-ties straddling the kept/removed boundary, can then change the mask.)
    """
    tr = trust_region(log_ratio, adv, mask)
    vals = sorted(log_ratio[i] * log_ratio[i] for i in range(len(tr)) if tr[i])
    if any(v <= 1e-30 for v in vals):
        return False
    m = 0
    while m < len(vals) and math.fsum(vals[: m + 1]) <= tau * (m + 1):
        m += 1
    if m > 0 and tau * m - math.fsum(vals[:m]) <= rel * tau * m:
        return False
    if m < len(vals):
        s1 = math.fsum(vals[: m + 1])
        if s1 - tau * (m + 1) <= rel * s1:
            return False
        if m > 0 and vals[m] != vals[m - 1] and vals[m] - vals[m - 1] <= rel * vals[m]:
            return False
    return True
