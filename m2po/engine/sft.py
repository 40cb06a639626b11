"""Supervised warm start for the tiny study, deliberately leaving room for RL.

Why corrupt the targets: a previous trial found that plain SFT followed by RL improved nothing
(the SFT policy was already near-deterministic and correct, so every GRPO group had identical
rewards and zero advantage). Training instead on answers whose digits were each replaced, with
probability ``corrupt_frac``, by a different random digit teaches the model the right answer as
the mode but spreads ~``corrupt_frac`` of each digit's probability over wrong digits. Greedy
decoding is then (near) perfect while temperature-1 sampling is right only about
``(1 - corrupt_frac) ** n_digits`` of the time: a policy that RL can visibly sharpen, which is
the regime where staleness effects show.

Where the noise goes decides where the policy's entropy lives. For the ``"worked"`` task format
(``task.py``) only the COLUMN SUMS are corrupted: each column's sum slips by -1 or +1 with
probability ``corrupt_frac`` (half each; a slip below 0 goes up instead), and the carries and the
answer are rewritten to follow the slipped trace. Copied operand digits, '+', '=', separators,
carries and the answer stay exact given what precedes them, so the warm-start policy is
near-deterministic on them and uncertain only at the computations -- the LLM regime, where most
chain-of-thought tokens are low-entropy and a minority of "forking" tokens carry the entropy, and
where an early mistake propagates to a wrong but self-consistent answer. Off-by-one slips give
each forking token two plausible alternatives (entropy about 0.6-0.7 nats at corrupt_frac 0.2, the
entropy of the top-20 % "forking" tokens of LLM chains of thought, arXiv 2506.01939), rather than
spreading mass over every digit.

Determinism: a cached warm start is always trained with ONE torch thread (reductions split across
threads give a different model, and the cache key cannot know the caller's thread count).

Caching: many training processes start in parallel and must share ONE warm start, so
``warm_start`` keys the checkpoint by a hash of the configs, takes an exclusive ``fcntl.flock``
on ``<path>.lock`` (the first process trains, the others block and then reuse the file) and
writes through a temporary file + ``os.replace`` so no reader ever sees a partial checkpoint.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..fileio import atomic_torch_save
from .model import MODEL_SIZES, TinyModelConfig, TinyTransformer, sequence_log_probs
from .sampler import sample
from .sft_batches import AnswerBatches, WorkedBatches
from .task import ArithmeticTask, generate_problems, max_response_tokens, operand_width, reward_function
from .tokenizer import CharTokenizer

#: Bump when the training procedure changes in a way the configs do not capture: it is part of
#: the cache key, so stale warm starts are not silently reused.
SFT_FORMAT_VERSION = 1


@dataclass(frozen=True)
class SFTConfig:
    """Supervised warm start. Defaults are the "0.1M" calibration; see ``SFT_PRESETS``."""

    size: str = "0.1M"  # key of MODEL_SIZES
    steps: int = 1200
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100  # linear warm-up, then cosine decay to lr * min_lr_frac
    min_lr_frac: float = 0.1
    corrupt_frac: float = 0.15  # per answer digit: replaced by a different random digit
    seed: int = 0
    eval_samples: int = 4  # temperature-1 samples per held-out problem for the stored metrics
    max_new_tokens: int = 6  # raised to the task's longest response when that is longer

    def __post_init__(self) -> None:
        if self.size not in MODEL_SIZES:
            raise ValueError(f"size {self.size!r}: choose one of {sorted(MODEL_SIZES)}")
        if not 0.0 <= self.corrupt_frac < 1.0:
            raise ValueError(f"corrupt_frac={self.corrupt_frac} must be in [0, 1)")


#: Calibrated with the default ``ArithmeticTask()`` (held-out set of 1000, 4 samples per problem),
#: seed 0, ``torch.set_num_threads(1)``, on the shared 2-core dev machine (load average 2-3 from
#: other processes). Measured: "0.1M" greedy 0.971, sampled 0.634 +- 0.008, 51 s wall (46 s CPU);
#: "1M" greedy 0.914, sampled 0.562 +- 0.009, 146 s wall (113 s CPU); 1200 steps gave no gain
#: (0.916 / 0.564). With 2 threads the 0.1M run took 176 s (OpenMP threads fight the other
#: processes for the two cores) and, reductions being split differently, gave a different model:
#: warm starts are bit-reproducible for a fixed thread count only. The 1M preset needs lr 1e-3
#: (2e-3 and 5e-3 stalled near greedy 0.3 and 0.06 after 900 / 600 steps) and batch 64 to fit its
#: ~3 min budget. Addition only: with subtraction the 0.1M model needed ~2x the steps.
SFT_PRESETS: dict[str, SFTConfig] = {
    "0.1M": SFTConfig(size="0.1M"),
    "0.3M": SFTConfig(size="0.3M", steps=1000, lr=2e-3),  # not calibrated on this task: its worked recipe
    "1M": SFTConfig(size="1M", steps=1000, batch_size=64, lr=1e-3),
}

#: Presets for the ``"worked"`` task format (the tiny study's task), calibrated in
#: docs/tiny_protocol.md ("Warm start") on criteria of the warm-start policy only.
WORKED_SFT_PRESETS: dict[str, SFTConfig] = {
    "0.1M": SFTConfig(size="0.1M", corrupt_frac=0.2),
    "0.3M": SFTConfig(size="0.3M", steps=1000, lr=2e-3, corrupt_frac=0.2),
    "1M": SFTConfig(size="1M", steps=1000, batch_size=64, lr=1e-3, corrupt_frac=0.2),
}


def sft_preset(size: str, task_config: ArithmeticTask) -> SFTConfig:
    """The calibrated warm start of a model size for the task's response format."""
    presets = WORKED_SFT_PRESETS if task_config.response_format == "worked" else SFT_PRESETS
    if size not in presets:
        raise ValueError(f"no warm-start preset for model size {size!r}; use one of {sorted(presets)}")
    return presets[size]


def config_hash(sft_config: SFTConfig, task_config: ArithmeticTask) -> str:
    """Short stable hash of everything that determines the warm start."""
    blob = json.dumps(
        {
            "sft": dataclasses.asdict(sft_config),
            "task": dataclasses.asdict(task_config),
            "model": dataclasses.asdict(MODEL_SIZES[sft_config.size]),
            "version": SFT_FORMAT_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _lr_at(step: int, cfg: SFTConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress)))


#: Seconds per SFT step on one core of the dev machine, from the calibration above (51 s / 1200
#: steps, 146 s / 1000 steps): only for the "about N min" a warm start announces.
SECONDS_PER_STEP = {"0.1M": 0.043, "0.3M": 0.117, "1M": 0.146}


def train_sft(
    sft_config: SFTConfig, task_config: ArithmeticTask, log_every: int = 0, progress: bool = False
) -> tuple[TinyTransformer, dict[str, float]]:
    """Train from scratch (no caching) and return ``(model, metrics)``; ``warm_start`` wraps this.

    ``progress``: a bar on a terminal, else a line every tenth of the steps."""
    t0 = time.perf_counter()
    torch.manual_seed(sft_config.seed)
    gen = torch.Generator().manual_seed(sft_config.seed)
    tok = CharTokenizer()
    train, test = generate_problems(task_config)
    model_cfg = dataclasses.replace(MODEL_SIZES[sft_config.size], vocab_size=tok.vocab_size)
    model = TinyTransformer(model_cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=sft_config.lr, weight_decay=sft_config.weight_decay)
    if task_config.response_format == "worked":
        batches: AnswerBatches | WorkedBatches = WorkedBatches(train, tok, operand_width(task_config))
    else:
        batches = AnswerBatches(train, tok)
    model.train()
    loss_val = float("nan")
    bar = None
    if progress and sys.stderr.isatty():
        bar = tqdm(total=sft_config.steps, desc=f"warm start {sft_config.size}", unit="step", dynamic_ncols=True)
    elif progress and not log_every:
        log_every = max(1, sft_config.steps // 10)
    for step in range(sft_config.steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, sft_config)
        ids, mask, start = batches.draw(sft_config.batch_size, sft_config.corrupt_frac, gen)
        lp, _ = sequence_log_probs(model, ids, mask, start)
        resp_mask = mask[:, start:]
        loss = -(lp * resp_mask).sum() / resp_mask.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss_val = float(loss.detach())
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_val:.4f}", refresh=False)
        elif log_every and (step + 1) % log_every == 0:
            print(
                f"warm start: SFT step {step + 1}/{sft_config.steps} loss {loss_val:.4f} "
                f"({time.perf_counter() - t0:.1f}s)",
                file=sys.stderr,
                flush=True,
            )
    if bar is not None:
        bar.close()
    model.eval()
    train_s = time.perf_counter() - t0
    eval_gen = torch.Generator().manual_seed(sft_config.seed + 1)
    metrics = evaluate(
        model,
        test,
        tok,
        n_samples=sft_config.eval_samples,
        greedy=True,
        generator=eval_gen,
        max_new_tokens=max(sft_config.max_new_tokens, max_response_tokens(task_config)),
        reward_fn=reward_function(task_config),
    )
    metrics.update(final_loss=loss_val, train_seconds=train_s, total_seconds=time.perf_counter() - t0)
    return model, metrics


def evaluate(
    model: TinyTransformer,
    problems: list[dict[str, str]],
    tokenizer: CharTokenizer,
    n_samples: int = 1,
    greedy: bool = True,
    generator: torch.Generator | None = None,
    max_new_tokens: int = 6,
    batch_size: int = 1024,
    reward_fn: Callable[[str, str], float] | None = None,
) -> dict[str, float]:
    """Held-out accuracy: ``sampled_acc`` (mean reward of ``n_samples`` temperature-1 samples
    per problem), ``sampled_acc_se`` (standard error over problems of the per-problem mean) and
    ``greedy_acc``. Metrics not requested (n_samples=0, greedy=False) are NaN. ``reward_fn``
    defaults to the exact-answer reward of the "answer" format."""
    reward = reward_fn or reward_function(ArithmeticTask())
    if n_samples > 0 and generator is None:
        raise ValueError("sampled accuracy needs a torch.Generator")
    prompts = [tokenizer.encode_prompt(p["question"]) for p in problems]
    answers = [p["answer"] for p in problems]

    def accuracy(greedy_decode: bool) -> list[float]:
        out = []
        for lo in range(0, len(prompts), batch_size):
            roll = sample(
                model,
                prompts[lo : lo + batch_size],
                max_new_tokens,
                generator=generator,
                greedy=greedy_decode,
                tokenizer=tokenizer,
            )
            out += [reward(t, a) for t, a in zip(roll.response_texts, answers[lo : lo + batch_size])]
        return out

    nan = float("nan")
    result = {"sampled_acc": nan, "sampled_acc_se": nan, "greedy_acc": nan}
    if problems and n_samples > 0:
        per_problem = torch.tensor([accuracy(False) for _ in range(n_samples)], dtype=torch.float64).mean(0)
        result["sampled_acc"] = float(per_problem.mean())
        n = len(per_problem)
        result["sampled_acc_se"] = float(per_problem.std(unbiased=True) / math.sqrt(n)) if n > 1 else nan
    if problems and greedy:
        result["greedy_acc"] = sum(accuracy(True)) / len(problems)
    return result


def warm_start_path(sft_config: SFTConfig, task_config: ArithmeticTask, cache_dir: str | os.PathLike[str]) -> Path:
    return Path(cache_dir) / f"sft-{sft_config.size}-{config_hash(sft_config, task_config)}.pt"


def warm_start(
    sft_config: SFTConfig,
    task_config: ArithmeticTask,
    cache_dir: str | os.PathLike[str],
    log_every: int = 0,
    progress: bool = False,
) -> Path:
    """Path of the cached warm-start checkpoint, training it first if no process has yet.

    Checkpoint: ``{model_config, state_dict, sft_config, task_config, metrics, version}`` (configs
    as plain dicts so ``torch.load(weights_only=True)`` reads it). ``progress``: say on stderr what
    is trained, where it goes and about how long it takes, with a bar.
    """
    path = warm_start_path(sft_config, task_config, cache_dir)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if path.exists():  # another process trained it while we waited
                return path
            if progress:
                seconds = sft_config.steps * SECONDS_PER_STEP.get(sft_config.size, 0.1)
                about = f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
                print(
                    f"warm start: training the supervised warm start of the {sft_config.size} model "
                    f"({sft_config.steps} SFT steps, about {about} on one core) into "
                    f"{path.resolve()}; every later run with the same settings reuses it",
                    file=sys.stderr,
                    flush=True,
                )
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # the cache key has no thread count: one thread, one model
            try:
                model, metrics = train_sft(sft_config, task_config, log_every=log_every, progress=progress)
            finally:
                torch.set_num_threads(threads)
            ckpt: dict[str, Any] = {
                "model_config": dataclasses.asdict(model.config),
                "state_dict": model.state_dict(),
                "sft_config": dataclasses.asdict(sft_config),
                "task_config": dataclasses.asdict(task_config),
                "metrics": metrics,
                "version": SFT_FORMAT_VERSION,
            }
            atomic_torch_save(ckpt, path)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def load_warm_start(path: str | os.PathLike[str]) -> TinyTransformer:
    """Rebuild the model of a ``warm_start`` checkpoint (in eval mode)."""
    ckpt = load_checkpoint(path)
    model = TinyTransformer(TinyModelConfig(**ckpt["model_config"]))
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model
