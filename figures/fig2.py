"""Fig. 2: GRPO (ε-clip) accuracy at every swept staleness, one panel per model."""

from __future__ import annotations

import sys

import common


def build(argv: list[str] | None = None) -> int:
    return common.staleness_sweep_figure(argv, __doc__, "grpo", "GRPO", "fig2")


def main(argv: list[str] | None = None) -> int:
    return common.main_guard(build, argv)


if __name__ == "__main__":
    sys.exit(main())
