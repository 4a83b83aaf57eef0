"""Answers that came back another way than over the wire (a batch job), played to the requests
they belong to and recorded as if those requests had gone to the network.

While answers are installed, a recording cassette that does not hold a request it is asked for,
and whose answer is here, plays that answer *and appends the exchange* as vcrpy records one from
the network: the request as the SDK built it (through the cassette's filters), the response as
`compact_response` keeps it. So a batch-recorded cassette is written by the very code that writes
an online one. A request with no answer here goes to the network as usual (a failed batch item, a
scorer's request, a fallback).

A request is known by its method, URL path and parsed JSON body: what the cassette's own matcher
compares (never host, port or headers).
"""
from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

from .bodies import frozen_body

Key = tuple[str, str, Any]


def request_key(method: str, uri: str, body: bytes | str | None) -> Key:
    """How an answer is looked up: (method, URL path, the body as a hashable parsed JSON value)."""
    return method.upper(), urlsplit(uri).path, frozen_body(body or b"")


class Answers:
    """The installed answers: key → (status, content type, body bytes)."""

    def __init__(self) -> None:
        self._by_key: dict[Key, tuple[int, str, bytes]] = {}
        self._used: set[Key] = set()
        self._lock = threading.Lock()

    def install(self, answers: dict[Key, tuple[int, str, bytes]]) -> None:
        with self._lock:
            self._by_key.update(answers)

    def clear(self) -> None:
        with self._lock:
            self._by_key.clear()
            self._used.clear()

    def unused(self) -> int:
        """How many installed answers no request has been given."""
        return len(self._by_key.keys() - self._used)

    def __bool__(self) -> bool:
        return bool(self._by_key)

    def response_for(self, request) -> dict | None:
        """The response vcrpy would have recorded for `request` (a vcrpy Request), or None."""
        if not self._by_key:
            return None
        key = request_key(request.method, request.uri, request.body)
        found = self._by_key.get(key)
        if found is None:
            return None
        self._used.add(key)
        status, content_type, body = found
        return {"status": {"code": status, "message": _REASONS.get(status, "")},
                "headers": {"content-type": [content_type]}, "body": {"string": body}}


_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found"}

ANSWERS = Answers()
