"""Cases for the baselines: ``grpo`` (ε-clip, dual clip), ``grpo_notr``, ``gspo``, ``cispo``, ``topr``,
``gppo``, ``decoupled_ppo``, the aggregation modes, micro-batch accumulation and TIS.

Every ratio sits well away from a clip bound unless the case is about that bound.
"""

from __future__ import annotations

import torch

from ..spec import CaseSpec
from .common import BF16, F64, LN, heavy_tailed, log_probs, params, ratios
from .m2po import HAND, rollout

# r = 1.5 A=+1 clipped at 1.2 | r = 0.5 A=+1 unclipped | r = 2 A=-1 unclipped (below verl's dual clip c = 3)
# r = 0.5 A=-1 clipped at 0.8 | r = 1.1 A=-2 inside | r = 0.9 A=+0.5 inside
EPS = [
    [(LN(1.5), 1.0), (LN(0.5), 1.0), (LN(2.0), -1.0)],
    [(LN(0.5), -1.0), (LN(1.1), -2.0), (LN(0.9), 0.5)],
]
# + r = 5 with A = -1: plain PPO gives term 5 (gradient); an always-on dual clip c = 3 gives 3 (none)
EPS_BIG_NEGATIVE = [EPS[0], EPS[1], [(LN(5.0), -1.0), (LN(1.05), 1.0), None]]
# dual clip c = 3 (Ye et al. 2020): r = 5 A=-1 -> 3 (dual-clipped) | r = 2 A=-1 -> 2 | r = 0.5 A=-1 -> 0.8 |
# r = 5 A=+1 -> -1.2
DUAL = [[(LN(5.0), -1.0), (LN(2.0), -1.0)], [(LN(0.5), -1.0), (LN(5.0), 1.0)]]
# unequal row lengths (4, 2, 0) so that every aggregation mode gives a different value
AGG = [EPS[0] + [(LN(1.3), -1.0)], EPS[1][:2], [None]]
# four rows for the micro-batch splits; row 3 has a single token
SPLIT = [EPS[0], EPS[1], [(LN(1.3), 1.0), (LN(0.7), -1.0), (LN(1.05), -0.5)], [(LN(0.85), 2.0), None, None]]
# GSPO (seq-mean-token-mean): s0 = e^3e-4 inside [1-3e-4, 1+4e-4]; s1 = e^2e-3 clipped (A>0);
# s2 = e^-.01 clipped (A<0); s3 = e^.1 with A<0: min picks s3 A, unclipped
GSPO = [
    [(2e-4, 1.0), (4e-4, 1.0), None],
    [(1e-3, 1.0), (3e-3, 1.0), None],
    [(-0.01, -1.0), None, None],
    [(0.05, -1.0), (-0.05, -1.0), (0.3, -1.0)],
]
# (log π_θ, log π_behav, A): r = e^.5 (w = 1.2 clipped), e^-.1, e^.1, e^-2.8
CISPO = [[(-0.5, -1.0, 1.0), (-2.0, -1.9, -1.0), None], [(-0.3, -0.4, 0.5), (-3.0, -0.2, -2.0), None]]
# TOPR: row 0 A>0 (w = 1); row 1 A<0 with Σ log r = .5 (w = 1); row 2 A<0 with Σ log r = -.7 (w = e^-.7)
TOPR = [
    [(-0.5, -0.7, 1.0), (-1.0, -0.2, 1.0), None],
    [(-0.2, -0.5, -1.0), (-0.4, -0.6, -1.0), None],
    [(-1.0, -0.8, -0.5), (-2.0, -1.5, -0.5), None],
]
# GPPO ε 0.2/0.28: r = 1.5 A=+1 over 1.28 | r = 0.5 A=-1 under 0.8 | inside | min picks r | min picks r
GPPO = [[(LN(1.5), 1.0), (LN(0.5), -1.0), (LN(1.1), 1.0)], [(LN(0.5), 1.0), (LN(1.5), -1.0), None]]


def _decoupled(dtype=F64):
    """(log π_θ, log π_behav, A) plus log π_prox: behaviour weights e^.1, e^-.2, e^.5, e^.3."""
    inputs = log_probs([[(-0.5, -1.0, 1.0), (-1.1, -1.0, -1.0)], [(-1.9, -2.0, -2.0), (-0.6, -0.7, 1.0)]], dtype)
    prox = torch.tensor([[-0.9, -1.2], [-1.5, -0.4]], dtype=torch.float64).to(dtype)
    return {**inputs, "proximal_log_prob": prox}


def grpo_cases() -> list[CaseSpec]:
    p = params("grpo")
    C = CaseSpec
    empty_row = [[None, None, None]]
    return [
        C("grpo/eps_clip", "grpo", "ε = 0.2: r = 1.5 (A>0) and r = 0.5 (A<0) clipped", ratios(EPS), p),
        C("grpo/eps_clip_float64", "grpo", "grpo/eps_clip in float64", ratios(EPS, F64), p),
        C("grpo/eps_clip_bfloat16", "grpo", "grpo/eps_clip in bfloat16", ratios(EPS, BF16), p),
        C(
            "grpo/eps_clip_large_negative_ratio",
            "grpo",
            "ε-clip without dual clip: r = 5 with A<0 keeps term 5 and its gradient",
            ratios(EPS_BIG_NEGATIVE),
            p,
            tags=("separating",),
        ),
        C(
            "grpo/asymmetric",
            "grpo",
            "ε_low 0.2, ε_high 0.6: r = 1.5 no longer clipped",
            ratios(EPS),
            params("grpo", clip_high=0.6),
        ),
        C("grpo/dual_clip", "grpo", "dual clip c = 3", ratios(DUAL, F64), params("grpo", clip_c=3.0)),
        C("grpo/heavy_tails", "grpo", "Cauchy-tailed log r (seed 5)", heavy_tailed(5), p),
        C("grpo/token_mean_empty_row", "grpo", "token-mean over 6 tokens (row 2 empty)", ratios(AGG), p),
        C("grpo/one_token", "grpo", "one token r = 1.5, A = +1: clipped", ratios([[(LN(1.5), 1.0)]]), p),
        C(
            "grpo/padding_garbage",
            "grpo",
            "grpo/eps_clip with NaN/-inf in padding",
            ratios(EPS + empty_row, garbage=True),
            p,
            tags=("padding",),
        ),  # fmt: skip
        C(
            "grpo/seq_mean_token_sum",
            "grpo",
            "seq-mean-token-sum over 2 non-empty rows (row 2 empty)",
            ratios(AGG),
            p,
            loss_agg_mode="seq-mean-token-sum",
        ),
        C(
            "grpo/seq_mean_token_mean",
            "grpo",
            "seq-mean-token-mean over 2 non-empty rows (row 2 empty)",
            ratios(AGG),
            p,
            loss_agg_mode="seq-mean-token-mean",
        ),
        C(
            "grpo/seq_mean_token_sum_norm",
            "grpo",
            "Dr. GRPO: Σ / (rows · response_len), row 2 empty",
            ratios(AGG),
            p,
            loss_agg_mode="seq-mean-token-sum-norm",
        ),
        C(
            "grpo/microbatch_token_mean",
            "grpo",
            "split 2+2, token-mean over the mini-batch's 10 tokens",
            ratios(SPLIT),
            p,
            scope="microbatch",
            split=[2, 2],
        ),
        C(
            "grpo/microbatch_seq_mean_token_mean",
            "grpo",
            "split 2+2, seq-mean-token-mean over 4 rows",
            ratios(SPLIT),
            p,
            loss_agg_mode="seq-mean-token-mean",
            scope="microbatch",
            split=[2, 2],
        ),
        C(
            "grpo/tis",
            "grpo",
            "grpo/eps_clip with TIS weights min(exp(shift), 2)",
            rollout(ratios(EPS), [[0.3, -0.2, 1.0], [0.0, 0.9, -0.5]]),
            p,
            tis_cap=2.0,
            tags=("tis",),
        ),
    ]


def other_cases() -> list[CaseSpec]:
    C = CaseSpec
    return [
        C("grpo_notr/hand", "grpo_notr", "-r A on every token", ratios(HAND), params("grpo_notr")),
        C("grpo_notr/bfloat16", "grpo_notr", "grpo_notr/hand in bfloat16", ratios(HAND, BF16), params("grpo_notr")),
        C(
            "grpo_notr/heavy_tails_float64",
            "grpo_notr",
            "Cauchy-tailed log r (seed 7), |log r| <= 3",
            heavy_tailed(7, F64, max_abs_log_ratio=3.0),
            params("grpo_notr"),
        ),
        C(
            "gspo/hand",
            "gspo",
            "rows 1 and 2 clipped at the sequence level",
            ratios(GSPO, F64),
            params("gspo"),
            loss_agg_mode="seq-mean-token-mean",
        ),
        C(
            "gspo/hand_float32",
            "gspo",
            "gspo/hand in float32",
            ratios(GSPO),
            params("gspo"),
            loss_agg_mode="seq-mean-token-mean",
        ),
        C("gspo/token_mean", "gspo", "gspo/hand aggregated token-mean", ratios(GSPO, F64), params("gspo")),
        C(
            "gspo/microbatch",
            "gspo",
            "gspo/hand split 2+2, seq-mean-token-mean over 4 rows",
            ratios(GSPO, F64),
            params("gspo"),
            loss_agg_mode="seq-mean-token-mean",
            scope="microbatch",
            split=[2, 2],
        ),
        C("cispo/hand", "cispo", "w = clip(r, 0, 1.2): every token keeps -w A", log_probs(CISPO, F64), params("cispo")),
        C("cispo/lower_bound", "cispo", "w = clip(r, 0.8, 1.2)", log_probs(CISPO, F64), params("cispo", clip_low=0.2)),
        C("topr/sequence", "topr", "trajectory ratio truncated at 1 for A<0", log_probs(TOPR, F64), params("topr")),
        C(
            "topr/token",
            "topr",
            "token ratio truncated at 1 for A<0",
            log_probs(TOPR, F64),
            params("topr", ratio_level="token"),
        ),
        C("gppo/hand", "gppo", "clipped tokens keep gradient -bound·A", ratios(GPPO, F64), params("gppo")),
        C(
            "decoupled_ppo/hand",
            "decoupled_ppo",
            "behaviour weight × PPO clip around π_prox",
            _decoupled(),
            params("decoupled_ppo"),
        ),  # fmt: skip
        C(
            "decoupled_ppo/behaviour_cap",
            "decoupled_ppo",
            "behav_weight_cap 1.5 drops the e^.5 token",
            _decoupled(),
            params("decoupled_ppo", behav_weight_cap=1.5),
        ),
        C(
            "decoupled_ppo/float32",
            "decoupled_ppo",
            "decoupled_ppo/hand in float32",
            _decoupled(torch.float32),
            params("decoupled_ppo"),
        ),
    ]
