"""The Hugging Face engine (``m2po.engine.hf_policy``, ``.hf_model``, ``.hf_run``) on a tiny random Qwen2.

What must hold for a HF model to be trainable by the engine: the KV-cache sampler draws exactly
what a no-cache loop draws from the same generator, its recorded log-probs are what the training
forward computes (else staleness 0 would not give ratio 1), left padding changes nothing, and the
real ``Trainer`` runs with exact staleness. Everything is built locally: no hub, no files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from m2po.config import load_config
from m2po.engine.hf_model import char_tokenizer, split_model_path
from m2po.engine.hf_policy import HFPolicy
from m2po.engine.hf_run import build_hf_run, read_problems
from m2po.engine.loop import Trainer
from m2po.engine.sampler import left_pad
from m2po.engine.train_config import TrainConfig

QWEN2_TINY = {
    "model_type": "qwen2",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
}
RANDOM_INIT = "{" + ", ".join(f"{k}: {v}" for k, v in QWEN2_TINY.items()) + "}"


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as the engine runs (``run.threads``): a tiny model gains nothing from two, and on
    a loaded machine OpenMP spin-waits make two threads several times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _policy(seed: int = 0, stop_chars: str | None = None) -> HFPolicy:
    from transformers import AutoConfig, AutoModelForCausalLM

    tok = char_tokenizer()
    spec = {k: v for k, v in QWEN2_TINY.items() if k != "model_type"}
    config = AutoConfig.for_model(
        "qwen2", vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, **spec
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    # A random model almost never emits EOS; extra stop characters make rows end at different steps,
    # which is what exercises the per-row stop, the response mask and the pads after it.
    stop = None if stop_chars is None else [tok.eos_token_id, *tok.convert_tokens_to_ids(list(stop_chars))]
    return HFPolicy(model, tok, stop_ids=stop)


QUESTIONS = ["1+2=", "37+48=", "Janet has 16 eggs. How many?", "5-3=", "99+99="]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_kv_cache_matches_no_cache_and_training_forward(temperature: float) -> None:
    pol = _policy(stop_chars="aeiou0123")
    prompts = pol.encode_prompts(QUESTIONS)
    assert len({len(p) for p in prompts}) > 1, "prompts of different lengths exercise the left padding"
    cached = pol.generate(prompts, 24, temperature, torch.Generator().manual_seed(3))
    plain = pol.generate_without_cache(prompts, 24, temperature, torch.Generator().manual_seed(3))
    assert torch.equal(cached.input_ids, plain.input_ids)
    assert torch.equal(cached.response_mask, plain.response_mask)
    assert torch.allclose(cached.sampler_log_probs, plain.sampler_log_probs, atol=1e-5, rtol=0)
    lengths = cached.response_lengths
    assert lengths.min() < lengths.max(), "rows should stop at different steps"
    # the response mask includes the stop token and nothing after it; pads follow
    for row, n in zip(cached.responses, lengths.tolist(), strict=True):
        if n < cached.responses.shape[1]:
            assert int(row[n - 1]) in pol.stop_ids.tolist()
            assert (row[n:] == pol.pad_id).all()
    lp, ent = pol.log_probs(cached.input_ids, cached.attention_mask, cached.response_start, temperature=temperature)
    m = cached.response_mask
    assert (lp - cached.sampler_log_probs)[m].abs().max() < 1e-5
    assert torch.isfinite(lp).all() and torch.isfinite(ent).all()
    assert (cached.sampler_log_probs[~m] == 0).all()
    # the character tokenizer's vocabulary read backwards: each generated id is its character, specials dropped
    char = {i: t for t, i in pol.tokenizer.get_vocab().items()}
    special = set(pol.tokenizer.all_special_ids)
    texts = ["".join(char[i] for i in r[k].tolist() if i not in special) for r, k in zip(cached.responses, m)]
    assert cached.response_texts == texts


def test_greedy_is_argmax_and_deterministic() -> None:
    pol = _policy()
    prompts = pol.encode_prompts(QUESTIONS[:3])
    a = pol.generate(prompts, 8, 1.0, torch.Generator().manual_seed(0), greedy=True)
    b = pol.generate(prompts, 8, 1.0, torch.Generator().manual_seed(99), greedy=True)
    c = pol.generate_without_cache(prompts, 8, 0.0, None, greedy=True)
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.input_ids, c.input_ids)


def test_log_probs_invariant_to_left_padding() -> None:
    pol = _policy(seed=1)
    prompts = pol.encode_prompts(QUESTIONS)
    r = pol.generate(prompts, 12, 1.0, torch.Generator().manual_seed(5))
    lp, ent = pol.log_probs(r.input_ids, r.attention_mask, r.response_start)
    for extra in (0, 7):
        for i, p in enumerate(prompts):
            # the same row alone, with its own padding replaced by `extra` pads
            ids, mask = left_pad([p], pol.pad_id)
            pad_ids = torch.full((1, extra), pol.pad_id, dtype=torch.long)
            ids = torch.cat([pad_ids, ids, r.responses[i : i + 1]], dim=1)
            mask = torch.cat([torch.zeros(1, extra, dtype=torch.bool), mask, r.response_mask[i : i + 1]], dim=1)
            lp1, ent1 = pol.log_probs(ids, mask, extra + len(p))
            keep = r.response_mask[i]
            assert (lp1[0] - lp[i])[keep].abs().max() < 1e-5
            assert (ent1[0] - ent[i])[keep].abs().max() < 1e-5


def test_encode_prompts_chat_list_and_plain() -> None:
    pol = _policy()
    as_str = pol.encode_prompts(["12+3="])[0]
    as_chat = pol.encode_prompts([[{"role": "user", "content": "12+3="}]])[0]
    assert as_str == as_chat
    assert pol.tokenizer.decode(as_str) == "<|im_start|>user\n12+3=<|im_end|>\n<|im_start|>assistant\n"
    pol.tokenizer.chat_template = None
    assert pol.encode_prompts(["12+3="])[0] == pol.tokenizer.encode("12+3=")


def _overrides(tmp: Path, extra: list[str]) -> list[str]:
    return [
        "model.kind=hf",
        f"model.hf_random_init={RANDOM_INIT}",
        "task.n_train=64",
        "task.n_test=16",
        "rollout.prompts_per_batch=4",
        "rollout.group_size=2",
        "rollout.max_new_tokens=6",
        "run.eval_problems=4",
        "run.progress=false",
        "optim.lr=1e-2",
        *extra,
    ]


def test_trainer_runs_hf_policy_with_exact_staleness(tmp_path: Path) -> None:
    cfg = load_config(
        TrainConfig,
        None,
        _overrides(
            tmp_path,
            [
                "algo.loss=m2po",
                "algo.staleness=4",
                "algo.mini_batches=4",
                "run.total_updates=12",
                "run.eval_every=12",
                "run.checkpoint_every=12",
            ],
        ),
    )
    trainer = Trainer(cfg, tmp_path / "run")
    assert isinstance(trainer.policy, HFPolicy)
    # A random model never solves arithmetic, so every reward would be 0 and every advantage 0.
    # A reward it can earn by chance (parity of the first character) makes the policy move.
    trainer.run.reward = lambda text, answer: float(bool(text) and ord(text[0]) % 2 == 1)
    trainer.train()
    log = pd.read_csv(tmp_path / "run" / "updates.csv")
    assert log["update"].tolist() == list(range(12))
    assert log.staleness.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7]
    assert (log.behaviour_version == log["update"] - log.staleness).all()
    first = log.iloc[0]
    assert first.ratio_min == 1.0 and first.ratio_max == 1.0, "s = 0: training forward == behaviour forward"
    assert (log.grad_norm > 0).any() and (log.ratio_max > 1.0).any(), "the policy must move"
    evals = pd.read_csv(tmp_path / "run" / "evals.csv")
    assert (evals.benchmark == "tiny_arith").all() and len(evals) == 2
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["model"]["model_type"] == "qwen2" and manifest["model"]["parameters"] > 0
    assert (tmp_path / "run" / "final_model.pt").exists()


def _write_dataset(path: Path, n: int, source: str = "gsm8k") -> None:
    rows = [
        {
            "data_source": source,
            "prompt": [{"role": "user", "content": f"What is {i} + 1?"}],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": str(i + 1)},
            "extra_info": {"index": i, "split": "test", "id": f"{source}-test-{i}", "question": f"What is {i} + 1?"},
        }
        for i in range(n)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path)


def test_build_hf_run_reads_the_dataset_schema(tmp_path: Path) -> None:
    data = tmp_path / "gsm8k" / "test.parquet"
    _write_dataset(data, 30)
    (data.parent / "manifest.json").write_text(json.dumps({"source": "local", "is_fallback": True}))
    problems, sources = read_problems(data)
    assert sources == ["gsm8k"] and problems[3]["question"] == "What is 3 + 1?" and problems[3]["answer"] == "4"
    assert problems[3]["id"] == "gsm8k-test-3"
    cfg = load_config(TrainConfig, None, _overrides(tmp_path, [f"task.dataset={data}"]))
    run = build_hf_run(cfg)
    assert len(run.train_problems) == 27 and len(run.eval_problems) == 3, "no eval file: last 10% held out"
    assert run.benchmark == "gsm8k"
    assert run.manifest["data"]["is_fallback"] is True
    assert run.reward.__name__ == "math_reward"
    assert run.reward("so \\boxed{4}", "4") == 1.0 and run.reward("4", "4") == 0.0
    evals = tmp_path / "other" / "eval.parquet"
    _write_dataset(evals, 5, source="math500")
    cfg = load_config(TrainConfig, None, _overrides(tmp_path, [f"task.dataset={data}", f"task.eval_dataset={evals}"]))
    run = build_hf_run(cfg)
    assert len(run.train_problems) == 30 and len(run.eval_problems) == 5 and run.benchmark == "math500"


def test_hf_run_without_a_dataset_grades_the_worked_format_by_its_final_answer(tmp_path: Path) -> None:
    """An HF run on the generated task with ``task.format=worked`` rewards a correct worked trace (the tiny
    engine's reward of the format), not only the bare answer (hand-written traces of 7 + 48 = 55)."""
    cfg = load_config(TrainConfig, None, _overrides(tmp_path, ["task.format=worked"]))
    run = build_hf_run(cfg)
    assert run.benchmark == "tiny_arith" and run.manifest["task"]["response_format"] == "worked"
    assert run.reward("7+8=15 0+4+1=5 55", "55") == 1.0
    assert run.reward("7+8=14 0+4+1=5 54", "55") == 0.0


def test_model_path_may_name_the_gguf_or_its_directory(tmp_path: Path) -> None:
    (tmp_path / "model.Q4.gguf").write_bytes(b"")
    assert split_model_path(str(tmp_path / "model.Q4.gguf"), None) == (str(tmp_path), "model.Q4.gguf")
    assert split_model_path(str(tmp_path), None) == (str(tmp_path), "model.Q4.gguf")
    assert split_model_path(str(tmp_path), "other.gguf") == (str(tmp_path), "other.gguf")
    (tmp_path / "second.gguf").write_bytes(b"")
    with pytest.raises(ValueError, match="several GGUF"):
        split_model_path(str(tmp_path), None)
    assert split_model_path("org/model", None) == ("org/model", None)
