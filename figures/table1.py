"""Per model and method, the evaluation stage's benchmarks and Avg at the best checkpoint beside the paper's
row (table1_benchmarks.csv), and peak and final accuracy (table1.csv); both in table1.md."""

from __future__ import annotations

import common

from m2po.analysis.benchmarks import stage_table1, write_benchmark_table
from m2po.analysis.table1 import LABELS, build_table1, table1_cells, write_table1


def build(argv: list[str] | None = None) -> int:
    ctx = common.load(common.parse_args(__file__, __doc__, argv))
    t = build_table1(ctx.tables, ctx.stale, ctx.models, ctx.args.seeds)
    bench, stage = stage_table1(ctx.tables, table1_cells(ctx.stale), LABELS, models=ctx.models, seeds=ctx.args.seeds)
    if stage:
        write_benchmark_table(bench, ctx.args.out)
    csv_path, md_path = write_table1(t, ctx.args.out, ctx.stale, stage)
    ours = t[(t["source"] == "ours") & (t["metric"] == "peak")]
    print(f"wrote {csv_path} and {md_path} ({int((ours['n'] > 0).sum())} of {len(ours)} cells with runs)")
    return 0 if (ours["n"] > 0).any() else 1


def main(argv: list[str] | None = None) -> int:
    return common.main_guard(build, argv)
