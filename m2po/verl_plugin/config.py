"""``M2POPolicyLossConfig``: our loss settings inside verl's strict actor config.

verl's ``ActorConfig`` is a strict dataclass (unknown keys raise), and its ``policy_loss`` field is
instantiated through Hydra's ``_target_``. So our settings live in a *subclass* of verl's
``PolicyLossConfig`` selected with::

    actor_rollout_ref.actor.policy_loss._target_=m2po.verl_plugin.config.M2POPolicyLossConfig

Every verl field keeps its meaning (``loss_mode`` picks the registered loss); the extra fields are
read by our adapter (:mod:`m2po.verl_plugin.adapter`). With a plain ``PolicyLossConfig`` our losses
still run, with the defaults below.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from typing import Any, Optional

from verl.workers.config import PolicyLossConfig

from m2po.config import ConfigError, coerce_kwargs
from m2po.loss_names import PAPER_TAU
from m2po.losses import available_losses, loss_info

__all__ = [
    "MASK_SCOPES",
    "M2POPolicyLossConfig",
    "policy_loss_settings",
    "registry_name",
    "stale_settings",
    "updates_per_batch",
]

#: where Algorithm 1's keep-mask is computed (docs/verl.md, "Mask scope")
MASK_SCOPES = ("microbatch", "minibatch")

_KEY = "actor_rollout_ref.actor.policy_loss"
#: verl's aggregation modes (verl.trainer.ppo.core_algos.agg_loss)
VERL_AGG_MODES = ("token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")
#: the namespaced alias under which every loss of ours is also registered in verl (``m2po.<name>``)
ALIAS_PREFIX = "m2po."


def registry_name(loss_mode: str | None) -> str | None:
    """The ``m2po.losses`` name that verl's ``loss_mode`` runs (its own name or the ``m2po.<name>``
    alias), None for a loss of verl's own (``vanilla``, ``verl.gspo``, ...)."""
    if not loss_mode:
        return None
    name = loss_mode.removeprefix(ALIAS_PREFIX)
    return name if name in available_losses() else None


@dataclass
class M2POPolicyLossConfig(PolicyLossConfig):
    """verl's ``PolicyLossConfig`` plus the settings of the M2PO paper's losses (arXiv 2510.01161).

    Args:
        tau: M2 threshold τ of Algorithm 1 (§5.2); 0.04 in every run of the paper, swept 0-0.16 in Fig. 8.
            Used by the losses with a τ (``m2po``, ``m2po_released``).
        mask_scope: ``"minibatch"`` (default, as in the CPU engine) computes Algorithm 1 once over the whole
            optimizer mini-batch across all data-parallel ranks (a no-grad log-prob pass plus an exact
            distributed threshold search; needs the M2PO worker of ``m2po.verl_plugin.main``);
            ``"microbatch"`` computes the ``m2po`` keep-mask per loss call, i.e. per micro-batch and
            data-parallel rank, as the authors' released code does (docs/losses.md).
        floor_low / floor_high: the released code's optional clip floors (ε_low >= floor_low, ε_high >=
            floor_high); inactive (None) in the released runs. ``m2po_released`` only.
        dual_clip: ``grpo`` only: apply dual-clip PPO with verl's ``clip_ratio_c`` (off in the paper, App. B).
        loss_params: per-loss keyword overrides, e.g. ``{clip_low: 3e-4, clip_high: 4e-4}`` for ``gspo``; they
            win over everything above and over verl's ``clip_ratio_*``.
        loss_agg_mode: the loss's aggregation. null (default): the aggregation the loss's own paper defines
            when it defines one (``gspo``: ``seq-mean-token-mean``, GSPO Eq. 5), else verl's
            ``actor.loss_agg_mode`` (token-mean in the paper's runs). Any of verl's modes overrides both.
    """

    tau: float = PAPER_TAU
    mask_scope: str = "minibatch"
    floor_low: Optional[float] = None  # noqa: UP045 - OmegaConf structured configs need typing.Optional
    floor_high: Optional[float] = None  # noqa: UP045
    dual_clip: bool = False
    loss_params: dict[str, Any] = field(default_factory=dict)
    loss_agg_mode: Optional[str] = None  # noqa: UP045

    def __post_init__(self) -> None:
        if not isinstance(self.tau, int | float) or math.isnan(self.tau) or self.tau < 0:
            raise ConfigError(
                f"{_KEY}.tau", f"must be a number >= 0, got {self.tau!r}", hint=f"the paper uses {PAPER_TAU}"
            )
        if self.mask_scope not in MASK_SCOPES:
            raise ConfigError(
                f"{_KEY}.mask_scope",
                f"must be one of {MASK_SCOPES}, got {self.mask_scope!r}",
                hint="'microbatch' = the authors' released code, 'minibatch' = Algorithm 1 over the optimizer step",
            )
        if self.loss_agg_mode is not None and self.loss_agg_mode not in VERL_AGG_MODES:
            raise ConfigError(
                f"{_KEY}.loss_agg_mode",
                f"must be null or one of {VERL_AGG_MODES}, got {self.loss_agg_mode!r}",
                hint="null uses the loss's own default (gspo: seq-mean-token-mean), else actor.loss_agg_mode",
            )
        for name in ("floor_low", "floor_high"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ConfigError(f"{_KEY}.{name}", f"must be null or >= 0, got {value!r}")
        name = registry_name(self.loss_mode)
        if name is not None:
            accepted = loss_info(name).config_params
            unknown = set(self.loss_params) - accepted
            if unknown:
                raise ConfigError(
                    f"{_KEY}.loss_params",
                    f"unknown parameter(s) {sorted(unknown)} for loss {self.loss_mode!r}",
                    hint=f"it accepts {sorted(accepted)}",
                )
            # values through the objective's signature, as the CPU engine's config does (``tau: abc`` fails
            # here); verl's BaseConfig freezes fields once set, and this is still construction
            params = coerce_kwargs(loss_info(name).objective, dict(self.loss_params), f"{_KEY}.loss_params")
            object.__setattr__(self, "loss_params", params)


#: the defaults of the fields :class:`M2POPolicyLossConfig` adds to verl's (one place: the dataclass)
_OUR_DEFAULTS = {
    f.name: f.default
    for f in fields(M2POPolicyLossConfig)
    if f.name not in {g.name for g in fields(PolicyLossConfig)} and f.name != "loss_params"  # a dict, read apart
}


def policy_loss_settings(policy_loss: Any) -> dict[str, Any]:
    """Our settings from any ``policy_loss`` node (our subclass, verl's class, a DictConfig or a dict).

    Missing keys take :class:`M2POPolicyLossConfig`'s defaults, except ``mask_scope``: a node without it
    (verl's plain ``PolicyLossConfig``) means verl's plain worker, which can only do ``microbatch``."""
    defaults = {**_OUR_DEFAULTS, "mask_scope": "microbatch"}
    out: dict[str, Any] = {}
    for key, default in defaults.items():
        value = policy_loss.get(key, default) if policy_loss is not None else default
        out[key] = default if value is None and key in ("tau", "mask_scope", "dual_clip") else value
    params = policy_loss.get("loss_params", None) if policy_loss is not None else None
    out["loss_params"] = dict(params) if params else {}
    return out


def updates_per_batch(config: Any) -> int:
    """``n``: optimizer updates per rollout batch = (train_batch_size / ppo_mini_batch_size) × ppo_epochs."""
    actor = config.actor_rollout_ref.actor
    batch, mini = int(config.data.train_batch_size), int(actor.ppo_mini_batch_size)
    if batch % mini:
        raise ConfigError(
            "actor_rollout_ref.actor.ppo_mini_batch_size",
            f"must divide data.train_batch_size ({batch}), got {mini}",
            hint="the paper uses 256 prompts and mini-batches of 64 prompts (512 responses): 4 updates per step",
        )
    return batch // mini * int(actor.get("ppo_epochs", 1))


def stale_settings(config: Any) -> dict[str, Any]:
    """The ``m2po`` section of the trainer config, with defaults (see workflow/verl_hydra/m2po_trainer.yaml).

    ``queue_dir`` (null: ``<trainer.default_local_dir>/stale_queue``) is made absolute against the current
    directory, so that every process of a multi-node run names the same folder."""
    section = config.get("m2po", None) or {}
    loss_mode = config.actor_rollout_ref.actor.policy_loss.get("loss_mode", "vanilla")
    proximal = section.get("proximal", "auto")
    in_memory = section.get("queue_max_in_memory", 4)
    if isinstance(in_memory, bool) or not isinstance(in_memory, int) or in_memory < 0:
        raise ConfigError("m2po.queue_max_in_memory", f"must be an int >= 0, got {in_memory!r}", hint="e.g. 4")
    stop = section.get("stop_at_step", None)
    if stop is not None and (isinstance(stop, bool) or not isinstance(stop, int) or stop < 1):
        raise ConfigError("m2po.stop_at_step", f"must be null or a global step >= 1, got {stop!r}", hint="e.g. 500")
    out = {
        "staleness": int(section.get("staleness", 0)),
        "stop_at_step": stop,
        "queue_max_in_memory": in_memory,
        "queue_dir": section.get("queue_dir", None),
        "proximal": _takes_proximal(loss_mode) if proximal == "auto" else bool(proximal),
    }
    if out["queue_dir"] is None:
        out["queue_dir"] = os.path.join(str(config.trainer.default_local_dir), "stale_queue")
    out["queue_dir"] = os.path.abspath(out["queue_dir"])
    return out


def _takes_proximal(loss_mode: str) -> bool:
    name = registry_name(loss_mode)
    return name is not None and loss_info(name).takes_proximal
