"""The grading pool: pathological answers finish within the hard timeout and the pool keeps working.

Each pathological input must come back as ``timeout`` or ``error`` within ``timeout + margin``,
after which a normal pair must still be graded correctly (a killed worker has been replaced).
One pool runs with math-verify's soft timeout on (the normal setting), one with it off, so the
parent's kill-and-replace path is exercised on its own.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from m2po.eval.pool import GradeTask, GradingPool

TIMEOUT_S = 2.0
MARGIN_S = 3.0  # kill + join + fork of a replacement from the warm forkserver, on a loaded 2-core box

PATHOLOGICAL = {
    "power tower": "\\boxed{9^{9^{9^{9}}}}",
    "huge power": "\\boxed{9^{387420489}}",
    "nested braces": "\\boxed{" + "{" * 900 + "1" + "}" * 900 + "}",
    "nested parens": "\\boxed{" + "(" * 900 + "1" + ")" * 900 + "}",
    "100k characters": "\\boxed{" + "1+" * 50_000 + "1}",
    "lone surrogate": "\\boxed{\ud800\udfff\ud800}",
}


@pytest.fixture(scope="module")
def pool():
    with GradingPool(workers=2, timeout_s=TIMEOUT_S) as p:
        yield p


@pytest.fixture(scope="module")
def hard_pool():
    """Soft timeout off: only the parent's wall-clock kill bounds a sample."""
    with GradingPool(workers=1, timeout_s=TIMEOUT_S, soft_timeout_s=0) as p:
        yield p


@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_pathological_bounded(pool: GradingPool, name: str):
    t0 = time.monotonic()
    res = pool.grade(PATHOLOGICAL[name], "1")
    elapsed = time.monotonic() - t0
    assert res.status in ("timeout", "error"), res
    assert not res.correct
    assert elapsed < TIMEOUT_S + MARGIN_S, f"{name}: {elapsed:.1f}s"
    assert pool.grade("\\boxed{\\frac{1}{2}}", "0.5").status == "correct"


@pytest.mark.parametrize("name", ["power tower", "huge power"])
def test_hard_kill_replaces_worker(hard_pool: GradingPool, name: str):
    before = hard_pool.worker_pids
    killed = hard_pool.n_killed
    t0 = time.monotonic()
    res = hard_pool.grade(PATHOLOGICAL[name], "1")
    assert res.status == "timeout" and "killed" in res.detail
    assert res.extracted is not None  # the answer is still recorded for a killed sample
    assert time.monotonic() - t0 < TIMEOUT_S + MARGIN_S
    assert hard_pool.n_killed == killed + 1
    assert hard_pool.worker_pids != before
    assert hard_pool.grade("\\boxed{7}", "7").status == "correct"


def test_worker_crash_is_error_and_replaced(pool: GradingPool):
    """A worker that dies mid-sample (OOM killer, segfault) yields ``error``, never a lost sample."""
    slow = GradeTask("slow", PATHOLOGICAL["power tower"], "1")
    victim = pool.worker_pids[0]  # the first idle worker gets the task
    killer = threading.Timer(0.5, os.kill, (victim, signal.SIGKILL))
    killer.start()
    t0 = time.monotonic()
    results = dict(pool.imap([slow]))
    killer.join()
    (res,) = results.values()
    assert res.status == "error" and "died" in res.detail, res
    assert time.monotonic() - t0 < TIMEOUT_S
    assert victim not in pool.worker_pids
    assert pool.grade("\\boxed{2}", "2").correct


def test_many_in_order_with_a_stuck_one(pool: GradingPool):
    pairs = [(f"\\boxed{{{i}}}", str(i)) for i in range(20)]
    pairs.insert(7, (PATHOLOGICAL["power tower"], "1"))
    res = pool.grade_many(pairs)
    assert len(res) == 21
    assert res[7].status in ("timeout", "error")
    assert all(r.status == "correct" for i, r in enumerate(res) if i != 7)


def test_imap_yields_every_task_once(pool: GradingPool):
    tasks = [GradeTask(i, f"\\boxed{{{i % 3}}}", "1") for i in range(12)]
    seen = [t.key for t, _ in pool.imap(tasks)]
    assert sorted(seen) == list(range(12))


def test_bad_arguments():
    with pytest.raises(ValueError):
        GradingPool(workers=0)
    with pytest.raises(ValueError):
        GradingPool(timeout_s=0)


def test_abandoned_imap_does_not_wedge_the_pool(pool: GradingPool):
    it = pool.imap([GradeTask(i, PATHOLOGICAL["power tower"], "1") for i in range(4)])
    next(it)  # the caller stops after one result, leaving a sample in flight
    del it
    assert pool.grade("\\boxed{5}", "5").correct


def test_workers_run_concurrently(pool: GradingPool):
    """Samples that each hit math-verify's 1 s (wall-clock) soft timeout: two workers finish two of them
    in about the time one worker needs for one, whatever share of the CPU this machine gives them,
    so the parent really keeps both busy."""

    def run(p: GradingPool) -> float:
        tasks = [GradeTask(i, PATHOLOGICAL["power tower"], "1") for i in range(2)]
        t0 = time.monotonic()
        assert [r.status for _, r in p.imap(tasks)] == ["timeout", "timeout"]
        return time.monotonic() - t0

    with GradingPool(workers=1, timeout_s=TIMEOUT_S) as single:
        t1 = run(single)
    t2 = run(pool)
    assert t1 / t2 > 1.5, f"1 worker {t1:.2f}s vs 2 workers {t2:.2f}s"
