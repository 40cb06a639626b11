"""Adapter from verl's policy-loss call to ``m2po.losses``.

verl 0.9.1 (``verl.workers.utils.losses.ppo_loss``) calls a registered loss once per micro-batch and
data-parallel rank as::

    loss, metrics = fn(old_log_prob=..., log_prob=..., advantages=..., response_mask=...,
                       loss_agg_mode=config.loss_agg_mode, config=actor_config, rollout_is_weights=...)

and backpropagates ``loss`` directly; FSDP then *averages* gradients over the ``dp_size`` ranks. verl's
own losses therefore normalise by the global mini-batch: token-mean is ``Σ_local / batch_num_tokens ·
dp_size`` (``core_algos.agg_loss`` with ``config.global_batch_info``). Our losses take the denominator
instead, so the adapter passes ``global_token_count = batch_num_tokens / dp_size`` (and
``global_seq_count = global_batch_size / dp_size`` for the sequence modes): after the gradient average
this is the mini-batch token mean of Eq. 5 (all response tokens in the denominator, footnote 2).

Loss parameters come from the actor config (:func:`resolve_loss_params`); ``rollout_is_weights``
(verl's rollout-correction / TIS weights) is passed through unchanged. The aggregation is
:func:`resolve_agg_mode`'s: a loss whose paper defines one (GSPO's sequence mean) keeps it.

Exact mini-batch metrics. verl averages each metric over the micro-batches and ranks of a mini-batch,
so a ratio such as ``m2`` (Σ (log r)² / #tokens over the trust region) would be a mean of per-micro-batch
ratios, not the mini-batch's value that Algorithm 1 thresholded, and ``ratio_max`` a mean of maxima. Every
call therefore also reports the sums behind ``m2``, ``m2_all``, ``m2_after`` and ``ess``
(``actor/m2po/sum/*``), and :func:`exact_minibatch_metrics` (called by the M2PO worker once per
mini-batch on the calls of all ranks) combines the calls exactly: sums of sums, token-weighted sums for
the metrics over all response tokens, min/max for the ratio extremes, the total token count.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch

from m2po.losses import LOG_RATIO_CLAMP, METRIC_NAMES, get_policy_loss, loss_info, m2po_mask
from m2po.losses.common import SUM_METRICS
from m2po.losses.registry import KEEP_MASK_PARAM, PROXIMAL_PARAM

from .config import policy_loss_settings, registry_name

__all__ = [
    "KEEP_MASK_KEY",
    "SUM_PREFIX",
    "TOKEN_MEAN_METRICS",
    "exact_minibatch_metrics",
    "resolve_agg_mode",
    "M2POLossFn",
    "global_denominators",
    "keep_mask_context",
    "make_verl_policy_loss",
    "minibatch_tau",
    "resolve_loss_params",
    "verl_metrics",
]

#: the ``minibatch``-scope keep-mask of the micro-batch being computed (set by the M2PO worker)
_KEEP_MASK: ContextVar[torch.Tensor | None] = ContextVar("m2po_keep_mask", default=None)


@contextmanager
def keep_mask_context(mask: torch.Tensor | None) -> Iterator[None]:
    """Make ``mask`` (``[rows, response_len]``, aligned with the micro-batch's ``response_mask``) the
    keep-mask that a loss with a batch-level mask (``m2po``) uses for calls inside this block."""
    token = _KEEP_MASK.set(mask)
    try:
        yield
    finally:
        _KEEP_MASK.reset(token)


def current_keep_mask() -> torch.Tensor | None:
    return _KEEP_MASK.get()


def resolve_loss_params(name: str, config: Any) -> dict[str, Any]:
    """Keyword parameters of loss ``name`` from verl's actor config.

    * a loss whose ε-clip is the trainer's PPO clip ratio (``loss_info(name).trainer_clip_ratio``: ``grpo``):
      ε_low/ε_high from verl's ``clip_ratio_low/high`` (falling back to ``clip_ratio`` like verl's
      ``vanilla``); dual clip with ``clip_ratio_c`` only when ``policy_loss.dual_clip`` (the paper runs
      GRPO with dual clip off, App. B);
    * a loss with a τ (``m2po``, ``m2po_released``): ``policy_loss.tau``; one with the released floors
      (``m2po_released``): ``policy_loss.floor_low/high``;
    * every other parameter: its own paper's defaults (``m2po.losses``);
    * ``policy_loss.loss_params`` overrides all of the above.
    """
    settings = policy_loss_settings(config.get("policy_loss", None))
    info = loss_info(name)
    params: dict[str, Any] = {}
    if info.trainer_clip_ratio:
        clip = config.get("clip_ratio", 0.2)
        low, high = config.get("clip_ratio_low", None), config.get("clip_ratio_high", None)
        params["clip_low"] = float(low if low is not None else clip)
        params["clip_high"] = float(high if high is not None else clip)
        params["clip_c"] = float(config.get("clip_ratio_c", 3.0)) if settings["dual_clip"] else None
    if info.tau_param is not None:
        params[info.tau_param] = float(settings["tau"])
    for floor in ("floor_low", "floor_high"):
        if floor in info.defaults:
            params[floor] = settings[floor]
    params.update(settings["loss_params"])
    return params


def minibatch_tau(actor_config: Any) -> float | None:
    """τ when the actor trains a loss with a batch-level mask (``m2po``) with ``mask_scope=minibatch``; else
    None (nothing to precompute). The loss's own τ (``policy_loss.tau``, overridden by ``loss_params``), so that
    the mask and the loss agree."""
    if actor_config is None:
        return None
    policy_loss = actor_config.get("policy_loss", None)
    name = registry_name(policy_loss.get("loss_mode", "vanilla") if policy_loss is not None else "vanilla")
    settings = policy_loss_settings(policy_loss)
    if name is None or loss_info(name).batch_mask is None or settings["mask_scope"] != "minibatch":
        return None
    if loss_info(name).batch_mask is not m2po_mask:
        raise NotImplementedError(
            f"mask_scope=minibatch: the worker computes Algorithm 1's mask across ranks (distributed_m2po_mask), "
            f"not {name!r}'s batch mask; use mask_scope=microbatch"
        )
    return float(resolve_loss_params(name, actor_config)[loss_info(name).tau_param])


def resolve_agg_mode(name: str, config: Any, loss_agg_mode: str) -> str:
    """The aggregation of loss ``name``: ``policy_loss.loss_agg_mode`` if set, else the loss's own (its
    registry entry's ``default_agg``, e.g. GSPO's ``seq-mean-token-mean``), else verl's ``loss_agg_mode``."""
    chosen = policy_loss_settings(config.get("policy_loss", None))["loss_agg_mode"]
    return chosen or loss_info(name).default_agg or loss_agg_mode


def global_denominators(
    config: Any, loss_agg_mode: str, response_mask: torch.Tensor
) -> tuple[str, float | None, float | None]:
    """``(our_mode, global_token_count, global_seq_count)`` reproducing verl's ``agg_loss`` with
    ``config.global_batch_info``; ``None`` counts fall back to the micro-batch's own (dp_size 1)."""
    info = config.get("global_batch_info", None) or {}
    dp = int(info.get("dp_size") or 1)
    tokens = info.get("batch_num_tokens")
    seqs = info.get("global_batch_size")
    scale = info.get("loss_scale_factor", config.get("loss_scale_factor", None))
    need = "batch_num_tokens" if loss_agg_mode == "token-mean" else "global_batch_size"
    if dp > 1 and loss_agg_mode != "token-sum" and (tokens if need == "batch_num_tokens" else seqs) is None:
        raise ValueError(f"config.global_batch_info[{need!r}] is required when dp_size > 1 (verl sets it in ppo_loss)")
    if loss_agg_mode == "token-mean":
        return "token-mean", (float(tokens) / dp if tokens is not None else None), None
    if loss_agg_mode == "token-sum":  # verl: Σ_local · dp_size
        return "token-mean", 1.0 / dp, None
    seq_count = float(seqs) / dp if seqs is not None else None
    if loss_agg_mode == "seq-mean-token-sum-norm" and scale is not None:
        # ours divides by rows · response_len; verl by rows · loss_scale_factor
        rows = seq_count if seq_count is not None else float(response_mask.bool().any(-1).sum())
        return loss_agg_mode, None, rows * float(scale) / response_mask.shape[-1]
    return loss_agg_mode, None, seq_count


def verl_metrics(name: str, metrics: dict[str, float], dual_clip_frac: float = 0.0) -> dict[str, float]:
    """verl's three standard names (``actor/pg_clipfrac``, ``actor/ppo_kl``, ``actor/pg_clipfrac_lower``)
    plus every metric of docs/losses.md as ``actor/m2po/<name>``; a loss's own metrics, already namespaced
    by the loss (``m2po/tau``, ``m2po_released/t``), become ``actor/<namespace>/<name>``. verl averages them
    over micro-batches and ranks (``AggregationType.MEAN``), so e.g. ``ratio_max`` would be a mean of
    micro-batch maxima; the M2PO worker replaces them by :func:`exact_minibatch_metrics`."""
    out = {
        "actor/pg_clipfrac": float(metrics["clipped_frac"]),
        "actor/ppo_kl": float(metrics["kl_k1"]),
        "actor/pg_clipfrac_lower": float(dual_clip_frac),
    }
    for k, v in metrics.items():
        namespaced = "/" in k and not k.startswith("sum/")
        out[f"actor/{k}" if namespaced else f"actor/m2po/{k}"] = float(v)
    return out


#: the sums reported per call, as verl logs them (``actor/m2po/sum/<key>``)
SUM_PREFIX = "actor/m2po/sum/"
#: metrics that are means over all response tokens of the call (``n_tokens``): combined token-weighted
TOKEN_MEAN_METRICS = tuple(
    name for name in METRIC_NAMES if name not in (*SUM_METRICS, "ess", "ratio_min", "ratio_max", "n_tokens")
)


def exact_minibatch_metrics(calls: dict[str, Sequence[float]]) -> dict[str, float]:
    """The metrics of one optimizer mini-batch from those of its loss calls (micro-batches × ranks).

    ``calls`` maps a metric name of ``m2po.losses`` (``m2``, …, ``n_tokens``) and each sum ``sum/<key>``
    to one value per call, in the same call order for every key. Returns every metric of
    ``METRIC_NAMES`` that the calls allow, as the loss would report it for the whole mini-batch: ``m2``,
    ``m2_all``, ``m2_after`` as ratios of summed sums, ``ess = (Σ r)² / (Σ n · Σ r²)``, ``ratio_min`` /
    ``ratio_max`` over the calls with tokens, ``n_tokens`` summed, and the other metrics (fractions of
    response tokens, ``ratio_mean``, ``kl_k1``, ``kl_k3``) weighted by each call's ``n_tokens``."""
    out: dict[str, float] = {}

    def total(key: str) -> float:
        return math.fsum(float(v) for v in calls[key])

    def ratio(num: float, den: float) -> float:
        return num / den if den > 0 else 0.0

    sums = {k[len("sum/") :] for k in calls if k.startswith("sum/")}
    for name, (num, den) in SUM_METRICS.items():
        if {num, den} <= sums:
            out[name] = ratio(total(f"sum/{num}"), total(f"sum/{den}"))
    if {"r", "r_sq", "n_all"} <= sums:
        r = total("sum/r")
        out["ess"] = ratio(r * r, total("sum/n_all") * total("sum/r_sq"))
    if "n_tokens" not in calls:
        return out
    tokens = [float(n) for n in calls["n_tokens"]]
    n = math.fsum(tokens)
    out["n_tokens"] = n
    for name in TOKEN_MEAN_METRICS:
        if name in calls:
            out[name] = ratio(math.fsum(float(v) * w for v, w in zip(calls[name], tokens, strict=True)), n)
    for name, pick in (("ratio_min", min), ("ratio_max", max)):
        if name in calls:
            values = [float(v) for v, w in zip(calls[name], tokens, strict=True) if w > 0]
            out[name] = pick(values) if values else math.nan
    return out


def make_verl_policy_loss(name: str) -> Callable[..., tuple[torch.Tensor, dict[str, float]]]:
    """A function with verl's policy-loss signature that computes ``m2po.losses`` loss ``name``."""
    fn = get_policy_loss(name)
    info = loss_info(name)

    def verl_policy_loss(
        old_log_prob: torch.Tensor,
        log_prob: torch.Tensor,
        advantages: torch.Tensor,
        response_mask: torch.Tensor,
        loss_agg_mode: str = "token-mean",
        config: Any = None,
        rollout_is_weights: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        if config is None:
            raise ValueError(f"the {name!r} policy loss needs verl's actor config (config=...)")
        params = resolve_loss_params(name, config)
        agg = resolve_agg_mode(name, config, loss_agg_mode)
        mode, token_count, seq_count = global_denominators(config, agg, response_mask)
        if info.batch_mask is not None:
            scope = policy_loss_settings(config.get("policy_loss", None))["mask_scope"]
            keep = current_keep_mask()
            if scope == "minibatch":
                if keep is None:
                    raise RuntimeError(
                        "policy_loss.mask_scope='minibatch' needs the mini-batch keep-mask, which only the M2PO "
                        "worker computes: launch with `python -m m2po.verl_plugin.main` (or use 'microbatch')"
                    )
                params[KEEP_MASK_PARAM] = keep.to(device=log_prob.device, dtype=torch.bool)
        if info.takes_proximal:
            # verl's decoupled layout: old_log_prob is the *proximal* policy and rollout_is_weights carries
            # π_prox/π_behav (algorithm.rollout_correction), i.e. AReaL's Eq. 5 behaviour weight.
            params[PROXIMAL_PARAM] = old_log_prob
        loss, metrics = fn(
            log_prob,
            old_log_prob,
            advantages,
            response_mask,
            loss_agg_mode=mode,
            global_token_count=token_count,
            global_seq_count=seq_count,
            rollout_is_weights=rollout_is_weights,
            with_sums=True,
            **params,
        )
        dual = 0.0
        if params.get("clip_c") is not None:  # dual clip (the loss accepts clip_c, or fn raised above)
            with torch.no_grad():
                m = response_mask.bool()
                log_ratio = log_prob.detach().float() - old_log_prob.float()
                ratio = torch.exp(log_ratio.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))
                dual = float(((advantages < 0) & (ratio > params["clip_c"]) & m).sum() / m.sum().clamp(min=1))
        return loss, verl_metrics(name, metrics, dual)

    verl_policy_loss.__name__ = f"m2po_verl_{name}"
    verl_policy_loss.__doc__ = f"verl adapter of m2po.losses {name!r}.\n\n{fn.__doc__ or ''}"
    return verl_policy_loss


#: tensor field of the mini-batch TensorDict holding the ``minibatch``-scope keep-mask
KEEP_MASK_KEY = "m2po_keep_mask"


class M2POLossFn:
    """verl's loss function (``partial(ppo_loss, config=actor_config)``) with the micro-batch's keep-mask
    made visible to a policy loss with a batch-level mask (``m2po``); identical to the wrapped function
    otherwise."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    @property
    def actor_config(self) -> Any:
        return getattr(self.inner, "keywords", {}).get("config")

    def __call__(self, model_output: Any, data: Any, dp_group: Any = None) -> Any:
        """``data``: the micro-batch TensorDict."""
        mask = data[KEEP_MASK_KEY] if KEEP_MASK_KEY in data.keys() else None
        with keep_mask_context(mask):
            return self.inner(model_output=model_output, data=data, dp_group=dp_group)
