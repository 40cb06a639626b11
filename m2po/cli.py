"""The ``m2po`` command: one subcommand per pipeline stage, so every stage also runs by hand.

Only the module of the subcommand that runs is imported (:func:`build_parser`), so ``m2po report`` does
not load torch for the trainer. An error a user can fix is one line on stderr, ``m2po <cmd>: error:
<what>, <where>, <fix>``, and exit status 2 (:mod:`m2po.errors`; ``M2PO_DEBUG=1`` shows the traceback
instead); Ctrl-C exits 130 and SIGTERM 143.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from . import __version__, interrupts
from .config import ConfigError
from .errors import UserError, from_os_error

#: subcommand -> module exposing ``add_arguments(parser)`` and ``run(args) -> int``
SUBCOMMANDS = {
    "train": ("m2po.engine.cli", "Train one run with the embedded engine (tiny model or a HF causal LM)."),
    "train-worker": ("m2po.engine.worker", "Train many runs in one process: `m2po train-worker --jobs JSON|@FILE`."),
    "data": ("m2po.data.cli", "Build datasets: `m2po data build [--datasets ...] [--offline DIR] --out DIR`."),
    "eval": ("m2po.eval.cli_eval", "Generate k samples per problem, grade them, and report avg@k / pass@k."),
    "eval-run": ("m2po.eval.cli_stage", "Evaluate a training run's checkpoints (the pipeline's eval stage)."),
    "grade": ("m2po.eval.cli_grade", "Grade a JSONL file of responses with math-verify in isolated workers."),
    "report": ("m2po.analysis.cli_report", "Table 1 and the paper's claims judged on a results tree."),
    "conformance": ("m2po.conformance.cli", "Export test vectors for the losses, or check a loss against them."),
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser of ``m2po argv``: every subcommand is listed, but only the options of the one that
    ``argv`` names are declared, importing its module alone (all of them when ``argv`` is None)."""
    parser = argparse.ArgumentParser(prog="m2po", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"m2po {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    # the top-level options take no value, so the first word that is not an option is the subcommand
    named = None if argv is None else next((a for a in argv if not a.startswith("-")), "")
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if named in (None, name):
            importlib.import_module(module).add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def config_error_line(command: str, e: ConfigError) -> str:
    """``m2po train: error: must be > 0, got -1, optim.lr (from --set optim.lr=-1), <hint>``."""
    where = e.key + (f" (from {e.source})" if e.source else "") if e.key else (e.source or "")
    return UserError(e.message, where, e.hint or "").line(command)


def _error_line(command: str, e: Exception) -> str:
    if isinstance(e, UserError):
        return e.line(command)
    if isinstance(e, ConfigError):
        return config_error_line(command, e)
    assert isinstance(e, OSError)
    return from_os_error(e).line(command)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    command = args.command
    previous = interrupts.install(signal.SIGTERM)  # SIGTERM unwinds like Ctrl-C: cleanup runs
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except (UserError, ConfigError, OSError) as e:
        if os.environ.get("M2PO_DEBUG"):
            raise  # the full traceback instead of the one line
        print(_error_line(command, e), file=sys.stderr)
    except KeyboardInterrupt as e:
        signum = e.args[0] if e.args and e.args[0] == signal.SIGTERM else signal.SIGINT
        print(f"m2po {command}: interrupted", file=sys.stderr)
        return 128 + signum
    finally:
        interrupts.restore(previous)
    return 2


if __name__ == "__main__":
    sys.exit(main())
