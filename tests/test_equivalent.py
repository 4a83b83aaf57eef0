"""rlhf_eval.verify.equivalent: are two extracted answers the same answer under a verifier?"""
from __future__ import annotations

import importlib
import importlib.util
import itertools
import sys
import threading

import pytest

from rlhf_eval.verify import VerifierError, equivalent, verify

needs_math = pytest.mark.skipif(importlib.util.find_spec("math_verify") is None, reason="math-verify not installed")


def test_exported():
    # `rlhf_eval.verify` the attribute is the function; the module is in sys.modules.
    assert "equivalent" in importlib.import_module("rlhf_eval.verify").__all__


# --------------------------------------------------------------------------- numeric

NUMERIC_SAME = [
    ("18", "18.0"), ("18", "$18"), ("18.0", "$18"), ("$18", "\\$18"), ("0.5", "1/2"), ("\\frac{1}{2}", "0.5"),
    ("1,000", "1000"), ("-3", "−3"), ("-$5", "-5"), ("1.5e3", "1500"), (".5", "0.5"), ("25%", "25"),
    ("1 000", "1000"), ("1\\,000", "1,000"), ("2 1/2", "2.5"), ("2\\frac{1}{2}", "5/2"), ("\\dfrac12", "0.5"),
    ("-\\frac{3}{4}", "-0.75"), ("1.5 \\times 10^{3}", "1500"), ("3 × 10^2", "300"), ("2 million", "2000000"),
]
NUMERIC_DIFFERENT = [
    ("18", "17"), ("0.5", "5"), ("-3", "3"), ("1/2", "2"), ("1000", "1,001"), ("\\frac{1}{2}", "2"),
    ("1.5 \\times 10^{3}", "1.5"), ("2 1/2", "2"), ("3 boxes of 6", "36"),
]


@pytest.mark.parametrize("a, b", NUMERIC_SAME)
def test_numeric_same(a, b):
    assert equivalent(a, b) and equivalent(b, a)
    assert equivalent(a, b, "numeric")


@pytest.mark.parametrize("a, b", NUMERIC_DIFFERENT)
def test_numeric_different(a, b):
    assert not equivalent(a, b) and not equivalent(b, a)


def test_numeric_agrees_with_verify():
    # equivalent(a, b) is exactly "a is judged correct against the reference b": both sides are read
    # the same way, LaTeX ("\\frac{1}{2}", "1.5 \\times 10^{3}") included.
    answers = [a for pair in NUMERIC_SAME + NUMERIC_DIFFERENT for a in pair]
    for a, b in itertools.product(answers, repeat=2):
        assert equivalent(a, b) == verify(a, b).correct, (a, b)


def test_numeric_number_words():
    # An extracted answer is the statement a marker introduced ("The answer is twelve."), where a
    # number word counts; as a bare reference a word is still no number (verify raises).
    assert equivalent("twelve", "12") and equivalent("twenty-five", "25.0") and equivalent("one hundred", "100")
    assert not equivalent("twelve", "13")
    assert verify("The answer is twelve.", "12").extracted == "twelve"


def test_numeric_tolerances():
    assert not equivalent("100", "100.5")
    assert equivalent("100", "100.5", rel_tol=0.01)
    assert equivalent("0", "1e-12")  # default abs_tol 1e-9
    assert not equivalent("0", "0.001")
    assert equivalent("0", "0.001", abs_tol=0.01)


@pytest.mark.parametrize("a, b", [("abc", "abc"), ("", ""), (None, "18"), ("18", None), (None, None), ("x", "18")])
def test_numeric_unparsable_is_false(a, b):
    assert equivalent(a, b) is False


# --------------------------------------------------------------------------- exact / regex


def test_exact():
    assert equivalent("Paris", "paris.", "exact")
    assert equivalent("  New   York ", "new york", "exact")
    assert not equivalent("Paris", "paris", "exact", case_sensitive=True)
    assert not equivalent("paris.", "paris", "exact", strip_punctuation=False)
    assert not equivalent("Paris", "London", "exact")
    assert not equivalent("", "", "exact")
    assert not equivalent("...", "!", "exact")  # nothing left after normalisation: unparsable


def test_regex_takes_the_verifier_options():
    options = {"pattern": r"ANSWER: (\w+)", "flags": "i"}
    assert equivalent("Yes", "yes", "regex", **options)
    assert equivalent("Yes", "yes!", "regex")  # the pattern is optional here
    assert not equivalent("Yes", "yes", "regex", case_sensitive=True)
    assert not equivalent("yes", "no", "regex", **options)


# --------------------------------------------------------------------------- choice


def test_choice():
    assert equivalent("c", "C", "choice")
    assert equivalent("(B)", "b", "choice")
    assert not equivalent("A", "B", "choice")
    assert not equivalent("F", "F", "choice")  # not one of the default choices ABCDE
    assert equivalent("F", "f", "choice", choices="ABCDEF")
    assert not equivalent("", "", "choice")
    assert not equivalent("AB", "AB", "choice")
    assert equivalent("**C**", "c", "choice") and equivalent("$A$", "(a)", "choice")
    assert equivalent("J", "j", "choice", choices="ABCDEFGHIJ")


# --------------------------------------------------------------------------- math


@needs_math
@pytest.mark.parametrize("a, b", [
    ("\\frac{1}{2}", "0.5"), ("1/2", "0.5"), ("x+1", "1+x"), ("\\sqrt{2}", "2^{1/2}"), ("$\\frac{3}{4}$", "0.75"),
])
def test_math_same(a, b):
    assert equivalent(a, b, "math") and equivalent(b, a, "math")


@needs_math
@pytest.mark.parametrize("a, b", [("1", "2"), ("(0,1]", "[0,1]"), ("\\pi", "3.14159"), ("", ""), ("", "1")])
def test_math_different_or_unparsable(a, b):
    assert not equivalent(a, b, "math")


@needs_math
def test_math_off_the_main_thread():
    result = []
    worker = threading.Thread(target=lambda: result.append(equivalent("\\frac{1}{2}", "0.5", "math")))
    worker.start()
    worker.join(60)
    assert result == [True]


@needs_math
def test_math_timeout_is_not_equivalent():
    # A real hang: parsing makes sympy expand 9^387420489. The worker is killed at the timeout.
    assert equivalent("\\gcd(9^{9^{9}}, 6)", "3", "math", timeout=0.5) is False
    assert equivalent("1", "1", "math", timeout=5)


def test_math_missing_dependency(monkeypatch):
    monkeypatch.setitem(sys.modules, "math_verify", None)
    with pytest.raises(VerifierError, match=r"pip install 'rlhf-eval\[math\]'"):
        equivalent("1", "1", "math")


# --------------------------------------------------------------------------- configuration errors


def test_bad_verifier_or_option():
    with pytest.raises(VerifierError, match="unknown verifier"):
        equivalent("1", "1", "numerik")
    with pytest.raises(VerifierError, match="unknown option"):
        equivalent("1", "1", "numeric", rel_tolerance=0.1)
    with pytest.raises(VerifierError, match="must be"):
        equivalent("1", "1", "numeric", rel_tol="0.1")
    with pytest.raises(VerifierError, match="bad pattern"):
        equivalent("a", "a", "regex", pattern="(")
