"""The Gemini sampler (google-genai, pinned to `v1beta`; Vertex AI through its Vertex mode).

The adapter asks the SDK for the raw HTTP body (`should_return_http_response`) and reads the JSON
itself: every field stays optional (logprobs, avgLogprobs, usage), nothing the API did not send is
filled in, and replay skips the SDK's pydantic response parsing, which dominates replay time when
logprobs are on (see the appendix of the Gemini reference).
"""
from __future__ import annotations

import functools
import os
from typing import Any, Sequence

from ..credentials import redact_urls
from ..sampling import (Chat, Prompt, SamplingError, json_list, json_object, ordered, reads_body, sample_in_units,
                        split_system)
from ..throttle import SERIAL, RequestPolicy
from ..suite import ModelConfig
from ..finish import withheld
from ..reasoning import DEFAULT_TAGS, split_reasoning, answer_logprobs
from ..types import Trace, charge_request

BASE_URL_ENV = "RLHF_EVAL_GEMINI_BASE_URL"
DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
VERTEX_TOKEN_ENV = "RLHF_EVAL_VERTEX_ACCESS_TOKEN"
_MODELS = object()  # `_request`'s system instruction when none is given: the model's
# Replays never reach the network, but the SDK insists on a key; this one never leaves the process.
REPLAY_KEY = "replay-without-a-key"

# google-generativeai asks for integer enums; cassettes recorded with it hold numbers.
_FINISH_REASONS = {
    0: "FINISH_REASON_UNSPECIFIED", 1: "STOP", 2: "MAX_TOKENS", 3: "SAFETY", 4: "RECITATION", 5: "OTHER",
    6: "LANGUAGE", 7: "BLOCKLIST", 8: "PROHIBITED_CONTENT", 9: "SPII", 10: "MALFORMED_FUNCTION_CALL",
    11: "IMAGE_SAFETY",
}
_BLOCK_REASONS = {0: "BLOCK_REASON_UNSPECIFIED", 1: "SAFETY", 2: "OTHER", 3: "BLOCKLIST", 4: "PROHIBITED_CONTENT",
                  5: "IMAGE_SAFETY"}


def request_seed(body: Any) -> int | None:
    """The seed of a generateContent request body (parsed JSON): its `generationConfig.seed`, or
    None. The `gemini` provider's `request_seed` hook (`rlhf_eval.providers`)."""
    config = body.get("generationConfig") if isinstance(body, dict) else None
    seed = config.get("seed") if isinstance(config, dict) else None
    return seed if type(seed) is int else None


def logprobs_supported(model: str, *, vertex: bool) -> bool | None:
    """Whether the API returns log-probabilities for `model` (reference §5, late 2026); None if unknown.

    Asking a model that refuses costs a 400 per request, so known refusals are never asked."""
    name = model.removeprefix("models/")
    if name.startswith(("gemini-3", "gemini-1.0")):
        return False
    if name.startswith("gemini-2.5"):
        return vertex  # "Logprobs is not enabled" on the Developer API; works on Vertex AI
    if name.startswith("gemini-2.0"):
        return True
    return None


@functools.lru_cache(maxsize=32)
def _sdk_client(*, base_url: str | None, api_key: str | None = None,
                vertex: tuple[str | None, str | None, str | None] | None = None, replay: bool = False):
    """One google-genai client per distinct setting, shared by every suite of the process (its
    clients are thread-safe): building one loads the CA bundle twice, ~0.1 s of CPU.
    `vertex` is (project, location, access token or None for Application Default Credentials);
    a `replay` client hands the requests it builds straight to the cassette (`replay_http`)."""
    from google import genai
    from google.genai import types

    replay_client = None
    if replay:
        from .replay_http import ReplayClient
        replay_client = ReplayClient()
    if vertex is None:
        return genai.Client(vertexai=False, api_key=api_key,
                            http_options=types.HttpOptions(base_url=base_url, api_version="v1beta",
                                                           httpx_client=replay_client))
    project, location, token = vertex
    credentials = None
    if token:
        from google.oauth2.credentials import Credentials
        credentials = Credentials(token=token)
    return genai.Client(vertexai=True, project=project, location=location, credentials=credentials,
                        http_options=types.HttpOptions(base_url=base_url, api_version="v1beta1",
                                                       httpx_client=replay_client))


class GeminiSampler:
    """Samples through google-genai pinned to `v1beta` (`v1beta1` on Vertex AI), one request per
    trace unless the suite asks for `candidates_per_request` > 1 (then it falls back to single
    requests if the model refuses). Log-probabilities are requested only where the model gives them;
    for a model not in the table, a refusal is answered by asking again without them."""

    def __init__(self, model: ModelConfig, *, replay: bool = False, api_key: str | None = None,
                 base_url: str | None = None, policy: RequestPolicy = SERIAL):
        from google.genai import errors, types

        from . import api_key as key_from_env, server_url

        self.model = model
        self.policy = policy
        self._types = types
        self._errors = errors
        self._configs: dict[tuple[int, bool], Any] = {}
        self._seeded: dict[tuple[int, int, bool], Any] = {}
        base_url = server_url(base_url or model.base_url, BASE_URL_ENV)
        self.vertex = model.vertex is not None
        self.ask_logprobs = model.logprobs and logprobs_supported(model.name, vertex=self.vertex) is not False
        if model.vertex is not None:
            # a replay needs no token; one from `gcloud auth print-access-token` also works, and
            # without one google-genai uses Application Default Credentials
            token = REPLAY_KEY if replay else os.environ.get(VERTEX_TOKEN_ENV)
            self.base_url = base_url or f"https://{model.vertex.location}-aiplatform.googleapis.com"
            self._client = _sdk_client(vertex=(model.vertex.project, model.vertex.location, token), base_url=base_url,
                                       replay=replay)
        else:
            self.base_url = base_url or DEFAULT_BASE_URL
            self._client = _sdk_client(api_key=api_key or key_from_env("gemini", model.api_key_env) or REPLAY_KEY,
                                       base_url=base_url, replay=replay)

    def _config(self, seed: int, candidates: int, logprobs: bool):
        # Built once per (candidates, logprobs) and copied with the seed: a copy is not validated
        # again (4 µs a request instead of 33 µs). The copies are kept too: every question of a
        # suite asks for the same k seeds, and the SDK only reads a config.
        seeded = self._seeded.get((seed, candidates, logprobs))
        if seeded is not None:
            return seeded
        base = self._configs.get((candidates, logprobs))
        if base is None:
            m, types = self.model, self._types
            base = self._configs[(candidates, logprobs)] = _quick_in(types.GenerateContentConfig)(
                system_instruction=m.system_instruction,
                temperature=m.temperature,
                top_p=m.top_p,
                top_k=m.top_k,
                max_output_tokens=m.max_output_tokens,
                candidate_count=candidates if candidates > 1 else None,
                response_logprobs=True if logprobs else None,
                logprobs=m.top_logprobs if logprobs else None,
                thinking_config=(types.ThinkingConfig(thinking_budget=m.thinking_budget)
                                 if m.thinking_budget is not None else None),
                should_return_http_response=True,
                # no tools are passed; without this the SDK deep-copies the config for its
                # function-calling loop on every request
                automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
            )
        if len(self._seeded) >= 1024:  # a caller drawing ever new seeds (a notebook loop) keeps no more
            self._seeded.clear()
        seeded = self._seeded[(seed, candidates, logprobs)] = base.model_copy(update={"seed": seed})
        return seeded

    def _contents(self, prompt: str):
        """The prompt as the one user turn the SDK would make of the string (the same JSON), built
        from `_quick_in` types. One `Content`, not a list of them: the SDK validates a list
        against every member of its union of content types (0.5 ms a request, 50x longer)."""
        types = self._types
        return _quick_in(types.Content)(role="user", parts=[_quick_in(types.Part)(text=prompt)])

    def _chat_contents(self, turns: Chat):
        """A chat's turns (its system message taken apart) as google-genai `Content`s: role `user`,
        or `model` for an assistant message, as the SDK's own chat sends them. One message is one
        `Content`, as `_contents` sends a text prompt (the same JSON)."""
        types = self._types
        contents = [_quick_in(types.Content)(role="model" if m["role"] == "assistant" else "user",
                                             parts=[_quick_in(types.Part)(text=m["content"])]) for m in turns]
        return contents[0] if len(contents) == 1 else contents

    def _request(self, contents, seed: int, candidates: int, logprobs: bool,
                 system: str | None | object = _MODELS) -> list[Trace]:
        """One generateContent request; `system` (a chat's system message, or None) replaces the
        model's system_instruction, which a chat already holds (`Suite.render_prompt`)."""
        errors = self._errors
        config = self._config(seed, candidates, logprobs)
        if system is not _MODELS and system != self.model.system_instruction:
            config = config.model_copy(update={"system_instruction": system})
        try:
            response = self._client.models.generate_content(
                model=self.model.name, contents=contents, config=config)
        except errors.APIError as exc:
            details = (exc.details or {}).get("error", {}).get("details") if isinstance(exc.details, dict) else None
            raise api_error(exc.code, exc.message or str(exc), details, self.model.name) from exc
        except Exception as exc:
            if not _is_transport_error(exc):
                raise
            raise SamplingError(redact_urls(f"could not reach {self.base_url} ({type(exc).__name__}: {exc}); check "
                                            f"the network, or {BASE_URL_ENV} if you set it"), transient=True) from exc
        return traces_from_response(response.sdk_http_response.body, seed=seed, expected=candidates,
                                    tags=self.model.reasoning_tags)

    def sample(self, prompt: Prompt, k: int, seed: int) -> list[Trace]:
        """k traces for `prompt`: text (one user turn, `model.system_instruction` beside it), or a
        chat (its turns as `contents`, its system message as `systemInstruction`)."""
        if isinstance(prompt, list):
            system, turns = split_system(prompt)
            contents = self._chat_contents(turns)  # shared by the k requests (the SDK only reads it)
            return sample_in_units(lambda s, n, lp: self._request(contents, s, n, lp, system), k=k, seed=seed,
                                   per_request=self.model.candidates_per_request, logprobs=self.ask_logprobs,
                                   policy=self.policy)
        contents = self._contents(prompt)  # shared by the k requests (the SDK only reads it)
        return sample_in_units(lambda s, n, lp: self._request(contents, s, n, lp), k=k, seed=seed,
                               per_request=self.model.candidates_per_request, logprobs=self.ask_logprobs,
                               policy=self.policy)


@functools.cache
def _quick_in(cls: type) -> type:
    """`cls` (a google-genai pydantic type) with an `in` that answers at once.

    google-genai turns a request into its JSON body through `get_value_by_path`, which asks
    `key in obj` for each field of the config (~70), the content and its parts before falling
    back to `getattr`. A pydantic model has no `__contains__`, so each of those asks iterated every
    field as a `(name, value)` pair — and never matched, a field name not being a pair.
    Answering False for a name straight away gives the same answer (the same request body, byte
    for byte; a test compares them). With function calling off, this took the replay of 1,000
    questions x 8 from 21.5 s to 16.3 s."""
    def __contains__(self, item) -> bool:
        if isinstance(item, str):  # what iterating (name, value) pairs would find
            return False
        return any(pair is item or pair == item for pair in self)

    return type(cls.__name__, (cls,), {"__contains__": __contains__, "__module__": __name__})


def _is_transport_error(exc: BaseException) -> bool:
    """Connection and timeout errors from whichever HTTP library the SDK uses (httpx, httpx2, …)."""
    return isinstance(exc, OSError) or type(exc).__module__.split(".")[0] in (
        "httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3")


def api_error(code: int | None, message: str, details: list | None, model: str) -> SamplingError:
    """A SamplingError for a google.rpc error: one line, the status, the RetryInfo delay, and
    whether retrying can help (a per-day quota resets at midnight Pacific: it cannot)."""
    details = details if isinstance(details, list) else []
    retry_after = None
    permanent = False
    for d in details:
        if not isinstance(d, dict):
            continue
        if d.get("retryDelay"):
            try:
                retry_after = float(str(d["retryDelay"]).rstrip("s"))
            except ValueError:
                pass
        for v in d.get("violations") or ():
            if "PerDay" in str(v.get("quotaId", "")):
                permanent = True
    text = _describe(code, message.strip(), model)
    if retry_after is not None:
        text += f" (the API asks to retry after {retry_after:g}s)"
    if permanent:
        text += " (a per-day quota: it resets at midnight Pacific time)"
    return SamplingError(text, status=code, retry_after=retry_after, permanent=permanent)


def describe_api_error(exc, model: str) -> str:
    return _describe(getattr(exc, "code", None), (getattr(exc, "message", None) or str(exc)).strip(), model)


def _describe(code: int | None, message: str, model: str) -> str:
    if code == 400 and "logprobs" in message.lower():
        return f"{model} refuses log-probabilities ({message}); set model.logprobs: false in the suite"
    if code == 400 and "api key" in message.lower():
        return f"the API key was rejected ({message}); set GEMINI_API_KEY to a valid key"
    if code == 404:
        return f"model {model!r} not found ({message}); check model.name"
    if code == 429:
        return f"rate limited by the API ({message}); wait, or record fewer questions at a time"
    return f"the API answered {code}: {message}"


def _enum(value: Any, table: dict[int, str], default: str) -> str:
    if value is None:
        return default
    # An int the table lacks (a newer API) stays visible as a number; it then reads as an unknown reason.
    return table.get(value, f"ENUM_{value}") if isinstance(value, int) else str(value)


# Why `avgLogprobs` never becomes a logp: it is a mean over tokens the API does not name. On the
# real thinking-model bodies in the wire corpus (Vertex gemini-2.5-flash) it times
# candidatesTokenCount is -7.60 and -5.01 where the answer's chosen tokens sum to -0.069 and -0.056;
# no real body shows it agreeing with the answer's tokens on any model, so it is never used.
_AVG_ONLY = ("the API sent only avgLogprobs, a mean over tokens it does not name (on thinking models not the "
             "answer's), so no log-probability is derived from it")


@reads_body
def traces_from_response(body: dict, *, seed: int | None, expected: int,
                         tags: Sequence[str] | None = DEFAULT_TAGS) -> list[Trace]:
    """Traces from one raw `generateContent` JSON body (camelCase, enums as names or ints).

    Thought parts are the reasoning; so is an inline `tags` span in the answer parts. `logp` sums
    the answer's `logprobsResult.chosenCandidates` (Vertex sends no `logProbabilitySum`), never
    `avgLogprobs`; `token_count` is the answer's (`candidatesTokenCount` excludes thoughts, which
    `thoughtsTokenCount` counts). Raises SamplingError for a body of another shape."""
    version = body.get("modelVersion")
    candidates = json_list(body, "candidates")
    usage = json_object(body, "usageMetadata")
    billed = request_usage(usage)
    if not candidates:
        feedback = json_object(body, "promptFeedback")
        reason = _enum(feedback.get("blockReason"), _BLOCK_REASONS, "NO_CANDIDATES")
        message = feedback.get("blockReasonMessage")
        return charge_request([Trace(text="", finish_reason=f"PROMPT_BLOCKED:{reason}", token_count=0, logp=None,
                                     seed=seed, model_version=version, candidate_index=j,
                                     extra={"block_message": message} if message else {})
                               for j in range(expected)], *billed)
    usage = usage if len(candidates) == 1 else {}
    traces = [_trace(cand, j, usage, seed, version, tags) for j, cand in ordered(candidates)]
    for j in range(len(traces), expected):  # the API sent fewer candidates than asked for
        traces.append(Trace(text="", finish_reason="MISSING_CANDIDATE", token_count=0, logp=None,
                            seed=seed, model_version=version, candidate_index=j))
    return charge_request(traces, *billed)


def request_usage(usage: dict) -> tuple[int | None, int | None]:
    """(prompt tokens, output tokens) one generateContent request was billed, from its
    `usageMetadata`: `promptTokenCount`, and `candidatesTokenCount` + `thoughtsTokenCount` (thinking
    is billed as output). proto3 JSON omits a count that is 0 (G04 has no candidatesTokenCount, G05
    no thoughtsTokenCount), so an absent count is 0 once the body reports any; (None, None) when it
    reports none (a prompt screened by Model Armor, G07, has only `trafficType`).
    `cachedContentTokenCount` is part of `promptTokenCount` (billed at a lower rate; see `prices`)."""
    counts = ("promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount", "totalTokenCount")
    if not any(usage.get(key) is not None for key in counts):
        return None, None
    value = {key: usage.get(key) or 0 for key in counts}
    for key, v in value.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise TypeError(f"usageMetadata.{key} is {v!r}, not a token count")
    return value["promptTokenCount"], value["candidatesTokenCount"] + value["thoughtsTokenCount"]


def _trace(cand: dict, j: int, usage: dict, seed: int | None, version: str | None, tags) -> Trace:
    """One candidate; `usage` is the response's usageMetadata when it describes this candidate alone."""
    parts = json_list(json_object(cand, "content"), "parts")
    thoughts = "".join(p.get("text") or "" for p in parts if p.get("thought")).strip()
    shown = "".join(p.get("text") or "" for p in parts if not p.get("thought"))
    reasoning_tokens = usage.get("thoughtsTokenCount")
    split = split_reasoning(shown, tags, beside=thoughts or None, reasoned=bool(reasoning_tokens))
    finish = _enum(cand.get("finishReason"), _FINISH_REASONS, "STOP")

    chosen = json_list(json_object(cand, "logprobsResult"), "chosenCandidates")
    logp = tokens = note = source = None
    if withheld(finish):
        note = f"the API withheld the answer (finishReason {finish})"
    elif chosen:
        # proto3 JSON omits a field at its default, so a token with probability 1 has no logProbability
        logp, tokens, note = answer_logprobs([c.get("token", "") for c in chosen] if split.reasoned else (),
                                             [c.get("logProbability", 0.0) for c in chosen],
                                             shown, split.answer_start, has_reasoning=split.reasoned)
        source = "logprobsResult.chosenCandidates" if logp is not None else None
    elif cand.get("avgLogprobs") is not None:
        note = _AVG_ONLY
    if tokens is None and not split.tagged:  # an inline span is inside candidatesTokenCount
        if cand.get("tokenCount") is not None:
            tokens = int(cand["tokenCount"])
        elif usage:  # proto3 JSON omits a zero count
            tokens = int(usage.get("candidatesTokenCount") or 0)
    return Trace(
        text=split.answer, finish_reason=finish, token_count=tokens, logp=logp, seed=seed, model_version=version,
        candidate_index=j, logp_source=source, reasoning=split.reasoning,
        reasoning_tokens=int(reasoning_tokens) if reasoning_tokens is not None else None, logp_note=note,
        answer_missing=split.answer_missing,
    )
