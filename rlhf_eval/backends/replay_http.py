"""Replay through the cassette without an HTTP round trip: the httpx client google-genai gets in replay.

google-genai builds every request itself (URL, headers, the JSON body) and hands it to its httpx
client (`build_request`, then `send`). In replay the client below hands it to the cassette the
thread is bound to, making the very calls vcrpy's httpx stub makes on it (`can_play_response_for`,
`play_response`, and for a request the cassette does not hold `write_protected` /
`filter_request`, then vcrpy's `CannotOverwriteExistingCassetteException`, which `use_cassette`
explains as a stale cassette), and builds the response with vcrpy's own deserializer. What it
leaves out is httpx's generic pipeline — URL and header merging, auth, redirects, cookies, streams
— about a fifth of the replay time of a suite (benchmarks/replay.py). Anything else goes the
usual way through httpx, and so through vcrpy's patch: a request while no cassette is bound, a
streamed request, and a request the cassette may record.
"""
from __future__ import annotations

import codecs
import email.message
import functools
from typing import Any

from ..recording import ROUTER
from ..recording.vcr_adapter import CannotOverwriteExistingCassetteException, Request as VcrRequest, httpx_response

_httpx: Any
try:  # the HTTP library google-genai uses by default, and the one its client must come from
    import httpx2 as _httpx
except ImportError:  # pragma: no cover - older google-genai installs: httpx
    import httpx as _httpx


class _Unsent:
    """A request google-genai asked `build_request` for, not yet turned into an httpx Request."""

    __slots__ = ("method", "url", "content", "headers", "kwargs")

    def __init__(self, method: str, url: str, content: Any, headers: Any, kwargs: dict) -> None:
        self.method, self.url, self.content, self.headers, self.kwargs = method, url, content, headers, kwargs


@functools.lru_cache(maxsize=64)
def _normalized(url: str) -> str:
    """The URL as httpx would send it (percent-encoding, default port); one model's requests share it."""
    return str(_httpx.URL(url))


@functools.lru_cache(maxsize=64)
def _known_charset(content_type: str) -> str | None:
    """The charset of a content-type header, as httpx reads it (through `email.message`, for every
    response: a tenth of the SDK's time in a replay), when Python knows it; else None."""
    message = email.message.Message()
    message["content-type"] = content_type
    charset = message.get_content_charset(failobj=None)
    try:
        return codecs.lookup(charset) and charset if charset else None
    except LookupError:
        return None


class ReplayClient(_httpx.Client):
    """An httpx client that answers from the thread's cassette when it holds the request."""

    def build_request(self, method: str, url: Any, *, content: Any = None, headers: Any = None, **kwargs: Any):
        if ROUTER.current is None or kwargs.get("files") or kwargs.get("data") or kwargs.get("json") is not None \
                or not isinstance(url, str) or not isinstance(content, (str, bytes, type(None))):
            return super().build_request(method, url, content=content, headers=headers, **kwargs)
        return _Unsent(method, url, content, headers, kwargs)

    def send(self, request: Any, *, stream: bool = False, **kwargs: Any):
        if isinstance(request, _Unsent):
            response = None if stream else self._replay(request)
            if response is not None:
                return response
            request = super().build_request(request.method, request.url, content=request.content,
                                            headers=request.headers, **request.kwargs)
        return super().send(request, stream=stream, **kwargs)

    @staticmethod
    def _replay(unsent: _Unsent):
        """The recorded response to `unsent`, or None when it should go to the network (and vcrpy)."""
        body = unsent.content.encode("utf-8") if isinstance(unsent.content, str) else (unsent.content or b"")
        vcr_request = VcrRequest(unsent.method.upper(), _normalized(unsent.url), body, dict(unsent.headers or {}))
        if ROUTER.can_play_response_for(vcr_request):
            response = httpx_response(ROUTER.play_response(vcr_request), _httpx)
            response.read()  # as `send` does for a request that is not streamed
            charset = _known_charset(response.headers.get("content-type") or "")
            if charset:  # what httpx would find; an unknown one is left to httpx's own fallback
                response.encoding = charset
            return response
        if ROUTER.write_protected and ROUTER.filter_request(vcr_request):
            raise CannotOverwriteExistingCassetteException(cassette=ROUTER, failed_request=vcr_request)
        return None
