"""The stale queue on disk (``m2po.staleness_store.DurableStaleQueue``): each batch written once, checkpoints
hold references, consumed batches deleted once the latest checkpoint no longer needs them.

Oracles: a plain ``collections.deque`` run side by side (same pops), the bound ``k + min(f, k) + 1`` on the
batch files counted on disk, and crash points simulated by dropping the queue object without a commit.
"""

from __future__ import annotations

from collections import deque

import pytest
import torch

from m2po.staleness import EmptyQueueError
from m2po.staleness_store import DurableStaleQueue, MissingBatchError


def item(i: int) -> dict[str, torch.Tensor]:
    return {"x": torch.full((3,), float(i)), "id": torch.tensor(i)}


def ident(batch: dict) -> int:
    return int(batch["id"])


def test_fifo_matches_a_deque_and_each_batch_is_written_once(tmp_path) -> None:
    q = DurableStaleQueue(tmp_path / "store", max_in_memory=1)
    ref: deque[int] = deque()
    for i in range(12):
        q.push(item(i), policy_version=i)
        ref.append(i)
        if i % 3 != 2:
            got, version = q.pop()
            want = ref.popleft()
            assert ident(got) == want and version == want
    q.flush()
    assert q.num_pushed == 12 and q.num_popped == 8 and q.versions() == list(ref)
    assert q.num_in_memory <= 1
    # one write per push, never a rewrite; no checkpoint refers to the consumed ones: only the 4 waiting remain
    assert q.batches_written == 12
    assert [p.name for p in q.files()] == [f"batch_{i:012d}.pt" for i in ref]
    with pytest.raises(EmptyQueueError):
        DurableStaleQueue(tmp_path / "other").pop()


@pytest.mark.parametrize("k,f", [(4, 1), (4, 3), (4, 4), (3, 7)])
def test_disk_holds_at_most_k_plus_min_f_k_plus_one_batches(k: int, f: int, tmp_path) -> None:
    """A run: prefill k, then push+pop per step, a checkpoint (manifest, then commit) every f steps; the
    batch files on disk are counted after every push and every pop."""
    q = DurableStaleQueue(tmp_path / "store", max_in_memory=0)
    peak = 0
    for step in range(1, 40):
        q.push(item(step), policy_version=step)
        q.flush()
        peak = max(peak, len(q.files()))
        if step > k:
            q.pop()
            q.flush()
            peak = max(peak, len(q.files()))
        if step % f == 0:
            q.commit(q.manifest())
            assert len(q.files()) == min(step, k)  # right after a checkpoint: the waiting batches only
    assert peak == (k + f if f <= k else 2 * k + 1)
    assert peak <= k + min(f, k) + 1


def test_checkpoint_references_restore_the_queue_and_prune_the_store(tmp_path) -> None:
    store = tmp_path / "store"
    q = DurableStaleQueue(store, max_in_memory=1)
    for i in range(6):
        q.push(item(i), policy_version=i)
    for _ in range(2):
        q.pop()
    manifest = q.manifest()  # the checkpoint: 4 waiting batches (2..5), by reference
    q.commit(manifest)
    assert sorted(int(p.name[6:18]) for p in q.files()) == [2, 3, 4, 5]  # consumed 0, 1 deleted
    # the run goes on, then crashes before its next checkpoint commits
    for i in range(6, 9):
        q.push(item(i), policy_version=i)
        q.pop()
    q.flush()
    assert len(q.files()) == 4 + 3  # consumed 2..4 are still needed by the latest checkpoint (5..8 wait)
    del q
    resumed = DurableStaleQueue(store, max_in_memory=1)
    resumed.load_manifest(manifest)
    assert sorted(int(p.name[6:18]) for p in resumed.files()) == [2, 3, 4, 5]  # 6..8 (after the checkpoint) gone
    assert [ident(resumed.pop()[0]) for _ in range(4)] == [2, 3, 4, 5]
    assert resumed.num_pushed == 6 and resumed.num_popped == 6


def test_an_older_checkpoint_is_not_resumable_and_says_so(tmp_path) -> None:
    store = tmp_path / "store"
    q = DurableStaleQueue(store)
    for i in range(3):
        q.push(item(i), policy_version=i)
    old = q.manifest()
    q.commit(old)
    q.pop()
    q.push(item(3), policy_version=3)
    q.commit(q.manifest())  # the newer checkpoint becomes the latest: batch 0 is deleted
    with pytest.raises(MissingBatchError, match="only the latest checkpoint"):
        DurableStaleQueue(store).load_manifest(old, source="global_step_1/m2po_stale_queue.json")
    with pytest.raises(ValueError, match="not a stale-queue manifest"):
        DurableStaleQueue(store).load_manifest({"format": "x"})


def test_training_does_not_wait_for_writes(tmp_path, monkeypatch) -> None:
    """push returns while the batch is still being written; the batch stays in RAM until it is on disk."""
    import threading

    import m2po.staleness_store as store_mod

    gate = threading.Event()
    real = store_mod.atomic_torch_save

    def slow_save(obj, path):
        gate.wait(10)
        real(obj, path)

    monkeypatch.setattr(store_mod, "atomic_torch_save", slow_save)
    q = DurableStaleQueue(tmp_path / "store", max_in_memory=0)
    q.push(item(0), policy_version=0)  # returns at once although the write is blocked
    q.push(item(1), policy_version=0)
    assert q.files() == [] and q.num_in_memory == 2
    assert ident(q.pop()[0]) == 0  # served from RAM
    gate.set()
    q.flush()
    assert [p.name for p in q.files()] == ["batch_000000000001.pt"]  # the consumed one is gone once written
    q.push(item(2), policy_version=4)
    q.flush()
    q.push(item(3), policy_version=4)  # evicts the written ones beyond the bound
    assert q.num_in_memory <= 1
    q.close()
