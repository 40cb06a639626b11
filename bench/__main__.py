"""Run every benchmark: ``python -m bench [name ...]`` (names: losses, sampler, ...)."""

from __future__ import annotations

import importlib
import sys

BENCHES = ["losses", "sampler", "engine", "hf_sampler", "grading", "eval_stage", "queue", "worker"]


def main() -> None:
    names = sys.argv[1:] or BENCHES
    for name in names:
        module = importlib.import_module(f"bench.bench_{name}")
        module.main()


if __name__ == "__main__":
    main()
