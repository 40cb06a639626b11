"""The paper's own numbers, read from ``figures/paper_values.yaml`` (nothing here is computed)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from m2po.specs import spec_path

PAPER_VALUES = spec_path("paper_values.yaml")  # figures/paper_values.yaml of the repository links to it


@cache
def _load(path: str) -> dict[str, Any]:
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict) or "table1" not in data:
        raise ValueError(f"{path}: not a paper-values file (no `table1` key)")
    return data


def paper_values(path: str | Path | None = None) -> dict[str, Any]:
    """The parsed YAML (cached); ``path`` defaults to ``figures/paper_values.yaml`` of the source tree."""
    return _load(str(Path(path) if path else PAPER_VALUES))


def paper_table1(path: str | Path | None = None) -> pd.DataFrame:
    """Table 1 as a wide frame: ``model, method`` (our loss name), ``s``, the eight benchmarks and ``Avg`` (%)."""
    t = paper_values(path)["table1"]
    df = pd.DataFrame(t["rows"], columns=t["columns"])
    names = paper_values(path).get("method_names", {})
    df["method"] = df["method"].map(lambda m: names.get(m, str(m).lower()))
    return df


def canonical_model(name: str, path: str | Path | None = None) -> str:
    """The hub spelling of a Table 1 model name (``Qwen3-Base-1.7B`` -> ``Qwen3-1.7B-Base``)."""
    return paper_values(path).get("model_aliases", {}).get(name, name)


def paper_model_rows(model: str, path: str | Path | None = None) -> pd.DataFrame:
    """Table 1 rows of ``model`` (either spelling); empty for a model the paper did not train."""
    df = paper_table1(path)
    return df[df["model"].map(lambda m: canonical_model(m, path)) == canonical_model(model, path)]
