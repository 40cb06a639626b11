"""Grader verdicts on labelled pairs, judged the way a careful human grader would.

Each pair is (response, ground truth, human verdict, what it checks). The verdicts are the human's,
not math-verify's: where math-verify (plus ``grader._clean``) disagrees, the pair stays labelled as
the human would and is marked ``xfail`` with the reason — a documented known limitation (also listed
in docs/eval.md), never a silently changed label.
"""

from __future__ import annotations

import pytest

from m2po.grader import extract_answer, grade_one, math_reward


def B(s: str) -> str:
    return "The answer is $\\boxed{" + s + "}$."


PAIRS = [
    # integers, formatting
    (B("42"), "42", True, "identical integer"),
    (B("43"), "42", False, "different integer"),
    (B("042"), "42", True, "zero-padded AIME answer (response)"),
    (B("42"), "042", True, "zero-padded AIME answer (gold)"),
    (B("025"), "25", True, "zero-padded two digits"),
    (B("1,000"), "1000", True, "thousands separator"),
    (B("1000"), "1,000", True, "thousands separator in gold"),
    (B("-7"), "-7", True, "negative"),
    (B("7"), "-7", False, "sign matters"),
    (B("27"), "27.0", True, "AMC23 float gold"),
    (B("27.5"), "27.0", False, "different float"),
    # fractions / decimals
    (B("\\frac{1}{2}"), "0.5", True, "fraction vs decimal"),
    (B("0.5"), "\\frac{1}{2}", True, "decimal vs fraction"),
    (B("\\dfrac{3}{4}"), "\\frac{3}{4}", True, "dfrac vs frac"),
    (B("\\tfrac{3}{4}"), "\\frac34", True, "tfrac vs frac shorthand"),
    (B("3/4"), "\\frac{3}{4}", True, "slash fraction"),
    (B("\\frac{2}{4}"), "\\frac{1}{2}", True, "unreduced fraction"),
    (B("\\frac{1}{3}"), "0.333", False, "1/3 vs rounded 0.333 is not equal"),
    (B("0.3333333"), "\\frac{1}{3}", False, "truncated decimal is not exactly 1/3"),
    (B("\\frac{\\sqrt{3}}{2}"), "\\frac{\\sqrt3}{2}", True, "sqrt shorthand"),
    (B("\\frac{1}{\\sqrt{2}}"), "\\frac{\\sqrt{2}}{2}", True, "rationalised denominator"),
    (B("2\\sqrt{2}"), "\\sqrt{8}", True, "simplified radical"),
    (B("\\sqrt{2}"), "2", False, "sqrt 2 vs 2"),
    # expressions
    (B("x^2+2x+1"), "(x+1)^2", True, "expanded polynomial"),
    (B("2x+1"), "1+2x", True, "commuted sum"),
    (B("\\pi"), "\\pi", True, "pi"),
    (B("3.14"), "\\pi", False, "pi approximation"),
    (B("2\\pi"), "2 \\pi", True, "spacing"),
    (B("\\frac{\\pi}{2}"), "\\frac{\\pi}{2}", True, "pi over 2"),
    (B("e^{2}"), "e^2", True, "braces on exponent"),
    # equations / assignments
    (B("x = 3"), "3", True, "x = 3 vs 3"),
    (B("3"), "x=3", True, "3 vs x = 3"),
    (B("y = 2x + 1"), "2x+1", True, "y = expression"),
    (B("x = 4"), "3", False, "wrong assignment"),
    # intervals, sets, tuples
    (B("[1, 2)"), "[1,2)", True, "half-open interval"),
    (B("(1, 2)"), "[1,2]", False, "open vs closed interval"),
    (B("(-\\infty, 3]"), "(-\\infty,3]", True, "infinite interval"),
    (B("\\{1, 2, 3\\}"), "\\{3,2,1\\}", True, "set order irrelevant"),
    (B("\\{1, 2\\}"), "\\{1,2,3\\}", False, "missing set element"),
    (B("(1, 2)"), "(1,2)", True, "ordered pair"),
    (B("(2, 1)"), "(1,2)", False, "ordered pair order matters"),
    (B("\\left( 3, \\frac{\\pi}{2} \\right)"), "\\left( 3, \\frac{\\pi}{2} \\right)", True, "MATH500 polar point"),
    (B("(3, \\frac{\\pi}{2})"), "\\left( 3, \\frac{\\pi}{2} \\right)", True, "polar point without \\left"),
    (B("1, 2, 3"), "1,2,3", True, "list of answers"),
    # matrices
    (B("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"), "\\begin{pmatrix}1\\\\2\\end{pmatrix}", True, "column vector"),
    (B("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}"), "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", True, "matrix"),
    (
        B("\\begin{pmatrix} 1 & 2 \\\\ 3 & 5 \\end{pmatrix}"),
        "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}",
        False,
        "wrong matrix entry",
    ),
    (B("\\begin{bmatrix} 1 \\\\ 2 \\end{bmatrix}"), "\\begin{pmatrix}1\\\\2\\end{pmatrix}", True, "bmatrix vs pmatrix"),
    # units, text, degrees, percent
    (B("5 \\text{ cm}"), "5", True, "unit in text"),
    (B("5\\text{ meters}"), "5", True, "unit word"),
    (B("18 \\text{ dollars}"), "18", True, "dollars"),
    (B("\\$18"), "18", True, "dollar sign"),
    (B("30^\\circ"), "30", True, "degree sign"),
    (B("30^{\\circ}"), "30^\\circ", True, "degree sign both"),
    (B("45^\\circ"), "30", False, "wrong degrees"),
    (B("10\\%"), "10", True, "percent vs bare number"),
    (B("10\\%"), "10\\%", True, "percent both"),
    (B("\\text{(C)}"), "C", True, "multiple-choice letter in text"),
    (B("\\text{Evelyn}"), "\\text{Evelyn}", True, "text answer"),
    (B("\\text{Monday}"), "\\text{Tuesday}", False, "different text answer"),
    (B("\\textbf{(D)}"), "D", True, "bold choice letter"),
    # multiple boxes, no box
    ("First \\boxed{2}, then corrected: \\boxed{3}", "3", True, "last box wins"),
    ("First \\boxed{3}, then corrected: \\boxed{2}", "3", False, "last box wins (wrong)"),
    ("The answer is 3.", "3", False, "no box: no answer"),
    ("\\fbox{12}", "12", True, "fbox"),
    ("\\boxed 5", "5", True, "boxed without braces"),
    ("so \\boxed{\\frac{1}{2}", "0.5", False, "unbalanced (cut-off) box: no answer"),
    # scientific notation / minerva style
    (B("8.7 \\times 10^{8}"), "8.7e8", True, "scientific notation"),
    (B("9.6"), "9.6\n", True, "gold with trailing newline"),
    (B("6 \\times 10^{-3}"), "0.006", True, "negative exponent"),
    # inequalities / set-builder (gaokao)
    (B("x > 2"), "x>2", True, "inequality"),
    (B("\\{x | -2 \\leq x < 1\\}"), "\\{x|-2\\leq x < 1\\}", True, "set builder"),
    (B("[-2, 1)"), "\\{x|-2\\leq x < 1\\}", True, "interval vs set-builder (same set)"),
    # numerals in another base (MATH500 has several)
    (B("4343_6"), "4343_6", True, "base subscript"),
    (B("4343_7"), "4343_6", False, "same digits, other base"),
    (B("1000_{2}"), "1000_2", True, "base subscript in braces"),
    (B("10_{10}"), "1010_2", True, "same number written in another base"),
    (B("4343"), "4343_6", True, "digits without the base the question asked for"),
    # units are not compared (math-verify strips them)
    (B("6.4 \\text{ cm}^{-4}"), "6.4 \\text{ cm}^{-3}", False, "same number, different unit"),
]

#: pairs where math-verify's verdict differs from the human's: known limitations, with the reason
KNOWN_LIMITATIONS = {
    "truncated decimal is not exactly 1/3": "math-verify compares numbers rounded to 6 decimals (float_rounding=6), "
    "so a truncated repeating decimal with >= 7 digits is accepted",
    "interval vs set-builder (same set)": "math-verify does not convert set-builder notation {x | ...} to an interval",
    "same number, different unit": "math-verify removes units before comparing, so a wrong unit is not detected",
}


def _params():
    out = []
    for response, gold, verdict, note in PAIRS:
        marks = [pytest.mark.xfail(reason=KNOWN_LIMITATIONS[note], strict=True)] if note in KNOWN_LIMITATIONS else []
        out.append(pytest.param(response, gold, verdict, id=note, marks=marks))
    return out


def test_enough_labelled_pairs():
    assert len(PAIRS) >= 60
    assert len({n for *_, n in PAIRS}) == len(PAIRS), "notes are the test ids: keep them unique"
    assert set(KNOWN_LIMITATIONS) <= {n for *_, n in PAIRS}


@pytest.mark.parametrize(("response", "gold", "verdict"), _params())
def test_human_verdict(response: str, gold: str, verdict: bool):
    res = grade_one(response, gold)
    assert res.correct is verdict, res
    assert res.status in ("correct", "incorrect", "no_answer")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\boxed{1} and \\boxed{2}", "2"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("\\fbox{7} then \\boxed{8}", "8"),
        ("\\boxed{8} then \\fbox{7}", "7"),
        ("\\boxed 5 apples", "5"),
        ("\\boxed{a{b{c}}d}", "a{b{c}}d"),
        ("no box here", None),
        ("cut off \\boxed{1 + {2", None),
        ("\\boxed{}", None),
        ("\\boxedx{3}", None),
    ],
)
def test_extract_answer_boxed(text: str, expected: str | None):
    assert extract_answer(text) == expected


def test_extract_answer_modes():
    assert extract_answer("  85 ", "raw") == "85"
    assert extract_answer("", "raw") is None
    assert extract_answer("so x = 3", "math_verify") is not None
    with pytest.raises(ValueError):
        extract_answer("x", "nope")


def test_statuses():
    assert grade_one("\\boxed{3}", "3").status == "correct"
    assert grade_one("\\boxed{4}", "3").status == "incorrect"
    assert grade_one("3", "3").status == "no_answer"
    assert grade_one("\\boxed{\ud800}", "3").status == "error"  # lone surrogate
    assert grade_one("\\boxed{3}", "\ud800").status == "error"
    assert grade_one(None, "3").status == "error"  # type: ignore[arg-type]
    assert grade_one("\\boxed{" + "9" * 5000 + "}", "3").status == "error"  # runaway answer
    assert grade_one("\\boxed{3}", "3", extraction="bogus").status == "error"
    res = grade_one("\\boxed{x = 3}", "3")
    assert res.extracted == "x = 3" and res.correct


def test_math_verify_extraction_mode():
    assert grade_one("Therefore the answer is $\\frac{1}{2}$.", "0.5", extraction="math_verify").correct
    assert grade_one("no numbers at all", "0.5", extraction="math_verify").status == "no_answer"


def test_math_reward():
    assert math_reward("\\boxed{3}", "3") == 1.0
    assert math_reward("\\boxed{4}", "3") == 0.0
    assert math_reward("\\boxed{4}", "3", format_reward=0.1) == 0.1
    assert math_reward("4", "3", format_reward=0.1) == 0.0  # nothing extractable
    assert math_reward("\\boxed{\ud800}", "3", format_reward=0.1) == 0.0  # error: no format credit


def test_math_reward_off_main_thread():
    """Off the main thread math-verify's SIGALRM cannot be used: it must still grade, not raise."""
    import threading

    out = []
    t = threading.Thread(target=lambda: out.append(math_reward("\\boxed{\\frac{1}{2}}", "0.5")))
    t.start()
    t.join(30)
    assert out == [1.0]
