"""rlhf_eval.verify.equivalent: are two extracted answers the same answer under a verifier?"""
from __future__ import annotations

import importlib
import importlib.util
import itertools
import sys
import threading
import time

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
]
NUMERIC_DIFFERENT = [("18", "17"), ("0.5", "5"), ("-3", "3"), ("1/2", "2"), ("1000", "1,001")]


@pytest.mark.parametrize("a, b", NUMERIC_SAME)
def test_numeric_same(a, b):
    assert equivalent(a, b) and equivalent(b, a)
    assert equivalent(a, b, "numeric")


@pytest.mark.parametrize("a, b", NUMERIC_DIFFERENT)
def test_numeric_different(a, b):
    assert not equivalent(a, b) and not equivalent(b, a)


def test_numeric_agrees_with_verify():
    # Without LaTeX, equivalent(a, b) is exactly "a is judged correct against the reference b".
    # (A bare "\\frac{1}{2}" reference reads as 2 in verify; equivalent rewrites it to 1/2 first.)
    answers = [a for pair in NUMERIC_SAME + NUMERIC_DIFFERENT for a in pair if "\\" not in a]
    for a, b in itertools.product(answers, repeat=2):
        assert equivalent(a, b) == verify(a, b).correct, (a, b)


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
def test_math_timeout_is_not_equivalent(monkeypatch):
    import math_verify

    real_parse = math_verify.parse

    def slow_parse(*args, **kwargs):
        time.sleep(0.5)
        return real_parse(*args, **kwargs)

    monkeypatch.setattr(math_verify, "parse", slow_parse)
    assert equivalent("1", "1", "math", timeout=0.05) is False


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
