"""The M2PO paper's math reward as verl's custom reward function.

verl 0.9.1 loads it with ``reward.custom_reward_function.path=<this file>`` and
``reward.custom_reward_function.name=compute_score``; its reward loop calls::

    compute_score(data_source=..., solution_str=..., ground_truth=..., extra_info=..., **reward_kwargs)

with ``reward_kwargs`` from ``reward.custom_reward_function.reward_kwargs``, from a thread pool
(``loop.run_in_executor``) — never the main thread.

Reward (paper App. B): 1.0 for a correct final answer (last ``\\boxed{}`` compared with math-verify by
``m2po.grader``); for an extractable but wrong answer ``format_reward``: 0.0 by default as in the
authors' released code, 0.1 as the paper's text says (``reward_kwargs.format_reward=0.1``); 0.0 otherwise.

Isolation. math-verify bounds its own time with SIGALRM, which works only in a process's main thread and
cannot interrupt C-level work. So by default (``mode="process"``) each call is graded in a worker
process of :class:`m2po.eval.pool.GradingPool`, where math-verify's soft timeout works and the parent
kills the worker after ``timeout_s`` seconds of wall clock (verdict: 0.0). Concurrent calls from verl's
threads check out one single-worker pool each from a bounded set (``workers`` of them per reward-loop
process). ``mode="inline"`` grades in the calling thread with math-verify's timeouts disabled (off the
main thread they cannot work): faster, but a pathological answer can block that thread.
"""

from __future__ import annotations

import atexit
import queue
import threading
from typing import Any

from m2po.grader import GradeResult, grade_one

__all__ = ["compute_score", "score_from_result"]

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_WORKERS = 4
MODES = ("process", "inline")

_lock = threading.Lock()
_pools: dict[tuple[int, float], queue.Queue] = {}


def score_from_result(result: GradeResult, format_reward: float = 0.0) -> dict[str, float]:
    """``score`` (the reward) plus ``acc`` and ``extractable`` (logged by verl as reward extra info)."""
    correct = result.status == "correct"
    wrong_but_extracted = result.status == "incorrect"
    score = 1.0 if correct else (float(format_reward) if wrong_but_extracted else 0.0)
    return {"score": score, "acc": float(correct), "extractable": float(correct or wrong_but_extracted)}


def _pool_set(workers: int, timeout_s: float) -> queue.Queue:
    key = (int(workers), float(timeout_s))
    with _lock:
        pools = _pools.get(key)
        if pools is None:
            from m2po.eval.pool import GradingPool

            pools = queue.Queue()
            for _ in range(key[0]):
                pools.put(GradingPool(workers=1, timeout_s=key[1]))
            _pools[key] = pools
    return pools


def _grade_in_process(response: str, ground_truth: str, workers: int, timeout_s: float) -> GradeResult:
    pools = _pool_set(workers, timeout_s)
    pool = pools.get()  # blocks while every pool of this process is busy
    try:
        return pool.grade(response, ground_truth)
    finally:
        pools.put(pool)


@atexit.register
def _close_pools() -> None:
    with _lock:
        for pools in _pools.values():
            while not pools.empty():
                pools.get_nowait().close()
        _pools.clear()


def compute_score(
    data_source: str | None = None,
    solution_str: str = "",
    ground_truth: Any = None,
    extra_info: dict[str, Any] | None = None,
    *,
    format_reward: float = 0.0,
    mode: str = "process",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    workers: int = DEFAULT_WORKERS,
    **_: Any,
) -> dict[str, float]:
    """verl custom reward: ``{"score": r, "acc": 0|1, "extractable": 0|1}`` for one response (never raises).

    ``format_reward`` — reward of an extractable wrong answer (0.0 released code, 0.1 paper text);
    ``mode`` — ``"process"`` (isolated, hard timeout) or ``"inline"`` (calling thread, no timeout);
    ``timeout_s``/``workers`` — the hard wall-clock bound per sample and grading processes per reward worker.
    """
    if mode not in MODES:
        raise ValueError(f"reward mode must be one of {MODES}, got {mode!r}")
    gt = "" if ground_truth is None else str(ground_truth)
    try:
        if mode == "inline":
            result = grade_one(str(solution_str), gt)
        else:
            result = _grade_in_process(str(solution_str), gt, workers, timeout_s)
    except Exception as e:  # noqa: BLE001 - a reward must never take the trainer down
        result = GradeResult("error", False, None, f"{type(e).__name__}: {e}")
    return score_from_result(result, format_reward)
