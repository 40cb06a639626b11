"""The project's spec files, shipped inside the package so an installed ``m2po`` reads them without the
repository: ``suites.yaml`` (benchmarks, suites and the paper's evaluation protocol), ``sources.yaml``
(where each dataset comes from and how it is normalised) and ``paper_values.yaml`` (the paper's own
numbers). The repository shows each one where a reader looks for it (``eval/suites.yaml``,
``data/sources.yaml``, ``figures/paper_values.yaml`` are links to these files); code finds them with
:func:`spec_path` only.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["SPECS", "spec_path"]

SPECS = ("paper_values.yaml", "sources.yaml", "suites.yaml")


def spec_path(name: str) -> Path:
    """The installed file of spec ``name`` (one of :data:`SPECS`)."""
    if name not in SPECS:
        raise ValueError(f"no spec file {name!r}; the specs are {', '.join(SPECS)}")
    return Path(str(resources.files(__name__) / name))
