"""Preloaded by the grading forkserver: import math-verify and grade once, so forked workers start warm.

Why: math-verify builds its LaTeX parser and regexes lazily; the first grade in a fresh process
takes ~1-2 s. Doing it once in the forkserver makes every (re)started worker ready in milliseconds.
"""

from __future__ import annotations

from ..grader import grade_one

grade_one("\\boxed{\\frac{1}{2}}", "0.5")
grade_one("x = 3", "3", extraction="math_verify")
