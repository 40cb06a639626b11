"""Benchmark suites and the paper's evaluation protocol, read from ``eval/suites.yaml``.

Why a spec file: which benchmarks exist, their k and which ones enter the paper's "Avg" are
facts of the paper (paper §6 and App. B), not code; the YAML says them once with the citation, and
every consumer (``m2po eval``, the metrics, the report) reads them from here. The file is package
data (:mod:`m2po.specs`), so an installed package without the repository evaluates with it too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from ..specs import spec_path

#: the packaged spec file (``eval/suites.yaml`` of the repository links to it)
SUITES_YAML = spec_path("suites.yaml")


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
    """The suite spec from ``path``, else the packaged ``suites.yaml`` (read once per process: it is package
    data, and the report and Table 1 ask for it per benchmark label)."""
    return _read_suites(Path(path)) if path else _packaged_suites()


@cache
def _packaged_suites() -> SuiteSpec:
    return _read_suites(SUITES_YAML)


def _read_suites(p: Path) -> SuiteSpec:
    if not p.exists():
        raise FileNotFoundError(f"suite spec {p} not found")
    import yaml

    with open(p, encoding="utf-8") as f:
        return _build(yaml.safe_load(f) or {})
