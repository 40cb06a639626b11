"""M2PO as the paper states it (Algorithm 1 + Eq. 5), against independent oracles.

Oracles: the literal greedy loop of Algorithm 1 (tests/oracles.py), hand-computed values, and
invariants (kept M2 <= tau, gradient = -M*r*A/N, micro-batch additivity with a shared mask).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracles import (
    TAU_SPECS,
    dyadic_batches,
    flat_bools,
    flat_floats,
    flat_log_ratio,
    from_log_ratios,
    greedy_algorithm1,
    greedy_mask_tensor,
    is_valid_maximal_prefix,
    random_batch,
    random_batches,
    resolve_tau,
    run_loss,
    trust_region,
    well_separated,
)

from m2po.losses import get_policy_loss, m2po_mask

M2PO = get_policy_loss("m2po")
PROP = dict(derandomize=True, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def expected_m2po(log_prob, old_log_prob, adv, mask, keep):
    """Eq. 5 by a loop: (1/N) sum over response tokens of -M*r*A (r from the contract's clamp)."""
    lr = flat_log_ratio(log_prob, old_log_prob)
    a = flat_floats(adv)
    m = flat_bools(mask)
    k = flat_bools(keep)
    terms, scale, grads = [], [], []
    n = sum(m)
    for i in range(len(lr)):
        if not m[i]:
            grads.append(0.0)
            continue
        r = math.exp(min(max(lr[i], -20.0), 20.0))
        terms.append(-r * a[i] if k[i] else 0.0)
        scale.append(abs(r * a[i]))
        grads.append(-a[i] * r / n if k[i] else 0.0)
    return math.fsum(terms) / n, math.fsum(scale) / n, torch.tensor(grads, dtype=torch.float64).reshape(adv.shape)


# ---------------------------------------------------------------------------------------------
# hand-computed cases
# ---------------------------------------------------------------------------------------------

# Row 0: (log r, A) = (0.1, +1) TR, (0.5, +1) TR, (-0.4, +1) not TR (A>0, r<1), padding
# Row 1: (-0.2, -1) TR, (-0.3, -1) TR, (0.6, 0) not TR (A=0), padding
# TR M2 values: 0.01, 0.25, 0.04, 0.09 -> sorted 0.01, 0.04, 0.09, 0.25
# prefix means: 0.01, 0.025, 0.14/3 = 0.0467 > 0.04  -> keep {0.1, -0.2}, mask {0.5, -0.3}
HAND_ROWS = [
    [(0.1, 1.0), (0.5, 1.0), (-0.4, 1.0), None],
    [(-0.2, -1.0), (-0.3, -1.0), (0.6, 0.0), None],
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_hand_case_mask_value_gradient(dtype):
    lp, olp, adv, mask = from_log_ratios(HAND_ROWS, dtype=dtype)
    keep = m2po_mask(lp, olp, adv, mask, tau=0.04)
    assert keep.dtype == torch.bool
    assert keep.tolist() == [[True, False, True, True], [True, False, True, True]]

    loss, grad, metrics, _ = run_loss(M2PO, lp, olp, adv, mask, tau=0.04)
    # N = 6 response tokens (footnote 2: masked tokens count in the denominator)
    # loss = (1/6) * ( -e^0.1*1 + 0 + -e^-0.4*1 + -(e^-0.2)(-1) + 0 + -(e^0.6)*0 )
    #      = (-1.105170918 - 0.670320046 + 0.818730753) / 6 = -0.159460035
    if dtype == torch.bfloat16:  # inputs rounded to bf16: recompute with the actual log-ratios
        lr = flat_log_ratio(lp, olp)
        e = lambda i: math.exp(lr[i])  # noqa: E731
        want = (-e(0) - e(2) + e(4)) / 6
    else:
        want = (-math.exp(0.1) - math.exp(-0.4) + math.exp(-0.2)) / 6
        assert want == pytest.approx(-0.159460035, abs=1e-6)
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    assert loss == pytest.approx(want, rel=tol, abs=tol)

    # d loss / d log_prob = -M*A*r/N
    g = grad.to(torch.float64)
    lr = flat_log_ratio(lp, olp)
    gw = [
        [-math.exp(lr[0]) / 6, 0.0, -math.exp(lr[2]) / 6, 0.0],
        [math.exp(lr[4]) / 6, 0.0, 0.0, 0.0],
    ]
    assert torch.allclose(
        g, torch.tensor(gw, dtype=torch.float64), rtol=1e-2 if dtype == torch.bfloat16 else tol, atol=1e-12
    )
    assert g[0, 1] == 0 and g[1, 1] == 0 and g[1, 2] == 0 and g[0, 3] == 0 and g[1, 3] == 0

    # metrics: TR = 4 of 6, masked = 2 of 6 (one A>0,r>1; one A<0,r<1)
    m = metrics
    assert m["n_tokens"] == 6
    assert m["tr_frac"] == pytest.approx(4 / 6)
    assert m["clipped_frac"] == pytest.approx(2 / 6)
    assert m["masked_frac"] == pytest.approx(2 / 6)
    assert m["frac_pos_gt1"] == pytest.approx(1 / 6)
    assert m["frac_neg_lt1"] == pytest.approx(1 / 6)
    assert m["frac_pos_lt1"] == 0 and m["frac_neg_gt1"] == 0
    if dtype != torch.bfloat16:
        rt = 1e-5
        # m2 over TR: (0.01+0.25+0.04+0.09)/4 = 0.0975; after masking: (0.01+0.04)/2 = 0.025
        assert m["m2"] == pytest.approx(0.0975, rel=rt)
        assert m["m2_after"] == pytest.approx(0.025, rel=rt)
        # m2 over all 6: (0.01+0.25+0.16+0.04+0.09+0.36)/6 = 0.91/6
        assert m["m2_all"] == pytest.approx(0.91 / 6, rel=rt)


def test_ties_broken_by_flat_index_within_a_row():
    # (log r)^2 = 1/64, 1/64, 9/64, 9/64 (exact); tau = 0.06
    # prefix means: 1/64, 1/64, (11/64)/3 = 0.0573 <= 0.06, (20/64)/4 = 0.078 > 0.06
    # -> exactly one of the two equal 0.375 tokens is masked: the larger flat index (col 3)
    rows = [[(0.125, 1.0), (0.375, 1.0), (0.125, 1.0), (0.375, 1.0)]]
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        lp, olp, adv, mask = from_log_ratios(rows, dtype=dtype, old=-2.0)
        assert m2po_mask(lp, olp, adv, mask, tau=0.06).tolist() == [[True, True, True, False]]


def test_ties_broken_by_flat_index_across_rows():
    # same values, the tied pair straddles rows; negative side of the trust region in row 0.
    # flat order: (0,0)=-0.375 A<0, (0,1)=0.125, (1,0)=0.375, (1,1)=0.125 -> mask (1,0)
    rows = [[(-0.375, -1.0), (0.125, 1.0)], [(0.375, 0.5), (-0.125, -1.0)]]
    lp, olp, adv, mask = from_log_ratios(rows, old=-2.0)
    assert m2po_mask(lp, olp, adv, mask, tau=0.06).tolist() == [[True, True], [False, True]]
    # with padding in front of the tie the rule is still flat row-major index
    rows = [[(0.375, 1.0), None, None], [(0.125, 1.0), (0.125, 1.0), (0.375, 1.0)]]
    lp, olp, adv, mask = from_log_ratios(rows, old=-2.0)
    assert m2po_mask(lp, olp, adv, mask, tau=0.06).tolist() == [[True, True, True], [True, True, False]]


def test_mean_exactly_tau_is_kept():
    # contract: keep the longest prefix whose mean is <= tau (not < tau)
    # exact values: 0.125^2 = 1/64, 0.375^2 = 9/64, mean = 5/64 = tau
    rows = [[(0.125, 1.0), (-0.375, -1.0)]]
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        lp, olp, adv, mask = from_log_ratios(rows, dtype=dtype, old=-2.0)
        assert m2po_mask(lp, olp, adv, mask, tau=5 / 64).tolist() == [[True, True]]
        assert m2po_mask(lp, olp, adv, mask, tau=5 / 64 - 1e-9).tolist() == [[True, False]]
    lp, olp, adv, mask = from_log_ratios([[(0.25, 1.0)]], old=-2.0)
    assert m2po_mask(lp, olp, adv, mask, tau=0.0625).tolist() == [[True]]


@pytest.mark.parametrize("rel", [1e-7, 1e-9])
def test_value_just_above_tau_is_masked(rel):
    # float64: (log r)^2 = tau * (1 + rel) > tau -> masked; tau * (1 - rel) -> kept
    tau = 0.04
    for factor, kept in ((1 + rel, False), (1 - rel, True)):
        lr = math.sqrt(tau * factor)
        lp, olp, adv, mask = from_log_ratios([[(lr, 1.0), (lr, 1.0)]], dtype=torch.float64)
        assert m2po_mask(lp, olp, adv, mask, tau=tau).tolist() == [[kept, kept]]


def test_no_trust_region_tokens_is_plain_minus_rA():
    # every token has A=0 or the wrong sign: nothing can be masked, loss = mean(-rA)
    rows = [[(0.9, -1.0), (-0.7, 1.0), (2.0, 0.0)], [(3.0, -2.0), None, None]]
    lp, olp, adv, mask = from_log_ratios(rows, dtype=torch.float64)
    keep = m2po_mask(lp, olp, adv, mask, tau=0.04)
    assert bool(keep.all())
    loss, grad, metrics, _ = run_loss(M2PO, lp, olp, adv, mask, tau=0.04)
    # (e^0.9 - e^-0.7 - 0 + 2 e^3) / 4
    want = (math.exp(0.9) - math.exp(-0.7) + 2 * math.exp(3.0)) / 4
    assert loss == pytest.approx(want, rel=1e-12)
    assert metrics["clipped_frac"] == 0 and metrics["masked_frac"] == 0 and metrics["tr_frac"] == 0


def test_all_advantages_zero():
    rows = [[(0.9, 0.0), (-0.7, 0.0)], [(3.0, 0.0), None]]
    lp, olp, adv, mask = from_log_ratios(rows)
    loss, grad, metrics, _ = run_loss(M2PO, lp, olp, adv, mask)
    assert loss == 0.0
    assert bool((grad == 0).all())
    assert metrics["tr_frac"] == 0 and metrics["clipped_frac"] == 0


def test_every_trust_region_token_over_tau():
    # all TR values >= 0.25 > tau = 0.04: the whole trust region is masked; others keep -rA
    rows = [[(0.5, 1.0), (-0.6, -1.0), (0.7, -1.0)], [(1.0, 2.0), None, None]]
    lp, olp, adv, mask = from_log_ratios(rows, dtype=torch.float64)
    assert m2po_mask(lp, olp, adv, mask).tolist() == [[False, False, True], [False, True, True]]
    loss, grad, metrics, _ = run_loss(M2PO, lp, olp, adv, mask)
    # only (0.7, -1) remains: loss = e^0.7 / 4
    assert loss == pytest.approx(math.exp(0.7) / 4, rel=1e-12)
    assert metrics["m2_after"] == 0.0
    assert metrics["masked_frac"] == pytest.approx(3 / 4)


def test_tau_zero_masks_the_whole_trust_region():
    rows = [[(0.01, 1.0), (-0.001, -1.0), (0.2, -1.0)]]
    lp, olp, adv, mask = from_log_ratios(rows, dtype=torch.float64)
    assert m2po_mask(lp, olp, adv, mask, tau=0.0).tolist() == [[False, False, True]]
    loss, _, _, _ = run_loss(M2PO, lp, olp, adv, mask, tau=0.0)
    assert loss == pytest.approx(math.exp(0.2) / 3, rel=1e-12)


@pytest.mark.parametrize(
    "lr,adv,tau,kept",
    [(0.1, 1.0, 0.04, True), (0.3, 1.0, 0.04, False), (-0.3, -1.0, 0.0901, True), (-0.3, -1.0, 0.0899, False)],
)
def test_single_token(lr, adv, tau, kept):
    lp, olp, a, mask = from_log_ratios([[(lr, adv)]], dtype=torch.float64)
    assert m2po_mask(lp, olp, a, mask, tau=tau).tolist() == [[kept]]
    loss, grad, _, _ = run_loss(M2PO, lp, olp, a, mask, tau=tau)
    assert loss == pytest.approx(-math.exp(lr) * adv if kept else 0.0, rel=1e-12, abs=0)
    assert float(grad[0, 0]) == pytest.approx(-adv * math.exp(lr) if kept else 0.0, rel=1e-12)


def test_all_masked_row_in_a_batch():
    rows = [[None, None, None], [(0.1, 1.0), (0.5, 1.0), (0.2, -1.0)], [None, None, None]]
    lp, olp, adv, mask = from_log_ratios(rows, dtype=torch.float64)
    # TR: 0.01, 0.25 -> mean 0.13 > 0.04 -> mask 0.5
    assert m2po_mask(lp, olp, adv, mask).tolist() == [[True] * 3, [True, False, True], [True] * 3]
    loss, grad, _, _ = run_loss(M2PO, lp, olp, adv, mask)
    assert loss == pytest.approx((-math.exp(0.1) + math.exp(0.2)) / 3, rel=1e-12)
    assert bool(torch.isfinite(grad).all())
    assert bool((grad[0] == 0).all()) and bool((grad[2] == 0).all())


def test_keep_mask_overrides_the_internal_mask():
    lp, olp, adv, mask = from_log_ratios(HAND_ROWS, dtype=torch.float64)
    all_true = torch.ones_like(mask)
    loss, grad, _, _ = run_loss(M2PO, lp, olp, adv, mask, keep_mask=all_true)
    lr = flat_log_ratio(lp, olp)
    a = flat_floats(adv)
    m = flat_bools(mask)
    want = math.fsum(-math.exp(lr[i]) * a[i] for i in range(len(m)) if m[i]) / 6
    assert loss == pytest.approx(want, rel=1e-12)


def test_huge_ratio_is_clamped_for_r_but_not_for_m2():
    # log r = 25 with A = -1 is outside the trust region; r = exp(clamp(25, -20, 20)) = e^20
    rows = [[(25.0, -1.0), (0.1, 1.0)]]
    lp, olp, adv, mask = from_log_ratios(rows, dtype=torch.float64)
    loss, grad, metrics, _ = run_loss(M2PO, lp, olp, adv, mask)
    assert loss == pytest.approx((math.exp(20.0) - math.exp(0.1)) / 2, rel=1e-12)
    assert bool(torch.isfinite(grad).all())
    # M2 over all response tokens uses the unclamped log r: (625 + 0.01)/2
    assert metrics["m2_all"] == pytest.approx((625 + 0.01) / 2, rel=1e-9)


def test_negative_tau_rejected():
    lp, olp, adv, mask = from_log_ratios(HAND_ROWS)
    with pytest.raises(ValueError, match="tau"):
        m2po_mask(lp, olp, adv, mask, tau=-0.01)
    with pytest.raises(ValueError, match="tau"):
        M2PO(lp.requires_grad_(), olp, adv, mask, tau=-1e-9)


# ---------------------------------------------------------------------------------------------
# property tests against the greedy oracle
# ---------------------------------------------------------------------------------------------


def _check_mask_against_greedy(lp, olp, adv, mask, tau):
    keep = m2po_mask(lp, olp, adv, mask, tau=tau)
    assert keep.shape == mask.shape and keep.dtype == torch.bool
    lr = flat_log_ratio(lp, olp)
    a = flat_floats(adv)
    m = flat_bools(mask)
    k = flat_bools(keep)
    problem = is_valid_maximal_prefix(lr, a, m, k, tau)
    assert problem is None, problem
    if well_separated(lr, a, m, tau):
        assert k == greedy_algorithm1(lr, a, m, tau)
    # padding is always kept
    assert all(k[i] for i in range(len(m)) if not m[i])
    return keep


@settings(max_examples=700, **PROP)
@given(batch=random_batches(), tau_spec=TAU_SPECS)
def test_mask_matches_algorithm1_random(batch, tau_spec):
    _check_mask_against_greedy(*batch, resolve_tau(tau_spec, *batch))


@settings(max_examples=500, **PROP)
@given(batch=dyadic_batches(), tau=st.sampled_from((0.0, 0.01, 0.015625, 0.04, 0.0625, 0.1, 0.140625, 0.25, 1.0)))
def test_mask_equals_algorithm1_exactly_with_ties(batch, tau):
    # all squares and sums are exact: the greedy loop and the prefix rule must agree bit for bit
    lp, olp, adv, mask = batch
    keep = m2po_mask(lp, olp, adv, mask, tau=tau)
    assert torch.equal(keep, greedy_mask_tensor(lp, olp, adv, mask, tau))


@settings(max_examples=400, **PROP)
@given(batch=random_batches(), tau_spec=TAU_SPECS)
def test_loss_gradient_and_metrics_random(batch, tau_spec):
    lp, olp, adv, mask = batch
    tau = resolve_tau(tau_spec, *batch)
    keep = _check_mask_against_greedy(lp, olp, adv, mask, tau)
    loss, grad, metrics, loss_t = run_loss(M2PO, lp, olp, adv, mask, tau=tau)
    assert loss_t.dim() == 0
    assert math.isfinite(loss)
    want, scale, gwant = expected_m2po(lp, olp, adv, mask, keep)
    assert abs(loss - want) <= 2e-6 * scale + 1e-12
    # gradient: exactly 0 on masked tokens and padding, -A r / N elsewhere
    g = grad.to(torch.float64)
    assert bool(torch.isfinite(g).all())
    assert bool((g[~keep] == 0).all())
    assert bool((g[~mask] == 0).all())
    rtol = 2e-2 if lp.dtype == torch.bfloat16 else 1e-5
    assert torch.allclose(g, gwant, rtol=rtol, atol=1e-30)
    # metrics invariants
    lr = flat_log_ratio(lp, olp)
    a = flat_floats(adv)
    m = flat_bools(mask)
    tr = trust_region(lr, a, m)
    n = sum(m)
    n_masked = sum(1 for i in range(len(m)) if tr[i] and not bool(keep.reshape(-1)[i]))
    assert metrics["n_tokens"] == n
    assert metrics["clipped_frac"] == pytest.approx(n_masked / n, abs=1e-6)
    assert metrics["masked_frac"] == pytest.approx(n_masked / n, abs=1e-6)
    assert metrics["tr_frac"] == pytest.approx(sum(tr) / n, abs=1e-6)
    assert metrics["m2_after"] <= tau * (1 + 1e-6) + 1e-30
    quads = sum(metrics[k] for k in ("frac_pos_gt1", "frac_pos_lt1", "frac_neg_gt1", "frac_neg_lt1"))
    assert quads == pytest.approx(metrics["clipped_frac"], abs=1e-6)
    # m2po never masks A>0,r<1 or A<0,r>1 tokens (they are outside the trust region)
    assert metrics["frac_pos_lt1"] == 0 and metrics["frac_neg_gt1"] == 0


# ---------------------------------------------------------------------------------------------
# scope: one mask per optimizer mini-batch, split into micro-batches
# ---------------------------------------------------------------------------------------------


@settings(max_examples=150, **PROP)
@given(
    seed=st.integers(0, 2**31 - 1),
    B=st.integers(2, 8),
    L=st.integers(1, 10),
    scale=st.sampled_from((0.03, 0.1, 0.3, 1.0)),
    dtype=st.sampled_from((torch.float32, torch.float64)),
    tau=st.sampled_from((0.0, 0.01, 0.04, 0.16)),
    split_seed=st.integers(0, 1000),
)
def test_minibatch_mask_makes_micro_batches_additive(seed, B, L, scale, dtype, tau, split_seed):
    lp, olp, adv, mask = random_batch(seed, B, L, scale=scale, dtype=dtype, empty_rows=True)
    n_total = int(mask.sum())
    keep = m2po_mask(lp, olp, adv, mask, tau=tau)

    full_lp = lp.detach().clone().requires_grad_(True)
    full_loss, _ = M2PO(full_lp, olp, adv, mask, tau=tau)
    full_loss.backward()

    # random partition of the rows into micro-batches
    g = torch.Generator().manual_seed(split_seed)
    perm = torch.randperm(B, generator=g)
    n_micro = int(torch.randint(1, B + 1, (1,), generator=g))
    parts = [p for p in torch.tensor_split(perm, n_micro) if len(p) > 0]

    acc_lp = lp.detach().clone().requires_grad_(True)
    total = 0.0
    for idx in parts:
        idx = idx.sort().values
        if int(mask[idx].sum()) == 0:  # a micro-batch of empty rows carries no tokens
            continue
        loss, _ = M2PO(
            acc_lp[idx], olp[idx], adv[idx], mask[idx], tau=tau, keep_mask=keep[idx], global_token_count=n_total
        )
        loss.backward()
        total += float(loss.detach())
    scale_ = float((torch.exp(flat_tensor(lp, olp, mask)) * adv.to(torch.float64).nan_to_num().abs()).sum()) / n_total
    assert abs(total - float(full_loss.detach())) <= 1e-6 * max(scale_, 1e-12) + 1e-12
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    assert torch.allclose(acc_lp.grad.to(torch.float64), full_lp.grad.to(torch.float64), rtol=tol, atol=1e-12)


def flat_tensor(lp, olp, mask):
    lr = (lp.to(torch.float64) - olp.to(torch.float64)).clamp(-20, 20)
    return torch.where(mask, lr, torch.full_like(lr, -float("inf")))


def test_per_call_scope_differs_from_minibatch_scope():
    # Row 0: three TR tokens with (log r)^2 = 0.01; row 1: one TR token with (log r)^2 = 0.0625.
    # Whole mini-batch: mean = (0.03 + 0.0625)/4 = 0.023 <= 0.04 -> nothing masked.
    # Row 1 alone (a micro-batch): mean 0.0625 > 0.04 -> its token is masked.
    rows = [[(0.1, 1.0), (0.1, 1.0), (0.1, 1.0)], [(0.25, 1.0), None, None]]
    lp, olp, adv, mask = from_log_ratios(rows, dtype=torch.float64)
    keep = m2po_mask(lp, olp, adv, mask)
    assert bool(keep.all())
    full, _ = M2PO(lp, olp, adv, mask)
    # mini-batch scope: shared mask, global count -> additive
    s = sum(
        float(
            M2PO(
                lp[i : i + 1],
                olp[i : i + 1],
                adv[i : i + 1],
                mask[i : i + 1],
                keep_mask=keep[i : i + 1],
                global_token_count=4,
            )[0]
        )
        for i in range(2)
    )
    assert s == pytest.approx(float(full), rel=1e-12)
    # per-call scope: row 1 loses its gradient-carrying term
    p = sum(
        float(M2PO(lp[i : i + 1], olp[i : i + 1], adv[i : i + 1], mask[i : i + 1], global_token_count=4)[0])
        for i in range(2)
    )
    # full = -(3 e^0.1 + e^0.25)/4 ; per-call = -(3 e^0.1)/4
    assert float(full) == pytest.approx(-(3 * math.exp(0.1) + math.exp(0.25)) / 4, rel=1e-12)
    assert p == pytest.approx(-(3 * math.exp(0.1)) / 4, rel=1e-12)
    assert p != pytest.approx(float(full), rel=1e-3)
