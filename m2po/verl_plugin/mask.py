"""Algorithm 1 of the M2PO paper over a mini-batch split across data-parallel ranks.

Paper: Zheng, Zhao, Chen (arXiv 2510.01161) §5.2, Algorithm 1: among the trust-region tokens, drop the
one with the largest M2 = (log r)² until the mean M2 of the rest is <= τ. ``m2po.losses.m2po_mask`` does
that for one process as "sort ascending, keep the longest prefix whose mean is <= τ" (ties: smaller
row-major flat index first). Here the tokens of one optimizer mini-batch live on several ranks.

The exact distributed search. Every trust-region token with M2 <= τ is kept whatever else happens (a
prefix of values <= τ has mean <= τ), so only the *candidates* (M2 > τ) need ordering:

1. each rank computes, locally, the sum and count of its small trust-region tokens and its candidates;
2. one ``all_gather`` of those three numbers and one ``all_gather`` of the candidates' M2 values
   (padded to the largest count) — so every rank holds the same data;
3. every rank runs the same deterministic computation: the small sums are added in rank order, the
   candidates are concatenated in rank order (local flat index ascending within a rank), stably sorted
   by value, and the longest fitting prefix is found exactly as ``m2po_mask`` does;
4. each rank masks its own candidates beyond the prefix.

Tie rule across ranks: equal M2 values are ordered by (rank, local row, column) — the row-major order of
the mini-batch as verl dispatched it (rank r holds the r-th contiguous chunk) — so the result equals
``m2po_mask`` on the concatenation of the ranks' rows. The only difference is the float64 summation
order of the small values, which can change a decision only when the kept prefix's mean is within a few
ulps of τ.

Cost: two small all_gathers per optimizer update. Candidates are the tokens with |log r| > √τ = 0.2:
a few percent of the tokens even at s = 256, i.e. about 16 bytes × (a few % of ~1M tokens) per rank
per mini-batch; the worst case (all tokens candidates) gathers 8 bytes per token. Compare the no-grad
log-prob pass that the ``minibatch`` scope needs anyway (docs/verl.md): one extra forward per update.

This module imports only torch and ``m2po.losses`` (no verl), so it is importable anywhere.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from m2po.loss_names import PAPER_TAU
from m2po.losses import m2po_mask
from m2po.losses.common import prepare_batch, trust_region, validate_tau

__all__ = ["distributed_m2po_mask", "prefix_keep_count"]


def prefix_keep_count(base_sum: float, base_count: int, sorted_vals: torch.Tensor, tau: float) -> int:
    """Length of the longest prefix of ``sorted_vals`` (ascending, all > τ) that Algorithm 1 keeps, given
    the sum and count of the trust-region values <= τ; comparisons in float64 as prefix_sum <= τ·count."""
    if sorted_vals.numel() == 0:
        return 0
    idx = torch.arange(1, sorted_vals.numel() + 1, device=sorted_vals.device)
    counts = (base_count + idx).to(torch.float64)
    fits = base_sum + torch.cumsum(sorted_vals.to(torch.float64), 0) <= tau * counts
    return int((idx * fits).max())


def _group_info(group: dist.ProcessGroup | None) -> tuple[int, int]:
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


@torch.no_grad()
def distributed_m2po_mask(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    tau: float = PAPER_TAU,
    group: dist.ProcessGroup | None = None,
) -> torch.Tensor:
    """Algorithm 1's keep-mask (bool, shape of the inputs) over the union of all ranks' tokens in ``group``.

    Collective: every rank of ``group`` must call it with its own ``[rows, response_len]`` shard (rows may
    differ between ranks). With one process (or no initialised process group) it is exactly
    ``m2po.losses.m2po_mask``. Tensors may live on any device the group's backend accepts (CUDA for NCCL).
    """
    rank, world = _group_info(group)
    if world == 1:
        return m2po_mask(log_prob, old_log_prob, advantages, response_mask, tau=tau)
    tau = validate_tau(tau)
    batch = prepare_batch(log_prob.detach(), old_log_prob, advantages, response_mask)
    tr = trust_region(batch).reshape(-1)
    sq = batch.log_ratio.detach().reshape(-1).to(torch.float64).square()
    dev = sq.device
    small = tr & ~(sq > tau)
    cand_idx = (tr & (sq > tau)).nonzero().squeeze(-1)  # ascending local flat index
    cand_vals = sq[cand_idx]

    # 1-2. gather (small_sum, small_count, n_candidates) of every rank
    stats = torch.stack(
        [
            torch.where(small, sq, 0.0).sum(),
            small.sum().to(torch.float64),
            torch.tensor(float(cand_idx.numel()), dtype=torch.float64, device=dev),
        ]
    )
    all_stats = [torch.empty_like(stats) for _ in range(world)]
    dist.all_gather(all_stats, stats, group=group)
    base_sum = 0.0
    base_count = 0
    cand_counts: list[int] = []
    for s in all_stats:  # rank order: the same float64 additions on every rank
        base_sum += float(s[0])
        base_count += int(s[1])
        cand_counts.append(int(s[2]))
    keep = torch.ones_like(tr)
    if sum(cand_counts) == 0:
        return keep.view_as(batch.mask)
    width = max(cand_counts)
    padded = torch.full((width,), float("inf"), dtype=torch.float64, device=dev)
    padded[: cand_vals.numel()] = cand_vals
    gathered = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded, group=group)
    global_vals = torch.cat([g[:c] for g, c in zip(gathered, cand_counts)])

    # 3. identical deterministic search on every rank (stable sort: ties keep rank-major order)
    sorted_vals, order = torch.sort(global_vals, stable=True)
    n_keep = prefix_keep_count(base_sum, base_count, sorted_vals, tau)

    # 4. this rank's candidates beyond the kept prefix are masked
    offset = sum(cand_counts[:rank])
    removed = order[n_keep:]
    mine = removed[(removed >= offset) & (removed < offset + cand_counts[rank])] - offset
    keep[cand_idx[mine]] = False
    return keep.view_as(batch.mask)
