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
    body = request.body
    if body is None or body == b"" or body == "":
        body = b""
    elif not isinstance(body, (bytes, str)):
        return None
    head = (request.method, request.path or "/")
    return (*head, "raw", body), (*head, "json", frozen_body(body) if body != b"" else None)


class MatchIndex:
    """The recorded requests of one cassette by `match_keys`, kept up to date as interactions are
    appended (they are never removed or reordered)."""

    def __init__(self) -> None:
        self._keys: dict[Any, list[int]] = {None: []}  # None: requests without keys, always tried
        self._indexed = 0  # how many of the recorded requests are in `_keys`

    def candidates(self, request, recorded: list) -> list[int]:
        """Indices, in recorded order, of the requests in `recorded` (pairs (request, response))
        that may match `request`; every one that does match is among them."""
        if self._indexed > len(recorded):  # not the list it was built from: start again
            self._keys, self._indexed = {None: []}, 0
        for i in range(self._indexed, len(recorded)):
            keys = match_keys(recorded[i][0])
            for key in (None,) if keys is None else keys:
                self._keys.setdefault(key, []).append(i)
        self._indexed = len(recorded)
        keys = match_keys(request)
        if keys is None:
            return list(range(len(recorded)))
        return sorted(set(self._keys.get(keys[0], ())) | set(self._keys.get(keys[1], ())) | set(self._keys[None]))
