"""Answer normalisation rules of the data stage, each checked on REAL rows of the offline data folder
``$M2PO_DATA_DIR`` (read in place, never copied), plus the prompt template, derived ids and the
contamination text key."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pytest

from m2po.data.normalize import (
    RowProblem,
    format_prompt,
    normalise_answer,
    normalise_question_text,
    normalise_record,
)
from m2po.data.spec import FieldMap, load_sources

DATA_DIR = Path(os.environ.get("M2PO_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
needs_data = pytest.mark.skipif(
    not DATA_DIR.is_dir(), reason=f"offline data folder {DATA_DIR} not found (set M2PO_DATA_DIR: docs/data.md)"
)


@functools.cache
def records(relpath: str) -> list:
    path = DATA_DIR / relpath
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return json.loads(path.read_text(encoding="utf-8"))


@functools.cache
def sources():
    return load_sources()


def spec(name: str):
    return sources().datasets[name]


def normalise(name: str, row: int, rel: str | None = None):
    s = spec(name)
    f = s.local[0] if rel is None else next(f for f in s.fallback.files if f.path == rel)
    fields = s.fields if rel is None else s.fallback.fields
    rec = records(f.path)[row]
    return normalise_record(rec, fields, s.answer_rule, row, f.id_prefix, s.on_empty_answer != "skip")


@needs_data
def test_aime2024_zero_padded_answers_become_numbers():
    raw = [r["answer"] for r in records("aime2024/test.jsonl")]
    assert "025" in raw and "073" in raw
    i = raw.index("025")
    row = normalise("aime2024", i)
    assert row.ground_truth == "25" and row.answer_raw == '"025"'
    assert all(not normalise("aime2024", k).ground_truth.startswith("0") for k in range(30))


@needs_data
def test_aime2025_int_answers():
    row = normalise("aime2025", 0)
    assert records("aime2025/test.jsonl")[0]["answer"] == 70
    assert row.ground_truth == "70" and row.id == "0"


@needs_data
def test_amc23_float_answers_drop_the_trailing_zero():
    row = normalise("amc23", 0)
    assert records("amc23/test.jsonl")[0]["answer"] == 27.0
    assert row.ground_truth == "27" and row.answer_raw == "27.0"
    assert normalise("amc23", 15).ground_truth == "-1"  # -1.0 upstream


def test_amc_non_integer_floats_are_kept():
    assert normalise_answer("amc_number", 2.5) == ("2.5", ["2.5"])
    assert normalise_answer("amc_number", 0.1) == ("0.1", ["0.1"])


@needs_data
def test_amc24_string_answers_are_kept_as_written():
    raw = [r["answer"] for r in records("amc24/amc24_text_45.jsonl")]
    i, j = raw.index("\\frac{39}{7}"), raw.index("D")
    assert normalise("amc24", i).ground_truth == "\\frac{39}{7}"
    assert normalise("amc24", j).ground_truth == "D"  # 12B #4, a letter upstream
    assert normalise("amc24", 0).id == "12A_01"


@needs_data
def test_minerva_answer_lists_with_trailing_newline():
    raw = records("minerva_math/minerva.json")
    assert raw[0]["answer"] == ["9.6\n"]
    row = normalise("minerva_math", 0)
    assert row.ground_truth == "9.6" and row.alternatives == ["9.6"] and row.id == "9"
    multi = next(i for i, r in enumerate(raw) if r["answer"] == ["-\\frac{1}{3}\n", "-1/3\n"])
    row = normalise("minerva_math", multi)
    assert row.ground_truth == "-\\frac{1}{3}" and row.alternatives == ["-\\frac{1}{3}", "-1/3"]


@needs_data
def test_olympiadbench_first_final_answer_without_dollars():
    raw = records("olympiadbench/test.jsonl")
    assert raw[1]["final_answer"] == ["$\\frac{1}{2 n+2}$"]
    assert normalise("olympiadbench", 1).ground_truth == "\\frac{1}{2 n+2}"
    assert normalise("olympiadbench", 0).ground_truth == "2"
    assert normalise("olympiadbench", 0).id == "1606"


@needs_data
def test_gsm8k_hash_answer_commas_removed_negative_kept():
    raw = records("gsm8k/test.jsonl")
    assert raw[146]["answer"].endswith("#### 2,125")
    assert normalise("gsm8k", 146).ground_truth == "2125"
    assert normalise("gsm8k", 0).ground_truth == "18"
    assert normalise("gsm8k", 0).id == "gsm8k-row00000"  # no id upstream: derived from the row
    negative = next(i for i, r in enumerate(raw) if r["answer"].endswith("#### -10"))
    assert normalise("gsm8k", negative).ground_truth == "-10"


@needs_data
def test_gaokao_dollar_wrapped_answers_stripped():
    raw = records("gaokao2023en/gaokao-2023en-test.jsonl")
    assert raw[0]["answer"] == "$\\{x|-2\\leq x < 1\\}$"
    assert normalise("gaokao2023en", 0).ground_truth == "\\{x|-2\\leq x < 1\\}"
    assert normalise("gaokao2023en", 2).ground_truth == "-1"


@needs_data
def test_gaokao_two_empty_answers_kept_and_flagged():
    raw = records("gaokao2023en/gaokao-2023en-test.jsonl")
    empty = [i for i, r in enumerate(raw) if not r["answer"].strip()]
    assert empty == [167, 192]
    rows = [normalise("gaokao2023en", i) for i in empty]
    assert all(r.answer_missing and r.ground_truth == "" for r in rows)
    assert [r.id for r in rows] == ["HMMT2023General_9", "052023SATS4_11"]


@needs_data
def test_gaokao_rows_without_id_get_a_stable_derived_id():
    raw = records("gaokao2023en/gaokao-2023en-test.jsonl")
    i = next(i for i, r in enumerate(raw) if "id" not in r)
    assert normalise("gaokao2023en", i).id == f"gaokao2023en-row{i:05d}"


@needs_data
def test_math_train_empty_and_null_answers_are_empty_answer_problems():
    s = spec("deepscaler")
    f = s.fallback.files[1]
    raw = records(f.path)
    for row in (886, 1009, 5328, 5330):
        assert raw[row]["answer"] in (None, "")
        with pytest.raises(RowProblem) as e:
            normalise_record(raw[row], s.fallback.fields, s.answer_rule, row, f.id_prefix)
        assert e.value.reason == "empty_answer"
    assert sorted(x.row for x in f.expected_skips) == [886, 1009, 5328, 5330]


def test_wrong_types_and_empty_question_are_named():
    fields = FieldMap(question="problem", answer="answer", id="id")
    cases = [
        ({"problem": 123, "answer": "1"}, "wrong_type"),
        ({"problem": "  ", "answer": "1"}, "empty_question"),
        ({"problem": "q", "answer": {"a": 1}}, "wrong_type"),
        ({"problem": "q", "answer": "1", "id": 1.5}, "wrong_type"),
        ({"answer": "1"}, "missing_field"),
        (["not", "a", "record"], "wrong_type"),
    ]
    for rec, reason in cases:
        with pytest.raises(RowProblem) as e:
            normalise_record(rec, fields, "plain", 3, "x")
        assert e.value.reason == reason, rec
    with pytest.raises(RowProblem, match="answer_not_integer"):
        normalise_answer("aime_int", "12.5")
    with pytest.raises(RowProblem, match="no_final_answer"):
        normalise_answer("gsm8k_hash", "no marker here")


def test_prompt_template_is_the_papers():
    template = sources().prompt_template
    expected = (
        "Please solve the following math problem: What is {1+1}?. The assistant first thinks about the reasoning "
        "process step by step and then provides the user with the answer. Return the final answer in \\boxed{} "
        "tags, for example \\boxed{1}. Let's solve this step by step."
    )
    assert format_prompt(template, " What is {1+1}?\n") == expected


def test_question_text_key_ignores_latex_spacing_case_and_dollars():
    a = "Find $\\dfrac{1}{2} + x^{2}$,\\ where  $x = 3$."
    b = "find \\(\\frac12+x^2\\), where x=3"
    assert normalise_question_text(a) == normalise_question_text(b)
    assert normalise_question_text("Compute $\\left(1+2\\right)\\cdot 3$.") == normalise_question_text(
        "compute (1 + 2)\\cdot3"
    )
    assert normalise_question_text("x+1") != normalise_question_text("x+2")


@needs_data
def test_minerva_duplicate_alternatives_collapse():
    raw = records("minerva_math/minerva.json")
    i = next(i for i, r in enumerate(raw) if r["answer"] == ["2\n", "2"])
    assert normalise("minerva_math", i).alternatives == ["2"]
