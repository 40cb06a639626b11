"""The other off-policy baselines the paper compares against (Fig. 6 and Table 1).

Each is a token objective: the registry adds input checks, TIS, aggregation and metrics.
Defaults are the values their own papers recommend (M2PO paper App. B: "with the recommended
values of its own paper"); where a paper does not publish a value the docstring says so.
"""

from __future__ import annotations

import torch

from .common import LOG_RATIO_CLAMP, PolicyBatch, TokenObjective, sequence_log_ratio_mean
from .ppo import ppo_clip_objective
from .registry import register_policy_loss


@register_policy_loss(
    "gspo", reference="Zheng et al. 2025, GSPO (arXiv 2507.18071) Eq. 5-7 and §5.1", default_agg="seq-mean-token-mean"
)
def gspo(batch: PolicyBatch, clip_low: float = 3e-4, clip_high: float = 4e-4):
    """Group Sequence Policy Optimization, token form (GSPO-token, Eq. 7).

    s_i = exp(mean_t log r_{i,t}) (the length-normalised sequence ratio, Eq. 5); per token
    s_{i,t} = sg[s_i]·π_θ(y_t)/sg[π_θ(y_t)], whose value is s_i and whose gradient equals
    sequence-level GSPO's when A is constant per response. Clip [1−3e-4, 1+4e-4] (§5.1);
    default aggregation seq-mean-token-mean, i.e. one term per response (Eq. 5).
    """
    seq = sequence_log_ratio_mean(batch).detach()
    log_s = seq + batch.log_prob - batch.log_prob.detach()
    ratio = torch.exp(log_s.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))
    return ppo_clip_objective(batch, ratio, 1 - clip_low, 1 + clip_high)


@register_policy_loss("cispo", reference="MiniMax 2025, MiniMax-M1 (arXiv 2506.13585) §3.1 Eq. 4-5")
def cispo(batch: PolicyBatch, clip_low: float | None = None, clip_high: float = 0.2):
    """CISPO: clip the importance-sampling weight, not the update; every token keeps its gradient.

    Per token −sg(clip(r, 1−ε_low, 1+ε_high))·A·log π_θ (Eq. 4). MiniMax-M1 imposes no lower
    bound (``clip_low=None`` → weights in [0, 1+ε_high]) and tunes ε_high without publishing
    it; 0.2 follows verl's CISPO example. Token-level normalisation over all tokens (Eq. 4).
    """
    r = batch.ratio.detach()
    low = 0.0 if clip_low is None else 1 - clip_low
    w = torch.clamp(r, low, 1 + clip_high)
    clipped = (w != r) & batch.mask
    loss_mat = -w * batch.advantages * batch.log_prob
    return TokenObjective(loss_mat=loss_mat, clipped=clipped, zero_grad=torch.zeros_like(clipped))


@register_policy_loss("topr", reference="Le Roux et al. 2025, TOPR (arXiv 2503.14286) Eq. 9")
def topr(batch: PolicyBatch, ratio_level: str = "sequence"):
    """Tapered Off-Policy REINFORCE: positives without IS, negatives with IS truncated to [0, 1].

    Per token −w·A·log π_θ with w = 1 when A ≥ 0 and w = sg(min(π/μ, 1)) when A < 0, where
    π/μ is the trajectory ratio exp(Σ_t log r) (``ratio_level="sequence"``, the paper's form)
    or the token ratio (``"token"``). TOPR has no hyper-parameter beyond the [0, 1] truncation.
    """
    if ratio_level not in ("sequence", "token"):
        raise ValueError(f"`ratio_level` must be 'sequence' or 'token', got {ratio_level!r}")
    lr = batch.log_ratio.detach()
    if ratio_level == "sequence":
        lr = lr.sum(-1, keepdim=True).expand_as(lr)
    truncated = torch.exp(lr.clamp(max=0.0))
    neg = batch.advantages < 0
    w = torch.where(neg, truncated, torch.ones_like(truncated))
    clipped = neg & (lr > 0) & batch.mask
    loss_mat = -w * batch.advantages * batch.log_prob
    return TokenObjective(loss_mat=loss_mat, clipped=clipped, zero_grad=torch.zeros_like(clipped))


@register_policy_loss("gppo", reference="Su et al. 2025, Klear-Reasoner GPPO (arXiv 2508.07629) §2.2")
def gppo(batch: PolicyBatch, clip_low: float = 0.2, clip_high: float = 0.28):
    """Gradient-Preserving clipping Policy Optimization: PPO-clip values, clipped tokens keep a gradient.

    Where PPO clips (A>0, r>1+ε_h or A<0, r<1−ε_l) the token's term is bound·r/sg(r)·A: its
    value is PPO's clipped value, its gradient bound·A·∇log π instead of zero. Defaults
    ε_l = 0.2, ε_h = 0.28 (Klear-Reasoner trains with DAPO-style clip-higher).
    """
    adv = batch.advantages
    r = batch.ratio
    r_sg = r.detach()
    low, high = 1 - clip_low, 1 + clip_high
    over = (adv > 0) & (r_sg > high)
    under = (adv < 0) & (r_sg < low)
    bound = torch.where(over, torch.full_like(r_sg, high), torch.full_like(r_sg, low))
    preserved = bound * r / r_sg
    ratio_used = torch.where(over | under, preserved, r)
    clipped = (over | under) & batch.mask
    return TokenObjective(loss_mat=-adv * ratio_used, clipped=clipped, zero_grad=torch.zeros_like(clipped))


@register_policy_loss("decoupled_ppo", reference="Fu et al. 2025, AReaL (arXiv 2505.24298) Eq. 5; Hilton et al. 2022")
def decoupled_ppo(
    batch: PolicyBatch,
    proximal_log_prob: torch.Tensor | None = None,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    behav_weight_cap: float | None = None,
):
    """AReaL's decoupled PPO: behaviour→proximal IS weight times a PPO clip around the proximal policy.

    Per token −sg(π_prox/π_behav)·min(u·A, clip(u, 1−ε, 1+ε)·A) with u = π_θ/π_prox (Eq. 5).
    ``proximal_log_prob`` (required) — log-probs of the proximal policy, e.g. the policy at the
    start of the current training step. ε = 0.2; ``behav_weight_cap`` optionally drops tokens
    whose behaviour weight exceeds the cap (AReaL's ``behav_imp_weight_cap``; off by default).
    """
    if proximal_log_prob is None:
        raise ValueError(
            "`proximal_log_prob` is required by decoupled_ppo: pass the log-probs of the proximal "
            "policy (the policy before this step's updates) for the same tokens"
        )
    prox = batch.align(proximal_log_prob).detach()
    behav_w = torch.exp((prox - batch.old_log_prob).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))
    u = torch.exp((batch.log_prob - prox).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))
    obj = ppo_clip_objective(batch, u, 1 - clip_low, 1 + clip_high)
    keep = torch.ones_like(batch.mask)
    if behav_weight_cap is not None:
        keep = behav_w <= behav_weight_cap
    obj.loss_mat = torch.where(keep, obj.loss_mat * behav_w, torch.zeros_like(obj.loss_mat))
    dropped = ~keep & batch.mask
    obj.clipped = obj.clipped | dropped
    obj.zero_grad = obj.zero_grad | dropped
    return obj
