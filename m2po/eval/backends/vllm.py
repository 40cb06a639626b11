"""vLLM backend (GPU): ``LLM.generate`` with ``SamplingParams(n=k, temperature, top_p, max_tokens, seed)``.

Imported only when ``--backend vllm`` is chosen, because vLLM pins its own torch and is never part
of the CPU install (pyproject's ``gpu`` extra). It is written against vLLM's documented offline API
and has NOT been run in this CPU-only environment; the CPU backends share the interface and the
runner, which is what the tests exercise.

Prompts are rendered with the model's own chat template (``LLM.get_tokenizer()``) and passed as
text, exactly like the HF backend, so both backends see the same prompt string. Each request's
``seed`` goes into its own ``SamplingParams``: vLLM then draws that request's ``n`` samples from a
per-request generator, independent of batch composition (unlike the HF backend).
"""

from __future__ import annotations

from typing import Any

from .base import GenParams, GenRequest, fingerprint


class VLLMBackend:
    name = "vllm"

    def __init__(
        self,
        model: str,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
        dtype: str = "bfloat16",
        **_: Any,
    ) -> None:
        try:
            from vllm import LLM
        except ImportError as e:  # pragma: no cover - GPU-only dependency
            raise RuntimeError(
                "--backend vllm needs vLLM (GPU install: `pip install -e '.[gpu]'`); on CPU use --backend hf"
            ) from e
        kwargs: dict[str, Any] = {
            "model": model,
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "dtype": dtype,
        }
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        try:
            self.model_fingerprint = fingerprint(model)
        except OSError:  # a hub id on a machine with network access
            self.model_fingerprint = model.replace("/", "_")

    def render(self, messages: list[dict[str, str]]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return "\n\n".join(m["content"] for m in messages) + "\n\n"

    def generate(self, requests: list[GenRequest], params: GenParams) -> list[list[str]]:  # pragma: no cover
        from vllm import SamplingParams

        prompts = [self.render(r.messages) for r in requests]
        sps = [SamplingParams(**kw) for kw in sampling_kwargs(requests, params)]
        return texts_of(self.llm.generate(prompts, sps, use_tqdm=False), requests)


def sampling_kwargs(requests: list[GenRequest], params: GenParams) -> list[dict[str, Any]]:
    """``SamplingParams`` keyword arguments of each request: its ``n`` samples and its own seed (so its samples
    do not depend on the batch), the protocol's temperature, top-p and length."""
    return [
        {
            "n": r.n,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
            "seed": r.seed,
        }
        for r in requests
    ]


def texts_of(outputs: list[Any], requests: list[GenRequest]) -> list[list[str]]:
    """The completions' texts of ``LLM.generate``'s outputs (one ``RequestOutput`` per prompt, in order, each
    with ``.outputs``, its ``CompletionOutput`` items with ``.text``); an output with a count other than asked is
    an error, never silently a shorter sample list."""
    if len(outputs) != len(requests):
        raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(requests)} prompts")
    texts = []
    for i, (out, req) in enumerate(zip(outputs, requests, strict=True)):
        got = [c.text for c in out.outputs]
        if len(got) != req.n:
            raise RuntimeError(f"vLLM returned {len(got)} completions for prompt {i}, asked {req.n}")
        texts.append(got)
    return texts
