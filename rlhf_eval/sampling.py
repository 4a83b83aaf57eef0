"""What every backend provides: a `Sampler` draws traces, a `Scorer` gives log-probabilities of a text.

Backends live in `rlhf_eval.backends` (Gemini through google-genai, OpenAI-compatible servers,
a local transformers model, the legacy google-generativeai SDK); `backends.make_sampler` and
`backends.make_scorer` build one from a suite's settings.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from .types import Trace


RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class SamplingError(Exception):
    """The API refused or failed a request; the message is one actionable line.

    `status` is the HTTP status when there was one; `retry_after` the delay the server asked for
    (RetryInfo, Retry-After); `transient` marks a failure worth retrying without a status (a
    dropped connection, a timeout); `permanent` one never worth retrying (a per-day quota)."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None,
                 transient: bool = False, permanent: bool = False):
        super().__init__(message)
        self.status, self.retry_after, self.transient, self.permanent = status, retry_after, transient, permanent

    @property
    def retryable(self) -> bool:
        return not self.permanent and (self.transient or self.status in RETRYABLE_STATUS)


class ScoringError(SamplingError):
    """A scorer could not give an honest log-probability (e.g. the server does not score prompt tokens)."""


def reads_body(parse: Callable[..., list[Trace]]) -> Callable[..., list[Trace]]:
    """A response parser whose body, when not of the shape the API documents (a list where an
    object belongs, a number as text, nulls inside lists), fails as one SamplingError line."""
    @functools.wraps(parse)
    def parse_or_explain(body: Any, **kwargs) -> list[Trace]:
        try:
            return parse(body, **kwargs)
        except (AttributeError, TypeError, ValueError, KeyError, IndexError) as exc:
            raise SamplingError(f"the API answered with a body of an unexpected shape ({type(exc).__name__}: {exc}); "
                                "re-record, or report it with the cassette") from exc
    return parse_or_explain


def ordered(items: list) -> list[tuple[int, Any]]:
    """(index, item) sorted by the item's `index` field; an item without a usable one keeps its place
    (Vertex omits `index`; some servers send it as null or text)."""
    def index(j: int, item: Any) -> int:
        value = item.get("index") if isinstance(item, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) else j
    return sorted(((index(j, it), it) for j, it in enumerate(items)), key=lambda p: p[0])


def sample_in_units(request: Callable[[int, int, bool], list[Trace]], *, k: int, seed: int, per_request: int,
                    logprobs: bool, policy, parallel: bool = True) -> list[Trace]:
    """Draw k traces as requests of `per_request` candidates, request i seeded `seed + first trace`.

    `request(seed, n, logprobs)` sends one request. Each request falls back on its own when the
    model refuses several candidates (then one request per trace) or log-probabilities (then it
    asks without) — so the requests made, and the cassette they are replayed from, do not depend
    on how many ran at once. Refusals are recorded like any answer, so a replay takes the same path."""

    def unit(s: int, n: int, lp: bool) -> list[Trace]:
        try:
            return policy.call(lambda: request(s, n, lp))
        except SamplingError as exc:
            if n > 1 and "Multiple candidates" in str(exc):  # e.g. Gemini 3.x
                return [t for j in range(n) for t in unit(s + j, 1, lp)]
            if lp and "refuses log-probabilities" in str(exc):  # a model not known to refuse
                return unit(s, n, False)
            raise

    per_request = max(1, min(per_request, k))
    units = [(seed + i, min(per_request, k - i)) for i in range(0, k, per_request)]
    run = policy.map if parallel else (lambda fn, xs: [fn(x) for x in xs])
    return [t for traces in run(lambda u: unit(u[0], u[1], logprobs), units) for t in traces]


@dataclass(frozen=True)
class Score:
    logp: float  # Σ log π(token | everything before it) over the completion's tokens only
    token_count: int  # how many completion tokens that sum covers


@runtime_checkable
class Sampler(Protocol):
    def sample(self, prompt: str, k: int, seed: int) -> list[Trace]:
        """Return exactly `k` traces for `prompt`; trace i is drawn with seed `seed + i`
        (or, with several candidates per request, the seed of its request)."""


@runtime_checkable
class Scorer(Protocol):
    name: str  # shown in reports, e.g. "openai:Qwen/Qwen2.5-0.5B" or "hf:/models/ref"

    def score(self, prompt: str, completions: Sequence[str]) -> list[Score]:
        """Teacher-forced log-probability of each completion given `prompt`, one `Score` each."""
