"""Per-token literal loops for every loss, written from the papers (float64 arithmetic on lists).

Each oracle returns, for one loss call, a :class:`TokenOut` of ``[row][token]`` lists: the per-token loss
term (to be minimised), its derivative with respect to the token's own log π_θ, a keep flag (False where
the loss's trust region removes the token's policy gradient) and an ambiguity flag (the ratio lies within
1e-6 relative of a clip bound, where float rounding decides whether the token keeps its gradient; its
value is the same either way). Every loss here is *diagonal*: a token's term
depends on log π_θ of other tokens only through stop-gradients (GSPO-token's sg[s_i], TOPR's
trajectory weight), so the gradient of an aggregated loss is ``weight_t · dterm_t``.

The ratio follows the contract (docs/losses.md): r = exp(clamp(log r, −20, 20)), whose derivative is 0
outside the clamp. The conformance vectors keep |log r| ≤ 15, so the clamp never decides a case.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .inputs import Rows

CLAMP = 20.0
#: a ratio this close (relative) to a clip bound is on the boundary: rounding decides its gradient
BOUNDARY = 1e-6


class TokenOut(NamedTuple):
    term: list[list[float]]
    grad: list[list[float]]
    keep: list[list[bool]]
    ambiguous: list[list[bool]]


def _exp(x: float) -> tuple[float, float]:
    """exp(clamp(x, ±20)) and its derivative with respect to x."""
    inside = -CLAMP < x < CLAMP
    return math.exp(min(max(x, -CLAMP), CLAMP)), (1.0 if inside else 0.0)


def _empty(rows: Rows, fill):
    return [[fill] * rows.width for _ in rows.mask]


def _out(rows: Rows) -> TokenOut:
    return TokenOut(_empty(rows, 0.0), _empty(rows, 0.0), _empty(rows, True), _empty(rows, False))


def on_boundary(r: float, a: float, low: float, high: float) -> bool:
    """The token is in a clipping quadrant and its ratio sits on the clip bound (within BOUNDARY)."""
    return (a > 0 and abs(r - high) <= BOUNDARY * abs(high)) or (a < 0 and abs(r - low) <= BOUNDARY * abs(low))


def ppo_token(r: float, dr: float, a: float, low: float, high: float, clip_c: float | None = None):
    """PPO's clipped surrogate for one token (Schulman et al. 2017 Eq. 7), minimised; dual clip (Ye et al.
    2020 Eq. 5) for A < 0 when ``clip_c`` is given. ``dr`` = d r / d log π_θ. Returns (term, d term /
    d log π_θ, keep)."""
    unclipped = -a * r
    clipped = -a * min(max(r, low), high)
    if clipped > unclipped:  # the constant branch wins: no gradient
        term, grad, keep = clipped, 0.0, False
    else:
        term, grad, keep = unclipped, -a * dr, True
    if clip_c is not None and a < 0 and term > -a * clip_c:
        term, grad, keep = -a * clip_c, 0.0, False
    return term, grad, keep


def ppo_clip(rows: Rows, low: float, high: float, clip_c: float | None = None):
    """Token-level PPO/GRPO clip with ratio bounds [low, high]."""
    out = _out(rows)
    for i, j in rows.tokens():
        r, dr = _exp(rows.lr[i][j])
        a = rows.adv[i][j]
        out.term[i][j], out.grad[i][j], out.keep[i][j] = ppo_token(r, r * dr, a, low, high, clip_c)
        out.ambiguous[i][j] = on_boundary(r, a, low, high) or (clip_c is not None and on_boundary(r, -a, 0, clip_c))
    return out


def masked_ratio(rows: Rows, keep_mask: list[list[bool]], clip_bounds: tuple[float, float] | None = None):
    """M2PO's Eq. 5 per token: −M·r·A (M = ``keep_mask``). With ``clip_bounds`` the removed tokens keep
    the clipped value −A·clip(r, lo, hi) instead of 0 (the "clip instead of mask" alternative)."""
    out = _out(rows)
    for i, j in rows.tokens():
        r, dr = _exp(rows.lr[i][j])
        a = rows.adv[i][j]
        if keep_mask[i][j]:
            out.term[i][j], out.grad[i][j] = -a * r, -a * r * dr
        else:
            out.keep[i][j] = False
            if clip_bounds is not None:
                out.term[i][j] = -a * min(max(r, clip_bounds[0]), clip_bounds[1])
    return out


def gspo(rows: Rows, clip_low: float, clip_high: float):
    """GSPO-token (Zheng et al. 2025, arXiv 2507.18071, Eq. 5-7): s_i = exp(mean_t log r_{i,t}); every token
    of row i has ratio value s_i and d s_{i,t} / d log π_θ(y_t) = s_i; PPO clip [1−ε_l, 1+ε_h] on s_i."""
    out = _out(rows)
    low, high = 1 - clip_low, 1 + clip_high
    for i, row_mask in enumerate(rows.mask):
        idx = [j for j, m in enumerate(row_mask) if m]
        if not idx:
            continue
        s, ds = _exp(math.fsum(rows.lr[i][j] for j in idx) / len(idx))
        for j in idx:
            a = rows.adv[i][j]
            out.term[i][j], out.grad[i][j], out.keep[i][j] = ppo_token(s, s * ds, a, low, high)
            out.ambiguous[i][j] = on_boundary(s, a, low, high)
    return out


def cispo(rows: Rows, clip_low: float | None, clip_high: float):
    """CISPO (MiniMax-M1, arXiv 2506.13585, Eq. 4): −sg(clip(r, 1−ε_l, 1+ε_h))·A·log π_θ; no lower bound
    when ``clip_low`` is None. Every token keeps its gradient −w·A."""
    out = _out(rows)
    low = 0.0 if clip_low is None else 1 - clip_low
    for i, j in rows.tokens():
        w = min(max(_exp(rows.lr[i][j])[0], low), 1 + clip_high)
        a = rows.adv[i][j]
        out.term[i][j], out.grad[i][j] = -w * a * rows.lp[i][j], -w * a
    return out


def topr(rows: Rows, ratio_level: str):
    """TOPR (Le Roux et al. 2025, arXiv 2503.14286, Eq. 9): −w·A·log π_θ with w = 1 for A ≥ 0 and
    w = min(π/μ, 1) for A < 0; π/μ = exp(Σ_t log r) (sequence) or the token ratio (token)."""
    out = _out(rows)
    for i, j in rows.tokens():
        if ratio_level == "sequence":
            x = math.fsum(rows.lr[i][k] for k, m in enumerate(rows.mask[i]) if m)
        else:
            x = rows.lr[i][j]
        a = rows.adv[i][j]
        w = 1.0 if a >= 0 else math.exp(min(x, 0.0))
        out.term[i][j], out.grad[i][j] = -w * a * rows.lp[i][j], -w * a
    return out


def gppo(rows: Rows, clip_low: float, clip_high: float):
    """GPPO (Klear-Reasoner, arXiv 2508.07629, §2.2): PPO-clip values; where PPO clips (A>0, r>1+ε_h or
    A<0, r<1−ε_l) the term is bound·A with gradient −bound·A instead of 0."""
    out = _out(rows)
    for i, j in rows.tokens():
        r, dr = _exp(rows.lr[i][j])
        a = rows.adv[i][j]
        if a > 0 and r > 1 + clip_high:
            bound = 1 + clip_high
        elif a < 0 and r < 1 - clip_low:
            bound = 1 - clip_low
        else:
            out.term[i][j], out.grad[i][j] = -a * r, -a * r * dr
            continue
        out.term[i][j], out.grad[i][j] = -a * bound, -a * bound
    return out


def decoupled_ppo(rows: Rows, clip_low: float, clip_high: float, behav_weight_cap: float | None):
    """AReaL's decoupled PPO (Fu et al. 2025, arXiv 2505.24298, Eq. 5): −sg(π_prox/π_behav)·min(u·A,
    clip(u, 1−ε, 1+ε)·A) with u = π_θ/π_prox; tokens whose behaviour weight exceeds the cap are dropped."""
    if rows.prox_lr is None or rows.behav_lr is None:
        raise ValueError("decoupled_ppo needs proximal log-probs")
    out = _out(rows)
    low, high = 1 - clip_low, 1 + clip_high
    for i, j in rows.tokens():
        w = _exp(rows.behav_lr[i][j])[0]
        if behav_weight_cap is not None and w > behav_weight_cap:
            out.keep[i][j] = False
            out.ambiguous[i][j] = abs(w - behav_weight_cap) <= BOUNDARY * behav_weight_cap
            continue
        u, du = _exp(rows.prox_lr[i][j])
        a = rows.adv[i][j]
        t, g, out.keep[i][j] = ppo_token(u, u * du, a, low, high)
        out.term[i][j], out.grad[i][j] = w * t, w * g
        out.ambiguous[i][j] = on_boundary(u, a, low, high)
    return out


def tis_weights(rows: Rows, cap: float) -> list[list[float]]:
    """TIS (Yao et al. 2025): w = min(π_behav/π_rollout, C) per token, detached."""
    if rows.tis_lr is None:
        raise ValueError("TIS needs rollout log-probs")
    w = _empty(rows, 0.0)
    for i, j in rows.tokens():
        w[i][j] = min(math.exp(min(rows.tis_lr[i][j], CLAMP)), cap)
    return w


def aggregation_weights(
    mask: list[list[bool]],
    mode: str,
    global_token_count: float | None = None,
    global_seq_count: float | None = None,
) -> list[list[float]]:
    """Weight of each token's term in the aggregated loss (verl's ``agg_loss`` modes, docs/losses.md).

    token-mean 1/N; seq-mean-token-sum 1/G; seq-mean-token-mean 1/(G·|y_i|); seq-mean-token-sum-norm
    1/(G·L) with L the padded response length. N and G (rows with at least one response token) are the
    call's own counts unless the global ones are given.
    """
    n_tok = sum(1 for row in mask for m in row if m)
    n_rows = sum(1 for row in mask if any(row))
    N = global_token_count if global_token_count is not None else n_tok
    G = global_seq_count if global_seq_count is not None else n_rows
    width = len(mask[0]) if mask else 0
    out = []
    for row in mask:
        length = sum(1 for m in row if m)
        if mode == "token-mean":
            w = 1.0 / N
        elif mode == "seq-mean-token-sum":
            w = 1.0 / G
        elif mode == "seq-mean-token-mean":
            w = 1.0 / (G * length) if length else 0.0
        elif mode == "seq-mean-token-sum-norm":
            w = 1.0 / (G * width)
        else:
            raise ValueError(f"unknown aggregation mode {mode!r}")
        out.append([w if m else 0.0 for m in row])
    return out


def agg_oracle(loss_rows, mask_rows, mode, global_token_count=None, global_seq_count=None):
    """Aggregate nested lists [B][L] of per-token losses; fully-masked rows are excluded from seq counts."""
    weights = aggregation_weights(mask_rows, mode, global_token_count, global_seq_count)
    return math.fsum(w * x for wr, lr in zip(weights, loss_rows) for w, x in zip(wr, lr) if w)
