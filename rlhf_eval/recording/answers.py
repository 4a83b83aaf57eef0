"""Answers that came back another way than over the wire (a batch job), played to the requests
they belong to and recorded as if those requests had gone to the network.

While answers are installed, a recording cassette that does not hold a request it is asked for,
and whose answer is here, plays that answer *and appends the exchange* as vcrpy records one from
the network: the request as the SDK built it (through the cassette's filters), the response as
`compact_response` keeps it. So a batch-recorded cassette is written by the very code that writes
an online one. A request with no answer here goes to the network as usual (a failed batch item, a
scorer's request, a fallback).

A request is known by `request_key`: a hash of its method, URL path and canonical JSON body — what
the cassette's own matcher compares (never host, port or headers). The answers are kept in a
temporary SQLite file, not in memory: tens of thousands of questions × k answers with logprobs
(~25 KB each) would otherwise be gigabytes.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
import threading
from typing import Iterable
from urllib.parse import urlsplit


def request_key(method: str, uri: str, body: bytes | str | None) -> str:
    """A request's stable id (40 hex digits): the hash of its method, URL path and canonical JSON
    body (keys sorted; a body that is not JSON as it is). The same in every process and run."""
    body = body or b""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except ValueError:
        canonical = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    path = urlsplit(uri).path
    return hashlib.sha256(f"{method.upper()} {path} {canonical}".encode()).hexdigest()[:40]


class Answers:
    """The installed answers: request key → (status, content type, body bytes), in a temporary
    SQLite file made on the first `install` and removed by `clear`."""

    def __init__(self) -> None:
        self._db: sqlite3.Connection | None = None
        self._path: str | None = None
        self._count = 0
        self._used: set[str] = set()
        self._lock = threading.Lock()

    def install(self, answers: Iterable[tuple[str, int, str, bytes]]) -> None:
        """Add (key, status, content type, body) answers."""
        with self._lock:
            if self._db is None:
                fd, self._path = tempfile.mkstemp(prefix="rlhf-eval-batch-answers.", suffix=".sqlite")
                os.close(fd)
                self._db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=OFF")
                self._db.execute("PRAGMA synchronous=OFF")
                self._db.execute("CREATE TABLE answers (key TEXT PRIMARY KEY, status INT, type TEXT, body BLOB)")
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?)", answers)
            self._db.execute("COMMIT")
            self._count = self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def clear(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
            if self._path is not None:
                try:
                    os.unlink(self._path)
                except OSError:
                    pass
                self._path = None
            self._count = 0
            self._used.clear()

    def __bool__(self) -> bool:
        return self._count > 0

    def __len__(self) -> int:
        return self._count

    def unused(self) -> int:
        """How many installed answers no request has been given."""
        return self._count - len(self._used)

    def response_for(self, request) -> dict | None:
        """The response vcrpy would have recorded for `request` (a vcrpy Request), or None."""
        if not self._count:
            return None
        key = request_key(request.method, request.uri, request.body)
        with self._lock:
            if self._db is None:
                return None
            found = self._db.execute("SELECT status, type, body FROM answers WHERE key = ?", (key,)).fetchone()
            if found is None:
                return None
            self._used.add(key)
        status, content_type, body = found
        return {"status": {"code": status, "message": _REASONS.get(status, "")},
                "headers": {"content-type": [content_type]}, "body": {"string": bytes(body)}}


_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found"}

ANSWERS = Answers()
