"""A tiny pre-LN decoder-only transformer in plain PyTorch, and the training forward pass.

Why our own model rather than a hub checkpoint: the CPU engine must train end to end in minutes
on two cores, deterministically, and its sampler must return log-probs that the training
forward reproduces to float32 rounding (docs/architecture.md, "the log-probs": a mismatch would
masquerade as staleness). Owning ~150 lines of model makes both properties checkable.

Design choices:
- Pre-LN blocks (LN -> attention -> residual, LN -> MLP -> residual, final LN): stable without
  learning-rate warm-up tricks at these sizes.
- Learned absolute positional embeddings, counted from each row's FIRST REAL token
  (``position_ids = cumsum(mask) - 1`` clamped at 0). With left padding this makes a row's
  logits independent of how much padding the batch gave it: pads are excluded as attention keys
  and shift no positions.
- Tied input/output embeddings (the head is ``tok_emb.weight``): with a ~20-token vocabulary the
  saving is small, but tying is the GPT-2 convention and keeps the two presets' parameter
  counts dominated by the blocks.
- Every query may always attend to itself, so a pad query (which attends to no real key) gets a
  finite, meaningless output instead of a NaN from an all-masked softmax. Pad positions'
  outputs are never used: callers mask them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: One (key, value) pair per layer, each [B, n_heads, L_past, head_dim].
KVCache = tuple[tuple[torch.Tensor, torch.Tensor], ...]


@dataclass(frozen=True)
class TinyModelConfig:
    """Shape of a ``TinyTransformer``. ``max_len`` bounds real tokens per row (positions)."""

    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    max_len: int = 32
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")


#: Presets. Vocabulary size matches ``CharTokenizer()`` (19 ids).
#: "0.1M": 103k parameters; "0.3M": 341k; "1M": 1.0M. The tiny study (docs/tiny_protocol.md) uses
#: "0.1M" and "0.3M": on its worked-solution task a "1M" run costs 5.4x a "0.1M" run of CPU time and
#: "0.3M" 2.3x (measured, same batch), and only the latter fits the study's 10-minute budget.
MODEL_SIZES: dict[str, TinyModelConfig] = {
    "0.1M": TinyModelConfig(vocab_size=19, d_model=64, n_layers=2, n_heads=4, d_ff=256, max_len=32),
    "0.3M": TinyModelConfig(vocab_size=19, d_model=96, n_layers=3, n_heads=4, d_ff=384, max_len=32),
    "1M": TinyModelConfig(vocab_size=19, d_model=128, n_layers=5, n_heads=4, d_ff=512, max_len=32),
}


class _Attention(nn.Module):
    def __init__(self, cfg: TinyModelConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.head_dim = cfg.d_model // cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout

    def forward(
        self, x: torch.Tensor, allowed: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        b, length, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)
        q, k, v = (t.view(b, length, self.n_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        # Explicit attention rather than F.scaled_dot_product_attention: SDPA picks different CPU
        # kernels for the 1-token cached step and the full-sequence training forward; on the trained
        # 1M warm start that raised the worst sampler-vs-training log-prob gap from 1.2e-5 to 2e-5.
        scores = (q @ k.transpose(-2, -1)) * self.head_dim**-0.5
        weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
        y = F.dropout(weights, self.dropout, self.training) @ v
        y = y.transpose(1, 2).reshape(b, length, d)
        return self.proj(y), (k, v)


class _Block(nn.Module):
    def __init__(self, cfg: TinyModelConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = _Attention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model), nn.Dropout(cfg.dropout)
        )

    def forward(
        self, x: torch.Tensor, allowed: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        a, present = self.attn(self.ln1(x), allowed, past)
        x = x + a
        x = x + self.mlp(self.ln2(x))
        return x, present


class TinyTransformer(nn.Module):
    """Decoder-only transformer; see the module docstring for the padding/position contract."""

    def __init__(self, config: TinyModelConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = nn.Embedding(config.max_len, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        self._init_weights()

    def _init_weights(self) -> None:
        """GPT-2 init: N(0, 0.02), residual output projections scaled by 1/sqrt(2 n_layers)."""
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02
                if name.endswith("attn.proj.weight") or name.endswith("mlp.2.weight"):
                    std /= math.sqrt(2 * self.config.n_layers)
                nn.init.normal_(p, mean=0.0, std=std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, past: KVCache | None = None
    ) -> tuple[torch.Tensor, KVCache]:
        """Return ``(logits [B, L, V], present)``.

        ``attention_mask`` is bool, False at padding, and covers the cached tokens too:
        shape [B, L_past + L] (just [B, L] without ``past``). None means no padding.
        ``present`` is the cache including the L new tokens; pass it back as ``past`` together
        with the mask extended by the next tokens' columns.
        """
        b, length = input_ids.shape
        past_len = 0 if past is None else past[0][0].shape[2]
        if attention_mask is None:
            attention_mask = torch.ones(b, past_len + length, dtype=torch.bool, device=input_ids.device)
        attention_mask = attention_mask.bool()
        if attention_mask.shape != (b, past_len + length):
            raise ValueError(
                f"attention_mask shape {tuple(attention_mask.shape)} != (batch, past + new) = {(b, past_len + length)}"
            )
        pos = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)[:, past_len:]
        if int(pos.max()) >= self.config.max_len:
            raise ValueError(f"sequence has {int(pos.max()) + 1} real tokens > max_len={self.config.max_len}")

        # allowed[b, 1, i, j]: query i (absolute index past_len + i) may attend key j.
        q_idx = torch.arange(past_len, past_len + length, device=input_ids.device)[:, None]
        k_idx = torch.arange(past_len + length, device=input_ids.device)[None, :]
        causal = k_idx <= q_idx
        allowed = (causal[None] & attention_mask[:, None, :]) | (k_idx == q_idx)[None]
        allowed = allowed[:, None]

        x = self.drop(self.tok_emb(input_ids) + self.pos_emb(pos))
        present = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, allowed, None if past is None else past[i])
            present.append(kv)
        logits = F.linear(self.ln_f(x), self.tok_emb.weight)
        return logits, tuple(present)


def token_log_probs_and_entropy(
    logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(target) and the entropy of softmax(logits / temperature), in float32.

    Shared by the sampler and ``sequence_log_probs`` so both compute log-probs the same way.
    """
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    lp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    entropy = -(logp.exp() * logp).sum(-1)
    return lp, entropy


def sequence_log_probs(
    model: TinyTransformer,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_start: int,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The TRAINING forward pass: ``(log_probs [B, T], entropy [B, T])`` with T = L - response_start.

    ``log_probs[:, t]`` is log π(input_ids[:, response_start + t] | everything before it), from
    the logits at position ``response_start + t - 1``; ``entropy[:, t]`` is the entropy of that
    predictive distribution. Float32 log_softmax. Values at response padding are finite but
    meaningless: mask them with the rollout's ``response_mask``. ``temperature`` must equal the
    sampler's when the rollout was sampled at temperature != 1 (the behaviour policy is then the
    tempered distribution, as in verl's actor).
    """
    if not 1 <= response_start < input_ids.shape[1]:
        raise ValueError(f"response_start={response_start} must be in [1, {input_ids.shape[1] - 1}]")
    logits, _ = model(input_ids, attention_mask)
    return token_log_probs_and_entropy(logits[:, response_start - 1 : -1], input_ids[:, response_start:], temperature)
