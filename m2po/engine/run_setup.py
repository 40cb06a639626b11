"""What a run trains on, whatever the model: the type every run builder returns (``build.py``).

A leaf of the engine: the builders of each model kind (``build.py`` for the tiny transformer,
``hf_run.py`` for a Hugging Face model) import it, and the dispatch in ``build.py`` imports them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .policy import Policy


@dataclass
class RunSetup:
    """The policy, the train and held-out problems (``{"id", "question", "answer", ...}``), the verifiable
    reward ``reward(response_text, answer) -> float``, the benchmark's name and the run manifest's entries."""

    policy: Policy
    train_problems: list[dict[str, str]]
    eval_problems: list[dict[str, str]]
    reward: Callable[[str, str], float]
    benchmark: str
    manifest: dict[str, Any] = field(default_factory=dict)
