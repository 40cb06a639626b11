"""Draw figures of the figure list in one process: the one way they are drawn.

    python figures/draw.py ID [ID ...] --runs results/<profile>/runs --out results/<profile>/figures
        [--models 0.1M 1M] [--stale 32] [--seeds 0 1 2] [--smooth 5]

IDs are entries of :mod:`m2po.analysis.figure_list` (``fig1`` ... ``table1``), each drawn by ``main(argv)`` of
``figures/<id>.py``. The Snakefile's figures job and ``m2po report`` draw them all in one call.
After each figure one line ``draw: <id> exit <code>`` says how it went (``EXIT_CODES`` of the figure list; a
figure that raises is reported with its traceback and code 4, and the next one is drawn); drawing stops at the
first output that cannot be written (code 3). The program exits with the largest code.
"""

from __future__ import annotations

import importlib
import sys
import traceback

from m2po.analysis.figure_list import EXIT_FAILED, EXIT_NOT_WRITTEN, draw_line, figure


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ids = []
    for arg in argv:
        if arg.startswith("-"):
            break
        ids.append(figure(arg).id)  # KeyError naming the known ids
    if not ids:
        print(
            "usage: python figures/draw.py ID [ID ...] --runs RUNS --out OUT [options of each figure]", file=sys.stderr
        )
        return 2
    options, codes = argv[len(ids) :], []
    for fig_id in ids:
        try:
            code = int(importlib.import_module(fig_id).main(options) or 0)
        except Exception:  # one broken figure must not stop the others
            traceback.print_exc()
            code = EXIT_FAILED
        codes.append(code)
        print(draw_line(fig_id, code), flush=True)
        if code == EXIT_NOT_WRITTEN:
            break
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
