"""Cases for ``m2po`` (the paper's Algorithm 1 + Eq. 5) and ``m2po_released`` (the authors' code).

Hand batches are written as rows of (log r, A); the arithmetic behind each expectation is in the
description. Three batches *separate* the readings of M2PO: SCOPE (per micro-batch vs per mini-batch
mask), ALL_TOKENS (a mask over every token vs over the trust region) and CLIP (clip vs mask); each
appears under both losses.
"""

from __future__ import annotations

import torch

from ..spec import CaseSpec
from .common import BF16, F64, first_separated_seed, heavy_tailed, params, ratios

# TR = trust region: (A>0, log r>0) or (A<0, log r<0). v = (log r)².
# TR v: .01 (0.1), .25 (0.5), .04 (-0.2), .09 (-0.3); sorted prefix means .01 .025 .0467 -> keep 0.1, -0.2
HAND = [
    [(0.1, 1.0), (0.5, 1.0), (-0.4, 1.0), None],
    [(-0.2, -1.0), (-0.3, -1.0), (0.6, 0.0), None],
]
# nothing in the trust region: A>0 with r<1, A<0 with r>1, A=0
NO_TR = [[(-0.3, 1.0), (0.4, -1.0), (0.2, 0.0)], [(-0.5, 0.5), (0.7, -2.0), None]]
# every TR token has v > 0.04 (.09, .0625, .25): all masked; the non-TR tokens keep their gradient
OVER_TAU = [[(0.3, 1.0), (-0.25, -1.0), (-0.3, 1.0)], [(0.5, 1.0), (0.2, -1.0), None]]
# tau = 0: every TR token with log r != 0 is masked
TAU0 = [[(0.01, 1.0), (-0.02, -1.0), (0.3, 1.0)], [(-0.1, 1.0), (0.05, -1.0), None]]
# exact dyadic values: TR v = .015625 x3 (±0.125), .0625 x3 (±0.25)
# tau = .02: prefix 3 mean .015625, prefix 4 mean .02734 > .02 -> the three tied .0625 all go (any tie rule)
# tau = .03: prefix 4 mean .02734 <= .03, prefix 5 .034375 > .03 -> ONE of the tied .0625 stays: the paper's
#            greedy loop removes the largest flat index first, so the first one (row 0) stays
TIES = [[(0.125, 1.0), (0.25, 1.0), (-0.125, -1.0)], [(0.25, 1.0), (0.125, 1.0), (-0.25, -1.0)]]
# SCOPE: micro-batch A (rows 0-1) holds the large TR values (.09, .09, .0625, .36), B (rows 2-3) the small.
#   per micro-batch: A's sorted prefix .0625 > .04 already -> A loses all four; B keeps everything.
#   per mini-batch: small sum .03 over 6, + .0625 + .09 + .09 -> .2725/9 = .0303, + .36 -> .0633 > .04:
#   only the 0.6 token goes.
SCOPE = [
    [(0.3, 1.0), (-0.3, -1.0), (-0.15, 1.0)],
    [(0.25, 1.0), (0.6, 1.0), (0.4, -1.0)],
    [(0.05, 1.0), (0.05, 1.0), (-0.1, -1.0)],
    [(0.05, 1.0), (0.05, 1.0), (-0.1, -1.0)],
]
# ALL_TOKENS: large |log r| outside the trust region (-0.8 with A>0, 0.7 with A<0).
#   Algorithm 1 (TR .01 .0225 .1225): prefix 3 mean .0517 > .04 -> masks 0.35 only.
#   over all tokens (.01 .0225 .1225 .49 .64): also masks the two non-TR tokens.
ALL_TOKENS = [[(0.1, 1.0), (-0.8, 1.0), (0.35, 1.0)], [(-0.15, -1.0), (0.7, -1.0), None]]
# CLIP: one row, A = +1, log r = .05 .1 .1 .3 .4 (v = .0025 .01 .01 .09 .16), tau = .04
#   Algorithm 1: prefix means .0025 .00625 .0075 .0281 .0545 -> masks 0.4 (its term becomes 0)
#   released: winsorised search stops at k=3 (.09 + .1125 = .2025 >= .2) -> t = .1: 0.3 and 0.4 clipped at
#   e^.1 (their terms stay -e^.1, gradient 0); the 0.1 tokens sit on the clip boundary (ambiguous)
#   clip-not-mask: Algorithm 1's kept range t = .3 -> 0.4's term is -e^.3, gradient 0
CLIP = [[(0.05, 1.0), (0.1, 1.0), (0.1, 1.0), (0.3, 1.0), (0.4, 1.0)], [(-0.1, -1.0), (-0.05, 1.0), None, None, None]]


def rollout(inputs, shifts):
    """TIS inputs: log π_rollout = log π_behav − shift (so the TIS weight is exp(shift), capped)."""
    old = inputs["old_log_prob"]
    shift = torch.tensor(shifts, dtype=torch.float64).to(old.dtype)
    return {**inputs, "rollout_log_prob": torch.where(inputs["response_mask"], old - shift, old)}


def m2po_cases() -> list[CaseSpec]:
    p = params("m2po")
    seed = first_separated_seed(0.04)
    bf16_seed = first_separated_seed(0.04, BF16)
    split_seed = first_separated_seed(0.04, split=[4, 4])
    C = CaseSpec
    out = [
        C("m2po/hand", "m2po", "Algorithm 1 masks the 0.5 and -0.3 TR tokens; N = 6 (footnote 2)", ratios(HAND), p),
        C("m2po/hand_float64", "m2po", "m2po/hand in float64", ratios(HAND, F64), p),
        C("m2po/hand_bfloat16", "m2po", "m2po/hand in bfloat16 (computed in float32)", ratios(HAND, BF16), p),
        C("m2po/no_trust_region", "m2po", "no TR token: nothing masked, loss = -mean(r A)", ratios(NO_TR), p),
        C("m2po/every_token_over_tau", "m2po", "every TR token has v > tau: all masked", ratios(OVER_TAU), p),
        C("m2po/tau_zero", "m2po", "tau = 0 masks every TR token", ratios(TAU0), params("m2po", tau=0.0)),
        C(
            "m2po/ties_whole_group",
            "m2po",
            "three tied v = .0625 all removed (tau = .02): any tie rule",
            ratios(TIES, F64),
            params("m2po", tau=0.02),
        ),
        C(
            "m2po/ties_straddle",
            "m2po",
            "one of three tied v = .0625 stays (tau = .03): the largest flat index is removed first",
            ratios(TIES, F64),
            params("m2po", tau=0.03),
            tags=("tie_rule",),
        ),
        C("m2po/one_token_masked", "m2po", "one token, v = .25 > tau: loss 0", ratios([[(0.5, 1.0)]]), p),
        C("m2po/one_token_kept", "m2po", "one token, v = .01: loss -e^.1", ratios([[(0.1, 1.0)]]), p),
        C(
            "m2po/all_masked_rows",
            "m2po",
            "rows 0 and 2 have no response token",
            ratios([[None, None], HAND[0][:3], [None], HAND[1][:3]]),
            p,
        ),
        C("m2po/heavy_tails", "m2po", f"Cauchy-tailed log r (seed {seed})", heavy_tailed(seed), p),
        C("m2po/heavy_tails_float64", "m2po", f"Cauchy-tailed log r (seed {seed})", heavy_tailed(seed, F64), p),
        C(
            "m2po/heavy_tails_bfloat16",
            "m2po",
            f"Cauchy-tailed log r (seed {bf16_seed}) in bfloat16",
            heavy_tailed(bf16_seed, BF16),
            p,
        ),
        C(
            "m2po/padding_garbage",
            "m2po",
            "m2po/hand with NaN/-inf in padding (must be ignored)",
            ratios(HAND, garbage=True),
            p,
            tags=("padding",),
        ),
        C(
            "m2po/tis",
            "m2po",
            "m2po/hand with TIS weights min(exp(shift), 2)",
            rollout(ratios(HAND), [[0.3, -0.2, 1.0, 0.0], [0.0, 0.9, -0.5, 0.0]]),
            p,
            tis_cap=2.0,
            tags=("tis",),
        ),
        C(
            "m2po/scope_minibatch",
            "m2po",
            "SCOPE batch, mask over the mini-batch: only 0.6 masked",
            ratios(SCOPE),
            p,
            scope="minibatch",
            split=[2, 2],
            tags=("separating",),
        ),
        C(
            "m2po/scope_microbatch",
            "m2po",
            "SCOPE batch, mask per micro-batch: 0.3, -0.3, 0.25, 0.6 masked",
            ratios(SCOPE),
            p,
            scope="microbatch",
            split=[2, 2],
            tags=("separating",),
        ),
        C(
            "m2po/heavy_tails_minibatch",
            "m2po",
            f"Cauchy-tailed batch (seed {split_seed}), split 4+4, mask over the mini-batch",
            heavy_tailed(split_seed),
            p,
            scope="minibatch",
            split=[4, 4],
        ),
        C(
            "m2po/trust_region_vs_all_tokens",
            "m2po",
            "ALL_TOKENS batch: only the 0.35 TR token masked",
            ratios(ALL_TOKENS),
            p,
            tags=("separating",),
        ),
        C(
            "m2po/mask_vs_clip",
            "m2po",
            "CLIP batch: 0.4 masked (term 0), 0.3 kept",
            ratios(CLIP),
            p,
            tags=("separating",),
        ),
    ]
    return out


def released_cases() -> list[CaseSpec]:
    p = params("m2po_released")
    C = CaseSpec
    return [
        C("m2po_released/hand", "m2po_released", "t = .2: 0.5 and -0.3 clipped", ratios(HAND), p),
        C("m2po_released/hand_float64", "m2po_released", "m2po_released/hand in float64", ratios(HAND, F64), p),
        C(
            "m2po_released/unconstrained",
            "m2po_released",
            "M2 = .01625 <= tau: bounds [0, 1e5]",
            ratios([[(0.1, 1.0), (-0.15, -1.0), (0.4, -1.0)]]),
            p,
        ),
        C(
            "m2po_released/tau_zero",
            "m2po_released",
            "tau = 0: t = 0, every TR token clipped",
            ratios(TAU0),
            params("m2po_released", tau=0.0),
        ),
        C(
            "m2po_released/floors",
            "m2po_released",
            "floors 0.3/0.5: bounds [0.7, 1.5]",
            ratios(HAND, F64),
            params("m2po_released", floor_low=0.3, floor_high=0.5),
        ),
        C("m2po_released/heavy_tails", "m2po_released", "Cauchy-tailed log r (seed 3)", heavy_tailed(3), p),
        C(
            "m2po_released/per_microbatch",
            "m2po_released",
            "SCOPE batch: the released rule per micro-batch call",
            ratios(SCOPE),
            p,
            scope="microbatch",
            split=[2, 2],
            tags=("separating",),
        ),
        C(
            "m2po_released/trust_region_vs_all_tokens",
            "m2po_released",
            "ALL_TOKENS batch under the released rule",
            ratios(ALL_TOKENS),
            p,
            tags=("separating",),
        ),
        C(
            "m2po_released/mask_vs_clip",
            "m2po_released",
            "CLIP batch: t = .1, 0.3 and 0.4 clipped (value -e^.1)",
            ratios(CLIP),
            p,
            tags=("separating",),
        ),
    ]
