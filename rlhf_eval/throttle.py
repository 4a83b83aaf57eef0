"""How requests go out while recording: bounded concurrency, a rate limit, retries with backoff.

One `RequestPolicy` is shared by every sampler and scorer of a process, so the bounds hold across
the traces of a question and across questions. Replays never need any of it: a cassette holds
only successful exchanges.
"""
from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, TypeVar

from .recording import bind, current_cassette
from .sampling import SamplingError

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6  # including the first
    initial_delay: float = 1.0  # seconds, doubled each retry ...
    max_delay: float = 60.0  # ... up to this
    jitter: float = 0.5  # ± this fraction of the delay, so parallel clients do not retry in step
    max_total: float = 600.0  # give up on a request after this many seconds of retrying

    def delay(self, retry: int, server_asked: float | None, rng: random.Random) -> float:
        """The wait before retry number `retry` (1-based): the server's RetryInfo when it gave one,
        else exponential backoff; jittered either way."""
        base = server_asked if server_asked is not None else min(self.max_delay,
                                                                  self.initial_delay * 2 ** (retry - 1))
        return max(0.0, base * (1 + self.jitter * (2 * rng.random() - 1)))


class RateLimiter:
    """Token bucket: at most `rpm` requests a minute, evenly spaced, with a burst of one second's worth."""

    def __init__(self, rpm: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.rate = rpm / 60.0
        self.capacity = max(1.0, self.rate)
        self._tokens = self.capacity
        self._clock, self._sleep = clock, sleep
        self._stamp = clock()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1.0 - 1e-9:  # a float hair short of a token is a token
                    self._tokens = max(0.0, self._tokens - 1.0)
                    return
                wait = max((1.0 - self._tokens) / self.rate, 1e-6)
            self._sleep(wait)


class RequestPolicy:
    """Every outgoing request goes through `call`: a concurrency slot, a rate-limit token, and
    retries of retryable failures (429, 5xx, timeouts) honouring the server's requested delay."""

    def __init__(self, *, concurrency: int = 1, rate_limit_rpm: float | None = None,
                 retry: RetryPolicy = RetryPolicy(), seed: int = 0,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic):
        self.concurrency = max(1, concurrency)
        self.retry = retry
        self.limiter = RateLimiter(rate_limit_rpm, clock, sleep) if rate_limit_rpm else None
        self._slots = threading.BoundedSemaphore(self.concurrency)
        self._sleep, self._clock = sleep, clock
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self.requests = 0
        self.retries = 0

    def call(self, send: Callable[[], R]) -> R:
        started = self._clock()
        for attempt in range(1, self.retry.attempts + 1):
            with self._slots:
                if self.limiter:
                    self.limiter.acquire()
                with self._lock:
                    self.requests += 1
                try:
                    return send()
                except SamplingError as exc:
                    last = exc
                    if not exc.retryable or attempt == self.retry.attempts:
                        raise
                    with self._lock:
                        wait = self.retry.delay(attempt, exc.retry_after, self._rng)
                    if self._clock() - started + wait > self.retry.max_total:
                        raise
            with self._lock:
                self.retries += 1
            self._sleep(wait)  # outside the slot: a waiting request does not hold up the others
        raise last  # pragma: no cover - the loop always returns or raises

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """`fn` over `items`, up to `concurrency` at once, in order; worker threads record into
        the caller's cassette."""
        items = list(items)
        if self.concurrency == 1 or len(items) < 2:
            return [fn(x) for x in items]
        cassette = current_cassette()

        def run(x):
            with bind(cassette):
                return fn(x)

        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="rlhf-eval-request")
        return list(self._pool.map(run, items))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


# The library's default: one request at a time and no retries, so a script sees exactly what the
# API said; the pytest plugin builds a policy from its options (--rlhf-concurrency, --rlhf-retries, ...).
SERIAL = RequestPolicy(retry=RetryPolicy(attempts=1))
