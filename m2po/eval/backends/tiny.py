"""The tiny engine's character model as an evaluation backend.

Model sources, in the order they are tried:
- ``tiny:<size>[:<seed>]`` (e.g. ``tiny:0.1M``): a randomly initialised ``TinyTransformer`` of a
  preset size, seeded; for tests and for the floor of an untrained policy;
- a warm-start file (``{model_config, state_dict, ...}``, from ``m2po.engine.sft.warm_start``);
- a bare state dict (``results/.../final_model.pt``): the shape is read off the tensors; the number
  of heads (not visible in any shape) comes from a matching preset, else from ``config.yaml`` next
  to the run directory, else ``n_heads`` (default 4).

The prompt fed to the model is the content of the last user message, encoded with
``CharTokenizer.encode_prompt`` (the tiny task's rows carry the bare question there). Characters
outside the model's vocabulary are an error: silently dropping them would grade a different
question. The task's final answer is read by ``extraction="tiny"`` (:func:`m2po.grader.final_answer`).

Sampling: every row of one ``generate`` call is drawn in one batch (a ~0.1M-parameter model is cheap per
row and expensive per call), from one generator seeded by all the requests' seeds: the same call always
draws the same samples, and a call with other requests draws others (like the ``hf`` backend).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from ...engine.model import MODEL_SIZES, TinyModelConfig, TinyTransformer
from ...engine.sampler import sample
from ...engine.tokenizer import CharTokenizer
from .base import GenParams, GenRequest, fingerprint


def _config_from_state_dict(sd: dict[str, torch.Tensor], path: Path, n_heads: int | None) -> TinyModelConfig:
    vocab, d_model = sd["tok_emb.weight"].shape
    max_len = sd["pos_emb.weight"].shape[0]
    n_layers = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    d_ff = sd["blocks.0.mlp.0.weight"].shape[0]
    shape = (int(vocab), int(d_model), n_layers, int(d_ff), int(max_len))
    if n_heads is None:
        for preset in MODEL_SIZES.values():
            if (preset.vocab_size, preset.d_model, preset.n_layers, preset.d_ff, preset.max_len) == shape:
                n_heads = preset.n_heads
                break
    if n_heads is None:
        n_heads = _heads_from_run_config(path) or 4
    return TinyModelConfig(
        vocab_size=shape[0], d_model=shape[1], n_layers=shape[2], n_heads=n_heads, d_ff=shape[3], max_len=shape[4]
    )


def _heads_from_run_config(path: Path) -> int | None:
    """``n_heads`` from the run directory's resolved ``config.yaml`` (contract 2), if any names it."""
    for d in (path.parent, path.parent.parent):
        cfg = d / "config.yaml"
        if cfg.exists():
            import yaml

            data = yaml.safe_load(cfg.read_text()) or {}
            stack: list[Any] = [data]
            while stack:
                cur = stack.pop()
                if isinstance(cur, dict):
                    if isinstance(cur.get("n_heads"), int):
                        return int(cur["n_heads"])
                    stack.extend(cur.values())
    return None


def load_tiny_model(model: str, n_heads: int | None = None) -> tuple[TinyTransformer, str]:
    """``(model in eval mode, fingerprint)`` for a ``tiny:<size>[:<seed>]`` spec or a checkpoint path."""
    if model.startswith("tiny:"):
        parts = model.split(":")
        size = parts[1] if len(parts) > 1 and parts[1] else "0.1M"
        seed = int(parts[2]) if len(parts) > 2 else 0
        if size not in MODEL_SIZES:
            raise ValueError(f"unknown tiny size {size!r}; choose one of {sorted(MODEL_SIZES)}")
        torch.manual_seed(seed)
        m = TinyTransformer(MODEL_SIZES[size])
        m.eval()
        return m, f"random-{size}-seed{seed}"
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"tiny checkpoint {path} not found (or use tiny:<size>[:<seed>] for a random model)")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(ckpt, dict) and "model_config" in ckpt and "state_dict" in ckpt:
        from ...engine.sft import load_warm_start

        m = load_warm_start(path)
    else:
        sd = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else ckpt  # checkpoints/last.pt keeps it under "model"
        m = TinyTransformer(_config_from_state_dict(sd, path, n_heads))
        m.load_state_dict(sd)
        m.eval()
    return m, fingerprint(path)


class TinyBackend:
    name = "tiny"

    def __init__(self, model: str, n_heads: int | None = None, batch_rows: int = 4096, **_: Any) -> None:
        self.model, self.model_fingerprint = load_tiny_model(model, n_heads)
        self.tokenizer = CharTokenizer()
        if self.model.config.vocab_size != self.tokenizer.vocab_size:
            raise ValueError(
                f"model vocabulary {self.model.config.vocab_size} != CharTokenizer's {self.tokenizer.vocab_size}"
            )
        self.batch_rows = batch_rows

    def _encode(self, messages: list[dict[str, str]]) -> list[int]:
        users = [m["content"] for m in messages if m.get("role") == "user"] or [messages[-1]["content"]]
        return self.tokenizer.encode_prompt(users[-1])

    def generate(self, requests: list[GenRequest], params: GenParams) -> list[list[str]]:
        if params.top_p != 1.0:
            raise ValueError("the tiny engine's sampler has no nucleus sampling: use --top-p 1.0 with --backend tiny")
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a ~0.1M-parameter model: intra-op threads only add sync overhead
        try:
            return self._generate(requests, params)
        finally:
            torch.set_num_threads(threads)

    def _generate(self, requests: list[GenRequest], params: GenParams) -> list[list[str]]:
        prompts = [self._encode(req.messages) for req in requests]
        room = self.model.config.max_len - max(len(p) for p in prompts)
        if room < 1:
            longest = max(len(p) for p in prompts)
            raise ValueError(f"prompt of {longest} tokens leaves no room in max_len={self.model.config.max_len}")
        rows = [i for i, req in enumerate(requests) for _ in range(req.n)]
        gen = torch.Generator().manual_seed(
            int(hashlib.sha256(repr([r.seed for r in requests]).encode()).hexdigest()[:15], 16)
        )
        out: list[list[str]] = [[] for _ in requests]
        for lo in range(0, len(rows), self.batch_rows):
            chunk = rows[lo : lo + self.batch_rows]
            roll = sample(
                self.model,
                [prompts[i] for i in chunk],
                min(params.max_new_tokens, room),
                temperature=params.temperature,
                generator=gen,
                tokenizer=self.tokenizer,
            )
            for i, text in zip(chunk, roll.response_texts, strict=True):
                out[i].append(text)
        return out
