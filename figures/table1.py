"""Table 1: peak and final accuracy (%) per model and method, ours beside the paper's (table1.csv, table1.md)."""

from __future__ import annotations

import sys

import common

from m2po.analysis.table1 import build_table1, write_table1


def build(argv: list[str] | None = None) -> int:
    ctx = common.load(common.parse_args(__doc__, argv))
    t = build_table1(ctx.tables, ctx.stale, ctx.models, ctx.args.seeds)
    csv_path, md_path = write_table1(t, ctx.args.out, ctx.stale)
    ours = t[(t["source"] == "ours") & (t["metric"] == "peak")]
    print(f"wrote {csv_path} and {md_path} ({int((ours['n'] > 0).sum())} of {len(ours)} cells with runs)")
    return 0 if (ours["n"] > 0).any() else 1


def main(argv: list[str] | None = None) -> int:
    return common.main_guard(build, argv)


if __name__ == "__main__":
    sys.exit(main())
