"""In-process answer extraction and math-verify grading of one sample; the training reward ``math_reward``.

Why a leaf at the package's top level: training (the engine's reward for a math dataset, the verl
reward function) and evaluation (the grading workers) both grade with it, and the evaluation imports
the engine (its tiny backend runs the engine's model). So this module imports nothing of ``m2po``:
any of them can import it without an import cycle.

Why this module is in-process only: math-verify bounds its own parse/verify time with
``signal.alarm`` (SIGALRM), which works only in a process's *main thread* and cannot interrupt
long C-level computations (e.g. ``9^{9^{9^9}}`` inside sympy/gmpy). So:

- ``math_reward`` / ``grade_one`` run in the caller's main thread (the training loop's reward, or a
  grading worker process); off the main thread they fall back to *no* soft timeout;
- the evaluation harness never calls them directly on model output: it calls them inside
  ``m2po.eval.pool.GradingPool`` worker processes whose wall-clock timeout the parent enforces by
  killing and replacing the worker.

Extraction defaults to the *last* ``\\boxed{...}`` (or ``\\fbox{...}``) with balanced braces, the
convention of the paper's prompt ("put your final answer within \\boxed{}"); ``extraction="math_verify"``
instead lets math-verify's own extractors scan the whole response; ``extraction="raw"`` takes the whole
response as the answer; ``extraction="tiny"`` takes the tiny arithmetic task's final answer
(:func:`final_answer`, the string its training reward compares), so the evaluation follows the task's
response format.
"""

from __future__ import annotations

import re
import threading
from dataclasses import asdict, dataclass
from typing import Any

GRADER_NAME = "math_verify"
#: the statuses every graded sample carries (contract 4)
STATUSES = ("correct", "incorrect", "no_answer", "timeout", "error")
EXTRACTION_MODES = ("boxed", "math_verify", "raw", "tiny")
#: modes whose extraction is a plain string function of the response (no math-verify): the verdict is then a
#: function of (extracted answer, ground truth) alone, which is what :mod:`m2po.eval.memo` memoizes
STRING_EXTRACTION = ("boxed", "raw", "tiny")
#: an extracted answer longer than this is not an answer but runaway output: status ``error``
MAX_ANSWER_CHARS = 2000
#: math-verify's own soft timeout (seconds, whole numbers: it uses signal.alarm)
DEFAULT_SOFT_TIMEOUT_S = 5


def grader_version() -> str:
    """The installed math-verify version, recorded with every result for provenance."""
    try:
        from importlib.metadata import version

        return version("math-verify")
    except Exception:  # pragma: no cover - metadata missing only in broken installs
        return "unknown"


@dataclass(frozen=True)
class GradeResult:
    """Verdict on one sample. ``correct`` is True only for status ``correct``."""

    status: str
    correct: bool
    extracted: str | None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _last_command_arg(text: str, commands: tuple[str, ...]) -> str | None:
    """Argument of the last ``\\cmd{...}`` (balanced braces) or ``\\cmd x`` among ``commands``."""
    best = -1
    best_cmd = ""
    for cmd in commands:
        pos = text.rfind(cmd)
        while pos != -1:
            # do not match \boxedx... (a longer command name)
            nxt = text[pos + len(cmd) : pos + len(cmd) + 1]
            if nxt == "" or not nxt.isalpha():
                break
            pos = text.rfind(cmd, 0, pos)
        if pos > best:
            best, best_cmd = pos, cmd
    if best < 0:
        return None
    i = best + len(best_cmd)
    while i < len(text) and text[i] in " \t":
        i += 1
    if i < len(text) and text[i] == "{":
        depth = 0
        for j in range(i, len(text)):
            ch = text[j]
            if ch == "{" and (j == 0 or text[j - 1] != "\\"):
                depth += 1
            elif ch == "}" and (j == 0 or text[j - 1] != "\\"):
                depth -= 1
                if depth == 0:
                    return text[i + 1 : j].strip()
        return None  # unbalanced: the answer was cut off
    if i > best + len(best_cmd):  # "\boxed 5" form: up to the next whitespace or '$'
        j = i
        while j < len(text) and text[j] not in " \t\n$":
            j += 1
        return text[i:j].strip() or None
    return None


def final_answer(response_text: str) -> str:
    """The answer a tiny-task response states: its last space-separated field ("7+8=15 0+4+1=5 55" -> "55").

    For the tiny task's "answer" format (no spaces) that is the whole stripped response
    (``m2po.engine.task`` defines both formats and rewards with this function).
    """
    fields = response_text.split()
    return fields[-1] if fields else ""


def extract_answer(response: str, mode: str = "boxed") -> str | None:
    """The final answer string of ``response``, or None when there is none.

    ``mode="boxed"``: content of the last ``\\boxed{}``/``\\fbox{}`` (balanced braces). ``mode="math_verify"``:
    the string form of math-verify's own extraction of the whole response (first parsed target).
    """
    if not isinstance(response, str):
        return None
    if mode == "boxed":
        ans = _last_command_arg(response, ("\\boxed", "\\fbox"))
        return ans if ans else None
    if mode == "raw":  # the whole response is the answer
        return response.strip() or None
    if mode == "tiny":  # the tiny arithmetic task's own final answer (what its reward compares)
        return final_answer(response) or None
    if mode == "math_verify":
        parsed = _parse_pred_full(response, _soft_timeout())
        return str(parsed[-1]) if parsed else None
    raise ValueError(f"unknown extraction mode {mode!r}; choose one of {EXTRACTION_MODES}")


def _soft_timeout(seconds: int = DEFAULT_SOFT_TIMEOUT_S) -> int | None:
    """math-verify's SIGALRM timeout only in the main thread; elsewhere None (else it raises). 0 = off."""
    if seconds <= 0:
        return None
    return seconds if threading.current_thread() is threading.main_thread() else None


_SPACING = re.compile(r"(?<!\\)\\[,;:! ]")  # \, \; \: \! "\ " but not the row separator "\\ "
_E_NOTATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)[eE]([+-]?\d+)\s*$")
_PERCENT = re.compile(r"\\?%")


def _clean(ans: str) -> str:
    """Light normalisation math-verify does not do itself (each case is a labelled pair in
    tests/test_eval_grader.py):

    - ``\\dfrac``/``\\tfrac`` -> ``\\frac``; ``^\\circ``/``°`` dropped (degrees are the answer's unit);
    - LaTeX spacing commands dropped (a naive ``"\\ "`` replace would break the matrix row separator);
    - ``8.7e8`` -> ``8.7 \\times 10^{8}`` (MinervaMath golds use e-notation; LaTeX parsing reads ``e`` as Euler's e).
    """
    out = ans.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    out = out.replace("^{\\circ}", "").replace("^\\circ", "").replace("°", "")
    out = _SPACING.sub(" ", out)
    m = _E_NOTATION.match(out)
    if m:
        out = f"{m.group(1)} \\times 10^{{{m.group(2)}}}"
    return out.strip()


_BASE = re.compile(r"^\s*([0-9A-Za-z]+)_\{?(\d+)\}?\s*$")


def _base_value(ans: str) -> int | None:
    """The value of a base-subscripted numeral (``4343_6``, ``AB_{12}``), else None.

    math-verify drops the subscript, so ``4343_7`` would match ``4343_6``; when both sides carry a
    base we compare the numbers they denote instead.
    """
    m = _BASE.match(ans)
    if not m:
        return None
    base = int(m.group(2))
    if not 2 <= base <= 36:
        return None
    try:
        return int(m.group(1), base)
    except ValueError:
        return None


def _split_percent(ans: str) -> tuple[str, bool]:
    """``("10", True)`` for ``10\\%``: math-verify leaves a percent answer unparsed."""
    stripped = _PERCENT.sub("", ans)
    return stripped.strip(), stripped != ans


def _parse_boxed(ans: str, timeout_s: int | None) -> list[Any]:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    return parse(
        "\\boxed{" + _clean(ans) + "}",
        extraction_config=[LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()],
        parsing_timeout=timeout_s,  # type: ignore[arg-type]
        raise_on_error=True,
    )


def _parse_pred_full(response: str, timeout_s: int | None) -> list[Any]:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    return parse(
        response,
        extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()],
        parsing_timeout=timeout_s,  # type: ignore[arg-type]
        raise_on_error=True,
    )


def _verify(gold: list[Any], pred: list[Any], timeout_s: int | None) -> bool:
    from math_verify import verify

    return bool(verify(gold, pred, timeout_seconds=timeout_s, raise_on_error=True))


def grade_one(
    response: str,
    ground_truth: str,
    extraction: str = "boxed",
    soft_timeout_s: int = DEFAULT_SOFT_TIMEOUT_S,
) -> GradeResult:
    """Grade one response against one ground truth, in this process; never raises.

    Status ``timeout`` when math-verify's own (soft, SIGALRM) timeout fires; the hard timeout is the
    pool's job. Any other exception (including invalid unicode) is status ``error``.
    """
    extracted: str | None = None
    try:
        from math_verify.errors import TimeoutException
    except Exception as e:  # pragma: no cover
        return GradeResult("error", False, None, f"math_verify import failed: {e!r}")
    t = _soft_timeout(soft_timeout_s)
    try:
        if not isinstance(response, str) or not isinstance(ground_truth, str):
            return GradeResult("error", False, None, "response and ground truth must be strings")
        response.encode("utf-8")  # lone surrogates etc.: reject up front, uniformly
        ground_truth.encode("utf-8")
        if extraction in STRING_EXTRACTION:
            extracted = extract_answer(response, extraction)
            if extracted is None:
                return GradeResult("no_answer", False, None)
            if len(extracted) > MAX_ANSWER_CHARS:
                return GradeResult("error", False, extracted[:200], f"extracted answer > {MAX_ANSWER_CHARS} chars")
            gold_base, pred_base = _base_value(ground_truth), _base_value(extracted)
            if gold_base is not None and pred_base is not None:
                ok = gold_base == pred_base
                return GradeResult("correct" if ok else "incorrect", ok, extracted)
            pred = _parse_boxed(extracted, t)
        elif extraction == "math_verify":
            pred = _parse_pred_full(response, t)
            if not pred:
                return GradeResult("no_answer", False, None)
            extracted = str(pred[-1])
        else:
            return GradeResult("error", False, None, f"unknown extraction mode {extraction!r}")
        gold_text, gold_pct = _split_percent(ground_truth)
        gold = _parse_boxed(gold_text, t)
        if not gold:
            return GradeResult("error", False, extracted, "ground truth could not be parsed")
        if not pred:
            return GradeResult("incorrect", False, extracted, "prediction could not be parsed")
        ok = _verify(gold, pred, t)
        if not ok and extraction != "math_verify" and extracted is not None:
            # "10\\%" for gold 10 (the question asked for a percent) or for gold 0.1 (it asked for a fraction)
            pred_text, pred_pct = _split_percent(extracted)
            if pred_pct or gold_pct:
                ok = _verify(gold, _parse_boxed(pred_text, t), t)
                if not ok and pred_pct and not gold_pct:
                    ok = _verify(gold, _parse_boxed(f"\\frac{{{pred_text}}}{{100}}", t), t)
        return GradeResult("correct" if ok else "incorrect", ok, extracted)
    except TimeoutException:
        return GradeResult("timeout", False, extracted, "math-verify soft timeout")
    except RecursionError as e:
        return GradeResult("error", False, extracted, f"RecursionError: {str(e)[:200]}")
    except Exception as e:
        return GradeResult("error", False, extracted, f"{type(e).__name__}: {str(e)[:200]}")


def math_reward(response: str, ground_truth: str, format_reward: float = 0.0) -> float:
    """Scalar reward for training: 1.0 correct, ``format_reward`` for an extractable wrong answer, else 0.0.

    Runs in the calling process's main thread (SIGALRM bounds it softly) and never raises; a timeout or
    an error counts as 0.0 — the training reward, unlike evaluation, has no separate status.
    """
    try:
        res = grade_one(response, ground_truth, extraction="boxed")
    except BaseException:  # noqa: BLE001 - the reward must never take the trainer down
        return 0.0
    if res.status == "correct":
        return 1.0
    if res.status == "incorrect":
        return float(format_reward)
    return 0.0
