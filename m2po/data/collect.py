"""Collect one dataset: read its source (offline files, hub split, or the generator), normalise
every row, and account for every row that is not kept.

Nothing is lost silently: each record ends up either as a kept row or as an :class:`Issue`
naming its file and 0-based row. Known quirks listed in the spec (``expected_skips``) are still
skipped and reported, but are marked ``expected`` so that ``--strict`` stops only on surprises.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..config import to_dict
from ..engine.task import generate_problems
from .normalize import NormalisedRow, RowProblem, normalise_record
from .readers import DataError, HubLoader, file_source_info, iter_file_records, load_hub_records
from .spec import DatasetSpec, FieldMap, LocalFile

__all__ = ["Collected", "Issue", "collect_dataset"]

log = logging.getLogger("m2po.data")


@dataclass
class Issue:
    """A row that was not kept (or a file-level warning when ``row`` is None)."""

    file: str
    row: int | None
    reason: str
    detail: str
    expected: bool = False

    def where(self) -> str:
        return self.file if self.row is None else f"{self.file} row {self.row}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Collected:
    """Everything known about one dataset before it is written."""

    name: str
    spec: DatasetSpec
    mode: str  # offline | online | generated
    source: dict[str, Any]
    rows: dict[str, list[NormalisedRow]]  # split -> kept rows, in source order
    expected: dict[str, int | None]  # split -> expected kept rows
    n_read: int = 0
    issues: list[Issue] = field(default_factory=list)  # skipped rows
    warnings: list[Issue] = field(default_factory=list)  # file-level (sha256, row counts, counts)
    is_fallback: bool = False
    fallback_reason: str | None = None
    answer_rule: str = "plain"
    fields: dict[str, Any] = field(default_factory=dict)

    def count_warnings(self) -> list[str]:
        out = []
        for split, rows in self.rows.items():
            exp = self.expected.get(split)
            if exp is not None and len(rows) != exp:
                out.append(f"{self.name}/{split}: kept {len(rows)} rows, expected {exp}")
        return out

    def strict_problems(self) -> list[str]:
        """What ``--strict`` refuses: unexpected skips, file warnings, count mismatches."""
        probs = [f"{i.where()}: {i.reason}: {i.detail}" for i in self.issues if not i.expected]
        probs += [f"{w.where()}: {w.reason}: {w.detail}" for w in self.warnings]
        return probs + self.count_warnings()


def _normalise_source(
    records: Iterable[tuple[int, Any]],
    label: str,
    fields: FieldMap,
    spec: DatasetSpec,
    id_prefix: str,
    expected_skips: dict[int, str],
    out: Collected,
    kept: list[NormalisedRow],
    seen: dict[str, str],
) -> int:
    """Normalise one file's (or split's) records into ``kept``; returns how many were read."""
    n = 0
    for row, record in records:
        n += 1
        try:
            if isinstance(record, RowProblem):
                raise record
            nr = normalise_record(
                record, fields, spec.answer_rule, row, id_prefix, keep_empty_answer=spec.on_empty_answer != "skip"
            )
            if nr.id in seen:
                raise RowProblem("duplicate_id", f"id {nr.id!r} already used by {seen[nr.id]}")
        except RowProblem as p:
            out.issues.append(Issue(label, row, p.reason, p.detail, expected=expected_skips.get(row) == p.reason))
            continue
        seen[nr.id] = f"{label} row {row}"
        kept.append(nr)
    return n


def _collect_files(
    name: str, spec: DatasetSpec, root: Path, files: list[LocalFile], fields: FieldMap, out: Collected
) -> None:
    kept: list[NormalisedRow] = []
    seen: dict[str, str] = {}
    entries = []
    for f in files:
        records = list(iter_file_records(root / f.path))
        skips = {s.row: s.reason for s in f.expected_skips}
        out.n_read += _normalise_source(records, f.path, fields, spec, f.id_prefix, skips, out, kept, seen)
        info = file_source_info(root, f, len(records))
        entries.append(info)
        if info["sha256_ok"] is False:
            detail = f"sha256 {info['sha256']} differs from the spec's {f.sha256}"
            out.warnings.append(Issue(f.path, None, "sha256_mismatch", detail))
        if f.expected_rows is not None and len(records) != f.expected_rows:
            detail = f"{len(records)} records, expected {f.expected_rows}"
            out.warnings.append(Issue(f.path, None, "row_count_mismatch", detail))
    out.source = {"mode": "offline", "data_dir": str(root.resolve()), "files": entries}
    out.rows = {spec.split: kept}


def _fallback_banner(name: str, reason: str, missing: list[str]) -> str:
    bar = "!" * 100
    lines = [
        bar,
        f"!!! FALLBACK: '{name}' is NOT the real dataset. Missing: {', '.join(missing)}",
        *(f"!!! {line}" for line in _wrap(reason, 94)),
        "!!! Every row carries extra_info.is_fallback=True and the manifest says is_fallback: true.",
        bar,
    ]
    return "\n".join(lines)


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(" ".join(text.split()), width)


def _collect_offline(name: str, spec: DatasetSpec, root: Path, allow_fallback: bool, out: Collected) -> None:
    missing = [f.path for f in spec.local if not (root / f.path).is_file()]
    if not spec.local or missing:
        if spec.fallback is None or not allow_fallback:
            why = "the spec has no fallback" if spec.fallback is None else "--no-fallback was given"
            where = ", ".join(missing) or "(no local files in the spec)"
            raise DataError(f"{name}: missing under {root}: {where}; {why}")
        fb = spec.fallback
        out.is_fallback, out.fallback_reason = True, " ".join(fb.reason.split())
        out.expected = {spec.split: fb.expected_count}
        out.fields = asdict(fb.fields)
        log.warning("\n%s", _fallback_banner(name, fb.reason, missing))
        _collect_files(name, spec, root, fb.files, fb.fields, out)
        return
    _collect_files(name, spec, root, spec.local, spec.fields, out)


def _collect_online(name: str, spec: DatasetSpec, loader: HubLoader | None, out: Collected) -> None:
    if spec.hub is None:
        raise DataError(f"{name}: no hub source in the spec; build it with --offline DIR")
    fields = spec.hub.fields or spec.fields
    out.fields = asdict(fields)
    records, info = load_hub_records(spec.hub, loader)
    kept: list[NormalisedRow] = []
    label = f"{spec.hub.path}:{spec.hub.split}"
    prefix = spec.hub.id_prefix or name
    out.n_read = _normalise_source(records, label, fields, spec, prefix, {}, out, kept, {})
    out.source = {"mode": "online", "hub": info}
    out.rows = {spec.split: kept}


def _collect_generated(name: str, spec: DatasetSpec, out: Collected) -> None:
    assert spec.task is not None
    train, test = generate_problems(spec.task)
    fields = FieldMap(question="question", answer="answer", id="id")
    out.fields = asdict(fields)
    out.rows, seen = {}, {}
    for split, problems in (("train", train), ("test", test)):
        kept: list[NormalisedRow] = []
        label = f"generated:{name}/{split}"
        out.n_read += _normalise_source(enumerate(problems), label, fields, spec, name, {}, out, kept, seen)
        out.rows[split] = kept
    out.expected = {"train": spec.task.n_train, "test": spec.task.n_test}
    out.source = {
        "mode": "generated",
        "generator": "m2po.engine.task.generate_problems",
        "task": to_dict(spec.task),
        "seed": spec.task.seed,
    }


def collect_dataset(
    name: str,
    spec: DatasetSpec,
    offline_dir: Path | None,
    allow_fallback: bool = True,
    hub_loader: HubLoader | None = None,
) -> Collected:
    """Read, normalise and validate one dataset (no output is written)."""
    mode = "generated" if spec.generator else ("offline" if offline_dir is not None else "online")
    out = Collected(
        name=name,
        spec=spec,
        mode=mode,
        source={},
        rows={},
        expected={spec.split: spec.expected_count},
        answer_rule=spec.answer_rule,
        fields=asdict(spec.fields),
    )
    if mode == "generated":
        _collect_generated(name, spec, out)
    elif mode == "offline":
        assert offline_dir is not None
        _collect_offline(name, spec, offline_dir, allow_fallback, out)
    else:
        _collect_online(name, spec, hub_loader, out)
    for msg in out.count_warnings():
        log.warning("COUNT MISMATCH %s", msg)
    for w in out.warnings:
        log.warning("%s: %s: %s", w.where(), w.reason, w.detail)
    unexpected = [i for i in out.issues if not i.expected]
    if out.issues:
        log.info("%s: skipped %d rows (%d expected)", name, len(out.issues), len(out.issues) - len(unexpected))
    return out
