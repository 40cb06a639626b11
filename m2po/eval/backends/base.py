"""The backend interface: a batch of chat prompts in, ``n`` sampled responses per prompt out.

Why so small: the harness owns batching, caching, seeding and grading; a backend only has to turn
``GenRequest``s into text. Anything engine-specific (chat templates, padding, KV caches) stays
inside the backend, so adding one never touches the resumable runner.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class GenParams:
    """Sampling settings; all of them are part of the generation cache key."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 2560

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GenRequest:
    """``n`` samples for one chat prompt, drawn with ``seed`` (the runner derives it per problem)."""

    messages: list[dict[str, str]]
    n: int
    seed: int


class Backend(Protocol):
    #: a short identifier of the loaded weights, part of the cache key (see ``fingerprint``)
    model_fingerprint: str
    name: str

    def generate(self, requests: list[GenRequest], params: GenParams) -> list[list[str]]:
        """``out[i]`` holds ``requests[i].n`` responses (text only, prompt excluded)."""
        ...


def fingerprint(path: str | os.PathLike[str], full_hash_limit: int = 64 << 20) -> str:
    """A 16-hex id of a model file or directory, so a retrained checkpoint never reuses a stale cache.

    Files up to ``full_hash_limit`` bytes are hashed whole; larger ones by size plus their first and
    last MiB (hashing gigabytes of weights on every run would cost more than the evaluation).
    """
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    h = hashlib.sha256()
    for f in files:
        if p.is_dir() and any(part.startswith(".") for part in f.relative_to(p).parts):
            continue
        size = f.stat().st_size
        h.update(f"{f.name}:{size}".encode())
        with open(f, "rb") as fh:
            if size <= full_hash_limit:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            else:
                h.update(fh.read(1 << 20))
                fh.seek(-(1 << 20), os.SEEK_END)
                h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]
