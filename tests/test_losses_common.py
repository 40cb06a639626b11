"""What every policy loss shares: registry, fail-closed input checks, metrics, aggregation, TIS."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracles import (
    ALL_LOSSES,
    DOCUMENTED_METRICS,
    agg_oracle,
    flat_bools,
    flat_floats,
    flat_log_ratio,
    from_log_ratios,
    random_batch,
    random_batches,
    run_loss,
)

from m2po.losses import agg_loss, available_losses, get_policy_loss, m2po_mask

PROP = dict(derandomize=True, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
QUADS = ("frac_pos_gt1", "frac_pos_lt1", "frac_neg_gt1", "frac_neg_lt1")


def extra_params(name, log_prob):
    """Parameters a loss needs to run at all (decoupled PPO needs the proximal policy)."""
    if name == "decoupled_ppo":
        # proximal policy half-way between behaviour and current, NaN-free at response tokens
        return {"proximal_log_prob": log_prob.detach().clone()}
    return {}


def call(name, lp, olp, adv, mask, **params):
    fn = get_policy_loss(name)
    p = extra_params(name, olp)
    p.update(params)
    return run_loss(fn, lp, olp, adv, mask, **p)


SMALL = [[(0.1, 1.0), (0.5, 1.0), (-0.4, 1.0), None], [(-0.2, -1.0), (-0.3, -1.0), (0.6, 0.0), None]]


# ---------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------


def test_available_losses():
    names = available_losses()
    assert isinstance(names, list)
    assert set(ALL_LOSSES) <= set(names)
    for n in names:
        assert callable(get_policy_loss(n))


def test_unknown_loss_name_lists_the_available_ones():
    with pytest.raises((KeyError, ValueError)) as ei:
        get_policy_loss("ppo_but_better")
    msg = str(ei.value)
    for n in ("grpo", "m2po", "gspo"):
        assert n in msg


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_unknown_param_rejected(name):
    lp, olp, adv, mask = from_log_ratios(SMALL)
    with pytest.raises((TypeError, ValueError)):
        call(name, lp, olp, adv, mask, not_a_param=1.0)


# ---------------------------------------------------------------------------------------------
# fail closed
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_LOSSES)
@pytest.mark.parametrize("arg", ["log_prob", "old_log_prob", "advantages", "response_mask"])
def test_shape_mismatch(name, arg):
    t = dict(zip(("log_prob", "old_log_prob", "advantages", "response_mask"), from_log_ratios(SMALL), strict=True))
    t[arg] = t[arg][:, :3].contiguous()
    with pytest.raises(ValueError, match=arg):
        call(name, t["log_prob"], t["old_log_prob"], t["advantages"], t["response_mask"])


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_non_float_log_prob(name):
    lp, olp, adv, mask = from_log_ratios([[(1.0, 1.0), (2.0, -1.0)]], old=-3.0)
    with pytest.raises((ValueError, TypeError), match="log_prob"):
        get_policy_loss(name)(lp.to(torch.int64), olp, adv, mask, **extra_params(name, olp))
    with pytest.raises((ValueError, TypeError), match="old_log_prob"):
        get_policy_loss(name)(lp, olp.to(torch.int64), adv, mask, **extra_params(name, olp))


@pytest.mark.parametrize("name", ALL_LOSSES)
@pytest.mark.parametrize("arg", ["log_prob", "old_log_prob", "advantages"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_at_response_positions(name, arg, bad):
    t = dict(zip(("log_prob", "old_log_prob", "advantages", "response_mask"), from_log_ratios(SMALL), strict=True))
    t[arg] = t[arg].clone()
    t[arg][1, 1] = bad  # a response position
    with pytest.raises(ValueError, match=arg):
        call(name, t["log_prob"], t["old_log_prob"], t["advantages"], t["response_mask"])


@pytest.mark.parametrize("arg", ["log_prob", "old_log_prob", "advantages"])
def test_m2po_mask_fails_closed_too(arg):
    t = dict(zip(("log_prob", "old_log_prob", "advantages", "response_mask"), from_log_ratios(SMALL), strict=True))
    t[arg] = t[arg].clone()
    t[arg][0, 0] = float("nan")
    with pytest.raises(ValueError, match=arg):
        m2po_mask(**t)


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_garbage_at_padding_is_ignored(name):
    lp, olp, adv, mask = from_log_ratios(SMALL)
    base, g0, m0, _ = call(name, lp, olp, adv, mask)
    for fill in (float("nan"), float("inf"), -float("inf"), 1e30):
        lp2, olp2, adv2 = lp.clone(), olp.clone(), adv.clone()
        for t in (lp2, olp2, adv2):
            t[~mask] = fill
        loss, grad, metrics, _ = call(name, lp2, olp2, adv2, mask)
        assert loss == base
        assert torch.equal(grad, g0)
        assert bool((grad[~mask] == 0).all())
        assert metrics == m0


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_empty_response_mask(name):
    lp, olp, adv, mask = from_log_ratios(SMALL)
    with pytest.raises(ValueError):
        call(name, lp, olp, adv, torch.zeros_like(mask))


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_response_mask_as_numbers(name):
    lp, olp, adv, mask = from_log_ratios(SMALL)
    want = call(name, lp, olp, adv, mask)[0]
    for m in (mask.to(torch.float32), mask.to(torch.int64), mask.to(torch.uint8)):
        assert call(name, lp, olp, adv, m)[0] == want


@pytest.mark.parametrize("name", ["m2po", "m2po_released"])
def test_tau_negative(name):
    lp, olp, adv, mask = from_log_ratios(SMALL)
    with pytest.raises(ValueError, match="tau"):
        call(name, lp, olp, adv, mask, tau=-0.04)


# ---------------------------------------------------------------------------------------------
# dtypes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_LOSSES)
@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16])
def test_low_precision_inputs_are_upcast(name, low):
    # the loss of bf16/fp16 inputs equals the float32 loss of the same (rounded) values
    lp, olp, adv, mask = random_batch(7, 4, 9, scale=0.2, dtype=low)
    lo, glo, _, t = call(name, lp, olp, adv, mask)
    hi, ghi, _, _ = call(name, lp.float(), olp.float(), adv.float(), mask)
    assert t.dtype == torch.float32
    assert lo == pytest.approx(hi, rel=1e-6, abs=1e-7)
    assert glo.dtype == low
    assert bool(torch.isfinite(glo).all())
    assert torch.allclose(glo.float(), ghi.to(low).float(), rtol=1e-2, atol=1e-6)


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_float64_stays_float64(name):
    lp, olp, adv, mask = from_log_ratios(SMALL, dtype=torch.float64)
    _, _, _, t = call(name, lp, olp, adv, mask)
    assert t.dtype == torch.float64 and t.dim() == 0


# ---------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_metric_keys_documented(name):
    lp, olp, adv, mask = from_log_ratios(SMALL)
    _, _, m, _ = call(name, lp, olp, adv, mask)
    assert DOCUMENTED_METRICS <= set(m), DOCUMENTED_METRICS - set(m)
    for k, v in m.items():
        assert type(v) is float, k
        assert math.isfinite(v), k


def test_metric_key_set_identical_for_every_loss():
    # docs/losses.md: "Metric names (identical for every loss)" -- one key set, so that logs of
    # different losses line up column for column; loss-specific diagnostics only under "<loss>/..."
    lp, olp, adv, mask = from_log_ratios(SMALL)
    keys = {name: frozenset(call(name, lp, olp, adv, mask)[2]) for name in ALL_LOSSES}
    standard = {name: frozenset(k for k in ks if "/" not in k) for name, ks in keys.items()}
    differ = {name: sorted(k ^ standard["grpo"]) for name, k in standard.items() if k != standard["grpo"]}
    assert not differ, f"standard metric keys differ: {differ}"
    for name, ks in keys.items():
        assert all(k.startswith(f"{name}/") for k in ks - standard[name]), name


def test_metrics_by_hand():
    # log r = ln 2, ln 0.5, 0, ln 4 ; A = +1, +1, -1, 0 ; N = 4 ; padding column
    # r = 2, 0.5, 1, 4 -> ratio_mean 7.5/4 = 1.875, ratio_min 0.5, ratio_max 4
    # kl_k1 = mean(-log r) = -(ln2 - ln2 + 0 + ln4)/4 = -ln4/4 = -0.346574
    # kl_k3 = mean(r - 1 - log r) = [(1-ln2) + (-0.5+ln2) + 0 + (3-ln4)]/4 = (3.5 - ln4)/4 = 0.528426
    # ess = (sum r)^2 / (N sum r^2) = 7.5^2 / (4 * (4 + 0.25 + 1 + 16)) = 56.25/85 = 0.661765
    # TR: (ln2, +1) only -> tr_frac 1/4 ; m2 = (ln2)^2 = 0.480453 ;
    # m2_all = (ln2^2 + ln2^2 + 0 + ln4^2)/4 = (6 ln2^2)/4 = 0.720680
    rows = [[(LN2, 1.0), (-LN2, 1.0), None], [(0.0, -1.0), (2 * LN2, 0.0), None]]
    lp, olp, adv, mask = from_log_ratios(rows, dtype=torch.float64)
    for name in ("grpo_notr", "grpo", "m2po"):
        _, _, m, _ = call(name, lp, olp, adv, mask)
        assert m["n_tokens"] == 4
        assert m["ratio_mean"] == pytest.approx(1.875, rel=1e-6)
        assert m["ratio_min"] == pytest.approx(0.5, rel=1e-6)
        assert m["ratio_max"] == pytest.approx(4.0, rel=1e-6)
        assert m["kl_k1"] == pytest.approx(-math.log(4) / 4, rel=1e-6)
        assert m["kl_k3"] == pytest.approx((3.5 - math.log(4)) / 4, rel=1e-6)
        assert m["ess"] == pytest.approx(56.25 / 85, rel=1e-6)
        assert m["tr_frac"] == pytest.approx(0.25)
        assert m["m2"] == pytest.approx(LN2**2, rel=1e-6)
        assert m["m2_all"] == pytest.approx(6 * LN2**2 / 4, rel=1e-6)
    # grpo (eps 0.2): (ln2,+1) r=2 clipped -> clipped_frac 1/4 in the A>0,r>1 quadrant
    m = call("grpo", lp, olp, adv, mask)[2]
    assert m["clipped_frac"] == pytest.approx(0.25) and m["frac_pos_gt1"] == pytest.approx(0.25)
    assert m["m2_after"] == 0.0  # no TR token carries gradient
    # m2po (tau 0.04): m2 = 0.48 > tau -> the one TR token is masked
    m = call("m2po", lp, olp, adv, mask)[2]
    assert m["clipped_frac"] == pytest.approx(0.25) and m["m2_after"] == 0.0


LN2 = math.log(2.0)


@settings(max_examples=60, **PROP)
@given(
    batch=random_batches(dtypes=(torch.float32, torch.float64), scales=(0.03, 0.1, 0.3, 1.0)),
    name=st.sampled_from(ALL_LOSSES),
)
def test_metric_invariants_random(batch, name):
    lp, olp, adv, mask = batch
    loss, grad, m, _ = call(name, lp, olp, adv, mask)
    assert math.isfinite(loss)
    assert bool(torch.isfinite(grad).all())
    assert bool((grad[~mask] == 0).all())
    n = int(mask.sum())
    assert m["n_tokens"] == n
    assert sum(m[k] for k in QUADS) == pytest.approx(m["clipped_frac"], abs=1e-6)
    assert 0.0 <= m["masked_frac"] <= 1.0 and 0.0 <= m["clipped_frac"] <= 1.0
    assert 0.0 < m["ess"] <= 1.0 + 1e-6
    assert m["kl_k3"] >= -1e-6
    assert m["ratio_min"] <= m["ratio_mean"] * (1 + 1e-6) and m["ratio_mean"] <= m["ratio_max"] * (1 + 1e-6)
    # by-loop values of the loss-independent metrics
    lr = flat_log_ratio(lp, olp)
    ms = flat_bools(mask)
    vals = [lr[i] for i in range(len(ms)) if ms[i]]
    r = [math.exp(min(max(x, -20.0), 20.0)) for x in vals]
    assert m["kl_k1"] == pytest.approx(-math.fsum(vals) / n, rel=1e-4, abs=1e-6)
    assert m["ratio_max"] == pytest.approx(max(r), rel=1e-5)
    assert m["ratio_min"] == pytest.approx(min(r), rel=1e-5)
    assert m["m2_all"] == pytest.approx(math.fsum(x * x for x in vals) / n, rel=1e-4)
    if name == "grpo_notr":
        assert m["clipped_frac"] == 0.0 and m["masked_frac"] == 0.0
    # masked_frac = tokens whose gradient is exactly zero because of the trust region
    if name in ("grpo", "grpo_notr", "m2po", "m2po_released", "gspo", "gppo", "cispo"):
        a = flat_floats(adv)
        g = flat_floats(grad)
        zero = sum(1 for i in range(len(ms)) if ms[i] and a[i] != 0 and g[i] == 0.0)
        assert m["masked_frac"] == pytest.approx(zero / n, abs=1e-6)
    if name in ("gppo", "cispo"):
        assert m["masked_frac"] == 0.0


# ---------------------------------------------------------------------------------------------
# aggregation
# ---------------------------------------------------------------------------------------------

# loss_mat rows: [1, 2, 3], [4, 5, pad], [6, pad, pad]   (padding holds 100)
AGG_LOSS = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 100.0], [6.0, 100.0, 100.0]], dtype=torch.float64)
AGG_MASK = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=torch.bool)


@pytest.mark.parametrize(
    "mode,kw,want",
    [
        ("token-mean", {}, 21 / 6),  # (1+2+3+4+5+6)/6 = 3.5
        ("seq-mean-token-sum", {}, 7.0),  # (6 + 9 + 6)/3
        ("seq-mean-token-mean", {}, 12.5 / 3),  # (2 + 4.5 + 6)/3
        ("seq-mean-token-sum-norm", {}, 21 / 9),  # 21 / (3 rows * 3 columns)
        ("token-mean", {"global_token_count": 10}, 2.1),  # 21/10
        ("seq-mean-token-sum", {"global_seq_count": 5}, 4.2),  # 21/5
        ("seq-mean-token-mean", {"global_seq_count": 5}, 2.5),  # 12.5/5
        ("seq-mean-token-sum-norm", {"global_seq_count": 5}, 1.4),  # 21/(5*3)
    ],
)
def test_agg_loss_by_hand(mode, kw, want):
    got = agg_loss(AGG_LOSS, AGG_MASK, mode, **kw)
    assert float(got) == pytest.approx(want, rel=1e-6)
    # a row without response tokens does not count locally
    lm = torch.cat([AGG_LOSS, torch.full((1, 3), 7.0, dtype=torch.float64)])
    mm = torch.cat([AGG_MASK, torch.zeros(1, 3, dtype=torch.bool)])
    assert float(agg_loss(lm, mm, mode, **kw)) == pytest.approx(want, rel=1e-6)
    assert float(agg_oracle(AGG_LOSS.tolist(), AGG_MASK.tolist(), mode, **kw)) == pytest.approx(want, rel=1e-12)


def test_agg_loss_unknown_mode():
    with pytest.raises(ValueError):
        agg_loss(AGG_LOSS, AGG_MASK, "token-median")


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_loss_agg_mode_param(mode):
    # grpo_notr's per-token loss is -rA: the mode must aggregate exactly that matrix
    lp, olp, adv, mask = from_log_ratios(
        [[(0.1, 1.0), (0.2, -1.0), (0.3, 2.0)], [(-0.5, 1.0), None, None]], dtype=torch.float64
    )
    lr = flat_log_ratio(lp, olp)
    a = flat_floats(adv)
    ms = flat_bools(mask)
    mat = [[(-math.exp(lr[3 * i + j]) * a[3 * i + j]) if ms[3 * i + j] else 0.0 for j in range(3)] for i in range(2)]
    want = agg_oracle(mat, mask.tolist(), mode)
    got = call("grpo_notr", lp, olp, adv, mask, loss_agg_mode=mode)[0]
    assert got == pytest.approx(want, rel=1e-12)


@settings(max_examples=60, **PROP)
@given(
    seed=st.integers(0, 2**31 - 1),
    B=st.integers(2, 7),
    L=st.integers(1, 9),
    name=st.sampled_from(("grpo", "grpo_notr", "gspo", "cispo", "topr", "gppo", "decoupled_ppo")),
    mode=st.sampled_from(("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")),
    split_seed=st.integers(0, 1000),
)
def test_micro_batches_with_global_counts_are_additive(seed, B, L, name, mode, split_seed):
    # losses without a batch-level statistic: summing micro-batch losses with the global token /
    # sequence counts gives the mini-batch loss and gradient
    lp, olp, adv, mask = random_batch(seed, B, L, scale=0.3, dtype=torch.float64, empty_rows=True)
    n_tok = int(mask.sum())
    n_seq = int((mask.sum(-1) > 0).sum())
    full, gfull, _, _ = call(name, lp, olp, adv, mask, loss_agg_mode=mode)
    g = torch.Generator().manual_seed(split_seed)
    parts = [p.sort().values for p in torch.tensor_split(torch.randperm(B, generator=g), 2) if len(p)]
    acc = lp.detach().clone().requires_grad_(True)
    total = 0.0
    for idx in parts:
        if int(mask[idx].sum()) == 0:
            continue
        p = extra_params(name, olp[idx])
        loss, _ = get_policy_loss(name)(
            acc[idx],
            olp[idx],
            adv[idx],
            mask[idx],
            loss_agg_mode=mode,
            global_token_count=n_tok,
            global_seq_count=n_seq,
            **p,
        )
        loss.backward()
        total += float(loss.detach())
    assert total == pytest.approx(full, rel=1e-9, abs=1e-12)
    assert torch.allclose(acc.grad, gfull, rtol=1e-9, atol=1e-15)


# ---------------------------------------------------------------------------------------------
# importance weights (verl's TIS hook)
# ---------------------------------------------------------------------------------------------


def test_rollout_is_weights():
    # grpo_notr per token -rA times a detached weight w: (w=0.5) -e^0.1*0.5 ; (w=2) -(e^0.2)(-1)*2
    lp, olp, adv, mask = from_log_ratios([[(0.1, 1.0), (0.2, -1.0)]], dtype=torch.float64)
    w = torch.tensor([[0.5, 2.0]], dtype=torch.float64, requires_grad=True)
    loss, grad, _, _ = call("grpo_notr", lp, olp, adv, mask, rollout_is_weights=w)
    assert loss == pytest.approx((-0.5 * math.exp(0.1) + 2 * math.exp(0.2)) / 2, rel=1e-12)
    assert float(grad[0, 0]) == pytest.approx(-0.5 * math.exp(0.1) / 2, rel=1e-12)
    assert float(grad[0, 1]) == pytest.approx(2 * math.exp(0.2) / 2, rel=1e-12)
    assert w.grad is None  # detached


def test_truncated_is_weight():
    # w = min(exp(old - rollout), cap): old = 0; rollout = -0.5 -> e^0.5 = 1.6487 -> capped at 1.2;
    #                                            rollout = 0.3  -> e^-0.3 = 0.740818
    lp, olp, adv, mask = from_log_ratios([[(0.1, 1.0), (0.2, -1.0)]], dtype=torch.float64)
    roll = torch.tensor([[-0.5, 0.3]], dtype=torch.float64)
    loss, _, _, _ = call("grpo_notr", lp, olp, adv, mask, rollout_log_prob=roll, tis_cap=1.2)
    assert loss == pytest.approx((-1.2 * math.exp(0.1) + math.exp(-0.3) * math.exp(0.2)) / 2, rel=1e-12)
