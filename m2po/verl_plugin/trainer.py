"""``M2POTrainer``: verl's ``RayPPOTrainer`` with exact, fixed staleness (paper §3.2).

The subclass changes no line of verl's ``fit`` loop; it hooks methods the loop already calls:

* ``_balance_batch`` (called once per step right after generation, before the reward is read): verl
  balances the fresh batch across the data-parallel ranks; then its behaviour log-probs are computed with
  the actor that generated it (verl's own ``_compute_old_log_prob``, on the balanced batch), it is pushed
  into the :class:`~m2po.verl_plugin.buffer.StaleRolloutBuffer`, and the *contents* of the step's
  ``DataProto`` are swapped for the oldest waiting batch (in place: the loop holds the object), which verl
  balances again (for the step's balance metrics). A batch generated in the last ``k`` steps of the run
  would be popped only after the run ends: it gets no log-prob pass and is not stored. Needs
  ``trainer.balance_batch=true``.
* ``_compute_old_log_prob``: return the stored behaviour log-probs (π_behav of the ratio), or, for
  ``decoupled_ppo`` (``m2po.proximal``), recompute the proximal policy's while the behaviour ones become
  ``rollout_log_probs`` for verl's rollout-correction weights (AReaL's π_prox/π_behav).
* ``_update_actor``: no update during the ``k = s/n`` prefill steps ("the first k iterations only
  generate", paper §3.2); the rollout weights are still refreshed by the loop. After an update, the
  policy version advances by the optimizer steps verl took (a step skipped for a non-finite gradient
  norm does not count), and one record per update goes to ``updates.jsonl``
  (:mod:`m2po.verl_plugin.update_log`; before verl saves the step's checkpoint).
* ``_save_checkpoint`` / ``_load_checkpoint``: the queue's manifest (references to the batch files in
  ``m2po.queue_dir``) is saved as ``global_step_<N>/m2po_stale_queue.json`` next to verl's ``actor/``
  folder *before* verl writes its tracker file; once the tracker names the new checkpoint, the batch files
  only older checkpoints referred to are deleted. Only the latest checkpoint can be resumed from.
  ``_load_checkpoint`` (called once when ``fit`` starts) also marks the start of a session in
  ``updates.jsonl``, which discards the records of updates the resumed session redoes.

Reward: verl's agent loop scores each response at generation time; the reward is a pure function of the
response and the ground truth, so the value is the one the paper computes at pop time. Advantages (GRPO,
Eq. 2) are computed by the loop after the swap, i.e. when the batch is popped.

Steps. ``global_steps`` counts prefill steps too: training step ``i`` (0-based) is global step
``k + 1 + i``; set ``trainer.total_training_steps = steps + k`` (the launcher does). ``m2po.stop_at_step``
ends this session after that global step (with a checkpoint) while the run keeps its planned length: a
resume continues it exactly (the batches the remaining steps need are kept).
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from omegaconf import DictConfig
from verl import DataProto
from verl.trainer.ppo.ray_trainer import RayPPOTrainer

from m2po.config import ConfigError

from .buffer import META_STALENESS, META_VERSION, QUEUE_MANIFEST, StaleRolloutBuffer
from .config import stale_settings, updates_per_batch
from .update_log import UpdateLog, update_log_path, update_records

__all__ = ["M2POTrainer"]


class M2POTrainer(RayPPOTrainer):
    """``RayPPOTrainer`` training on rollout batches exactly ``s`` optimizer updates old (``m2po.staleness``)."""

    def __init__(self, config: DictConfig, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self._m2po_setup(config)

    def _m2po_setup(self, config: DictConfig) -> None:
        """Validate the settings and build the buffer (separate from ``__init__`` so tests can call it)."""
        if not config.trainer.get("balance_batch", True):
            raise ConfigError(
                "trainer.balance_batch",
                "must be true for the M2PO stale trainer",
                hint="its _balance_batch hook is where the stale batch is swapped in",
            )
        rc = config.algorithm.get("rollout_correction", None)
        if rc is not None and rc.get("bypass_mode", False):
            raise ConfigError(
                "algorithm.rollout_correction.bypass_mode",
                "must be false: the stale trainer supplies old_log_probs itself (the behaviour policy's)",
            )
        s = stale_settings(config)
        self._m2po = s
        self._m2po_buffer = StaleRolloutBuffer(
            staleness=s["staleness"],
            updates_per_batch=updates_per_batch(config),
            queue_dir=s["queue_dir"],
            max_in_memory=s["queue_max_in_memory"],
        )
        self._m2po_prefill_step = False
        self._m2po_mfu: float | None = None
        self._m2po_entropy: float | None = None
        # one writer per run, like verl's metrics file: the driver (in the CPU mode every rank runs the
        # driver loop; rank 0 writes)
        rank0 = not (torch.distributed.is_available() and torch.distributed.is_initialized()) or (
            torch.distributed.get_rank() == 0
        )
        self._m2po_update_log = UpdateLog(update_log_path(config.trainer.default_local_dir)) if rank0 else None
        # the run as planned (lr schedule, which batches will be trained on) vs where this session stops
        self._m2po_planned_steps = getattr(self, "total_training_steps", None)
        stop = s["stop_at_step"]
        if stop is not None and self._m2po_planned_steps is not None:
            self.total_training_steps = min(int(stop), int(self._m2po_planned_steps))

    # -- the swap ------------------------------------------------------------------------------------
    def _balance_batch(self, batch: DataProto, metrics: dict, logging_prefix: str = "global_seqlen", **kw: Any) -> None:
        super()._balance_batch(batch, metrics, logging_prefix=logging_prefix, **kw)
        if logging_prefix == "global_seqlen":
            if self._m2po_exchange(batch, metrics):
                super()._balance_batch(batch, metrics, logging_prefix=logging_prefix, **kw)

    def _m2po_trained_later(self) -> bool:
        """Whether the batch generated in this step will be popped within the run (at step ``g + k``)."""
        k = self._m2po_buffer.schedule.prefill_batches
        total = self._m2po_planned_steps
        return k == 0 or total is None or self.global_steps + k <= int(total)

    def _m2po_exchange(self, batch: DataProto, metrics: dict) -> bool:
        """Attach behaviour log-probs to the fresh (balanced) batch, push it, and swap in the oldest batch
        (in place). Returns whether the step's batch was swapped."""
        buffer = self._m2po_buffer
        keep = buffer.in_prefill or self._m2po_trained_later()
        if keep:
            # what verl's loop sets right after _balance_batch, needed by the log-prob call (mfu) before it
            meta = batch.meta_info
            meta.setdefault("global_token_num", torch.sum(batch.batch["attention_mask"], dim=-1).tolist())
            if "images_seqlens" not in meta:
                mm = batch.non_tensor_batch.get("multi_modal_inputs", [])
                meta["images_seqlens"] = [n for x in mm if "image_grid_thw" in x for n in x["images_seqlens"].tolist()]
            behaviour, self._m2po_mfu = self._behaviour_log_probs(batch)
            batch.union(behaviour)
        popped = buffer.exchange(batch if keep else None)
        self._m2po_prefill_step = popped is None
        metrics["m2po/prefill"] = float(popped is None)
        metrics["m2po/queue_len"] = float(len(buffer))
        metrics["m2po/updates_done"] = float(buffer.updates_done)
        if popped is None:
            return False
        if self._m2po["proximal"]:
            popped.batch["rollout_log_probs"] = popped.batch.pop("old_log_probs")
            popped.batch.pop("entropys", None)
        batch.batch, batch.non_tensor_batch, batch.meta_info = popped.batch, popped.non_tensor_batch, popped.meta_info
        stale = batch.meta_info[META_STALENESS]
        metrics["m2po/behaviour_version"] = float(batch.meta_info[META_VERSION])
        metrics["m2po/staleness_min"] = float(min(stale))
        metrics["m2po/staleness_max"] = float(max(stale))
        return True

    def _behaviour_log_probs(self, batch: DataProto) -> tuple[DataProto, float | None]:
        """π_behav log-probs (and entropies) of a fresh batch: verl's recomputation with the current actor,
        whose weights are exactly those the rollout engine generated with."""
        return super()._compute_old_log_prob(batch)

    def _compute_old_log_prob(self, batch: DataProto):  # type: ignore[override]
        if self._m2po["proximal"] and not self._m2po_prefill_step:
            out, mfu = super()._compute_old_log_prob(batch)
        else:
            entropys = batch.batch.pop("entropys")
            out = DataProto.from_dict(tensors={"old_log_probs": batch.batch["old_log_probs"], "entropys": entropys})
            mfu = self._m2po_mfu
        mask = batch.batch["response_mask"].to(out.batch["entropys"].dtype)
        self._m2po_entropy = float((out.batch["entropys"] * mask).sum() / mask.sum().clamp(min=1))
        return out, mfu

    def _update_actor(self, batch: DataProto) -> DataProto:
        if self._m2po_prefill_step:
            return DataProto.from_single_dict(data={}, meta_info={"metrics": {}})
        output = super()._update_actor(batch)
        metrics = output.meta_info["metrics"]
        buffer = self._m2po_buffer
        first_update = buffer.updates_done
        norms = metrics.get("actor/grad_norm")
        attempted = buffer.updates_per_batch
        if norms is not None:  # one per optimizer step; verl skips a step whose norm is not finite
            norms = [norms] if isinstance(norms, int | float) else list(norms)
            attempted = len(norms)
            taken = sum(math.isfinite(float(x)) for x in norms)
        else:
            taken = attempted
        buffer.record_updates(taken, attempted)
        metrics["m2po/updates_done"] = float(buffer.updates_done)
        metrics["m2po/updates_skipped"] = float(buffer.updates_skipped)
        if self._m2po_update_log is not None and META_VERSION in batch.meta_info:
            self._m2po_log_updates(batch, metrics, first_update, attempted)
        return output

    def _m2po_log_updates(self, batch: DataProto, metrics: dict, first_update: int, attempted: int) -> None:
        """Append the step's per-update records to ``updates.jsonl`` (one write, before the checkpoint)."""
        scores = batch.batch["token_level_scores"] if "token_level_scores" in batch.batch.keys() else None
        reward_mean = None
        if scores is not None:  # verl's critic/score/mean: responses that were not aborted (length > 0)
            answered = batch.batch["response_mask"].sum(-1) > 0
            reward_mean = float(scores.sum(-1)[answered].mean()) if bool(answered.any()) else None
        records = update_records(
            metrics,
            first_update=first_update,
            behaviour_version=int(batch.meta_info[META_VERSION]),
            step=self.global_steps - self._m2po_buffer.schedule.prefill_batches - 1,
            global_step=self.global_steps,
            updates_per_step=attempted,
            step_values={"reward_mean": reward_mean, "entropy": self._m2po_entropy},
        )
        self._m2po_update_log.append(records)

    # -- checkpoints -----------------------------------------------------------------------------------
    def _save_checkpoint(self) -> None:
        folder = os.path.join(self.config.trainer.default_local_dir, f"global_step_{self.global_steps}")
        os.makedirs(folder, exist_ok=True)
        manifest = self._m2po_buffer.save(folder)  # before verl writes its tracker file
        super()._save_checkpoint()
        checkpoint = self.config.actor_rollout_ref.actor.get("checkpoint", None) or {}
        if not checkpoint.get("async_save", False):  # the tracker now names this checkpoint
            self._m2po_buffer.commit(manifest)

    def _load_checkpoint(self):  # type: ignore[override]
        result = self._m2po_restore()
        if self._m2po_update_log is not None:
            self._m2po_update_log.start_session(self._m2po_buffer.updates_done, self.global_steps)
        return result

    def _m2po_restore(self):
        result = super()._load_checkpoint()
        if self.global_steps <= 0:
            return result
        trainer = self.config.trainer
        if trainer.resume_mode == "resume_path":
            folder = str(trainer.resume_from_path)
        else:
            folder = os.path.join(str(trainer.default_local_dir), f"global_step_{self.global_steps}")
        if not os.path.isabs(folder):
            folder = os.path.join(os.getcwd(), folder)
        if not os.path.exists(os.path.join(folder, QUEUE_MANIFEST)):
            raise FileNotFoundError(
                f"{os.path.join(folder, QUEUE_MANIFEST)} is missing: the stale queue must be restored with the "
                f"checkpoint, or the next {self._m2po_buffer.schedule.prefill_batches} steps would not be exactly "
                f"{self._m2po_buffer.staleness} updates stale; resume from a checkpoint saved by M2POTrainer"
            )
        self._m2po_buffer.load(folder)
        self._m2po_prefill_step = False
        return result
