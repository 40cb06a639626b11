"""The policy interface the RL loop trains: the tiny transformer here, a Hugging Face causal LM
in ``hf_policy.py``. The loop never touches a model directly, so both engines share it.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from .model import TinyTransformer, sequence_log_probs
from .sampler import Rollout, sample
from .tokenizer import CharTokenizer


class Policy(Protocol):
    """What the RL loop needs from a model."""

    module: nn.Module

    def encode_prompts(self, questions: list[str]) -> list[list[int]]:
        """Token ids of each prompt, exactly as the model is fed them."""
        ...

    def generate(
        self,
        prompts: list[list[int]],
        max_new_tokens: int,
        temperature: float,
        generator: torch.Generator,
        greedy: bool = False,
    ) -> Rollout:
        """Sample (or decode greedily) one response per prompt."""
        ...

    def log_probs(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The training forward pass: ``(log_probs [B, T], entropy [B, T])`` of the response tokens."""
        ...


class TinyPolicy:
    """The embedded default: :class:`TinyTransformer` with the character tokenizer."""

    def __init__(self, model: TinyTransformer, tokenizer: CharTokenizer | None = None) -> None:
        self.module = model
        self.tokenizer = tokenizer or CharTokenizer()

    def encode_prompts(self, questions: list[str]) -> list[list[int]]:
        return [self.tokenizer.encode_prompt(q) for q in questions]

    def generate(self, prompts, max_new_tokens, temperature, generator, greedy=False) -> Rollout:
        """The engine's sampler with its KV cache (it switches the model to eval mode and back itself)."""
        return sample(
            self.module,
            prompts,
            max_new_tokens,
            temperature=temperature,
            generator=generator,
            greedy=greedy,
            tokenizer=self.tokenizer,
        )

    def log_probs(self, input_ids, attention_mask, response_start):
        return sequence_log_probs(self.module, input_ids, attention_mask, response_start)
