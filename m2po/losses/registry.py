"""One registry of policy losses, by name (like verl's ``register_policy_loss``).

A loss is registered as a *token objective*: a function of a validated
:class:`~m2po.losses.common.PolicyBatch` (and its own keyword parameters) that returns a
:class:`~m2po.losses.common.TokenObjective`. The registry wraps it into the public signature

    fn(log_prob, old_log_prob, advantages, response_mask, **params) -> (loss, metrics)

and adds what every loss shares: input checks, the optional truncated importance-sampling
weight (TIS), the aggregation mode, and the metric set.

Callers ask :func:`loss_info` what a loss needs instead of comparing its name (prime-rl declares a
config per loss the same way): its default aggregation, its τ parameter, whether it takes the
proximal policy's log-probs, a batch-level mask to compute once per optimizer mini-batch, and whether
its ε-clip is the trainer's PPO clip ratio. Each is declared with the loss's registration.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property

import torch

from .common import (
    AGG_MODES,
    LOG_RATIO_CLAMP,
    PolicyBatch,
    TokenObjective,
    agg_loss,
    metric_sums,
    prepare_batch,
    standard_metrics,
)

TokenObjectiveFn = Callable[..., TokenObjective]
PolicyLossFn = Callable[..., tuple[torch.Tensor, dict[str, float]]]

#: the parameter of a loss that takes the proximal policy's log-probs (decoupled PPO's π_prox)
PROXIMAL_PARAM = "proximal_log_prob"
#: the parameter of a loss with a batch-level mask that takes a slice of it
KEEP_MASK_PARAM = "keep_mask"
#: extra per-token log-prob tensors a loss may take; they are validated like the log-probs.
TENSOR_PARAMS = (PROXIMAL_PARAM,)

_REGISTRY: dict[str, PolicyLossFn] = {}


@dataclass(frozen=True)
class LossInfo:
    """What a caller may ask about a registered loss (instead of comparing its name)."""

    name: str
    objective: TokenObjectiveFn
    #: the objective's keyword parameters with their defaults (tensor parameters included)
    defaults: dict[str, object]
    reference: str
    #: the aggregation the loss's paper defines (None: token-mean); used when the caller passes none
    default_agg: str | None = None
    #: the name of its M2 budget τ (Algorithm 1), None if it has none
    tau_param: str | None = None
    #: ``mask(log_prob, old_log_prob, advantages, response_mask, **params) -> keep`` (bool): a mask that is
    #: not linear in how a batch is split, so the caller computes it once per optimizer mini-batch and
    #: passes each micro-batch its slice as ``keep_mask`` (:meth:`batch_keep_mask`); None: nothing to share
    batch_mask: Callable[..., torch.Tensor] | None = None
    #: its ``clip_low``/``clip_high``/``clip_c`` are PPO's clip ratio, which a trainer configures for
    #: itself (verl: ``actor.clip_ratio_low/high/c``); False: the clip values are the loss's own paper's
    trainer_clip_ratio: bool = False

    @property
    def config_params(self) -> frozenset[str]:
        """The parameters a config may set (its scalar keyword parameters): not the per-token tensors a trainer
        fills (:data:`TENSOR_PARAMS`, the batch mask's ``keep_mask``)."""
        return frozenset(self.defaults) - {KEEP_MASK_PARAM, *TENSOR_PARAMS}

    @property
    def takes_proximal(self) -> bool:
        """The loss needs the proximal policy's log-probs (``proximal_log_prob``), e.g. decoupled PPO."""
        return PROXIMAL_PARAM in self.defaults

    def batch_keep_mask(
        self,
        log_prob: torch.Tensor,
        old_log_prob: torch.Tensor,
        advantages: torch.Tensor,
        response_mask: torch.Tensor,
        params: Mapping[str, object],
    ) -> torch.Tensor:
        """:attr:`batch_mask` over a whole optimizer mini-batch, with the loss's own parameters from
        ``params`` (the registered defaults where absent)."""
        if self.batch_mask is None:
            raise ValueError(f"policy loss {self.name!r} has no batch-level mask")
        kwargs = {k: params.get(k, self.defaults[k]) for k in self._batch_mask_params}
        return self.batch_mask(log_prob, old_log_prob, advantages, response_mask, **kwargs)

    @cached_property
    def _batch_mask_params(self) -> tuple[str, ...]:
        """The loss parameters :attr:`batch_mask` takes (read from its signature once, not every update)."""
        accepted = inspect.signature(self.batch_mask).parameters if self.batch_mask is not None else {}
        return tuple(k for k in accepted if k in self.defaults)


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
    log_w = (old_log_prob.detach().to(dtype) - rollout_log_prob.detach().to(dtype)).clamp(max=LOG_RATIO_CLAMP)
    w = torch.exp(log_w).clamp(max=cap)
    return torch.where(mask, w, torch.zeros_like(w))


def register_policy_loss(
    name: str,
    reference: str = "",
    default_agg: str | None = None,
    *,
    tau_param: str | None = None,
    batch_mask: Callable[..., torch.Tensor] | None = None,
    trainer_clip_ratio: bool = False,
) -> Callable[[TokenObjectiveFn], TokenObjectiveFn]:
    """Decorator: register ``objective(batch, **params) -> TokenObjective`` under ``name``, with what
    callers may ask about it (:class:`LossInfo`): ``default_agg`` is the aggregation its paper defines
    (e.g. GSPO's sequence mean), used when a call passes none; ``tau_param`` names its τ;
    ``batch_mask`` is its mask over a whole mini-batch (the objective then takes ``keep_mask``);
    ``trainer_clip_ratio`` says its ε-clip is the trainer's PPO clip ratio."""
    if default_agg is not None and default_agg not in AGG_MODES:
        raise ValueError(f"`default_agg` must be one of {AGG_MODES}, got {default_agg!r}")

    def decorator(objective: TokenObjectiveFn) -> TokenObjectiveFn:
        if name in _REGISTRY:
            raise ValueError(f"policy loss {name!r} is already registered")
        sig = inspect.signature(objective)
        defaults = {k: p.default for k, p in sig.parameters.items() if k != "batch" and p.default is not p.empty}
        accepted = set(sig.parameters) - {"batch"}
        declared = {
            "tau_param": tau_param is None or tau_param in defaults,
            "batch_mask": batch_mask is None or KEEP_MASK_PARAM in defaults,
            "trainer_clip_ratio": not trainer_clip_ratio or {"clip_low", "clip_high"} <= set(defaults),
        }
        wrong = [key for key, holds in declared.items() if not holds]
        if wrong:
            raise ValueError(f"policy loss {name!r}: {wrong} declared, but its objective has no such parameters")

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
        _INFO[name] = LossInfo(
            name, objective, defaults, reference, default_agg, tau_param, batch_mask, trainer_clip_ratio
        )
        return objective

    return decorator


def get_policy_loss(name: str) -> PolicyLossFn:
    """Return ``fn(log_prob, old_log_prob, advantages, response_mask, **params) -> (loss, metrics)``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown policy loss {name!r}; available: {available_losses()}") from None


def loss_info(name: str) -> LossInfo:
    """What loss ``name`` needs from its caller (KeyError naming the registered losses if unknown)."""
    get_policy_loss(name)
    return _INFO[name]


def available_losses() -> list[str]:
    return sorted(_REGISTRY)
