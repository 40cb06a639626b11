"""GRPO (ε-clip) accuracy at every swept staleness, one panel per model."""

from __future__ import annotations

import common


def build(argv: list[str] | None = None) -> int:
    return common.staleness_sweep_figure(__file__, __doc__, argv, "grpo", "GRPO")


def main(argv: list[str] | None = None) -> int:
    return common.main_guard(build, argv)
