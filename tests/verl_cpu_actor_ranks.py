"""One rank of tests/test_verl_cpu_mode.py's actor-update check (run by torchrun, 2 gloo ranks on 127.0.0.1).

    torchrun --nproc-per-node 2 ... tests/verl_cpu_actor_ranks.py OUT SMOKE_DIR

Builds the CPU mode's trainer (verl's worker, FSDP2 engine, HF rollout), generates one real batch with
verl's agent loop, computes its log-probs with verl's ``_compute_old_log_prob``, makes it off-policy
(behaviour log-probs shifted by seeded noise, advantages ±1 per response), then runs verl's
``_update_actor`` (4 optimizer mini-batches, 2 micro-batches per rank each) once per loss and mask scope.
The M2PO worker's keep-mask, each micro-batch loss call's slice of it, and the parameters before/after
are recorded and gathered; rank 0 writes them to OUT/results.pt for the test to check against
``m2po.losses`` (not against this code). The trainer's per-update records of every run go to
OUT/updates.jsonl (each batch handed to ``_update_actor`` as the stale queue hands one out).
"""

from __future__ import annotations

import copy
import os
import sys
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist


def main(out: Path, smoke: Path) -> None:
    from m2po.verl_plugin import cpu_mode
    from m2po.verl_plugin.gpu_smoke import CPU_SMOKE, smoke_paths

    cpu_mode.setup_process()
    os.environ["VERL_FILE_LOGGER_PATH"] = str(out / "metrics.jsonl")  # the trainer's updates.jsonl goes to OUT
    overrides = [
        *CPU_SMOKE,
        *smoke_paths(smoke),
        f"trainer.default_local_dir={out / 'ckpt'}",
        "trainer.logger=[]",
        "actor_rollout_ref.actor.optim.weight_decay=0.0",  # parameters move by gradients only
    ]
    config = cpu_mode.compose(overrides)
    trainer = cpu_mode.build_trainer(config)
    trainer.global_steps = 0
    trainer._load_checkpoint()  # as fit starts: a fresh session of OUT/updates.jsonl (rank 0 writes it)

    import numpy as np
    from verl import DataProto
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer
    from verl.utils.config import omega_conf_to_dataclass
    from verl.workers.config import FSDPActorConfig
    from verl.workers.utils.losses import ppo_loss

    from m2po.losses import available_losses
    from m2po.verl_plugin.adapter import KEEP_MASK_KEY, M2POLossFn
    from m2po.verl_plugin.buffer import META_VERSION
    from m2po.verl_plugin.workers import M2POTrainingWorker

    rank = dist.get_rank()
    worker = trainer.actor_rollout_wg.worker
    actor = worker.actor
    assert isinstance(actor, M2POTrainingWorker)

    # -- record the mini-batch masks and what each micro-batch loss call receives ----------------------
    minibatches: list[dict] = []
    calls: list[dict] = []
    attach, no_grad_pass = actor.attach_keep_mask, actor._minibatch_log_probs
    seen_log_probs: list[torch.Tensor] = []

    def recording_pass(data):
        seen_log_probs.append(no_grad_pass(data))
        return seen_log_probs[-1]

    def recording_attach(data, tau):
        attach(data, tau)
        padded = data.select("old_log_probs", "advantages", "response_mask").to_padded_tensor()
        fields = {k: padded[k].clone() for k in ("old_log_probs", "advantages", "response_mask")}
        lp = seen_log_probs.pop()
        minibatches.append({"log_prob": lp, "keep": data[KEEP_MASK_KEY].clone(), "tau": tau, **fields})

    actor._minibatch_log_probs = recording_pass
    actor.attach_keep_mask = recording_attach
    original_call = M2POLossFn.__call__

    def recording_call(self, model_output, data, dp_group=None):
        padded = data.select("old_log_probs", "response_mask").to_padded_tensor()
        keep = data[KEEP_MASK_KEY].clone() if KEEP_MASK_KEY in data.keys() else None
        calls.append({"old_log_probs": padded["old_log_probs"].clone(), "keep": keep})
        return original_call(self, model_output, data, dp_group)

    M2POLossFn.__call__ = recording_call

    # -- one real batch, made off-policy -------------------------------------------------------------
    batch = DataProto.from_single_dict(next(iter(trainer.train_dataloader)))
    batch.non_tensor_batch["uid"] = np.array([f"p{i}" for i in range(len(batch))], dtype=object)
    gen = trainer._get_gen_batch(batch)
    gen.meta_info["global_steps"] = 1
    gen = gen.repeat(repeat_times=config.actor_rollout_ref.rollout.n, interleave=True)
    out_batch = trainer.async_rollout_manager.generate_sequences(gen)
    batch = batch.repeat(repeat_times=config.actor_rollout_ref.rollout.n, interleave=True).union(out_batch)
    batch.meta_info["temperature"] = config.actor_rollout_ref.rollout.temperature
    RayPPOTrainer._balance_batch(trainer, batch, metrics={})
    batch.meta_info["global_token_num"] = torch.sum(batch.batch["attention_mask"], dim=-1).tolist()
    batch.meta_info["images_seqlens"] = []
    g = torch.Generator().manual_seed(0)  # the same draws on every rank (the driver's data is shared)
    rows = len(batch)
    mask = batch.batch["response_mask"].float()
    batch.batch["advantages"] = torch.where(torch.rand(rows, generator=g) > 0.5, 1.0, -1.0)[:, None] * mask
    stale_rows = (torch.arange(rows) % 2 == 0).float()[:, None]  # half the responses off-policy, half on

    def off_policy(batch: DataProto) -> None:
        """Behaviour log-probs = the current policy's (verl's _compute_old_log_prob), shifted on half the rows."""
        old, _ = RayPPOTrainer._compute_old_log_prob(trainer, batch)
        noise = torch.randn(old.batch["old_log_probs"].shape, generator=g) * 0.3 * mask * stale_rows
        batch.batch["old_log_probs"] = old.batch["old_log_probs"] - noise

    def params() -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in actor.engine.module.state_dict().items()}

    results = []
    runs = [(name, "minibatch") for name in available_losses()] + [("m2po", "microbatch")]
    for name, scope in runs:
        with_loss = copy.deepcopy(config.actor_rollout_ref.actor)
        with_loss.policy_loss.loss_mode = name
        with_loss.policy_loss.mask_scope = scope
        actor_config: FSDPActorConfig = omega_conf_to_dataclass(with_loss)
        trainer.actor_rollout_wg.set_loss_fn(partial(ppo_loss, config=actor_config))
        minibatches.clear()
        calls.clear()
        off_policy(batch)
        before = params()
        step = DataProto(batch=batch.batch.clone(), non_tensor_batch=dict(batch.non_tensor_batch),
                         meta_info=dict(batch.meta_info))  # fmt: skip
        # as the stale queue hands a batch out: generated by the policy of now (its updates are recorded in
        # OUT/updates.jsonl, one per optimizer mini-batch)
        step.meta_info[META_VERSION] = trainer._m2po_buffer.updates_done
        trainer.global_steps = 2 + len(results)
        metrics = trainer._update_actor(step).meta_info["metrics"]
        after = params()
        changed = sum(int(not torch.equal(before[k], after[k])) for k in before)
        logged = {k: v for k, v in metrics.items() if k.startswith(("actor/m2po/", "actor/loss", "actor/grad_norm"))}
        logged["actor/update_lr"] = metrics["actor/update_lr"]
        record = {"loss": name, "scope": scope, "changed": changed, "n_params": len(before),
                  "minibatches": minibatches[:], "calls": calls[:], "metrics": logged}  # fmt: skip
        gathered = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, record)
        results.append(gathered)
    if rank == 0:
        torch.save(results, out / "results.pt")
    dist.barrier()


if __name__ == "__main__":
    try:
        main(Path(sys.argv[1]), Path(sys.argv[2]))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
