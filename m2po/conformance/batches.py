"""Batch builders shared by the conformance cases and the test-suite: hand-written rows and seeded
heavy-tailed random batches, as ``(log_prob, old_log_prob, advantages, response_mask)`` tensors.

Padding carries NaN (``garbage=True``, the default of the tests: a loss must ignore padding whatever it
holds) or benign values (log π_θ = log π_behav = 0, A = 0), which the vectors use except in the cases
about padding, so that a framework that multiplies by the mask instead of selecting is not failed on
every case for that alone.
"""

from __future__ import annotations

import torch


def _tensors(lp, olp, adv, msk, dtype):
    f = lambda x: torch.tensor(x, dtype=torch.float64).to(dtype)  # noqa: E731
    return f(lp), f(olp), f(adv), torch.tensor(msk, dtype=torch.bool)


def from_log_ratios(rows, *, dtype=torch.float32, old=0.0, garbage=True):
    """rows: list of rows of tokens ``(log_ratio, adv)`` or ``None`` (padding); rows are right-padded.

    ``old`` is log π_behav of every token (a float, or one list per row)."""
    L = max(len(r) for r in rows)
    pad = float("nan") if garbage else 0.0
    lp, olp, adv, msk = [], [], [], []
    for k, row in enumerate(rows):
        row = list(row) + [None] * (L - len(row))
        base = old[k] if isinstance(old, list | tuple) else [old] * L
        lp.append([pad if t is None else base[j] + t[0] for j, t in enumerate(row)])
        olp.append([pad if t is None else base[j] for j, t in enumerate(row)])
        adv.append([pad if t is None else t[1] for t in row])
        msk.append([t is not None for t in row])
    return _tensors(lp, olp, adv, msk, dtype)


def from_log_probs(rows, *, dtype=torch.float32, garbage=True):
    """rows: list of rows of tokens ``(log_prob, old_log_prob, adv)`` or ``None`` (padding)."""
    L = max(len(r) for r in rows)
    pad = float("nan") if garbage else 0.0
    lp, olp, adv, msk = [], [], [], []
    for row in rows:
        row = list(row) + [None] * (L - len(row))
        lp.append([pad if t is None else t[0] for t in row])
        olp.append([pad if t is None else t[1] for t in row])
        adv.append([pad if t is None else t[2] for t in row])
        msk.append([t is not None for t in row])
    return _tensors(lp, olp, adv, msk, dtype)


def random_batch(
    seed: int,
    B: int,
    L: int,
    *,
    dist: str = "t2",
    scale: float = 0.2,
    adv_values=(-1.0, 0.0, 1.0),
    mask_density: float = 0.8,
    dtype=torch.float32,
    empty_rows: bool = False,
    max_abs_log_ratio: float = 15.0,
    garbage: bool = True,
):
    """Heavy-tailed random batch. dist: 'normal', 't1' (Cauchy), 't2', 't3', 'mix'."""
    g = torch.Generator().manual_seed(seed)
    if dist == "normal":
        z = torch.randn(B, L, generator=g, dtype=torch.float64)
    elif dist.startswith("t"):
        df = float(dist[1:])
        nrm = torch.randn(B, L, generator=g, dtype=torch.float64)
        chi2 = torch.zeros(B, L, dtype=torch.float64)
        for _ in range(int(df)):
            chi2 += torch.randn(B, L, generator=g, dtype=torch.float64) ** 2
        z = nrm / torch.sqrt(chi2 / df)
    elif dist == "mix":
        z = torch.randn(B, L, generator=g, dtype=torch.float64) * 0.1
        spikes = torch.rand(B, L, generator=g, dtype=torch.float64) < 0.1
        z = torch.where(spikes, z * 30, z)
    else:
        raise ValueError(dist)
    lr = (z * scale).clamp(-max_abs_log_ratio, max_abs_log_ratio)
    old = -torch.rand(B, L, generator=g, dtype=torch.float64) * 4 - 0.05
    new = old + lr
    # GRPO-style: one advantage per row, plus a few per-token perturbations
    av = torch.tensor(list(adv_values), dtype=torch.float64)
    idx = torch.randint(0, len(adv_values), (B, 1), generator=g)
    adv = av[idx].expand(B, L).clone()
    tok = torch.rand(B, L, generator=g) < 0.1
    idx2 = torch.randint(0, len(adv_values), (B, L), generator=g)
    adv = torch.where(tok, av[idx2], adv)
    mask = torch.rand(B, L, generator=g) < mask_density
    mask[0, 0] = True  # never an entirely empty batch
    if empty_rows and B > 1:
        mask[B - 1] = False
    pad = ~mask
    if garbage:  # the loss must ignore padding entirely
        new = torch.where(pad, torch.full_like(new, float("nan")), new)
        old = torch.where(pad & (torch.rand(B, L, generator=g) < 0.5), torch.full_like(old, -float("inf")), old)
        adv = torch.where(pad & (torch.rand(B, L, generator=g) < 0.3), torch.full_like(adv, float("nan")), adv)
    else:
        new = torch.where(pad, torch.zeros_like(new), new)
        old = torch.where(pad, torch.zeros_like(old), old)
        adv = torch.where(pad, torch.zeros_like(adv), adv)
    return new.to(dtype), old.to(dtype), adv.to(dtype), mask
