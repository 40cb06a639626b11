"""M2PO as released by the authors (paper §3), against a literal per-token loop.

Oracles: ``released_loop`` (tests/oracles.py, written from the description of the released search,
not from its code), hand-computed values, and the paper's claim that the released rule never masks
fewer trust-region tokens than Algorithm 1.
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
    random_batch,
    random_batches,
    released_loop,
    resolve_tau,
    run_loss,
    trust_region,
)

from m2po.losses import get_policy_loss

REL = get_policy_loss("m2po_released")
M2PO = get_policy_loss("m2po")
PROP = dict(derandomize=True, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

HAND_ROWS = [
    [(0.1, 1.0), (0.5, 1.0), (-0.4, 1.0), None],
    [(-0.2, -1.0), (-0.3, -1.0), (0.6, 0.0), None],
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hand_case(dtype):
    # TR tokens (A>0,r>1 or A<0,r<1): 0.1, 0.5, -0.2, -0.3 -> v = 0.01, 0.25, 0.04, 0.09; n = 4
    # M2 = 0.39/4 = 0.0975 > 0.04 -> constrained; S = 0.04*4 = 0.16
    # sorted v = .01 .04 .09 .25, csum = .01 .05 .14 .39
    # k=0: .01*3 + .01 = .04 < .16 ; k=1: .04*2 + .05 = .13 < .16 ; k=2: .09*1 + .14 = .23 >= .16 stop
    # t = sqrt(.04) = 0.2 -> bounds [e^-0.2, e^0.2] = [0.818731, 1.221403]
    # ( 0.1,+1): r=1.105171 inside                -> -1.105171
    # ( 0.5,+1): r=1.648721 > 1.221403, clipped    -> -1.221403
    # (-0.4,+1): r=0.670320 < lower, max picks -rA -> -0.670320 (not clipped)
    # (-0.2,-1): r=e^-0.2 = the bound itself       -> +0.818731
    # (-0.3,-1): r=0.740818 < lower, clipped       -> +0.818731
    # ( 0.6, 0):                                   ->  0
    # loss = (-1.105171 - 1.221403 - 0.670320 + 2*0.818731) / 6 = -0.226572
    lp, olp, adv, mask = from_log_ratios(HAND_ROWS, dtype=dtype)
    loss, grad, metrics, _ = run_loss(REL, lp, olp, adv, mask, tau=0.04)
    want = (-math.exp(0.1) - math.exp(0.2) - math.exp(-0.4) + 2 * math.exp(-0.2)) / 6
    assert want == pytest.approx(-0.226572036, abs=1e-9)
    assert loss == pytest.approx(want, rel=1e-6)
    # gradients: clipped tokens 0; unclipped -A r / N (the boundary token (-0.2) is not checked)
    assert float(grad[0, 1]) == 0.0 and float(grad[1, 1]) == 0.0
    assert float(grad[0, 0]) == pytest.approx(-math.exp(0.1) / 6, rel=1e-6)
    assert float(grad[0, 2]) == pytest.approx(-math.exp(-0.4) / 6, rel=1e-6)
    assert float(grad[1, 2]) == 0.0 and float(grad[0, 3]) == 0.0 and float(grad[1, 3]) == 0.0
    # same as the loop
    lw, t, clipped = released_loop(lp, olp, adv, mask, 0.04)
    assert t == pytest.approx(0.2, rel=1e-6)
    assert loss == pytest.approx(lw, rel=1e-6)
    assert metrics["frac_pos_gt1"] >= 1 / 6 - 1e-7 and metrics["frac_neg_lt1"] >= 1 / 6 - 1e-7
    assert metrics["clipped_frac"] == pytest.approx(int(clipped.sum()) / 6, abs=1e-6)


def test_hand_case_with_floors():
    # same batch, floors eps_low >= 0.3, eps_high >= 0.5 -> bounds [0.7, 1.5]
    # ( 0.1,+1): -1.105171 ; ( 0.5,+1): r=1.648721 -> clipped -1.5 ; (-0.4,+1): -0.670320
    # (-0.2,-1): +0.818731 ; (-0.3,-1): r=0.740818 in [0.7,1.5] -> +0.740818 ; (0.6,0): 0
    # loss = (-1.105171 - 1.5 - 0.670320 + 0.818731 + 0.740818)/6 = -0.285990
    lp, olp, adv, mask = from_log_ratios(HAND_ROWS, dtype=torch.float64)
    loss, grad, _, _ = run_loss(REL, lp, olp, adv, mask, tau=0.04, floor_low=0.3, floor_high=0.5)
    want = (-math.exp(0.1) - 1.5 - math.exp(-0.4) + math.exp(-0.2) + math.exp(-0.3)) / 6
    assert want == pytest.approx(-0.285990332, abs=1e-8)
    assert loss == pytest.approx(want, rel=1e-6)
    assert float(grad[0, 1]) == 0.0
    assert float(grad[1, 1]) == pytest.approx(math.exp(-0.3) / 6, rel=1e-9)


def test_released_masks_more_than_algorithm1():
    # one row, A = +1, log r = 0.1, 0.1, 0.1, 0.3, 0.4 -> v = .01 .01 .01 .09 .16, tau = 0.04
    # Algorithm 1: prefix means .01 .01 .01 (.12/4 = .03) (.28/5 = .056) -> masks only 0.4
    # released: S = 0.2; k=0: .01*4+.01=.05; k=1: .01*3+.02=.05; k=2: .01*2+.03=.05;
    #           k=3: .09*1+.12=.21 >= .2 stop -> t = sqrt(.01) = 0.1 -> masks 0.3 AND 0.4
    rows = [[(0.1, 1.0), (0.1, 1.0), (0.1, 1.0), (0.3, 1.0), (0.4, 1.0)]]
    lp, olp, adv, mask = from_log_ratios(rows, dtype=torch.float64)
    loss_r, grad_r, m_r, _ = run_loss(REL, lp, olp, adv, mask, tau=0.04)
    loss_m, grad_m, m_m, _ = run_loss(M2PO, lp, olp, adv, mask, tau=0.04)
    # released: -(3 e^0.1 + 2 e^0.1)/5 = -e^0.1 ; Algorithm 1: -(3 e^0.1 + e^0.3)/5
    assert loss_r == pytest.approx(-math.exp(0.1), rel=1e-6)
    assert loss_m == pytest.approx(-(3 * math.exp(0.1) + math.exp(0.3)) / 5, rel=1e-12)
    assert float(grad_r[0, 3]) == 0 and float(grad_r[0, 4]) == 0
    assert float(grad_m[0, 3]) != 0 and float(grad_m[0, 4]) == 0
    assert m_r["masked_frac"] >= 2 / 5 - 1e-7
    assert m_m["masked_frac"] == pytest.approx(1 / 5)


def test_unconstrained_when_m2_within_tau():
    # v = .01, .0225 -> M2 = .01625 <= .04 -> no clip at all
    rows = [[(0.1, 1.0), (-0.15, -1.0)]]
    lp, olp, adv, mask = from_log_ratios(rows, dtype=torch.float64)
    loss, grad, metrics, _ = run_loss(REL, lp, olp, adv, mask, tau=0.04)
    assert loss == pytest.approx((-math.exp(0.1) + math.exp(-0.15)) / 2, rel=1e-12)
    assert metrics["clipped_frac"] == 0.0


def test_unconstrained_bounds_are_0_and_1e5():
    # single TR token log r = 12 (r = 162754.79), A = +1, tau = 200 >= M2 = 144 -> unconstrained,
    # but the released "no constraint" is the clamp [1 - 1.0, 1 + 99999.0] = [0, 100000]:
    # loss = -min(r, 100000) = -100000, clipped
    lp, olp, adv, mask = from_log_ratios([[(12.0, 1.0)]], dtype=torch.float64)
    loss, grad, metrics, _ = run_loss(REL, lp, olp, adv, mask, tau=200.0)
    assert loss == pytest.approx(-100000.0, rel=1e-9)
    assert float(grad[0, 0]) == 0.0
    assert metrics["clipped_frac"] == 1.0
    # no trust-region tokens at all (A<0, r>1): unconstrained, max picks -rA
    lp, olp, adv, mask = from_log_ratios([[(12.0, -1.0)]], dtype=torch.float64)
    loss, grad, metrics, _ = run_loss(REL, lp, olp, adv, mask, tau=0.04)
    assert loss == pytest.approx(math.exp(12.0), rel=1e-9)
    assert metrics["clipped_frac"] == 0.0


def test_tau_zero_does_not_crash_and_clips_to_one():
    # tau = 0: t = 0, bounds [1, 1] -> every TR token contributes -A*1 with zero gradient
    # (0.1,+1): -1 ; (-0.2,-1): +1 ; (0.3,-1) not TR: -(-1)e^0.3 = e^0.3 -> loss = e^0.3 / 3
    rows = [[(0.1, 1.0), (-0.2, -1.0), (0.3, -1.0)]]
    lp, olp, adv, mask = from_log_ratios(rows, dtype=torch.float64)
    loss, grad, metrics, _ = run_loss(REL, lp, olp, adv, mask, tau=0.0)
    assert loss == pytest.approx(math.exp(0.3) / 3, rel=1e-6)
    assert float(grad[0, 0]) == 0 and float(grad[0, 1]) == 0
    assert float(grad[0, 2]) == pytest.approx(math.exp(0.3) / 3, rel=1e-9)
    lw, t, _ = released_loop(lp, olp, adv, mask, 0.0)
    assert t == 0.0 and loss == pytest.approx(lw, rel=1e-9)


def test_m2_equal_to_tau_is_unconstrained():
    # v = 0.25^2 = 0.0625 exactly; tau = 0.0625: M2 <= tau + 1e-12 -> no constraint: loss = -e^0.25
    # (a constrained search would give t = 0 here and clip the token to -1)
    for dtype in (torch.float32, torch.float64):
        lp, olp, adv, mask = from_log_ratios([[(0.25, 1.0)]], dtype=dtype, old=-2.0)
        loss, grad, m, _ = run_loss(REL, lp, olp, adv, mask, tau=0.0625)
        assert loss == pytest.approx(-math.exp(0.25), rel=1e-6)
        assert m["clipped_frac"] == 0.0
        # just below: constrained, t = 0, clipped to r = 1
        loss, grad, m, _ = run_loss(REL, lp, olp, adv, mask, tau=0.0625 - 1e-9)
        assert loss == pytest.approx(-1.0, rel=1e-6)
        assert float(grad[0, 0]) == 0.0


def test_trust_region_uses_ratio_with_tolerance():
    # float32: log r = 3e-8 gives r = exp(3e-8) == 1.0 exactly, so these tokens are NOT in the
    # released trust region (r > 1 + 1e-12 fails). TR = {0.3} only: n = 1, v = 0.09 > 0.04,
    # S = 0.04 -> k = 0 -> t = 0 -> bounds [1, 1]: the 0.3 token is clipped to -1; the three
    # r = 1 tokens give -1 each. loss = -1.
    # (Counting them in the trust region would give M2 = 0.09/4 <= 0.04 -> unconstrained.)
    rows = [[(3e-8, 1.0), (3e-8, 1.0), (3e-8, 1.0), (0.3, 1.0)]]
    lp, olp, adv, mask = from_log_ratios(rows, dtype=torch.float32)
    assert float(torch.exp(lp[0, 0] - olp[0, 0])) == 1.0
    loss, grad, m, _ = run_loss(REL, lp, olp, adv, mask, tau=0.04)
    assert loss == pytest.approx(-1.0, rel=1e-6)
    assert float(grad[0, 3]) == 0.0
    _compare_with_loop(lp, olp, adv, mask, 0.04, None, None)


def test_cap_below_1e12_gives_t_zero():
    # float32, A = +1: three tokens with log r = 5e-7 (v = 2.5e-13 < 1e-12) and one with 0.1.
    # tau = 1e-10: S = 4e-10; k = 0, 1, 2 do not reach S; k = 3 does -> cap = 2.5e-13,
    # t = sqrt(max(2.5e-13 - 1e-12, 0)) = 0 -> bounds [1, 1]: the 5e-7 tokens (r = 1.0000005 > 1)
    # are clipped as well. (t = sqrt(cap) = 5e-7 would leave them unclipped.)
    rows = [[(5e-7, 1.0), (5e-7, 1.0), (5e-7, 1.0), (0.1, 1.0)]]
    lp, olp, adv, mask = from_log_ratios(rows, dtype=torch.float32)
    lw, t, clipped = released_loop(lp, olp, adv, mask, 1e-10)
    assert t == 0.0 and bool(clipped.all())
    loss, grad, _, _ = run_loss(REL, lp, olp, adv, mask, tau=1e-10)
    assert loss == pytest.approx(-1.0, rel=1e-6)
    assert bool((grad == 0).all())
    _compare_with_loop(lp, olp, adv, mask, 1e-10, None, None)


def test_negative_tau_rejected():
    lp, olp, adv, mask = from_log_ratios(HAND_ROWS)
    with pytest.raises(ValueError, match="tau"):
        REL(lp.requires_grad_(), olp, adv, mask, tau=-0.5)


# ---------------------------------------------------------------------------------------------
# value for value against the loop
# ---------------------------------------------------------------------------------------------


def _compare_with_loop(lp, olp, adv, mask, tau, floor_low, floor_high):
    params = dict(tau=tau)
    if floor_low is not None:
        params["floor_low"] = floor_low
    if floor_high is not None:
        params["floor_high"] = floor_high
    loss, grad, metrics, _ = run_loss(REL, lp, olp, adv, mask, **params)
    lw, t, clipped = released_loop(lp, olp, adv, mask, tau, floor_low, floor_high)
    # scale of the token terms, for an absolute tolerance that survives cancellation
    lr = flat_log_ratio(lp, olp)
    a = flat_floats(adv)
    m = flat_bools(mask)
    n = sum(m)
    scale = math.fsum(abs(a[i]) * math.exp(min(lr[i], 20.0)) for i in range(len(m)) if m[i]) / n
    assert abs(loss - lw) <= 1e-6 * abs(lw) + 1e-6 * scale + 1e-12, (loss, lw, t)
    # clipped tokens = zero gradient among response tokens with A != 0 (r > 0 always)
    zero = (grad == 0) & mask & (adv.to(torch.float64).nan_to_num() != 0)
    assert torch.equal(zero, clipped), (t, zero, clipped)
    assert metrics["clipped_frac"] == pytest.approx(int(clipped.sum()) / n, abs=1e-6)
    return clipped


FLOORS = st.sampled_from(((None, None), (0.3, 0.5), (0.3, None), (None, 0.5), (0.05, 0.01)))


@settings(max_examples=300, **PROP)
@given(
    batch=random_batches(),
    tau_spec=TAU_SPECS,
    floors=FLOORS,
)
def test_matches_released_loop_random(batch, tau_spec, floors):
    _compare_with_loop(*batch, resolve_tau(tau_spec, *batch), *floors)


@settings(max_examples=200, **PROP)
@given(batch=dyadic_batches(), tau=st.sampled_from((0.0, 0.01, 0.015625, 0.04, 0.0625, 0.1, 0.25, 1.0)), floors=FLOORS)
def test_matches_released_loop_ties(batch, tau, floors):
    _compare_with_loop(*batch, tau, *floors)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(6))
def test_matches_released_loop_larger_batches(dtype, seed):
    # realistic sizes: 16 responses x 64 tokens, one advantage per response
    lp, olp, adv, mask = random_batch(
        seed, 16, 64, dist="t2", scale=0.1, adv_values=(-1.2, -0.3, 0.0, 0.4, 1.5), mask_density=0.9, dtype=dtype
    )
    for tau in (0.01, 0.04):
        _compare_with_loop(lp, olp, adv, mask, tau, None, None)


# ---------------------------------------------------------------------------------------------
# paper §3: the released rule never masks fewer trust-region tokens than Algorithm 1
# ---------------------------------------------------------------------------------------------


@settings(max_examples=300, **PROP)
@given(
    seed=st.integers(0, 2**31 - 1),
    B=st.integers(1, 6),
    L=st.integers(1, 12),
    dist=st.sampled_from(("normal", "t1", "t2", "t3", "mix")),
    scale=st.sampled_from((0.03, 0.1, 0.3, 1.0)),
    tau=st.sampled_from((1e-3, 0.01, 0.04, 0.16, 1.0)),
)
def test_released_never_masks_fewer_than_algorithm1(seed, B, L, dist, scale, tau):
    lp, olp, adv, mask = random_batch(
        seed, B, L, dist=dist, scale=scale, adv_values=(-1.0, -0.5, 0.0, 0.5, 1.0), dtype=torch.float64
    )
    lr = flat_log_ratio(lp, olp)
    a = flat_floats(adv)
    m = flat_bools(mask)
    # both rules must see the same trust region: keep |log r| away from the 1e-12 tolerance
    tr = trust_region(lr, a, m)
    if any(tr[i] and abs(lr[i]) < 1e-6 for i in range(len(m))):
        return
    keep = greedy_algorithm1(lr, a, m, tau)
    _, grad, _, _ = run_loss(REL, lp, olp, adv, mask, tau=tau)
    g = flat_floats(grad)
    alg1_masked = {i for i in range(len(m)) if tr[i] and not keep[i]}
    released_zero = {i for i in range(len(m)) if tr[i] and g[i] == 0.0}
    assert alg1_masked <= released_zero


def test_float32_sum_and_cumsum_disagree_near_tau():
    # In float32, sum(v) (checked against tau) and the last cumulative sum (used by the search) are
    # summed in different orders. When M2 exceeds tau by less than that rounding gap, no k satisfies
    # the stop condition: the literal loop then ends with k = n-1 (t = sqrt(v_(n-2))), clipping only
    # the largest token. Clipping *every* trust-region token (t = 0) would be a different result.
    g = torch.Generator().manual_seed(0)
    for _ in range(3000):
        n = int(torch.randint(9, 64, (1,), generator=g))
        lr = (torch.rand(n, generator=g) * 0.5 + 0.05).float()
        v = lr * lr
        s_sum = float(v.sum())
        s_cum = float(torch.cumsum(torch.sort(v).values, 0)[-1])
        if s_sum - s_cum > 4 * n * 1e-12:
            break
    else:
        pytest.skip("no float32 rounding gap between sum and cumsum on this platform")
    tau = (s_sum + s_cum) / 2 / n  # M2 = s_sum/n > tau + 1e-12, but csum[-1] < tau*n - 1e-12
    lp = lr.reshape(1, n).clone()
    olp = torch.zeros(1, n)
    adv = torch.ones(1, n)
    mask = torch.ones(1, n, dtype=torch.bool)
    lw, t, clipped = released_loop(lp, olp, adv, mask, tau)
    assert t > 0 and int(clipped.sum()) < n
    _compare_with_loop(lp, olp, adv, mask, tau, None, None)
