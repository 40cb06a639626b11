"""JSONL shards survive a writer killed mid-line; suite spec and problem loading."""

from __future__ import annotations

import json

import pytest

from m2po.eval.problems import load_problems, make_row, normalize_ground_truth, rows_from_raw, write_parquet
from m2po.eval.store import JsonlShard, read_jsonl, write_jsonl_atomic
from m2po.eval.suites import SUITES_YAML, _build, load_suites
from m2po.fileio import repair_tail


def test_truncated_last_line_is_ignored_and_repaired(tmp_path):
    p = tmp_path / "s.jsonl"
    with JsonlShard(p) as s:
        s.append({"a": 1})
        s.append({"a": 2})
    with open(p, "a") as f:
        f.write('{"a": 3, "resp')  # a killed writer
    assert [r["a"] for r in read_jsonl(p)] == [1, 2]
    with JsonlShard(p) as s:  # reopening cuts the partial line off before appending
        s.append({"a": 4})
    assert [r["a"] for r in read_jsonl(p)] == [1, 2, 4]
    assert p.read_text().count("\n") == 3


def test_repair_tail_edge_cases(tmp_path):
    p = tmp_path / "x.jsonl"
    assert repair_tail(p) == 0  # missing
    p.write_text('{"partial')
    assert repair_tail(p) == len('{"partial') and p.read_text() == ""
    p.write_text('{"a": 1}\n')
    assert repair_tail(p) == 0
    # a cut line longer than the 64 KiB block the scan reads backwards in: the newline is two blocks back
    tail = '{"response": "' + "x" * 150_000
    p.write_text('{"a": 1}\n' + tail)
    assert repair_tail(p) == len(tail) and p.read_text() == '{"a": 1}\n'
    p.write_text("y" * 150_000)  # no newline at all: nothing to keep
    assert repair_tail(p) == 150_000 and p.read_text() == ""


def test_corrupt_middle_line(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    assert [r["a"] for r in read_jsonl(p)] == [1, 2]
    with pytest.raises(ValueError, match="c.jsonl:2"):
        read_jsonl(p, strict=True)


def test_unicode_round_trip(tmp_path):
    p = tmp_path / "u.jsonl"
    recs = [{"r": "\ud800 lone surrogate"}, {"r": "ünïcødé ∑ 😀"}, {"x": float("nan")}]
    write_jsonl_atomic(p, recs)
    back = read_jsonl(p)
    assert back[0]["r"] == recs[0]["r"] and back[1]["r"] == recs[1]["r"] and back[2]["x"] is None
    json.loads(p.read_text().splitlines()[0])  # strict JSON


def test_packaged_suites_hold_the_paper_protocol():
    assert SUITES_YAML.is_file()
    spec = load_suites()
    assert spec.resolve("aime2024").k == 16 and spec.resolve("aime25").k == 16  # alias
    assert spec.resolve("math500").k == 4 and spec.resolve("gsm8k").in_average is False
    assert spec.resolve("unknown_bench").k == spec.protocol.default_k
    assert spec.protocol.temperature == 1.0
    assert spec.expand(["smoke", "gsm8k", "aime2024"]) == ["gsm8k", "math500", "aime2024"]
    assert len(spec.expand(["paper"])) == 8 and "gsm8k" in spec.expand(["all"])


def test_bad_suite_spec():
    with pytest.raises(ValueError, match="unknown benchmarks"):
        _build({"benchmarks": {}, "suites": {"s": ["nope"]}})


def test_normalize_ground_truth():
    assert normalize_ground_truth(["9.6\n"]) == "9.6"
    assert normalize_ground_truth(27.0) == "27"
    assert normalize_ground_truth("$\\{x|-2\\leq x < 1\\}$") == "\\{x|-2\\leq x < 1\\}"
    assert normalize_ground_truth(None) == ""


def test_load_problems_schema(tmp_path):
    rows = [make_row("b", i, f"q{i}", str(i)) for i in range(5)]
    rows[3]["extra_info"]["id"] = rows[2]["extra_info"]["id"]  # a repeated id (aime2024x4) stays distinct
    path = write_parquet(rows, tmp_path / "b" / "test.parquet")
    probs = load_problems(path, "b")
    assert [p.ground_truth for p in probs] == ["0", "1", "2", "3", "4"]
    assert len({p.problem_id for p in probs}) == 5
    assert probs[0].chat[0]["role"] == "user" and "\\boxed{}" in probs[0].chat[0]["content"]
    assert len(load_problems(path, "b", limit=2)) == 2


def test_rows_from_raw_gsm8k(tmp_path):
    p = tmp_path / "g.jsonl"
    p.write_text(json.dumps({"question": "How many?", "answer": "so 1,234\n#### 1,234"}) + "\n")
    (row,) = rows_from_raw(p, "gsm8k")
    assert row["reward_model"]["ground_truth"] == "1234"
    assert row["extra_info"]["question"] == "How many?"
