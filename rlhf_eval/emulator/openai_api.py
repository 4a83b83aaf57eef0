"""OpenAI-compatible endpoints of the emulator, as vLLM, SGLang and llama.cpp's server expose them.

``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models`` and
``GET /v1/models/{id}``. The behaviour is documented in
the package's README.md (section "OpenAI-compatible endpoints"); the answers come
from the same trace bank, hash and (per-model tempered) unigram model as the Gemini endpoints
(see ``server.py`` and ``bank.py``).
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import weakref
from typing import Any
from urllib.parse import unquote

from .bank import Bank, UnigramModel, normalize_ws, tokenize
from .server import (
    MARKER_RE,
    ApiError,
    EmulatorState,
    RawJSON,
    _number,
    boxed_answer,
    cut_at_stops,
    echo_key_text,
    parse_markers,
    pick_trace,
    wait_ms,
)
from .thoughts import reasoning_hash, reasoning_text

MAX_CHOICES = 8  # n
MAX_CHAT_TOP_LOGPROBS = 20  # chat ``top_logprobs``
MAX_COMPLETION_LOGPROBS = 5  # legacy completions ``logprobs`` (OpenAI's limit)
MAX_PROMPT_LOGPROBS = 20  # vLLM's ``prompt_logprobs`` (its default ``max_logprobs``)
#: ``max_tokens`` of ``/v1/completions`` when the request has none (OpenAI's and vLLM's default;
#: llama.cpp has no limit).
DEFAULT_COMPLETION_MAX_TOKENS = 16
OWNED_BY = "rlhf-eval-emulator"
#: What ``GET /v1/models`` lists. Any other model name works just as well.
LISTED_MODELS = (
    "Qwen/Qwen2.5-Math-7B-Instruct",
    "meta-llama/Llama-3.1-8B-Instruct",
    "llama-cpp",
    "llama-cpp-strict",
)

QUIRK_LLAMA_CPP = "llama.cpp"  # model names starting "llama-cpp": echo silently ignored
QUIRK_LLAMA_CPP_STRICT = "llama.cpp-strict"  # "llama-cpp-strict*": echo refused with 400

_PATHS = ("/v1/chat/completions", "/v1/completions")
_MODEL_PATH_RE = re.compile(r"^/v1/models(?:/([^:]+))?$")
# llama.cpp's error "type" per HTTP status (its error body is {"error": {code, message, type}})
_LLAMA_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 500: "server_error", 501: "not_supported_error", 503: "unavailable_error",
}


def openai_quirks(model: str) -> str | None:
    """Which server the model name asks the emulator to imitate: llama.cpp (``llama-cpp*``),
    llama.cpp refusing echo (``llama-cpp-strict*``), or None (vLLM/SGLang/OpenAI-like)."""
    m = model.lower()
    if m.startswith("llama-cpp-strict"):
        return QUIRK_LLAMA_CPP_STRICT
    if m.startswith("llama-cpp"):
        return QUIRK_LLAMA_CPP
    return None


SERVER_VLLM = "vllm"  # any other name: vLLM's response shape (wire corpus O02, O04)
SERVER_LLAMA_CPP = "llama.cpp"  # names starting "llama-cpp" (O03, S01)
SERVER_DEEPSEEK = "deepseek"  # names starting "deepseek-" (DeepSeek's own API: deepseek-chat, deepseek-reasoner; O05)

#: How a reasoning model's reasoning reaches the client (see :func:`reasoning_style`).
STYLE_REASONING_CONTENT = "reasoning_content"  # message.reasoning_content (DeepSeek, older vLLM, SGLang)
STYLE_REASONING = "reasoning"  # message.reasoning (newer vLLM, O04)
STYLE_THINK = "think"  # inline <think>...</think> at the start of content (no reasoning parser)
THINK_OPEN, THINK_CLOSE, THINK_SEP = "<think>", "</think>", "\n\n"
#: The emulator marker in llama.cpp's and DeepSeek's free-form build ids (vLLM sends null).
LLAMA_CPP_FINGERPRINT = "b0000-emulator"


def openai_server(model: str) -> str:
    """Which server's response shape a model name gets: llama.cpp (``llama-cpp*``), DeepSeek's
    API (``deepseek-*``, e.g. ``deepseek-reasoner``; not ``deepseek-ai/...``, a vLLM-served
    checkpoint) or vLLM (every other name). Case-insensitive."""
    if openai_quirks(model) is not None:
        return SERVER_LLAMA_CPP
    if model.lower().startswith("deepseek-"):
        return SERVER_DEEPSEEK
    return SERVER_VLLM


def reasoning_style(model: str, override: str | None = None) -> str | None:
    """How the model's reasoning is sent, or None for a model that does not reason.

    ``override`` (the ``[[emulator:reasoning=MODE]]`` marker) wins: ``reasoning_content``,
    ``reasoning``, ``think`` or ``none``. Otherwise by name, case-insensitive, first match:
    ``reasoner`` or ``-r1`` -> ``reasoning_content``; ``glm`` -> ``reasoning``; ``qwq``, or
    ``qwen3`` without ``instruct`` / ``coder`` -> ``think``; anything else does not reason."""
    if override is not None:
        return None if override == "none" else override
    m = model.lower()
    if "reasoner" in m or "-r1" in m:
        return STYLE_REASONING_CONTENT
    if "glm" in m:
        return STYLE_REASONING
    if "qwq" in m or ("qwen3" in m and "instruct" not in m and "coder" not in m):
        return STYLE_THINK
    return None


def system_fingerprint(server: str, model: str) -> str | None:
    """``system_fingerprint``: vLLM sends null (O04); llama.cpp its build ``b<N>-<commit>``
    (O03) -- here ``b0000-emulator``; DeepSeek ``fp_<10 hex>_<deployment>`` (O05) -- here
    ``fp_<10 hex of the model name>_emulator``. Never the model name."""
    if server == SERVER_LLAMA_CPP:
        return LLAMA_CPP_FINGERPRINT
    if server == SERVER_DEEPSEEK:
        return f"fp_{hashlib.blake2b(model.encode('utf-8', 'surrogatepass'), digest_size=5).hexdigest()}_emulator"
    return None


def _response_id(server: str, kind: str, rid: str) -> str:
    """vLLM: ``chatcmpl-emulator-<hex>`` / ``cmpl-emulator-<hex>``; llama.cpp:
    ``chatcmpl-emulator-<hex>`` on both endpoints (as llama.cpp names completions too, O03);
    DeepSeek: a UUID (O05)."""
    if server == SERVER_DEEPSEEK:
        return f"{rid[:8]}-{rid[8:12]}-{rid[12:16]}-{rid[16:20]}-{rid[20:32]}"
    if server == SERVER_LLAMA_CPP or kind == "chat":
        return f"chatcmpl-emulator-{rid}"
    return f"cmpl-emulator-{rid}"


def is_openai_route(method: str, path: str) -> bool:
    """True for the paths this module answers (none of them clashes with a Gemini path:
    Gemini's ``/v1/models/{m}:generateContent`` has a colon, which a model id here cannot)."""
    if path in _PATHS:
        return True
    return method == "GET" and _MODEL_PATH_RE.match(path) is not None


# --------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------
class OpenAIError(Exception):
    """An error response: ``{"error": {"message", "type", "param", "code"}}`` (OpenAI's shape),
    or ``{"error": {"code", "message", "type"}}`` for the llama.cpp imitation."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str | None = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers or {}
        self.delay = 0.0

    def body(self, quirk: str | None = None) -> dict:
        if quirk is not None:
            return {"error": {"code": self.status, "message": self.message,
                              "type": _LLAMA_TYPES.get(self.status, self.type)}}
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def _bad(message: str, param: str | None = None, code: str | None = None) -> OpenAIError:
    return OpenAIError(400, message, "invalid_request_error", param, code)


def _go_duration(ms: int) -> str:
    """A wait as OpenAI's ``x-ratelimit-reset-requests`` header words it: ``"400ms"``, ``"1.5s"``."""
    return f"{ms}ms" if ms < 1000 else f"{ms / 1000:g}s"


def rate_limited(model: str, rpm: float, wait_s: float) -> OpenAIError:
    """The 429 of the server-wide rate limit (``rate_limit_rpm``), with ``retry-after`` (whole
    seconds, rounded up) and ``retry-after-ms`` (milliseconds, rounded up) headers, which the
    openai SDK reads (``retry-after-ms`` first), and the ``x-ratelimit-*-requests`` headers."""
    ms = wait_ms(wait_s)
    return OpenAIError(
        429,
        f"Rate limit reached for {model} in organization org-emulator on requests per min (RPM): "
        f"Limit {_number(rpm)}, Used {_number(rpm)}, Requested 1. Please try again in {_go_duration(ms)}.",
        "requests", None, "rate_limit_exceeded",
        {
            "retry-after": str(math.ceil(ms / 1000)),
            "retry-after-ms": str(ms),
            "x-ratelimit-limit-requests": _number(rpm),
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": _go_duration(ms),
        },
    )


def injected_error(status: int, model: str) -> OpenAIError:
    """The error a ``[[emulator:CODE]]`` marker asks for, worded as OpenAI words it."""
    if status == 429:
        return OpenAIError(
            429,
            f"Rate limit reached for {model} in organization org-emulator on requests per min (RPM): "
            "Limit 15, Used 15, Requested 1. Please try again in 2s.",
            "requests", None, "rate_limit_exceeded", {"retry-after": "2"},
        )
    if status == 404:
        return OpenAIError(404, f"The model `{model}` does not exist or you do not have access to it.",
                           "invalid_request_error", None, "model_not_found")
    if status == 403:
        return OpenAIError(403, "You are not allowed to sample from this model", "invalid_request_error")
    if status == 500:
        return OpenAIError(500, "The server had an error while processing your request. Sorry about that!",
                           "server_error")
    if status == 503:
        return OpenAIError(503, "The engine is currently overloaded, please try again later", "server_error")
    if status == 504:
        return OpenAIError(504, "Request timed out.", "server_error")
    return _bad("Request contains an invalid argument.")


# --------------------------------------------------------------------------------------
# request parameters (tolerant of floats and numeric strings, like the Gemini side)
# --------------------------------------------------------------------------------------
def _type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, (list, tuple)):
        return "an array"
    if isinstance(v, dict):
        return "an object"
    return "a number"


def _int(body: dict, name: str) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    try:
        if isinstance(v, bool):
            raise ValueError
        f = float(v)
        if not f.is_integer():
            raise ValueError
        return int(f)
    except (TypeError, ValueError, OverflowError):
        raise _bad(f"Invalid type for '{name}': expected an integer, but got {_type_name(v)} instead.",
                   name, "invalid_type") from None


def _float(body: dict, name: str) -> float | None:
    v = body.get(name)
    if v is None:
        return None
    try:
        if isinstance(v, bool):
            raise ValueError
        f = float(v)
        if f != f:
            raise ValueError
        return f
    except (TypeError, ValueError):
        raise _bad(f"Invalid type for '{name}': expected a decimal, but got {_type_name(v)} instead.",
                   name, "invalid_type") from None


def _bool(body: dict, name: str) -> bool:
    v = body.get(name)
    if v is None:
        return False
    if isinstance(v, bool):
        return v
    if v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):
        return v.strip().lower() == "true"
    raise _bad(f"Invalid type for '{name}': expected a boolean, but got {_type_name(v)} instead.",
               name, "invalid_type")


def _in_range(name: str, v: float | int | None, lo: float, hi: float) -> None:
    if v is None:
        return
    kind = "integer" if isinstance(v, int) else "decimal"
    if v < lo:
        raise _bad(f"Invalid '{name}': {kind} below minimum value. Expected a value >= {lo}, but got {v} instead.",
                   name, f"{kind}_below_min_value")
    if v > hi:
        raise _bad(f"Invalid '{name}': {kind} above maximum value. Expected a value <= {hi}, but got {v} instead.",
                   name, f"{kind}_above_max_value")


def _stops(body: dict) -> list[str]:
    stops = body.get("stop")
    if stops is None:
        return []
    if isinstance(stops, str):
        stops = [stops]
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise _bad("Invalid type for 'stop': expected a string or an array of strings.", "stop", "invalid_type")
    return [s for s in stops if s]


def _model(body: dict) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _bad("you must provide a model parameter")
    return model


class _Sampling:
    """The sampling settings shared by both endpoints."""

    def __init__(self, body: dict, *, max_tokens: int | None, allow_zero_tokens: bool):
        n = _int(body, "n")
        self.n: int = 1 if n is None else n
        _in_range("n", self.n, 1, MAX_CHOICES)
        temperature = _float(body, "temperature")
        _in_range("temperature", temperature, 0, 2)
        _in_range("top_p", _float(body, "top_p"), 0, 1)
        self.greedy = temperature == 0
        self.seed = _int(body, "seed")
        if max_tokens is not None and max_tokens < (0 if allow_zero_tokens else 1):
            raise _bad(f"max_tokens must be at least 1, got {max_tokens}.", "max_tokens", "invalid_value")
        self.max_tokens = max_tokens
        self.stops = _stops(body)
        if _bool(body, "stream"):
            raise _bad("stream: true is not supported by the rlhf-eval emulator; send stream: false.",
                       "stream", "unsupported_value")


# --------------------------------------------------------------------------------------
# the shared generation step
# --------------------------------------------------------------------------------------
class _Gen:
    """One generated choice. ``r_chosen`` / ``a_chosen``: the chosen entries of the reasoning
    tokens (``<think>``, the reasoning, ``</think>``, ``"\\n\\n"``; empty for a model that does not
    reason) and of the answer tokens, as far as ``max_tokens`` let them through. ``answer`` is the
    answer text (None when the reasoning never closed), ``reasoning`` the reasoning text as a
    reasoning field carries it, ``inline`` everything generated as one text (``<think>`` inline)."""

    __slots__ = ("r_chosen", "a_chosen", "answer", "reasoning", "inline", "finish", "stop_reason")

    def __init__(self, r_chosen: tuple, a_chosen: tuple, answer: str | None, reasoning: str | None, inline: str,
                 finish: str, stop_reason: str | None):
        self.r_chosen, self.a_chosen, self.answer, self.reasoning = r_chosen, a_chosen, answer, reasoning
        self.inline, self.finish, self.stop_reason = inline, finish, stop_reason

    @property
    def n_tokens(self) -> int:
        return len(self.r_chosen) + len(self.a_chosen)


class _Prompt:
    """A raw prompt as the generator sees it: markers removed (``clean``), whitespace
    collapsed (``norm``, the hash input) and its bank question (``qi``), as on the Gemini side."""

    __slots__ = ("clean", "norm", "qi")

    def __init__(self, bank: Bank, raw_prompt: str):
        self.clean = MARKER_RE.sub(" ", raw_prompt)
        self.norm = normalize_ws(self.clean)
        self.qi = bank.find(self.norm)


def _first_stop(text: str, stops: list[str]) -> str | None:
    hits = [(i, s) for s in stops for i in (text.find(s),) if i >= 0]
    return min(hits)[1] if hits else None


def _generate(bank: Bank, model: str, p: _Prompt, j: int, sp: _Sampling, seed: int, pad_to: int = 0,
              prefix: str = "", style: str | None = None, boxed: bool = False) -> _Gen:
    """Choice ``j`` for one prompt: the answer is exactly the text the Gemini side would give for
    the same model, prompt, seed and candidate index (padding to ``pad_to`` tokens, the
    ``echo_key`` ``prefix``, stop sequences); a reasoning model (``style``) generates its
    reasoning first. ``max_tokens`` then cuts reasoning and answer together."""
    trace = pick_trace(bank, model, p.norm, p.clean, p.qi, seed, j, sp.greedy, pad_to)
    lm = bank.model_for(model)
    if boxed:
        trace = lm.make_trace(boxed_answer(trace.text))
    if prefix:
        trace = lm.make_trace(prefix + trace.text)
    stop_hit = _first_stop(trace.text, sp.stops)
    trace = cut_at_stops(lm, trace, sp.stops)
    r_chosen: tuple = ()
    thought = None
    n_reasoning = 0  # reasoning tokens before max_tokens
    if style is not None:
        thought = reasoning_text(p.clean, trace.text, reasoning_hash(model, p.norm, seed, j, sp.greedy),
                                 style="raw")[0]
        r_tokens = (THINK_OPEN, *tokenize("\n" + thought + "\n"), THINK_CLOSE, THINK_SEP)
        r_chosen = tuple(lm.entry(t) for t in r_tokens)
        n_reasoning = len(r_chosen)
    a_chosen, finish = trace.chosen, "stop"
    limit = sp.max_tokens
    if limit is not None and (len(r_chosen) + len(a_chosen) > limit or limit == 0):
        room = max(0, limit - len(r_chosen))
        a_chosen, r_chosen = a_chosen[:room], r_chosen[:limit]
        finish, stop_hit = "length", None
    closed = len(r_chosen) == n_reasoning  # the reasoning (if any) ended: the answer started
    answer = (trace.text if len(a_chosen) == len(trace.chosen) else "".join(c["token"] for c in a_chosen)) \
        if closed else None
    reasoning = None
    if style is not None:
        reasoning = thought if closed else "".join(c["token"] for c in r_chosen[1:]).strip()
    inline = "".join(c["token"] for c in r_chosen) + (answer or "")
    return _Gen(r_chosen, a_chosen, answer, reasoning, inline, finish, stop_hit)


def _prepare(state: EmulatorState, path: str, body: dict, model: str, raw_prompts: list[str], param: str,
             seed: int | None):
    """Markers, injected faults and the implicit seed. Returns (markers, seed, response-id hash)."""
    try:
        markers = parse_markers("\n".join(raw_prompts))
    except ApiError as e:
        raise _bad(e.message, param) from None
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if markers.error_code is not None:
        if markers.error_times is None or state.times_seen(f"openai\x1f{path}\x1f{canonical}") < markers.error_times:
            err = injected_error(markers.error_code, model)
            err.delay = markers.delay
            state.note_marker_error()
            raise err
    if markers.mode == "block":
        err = _bad("The response was filtered due to the prompt triggering the content management policy. "
                   "Please modify your prompt and retry.", "prompt", "content_filter")
        err.delay = markers.delay
        raise err
    salt = ""
    if seed is None:  # the n-th answer to this exact request uses seed n
        seed = state.implicit_seed(f"{path}\x1f{canonical}")
        if seed:
            salt = f"\x1fimplicit-seed={seed}"
    return markers, seed, hashlib.blake2b(f"{model}\x1f{canonical}{salt}".encode("utf-8", "surrogatepass"),
                                          digest_size=16).hexdigest()


def _usage(server: str, prompt_tokens: int, completion_tokens: int, reasoning: int | None = None) -> dict:
    """``usage``; ``completion_tokens`` includes the ``reasoning`` tokens (O04, O05)."""
    u: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if reasoning is not None:
        u["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    if server == SERVER_VLLM:
        u["prompt_tokens_details"] = {"cached_tokens": 0, "multimodal_tokens": None}
    elif server == SERVER_DEEPSEEK:
        u["prompt_tokens_details"] = {"cached_tokens": 0}
        u["prompt_cache_hit_tokens"] = 0
        u["prompt_cache_miss_tokens"] = prompt_tokens
    return u


def _withheld_finish(reason: str | None) -> str:
    """The OpenAI finish_reason of a ``finish=REASON`` marker: ``stop`` for STOP, else
    ``content_filter`` (``safety`` included; MAX_TOKENS is the ``max_tokens`` marker)."""
    return "stop" if reason == "STOP" else "content_filter"


# --------------------------------------------------------------------------------------
# logprob shapes (each step's JSON is cached: a step's alternatives depend only on the
# token, its pool offset and k -- see UnigramModel.top_step)
# --------------------------------------------------------------------------------------
_CACHES: "weakref.WeakKeyDictionary[UnigramModel, dict]" = weakref.WeakKeyDictionary()
_CACHE_MAX = 500_000


def _cache(lm: UnigramModel) -> dict:
    c = _CACHES.get(lm)
    if c is None:
        c = _CACHES.setdefault(lm, {})
    elif len(c) > _CACHE_MAX:
        c.clear()
    return c


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _step_key(lm: UnigramModel, kind: str, c: dict, step: int, k: int) -> tuple:
    n = len(lm.pool)
    return (kind, c["token"], (c["tokenId"] * 31 + step * 7) % n if n and k else 0, k)


def _content_logprobs(lm: UnigramModel, segments: tuple, k: int, *, llama: bool = False) -> RawJSON:
    """The ``content`` list of chat logprobs (and of llama.cpp's completions logprobs): one entry
    per token of each segment (the reasoning's, then the answer's; each segment's steps count from
    0, so the answer's alternatives are those of the same answer without reasoning), with ``k``
    alternatives in ``top_logprobs`` (those of the Gemini side's ``topCandidates``, chosen
    included). ``llama``: llama.cpp's entries, which carry the token ``id`` too (S01)."""
    cache = _cache(lm)
    kind = "llama" if llama else "chat"
    parts = []
    for chosen in segments:
        for step, c in enumerate(chosen):
            key = _step_key(lm, kind, c, step, k)
            sj = cache.get(key)
            if sj is None:
                tok = c["token"]
                tops = []
                for a in (lm.top_step(c, step, k) if k else ()):
                    alt = {"id": a["tokenId"]} if llama else {}
                    alt.update({"token": a["token"], "logprob": a["logProbability"],
                                "bytes": list(a["token"].encode("utf-8"))})
                    tops.append(alt)
                entry = {"id": c["tokenId"]} if llama else {}
                entry.update({"token": tok, "logprob": c["logProbability"], "bytes": list(tok.encode("utf-8")),
                              "top_logprobs": tops})
                sj = cache[key] = _dumps(entry)
            parts.append(sj)
    return RawJSON("[" + ",".join(parts) + "]")


def _chat_logprobs(lm: UnigramModel, segments: tuple, k: int, server: str) -> dict:
    """``choices[i].logprobs`` of a chat completion: every generated token, the reasoning's
    included (as vLLM reports them). llama.cpp sends ``{"content"}`` alone, with token ids."""
    if server == SERVER_LLAMA_CPP:
        return {"content": _content_logprobs(lm, segments, k, llama=True)}
    return {"content": _content_logprobs(lm, segments, k), "refusal": None}


def _legacy_logprobs(lm: UnigramModel, prompt_chosen: tuple | None, segments: tuple, k: int) -> dict:
    """``choices[i].logprobs`` of a legacy completion: the echoed prompt's tokens (if any; the
    first has ``null`` logprob and top_logprobs, as OpenAI and vLLM answer), then the
    generated ones. ``top_logprobs[i]`` maps token -> logprob for the chosen token and ``k``
    alternatives (OpenAI: "up to logprobs+1 elements")."""
    cache = _cache(lm)
    tokens: list[str] = []
    token_logprobs: list[float | None] = []
    top: list[str] = []
    offsets: list[int] = []
    off = 0
    for seq, is_prompt in ((prompt_chosen or (), True), *((s, False) for s in segments)):
        for step, c in enumerate(seq):
            tok = c["token"]
            tokens.append(tok)
            offsets.append(off)
            off += len(tok)
            if is_prompt and step == 0:
                token_logprobs.append(None)
                top.append("null")
            else:
                token_logprobs.append(c["logProbability"])
                key = _step_key(lm, "legacy", c, step, k + 1)
                sj = cache.get(key)
                if sj is None:
                    sj = cache[key] = _dumps({a["token"]: a["logProbability"] for a in lm.top_step(c, step, k + 1)})
                top.append(sj)
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": RawJSON("[" + ",".join(top) + "]"),
            "text_offset": offsets}


def _prompt_logprobs(lm: UnigramModel, prompt_chosen: tuple, k: int) -> RawJSON:
    """vLLM's ``prompt_logprobs``: ``null`` for the first prompt token, then per token a dict
    ``{token_id: {logprob, rank, decoded_token}}`` with the actual token first and ``k``
    alternatives; ``rank`` is the token's true rank under the model's unigram model."""
    cache = _cache(lm)
    out: list[str] = []
    for step, c in enumerate(prompt_chosen):
        if step == 0:
            out.append("null")
            continue
        key = _step_key(lm, "prompt", c, step, k + 1)
        sj = cache.get(key)
        if sj is None:
            d: dict[str, dict] = {}
            alts = [a for a in lm.top_step(c, step, k + 1) if a["token"] != c["token"]][:k]
            for a in [c, *alts]:
                d.setdefault(str(a["tokenId"]), {"logprob": a["logProbability"], "rank": lm.rank(a["token"]),
                                                 "decoded_token": a["token"]})
            sj = cache[key] = _dumps(d)
        out.append(sj)
    return RawJSON("[" + ",".join(out) + "]")


# --------------------------------------------------------------------------------------
# endpoints
# --------------------------------------------------------------------------------------
def _message_texts(content: Any, i: int) -> list[str]:
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict) and part.get("type", "text") == "text" and isinstance(part.get("text"), str):
                out.append(part["text"])
        return out
    raise _bad(f"Invalid type for 'messages[{i}].content': expected one of a string or array of objects, "
               f"but got {_type_name(content)} instead.", f"messages[{i}].content", "invalid_type")


def _message(server: str, style: str | None, content: str | None, reasoning: str | None) -> dict:
    """``choices[i].message``. A reasoning field (``style`` reasoning_content / reasoning) sits
    beside ``content``; vLLM also sends its null fields (O04), with ``reasoning: null`` when
    nothing fills it."""
    msg: dict[str, Any] = {"role": "assistant", "content": content}
    if server == SERVER_VLLM:
        msg.update({"refusal": None, "annotations": None, "audio": None, "function_call": None})
        if style == STYLE_REASONING_CONTENT:
            msg["reasoning_content"] = reasoning
        else:
            msg["reasoning"] = reasoning if style == STYLE_REASONING else None
    elif style in (STYLE_REASONING_CONTENT, STYLE_REASONING):
        msg[style] = reasoning
    return msg


def _chat_choice(server: str, j: int, message: dict, logprobs: dict | None, finish: str, stop_reason: str | None,
                 want_lp: bool) -> dict:
    if server == SERVER_LLAMA_CPP:  # llama.cpp: no logprobs key unless asked
        choice: dict[str, Any] = {"finish_reason": finish, "index": j, "message": message}
        if want_lp and logprobs is not None:
            choice["logprobs"] = logprobs
        return choice
    choice = {"index": j, "message": message, "logprobs": logprobs, "finish_reason": finish}
    if server == SERVER_VLLM:
        choice.update({"stop_reason": stop_reason, "token_ids": None, "routed_experts": None})
    return choice


def chat_completions(state: EmulatorState, path: str, body: dict, api_key: str = "") -> tuple[dict, float]:
    model = _model(body)
    quirk = openai_quirks(model)
    server = openai_server(model)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' is a required property" if messages is None else
                   "Invalid 'messages': expected a non-empty array of message objects.", "messages")
    user: list[str] = []  # the last user message's texts: what the model answers
    system: list[str] = []
    context: list[str] = []  # every user and assistant text: what the prompt's tokens count
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise _bad(f"Invalid type for 'messages[{i}]': expected an object, but got {_type_name(msg)} instead.",
                       f"messages[{i}]", "invalid_type")
        role = msg.get("role")
        if role not in ("system", "developer", "user", "assistant", "tool", "function"):
            raise _bad(f"Invalid value: '{role}'. Supported values are: 'system', 'developer', 'user', "
                       "'assistant', 'tool', and 'function'.", f"messages[{i}].role", "invalid_value")
        texts = _message_texts(msg.get("content"), i)
        if role == "user":
            user = list(texts)
        if role in ("user", "assistant"):
            context.extend(texts)
        elif role in ("system", "developer"):
            system.extend(texts)
    raw_prompt = "\n".join(user)

    mt = body.get("max_completion_tokens")
    max_tokens = _int(body, "max_completion_tokens" if mt is not None else "max_tokens")
    sp = _Sampling(body, max_tokens=max_tokens, allow_zero_tokens=quirk is not None)
    want_lp = _bool(body, "logprobs")
    k = _int(body, "top_logprobs")
    _in_range("top_logprobs", k, 0, MAX_CHAT_TOP_LOGPROBS)
    if k is not None and not want_lp:
        raise _bad("Invalid value for 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' is used.",
                   "top_logprobs", "invalid_value")

    markers, seed, rid = _prepare(state, path, body, model, [raw_prompt], "messages", sp.seed)
    style = reasoning_style(model, markers.reasoning)
    bank = state.bank
    lm = bank.model_for(model)
    prompt_tokens = len(tokenize("\n".join(context))) + (len(tokenize("\n".join(system))) if system else 0)
    choices = []
    completion_tokens = 0
    reasoning_tokens = None
    prompt = _Prompt(bank, raw_prompt)
    for j in range(sp.n):
        if markers.mode == "finish":  # withheld by a content policy
            choices.append(_chat_choice(server, j, _message(server, style, None if markers.reason != "STOP" else "",
                                                            None), None, _withheld_finish(markers.reason), None,
                                        False))
            continue
        if markers.mode == "max_tokens":  # a reasoning model that spent its whole budget
            budget = sp.max_tokens or 8192
            completion_tokens += budget
            reasoning_tokens = (reasoning_tokens or 0) + budget
            choices.append(_chat_choice(server, j, _message(server, style, "", None), None, "length", None, False))
            continue
        g = _generate(bank, model, prompt, j, sp, seed, state.pad_to_tokens,
                      echo_key_text(api_key) if markers.echo_key else "", style, markers.boxed)
        completion_tokens += g.n_tokens
        if style in (STYLE_REASONING_CONTENT, STYLE_REASONING):  # a reasoning parser counts them
            reasoning_tokens = (reasoning_tokens or 0) + len(g.r_chosen)
            message = _message(server, style, g.answer, g.reasoning)
        else:
            message = _message(server, style, g.inline, None)
        lp = _chat_logprobs(lm, (g.r_chosen, g.a_chosen), k or 0, server) if want_lp else None
        choices.append(_chat_choice(server, j, message, lp, g.finish, g.stop_reason, want_lp))
    usage = _usage(server, prompt_tokens, completion_tokens, reasoning_tokens)
    fp = system_fingerprint(server, model)
    rid_s = _response_id(server, "chat", rid)
    if server == SERVER_LLAMA_CPP:
        resp: dict[str, Any] = {"choices": choices, "created": 0, "model": model, "system_fingerprint": fp,
                                "object": "chat.completion", "usage": usage, "id": rid_s}
    else:
        resp = {"id": rid_s, "object": "chat.completion", "created": 0, "model": model, "choices": choices}
        if server == SERVER_VLLM:
            resp.update({"service_tier": None, "system_fingerprint": fp, "usage": usage, "prompt_logprobs": None,
                         "prompt_token_ids": None, "prompt_text": None, "kv_transfer_params": None, "metrics": None})
        else:
            resp.update({"usage": usage, "system_fingerprint": fp})
    return resp, markers.delay


def completions(state: EmulatorState, path: str, body: dict, api_key: str = "") -> tuple[dict, float]:
    model = _model(body)
    quirk = openai_quirks(model)
    server = openai_server(model)
    prompts = body.get("prompt")
    if isinstance(prompts, str):
        prompts = [prompts]
    if prompts is None:
        raise _bad("'prompt' is a required property", "prompt")
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise _bad("Invalid 'prompt': the rlhf-eval emulator takes a string or a non-empty array of strings "
                   "(token-id prompts are not supported).", "prompt", "invalid_type")

    echo = _bool(body, "echo")
    if echo and quirk == QUIRK_LLAMA_CPP_STRICT:
        raise _bad("echo is not supported", "echo")
    if quirk is not None:
        echo = False  # llama.cpp: echo is silently ignored
    k = _int(body, "logprobs")
    _in_range("logprobs", k, 0, MAX_COMPLETION_LOGPROBS)
    pk = _int(body, "prompt_logprobs") if quirk is None else None  # vLLM's extension
    _in_range("prompt_logprobs", pk, 0, MAX_PROMPT_LOGPROBS)
    max_tokens = _int(body, "max_tokens")
    if max_tokens is None and quirk is None:
        max_tokens = DEFAULT_COMPLETION_MAX_TOKENS
    sp = _Sampling(body, max_tokens=max_tokens, allow_zero_tokens=echo or quirk is not None)

    markers, seed, rid = _prepare(state, path, body, model, prompts, "prompt", sp.seed)
    # no reasoning parser on /v1/completions: a reasoning model's <think> span is part of the text
    style = STYLE_THINK if reasoning_style(model, markers.reasoning) is not None else None
    bank = state.bank
    lm = bank.model_for(model)  # the same model scores the echoed prompt and the generated text
    choices: list[dict[str, Any]] = []
    prompt_tokens = 0
    completion_tokens = 0
    reasoning = None
    for raw in prompts:
        p_trace = lm.make_trace(raw) if (echo and k is not None) or pk is not None else None
        prompt_tokens += len(p_trace.tokens) if p_trace is not None else len(tokenize(raw))
        prompt = _Prompt(bank, raw)
        for j in range(sp.n):
            prefix = raw if echo else ""
            if markers.mode in ("finish", "max_tokens"):
                if markers.mode == "max_tokens":
                    budget = sp.max_tokens or 8192
                    completion_tokens += budget
                    reasoning = (reasoning or 0) + budget
                    finish = "length"
                else:
                    finish = _withheld_finish(markers.reason)
                choice = {"text": prefix, "index": len(choices), "logprobs": None, "finish_reason": finish}
            else:
                g = _generate(bank, model, prompt, j, sp, seed, state.pad_to_tokens,
                              echo_key_text(api_key) if markers.echo_key else "", style, markers.boxed)
                completion_tokens += g.n_tokens
                lp = None
                if k is not None:
                    if server == SERVER_LLAMA_CPP:  # llama.cpp's current shape (S01)
                        lp = {"content": _content_logprobs(lm, (g.r_chosen, g.a_chosen), k, llama=True)}
                    else:
                        lp = _legacy_logprobs(lm, p_trace.chosen if echo and p_trace else None,
                                              (g.r_chosen, g.a_chosen), k)
                choice = {"text": prefix + g.inline, "index": len(choices), "logprobs": lp, "finish_reason": g.finish}
            if pk is not None and p_trace is not None:  # p_trace is made whenever pk is asked for
                choice["prompt_logprobs"] = _prompt_logprobs(lm, p_trace.chosen, pk)
            choices.append(choice)
    # vLLM's completions usage: the three counts (the O02 excerpt shows none; chat's details not assumed)
    usage = _usage(server if server != SERVER_VLLM else "", prompt_tokens, completion_tokens, reasoning)
    fp = system_fingerprint(server, model)
    rid_s = _response_id(server, "completion", rid)
    if server == SERVER_LLAMA_CPP:
        resp: dict[str, Any] = {"choices": choices, "created": 0, "model": model, "system_fingerprint": fp,
                                "object": "text_completion", "usage": usage, "id": rid_s}
    else:
        resp = {"id": rid_s, "object": "text_completion", "created": 0, "model": model, "choices": choices,
                "usage": usage, "system_fingerprint": fp}
    return resp, markers.delay


def _model_card(model_id: str) -> dict:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": OWNED_BY}


def handle(state: EmulatorState, method: str, path: str, entry: dict, *, api_key: str = ""
           ) -> tuple[int, dict, dict[str, str], float]:
    """Answer one request on an OpenAI path: (status, JSON body, extra headers, delay in s).
    Any ``Authorization`` header is accepted, and so is none (as local servers do);
    ``api_key`` is its bearer token (only used by ``[[emulator:echo_key]]``)."""
    body = entry["body"]
    quirk = None
    try:
        m = _MODEL_PATH_RE.match(path)
        if m is not None and method == "GET":
            if m.group(1) is None:
                return 200, {"object": "list", "data": [_model_card(x) for x in LISTED_MODELS]}, {}, 0.0
            return 200, _model_card(unquote(m.group(1))), {}, 0.0  # the SDK sends "a/b" as "a%2Fb"
        if method != "POST":
            raise OpenAIError(404, f"Invalid URL ({method} {path})", "invalid_request_error")
        if isinstance(body, dict) and isinstance(body.get("model"), str):
            entry["model"] = body["model"]
            quirk = openai_quirks(body["model"])
        if state.server_faults:  # rate limit, then fail rate (see EmulatorState.admit)
            canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False) \
                if isinstance(body, dict) else None
            verdict = state.admit(path, canonical)
            if verdict is not None:
                model = entry["model"] or "unknown"
                if verdict[0] == "rate_limited":
                    raise rate_limited(model, state.rate_limit_rpm, verdict[1])
                raise injected_error(int(verdict[1]), model)
        if not isinstance(body, dict):
            raise _bad("We could not parse the JSON body of your request. The emulator expects a JSON object.")
        if path == "/v1/chat/completions":
            payload, delay = chat_completions(state, path, body, api_key)
        else:
            payload, delay = completions(state, path, body, api_key)
        return 200, payload, {}, delay
    except OpenAIError as e:
        return e.status, e.body(quirk), e.headers, e.delay
    except Exception as e:  # an emulator bug: answer 500 rather than drop the connection
        err = OpenAIError(500, f"rlhf-eval emulator bug: {type(e).__name__}: {e}", "server_error")
        return 500, err.body(quirk), {}, 0.0
