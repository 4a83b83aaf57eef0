"""The cassette file: compact JSON (which is also YAML), one interaction per line, seeded requests
in seed order; what is kept of a request and a response; what a loaded file must look like."""
from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import yaml

from ..credentials import redact_url
from ..providers import request_seed
from .bodies import loads_json
from .problems import ReplayFault

KEPT_REQUEST_HEADERS = {"content-type"}  # the rest (host:port, lengths, agents) only make re-recordings noisy
KEPT_RESPONSE_HEADERS = {"content-type"}

try:  # as vcrpy's decode_compressed_response: brotli, or its cffi build, if either is installed
    import brotli as _brotli
except ImportError:  # pragma: no cover - depends on the environment
    try:
        import brotlicffi as _brotli
    except ImportError:
        _brotli = None


def _interaction_order(interaction: dict) -> tuple:
    """Seeded requests by seed (as their provider reads it, `providers.request_seed`), the others
    (scorers, seedless SDKs) after them in recorded order."""
    try:
        body = json.loads(interaction["request"]["body"] or "null")
    except (TypeError, ValueError):
        body = None
    seed = request_seed(body)
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


def shape_problem(data: Any) -> str | None:
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
        status = item["response"].get("status")
        code = (status or {}).get("code") if isinstance(status, dict) else None
        if not isinstance(code, int):
            return f"interaction {n}: response status code {code!r} is not a number"
    return None


def replayable_responses(path: Path, interactions: list) -> list[dict]:
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
        if coding == "br" and _brotli is not None:
            return _brotli.decompress(data)
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


def compact_response(response: dict) -> dict:
    """vcrpy's `before_record_response`: keep only the headers a replay needs (the body is
    compacted when the cassette is written)."""
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


def trim_request(request):
    """vcrpy's `before_record_request` (after its header and query filters): keep only the
    headers a replay needs, and no credentials in the URL."""
    for name in list(request.headers):
        if name.lower() not in KEPT_REQUEST_HEADERS:
            del request.headers[name]
    # A base URL's `user:pass@`, `?api_key=` or `?token=` (`?key=` is already dropped); requests
    # match on path and body, never on these.
    request.uri = redact_url(request.uri)
    return request
