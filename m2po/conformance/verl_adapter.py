"""``verl:NAME``: a loss of verl's registry, called exactly as verl 0.9.1's ``ppo_loss`` calls it.

verl calls ``fn(old_log_prob=, log_prob=, advantages=, response_mask=, loss_agg_mode=, config=actor_config,
rollout_is_weights=)`` once per micro-batch and rank, with ``config.global_batch_info`` holding the
mini-batch's token and sequence counts (``dp_size`` 1 here). The case's parameters become the actor
config: ``clip_ratio_low/high/c`` for verl's own losses and for ``grpo``; for the losses of this package
(registered in verl by ``m2po.verl_plugin`` when verl is imported) our ``M2POPolicyLossConfig`` with
``tau``, the released floors, ``dual_clip`` and ``loss_params``. TIS weights and decoupled PPO's behaviour
weights arrive as ``rollout_is_weights`` computed by verl's own ``compute_rollout_correction_weights``
(token level; TIS truncates at the cap, a behaviour-weight cap drops tokens as its IcePop bound does).
In the ``minibatch`` scope the keep-mask is computed over the whole mini-batch by the function the M2PO
worker uses and handed to the loss through ``keep_mask_context``, as the worker does.
"""

from __future__ import annotations

import torch

from m2po.losses import loss_info

from .adapters import Adapter, LossCall, Unsupported

#: parameters that are fields of M2POPolicyLossConfig rather than loss_params
_CONFIG_FIELDS = ("tau", "floor_low", "floor_high")


class VerlAdapter(Adapter):
    def __init__(self, name: str) -> None:
        import verl  # noqa: F401  (imports the verl.plugins entry points: m2po.verl_plugin registers ours)
        from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY, get_policy_loss_fn

        if name not in POLICY_LOSS_REGISTRY:
            raise ValueError(f"verl has no policy loss {name!r}; registered: {sorted(POLICY_LOSS_REGISTRY)}")
        self.fn = get_policy_loss_fn(name)
        self.verl_name = name
        self.name = f"verl:{name}"
        self.ours = bool(getattr(self.fn, "_m2po_loss", False))
        #: what the loss this verl name runs needs (ours only): the registry's answer, never its name
        self.info = None
        if self.ours:
            from m2po.verl_plugin import REGISTERED

            self.claims = REGISTERED[name]
            self.info = loss_info(self.claims)

    def _config(self, call: LossCall):
        from verl.workers.config import FSDPActorConfig, PolicyLossConfig

        p = dict(call.params)
        actor: dict = {}
        trainer_clip = not self.ours or self.info.trainer_clip_ratio  # verl's clip_ratio_* set the ε-clip
        if trainer_clip:
            low, high = p.pop("clip_low", None), p.pop("clip_high", None)
            if low is not None or "clip_low" in call.params:  # cispo's None = no lower bound = ratio >= 0
                actor["clip_ratio_low"] = 1.0 if low is None else float(low)
            if high is not None:
                actor["clip_ratio_high"] = float(high)
            clip_c = p.pop("clip_c", None)
            if clip_c is not None:
                actor["clip_ratio_c"] = float(clip_c)
        if self.ours:
            from m2po.verl_plugin.config import M2POPolicyLossConfig

            fields = {k: p.pop(k) for k in _CONFIG_FIELDS if k in p}
            p.pop("behav_weight_cap", None)  # decoupled_ppo: applied through rollout_is_weights (see below)
            policy_loss = M2POPolicyLossConfig(
                loss_mode=self.verl_name,
                mask_scope="minibatch" if call.scope == "minibatch" else "microbatch",
                dual_clip=trainer_clip and "clip_ratio_c" in actor,
                # the case names its aggregation: set it where the plugin reads it, so a loss's own
                # default (GSPO: seq-mean-token-mean) does not replace it
                loss_agg_mode=call.loss_agg_mode,
                loss_params=p,
                **fields,
            )
        else:
            if p:
                raise Unsupported(f"verl's {self.verl_name!r} has no setting for {sorted(p)}")
            policy_loss = PolicyLossConfig(loss_mode=self.verl_name)
        cfg = FSDPActorConfig(
            strategy="fsdp", rollout_n=1, ppo_micro_batch_size_per_gpu=1, loss_agg_mode=call.loss_agg_mode,
            policy_loss=policy_loss, **actor,
        )  # fmt: skip
        mask = call.response_mask
        cfg.global_batch_info.update(
            dp_size=1,
            batch_num_tokens=call.global_token_count if call.global_token_count is not None else int(mask.sum()),
            global_batch_size=call.global_seq_count if call.global_seq_count is not None else int(mask.any(-1).sum()),
            loss_scale_factor=None,
        )
        return cfg

    def _rollout_is_weights(self, call: LossCall, old: torch.Tensor) -> torch.Tensor | None:
        from verl.trainer.ppo.rollout_corr_helper import compute_rollout_correction_weights

        weights = None
        if call.rollout_log_prob is not None:  # TIS: π_old / π_rollout truncated at the cap
            lr = call.old_log_prob - call.rollout_log_prob
            weights = compute_rollout_correction_weights(lr, call.response_mask.to(lr.dtype), "token", call.tis_cap)[0]
        if loss_info(call.loss).takes_proximal and call.proximal_log_prob is not None:
            if weights is not None:
                raise Unsupported("TIS and decoupled PPO share verl's single rollout_is_weights")
            cap = call.params.get("behav_weight_cap")
            threshold = 1e30 if cap is None else f"1e-30_{cap}"  # IcePop bound: drop weights above the cap
            lr = call.proximal_log_prob - call.old_log_prob
            weights = compute_rollout_correction_weights(lr, call.response_mask.to(lr.dtype), "token", threshold)[0]
        return weights

    def __call__(self, call: LossCall):
        proximal = loss_info(call.loss).takes_proximal  # decoupled PPO
        if proximal and not self.ours:
            raise Unsupported("decoupled PPO cases need this package's decoupled_ppo loss")
        cfg = self._config(call)
        # verl's decoupled layout: old_log_prob is the proximal policy, the behaviour weight comes separately
        old = call.proximal_log_prob if proximal else call.old_log_prob
        kwargs = dict(
            old_log_prob=old, log_prob=call.log_prob, advantages=call.advantages, response_mask=call.response_mask,
            loss_agg_mode=call.loss_agg_mode, config=cfg, rollout_is_weights=self._rollout_is_weights(call, old),
        )  # fmt: skip
        from m2po.verl_plugin.adapter import keep_mask_context, minibatch_tau

        tau = minibatch_tau(cfg)  # what the worker precomputes before each mini-batch (m2po.verl_plugin.workers)
        if tau is not None:
            from m2po.verl_plugin.mask import distributed_m2po_mask

            mb = call.minibatch
            keep = distributed_m2po_mask(
                mb["log_prob"], mb["old_log_prob"], mb["advantages"], mb["response_mask"], tau=tau
            )
            with keep_mask_context(keep[call.rows[0] : call.rows[1]]):
                return self.fn(**kwargs)
        return self.fn(**kwargs)
