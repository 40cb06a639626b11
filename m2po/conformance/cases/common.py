"""Helpers shared by the case builders: explicit parameter sets and batch constructors."""

from __future__ import annotations

import math

import torch

from ..batches import from_log_probs, from_log_ratios, random_batch
from ..oracles.algorithm1 import well_separated
from ..oracles.inputs import flat_bools, flat_floats, flat_log_ratio

LN = math.log
F32, F64, BF16 = torch.float32, torch.float64, torch.bfloat16

#: every case states every parameter of its loss (the values the loss's own paper recommends)
PARAMS = {
    "grpo": {"clip_low": 0.2, "clip_high": 0.2, "clip_c": None},
    "grpo_notr": {},
    "m2po": {"tau": 0.04},
    "m2po_released": {"tau": 0.04, "floor_low": None, "floor_high": None},
    "gspo": {"clip_low": 3e-4, "clip_high": 4e-4},
    "cispo": {"clip_low": None, "clip_high": 0.2},
    "topr": {"ratio_level": "sequence"},
    "gppo": {"clip_low": 0.2, "clip_high": 0.28},
    "decoupled_ppo": {"clip_low": 0.2, "clip_high": 0.2, "behav_weight_cap": None},
}


def params(loss: str, **changes) -> dict:
    return {**PARAMS[loss], **changes}


def ratios(rows, dtype=F32, old=-1.0, garbage=False) -> dict[str, torch.Tensor]:
    """Inputs from rows of ``(log r, A)`` tokens (None = padding) with log π_behav = ``old``."""
    lp, olp, adv, mask = from_log_ratios(rows, dtype=dtype, old=old, garbage=garbage)
    return {"log_prob": lp, "old_log_prob": olp, "advantages": adv, "response_mask": mask}


def log_probs(rows, dtype=F32, garbage=False) -> dict[str, torch.Tensor]:
    """Inputs from rows of ``(log π_θ, log π_behav, A)`` tokens (None = padding)."""
    lp, olp, adv, mask = from_log_probs(rows, dtype=dtype, garbage=garbage)
    return {"log_prob": lp, "old_log_prob": olp, "advantages": adv, "response_mask": mask}


def heavy_tailed(seed: int, dtype=F32, B=8, L=16, max_abs_log_ratio=6.0, **kw) -> dict[str, torch.Tensor]:
    """A seeded Cauchy-tailed batch (|log r| <= ``max_abs_log_ratio``), benign padding, empty last row."""
    lp, olp, adv, mask = random_batch(
        seed, B, L, dist="t1", scale=0.3, dtype=dtype, empty_rows=True,
        max_abs_log_ratio=max_abs_log_ratio, garbage=False, **kw,
    )  # fmt: skip
    return {"log_prob": lp, "old_log_prob": olp, "advantages": adv, "response_mask": mask}


def separated_tau(inputs: dict[str, torch.Tensor], tau: float, start: int = 0, stop: int | None = None) -> bool:
    """True when Algorithm 1's decision over rows ``start:stop`` is robust to float32 rounding."""
    t = {k: v[start:stop] for k, v in inputs.items()}
    lr = flat_log_ratio(t["log_prob"], t["old_log_prob"])
    return well_separated(lr, flat_floats(t["advantages"]), flat_bools(t["response_mask"]), tau)


def first_separated_seed(tau: float, dtype=F32, split: list[int] | None = None, start_seed: int = 0) -> int:
    """The first seed whose heavy-tailed batch has a float32-robust Algorithm-1 decision (in every call)."""
    for seed in range(start_seed, start_seed + 200):
        inputs = heavy_tailed(seed, dtype)
        bounds = [(0, None)]
        if split:
            edges = [0]
            for n in split:
                edges.append(edges[-1] + n)
            bounds += list(zip(edges[:-1], edges[1:]))
        if all(separated_tau(inputs, tau, a, b) for a, b in bounds):
            return seed
    raise RuntimeError("no well-separated heavy-tailed batch in 200 seeds")
