"""Decide whether a trace's final answer matches the reference.

`verify(text, reference, verifier, **options)` returns a `Verdict`: `correct`, `incorrect`, or
`unparsable` (no answer could be found at all, which is a different failure from a wrong answer
and is counted apart). The numeric extractor is checked against 1,600 human-labelled GSM8K model
solutions in tests/test_verify.py; change it only with that test green. Every other reading has a
case in tests/verifier_corpus.yaml, each naming the kind of fault it guards against.

Where the answer is read, strongest first: the line after the last `####`, the last `\\boxed{}`,
the statement after the last "answer is" / "answer =", the last "Answer:" / "A:" line; for
`numeric` then the last number in the text, for `exact` the last non-empty line. After a marker
the answer is the first number of the *statement* the marker introduces: up to the end of its
sentence, parenthetical asides skipped ("The answer is 18 (3 boxes of 6)." reads 18), and a
number word counts there ("The answer is twelve dollars." reads 12).

A number is read as people and models write it: "$1,234.50", "-3", "−3", "3/4", "25%" (as 25),
"1.5e3", "1.5 \\times 10^{3}", "3 × 10^2", "1.5 × 10³", "2^{10}", "5²", "2**10", "2 million",
"3 dozen"; thousands groups split by commas, "{,}", "\\," or (thin, no-break, figure) spaces
("1 000 000": only groups of exactly three digits after a head of one to three join, so "3 boxes
of 6" and "1 2 3" stay apart); LaTeX fractions anywhere ("\\frac{1}{2}", "\\dfrac12",
"-\\frac{3}{4}", "\\frac{-3}{4}"), "¾", and mixed numbers ("2 1/2", "2\\frac{1}{2}", "2½" = 2.5;
an improper one such as "4 10/3" reads as no value and so never matches). Number words
("twelve", "twenty-five", "one hundred and five", "two dozen", "three quarters") count only in a
statement a marker introduces, where a word opening the statement, or standing in one with no
numeral, is its answer. A reference is read the same way as a trace, so `\\frac{1}{2}`, `1 000`
or `2.5e3` work as references.

`exact` takes the statement after the marker (else the last non-empty line) and accepts it, its
whole line, or it without asides ("Paris (the capital)."), when equal to the reference after
normalisation. `choice` reads, strongest first: a letter opening the last box ("\\boxed{D: text}",
"\\boxed{\\text{(C)}}"); the statement after the last "answer is" / "Answer:" / "the correct
option is" / "I choose" (or "Option (B) is correct"); a line that is a letter alone ("**B**");
the last line's "(B)" or "C) 40 km/h". Only a letter written as a token of its own counts:
"Because" is not B, "the answer is a lot" is not A, "I think it's D" is D. A choice reference is
read the same way and must name one of `choices`.

Every extraction pattern runs in time linear in the text (tests/test_verifier_linear_time.py);
a `regex` verifier's own pattern is the suite author's to keep so. The `math` verifier runs
math-verify in a separate worker process, so a timeout really stops a runaway sympy computation
(the worker is killed and replaced).
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import difflib
import functools
import importlib.util
import inspect
import math
import re
import string
import types
import typing
import unicodedata
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar

from .math_worker import MathWorkerError, math_call
from .registry import Registry, check_name, exception_line, origin_of, suggest
from .types import Verdict

__all__ = ["verify", "verifier", "Verifier", "VERIFIERS", "VerifierError", "check_options", "prepared_options",
           "extract_reference"]

F = TypeVar("F", bound=Callable[..., Any])


class VerifierError(ValueError):
    """A configuration problem (bad verifier name, option, pattern or reference), never a model failure."""


# ---------------------------------------------------------------------------------------------
# Reading a number
# ---------------------------------------------------------------------------------------------
#
# Linear time: every repetition that can meet a long run of the same character is either
# possessive (*+, ++) or followed by something that run cannot contain, and no token spans a
# newline, so a failed attempt never re-scans more than the run in front of it.


_VULGAR = "½⅓⅔¼¾⅕⅖⅗⅘⅙⅚⅛⅜⅝⅞"  # "2½" is 2.5, "¾" is 0.75


def _frac(num: str, den: str) -> str:
    # \frac{1}{2}, \dfrac12, \frac{-3}{4}, \tfrac{1,000}{3}; anything else in the braces is not a number.
    arg = r"\{{[ \t]*+(?P<{0}>[-−]?\d[\d,]*+(?:\.\d+)?)[ \t]*+\}}|(?P<{0}1>\d)"
    return rf"\\(?:[dtcs]?frac|nicefrac)[ \t]*+(?:{arg.format(num)})[ \t]*+(?:{arg.format(den)})"


# The lookbehind keeps "16-3" from reading as "-3" and stops matches inside words ("x2") or
# other numbers. Thousands groups are tried before plain digits so "1,000" is one number; a
# space-separated group must not run on into "-packs" or "/3" ("3 100-packs", "2 100/3").
_NUMBER = re.compile(
    # The leading lookahead is only for speed: it rejects most positions with one set test.
    r"(?=[-−$\\\d." + _VULGAR + r"])(?<![\w.])(?P<sign>[-−])?(?:\\?\$[ \t]?(?=[\d." + _VULGAR + r"]))?"
    r"(?:" + _frac("fn", "fd") +
    r"|(?P<int>"
    r"\d{1,3}(?P<csep>,|\{,\}|\\,)\d{3}(?:(?P=csep)\d{3})*(?!\d)"
    r"|\d{1,3}(?P<ssep>[ \u00a0\u2007\u2009\u202f]|\\ )\d{3}(?:(?P=ssep)\d{3})*(?!\d)(?!-[A-Za-z])(?![ \t]?/)"
    r"|\d+)"
    r"(?:(?P<mixed>[ \t\u00a0](?P<mn>\d+)[ \t]?/[ \t]?(?P<md>\d+)(?!\d|[.,]\d)|[ \t]*+" + _frac("mfn", "mfd") + r")"
    r"|(?P<dec>\.\d+)|[ \t]?(?P<vulgar>[" + _VULGAR + r"]))?"
    r"|(?P<lead>\.\d+)|(?P<vlead>[" + _VULGAR + r"])"
    r")"
    r"(?:[eE](?P<exp>[-+]?\d+)"
    r"|[ \t]*+(?:\\times|×|\\cdot|·|\*|x|X)[ \t]*+10"
    r"(?:[ \t]*+(?:\^|\*\*)[ \t]*+(?:\{[ \t]*+(?P<e10>[-−+]?\d+)[ \t]*+\}|(?P<e10b>[-−+]?\d+))"
    r"|(?P<e10s>⁻?[⁰¹²³⁴⁵⁶⁷⁸⁹]+))"
    r"|(?:\^|\*\*)[ \t]*+(?:\{[ \t]*+(?P<pw>[-−+]?\d+)[ \t]*+\}|(?P<pwb>\d+))|(?P<pws>[⁰¹²³⁴⁵⁶⁷⁸⁹]+))?"
    r"(?:[ \t]?/[ \t]?(?P<den>\d+(?:\.\d+)?))?"
    r"(?:[ \t\u00a0]++(?P<scale>(?i:hundred|thousand|million|billion|trillion|dozen))\b(?!-))?"
)
_SCALES = {"hundred": 1e2, "thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12, "dozen": 12.0}
_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")
_NON_DIGITS = re.compile(r"\D")
_DIGITS = "0123456789" + _VULGAR
_CONTINUATIONS = ("x", "hundred", "thousand", "million", "billion", "trillion", "dozen")
# Characters no number token contains: a window for the last number may start after one.
_HARD_BREAKS = "=():;!?<>[]|\"'%"


def _float(s: str) -> float:
    return float(s.replace(",", "").replace("−", "-"))


def _ratio(num: str, den: str) -> float:
    d = _float(den)
    return _float(num) / d if d else math.nan


def _scaled(value: float, exponent: str) -> float:
    # float("1e999") gives inf where 10.0**999 would raise.
    return value * float(f"1e{int(exponent.replace('−', '-'))}") if value else 0.0


def _number_value(m: re.Match) -> float:
    """The value of a `_NUMBER` match; NaN (equal to nothing) for an improper mixed number."""
    token = m[0]
    if token.isdecimal():  # most answers: one read instead of fourteen group look-ups
        return float(token)
    exp = m["exp"] or m["e10"] or m["e10b"] or (m["e10s"] and m["e10s"].translate(_SUPERSCRIPTS))
    if m["fn"] is not None or m["fn1"] is not None:
        value = _ratio(m["fn"] or m["fn1"], m["fd"] or m["fd1"])
    elif m["lead"] is not None:
        value = float(m["lead"])
    elif m["vlead"] is not None:
        value = unicodedata.numeric(m["vlead"])
    elif m["vulgar"] is not None:
        value = float(_NON_DIGITS.sub("", m["int"])) + unicodedata.numeric(m["vulgar"])
    elif m["mixed"] is not None:
        part = _ratio(m["mn"] or m["mfn"] or m["mfn1"], m["md"] or m["mfd"] or m["mfd1"])
        # "2 1/2" is 2.5, but "4 10/3" is not a mixed number: reading it as 4 or as 10/3
        # would each be a guess that could match a reference by accident.
        value = float(_NON_DIGITS.sub("", m["int"])) + part if 0 <= part < 1 else math.nan
    else:
        mantissa = _NON_DIGITS.sub("", m["int"]) + (m["dec"] or "")
        if exp is not None:
            # One float() of the decimal string, so "1.5e3" and "1.5 \times 10^3" read exactly 1500.
            mantissa, exp = f"{mantissa}e{int(exp.replace('−', '-'))}", None
        value = float(mantissa)
    if exp is not None:
        value = _scaled(value, exp)
    power = m["pw"] or m["pwb"] or (m["pws"] and m["pws"].translate(_SUPERSCRIPTS))
    if power:
        try:
            value = math.pow(value, int(power.replace("−", "-")))
        except (OverflowError, ValueError, ZeroDivisionError):
            value = math.inf
    if m["den"]:
        d = float(m["den"])
        if d:
            value /= d
    if m["scale"]:
        value *= _SCALES[m["scale"].lower()]
    return -value if m["sign"] else value


_FRAC_TEXT = re.compile(r"(?<![ \t])(\d?)[ \t]*+\\(?:[dtcs]?frac|nicefrac)"
                        r"[ \t]*+(?:\{[ \t]*+([^{}\s]*)[ \t]*+\}|(\d))[ \t]*+(?:\{[ \t]*+([^{}\s]*)[ \t]*+\}|(\d))")


def _plain_frac(m: re.Match) -> str:
    ratio = f"{m[2] or m[3]}/{m[4] or m[5]}"
    return f"{m[1]} {ratio}" if m[1] else ratio


def _written(token: str) -> str:
    """A number token as a reader would write it: LaTeX fractions and separators made plain."""
    if "\\" in token or "{" in token:
        token = _FRAC_TEXT.sub(_plain_frac, token).replace("{,}", ",").replace("\\,", ",").replace("\\ ", " ")
    return token.strip()


# Number words, read only in a statement a marker introduces ("The answer is twelve.").
_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), start=2)}
_TENS["fourty"] = 40
_BIG = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12}
_PARTS = {"half": 2, "halves": 2, "third": 3, "thirds": 3, "quarter": 4, "quarters": 4, "fourth": 4, "fourths": 4,
          "fifth": 5, "fifths": 5, "sixth": 6, "sixths": 6, "seventh": 7, "sevenths": 7, "eighth": 8, "eighths": 8,
          "ninth": 9, "ninths": 9, "tenth": 10, "tenths": 10}
_WORD = "|".join(sorted([*_UNITS, *_TENS, "hundred", "dozen", *_BIG], key=len, reverse=True))
_NUMBER_WORDS = re.compile(
    rf"(?<![\w\\-])(?:(?P<neg>minus|negative)[ \t]++)?"
    rf"(?P<words>(?:a[ \t]++(?=(?:hundred|thousand|million|billion|dozen)\b))?(?:{_WORD})\b"
    rf"(?:(?:[ \t]++(?:and[ \t]++)?|-)(?:{_WORD})\b)*+)"
    rf"(?:[ \t-](?P<part>{'|'.join(sorted(_PARTS, key=len, reverse=True))})\b"
    rf"|(?P<half>[ \t]++and[ \t]++a[ \t]++half)\b)?"
)
_WORD_TOKEN = re.compile(r"[a-z]+")
# "the one", "each one", "one of them" are pronouns, not the number 1.
_NOT_ONE_BEFORE = re.compile(r"\b(?:the|this|that|which|each|every|any|no|some)[ \t]++$")
_NOT_ONE_AFTER = re.compile(r"[ \t]++(?:of|another|by)\b")
# What may stand before a number word that opens a statement: markup, "is", "exactly", ...
_OPENER = re.compile(
    r"(?:[\W_]|\\[a-z]+|\b(?:is|was|be|exactly|about|approximately|around|roughly|just|only|precisely|"
    r"then|therefore|thus|so|that|a total of|total of|in total|equals?|of|final|answer)\b)*+",
)


def _words_value(words: list[str]) -> tuple[float, int]:
    """(value, how many words it used) for the longest prefix of `words` that is one number."""
    total, current, last, prev_big, used = 0, 0, None, None, 0
    for i, w in enumerate(words):
        if w == "and":
            if last in ("hundred", "big"):
                continue
            break
        if w == "a":
            current, last = 1, "unit"
        elif w in _UNITS:
            v = _UNITS[w]
            if v < 10 and last == "tens" and current % 10 == 0 and v:
                current += v
            elif last in (None, "hundred", "big"):
                current += v
            else:
                break
            last = "unit" if v < 10 else "teen"
        elif w in _TENS:
            if last not in (None, "hundred", "big"):
                break
            current, last = current + _TENS[w], "tens"
        elif w == "dozen":
            if last not in ("unit", "teen", "tens") or not 0 < current < 100:
                break
            current, last = current * 12, "hundred"
        elif w == "hundred":
            if last not in ("unit", "teen", "tens") or not 0 < current < 100:
                break
            current, last = current * 100, "hundred"
        elif w in _BIG:
            scale = _BIG[w]
            if last not in ("unit", "teen", "tens", "hundred") or not current or (prev_big and scale >= prev_big):
                break
            total, current, last, prev_big = total + current * scale, 0, "big", scale
        else:
            break
        used = i + 1
    return float(total + current), used


def _first_number_word(s: str, limit: int, opener_only: bool) -> tuple[str, float, int] | None:
    """(as written, value, start) of the first number word in `s[:limit]`."""
    prefix = s[:limit]
    low = _lower(prefix)
    if low == prefix.upper():  # no letters at all: the common "A: 18"
        return None
    pos = 0
    while True:
        m = _NUMBER_WORDS.search(low, pos)
        if m is None:
            return None
        # Once a word has been passed over the prefix holds it, so only the first can open.
        if opener_only and (pos or _OPENER.fullmatch(low, 0, m.start()) is None):
            return None
        tokens = list(_WORD_TOKEN.finditer(m["words"]))
        value, used = _words_value([t[0] for t in tokens])
        end = m.start("words") + tokens[used - 1].end() if used else m.start("words")
        if used == 1 and tokens[0][0] == "one" and (
            _NOT_ONE_BEFORE.search(low, max(0, m.start() - 16), m.start()) or _NOT_ONE_AFTER.match(low, end)
        ):
            pos = m.end()
            continue
        if used:
            if m["part"] and used == len(tokens):
                value /= _PARTS[m["part"]]
                end = m.end()
            elif m["half"] and used == len(tokens):
                value += 0.5
                end = m.end()
            return s[m.start():end], -value if m["neg"] else value, m.start()
        pos = m.end()


def _first_number(s: str) -> tuple[str, float] | None:
    """(as written, value) of the first number in a statement. A number word counts when it opens
    the statement or when the statement has no numeral: "twelve dollars (3 coins)" reads 12, but
    "each of the two friends gets 18" reads 18."""
    m = _NUMBER.search(s)
    word = _first_number_word(s, m.start() if m else len(s), opener_only=m is not None)
    if word is not None:
        return word[0], word[1]
    if m is None:
        return None
    return _written(m[0]), _number_value(m)


# ---------------------------------------------------------------------------------------------
# Finding the final answer
# ---------------------------------------------------------------------------------------------

_BOXED = re.compile(r"\\(?:boxed|fbox)[ \t\n]*+\{")
_BRACE = re.compile(r"[{}]")
# Both run on a lower-cased copy: re.I would disable the literal-prefix scan and cost ~10x.
_ANSWER_IS = re.compile(r"answer(?:\s++is\b\s*+:?|\s*+=)")
# "A: 18", "Answer: 18", "**Final Answer:** 18", "> answer: 18" at the start of a line; matched
# after a "\n" rather than with ^/re.M for the same reason.
_ANSWER_LINE = re.compile(r"\n[ \t>*#_]*+(?:final[ \t]++)?a(?:nswer)?[ \t*_]*+:[ \t*_]*+")
_HASHES = "####"
# A statement ends at a sentence end or the line end; "1.5" and "approx." inside it do not end it
# early enough to matter because a statement with no number falls back to its whole line.
_SENTENCE_END = re.compile(r"[.!?;](?=\s|\Z)|\n")
# The lookbehind starts a match only at the start of a run of spaces: from inside it, a failed
# match would re-scan the rest of the run (quadratic on "18" + 20,000 spaces + "x (1)").
_ASIDE = re.compile(r"(?<![ \t])[ \t]*+\([^()\n]*+\)")


def _last(matches: Iterator[re.Match]) -> re.Match | None:
    """The last of `matches` (None if there is none), without keeping the others."""
    tail = collections.deque(matches, maxlen=1)
    return tail[0] if tail else None


def _boxed_contents(text: str) -> str | None:
    """The contents of the last `\\boxed{...}`, honouring nested braces."""
    last = _last(_BOXED.finditer(text))
    if last is None:
        return None
    depth, start = 1, last.end()
    for b in _BRACE.finditer(text, start):
        depth += 1 if b[0] == "{" else -1
        if depth == 0:
            return text[start : b.start()]
    return text[start:]  # unclosed: take the rest rather than nothing


def _rest_of_line(text: str, start: int) -> str:
    end = text.find("\n", start)
    return text[start:] if end < 0 else text[start:end]


def _lower(text: str) -> str:
    low = text.lower()
    if len(low) != len(text):  # "İ" lower-cases to two characters; keep offsets aligned
        low = text.replace("İ", "I").lower()
    return low


def _marked_segments(text: str):
    """Yield (marker, segment) for each final-answer marker present, strongest first."""
    i = text.rfind(_HASHES)
    if i >= 0:
        yield "####", _rest_of_line(text, i + len(_HASHES))
    boxed = _boxed_contents(text) if "\\" in text else None
    if boxed is not None:
        yield "boxed", boxed
    low = _lower(text)
    last = _last(_ANSWER_IS.finditer(low))
    if last is not None:
        yield "answer is", _rest_of_line(text, last.end())
    last = _last(_ANSWER_LINE.finditer("\n" + low))
    if last is not None:
        yield "answer line", _rest_of_line(text, last.end() - 1)


def _statement(segment: str) -> str:
    """The statement a marker introduces: its segment up to the end of the first sentence."""
    end = _SENTENCE_END.search(segment)
    return segment if end is None else segment[: end.end()]


def _statement_readings(segment: str) -> list[str]:
    """What to read after a marker, best first: the statement without asides, the statement, the line."""
    statement = _statement(segment)
    readings = [_ASIDE.sub("", statement), statement] if "(" in statement else [statement]
    if len(statement) < len(segment):
        readings.append(segment)
    return readings


def _find_number(text: str) -> tuple[str, float, str] | None:
    """(as written, value, where found) for the final numeric answer in `text`, or None."""
    bare = text.strip()
    if not bare or bare.isdecimal():  # an empty text, or a bare reference such as "18": most of them
        return (bare, float(bare), "last number") if bare else None
    for marker, segment in _marked_segments(text):
        bare = segment.strip()
        if bare.isdecimal():  # "A: 18", most answers: the full reading would give the same
            return bare, float(bare), marker
        for reading in (segment,) if marker == "boxed" else _statement_readings(segment):
            found = _first_number(reading)
            if found is not None:
                return found[0], found[1], marker
    last = _last_number(text)
    return None if last is None else (_written(last[0]), _number_value(last), "last number")


def _window_start(text: str, line_start: int, lo: int) -> int:
    """The last point at or before `lo` that no number token straddles."""
    floor = max(line_start, lo - 256)
    i = lo
    # A space then a word, except the words that continue a token ("3 x 10^2", "2 million").
    while (i := text.rfind(" ", floor, i)) >= 0:
        if text[i + 1].isalpha() and not text[i + 1 : i + 9].lower().startswith(_CONTINUATIONS):
            return i + 1
    # A character no token contains; failing one nearby, the last on the line (linear either way).
    cut = max(text.rfind(c, floor, lo) for c in _HARD_BREAKS)
    if cut < 0 and floor > line_start:
        cut = max(text.rfind(c, line_start, floor) for c in _HARD_BREAKS)
    return max(line_start, cut + 1)


def _last_number(text: str) -> re.Match | None:
    # Scanning a whole trace with _NUMBER costs ~200 us per KB of arithmetic; scan only from the
    # last point before the last digit that no token straddles (tokens never span lines either).
    end = max(map(text.rfind, _DIGITS))
    if end < 0:
        return None
    start = text.rfind("\n", 0, end) + 1
    if end - start > 32:
        start = _window_start(text, start, end)
    last = _last(_NUMBER.finditer(text, start))
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
    if found is None:
        return Verdict("unparsable", None, "no answer in the text")
    segment, marker = found
    want = _normalize(reference, case_sensitive, strip_punctuation)
    # The statement the marker introduces is the answer ("Paris. (I checked twice.)" is "Paris."),
    # but its whole line still counts, so an answer with a full stop inside ("St. Louis") is not
    # cut short, and an aside may be dropped ("Paris (the capital)." is "Paris").
    statement = _statement(segment).strip()
    first = None
    for reading in dict.fromkeys(r.strip() for r in (statement, *_statement_readings(segment))):
        got = _normalize(reading, case_sensitive, strip_punctuation)
        if got and got == want:
            return Verdict("correct", reading, f"from {marker}")
        if got and first is None:
            first = reading
    if first is None:
        return Verdict("unparsable", None, "no answer in the text")
    return Verdict("incorrect", first, f"from {marker}")


_FLAGS = {"i": re.I, "m": re.M, "s": re.S, "x": re.X, "a": re.A}


@functools.lru_cache(maxsize=256)
def _compile(pattern: str, flags: str) -> re.Pattern:
    bad = set(flags) - set(_FLAGS)
    if bad:
        raise VerifierError(f"unknown flag(s) {''.join(sorted(bad))!r}; use any of 'imsxa'")
    try:
        return re.compile(pattern, functools.reduce(lambda a, f: a | _FLAGS[f], flags, 0))
    except re.error as e:
        raise VerifierError(f"bad pattern {pattern!r}: {e}") from None


def _regex(
    text: str,
    reference: str,
    pattern: str,
    flags: str = "",
    case_sensitive: bool = False,
    strip_punctuation: bool = True,
) -> Verdict:
    rx = _compile(pattern, flags)
    last = _last(rx.finditer(text))
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


# --------------------------------------------------------------------------------------- choice
#
# A letter counts only as a token of its own: never inside a word ("Because" is not B), never a
# lower-case "a" in running prose ("the answer is a lot"), never the article "A" or pronoun "I"
# in front of an ordinary word ("A car...", "I think it's D" is D).

# Statement markers, on a lower-cased copy: "answer is", "Answer:", "**Answer**: ", "the correct
# option is", "the best choice would be", "Final choice:", "I choose", "I'd go with", "I'm going with".
_CHOICE_MARKER = re.compile(
    r"\banswer(?:[ \t*_]*+(?:is|(?:would|should|must|will|(?:seems|appears)[ \t]++to)[ \t]++be)\b[ \t]*+:?"
    r"|[ \t*_]*+(?:[:=]|[-–—](?=[ \t])))"
    r"|\b(?:option|choice|letter)(?:[ \t*_]++(?:is|would[ \t]++be|should[ \t]++be|must[ \t]++be)\b[ \t]*+:?|[ \t*_]*+:)"
    r"|\b(?:i|we)(?:'d|'ll|[ \t]++(?:would|will|must|should|shall))?[ \t]++"
    r"(?:choose|chose|pick|picked|select|selected|go[ \t]++with|opt[ \t]++for)\b"
    r"|\b(?:i'm|i[ \t]++am|we're|we[ \t]++are)[ \t]++(?:going[ \t]++with|choosing|picking|selecting)\b"
)
# "Option (B) is correct", "choice C is the right answer".
_OPTION_IS_CORRECT = re.compile(
    r"\b(?:option|choice)[ \t]*+\(?([a-z])\)?[ \t]++is[ \t]++(?:the[ \t]++)?(?:correct|right|best|answer)\b"
)
_LETTER = re.compile(r"(?<![A-Za-z0-9\\'’])"
                     r"(?:\(([A-Za-z])\)|\[([A-Za-z])\]|([A-Za-z])(?![A-Za-z0-9'’]|\.[A-Za-z]|-[A-Za-z]))")
# After an article/pronoun-looking "A"/"I" these words still make it a letter: "A because...".
_LETTER_THEN = frozenset("because since as is was fits matches seems and or but which with given best here".split())
_NEXT_WORD = re.compile(r"[ \t]++([a-z]+)")
# A statement that is nothing but one letter (lower case allowed): "b", "(c).", "**d**", "$A$",
# "\textbf{B}", "option b".
_ONLY_LETTER = re.compile(
    r"[\s*_$:>#(\[{]*+(?:\\(?:text(?:bf|rm)?|mathrm|mathbf|bf)[ \t]*+\{[ \t]*+)?(?:(?:option|choice|letter)[ \t]++)?"
    r"\(?([A-Za-z])\)?[ \t]*+\}?[\s*_$.!)\]}:]*+",
    re.I,
)
# A box holds a letter only at its start, "D: text", "\text{(C)}", "c": a letter inside boxed
# mathematics ("\langle H\rangle \ll \Delta E", "E = mc^2") is not a choice.
_BOXED_LETTER = re.compile(
    r"[\s*_$]*+(?:\\(?:text(?:bf|rm)?|mathrm|mathbf|bf)[ \t]*+\{[ \t]*+)?(?:(?:option|choice)[ \t]++)?"
    r"[(\[]?([A-Za-z])[)\]]?(?![A-Za-z0-9'’\\]|\.[A-Za-z]|[ \t]*+[-=+*/^<>])",
    re.I,
)
# A line that is a letter alone: "C", "**B**", "(C).", "\textbf{B}", "$A$", "Option C".
_LONE_LETTER_LINE = re.compile(
    r"^[ \t>*_#$]*+(?:\\(?:text(?:bf|rm)?|mathrm|mathbf|bf)[ \t]*+\{[ \t]*+)?(?:(?i:option|choice)[ \t]++)?"
    r"\(?([A-Za-z])\)?[ \t]*+\}?[ \t.*_$:]*+$",
    re.M,
)
# The final line written as an option: "C) 40 km/h", "(C) 40 km/h", "C. 40 km/h", "C: 40".
_OPTION_LINE = re.compile(r"[ \t>*_#-]*+(?:\(([A-Za-z])\)|([A-Z])[.:)]|([a-z])\))(?=\s|\Z)")
_PAREN_LETTER = re.compile(r"\(([A-Za-z])\)")
_REJECTED_BEFORE = re.compile(
    r"\b(?:not|nor|than|over|unlike|except|eliminate|eliminating|excluding|rule[ \t]++out)[ \t]*+$")
_REJECTED_AFTER = re.compile(
    r"[ \t]*+(?:(?:is|are|was|were)[ \t]++(?:wrong|incorrect|false|not|ruled[ \t]++out)|isn't|can't|cannot)\b")
_STATEMENT_CAP = 300  # a marker's letter comes right after it; a bound keeps retries linear


def _letter_in(statement: str, allowed: str) -> str | None:
    """The first choice letter written as a token of its own in `statement`, as written."""
    only = _ONLY_LETTER.fullmatch(statement)
    if only and only[1].upper() in allowed:
        return only[1]
    for m in _LETTER.finditer(statement):
        if m[1] or m[2]:
            letter = m[1] or m[2]
        else:
            letter = m[3]
            if letter.islower():
                continue
            if letter in "AI":
                nxt = _NEXT_WORD.match(statement, m.end())
                if nxt and nxt[1] not in _LETTER_THEN:
                    continue
        if letter.upper() in allowed:
            return letter
    return None


def _last_line(text: str) -> str:
    stripped = text.rstrip()
    return stripped[stripped.rfind("\n") + 1 :]


def _find_choice(text: str, allowed: str) -> tuple[str, str] | None:
    """(letter as written, where found) for the chosen option, or None."""
    if "\\" in text:
        boxed = _boxed_contents(text)
        m = _BOXED_LETTER.match(boxed) if boxed is not None else None
        if m and m[1].upper() in allowed:
            return m[1], "boxed"
    low = _lower(text)
    marked, marked_at = None, -1
    # Only the last few are ever looked at; a bounded deque keeps memory flat on adversarial input.
    for m in reversed(collections.deque(_CHOICE_MARKER.finditer(low), maxlen=16)):
        statement = _statement(text[m.end() : m.end() + _STATEMENT_CAP])
        letter = _letter_in(statement, allowed)
        if letter:
            marked, marked_at = letter, m.start()
            break
    last = _last(_OPTION_IS_CORRECT.finditer(low))
    if last is not None and last.start() > marked_at and last[1].upper() in allowed:
        marked = text[last.start(1)]
    if marked:
        return marked, "answer marker"
    for m in reversed(collections.deque(_LONE_LETTER_LINE.finditer(text), maxlen=16)):
        if m[1].upper() in allowed:
            return m[1], "letter line"
    # The last line: "(B) because ..." (a letter at the line's end wins, then the first one not
    # rejected in so many words: "not (A)", "(A) is wrong"), else an option written out, "C) 40 km/h".
    line = _last_line(text)
    low_line = line.lower()

    def accepted(m: re.Match) -> bool:
        return (
            m[1].upper() in allowed
            and not _REJECTED_BEFORE.search(low_line, max(0, m.start() - 24), m.start())
            and not _REJECTED_AFTER.match(low_line, m.end(), m.end() + 40)
        )

    last = _last(_PAREN_LETTER.finditer(line))
    if last is not None and not line[last.end() :].strip(" \t.!*_$") and accepted(last):
        return last[1], "last line"
    for m in _PAREN_LETTER.finditer(line):
        if accepted(m):
            return m[1], "last line"
    m = _OPTION_LINE.match(line)
    if m and not _REJECTED_AFTER.match(low_line, m.end(), m.end() + 40):
        letter = m[1] or m[2] or m[3]
        if letter.upper() in allowed:
            return letter, "last line"
    return None


@functools.lru_cache(maxsize=1024)
def _choice_reference(reference: str, allowed: str) -> str:
    found = _find_choice(reference.strip(), allowed)
    if found is None:
        raise VerifierError(f"choice verifier: reference {reference!r} names none of the choices {allowed!r}")
    return found[0].upper()


def _choice(text: str, reference: str, choices: str = "ABCDE") -> Verdict:
    allowed = choices.upper()
    want = _choice_reference(reference, allowed)
    found = _find_choice(text, allowed)
    if found is None:
        return Verdict("unparsable", None, "no choice letter found")
    got, marker = found
    return Verdict("correct" if got.upper() == want else "incorrect", got, f"from {marker}")


# ----------------------------------------------------------------------------------------- math

_MATH_DELIMITERS = re.compile(r"\$|\\\(|\\\[|\\boxed")
_PLAIN_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")


def _as_math_input(s: str) -> str:
    # math_verify only reads LaTeX inside delimiters: a bare "2\sqrt{2}" parses as 2. Wrap text
    # that is an expression on its own (no delimiters, no ordinary words) so it is read whole.
    if not _MATH_DELIMITERS.search(s) and not _PLAIN_WORD.search(s):
        return f"${s.strip()}$"
    return s


def _math_available() -> None:
    # find_spec, not import: the parent never needs sympy, only the worker does.
    if importlib.util.find_spec("math_verify") is None:
        raise VerifierError("math verifier needs math-verify: pip install 'rlhf-eval[math]'")


def _in_worker(op: str, a: str, b: str, timeout: float | None, float_rounding: int, strict: bool):
    try:
        return math_call(op, a, b, timeout, float_rounding, strict)
    except MathWorkerError as e:
        raise VerifierError(str(e)) from None


def _math_failure(outcome: str, step: str, timeout: float | None) -> str:
    if outcome == "timeout":
        return f"math_verify {step} timed out after {timeout}s"
    if outcome == "exited":
        return f"the math_verify worker exited during {step}"
    return f"math_verify {step} failed ({outcome[len('error: '):]})"


def _math(text: str, reference: str, timeout: float | None = 10.0, float_rounding: int = 6,
          strict: bool = True) -> Verdict:
    _math_available()
    results, outcome = _in_worker("verify", _as_math_input(reference), _as_math_input(text), timeout, float_rounding,
                                  strict)
    if not results:
        raise VerifierError(f"math verifier: reference {reference!r}: {_math_failure(outcome, 'parse', timeout)}")
    if not results[0]:
        raise VerifierError(f"math verifier: math_verify cannot parse the reference {reference!r}")
    if len(results) == 1:
        if outcome == "done":  # cannot happen: a parsed reference is always followed by the text's step
            return Verdict("unparsable", None, "math_verify found no answer")
        return Verdict("unparsable", None, _math_failure(outcome, "parse", timeout))
    extracted = results[1]
    if extracted is None:
        return Verdict("unparsable", None, "math_verify found no answer")
    if len(results) == 2:
        return Verdict("incorrect", extracted, _math_failure(outcome, "comparison", timeout))
    return Verdict("correct" if results[2] else "incorrect", extracted, "")


# ---------------------------------------------------------------------------------------------
# Equivalence of two extracted answers (for majority voting; see rlhf_eval.stats.answer_classes)
# ---------------------------------------------------------------------------------------------


def _answer_number(s: str) -> float | None:
    # An extracted answer is the statement a marker introduced, so a number word counts ("twelve").
    found = _find_number(s)
    if found is not None:
        return found[1]
    word = _first_number_word(s, len(s), opener_only=False)
    return None if word is None else word[1]


def _equivalent_numeric(a: str, b: str, rel_tol: float = 1e-6, abs_tol: float = 1e-9) -> bool:
    va, vb = _answer_number(a), _answer_number(b)
    if va is None or vb is None:
        return False
    return math.isclose(va, vb, rel_tol=rel_tol, abs_tol=abs_tol)


def _equivalent_text(
    a: str, b: str, case_sensitive: bool = False, strip_punctuation: bool = True, pattern: str = "", flags: str = ""
) -> bool:
    # exact and regex: the answers are already extracted, so a regex's pattern/flags play no part.
    na = _normalize(a, case_sensitive, strip_punctuation)
    return bool(na) and na == _normalize(b, case_sensitive, strip_punctuation)


def _answer_letter(s: str, allowed: str) -> str | None:
    found = _find_choice(s.strip(), allowed)
    return None if found is None else found[0].upper()


def _equivalent_choice(a: str, b: str, choices: str = "ABCDE") -> bool:
    allowed = choices.upper()
    la = _answer_letter(a, allowed)
    return la is not None and la == _answer_letter(b, allowed)


def _equivalent_math(a: str, b: str, timeout: float | None = 10.0, float_rounding: int = 6,
                     strict: bool = True) -> bool:
    _math_available()
    results, outcome = _in_worker("equivalent", _as_math_input(a), _as_math_input(b), timeout, float_rounding, strict)
    return outcome == "done" and len(results) == 4 and all(results)


def _gsm8k_reference(answer: str) -> str:
    """GSM8K's "...\\n#### 18" or "...\\nA: 18" -> "18"."""
    answer = answer.strip()
    i = answer.rfind(_HASHES)
    last_line = answer.rpartition("\n")[2]
    if i >= 0:
        answer = answer[i + len(_HASHES) :].strip()
    elif last_line.startswith("A:"):
        answer = last_line[2:].strip()
    # "1,000", "1 000" and "$18" still verify as written; the bare digits are just easier to read in
    # reports. Fractions, exponents and the like stay as written.
    m = _NUMBER.fullmatch(answer)
    if m and m["int"] is not None and m["mixed"] is None and m["vulgar"] is None and not any(
        m[g] for g in ("exp", "e10", "e10b", "e10s", "pw", "pwb", "pws", "den", "scale")
    ):
        answer = ("-" if m["sign"] else "") + _NON_DIGITS.sub("", m["int"]) + (m["dec"] or "")
    return answer



# ---------------------------------------------------------------------------------------------
# The verifier registry: built-ins register as a team's own verifiers do
# ---------------------------------------------------------------------------------------------

Options = dict[str, tuple[tuple[type, ...], bool]]  # option -> (accepted types, required)


@dataclass(frozen=True)
class Verifier:
    """A registered verifier.

    `run(text, reference, **options)` judges one answer and returns a `Verdict` (or a bool:
    True is correct, False incorrect). Its options are `run`'s parameters after the first two,
    typed by their annotations (``float`` takes an int too; a bool is never a number) and required
    when they have no default. `equivalent(a, b, **options)` tells whether two extracted answers
    are the same answer, for maj@k (default: equal after stripping, and non-empty). `check(options)`
    refuses what types cannot say (raise `VerifierError`); `prepare(options)` returns them as `run`
    takes them (regex: flag names as letters); `reference(answer)` reads a dataset's answer field.
    """

    name: str
    run: Callable[..., Verdict | bool]
    options: Options | None  # None: run takes **options, anything goes
    equivalent: Callable[..., bool]
    check: Callable[[dict], None] | None = None
    prepare: Callable[[dict], dict] | None = None
    reference: Callable[[str], str] | None = None

    def __call__(self, text: str, reference: str, **options: Any) -> Verdict:
        return verify(text, reference, self.name, **options)


def _same_text(a: str, b: str, **_options: Any) -> bool:
    return bool(a.strip()) and a.strip() == b.strip()


def _accepted(annotation: Any) -> tuple[type, ...]:
    """The runtime types an option annotated `annotation` accepts (a float option takes an int)."""
    if annotation is Any or annotation is inspect.Parameter.empty:
        return (object,)
    if annotation is None or annotation is type(None):
        return (type(None),)
    if annotation is float:
        return (int, float)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return tuple(t for arg in typing.get_args(annotation) for t in _accepted(arg))
    if origin is typing.Literal:
        return tuple(dict.fromkeys(type(v) for v in typing.get_args(annotation)))
    if origin is not None:
        return (origin,)  # list[str] -> list
    return (annotation,) if isinstance(annotation, type) else (object,)


def _annotations(run: Callable, signature: inspect.Signature) -> dict[str, Any]:
    """Each parameter's annotation, resolved one by one: one that does not resolve (a name only
    imported for type checkers) accepts anything, and the others are still checked."""
    try:
        return typing.get_type_hints(run)
    except Exception:  # noqa: BLE001 - fall back to resolving each annotation alone
        pass
    namespace = getattr(run, "__globals__", None) or getattr(inspect.getmodule(run), "__dict__", {})
    hints = {}
    for p in signature.parameters.values():
        annotation = p.annotation
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, dict(namespace))  # noqa: S307 - what get_type_hints does
            except Exception:  # noqa: BLE001
                annotation = Any
        hints[p.name] = annotation
    return hints


def _option_schema(name: str, run: Callable) -> Options | None:
    """`run`'s options as (accepted types, required), from its signature; VerifierError (one line)
    when `run` does not take a text and a reference first."""
    try:
        signature = inspect.signature(run)
    except (TypeError, ValueError) as exc:
        raise VerifierError(f"verifier {name!r}: cannot read the signature of {run!r} ({exc})") from None
    hints = _annotations(run, signature)
    params = list(signature.parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if len(params) < 2 or any(p.kind not in positional for p in params[:2]):
        raise VerifierError(f"verifier {name!r}: {getattr(run, '__name__', run)!r} must take (text, reference, "
                            "**options) as its first two parameters")
    options: Options = {}
    for p in params[2:]:
        if p.name == "verifier":  # verify(text, reference, verifier=..., **options) takes that name
            raise VerifierError(f"verifier {name!r}: an option cannot be named 'verifier'; rename the parameter")
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if p.kind is not inspect.Parameter.VAR_POSITIONAL:
            options[p.name] = (_accepted(hints.get(p.name, p.annotation)), p.default is inspect.Parameter.empty)
    return options


_SPEC = "__rlhf_eval_verifier__"  # what @verifier stores on a function, for an entry point to find


def _as_verifier(name: str, obj: Any, hooks: dict | None = None) -> Verifier:
    """The registry's adapter: a `Verifier` (renamed), a function @verifier decorated (with its
    hooks), or any function taking (text, reference, **options)."""
    if isinstance(obj, Verifier):
        return obj if obj.name == name else dataclasses.replace(obj, name=name)
    hooks = hooks if hooks is not None else getattr(obj, _SPEC, {})
    if not callable(obj):
        raise VerifierError(f"verifier {name!r}: {obj!r} is not a function taking (text, reference, **options)")
    return Verifier(name, obj, _option_schema(name, obj), hooks.get("equivalent") or _same_text,
                    hooks.get("check"), hooks.get("prepare"), hooks.get("reference"))


VERIFIERS: Registry[Verifier] = Registry("verifier", "rlhf_eval.verifiers", _as_verifier, VerifierError)


def verifier(name: str | None = None, *, equivalent: Callable[..., bool] | None = None,
             check: Callable[[dict], None] | None = None, prepare: Callable[[dict], dict] | None = None,
             reference: Callable[[str], str] | None = None) -> Callable[[F], F]:
    """Register the decorated function as verifier `name` (default: its own name); see `Verifier`
    for the hooks. The function is returned unchanged, so it can still be called directly::

        @verifier("sentiment")
        def sentiment(text: str, reference: str, threshold: float = 0.5) -> Verdict:
            ...

    A suite then says ``verifier: sentiment`` (with ``threshold`` among its options) once the
    module is imported, or through an installed package's ``rlhf_eval.verifiers`` entry point, or
    as ``verifier: my_evals.verifiers:sentiment`` with nothing registered."""
    def register(fn: F) -> F:
        hooks = {"equivalent": equivalent, "check": check, "prepare": prepare, "reference": reference}
        with contextlib.suppress(AttributeError, TypeError):  # a bound method or a builtin takes no attribute
            setattr(fn, _SPEC, hooks)  # for an entry point that names the function
        registered = check_name(name or getattr(fn, "__name__", None), "verifier", VerifierError)
        VERIFIERS.register(registered, _as_verifier(registered, fn, hooks), origin=origin_of(fn))
        return fn
    return register


def _non_negative(options: dict) -> None:
    for key, value in options.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise VerifierError(f"option {key!r} must be >= 0, got {value!r}")


def _check_regex(options: dict) -> None:
    if isinstance(options.get("pattern"), str) and isinstance(options.get("flags", ""), str):
        _compile(options["pattern"], options.get("flags", ""))


def _check_choice(options: dict) -> None:
    if not options.get("choices", "A").isalpha():
        raise VerifierError(f"option 'choices' must be letters, got {options['choices']!r}")


# Regex flags by the names `re` gives them, for `flags: MULTILINE|IGNORECASE` or a list of them.
_FLAG_LETTERS = {"IGNORECASE": "i", "MULTILINE": "m", "DOTALL": "s", "VERBOSE": "x", "ASCII": "a"}


def _meant_as_letters(flags: str) -> bool:
    return (flags.isalpha() and flags.islower() and len(flags) <= len(_FLAGS)
            and not difflib.get_close_matches(flags.upper(), list(_FLAG_LETTERS), n=1, cutoff=0.6))


def _flag_letters(options: dict) -> dict:
    """Regex flags as letters ('im'): letters as they are; names (MULTILINE, re.M,
    'MULTILINE|IGNORECASE') or a list of names or letters translated. Raises VerifierError for an
    unknown name; anything else is left for the option types to refuse."""
    flags = options.get("flags")
    if isinstance(flags, str) and (set(flags) <= set(_FLAGS) or _meant_as_letters(flags)):
        return options  # letters; a wrong one is named by _compile ("unknown flag(s) 'q'")
    if isinstance(flags, str):
        names = flags.split("|")
    elif isinstance(flags, list) and all(isinstance(f, str) for f in flags):
        names = flags
    else:
        return options
    letters = ""
    for raw in names:
        name = raw.strip().upper().removeprefix("RE.")
        long = next((n for n, letter in _FLAG_LETTERS.items() if name in (n, letter.upper())), None)
        if long is None:
            close = difflib.get_close_matches(name, list(_FLAG_LETTERS), n=1, cutoff=0.6)
            shown = repr(raw) if len(repr(raw)) <= 40 else repr(raw)[:39] + "…"
            raise VerifierError(f"unknown flag {shown}{f' (did you mean {close[0]!r}?)' if close else ''}; "
                                f"known: {', '.join(_FLAG_LETTERS)} (or the letters imsxa)")
        letters += _FLAG_LETTERS[long]
    return {**options, "flags": letters}


verifier("numeric", equivalent=_equivalent_numeric, check=_non_negative, reference=_gsm8k_reference)(_numeric)
verifier("exact", equivalent=_equivalent_text)(_exact)
verifier("regex", equivalent=_equivalent_text, check=_check_regex, prepare=_flag_letters)(_regex)
verifier("choice", equivalent=_equivalent_choice, check=_check_choice)(_choice)
verifier("math", equivalent=_equivalent_math, check=_non_negative)(_math)


def _type_name(t: tuple[type, ...]) -> str:
    return " or ".join("None" if x is type(None) else x.__name__ for x in t)


def prepared_options(verifier: str, options: dict, required: bool = True) -> dict:
    """`options` as verifier `verifier` takes them (e.g. regex flag names as letters), checked.
    Raises VerifierError (one line, naming the verifier) unless it would run with them; with
    `required` False an option it requires may be missing (`equivalent` compares answers already
    extracted, so a regex needs no pattern there)."""
    v = VERIFIERS.get(verifier)
    try:
        if v.prepare is not None:
            options = _hook(v, "prepare", v.prepare, options)
        _check_types(v, options, required)
        if v.check is not None:
            _hook(v, "check", v.check, options)
    except VerifierError as exc:
        raise VerifierError(f"{verifier} verifier: {exc}") from None
    return options


def _hook(v: Verifier, what: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)`, a verifier's own code: whatever it raises but a VerifierError (or
    Ctrl-C) becomes one line naming the verifier and the hook."""
    try:
        return fn(*args, **kwargs)
    except (VerifierError, KeyboardInterrupt):
        raise
    except BaseException as exc:  # noqa: BLE001 - SystemExit from a team's code is still its one line
        raise VerifierError(f"{'verifier' if what == 'run' else what + ' of verifier'} {v.name!r} raised "
                            f"{exception_line(exc)}") from None


def check_options(verifier: str, options: dict) -> None:
    """Raise VerifierError (one line) unless `verifier` with `options` would run."""
    prepared_options(verifier, options)


def _check_types(v: Verifier, options: dict, required: bool) -> None:
    if "verifier" in options:
        raise VerifierError("an option cannot be named 'verifier' (it names the verifier)")
    if v.options is None:
        return
    for key, value in options.items():
        if key not in v.options:
            raise VerifierError(f"unknown option {key!r}{suggest(str(key), v.options)}")
        accepted, _ = v.options[key]
        # bool is an int subclass, but `rel_tol: true` is a mistake, not a tolerance of 1.
        if not isinstance(value, accepted) or (isinstance(value, bool) and not {bool, object} & set(accepted)):
            raise VerifierError(f"option {key!r} must be {_type_name(accepted)}, got {type(value).__name__} {value!r}")
    for key, (_, needed) in v.options.items():
        if needed and required and key not in options:
            raise VerifierError(f"option {key!r} is required")


def verify(text: str, reference: str, /, verifier: str = "numeric", **options: Any) -> Verdict:
    """Judge `text`'s final answer against `reference` with the verifier named `verifier` (a
    registered name, an installed entry point's, or ``module:function``); see the module docstring.

    Raises VerifierError for a configuration problem: an unknown verifier or option, a bad regex,
    a reference the verifier cannot read (numeric: no number; choice: names none of `choices`;
    math: math_verify cannot parse it, or parsing it times out), or math-verify not installed,
    and for any exception the verifier's own code raises (one line naming it). A model's text
    never raises in a built-in verifier: what cannot be read is `unparsable`."""
    options = prepared_options(verifier, options)
    v = VERIFIERS.get(verifier)
    # Suites written in YAML give `answer: 18` as an int; a reference is text here.
    verdict = _hook(v, "run", v.run, text or "", str(reference), **options)
    if isinstance(verdict, bool):
        return Verdict("correct" if verdict else "incorrect", None, "")
    if not isinstance(verdict, Verdict):
        raise VerifierError(f"verifier {verifier!r} returned {type(verdict).__name__} {verdict!r:.60}; "
                            "return a rlhf_eval.Verdict or a bool")
    if verdict.status not in _JUDGED:
        raise VerifierError(f"verifier {verifier!r} returned a Verdict with status {verdict.status!r:.40}; "
                            f"a verifier decides {', '.join(_JUDGED)}")
    return verdict


_JUDGED = ("correct", "incorrect", "unparsable")  # the API's finish decides the other VERDICTS


def extract_reference(answer: str, verifier: str = "numeric") -> str:
    """The bare reference from a dataset answer field, as the verifier reads one: numeric takes
    GSM8K's "...\\n#### 18" or "...\\nA: 18" -> "18"; other built-ins the stripped answer."""
    v = VERIFIERS.get(verifier)
    if v.reference is None:
        return answer.strip()
    read = _hook(v, "reference", v.reference, answer)
    if not isinstance(read, str):
        raise VerifierError(f"reference of verifier {verifier!r} returned {type(read).__name__}; return a string")
    return read


def equivalent(a: str, b: str, /, verifier: str = "numeric", **options: Any) -> bool:
    """Whether two *extracted* answers (`Verdict.extracted` strings) are the same answer under `verifier`.

    Takes the verifier's own options (a suite's `verifier_options` can be passed straight through;
    a regex `pattern` may be omitted, since the answers are already extracted):

    * numeric: both contain a number, read as `verify` reads one ("$18", "1,000", "1 000", "1/2",
      "\\frac{1}{2}", "2 1/2", "1.5 \\times 10^3"; the final number if there are several; a number
      word such as "twelve" when there is no numeral) and the two are within `rel_tol`/`abs_tol`
      (`math.isclose`, as the verifier compares). So "18" ~ "18.0" ~ "$18", "0.5" ~ "1/2".
    * exact, regex: equal and non-empty after the verifier's normalisation (`case_sensitive`,
      `strip_punctuation`).
    * choice: the same letter from `choices`, read as `verify` reads one: "c" ~ "(C)" ~ "**C**".
    * math: math_verify parses both (in the same worker process `verify` uses, each step under
      `timeout`) and `math_verify.verify` holds in *both* directions (gold/prediction swapped), so
      the relation is symmetric.

    Unparsable input (None, empty, no number, no letter, math_verify finds nothing or times out)
    gives False, so such an answer is not even equivalent to itself. A bad verifier name or option
    raises VerifierError, as `verify` does. Numeric closeness is not transitive: group answers with
    `rlhf_eval.stats.answer_classes`, which compares each answer against each class's first member.
    """
    options = prepared_options(verifier, options, required=False)
    if a is None or b is None:
        return False
    v = VERIFIERS.get(verifier)
    return bool(_hook(v, "equivalent", v.equivalent, str(a), str(b), **options))


__all__.append("equivalent")
