"""Batched autoregressive sampling with a KV cache, returning an RL-ready ``Rollout``.

One decode loop (:func:`decode_loop`) serves both engines: the model enters only through its
``prefill`` (the prompt block) and ``step`` (one token per row) functions, here the tiny
transformer's, in ``hf_policy.py`` a Hugging Face model's with its ``DynamicCache``. Each engine
also has a no-cache ``step`` that recomputes the whole sequence: the test oracle of the cached one.

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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from .model import TinyTransformer, token_log_probs_and_entropy


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


#: ``prefill(prompt_ids, prompt_mask) -> (last logits [B, V], state)``: the model's forward over the prompt block.
Prefill = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, Any]]
#: ``step(state, tokens [B], mask [B, L]) -> (last logits [B, V], state)``: feed one token per row; ``mask``
#: covers every column so far, the new one included (False for rows that had already stopped).
Step = Callable[[Any, torch.Tensor, torch.Tensor], tuple[torch.Tensor, Any]]


def decode_loop(
    model: nn.Module,
    prefill: Prefill,
    step: Step,
    prompts: list[list[int]],
    max_new_tokens: int,
    temperature: float,
    generator: torch.Generator | None,
    greedy: bool,
    stop_ids: torch.Tensor,
    pad_id: int,
    texts: Callable[[torch.Tensor, torch.Tensor], list[str]],
    position_limit: tuple[str, int] | None = None,
) -> Rollout:
    """The one decode loop of both engines; the model enters only through ``prefill`` and ``step``.

    Draws as the module docstring says: one ``torch.multinomial`` per step for the whole batch (greedy:
    argmax), the tempered float32 log-prob of the drawn token, rows that have stopped (on any of
    ``stop_ids``) fed ``pad_id`` under mask 0. The loop ends when every row has stopped or after
    ``max_new_tokens`` draws, without a forward pass whose logits nobody would read. ``texts(response,
    response_mask)`` decodes the response block; ``position_limit`` = ``(name, n)`` bounds prompt + response
    length by the model's ``n`` positions (``name`` is the config field, for the error message).
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 1")
    if not greedy and (temperature <= 0 or generator is None):
        raise ValueError("sampling needs temperature > 0 and a torch.Generator (or greedy=True)")
    prompt_ids, prompt_mask = left_pad(prompts, pad_id)
    longest = max(len(p) for p in prompts)
    if position_limit is not None and longest + max_new_tokens > position_limit[1]:
        name, n = position_limit
        raise ValueError(f"longest prompt ({longest}) + max_new_tokens ({max_new_tokens}) > the model's {name} ({n})")
    device = next(model.parameters()).device
    lp_temperature = temperature if temperature > 0 else 1.0  # greedy may pass temperature=0
    stop = stop_ids.to(device)
    mask = prompt_mask.to(device)
    tokens: list[torch.Tensor] = []
    alive: list[torch.Tensor] = []  # alive[t]: the row had not stopped before step t
    log_probs: list[torch.Tensor] = []
    done = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            last, state = prefill(prompt_ids.to(device), mask)
            for t in range(max_new_tokens):
                if greedy:
                    tok = last.argmax(dim=-1)
                else:
                    probs = torch.softmax(last.float() / temperature, dim=-1)
                    tok = torch.multinomial(probs, 1, generator=generator).squeeze(1)
                lp, _ = token_log_probs_and_entropy(last, tok, lp_temperature)
                is_alive = ~done
                tok = torch.where(is_alive, tok, torch.full_like(tok, pad_id))
                tokens.append(tok)
                alive.append(is_alive)
                log_probs.append(torch.where(is_alive, lp, torch.zeros_like(lp)))
                done = done | torch.isin(tok, stop)
                if bool(done.all()) or t == max_new_tokens - 1:
                    break
                mask = torch.cat([mask, is_alive[:, None]], dim=1)
                last, state = step(state, tok, mask)
    finally:
        model.train(was_training)
    response = torch.stack(tokens, dim=1).cpu()
    response_mask = torch.stack(alive, dim=1).cpu()
    return Rollout(
        input_ids=torch.cat([prompt_ids, response], dim=1),
        attention_mask=torch.cat([prompt_mask, response_mask], dim=1),
        response_start=prompt_ids.shape[1],
        response_mask=response_mask,
        sampler_log_probs=torch.stack(log_probs, dim=1).cpu(),
        response_texts=texts(response, response_mask),
    )


def _tiny_steps(model: TinyTransformer, use_cache: bool) -> tuple[Prefill, Step]:
    """The tiny model's prefill and step: one token per step against its KV cache, or (the oracle) the
    whole sequence again."""

    def prefill(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, Any]:
        logits, past = model(ids, mask)
        return logits[:, -1], (past if use_cache else ids)

    def step(state: Any, tok: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, Any]:
        if use_cache:
            logits, past = model(tok[:, None], mask, state)
            return logits[:, -1], past
        ids = torch.cat([state, tok[:, None]], dim=1)
        logits, _ = model(ids, mask)
        return logits[:, -1], ids

    return prefill, step


def _sample(
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

    def texts(response: torch.Tensor, _: torch.Tensor) -> list[str]:
        return [tokenizer.decode(row.tolist()) for row in response] if tokenizer is not None else []

    prefill, step = _tiny_steps(model, use_cache)
    return decode_loop(
        model,
        prefill,
        step,
        prompts,
        max_new_tokens,
        temperature,
        generator,
        greedy,
        stop_ids=torch.tensor([eos]),
        pad_id=pad,
        texts=texts,
        position_limit=("max_len", model.config.max_len),
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
    return _sample(model, prompts, max_new_tokens, temperature, generator, greedy, eos_id, pad_id, tokenizer, True)


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
    return _sample(model, prompts, max_new_tokens, temperature, generator, greedy, eos_id, pad_id, tokenizer, False)
