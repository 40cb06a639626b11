"""Every module of the package stays readable in one sitting: at most 400 lines (split by concept
when one grows past it, as ``engine/bookkeeping.py`` was split out of ``engine/loop.py``)."""

from __future__ import annotations

from pathlib import Path

import m2po

MAX_LINES = 400


def test_no_module_over_400_lines() -> None:
    root = Path(m2po.__file__).parent
    sizes = {p.relative_to(root.parent).as_posix(): len(p.read_text().splitlines()) for p in root.rglob("*.py")}
    assert len(sizes) > 50, "the walk must see the package's modules"
    too_long = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"
