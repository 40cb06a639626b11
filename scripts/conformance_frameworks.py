"""Conformance adapters for the losses of other RL frameworks (docs/conformance.md, "Across frameworks").

Run by scripts/conformance_frameworks.sh inside a scratch virtual environment that holds the frameworks;
never imported by the package or its tests. Each adapter imports only the framework's loss code and calls
it the way the framework's trainer does, mapping a case's parameters to the framework's own settings.
What a framework cannot express raises ``Unsupported`` (the case is reported as skipped, with the reason).

Targets (``python -m m2po.conformance check --target scripts/conformance_frameworks.py:NAME``):
``ArealM2PO``, ``ArealPPO``, ``TrinityPPO``, ``TrinityGSPO``, ``TrinityCISPO``, ``TrinityTOPR``, ``TrlGRPO``,
``TrlGSPO``, ``TrlCISPO``, ``SwiftGRPO``, ``SwiftGSPO``, ``SwiftCISPO``.
"""

from __future__ import annotations

import collections
from types import SimpleNamespace

import torch

from m2po.conformance.adapters import Adapter, LossCall, Unsupported


def _no_tis(call: LossCall, who: str) -> None:
    if call.rollout_log_prob is not None:
        raise Unsupported(f"{who}: the TIS weight is computed by the trainer, outside the loss function")


def _rescale_to_global(loss: torch.Tensor, call: LossCall) -> torch.Tensor:
    """A loss that is a mean over its own call's tokens, weighted by the call's share of the mini-batch's
    tokens (how gradient accumulation over token-mean micro-batches is done by AReaL and Trinity-RFT)."""
    if call.global_token_count is None:
        return loss
    return loss * float(call.response_mask.sum()) / call.global_token_count


# ---------------------------------------------------------------------------------------------
# AReaL 1.0.4 (areal.trainer.ppo.actor.grpo_loss_fn, areal.utils.functional.ppo_actor_loss_fn)
# ---------------------------------------------------------------------------------------------


class _Areal(Adapter):
    minibatch_in_one_call = False  # AReaL calls the loss per micro-batch (PPOActor.ppo_update)

    def _loss(self, call: LossCall, m2_threshold):
        from areal.api.cli_args import RejectionSamplingConfig
        from areal.trainer.ppo.actor import grpo_loss_fn
        from areal.utils import stats_tracker

        _no_tis(call, "AReaL")
        if call.log_prob.dtype != torch.float32:
            raise Unsupported("AReaL's loss logs through its stats tracker, which takes float32 tensors only")
        if call.loss_agg_mode != "token-mean":
            raise Unsupported("AReaL's PPO loss is a token mean")
        # decoupled loss with the proximal policy = the current one (the first update on this batch); the
        # behaviour importance weight pi_prox/pi_behav is applied untruncated ('clamp' with a huge bound)
        prox = call.proximal_log_prob if call.proximal_log_prob is not None else call.log_prob.detach()
        data = {
            "logprobs": call.old_log_prob,
            "advantages": call.advantages,
            "loss_mask": call.response_mask,
            "prox_logp": prox,
        }
        rs = RejectionSamplingConfig(level="token", action="clamp", metric="ratio", upper=1e30)
        low = call.params.get("clip_low", 0.2)
        high = call.params.get("clip_high", low)
        tracker = stats_tracker.DEFAULT_TRACKER
        try:
            loss = grpo_loss_fn(
                call.log_prob, torch.zeros_like(call.log_prob), data, eps_clip=low, eps_clip_higher=high,
                c_clip=call.params.get("clip_c"), rejection_sampling=rs, m2_threshold=m2_threshold,
                use_decoupled_loss=True,
            )  # fmt: skip
        finally:  # the logged statistics of one call must not meet the next call's shapes
            tracker.denominators, tracker.reduce_types, tracker.stats = {}, {}, collections.defaultdict(list)
        return _rescale_to_global(loss, call)


class ArealM2PO(_Areal):
    """AReaL's M2PO: ``m2_threshold = tau`` in its GRPO loss (no other M2PO code exists in AReaL)."""

    name = "areal:m2po"
    claims = "m2po"

    def __call__(self, call: LossCall):
        if call.loss not in ("m2po",):
            raise Unsupported("AReaL's M2PO adapter runs the m2po cases")
        return self._loss(call, float(call.params["tau"]))


class ArealPPO(_Areal):
    """AReaL's PPO loss with the proximal policy = behaviour policy (plain GRPO) or the case's proximal."""

    name = "areal:ppo"
    claims = "grpo"

    def __call__(self, call: LossCall):
        if call.loss == "decoupled_ppo" and call.params.get("behav_weight_cap") is not None:
            raise Unsupported("AReaL 1.0.4 replaced behav_imp_weight_cap by rejection sampling (not mapped)")
        if call.loss == "grpo" and call.proximal_log_prob is None:
            call.proximal_log_prob = call.old_log_prob  # no staleness correction: the GRPO objective
        return self._loss(call, None)


# ---------------------------------------------------------------------------------------------
# Trinity-RFT 0.6.0 (trinity.algorithm.policy_loss_fn)
# ---------------------------------------------------------------------------------------------


class _Trinity(Adapter):
    loss_name = ""
    minibatch_in_one_call = False

    def make(self, call: LossCall):  # pragma: no cover - per loss
        raise NotImplementedError

    def __call__(self, call: LossCall):
        _no_tis(call, "Trinity-RFT")
        if call.loss != self.claims:
            raise Unsupported(f"this adapter runs the {self.claims} cases")
        fn = self.make(call)
        loss, _ = fn(
            logprob=call.log_prob, old_logprob=call.old_log_prob, action_mask=call.response_mask,
            advantages=call.advantages,
        )  # fmt: skip
        if call.loss_agg_mode == "token-mean":
            return _rescale_to_global(loss, call)
        if call.global_seq_count is not None:
            raise Unsupported("Trinity-RFT's sequence-mean modes have no global sequence count")
        return loss


class TrinityPPO(_Trinity):
    name = "trinity:ppo"
    claims = "grpo"

    def make(self, call: LossCall):
        from trinity.algorithm.policy_loss_fn.ppo_policy_loss import PPOPolicyLossFn

        p = call.params
        kw = {"clip_ratio_c": p["clip_c"]} if p.get("clip_c") is not None else {}
        return PPOPolicyLossFn(
            clip_range_low=p["clip_low"], clip_range_high=p["clip_high"], loss_agg_mode=call.loss_agg_mode, **kw
        )


class TrinityGSPO(_Trinity):
    name = "trinity:gspo"
    claims = "gspo"

    def make(self, call: LossCall):
        from trinity.algorithm.policy_loss_fn.gspo_policy_loss import GSPOLossFn

        p = call.params
        return GSPOLossFn(
            clip_range_low=p["clip_low"], clip_range_high=p["clip_high"], loss_agg_mode=call.loss_agg_mode
        )


class TrinityCISPO(_Trinity):
    name = "trinity:cispo"
    claims = "cispo"

    def make(self, call: LossCall):
        from trinity.algorithm.policy_loss_fn.cispo_policy_loss import CISPOPolicyLossFn

        p = call.params
        low = 1.0 if p["clip_low"] is None else p["clip_low"]
        return CISPOPolicyLossFn(clip_range_low=low, clip_range_high=p["clip_high"], loss_agg_mode=call.loss_agg_mode)


class TrinityTOPR(_Trinity):
    name = "trinity:topr"
    claims = "topr"

    def make(self, call: LossCall):
        from trinity.algorithm.policy_loss_fn.topr_policy_loss import TOPRPolicyLossFn

        if call.params["ratio_level"] != "token":
            raise Unsupported("Trinity-RFT's TOPR uses the token ratio only")
        return TOPRPolicyLossFn(loss_agg_mode=call.loss_agg_mode)


# ---------------------------------------------------------------------------------------------
# TRL 1.16.0 (trl.trainer.grpo_trainer.GRPOTrainer._compute_loss)
# ---------------------------------------------------------------------------------------------

_TRL_AGG = {"token-mean": "bnpo", "seq-mean-token-mean": "grpo", "seq-mean-token-sum-norm": "dr_grpo"}


class _Accelerator:
    """The one-process accelerator the loss's metric logging talks to."""

    num_processes = 1
    sync_gradients = True

    def gather(self, x):
        return x

    gather_for_metrics = gather

    def reduce(self, x, reduction="sum"):
        return x


class _Trl(Adapter):
    """TRL's (and ms-swift's, a fork of it) loss is a method of GRPOTrainer: it runs on a trainer object
    holding only the settings the loss reads, with the model's log-prob computation replaced by the
    case's log-probs."""

    framework = "TRL"
    minibatch_in_one_call = False
    importance_sampling_level = "token"

    def settings(self, call: LossCall) -> dict:  # pragma: no cover - per loss
        raise NotImplementedError

    def __call__(self, call: LossCall):
        _no_tis(call, self.framework)
        if call.loss != self.claims:
            raise Unsupported(f"this adapter runs the {self.claims} cases")
        s = self.settings(call)
        agg = dict(_TRL_AGG, **({"seq-mean-token-sum": "luspo"} if self.framework == "TRL" else {}))
        loss_type = s.pop("loss_type", None) or agg.get(call.loss_agg_mode)
        if loss_type is None:
            raise Unsupported(f"{self.framework} has no loss_type aggregating {call.loss_agg_mode}")
        if call.global_token_count is not None and loss_type == "bnpo":
            loss_type = "dapo"  # token mean over the whole generation batch (num_items_in_batch)
        if call.global_token_count is not None and loss_type not in ("dapo", "cispo"):
            raise Unsupported(f"{self.framework}'s {loss_type!r} loss normalises per micro-batch")
        n_items = call.global_token_count if call.global_token_count is not None else call.response_mask.sum()
        common = dict(
            loss_type=loss_type, importance_sampling_level=self.importance_sampling_level, beta=0.0,
            accelerator=_Accelerator(), model=SimpleNamespace(training=True), current_gradient_accumulation_steps=1,
            max_completion_length=call.log_prob.shape[-1],
            _metrics={"train": collections.defaultdict(list), "eval": collections.defaultdict(list)}, **s,
        )  # fmt: skip
        entropies = torch.zeros_like(call.log_prob)
        if self.framework == "TRL":
            return self._trl(call, common, entropies, n_items)
        return self._swift(call, common, entropies, n_items)

    def _trl(self, call: LossCall, common: dict, entropies: torch.Tensor, n_items):
        from trl.trainer.grpo_trainer import GRPOTrainer

        trainer = object.__new__(GRPOTrainer)
        trainer.__dict__.update(
            top_entropy_quantile=1.0, off_policy_mask_threshold=None, use_vllm=False, aux_loss_enabled=False,
            _entropy_bonus_enabled=False, args=SimpleNamespace(delta=None, steps_per_generation=1), **common,
        )  # fmt: skip
        trainer._get_per_token_logps_and_entropies = lambda *a, **k: (call.log_prob, entropies, None)
        rows = call.log_prob.shape[0]
        inputs = {
            "prompt_ids": torch.zeros(rows, 1, dtype=torch.long),
            "prompt_mask": torch.ones(rows, 1, dtype=torch.long),
            "completion_ids": torch.zeros(call.log_prob.shape, dtype=torch.long),
            "completion_mask": call.response_mask.to(torch.long),
            "advantages": call.advantages,
            "old_per_token_logps": call.old_log_prob,
            "num_items_in_batch": torch.as_tensor(float(n_items)),
        }
        return trainer._compute_loss(None, inputs)

    def _swift(self, call: LossCall, common: dict, entropies: torch.Tensor, n_items):
        from swift.rlhf_trainers.grpo_trainer import GRPOTrainer

        trainer = object.__new__(GRPOTrainer)
        trainer.__dict__.update(
            compute_entropy=False, overlong_filter=False, kl_in_reward=False, rollout_importance_sampling_mode=None,
            log_rollout_offpolicy_metrics=False, disable_rollout_importance_sampling=True, _has_teacher=False,
            off_policy_sequence_mask_delta=None, sdar_loss_coef=0.0, chord_sft_iterator=None,
            model_accepts_loss_kwargs=True, compute_loss_func=None,
            args=SimpleNamespace(
                delta=None, top_entropy_quantile=1.0, log_entropy=False, gradient_accumulation_steps=1
            ),
            **common,
        )  # fmt: skip
        trainer._get_per_token_logps_and_entropies = lambda *a, **k: (call.log_prob, entropies)
        batch = SimpleNamespace(
            completion_mask=call.response_mask.bool(), truncated_mask=torch.zeros(call.log_prob.shape[0], dtype=bool),
            advantages=call.advantages, old_per_token_logps=call.old_log_prob, rollout_per_token_logps=None,
            ref_per_token_logps=None, teacher_per_token_logps=None, num_items_in_batch=torch.as_tensor(float(n_items)),
        )  # fmt: skip
        loss, _ = trainer._compute_loss_and_metrics(None, {}, batch)
        return loss


class TrlGRPO(_Trl):
    name = "trl:grpo"
    claims = "grpo"

    def settings(self, call: LossCall) -> dict:
        p = call.params
        if p.get("clip_c") is not None:
            raise Unsupported(f"{self.framework} has no dual clip")
        return {"epsilon_low": p["clip_low"], "epsilon_high": p["clip_high"]}


class TrlGSPO(_Trl):
    name = "trl:gspo"
    claims = "gspo"
    importance_sampling_level = "sequence"

    def settings(self, call: LossCall) -> dict:
        return {"epsilon_low": call.params["clip_low"], "epsilon_high": call.params["clip_high"]}


class TrlCISPO(_Trl):
    name = "trl:cispo"
    claims = "cispo"

    def settings(self, call: LossCall) -> dict:
        p = call.params
        if p["clip_low"] is not None:
            raise Unsupported(f"{self.framework}'s CISPO has no lower bound on the weight")
        if call.loss_agg_mode != "token-mean":
            raise Unsupported(f"{self.framework}'s CISPO is a token mean")
        return {"loss_type": "cispo", "epsilon_low": 0.0, "epsilon_high": 1 + p["clip_high"]}


# ---------------------------------------------------------------------------------------------
# ms-swift 4.6.0 (swift.rlhf_trainers.grpo_trainer.GRPOTrainer._compute_loss_and_metrics)
# ---------------------------------------------------------------------------------------------


class SwiftGRPO(TrlGRPO):
    name = "ms-swift:grpo"
    framework = "ms-swift"


class SwiftGSPO(TrlGSPO):
    name = "ms-swift:gspo"
    framework = "ms-swift"
    importance_sampling_level = "sequence_token"  # ms-swift's GSPO-token


class SwiftCISPO(TrlCISPO):
    name = "ms-swift:cispo"
    framework = "ms-swift"
