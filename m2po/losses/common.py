"""Shared pieces of every policy loss: input checks, the log-ratio, trust-region quadrants,
loss aggregation and the metric set that every loss reports under the same names.

Paper references are to Zheng, Zhao, Chen (arXiv 2510.01161): §5.2 defines the trust-region
tokens, Eq. 4 the second moment M2, footnote 2 the all-response-tokens denominator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..loss_names import PAPER_TAU

#: log r is clamped to this range before exp() so r stays finite: an inf ratio times a zero
#: mask is NaN, and so is its gradient through torch.where. Only ratios beyond e^20 ≈ 4.8e8 are
#: affected, which every trust region has long since removed; M2 uses the unclamped log r.
LOG_RATIO_CLAMP = 20.0

AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")

METRIC_NAMES = (
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
)


@dataclass
class PolicyBatch:
    """Validated inputs in compute precision. ``log_ratio`` is zero at padding positions."""

    log_prob: torch.Tensor  # differentiable, compute dtype
    old_log_prob: torch.Tensor
    advantages: torch.Tensor
    mask: torch.Tensor  # bool
    log_ratio: torch.Tensor  # log_prob - old_log_prob (differentiable), 0 at padding

    @property
    def ratio(self) -> torch.Tensor:
        return torch.exp(self.log_ratio.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))

    @property
    def n_tokens(self) -> int:
        return int(self.mask.sum())

    def align(self, t: torch.Tensor) -> torch.Tensor:
        """Another per-token input in compute precision, zeroed at padding."""
        zero = torch.zeros((), dtype=self.log_ratio.dtype, device=t.device)
        return torch.where(self.mask, t.to(self.log_ratio.dtype), zero)


@dataclass
class TokenObjective:
    """What a loss computes per token before aggregation.

    ``loss_mat`` is the per-token loss (to be minimised). ``clipped`` marks tokens whose objective
    the loss's trust region changed (clip or mask); ``zero_grad`` marks those whose policy
    gradient it removed entirely (for CISPO, TOPR and GPPO clipped tokens keep a gradient).
    """

    loss_mat: torch.Tensor
    clipped: torch.Tensor
    zero_grad: torch.Tensor
    extra_metrics: dict[str, float] = field(default_factory=dict)


def _compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    return torch.float64 if all(t.dtype == torch.float64 for t in tensors) else torch.float32


def _check_float(name: str, t: object, shape: torch.Size | None) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"`{name}` must be a torch.Tensor of shape [batch, response_len], got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"`{name}` must be a floating-point tensor (float32/float64/bf16/fp16), got {t.dtype}")
    if t.dim() != 2:
        raise ValueError(f"`{name}` must have shape [batch, response_len], got {tuple(t.shape)}")
    if shape is not None and t.shape != shape:
        raise ValueError(
            f"`{name}` has shape {tuple(t.shape)} but `log_prob` has {tuple(shape)}; "
            "pass tensors aligned on the same response tokens"
        )


def validate_tau(tau: float) -> float:
    if not isinstance(tau, int | float) or math.isnan(tau) or tau < 0:
        raise ValueError(f"`tau` must be a number >= 0 (the paper uses {PAPER_TAU}), got {tau!r}")
    return float(tau)


def prepare_batch(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    **extra: torch.Tensor | None,
) -> PolicyBatch:
    """Check shapes, dtypes and finiteness (fail closed), then upcast to the compute dtype.

    Values at padding positions are ignored: they may be anything, NaN included.
    Extra per-token tensors (``proximal_log_prob`` ...) are checked the same way.
    """
    _check_float("log_prob", log_prob, None)
    shape = log_prob.shape
    _check_float("old_log_prob", old_log_prob, shape)
    _check_float("advantages", advantages, shape)
    if not isinstance(response_mask, torch.Tensor) or response_mask.shape != shape:
        got = tuple(response_mask.shape) if isinstance(response_mask, torch.Tensor) else type(response_mask)
        raise ValueError(f"`response_mask` must be a tensor of shape {tuple(shape)}, got {got}")
    mask = response_mask.bool() if response_mask.dtype != torch.bool else response_mask
    if response_mask.dtype != torch.bool and not torch.equal(mask.to(response_mask.dtype), response_mask):
        raise ValueError("`response_mask` must be boolean or contain only 0 and 1")
    if not bool(mask.any()):
        raise ValueError("`response_mask` selects no token: the loss of an empty batch is undefined; drop the batch")
    dtype = _compute_dtype(log_prob, old_log_prob)
    named = {"log_prob": log_prob, "old_log_prob": old_log_prob, "advantages": advantages}
    for name, t in extra.items():
        if t is not None:
            _check_float(name, t, shape)
            named[name] = t
    for name, t in named.items():
        bad_mask = ~torch.isfinite(t.detach()) & mask
        if bool(bad_mask.any()):
            bad = bad_mask.nonzero()[0].tolist()
            raise ValueError(f"`{name}` has a NaN or Inf at response position {bad} (row, col); fix the producer")
    zero = torch.zeros((), dtype=dtype, device=log_prob.device)
    lp = torch.where(mask, log_prob.to(dtype), zero)
    old = torch.where(mask, old_log_prob.to(dtype), zero)
    adv = torch.where(mask, advantages.to(dtype), zero)
    return PolicyBatch(log_prob=lp, old_log_prob=old, advantages=adv, mask=mask, log_ratio=lp - old)


def trust_region(batch: PolicyBatch, tol: float = 0.0) -> torch.Tensor:
    """Tokens PPO's min/clip can act on (§5.2): (A > 0 and r > 1) or (A < 0 and r < 1).

    Tokens with A = 0 are never in the set. ``tol`` widens both strict inequalities (the
    released code uses 1e-12).
    """
    lr = batch.log_ratio.detach()
    adv = batch.advantages
    if tol:
        r = torch.exp(lr)
        pos = (adv > tol) & (r > 1 + tol)
        neg = (adv < -tol) & (r < 1 - tol)
    else:
        pos = (adv > 0) & (lr > 0)
        neg = (adv < 0) & (lr < 0)
    return (pos | neg) & batch.mask


def sequence_log_ratio_mean(batch: PolicyBatch) -> torch.Tensor:
    """Per-row mean of log r over response tokens, shape [batch, 1] (0 for empty rows)."""
    lengths = batch.mask.sum(-1, keepdim=True).clamp(min=1).to(batch.log_ratio.dtype)
    return batch.log_ratio.sum(-1, keepdim=True) / lengths


def agg_loss(
    loss_mat: torch.Tensor,
    mask: torch.Tensor,
    mode: str = "token-mean",
    global_token_count: float | None = None,
    global_seq_count: float | None = None,
) -> torch.Tensor:
    """Aggregate a per-token loss into a scalar (verl's ``agg_loss`` modes).

    ``token-mean``: Σ loss / N_tokens. ``seq-mean-token-sum``: mean over rows of Σ_t loss.
    ``seq-mean-token-mean``: mean over rows of the row's token mean. ``seq-mean-token-sum-norm``
    (Dr. GRPO): Σ loss / (rows · response_len), a constant normaliser. ``global_token_count``
    and ``global_seq_count`` replace the micro-batch's own counts so that gradient-accumulated
    micro-batches sum to exactly the mini-batch loss. Rows without response tokens count as
    rows in the seq modes only if they are in ``global_seq_count``; locally they are skipped.
    """
    if mode not in AGG_MODES:
        raise ValueError(f"`loss_agg_mode` must be one of {AGG_MODES}, got {mode!r}")
    m = mask.to(loss_mat.dtype)
    masked = torch.where(mask, loss_mat, torch.zeros((), dtype=loss_mat.dtype, device=loss_mat.device))
    rows = mask.any(-1)
    if mode == "token-mean":
        denom = global_token_count if global_token_count is not None else m.sum().clamp(min=1)
        return masked.sum() / denom
    if mode == "seq-mean-token-sum-norm":
        n_rows = global_seq_count if global_seq_count is not None else rows.sum().clamp(min=1)
        return masked.sum() / (n_rows * loss_mat.shape[-1])
    seq = masked.sum(-1)
    if mode == "seq-mean-token-mean":
        seq = seq / m.sum(-1).clamp(min=1)
    n_rows = global_seq_count if global_seq_count is not None else rows.sum().clamp(min=1)
    return seq.sum() / n_rows


@torch.no_grad()
def standard_metrics(batch: PolicyBatch, clipped: torch.Tensor, zero_grad: torch.Tensor) -> dict[str, float]:
    """The metric set every loss reports (docs/losses.md), computed with one host sync."""
    mask = batch.mask
    dt = batch.log_ratio.dtype
    lr = batch.log_ratio.detach()
    n = mask.sum().to(dt)
    sq = lr.square()
    tr = trust_region(batch)
    clipped = clipped & mask
    active_tr = tr & ~zero_grad
    adv = batch.advantages
    r = batch.ratio.detach()
    big = torch.tensor(float("inf"), dtype=dt, device=lr.device)

    def frac(sel: torch.Tensor) -> torch.Tensor:
        return sel.sum().to(dt) / n

    def mean_over(vals: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
        return (vals * sel).sum() / sel.sum().clamp(min=1).to(dt)

    rm = torch.where(mask, r, torch.zeros((), dtype=dt, device=lr.device))
    values = torch.stack(
        [
            mean_over(sq, tr),
            mean_over(sq, mask),
            mean_over(sq, active_tr),
            frac(clipped),
            frac(zero_grad & mask),
            frac(clipped & (adv > 0) & (lr > 0)),
            frac(clipped & (adv > 0) & (lr <= 0)),
            frac(clipped & (adv <= 0) & (lr > 0)),
            frac(clipped & (adv <= 0) & (lr <= 0)),
            frac(tr),
            rm.sum() / n,
            torch.where(mask, r, big).min(),
            torch.where(mask, r, -big).max(),
            mean_over(-lr, mask),
            mean_over(r - 1 - lr, mask),
            rm.sum().square() / (n * rm.square().sum()),
            n,
        ]
    )
    return dict(zip(METRIC_NAMES, values.tolist(), strict=True))


#: sums behind the ratio metrics (numerator, denominator) — :func:`metric_sums`
SUM_METRICS = {
    "m2": ("sq_tr", "n_tr"),
    "m2_all": ("sq_all", "n_all"),
    "m2_after": ("sq_active", "n_active"),
}


@torch.no_grad()
def metric_sums(batch: PolicyBatch, zero_grad: torch.Tensor) -> dict[str, float]:
    """The sums behind ``m2``, ``m2_all``, ``m2_after`` and ``ess`` of :func:`standard_metrics`, so that a
    batch split into parts (micro-batches, ranks) can report the quantities of the whole: e.g. the whole
    batch's ``m2`` is Σ ``sq_tr`` / Σ ``n_tr`` over the parts, and ``ess`` is (Σ ``r``)² / (Σ ``n_all`` ·
    Σ ``r_sq``). One host sync."""
    mask = batch.mask
    dt = batch.log_ratio.dtype
    sq = batch.log_ratio.detach().square()
    tr = trust_region(batch)
    active = tr & ~zero_grad
    r = torch.where(mask, batch.ratio.detach(), torch.zeros((), dtype=dt, device=sq.device))
    values = torch.stack(
        [
            (sq * tr).sum(), tr.sum().to(dt), (sq * mask).sum(), mask.sum().to(dt), (sq * active).sum(),
            active.sum().to(dt), r.sum(), r.square().sum(),
        ]
    )  # fmt: skip
    keys = ("sq_tr", "n_tr", "sq_all", "n_all", "sq_active", "n_active", "r", "r_sq")
    return dict(zip(keys, values.tolist(), strict=True))
