"""Every conformance case, in a stable order (docs/conformance.md lists their semantics)."""

from __future__ import annotations

from ..spec import CaseSpec
from .baselines import grpo_cases, other_cases
from .m2po import m2po_cases, released_cases


def all_cases() -> list[CaseSpec]:
    cases = m2po_cases() + released_cases() + grpo_cases() + other_cases()
    names = [c.name for c in cases]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"duplicate case names: {sorted(duplicates)}")
    return cases
