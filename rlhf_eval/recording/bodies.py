"""Request and response bodies as JSON values: parsed once (orjson when it gives `json`'s value), cached."""
from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np

_orjson: Any
try:  # optional: parses the same JSON to the same values as `json`, ~4x faster
    import orjson as _orjson
except ImportError:  # pragma: no cover - then `json` does it all
    _orjson = None

_DIGIT_RUN = b"\x01" * 19  # an integer literal orjson could not keep exact has at least 19 digits


def _has_digit_run(raw: bytes) -> bool:
    """Whether `raw` holds 19 ASCII digits in a row. numpy marks every digit at once (a 200 KB
    cassette in 0.1 ms; `bytes.translate` took 0.4 ms, a regular expression longer still)."""
    is_digit = (np.frombuffer(raw, np.uint8) - np.uint8(ord("0"))) < 10  # below "0" wraps to >= 208
    return _DIGIT_RUN in is_digit.tobytes()


def loads_json(text: str | bytes) -> Any:
    """`json.loads(text)`, through orjson when it is installed and gives the very same value.

    Replay parses every cassette and every response body (≈25 KB of JSON per trace with
    chosen-token logprobs), which was a sixth of the replay time. orjson returns what `json` does
    for every text it accepts, except integers beyond 64 bits, which it turns into floats: a text
    with a run of 19 or more digits, and anything orjson rejects (NaN, lone surrogates, a BOM,
    UTF-16 bytes, ...), goes to `json` — so the result, or the error, is always `json`'s."""
    if _orjson is not None:
        raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
        if isinstance(raw, bytes) and not _has_digit_run(raw):
            try:
                return _orjson.loads(raw)
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
