"""Tests for ``m2po.staleness``: the exact-staleness schedule and the spilling FIFO.

The oracle for the staleness of update ``u`` is written here from paper §3.2, independently of
``StalenessSchedule``: the first ``s`` updates train on base-model data (staleness ``u``), every
later one on data exactly ``s + (u mod n)`` updates old.
"""

from __future__ import annotations

import pickle

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from m2po.staleness import EmptyQueueError, StalenessSchedule, StaleQueue

CASES = [(0, 1), (0, 4), (4, 4), (8, 4), (32, 4), (256, 4), (6, 2), (3, 1)]


def oracle_staleness(u: int, s: int, n: int) -> int:
    return u if u < s else s + u % n


def make_batch(step: int, tag: str = "train") -> dict:
    """A rollout batch whose content identifies it (prompt ids differ every step)."""
    g = torch.Generator().manual_seed(step * 7919 + (1 if tag == "prefill" else 0))
    return {
        "tag": tag,
        "step": step,
        "prompt_ids": torch.arange(step * 8, step * 8 + 8),
        "old_log_prob": torch.randn(3, 5, generator=g),
    }


class FakeTrainer:
    """The training loop of paper §3.2 driven by a StaleQueue; records one row per update."""

    def __init__(self, s: int, n: int, queue: StaleQueue) -> None:
        self.s, self.n, self.q = s, n, queue
        self.updates = 0
        self.step = 0
        self.rows: list[tuple[int, int, int, str, int]] = []  # (update, version, j, tag, batch step)

    def prefill(self) -> None:
        for b in range(self.s // self.n):
            self.q.push(make_batch(b, "prefill"), policy_version=0, metadata={"prefill": b})

    def train_step(self) -> None:
        self.q.push(make_batch(self.step), policy_version=self.updates, metadata={"step": self.step})
        batch, version = self.q.pop()
        for j in range(self.n):
            self.rows.append((self.updates, version, j, batch["tag"], batch["step"]))
            self.updates += 1
        self.step += 1

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.train_step()


# --------------------------------------------------------------------------------------------
# schedule
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("s,n", CASES)
@pytest.mark.parametrize("max_in_memory", [None, 1])
def test_fake_loop_matches_oracle(s: int, n: int, max_in_memory: int | None, tmp_path) -> None:
    q = StaleQueue(max_in_memory=max_in_memory, spill_dir=tmp_path)
    sched = StalenessSchedule(s, n)
    t = FakeTrainer(s, n, q)
    t.prefill()
    assert len(q) == sched.prefill_batches == s // n
    steps = s // n + 20
    t.run(steps)
    assert len(t.rows) == steps * n
    prefill_seen = []
    for u, version, j, tag, bstep in t.rows:
        assert u - version == oracle_staleness(u, s, n), (u, version)
        assert sched.expected_staleness(u) == u - version
        assert sched.behaviour_version(u) == version
        if u < s:
            assert tag == "prefill" and version == 0
            if j == 0:
                prefill_seen.append(bstep)
        else:
            assert tag == "train"
    # every warm-up step trains on a different prefill batch, in order
    assert prefill_seen == list(range(s // n))
    assert len(q) == s // n  # steady state: k batches waiting


def test_paper_examples() -> None:
    sched = StalenessSchedule(256, 4)
    assert sched.prefill_batches == sched.stale_iterations == 64
    assert [sched.expected_staleness(u) for u in range(256, 264)] == [256, 257, 258, 259] * 2
    assert [sched.expected_staleness(u) for u in (0, 1, 255)] == [0, 1, 255]
    assert [StalenessSchedule(32, 4).expected_staleness(u) for u in range(1000, 1004)] == [32, 33, 34, 35]
    assert [StalenessSchedule(0, 4).expected_staleness(u) for u in range(8)] == [0, 1, 2, 3] * 2
    assert StalenessSchedule.from_stale_iterations(64, 4) == sched


@settings(max_examples=60, deadline=None)
@given(k=st.integers(0, 12), n=st.integers(1, 6), u=st.integers(0, 500))
def test_schedule_property(k: int, n: int, u: int) -> None:
    s = k * n
    assert StalenessSchedule(s, n).expected_staleness(u) == oracle_staleness(u, s, n)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"staleness": 33, "updates_per_batch": 4}, "use 32 or 36"),
        ({"staleness": 2, "updates_per_batch": 4}, "use 0 or 4"),
        ({"staleness": -4, "updates_per_batch": 4}, "staleness"),
        ({"staleness": 4, "updates_per_batch": 0}, "updates_per_batch"),
        ({"staleness": 4.0, "updates_per_batch": 4}, "staleness"),
        ({"staleness": True, "updates_per_batch": 1}, "staleness"),
    ],
)
def test_schedule_rejects_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        StalenessSchedule(**kwargs)


def test_schedule_rejects_bad_update() -> None:
    with pytest.raises(ValueError, match="update"):
        StalenessSchedule(4, 4).expected_staleness(-1)


# --------------------------------------------------------------------------------------------
# queue
# --------------------------------------------------------------------------------------------


def drain(q: StaleQueue) -> list[tuple[dict, int]]:
    out = []
    while len(q):
        out.append(q.pop())
    return out


def assert_same_pops(a: list[tuple[dict, int]], b: list[tuple[dict, int]]) -> None:
    assert len(a) == len(b)
    for (ia, va), (ib, vb) in zip(a, b):
        assert va == vb
        assert ia["tag"] == ib["tag"] and ia["step"] == ib["step"]
        torch.testing.assert_close(ia["prompt_ids"], ib["prompt_ids"], rtol=0, atol=0)
        torch.testing.assert_close(ia["old_log_prob"], ib["old_log_prob"], rtol=0, atol=0)


@pytest.mark.parametrize("max_in_memory", [0, 1, 3])
def test_spill_gives_same_pops_and_bounds_memory(max_in_memory: int, tmp_path) -> None:
    ram, disk = StaleQueue(), StaleQueue(max_in_memory=max_in_memory, spill_dir=tmp_path / "spill")
    pops_ram, pops_disk = [], []
    # an irregular push/pop pattern, so spills and loads interleave
    for i in range(40):
        for q in (ram, disk):
            q.push(make_batch(i), policy_version=i)
        assert disk.num_in_memory <= max_in_memory
        assert disk.num_spilled == len(disk) - disk.num_in_memory
        assert ram.versions() == disk.versions()
        if i % 3 == 2:
            assert ram.peek_version() == disk.peek_version()
            pops_ram.append(ram.pop())
            pops_disk.append(disk.pop())
            assert disk.num_in_memory <= max_in_memory
    on_disk = list((tmp_path / "spill").rglob("*.pt"))
    assert len(on_disk) == disk.num_spilled > 0
    pops_ram += drain(ram)
    pops_disk += drain(disk)
    assert_same_pops(pops_ram, pops_disk)
    assert [v for _, v in pops_disk] == list(range(40))  # FIFO
    assert not list((tmp_path / "spill").rglob("*.pt"))  # popped files are deleted


def test_metadata_and_entries(tmp_path) -> None:
    q = StaleQueue(max_in_memory=1, spill_dir=tmp_path)
    q.push(make_batch(0), 0, metadata={"prompts": [1, 2]})
    q.push(make_batch(1), 4, metadata={"prompts": [3]})
    assert q.peek_metadata() == {"prompts": [1, 2]}
    e = q.pop_entry()
    assert (e.seq, e.policy_version, e.metadata, e.item["step"]) == (0, 0, {"prompts": [1, 2]}, 0)
    assert not e.spilled
    assert (q.num_pushed, q.num_popped) == (2, 1)


def test_empty_queue_errors() -> None:
    q = StaleQueue()
    with pytest.raises(EmptyQueueError, match="empty"):
        q.pop()
    with pytest.raises(IndexError, match="empty"):
        q.peek_version()


@pytest.mark.parametrize("kwargs", [{"max_in_memory": -1}, {"max_in_memory": 1.5}])
def test_queue_rejects_bad_bound(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="max_in_memory"):
        StaleQueue(**kwargs)


@pytest.mark.parametrize("version", [-1, 2.0, None])
def test_queue_rejects_bad_version(version) -> None:
    with pytest.raises(ValueError, match="policy_version"):
        StaleQueue().push({}, version)


def test_clear_and_close_remove_files(tmp_path) -> None:
    q = StaleQueue(max_in_memory=1, spill_dir=tmp_path)
    for i in range(5):
        q.push(make_batch(i), i)
    assert len(list(tmp_path.rglob("*.pt"))) == 4
    q.clear()
    assert len(q) == 0 and not list(tmp_path.rglob("*.pt"))
    q.push(make_batch(9), 9)
    q.push(make_batch(10), 10)
    assert q.pop()[1] == 9
    q.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("s,n", [(4, 4), (32, 4), (256, 4)])
@pytest.mark.parametrize("mode", ["state_dict", "save"])
def test_resume_mid_run_continues_identically(s: int, n: int, mode: str, tmp_path) -> None:
    steps_before, steps_after = s // n // 2 + 3, s // n + 5
    ref = FakeTrainer(s, n, StaleQueue(max_in_memory=2, spill_dir=tmp_path / "ref"))
    ref.prefill()
    ref.run(steps_before + steps_after)

    a = FakeTrainer(s, n, StaleQueue(max_in_memory=2, spill_dir=tmp_path / "a"))
    a.prefill()
    a.run(steps_before)
    if mode == "state_dict":
        # through pickle, as a trainer checkpoint would carry it
        state = pickle.loads(pickle.dumps(a.q.state_dict()))
    else:
        a.q.save(tmp_path / "ckpt" / "queue.pt")
    a.q.close()
    del a.q  # the old queue and its spill files are gone

    q_new = StaleQueue(max_in_memory=1, spill_dir=tmp_path / "fresh")
    if mode == "state_dict":
        q_new.load_state_dict(state)
    else:
        q_new.load(tmp_path / "ckpt" / "queue.pt")
    assert q_new.num_in_memory <= 1 and q_new.num_spilled == len(q_new) - q_new.num_in_memory
    b = FakeTrainer(s, n, q_new)
    b.updates, b.step, b.rows = a.updates, a.step, list(a.rows)
    b.run(steps_after)
    assert b.rows == ref.rows
    assert (q_new.num_pushed, q_new.num_popped) == (ref.q.num_pushed, ref.q.num_popped)
    assert_same_pops(drain(q_new), drain(ref.q))


def test_state_dict_is_self_contained(tmp_path) -> None:
    q = StaleQueue(max_in_memory=1, spill_dir=tmp_path)
    for i in range(4):
        q.push(make_batch(i), i * 4, metadata={"i": i})
    state = q.state_dict()
    assert [e["policy_version"] for e in state["entries"]] == [0, 4, 8, 12]
    assert all(e["item"] is not None for e in state["entries"])
    assert state["next_seq"] == 4
    q.close()  # spill files removed: the state must not depend on them
    q2 = StaleQueue()
    q2.load_state_dict(state)
    assert [q2.peek_metadata()["i"], q2.versions()] == [0, [0, 4, 8, 12]]
    q2.push(make_batch(4), 16)
    assert q2.state_dict()["entries"][-1]["seq"] == 4  # the counter continues
    with pytest.raises(ValueError, match="StaleQueue"):
        q2.load_state_dict({"entries": []})


def test_load_rejects_foreign_file(tmp_path) -> None:
    p = tmp_path / "x.pt"
    torch.save({"a": 1}, p)
    with pytest.raises(ValueError, match="not a StaleQueue file"):
        StaleQueue().load(p)


@settings(max_examples=40, deadline=None)
@given(
    ops=st.lists(st.booleans(), min_size=1, max_size=60),
    bound=st.one_of(st.none(), st.integers(0, 4)),
)
def test_queue_property_fifo_and_bound(ops: list[bool], bound: int | None, tmp_path_factory) -> None:
    q = StaleQueue(max_in_memory=bound, spill_dir=tmp_path_factory.mktemp("prop"))
    model: list[int] = []
    pushed = 0
    for is_push in ops:
        if is_push or not model:
            q.push({"v": torch.tensor([pushed])}, pushed)
            model.append(pushed)
            pushed += 1
        else:
            item, v = q.pop()
            assert v == model.pop(0) == int(item["v"])
        assert q.versions() == model
        if bound is not None:
            assert q.num_in_memory <= bound
    q.close()
