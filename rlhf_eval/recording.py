"""Recording and replaying a question's HTTP with vcrpy: one cassette per question.

Requests match on method, path and the *canonical JSON body* (never host or port), so a changed
prompt, model or sampling setting can never replay a stale answer, and a cassette recorded against
the emulator replays against any base URL.

Cassettes are written atomically (temp file + rename), only when the whole question was sampled,
and never with a secret in them: known keys are filtered, and the text is scanned for any key or
token before it is written. Only the final exchange of a retried request is kept.

vcrpy patches HTTP libraries process-wide, so two cassettes open at once would see each other's
requests. Here one patch, the `_Router`, is shared: each thread sends its requests to the
cassette it is working on, which is what lets questions and their traces be recorded concurrently.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import threading
import zlib
from pathlib import Path
from typing import Any, Iterator

import vcr
import yaml
from vcr.cassette import Cassette
from vcr.errors import CannotOverwriteExistingCassetteException, UnhandledHTTPRequestError
from vcr.patch import CassettePatcherBuilder
from vcr.persisters.filesystem import CassetteNotFoundError
from vcr.record_mode import RecordMode
from vcr import filters
from vcr import matchers as vcr_matchers
from vcr.matchers import requests_match
from vcr.request import HeadersDict, Request
from vcr.serialize import serialize
from vcr.serializers import compat

from .atomic import atomic_write_text, os_reason
from .credentials import find_secret, redact_url
from .paths import shown_path
from .record_modes import RECORD_MODES

SECRET_HEADERS = ["x-goog-api-key", "authorization", "x-goog-api-client", "user-agent", "cookie"]
SECRET_QUERY = ["key"]
KEPT_REQUEST_HEADERS = {"content-type"}  # the rest (host:port, lengths, agents) only make re-recordings noisy
KEPT_RESPONSE_HEADERS = {"content-type"}
# Statuses a request is retried on (RequestPolicy): such an exchange is never kept in a cassette.
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


try:  # optional: parses the same JSON to the same values as `json`, ~4x faster
    import orjson as _orjson
except ImportError:  # pragma: no cover - then `json` does it all
    _orjson = None

_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_INT64_DIGITS = b"0" * 19  # an integer literal orjson could not keep exact has at least 19 digits


def loads_json(text: str | bytes) -> Any:
    """`json.loads(text)`, through orjson when it is installed and gives the very same value.

    Replay parses every cassette and every response body (≈25 KB of JSON per trace with
    chosen-token logprobs), which was a sixth of the replay time. orjson returns what `json` does
    for every text it accepts, except integers beyond 64 bits, which it turns into floats: a text
    with a run of 19 or more digits, and anything orjson rejects (NaN, lone surrogates, a BOM,
    UTF-16 bytes, ...), goes to `json` — so the result, or the error, is always `json`'s."""
    if _orjson is not None:
        raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
        if isinstance(raw, bytes) and _INT64_DIGITS not in raw.translate(_DIGITS_AS_ZERO):
            try:
                return _orjson.loads(raw)
            except (ValueError, TypeError):  # orjson.JSONDecodeError is a ValueError
                pass
    return json.loads(text)


class CassetteProblem(Exception):
    """A cassette is missing, stale or unreadable; the message says what and how to fix it."""


class SecretInCassette(CassetteProblem):
    """A cassette about to be written contains a secret; it is not written."""


class ReplayFault(CassetteProblem):
    """A recorded response is not one the API sends as an answer (a malformed body, or an HTTP
    error that was never meant to be kept): one line naming the cassette and the interaction, and
    the command that records the question again."""

    def __init__(self, path: str | Path, number: int, total: int, what: str, hint: str = ""):
        self.path, self.number, self.total, self.what = path, number, total, what
        super().__init__(f"cassette {shown_path(path)} interaction {number} of {total} {what}; "
                         f"{rerecord_advice(hint, 'rewrite')}")

    def with_hint(self, hint: str) -> "ReplayFault":
        return ReplayFault(self.path, self.number, self.total, self.what, hint)


def rerecord_advice(hint: str, mode: str) -> str:
    """'re-record with: <hint in record mode `mode`>' — the plugin's hint names the mode a replay
    would record in (once), which cannot replace what an existing cassette holds."""
    if not hint:
        return f"re-record it in record mode {mode}"
    return "re-record with: " + re.sub(r"--rlhf-record-mode=\S+", f"--rlhf-record-mode={mode}", hint)


class CassetteWriteError(CassetteProblem):
    """A cassette could not be written (disk full, read-only, a file in the way); any old one is kept."""


def cassette_path(cassette_dir: str | Path, suite: str, question_id: str) -> Path:
    return Path(cassette_dir) / suite / f"{question_id}.yaml"


def _body_json(request) -> Any:
    """The request body as a JSON value (the raw body if it is not JSON). Shared: never mutate it."""
    body = request.body
    if body is None or body == b"" or body == "":
        return None
    if isinstance(body, (bytes, str)):
        return _parse_body_cached(body)
    return _parse_body(body)


def _parse_body(body) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body


# vcrpy matches a request against every recorded one before it, in `can_play_response_for` and
# again in `play_response`, and reports each mismatch: without this, a question of k requests
# parsed ~k² request bodies on replay.
_parse_body_cached = functools.lru_cache(maxsize=1024)(_parse_body)


def json_body(r1, r2) -> None:
    """vcrpy matcher: the bodies are equal as JSON values (key order and spacing do not matter)."""
    if r1.body == r2.body:  # the usual case on replay; skips parsing
        return
    b1, b2 = _body_json(r1), _body_json(r2)
    if b1 != b2:
        raise AssertionError("\n".join(json_diff(b2, b1)[:5]) or "bodies differ")


# ---------------------------------------------------------------------------------------------
# On disk: compact JSON (which is also YAML), one interaction per line, in seed order
# ---------------------------------------------------------------------------------------------

def _interaction_order(interaction: dict) -> tuple:
    """Seeded requests by seed, the others (scorers, seedless SDKs) after them in recorded order."""
    try:
        body = json.loads(interaction["request"]["body"] or "null")
    except (TypeError, ValueError):
        body = None
    seed = None
    if isinstance(body, dict):
        seed = (body.get("generationConfig") or {}).get("seed", body.get("seed"))
    return (0, seed) if isinstance(seed, int) else (1, 0)


class CompactJSONSerializer:
    """vcrpy serializer: compact JSON, one interaction per line, interactions in seed order.

    JSON is a subset of YAML, so the files keep their `.yaml` name and stay readable by YAML
    tools; reading them with `json` is several times faster than YAML, and cassettes written as
    YAML (by hand or by older versions) still load."""

    @staticmethod
    def serialize(data: dict) -> str:
        interactions = sorted(data["interactions"], key=_interaction_order)
        for interaction in interactions:
            _compact_body(interaction["response"])
        head = {k: v for k, v in data.items() if k != "interactions"}
        lines = [json.dumps(i, ensure_ascii=False, separators=(",", ":")) for i in interactions]
        return (json.dumps(head, separators=(",", ":"))[:-1] + ',"interactions":[\n'
                + ",\n".join(lines) + "\n]}\n")

    @staticmethod
    def deserialize(text: str) -> dict:
        try:
            return loads_json(text)
        except ValueError:
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            return yaml.load(text, Loader=loader)


def _shape_problem(data: Any) -> str | None:
    """What is wrong with a parsed cassette's structure (before vcrpy or an SDK trips over it)."""
    if not isinstance(data, dict):
        kind = {str: "a string", list: "a list", int: "a number", float: "a number", bool: "a boolean"}.get(
            type(data), "nothing")
        return f"it holds {kind}, not a mapping with 'interactions'"
    interactions = data.get("interactions")
    if not isinstance(interactions, list):
        return "no 'interactions' list"
    for n, item in enumerate(interactions, start=1):
        if not isinstance(item, dict) or not isinstance(item.get("request"), dict) \
                or not isinstance(item.get("response"), dict):
            return f"interaction {n} lacks a request or a response"
        code = (item["response"].get("status") or {}).get("code") if isinstance(item["response"].get("status"), dict) else None
        if not isinstance(code, int):
            return f"interaction {n}: response status code {code!r} is not a number"
    return None


def _decoded_response(response: dict) -> dict:
    """`response` with its body decompressed as the SDK's HTTP client would (gzip, deflate, br),
    for a cassette recorded without vcrpy's `decode_compressed_response`; replay then strips the
    content-encoding header with the others. Raises ValueError for a body that does not decompress."""
    headers = response.get("headers")
    body = response.get("body")
    if not isinstance(headers, dict) or not isinstance(body, dict):
        return response
    encoding_keys = [k for k in headers if isinstance(k, str) and k.lower() == "content-encoding"]
    if not encoding_keys:
        return response
    values = headers[encoding_keys[0]]
    codings = [c.strip().lower() for v in (values if isinstance(values, list) else [values])
               for c in str(v).split(",") if c.strip() and c.strip().lower() != "identity"]
    data = body.get("string")
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    if not isinstance(data, bytes) or data.lstrip()[:1] == b"{":  # nothing to decode, or decoded already
        return response
    for coding in reversed(codings):
        data = _decompress(data, coding)
    headers = {k: v for k, v in headers.items() if k not in encoding_keys}
    return {**response, "headers": headers, "body": {**body, "string": data}}


def _decompress(data: bytes, coding: str) -> bytes:
    try:
        if coding in ("gzip", "x-gzip"):
            return zlib.decompress(data, zlib.MAX_WBITS | 16)
        if coding == "deflate":  # zlib-wrapped as the RFC says, or raw as some servers send it
            try:
                return zlib.decompress(data)
            except zlib.error:
                return zlib.decompress(data, -zlib.MAX_WBITS)
        if coding == "br":
            from vcr.filters import brotli
            if brotli is not None:
                return brotli.decompress(data)
    except Exception as exc:  # zlib.error, brotli.error
        raise ValueError(f"its body is marked {coding}-encoded but does not decompress ({exc})") from None
    raise ValueError(f"its body is {coding}-encoded, which cannot be decoded here (gzip, deflate and br can)")


def _body_problem(response: dict) -> str | None:
    """Why a recorded response's body is not one the API answers with, or None.

    Only what a glance tells: a 2xx body must be a JSON object (the endpoints recorded here answer
    with nothing else), so one that is absent, empty, not JSON, a list or cut off mid-JSON is
    refused before an SDK chokes on it; an HTTP error's body may be anything (replay names it)."""
    body = response.get("body")
    if not isinstance(body, dict):
        return f"holds a response the API does not send (its body field is {_kind(body)}, not a mapping with 'string')"
    text = body.get("string")
    if not isinstance(text, (str, bytes)):
        return f"holds a response the API does not send (its body is {_kind(text)}, not text)"
    if response["status"]["code"] >= 300:
        return None
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text.strip()
    if not text:
        return "holds a response the API does not send (its body is empty)"
    if text[0] == "[":
        return "holds a response the API does not send (its body is a JSON list, not an object)"
    if text[0] != "{":
        return f"holds a response the API does not send (its body is not JSON: {_excerpt_start(text)})"
    if text[-1] != "}":
        return f"holds a response the API does not send (its body is cut off mid-JSON: …{_excerpt_end(text)})"
    return None


def _kind(value: Any) -> str:
    return {type(None): "null", str: "a string", dict: "a mapping", list: "a list", bool: "a boolean", int: "a number",
            float: "a number"}.get(type(value), type(value).__name__)


def _excerpt_start(text: str) -> str:
    return repr(text[:60] + ("…" if len(text) > 60 else ""))


def _excerpt_end(text: str) -> str:
    return repr(text[-40:])


def _compact_response(response: dict) -> dict:
    """Keep only the headers a replay needs (the body is compacted when the cassette is written)."""
    response["headers"] = {k: v for k, v in response.get("headers", {}).items()
                           if k.lower() in KEPT_RESPONSE_HEADERS}
    return response


def _compact_body(response: dict) -> None:
    """Keep the body's content but not its indentation (the real API pretty-prints).

    Done when a cassette is serialized rather than in `before_record_response`, which vcrpy also
    runs on every interaction of every cassette it *loads*: re-encoding each (already compact)
    body there was a third of the replay time of a suite with logprobs."""
    body = (response.get("body") or {}).get("string") if isinstance(response.get("body"), dict) else None
    if isinstance(body, (bytes, str)) and body[:1] in ("{", "[", b"{", b"["):
        try:
            compact = json.dumps(json.loads(body), ensure_ascii=False, separators=(",", ":"))
        except ValueError:
            return
        response["body"]["string"] = compact  # the text a serializer writes (vcrpy decoded what it could)


def _trim_request(request):
    for name in list(request.headers):
        if name.lower() not in KEPT_REQUEST_HEADERS:
            del request.headers[name]
    # A base URL's `user:pass@`, `?api_key=` or `?token=` (`?key=` is already dropped); requests
    # match on path and body, never on these.
    request.uri = redact_url(request.uri)
    return request


def _replayable_responses(path: Path, interactions: list) -> list[dict]:
    """The recorded responses, decompressed; raises ReplayFault for the first that no API sends."""
    responses = []
    for n, interaction in enumerate(interactions, start=1):
        try:
            response = _decoded_response(interaction["response"])
        except ValueError as exc:
            raise ReplayFault(path, n, len(interactions), f"holds a response the API does not send ({exc})") from None
        problem = _body_problem(response)
        if problem:
            raise ReplayFault(path, n, len(interactions), problem)
        responses.append(response)
    return responses


class _AtomicPersister:
    """vcrpy persister: atomic writes, secret scan before writing, one clear line for a bad file."""

    @staticmethod
    def load_cassette(cassette_path, serializer):
        path = Path(cassette_path)
        if not path.is_file():
            raise CassetteNotFoundError()
        try:
            data = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError) as exc:
            raise CassetteProblem(f"{shown_path(path)}: cannot read cassette ({exc}); delete it and re-record") from None
        if not data.strip():
            raise CassetteNotFoundError()
        try:
            parsed = serializer.deserialize(data)
        except Exception as exc:  # yaml's or json's own error for a damaged file
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise CassetteProblem(f"{shown_path(path)}: corrupt cassette ({type(exc).__name__}: {first}); "
                                  "delete it and re-record") from None
        problem = _shape_problem(parsed)
        if problem:
            raise CassetteProblem(f"{shown_path(path)}: corrupt cassette ({problem}); delete it and re-record")
        if not parsed["interactions"]:
            raise CassetteNotFoundError()  # like an empty file: recorded again in mode once
        # What vcr.serialize.deserialize returns, built from the text parsed above (not parsed twice).
        requests = [Request._from_dict(r["request"]) for r in parsed["interactions"]]
        responses = [compat.convert_to_bytes(r) for r in _replayable_responses(path, parsed["interactions"])]
        if parsed.get("metadata"):
            return requests, responses, parsed["metadata"]
        return requests, responses

    @staticmethod
    def save_cassette(cassette_path, cassette_dict, serializer):
        text = serialize(cassette_dict, serializer)
        leaked = find_secret(text)
        if leaked:
            raise SecretInCassette(f"refusing to write {shown_path(cassette_path)}: it would contain {leaked}; "
                                   "nothing was written (report this: a secret reached a request or response)")
        atomic_write_text(cassette_path, text)


def _make_vcr(mode: str) -> vcr.VCR:
    record_mode = {"none": RecordMode.NONE, "once": RecordMode.ONCE, "new_episodes": RecordMode.NEW_EPISODES,
                   "all": RecordMode.ALL, "rewrite": RecordMode.ALL}[mode]
    v = vcr.VCR(
        record_mode=record_mode,
        match_on=["method", "path", "json_body"],
        filter_headers=SECRET_HEADERS,
        filter_query_parameters=SECRET_QUERY,
        before_record_request=_trim_request,
        before_record_response=_compact_response,
        decode_compressed_response=True,
        drop_unused_requests=(mode == "rewrite"),
        serializer="compact-json",
    )
    v.register_serializer("compact-json", CompactJSONSerializer)
    v.register_matcher("json_body", json_body)
    v.register_persister(_RewritingPersister if mode == "rewrite" else _AtomicPersister)
    return v


class _RewritingPersister(_AtomicPersister):
    """Record mode rewrite records every request again and keeps none of the old ones, so the old
    cassette is not read at all: a damaged one is replaced instead of stopping the re-recording
    that the damage calls for."""

    @staticmethod
    def load_cassette(cassette_path, serializer):
        raise CassetteNotFoundError()


_VCRS = {mode: _make_vcr(mode) for mode in RECORD_MODES}


class _Router:
    """The one vcrpy patch of this process: routes each thread's requests to its own cassette.

    vcrpy's stubs call these methods on "the" cassette; a thread with no cassette bound passes
    through to the network untouched (the emulator's own tests, a Gradio client)."""

    _path = "rlhf-eval"  # vcrpy names its patched classes after the cassette path
    custom_patches = ()
    skip_patchers = ()

    def __init__(self) -> None:
        self._local = threading.local()
        self._install_lock = threading.Lock()
        self._users = 0
        self._patches: contextlib.ExitStack | None = None
        self._cassette_locks: dict[int, threading.Lock] = {}

    @property
    def current(self) -> Cassette | None:
        return getattr(self._local, "cassette", None)

    def _lock(self, cassette) -> threading.Lock:
        return self._cassette_locks.setdefault(id(cassette), threading.Lock())

    # -- what vcrpy's stubs call --------------------------------------------------------------
    def can_play_response_for(self, request) -> bool:
        c = self.current
        if c is None:
            return False
        with self._lock(c):
            return c.can_play_response_for(request)

    def play_response(self, request):
        c = self.current
        with self._lock(c):
            return c.play_response(request)

    @property
    def write_protected(self) -> bool:
        c = self.current
        return c.write_protected if c is not None else False

    def filter_request(self, request):
        c = self.current
        return c.filter_request(request) if c is not None else request

    def append(self, request, response) -> None:
        c = self.current
        if c is None or response.get("status", {}).get("code") in RETRYABLE_STATUS:
            return  # no cassette, or an attempt that will be retried: only the final exchange is kept
        with self._lock(c):
            c.append_live(request, response)

    def __getattr__(self, name):  # the rest (for vcrpy's error messages) is the current cassette's
        return getattr(self.current, name)

    def __len__(self) -> int:
        return len(self.current) if self.current is not None else 0

    def __contains__(self, request) -> bool:
        return self.current is not None and request in self.current

    # -- binding --------------------------------------------------------------------------------
    def hold(self) -> None:
        """Install the patch (if it is not) and keep it until the matching `release`."""
        with self._install_lock:
            if self._users == 0:
                stack = contextlib.ExitStack()
                for patcher in CassettePatcherBuilder(self).build():
                    stack.enter_context(patcher)
                self._patches = stack
            self._users += 1

    def release(self) -> None:
        """Undo one `hold`; the last one removes the patch."""
        with self._install_lock:
            self._users -= 1
            if self._users == 0 and self._patches is not None:
                self._patches.close()
                self._patches = None

    @contextlib.contextmanager
    def bound(self, cassette: Cassette) -> Iterator[Cassette]:
        """Send this thread's HTTP to `cassette` (with the patch installed) inside the block."""
        self.hold()
        previous = self.current
        self._local.cassette = cassette
        try:
            yield cassette
        finally:
            self._local.cassette = previous
            self.release()


ROUTER = _Router()


def _copy_request(request: Request) -> Request:
    """The same as `copy.deepcopy(request)` for a vcrpy Request (what vcrpy's filter chain starts
    with), at a tenth of its cost: the body is bytes (immutable) and the headers are copied."""
    return Request(request.method, request.uri, request.body, HeadersDict(request.headers))


# vcrpy's `before_record_request` for the options of `_make_vcr` — filter_headers, then
# filter_query_parameters, then `before_record_request`, in vcrpy's order — built without its
# deepcopy. It runs once per loaded interaction and once per recorded one.
_REQUEST_FILTERS = (
    functools.partial(filters.replace_headers, replacements=[(h, None) for h in SECRET_HEADERS]),
    functools.partial(filters.replace_query_parameters, replacements=[(q, None) for q in SECRET_QUERY]),
    _trim_request,
)


def _filter_request(request):
    request = _copy_request(request)
    for function in _REQUEST_FILTERS:
        if request is None:
            break
        request = function(request)
    return request


def _frozen(value: Any) -> Any:
    """A hashable stand-in for a parsed JSON value, equal (and hashing equal) exactly when the
    values compare equal with `==`."""
    if isinstance(value, dict):
        return frozenset((k, _frozen(v)) for k, v in value.items())
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


@functools.lru_cache(maxsize=1024)
def _frozen_body(body: bytes | str) -> Any:
    return _frozen(_parse_body_cached(body))


_MATCHERS = (vcr_matchers.method, vcr_matchers.path, json_body)


def _match_keys(request) -> tuple | None:
    """Keys under which `request` matches with `_MATCHERS`: (method, path, raw body) and (method,
    path, body as JSON) — two requests match iff they share one. None if the body is not bytes/str."""
    body = request.body
    if body is None or body == b"" or body == "":
        body = b""
    elif not isinstance(body, (bytes, str)):
        return None
    head = (request.method, request.path or "/")
    return (*head, "raw", body), (*head, "json", _frozen_body(body) if body != b"" else None)


# Per thread: (cassette, index) of the interaction that answered the thread's last request, or None.
_LAST_PLAYED = threading.local()


def forget_replayed() -> None:
    """Start of a request: no response has answered it yet (see `replay_fault`)."""
    _LAST_PLAYED.value = None


def replay_fault(detail: str) -> ReplayFault | None:
    """The cassette's fault when this thread's last request was answered by a cassette and reading
    that answer failed (`detail` says how): a recorded HTTP error is named as such, any other
    response as one the API does not send. None when the last request (since `forget_replayed`)
    was not answered from a cassette: then the failure is not the cassette's."""
    played = getattr(_LAST_PLAYED, "value", None)
    if played is None:
        return None
    cassette, index = played
    response = cassette.data[index][1]
    code = response["status"]["code"]
    if code >= 400:
        what = f"recorded an HTTP {code} from the API ({_error_message(response)})"
    else:
        what = f"holds a response the API does not send ({detail})"
    return ReplayFault(cassette._path, index + 1, max(cassette._loaded_count, index + 1), what,
                       cassette.rerecord_hint)


def _error_message(response: dict) -> str:
    """The message of a recorded HTTP error, on one line: the API's `error.message` when the body
    is the usual JSON error, else the start of the body, else the status line's reason."""
    text = response["body"].get("string") or b""
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    try:
        error = loads_json(text).get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        message = None
    message = " ".join(str(message or text or response["status"].get("message") or "no message").split())
    return message if len(message) <= 120 else message[:117] + "…"


class _IndexedCassette(Cassette):
    """vcrpy's Cassette, except that a request is matched only against the recorded requests that
    can match it (found through an index on method, path and body) instead of against every one.

    vcrpy scans all recorded requests for each request, twice (`can_play_response_for`, then
    `play_response`), and builds a diff message for every mismatch: k² work per question. The
    index only skips requests that cannot match (`_match_keys` differs); the candidates still go
    through vcrpy's matchers, in recorded order, so which response is played is unchanged.

    Two more differences: it notes which interaction answered each thread's last request (for
    `replay_fault`), and a response recorded now counts as played (`append_live`)."""

    rerecord_hint = ""  # the command that records this question again; set by `use_cassette`

    def play_response(self, request):
        """vcrpy's `play_response`, noting (per thread) which interaction answered."""
        for index, response in self._responses(request):
            if self.play_counts[index] == 0 or self.allow_playback_repeats:
                if self.play_counts[index] == 0 and index < self._loaded_count:  # for drop_unused_requests
                    self._played_interactions.append((self.data[index][0], response))
                self.play_counts[index] += 1
                _LAST_PLAYED.value = (self, index)
                return response
        raise UnhandledHTTPRequestError(f"The cassette ({self._path!r}) doesn't contain the request "
                                        f"({request!r}) asked for")

    def append_live(self, request, response) -> None:
        """Record an exchange that went to the network, as already played. Otherwise the next
        identical request (the k requests of a seedless SDK are byte-identical) would replay this
        response in mode new_episodes instead of asking the API: one trace twice, one request
        and one interaction too few."""
        before = len(self.data)
        self.append(request, response)
        for index in range(before, len(self.data)):
            self.play_counts[index] += 1

    def _responses(self, request):
        if tuple(self._match_on) != _MATCHERS or self._before_record_request is not _filter_request:
            yield from super()._responses(request)
            return
        # vcrpy filters the request first; `_filter_request` only drops headers and query
        # parameters, which `_MATCHERS` (method, path, body) never look at: skip the copy.
        keys = _match_keys(request)
        if keys is None:
            candidates = range(len(self.data))
        else:
            index = self._match_index()
            candidates = sorted(set(index.get(keys[0], ())) | set(index.get(keys[1], ())) | set(index[None]))
        for i in candidates:
            stored_request, response = self.data[i]
            if requests_match(request, stored_request, self._match_on):
                yield i, response

    def can_play_response_for(self, request) -> bool:
        _LAST_PLAYED.value = None  # a new request: whatever answered the last one is not this one's
        if self._before_record_request is not _filter_request:
            return super().can_play_response_for(request)
        # vcrpy filters the request here only to see whether the filter drops it; ours never
        # does (it drops headers and query parameters), so the copy it makes is skipped too.
        return request in self and self.record_mode != RecordMode.ALL and (
            self.rewound or self.allow_playback_repeats)

    def _match_index(self) -> dict:
        index = getattr(self, "_index", None)
        if index is None or self._indexed > len(self.data):
            index, self._indexed = {None: []}, 0
            self._index = index
        for i in range(self._indexed, len(self.data)):  # interactions are only ever appended
            keys = _match_keys(self.data[i][0])
            if keys is None:
                index[None].append(i)  # always tried
            else:
                for key in keys:
                    index.setdefault(key, []).append(i)
        self._indexed = len(self.data)
        return index


def open_cassette(path: str | Path, mode: str) -> Cassette:
    config = _VCRS[mode].get_merged_config(path=str(path))
    for key in ("path_transformer", "func_path_generator", "record_on_exception"):
        config.pop(key, None)
    config["before_record_request"] = _filter_request
    return _IndexedCassette.load(**config)


@contextlib.contextmanager
def use_cassette(path: str | Path, mode: str = "none", *, rerecord_hint: str = "") -> Iterator[Cassette]:
    """Record or replay everything this thread (and threads it binds with `bind`) sends inside the
    block, into the cassette at `path`.

    Raises `CassetteProblem` for a missing cassette in mode `none` and for a request the cassette
    does not hold (explaining what differs); `SecretInCassette` if what was recorded holds a
    secret, and `CassetteWriteError` if the disk refuses it (both write nothing and keep the old
    cassette). Nothing is written if the block raises.
    """
    if mode not in RECORD_MODES:
        raise ValueError(f"record mode {mode!r}; expected one of {', '.join(RECORD_MODES)}")
    path = Path(path)
    if mode == "none" and not path.is_file():
        raise CassetteProblem(f"no cassette at {shown_path(path)}; record it with: {rerecord_hint}".rstrip(": "))
    try:
        cassette = open_cassette(path, mode)
    except ReplayFault as fault:
        raise fault.with_hint(rerecord_hint) from None
    cassette.rerecord_hint = rerecord_hint
    try:
        with ROUTER.bound(cassette):
            yield cassette
    except CannotOverwriteExistingCassetteException as exc:
        raise CassetteProblem(explain_mismatch(exc.failed_request, cassette.requests, path, rerecord_hint)) from None
    _save(cassette, path)


def _save(cassette: Cassette, path: Path) -> None:
    """Write what was recorded; a disk fault (full, read-only, a file in the way) is one line."""
    try:
        cassette._save()
    except OSError as exc:
        raise CassetteWriteError(
            f"could not write cassette {shown_path(path)} ({os_reason(exc)}); what was there before is unchanged: "
            "free some space or choose a writable directory with --rlhf-cassette-dir, then record again") from None


def hold_patch() -> None:
    """Keep vcrpy's patch installed across several `use_cassette` blocks in a row (until
    `release_patch`) instead of installing and removing it around each one: building and
    entering it (41 patchers, new classes) cost about 0.5 ms per cassette. Threads with no
    cassette bound still pass through to the network, as they do while any cassette is open."""
    ROUTER.hold()


def release_patch() -> None:
    ROUTER.release()


def bind(cassette: Cassette | None):
    """For a worker thread: send its HTTP to `cassette` (the one its caller is recording into)."""
    return ROUTER.bound(cassette) if cassette is not None else contextlib.nullcontext()


def current_cassette() -> Cassette | None:
    return ROUTER.current


def find_cassette_mismatch(exc: BaseException | None) -> CannotOverwriteExistingCassetteException | None:
    """The vcrpy refusal inside an SDK exception chain, if there is one."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, CannotOverwriteExistingCassetteException):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _seed_of(body: Any) -> Any:
    """The request's seed: Gemini's generationConfig.seed, or the top-level seed of OpenAI's APIs."""
    if isinstance(body, dict):
        config = body.get("generationConfig")
        return config.get("seed") if isinstance(config, dict) else body.get("seed")
    return None


def explain_mismatch(new, recorded: list, path: Path, hint: str) -> str:
    """Say which part of request `new` changed since the cassette (holding `recorded`) was recorded."""
    path = shown_path(path)
    fix = f"; re-record with: {hint}" if hint else ""
    if not recorded:
        return f"cassette {path} holds no requests{fix}"
    new_body = _body_json(new)
    seed = _seed_of(new_body)
    seeds = [s for s in (_seed_of(_body_json(r)) for r in recorded) if s is not None]
    same_seed = [r for r in recorded if seed is not None and _seed_of(_body_json(r)) == seed]
    if seed is not None and seeds and not same_seed:
        without = [r for r in recorded if _strip_seed(_body_json(r)) == _strip_seed(new_body) and r.path == new.path]
        if without:
            return (f"stale cassette {path}: it holds seeds {_span(seeds)} ({len(seeds)} requests) but this run "
                    f"asks for seed {seed} (did `samples` or `seed` change?){fix}")
    old = same_seed[0] if same_seed else recorded[0]
    diffs = []
    if old.method != new.method:
        diffs.append(f"method: {old.method} → {new.method}")
    if old.path != new.path:
        diffs.append(f"path: {old.path} → {new.path}")
    diffs += json_diff(_body_json(old), new_body)
    if not diffs:
        answers = sum(1 for r in recorded if r.method == new.method and r.path == new.path
                      and _body_json(r) == new_body)
        return (f"cassette {path} holds {answers} {'answer' if answers == 1 else 'answers'} to this request and the "
                f"run asks for more (did `samples` grow?); {rerecord_advice(hint, 'new_episodes')} "
                "(records only the missing ones)")
    shown = "; ".join(diffs[:3]) + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else "")
    return f"stale cassette {path}: the suite changed since it was recorded: {shown}{fix}"


def _strip_seed(body: Any) -> Any:
    if isinstance(body, dict) and isinstance(body.get("generationConfig"), dict):
        return {**body, "generationConfig": {k: v for k, v in body["generationConfig"].items() if k != "seed"}}
    if isinstance(body, dict):
        return {k: v for k, v in body.items() if k != "seed"}
    return body


def _span(seeds: list) -> str:
    seeds = sorted(seeds)
    return f"{seeds[0]}–{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])


_MISSING = object()


def json_diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Human-readable differences between two JSON values, one `path: old → new` per change."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in list(old) + [k for k in new if k not in old]:
            out += json_diff(old.get(key, _MISSING), new.get(key, _MISSING), f"{prefix}.{key}" if prefix else key)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new)):
            out += json_diff(a, b, f"{prefix}[{i}]")
        return out
    if old == new and type(old) is type(new) or (old == new and not isinstance(old, (str, bool))):
        return []
    if isinstance(old, str) and isinstance(new, str) and max(len(old), len(new)) > 60:
        return [f"{prefix or '<body>'} changed at character {_common_prefix(old, new)}: "
                f"{_excerpt(old, new)} → {_excerpt(new, old)}"]
    return [f"{prefix or '<body>'}: {_show(old)} → {_show(new)}"]


def _common_prefix(a: str, b: str) -> int:
    return len(os.path.commonprefix([a, b]))


def _excerpt(text: str, other: str) -> str:
    """The part of `text` around where it starts to differ from `other`."""
    start = max(0, _common_prefix(text, other) - 20)
    piece = text[start:start + 50]
    return json.dumps(("…" if start else "") + piece + ("…" if start + 50 < len(text) else ""), ensure_ascii=False)


def _show(value: Any) -> str:
    if value is _MISSING:
        return "(absent)"
    if isinstance(value, str) and len(value) > 60:
        return json.dumps(value[:57] + "…", ensure_ascii=False)
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "…"
