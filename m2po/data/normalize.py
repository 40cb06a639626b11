"""The one row normaliser both source paths feed: raw record -> question, ground truth, id, or a
named problem.

Why one function: online (hub) and offline (files) rows must produce the same output, so the
answer rules, the id derivation and the validation live here and nowhere else. The answer rules
reproduce what the paper's preprocessing scripts (Infini-AI-Lab/M2PO, examples/data_preprocess)
do to each benchmark, plus the clean-ups the local copies need (PROVENANCE.md):

=================  =====================================================================
rule               raw -> ground truth
=================  =====================================================================
``plain``          str stripped (an int becomes its decimal string)
``aime_int``       integer answers as numbers: ``"025"`` -> ``"25"``, ``70`` -> ``"70"``
``amc_number``     ``27.0`` -> ``"27"``; a non-integer float keeps its shortest repr
                   (``0.5`` -> ``"0.5"``); strings (AMC 2024: ``\\frac{39}{7}``, ``D``) stripped
``minerva_list``   ``["9.6\\n"]`` -> ``"9.6"``: the first element, stripped; the distinct
                   elements are kept, stripped, in ``extra_info.answer_alternatives``
``olympiad_first`` ``final_answer[0]`` with every ``$`` removed (test_olympiad.py)
``gsm8k_hash``     the number after ``#### ``, commas removed (test_gsm8k.py's regex)
``gaokao_dollar``  every ``$`` removed (test_gaokao.py: ``solution.replace('$', '')``), stripped
=================  =====================================================================

A null answer counts as empty (``empty_answer``), not as a wrong type.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .spec import FieldMap

__all__ = [
    "NormalisedRow",
    "RowProblem",
    "format_prompt",
    "normalise_answer",
    "normalise_question_text",
    "normalise_record",
]


class RowProblem(ValueError):
    """Why a row cannot be used: ``reason`` is a short tag (``empty_question``, ``wrong_type``,
    ``duplicate_id``, ...) counted in the manifest; ``detail`` says what was found."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass
class NormalisedRow:
    """One usable row, before it gets its output index and prompt."""

    id: str
    question: str
    ground_truth: str
    answer_raw: str  # JSON of the raw answer, for audits ("025", 27.0, ["9.6\n"])
    alternatives: list[str] = field(default_factory=list)
    answer_missing: bool = False
    source_row: int = 0


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _wrong_type(what: str, value: Any, expected: str) -> RowProblem:
    return RowProblem("wrong_type", f"{what} is {type(value).__name__} ({_short(value)}), expected {expected}")


def _short(value: Any, n: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def _str_or_int(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value.strip()
    if _is_int(value):
        return str(value)
    raise _wrong_type(what, value, "str or int")


def _first_of_list(value: Any, what: str) -> list[str]:
    """A list of strings (or one string) -> the stripped strings; the first one is the answer."""
    items = value if isinstance(value, list | tuple) else [value]
    if not items:
        return [""]
    out = []
    for item in items:
        if not isinstance(item, str):
            raise _wrong_type(f"{what} element", item, "str")
        out.append(item.strip())
    return out


def _distinct(items: list[str]) -> list[str]:
    """Non-empty items, first occurrence kept, order kept (``["2", "2"]`` -> ``["2"]``)."""
    return list(dict.fromkeys(i for i in items if i))


_AIME_INT = re.compile(r"^[+-]?\d+$")
_GSM8K_FINAL = re.compile(r"#### (\-?[0-9\.\,]+)")  # the paper's test_gsm8k.py regex


def normalise_answer(rule: str, raw: Any) -> tuple[str, list[str]]:
    """``(ground_truth, alternatives)`` of a raw answer under ``rule``; raises :class:`RowProblem`.

    ``alternatives`` lists every accepted form (the ground truth first); it has more than one
    entry only for MinervaMath's answer lists. An empty ground truth is returned as ``""``.
    """
    if raw is None:
        return "", []
    if rule == "plain":
        gt = _str_or_int(raw, "answer")
    elif rule == "aime_int":
        if isinstance(raw, float) and raw.is_integer():
            raw = int(raw)
        gt = _str_or_int(raw, "answer")
        if gt and not _AIME_INT.match(gt):
            raise RowProblem("answer_not_integer", f"AIME answer {raw!r} is not an integer")
        gt = str(int(gt)) if gt else gt
    elif rule == "amc_number":
        if isinstance(raw, float):
            if not math.isfinite(raw):
                raise RowProblem("wrong_type", f"answer is {raw!r}")
            gt = str(int(raw)) if raw.is_integer() else repr(raw)
        else:
            gt = _str_or_int(raw, "answer")
    elif rule == "minerva_list":
        alts = _first_of_list(raw, "answer")
        return alts[0], _distinct(alts) if alts[0] else []
    elif rule == "olympiad_first":
        alts = [a.replace("$", "").strip() for a in _first_of_list(raw, "final_answer")]
        return alts[0], _distinct(alts) if alts[0] else []
    elif rule == "gsm8k_hash":
        if not isinstance(raw, str):
            raise _wrong_type("answer", raw, "str")
        m = _GSM8K_FINAL.search(raw)
        if m is None:
            if not raw.strip():
                return "", []
            raise RowProblem("no_final_answer", f"no '#### N' in answer {_short(raw)}")
        gt = m.group(1).replace(",", "")
    elif rule == "gaokao_dollar":
        if not isinstance(raw, str):
            raise _wrong_type("answer", raw, "str")
        gt = raw.replace("$", "").strip()
    else:
        raise ValueError(f"unknown answer rule {rule!r}")
    return gt, [gt] if gt else []


def _derived_id(prefix: str, row: int) -> str:
    """Stable id for a row without one: the file's (or hub split's) record index, pinned by the
    source sha256 / revision in the manifest."""
    return f"{prefix}-row{row:05d}"


def normalise_record(
    record: Any,
    fields: FieldMap,
    rule: str,
    row: int,
    id_prefix: str,
    keep_empty_answer: bool = False,
) -> NormalisedRow:
    """Validate and normalise one raw record (a mapping from a file or a hub split).

    ``row`` is the 0-based record index, used for derived ids and in every message.
    ``keep_empty_answer`` keeps a row whose ground truth is empty, flagged ``answer_missing``.
    """
    if not isinstance(record, Mapping):
        raise _wrong_type("record", record, "a JSON object")
    if fields.question not in record:
        raise RowProblem("missing_field", f"no field {fields.question!r} (has {sorted(record)})")
    question = record[fields.question]
    if not isinstance(question, str):
        raise _wrong_type(f"question field {fields.question!r}", question, "str")
    if not question.strip():
        raise RowProblem("empty_question", f"field {fields.question!r} is empty")
    if fields.answer not in record:
        raise RowProblem("missing_field", f"no field {fields.answer!r} (has {sorted(record)})")
    raw_answer = record[fields.answer]
    gt, alternatives = normalise_answer(rule, raw_answer)
    if not gt and not keep_empty_answer:
        raise RowProblem("empty_answer", f"field {fields.answer!r} is {_short(raw_answer)}")
    raw_id = record.get(fields.id) if fields.id else None
    if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
        pid = _derived_id(id_prefix, row)
    else:
        pid = _str_or_int(raw_id, f"id field {fields.id!r}")
    return NormalisedRow(
        id=pid,
        question=question,
        ground_truth=gt,
        answer_raw=json.dumps(raw_answer, ensure_ascii=False, default=str),
        alternatives=alternatives,
        answer_missing=not gt,
        source_row=row,
    )


def format_prompt(template: str, question: str) -> str:
    """The paper's prompt around the stripped question (``str.replace``, so braces in the
    question are safe, unlike ``str.format``)."""
    return template.replace("{question}", question.strip())


# --------------------------------------------------------------------------------------------
# contamination text normalisation
# --------------------------------------------------------------------------------------------

_LATEX_NOISE = re.compile(
    r"\\(?:left|right|displaystyle|textstyle|limits|quad|qquad|text|textbf|textit|mathrm|mathbf|mbox)(?![a-z])"
    r"|\\[,;:! ]|\\\(|\\\)|\\\[|\\\]|[${}~]"
)


def normalise_question_text(text: str) -> str:
    """Text key for overlap checks: NFKC, lowercase, ``\\dfrac``/``\\tfrac`` -> ``\\frac``; drop
    ``$``, braces, ``~``, math delimiters ``\\( \\) \\[ \\]``, spacing commands (``\\, \\; \\: \\!
    \\quad``), sizing/style commands (``\\left \\right \\displaystyle \\text \\mathrm ...``, their
    argument text is kept); remove all whitespace; strip trailing ``.``/``?``/``:``.

    Two questions overlap when their keys are equal (docs/data.md).
    """
    t = unicodedata.normalize("NFKC", text).lower()
    t = re.sub(r"\\[dt]frac(?![a-z])", r"\\frac", t)
    t = _LATEX_NOISE.sub("", t)
    t = re.sub(r"\s+", "", t)
    return t.rstrip(".?:")
