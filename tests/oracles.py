"""Independent, test-only oracles for ``m2po.losses``.

Everything here is written from the paper (docs/PAPER.md §2-3) and the contract (docs/losses.md),
as plain Python loops over lists of floats. Nothing here imports ``m2po``: the tests compare the
implementation against these oracles, never against the implementation's own output.

The only torch operations used are (a) the element-wise input preprocessing that the contract
defines (``log r = log_prob - old_log_prob`` in the compute dtype), and (b) in ``released_loop``,
0-dim torch ops that reproduce the released code's dtype semantics token by token.
"""

from __future__ import annotations

import math
import struct

import torch

# --------------------------------------------------------------------------------------------
# input helpers
# --------------------------------------------------------------------------------------------


def compute_dtype(log_prob: torch.Tensor, old_log_prob: torch.Tensor) -> torch.dtype:
    """Contract: float64 when both log-prob inputs are float64, otherwise float32."""
    if log_prob.dtype == torch.float64 and old_log_prob.dtype == torch.float64:
        return torch.float64
    return torch.float32


def flat_log_ratio(log_prob: torch.Tensor, old_log_prob: torch.Tensor) -> list[float]:
    """log r = log_prob - old_log_prob in the compute dtype, flattened row-major, as Python floats."""
    cd = compute_dtype(log_prob, old_log_prob)
    lr = log_prob.detach().to(cd) - old_log_prob.detach().to(cd)
    return [float(x) for x in lr.reshape(-1).tolist()]


def flat_floats(x: torch.Tensor) -> list[float]:
    return [float(v) for v in x.detach().to(torch.float64).reshape(-1).tolist()]


def flat_bools(x: torch.Tensor) -> list[bool]:
    return [bool(v) for v in x.detach().reshape(-1).tolist()]


# --------------------------------------------------------------------------------------------
# Algorithm 1 (paper §2), literal greedy loop
# --------------------------------------------------------------------------------------------


def trust_region(log_ratio: list[float], adv: list[float], mask: list[bool]) -> list[bool]:
    """(A>0 and log r>0) or (A<0 and log r<0), response tokens only."""
    out = []
    for lr, a, m in zip(log_ratio, adv, mask, strict=True):
        out.append(bool(m) and ((a > 0 and lr > 0) or (a < 0 and lr < 0)))
    return out


def greedy_algorithm1(log_ratio: list[float], adv: list[float], mask: list[bool], tau: float) -> list[bool]:
    """Literal Algorithm 1 over a flat (row-major) token list.

    T <- trust-region tokens; while T is non-empty and mean_T (log r)^2 > tau: remove the max
    (ties: the largest flat index). Returns the keep mask (True for every token not removed,
    padding included). float64 math; the mean test is written as sum > tau * count.
    """
    n_tok = len(log_ratio)
    tr = trust_region(log_ratio, adv, mask)
    m2 = [log_ratio[i] * log_ratio[i] for i in range(n_tok)]
    T = [i for i in range(n_tok) if tr[i]]
    keep = [True] * n_tok
    while T and math.fsum(m2[i] for i in T) > tau * len(T):
        j = T[0]
        for i in T:
            if m2[i] > m2[j] or (m2[i] == m2[j] and i > j):
                j = i
        keep[j] = False
        T.remove(j)
    return keep


def greedy_mask_tensor(log_prob, old_log_prob, advantages, response_mask, tau: float) -> torch.Tensor:
    """Tensor front-end of ``greedy_algorithm1`` (returns a bool tensor of the input shape)."""
    lr = flat_log_ratio(log_prob, old_log_prob)
    keep = greedy_algorithm1(lr, flat_floats(advantages), flat_bools(response_mask), tau)
    return torch.tensor(keep, dtype=torch.bool).reshape(log_prob.shape)


def is_valid_maximal_prefix(
    log_ratio: list[float], adv: list[float], mask: list[bool], keep: list[bool], tau: float
) -> str | None:
    """Robust check that ``keep`` is an Algorithm-1 mask, tolerant to float32/float64 rounding.

    Returns None when valid, otherwise a description of the first violation:
      * every token outside the trust region (padding included) is kept;
      * the kept trust-region tokens have mean (log r)^2 <= tau (relative slack 1e-9);
      * every removed trust-region token has (log r)^2 >= the largest kept value (slack 1e-6);
      * adding back the smallest removed token would make the mean exceed tau (slack 1e-9).
    """
    tr = trust_region(log_ratio, adv, mask)
    kept, removed = [], []
    for i, (t, k) in enumerate(zip(tr, keep, strict=True)):
        if not t:
            if not k:
                return f"token {i} outside the trust region was masked"
            continue
        (kept if k else removed).append(log_ratio[i] * log_ratio[i])
    tiny = 1e-30
    if kept and math.fsum(kept) > tau * len(kept) * (1 + 1e-9) + tiny:
        return f"kept mean {math.fsum(kept) / len(kept)!r} > tau {tau!r}"
    if removed:
        if kept and min(removed) < max(kept) * (1 - 1e-6):
            return f"removed value {min(removed)!r} < kept value {max(kept)!r}"
        back = math.fsum(kept) + min(removed)
        if not back > tau * (len(kept) + 1) * (1 - 1e-9) - tiny:
            return f"could keep one more token (mean {back / (len(kept) + 1)!r} <= tau {tau!r})"
    return None


def well_separated(log_ratio: list[float], adv: list[float], mask: list[bool], tau: float, rel=1e-6) -> bool:
    """True when Algorithm 1's decision is insensitive to float32-level rounding.

    (The implementation may square log r in float32 and sum in another order; only near-exact
    threshold hits, or near-ties straddling the kept/removed boundary, can then change the mask.)
    """
    tr = trust_region(log_ratio, adv, mask)
    vals = sorted(log_ratio[i] * log_ratio[i] for i in range(len(tr)) if tr[i])
    if any(v <= 1e-30 for v in vals):
        return False
    m = 0
    while m < len(vals) and math.fsum(vals[: m + 1]) <= tau * (m + 1):
        m += 1
    if m > 0 and tau * m - math.fsum(vals[:m]) <= rel * tau * m:
        return False
    if m < len(vals):
        s1 = math.fsum(vals[: m + 1])
        if s1 - tau * (m + 1) <= rel * s1:
            return False
        if m > 0 and vals[m] != vals[m - 1] and vals[m] - vals[m - 1] <= rel * vals[m]:
            return False
    return True


# --------------------------------------------------------------------------------------------
# the authors' released search (paper §3), literal per-token loop
# --------------------------------------------------------------------------------------------

RELEASED_EPS_LOW_UNCONSTRAINED = 1.0
RELEASED_EPS_HIGH_UNCONSTRAINED = 99999.0


def _rounder(dtype):
    """Round a Python float to ``dtype`` (IEEE round-to-nearest-even), like a torch op's result."""
    if dtype == torch.float64:
        return lambda x: x
    return lambda x: struct.unpack("f", struct.pack("f", x))[0]


def released_loop(log_prob, old_log_prob, adv, mask, tau, floor_low=None, floor_high=None):
    """Per-token loop of the released search + PPO clipped surrogate (token-mean).

    Returns (loss: float, t: float | None, clipped: bool tensor of the input shape); ``t`` is None
    when unconstrained. Arithmetic the released code does in the input dtype is reproduced per
    token with Python floats rounded to that dtype (an IEEE op on two float32 values is exact in
    float64, so one rounding gives the float32 result); the ratio is ``torch.exp`` of the whole
    ``[batch, len]`` difference as in the released code, and sum/sort/cumsum are torch ops in the
    dtype, as released. bf16/fp16 inputs are upcast to float32 first (contract).
    """
    dtype = log_prob.dtype if log_prob.dtype in (torch.float32, torch.float64) else torch.float32
    rnd = _rounder(dtype)
    shape = tuple(log_prob.shape)
    lp_t = log_prob.detach().to(dtype)
    olp_t = old_log_prob.detach().to(dtype)
    ratio = [float(x) for x in torch.exp(lp_t - olp_t).reshape(-1).tolist()]
    lp = [float(x) for x in lp_t.reshape(-1).tolist()]
    olp = [float(x) for x in olp_t.reshape(-1).tolist()]
    a_all = [float(x) for x in adv.detach().to(dtype).reshape(-1).tolist()]
    msk = flat_bools(mask)
    n_tok = len(msk)
    # Python-float thresholds compared against a tensor are first cast to the tensor's dtype
    a_tol, r_hi, r_lo = rnd(1e-12), rnd(1 + 1e-12), rnd(1 - 1e-12)

    v = []
    for i in range(n_tok):
        if not msk[i]:
            continue
        r_i, a_i = ratio[i], a_all[i]
        if (a_i > a_tol and r_i > r_hi) or (a_i < -a_tol and r_i < r_lo):
            d = rnd(olp[i] - lp[i])
            v.append(rnd(d * d))
    n = len(v)

    t = None
    constrained = False
    if n > 0:
        vt = torch.tensor(v, dtype=dtype)
        m2_now = float(vt.sum()) / n
        if m2_now > tau + 1e-12:
            constrained = True
            srt = torch.sort(vt).values
            csum = torch.cumsum(srt, 0)
            srt_l = [float(x) for x in srt.tolist()]
            csum_l = [float(x) for x in csum.tolist()]
            S = tau * n
            if S <= 1e-12:
                t = 0.0
            else:
                k = 0
                for k in range(n):  # noqa: B007 - Python keeps the last k when nothing stops
                    if (srt_l[k] - 1e-12) * (n - k - 1) + csum_l[k] >= S - 1e-12:
                        break
                t = 0.0 if k == 0 else math.sqrt(max(srt_l[k - 1] - 1e-12, 0.0))
    if constrained:
        lower = float(torch.exp(torch.tensor(-t, dtype=torch.float32)))
        upper = float(torch.exp(torch.tensor(t, dtype=torch.float32)))
        eps_low = 1 - lower
        eps_high = upper - 1
    else:
        eps_low = RELEASED_EPS_LOW_UNCONSTRAINED
        eps_high = RELEASED_EPS_HIGH_UNCONSTRAINED
    if floor_low is not None:
        eps_low = max(eps_low, floor_low)
    if floor_high is not None:
        eps_high = max(eps_high, floor_high)
    lo_b, hi_b = rnd(1 - eps_low), rnd(1 + eps_high)

    terms = []
    clipped = [False] * n_tok
    for i in range(n_tok):
        if not msk[i]:
            continue
        r_i, a_i = ratio[i], a_all[i]
        l_unclipped = rnd(-a_i * r_i)
        l_clipped = rnd(-a_i * min(max(r_i, lo_b), hi_b))
        terms.append(max(l_unclipped, l_clipped))
        clipped[i] = l_clipped > l_unclipped
    loss = math.fsum(terms) / len(terms)
    return loss, t, torch.tensor(clipped, dtype=torch.bool).reshape(shape)


# --------------------------------------------------------------------------------------------
# aggregation oracle (verl semantics, loops)
# --------------------------------------------------------------------------------------------


def agg_oracle(loss_rows, mask_rows, mode, global_token_count=None, global_seq_count=None):
    """loss_rows / mask_rows: nested lists [B][L]. Fully-masked rows are excluded from seq counts."""
    if mode == "token-mean":
        total = math.fsum(x for lr, mr in zip(loss_rows, mask_rows) for x, m in zip(lr, mr) if m)
        cnt = sum(1 for mr in mask_rows for m in mr if m)
        return total / (global_token_count if global_token_count is not None else cnt)
    seq_vals = []
    for lr, mr in zip(loss_rows, mask_rows):
        n = sum(1 for m in mr if m)
        if n == 0:
            continue
        s = math.fsum(x for x, m in zip(lr, mr) if m)
        seq_vals.append(s / n if mode == "seq-mean-token-mean" else s)
    denom = global_seq_count if global_seq_count is not None else len(seq_vals)
    out = math.fsum(seq_vals) / denom
    if mode == "seq-mean-token-sum-norm":
        out /= len(mask_rows[0])
    return out


# --------------------------------------------------------------------------------------------
# random batches (test-only data generation)
# --------------------------------------------------------------------------------------------


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
    # padding garbage: the loss must ignore it entirely
    pad = ~mask
    new = torch.where(pad, torch.full_like(new, float("nan")), new)
    old = torch.where(pad & (torch.rand(B, L, generator=g) < 0.5), torch.full_like(old, -float("inf")), old)
    adv = torch.where(pad & (torch.rand(B, L, generator=g) < 0.3), torch.full_like(adv, float("nan")), adv)
    return new.to(dtype), old.to(dtype), adv.to(dtype), mask


# --------------------------------------------------------------------------------------------
# small hand-built batches
# --------------------------------------------------------------------------------------------


def from_log_ratios(rows, *, dtype=torch.float32, old=0.0):
    """rows: list of rows of tokens ``(log_ratio, adv)`` or ``None`` (padding).

    Returns (log_prob, old_log_prob, advantages, response_mask); rows are right-padded with
    padding tokens; padding carries NaN log-probs and advantages (they must be ignored).
    """
    L = max(len(r) for r in rows)
    lp, olp, adv, msk = [], [], [], []
    for row in rows:
        row = list(row) + [None] * (L - len(row))
        lp.append([float("nan") if t is None else old + t[0] for t in row])
        olp.append([float("nan") if t is None else old for t in row])
        adv.append([float("nan") if t is None else t[1] for t in row])
        msk.append([t is not None for t in row])
    f = lambda x: torch.tensor(x, dtype=torch.float64).to(dtype)  # noqa: E731
    return f(lp), f(olp), f(adv), torch.tensor(msk, dtype=torch.bool)


def from_log_probs(rows, *, dtype=torch.float32):
    """rows: list of rows of tokens ``(log_prob, old_log_prob, adv)`` or ``None`` (padding)."""
    L = max(len(r) for r in rows)
    lp, olp, adv, msk = [], [], [], []
    for row in rows:
        row = list(row) + [None] * (L - len(row))
        lp.append([float("nan") if t is None else t[0] for t in row])
        olp.append([float("nan") if t is None else t[1] for t in row])
        adv.append([float("nan") if t is None else t[2] for t in row])
        msk.append([t is not None for t in row])
    f = lambda x: torch.tensor(x, dtype=torch.float64).to(dtype)  # noqa: E731
    return f(lp), f(olp), f(adv), torch.tensor(msk, dtype=torch.bool)


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
