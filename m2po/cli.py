"""The ``m2po`` command: one subcommand per pipeline stage, so every stage also runs by hand.

Subcommands register lazily (heavy imports happen only for the one that runs).
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: subcommand -> module exposing ``add_arguments(parser)`` and ``run(args) -> int``
SUBCOMMANDS = {
    "train": ("m2po.engine.cli", "Train one run with the embedded engine (tiny model or a HF causal LM)."),
    "train-worker": ("m2po.engine.worker", "Train many runs in one process: `m2po train-worker --jobs JSON|@FILE`."),
    "data": ("m2po.data.cli", "Build datasets: `m2po data build [--datasets ...] [--offline DIR] --out DIR`."),
    "eval": ("m2po.eval.cli_eval", "Generate k samples per problem, grade them, and report avg@k / pass@k."),
    "grade": ("m2po.eval.cli_grade", "Grade a JSONL file of responses with math-verify in isolated workers."),
    "report": ("m2po.analysis.cli_report", "Table 1 and the paper's claims judged on a results tree."),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="m2po", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
