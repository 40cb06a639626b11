"""The names ``eval/runner.py`` and ``verl_plugin/reward.py`` still import from here; the grader is
:mod:`m2po.grader` (a leaf, so the engine's reward needs no import of the evaluation package).

Transitional: delete this module once those two importers read ``m2po.grader`` directly.
"""

from __future__ import annotations

from ..grader import GRADER_NAME, STRING_EXTRACTION, GradeResult, grade_one, grader_version

__all__ = ["GRADER_NAME", "STRING_EXTRACTION", "GradeResult", "grade_one", "grader_version"]
