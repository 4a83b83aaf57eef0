"""What every backend provides: a `Sampler` draws traces, a `Scorer` gives log-probabilities of a text.

Backends live in `rlhf_eval.backends` (Gemini through google-genai, OpenAI-compatible servers,
a local transformers model, the legacy google-generativeai SDK); `backends.make_sampler` and
`backends.make_scorer` build one from a suite's settings.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence, TypeVar, runtime_checkable

from .recording import RETRYABLE_STATUS, CassetteProblem, forget_replayed, loads_json, replay_fault
from .types import Trace

T = TypeVar("T")
R = TypeVar("R")


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


class MalformedBody(SamplingError):
    """A response body not of the shape the API documents; its cause is the parser's error."""


def reads_body(parse: Callable[..., T]) -> Callable[..., T]:
    """A response parser that takes the body as received (bytes or text) or parsed, and fails as one
    `MalformedBody` line when it is not a JSON object of the shape the API documents (cut off, a
    list where an object belongs, a number as text, nulls inside lists)."""
    @functools.wraps(parse)
    def parse_or_explain(body: Any, **kwargs) -> T:
        try:
            if isinstance(body, (bytes, str)):
                body = loads_json(body)
            if not isinstance(body, dict):
                raise TypeError(f"the body is {_json_kind(body)}, not a JSON object")
            return parse(body, **kwargs)
        except (AttributeError, TypeError, ValueError, KeyError, IndexError, ArithmeticError) as exc:
            raise MalformedBody(f"the API answered with a body of an unexpected shape ({_one_line(exc)}); "
                                "re-record, or report it with the cassette") from exc
    return parse_or_explain


def json_list(obj: Any, key: str) -> list:
    """`obj[key]` of a response body when it is a list, [] when absent or null. Raises TypeError
    otherwise: `"candidates": {}` is a malformed body, not an empty answer."""
    return _json_field(obj, key, list)


def json_object(obj: Any, key: str) -> dict:
    """`obj[key]` of a response body when it is an object, {} when absent or null; TypeError otherwise."""
    return _json_field(obj, key, dict)


def _json_field(obj: Any, key: str, kind: type) -> Any:
    if not isinstance(obj, dict):
        raise TypeError(f"{_json_kind(obj)} where an object with {key!r} belongs")
    value = obj.get(key)
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise TypeError(f"{key!r} is {_json_kind(value)}, not {_json_kind(kind())}")
    return value


def _json_kind(value: Any) -> str:
    return {type(None): "missing", list: "a JSON list", dict: "a JSON object", str: "a JSON string",
            bool: "a JSON boolean", int: "a JSON number", float: "a JSON number"}.get(type(value), type(value).__name__)


def _one_line(exc: BaseException, width: int = 160) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= width else text[:width - 1] + "…"


def checking_replay(send: Callable[[], R], *, refusals: bool = True, fresh: bool = True) -> R:
    """`send()`: one request and the reading of its response. When reading a response that a
    cassette replayed fails — the SDK's own parsing (pydantic, protobuf, json), ours
    (`MalformedBody`), or an HTTP error the cassette recorded — the cassette's one line
    (`ReplayFault`, naming the interaction) is raised instead: the fault is in the file, so
    retrying, or blaming the API, cannot help. Without `refusals`, a recorded 4xx is left as the
    SamplingError (a caller may fall back from it: `sample_in_units`). `fresh=False` continues
    reading the response of the request `send` last made in this thread."""
    if fresh:
        forget_replayed()
    try:
        return send()
    except Exception as exc:
        fault = replay_fault(_one_line(_reading_error(exc))) if _may_be_the_cassettes(exc, refusals) else None
        if fault is None:
            raise
        raise fault from None


def _may_be_the_cassettes(exc: Exception, refusals: bool) -> bool:
    """Whether `exc` can come from a response no API sends: any error but ours (a SamplingError
    tells what the API said, a CassetteProblem is already the cassette's line), a malformed body,
    or an HTTP error (retryable ones are never recorded; others only when a caller fell back)."""
    if isinstance(exc, MalformedBody):
        return True
    if isinstance(exc, SamplingError):
        return exc.status is not None and (refusals or exc.retryable)
    return not isinstance(exc, CassetteProblem)


def _reading_error(exc: BaseException) -> BaseException:
    return exc.__cause__ if isinstance(exc, MalformedBody) and exc.__cause__ is not None else exc


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
            return policy.call(lambda: checking_replay(lambda: request(s, n, lp), refusals=False))
        except SamplingError as exc:
            if n > 1 and "Multiple candidates" in str(exc):  # e.g. Gemini 3.x
                return [t for j in range(n) for t in unit(s + j, 1, lp)]
            if lp and "refuses log-probabilities" in str(exc):  # a model not known to refuse
                return unit(s, n, False)
            # A refusal nothing falls back from, replayed: recorded by hand or by an older version
            # (a recording that ends in one saves nothing), so the cassette is what to fix.
            fault = replay_fault(str(exc)) if exc.status is not None else None
            if fault is None:
                raise
            raise fault from None

    per_request = max(1, min(per_request, k))
    units = [(seed + i, min(per_request, k - i)) for i in range(0, k, per_request)]
    run = policy.map if parallel else (lambda fn, xs: [fn(x) for x in xs])
    return [t for traces in run(lambda u: unit(u[0], u[1], logprobs), units) for t in traces]


@dataclass(frozen=True)
class Score:
    logp: float  # Σ log π(token | everything before it) over the completion's tokens only
    token_count: int  # how many completion tokens that sum covers


#: A chat prompt: `{"role": "system"|"user"|"assistant", "content": text}` messages, TRL's
#: conversational `prompt`, at most one system message and first, the last message the user's.
Chat = list[dict[str, str]]
#: What a sampler or scorer is given: text, or a chat (`rlhf_eval.suite.Suite.render_prompt`).
Prompt = str | Chat


def split_system(chat: Chat) -> tuple[str | None, Chat]:
    """(the system message's text or None, the other messages) of a chat: the APIs that take the
    system instruction apart (Gemini's `systemInstruction`) are sent it so."""
    if chat and chat[0]["role"] == "system":
        return chat[0]["content"], chat[1:]
    return None, chat


@runtime_checkable
class Sampler(Protocol):
    def sample(self, prompt: Prompt, k: int, seed: int) -> list[Trace]:
        """Return exactly `k` traces for `prompt`; trace i is drawn with seed `seed + i`
        (or, with several candidates per request, the seed of its request).

        `prompt` is text, or for a chat suite a `Chat`, the whole conversation (its system message,
        if any, is the suite's; `model.system_instruction` is already in it): send it as chat,
        answering its last (user) message."""


@runtime_checkable
class Scorer(Protocol):
    name: str  # shown in reports, e.g. "openai:Qwen/Qwen2.5-0.5B" or "hf:/models/ref"

    def score(self, prompt: Prompt, completions: Sequence[str]) -> list[Score]:
        """Teacher-forced log-probability of each completion given `prompt` (text, or a `Chat`
        whose chat template the scorer applies), one `Score` each."""
