"""Typed source specs: ``data/sources.yaml`` read into dataclasses with :func:`m2po.config.load_config`.

Why a spec file rather than code: where each dataset comes from (hub id, split, revision, the
fields the paper's preprocessing reads, the local file layout of the offline data folder (docs/data.md), the expected
size and the documented quirks) is data that a reviewer should be able to check against
PROVENANCE.md without reading Python. The loader type-checks every key and reports a bad value
with its dotted path (``datasets.math500.answer_rule: expected one of ...``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..config import ConfigError, load_config, option
from ..engine.task import ArithmeticTask
from ..specs import spec_path

__all__ = [
    "ANSWER_RULES",
    "DEFAULT_SOURCES",
    "DatasetSpec",
    "ExpectedSkip",
    "FallbackSpec",
    "FieldMap",
    "HubSpec",
    "LocalFile",
    "SourcesFile",
    "load_sources",
]

#: the packaged source spec (``data/sources.yaml`` of the repository links to it; ``--sources`` overrides).
DEFAULT_SOURCES = spec_path("sources.yaml")

AnswerRule = Literal["plain", "aime_int", "amc_number", "minerva_list", "olympiad_first", "gsm8k_hash", "gaokao_dollar"]
ANSWER_RULES: tuple[str, ...] = AnswerRule.__args__  # type: ignore[attr-defined]


@dataclass
class FieldMap:
    """Which raw fields hold the question, the answer and the id (None: derive a stable id)."""

    question: str = option("problem", "Field with the problem statement.")
    answer: str = option("answer", "Field with the gold answer (raw; the answer_rule normalises it).")
    id: str | None = option(None, "Field with the original id; None derives '<id_prefix>-row<NNNNN>' from the row.")


@dataclass
class ExpectedSkip:
    """A row known to be unusable (documented in PROVENANCE.md): still skipped and reported, but
    not an error under ``--strict``, which exists to catch the *unexpected*."""

    row: int = option(help="0-based record index in the file.")
    reason: str = option(help="The skip reason the validator gives (e.g. empty_answer).")
    note: str = option("", "Why it is known.")


@dataclass
class LocalFile:
    path: str = option(help="Path relative to the offline data folder (--offline DIR / M2PO_DATA_DIR).")
    id_prefix: str = option(help="Prefix of derived ids for rows without an id field; unique per dataset.")
    expected_rows: int | None = option(None, "Records in the file, if known (a mismatch is reported).")
    sha256: str | None = option(None, "SHA-256 of the file as published (a mismatch warns; errors in --strict).")
    expected_skips: list[ExpectedSkip] = option([], "Rows known to be skipped (not an error under --strict).")


@dataclass
class HubSpec:
    """Arguments of ``datasets.load_dataset(path, name, split=..., revision=..., data_files=...)``."""

    path: str = option(help="HF hub id, or a builder ('json') together with data_files.")
    name: str | None = option(None, "Config name (e.g. 'main' for openai/gsm8k).")
    split: str = option("test", "Split to load.")
    revision: str | None = option(None, "Commit to pin; None loads the default branch (the resolved sha is logged).")
    data_files: str | None = option(None, "URL or path for builder datasets ('json').")
    id_prefix: str | None = option(None, "Prefix of derived ids (default: the dataset name).")
    fields: FieldMap | None = option(None, "Field names of the hub copy where they differ from the local file's.")


@dataclass
class FallbackSpec:
    """An offline stand-in used only when the real local file is absent; loudly flagged."""

    reason: str = option(help="Why the fallback exists and what it is (copied into the manifest).")
    files: list[LocalFile] = option(help="Files concatenated in this order.")
    fields: FieldMap = option(FieldMap, "Field names of the fallback files.")
    expected_count: int | None = option(None, "Rows kept from the fallback.")


@dataclass
class DatasetSpec:
    role: Literal["train", "eval"] = option(help="train: the RL training set; eval: a benchmark.")
    description: str = option("", "One line for the report.")
    split: str = option("test", "Output split name (OUT/<dataset>/<split>.parquet).")
    ability: str = option("math", "verl 'ability' column.")
    prompt: Literal["template", "bare"] = option("template", "template: the paper's prompt; bare: the question.")
    answer_rule: AnswerRule = option("plain", "How the raw answer becomes the ground truth (docs/data.md).")
    fields: FieldMap = option(FieldMap, "Field names of the local file(s).")
    local: list[LocalFile] = option([], "Files of the offline layout, concatenated in this order.")
    hub: HubSpec | None = option(None, "The hub source of online mode.")
    fallback: FallbackSpec | None = option(None, "Offline stand-in when the local files are absent.")
    expected_count: int | None = option(None, "Rows the output must have (a mismatch warns; errors in --strict).")
    on_empty_answer: Literal["skip", "keep_flagged"] = option(
        "skip", "skip: drop rows with an empty answer; keep_flagged: keep them with extra_info.answer_missing=True."
    )
    shuffle_seed: int | None = option(None, "Shuffle like datasets.Dataset.shuffle(seed) (the paper: 42).")
    generator: Literal["arithmetic"] | None = option(None, "Generated dataset: the tiny arithmetic task.")
    task: ArithmeticTask | None = option(None, "Generator config (m2po.engine.task.ArithmeticTask fields).")

    def validate(self) -> None:
        if self.generator is not None:
            if self.task is None:
                raise ConfigError("task", "a generated dataset needs its task config", hint="e.g. task: {seed: 0}")
            return
        if not self.local and self.hub is None:
            raise ConfigError("local", "give the local file layout, a hub source, or both")
        prefixes = [f.id_prefix for f in self.local]
        if len(set(prefixes)) != len(prefixes):
            raise ConfigError("local", f"id_prefix values must be unique, got {prefixes}")


@dataclass
class SourcesFile:
    prompt_template: str = option(help="The paper's prompt; '{question}' is replaced by the raw question.")
    datasets: dict[str, DatasetSpec] = option(help="Dataset name -> spec; the name is the output folder.")
    version: int = option(1, "Schema version of this file.")
    groups: dict[str, list[str]] = option({}, "Named lists usable with --datasets (e.g. 'eval').")

    def validate(self) -> None:
        if "{question}" not in self.prompt_template:
            raise ConfigError("prompt_template", "must contain '{question}'")
        for group, names in self.groups.items():
            unknown = [n for n in names if n not in self.datasets]
            if unknown:
                known = f"known: {list(self.datasets)}"
                raise ConfigError(f"groups.{group}", f"unknown datasets {unknown}", hint=known)


def load_sources(path: str | Path | None = None) -> SourcesFile:
    """The spec at ``path`` (default :data:`DEFAULT_SOURCES`), type-checked and validated."""
    return load_config(SourcesFile, path or DEFAULT_SOURCES)
