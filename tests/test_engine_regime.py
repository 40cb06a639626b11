"""Regime statistics (m2po.engine.regime): entropy shares against hand-computed distributions,
token roles of a worked trace, and the per-warm-start JSON."""

from __future__ import annotations

import json
import math

import pytest
import torch

from m2po.engine.model import token_log_probs_and_entropy
from m2po.engine.regime import (
    HIGH_NATS,
    LOW_NATS,
    summarize_entropies,
    token_roles,
    write_warm_start_regime,
)
from m2po.engine.sft import SFTConfig, warm_start
from m2po.engine.task import ArithmeticTask


def _entropy_of(probs: list[float]) -> float:
    """Hand computation: -sum p ln p."""
    return -sum(p * math.log(p) for p in probs if p > 0)


def test_entropy_shares_match_hand_computed_distributions() -> None:
    dists = [
        [1.0] + [0.0] * 18,  # deterministic: 0 nats
        [0.99, 0.01] + [0.0] * 17,  # 0.056 nats: low
        [0.8, 0.1, 0.1] + [0.0] * 16,  # an off-by-one forking token: 0.639 nats
        [0.5, 0.5] + [0.0] * 17,  # ln 2 = 0.693
        [1 / 19] * 19,  # ln 19 = 2.944
        [0.9, 0.1] + [0.0] * 17,  # 0.325: neither low nor high
    ]
    logits = torch.tensor([[math.log(p) if p > 0 else -1e4 for p in d] for d in dists])
    _, entropy = token_log_probs_and_entropy(logits, torch.zeros(len(dists), dtype=torch.long))
    expected = [_entropy_of(d) for d in dists]
    assert torch.allclose(entropy.double(), torch.tensor(expected, dtype=torch.float64), atol=1e-5)
    stats = summarize_entropies(entropy, ["copy", "copy", "sum", "sum", "other", "sum"])
    assert stats["n_tokens"] == 6
    assert stats["share_below_low"] == pytest.approx(2 / 6)  # 0 and 0.056 < 0.1
    assert stats["share_above_high"] == pytest.approx(3 / 6)  # 0.639, 0.693, 2.944 > 0.5
    assert stats["mean"] == pytest.approx(sum(expected) / 6, abs=1e-5)
    assert stats["quantiles"]["0.5"] == pytest.approx((expected[5] + expected[2]) / 2, abs=1e-5)
    assert stats["by_role"]["sum"]["count"] == 3 and stats["by_role"]["sum"]["share_of_tokens"] == pytest.approx(0.5)
    assert stats["by_role"]["sum"]["share_above_high"] == pytest.approx(2 / 3)
    assert stats["by_role"]["copy"]["mean"] == pytest.approx(expected[1] / 2, abs=1e-5)
    assert (LOW_NATS, HIGH_NATS) == (0.1, 0.5)


def test_token_roles_of_a_worked_trace() -> None:
    text = "7+8=15 0+4+1=5 55"
    roles = token_roles(text, len(text) + 1)
    assert roles == [
        *["operand", "symbol", "operand", "symbol", "sum", "sum"],
        "separator",
        *["operand", "symbol", "operand", "symbol", "carry", "symbol", "sum"],
        "separator",
        *["answer", "answer"],
        "eos",
    ]
    assert token_roles("7+8=15 0+", 9) == ["other"] * 9  # cut off: does not parse
    assert token_roles("12", 3) == ["other"] * 3  # the "answer" format has no trace


def test_warm_start_regime_json(tmp_path) -> None:
    task = ArithmeticTask(seed=0, n_train=200, n_test=12, response_format="worked")
    cfg = SFTConfig(size="0.1M", steps=20, batch_size=16, warmup_steps=2, eval_samples=1, corrupt_frac=0.2)
    path = warm_start(cfg, task, tmp_path / "cache")
    out = write_warm_start_regime(path, tmp_path / "regime" / "ws.json", k=2)
    stats = json.loads(out.read_text())
    assert stats["k"] == 2 and stats["n_problems"] == 12 and stats["size"] == "0.1M"
    assert stats["response_format"] == "worked" and stats["target_share_below_low"] == 0.7
    assert 0.0 <= stats["share_below_low"] <= 1.0 and stats["n_tokens"] >= 24
    assert sum(r["count"] for r in stats["by_role"].values()) == stats["n_tokens"]
    assert stats["meets_target"] == (stats["share_below_low"] >= 0.7)
    assert "sampled_acc" in stats["warm_start_metrics"]
