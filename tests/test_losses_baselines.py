"""GRPO, GRPO without trust region, GSPO, CISPO, TOPR, GPPO and AReaL's decoupled PPO.

Every expected number is computed by hand from the objective's definition (arithmetic in the
comments); default hyper-parameters are taken from the loss docstrings:
gspo 3e-4/4e-4, cispo clip_high 0.2 (no lower bound), topr sequence-level ratio, gppo 0.2/0.28,
decoupled_ppo 0.2/0.2.
"""

from __future__ import annotations

import math

import pytest
import torch
from oracles import from_log_probs, from_log_ratios, run_loss

from m2po.losses import get_policy_loss

E = math.exp
LN = math.log


def approx(x, tol=1e-6):
    return pytest.approx(x, rel=tol, abs=tol)


# ---------------------------------------------------------------------------------------------
# GRPO / PPO clip
# ---------------------------------------------------------------------------------------------

# (log r, A): r = 1.5, 0.5 | 0.5, 1.1 ; padding column with NaN
GRPO_ROWS = [[(LN(1.5), 1.0), (LN(0.5), 1.0), None], [(LN(0.5), -1.0), (LN(1.1), -2.0), None]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_grpo_eps_02(dtype):
    # r=1.5, A=+1: -min(1.5, 1.2)        = -1.2  clipped (A>0, r>1)
    # r=0.5, A=+1: -min(0.5, 0.8)        = -0.5  (not clipped, gradient -A r /N)
    # r=0.5, A=-1: -min(-0.5, -0.8)      = +0.8  clipped (A<0, r<1)
    # r=1.1, A=-2: -min(-2.2, -2.2)      = +2.2  inside the clip range
    # token-mean over N = 4: (-1.2 - 0.5 + 0.8 + 2.2)/4 = 1.3/4 = 0.325
    fn = get_policy_loss("grpo")
    lp, olp, adv, mask = from_log_ratios(GRPO_ROWS, dtype=dtype)
    loss, grad, m, _ = run_loss(fn, lp, olp, adv, mask)
    assert loss == approx(0.325)
    g = grad.to(torch.float64)
    assert float(g[0, 0]) == 0.0 and float(g[1, 0]) == 0.0
    assert float(g[0, 1]) == approx(-0.5 / 4)  # -A r / N = -0.5/4
    assert float(g[1, 1]) == approx(2.2 / 4)  # -(-2)(1.1)/4
    assert float(g[0, 2]) == 0.0 and float(g[1, 2]) == 0.0
    assert m["clipped_frac"] == approx(0.5)
    assert m["masked_frac"] == approx(0.5)
    assert m["frac_pos_gt1"] == approx(0.25) and m["frac_neg_lt1"] == approx(0.25)
    assert m["frac_pos_lt1"] == 0.0 and m["frac_neg_gt1"] == 0.0
    # explicit defaults give the same value; asymmetric clip changes it
    assert run_loss(fn, lp, olp, adv, mask, clip_low=0.2, clip_high=0.2)[0] == approx(0.325)
    # clip_high = 0.6 -> r=1.5 not clipped: (-1.5 - 0.5 + 0.8 + 2.2)/4 = 0.25
    assert run_loss(fn, lp, olp, adv, mask, clip_high=0.6)[0] == approx(0.25)


def test_grpo_dual_clip():
    # clip_c = 3: for A < 0 the per-token loss is min(PPO loss, -3 A)
    # r=5,   A=-1: PPO -min(-5, -1.2) = 5  -> min(5, 3) = 3  (dual-clipped, zero gradient)
    # r=2,   A=-1: PPO 2                   -> min(2, 3) = 2  (gradient -A r/N = 2/4)
    # r=0.5, A=-1: PPO 0.8 (clipped)       -> 0.8
    # r=5,   A=+1: PPO -min(5, 1.2) = -1.2 (A>0: no dual clip)
    # with dual clip: (3 + 2 + 0.8 - 1.2)/4 = 1.15 ; without: (5 + 2 + 0.8 - 1.2)/4 = 1.65
    rows = [[(LN(5.0), -1.0), (LN(2.0), -1.0)], [(LN(0.5), -1.0), (LN(5.0), 1.0)]]
    fn = get_policy_loss("grpo")
    lp, olp, adv, mask = from_log_ratios(rows, dtype=torch.float64)
    loss, grad, m, _ = run_loss(fn, lp, olp, adv, mask, clip_c=3.0)
    assert loss == approx(1.15, 1e-12)
    assert run_loss(fn, lp, olp, adv, mask)[0] == approx(1.65, 1e-12)
    assert float(grad[0, 0]) == 0.0
    assert float(grad[0, 1]) == approx(2 / 4, 1e-12)
    assert float(grad[1, 0]) == 0.0 and float(grad[1, 1]) == 0.0
    quads = sum(m[k] for k in ("frac_pos_gt1", "frac_pos_lt1", "frac_neg_gt1", "frac_neg_lt1"))
    assert quads == approx(m["clipped_frac"])


def test_grpo_notr():
    # -r A per token: r=1.5,A=1 -> -1.5 ; r=0.5,A=1 -> -0.5 ; r=0.5,A=-1 -> 0.5 ; r=1.1,A=-2 -> 2.2
    # mean = (-1.5 - 0.5 + 0.5 + 2.2)/4 = 0.7/4 = 0.175 ; gradient -A r /4 everywhere
    fn = get_policy_loss("grpo_notr")
    lp, olp, adv, mask = from_log_ratios(GRPO_ROWS, dtype=torch.float64)
    loss, grad, m, _ = run_loss(fn, lp, olp, adv, mask)
    assert loss == approx(0.175, 1e-12)
    want = torch.tensor([[-1.5 / 4, -0.5 / 4, 0.0], [0.5 / 4, 2.2 / 4, 0.0]], dtype=torch.float64)
    assert torch.allclose(grad, want, rtol=1e-12, atol=1e-15)
    assert m["clipped_frac"] == 0.0 and m["masked_frac"] == 0.0


# ---------------------------------------------------------------------------------------------
# GSPO
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gspo(dtype):
    # s_i = exp(mean_t log r); per token -min(s A, clip(s, 1-3e-4, 1+4e-4) A); seq-mean-token-mean
    # row 0: log r = 2e-4, 4e-4 -> s0 = e^3e-4 = 1.00030005 inside   -> row term -s0, A = +1
    # row 1: log r = 1e-3, 3e-3 -> s1 = e^2e-3 = 1.002002   > 1.0004 -> clipped: -1.0004
    # row 2: log r = -0.01      -> s2 = 0.990050, A=-1: min(-0.99005, -0.9997) -> +0.9997 clipped
    # row 3: log r = .05,-.05,.3 -> s3 = e^0.1 = 1.105171, A=-1: min(-1.105171, -1.0004) -> +1.105171
    # loss = (-s0 - 1.0004 + 0.9997 + s3)/4
    rows = [
        [(2e-4, 1.0), (4e-4, 1.0), None],
        [(1e-3, 1.0), (3e-3, 1.0), None],
        [(-0.01, -1.0), None, None],
        [(0.05, -1.0), (-0.05, -1.0), (0.3, -1.0)],
    ]
    fn = get_policy_loss("gspo")
    lp, olp, adv, mask = from_log_ratios(rows, dtype=dtype)
    loss, grad, m, _ = run_loss(fn, lp, olp, adv, mask)
    s0, s3 = E(3e-4), E(0.1)
    want = (-s0 - 1.0004 + 0.9997 + s3) / 4
    assert loss == approx(want, 1e-6)
    # gradient: d/dlogp_t = -A s_i / (G |y_i|) on unclipped rows, 0 on clipped rows
    g = grad.to(torch.float64)
    assert float(g[0, 0]) == approx(-s0 / (4 * 2)) and float(g[0, 1]) == approx(-s0 / (4 * 2))
    assert bool((g[1] == 0).all()) and bool((g[2] == 0).all())
    for t in range(3):
        assert float(g[3, t]) == approx(s3 / (4 * 3))
    # clipped tokens: row 1 (2 tokens) and row 2 (1 token) of 8
    assert m["clipped_frac"] == approx(3 / 8)
    assert m["masked_frac"] == approx(3 / 8)
    # explicit token-mean: (2(-s0) + 2(-1.0004) + 0.9997 + 3 s3)/8
    loss_tm = run_loss(fn, lp, olp, adv, mask, loss_agg_mode="token-mean")[0]
    assert loss_tm == approx((-2 * s0 - 2 * 1.0004 + 0.9997 + 3 * s3) / 8, 1e-6)


# ---------------------------------------------------------------------------------------------
# CISPO
# ---------------------------------------------------------------------------------------------


def test_cispo():
    # per token -sg(clip(r, 0, 1.2)) A log_prob; every token keeps gradient -w A / N
    # t1: lp=-0.5, old=-1.0 : r = e^0.5  = 1.648721 -> w = 1.2      ; A=+1   -> -1.2*1*(-0.5)       = 0.6
    # t2: lp=-2.0, old=-1.9 : r = e^-0.1 = 0.904837 -> w = 0.904837 ; A=-1   -> -w*(-1)*(-2)        = -1.809675
    # t3: lp=-0.3, old=-0.4 : r = e^0.1  = 1.105171 -> w = 1.105171 ; A=+0.5 -> -w*0.5*(-0.3)       = 0.165776
    # t4: lp=-3.0, old=-0.2 : r = e^-2.8 = 0.060810 -> w = 0.060810 ; A=-2   -> -w*(-2)*(-3)        = -0.364860
    rows = [[(-0.5, -1.0, 1.0), (-2.0, -1.9, -1.0), None], [(-0.3, -0.4, 0.5), (-3.0, -0.2, -2.0), None]]
    fn = get_policy_loss("cispo")
    lp, olp, adv, mask = from_log_probs(rows, dtype=torch.float64)
    loss, grad, m, _ = run_loss(fn, lp, olp, adv, mask)
    w = [1.2, E(-0.1), E(0.1), E(-2.8)]
    a = [1.0, -1.0, 0.5, -2.0]
    x = [-0.5, -2.0, -0.3, -3.0]
    want = sum(-w[i] * a[i] * x[i] for i in range(4)) / 4
    assert want == approx((0.6 - 1.809675 + 0.165776 - 0.364860) / 4, 1e-6)
    assert loss == approx(want, 1e-9)
    gw = torch.tensor(
        [[-w[0] * a[0] / 4, -w[1] * a[1] / 4, 0.0], [-w[2] * a[2] / 4, -w[3] * a[3] / 4, 0.0]], dtype=torch.float64
    )
    assert torch.allclose(grad, gw, rtol=1e-9, atol=0)
    assert bool((grad[mask] != 0).all())
    assert m["masked_frac"] == 0.0
    # clip_high = 1.0 -> w1 = min(1.648721, 2.0) = r itself
    loss2 = run_loss(fn, lp, olp, adv, mask, clip_high=1.0)[0]
    w2 = [E(0.5)] + w[1:]
    assert loss2 == approx(sum(-w2[i] * a[i] * x[i] for i in range(4)) / 4, 1e-9)


# ---------------------------------------------------------------------------------------------
# TOPR
# ---------------------------------------------------------------------------------------------

# row 0: A=+1, lp = -0.5, -1.0 (old -0.7, -0.2)              -> w = 1
# row 1: A=-1, lp = -0.2, -0.4 (old -0.5, -0.6): sum log r = 0.5 -> w = min(e^0.5, 1) = 1
# row 2: A=-0.5, lp = -1.0, -2.0 (old -0.8, -1.5): sum log r = -0.7 -> w = e^-0.7 = 0.496585
TOPR_ROWS = [
    [(-0.5, -0.7, 1.0), (-1.0, -0.2, 1.0), None],
    [(-0.2, -0.5, -1.0), (-0.4, -0.6, -1.0), None],
    [(-1.0, -0.8, -0.5), (-2.0, -1.5, -0.5), None],
]


def test_topr_sequence_ratio():
    # per token -w A log_prob, N = 6:
    # row 0: 0.5, 1.0 ; row 1: -0.2, -0.4 ; row 2: 0.5 w (-1) = -0.248293, 0.5 w (-2) = -0.496585
    fn = get_policy_loss("topr")
    lp, olp, adv, mask = from_log_probs(TOPR_ROWS, dtype=torch.float64)
    loss, grad, m, _ = run_loss(fn, lp, olp, adv, mask)
    w2 = E(-0.7)
    want = (0.5 + 1.0 - 0.2 - 0.4 + 0.5 * w2 * (-1.0) + 0.5 * w2 * (-2.0)) / 6
    assert want == approx((0.5 + 1.0 - 0.2 - 0.4 - 0.248293 - 0.496585) / 6, 1e-6)
    assert loss == approx(want, 1e-9)
    # gradient -w A / N
    gw = torch.tensor(
        [[-1 / 6, -1 / 6, 0.0], [1 / 6, 1 / 6, 0.0], [0.5 * w2 / 6, 0.5 * w2 / 6, 0.0]], dtype=torch.float64
    )
    assert torch.allclose(grad, gw, rtol=1e-9, atol=0)


def test_topr_token_ratio():
    # ratio_level="token": w_t = min(r_t, 1) for A < 0
    # row 1: r = e^0.3, e^0.2 -> w = 1, 1 ; row 2: r = e^-0.2, e^-0.5 -> w = 0.818731, 0.606531
    fn = get_policy_loss("topr")
    lp, olp, adv, mask = from_log_probs(TOPR_ROWS, dtype=torch.float64)
    loss, grad, _, _ = run_loss(fn, lp, olp, adv, mask, ratio_level="token")
    want = (0.5 + 1.0 - 0.2 - 0.4 + 0.5 * E(-0.2) * (-1.0) + 0.5 * E(-0.5) * (-2.0)) / 6
    assert loss == approx(want, 1e-9)
    assert float(grad[2, 0]) == approx(0.5 * E(-0.2) / 6, 1e-9)
    assert float(grad[2, 1]) == approx(0.5 * E(-0.5) / 6, 1e-9)


# ---------------------------------------------------------------------------------------------
# GPPO
# ---------------------------------------------------------------------------------------------


def test_gppo():
    # PPO values with eps_low 0.2, eps_high 0.28; clipped tokens keep gradient -bound A / N, N = 5
    # r=1.5, A=+1: clipped at 1.28 -> value -1.28, grad -1.28/5
    # r=0.5, A=-1: clipped at 0.8  -> value +0.8,  grad +0.8/5
    # r=1.1, A=+1: inside          -> value -1.1,  grad -1.1/5
    # r=0.5, A=+1: min picks r     -> value -0.5,  grad -0.5/5
    # r=1.5, A=-1: min picks r     -> value +1.5,  grad +1.5/5
    # loss = (-1.28 + 0.8 - 1.1 - 0.5 + 1.5)/5 = -0.58/5 = -0.116
    rows = [[(LN(1.5), 1.0), (LN(0.5), -1.0), (LN(1.1), 1.0)], [(LN(0.5), 1.0), (LN(1.5), -1.0), None]]
    fn = get_policy_loss("gppo")
    lp, olp, adv, mask = from_log_ratios(rows, dtype=torch.float64)
    loss, grad, m, _ = run_loss(fn, lp, olp, adv, mask)
    assert loss == approx(-0.116, 1e-12)
    gw = torch.tensor([[-1.28 / 5, 0.8 / 5, -1.1 / 5], [-0.5 / 5, 1.5 / 5, 0.0]], dtype=torch.float64)
    assert torch.allclose(grad, gw, rtol=1e-12, atol=1e-15)
    # the forward value equals GRPO's PPO-clip value with the same bounds
    grpo = get_policy_loss("grpo")
    assert run_loss(grpo, lp, olp, adv, mask, clip_low=0.2, clip_high=0.28)[0] == approx(-0.116, 1e-12)
    assert m["masked_frac"] == 0.0
    assert m["clipped_frac"] == approx(2 / 5)


# ---------------------------------------------------------------------------------------------
# AReaL decoupled PPO
# ---------------------------------------------------------------------------------------------


def test_decoupled_ppo():
    # per token -sg(exp(prox - old)) * min(u A, clip(u, 0.8, 1.2) A), u = exp(lp - prox), N = 3
    # t1: old -1.0, prox -0.9, lp -0.5: w = e^0.1 = 1.105171, u = e^0.4 = 1.491825, A=+1
    #     min(1.491825, 1.2) = 1.2 (clipped)               -> -1.105171*1.2 = -1.326205, grad 0
    # t2: old -1.0, prox -1.2, lp -1.1: w = e^-0.2 = 0.818731, u = e^0.1 = 1.105171, A=-1
    #     min(-1.105171, -1.105171)                        -> +w u = e^-0.1 = 0.904837, grad w u / 3
    # t3: old -2.0, prox -1.5, lp -1.9: w = e^0.5 = 1.648721, u = e^-0.4 = 0.670320, A=-2
    #     min(-1.340640, -1.6) = -1.6 (clipped)            -> +1.648721*1.6 = 2.637954, grad 0
    fn = get_policy_loss("decoupled_ppo")
    lp, olp, adv, mask = from_log_probs(
        [[(-0.5, -1.0, 1.0), (-1.1, -1.0, -1.0)], [(-1.9, -2.0, -2.0), None]], dtype=torch.float64
    )
    prox = torch.tensor([[-0.9, -1.2], [-1.5, float("nan")]], dtype=torch.float64)
    loss, grad, m, _ = run_loss(fn, lp, olp, adv, mask, proximal_log_prob=prox)
    want = (-E(0.1) * 1.2 + E(-0.1) + E(0.5) * 1.6) / 3
    assert want == approx((-1.326205 + 0.904837 + 2.637954) / 3, 1e-6)
    assert loss == approx(want, 1e-12)
    assert float(grad[0, 0]) == 0.0 and float(grad[1, 0]) == 0.0
    assert float(grad[0, 1]) == approx(E(-0.1) / 3, 1e-12)
    assert float(grad[1, 1]) == 0.0
    assert m["clipped_frac"] == approx(2 / 3)
    # proximal == old reduces to GRPO
    l1 = run_loss(fn, lp, olp, adv, mask, proximal_log_prob=olp)[0]
    l2 = run_loss(get_policy_loss("grpo"), lp, olp, adv, mask)[0]
    assert l1 == approx(l2, 1e-12)


def test_decoupled_ppo_requires_proximal_log_prob():
    fn = get_policy_loss("decoupled_ppo")
    lp, olp, adv, mask = from_log_ratios([[(0.1, 1.0)]])
    with pytest.raises(ValueError, match="proximal_log_prob"):
        fn(lp.requires_grad_(), olp, adv, mask)


def test_decoupled_ppo_checks_proximal_log_prob():
    fn = get_policy_loss("decoupled_ppo")
    lp, olp, adv, mask = from_log_ratios([[(0.1, 1.0), (0.2, 1.0)]])
    with pytest.raises(ValueError, match="proximal_log_prob"):
        fn(lp.requires_grad_(), olp, adv, mask, proximal_log_prob=torch.zeros(1, 3))
    with pytest.raises(ValueError, match="proximal_log_prob"):
        fn(lp, olp, adv, mask, proximal_log_prob=torch.tensor([[0.0, float("nan")]]))
