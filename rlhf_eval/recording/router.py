"""The one vcrpy patch of the process, routing each thread's HTTP to the cassette it works on.

vcrpy patches HTTP libraries process-wide, so two cassettes open at once would see each other's
requests. Here one patch is shared: each thread sends its requests to the cassette it is bound
to, which is what lets questions and their traces be recorded concurrently.
"""
from __future__ import annotations

import contextlib
import threading
from contextvars import ContextVar
from typing import Callable, Iterator

from .vcr_adapter import AdaptedCassette, PatchTarget, install_patches

# What this thread waits for before its request leaves for the network (`RequestPolicy.call`
# sets it to a rate-limit token): only a request the cassette cannot play, nor a batch answer
# (rlhf_eval.recording.answers), costs one, so a replay or a batch-recorded run never waits.
_BEFORE_NETWORK: ContextVar[Callable[[], None] | None] = ContextVar("rlhf_eval_before_network", default=None)

# Statuses a request is retried on (RequestPolicy): such an exchange is never kept in a cassette.
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class Router(PatchTarget):
    """vcrpy's "cassette" for its patched classes: a thread with a cassette bound plays from and
    records into it (one lock per cassette, as the threads of one question share it); a thread
    with none passes through to the network untouched (the emulator's own tests, a Gradio client)."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._install_lock = threading.Lock()
        self._users = 0
        self._patches: contextlib.ExitStack | None = None

    def target(self) -> AdaptedCassette | None:
        return getattr(self._local, "cassette", None)

    current = property(target, doc="The cassette this thread is bound to, or None.")

    def lock(self, cassette) -> threading.Lock:
        # kept on the cassette, so it goes with it: a dict of locks by id() grew by ~3 locks a
        # question for the process's life (and an id can be reused by a later cassette)
        return cassette.__dict__.setdefault("_rlhf_eval_lock", threading.Lock())

    def can_play_response_for(self, request) -> bool:
        playable = super().can_play_response_for(request)
        # vcrpy sends a request it cannot play unless the cassette refuses to record it
        if not playable and not self.write_protected and (wait := _BEFORE_NETWORK.get()) is not None:
            wait()  # outside the cassette's lock: the other threads of the question go on meanwhile
        return playable

    def keeps(self, response: dict) -> bool:
        """An attempt that will be retried is not kept: only the final exchange of a request is."""
        return response.get("status", {}).get("code") not in RETRYABLE_STATUS

    def hold(self) -> None:
        """Install the patch (if it is not) and keep it until the matching `release`."""
        with self._install_lock:
            if self._users == 0:
                self._patches = install_patches(self)
            self._users += 1

    def release(self) -> None:
        """Undo one `hold`; the last one removes the patch."""
        with self._install_lock:
            self._users -= 1
            if self._users == 0 and self._patches is not None:
                self._patches.close()
                self._patches = None

    @contextlib.contextmanager
    def bound(self, cassette: AdaptedCassette) -> Iterator[AdaptedCassette]:
        """Send this thread's HTTP to `cassette` (with the patch installed) inside the block."""
        self.hold()
        previous = self.current
        self._local.cassette = cassette
        try:
            yield cassette
        finally:
            self._local.cassette = previous
            self.release()


ROUTER = Router()


def hold_patch() -> None:
    """Keep vcrpy's patch installed across several `use_cassette` blocks in a row (until
    `release_patch`) instead of installing and removing it around each one: building and
    entering it (41 patchers, new classes) cost about 0.5 ms per cassette. Threads with no
    cassette bound still pass through to the network, as they do while any cassette is open."""
    ROUTER.hold()


def release_patch() -> None:
    """Undo one `hold_patch`; the last one removes vcrpy's patch."""
    ROUTER.release()


def bind(cassette: AdaptedCassette | None):
    """For a worker thread: send its HTTP to `cassette` (the one its caller is recording into)."""
    return ROUTER.bound(cassette) if cassette is not None else contextlib.nullcontext()


@contextlib.contextmanager
def before_network(wait: Callable[[], None]) -> Iterator[None]:
    """Inside the block, a request of this thread that goes to the network (not played from its
    cassette or a batch answer) calls `wait()` first; `wait` may raise to stop it being sent."""
    token = _BEFORE_NETWORK.set(wait)
    try:
        yield
    finally:
        _BEFORE_NETWORK.reset(token)


def current_cassette() -> AdaptedCassette | None:
    """The cassette this thread's HTTP goes to, or None."""
    return ROUTER.current
