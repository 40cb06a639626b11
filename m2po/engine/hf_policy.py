"""A Hugging Face causal LM behind the engine's :class:`~m2po.engine.policy.Policy` protocol.

Why a hand-written sampler instead of ``model.generate``: the RL loop needs (1) sampling driven
by the run's own ``torch.Generator`` so a run is reproducible and resumable bit for bit, and (2)
the log-prob of every drawn token, computed exactly the way the training forward computes it, so
that at staleness 0 the importance ratio is 1 (docs/architecture.md, "the log-probs"). ``generate``
is the tiny engine's decode loop (:func:`m2po.engine.sampler.decode_loop`) driven by a HF model's
prefill and step with its ``past_key_values`` (a ``DynamicCache``); ``model.generate`` only serves as
the benchmark baseline (``bench/bench_hf_sampler.py``).

The layout and position contract, shared by generation and the training forward:

* Prompts are LEFT-padded into a block of width P, so every row generates in the same column and
  the rollout is ``[prompt block | response block]`` with ``response_start = P`` (the project's
  :class:`~m2po.engine.sampler.Rollout`).
* ``position_ids = cumsum(attention_mask) - 1`` clamped at 0: positions count real tokens only,
  so a row's logits do not depend on how much padding the batch gave it (RoPE models would
  otherwise see a shifted position for every left pad). Generation feeds the same positions step
  by step; ``log_probs`` recomputes them from the rollout's mask, hence the two agree.
* After a row emits a stop token it is fed ``pad_id`` with mask 0 (so it is never attended to)
  until the whole batch stops; the response mask includes the stop token itself.
* Random numbers: one ``torch.multinomial`` over the whole batch per step, finished rows included,
  so the generator stream depends only on the batch size and the number of steps; the cached and
  uncached samplers therefore draw the same tokens for the same seed.

Loading a model (local directory, GGUF, random init) is ``hf_model.py``'s job, shared with the
evaluation's HF backend; building a run around it (problems, reward) is ``hf_run.py``'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .hf_model import stop_token_ids
from .model import token_log_probs_and_entropy
from .sampler import Prefill, Rollout, Step, decode_loop

#: A question as the loop passes it (a string) or a ready chat (a list of {"role", "content"}).
Question = str | Sequence[Mapping[str, str]]


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only (``cumsum(mask) - 1``, clamped at 0); see the module docstring."""
    return (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)


class HFPolicy:
    """Any ``AutoModelForCausalLM`` + its tokenizer as an engine :class:`Policy`.

    ``stop_ids`` default to the union of the generation config's and the tokenizer's EOS ids and
    the known end-of-turn tokens in the vocabulary: GGUF tokenizers can disagree with the model
    (SmolLM2's GGUF tokenizer reports ``<|im_start|>`` as EOS while the model ends turns with
    ``<|im_end|>``), and stopping on any of them is what a chat model needs. ``pad_id`` only fills
    padded slots, which are masked everywhere.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        stop_ids: Sequence[int] | None = None,
        pad_id: int | None = None,
    ) -> None:
        self.module = model
        self.tokenizer = tokenizer
        config = model.config
        gen_config = getattr(model, "generation_config", None)
        if stop_ids is None:
            gen_eos = getattr(gen_config, "eos_token_id", None)
            stop_ids = stop_token_ids(tokenizer, gen_eos, config.eos_token_id, tokenizer.eos_token_id)
        if not stop_ids:
            raise ValueError("no EOS id in the model's generation config, config or tokenizer: pass stop_ids")
        self.stop_ids = torch.tensor(list(stop_ids), dtype=torch.long)
        if pad_id is None:
            candidates = [tokenizer.pad_token_id, getattr(gen_config, "pad_token_id", None), config.pad_token_id]
            pad_id = next((c for c in candidates if isinstance(c, int)), int(self.stop_ids[0]))
        self.pad_id = int(pad_id)
        self.max_positions: int | None = getattr(config, "max_position_embeddings", None)

    # -- prompts ----------------------------------------------------------------------------------

    def encode_prompts(self, questions: Sequence[Question]) -> list[list[int]]:
        """Token ids of each prompt as the model is fed them.

        A chat list, or any string when the tokenizer has a chat template, goes through
        ``apply_chat_template(..., add_generation_prompt=True)`` (the paper's setting: one user
        message, template applied); otherwise the string is encoded plainly (with the tokenizer's
        own specials, e.g. a BOS for base models).
        """
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        out: list[list[int]] = []
        for q in questions:
            if isinstance(q, str) and not has_template:
                out.append(list(self.tokenizer.encode(q)))
                continue
            messages = [{"role": "user", "content": q}] if isinstance(q, str) else [dict(m) for m in q]
            ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            if isinstance(ids, Mapping):  # transformers 5 returns a BatchEncoding by default
                ids = ids["input_ids"]
            out.append([int(i) for i in ids])
        return out

    # -- sampling ---------------------------------------------------------------------------------

    def generate(
        self,
        prompts: list[list[int]],
        max_new_tokens: int,
        temperature: float,
        generator: torch.Generator | None,
        greedy: bool = False,
    ) -> Rollout:
        """Sample (or decode greedily) one response per prompt with the model's KV cache.

        ``sampler_log_probs`` are ``log_softmax(logits / temperature)`` at the drawn token in
        float32 (the tiny sampler's convention): at temperature 1 they are the policy's log π.
        """
        return self._decode(prompts, max_new_tokens, temperature, generator, greedy, use_cache=True)

    def generate_without_cache(
        self,
        prompts: list[list[int]],
        max_new_tokens: int,
        temperature: float,
        generator: torch.Generator | None,
        greedy: bool = False,
    ) -> Rollout:
        """``generate`` recomputing the full forward each step: the test oracle of the cached path."""
        return self._decode(prompts, max_new_tokens, temperature, generator, greedy, use_cache=False)

    def _decode(
        self,
        prompts: list[list[int]],
        max_new_tokens: int,
        temperature: float,
        generator: torch.Generator | None,
        greedy: bool,
        use_cache: bool,
    ) -> Rollout:
        def texts(response: torch.Tensor, response_mask: torch.Tensor) -> list[str]:
            # no clean-up pass: it rewrites spaces around punctuation, and the grader sees the raw text
            return [
                self.tokenizer.decode(row[keep].tolist(), skip_special_tokens=True, clean_up_tokenization_spaces=False)
                for row, keep in zip(response, response_mask, strict=True)
            ]

        prefill, step = self._steps(use_cache)
        limit = None if self.max_positions is None else ("max_position_embeddings", self.max_positions)
        return decode_loop(
            self.module,
            prefill,
            step,
            prompts,
            max_new_tokens,
            temperature,
            generator,
            greedy,
            stop_ids=self.stop_ids,
            pad_id=self.pad_id,
            texts=texts,
            position_limit=limit,
        )

    def _steps(self, use_cache: bool) -> tuple[Prefill, Step]:
        """Prefill and step of the decode loop: one token per step against the ``DynamicCache``, or
        (the oracle) the whole sequence again. Positions follow the mask (module docstring)."""
        model = self.module

        def prefill(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, Any]:
            out = model(
                input_ids=ids,
                attention_mask=mask.long(),
                position_ids=position_ids_from_mask(mask),
                use_cache=use_cache,
                logits_to_keep=1,
            )
            return out.logits[:, -1], (out.past_key_values if use_cache else ids)

        def step(state: Any, tok: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, Any]:
            positions = position_ids_from_mask(mask)
            if use_cache:
                out = model(
                    input_ids=tok[:, None],
                    attention_mask=mask.long(),
                    position_ids=positions[:, -1:],
                    past_key_values=state,
                    use_cache=True,
                )
                return out.logits[:, -1], out.past_key_values
            ids = torch.cat([state, tok[:, None]], dim=1)
            out = model(
                input_ids=ids, attention_mask=mask.long(), position_ids=positions, use_cache=False, logits_to_keep=1
            )
            return out.logits[:, -1], ids

        return prefill, step

    # -- training forward -------------------------------------------------------------------------

    def log_probs(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int, temperature: float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The training forward: ``(log_probs [B, T], entropy [B, T])`` of the response block.

        Same positions as generation (see the module docstring); only the last ``T + 1`` hidden
        states go through the LM head (``logits_to_keep``), because a 49k-word vocabulary times a
        long GSM8K prompt would otherwise dominate memory. Float32 log_softmax via the tiny engine's
        ``token_log_probs_and_entropy``, so both engines compute log-probs identically. Values at
        response padding are finite but meaningless: mask them with the rollout's ``response_mask``.
        """
        device = next(self.module.parameters()).device
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
        t = input_ids.shape[1] - response_start
        if t < 1 or response_start < 1:
            raise ValueError(f"response_start={response_start} must leave >= 1 prompt and >= 1 response column")
        out = self.module(
            input_ids=input_ids,
            attention_mask=attention_mask.long(),
            position_ids=position_ids_from_mask(attention_mask),
            use_cache=False,
            logits_to_keep=t + 1,
        )
        logits = out.logits[:, :-1]
        return token_log_probs_and_entropy(logits, input_ids[:, response_start:], temperature)
