"""The verl custom reward: signature verl 0.9.1 uses, paper/released format reward, thread safety."""

from __future__ import annotations

import inspect
from concurrent.futures import ThreadPoolExecutor

import pytest

from m2po.verl_plugin import reward
from m2po.verl_plugin.reward import compute_score

RIGHT = "So the answer is \\boxed{\\frac{1}{2}}."
WRONG = "So the answer is \\boxed{3}."
NONE = "I do not know."


def call(solution: str, **kwargs):
    """Exactly verl's call (experimental.reward_loop.reward_manager.naive), kwargs = reward_kwargs."""
    return compute_score(data_source="deepscaler", solution_str=solution, ground_truth="0.5", extra_info={}, **kwargs)


def test_signature_is_verls() -> None:
    params = inspect.signature(compute_score).parameters
    assert list(params)[:4] == ["data_source", "solution_str", "ground_truth", "extra_info"]
    assert not inspect.iscoroutinefunction(compute_score)


@pytest.mark.parametrize("format_reward", [0.0, 0.1])
def test_inline_scores_in_threads(format_reward: float) -> None:
    # verl calls the function from a thread pool: math-verify then runs without its SIGALRM timeout
    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(lambda s: call(s, mode="inline", format_reward=format_reward), [RIGHT, WRONG, NONE] * 2))
    scores = [r["score"] for r in results[:3]]
    assert scores == [1.0, format_reward, 0.0]
    assert [r["acc"] for r in results[:3]] == [1.0, 0.0, 0.0]
    assert [r["extractable"] for r in results[:3]] == [1.0, 1.0, 0.0]
    assert results[:3] == results[3:]


def test_process_mode_grades_in_worker_processes_from_threads() -> None:
    try:
        with ThreadPoolExecutor(3) as ex:
            results = list(
                ex.map(lambda s: call(s, mode="process", workers=2, format_reward=0.1), [RIGHT, WRONG, NONE])
            )
        assert [r["score"] for r in results] == [1.0, 0.1, 0.0]
        assert len(reward._pools) == 1
    finally:
        reward._close_pools()


def test_bad_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="mode"):
        call(RIGHT, mode="thread")
