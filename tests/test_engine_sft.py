"""Tests for m2po.engine.sft: digit corruption, cached/locked/atomic warm start, evaluate."""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from pathlib import Path

import pytest
import torch

from m2po.engine import sft
from m2po.engine.model import MODEL_SIZES, TinyTransformer
from m2po.engine.sampler import sample
from m2po.engine.sft import SFT_PRESETS, SFTConfig, evaluate, load_checkpoint, load_warm_start, warm_start
from m2po.engine.sft_batches import AnswerBatches
from m2po.engine.task import ArithmeticTask, generate_problems, reward
from m2po.engine.tokenizer import CharTokenizer

torch.set_num_threads(1)
TOK = CharTokenizer()
TASK = ArithmeticTask(seed=0, n_train=300, n_test=40)
QUICK = SFTConfig(size="0.1M", steps=30, batch_size=32, warmup_steps=5, eval_samples=2, seed=1)


def test_corruption_changes_only_answer_digits_at_the_requested_rate() -> None:
    train, _ = generate_problems(TASK)
    batches = AnswerBatches(train, TOK)
    gen = torch.Generator().manual_seed(0)
    ids, mask, start = batches.draw(4000, 0.0, gen)
    clean = [TOK.decode(r[start:].tolist()) for r in ids]
    assert all(t in {p["answer"] for p in train} for t in clean[:50])

    gen = torch.Generator().manual_seed(0)
    ids_c, mask_c, start_c = batches.draw(4000, 0.3, gen)  # same generator state -> same problems
    assert start_c == start and torch.equal(mask_c, mask)
    assert torch.equal(ids_c[:, :start], ids[:, :start])  # prompts never touched
    n_digits = n_changed = 0
    for a, b in zip(ids[:, start:].tolist(), ids_c[:, start:].tolist()):
        ta, tb = TOK.decode(a), TOK.decode(b)
        assert len(ta) == len(tb) and tb.isdigit()  # EOS kept in place, digits stay digits
        n_digits += len(ta)
        n_changed += sum(x != y for x, y in zip(ta, tb))
    rate = n_changed / n_digits
    assert abs(rate - 0.3) < 4 * math.sqrt(0.3 * 0.7 / n_digits)  # a replaced digit always differs


def test_config_validation_and_presets() -> None:
    with pytest.raises(ValueError, match="size"):
        SFTConfig(size="7B")
    with pytest.raises(ValueError, match="corrupt_frac"):
        SFTConfig(corrupt_frac=1.0)
    assert set(SFT_PRESETS) == set(MODEL_SIZES)
    assert sft.config_hash(QUICK, TASK) == sft.config_hash(dataclasses.replace(QUICK), TASK)
    assert sft.config_hash(QUICK, TASK) != sft.config_hash(dataclasses.replace(QUICK, corrupt_frac=0.2), TASK)
    assert sft.config_hash(QUICK, TASK) != sft.config_hash(QUICK, dataclasses.replace(TASK, seed=1))


def test_warm_start_trains_saves_and_reuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = warm_start(QUICK, TASK, tmp_path)
    assert path.parent == tmp_path
    assert path.name == f"sft-0.1M-{sft.config_hash(QUICK, TASK)}.pt"
    ckpt = load_checkpoint(path)
    assert set(ckpt) >= {"model_config", "state_dict", "sft_config", "task_config", "metrics"}
    assert ckpt["sft_config"] == dataclasses.asdict(QUICK) and ckpt["task_config"] == dataclasses.asdict(TASK)
    assert {"greedy_acc", "sampled_acc", "sampled_acc_se"} <= set(ckpt["metrics"])
    model = load_warm_start(path)
    assert isinstance(model, TinyTransformer) and not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt["state_dict"][k])
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []

    # second call: cached, no training
    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("warm start retrained although the checkpoint exists")

    monkeypatch.setattr(sft, "train_sft", boom)
    mtime = path.stat().st_mtime_ns
    assert warm_start(QUICK, TASK, tmp_path) == path
    assert path.stat().st_mtime_ns == mtime


def test_warm_start_is_deterministic(tmp_path: Path) -> None:
    a = load_checkpoint(warm_start(QUICK, TASK, tmp_path / "a"))
    b = load_checkpoint(warm_start(QUICK, TASK, tmp_path / "b"))
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k])


def test_concurrent_warm_starts_train_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """flock excludes separate open() descriptions, so threads stand in for processes here."""
    calls: list[int] = []

    def slow_train(sft_config: SFTConfig, task_config: ArithmeticTask, **_: object):  # noqa: ANN202
        calls.append(1)
        time.sleep(0.3)
        torch.manual_seed(0)
        return TinyTransformer(MODEL_SIZES["0.1M"]), {"greedy_acc": 0.0}

    monkeypatch.setattr(sft, "train_sft", slow_train)
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(warm_start(QUICK, TASK, tmp_path))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len(results) == 4 and len(set(results)) == 1
    load_warm_start(results[0])


def test_evaluate_matches_manual_grading() -> None:
    torch.manual_seed(0)
    model = TinyTransformer(MODEL_SIZES["0.1M"]).eval()
    _, test = generate_problems(TASK)
    out = evaluate(model, test, TOK, n_samples=3, greedy=True, generator=torch.Generator().manual_seed(9))
    assert set(out) == {"sampled_acc", "sampled_acc_se", "greedy_acc"}
    prompts = [TOK.encode_prompt(p["question"]) for p in test]
    gen = torch.Generator().manual_seed(9)
    per = [0.0] * len(test)
    for _ in range(3):
        roll = sample(model, prompts, 6, generator=gen, tokenizer=TOK)
        for i, (t, p) in enumerate(zip(roll.response_texts, test)):
            per[i] += reward(t, p["answer"]) / 3
    mean = sum(per) / len(per)
    se = math.sqrt(sum((x - mean) ** 2 for x in per) / (len(per) - 1) / len(per))
    assert out["sampled_acc"] == pytest.approx(mean) and out["sampled_acc_se"] == pytest.approx(se)
    greedy = sample(model, prompts, 6, greedy=True, tokenizer=TOK)
    expect = sum(reward(t, p["answer"]) for t, p in zip(greedy.response_texts, test)) / len(test)
    assert out["greedy_acc"] == pytest.approx(expect)
    only_greedy = evaluate(model, test, TOK, n_samples=0, greedy=True)
    assert math.isnan(only_greedy["sampled_acc"]) and only_greedy["greedy_acc"] == pytest.approx(expect)
