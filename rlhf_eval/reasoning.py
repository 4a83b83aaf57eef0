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

from dataclasses import dataclass
from typing import Sequence

DEFAULT_TAGS = ("<think>", "</think>")


@dataclass(frozen=True)
class Split:
    """`text` cut into reasoning and answer. `answer_start` indexes `text`; `unclosed` when an opening
    tag has no closing one (the model never reached its answer)."""

    answer: str
    reasoning: str
    answer_start: int
    unclosed: bool = False


def split_reasoning(text: str, tags: Sequence[str] | None = DEFAULT_TAGS) -> Split:
    """Split inline reasoning (`<think>…</think>` by default) from the answer.

    Args:
        text: the content as the API sent it. Shape: one string.
        tags: (open, close), or None to take the whole text as the answer.

    The answer is what follows the last closing tag, leading whitespace removed. A closing tag with
    no opening one counts too: chat templates of DeepSeek-R1 and Qwen3 put `<think>` in the prompt,
    so the model's text starts inside the reasoning. An opening tag never closed gives an empty
    answer with `unclosed` set. Text with no tag is all answer."""
    if not tags or not text:
        return Split(text, "", 0)
    open_tag, close_tag = tags
    close = text.rfind(close_tag)
    if close < 0:
        opened = text.find(open_tag)
        if opened < 0:
            return Split(text, "", 0)
        return Split("", text[opened + len(open_tag):].strip(), len(text), unclosed=True)
    start = close + len(close_tag)
    while start < len(text) and text[start].isspace():
        start += 1
    reasoning = text[:close].replace(open_tag, "").replace(close_tag, "").strip()
    return Split(text[start:], reasoning, start)


def answer_logprobs(tokens: Sequence[str], logprobs: Sequence[float | None], text: str, answer_start: int,
                    *, has_reasoning: bool) -> tuple[float | None, int | None, str | None]:
    """(logp, token count, why none) of the answer `text[answer_start:]` from per-token logprobs.

    Args:
        tokens: the token texts the API returned. Shape: (n,).
        logprobs: each token's chosen log-probability (nats), None where the API gave none. Shape: (n,).
        text: the visible text the tokens end with (content, tags included). Shape: one string.
        answer_start: where the answer starts in `text`.
        has_reasoning: whether the model reasoned (thought parts, a reasoning field or tokens, tags).

    Without reasoning every generated token is the answer's, so all are summed. With reasoning the
    tokens may cover it as well, so the answer's tokens must be a suffix whose texts are exactly
    `text[answer_start:]`: the concatenation of all token texts must end with `text`, and a token
    must start exactly at the answer. Otherwise the result is (None, None, reason)."""
    if not len(logprobs):
        return None, None, "the API returned no token logprobs"
    if any(v is None for v in logprobs):
        return None, None, "some tokens have no logprob"
    answer = text[answer_start:]
    if not answer:
        return None, None, "there is no answer to score"
    if not has_reasoning:
        return float(sum(logprobs)), len(logprobs), None  # type: ignore[arg-type]
    if len(tokens) != len(logprobs):
        return None, None, "the API sent logprobs without their token texts, so the answer's cannot be told apart"
    spelled = "".join(tokens)
    if not spelled.endswith(text):
        return None, None, ("the logprob tokens do not spell the text, so the answer's tokens cannot be told "
                            "from the reasoning's")
    boundary = len(spelled) - len(answer)
    offset = 0
    for i, tok in enumerate(tokens):
        if offset == boundary:
            return float(sum(logprobs[i:])), len(tokens) - i, None  # type: ignore[arg-type]
        offset += len(tok)
        if offset > boundary:
            break
    return None, None, "a token straddles the reasoning and the answer"
