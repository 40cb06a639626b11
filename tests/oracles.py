"""Independent, test-only oracles for ``m2po.losses``.

The oracles themselves — the literal greedy loop of Algorithm 1, the literal released search, the
per-token loops of every loss and the aggregation — live in ``m2po.conformance.oracles`` (so that
``m2po conformance export`` can compute its vectors with them) and are re-exported here; the batch
builders live in ``m2po.conformance.batches``. Neither imports ``m2po.losses``: the tests compare the
implementation against these oracles, never against the implementation's own output. This file adds
what only the tests need: ``run_loss``, the metric names and the hypothesis strategies.
"""

from __future__ import annotations

import math

import torch

from m2po.conformance.batches import from_log_probs, from_log_ratios, random_batch  # noqa: F401
from m2po.conformance.oracles import (  # noqa: F401
    RELEASED_EPS_HIGH_UNCONSTRAINED,
    RELEASED_EPS_LOW_UNCONSTRAINED,
    agg_oracle,
    compute_dtype,
    flat_bools,
    flat_floats,
    flat_log_ratio,
    greedy_algorithm1,
    greedy_mask_tensor,
    is_valid_maximal_prefix,
    released_loop,
    trust_region,
    well_separated,
)


def run_loss(fn, log_prob, old_log_prob, advantages, response_mask, **params):
    """Call a loss on a fresh leaf copy of log_prob; return (loss float, grad tensor, metrics, loss)."""
    lp = log_prob.detach().clone().requires_grad_(True)
    loss, metrics = fn(lp, old_log_prob, advantages, response_mask, **params)
    loss.backward()
    return float(loss.detach()), lp.grad.detach(), metrics, loss


DOCUMENTED_METRICS = frozenset(
    {
        "m2",
        "m2_all",
        "m2_after",
        "clipped_frac",
        "masked_frac",
        "frac_pos_gt1",
        "frac_pos_lt1",
        "frac_neg_gt1",
        "frac_neg_lt1",
        "tr_frac",
        "ratio_mean",
        "ratio_min",
        "ratio_max",
        "kl_k1",
        "kl_k3",
        "ess",
        "n_tokens",
    }
)

ALL_LOSSES = ("grpo", "grpo_notr", "m2po", "m2po_released", "gspo", "cispo", "topr", "gppo", "decoupled_ppo")


# --------------------------------------------------------------------------------------------
# hypothesis strategies (parameters of ``random_batch``, and exact dyadic batches with ties)
# --------------------------------------------------------------------------------------------

from hypothesis import strategies as st  # noqa: E402

DISTS = ("normal", "t1", "t2", "t3", "mix")
SCALES = (1e-3, 0.03, 0.1, 0.3, 1.0, 3.0)
ADV_SETS = ((-1.0, 0.0, 1.0), (0.0,), (1.0,), (-1.0,), (-2.5, -0.5, 0.0, 0.5, 2.5), (-1.0, 1.0))
TAUS = (0.0, 1e-4, 0.01, 0.04, 0.16, 1.0, 100.0)
DYADIC_LOG_RATIOS = (0.0, 0.125, -0.125, 0.25, -0.25, 0.375, -0.375, 0.5, -0.5, 1.0, -1.0)


@st.composite
def random_batches(
    draw, dtypes=(torch.float32, torch.float64, torch.bfloat16), max_B=8, max_L=16, scales=SCALES, dists=DISTS
):
    """A heavy-tailed random batch (tensors) drawn through ``random_batch``."""
    kw = dict(
        seed=draw(st.integers(0, 2**31 - 1)),
        B=draw(st.sampled_from(tuple(b for b in (1, 2, 3, 4, 6, 8) if b <= max_B) or (max_B,))),
        L=draw(st.sampled_from(tuple(x for x in (1, 3, 6, 9, 12, 16) if x <= max_L) or (max_L,))),
        dist=draw(st.sampled_from(dists)),
        scale=draw(st.sampled_from(scales)),
        adv_values=draw(st.sampled_from(ADV_SETS)),
        mask_density=draw(st.sampled_from((0.3, 0.8, 1.0))),
        dtype=draw(st.sampled_from(dtypes)),
        empty_rows=draw(st.booleans()),
    )
    return random_batch(**kw)


@st.composite
def dyadic_batches(draw, dtypes=(torch.float32, torch.float64, torch.bfloat16), max_B=5, max_L=10):
    """Exactly representable log-ratios with many ties: every square and sum is exact."""
    B = draw(st.integers(1, max_B))
    L = draw(st.integers(1, max_L))
    n = B * L
    lr = draw(st.lists(st.sampled_from(DYADIC_LOG_RATIOS), min_size=n, max_size=n))
    adv = draw(st.lists(st.sampled_from((-1.0, 0.0, 0.5, 1.0)), min_size=n, max_size=n))
    msk = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    msk[0] = True
    dtype = draw(st.sampled_from(dtypes))
    old = torch.full((B, L), -2.0, dtype=torch.float64)
    new = old + torch.tensor(lr, dtype=torch.float64).reshape(B, L)
    mask = torch.tensor(msk).reshape(B, L)
    new = torch.where(mask, new, torch.full_like(new, float("nan")))
    adv_t = torch.tensor(adv, dtype=torch.float64).reshape(B, L)
    return new.to(dtype), old.to(dtype), adv_t.to(dtype), mask


# tau either absolute, or relative to the batch's own trust-region M2 (so that a good share of the
# examples masks some but not all of the trust region; factor 1.0 hits the threshold exactly)
TAU_SPECS = st.one_of(
    st.sampled_from(TAUS).map(lambda t: ("abs", t)),
    st.sampled_from((0.05, 0.2, 0.5, 0.9, 1.0, 1.5)).map(lambda f: ("rel", f)),
)


def resolve_tau(spec, log_prob, old_log_prob, adv, mask) -> float:
    kind, x = spec
    if kind == "abs":
        return x
    lr = flat_log_ratio(log_prob, old_log_prob)
    tr = trust_region(lr, flat_floats(adv), flat_bools(mask))
    vals = [lr[i] * lr[i] for i in range(len(lr)) if tr[i]]
    if not vals:
        return 0.04
    return x * math.fsum(vals) / len(vals)
