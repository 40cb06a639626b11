"""M2PO as the paper states it: Algorithm 1 (the second-moment trust region) and Eq. 5.

Zheng, Zhao, Chen, "Prosperity before Collapse" (arXiv 2510.01161), §5.2:

* M2 = mean((log r)²) over the trust-region tokens (Eq. 4 restricted as in Algorithm 1);
* Algorithm 1 removes trust-region tokens with the largest (log r)² until the mean over the
  remaining ones is ≤ τ. Because the mean of an ascending sort's prefix never decreases, this
  equals "keep the longest prefix of the ascending sort whose mean is ≤ τ" — one sort and one
  cumulative sum, no loop;
* Eq. 5: J = (1/Σ|o_i|) Σ M·r·A — no ε-clip, no KL, and the denominator counts every response
  token, masked ones included (footnote 2). We minimise −J.

Scope. The mask is not linear in how a batch is split. ``m2po_mask`` over a whole optimizer
mini-batch, passed as ``keep_mask`` to each micro-batch's loss together with
``global_token_count``, gives a result independent of the micro-batch split ("minibatch"
scope). Calling the loss without ``keep_mask`` computes the mask per call ("microbatch" scope,
what the authors' code does per micro-batch and rank).
"""

from __future__ import annotations

import torch

from ..loss_names import PAPER_TAU
from .common import PolicyBatch, TokenObjective, prepare_batch, trust_region, validate_tau
from .registry import register_policy_loss


def _algorithm1_keep(log_ratio: torch.Tensor, tr: torch.Tensor, tau: float) -> torch.Tensor:
    """Keep-mask of Algorithm 1 given the trust-region set ``tr`` (True = keeps its gradient).

    Every trust-region token with (log r)² ≤ τ is in the kept prefix (a prefix of values ≤ τ has
    mean ≤ τ), so only the larger ones are sorted: usually a small fraction of the tokens.
    Ties are broken by flat (row-major) index, smaller first, via a stable sort; comparisons
    run in float64 as prefix_sum ≤ τ·count.
    """
    flat_tr = tr.reshape(-1)
    sq = log_ratio.detach().reshape(-1).to(torch.float64).square()
    keep = torch.ones_like(flat_tr)
    big = sq > tau
    small = flat_tr & ~big
    big_idx = (flat_tr & big).nonzero().squeeze(-1)
    if big_idx.numel() == 0:
        return keep.view_as(tr)
    base_sum = torch.where(small, sq, 0.0).sum()
    base_count = small.sum()
    big_sorted, order = torch.sort(sq[big_idx], stable=True)
    counts = base_count + torch.arange(1, big_sorted.numel() + 1, device=sq.device)
    fits = base_sum + torch.cumsum(big_sorted, 0) <= tau * counts.to(torch.float64)
    # Algorithm 1 stops at the largest prefix whose mean is ≤ τ (it scans down from the top).
    n_keep = int((torch.arange(1, fits.numel() + 1, device=sq.device) * fits).max())
    keep[big_idx[order[n_keep:]]] = False
    return keep.view_as(tr)


def m2po_mask(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    tau: float = PAPER_TAU,
) -> torch.Tensor:
    """Algorithm 1's keep-mask M (bool, same shape as the inputs).

    False exactly on the trust-region tokens that Algorithm 1 removes; True elsewhere,
    padding included. Compute it once per optimizer mini-batch (across data-parallel ranks in
    verl) and pass slices of it as ``keep_mask`` to the ``m2po`` loss of each micro-batch.
    """
    tau = validate_tau(tau)
    with torch.no_grad():
        batch = prepare_batch(log_prob.detach(), old_log_prob, advantages, response_mask)
        return _algorithm1_keep(batch.log_ratio, trust_region(batch), tau)


@register_policy_loss(
    "m2po",
    reference="Zheng et al. 2025, Algorithm 1 and Eq. 5 (arXiv 2510.01161)",
    tau_param="tau",
    batch_mask=m2po_mask,
)
def m2po(batch: PolicyBatch, tau: float = PAPER_TAU, keep_mask: torch.Tensor | None = None):
    """M2PO (paper §5.2, Algorithm 1, Eq. 5): per token −M·r·A, aggregated over all response tokens.

    ``tau`` — the M2 threshold, 0.04 in every run of the paper (Fig. 8 ablates 0–0.16).
    ``keep_mask`` — a precomputed Algorithm-1 mask (``m2po_mask`` over the optimizer
    mini-batch); without it the mask is computed over this call's tokens.
    """
    tau = validate_tau(tau)
    tr = trust_region(batch)
    if keep_mask is None:
        keep = _algorithm1_keep(batch.log_ratio, tr, tau)
    else:
        if not isinstance(keep_mask, torch.Tensor) or keep_mask.shape != batch.mask.shape:
            raise ValueError(
                f"`keep_mask` must be a bool tensor of shape {tuple(batch.mask.shape)} "
                "(a slice of m2po_mask over the mini-batch aligned with this micro-batch)"
            )
        keep = keep_mask.to(device=batch.mask.device, dtype=torch.bool)
    zero = torch.zeros((), dtype=batch.log_ratio.dtype, device=batch.mask.device)
    loss_mat = torch.where(keep, -batch.advantages * batch.ratio, zero)
    removed = tr & ~keep
    return TokenObjective(loss_mat=loss_mat, clipped=removed, zero_grad=removed, extra_metrics={"m2po/tau": tau})
