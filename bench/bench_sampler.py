"""Rollout throughput of the tiny engine's sampler: KV cache vs full re-forward each step.

Why: the RL loop spends most of its time sampling; ``m2po.engine.sampler.sample`` prefills the
left-padded prompt block once and then feeds one token per step through the KV cache, while
``sample_without_cache`` (the test oracle) re-runs the whole sequence every step. This prints
tokens/s for both on the same batch in the same process, and their ratio.

Setup: batch 128 arithmetic prompts, 32 new tokens, temperature 1, seeded generator, one torch
thread (the engine's default), random-init "0.1M" and "1M" presets with ``max_len`` raised to 64
so 32 new tokens fit after the prompt. No row stops early (the sampler gets an EOS id that can
never be drawn), so tokens/s = 128 x 32 / seconds (prefill included), best of a few repeats.

``python -m bench.bench_sampler``
"""

from __future__ import annotations

import dataclasses

import torch

from m2po.engine.model import MODEL_SIZES, TinyTransformer
from m2po.engine.sampler import sample, sample_without_cache
from m2po.engine.task import ArithmeticTask, generate_problems
from m2po.engine.tokenizer import CharTokenizer

from .timing import best_of, print_table

BATCH = 128
NEW_TOKENS = 32
SEED = 0
NEVER = -1  # an EOS id no sampler can draw: every row runs the full NEW_TOKENS steps


def main() -> None:
    torch.set_num_threads(1)
    tok = CharTokenizer()
    train, _ = generate_problems(ArithmeticTask(seed=SEED, n_train=BATCH, n_test=0))
    prompts = [tok.encode_prompt(p["question"]) for p in train]
    rows = []
    for size in ("0.1M", "1M"):
        torch.manual_seed(SEED)
        model = TinyTransformer(dataclasses.replace(MODEL_SIZES[size], max_len=64)).eval()

        def run(fn, model: TinyTransformer = model):  # noqa: ANN001, ANN202
            return lambda: fn(
                model,
                prompts,
                NEW_TOKENS,
                generator=torch.Generator().manual_seed(SEED),
                eos_id=NEVER,
                pad_id=tok.pad_id,
            )

        cached = run(sample)()
        uncached = run(sample_without_cache)()
        assert cached.responses.shape[1] == NEW_TOKENS and torch.equal(cached.input_ids, uncached.input_ids)
        t_cache = best_of(run(sample), repeats=5)
        t_full = best_of(run(sample_without_cache), repeats=3)
        n = BATCH * NEW_TOKENS
        rows.append([size, model.num_parameters(), n / t_full, n / t_cache, t_full / t_cache])
    print_table(
        f"tiny sampler: batch {BATCH}, {NEW_TOKENS} new tokens, 1 thread (tokens/s)",
        ["model", "params", "no cache", "KV cache", "speed-up (cache / no cache)"],
        rows,
    )


if __name__ == "__main__":
    main()
