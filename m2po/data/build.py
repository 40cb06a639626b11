"""``m2po data build``: collect the requested datasets, check them, write parquet + manifest, then
the report and the contamination tables over everything in OUT.

Order matters for "nothing half-done": every dataset is collected and validated first; under
``--strict`` any unexpected problem aborts before a single file is written. The datasets are then
written into a staging folder inside OUT and moved into place together with the report; a failure
on the way (a full disk, a read-only folder) leaves OUT as it was before the build.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from .. import __version__
from ..errors import DISK_FULL, from_os_error
from .collect import Collected, collect_dataset
from .contamination import write_contamination
from .gtcheck import GT_WRAPPER, check_ground_truths
from .io import SCHEMA, write_json, write_parquet
from .normalize import NormalisedRow, format_prompt
from .readers import DataError, HubLoader
from .report import write_report
from .spec import SourcesFile

__all__ = ["BuildOptions", "build", "resolve_names", "to_rows"]

log = logging.getLogger("m2po.data")

#: the tables written over every dataset in OUT after the datasets themselves
SUMMARY_FILES = ("contamination.csv", "contamination.md", "report.md")
SHUFFLE_METHOD = "numpy.random.default_rng(seed).permutation(n), the order of datasets.Dataset.shuffle(seed=seed)"


@dataclass
class BuildOptions:
    out: Path
    datasets: tuple[str, ...] = ("all",)
    offline_dir: Path | None = None  # None: online (hub)
    strict: bool = False
    allow_fallback: bool = True
    check_parse: bool = True
    parse_cache: bool = True  # reuse OUT/.cache/gt_parse.json (keyed by the math-verify version)
    progress: bool = True
    workers: int | None = None
    hub_loader: HubLoader | None = None  # tests: a stand-in for datasets.load_dataset


def resolve_names(sources: SourcesFile, requested: tuple[str, ...] | list[str]) -> list[str]:
    """Dataset names in spec order: ``all``, group names (``eval``) and dataset names, deduplicated."""
    wanted: set[str] = set()
    for item in requested:
        if item == "all":
            wanted.update(sources.datasets)
        elif item in sources.groups:
            wanted.update(sources.groups[item])
        elif item in sources.datasets:
            wanted.add(item)
        else:
            choices = ["all", *sources.groups, *sources.datasets]
            close = difflib.get_close_matches(item, choices, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise DataError(f"unknown dataset {item!r}{hint}; choose from {', '.join(choices)}")
    return [n for n in sources.datasets if n in wanted]


def to_rows(col: Collected, template: str, split: str) -> list[dict[str, Any]]:
    """Output rows of one split in :data:`m2po.data.io.SCHEMA`, shuffled if the spec says so."""
    kept: list[NormalisedRow] = col.rows[split]
    order = list(range(len(kept)))
    if col.spec.shuffle_seed is not None:
        order = np.random.default_rng(col.spec.shuffle_seed).permutation(len(kept)).tolist()
    rows = []
    for index, i in enumerate(order):
        r = kept[i]
        content = format_prompt(template, r.question) if col.spec.prompt == "template" else r.question
        rows.append(
            {
                "data_source": col.name,
                "prompt": [{"role": "user", "content": content}],
                "ability": col.spec.ability,
                "reward_model": {"style": "rule", "ground_truth": r.ground_truth},
                "extra_info": {
                    "index": index,
                    "split": split,
                    "id": r.id,
                    "question": r.question,
                    "answer_raw": r.answer_raw,
                    "answer_alternatives": r.alternatives,
                    "answer_missing": r.answer_missing,
                    "is_fallback": col.is_fallback,
                    "source_row": r.source_row,
                },
            }
        )
    return rows


def _versions() -> dict[str, str]:
    out = {"m2po": __version__}
    for pkg in ("pyarrow", "math-verify"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _manifest(
    col: Collected, template: str, splits: dict[str, dict[str, Any]], parse: dict[str, bool] | None
) -> dict[str, Any]:
    kept = {s: len(r) for s, r in col.rows.items()}
    missing = [
        {"split": s, "id": r.id, "source_row": r.source_row, "question": r.question[:160]}
        for s, rows in col.rows.items()
        for r in rows
        if r.answer_missing
    ]
    unparseable = []
    if parse is not None:
        unparseable = [
            {"split": s, "id": r.id, "ground_truth": r.ground_truth}
            for s, rows in col.rows.items()
            for r in rows
            if r.ground_truth and not parse.get(r.ground_truth, False)
        ]
    n_gt = sum(1 for rows in col.rows.values() for r in rows if r.ground_truth)
    return {
        "dataset": col.name,
        "role": col.spec.role,
        "description": col.spec.description,
        "is_fallback": col.is_fallback,
        "fallback_reason": col.fallback_reason,
        "mode": col.mode,
        "source": col.source,
        "splits": splits,
        "counts": {
            "read": col.n_read,
            "kept": sum(kept.values()),
            "kept_by_split": kept,
            "expected_by_split": col.expected,
            "count_ok": not col.count_warnings(),
            "skipped": len(col.issues),
            "skipped_unexpected": sum(1 for i in col.issues if not i.expected),
            "skipped_by_reason": dict(sorted(Counter(i.reason for i in col.issues).items())),
            "answer_missing": len(missing),
        },
        "skipped": [i.as_dict() for i in col.issues],
        "answer_missing": missing,
        "warnings": [w.as_dict() for w in col.warnings]
        + [
            {"file": None, "row": None, "reason": "count_mismatch", "detail": m, "expected": False}
            for m in col.count_warnings()
        ],
        "answer_rule": col.answer_rule,
        "fields": col.fields,
        "prompt": {"kind": col.spec.prompt, "template": template if col.spec.prompt == "template" else None},
        "ability": col.spec.ability,
        "shuffle": None if col.spec.shuffle_seed is None else {"seed": col.spec.shuffle_seed, "method": SHUFFLE_METHOD},
        "ground_truth_parse": {
            "method": GT_WRAPPER,
            "checked": parse is not None,
            "n_ground_truths": n_gt,
            "n_unparseable": len(unparseable),
            "unparseable": unparseable,
        },
        "schema": [f"{f.name}: {f.type}" for f in SCHEMA],
        "versions": _versions(),
    }


def _write_dataset(out: Path, col: Collected, template: str, parse: dict[str, bool] | None) -> dict[str, Any]:
    folder = out / col.name
    folder.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split in col.rows:
        data = write_parquet(folder / f"{split}.parquet", to_rows(col, template, split))
        splits[split] = {
            "file": f"{split}.parquet",
            "rows": len(col.rows[split]),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    for stale in folder.glob("*.parquet"):  # splits of an earlier build that this one does not have
        if stale.stem not in col.rows:
            stale.unlink()
    manifest = _manifest(col, template, splits, parse)
    write_json(folder / "manifest.json", manifest)
    return manifest


def build(sources: SourcesFile, opts: BuildOptions) -> list[dict[str, Any]]:
    """Build the requested datasets into ``opts.out``; returns their manifests.

    Raises :class:`DataError` for a missing source, or (``strict``) for any unexpected skipped
    row, checksum or count mismatch, naming file and row.
    """
    names = resolve_names(sources, opts.datasets)
    if not names:
        raise DataError("no datasets requested")
    collected: list[Collected] = []
    bar = tqdm(names, desc="datasets", unit="dataset", disable=not opts.progress)
    for name in bar:
        bar.set_postfix_str(name)
        collected.append(
            collect_dataset(name, sources.datasets[name], opts.offline_dir, opts.allow_fallback, opts.hub_loader)
        )
    if opts.strict:
        problems = [f"{c.name}: {p}" for c in collected for p in c.strict_problems()]
        if problems:
            more = f"\n  ... and {len(problems) - 30} more" if len(problems) > 30 else ""
            shown = "\n  ".join(problems[:30]) + more
            raise DataError(f"--strict: {len(problems)} problem(s), nothing written:\n  {shown}")
    parse = None
    if opts.check_parse:
        gts = (r.ground_truth for c in collected for rows in c.rows.values() for r in rows)
        cache = opts.out / ".cache" / "gt_parse.json" if opts.parse_cache else None
        parse = check_ground_truths(gts, workers=opts.workers, progress=opts.progress, cache=cache)
    opts.out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=opts.out))
    try:
        manifests = [_write_dataset(staging, c, sources.prompt_template, parse) for c in collected]
        _commit(opts.out, staging, [c.name for c in collected])
    except OSError as e:
        if e.errno not in DISK_FULL:
            raise
        full = OSError(e.errno, e.strerror, str(opts.out))  # the staging file named by ``e`` is gone now
        raise from_os_error(full, "nothing in it was changed; free some space and run the command again") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifests


def _commit(out: Path, staging: Path, names: list[str]) -> None:
    """Move the staged dataset folders into ``out`` and write the report and contamination tables over
    everything there. A failure (a full disk) puts the previous folders and tables back, so ``out``
    holds either the old build or the new one, never a mix. Renames and hard links need no space."""
    backup = staging / ".previous"
    backup.mkdir()
    moved: list[str] = []
    tables = [f for f in SUMMARY_FILES if (out / f).exists()]
    for f in tables:
        os.link(out / f, backup / f)
    try:
        for name in names:
            if (out / name).exists():
                os.replace(out / name, backup / name)
            os.replace(staging / name, out / name)
            moved.append(name)
        write_report(out, write_contamination(out))
    except BaseException:
        for name in moved:
            shutil.rmtree(out / name, ignore_errors=True)
        for f in SUMMARY_FILES:
            if f in tables:
                os.replace(backup / f, out / f)
            else:
                (out / f).unlink(missing_ok=True)
        for old in backup.iterdir():
            os.replace(old, out / old.name)
        raise
