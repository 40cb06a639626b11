"""The verifiable arithmetic task of the tiny study: "37+48=" -> "85", reward 1 for an exact answer.

Why this distribution: the CPU engine needs a task whose reward is checkable by string
comparison, that a ~0.1M-parameter character model can learn in about a minute on two cores,
and on which a sampled policy still makes mistakes RL can remove. The default is two-operand
ADDITION with operands 0..99 written zero-padded to two digits ("07+48=" -> "55"): every digit
sits at a fixed position and answers are 1-3 characters. Calibration (docs in sft.py) found that
addition alone reaches >= 0.97 held-out greedy accuracy in ~750 SFT steps of batch 128 for the
0.1M model, while adding subtraction roughly doubled the steps needed (borrows are learned
later than carries), which did not fit the warm-start time budget. Subtraction ('-', drawn with
a >= b so answers are never negative) and '*' remain available through ``operators``. The
addition space has 100 * 100 = 10000 distinct questions, enough for disjoint train (8000) and
held-out (1000) sets.

Determinism: problems are drawn without replacement from the enumerated question space with
``random.Random(seed)``, so the same config always yields the same split, and train/test are
disjoint by construction (distinct questions, then sliced).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

#: Operators this module knows how to evaluate. '*' is supported but not in the default set.
_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


@dataclass(frozen=True)
class ArithmeticTask:
    """Problem distribution of the tiny arithmetic task.

    ``nonnegative_sub``: draw subtraction only with a >= b (answers never negative).
    ``pad_operands``: write operands zero-padded to the width of ``max_operand`` ("07+48="), so
    every digit has a fixed position; answers are never padded ("55").
    """

    seed: int = 0
    n_train: int = 8000
    n_test: int = 1000
    min_operand: int = 0
    max_operand: int = 99
    operators: tuple[str, ...] = ("+",)
    nonnegative_sub: bool = True
    pad_operands: bool = True

    def __post_init__(self) -> None:
        unknown = [op for op in self.operators if op not in _OPS]
        if unknown or not self.operators:
            raise ValueError(f"operators {self.operators!r}: each must be one of {sorted(_OPS)}")
        if not 0 <= self.min_operand <= self.max_operand:
            raise ValueError(f"need 0 <= min_operand <= max_operand, got {self.min_operand}..{self.max_operand}")
        if self.n_train < 0 or self.n_test < 0:
            raise ValueError("n_train and n_test must be >= 0")
        space = len(question_space(self))
        if self.n_train + self.n_test > space:
            raise ValueError(
                f"n_train + n_test = {self.n_train + self.n_test} exceeds the {space} distinct questions; "
                "widen the operand range or add operators"
            )


def question_space(config: ArithmeticTask) -> list[tuple[str, str]]:
    """Every distinct (question, answer) of the distribution, in a fixed order."""
    out = []
    rng = range(config.min_operand, config.max_operand + 1)
    width = len(str(config.max_operand)) if config.pad_operands else 0
    for op in config.operators:
        for a in rng:
            for b in rng:
                if op == "-" and config.nonnegative_sub and a < b:
                    continue
                out.append((f"{a:0{width}d}{op}{b:0{width}d}=", str(_OPS[op](a, b))))
    return out


def generate_problems(config: ArithmeticTask) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """``(train, test)`` lists of ``{"id", "question", "answer"}``; disjoint by question, seeded.

    Ids are ``"arith-<split>-<n>"``, stable for a given config.
    """
    space = question_space(config)
    picked = random.Random(config.seed).sample(space, config.n_train + config.n_test)
    train = [
        {"id": f"arith-train-{i}", "question": q, "answer": a} for i, (q, a) in enumerate(picked[: config.n_train])
    ]
    test = [{"id": f"arith-test-{i}", "question": q, "answer": a} for i, (q, a) in enumerate(picked[config.n_train :])]
    return train, test


def reward(response_text: str, answer: str) -> float:
    """1.0 if the response equals the answer after stripping surrounding whitespace, else 0.0."""
    return 1.0 if response_text.strip() == answer.strip() else 0.0


def final_answer(response_text: str) -> str | None:
    """The final answer of a response, the string :func:`reward` compares: the whole response, stripped (the
    model answers "85"); None if empty.

    The evaluation stage grades this string with math-verify (``m2po eval --extraction tiny``), so a change
    of the task's response format changes this function and nothing in the evaluation.
    """
    return response_text.strip() or None


def to_dataset_rows(
    problems: list[dict[str, str]], split: str, data_source: str = "tiny_arith"
) -> list[dict[str, Any]]:
    """Rows in the project's dataset schema (verl's RL schema, ARCHITECTURE.md contract 1).

    The prompt is the bare question (no chat template: the tiny model has none).
    """
    return [
        {
            "data_source": data_source,
            "prompt": [{"role": "user", "content": p["question"]}],
            "ability": "arithmetic",
            "reward_model": {"style": "rule", "ground_truth": p["answer"]},
            "extra_info": {"index": i, "split": split, "id": p["id"], "question": p["question"]},
        }
        for i, p in enumerate(problems)
    ]
