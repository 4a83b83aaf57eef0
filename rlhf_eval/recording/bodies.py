"""Request and response bodies as JSON values: parsed once (orjson when installed), cached."""
from __future__ import annotations

import functools
import json
from typing import Any

_orjson: Any
try:  # optional: parses JSON ~4x faster than `json`
    import orjson as _orjson
except ImportError:  # pragma: no cover - then `json` does it all
    _orjson = None


def loads_json(text: str | bytes) -> Any:
    """`json.loads(text)` for a cassette file or a response body, through orjson when installed.

    Replay parses every cassette and every response body (≈25 KB of JSON per trace with
    chosen-token logprobs), which was a sixth of the replay time. orjson gives the value `json`
    gives for every text it accepts but one kind: an integer beyond 64 bits, which it turns into a
    float. Neither a cassette nor an API body holds one where it is read (token counts and indices
    are 32-bit in the APIs' schemas, and the cassette's own numbers are small); looking for one in
    every text cost a third as much as parsing it. A text orjson rejects (NaN, a lone surrogate, a
    BOM, UTF-16 bytes, ...) goes to `json`, so its value, or its error, is `json`'s."""
    if _orjson is not None:
        try:
            return _orjson.loads(text)
        except (ValueError, TypeError):  # orjson.JSONDecodeError is a ValueError
            pass
    return json.loads(text)


def body_json(request) -> Any:
    """`request.body` as a JSON value (the raw body if it is not JSON; None if it is empty).
    Cached and shared: never mutate it."""
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


def _frozen(value: Any) -> Any:
    """A hashable stand-in for a parsed JSON value, equal (and hashing equal) exactly when the
    values compare equal with `==`."""
    if isinstance(value, dict):
        return frozenset((k, _frozen(v)) for k, v in value.items())
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


@functools.lru_cache(maxsize=1024)
def frozen_body(body: bytes | str) -> Any:
    """The body (bytes or text) parsed as JSON, as a hashable value (see `_frozen`)."""
    return _frozen(_parse_body_cached(body))
