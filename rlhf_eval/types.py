"""Plain data shared by every layer: what a sampler returns and what a verifier decides."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
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
    """One sampled completion, as the API reported it; nothing here is computed by us."""

    text: str
    finish_reason: str  # the API's name, e.g. "STOP", "MAX_TOKENS", "SAFETY"; "PROMPT_BLOCKED:<reason>"
    token_count: int | None
    logp: float | None  # sequence log-probability of the visible answer; None when the API gave none
    seed: int | None
    model_version: str | None
    candidate_index: int = 0
    logp_source: str | None = None  # which response field (or scorer) `logp` came from
    ref_logp: float | None = None  # the reference model's log-probability of `text`, when a reference is set
    ref_token_count: int | None = None  # the reference tokenizer's count (it may differ from the policy's)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
