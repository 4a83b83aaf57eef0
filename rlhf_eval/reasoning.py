"""Reasoning models: separate the answer from the scratchpad, and attribute logprobs to the answer.

A reasoning model's output reaches us in one of three shapes: Gemini thought parts
(`"thought": true`), a field beside the answer on OpenAI-compatible servers (`reasoning_content`,
`reasoning`), or inline in the text between tags (`<think>…</think>`, DeepSeek-R1, Qwen3, GLM
served without a reasoning parser). Whatever the shape, only the answer is verified, and a
trace's `logp` and `token_count` are the answer's.

Token logprobs may cover the reasoning too (vLLM returns one per generated token). The answer's
share is kept only when the token texts provably spell the text — their concatenation ends with
the answer and a token boundary falls exactly where the answer starts; otherwise there is no logp
and the reason says why. Nothing is estimated.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

DEFAULT_TAGS = ("<think>", "</think>")


@dataclass(frozen=True)
class Split:
    """A model's output cut into reasoning and answer. `answer_start` indexes the text; `reasoned`
    when the model reasoned in any shape; `tagged` when an inline tag was found (even around
    nothing); `answer_missing` says why there is no answer when an opening tag was never closed."""

    answer: str
    reasoning: str
    answer_start: int
    reasoned: bool = False
    tagged: bool = False
    answer_missing: str | None = None

    @property
    def unclosed(self) -> bool:
        return self.answer_missing is not None


def split_reasoning(text: str, tags: Sequence[str] | None = DEFAULT_TAGS, *, beside: str | None = None,
                    reasoned: bool = False) -> Split:
    """Split the answer from the reasoning, wherever the reasoning came.

    Args:
        text: the answer text as the API sent it, inline reasoning included. Shape: one string.
        tags: (open, close) of inline reasoning, or None to take the whole text as the answer.
        beside: reasoning the API sent apart from `text` (thought parts, a reasoning field), even
            empty; None when it sent none.
        reasoned: the API counted reasoning tokens, with or without reasoning text.

    Reasoning blocks are recognised where a reasoning model writes them: at the start of the text
    (after whitespace), one or several in a row. A closing tag with no opening one counts too —
    chat templates of DeepSeek-R1 put `<think>` in the prompt, so the model's text starts inside
    the reasoning. An opening tag later in the text is the answer's own words. An opening tag never
    closed gives an empty answer and `answer_missing`. When the model reasoned, the whitespace that
    separates the answer from its reasoning is not part of the answer, so the answer is the same
    whichever way the reasoning arrived."""
    reasoned = reasoned or beside is not None
    pos, blocks = _skip_space(text, 0), [beside or ""]

    def split(start: int, tagged: bool, missing: str | None = None) -> Split:
        return Split("" if missing else text[start:], _join(blocks), start, reasoned or tagged, tagged, missing)

    if tags and text:
        open_tag, close_tag = tags
        while text.startswith(open_tag, pos):
            close = text.find(close_tag, pos + len(open_tag))
            if close < 0:
                blocks.append(text[pos + len(open_tag):])
                return split(len(text), True, f"{open_tag} was never closed: the model stopped before its answer")
            blocks.append(text[pos + len(open_tag):close])
            pos = _skip_space(text, close + len(close_tag))
        if len(blocks) == 1:
            close = text.find(close_tag)
            if close >= 0 and open_tag not in text[:close]:
                blocks.append(text[:close])
                pos = _skip_space(text, close + len(close_tag))
    if len(blocks) == 1:
        return split(pos if reasoned else 0, False)
    return split(pos, True)


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def _join(blocks: list[str]) -> str:
    return "\n\n".join(b.strip() for b in blocks if b.strip())


def answer_logprobs(tokens: Sequence[Any], logprobs: Sequence[Any], text: str, answer_start: int,
                    *, has_reasoning: bool) -> tuple[float | None, int | None, str | None]:
    """(logp, token count, why none) of the answer `text[answer_start:]` from per-token logprobs.

    Args:
        tokens: the token texts the API returned (may be empty when it sent none). Shape: (n,).
        logprobs: each token's chosen log-probability (nats), None where the API gave none. Shape: (n,).
        text: the visible text the tokens end with (content, tags included). Shape: one string.
        answer_start: where the answer starts in `text`.
        has_reasoning: whether the model reasoned (thought parts, a reasoning field or tokens, tags).

    Without reasoning every generated token is the answer's and all are summed. With reasoning the
    token texts must spell `text` (their concatenation ends with it) and a token must start exactly
    where the answer starts; the answer's logp is then the sum over that suffix, and whatever came
    before (reasoning, tags, separators) is left out. Otherwise (None, None, reason)."""
    if not len(logprobs):
        return None, None, "the API returned no token logprobs"
    try:
        total = sum(logprobs)
    except TypeError:  # None, or proto3 JSON's "NaN" / "-Infinity" strings
        try:
            total = sum(float(v) for v in logprobs)
        except (TypeError, ValueError):
            return None, None, "some tokens have no logprob"
    if not math.isfinite(total):
        return None, None, "the API sent a non-finite logprob"
    if not text[answer_start:]:
        return None, None, "there is no answer to score"
    if not has_reasoning:
        return float(total), len(logprobs), None
    i, why = _answer_suffix(tokens, len(logprobs), text, answer_start)
    if i is None:
        return None, None, f"{why}, so the answer's tokens cannot be told from the reasoning's"
    return float(sum(float(v) for v in logprobs[i:])), len(logprobs) - i, None


def _answer_suffix(tokens: Sequence[Any], n: int, text: str, answer_start: int) -> tuple[int | None, str]:
    """(index of the answer's first token, "") when the token texts prove it, else (None, why not)."""
    if len(tokens) != n:
        return None, "the API sent logprobs without their token texts"
    try:
        spelled = "".join(tokens)
    except TypeError:
        return None, "the API sent token texts that are not text"
    if not spelled.endswith(text):
        return None, "the logprob tokens do not spell the text"
    boundary, offset = len(spelled) - len(text) + answer_start, 0
    for i, tok in enumerate(tokens):
        if offset == boundary:
            if i and not tok:  # a zero-width token at the boundary belongs to either side
                return None, "a zero-width token sits between the reasoning and the answer"
            return i, ""
        offset += len(tok)
        if offset > boundary:
            break
    return None, "a token straddles the reasoning and the answer"
