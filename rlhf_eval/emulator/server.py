"""HTTP server of the Gemini emulator: routing, request parsing, responses, faults.

The behaviour is documented in README.md (beside this module).
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import secrets
import socketserver
import threading
import time
import weakref
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .bank import Bank, Trace, UnigramModel, as_float32, load_bank, normalize_ws, stable_hash, tokenize
from .thoughts import reasoning_hash, reasoning_text, thought_signature

MAX_CANDIDATES = 8
MAX_TOP_LOGPROBS = 20

_ROUTE_RE = re.compile(r"^/(v1|v1beta)/models/([^/:]+):([A-Za-z]+)$")
#: Vertex AI: ``/{v1,v1beta1}/projects/{p}/locations/{l}/publishers/google/models/{m}:{action}``
#: (and the express-mode form without ``projects/{p}/locations/{l}``).
_VERTEX_ROUTE_RE = re.compile(
    r"^/(v1|v1beta1)/(?:projects/([^/]+)/locations/([^/]+)/)?publishers/google/models/([^/:]+):([A-Za-z]+)$"
)
MARKER_RE = re.compile(r"\[\[emulator:([^\]]*)\]\]", re.IGNORECASE)
_ERR_MARKER_RE = re.compile(r"^(\d{3})(?:x(\d+))?$")
_LATENCY_RE = re.compile(r"^latency=(\d+)$")
_CHOICE_RE = re.compile(r"(?m)^[ \t]*(?:\(([A-J])\)|([A-J])[.)])[ \t]+\S")
_NUMBER_RE = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w])")
_CAMEL_RE = re.compile(r"_([a-z0-9])")

class RawJSON:
    """A pre-serialised JSON fragment to splice into a response (see :func:`render`)."""

    __slots__ = ("json",)

    def __init__(self, json_text: str):
        self.json = json_text


_RAW_NONCE = secrets.token_hex(6)  # placeholders cannot collide with response text
_RAW_RE = re.compile(r'"\\u0000' + _RAW_NONCE + r'(\d+)\\u0000"')


def render(payload: Any) -> bytes:
    """Compact UTF-8 JSON of ``payload``, with every :class:`RawJSON` spliced in verbatim."""
    raws: list[str] = []

    def default(o: Any) -> str:
        if isinstance(o, RawJSON):
            raws.append(o.json)
            return f"\x00{_RAW_NONCE}{len(raws) - 1}\x00"
        raise TypeError(f"not JSON serialisable: {type(o).__name__}")

    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=default)
    if raws:
        text = _RAW_RE.sub(lambda m: raws[int(m.group(1))], text)
    return text.encode("utf-8")


# --------------------------------------------------------------------------------------
# model families
# --------------------------------------------------------------------------------------
FAMILY_LOGPROBS = "logprobs"  # gemini-2.0*, gemini-1.5*
FAMILY_25 = "gemini-2.5"  # gemini-2.5*
FAMILY_NO_LOGPROBS = "gemini-3"  # gemini-3* and any other name


def model_family(model: str, *, vertex: bool = False) -> str:
    """The capability family of a Gemini model name. On Vertex AI (``vertex=True``)
    ``gemini-2.5*`` models are in the logprobs family too."""
    m = model.lower()
    if m.startswith("models/"):
        m = m[len("models/") :]
    if m.startswith(("gemini-2.0", "gemini-1.5")):
        return FAMILY_LOGPROBS
    if m.startswith("gemini-2.5"):
        return FAMILY_LOGPROBS if vertex else FAMILY_25
    return FAMILY_NO_LOGPROBS


def _bare(model: str) -> str:
    m = model.lower()
    return m[len("models/"):] if m.startswith("models/") else m


def is_thinking_model(model: str) -> bool:
    """``gemini-2.5*`` and ``gemini-3*`` (a leading ``models/`` ignored, case-insensitive)."""
    return _bare(model).startswith(("gemini-2.5", "gemini-3"))


def thinks(model: str, budget: int | None) -> bool:
    """Whether a request with ``thinkingConfig.thinkingBudget`` ``budget`` (None: not sent) thinks.

    Thinking models think unless the budget is 0, except ``gemini-2.5-flash-lite*``, which only
    thinks with a budget (> 0, or -1 = dynamic). ``gemini-2.5-pro*`` refuses a budget of 0 (400)."""
    if not is_thinking_model(model):
        return False
    m = _bare(model)
    if budget == 0:
        if m.startswith("gemini-2.5-pro"):
            raise invalid("Budget 0 is invalid. This model only works in thinking mode.")
        return False
    if m.startswith("gemini-2.5-flash-lite"):
        return budget is not None
    return True


def _indexed(cand: dict, j: int, omit_zero: bool) -> dict:
    """``cand`` with its ``index``; Vertex AI and the gemini-1.5/2.0 Developer API omit index 0
    (proto3 JSON drops a zero int; G01, G09, G11), the newer Developer API sends it (G03, G04)."""
    if j or not omit_zero:
        cand["index"] = j
    return cand


def _create_time(response_id: str) -> str:
    """Vertex AI's ``createTime``: a deterministic instant in 2026 derived from the response id."""
    h = stable_hash("createTime", response_id)
    t = time.gmtime(1767225600 + h % 31_536_000)  # 2026-01-01T00:00:00Z + up to a year
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{(h >> 32) % 1_000_000:06d}Z"


# --------------------------------------------------------------------------------------
# errors (google.rpc.Status JSON)
# --------------------------------------------------------------------------------------
class ApiError(Exception):
    def __init__(self, code: int, status: str, message: str, details: list | None = None):
        super().__init__(message)
        self.code, self.status, self.message, self.details = code, status, message, details

    def body(self) -> dict:
        err: dict[str, Any] = {"code": self.code, "message": self.message, "status": self.status}
        if self.details:
            err["details"] = self.details
        return {"error": err}


def invalid(message: str) -> ApiError:
    return ApiError(400, "INVALID_ARGUMENT", message)


def api_key_invalid() -> ApiError:
    msg = "API key not valid. Please pass a valid API key."
    return ApiError(
        400,
        "INVALID_ARGUMENT",
        msg,
        [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": msg},
        ],
    )


def vertex_unauthenticated(path: str) -> ApiError:
    """Vertex AI's answer to a request without an OAuth 2 bearer token."""
    version = "v1beta1" if path.startswith("/v1beta1/") else "v1"
    return ApiError(
        401,
        "UNAUTHENTICATED",
        "Request is missing required authentication credential. Expected OAuth 2 access token, login "
        "cookie or other valid authentication credential. See "
        "https://developers.google.com/identity/sign-in/web/devconsole-project.",
        [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "CREDENTIALS_MISSING",
                "domain": "googleapis.com",
                "metadata": {
                    "method": f"google.cloud.aiplatform.{version}.PredictionService.GenerateContent",
                    "service": "aiplatform.googleapis.com",
                },
            }
        ],
    )


def injected_error(code: int, model: str, version: str) -> ApiError:
    if code == 429:
        return ApiError(
            429,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details. For more "
            "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
            [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                            "quotaDimensions": {"location": "global", "model": model},
                            "quotaValue": "15",
                        }
                    ],
                },
                {
                    "@type": "type.googleapis.com/google.rpc.Help",
                    "links": [
                        {
                            "description": "Learn more about Gemini API quotas",
                            "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                        }
                    ],
                },
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"},
            ],
        )
    if code == 500:
        return ApiError(
            500,
            "INTERNAL",
            "An internal error has occurred. Please retry or report in "
            "https://developers.generativeai.google/guide/troubleshooting",
        )
    if code == 503:
        return ApiError(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
    if code == 504:
        return ApiError(504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete.")
    if code == 404:
        return ApiError(
            404,
            "NOT_FOUND",
            f"models/{model} is not found for API version {version}, or is not supported for "
            "generateContent. Call ListModels to see the list of available models and their "
            "supported methods.",
        )
    if code == 403:
        return ApiError(403, "PERMISSION_DENIED", "The caller does not have permission")
    if code == 400:
        return invalid("Request contains an invalid argument.")
    raise invalid(f"emulator marker: unsupported error code {code} (use one of {sorted(ERROR_CODES)})")


ERROR_CODES = frozenset({400, 403, 404, 429, 500, 503, 504})


def wait_ms(seconds: float) -> int:
    """A wait in whole milliseconds, rounded up (at least 1 ms), so that a client that waits
    exactly this long finds a token in the bucket."""
    return max(1, math.ceil(seconds * 1000 - 1e-6))


def duration_json(ms: int) -> str:
    """A ``google.protobuf.Duration`` in its JSON form: whole seconds as ``"2s"``, otherwise 3
    fractional digits (``"0.400s"``, ``"1.250s"``), as the proto3 JSON mapping prints a
    millisecond-precision duration (0, 3, 6 or 9 fractional digits)."""
    sec, rem = divmod(ms, 1000)
    return f"{sec}s" if rem == 0 else f"{sec}.{rem:03d}s"


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def quota_exceeded(model: str, rpm: float, wait_s: float) -> ApiError:
    """The 429 of the server-wide rate limit (``rate_limit_rpm``): the real Gemini quota body,
    with ``quotaValue`` = the limit and ``RetryInfo.retryDelay`` = the time until the next
    request is admitted (rounded up to the millisecond)."""
    ms = wait_ms(wait_s)
    metric = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
    return ApiError(
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.\n"
        f"* Quota exceeded for metric: {metric}, limit: {_number(rpm)}, model: {model}\n"
        f"Please retry in {ms / 1000:g}s.",
        [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": metric,
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                        "quotaDimensions": {"location": "global", "model": model},
                        "quotaValue": _number(rpm),
                    }
                ],
            },
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [
                    {
                        "description": "Learn more about Gemini API quotas",
                        "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                    }
                ],
            },
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": duration_json(ms)},
        ],
    )

# --------------------------------------------------------------------------------------
# request parsing helpers
# --------------------------------------------------------------------------------------


def camelize(obj: Any) -> Any:
    """Rewrite every dict key from snake_case to camelCase, recursively."""
    if isinstance(obj, dict):
        return {(_CAMEL_RE.sub(lambda m: m.group(1).upper(), k) if "_" in k else k): camelize(v)
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [camelize(v) for v in obj]
    return obj


def _int(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    try:
        f = float(value)
        if f != f or f in (float("inf"), float("-inf")):
            raise ValueError
        return int(f)
    except (TypeError, ValueError):
        raise invalid(f"Invalid value at 'generation_config.{field}' (TYPE_INT32), {json.dumps(value)}") from None


def _float(value: Any, field: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise invalid(f"Invalid value at 'generation_config.{field}' (TYPE_FLOAT), {json.dumps(value)}") from None


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return bool(value)


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if not isinstance(content, dict):
        return []
    parts = content.get("parts")
    if isinstance(parts, dict):
        parts = [parts]
    if not isinstance(parts, list):
        return []
    out = []
    for p in parts:
        if isinstance(p, str):
            out.append(p)
        elif isinstance(p, dict) and isinstance(p.get("text"), str) and not p.get("thought"):
            out.append(p["text"])
    return out


def _turns(body: dict) -> list[tuple[str, list[str]]]:
    """(role, text parts) of each turn of ``contents``; a turn without a role is the user's, as
    the API reads it. Any role but ``user`` and ``model`` is refused with the API's 400."""
    contents = body.get("contents")
    if contents is None or contents == []:
        raise invalid("* GenerateContentRequest.contents: contents is not specified\n")
    if isinstance(contents, (dict, str)):
        contents = [contents]
    if not isinstance(contents, list):
        raise invalid("Invalid JSON payload received. 'contents' must be a list of Content.")
    turns = []
    for c in contents:
        role = (c.get("role") if isinstance(c, dict) else None) or "user"
        if role not in ("user", "model"):
            raise invalid("Please use a valid role: user, model.")
        turns.append((role, _texts(c)))
    return turns


def user_prompt(body: dict) -> str:
    """The text parts of the last user turn, joined with newlines: what the model answers (the
    earlier turns of a multi-turn request are its context, e.g. few-shot examples)."""
    turns = _turns(body)
    return "\n".join(next((texts for role, texts in reversed(turns) if role == "user"), []))


def conversation_text(body: dict) -> str:
    """The text of every turn (user and model), joined with newlines: what the prompt's tokens count."""
    return "\n".join(t for _, texts in _turns(body) for t in texts)


# --------------------------------------------------------------------------------------
# the server state and the generation logic
# --------------------------------------------------------------------------------------
_HARM_CATEGORIES = (
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
)
_ENUM_INT = {
    # the Developer API's (google.ai.generativelanguage v1beta) numbers; a value without one
    # (e.g. MODEL_ARMOR, JAILBREAK or an unknown future reason) stays a string
    "finishReason": {
        "FINISH_REASON_UNSPECIFIED": 0, "STOP": 1, "MAX_TOKENS": 2, "SAFETY": 3, "RECITATION": 4, "OTHER": 5,
        "LANGUAGE": 6, "BLOCKLIST": 7, "PROHIBITED_CONTENT": 8, "SPII": 9, "MALFORMED_FUNCTION_CALL": 10,
        "IMAGE_SAFETY": 11,
    },
    "blockReason": {"BLOCK_REASON_UNSPECIFIED": 0, "SAFETY": 1, "OTHER": 2, "BLOCKLIST": 3, "PROHIBITED_CONTENT": 4,
                    "IMAGE_SAFETY": 5},
    "category": {
        "HARM_CATEGORY_HARASSMENT": 7, "HARM_CATEGORY_HATE_SPEECH": 8,
        "HARM_CATEGORY_SEXUALLY_EXPLICIT": 9, "HARM_CATEGORY_DANGEROUS_CONTENT": 10,
        "HARM_CATEGORY_CIVIC_INTEGRITY": 11,
    },
    "probability": {"HARM_PROBABILITY_UNSPECIFIED": 0, "NEGLIGIBLE": 1, "LOW": 2, "MEDIUM": 3, "HIGH": 4},
    "modality": {"MODALITY_UNSPECIFIED": 0, "TEXT": 1},
}
_CATEGORY_NAMES = {v: k for k, v in _ENUM_INT["category"].items()}
#: HarmBlockThreshold (name or number) -> the probability a rating has when it is blocked at it
_THRESHOLD_PROBABILITY = {
    "BLOCK_LOW_AND_ABOVE": "LOW", 1: "LOW", "BLOCK_MEDIUM_AND_ABOVE": "MEDIUM", 2: "MEDIUM",
    "BLOCK_ONLY_HIGH": "HIGH", 3: "HIGH",
}
#: Model Armor's message for a blocked prompt (wire corpus G07)
MODEL_ARMOR_MESSAGE = "The prompt violated Prompt Injection and Jailbreak filters."


def _blocking_setting(body: dict) -> tuple[str, str]:
    """(category, probability) of the rating that blocks: the first ``safetySettings`` entry
    with a blocking threshold (its category, rated at that threshold's level), else
    HARM_CATEGORY_DANGEROUS_CONTENT rated HIGH."""
    settings = body.get("safetySettings")
    if isinstance(settings, list):
        for st in settings:
            if not isinstance(st, dict):
                continue
            th = st.get("threshold")
            if isinstance(th, float):
                th = int(th)
            prob = _THRESHOLD_PROBABILITY.get(th) if isinstance(th, (str, int)) else None
            cat = st.get("category")
            if isinstance(cat, (int, float)) and not isinstance(cat, bool):
                cat = _CATEGORY_NAMES.get(int(cat))
            if prob and isinstance(cat, str) and cat in _HARM_CATEGORIES:
                return cat, prob
    return "HARM_CATEGORY_DANGEROUS_CONTENT", "HIGH"


def _safety_ratings(blocked_category: str | None, probability: str = "HIGH") -> list[dict]:
    out = []
    for cat in _HARM_CATEGORIES:
        if cat == blocked_category:
            out.append({"category": cat, "probability": probability, "blocked": True})
        else:
            out.append({"category": cat, "probability": "NEGLIGIBLE"})
    return out


def ints_for_enums(obj: Any) -> Any:
    """Encode the response's enum values as integers (for ``$alt=json;enum-encoding=int``)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            table = _ENUM_INT.get(k)
            if table is not None and isinstance(v, str) and v in table:
                out[k] = table[v]
            else:
                out[k] = ints_for_enums(v)
        return out
    if isinstance(obj, list):
        return [ints_for_enums(v) for v in obj]
    return obj


_MC_TEMPLATES = (
    "Let me compare the options one by one. Option ({x}) is the one most consistent with the question.",
    "Checking each choice against the question, ({x}) fits best while the others do not.",
    "Eliminating the options that contradict the question leaves ({x}).",
)
_NUM_TEMPLATES = (
    "Let me work through the quantities in the question step by step. Combining them gives {n}.",
    "I will reason about the numbers given in the problem. Putting them together, the result is {n}.",
    "Step by step: identify what is asked, use the given values, and compute. This yields {n}.",
)
_UNKNOWN_TEXT = (
    "I could not find enough information in the question to compute a result.\nThe answer is unknown."
)


def synthesize(prompt: str, h: int) -> str:
    """The canned answer for a prompt that is not in the bank (never uses an answer key)."""
    return _synthesize(prompt, h)[0]


def _synthesize(prompt: str, h: int) -> tuple[str, list[str]]:
    """:func:`synthesize`'s text, and the lines :func:`pad_text` may add to it: the other
    reasoning templates, worded for the same answer."""
    letters: list[str] = []
    for m in _CHOICE_RE.finditer(prompt):
        x = m.group(1) or m.group(2)
        if x not in letters:
            letters.append(x)
    if len(letters) >= 2:
        x = letters[h % len(letters)]
        t = (h >> 16) % len(_MC_TEMPLATES)
        return (_MC_TEMPLATES[t].format(x=x) + f"\nThe answer is ({x}).",
                [_MC_TEMPLATES[(t + i) % len(_MC_TEMPLATES)].format(x=x) for i in range(1, len(_MC_TEMPLATES))])
    numbers = _NUMBER_RE.findall(prompt)
    if numbers:
        n = numbers[h % len(numbers)]
        t = (h >> 16) % len(_NUM_TEMPLATES)
        return (_NUM_TEMPLATES[t].format(n=n) + f"\nThe answer is {n}.",
                [_NUM_TEMPLATES[(t + i) % len(_NUM_TEMPLATES)].format(n=n) for i in range(1, len(_NUM_TEMPLATES))])
    return _UNKNOWN_TEXT, []


#: The last line of a text is its final answer line when it matches this (bank: ``A: 26``;
#: synthesised answers: ``The answer is ...``). Lines matching it, or saying "answer is"
#: anywhere, are never used as padding.
_FINAL_LINE_RE = re.compile(r"^\s*(?:A:|The answer is\b)")
_ANSWERISH_RE = re.compile(r"answer is|^\s*A:|####", re.IGNORECASE)
PAD_INTRO = "Let me double-check the reasoning step by step."
_PAD_FILLER = "I will verify each step once more before giving the final answer."


def pad_text(text: str, target: int, extra_lines: list[str] | tuple[str, ...] = ()) -> str:
    """``text`` lengthened to about ``target`` tokens (``pad_to_tokens``), its final answer
    line unchanged and still last.

    Unchanged if it already has ``target`` tokens or more, or if its last line is not a final
    answer line (:data:`_FINAL_LINE_RE`). Otherwise the line :data:`PAD_INTRO` and then lines
    taken in turn, cyclically, from its own reasoning lines (every line but the last) followed
    by ``extra_lines`` (skipping blank lines and answer-like ones) are inserted before the last
    line, until the text has at least ``target`` tokens (counting one token per line break).
    """
    if target <= 0:
        return text
    n = len(tokenize(text))
    if n >= target:
        return text
    lines = text.split("\n")
    if not _FINAL_LINE_RE.match(lines[-1]):
        return text
    body, final = lines[:-1], lines[-1]
    pool = [ln for ln in (*body, *extra_lines) if ln.strip() and not _ANSWERISH_RE.search(ln)]
    if not pool:
        pool = [_PAD_FILLER]
    added = [PAD_INTRO]
    n += len(tokenize(PAD_INTRO)) + 1
    i = 0
    while n < target:
        ln = pool[i % len(pool)]
        added.append(ln)
        n += len(tokenize(ln)) + 1
        i += 1
    return "\n".join([*body, *added, final])


_ANSWER_LINE_RE = re.compile(r"^(\s*)(?:A:|The answer is)\s*(.*?)\.?\s*$")


def boxed_answer(text: str) -> str:
    """``text`` with its final answer line (``A: 26``, ``The answer is (B).``) written as a model
    told to "put your final answer within \\boxed{}" writes it: ``The final answer is
    $\\boxed{26}$.`` (``[[emulator:boxed]]``); a text without one is unchanged."""
    head, _, last = text.rpartition("\n")
    m = _ANSWER_LINE_RE.match(last)
    if m is None or not m.group(2):
        return text
    answer = m.group(2)
    if len(answer) == 3 and answer[0] == "(" and answer[2] == ")":  # an option letter: (B) -> B
        answer = answer[1]
    line = f"{m.group(1)}The final answer is $\\boxed{{{answer}}}$."
    return f"{head}\n{line}" if head or text.startswith("\n") else line


_NAME_MARKER_RE = re.compile(r"^(block|finish|reasoning)=([a-z][a-z0-9_]*)$")
#: ``[[emulator:reasoning=MODE]]`` modes (used by the OpenAI-compatible side; see openai_api.py)
REASONING_MODES = ("reasoning_content", "reasoning", "think", "none")


class Markers:
    """The fault markers found in a prompt (see :func:`parse_markers`)."""

    __slots__ = ("mode", "reason", "error_code", "error_times", "delay", "echo_key", "reasoning", "boxed")

    def __init__(self) -> None:
        self.mode: str | None = None  # "block", "finish" or "max_tokens"
        self.reason: str | None = None  # the blockReason ("block") or finishReason ("finish"), upper case
        self.error_code: int | None = None
        self.error_times: int | None = None  # the N of CODExN (None: always)
        self.delay = 0.0  # seconds
        self.echo_key = False  # [[emulator:echo_key]]: the answer quotes the request's API key
        self.reasoning: str | None = None  # [[emulator:reasoning=MODE]] (OpenAI-compatible side only)
        self.boxed = False  # [[emulator:boxed]]: the final answer line gives the answer in \boxed{}


def parse_markers(raw_prompt: str) -> Markers:
    """Read the ``[[emulator:...]]`` markers of ``raw_prompt``; raises a 400 :class:`ApiError`
    naming an unknown marker or an unsupported error code.

    ``block`` = ``block=SAFETY``; ``safety`` = ``finish=SAFETY``; ``finish=MAX_TOKENS`` =
    ``max_tokens``. A reason is any name ``[A-Za-z][A-Za-z0-9_]*`` (sent upper-cased)."""
    mk = Markers()
    for m in MARKER_RE.finditer(raw_prompt):
        word = m.group(1).strip().lower()
        em = _ERR_MARKER_RE.match(word)
        lm = _LATENCY_RE.match(word)
        nm = _NAME_MARKER_RE.match(word)
        if word == "block":
            mk.mode, mk.reason = "block", "SAFETY"
        elif word == "safety":
            mk.mode, mk.reason = "finish", "SAFETY"
        elif word == "max_tokens":
            mk.mode, mk.reason = "max_tokens", "MAX_TOKENS"
        elif word == "echo_key":
            mk.echo_key = True
        elif word == "boxed":
            mk.boxed = True
        elif nm and nm.group(1) == "reasoning":
            if nm.group(2) not in REASONING_MODES:
                raise invalid(f"emulator marker [[emulator:{m.group(1).strip()}]]: the reasoning mode must be one "
                              f"of {', '.join(REASONING_MODES)}")
            mk.reasoning = nm.group(2)
        elif nm:
            reason = nm.group(2).upper()
            if nm.group(1) == "finish" and reason == "MAX_TOKENS":
                mk.mode, mk.reason = "max_tokens", reason
            else:
                mk.mode, mk.reason = nm.group(1), reason
        elif em:
            mk.error_code = int(em.group(1))
            if mk.error_code not in ERROR_CODES:
                raise invalid(f"emulator marker [[emulator:{word}]]: unsupported error code "
                              f"(use one of {sorted(ERROR_CODES)})")
            mk.error_times = int(em.group(2)) if em.group(2) else None
        elif lm:
            mk.delay += int(lm.group(1)) / 1000.0
        else:
            raise invalid(
                f"unknown emulator marker [[emulator:{m.group(1)}]]; known: block, block=<REASON>, safety, "
                "finish=<REASON>, max_tokens, reasoning=<MODE>, echo_key, boxed, 429, 500, 503 (or 400/403/404/504), "
                "<code>x<N>, latency=<ms>"
            )
    return mk


def pick_trace(bank: Bank, model: str, prompt: str, clean: str, qi: int | None, seed: int, j: int, greedy: bool,
               pad_to: int = 0) -> Trace:
    """The answer of candidate/choice ``j``: a bank solution of question ``qi`` if the prompt
    has one, else :func:`synthesize` of the marker-free prompt ``clean``. ``prompt`` is
    ``clean`` whitespace-normalised (the hash input). The trace carries the logprobs of
    ``model``'s tempered unigram model (:meth:`Bank.model_for`). ``pad_to`` > 0 lengthens a
    shorter answer with :func:`pad_text` (``pad_to_tokens``)."""
    h = stable_hash(model, prompt) if greedy else stable_hash(model, prompt, seed, j)
    lm = bank.model_for(model)
    if qi is not None:
        i = h % len(bank.solutions(qi))
        trace = bank.solution(qi, i, lm)
        if pad_to > 0 and len(trace.tokens) < pad_to:
            return _padded_solution(bank, lm, qi, i, pad_to)
        return trace
    text, extra = _synthesize(clean, h)
    if pad_to > 0:
        text = pad_text(text, pad_to, extra)
    return lm.make_trace(text)


_PADDED: "weakref.WeakKeyDictionary[UnigramModel, dict]" = weakref.WeakKeyDictionary()


def _padded_solution(bank: Bank, lm: UnigramModel, qi: int, i: int, pad_to: int) -> Trace:
    """Solution ``i`` of question ``qi`` padded to ``pad_to`` tokens: its own reasoning lines,
    then those of the question's other solutions (``i+1``, ``i+2``, ... mod 4; each without its
    last line); cached per model."""
    cache = _PADDED.get(lm)
    if cache is None:
        cache = _PADDED.setdefault(lm, {})
    key = (qi, i, pad_to)
    t = cache.get(key)
    if t is None:
        sols = bank.solutions(qi)
        extra = [ln for k in range(1, len(sols)) for ln in sols[(i + k) % len(sols)].text.split("\n")[:-1]]
        t = lm.make_trace(pad_text(sols[i].text, pad_to, extra))
        if len(cache) > 20_000:
            cache.clear()
        cache[key] = t
    return t


def echo_key_text(api_key: str) -> str:
    """The line ``[[emulator:echo_key]]`` puts before every answer."""
    if not api_key:
        return "This request carried no API key.\n"
    return f"The API key of this request is {api_key}\n"


def cut_at_stops(lm: UnigramModel, trace: Trace, stops: list[str]) -> Trace:
    """``trace`` cut before the first occurrence of any stop sequence (re-tokenised, with the
    logprobs of ``lm``, the model ``trace`` was made with)."""
    if stops:
        cut = min((i for i in (trace.text.find(s) for s in stops) if i >= 0), default=-1)
        if cut >= 0:
            return lm.make_trace(trace.text[:cut])
    return trace


def _response_id(model: str, canonical: str) -> str:
    d = hashlib.blake2b(f"{model}\x1f{canonical}".encode("utf-8", "surrogatepass"), digest_size=17).digest()
    return base64.urlsafe_b64encode(d).decode("ascii").rstrip("=")


class TokenBucket:
    """The server-wide rate limiter: a bucket of ``capacity`` tokens (full at the start) refilled
    continuously at ``rpm / 60`` tokens per second. A request takes one token, or is refused
    (and takes nothing) when less than one is left; :meth:`take` then returns the seconds until
    a whole token is there. Thread-safe."""

    def __init__(self, rpm: float, burst: float | None = None, clock=time.monotonic):
        if not rpm > 0:
            raise ValueError(f"rate_limit_rpm must be positive, got {rpm}")
        self.rpm = float(rpm)
        self.rate = self.rpm / 60.0
        self.capacity = float(burst) if burst else max(1.0, self.rate)
        if self.capacity < 1:
            raise ValueError(f"rate_limit_burst must be at least 1, got {burst}")
        self._clock = clock
        self._lock = threading.Lock()
        self.tokens = self.capacity
        self._t = clock()

    def take(self) -> float:
        """0.0 if a token was taken, else the wait in seconds until one is available."""
        with self._lock:
            now = self._clock()
            self.tokens = min(self.capacity, self.tokens + (now - self._t) * self.rate)
            self._t = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return 0.0
            return (1.0 - self.tokens) / self.rate


def _new_stats() -> dict[str, Any]:
    return {"requests": 0, "failures_injected": 0, "rate_limited": 0, "marker_errors": 0, "by_status": {}}


class EmulatorState:
    """Shared, thread-safe state of one emulator server."""

    def __init__(
        self,
        bank: Bank | None = None,
        latency_ms: float = 0.0,
        record_requests: bool = True,
        *,
        fail_rate: float = 0.0,
        fail_status: int = 503,
        fault_seed: int | str = 0,
        rate_limit_rpm: float = 0.0,
        rate_limit_burst: float | None = None,
        pad_to_tokens: int = 0,
    ):
        self.bank = bank if bank is not None else load_bank()
        self.latency_ms = float(latency_ms)
        self.record_requests = record_requests
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._seen: dict[str, int] = {}
        self._implicit: dict[str, int] = {}
        self._attempts: dict[str, int] = {}  # fail_rate: attempts per path and canonical body
        self._stats = _new_stats()
        self.fail_rate = 0.0
        self.fail_status = 503
        self.fault_seed: int | str = 0
        self.rate_limit_rpm = 0.0
        self.rate_limit_burst: float | None = None
        self.bucket: TokenBucket | None = None
        self.pad_to_tokens = 0
        self.configure(fail_rate=fail_rate, fail_status=fail_status, fault_seed=fault_seed,
                       rate_limit_rpm=rate_limit_rpm, rate_limit_burst=rate_limit_burst, pad_to_tokens=pad_to_tokens)

    _UNSET: Any = object()

    def configure(self, *, fail_rate: Any = _UNSET, fail_status: Any = _UNSET, fault_seed: Any = _UNSET,
                  rate_limit_rpm: Any = _UNSET, rate_limit_burst: Any = _UNSET, pad_to_tokens: Any = _UNSET) -> None:
        """Set server-wide knobs (validated; ValueError for a bad value). A new rate limit or
        burst starts with a full bucket."""
        unset = self._UNSET
        if fail_rate is not unset:
            fr = float(fail_rate or 0.0)
            if not 0.0 <= fr <= 1.0:
                raise ValueError(f"fail_rate must be in [0, 1], got {fail_rate}")
            self.fail_rate = fr
        if fail_status is not unset:
            fs = int(fail_status)
            if fs not in ERROR_CODES:
                raise ValueError(f"fail_status must be one of {sorted(ERROR_CODES)}, got {fail_status}")
            self.fail_status = fs
        if fault_seed is not unset:
            self.fault_seed = fault_seed
        if rate_limit_rpm is not unset or rate_limit_burst is not unset:
            rpm = self.rate_limit_rpm if rate_limit_rpm is unset else float(rate_limit_rpm or 0.0)
            burst = self.rate_limit_burst if rate_limit_burst is unset else (
                float(rate_limit_burst) if rate_limit_burst else None)
            if rpm < 0:
                raise ValueError(f"rate_limit_rpm must be >= 0 (0 = no limit), got {rpm}")
            self.bucket = TokenBucket(rpm, burst) if rpm > 0 else None
            self.rate_limit_rpm, self.rate_limit_burst = rpm, burst
        if pad_to_tokens is not unset:
            pt = int(pad_to_tokens or 0)
            if pt < 0:
                raise ValueError(f"pad_to_tokens must be >= 0 (0 = off), got {pad_to_tokens}")
            self.pad_to_tokens = pt

    def reset(self) -> None:
        """Forget the request log, the ``xN`` fault counters, the implicit-seed counters, the
        ``fail_rate`` attempt counters and the stats; refill the rate-limit bucket."""
        with self._lock:
            self.requests.clear()
            self._seen.clear()
            self._implicit.clear()
            self._attempts.clear()
            self._stats = _new_stats()
        if self.bucket is not None:
            self.bucket = TokenBucket(self.rate_limit_rpm, self.rate_limit_burst)

    # ---------------------------------------------------------------------------------
    # server-wide faults and counters
    # ---------------------------------------------------------------------------------
    @property
    def server_faults(self) -> bool:
        """True when a rate limit or a fail rate is set (else :meth:`admit` is a no-op)."""
        return self.bucket is not None or self.fail_rate > 0

    def admit(self, path: str, canonical: str | None) -> tuple[str, float] | None:
        """The server-wide faults for one generation request, checked in this order:

        * the rate limit: ``("rate_limited", seconds until a token is available)``;
        * the fail rate: ``("fail", fail_status)`` when
          ``stable_hash("fail", fault_seed, path, canonical, attempt) / 2**64 < fail_rate``,
          ``attempt`` being how many times this path and canonical body reached this check
          before (so a retry of a failed request is a new draw);
        * else None. ``canonical`` None (not a JSON object) skips the fail rate.
        """
        bucket = self.bucket
        if bucket is not None:
            wait = bucket.take()
            if wait > 0:
                with self._lock:
                    self._stats["rate_limited"] += 1
                return ("rate_limited", wait)
        rate = self.fail_rate
        if rate > 0 and canonical is not None:
            key = f"{path}\x1f{canonical}"
            with self._lock:
                attempt = self._attempts.get(key, 0)
                self._attempts[key] = attempt + 1
            if rate >= 1.0 or stable_hash("fail", self.fault_seed, path, canonical, attempt) / 2.0**64 < rate:
                with self._lock:
                    self._stats["failures_injected"] += 1
                return ("fail", float(self.fail_status))
        return None

    def note_marker_error(self) -> None:
        with self._lock:
            self._stats["marker_errors"] += 1

    def count(self, status: int) -> None:
        """Count one answered HTTP request and its status."""
        with self._lock:
            st = self._stats
            st["requests"] += 1
            st["by_status"][status] = st["by_status"].get(status, 0) + 1

    def stats(self) -> dict[str, Any]:
        """A snapshot (a new dict) of the counters."""
        with self._lock:
            out = dict(self._stats)
            out["by_status"] = dict(sorted(self._stats["by_status"].items()))
            return out

    def record(self, entry: dict) -> None:
        if self.record_requests:
            with self._lock:
                self.requests.append(entry)

    def times_seen(self, key: str) -> int:
        """Count one more sighting of ``key``; returns how many times it was seen before."""
        with self._lock:
            n = self._seen.get(key, 0)
            self._seen[key] = n + 1
            return n

    def implicit_seed(self, key: str) -> int:
        """The seed of a request that carries none: how many times this exact request
        (``key`` = path and canonical body) was answered before (counted, thread-safe)."""
        with self._lock:
            n = self._implicit.get(key, 0)
            self._implicit[key] = n + 1
            return n

    # ---------------------------------------------------------------------------------
    def generate(
        self, model: str, version: str, body: dict, *, path: str = "", vertex_resource: str | None = None,
        api_key: str = "",
    ) -> tuple[dict, float]:
        """Answer one generateContent request. Returns (response JSON, extra delay in s);
        raises ApiError for an error response. ``path`` is the request path (the key of the
        implicit-seed counter, with the body); ``vertex_resource`` (the publisher-model
        resource name) marks a Vertex AI request; ``api_key`` is the key or bearer token the
        request carried (only used by ``[[emulator:echo_key]]``)."""
        vertex = vertex_resource is not None
        family = model_family(model, vertex=vertex)
        # Vertex AI, and the Developer API for gemini-1.5/2.0: no index 0, candidatesTokensDetails,
        # avgLogprobs unasked (G01, G02, G06, G07, G09, G11)
        old_stack = vertex or family == FAMILY_LOGPROBS
        gc = body.get("generationConfig") or {}
        if not isinstance(gc, dict):
            raise invalid("Invalid JSON payload received. 'generationConfig' must be an object.")

        n = _int(gc.get("candidateCount"), "candidate_count")
        n = 1 if n is None or n == 0 else n
        if n < 0 or n > MAX_CANDIDATES:
            raise invalid(f"candidateCount must be between 1 and {MAX_CANDIDATES}, got {n}.")
        if n > 1 and family == FAMILY_NO_LOGPROBS:
            raise invalid("Multiple candidates is not enabled for this model")

        want_logprobs = _bool(gc.get("responseLogprobs", False))
        top_k = _int(gc.get("logprobs"), "logprobs")
        if want_logprobs and family == FAMILY_25:
            raise invalid(f"Logprobs is not enabled for models/{model}")
        if want_logprobs and family == FAMILY_NO_LOGPROBS:
            if vertex:
                raise invalid("Unable to submit request because Logprobs is not supported for this model.")
            raise invalid("Logprobs is not supported for this model.")
        if top_k is not None:
            if not 0 <= top_k <= MAX_TOP_LOGPROBS:
                raise invalid(f"logprobs must be in the range of [0, {MAX_TOP_LOGPROBS}], got {top_k}.")
            if not want_logprobs:
                raise invalid("logprobs can only be set when responseLogprobs is true.")

        temperature = _float(gc.get("temperature"), "temperature")
        if temperature is not None and temperature < 0:
            raise invalid(f"temperature must be in the range [0.0, 2.0], got {temperature}.")
        greedy = temperature is not None and temperature == 0
        seed = _int(gc.get("seed"), "seed")
        max_tokens = _int(gc.get("maxOutputTokens"), "max_output_tokens")
        if max_tokens is not None and max_tokens <= 0:
            max_tokens = None
        stops = gc.get("stopSequences") or []
        if isinstance(stops, str):
            stops = [stops]
        stops = [s for s in stops if isinstance(s, str) and s]

        tc = gc.get("thinkingConfig") or {}
        if not isinstance(tc, dict):
            raise invalid("Invalid JSON payload received. 'thinkingConfig' must be an object.")
        budget = _int(tc.get("thinkingBudget"), "thinking_config.thinking_budget")
        include_thoughts = _bool(tc.get("includeThoughts", False))
        thinking = thinks(model, budget)

        raw_prompt = user_prompt(body)
        system = "\n".join(_texts(body.get("systemInstruction"))) if body.get("systemInstruction") else ""

        # ---- markers ---------------------------------------------------------------
        markers = parse_markers(raw_prompt)
        delay, mode, error_code, error_times = markers.delay, markers.mode, markers.error_code, markers.error_times
        clean = MARKER_RE.sub(" ", raw_prompt)
        prompt = normalize_ws(clean)
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

        if error_code is not None:
            fault_key = f"{model}\x1f{canonical}" if not vertex else f"{path}\x1f{canonical}"
            if error_times is None or self.times_seen(fault_key) < error_times:
                err = injected_error(error_code, model, version)
                err.delay = delay  # type: ignore[attr-defined]
                self.note_marker_error()
                raise err

        # ---- no seed: the n-th answer to this exact request uses seed n --------------
        id_salt = ""
        if seed is None:
            seed = self.implicit_seed(f"{path}\x1f{canonical}")
            if seed:
                id_salt = f"\x1fimplicit-seed={seed}"

        bank = self.bank
        prompt_tokens = len(tokenize(conversation_text(body))) + (len(tokenize(system)) if system else 0)
        resp: dict[str, Any] = {}
        usage: dict[str, Any] = {"promptTokenCount": prompt_tokens}
        details = [{"modality": "TEXT", "tokenCount": prompt_tokens}]
        rid = _response_id(model, canonical + id_salt)

        if mode == "block":
            reason = markers.reason or "SAFETY"
            if reason == "MODEL_ARMOR":  # screened before the model: no token counts at all (G07)
                resp["promptFeedback"] = {"blockReason": reason, "blockReasonMessage": MODEL_ARMOR_MESSAGE}
                usage = {}
            else:
                fb: dict[str, Any] = {"blockReason": reason}
                if reason == "SAFETY":
                    fb["safetyRatings"] = _safety_ratings(*_blocking_setting(body))
                resp["promptFeedback"] = fb
                usage["totalTokenCount"] = prompt_tokens
                usage["promptTokensDetails"] = details
        elif mode == "max_tokens":  # a thinking model that spent its whole budget (G04)
            spent = max_tokens or 8192
            resp["candidates"] = [_indexed({"content": {"role": "model"}, "finishReason": "MAX_TOKENS"}, j, old_stack)
                                  for j in range(n)]
            usage["totalTokenCount"] = prompt_tokens + spent * n
            usage["promptTokensDetails"] = details
            usage["thoughtsTokenCount"] = spent * n
        else:
            qi = bank.find(prompt)
            model_lp = bank.model_for(model)
            cands = []
            total = 0
            thoughts_total = 0
            pad_to = self.pad_to_tokens
            for j in range(n):
                trace = pick_trace(bank, model, prompt, clean, qi, seed, j, greedy, pad_to)
                if markers.boxed:
                    trace = model_lp.make_trace(boxed_answer(trace.text))
                if markers.echo_key:
                    trace = model_lp.make_trace(echo_key_text(api_key) + trace.text)
                trace = cut_at_stops(model_lp, trace, stops)
                text, tokens, chosen = trace.text, trace.tokens, trace.chosen
                trace_json = trace.chosen_json_prefix
                thought, n_thought, thought_lp = "", 0, 0.0
                if thinking:
                    thought = reasoning_text(clean, text, reasoning_hash(model, prompt, seed, j, greedy))[0]
                    tt = model_lp.make_trace(thought)
                    n_thought, thought_lp = len(tt.tokens), math.fsum(tt.logps)
                finish = "STOP"
                if max_tokens is not None:
                    room = max_tokens - n_thought  # thinking tokens count against maxOutputTokens
                    if room <= 0:  # out of budget while thinking: no parts at all (G04)
                        n_thought, thought = max_tokens, ""
                        tokens, chosen, text, finish = (), (), "", "MAX_TOKENS"
                    elif len(tokens) > room:
                        tokens, chosen = tokens[:room], chosen[:room]
                        text = "".join(tokens)
                        finish = "MAX_TOKENS"
                if mode == "finish":  # withheld by a content policy
                    thoughts_total += n_thought
                    cand: dict[str, Any] = {"content": {"role": "model"} if markers.reason == "STOP" else {},
                                            "finishReason": markers.reason}
                    if markers.reason == "SAFETY":
                        cand["safetyRatings"] = _safety_ratings(*_blocking_setting(body))
                    cands.append(_indexed(cand, j, old_stack))
                    continue
                parts: list[dict[str, Any]] = []
                if thought and include_thoughts:  # the thought summary first, then the signed answer (G03)
                    parts.append({"text": thought, "thought": True})
                    if text:
                        parts.append({"text": text, "thoughtSignature": thought_signature(model, rid, j)})
                elif text:
                    parts.append({"text": text})
                cand = {"content": {"role": "model", "parts": parts} if parts else {"role": "model"},
                        "finishReason": finish}
                ntok = len(tokens)
                total += ntok
                thoughts_total += n_thought
                if old_stack and ntok:
                    lp_sum = 0.0
                    for e in chosen:
                        lp_sum += e["logProbability"]
                    # the mean over every generated token, thoughts included: on a thinking model
                    # avgLogprobs * candidatesTokenCount is NOT the answer's logp (G01, G02)
                    cand["avgLogprobs"] = (lp_sum + thought_lp) / (ntok + n_thought)
                    if want_logprobs:  # the answer's tokens only (G01)
                        lr: dict[str, Any] = {}
                        if top_k:
                            lr["topCandidates"] = RawJSON(model_lp.top_candidates_json(chosen, top_k))
                        lr["chosenCandidates"] = RawJSON(trace_json(ntok))
                        if not vertex:  # Vertex has no logProbabilitySum (G01, G02)
                            lr["logProbabilitySum"] = as_float32(lp_sum)  # a proto FLOAT, like each entry
                        cand["logprobsResult"] = lr
                cands.append(_indexed(cand, j, old_stack))
            resp["candidates"] = cands
            if total:
                usage["candidatesTokenCount"] = total
            usage["totalTokenCount"] = prompt_tokens + total + thoughts_total
            usage["promptTokensDetails"] = details
            if old_stack and total:
                usage["candidatesTokensDetails"] = [{"modality": "TEXT", "tokenCount": total}]
            if thoughts_total:
                usage["thoughtsTokenCount"] = thoughts_total
        if vertex:
            usage["trafficType"] = "ON_DEMAND"
        else:
            usage["serviceTier"] = "standard"
        resp["usageMetadata"] = usage
        resp["modelVersion"] = f"{model}-emulator"
        if vertex:
            resp["createTime"] = _create_time(rid)
        resp["responseId"] = rid
        return resp, delay


# --------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the SDK's connection pool reuses sockets
    server_version = "rlhf-eval-emulator/0.1"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 120  # idle keep-alive connections are closed after this many seconds
    server: "EmulatorHTTPServer"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        self._dispatch()

    do_GET = do_PUT = do_DELETE = do_PATCH = do_POST

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, code: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        data = render(payload)
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Emulator", "rlhf-eval")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_bytes(self, code: int, data: bytes, headers: dict[str, str]) -> None:
        self.send_response(code)
        if not any(k.lower() == "content-type" for k in headers):
            self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Emulator", "rlhf-eval")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _dispatch(self) -> None:
        state: EmulatorState = self.server.state
        raw = self._read_body()
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        entry: dict[str, Any] = {
            "method": self.command,
            "path": url.path,
            "query": {k: (["<redacted>"] * len(v) if k == "key" else v) for k, v in query.items()},
            "model": None,
            "body": None,
            "status": None,
        }
        try:
            entry["body"] = json.loads(raw) if raw else None
        except ValueError:
            entry["body"] = raw.decode("utf-8", "replace")
        state.record(entry)
        delay = state.latency_ms / 1000.0
        if batch_api.handles(self.command, url.path):  # batch jobs and their files (emulator/batch_api.py)
            code, data, headers = batch_api.handle(state, self.command, url.path, url.query, self.headers, raw)
            entry["status"] = code
            state.count(code)
            self._send_bytes(code, data, headers)
            return
        if openai_api.is_openai_route(self.command, url.path):
            auth = (self.headers.get("Authorization") or "").strip()
            code, payload, headers, extra = openai_api.handle(
                state, self.command, url.path, entry, api_key=auth[7:].strip() if auth[:7].lower() == "bearer " else "")
            entry["status"] = code
            state.count(code)
            delay += extra
            if delay > 0:
                time.sleep(delay)
            self._send(code, payload, headers)
            return
        try:
            m = _ROUTE_RE.match(url.path)
            vm = _VERTEX_ROUTE_RE.match(url.path) if m is None else None
            if (m is None and vm is None) or self.command != "POST":
                raise ApiError(404, "NOT_FOUND", f"The requested URL {url.path} was not found on this server.")
            if m is not None:
                version, model, action = m.groups()
                project = location = None
            elif vm is not None:
                version, project, location, model, action = vm.groups()
            entry["model"] = model
            if action == "streamGenerateContent":
                raise ApiError(501, "UNIMPLEMENTED",
                               "streamGenerateContent is not implemented by the rlhf-eval emulator.")
            if action != "generateContent":
                raise ApiError(404, "NOT_FOUND", f"Method not found: {action} (the emulator serves generateContent).")
            key = self.headers.get("x-goog-api-key") or (query.get("key") or [""])[0]
            resource = None
            credential = key
            if vm is None:
                if not key.strip():
                    raise api_key_invalid()
            else:
                auth = (self.headers.get("Authorization") or "").strip()
                bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
                # the project-scoped path needs an OAuth 2 token; express mode also takes a key
                if not bearer and (project is not None or not key.strip()):
                    raise vertex_unauthenticated(url.path)
                credential = bearer or key
                resource = f"publishers/google/models/{model}"
                if project is not None:
                    resource = f"projects/{project}/locations/{location}/{resource}"
            body = camelize(entry["body"]) if isinstance(entry["body"], dict) else None
            if state.server_faults:  # rate limit, then fail rate (see EmulatorState.admit)
                canonical = None if body is None else json.dumps(
                    body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                verdict = state.admit(url.path, canonical)
                if verdict is not None:
                    if verdict[0] == "rate_limited":
                        raise quota_exceeded(model, state.rate_limit_rpm, verdict[1])
                    raise injected_error(int(verdict[1]), model, version)
            if body is None:
                raise invalid("Invalid JSON payload received. Expected a JSON object as the request body.")
            payload, extra = state.generate(model, version, body, path=url.path, vertex_resource=resource,
                                            api_key=credential)
            if "enum-encoding=int" in query.get("$alt", [""])[0]:
                payload = ints_for_enums(payload)
            code = 200
            delay += extra
        except ApiError as e:
            code, payload = e.code, e.body()
            delay += getattr(e, "delay", 0.0)
        except Exception as e:  # an emulator bug: answer 500 rather than drop the connection
            code = 500
            payload = ApiError(500, "INTERNAL", f"rlhf-eval emulator bug: {type(e).__name__}: {e}").body()
        entry["status"] = code
        state.count(code)
        if delay > 0:
            time.sleep(delay)
        self._send(code, payload)


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # listen backlog: many clients may connect at once (default 5)

    def __init__(self, address: tuple[str, int], state: EmulatorState):
        self.state = state
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (socket.getfqdn), which can stall
        # for seconds on machines with a broken resolver; the emulator has no use for it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), port

    def handle_error(self, request: Any, client_address: Any) -> None:  # quiet (client resets etc.)
        pass


# the OpenAI-compatible endpoints use the helpers above (imported last: no import cycle)
from . import batch_api, openai_api  # noqa: E402
