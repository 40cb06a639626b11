"""Where raw records come from: files of the offline folder, or a hub split (online).

Both yield ``(row, record)`` pairs into the same normaliser (:mod:`m2po.data.normalize`), so the
two modes differ only in the manifest's ``source`` entry. A file that cannot be read at all
(missing, not a JSON list) is a :class:`DataError`; one bad line of a JSONL file is a
:class:`~m2po.data.normalize.RowProblem` for that row (skipped and reported, or fatal in strict).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .normalize import RowProblem
from .spec import HubSpec, LocalFile

__all__ = ["DataError", "HubLoader", "file_source_info", "iter_file_records", "load_hub_records", "sha256_file"]

#: ``datasets.load_dataset``-compatible callable (tests pass a stand-in returning ``Dataset.from_list``).
HubLoader = Callable[..., Any]

#: Builders of ``datasets`` that read ``data_files`` rather than a hub repository.
_BUILDERS = {"json", "csv", "parquet", "text"}


class DataError(RuntimeError):
    """A build error: a missing or unreadable source, or a problem that ``--strict`` makes fatal."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _utf8_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(
            f"not UTF-8 text (a binary file?) at line {line}, {path}, replace it with the source's JSON/JSONL file"
        ) from None


def iter_file_records(path: Path) -> Iterator[tuple[int, Any]]:
    """``(row, record)`` of a ``.json`` list, a ``.jsonl`` file (blank lines ignored; a line that
    is not JSON yields a :class:`RowProblem` as its record) or a ``.parquet`` file."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        row = 0
        for lineno, line in enumerate(_utf8_text(path).splitlines(), start=1):
            if not line.strip():
                continue
            try:
                yield row, json.loads(line)
            except json.JSONDecodeError as e:
                yield row, RowProblem("invalid_json", f"line {lineno}: {e.msg}")
            row += 1
    elif suffix == ".json":
        try:
            data = json.loads(_utf8_text(path))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON ({e})") from e
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
        yield from enumerate(data)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        yield from enumerate(pq.read_table(path).to_pylist())
    else:
        raise DataError(f"{path}: unsupported file type {suffix!r} (use .json, .jsonl or .parquet)")


def file_source_info(root: Path, spec: LocalFile, n_records: int) -> dict[str, Any]:
    """Manifest entry of one local file: where, sha256 (and whether it matches the spec's), size."""
    path = root / spec.path
    digest = sha256_file(path)
    return {
        "kind": "file",
        "path": str(path.resolve()),
        "relpath": spec.path,
        "sha256": digest,
        "sha256_expected": spec.sha256,
        "sha256_ok": None if spec.sha256 is None else digest == spec.sha256,
        "bytes": path.stat().st_size,
        "records": n_records,
        "expected_rows": spec.expected_rows,
    }


def _resolve_revision(spec: HubSpec) -> str | None:
    """The commit sha the hub serves for ``spec`` (None when it cannot be asked)."""
    if spec.path in _BUILDERS:
        return None
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(spec.path, revision=spec.revision).sha
    except Exception:  # offline, gated, old client: the manifest says "unknown"
        return None


def load_hub_records(spec: HubSpec, loader: HubLoader | None = None) -> tuple[list[tuple[int, Any]], dict[str, Any]]:
    """Records of one hub split and its manifest entry. ``loader`` defaults to
    ``datasets.load_dataset``; with a stand-in, the revision is not looked up."""
    real = loader is None
    if loader is None:
        import datasets

        loader = datasets.load_dataset
    kwargs: dict[str, Any] = {"split": spec.split}
    if spec.revision is not None:
        kwargs["revision"] = spec.revision
    if spec.data_files is not None:
        kwargs["data_files"] = spec.data_files
    try:
        ds = loader(spec.path, spec.name, **kwargs) if spec.name else loader(spec.path, **kwargs)
    except Exception as e:  # any hub failure: say what to do instead
        raise DataError(
            f"loading {spec.path!r} split {spec.split!r} from the hub failed ({type(e).__name__}: {e}); "
            "without internet use --offline DIR (or M2PO_DATA_DIR) with the offline data folder's layout (docs/data.md)"
        ) from e
    records = list(enumerate(ds))
    info = {
        "kind": "hub",
        "hub_id": spec.path,
        "config": spec.name,
        "split": spec.split,
        "data_files": spec.data_files,
        "revision_requested": spec.revision,
        "revision_resolved": _resolve_revision(spec) if real else None,
        "records": len(records),
    }
    return records, info
