"""The one module that imports vcrpy: its documented API, and every internal this package relies on.

vcrpy's documented surface (`vcr.VCR`, record modes, custom serializers, matchers and persisters,
`CannotOverwriteExistingCassetteException`) does not let a cassette be matched through an index, be
shared by threads, or say which interaction answered a request; that takes its private attributes
and undocumented behaviour. Each function or method below names what it relies on, and
``tests/test_vcr_adapter.py`` checks each of them against the installed vcrpy, so a vcrpy release
that changes one fails there, with the name of the behaviour, instead of deep inside a replay.
`SUPPORTED` is the range pyproject.toml declares; CI runs that test with its lowest version too.
"""
from __future__ import annotations

import contextlib
import functools
import http.client
import threading
from typing import Any, Callable, Iterable, Iterator

import vcr
import vcr.patch as _vcr_patch
from vcr.cassette import Cassette
from vcr.errors import CannotOverwriteExistingCassetteException, UnhandledHTTPRequestError
from vcr.matchers import method as match_method, path as match_path, requests_match
from vcr.persisters.filesystem import CassetteNotFoundError
from vcr.record_mode import RecordMode
from vcr.request import HeadersDict, Request
from vcr.serialize import serialize
from vcr.serializers import compat

SUPPORTED = ">=8.4.0,<10"  # as pyproject.toml: 8.4 added `_loaded_count` and record mode all's replacing save

# Documented API, re-exported so that no other module imports vcrpy.
VCR = vcr.VCR
__all__ = ["VCR", "RecordMode", "CannotOverwriteExistingCassetteException", "CassetteNotFoundError",
           "match_method", "match_path", "requests_match", "serialize", "request_from_dict",
           "response_with_bytes", "copy_request", "request_filters", "cassette_options", "AdaptedCassette",
           "PatchTarget", "install_patches", "Request", "httpx_response"]


def request_from_dict(data: dict) -> Request:
    """A vcrpy Request from one interaction's ``request`` mapping as a cassette file holds it.

    Relies on the private classmethod `Request._from_dict` (what `vcr.serialize.deserialize` uses),
    so that a persister can build vcrpy's requests from text it has parsed once itself."""
    return Request._from_dict(data)


def response_with_bytes(response: dict) -> dict:
    """A recorded response with its body as bytes, as vcrpy's stubs expect to play it.

    Relies on `vcr.serializers.compat.convert_to_bytes` (undocumented; `deserialize` applies it)."""
    return compat.convert_to_bytes(response)


def httpx_response(recorded: dict, httpx_module: Any) -> Any:
    """The `httpx_module.Response` vcrpy's httpx stub would build for a played `recorded` response
    (status, headers, body), not yet read.

    Relies on the private `vcr.stubs.httpx_stubs._deserialize_response(vcr_response, httpx)`, so
    that a replay that skips httpx's transport (`rlhf_eval.backends.replay_http`) answers exactly
    what vcrpy's patched transport would."""
    from vcr.stubs.httpx_stubs import _deserialize_response

    return _deserialize_response(recorded, httpx_module)


def copy_request(request: Request) -> Request:
    """The same as `copy.deepcopy(request)` (what vcrpy's filter chain starts with) at a tenth of
    its cost: the body is bytes (immutable) and the headers are copied.

    Relies on the constructor `Request(method, uri, body, headers)` accepting a `HeadersDict`."""
    return Request(request.method, request.uri, request.body, HeadersDict(request.headers))


def request_filters(secret_headers: Iterable[str], secret_query: Iterable[str]) -> tuple[Callable, ...]:
    """The filters vcrpy builds from `filter_headers` and `filter_query_parameters`, in its order.

    Relies on the undocumented `vcr.filters.replace_headers` / `replace_query_parameters` and on
    `VCR._build_before_record_request` applying them before `before_record_request`."""
    from vcr import filters
    return (functools.partial(filters.replace_headers, replacements=[(h, None) for h in secret_headers]),
            functools.partial(filters.replace_query_parameters, replacements=[(q, None) for q in secret_query]))


def cassette_options(config: vcr.VCR, path: str) -> dict:
    """The keyword arguments `Cassette.load` takes for a cassette at `path` under VCR `config`.

    Relies on the undocumented `VCR.get_merged_config`, less the keys only its decorator reads."""
    options = config.get_merged_config(path=str(path))
    for key in ("path_transformer", "func_path_generator", "record_on_exception"):
        options.pop(key, None)
    return options


class AdaptedCassette(Cassette):
    """vcrpy's Cassette with names for the internals this package uses, and two hooks.

    A subclass may narrow which recorded interactions a request is matched against
    (`candidates`), and is told which interaction answered (`on_played`). Relies on vcrpy's
    `Cassette` attributes `data`, `play_counts`, `_path`, `_loaded_count`, `_match_on`,
    `_before_record_request`, `_played_interactions`, and on its methods `_responses` (the
    interactions a request matches, which `play_response` and `__contains__` iterate), `_save`
    and `append`."""

    @property
    def file_path(self) -> str:
        """Where the cassette is read from and written to (`_path`)."""
        return self._path

    @property
    def loaded_count(self) -> int:
        """How many interactions came from the file (`_loaded_count`; the rest were recorded now)."""
        return self._loaded_count

    @property
    def matchers(self) -> tuple:
        """The matcher functions requests are compared with (`_match_on`)."""
        return tuple(self._match_on)

    def filters_requests_with(self, function: Callable) -> bool:
        """Whether vcrpy's `before_record_request` chain is exactly `function` (`_before_record_request`)."""
        return self._before_record_request is function

    def save(self) -> None:
        """Write what was recorded, through the persister (`_save`: only when something was)."""
        self._save()

    def candidates(self, request: Request) -> Iterable[int] | None:
        """The indices, in recorded order, of the interactions `request` may match; None for all."""
        return None

    def on_played(self, index: int) -> None:
        """Interaction `index` answered the current request."""

    def _responses(self, request):
        """vcrpy's `_responses` (pairs (index, response) of the interactions `request` matches),
        over `candidates` only. vcrpy's runs the request through `before_record_request` first;
        a subclass that gives candidates vouches that its filter changes nothing its matchers
        read, so the request is matched as it is (and the filter's copy of it is saved)."""
        candidates = self.candidates(request)
        if candidates is None:
            yield from super()._responses(request)
            return
        for i in candidates:
            stored_request, response = self.data[i]
            if requests_match(request, stored_request, self._match_on):
                yield i, response

    def play_response(self, request):
        """vcrpy's `play_response` (first unplayed match, noted for `drop_unused_requests`), telling
        `on_played` which interaction answered."""
        for index, response in self._responses(request):
            if self.play_counts[index] == 0 or self.allow_playback_repeats:
                if self.play_counts[index] == 0 and index < self._loaded_count:
                    self._played_interactions.append((self.data[index][0], response))
                self.play_counts[index] += 1
                self.on_played(index)
                return response
        raise UnhandledHTTPRequestError(f"The cassette ({self._path!r}) doesn't contain the request "
                                        f"({request!r}) asked for")

    def can_play_response_for_unfiltered(self, request) -> bool:
        """vcrpy's `can_play_response_for` without running the request filter first (which vcrpy
        does only to see whether the filter drops the request: ours never does)."""
        return request in self and self.record_mode != RecordMode.ALL and (
            self.rewound or self.allow_playback_repeats)

    def append_played(self, request, response) -> None:
        """`append` an exchange that went to the network, counted as already played (`play_counts`)."""
        before = len(self.data)
        self.append(request, response)
        for index in range(before, len(self.data)):
            self.play_counts[index] += 1


class PatchTarget:
    """What vcrpy's patched HTTP classes call on "the" cassette they were built for.

    vcrpy's stubs call `can_play_response_for`, `play_response`, `write_protected`,
    `filter_request` and `append` on the object handed to `CassettePatcherBuilder`, and read
    anything else (for their error messages) from it; the builder names its classes after
    `_path` and reads `custom_patches` and `skip_patchers`. A subclass gives `target()`, the
    cassette of the calling thread (None: the request goes to the network unrecorded), and may
    override `lock` and `keeps`."""

    _path = "rlhf-eval"
    custom_patches: tuple = ()
    skip_patchers: tuple = ()

    def target(self) -> AdaptedCassette | None:
        raise NotImplementedError

    def lock(self, cassette) -> contextlib.AbstractContextManager:
        """Held around each call on `cassette` (several threads may share one)."""
        return contextlib.nullcontext()

    def keeps(self, response: dict) -> bool:
        """Whether a response from the network is recorded."""
        return True

    def can_play_response_for(self, request) -> bool:
        c = self.target()
        if c is None:
            return False
        with self.lock(c):
            return c.can_play_response_for(request)

    def play_response(self, request):
        c = self.target()
        with self.lock(c):
            return c.play_response(request)

    @property
    def write_protected(self) -> bool:
        c = self.target()
        return c.write_protected if c is not None else False

    def filter_request(self, request):
        c = self.target()
        return c.filter_request(request) if c is not None else request

    def append(self, request, response) -> None:
        c = self.target()
        if c is None or not self.keeps(response):
            return
        with self.lock(c):
            c.append_played(request, response)

    def __getattr__(self, name):
        return getattr(self.target(), name)

    def __len__(self) -> int:
        c = self.target()
        return len(c) if c is not None else 0

    def __contains__(self, request) -> bool:
        c = self.target()
        return c is not None and request in c


def install_patches(target: PatchTarget) -> contextlib.ExitStack:
    """Patch every HTTP library vcrpy knows to send its requests to `target`; closing the returned
    stack removes the patches.

    Relies on `vcr.patch.CassettePatcherBuilder(cassette).build()` (what `Cassette.use` enters),
    and replaces `vcr.patch.force_reset` while installed (see `_narrow_reset`): vcrpy's stubs
    import it from that module each time they send a request for real."""
    stack = contextlib.ExitStack()
    for patcher in _vcr_patch.CassettePatcherBuilder(target).build():
        stack.enter_context(patcher)
    original = _vcr_patch.force_reset
    _vcr_patch.force_reset = _narrow_reset
    stack.callback(setattr, _vcr_patch, "force_reset", original)
    return stack


# vcrpy's `force_reset` puts the unpatched classes of *every* library back, process-wide, around
# each request it sends for real (and each connection it makes). Any other thread that looks one
# up meanwhile — a `requests` session building a connection, an httpx transport — gets the real
# class and its request goes to the network unrecorded, so concurrent recording through
# `requests` lost requests. What the real connection needs put back is only what its own code
# looks up by module name while vcrpy builds it: CPython's `HTTPSConnection.__init__` calls
# `super(HTTPSConnection, self)` (httplib2's does the same). urllib3's and httpx's classes use
# `super()` and never look themselves up, so their patches stay in place for every thread.
_RESET = threading.Lock()
_resetting = 0
_patched: dict[tuple[Any, str], Any] = {}


def _self_naming_classes() -> list[tuple[Any, str, Any]]:
    """(module, attribute, original class) for the classes whose code names themselves."""
    names = [(http.client, "HTTPSConnection", _vcr_patch._HTTPSConnection)]
    if hasattr(_vcr_patch, "_HTTPSConnectionWithTimeout"):
        import httplib2
        names.append((httplib2, "HTTPSConnectionWithTimeout", _vcr_patch._HTTPSConnectionWithTimeout))
    return names


@contextlib.contextmanager
def _narrow_reset() -> Iterator[None]:
    """vcrpy's `force_reset`, putting back only `_self_naming_classes` (once for all threads in
    such a window at the same time; the last one out patches them again). Relies on vcrpy keeping
    the originals as `vcr.patch._HTTPSConnection` (and `_HTTPSConnectionWithTimeout`)."""
    global _resetting
    with _RESET:
        if _resetting == 0:
            for module, name, original in _self_naming_classes():
                _patched[module, name] = getattr(module, name)
                setattr(module, name, original)
        _resetting += 1
    try:
        yield
    finally:
        with _RESET:
            _resetting -= 1
            if _resetting == 0:
                for (module, name), patched in _patched.items():
                    setattr(module, name, patched)
                _patched.clear()
