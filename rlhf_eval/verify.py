"""Decide whether a trace's final answer matches the reference.

`verify(text, reference, verifier, **options)` returns a `Verdict`: `correct`, `incorrect`, or
`unparsable` (no answer could be found at all, which is a different failure from a wrong answer
and is counted apart). The numeric extractor is checked against 1,600 human-labelled GSM8K model
solutions in tests/test_verify.py; change it only with that test green.
"""
from __future__ import annotations

import difflib
import functools
import math
import re
import string
import threading
from dataclasses import dataclass
from typing import Any, Callable

from .types import Verdict

__all__ = ["verify", "VERIFIERS", "VerifierError", "check_options", "extract_reference"]


class VerifierError(ValueError):
    """A configuration problem (bad verifier name, option, pattern or reference), never a model failure."""


# ---------------------------------------------------------------------------------------------
# Finding the final answer
# ---------------------------------------------------------------------------------------------

# A number as people and models write it: "$1,234.50", "-3", "−3", "3/4", "1.5e3", "25%".
# The lookbehind keeps "16-3" from reading as "-3" and stops matches inside words ("x2") or
# other numbers; the thousands group must be checked before the plain one so "1,000" is one number.
_NUMBER = re.compile(
    r"(?<![\w.])(?P<sign>[-−])?\\?\$?\s?"
    r"(?P<num>(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)"
    r"(?:[eE](?P<exp>[-+]?\d+))?"
    r"(?:\s?/\s?(?P<den>\d+(?:\.\d+)?))?"
)
_LATEX_FRAC = re.compile(r"\\[dt]?frac\{\s*([-−]?[\d.,]+)\s*\}\{\s*([\d.,]+)\s*\}")
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
# Both run on a lower-cased copy: re.I would disable the literal-prefix scan and cost ~10x.
_ANSWER_IS = re.compile(r"answer(?:\s+is\b\s*:?|\s*=)")
# "A: 18", "Answer: 18", "**Final Answer:** 18", "> answer: 18" at the start of a line; matched
# after a "\n" rather than with ^/re.M for the same reason.
_ANSWER_LINE = re.compile(r"\n[ \t>*#_]*(?:final[ \t]+)?a(?:nswer)?[ \t*_]*:[ \t*_]*")
_HASHES = "####"


def _boxed_contents(text: str) -> str | None:
    """The contents of the last `\\boxed{...}`, honouring nested braces."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    if not starts:
        return None
    depth, start = 1, starts[-1]
    for i in range(start, len(text)):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return text[start:]  # unclosed: take the rest rather than nothing


def _rest_of_line(text: str, start: int) -> str:
    end = text.find("\n", start)
    return text[start:] if end < 0 else text[start:end]


def _marked_segments(text: str):
    """Yield (marker, segment) for each final-answer marker present, strongest first."""
    i = text.rfind(_HASHES)
    if i >= 0:
        yield "####", _rest_of_line(text, i + len(_HASHES))
    boxed = _boxed_contents(text) if "\\" in text else None
    if boxed is not None:
        yield "boxed", boxed
    low = text.lower()
    if len(low) != len(text):  # "İ" lower-cases to two characters; keep offsets aligned
        low = text.replace("İ", "I").lower()
    last = None
    for last in _ANSWER_IS.finditer(low):
        pass
    if last is not None:
        yield "answer is", _rest_of_line(text, last.end())
    last = None
    for last in _ANSWER_LINE.finditer("\n" + low):
        pass
    if last is not None:
        yield "answer line", _rest_of_line(text, last.end() - 1)


def _number_value(m: re.Match) -> float:
    # Via float("1e999") rather than 10.0**999, which would raise instead of giving inf.
    value = float(m["num"].replace(",", "") + (f"e{m['exp']}" if m["exp"] else ""))
    if m["den"] and float(m["den"]):
        value /= float(m["den"])
    return -value if m["sign"] else value


def _latex_to_plain(segment: str) -> str:
    # Only boxed/LaTeX answers carry these; the checks keep plain text on the fast path.
    if "\\" in segment or "{" in segment:
        segment = _LATEX_FRAC.sub(r"\1/\2", segment).replace("{,}", ",").replace("\\,", ",")
    return segment


def _find_number(text: str) -> tuple[str, float, str] | None:
    """(as written, value, where found) for the final numeric answer in `text`, or None."""
    for marker, segment in _marked_segments(text):
        m = _NUMBER.search(_latex_to_plain(segment))
        if m:
            return m[0].strip(), _number_value(m), marker
    last = _last_number(text)
    return None if last is None else (last[0].strip(), _number_value(last), "last number")


def _last_number(text: str) -> re.Match | None:
    # Scanning a whole trace with _NUMBER costs ~50 us per KB; look just behind the last digit.
    end = max(map(text.rfind, "0123456789"))
    if end < 0:
        return None
    start = max(0, end - 64)
    last = None
    for last in _NUMBER.finditer(text, start):
        pass
    if last is not None and start > 0 and last.start() < start + 4:
        # The window may have cut into this number ("1,234,567" -> "567", "-$5" -> "$5").
        for last in _NUMBER.finditer(text):
            pass
    return last


def _find_text_answer(text: str) -> tuple[str, str] | None:
    """(answer, where found) for string verifiers: a marked segment, else the last non-empty line."""
    for marker, segment in _marked_segments(text):
        if segment.strip():
            return segment.strip(), marker
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip(), "last line"
    return None


_PUNCT = str.maketrans("", "", string.punctuation + "“”‘’…–—")
_SPACES = re.compile(r"\s+")


def _normalize(s: str, case_sensitive: bool, strip_punctuation: bool) -> str:
    if strip_punctuation:
        s = s.translate(_PUNCT)
    if not case_sensitive:
        s = s.casefold()
    return _SPACES.sub(" ", s).strip()


# ---------------------------------------------------------------------------------------------
# The verifiers
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _reference_number(reference: str) -> float:
    found = _find_number(reference)
    if found is None:
        raise VerifierError(f"numeric verifier: reference {reference!r} contains no number")
    return found[1]


def _numeric(text: str, reference: str, rel_tol: float = 1e-6, abs_tol: float = 1e-9) -> Verdict:
    want = _reference_number(reference)
    found = _find_number(text)
    if found is None:
        return Verdict("unparsable", None, "no number in the text")
    written, got, marker = found
    ok = math.isclose(got, want, rel_tol=rel_tol, abs_tol=abs_tol)
    return Verdict("correct" if ok else "incorrect", written, f"from {marker}")


def _exact(text: str, reference: str, case_sensitive: bool = False, strip_punctuation: bool = True) -> Verdict:
    found = _find_text_answer(text)
    got = _normalize(found[0], case_sensitive, strip_punctuation) if found else ""
    if not got:
        return Verdict("unparsable", None, "no answer in the text")
    ok = got == _normalize(reference, case_sensitive, strip_punctuation)
    return Verdict("correct" if ok else "incorrect", found[0], f"from {found[1]}")


_FLAGS = {"i": re.I, "m": re.M, "s": re.S, "x": re.X, "a": re.A}


@functools.lru_cache(maxsize=256)
def _compile(pattern: str, flags: str) -> re.Pattern:
    bad = set(flags) - set(_FLAGS)
    if bad:
        raise VerifierError(f"regex verifier: unknown flag(s) {''.join(sorted(bad))!r}; use any of 'imsxa'")
    try:
        return re.compile(pattern, functools.reduce(lambda a, f: a | _FLAGS[f], flags, 0))
    except re.error as e:
        raise VerifierError(f"regex verifier: bad pattern {pattern!r}: {e}") from None


def _regex(
    text: str,
    reference: str,
    pattern: str,
    flags: str = "",
    case_sensitive: bool = False,
    strip_punctuation: bool = True,
) -> Verdict:
    rx = _compile(pattern, flags)
    last = None
    for last in rx.finditer(text):
        pass
    if last is None:
        return Verdict("unparsable", None, "pattern did not match")
    if "answer" in rx.groupindex:
        got = last["answer"]
    else:
        got = last[1] if rx.groups else last[0]
    if got is None or not _normalize(got, case_sensitive, strip_punctuation):
        return Verdict("unparsable", None, "pattern matched but its answer group is empty")
    ok = _normalize(got, case_sensitive, strip_punctuation) == _normalize(reference, case_sensitive, strip_punctuation)
    return Verdict("correct" if ok else "incorrect", got, "")


@functools.lru_cache(maxsize=64)
def _choice_patterns(choices: str) -> list[tuple[str, re.Pattern]]:
    up = re.escape(choices.upper())
    both = re.escape(choices.upper() + choices.lower())
    return [
        ("boxed", re.compile(rf"\\boxed\s*\{{\s*(?:\\text(?:bf)?\{{)?\(?([{both}])\)?\}}")),
        # After "answer is" a bare letter must be upper case: "the answer is a lot" is not (A).
        ("answer is", re.compile(rf"(?i:\banswer(?:\s+is\b\s*:?|\s*:))[\s*_]*(?:\(([{both}])\)|([{up}])\b)")),
        ("(X) at end", re.compile(rf"\(([{both}])\)[\s.*_]*\Z")),
        ("last line", re.compile(rf"(?:\A|\n)[ \t*_]*\(?([{both}])\)?[ \t.*_]*\s*\Z")),
    ]


def _choice(text: str, reference: str, choices: str = "ABCDE") -> Verdict:
    want = reference.strip().strip("()").upper()
    for marker, rx in _choice_patterns(choices):
        last = None
        for last in rx.finditer(text):
            pass
        if last is not None:
            got = next(g for g in last.groups() if g)
            return Verdict("correct" if got.upper() == want else "incorrect", got, f"from {marker}")
    return Verdict("unparsable", None, "no choice letter found")


_MATH_DELIMITERS = re.compile(r"\$|\\\(|\\\[|\\boxed")
_PLAIN_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")


def _as_math_input(s: str) -> str:
    # math_verify only reads LaTeX inside delimiters: a bare "2\sqrt{2}" parses as 2. Wrap text
    # that is an expression on its own (no delimiters, no ordinary words) so it is read whole.
    if not _MATH_DELIMITERS.search(s) and not _PLAIN_WORD.search(s):
        return f"${s.strip()}$"
    return s


def _run_with_timeout(fn: Callable[[], Any], seconds: float | None) -> tuple[bool, Any]:
    """(finished, result). math_verify's own timeout uses signal.alarm, which only works on the
    main thread; a daemon thread works anywhere. A runaway sympy call cannot be killed, only
    abandoned, so it keeps a core busy until it ends — acceptable for a rare pathological input."""
    if not seconds:
        return True, fn()
    box: list = []

    def target():
        try:
            box.append((True, fn()))
        except BaseException as e:  # re-raised in the caller's thread
            box.append((False, e))

    worker = threading.Thread(target=target, name="rlhf-eval-math", daemon=True)
    worker.start()
    worker.join(seconds)
    if not box:
        return False, None
    ok, value = box[0]
    if not ok:
        raise value
    return True, value


def _math(text: str, reference: str, timeout: float | None = 10.0, float_rounding: int = 6, strict: bool = True) -> Verdict:
    try:
        import math_verify
    except ImportError:
        raise VerifierError("math verifier needs math-verify: pip install 'rlhf-eval[math]'") from None

    def parse(s: str):
        return math_verify.parse(_as_math_input(s), parsing_timeout=None)

    finished, gold = _run_with_timeout(lambda: parse(reference), timeout)
    if not finished:
        raise VerifierError(f"math verifier: parsing the reference {reference!r} timed out after {timeout}s")
    if not gold:
        raise VerifierError(f"math verifier: math_verify cannot parse the reference {reference!r}")
    finished, pred = _run_with_timeout(lambda: parse(text), timeout)
    if not finished:
        return Verdict("unparsable", None, f"math_verify parse timed out after {timeout}s")
    if not pred:
        return Verdict("unparsable", None, "math_verify found no answer")
    extracted = pred[-1] if isinstance(pred[-1], str) else str(pred[0])
    finished, ok = _run_with_timeout(
        lambda: math_verify.verify(gold, pred, float_rounding=float_rounding, strict=strict, timeout_seconds=None),
        timeout,
    )
    if not finished:
        return Verdict("incorrect", extracted, f"math_verify comparison timed out after {timeout}s")
    return Verdict("correct" if ok else "incorrect", extracted, "")


# ---------------------------------------------------------------------------------------------
# Registry, option checking, public entry points
# ---------------------------------------------------------------------------------------------

_NUM_T = (int, float)


@dataclass(frozen=True)
class Verifier:
    name: str
    run: Callable[..., Verdict]
    options: dict[str, tuple[type | tuple[type, ...], bool]]  # option -> (accepted types, required)

    def __call__(self, text: str, reference: str, **options: Any) -> Verdict:
        return verify(text, reference, self.name, **options)


VERIFIERS: dict[str, Verifier] = {
    v.name: v
    for v in (
        Verifier("numeric", _numeric, {"rel_tol": (_NUM_T, False), "abs_tol": (_NUM_T, False)}),
        Verifier("exact", _exact, {"case_sensitive": (bool, False), "strip_punctuation": (bool, False)}),
        Verifier(
            "regex",
            _regex,
            {"pattern": (str, True), "flags": (str, False), "case_sensitive": (bool, False), "strip_punctuation": (bool, False)},
        ),
        Verifier("choice", _choice, {"choices": (str, False)}),
        Verifier(
            "math",
            _math,
            {"timeout": (_NUM_T + (type(None),), False), "float_rounding": (int, False), "strict": (bool, False)},
        ),
    )
}


def _suggest(word: str, names) -> str:
    close = difflib.get_close_matches(word, list(names), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(names))}"


def _type_name(t) -> str:
    ts = t if isinstance(t, tuple) else (t,)
    return " or ".join("None" if x is type(None) else x.__name__ for x in ts)


def check_options(verifier: str, options: dict) -> None:
    """Raise VerifierError (one line) unless `verifier` with `options` would run."""
    v = VERIFIERS.get(verifier)
    if v is None:
        raise VerifierError(f"unknown verifier {verifier!r}{_suggest(str(verifier), VERIFIERS)}")
    for key, value in options.items():
        if key not in v.options:
            known = v.options or {"(none)": None}
            raise VerifierError(f"{verifier} verifier: unknown option {key!r}{_suggest(str(key), known)}")
        types, _ = v.options[key]
        # bool is an int subclass, but `rel_tol: true` is a mistake, not a tolerance of 1.
        if not isinstance(value, types) or (isinstance(value, bool) and types is not bool):
            raise VerifierError(
                f"{verifier} verifier: option {key!r} must be {_type_name(types)}, got {type(value).__name__} {value!r}"
            )
        if isinstance(value, _NUM_T) and not isinstance(value, bool) and value < 0:
            raise VerifierError(f"{verifier} verifier: option {key!r} must be >= 0, got {value!r}")
    for key, (_, required) in v.options.items():
        if required and key not in options:
            raise VerifierError(f"{verifier} verifier: option {key!r} is required")
    if verifier == "regex":
        _compile(options["pattern"], options.get("flags", ""))
    if verifier == "choice" and not (options.get("choices", "A").isalpha()):
        raise VerifierError(f"choice verifier: option 'choices' must be letters, got {options['choices']!r}")


def verify(text: str, reference: str, verifier: str = "numeric", **options: Any) -> Verdict:
    """Judge `text`'s final answer against `reference`; see the module docstring."""
    check_options(verifier, options)
    # Suites written in YAML give `answer: 18` as an int; a reference is text here.
    return VERIFIERS[verifier].run(text or "", str(reference), **options)


def extract_reference(answer: str, verifier: str = "numeric") -> str:
    """The bare reference from a dataset answer field: GSM8K's "...\\n#### 18" or "...\\nA: 18" -> "18".

    For other verifiers the stripped answer is returned unchanged."""
    answer = answer.strip()
    if verifier != "numeric":
        return answer
    i = answer.rfind(_HASHES)
    last_line = answer.rpartition("\n")[2]
    if i >= 0:
        answer = answer[i + len(_HASHES) :].strip()
    elif last_line.startswith("A:"):
        answer = last_line[2:].strip()
    # "1,000" and "$18" still verify as written; the bare digits are just easier to read in reports.
    if _NUMBER.fullmatch(answer):
        answer = answer.replace(",", "").replace("$", "").replace("\\", "").replace(" ", "")
    return answer


# ---------------------------------------------------------------------------------------------
# Equivalence of two extracted answers (for majority voting; see rlhf_eval.stats.answer_classes)
# ---------------------------------------------------------------------------------------------


def _equivalent_numeric(a: str, b: str, rel_tol: float = 1e-6, abs_tol: float = 1e-9) -> bool:
    # Each side is read the way a numeric reference is ("$18", "1,000", "1/2", "1.5e3", and
    # "\frac{1}{2}" via the same LaTeX rewrite boxed answers get), then compared as `_numeric` does.
    found_a = _find_number(_latex_to_plain(a))
    found_b = _find_number(_latex_to_plain(b))
    if found_a is None or found_b is None:
        return False
    return math.isclose(found_a[1], found_b[1], rel_tol=rel_tol, abs_tol=abs_tol)


def _equivalent_text(
    a: str, b: str, case_sensitive: bool = False, strip_punctuation: bool = True, pattern: str = "", flags: str = ""
) -> bool:
    # exact and regex: the answers are already extracted, so a regex's pattern/flags play no part.
    na = _normalize(a, case_sensitive, strip_punctuation)
    return bool(na) and na == _normalize(b, case_sensitive, strip_punctuation)


def _equivalent_choice(a: str, b: str, choices: str = "ABCDE") -> bool:
    la, lb = (s.strip().strip("()").strip().upper() for s in (a, b))
    return len(la) == 1 and la in choices.upper() and la == lb


def _equivalent_math(a: str, b: str, timeout: float | None = 10.0, float_rounding: int = 6, strict: bool = True) -> bool:
    try:
        import math_verify
    except ImportError:
        raise VerifierError("math verifier needs math-verify: pip install 'rlhf-eval[math]'") from None

    parsed = []
    for s in (a, b):
        # The same signal-free path `_math` uses: parsing_timeout=None inside a timed daemon thread.
        finished, p = _run_with_timeout(lambda s=s: math_verify.parse(_as_math_input(s), parsing_timeout=None), timeout)
        if not finished or not p:
            return False
        parsed.append(p)
    pa, pb = parsed
    for gold, pred in ((pa, pb), (pb, pa)):
        finished, ok = _run_with_timeout(
            lambda gold=gold, pred=pred: math_verify.verify(
                gold, pred, float_rounding=float_rounding, strict=strict, timeout_seconds=None
            ),
            timeout,
        )
        if not (finished and ok):
            return False
    return True


_EQUIVALENCE: dict[str, Callable[..., bool]] = {
    "numeric": _equivalent_numeric,
    "exact": _equivalent_text,
    "regex": _equivalent_text,
    "choice": _equivalent_choice,
    "math": _equivalent_math,
}


def equivalent(a: str, b: str, verifier: str = "numeric", **options: Any) -> bool:
    """Whether two *extracted* answers (`Verdict.extracted` strings) are the same answer under `verifier`.

    Takes the verifier's own options (a suite's `verifier_options` can be passed straight through;
    a regex `pattern` may be omitted, since the answers are already extracted):

    * numeric: both contain a number (read as a numeric reference is: "$18", "1,000", "1/2",
      "\\frac{1}{2}"; the final number if there are several) and the two are within
      `rel_tol`/`abs_tol` (`math.isclose`, as the verifier compares). So "18" ~ "18.0" ~ "$18", "0.5" ~ "1/2".
    * exact, regex: equal and non-empty after the verifier's normalisation (`case_sensitive`,
      `strip_punctuation`).
    * choice: the same single letter from `choices`, case and parentheses ignored: "c" ~ "(C)".
    * math: math_verify parses both (as `verify` does: signal-free, each step under `timeout`) and
      `math_verify.verify` holds in *both* directions (gold/prediction swapped), so the relation is symmetric.

    Unparsable input (None, empty, no number, no letter, math_verify finds nothing or times out)
    gives False, so such an answer is not even equivalent to itself. A bad verifier name or option
    raises VerifierError, as `verify` does. Numeric closeness is not transitive: group answers with
    `rlhf_eval.stats.answer_classes`, which compares each answer against each class's first member.
    """
    check_options(verifier, {"pattern": "", **options} if verifier == "regex" else options)
    if a is None or b is None:
        return False
    return _EQUIVALENCE[verifier](str(a), str(b), **options)


__all__.append("equivalent")
