"""Tests for m2po.engine.task: problem generation, reward, dataset rows."""

from __future__ import annotations

import pytest

from m2po.engine.task import ArithmeticTask, generate_problems, question_space, reward, to_dataset_rows
from m2po.engine.tokenizer import CharTokenizer


def test_train_test_disjoint_and_sized() -> None:
    cfg = ArithmeticTask(seed=3, n_train=2000, n_test=300)
    train, test = generate_problems(cfg)
    assert len(train) == 2000 and len(test) == 300
    q_train = {p["question"] for p in train}
    q_test = {p["question"] for p in test}
    assert len(q_train) == 2000 and len(q_test) == 300  # no duplicates within a split
    assert q_train & q_test == set()
    assert len({p["id"] for p in train + test}) == 2300


def test_deterministic_and_seed_dependent() -> None:
    cfg = ArithmeticTask(seed=1, n_train=50, n_test=10)
    assert generate_problems(cfg) == generate_problems(cfg)
    assert generate_problems(cfg) != generate_problems(ArithmeticTask(seed=2, n_train=50, n_test=10))


def test_answers_are_correct_by_independent_evaluation() -> None:
    cfg = ArithmeticTask(n_train=300, n_test=50, operators=("+", "-", "*"))
    tok = CharTokenizer()
    for p in sum(generate_problems(cfg), []):
        q = p["question"]
        assert q.endswith("=")
        expr = q[:-1]
        op = next(c for c in "+-*" if c in expr)
        a, b = expr.split(op)
        assert len(a) == len(b) == 2  # zero-padded operands
        expected = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
        assert p["answer"] == str(expected)
        assert int(p["answer"]) >= 0  # nonnegative_sub
        tok.encode(q + p["answer"])  # every character is in the vocabulary


def test_default_distribution_is_addition_and_space_size() -> None:
    cfg = ArithmeticTask()
    assert cfg.operators == ("+",)
    assert len(question_space(cfg)) == 100 * 100
    assert len(question_space(ArithmeticTask(operators=("+", "-"), n_train=10, n_test=10))) == 10000 + 5050
    unpadded = question_space(ArithmeticTask(pad_operands=False, n_train=1, n_test=1))
    assert ("5+3=", "8") in unpadded


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        ArithmeticTask(n_train=9500, n_test=600)
    with pytest.raises(ValueError, match="operators"):
        ArithmeticTask(operators=("/",))


@pytest.mark.parametrize(
    ("response", "answer", "expected"),
    [
        ("85", "85", 1.0),
        (" 85 ", "85", 1.0),
        ("85", " 85", 1.0),
        ("085", "85", 0.0),
        ("8", "85", 0.0),
        ("856", "85", 0.0),
        ("", "85", 0.0),
        ("", "", 1.0),
        ("8 5", "85", 0.0),
        ("-5", "5", 0.0),
    ],
)
def test_reward_cases(response: str, answer: str, expected: float) -> None:
    assert reward(response, answer) == expected


def test_dataset_rows_schema() -> None:
    train, _ = generate_problems(ArithmeticTask(n_train=5, n_test=1))
    rows = to_dataset_rows(train, "train")
    assert len(rows) == 5
    for i, (row, p) in enumerate(zip(rows, train)):
        assert set(row) == {"data_source", "prompt", "ability", "reward_model", "extra_info"}
        assert row["data_source"] == "tiny_arith"
        assert row["prompt"] == [{"role": "user", "content": p["question"]}]
        assert row["ability"] == "arithmetic"
        assert row["reward_model"] == {"style": "rule", "ground_truth": p["answer"]}
        assert row["extra_info"] == {"index": i, "split": "train", "id": p["id"], "question": p["question"]}
    assert to_dataset_rows(train, "test", data_source="x")[0]["data_source"] == "x"
