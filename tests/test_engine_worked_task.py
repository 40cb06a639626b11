"""The tiny study's task ("worked" format): worked solutions checked against brute-force arithmetic,
the slipped warm-start traces, the final-answer reward, and the config checks."""

from __future__ import annotations

import itertools
import math
import re

import pytest
import torch

from m2po.config import ConfigError, load_config
from m2po.engine import sft
from m2po.engine.sft_batches import WorkedBatches
from m2po.engine.task import (
    ArithmeticTask,
    final_answer,
    generate_problems,
    max_response_tokens,
    reward_function,
    worked_reward,
    worked_solution,
)
from m2po.engine.tokenizer import CharTokenizer
from m2po.engine.train_config import TrainConfig

TOK = CharTokenizer()
COLUMN = re.compile(r"^(\d)\+(\d)(?:\+(\d))?=(\d+)$")


def parse_trace(text: str) -> tuple[list[tuple[int, int, int | None, int]], str]:
    """Independent parser: ([(digit a, digit b, carry or None, sum) per column], answer field)."""
    *columns, answer = text.split(" ")
    parsed = []
    for c in columns:
        m = COLUMN.match(c)
        assert m, f"column {c!r} of {text!r}"
        parsed.append((int(m[1]), int(m[2]), None if m[3] is None else int(m[3]), int(m[4])))
    return parsed, answer


def test_worked_solution_matches_brute_force_on_every_2_digit_problem() -> None:
    for a, b in itertools.product(range(100), repeat=2):
        columns, answer = parse_trace(worked_solution(a, b, 2))
        assert answer == str(a + b)
        (a0, b0, c0, s0), (a1, b1, c1, s1) = columns
        assert (a0, b0, a1, b1) == (a % 10, b % 10, a // 10, b // 10)  # copied operand digits, units first
        assert c0 is None and c1 == int(a % 10 + b % 10 >= 10)  # carry-in written from the tens column on
        assert s0 == a % 10 + b % 10 and s1 == a // 10 + b // 10 + c1


def test_three_digit_columns_and_answer() -> None:
    assert worked_solution(999, 1, 3) == "9+1=10 9+0+1=10 9+0+1=10 1000"
    assert worked_solution(7, 48, 2) == "7+8=15 0+4+1=5 55"
    assert worked_solution(3, 4, 2) == "3+4=7 0+0+0=0 7"


@pytest.mark.parametrize("slips", [(-1, 0), (1, 0), (0, 1), (0, -1), (1, 1), (-1, -1)])
def test_slips_propagate_through_carries_to_the_answer(slips: tuple[int, int]) -> None:
    for a, b in itertools.product(range(0, 100, 7), repeat=2):
        try:
            text = worked_solution(a, b, 2, slips)
        except ValueError:
            s0 = a % 10 + b % 10 + slips[0]
            assert s0 < 0 or a // 10 + b // 10 + s0 // 10 + slips[1] < 0  # only a negative column sum is refused
            continue
        (a0, b0, _, s0), (a1, b1, c1, s1) = parse_trace(text)[0]
        assert s0 == a0 + b0 + slips[0]  # the slipped column
        assert c1 == s0 // 10 and s1 == a1 + b1 + c1 + slips[1]  # the next column follows the slipped carry
        assert parse_trace(text)[1] == str(s1 * 10 + s0 % 10)  # the answer the trace implies


def test_final_answer_and_reward() -> None:
    assert final_answer("7+8=15 0+4+1=5 55") == "55"
    assert final_answer("55") == "55" and final_answer("") == "" and final_answer("  ") == ""
    assert worked_reward("7+8=15 0+4+1=5 55", "55") == 1.0
    assert worked_reward("7+8=14 0+4+1=5 54", "55") == 0.0
    assert worked_reward("55", "55") == 1.0  # only the final answer is graded, not the trace
    assert worked_reward("7+8=15 0+4+1=5 55 ", "55") == 1.0
    assert worked_reward("7+8=15 0+4+1=5 5 5", "55") == 0.0
    assert reward_function(ArithmeticTask(response_format="worked"))("1+1=2 0+0+0=0 2", "2") == 1.0
    assert reward_function(ArithmeticTask())("1+1=2 0+0+0=0 2", "2") == 0.0  # the "answer" format is exact


def test_problems_share_the_split_and_carry_their_solution() -> None:
    plain = generate_problems(ArithmeticTask(seed=4, n_train=300, n_test=50))
    worked = generate_problems(ArithmeticTask(seed=4, n_train=300, n_test=50, response_format="worked"))
    for p, w in zip(sum(plain, []), sum(worked, []), strict=True):
        assert (p["id"], p["question"], p["answer"]) == (w["id"], w["question"], w["answer"])
        assert p["solution"] == p["answer"]
        a, b = (int(x) for x in w["question"][:-1].split("+"))
        assert parse_trace(w["solution"])[1] == str(a + b)
        TOK.encode(w["solution"])  # every character is in the vocabulary


def test_max_response_tokens_bounds_every_clean_and_slipped_trace() -> None:
    task = ArithmeticTask(response_format="worked")
    longest = 0
    for a, b in itertools.product(range(100), repeat=2):
        for slips in itertools.product((-1, 0, 1), repeat=2):
            try:
                longest = max(longest, len(worked_solution(a, b, 2, slips)) + 1)
            except ValueError:
                pass
    assert max_response_tokens(task) == longest == 20
    assert max_response_tokens(ArithmeticTask()) == 4  # "198" + EOS


def test_config_checks() -> None:
    with pytest.raises(ValueError, match="operators"):
        ArithmeticTask(operators=("+", "-"), response_format="worked")
    with pytest.raises(ValueError, match="response_format"):
        ArithmeticTask(response_format="essay")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="rollout.max_new_tokens"):
        load_config(TrainConfig, None, ["task.format=worked", "rollout.max_new_tokens=8"])
    cfg = load_config(TrainConfig, None, ["task.format=worked", "rollout.max_new_tokens=20"])
    assert cfg.task.format == "worked"
    with pytest.raises(ConfigError, match="run.eval_samples"):
        load_config(TrainConfig, None, ["run.eval_samples=0"])


def test_warm_start_batches_slip_only_column_sums_at_the_requested_rate() -> None:
    task = ArithmeticTask(seed=0, n_train=400, n_test=10, response_format="worked")
    train, _ = generate_problems(task)
    batches = WorkedBatches(train, TOK, width=2)
    gen = torch.Generator().manual_seed(0)
    ids, mask, start = batches.draw(3000, 0.0, gen)
    solutions = {p["question"]: p["solution"] for p in train}
    for row, m in zip(ids[:200], mask[:200]):
        question = TOK.decode(row[:start].tolist())
        assert TOK.decode(row[start:].tolist()) == solutions[question]
        assert int(m[start:].sum()) == len(solutions[question]) + 1  # + EOS

    rate = 0.3
    ids, mask, start = WorkedBatches(train, TOK, width=2).draw(3000, rate, torch.Generator().manual_seed(1))
    slipped = n_columns = 0
    for row in ids.tolist():
        question = TOK.decode(row[:start])
        a, b = (int(x) for x in question[:-1].split("+"))
        columns, answer = parse_trace(TOK.decode(row[start:]))
        carry = 0
        for i, (da, db, c, s) in enumerate(columns):
            assert (da, db) == (a // 10**i % 10, b // 10**i % 10)  # operands never corrupted
            assert (c if i else 0) == carry  # carries follow the (slipped) trace
            assert s - (da + db + carry) in (-1, 0, 1) and s >= 0  # a slip is off by exactly one
            slipped += s != da + db + carry
            n_columns += 1
            carry = s // 10
        assert answer == str(columns[1][3] * 10 + columns[0][3] % 10)  # the answer the trace implies
    observed = slipped / n_columns
    assert abs(observed - rate) < 4 * math.sqrt(rate * (1 - rate) / n_columns)


def test_worked_presets_cover_every_model_size() -> None:
    worked = ArithmeticTask(response_format="worked")
    assert set(sft.WORKED_SFT_PRESETS) == set(sft.SFT_PRESETS)
    for size in sft.SFT_PRESETS:
        assert sft.sft_preset(size, worked) is sft.WORKED_SFT_PRESETS[size]
        assert sft.sft_preset(size, ArithmeticTask()) is sft.SFT_PRESETS[size]
    assert sft.config_hash(sft.WORKED_SFT_PRESETS["0.1M"], worked) != sft.config_hash(
        sft.WORKED_SFT_PRESETS["0.1M"], ArithmeticTask()
    )
