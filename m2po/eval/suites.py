"""Benchmark suites and the paper's evaluation protocol, read from ``eval/suites.yaml``.

Why a spec file: which benchmarks exist, their k and which ones enter the paper's "Avg" are
facts of the paper (PAPER.md §6), not code; the YAML says them once with the citation, and
every consumer (``m2po eval``, the metrics, the report) reads them from here. The same values
are built in (``BUILTIN``) so an installed package without the repository still evaluates with the
paper's protocol; a test keeps the two equal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the repository's spec file (absent in a wheel install: BUILTIN is used then)
SUITES_YAML = Path(__file__).resolve().parents[2] / "eval" / "suites.yaml"

BUILTIN: dict[str, Any] = {
    "protocol": {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 2560, "seed": 0, "default_k": 4},
    "benchmarks": {
        "aime2024": {"k": 16, "in_average": True, "label": "AIME24", "aliases": ["aime24", "aime_2024"]},
        "aime2025": {"k": 16, "in_average": True, "label": "AIME25", "aliases": ["aime25", "aime_2025"]},
        "amc23": {"k": 4, "in_average": True, "label": "AMC23", "aliases": ["amc2023"]},
        "amc24": {"k": 4, "in_average": True, "label": "AMC24", "aliases": ["amc2024"]},
        "math500": {"k": 4, "in_average": True, "label": "MATH500", "aliases": ["math_500", "math-500"]},
        "minerva_math": {"k": 4, "in_average": True, "label": "Minerva", "aliases": ["minerva", "minervamath"]},
        "gaokao2023en": {
            "k": 4,
            "in_average": True,
            "label": "Gaokao",
            "aliases": ["gaokao", "gaokao2023", "gaokao_2023_en"],
        },
        "olympiadbench": {
            "k": 4,
            "in_average": True,
            "label": "Olympiad",
            "aliases": ["olympiad_bench", "olympiad"],
        },
        "gsm8k": {"k": 4, "in_average": False, "label": "GSM8K", "aliases": []},
        "tiny_arith": {"k": 4, "in_average": False, "label": "Arithmetic (held-out)", "aliases": []},
    },
    "suites": {
        "paper": [
            "aime2024",
            "aime2025",
            "amc23",
            "amc24",
            "math500",
            "minerva_math",
            "gaokao2023en",
            "olympiadbench",
        ],
        "all": [
            "aime2024",
            "aime2025",
            "amc23",
            "amc24",
            "math500",
            "minerva_math",
            "gaokao2023en",
            "olympiadbench",
            "gsm8k",
        ],
        "smoke": ["gsm8k", "math500"],
    },
}


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    k: int
    in_average: bool
    label: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Protocol:
    """Sampling defaults of the paper's evaluation (each one overridable on the command line)."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 2560
    seed: int = 0
    default_k: int = 4


@dataclass(frozen=True)
class SuiteSpec:
    protocol: Protocol
    benchmarks: dict[str, BenchmarkSpec]
    suites: dict[str, list[str]] = field(default_factory=dict)

    @property
    def paper_average(self) -> list[str]:
        """The benchmarks of the paper's unweighted "Avg" (gsm8k is not one of them)."""
        return [n for n, b in self.benchmarks.items() if b.in_average]

    def resolve(self, name: str) -> BenchmarkSpec:
        """The spec of ``name`` or of the benchmark it is an alias of; unknown names get default k."""
        if name in self.benchmarks:
            return self.benchmarks[name]
        for b in self.benchmarks.values():
            if name in b.aliases:
                return b
        return BenchmarkSpec(name=name, k=self.protocol.default_k, in_average=False, label=name)

    def expand(self, names: list[str]) -> list[str]:
        """Benchmark names with suite names (``paper``, ``all``, ...) expanded, order kept, no repeats."""
        out: list[str] = []
        for n in names:
            for m in self.suites.get(n, [n]):
                if m not in out:
                    out.append(m)
        return out


def _build(raw: dict[str, Any]) -> SuiteSpec:
    proto = Protocol(**raw.get("protocol", {}))
    benches = {
        name: BenchmarkSpec(
            name=name,
            k=int(b.get("k", proto.default_k)),
            in_average=bool(b.get("in_average", False)),
            label=str(b.get("label", name)),
            aliases=tuple(b.get("aliases", []) or []),
        )
        for name, b in raw.get("benchmarks", {}).items()
    }
    suites = {k: list(v) for k, v in raw.get("suites", {}).items()}
    for s, members in suites.items():
        unknown = [m for m in members if m not in benches]
        if unknown:
            raise ValueError(f"suite {s!r} names unknown benchmarks {unknown}; define them under `benchmarks:`")
    return SuiteSpec(proto, benches, suites)


def load_suites(path: str | os.PathLike[str] | None = None) -> SuiteSpec:
    """The suite spec from ``path``, else the repository's ``eval/suites.yaml``, else BUILTIN."""
    p = Path(path) if path else SUITES_YAML
    if p.exists():
        import yaml

        with open(p, encoding="utf-8") as f:
            return _build(yaml.safe_load(f) or {})
    if path:
        raise FileNotFoundError(f"suite spec {p} not found")
    return _build(BUILTIN)
