"""Policy losses for stale-data off-policy RL, one registry, one signature.

``get_policy_loss(name)(log_prob, old_log_prob, advantages, response_mask, **params)`` returns
``(loss, metrics)``; see docs/losses.md for the contract and the metric names.

Registered: ``grpo``, ``grpo_notr`` (ppo.py), ``m2po`` (m2po.py, the paper's Algorithm 1),
``m2po_released`` (released.py, the authors' code), ``gspo``, ``cispo``, ``topr``, ``gppo``,
``decoupled_ppo`` (baselines.py). ``loss_info(name)`` says what a loss needs from its caller (its τ,
the proximal log-probs, a mini-batch mask, ...); the names alone, without torch: ``m2po.loss_names``.
"""

from . import baselines, m2po, ppo, released  # noqa: F401  (registration side effects)
from .common import AGG_MODES, LOG_RATIO_CLAMP, METRIC_NAMES, agg_loss
from .m2po import m2po_mask
from .registry import (
    LossInfo,
    available_losses,
    get_policy_loss,
    loss_info,
    register_policy_loss,
    truncated_is_weight,
)
from .released import released_threshold

__all__ = [
    "AGG_MODES",
    "LOG_RATIO_CLAMP",
    "METRIC_NAMES",
    "LossInfo",
    "agg_loss",
    "available_losses",
    "get_policy_loss",
    "loss_info",
    "m2po_mask",
    "register_policy_loss",
    "released_threshold",
    "truncated_is_weight",
]
