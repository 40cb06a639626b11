"""Exact staleness on verl ``DataProto`` batches: ``StaleRolloutBuffer`` and the ``M2POTrainer`` hooks.

The buffer tests need only ``verl.DataProto``. The trainer-hook tests import verl's ``RayPPOTrainer``,
which needs verl's runtime extras (cachetools, fastapi, uvicorn); they are skipped without them. The
queue on disk itself (write once, references in checkpoints) is tested in tests/test_staleness_store.py.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from verl import DataProto

from m2po.staleness import StalenessSchedule
from m2po.verl_plugin.buffer import META_FIRST_UPDATE, META_STALENESS, META_VERSION, QUEUE_MANIFEST, StaleRolloutBuffer

N = 4  # updates per batch (4 mini-batches, as in the paper)
ROWS, PROMPT, RESP = 4, 3, 5


def rollout_batch(step: int, with_behaviour: bool = True) -> DataProto:
    """A generated batch as verl's loop has it after generation (tagged by ``step`` in every field)."""
    g = torch.Generator().manual_seed(step)
    tensors = {
        "prompts": torch.randint(0, 100, (ROWS, PROMPT), generator=g),
        "responses": torch.randint(0, 100, (ROWS, RESP), generator=g),
        "input_ids": torch.randint(0, 100, (ROWS, PROMPT + RESP), generator=g),
        "attention_mask": torch.ones(ROWS, PROMPT + RESP, dtype=torch.long),
        "position_ids": torch.arange(PROMPT + RESP).repeat(ROWS, 1),
        "response_mask": torch.ones(ROWS, RESP, dtype=torch.long),
        "rm_scores": torch.zeros(ROWS, RESP).index_fill_(1, torch.tensor([RESP - 1]), float(step % 2)),
        "step": torch.full((ROWS,), step),
    }
    if with_behaviour:
        tensors["old_log_probs"] = -torch.rand(ROWS, RESP, generator=g)
    non_tensors = {
        "uid": np.array([f"s{step}-p{i // 2}" for i in range(ROWS)], dtype=object),
        "reward_model": np.array([{"ground_truth": str(step), "style": "rule"}] * ROWS, dtype=object),
    }
    return DataProto.from_dict(tensors=tensors, non_tensors=non_tensors, meta_info={"temperature": 1.0, "gen": step})


def assert_same(a: DataProto, b: DataProto) -> None:
    assert set(a.batch.keys()) == set(b.batch.keys())
    for k in a.batch.keys():
        assert torch.equal(a.batch[k], b.batch[k]), k
    assert set(a.non_tensor_batch) == set(b.non_tensor_batch)
    for k in a.non_tensor_batch:
        assert list(a.non_tensor_batch[k]) == list(b.non_tensor_batch[k]), k
    assert a.meta_info == b.meta_info


@pytest.mark.parametrize("staleness", [0, 4, 12, 32])
def test_batches_are_exactly_s_updates_old(staleness: int, tmp_path) -> None:
    schedule = StalenessSchedule(staleness, N)
    buf = StaleRolloutBuffer(staleness, N, queue_dir=tmp_path, max_in_memory=2)
    generated_by: dict[int, int] = {}  # step -> policy version (updates made before generation)
    update = 0
    steps = schedule.prefill_batches + 12
    for step in range(steps):
        generated_by[step] = update
        popped = buf.exchange(rollout_batch(step))
        if step < schedule.prefill_batches:
            assert popped is None and buf.updates_done == 0
            continue
        assert popped is not None
        src = int(popped.batch["step"][0])
        assert popped.non_tensor_batch["reward_model"][0]["ground_truth"] == str(src)
        assert popped.meta_info[META_VERSION] == generated_by[src]
        assert popped.meta_info[META_FIRST_UPDATE] == update
        for j in range(N):  # the n updates this batch makes
            assert popped.meta_info[META_STALENESS][j] == schedule.expected_staleness(update + j)
            assert update + j - generated_by[src] == schedule.expected_staleness(update + j)
        if step >= 2 * schedule.prefill_batches:
            assert popped.meta_info[META_STALENESS] == [staleness + j for j in range(N)]
        buf.record_updates(N)  # the trainer reports the n optimizer steps verl took
        update += N
    assert buf.updates_done == update
    assert len(buf) == schedule.prefill_batches


def test_save_load_round_trip_is_unchanged(tmp_path) -> None:
    """A checkpoint's manifest plus the run's queue folder restore the queue: the resumed run pops exactly
    what an uninterrupted run pops."""
    s, cut, total = 12, 5, 12

    def run(buf: StaleRolloutBuffer, steps: range) -> list:
        out = []
        for i in steps:
            out.append(buf.exchange(rollout_batch(i)))
            if out[-1] is not None:
                buf.record_updates(N)
        return out

    ref_out = run(StaleRolloutBuffer(s, N, queue_dir=tmp_path / "ref", max_in_memory=1), range(total))
    first = StaleRolloutBuffer(s, N, queue_dir=tmp_path / "queue", max_in_memory=1)
    out = run(first, range(cut))
    folder = tmp_path / "ckpt" / "global_step_5"
    manifest = first.save(folder)
    first.commit(manifest)
    assert (folder / QUEUE_MANIFEST).stat().st_size < 4096  # references, not batches
    first.close()
    resumed = StaleRolloutBuffer(s, N, queue_dir=tmp_path / "queue", max_in_memory=1)
    resumed.load(folder)
    assert resumed.updates_done == (cut - s // N) * N and len(resumed) == s // N
    out += run(resumed, range(cut, total))
    for a, b in zip(ref_out, out):
        assert (a is None) == (b is None)
        if a is not None:
            assert_same(a, b)
    with pytest.raises(ValueError, match="staleness"):
        StaleRolloutBuffer(8, N, queue_dir=tmp_path / "queue").load(folder)


def test_buffer_is_not_affected_by_later_mutation_of_the_pushed_batch(tmp_path) -> None:
    buf = StaleRolloutBuffer(4, N, queue_dir=tmp_path, max_in_memory=2)
    fresh = rollout_batch(0)
    assert buf.exchange(fresh) is None
    fresh.batch["advantages"] = torch.ones(ROWS, RESP)  # verl's loop keeps working on the object
    fresh.meta_info["global_token_num"] = [1, 2, 3, 4]
    popped = buf.exchange(rollout_batch(1))
    assert "advantages" not in popped.batch.keys() and "global_token_num" not in popped.meta_info
    with pytest.raises(ValueError, match="old_log_probs"):
        buf.exchange(rollout_batch(2, with_behaviour=False))


# -- the trainer hooks ---------------------------------------------------------------------------------

_RUNTIME = all(importlib.util.find_spec(m) is not None for m in ("cachetools", "fastapi", "uvicorn"))


class _FakeWorkerGroup:
    """The two things the hooked verl methods ask of the actor worker group on the driver."""

    def __init__(self) -> None:
        self._dispatch_info = {"actor": [0, 1]}  # 2 data-parallel ranks (for _balance_batch)
        self.saved: list[str] = []

    def save_checkpoint(self, local_path, hdfs_path=None, global_step=0, max_ckpt_to_keep=None) -> None:
        os.makedirs(local_path, exist_ok=True)
        self.saved.append(local_path)

    def load_checkpoint(self, local_path, del_local_after_load=False) -> None:
        assert os.path.isdir(local_path)


class _FakeLoader:
    def __len__(self) -> int:
        return 10_000

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state) -> None:
        pass


def _trainer(tmp_path, staleness: int, loss_mode: str = "m2po"):
    from m2po.verl_plugin.trainer import M2POTrainer

    config = OmegaConf.create(
        {
            "m2po": {"staleness": staleness, "queue_max_in_memory": 1, "queue_dir": str(tmp_path / "queue")},
            "data": {"train_batch_size": 4},
            "algorithm": {"rollout_correction": {"bypass_mode": False}},
            "actor_rollout_ref": {
                "actor": {"ppo_mini_batch_size": 1, "ppo_epochs": 1, "policy_loss": {"loss_mode": loss_mode},
                          "checkpoint": {"async_save": False}},
            },
            "trainer": {"balance_batch": True, "default_local_dir": str(tmp_path / "ckpt"), "default_hdfs_dir": None,
                        "resume_mode": "auto", "del_local_ckpt_after_load": False, "max_actor_ckpt_to_keep": 2},
        }
    )  # fmt: skip
    trainer = object.__new__(M2POTrainer)  # no Ray: only the attributes the hooked methods use
    trainer.config, trainer.use_critic, trainer.use_prefix_grouper = config, False, False
    trainer.actor_rollout_wg, trainer.train_dataloader = _FakeWorkerGroup(), _FakeLoader()
    trainer._m2po_setup(config)

    def behaviour(batch: DataProto):  # stands in for the actor's log-prob pass
        step = int(batch.batch["step"][0])
        lp = -torch.rand(len(batch), RESP, generator=torch.Generator().manual_seed(1000 + step))
        trainer.behaviour_by_step[step] = lp
        return DataProto.from_dict(tensors={"old_log_probs": lp, "entropys": torch.ones(len(batch), RESP)}), 0.5

    trainer.behaviour_by_step = {}
    trainer._behaviour_log_probs = behaviour
    return trainer


def _step(trainer, step: int) -> tuple[DataProto, dict]:
    """What verl's fit loop does with one generated batch, up to the actor update."""
    batch = rollout_batch(step, with_behaviour=False)
    metrics: dict = {}
    trainer._balance_batch(batch, metrics=metrics)
    old, mfu = trainer._compute_old_log_prob(batch)
    assert mfu == 0.5 and "entropys" in old.batch.keys()
    old.batch.pop("entropys")
    batch.union(old)
    if metrics["m2po/prefill"] == 0.0:
        trainer._m2po_buffer.record_updates(N)  # what _update_actor reports after verl's update
    return batch, metrics


@pytest.mark.skipif(not _RUNTIME, reason="verl's RayPPOTrainer needs cachetools, fastapi and uvicorn")
def test_trainer_trains_on_batches_exactly_s_updates_old(tmp_path) -> None:
    s = 8
    trainer = _trainer(tmp_path, s)
    schedule = StalenessSchedule(s, N)
    for step in range(schedule.prefill_batches + 6):
        batch, metrics = _step(trainer, step)
        if step < schedule.prefill_batches:
            assert metrics["m2po/prefill"] == 1.0
            assert trainer._update_actor(batch).meta_info["metrics"] == {}  # no update while prefilling
            assert int(batch.batch["step"][0]) == step
            continue
        src = int(batch.batch["step"][0])
        assert src == step - schedule.prefill_batches and metrics["m2po/prefill"] == 0.0
        first = (step - schedule.prefill_batches) * N
        assert batch.meta_info[META_STALENESS] == [schedule.expected_staleness(first + j) for j in range(N)]
        assert metrics["m2po/staleness_min"] == schedule.expected_staleness(first)
        # the ratio's denominator: the behaviour log-probs computed when the batch was generated
        # (rows reordered by verl's _balance_batch, so compare as multisets of rows)
        got = sorted(map(tuple, batch.batch["old_log_probs"].tolist()))
        assert got == sorted(map(tuple, trainer.behaviour_by_step[src].tolist()))


@pytest.mark.skipif(not _RUNTIME, reason="verl's RayPPOTrainer needs cachetools, fastapi and uvicorn")
def test_trainer_checkpoint_round_trip(tmp_path) -> None:
    s = 8
    trainer = _trainer(tmp_path, s)
    for step in range(4):
        _step(trainer, step)
    trainer.global_steps = 4
    trainer._save_checkpoint()
    folder = tmp_path / "ckpt" / "global_step_4"
    assert (folder / QUEUE_MANIFEST).exists() and (tmp_path / "ckpt" / "latest_checkpointed_iteration.txt").exists()
    expected = [_step(trainer, step)[0] for step in range(4, 7)]

    resumed = _trainer(tmp_path, s)
    resumed._load_checkpoint()
    assert resumed.global_steps == 4 and resumed._m2po_buffer.updates_done == trainer._m2po_buffer.updates_done - 3 * N
    for step, want in zip(range(4, 7), expected):
        got = _step(resumed, step)[0]
        assert torch.equal(got.batch["step"], want.batch["step"])
        assert torch.equal(got.batch["old_log_probs"], want.batch["old_log_probs"])
        assert got.meta_info[META_STALENESS] == want.meta_info[META_STALENESS]
