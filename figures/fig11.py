"""M2PO accuracy at every swept staleness (τ = 0.04), one panel per model."""

from __future__ import annotations

import common


def build(argv: list[str] | None = None) -> int:
    return common.staleness_sweep_figure(__file__, __doc__, argv, "m2po", "M2PO")


def main(argv: list[str] | None = None) -> int:
    return common.main_guard(build, argv)
