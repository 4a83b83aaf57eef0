"""The emulator's reasoning text: Gemini thought summaries and the reasoning of OpenAI-compatible
reasoning models, each with a **decoy** answer.

The reasoning is deterministic (a function of the prompt, the final answer text and the hash that
chose that answer) and names a *different* number or option letter than the answer's own -- "A
first guess would be 20, but let me check...": a consumer that grades the reasoning instead of the
answer picks up the decoy and gets caught. The decoy never occurs in the answer text (not even as a
substring), and the templates hold no other digits and no other ``(X)`` letter. See the package
docstring, "Thinking and reasoning models".
"""
from __future__ import annotations

import base64
import hashlib
import re

from .bank import stable_hash

_CHOICE_RE = re.compile(r"(?m)^[ \t]*(?:\(([A-J])\)|([A-J])[.)])[ \t]+\S")
_LETTER_RE = re.compile(r"\(([A-J])\)")
_NUM_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?")

#: Gemini thought summaries (``{"text": ..., "thought": true}``): a bold heading, then prose.
SUMMARY_TEMPLATES = (
    "**Checking a first guess**\n\nA first guess would be {d}, but let me check that against the question. "
    "Working through it again, {d} does not hold up.",
    "**Reconsidering the quick answer**\n\nMy initial reading suggests {d}. That seems too quick, so I am "
    "redoing each step; the careful pass does not agree with {d}.",
    "**Testing the obvious answer**\n\nIt is tempting to answer {d} straight away. Checking it against the "
    "question, {d} fails, so the final answer comes from the full reasoning instead.",
)
#: Raw reasoning of an OpenAI-compatible reasoning model (``reasoning_content``, ``reasoning``,
#: ``<think>``), in the first-person style of DeepSeek-R1 or GLM.
RAW_TEMPLATES = (
    "Okay, let me think. A first guess would be {d}, but wait, let me check that against the question. "
    "Going through it again, {d} does not work out.",
    "Hmm, my first instinct says {d}. Let me double-check each step before answering. No, {d} is not "
    "consistent with the question, so I will redo it properly.",
    "The user wants a final answer. It is tempting to say {d} right away, but checking it against the "
    "question, {d} fails. I will work it out step by step instead.",
)


def final_answer(text: str) -> tuple[str | None, str | None]:
    """(kind, value) of the final answer in ``text``'s last line: ``("letter", "B")`` for
    ``... (B).``, ``("number", "18")`` for ``A: 18`` / ``The answer is 18.``, else ``(None, None)``."""
    lines = [ln for ln in text.split("\n") if ln.strip()]
    last = lines[-1] if lines else ""
    letters = _LETTER_RE.findall(last)
    if letters:
        return "letter", letters[-1]
    nums = _NUM_RE.findall(last)
    if nums:
        return "number", nums[-1]
    return None, None


def _options(prompt: str) -> list[str]:
    out: list[str] = []
    for m in _CHOICE_RE.finditer(prompt):
        x = m.group(1) or m.group(2)
        if x not in out:
            out.append(x)
    return out


def _number_decoy(value: str | None, answer: str, h: int) -> str:
    base = None
    if value is not None:
        try:
            v = float(value.replace(",", ""))
            if abs(v) < 1e12:
                base = int(round(v))
        except ValueError:
            base = None
    if base is None:
        base = 7 + h % 40
    steps = (2, 10, 1, 5, 20, 3, 100, 7, 12, 50)
    start = h % len(steps)
    tried = []
    for i in range(len(steps)):
        d = steps[(start + i) % len(steps)]
        tried += [base + d, base * 2 + d]
    if base > 1:
        tried.append(base - 1)
    for c in tried:
        if c >= 0 and str(c) != value and str(c) not in answer:
            return str(c)
    c = 1000 + h % 9000
    while str(c) in answer:
        c += 1
    return str(c)


def decoy(prompt: str, answer: str, h: int) -> str:
    """The decoy of an answer: another option letter ``"(B)"`` when the answer picks one (or the
    prompt offers options and the answer names none), else a number other than the answer's that
    occurs nowhere in ``answer``. Never a substring of ``answer``."""
    kind, value = final_answer(answer)
    options = _options(prompt)
    if kind == "letter" or (kind is None and len(options) >= 2):
        others = [x for x in (options or list("ABCD")) if x != value and f"({x})" not in answer]
        if not others:
            others = [x for x in "ABCDEFGHIJ" if x != value and f"({x})" not in answer]
        if others:
            return f"option ({others[h % len(others)]})"
    return _number_decoy(value if kind == "number" else None, answer, h)


def reasoning_text(prompt: str, answer: str, h: int, *, style: str = "summary") -> tuple[str, str]:
    """(reasoning text, decoy) for an answer. ``style`` "summary" is a Gemini thought summary,
    "raw" the reasoning of an OpenAI-compatible reasoning model."""
    d = decoy(prompt, answer, h)
    templates = SUMMARY_TEMPLATES if style == "summary" else RAW_TEMPLATES
    return templates[(h >> 8) % len(templates)].format(d=d), d


def thought_signature(*parts: object) -> str:
    """A deterministic, opaque ``thoughtSignature`` (base64), honest about its origin: its bytes
    start ``rlhf-eval-emulator/thought-signature/``."""
    digest = hashlib.blake2b("\x1f".join(str(p) for p in parts).encode("utf-8", "surrogatepass"),
                             digest_size=24).digest()
    return base64.b64encode(b"rlhf-eval-emulator/thought-signature/" + digest).decode("ascii")


def reasoning_hash(model: str, prompt: str, seed: int, j: int, greedy: bool) -> int:
    """The hash that picks the reasoning template and decoy: the answer's own hash input."""
    return stable_hash("reasoning", model, prompt) if greedy else stable_hash("reasoning", model, prompt, seed, j)
