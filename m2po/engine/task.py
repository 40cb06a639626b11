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

Two response formats share the question space (``response_format``):

* ``"answer"`` (the original task): the response is the bare answer, "07+48=" -> "55". Every
  response token is an answer digit, and every one of them stays uncertain after the noisy warm
  start: a regime unlike LLM reasoning.
* ``"worked"`` (the tiny study's task): the response is a worked column-addition solution, then
  the answer: "07+48=" -> "7+8=15 0+4+1=5 55". Units column first (copied operand digits, their
  sum), then each higher column with its carry-in written out ("+1", or "+0"), then the answer,
  separated by spaces. Most tokens are determined by the prompt and the trace so far (copied
  digits, '+', '=', carries, the answer assembled from the column sums); only the column sums
  are computations. That is the token statistic of LLM chains of thought (most tokens
  near-deterministic, a minority of high-entropy "forking" tokens), and the warm start
  (``sft.py``) puts its noise on the column sums only. The reward still checks only the final
  answer (its last space-separated field, :func:`~m2po.grader.final_answer`), exactly: a
  verifiable reward, like a math grader on ``\boxed{}``.

Determinism: problems are drawn without replacement from the enumerated question space with
``random.Random(seed)``, so the same config always yields the same split, and train/test are
disjoint by construction (distinct questions, then sliced).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from ..grader import final_answer

ResponseFormat = Literal["answer", "worked"]
RESPONSE_FORMATS: tuple[str, ...] = ("answer", "worked")

#: Operators this module knows how to evaluate. '*' is supported but not in the default set.
_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


@dataclass(frozen=True)
class ArithmeticTask:
    """Problem distribution of the tiny arithmetic task.

    ``nonnegative_sub``: draw subtraction only with a >= b (answers never negative).
    ``pad_operands``: write operands zero-padded to the width of ``max_operand`` ("07+48="), so
    every digit has a fixed position; answers are never padded ("55").
    ``response_format``: ``"answer"`` or ``"worked"`` (module docstring); ``"worked"`` needs
    addition only, with padded operands (fixed columns).
    """

    seed: int = 0
    n_train: int = 8000
    n_test: int = 1000
    min_operand: int = 0
    max_operand: int = 99
    operators: tuple[str, ...] = ("+",)
    nonnegative_sub: bool = True
    pad_operands: bool = True
    response_format: ResponseFormat = "answer"

    def __post_init__(self) -> None:
        unknown = [op for op in self.operators if op not in _OPS]
        if unknown or not self.operators:
            raise ValueError(f"operators {self.operators!r}: each must be one of {sorted(_OPS)}")
        if not 0 <= self.min_operand <= self.max_operand:
            raise ValueError(f"need 0 <= min_operand <= max_operand, got {self.min_operand}..{self.max_operand}")
        if self.n_train < 0 or self.n_test < 0:
            raise ValueError("n_train and n_test must be >= 0")
        if self.response_format not in RESPONSE_FORMATS:
            raise ValueError(f"response_format {self.response_format!r}: choose one of {list(RESPONSE_FORMATS)}")
        if self.response_format == "worked" and (self.operators != ("+",) or not self.pad_operands):
            raise ValueError(
                "response_format='worked' writes column additions: use operators=('+',) and pad_operands=True"
            )
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


def operand_width(config: ArithmeticTask) -> int:
    """Digits per operand (the number of columns of a worked solution)."""
    return len(str(config.max_operand))


def worked_solution(a: int, b: int, width: int, slips: tuple[int, ...] = ()) -> str:
    """The worked column addition of ``a + b`` with ``width``-digit operands, then the answer.

    ``worked_solution(7, 48, 2) == "7+8=15 0+4+1=5 55"``. ``slips[i]`` (default 0) is added to
    column i's sum (units first), as an arithmetic slip would: the carries and the answer then
    follow the slipped trace ("7+8=14 0+4+1=5 54" for slips (-1, 0)), so the answer is always the
    one the trace implies. ValueError if a slip makes a column sum negative.
    """
    if not (0 <= a < 10**width and 0 <= b < 10**width):
        raise ValueError(f"operands {a}, {b} do not fit in {width} digits")
    slips = tuple(slips) + (0,) * (width - len(slips))
    columns, sums, carry = [], [], 0
    for i in range(width):
        da, db = a // 10**i % 10, b // 10**i % 10
        s = da + db + carry + slips[i]
        if s < 0:
            raise ValueError(f"slip {slips[i]} makes column {i} of {a}+{b} negative")
        columns.append(f"{da}+{db}={s}" if i == 0 else f"{da}+{db}+{carry}={s}")
        sums.append(s)
        carry = s // 10
    answer = int(str(sums[-1]) + "".join(str(s % 10) for s in reversed(sums[:-1])))
    return " ".join([*columns, str(answer)])


def solution_text(config: ArithmeticTask, question: str, answer: str) -> str:
    """The supervised target response of a problem in the task's format."""
    if config.response_format == "answer":
        return answer
    a, b = question[:-1].split("+")
    return worked_solution(int(a), int(b), operand_width(config))


def generate_problems(config: ArithmeticTask) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """``(train, test)`` lists of ``{"id", "question", "answer", "solution"}``; disjoint by question, seeded.

    ``solution`` is the supervised target response (:func:`solution_text`). Ids are
    ``"arith-<split>-<n>"``, stable for a given config; the split does not depend on the format.
    """
    space = question_space(config)
    picked = random.Random(config.seed).sample(space, config.n_train + config.n_test)

    def rows(split: str, part: list[tuple[str, str]]) -> list[dict[str, str]]:
        return [
            {"id": f"arith-{split}-{i}", "question": q, "answer": a, "solution": solution_text(config, q, a)}
            for i, (q, a) in enumerate(part)
        ]

    return rows("train", picked[: config.n_train]), rows("test", picked[config.n_train :])


def reward(response_text: str, answer: str) -> float:
    """1.0 if the response equals the answer after stripping surrounding whitespace, else 0.0."""
    return 1.0 if response_text.strip() == answer.strip() else 0.0


def worked_reward(response_text: str, answer: str) -> float:
    """1.0 if the response's :func:`final_answer` equals the answer exactly, else 0.0 (the trace is not graded)."""
    return 1.0 if final_answer(response_text) == answer.strip() else 0.0


def reward_function(config: ArithmeticTask) -> Callable[[str, str], float]:
    """The verifiable reward of the task's response format."""
    return worked_reward if config.response_format == "worked" else reward


def arithmetic_run_data(
    config: ArithmeticTask,
) -> tuple[list[dict[str, str]], list[dict[str, str]], Callable[[str, str], float], dict[str, Any]]:
    """``(train, test, reward, manifest entries)`` of a run on this task, whichever engine trains it: the
    problems, the reward of the response format and the run manifest's ``task`` and ``data`` entries."""
    train, test = generate_problems(config)
    entries = {"task": asdict(config), "data": {"source": "tiny_arith", "is_fallback": False}}
    return train, test, reward_function(config), entries


def max_response_tokens(config: ArithmeticTask) -> int:
    """Longest target response in characters, EOS included (a lower bound for ``max_new_tokens``).

    Slipped warm-start traces are at most this long too: a slip never adds a digit to a sum
    (column sums stay <= 20) nor to the answer beyond one more than the operands.
    """
    top = config.max_operand
    return len(solution_text(config, f"{top}+{top}=", str(top + top))) + 1


def to_dataset_rows(
    problems: list[dict[str, str]], split: str, data_source: str = "tiny_arith"
) -> list[dict[str, Any]]:
    """Rows in the project's dataset schema (verl's RL schema, docs/architecture.md, contract 1).

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
