"""The output schema (docs/architecture.md, contract 1) and atomic, deterministic writers.

Why an explicit Arrow schema: inferring it from Python rows would change column types with the
data (an all-empty list column, an int id), so files of different datasets would not concatenate
and verl's ``datasets.load_dataset("parquet")`` would see different features. Every dataset,
the tiny task included, uses :data:`SCHEMA`.

Every file is written through :mod:`m2po.fileio` (tmp + fsync + ``os.replace``): a reader (a
training run, the pipeline) never sees a half-written file, and a crashed build leaves the previous
output intact. Files carry no timestamps, so the same inputs give the same bytes (same pyarrow version).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..fileio import atomic_write_bytes, atomic_write_text

__all__ = ["EXTRA_INFO_KEYS", "SCHEMA", "write_json", "write_parquet"]

_EXTRA_INFO = pa.struct(
    [
        ("index", pa.int64()),  # position in this split (after shuffling, as the paper's map(with_indices))
        ("split", pa.string()),
        ("id", pa.string()),  # original id, or "<prefix>-row<NNNNN>" (the source record index)
        ("question", pa.string()),  # raw question, without the prompt template
        ("answer_raw", pa.string()),  # JSON of the raw answer field
        ("answer_alternatives", pa.list_(pa.string())),  # every accepted form, ground truth first
        ("answer_missing", pa.bool_()),  # ground truth empty (kept on purpose, e.g. 2 GaoKao rows)
        ("is_fallback", pa.bool_()),  # trained on the offline fallback, not the real DeepScaleR
        ("source_row", pa.int64()),  # 0-based record index in the source file / hub split
    ]
)
EXTRA_INFO_KEYS: tuple[str, ...] = tuple(f.name for f in _EXTRA_INFO)

SCHEMA = pa.schema(
    [
        ("data_source", pa.string()),
        ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("ability", pa.string()),
        ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
        ("extra_info", _EXTRA_INFO),
    ]
)


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> bytes:
    """Write ``rows`` (already in :data:`SCHEMA` shape) atomically; returns the bytes written."""
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="snappy")
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    return data
