"""A pool of grading worker processes with a hard wall-clock timeout enforced by the parent.

Why not ``multiprocessing.Pool``/``concurrent.futures``: math-verify's own timeout is SIGALRM,
which (a) works only in a process's main thread and (b) cannot interrupt a long C-level
computation (``9^{9^{9^9}}`` in gmpy/sympy). A stuck task in a stock pool blocks its worker
forever and ``Pool`` offers no way to kill one worker. Here every worker has its own pipe; the
parent sends one task at a time per worker, waits with a deadline, and on expiry SIGKILLs that
worker, records ``timeout`` and starts a replacement. A worker that dies (segfault, OOM,
RecursionError that escapes) gives ``error`` and is replaced too. Verdicts are never dropped.

Workers are forked from a *forkserver* that has already imported and warmed up math-verify
(``m2po.eval._warm``), so a replacement costs milliseconds, not the ~2 s of a fresh import, and
no worker is forked from a parent that holds torch threads.

Workers exit by themselves when the parent dies: an idle one sees its pipe reach EOF; a busy one
is stopped by the kernel once its task exceeds a CPU-time limit of twice the timeout (RLIMIT_CPU).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from ..grader import DEFAULT_SOFT_TIMEOUT_S, STRING_EXTRACTION, GradeResult, extract_answer, grade_one

DEFAULT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class GradeTask:
    """One response to grade; ``key`` is returned untouched with its result."""

    key: Any
    response: str
    ground_truth: str


def soft_timeout_for(hard_timeout_s: float) -> int:
    """math-verify's per-call soft timeout: half the hard one, at most 5 s.

    Each sample makes three bounded calls (parse gold, parse pred, verify); a third of the hard timeout
    would never need a kill, but under CPU contention it turned slow-but-fine samples into timeouts.
    """
    return max(1, min(DEFAULT_SOFT_TIMEOUT_S, int(hard_timeout_s // 2)))


def _limit_cpu(seconds: float) -> None:
    """Let the kernel kill this worker once the task in hand has used ``seconds`` of CPU (RLIMIT_CPU).

    Why: the parent's wall-clock kill is the primary bound, but if the parent itself is SIGKILLed, a
    worker stuck in a C-level computation would run on forever (it holds the forkserver's alive pipe,
    so the forkserver does not exit either). SIGXCPU's default action terminates the process even
    inside C code. Only the soft limit is moved, so no privilege is needed.
    """
    try:
        import resource

        used = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        soft = int(used + seconds) + 1
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
    except (ImportError, ValueError, OSError):  # pragma: no cover - non-POSIX
        pass


def _worker_main(conn: Connection, extraction: str, soft_timeout_s: int, cpu_limit_s: float) -> None:
    """Loop: receive ``(task_id, response, ground_truth)``, send back the verdict as a tuple."""
    # math-verify logs every timeout as a warning; here the verdict's status already records it
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return  # parent gone or pool closed
        if msg is None:
            return
        task_id, response, ground_truth = msg
        _limit_cpu(cpu_limit_s)
        try:
            res = grade_one(response, ground_truth, extraction=extraction, soft_timeout_s=soft_timeout_s)
        except BaseException as e:  # noqa: BLE001 - grade_one never raises; belt and braces
            res = GradeResult("error", False, None, f"{type(e).__name__}: {str(e)[:200]}")
        try:
            conn.send((task_id, res.status, res.correct, res.extracted, res.detail))
        except (BrokenPipeError, OSError):
            return


class _Worker:
    def __init__(self, ctx: Any, extraction: str, soft_timeout_s: int, cpu_limit_s: float) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        args = (child, extraction, soft_timeout_s, cpu_limit_s)
        self.proc = ctx.Process(target=_worker_main, args=args, daemon=True)
        self.proc.start()
        child.close()
        self.task: tuple[int, GradeTask] | None = None
        self.deadline = 0.0

    def kill(self) -> None:
        try:
            self.proc.kill()
        except Exception:
            pass
        self.proc.join(timeout=5)
        self.conn.close()


class GradingPool:
    """``with GradingPool(workers=2, timeout_s=10) as pool: for task, res in pool.imap(tasks): ...``

    ``timeout_s`` is a hard wall-clock bound per sample, counted from when the task reaches a worker.
    ``soft_timeout_s`` (default: half of it, at most 5 s) is math-verify's own timeout inside the worker, which
    answers ``timeout`` without the cost of a restart whenever it works; 0 disables it.
    Results come back in completion order, each paired with its task. ``n_killed`` counts workers
    killed for exceeding the timeout; ``n_crashed`` those that died on their own.
    """

    def __init__(
        self,
        workers: int = 2,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        extraction: str = "boxed",
        soft_timeout_s: int | None = None,
        start_method: str = "",
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers={workers} must be >= 1")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s={timeout_s} must be > 0")
        self.n_workers = workers
        self.timeout_s = float(timeout_s)
        self.extraction = extraction
        #: math-verify's SIGALRM timeout inside a worker (cheap: no kill); 0 disables it (hard kill only)
        self.soft_timeout_s = soft_timeout_for(self.timeout_s) if soft_timeout_s is None else int(soft_timeout_s)
        method = start_method or ("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
        self._ctx = mp.get_context(method)
        if method == "forkserver":
            self._ctx.set_forkserver_preload(["m2po.eval._warm"])
        self._workers: list[_Worker] = []
        self._ready_results: list[tuple[GradeTask, GradeResult]] = []
        self.n_killed = 0
        self.n_crashed = 0
        self.n_graded = 0
        self.busy_s = 0.0  # summed wall time workers spent holding a task (occupancy diagnostics)

    # -- lifecycle ------------------------------------------------------------------------------------
    def __enter__(self) -> GradingPool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        while len(self._workers) < self.n_workers:
            self._workers.append(self._new_worker())

    def _new_worker(self) -> _Worker:
        return _Worker(self._ctx, self.extraction, self.soft_timeout_s, 2 * self.timeout_s + 1)

    def close(self) -> None:
        for w in self._workers:
            try:
                if w.task is None:
                    w.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        deadline = time.monotonic() + 2.0
        for w in self._workers:
            w.proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                w.kill()
            else:
                w.conn.close()
        self._workers = []

    @property
    def worker_pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers if w.proc.pid is not None]

    # -- grading --------------------------------------------------------------------------------------
    def grade(self, response: str, ground_truth: str) -> GradeResult:
        """Grade one pair through the pool (blocking)."""
        return next(iter(self.imap([GradeTask(0, response, ground_truth)])))[1]

    def grade_many(self, pairs: Iterable[tuple[str, str]]) -> list[GradeResult]:
        """Grade ``(response, ground_truth)`` pairs; results in input order."""
        tasks = [GradeTask(i, r, g) for i, (r, g) in enumerate(pairs)]
        out: list[GradeResult | None] = [None] * len(tasks)
        for task, res in self.imap(tasks):
            out[task.key] = res
        return [r for r in out if r is not None]

    def imap(
        self, tasks: Iterable[GradeTask], on_result: Callable[[GradeTask, GradeResult], None] | None = None
    ) -> Iterator[tuple[GradeTask, GradeResult]]:
        """Yield ``(task, result)`` as each finishes; at most ``workers`` tasks in flight."""
        if not self._workers:
            self.start()
        for i, w in enumerate(self._workers):
            if w.task is not None:  # in flight for an earlier imap the caller abandoned: its answer is unwanted
                w.kill()
                self._workers[i] = self._new_worker()
        self._ready_results = []
        pending: deque[tuple[int, GradeTask]] = deque(enumerate(tasks))
        busy: dict[int, _Worker] = {}  # fd-independent: index into self._workers
        while pending or busy:
            for i, w in enumerate(self._workers):
                if w.task is None and pending:
                    self._dispatch(i, pending.popleft())
                    if self._workers[i].task is not None:  # else it died first: result queued as ready
                        busy[i] = self._workers[i]
            if self._ready_results:
                yield from self._drain_ready(on_result)
                continue
            if not busy:
                continue
            now = time.monotonic()
            wait_s = max(0.0, min(w.deadline for w in busy.values()) - now)
            ready = wait([w.conn for w in busy.values()] + [w.proc.sentinel for w in busy.values()], timeout=wait_s)
            now = time.monotonic()
            for i, w in list(busy.items()):
                assert w.task is not None
                _, task = w.task
                res: GradeResult | None = None
                if w.conn in ready or w.conn.poll():
                    try:
                        _tid, status, correct, extracted, detail = w.conn.recv()
                        res = GradeResult(status, bool(correct), extracted, detail)
                        w.task = None
                    except (EOFError, OSError):
                        res = self._replace(i, task, "error", "grading worker died")
                        self.n_crashed += 1
                elif w.proc.sentinel in ready or not w.proc.is_alive():
                    res = self._replace(i, task, "error", f"grading worker died (exit code {w.proc.exitcode})")
                    self.n_crashed += 1
                elif now >= w.deadline:
                    res = self._replace(i, task, "timeout", f"killed after {self.timeout_s:g} s wall clock")
                    self.n_killed += 1
                if res is not None:
                    self.busy_s += now - (w.deadline - self.timeout_s)
                    del busy[i]
                    self.n_graded += 1
                    if on_result is not None:
                        on_result(task, res)
                    yield task, res

    def _drain_ready(
        self, on_result: Callable[[GradeTask, GradeResult], None] | None
    ) -> Iterator[tuple[GradeTask, GradeResult]]:
        ready, self._ready_results = self._ready_results, []
        for task, res in ready:
            self.n_graded += 1
            if on_result is not None:
                on_result(task, res)
            yield task, res

    def _dispatch(self, i: int, item: tuple[int, GradeTask]) -> None:
        w = self._workers[i]
        idx, task = item
        try:
            w.conn.send((idx, task.response, task.ground_truth))
        except (BrokenPipeError, OSError, ValueError) as e:
            self._workers[i].kill()
            self._workers[i] = self._new_worker()
            self.n_crashed += 1
            self._ready_results = [*self._ready_results, (task, GradeResult("error", False, None, f"send failed: {e}"))]
            return
        w.task = item
        w.deadline = time.monotonic() + self.timeout_s

    def _replace(self, i: int, task: GradeTask, status: str, detail: str) -> GradeResult:
        """Kill worker ``i`` (stuck or dead) and start a fresh one in its slot.

        The extracted answer is recomputed here when it is a plain string scan (boxed mode), so a
        timeout record still shows what the model answered.
        """
        self._workers[i].kill()
        self._workers[i] = self._new_worker()
        extracted = None
        if self.extraction in STRING_EXTRACTION:
            try:
                extracted = extract_answer(task.response, self.extraction)
            except Exception:
                extracted = None
        return GradeResult(status, False, extracted, detail)


def default_workers() -> int:
    """One worker per available core (grading is CPU-bound and single-threaded per sample)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)
