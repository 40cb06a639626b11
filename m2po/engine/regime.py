"""Token-entropy statistics of a policy: is the tiny study in the LLM regime? (docs/tiny_protocol.md)

The paper's mechanisms live in the token statistics of chains of thought: most tokens are
near-deterministic and a minority of high-entropy "forking" tokens carry the uncertainty (and
are the ones GRPO's eps-clip hits, the paper's Fig. 4b). The pre-registered regime targets are
measured on the warm-start policy: the share of response tokens with entropy below
``LOW_NATS`` (target >= ``TARGET_LOW_SHARE``) and the share above ``HIGH_NATS`` (stated).

Measurement: ``k`` temperature-1 responses per held-out problem are sampled from the policy; the
entropy of the policy's next-token distribution is taken at every response token (EOS included)
from the training forward pass (:func:`m2po.engine.model.sequence_log_probs`), i.e. the entropy
the RL loop sees on its own rollouts. Shares are over all response tokens pooled.

For the ``"worked"`` format each token also gets a role from its place in the trace
("7+8=15 0+4+1=5 55": operand digits, '+'/'=' symbols, carry, column-sum digits, separators, answer
digits, eos), so a report can say where the entropy lives; tokens of a response that does not
parse are "other".
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import torch

from ..fileio import atomic_write_text
from .model import TinyTransformer, sequence_log_probs
from .sampler import sample
from .task import ArithmeticTask, generate_problems, max_response_tokens
from .tokenizer import CharTokenizer

LOW_NATS = 0.1  #: a token is "low-entropy" below this (nats)
HIGH_NATS = 0.5  #: a token is "high-entropy" above this (nats)
TARGET_LOW_SHARE = 0.70  #: pre-registered: at least this share of warm-start response tokens is low-entropy
QUANTILES = (0.5, 0.8, 0.9, 0.99)

_COLUMN = re.compile(r"(\d)\+(\d)(?:\+(\d))?=(\d+)")


def token_roles(text: str, n_tokens: int) -> list[str]:
    """Role of each of the ``n_tokens`` response tokens of a worked response (the last one is EOS
    when the response ended). ``text`` is the decoded response; a response that does not parse as
    columns + answer gets "other" everywhere."""
    roles: list[str] = []
    fields = text.split(" ")
    ok = len(fields) >= 2 and all(_COLUMN.fullmatch(f) for f in fields[:-1]) and fields[-1].isdigit()
    if not ok:
        return ["other"] * n_tokens
    for k, f in enumerate(fields[:-1]):
        if k:
            roles.append("separator")
        m = _COLUMN.fullmatch(f)
        assert m is not None
        roles += ["operand", "symbol", "operand"]
        if m.group(3) is not None:
            roles += ["symbol", "carry"]
        roles += ["symbol"] + ["sum"] * len(m.group(4))
    roles += ["separator"] + ["answer"] * len(fields[-1])
    roles += ["eos"] * (n_tokens - len(roles))
    return roles[:n_tokens]


def summarize_entropies(entropy: torch.Tensor, roles: list[str] | None = None) -> dict[str, Any]:
    """Pooled statistics of a flat tensor of token entropies (nats): ``n_tokens``, ``share_below_low``
    (< ``LOW_NATS``), ``share_above_high`` (> ``HIGH_NATS``), ``mean`` and ``quantiles``; with
    ``roles`` (one per token) also ``by_role``: count, share of tokens, mean entropy and share above
    ``HIGH_NATS`` per role."""
    e = entropy.detach().double().reshape(-1)
    n = e.numel()
    out: dict[str, Any] = {
        "n_tokens": n,
        "low_nats": LOW_NATS,
        "high_nats": HIGH_NATS,
        "share_below_low": float((e < LOW_NATS).double().mean()) if n else math.nan,
        "share_above_high": float((e > HIGH_NATS).double().mean()) if n else math.nan,
        "mean": float(e.mean()) if n else math.nan,
        "quantiles": {f"{q:g}": float(torch.quantile(e, q)) if n else math.nan for q in QUANTILES},
    }
    if roles is not None:
        if len(roles) != n:
            raise ValueError(f"{len(roles)} roles for {n} tokens")
        by_role = {}
        for role in sorted(set(roles)):
            sel = torch.tensor([r == role for r in roles])
            er = e[sel]
            by_role[role] = {
                "count": int(sel.sum()),
                "share_of_tokens": float(sel.double().mean()),
                "mean": float(er.mean()),
                "share_above_high": float((er > HIGH_NATS).double().mean()),
            }
        out["by_role"] = by_role
    return out


def policy_token_entropies(
    model: TinyTransformer,
    problems: list[dict[str, str]],
    tokenizer: CharTokenizer,
    k: int,
    max_new_tokens: int,
    generator: torch.Generator,
    batch_size: int = 1024,
) -> tuple[torch.Tensor, list[str]]:
    """Entropies (flat, nats) and roles of every response token of ``k`` temperature-1 samples per problem."""
    prompts = [tokenizer.encode_prompt(p["question"]) for p in problems for _ in range(k)]
    entropies, roles = [], []
    was_training = model.training
    model.eval()
    try:
        for lo in range(0, len(prompts), batch_size):
            roll = sample(
                model, prompts[lo : lo + batch_size], max_new_tokens, generator=generator, tokenizer=tokenizer
            )
            with torch.no_grad():
                _, ent = sequence_log_probs(model, roll.input_ids, roll.attention_mask, roll.response_start)
            for row in range(ent.shape[0]):
                n = int(roll.response_mask[row].sum())
                entropies.append(ent[row, :n])
                roles += token_roles(roll.response_texts[row], n)
    finally:
        model.train(was_training)
    return torch.cat(entropies), roles


def warm_start_regime(
    model: TinyTransformer, task: ArithmeticTask, k: int = 4, n_problems: int | None = None, seed: int = 0
) -> dict[str, Any]:
    """Regime statistics of a (warm-start) policy on the task's held-out problems, with the targets."""
    _, test = generate_problems(task)
    test = test[:n_problems] if n_problems else test
    gen = torch.Generator().manual_seed(seed)
    ent, roles = policy_token_entropies(model, test, CharTokenizer(), k, max_response_tokens(task), gen)
    stats = summarize_entropies(ent, roles)
    stats.update(
        k=k,
        n_problems=len(test),
        seed=seed,
        response_format=task.response_format,
        target_share_below_low=TARGET_LOW_SHARE,
        meets_target=bool(stats["share_below_low"] >= TARGET_LOW_SHARE),
    )
    return stats


def write_warm_start_regime(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str], k: int = 4) -> Path:
    """Measure a cached warm start (``sft.warm_start`` checkpoint) and write its statistics as JSON.

    The JSON holds the warm start's own held-out metrics and configs beside the entropy statistics,
    so one small file per warm start says everything the report prints about the regime.
    """
    from .sft import load_checkpoint, load_warm_start

    ckpt = load_checkpoint(checkpoint)
    task = ArithmeticTask(**{k_: tuple(v) if k_ == "operators" else v for k_, v in ckpt["task_config"].items()})
    torch.set_num_threads(1)
    stats = warm_start_regime(load_warm_start(checkpoint), task, k=k)
    stats.update(
        checkpoint=str(checkpoint),
        size=ckpt["sft_config"]["size"],
        sft_config=ckpt["sft_config"],
        warm_start_metrics=ckpt["metrics"],
    )
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(stats, indent=2, sort_keys=True) + "\n")
    return path
