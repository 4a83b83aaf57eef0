"""How a request finds its recorded answer: method, path and the JSON body (never host or port),
the request filter every request goes through, and an index that skips requests that cannot match."""
from __future__ import annotations

from typing import Any

from .bodies import body_json, frozen_body
from .cassette_format import KEPT_REQUEST_HEADERS, trim_request
from .explain import json_diff
from .vcr_adapter import copy_request, match_method, match_path, request_filters

SECRET_HEADERS = ["x-goog-api-key", "authorization", "x-goog-api-client", "user-agent", "cookie"]
SECRET_QUERY = ["key"]


def json_body(r1, r2) -> None:
    """vcrpy matcher: the bodies are equal as JSON values (key order and spacing do not matter)."""
    if r1.body == r2.body:  # the usual case on replay; skips parsing
        return
    b1, b2 = body_json(r1), body_json(r2)
    if b1 != b2:
        raise AssertionError("\n".join(json_diff(b2, b1)[:5]) or "bodies differ")


MATCHERS = (match_method, match_path, json_body)

# vcrpy's `before_record_request` for the VCR options in `cassette.py` — filter_headers, then
# filter_query_parameters, then `trim_request`, in vcrpy's order — built without its deepcopy.
# It runs once per loaded interaction and once per recorded one.
_REQUEST_FILTERS = (*request_filters(SECRET_HEADERS, SECRET_QUERY), trim_request)


def filter_request(request):
    """What is kept of `request` (no secret headers or query parameters, only needed headers)."""
    if ("?" not in request.uri and "@" not in request.uri
            and all(name.lower() in KEPT_REQUEST_HEADERS for name in request.headers)):
        # Nothing to drop (every request loaded from a cassette written here): each filter would
        # return an equal copy. vcrpy filters each loaded interaction (a tenth of a cassette's load).
        return request
    request = copy_request(request)
    for function in _REQUEST_FILTERS:
        if request is None:
            break
        request = function(request)
    return request


def match_keys(request) -> tuple | None:
    """Keys under which `request` matches with `MATCHERS`: (method, path, raw body) and (method,
    path, body as JSON) — two requests match iff they share one. None if the body is not bytes/str."""
    raw = raw_key(request)
    if raw is None:
        return None
    body = raw[3]
    return raw, (*raw[:2], "json", frozen_body(body) if body != b"" else None)


def raw_key(request) -> tuple | None:
    """The first of `match_keys`, (method, path, "raw", body), without parsing the body."""
    body = request.body
    if body is None or body == b"" or body == "":
        body = b""
    elif not isinstance(body, (bytes, str)):
        return None
    return request.method, request.path or "/", "raw", body


class MatchIndex:
    """The recorded requests of one cassette by `match_keys`, kept up to date as interactions are
    appended (they are never removed or reordered). Keys by raw body are made as requests are
    recorded; keys by parsed body only once `candidates` needs them (`raw_matches` does not)."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._raw: dict[Any, list[int]] = {}
        self._json: dict[Any, list[int]] = {}
        self._unkeyed: list[int] = []  # requests without keys, always tried
        self._indexed = 0  # how many of the recorded requests are in `_raw` and `_unkeyed`
        self._parsed = 0  # how many are in `_json`

    def _update(self, recorded: list) -> None:
        if self._indexed > len(recorded):  # not the list it was built from: start again
            self._reset()
        for i in range(self._indexed, len(recorded)):
            key = raw_key(recorded[i][0])
            if key is None:
                self._unkeyed.append(i)
            else:
                self._raw.setdefault(key, []).append(i)
        self._indexed = len(recorded)

    def raw_matches(self, request, recorded: list) -> list[int] | None:
        """Indices, in recorded order, of the recorded requests with `request`'s method, path and
        raw body (None if `request` has no keys). Another recorded request can still match it: one
        whose body parses equal, or one without keys."""
        self._update(recorded)
        key = raw_key(request)
        return None if key is None else self._raw.get(key, [])

    def candidates(self, request, recorded: list) -> list[int]:
        """Indices, in recorded order, of the requests in `recorded` (pairs (request, response))
        that may match `request`; every one that does match is among them."""
        self._update(recorded)
        for i in range(self._parsed, len(recorded)):
            keys = match_keys(recorded[i][0])
            if keys is not None:
                self._json.setdefault(keys[1], []).append(i)
        self._parsed = len(recorded)
        keys = match_keys(request)
        if keys is None:
            return list(range(len(recorded)))
        return sorted(set(self._raw.get(keys[0], ())) | set(self._json.get(keys[1], ())) | set(self._unkeyed))
