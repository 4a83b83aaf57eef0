"""Plain data shared by every layer: what a sampler returns and what a verifier decides."""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

# Every verdict a trace can get. `correct`/`incorrect`/`unparsable` come from a verifier;
# `blocked`/`truncated`/`error` come from how the API finished the trace.
VERDICTS = ("correct", "incorrect", "unparsable", "blocked", "truncated", "error")


@dataclass(frozen=True)
class Verdict:
    status: str  # one of VERDICTS
    extracted: str | None = None  # the answer the verifier pulled out of the text, as written
    detail: str = ""  # why, when the status alone does not say (e.g. "finishReason SAFETY")

    @property
    def correct(self) -> bool:
        return self.status == "correct"


@dataclass(frozen=True)
class Trace:
    """One sampled completion, as the API reported it; nothing here is computed by us.

    For a reasoning model `text` is the answer only (what the verifier sees) and `reasoning` the
    scratchpad, whichever way the API sent it (see `rlhf_eval.reasoning`); `token_count` and `logp`
    are the answer's, `reasoning_tokens` the thinking tokens the API reported."""

    text: str  # the answer
    finish_reason: str  # the API's name, e.g. "STOP", "MAX_TOKENS", "SAFETY"; "PROMPT_BLOCKED:<reason>"
    token_count: int | None  # the answer's tokens; None when the API's count cannot be attributed to it
    logp: float | None  # Σ of the answer's chosen-token log-probabilities; None when there is no honest one
    seed: int | None
    model_version: str | None  # the model the API names (modelVersion / model)
    candidate_index: int = 0
    logp_source: str | None = None  # which response field (or scorer) `logp` came from
    ref_logp: float | None = None  # the reference model's log-probability of `text`, when a reference is set
    ref_token_count: int | None = None  # the reference tokenizer's count (it may differ from the policy's)
    reasoning: str = ""  # thought parts, reasoning_content / reasoning, or the inline <think> span
    reasoning_tokens: int | None = None  # thoughtsTokenCount / reasoning_tokens, when the API reports them
    logp_note: str | None = None  # why `logp` is None although the API sent log-probabilities
    answer_missing: str | None = None  # why there is no answer although the model stopped (e.g. <think> never closed)
    system_fingerprint: str | None = None  # a backend build or cache id (OpenAI-compatible); never the model
    extra: dict[str, Any] = field(default_factory=dict)
    # What the API billed for the request that drew this trace (see `charge_request`): its prompt
    # tokens and its output tokens (answer + thinking). On the request's first trace; 0 on the
    # others of a request with several candidates; None when the API reported no usage.
    prompt_tokens: int | None = None
    output_tokens: int | None = None

    def to_dict(self) -> dict[str, Any]:
        # Every field but `extra` is a scalar: a shallow copy is dataclasses.asdict's result at a
        # fifth of its cost (asdict deep-copies field by field; 8,000 traces a 1,000-question replay).
        return {**self.__dict__, "extra": copy.deepcopy(self.extra)}


def charge_request(traces: list[Trace], prompt_tokens: int | None, output_tokens: int | None) -> list[Trace]:
    """`traces` (those one request drew, in order) with the request's usage set: `prompt_tokens`
    and `output_tokens` (answer + thinking, as the API bills them) on the first trace, 0 on the others.

    A request asking for several candidates (Gemini candidateCount, OpenAI n) is billed its prompt
    once and reports one output total for all of them, which cannot be split per candidate; so a sum
    over traces counts each request exactly once. None (the API reported no usage) stays None on
    every trace: unknown, never 0."""
    out = []
    for j, trace in enumerate(traces):
        first = j == 0
        out.append(dataclasses.replace(
            trace,
            prompt_tokens=prompt_tokens if first or prompt_tokens is None else 0,
            output_tokens=output_tokens if first or output_tokens is None else 0))
    return out
