"""GRPO's PPO clipped surrogate (with optional dual clip) and the no-trust-region ablation.

GRPO: Shao et al. 2024 (DeepSeekMath, arXiv 2402.03300) Eq. 3 with the PPO clip of Schulman et
al. 2017 (arXiv 1707.06347) Eq. 7; dual clip: Ye et al. 2020 (arXiv 1912.09729) Eq. 5. The M2PO
paper (§3, §5.1) uses ε = 0.2 on both sides, dual clip off; "GRPO without trust region" is the
same objective with ε = ∞ (§4, Fig. 3).
"""

from __future__ import annotations

import torch

from .common import PolicyBatch, TokenObjective
from .registry import register_policy_loss


def ppo_clip_objective(
    batch: PolicyBatch, ratio: torch.Tensor, low: float, high: float, clip_c: float | None = None
) -> TokenObjective:
    """Per-token −min(r·A, clip(r, low, high)·A) (minimised), plus dual clip for A < 0.

    ``low``/``high`` are the ratio bounds (1−ε_low, 1+ε_high). A clipped token's loss is the
    constant branch, so its gradient is exactly zero.
    """
    adv = batch.advantages
    unclipped = -adv * ratio
    clipped_branch = -adv * torch.clamp(ratio, low, high)
    loss = torch.maximum(unclipped, clipped_branch)
    clipped = clipped_branch > unclipped
    if clip_c is not None:
        dual = -adv * clip_c
        dual_active = (adv < 0) & (loss > dual)
        loss = torch.where(adv < 0, torch.minimum(loss, dual), loss)
        clipped = clipped | dual_active
    clipped = clipped & batch.mask
    return TokenObjective(loss_mat=loss, clipped=clipped, zero_grad=clipped)


@register_policy_loss(
    "grpo",
    reference="Shao et al. 2024 Eq. 3; Schulman et al. 2017 Eq. 7; dual clip Ye et al. 2020",
    trainer_clip_ratio=True,
)
def grpo(batch: PolicyBatch, clip_low: float = 0.2, clip_high: float = 0.2, clip_c: float | None = None):
    """GRPO/PPO clipped surrogate: per token −min(r·A, clip(r, 1−ε_low, 1+ε_high)·A).

    Defaults ε_low = ε_high = 0.2 (M2PO paper App. B). ``clip_c`` (> 1) enables dual clip
    (Ye et al. 2020, Eq. 5): for A < 0 the loss is further capped at −c·A.
    """
    if clip_low < 0 or clip_high < 0:
        raise ValueError(f"`clip_low`/`clip_high` must be >= 0, got {clip_low}/{clip_high}")
    if clip_c is not None and not clip_c > 1:
        raise ValueError(f"`clip_c` must be > 1 for dual-clip PPO (Ye et al. use 3), got {clip_c}")
    return ppo_clip_objective(batch, batch.ratio, 1 - clip_low, 1 + clip_high, clip_c)


@register_policy_loss("grpo_notr", reference="M2PO paper §4 (ε = ∞)")
def grpo_notr(batch: PolicyBatch):
    """GRPO without a trust region (M2PO paper §4, Fig. 3): per token −r·A, nothing clipped."""
    none = torch.zeros_like(batch.mask)
    return TokenObjective(loss_mat=-batch.advantages * batch.ratio, clipped=none, zero_grad=none)
