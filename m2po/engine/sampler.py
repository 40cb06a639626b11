"""Batched autoregressive sampling with a KV cache, returning an RL-ready ``Rollout``.

Layout of a rollout (one row per prompt): a LEFT-padded prompt block of width P (so every row's
last prompt token sits in column P-1 and all rows start generating in the same column), then a
response block of width T RIGHT-padded with ``pad_id`` after each row's EOS. The attention mask
is the concatenation of the prompt mask and ``response_mask``; fed to
``model.sequence_log_probs(..., response_start=P)`` it reproduces the sampler's log-probs, which
is what makes ratio = 1 at staleness 0.

Log-probs recorded (``sampler_log_probs``): log of the probability the token was actually drawn
with, i.e. ``log_softmax(logits / temperature)`` at the sampled token, in float32. At
temperature 1 (the RL setting) this is exactly the policy's own log π. At temperature != 1 it is
the tempered distribution's log-prob, and the training forward must then be called with the same
``temperature`` to agree. With ``greedy=True`` the same quantity is recorded for the argmax
token (the "behaviour" of a greedy decode is a point mass; the recorded value is for diagnostics).

``response_mask`` is authoritative: the model's vocabulary includes pad and bos, and an untrained
policy may sample them as ordinary response tokens (True in the mask, skipped by ``decode``), so
never recover the mask from ``input_ids != pad_id``.

Random numbers: each step draws ``torch.multinomial(probs, 1, generator=generator)`` for the
whole batch, finished rows included, so the generator stream depends only on the batch size and
the number of steps; the cached and uncached samplers therefore draw the same tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from .model import KVCache, TinyTransformer, token_log_probs_and_entropy


class _Decoder(Protocol):
    pad_id: int
    eos_id: int

    def decode(self, ids: list[int]) -> str: ...


@dataclass
class Rollout:
    """A sampled batch. Shapes: B rows, prompt block P, response block T."""

    input_ids: torch.Tensor  # [B, P+T] long
    attention_mask: torch.Tensor  # [B, P+T] bool; False at left prompt padding and response padding
    response_start: int  # = P
    response_mask: torch.Tensor  # [B, T] bool; True for generated tokens, the EOS token included
    sampler_log_probs: torch.Tensor  # [B, T] float32; 0 where response_mask is False
    response_texts: list[str]  # decoded responses ([] when no tokenizer was given)

    @property
    def responses(self) -> torch.Tensor:
        """The response block [B, T]."""
        return self.input_ids[:, self.response_start :]

    @property
    def response_lengths(self) -> torch.Tensor:
        return self.response_mask.sum(dim=1)


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack token lists into a left-padded [B, P] id tensor and its bool mask."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("need at least one prompt and no empty prompt")
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.bool)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        mask[i, width - len(p) :] = True
    return ids, mask


def _resolve_ids(tokenizer: _Decoder | None, eos_id: int | None, pad_id: int | None) -> tuple[int, int]:
    eos = eos_id if eos_id is not None else (tokenizer.eos_id if tokenizer is not None else None)
    pad = pad_id if pad_id is not None else (tokenizer.pad_id if tokenizer is not None else None)
    if eos is None or pad is None:
        raise ValueError("pass eos_id and pad_id, or a tokenizer that defines them")
    return eos, pad


def _generate(
    model: TinyTransformer,
    prompts: list[list[int]],
    max_new_tokens: int,
    temperature: float,
    generator: torch.Generator | None,
    greedy: bool,
    eos_id: int | None,
    pad_id: int | None,
    tokenizer: _Decoder | None,
    use_cache: bool,
) -> Rollout:
    eos, pad = _resolve_ids(tokenizer, eos_id, pad_id)
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 1")
    if not greedy and (temperature <= 0 or generator is None):
        raise ValueError("sampling needs temperature > 0 and a torch.Generator (or greedy=True)")
    prompt_ids, prompt_mask = left_pad(prompts, pad)
    longest = max(len(p) for p in prompts)
    if longest + max_new_tokens > model.config.max_len:
        raise ValueError(
            f"longest prompt ({longest}) + max_new_tokens ({max_new_tokens}) > max_len ({model.config.max_len})"
        )
    b = len(prompts)
    lp_temperature = temperature if temperature > 0 else 1.0  # greedy may pass temperature=0
    was_training = model.training
    model.eval()
    tokens: list[torch.Tensor] = []
    alive: list[torch.Tensor] = []  # alive[t]: the row had not emitted EOS before step t
    log_probs: list[torch.Tensor] = []
    done = torch.zeros(b, dtype=torch.bool)
    ids, mask = prompt_ids, prompt_mask
    past: KVCache | None = None
    try:
        with torch.inference_mode():
            logits, past = model(prompt_ids, prompt_mask)
            for _ in range(max_new_tokens):
                last = logits[:, -1]
                if greedy:
                    tok = last.argmax(dim=-1)
                else:
                    probs = torch.softmax(last.float() / temperature, dim=-1)
                    tok = torch.multinomial(probs, 1, generator=generator).squeeze(1)
                lp, _ = token_log_probs_and_entropy(last, tok, lp_temperature)
                is_alive = ~done
                tok = torch.where(is_alive, tok, torch.full_like(tok, pad))
                tokens.append(tok)
                alive.append(is_alive)
                log_probs.append(torch.where(is_alive, lp, torch.zeros_like(lp)))
                done = done | (tok == eos)
                if bool(done.all()):
                    break
                mask = torch.cat([mask, is_alive[:, None]], dim=1)
                if use_cache:
                    logits, past = model(tok[:, None], mask, past)
                else:
                    ids = torch.cat([ids, tok[:, None]], dim=1)
                    logits, _ = model(ids, mask)
    finally:
        model.train(was_training)
    response = torch.stack(tokens, dim=1)
    response_mask = torch.stack(alive, dim=1)
    texts = [tokenizer.decode(row.tolist()) for row in response] if tokenizer is not None else []
    return Rollout(
        input_ids=torch.cat([prompt_ids, response], dim=1),
        attention_mask=torch.cat([prompt_mask, response_mask], dim=1),
        response_start=prompt_ids.shape[1],
        response_mask=response_mask,
        sampler_log_probs=torch.stack(log_probs, dim=1),
        response_texts=texts,
    )


def sample(
    model: TinyTransformer,
    prompts: list[list[int]],
    max_new_tokens: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    greedy: bool = False,
    eos_id: int | None = None,
    pad_id: int | None = None,
    tokenizer: _Decoder | None = None,
) -> Rollout:
    """Sample responses with a KV cache: prefill the left-padded prompt block once, then feed
    one token per step. Rows stop at EOS (pad afterwards); the loop ends when every row has
    stopped or after ``max_new_tokens`` steps. ``eos_id``/``pad_id`` default to the tokenizer's;
    the tokenizer (optional) is only used to fill ``response_texts``. See the module docstring
    for the recorded log-probs."""
    return _generate(model, prompts, max_new_tokens, temperature, generator, greedy, eos_id, pad_id, tokenizer, True)


def sample_without_cache(
    model: TinyTransformer,
    prompts: list[list[int]],
    max_new_tokens: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    greedy: bool = False,
    eos_id: int | None = None,
    pad_id: int | None = None,
    tokenizer: _Decoder | None = None,
) -> Rollout:
    """``sample`` recomputing the full forward over the whole sequence each step (no cache): the
    benchmark baseline and a test oracle. Same generator seed -> same tokens as ``sample``."""
    return _generate(model, prompts, max_new_tokens, temperature, generator, greedy, eos_id, pad_id, tokenizer, False)
