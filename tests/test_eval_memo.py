"""The verdict memo (m2po.eval.memo) and the runner with it: same verdicts as grading every sample, one pool
grading per distinct (answer, ground truth) pair, persistent across evaluations, safe with concurrent writers."""

from __future__ import annotations

import multiprocessing as mp
import re

from test_eval_resume import make_data

from m2po.eval.memo import VerdictMemo
from m2po.eval.runner import EvalConfig, Evaluation
from m2po.eval.store import read_jsonl

GRADER = {"grader": "math_verify", "grader_version": "test", "extraction": "raw", "timeout_s": 5.0}


def test_memo_persists_and_keeps_only_deterministic_verdicts(tmp_path):
    with VerdictMemo(tmp_path, GRADER) as memo:
        memo.put("85", "85", "correct")
        memo.put("86", "85", "incorrect")
        memo.put("x", "85", "timeout")  # load-dependent: never stored
        memo.put("y", "85", "error")
        memo.put("85", "85", "correct")  # known: not written twice
    lines = memo.path.read_text().splitlines()
    assert len(lines) == 2
    again = VerdictMemo(tmp_path, GRADER)
    assert again.get("85", "85") == "correct" and again.get("86", "85") == "incorrect"
    assert again.get("x", "85") is None and again.get("85", "86") is None
    assert (again.hits, again.misses) == (2, 2)
    other = VerdictMemo(tmp_path, {**GRADER, "grader_version": "other"})  # other settings: another file
    assert other.get("85", "85") is None and other.path != memo.path


def test_cut_and_garbled_lines_are_skipped(tmp_path):
    with VerdictMemo(tmp_path, GRADER) as memo:
        memo.put("1", "1", "correct")
    with open(memo.path, "ab") as f:
        f.write(b'{"answer": "2", "ground_truth": "2", "sta')  # a writer killed mid-line
    with VerdictMemo(tmp_path, GRADER) as memo:
        memo.put("3", "3", "correct")  # glued onto the cut line: that line is lost
        memo.put("4", "5", "incorrect")
    text = memo.path.read_text()
    forged = text.replace('"answer": "4"', '"answer": "5"')  # a line whose fields do not match its check
    memo.path.write_text(forged)
    fresh = VerdictMemo(tmp_path, GRADER)
    assert fresh.get("1", "1") == "correct"
    assert fresh.get("2", "2") is None and fresh.get("3", "3") is None  # cut, and glued onto the cut line
    assert fresh.get("5", "5") is None and fresh.get("4", "5") is None  # forged: rejected by its check
    assert len(fresh) == 1


def _writer(directory: str, tag: int, n: int) -> None:
    with VerdictMemo(directory, GRADER) as memo:
        for i in range(n):
            memo.put(f"{tag}-{i}-" + "x" * (i % 300), str(i), "correct" if i % 2 else "incorrect")


def test_concurrent_writers_lose_nothing(tmp_path):
    n = 400
    procs = [mp.get_context("fork").Process(target=_writer, args=(str(tmp_path), tag, n)) for tag in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    memo = VerdictMemo(tmp_path, GRADER)
    assert len(memo) == 3 * n
    assert memo.get("2-7-" + "x" * 7, "7") == "correct" and memo.get("0-0-", "0") == "incorrect"


def _cfg(data, out, memo, **kw) -> EvalConfig:
    base = dict(
        model="tiny:0.1M:0",
        backend="tiny",
        benchmarks=["tiny_arith"],
        data_dir=data,
        out_dir=out,
        k=4,
        extraction="tiny",
        workers=1,
        timeout_s=5,
        progress=False,
        n_boot=50,
        memo_dir=memo,
    )
    return EvalConfig(**{**base, **kw})


class Repeating:
    """A backend answering each "a+b=" with a+b, a+b+1 or junk: pairs repeat across samples and problems."""

    name = "tiny"
    model_fingerprint = "repeating"

    def __init__(self, *a, **k) -> None:
        pass

    def generate(self, requests, params):
        out = []
        for r in requests:
            a, b = map(int, re.fullmatch(r"(\d+)\+(\d+)=", r.messages[-1]["content"]).groups())
            choices = [str(a + b), str(a + b + 1), "  ", str(a + b)]
            out.append([choices[(r.seed + i) % 4] for i in range(r.n)])
        return out


def test_runner_with_memo_grades_each_pair_once_and_agrees_without_it(tmp_path, monkeypatch):
    from m2po.eval.backends import tiny

    monkeypatch.setattr(tiny, "TinyBackend", Repeating)
    data = make_data(tmp_path / "data", 12)
    plain = Evaluation(_cfg(data, tmp_path / "plain", None))
    plain.run()
    memoized = Evaluation(_cfg(data, tmp_path / "memo", tmp_path / "verdicts"))
    memoized.run()
    want = {
        (r["problem_id"], r["sample_idx"]): r for r in read_jsonl(tmp_path / "plain" / "samples" / "tiny_arith.jsonl")
    }
    got = read_jsonl(tmp_path / "memo" / "samples" / "tiny_arith.jsonl")
    assert len(got) == len(want) == 48
    for r in got:  # the same verdict and extracted answer, sample by sample
        w = want[(r["problem_id"], r["sample_idx"])]
        assert (r["status"], r["correct"], r["extracted"]) == (w["status"], w["correct"], w["extracted"])
    # the pool graded each distinct (answer, ground truth) pair once; blank responses never reached it
    pairs = {(w["extracted"], w["ground_truth"]) for w in want.values() if w["extracted"] is not None}
    counts = memoized.counts["tiny_arith"]
    assert counts["graded"] == 48 and counts["graded_by_pool"] == len(pairs) < 48
    assert plain.counts["tiny_arith"]["graded_by_pool"] == 48
    # another evaluation of the same answers (another output folder) finds every verdict in the memo
    again = Evaluation(_cfg(data, tmp_path / "again", tmp_path / "verdicts"))
    again.run()
    assert again.counts["tiny_arith"]["graded_by_pool"] == 0 and again.counts["tiny_arith"]["graded"] == 48
    grades = read_jsonl(next((tmp_path / "again" / "cache" / "tiny_arith").glob("grade-*.jsonl")))
    assert all(g["memo"] for g in grades)
