"""One registry of policy losses, by name (like verl's ``register_policy_loss``).

A loss is registered as a *token objective*: a function of a validated
:class:`~m2po.losses.common.PolicyBatch` (and its own keyword parameters) that returns a
:class:`~m2po.losses.common.TokenObjective`. The registry wraps it into the public signature

    fn(log_prob, old_log_prob, advantages, response_mask, **params) -> (loss, metrics)

and adds what every loss shares: input checks, the optional truncated importance-sampling
weight (TIS), the aggregation mode, and the metric set.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .common import AGG_MODES, PolicyBatch, TokenObjective, agg_loss, metric_sums, prepare_batch, standard_metrics

TokenObjectiveFn = Callable[..., TokenObjective]
PolicyLossFn = Callable[..., tuple[torch.Tensor, dict[str, float]]]

#: extra per-token log-prob tensors a loss may take; they are validated like the log-probs.
TENSOR_PARAMS = ("proximal_log_prob",)

_REGISTRY: dict[str, PolicyLossFn] = {}


@dataclass(frozen=True)
class LossInfo:
    name: str
    objective: TokenObjectiveFn
    defaults: dict[str, object]
    reference: str
    #: the aggregation the loss's paper defines (None: token-mean); used when the caller passes none
    default_agg: str | None = None


_INFO: dict[str, LossInfo] = {}


def truncated_is_weight(
    old_log_prob: torch.Tensor,
    rollout_log_prob: torch.Tensor,
    cap: float,
    mask: torch.Tensor,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """TIS (Yao et al. 2025, "Your efficient RL framework secretly brings you off-policy RL"):
    w = min(π_old / π_rollout, C), detached — corrects the inference/training engine mismatch."""
    if cap is None or cap <= 0:
        raise ValueError(f"`tis_cap` must be > 0 when `rollout_log_prob` is given, got {cap!r}")
    log_w = (old_log_prob.detach().to(dtype) - rollout_log_prob.detach().to(dtype)).clamp(max=20.0)
    w = torch.exp(log_w).clamp(max=cap)
    return torch.where(mask, w, torch.zeros_like(w))


def register_policy_loss(
    name: str, reference: str = "", default_agg: str | None = None
) -> Callable[[TokenObjectiveFn], TokenObjectiveFn]:
    """Decorator: register ``objective(batch, **params) -> TokenObjective`` under ``name``; ``default_agg``
    is the aggregation its paper defines (e.g. GSPO's sequence mean), used when a call passes none."""
    if default_agg is not None and default_agg not in AGG_MODES:
        raise ValueError(f"`default_agg` must be one of {AGG_MODES}, got {default_agg!r}")

    def decorator(objective: TokenObjectiveFn) -> TokenObjectiveFn:
        if name in _REGISTRY:
            raise ValueError(f"policy loss {name!r} is already registered")
        sig = inspect.signature(objective)
        defaults = {k: p.default for k, p in sig.parameters.items() if k != "batch" and p.default is not p.empty}
        accepted = set(sig.parameters) - {"batch"}

        def policy_loss(
            log_prob: torch.Tensor,
            old_log_prob: torch.Tensor,
            advantages: torch.Tensor,
            response_mask: torch.Tensor,
            *,
            loss_agg_mode: str | None = None,
            global_token_count: float | None = None,
            global_seq_count: float | None = None,
            rollout_is_weights: torch.Tensor | None = None,
            rollout_log_prob: torch.Tensor | None = None,
            tis_cap: float | None = None,
            with_sums: bool = False,
            **params: object,
        ) -> tuple[torch.Tensor, dict[str, float]]:
            unknown = set(params) - accepted
            if unknown:
                raise TypeError(
                    f"policy loss {name!r} got unknown parameter(s) {sorted(unknown)}; "
                    f"it accepts {sorted(defaults)} plus the common ones (loss_agg_mode, "
                    "global_token_count, global_seq_count, rollout_is_weights, rollout_log_prob, tis_cap)"
                )
            if rollout_is_weights is not None and rollout_log_prob is not None:
                raise ValueError(
                    f"policy loss {name!r}: give either `rollout_is_weights` (importance weights computed by the "
                    "caller, e.g. verl's rollout correction) or `rollout_log_prob` (TIS computed here), not both: "
                    "each corrects for the rollout policy, so both together would correct twice"
                )
            extra = {k: params[k] for k in TENSOR_PARAMS if k in params}
            batch: PolicyBatch = prepare_batch(
                log_prob,
                old_log_prob,
                advantages,
                response_mask,
                rollout_log_prob=rollout_log_prob,
                **extra,
            )
            obj = objective(batch, **params)
            loss_mat = obj.loss_mat
            if rollout_is_weights is not None:
                if rollout_is_weights.shape != loss_mat.shape:
                    raise ValueError(
                        f"`rollout_is_weights` has shape {tuple(rollout_is_weights.shape)}, "
                        f"expected {tuple(loss_mat.shape)}"
                    )
                loss_mat = loss_mat * rollout_is_weights.detach().to(loss_mat.dtype)
            if rollout_log_prob is not None:
                loss_mat = loss_mat * truncated_is_weight(
                    old_log_prob, rollout_log_prob, tis_cap, batch.mask, dtype=loss_mat.dtype
                )
            mode = loss_agg_mode or default_agg or "token-mean"
            loss = agg_loss(loss_mat, batch.mask, mode, global_token_count, global_seq_count)
            metrics = standard_metrics(batch, obj.clipped, obj.zero_grad)
            metrics.update(obj.extra_metrics)
            if with_sums:  # the sums behind the ratio metrics, keyed "sum/<name>" (common.metric_sums)
                metrics.update({f"sum/{k}": v for k, v in metric_sums(batch, obj.zero_grad).items()})
            return loss, metrics

        policy_loss.__name__ = f"{name}_policy_loss"
        policy_loss.__doc__ = objective.__doc__
        policy_loss.__wrapped__ = objective  # type: ignore[attr-defined]
        _REGISTRY[name] = policy_loss
        _INFO[name] = LossInfo(name, objective, defaults, reference, default_agg)
        return objective

    return decorator


def get_policy_loss(name: str) -> PolicyLossFn:
    """Return ``fn(log_prob, old_log_prob, advantages, response_mask, **params) -> (loss, metrics)``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown policy loss {name!r}; available: {available_losses()}") from None


def loss_info(name: str) -> LossInfo:
    get_policy_loss(name)
    return _INFO[name]


def available_losses() -> list[str]:
    return sorted(_REGISTRY)
