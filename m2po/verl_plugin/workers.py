"""Worker-side hooks: the ``minibatch`` mask scope of M2PO inside verl's FSDP actor.

Algorithm 1 (paper §5.2) is "batch-level" and not linear in how a batch is split (docs/architecture.md, "The
mask scope"). verl computes the loss per micro-batch and rank, which is the ``microbatch`` scope of the
authors' released code. For the ``minibatch`` scope the keep-mask must be known for all tokens of the
optimizer mini-batch, on all data-parallel ranks, before the first micro-batch's backward:

1. :class:`M2POTrainingWorker` overrides ``train_batch`` (called once per mini-batch by verl's
   ``train_mini_batch``): a **no-grad log-prob pass** over this rank's share of the mini-batch (verl's own
   ``infer_batch``, with the parameters that the mini-batch's micro-batches will use — the optimizer steps
   only after all of them), then the exact distributed threshold search
   (:func:`m2po.verl_plugin.mask.distributed_m2po_mask`) over the data-parallel group; the mask is added
   to the mini-batch as the tensor field ``m2po_keep_mask``, so verl's micro-batch split carries it along.
2. :class:`M2POLossFn` wraps verl's ``ppo_loss``: it exposes each micro-batch's ``m2po_keep_mask`` to the
   ``m2po`` policy loss (:func:`m2po.verl_plugin.adapter.keep_mask_context`).

Per-update metrics (for every loss and both scopes). After verl's ``train_batch`` (one optimizer step),
the rank holding outputs has every loss call's metrics of the mini-batch, all ranks' micro-batches
(verl all-gathers them): :func:`minibatch_metrics` replaces ``actor/m2po/<metric>`` by the mini-batch's
exact value (:func:`m2po.verl_plugin.adapter.exact_minibatch_metrics`) and drops the ``sum/*`` helpers, and
``update_lr`` records the learning rate this optimizer step used (verl logs ``lr`` only after its
scheduler steps, once per step). verl's ``train_mini_batch`` then lists one value per mini-batch, which
the trainer writes to ``updates.jsonl`` (:mod:`m2po.verl_plugin.update_log`).

Cost: one extra forward pass per optimizer update (≈ +1/3 of the update's FLOPs, no activation memory)
plus two small all_gathers (mask.py). The mask is computed from the no-grad pass's log-probs, which equal
the training forward's up to kernel nondeterminism (bf16 micro-batch packing may differ).

Supported: FSDP/FSDP2 without Ulysses sequence parallelism (every rank holds its outputs). Megatron with
pipeline parallelism keeps outputs on the last stage only: use ``mask_scope=microbatch`` there.
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDict
from verl.utils import tensordict_utils as tu
from verl.utils.device import get_device_id
from verl.workers.engine_workers import ActorRolloutRefWorker, TrainingWorker
from verl.workers.utils.padding import no_padding_2_padding

from .adapter import KEEP_MASK_KEY, SUM_PREFIX, M2POLossFn, exact_minibatch_metrics, minibatch_tau
from .mask import distributed_m2po_mask

__all__ = [
    "KEEP_MASK_KEY",
    "M2POActorRolloutRefWorker",
    "M2POLossFn",
    "M2POTrainingWorker",
    "minibatch_metrics",
    "minibatch_tau",
]

_LOSS_PREFIX = "actor/m2po/"


def _call_values(value: Any) -> list[float]:
    """One value per loss call from a metric as verl's ``train_batch`` returns it: a list over the
    data-parallel ranks (all-gathered) of ``Metric`` objects holding one value per micro-batch, or one
    ``Metric`` (no data-parallel group)."""
    from verl.utils.metric.utils import Metric

    parts = value if isinstance(value, list) else [value]
    out: list[float] = []
    for part in parts:
        if isinstance(part, Metric):
            out.extend(float(v) for v in part.values)
        else:
            out.append(float(part))
    return out


def minibatch_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` of one optimizer mini-batch (verl's ``train_batch`` output) with ``actor/m2po/<metric>``
    replaced by the mini-batch's exact values and the ``actor/m2po/sum/*`` helpers removed."""
    calls = {k[len(_LOSS_PREFIX) :]: _call_values(v) for k, v in metrics.items() if k.startswith(_LOSS_PREFIX)}
    exact = exact_minibatch_metrics(calls)
    out = {k: v for k, v in metrics.items() if not k.startswith(SUM_PREFIX)}
    out.update({f"{_LOSS_PREFIX}{name}": value for name, value in exact.items()})
    return out


def current_lr(engine: Any) -> float | None:
    """The learning rate of the engine's optimizer (first parameter group), if it exposes one."""
    groups = getattr(getattr(engine, "optimizer", None), "param_groups", None)
    return float(groups[0]["lr"]) if groups else None


class M2POTrainingWorker(TrainingWorker):
    """verl's ``TrainingWorker`` that computes the ``minibatch``-scope keep-mask before each mini-batch."""

    def set_loss_fn(self, loss_fn: Any) -> None:
        super().set_loss_fn(loss_fn if isinstance(loss_fn, M2POLossFn) else M2POLossFn(loss_fn))

    def train_batch(self, data: TensorDict) -> TensorDict:
        tau = minibatch_tau(getattr(self.loss_fn, "actor_config", None))
        if tau is not None:
            self.attach_keep_mask(data, tau)
        lr = current_lr(self.engine)  # the scheduler steps after the step's last mini-batch
        output = super().train_batch(data)
        if output is not None:  # the ranks holding outputs (all of them with FSDP)
            metrics = minibatch_metrics(tu.get(output, "metrics"))
            if lr is not None:
                metrics["update_lr"] = lr
            tu.assign_non_tensor(output, metrics=metrics)
        return output

    def _minibatch_log_probs(self, data: TensorDict) -> torch.Tensor:
        """No-grad log-probs of the mini-batch's response tokens, ``[rows, max_response_len]``."""
        if getattr(self.engine, "ulysses_sequence_parallel_size", 1) > 1:
            raise NotImplementedError("mask_scope=minibatch does not support Ulysses sequence parallelism yet")
        view = data.copy()  # shallow: infer_batch's bookkeeping keys must not leak into the training call
        # the training call's micro-batching (infer_batch would use the log-prob pass's sizes, which need
        # not divide a mini-batch's rows): the same micro-batches, so the same forward numerics
        engine = self.engine_config
        training = dict(
            use_dynamic_bsz=engine.use_dynamic_bsz,
            max_token_len_per_gpu=engine.max_token_len_per_gpu,
            micro_batch_size_per_gpu=engine.micro_batch_size_per_gpu,
        )
        tu.assign_non_tensor(
            view, compute_loss=False, calculate_entropy=False, **{k: v for k, v in training.items() if k not in data}
        )
        out = super().infer_batch(view)
        if out is None:
            raise NotImplementedError(
                "mask_scope=minibatch needs log-probs on every data-parallel rank (FSDP); with pipeline "
                "parallelism use mask_scope=microbatch"
            )
        return no_padding_2_padding(tu.get(out, "log_probs"), view)

    def attach_keep_mask(self, data: TensorDict, tau: float) -> None:
        """Add ``m2po_keep_mask``: Algorithm 1 over the whole mini-batch across the data-parallel group."""
        log_prob = self._minibatch_log_probs(data)
        device = torch.device(self.device_name, get_device_id()) if self.device_name != "cpu" else torch.device("cpu")
        # the same padded layout as verl's ppo_loss (regular tensors pass through unchanged)
        fields = data.select("old_log_probs", "advantages", "response_mask").to_padded_tensor()
        keep = distributed_m2po_mask(
            log_prob.to(device),
            fields["old_log_probs"].to(device),
            fields["advantages"].to(device),
            fields["response_mask"].to(device).bool(),
            tau=tau,
            group=self.engine.get_data_parallel_group(),
        )
        data[KEEP_MASK_KEY] = keep.to(fields["response_mask"].device)


class M2POActorRolloutRefWorker(ActorRolloutRefWorker):
    """verl's hybrid actor/rollout/ref worker whose actor is an :class:`M2POTrainingWorker`."""

    actor_worker_cls = M2POTrainingWorker
