"""Per-update bookkeeping of the training loop (:mod:`m2po.engine.loop`): the seeded problem order,
the columns of the run's logs, one update's row from its micro-batches' metrics, and the per-token
sample behind Fig. 4b.

``UPDATE_COLUMNS`` is also the column set of a verl run's ``updates.csv`` (:mod:`m2po.verl_plugin.tidy`),
so the analysis reads both engines' runs one way.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import torch

from ..losses import METRIC_NAMES

__all__ = ["EVAL_COLUMNS", "TOKEN_COLUMNS", "UPDATE_COLUMNS", "ProblemStream", "combine_metrics", "token_sample"]

UPDATE_COLUMNS = [
    "update",
    "step",
    "staleness",
    "behaviour_version",
    "reward_mean",
    "loss",
    *METRIC_NAMES,
    "entropy",
    "grad_norm",
    "lr",
]
EVAL_COLUMNS = ["update", "benchmark", "sampled_acc", "sampled_acc_se", "greedy_acc", "n_problems"]
TOKEN_COLUMNS = ["update", "ratio", "entropy", "advantage"]
_MAX_METRICS = {"ratio_max"}
_MIN_METRICS = {"ratio_min"}


@dataclass
class ProblemStream:
    """Problems in a seeded order, reshuffled each epoch; the cursor is part of the checkpoint."""

    problems: list[dict[str, str]]
    seed: int
    epoch: int = 0
    position: int = 0
    _shuffled: tuple[int, list[int]] | None = field(default=None, repr=False, compare=False)

    def _order(self) -> list[int]:
        """This epoch's permutation, shuffled once per epoch (not per batch)."""
        if self._shuffled is None or self._shuffled[0] != self.epoch:
            order = list(range(len(self.problems)))
            random.Random(self.seed * 1_000_003 + self.epoch).shuffle(order)
            self._shuffled = (self.epoch, order)
        return self._shuffled[1]

    def take(self, n: int) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        order = self._order()
        while len(out) < n:
            if self.position == len(order):
                self.epoch, self.position = self.epoch + 1, 0
                order = self._order()
            out.append(self.problems[order[self.position]])
            self.position += 1
        return out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = state["epoch"], state["position"]


def combine_metrics(parts: list[tuple[int, dict[str, float]]]) -> dict[str, float]:
    """Token-weighted mean of micro-batch metrics (min/max for the ratio extremes)."""
    if len(parts) == 1:
        return dict(parts[0][1])
    total = sum(w for w, _ in parts) or 1
    out: dict[str, float] = {}
    for key in parts[0][1]:
        values = [m[key] for _, m in parts]
        if key in _MAX_METRICS:
            out[key] = max(values)
        elif key in _MIN_METRICS:
            out[key] = min(values)
        elif key == "n_tokens":
            out[key] = float(sum(values))
        else:
            out[key] = sum(w * m[key] for w, m in parts) / total
    return out


def token_sample(
    update: int,
    seed: int,
    size: int,
    response_mask: torch.Tensor,
    log_prob: torch.Tensor,
    behaviour_log_prob: torch.Tensor,
    entropy: torch.Tensor,
    advantages: torch.Tensor,
) -> list[dict[str, Any]]:
    """A seeded random subsample of ``size`` response tokens of one mini-batch as ``TOKEN_COLUMNS`` rows
    (ratio, entropy, advantage), for Fig. 4b. Its own generator, so logging never changes the training
    random stream."""
    mask = response_mask.reshape(-1)
    idx = mask.nonzero().squeeze(-1)
    g = torch.Generator().manual_seed(seed * 7_919 + update)
    pick = idx[torch.randperm(idx.numel(), generator=g)[:size]].sort().values

    def picked(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(-1)[pick]

    ratio = torch.exp(picked(log_prob) - picked(behaviour_log_prob))  # of the picked tokens only
    columns = zip(ratio.tolist(), picked(entropy).tolist(), picked(advantages).tolist(), strict=True)
    return [{"update": update, "ratio": r, "entropy": e, "advantage": a} for r, e, a in columns]
