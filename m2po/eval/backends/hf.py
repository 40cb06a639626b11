"""Hugging Face transformers backend: batched, chat-templated, left-padded, seeded sampling.

Why left padding: a decoder-only model continues from the last column, so every row's prompt must
end there; with right padding the pads would sit between prompt and answer. Why our own eos set:
chat models end a turn with an end-of-turn token that the tokenizer's ``eos_token`` does not always
name (the SmolLM2 GGUF declares ``<|im_start|>``); stopping only at ``eos_token`` would run every
sample to ``max_new_tokens``.

Loads from local files only (no hub access): a model directory, or a ``.gguf`` file / a directory
holding one (transformers dequantises it; needs the ``gguf`` package). Converting a GGUF tokenizer
takes ~30 s on two cores, so with ``tokenizer_cache`` set the converted tokenizer is saved there once.

CPU threads: ``threads`` (default 1) intra-op threads during generation. Measured on the 2-core
machine under load from other jobs: SmolLM2-135M took 72 s for 32 tokens with torch's default 2
threads and 5.4 s with 1 (threads spin-wait for a core they do not get). Raise it on a dedicated machine.

Seeding: ``torch.manual_seed`` is set before every ``generate`` call from the first request's seed,
so a rerun with the same batch composition draws the same samples. Samples are i.i.d. either way;
a resumed run whose batches differ draws different (equally valid) ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...engine.hf_model import split_model_path, stop_token_ids
from .base import GenParams, GenRequest, fingerprint


def resolve_model_path(model: str, gguf_file: str | None = None) -> tuple[Path, str | None]:
    """``(directory, gguf file name or None)`` for a model dir, a ``.gguf`` file or a dir with one GGUF
    (:func:`m2po.engine.hf_model.split_model_path`); anything else is an error here: no hub downloads."""
    p = Path(model)
    if not (p.is_dir() or (p.is_file() and p.suffix == ".gguf")):
        raise FileNotFoundError(f"model {model!r} is neither a directory nor a .gguf file (no hub downloads here)")
    directory, gguf = split_model_path(model, gguf_file)
    return Path(directory), gguf


class HFBackend:
    name = "hf"

    def __init__(
        self,
        model: str,
        batch_size: int = 8,
        device: str = "cpu",
        dtype: str = "float32",
        gguf_file: str | None = None,
        tokenizer_cache: str | Path | None = None,
        threads: int = 1,
        **_: Any,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        directory, gguf = resolve_model_path(model, gguf_file)
        self.model_fingerprint = fingerprint(directory / gguf if gguf else directory)
        self.batch_size = max(1, int(batch_size))
        self.device = device
        self.threads = int(threads)
        self.tokenizer = self._load_tokenizer(AutoTokenizer, directory, gguf, tokenizer_cache)
        kwargs: dict[str, Any] = {"local_files_only": True, "dtype": getattr(torch, dtype)}
        if gguf:
            kwargs["gguf_file"] = gguf
        self.model = AutoModelForCausalLM.from_pretrained(str(directory), **kwargs).to(device)
        self.model.eval()
        tok = self.tokenizer
        tok.padding_side = "left"
        if tok.pad_token_id is None:
            tok.pad_token = tok.unk_token or tok.eos_token
        self.eos_ids = self._eos_ids()

    def _load_tokenizer(self, auto: Any, directory: Path, gguf: str | None, cache: str | Path | None) -> Any:
        if not gguf:
            return auto.from_pretrained(str(directory), local_files_only=True)
        if cache is not None:
            cached = Path(cache) / f"tokenizer-{self.model_fingerprint}"
            if (cached / "tokenizer_config.json").exists():
                return auto.from_pretrained(str(cached), local_files_only=True)
        tok = auto.from_pretrained(str(directory), gguf_file=gguf, local_files_only=True)
        if cache is not None:
            tok.save_pretrained(str(cached))
        return tok

    def _eos_ids(self) -> list[int]:
        gen_eos = getattr(self.model.generation_config, "eos_token_id", None)
        return stop_token_ids(self.tokenizer, gen_eos, self.tokenizer.eos_token_id)

    def render(self, messages: list[dict[str, str]]) -> str:
        """The prompt text: the tokenizer's chat template with the assistant turn opened."""
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return "\n\n".join(m["content"] for m in messages) + "\n\n"

    def generate(self, requests: list[GenRequest], params: GenParams) -> list[list[str]]:
        import torch

        if self.device != "cpu" or self.threads <= 0:
            return self._generate(requests, params)
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            return self._generate(requests, params)
        finally:
            torch.set_num_threads(before)

    def _generate(self, requests: list[GenRequest], params: GenParams) -> list[list[str]]:
        import torch

        rows = [(i, self.render(r.messages)) for i, r in enumerate(requests) for _ in range(r.n)]
        out: list[list[str]] = [[] for _ in requests]
        for lo in range(0, len(rows), self.batch_size):
            chunk = rows[lo : lo + self.batch_size]
            enc = self.tokenizer([t for _, t in chunk], return_tensors="pt", padding=True, add_special_tokens=False).to(
                self.device
            )
            torch.manual_seed(requests[chunk[0][0]].seed + lo)
            sampling = params.temperature > 0
            gen_kwargs: dict[str, Any] = {
                "max_new_tokens": params.max_new_tokens,
                "do_sample": sampling,
                "pad_token_id": self.tokenizer.pad_token_id,
                "eos_token_id": self.eos_ids,
            }
            if sampling:
                gen_kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
            with torch.inference_mode():
                seqs = self.model.generate(**enc, **gen_kwargs)
            new = seqs[:, enc["input_ids"].shape[1] :]
            texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
            for (i, _), text in zip(chunk, texts):
                out[i].append(text)
        return out
