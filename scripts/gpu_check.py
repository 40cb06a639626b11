"""The Python part of scripts/gpu_check.sh: the loss benchmark and the engine's training step on a device.

    python scripts/gpu_check.py --device cuda [--quick] [--json OUT.json]

Needs only torch (and this repository on ``sys.path``): no verl, no vLLM, nothing else to install, so it runs
in a bare CUDA image. ``--quick`` shrinks the sizes (tests/test_gpu_check.py runs it on the CPU).

1. Loss benchmark (bench/bench_losses.py on ``--device``): forward + backward of ``grpo``, ``m2po`` and
   ``m2po_released`` against the authors' released threshold search, a Python loop over the sorted
   trust-region values with one ``.item()`` per visited token, i.e. one device synchronisation per step
   on a GPU. Goal: the loop at least 100× slower than ``m2po`` at the largest size.
2. The embedded engine's training step (its ``TinyTransformer`` "1M" model and its losses): one optimizer
   update as ``m2po.engine.loop`` makes it (micro-batches, the ``minibatch``-scope keep-mask over the whole
   mini-batch, global token denominators, grad clip, AdamW), on ``--device`` and on the CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_losses import make_batch, released_loop_loss  # noqa: E402
from m2po.engine.model import MODEL_SIZES, TinyTransformer  # noqa: E402
from m2po.engine.policy import TinyPolicy  # noqa: E402
from m2po.losses import get_policy_loss, m2po_mask  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(fn, device: torch.device, repeats: int = 3, warmup: int = 1) -> float:
    """Best wall time over ``repeats`` calls (device synchronised before and after each)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def time_loss(fn, inputs: tuple[torch.Tensor, ...], device: torch.device, repeats: int = 3, warmup: int = 1) -> float:
    lp, old, adv, mask = inputs

    def step() -> None:
        x = lp.clone().requires_grad_(True)
        out = fn(x, old, adv, mask)
        (out[0] if isinstance(out, tuple) else out).backward()

    return best_time(step, device, repeats, warmup)


def loss_benchmark(device: torch.device, sizes: tuple[int, ...]) -> list[dict]:
    rows = []
    for n_tokens in sizes:
        inputs = tuple(t.to(device) for t in make_batch(n_tokens))
        row = {"tokens": n_tokens}
        for name in ("grpo", "m2po", "m2po_released"):
            row[name] = time_loss(get_policy_loss(name), inputs, device)
        row["released_loop"] = time_loss(released_loop_loss, inputs, device, repeats=1, warmup=0)
        row["loop/m2po"] = row["released_loop"] / row["m2po"]
        row["loop/m2po_released"] = row["released_loop"] / row["m2po_released"]
        rows.append(row)
    return rows


def engine_update(
    device: torch.device, sequences: int, micro_batches: int, size: str = "1M", repeats: int = 3, seed: int = 0
) -> float:
    """Wall time of one optimizer update of the engine's model ``size`` on ``device`` (best of ``repeats``)."""
    torch.manual_seed(seed)
    cfg = MODEL_SIZES[size]
    policy = TinyPolicy(TinyTransformer(cfg).to(device))
    opt = torch.optim.AdamW(policy.module.parameters(), lr=1e-4, weight_decay=0.01)
    g = torch.Generator().manual_seed(seed)
    prompt, total = 12, cfg.max_len
    ids = torch.randint(1, cfg.vocab_size, (sequences, total), generator=g).to(device)
    attention = torch.ones(sequences, total, dtype=torch.bool, device=device)
    with torch.no_grad():
        behaviour = policy.log_probs(ids, attention, prompt)[0] - 0.1 * torch.randn(
            sequences, total - prompt, generator=g
        ).to(device)
    adv = torch.randn(sequences, 1, generator=g).to(device).expand(-1, total - prompt)
    mask = torch.ones_like(behaviour, dtype=torch.bool)
    n_tokens, step = float(mask.sum()), sequences // micro_batches
    loss_fn = get_policy_loss("m2po")

    def update() -> None:
        parts = [slice(i * step, (i + 1) * step) for i in range(micro_batches)]
        with torch.no_grad():  # the mini-batch's log-probs, for Algorithm 1 over the whole mini-batch
            lp_all = torch.cat([policy.log_probs(ids[p], attention[p], prompt)[0] for p in parts])
        keep = m2po_mask(lp_all, behaviour, adv, mask, tau=0.04)
        opt.zero_grad(set_to_none=True)
        for p in parts:
            lp, _ = policy.log_probs(ids[p], attention[p], prompt)
            loss, _ = loss_fn(lp, behaviour[p], adv[p], mask[p], keep_mask=keep[p], global_token_count=n_tokens)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.module.parameters(), 1.0)
        opt.step()

    return best_time(update, device, repeats=repeats)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/gpu_check.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--quick", action="store_true", help="small sizes (a CPU test of this script)")
    p.add_argument("--json", type=Path, help="also write the numbers here")
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: torch sees no CUDA device", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    torch.set_num_threads(2)
    sizes = (3_000,) if args.quick else (30_000, 1_000_000)
    losses = loss_benchmark(device, sizes)
    print(f"\n## Policy losses, forward+backward on {device} (s, best of 3; the released loop: one run)\n")
    print("| tokens | grpo | m2po | m2po_released | released loop | loop/m2po | loop/m2po_released |")
    print("|---|---|---|---|---|---|---|")
    for r in losses:
        print(f"| {r['tokens']:,} | {r['grpo']:.4g} | {r['m2po']:.4g} | {r['m2po_released']:.4g} | "
              f"{r['released_loop']:.4g} | {r['loop/m2po']:.4g} | {r['loop/m2po_released']:.4g} |")  # fmt: skip
    goal = losses[-1]["loop/m2po"] >= 100
    print(f"goal loop/m2po >= 100 at {losses[-1]['tokens']:,} tokens: {'met' if goal else 'NOT met'}")
    seqs, micro, size, repeats = (8, 2, "0.1M", 1) if args.quick else (512, 4, "1M", 3)
    engine = {"sequences": seqs, "micro_batches": micro, args.device: engine_update(device, seqs, micro, size, repeats)}
    if device.type != "cpu":
        engine["cpu"] = engine_update(torch.device("cpu"), seqs, micro, size, repeats)
    times = ", ".join(f"{k} {v:.4g} s" for k, v in engine.items() if k not in ("sequences", "micro_batches"))
    print(f"\n## Engine update ({size} model, {seqs} sequences x 32 tokens, {micro} micro-batches): {times}")
    if args.json:
        args.json.write_text(json.dumps({"device": str(device), "losses": losses, "engine": engine}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
