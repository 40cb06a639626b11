"""Generation backends behind one interface (``base.Backend``); each imports its engine lazily.

``hf`` (transformers, CPU or GPU), ``vllm`` (GPU only; imported only when chosen) and ``tiny``
(the embedded engine's character model).
"""

from __future__ import annotations

from typing import Any

from .base import Backend, GenParams, GenRequest

BACKENDS = ("hf", "vllm", "tiny")


def make_backend(name: str, model: str, **kwargs: Any) -> Backend:
    """Build backend ``name`` for ``model`` (a path, or ``tiny:<size>`` for a random tiny model)."""
    if name == "hf":
        from .hf import HFBackend

        return HFBackend(model, **kwargs)
    if name == "vllm":
        from .vllm import VLLMBackend

        return VLLMBackend(model, **kwargs)
    if name == "tiny":
        from .tiny import TinyBackend

        return TinyBackend(model, **kwargs)
    raise ValueError(f"unknown backend {name!r}; choose one of {BACKENDS}")


__all__ = ["BACKENDS", "Backend", "GenParams", "GenRequest", "make_backend"]
