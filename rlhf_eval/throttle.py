"""How requests go out while recording: bounded concurrency, a rate limit, retries with backoff.

One `RequestPolicy` is shared by every sampler and scorer of a process, so the bounds hold across
the traces of a question and across questions. Replays never need any of it: a cassette holds
only successful exchanges.
"""
from __future__ import annotations

import contextlib
import queue
import random
import threading
import time
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Callable, Iterable, TypeVar

from .recording import before_network, bind, current_cassette
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


class Stopped(Exception):
    """The run is stopping (Ctrl-C, SIGTERM): a request was not sent, or its retry was abandoned."""


class DaemonPool(Executor):
    """A thread pool whose threads never hold up the end of the process.

    `ThreadPoolExecutor` joins its threads at interpreter exit, so an interrupted run would wait
    for every HTTP request in flight (a long generation: minutes). These threads are daemons; who
    stops the work decides how long to wait for it (the plugin: a moment, so that a cassette being
    written is finished, and a question whose last answer is arriving still writes its own)."""

    def __init__(self, workers: int, name: str) -> None:
        self._workers, self._name = max(1, workers), name
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new work after shutdown")
            self._queue.put((future, fn, args, kwargs))
            if len(self._threads) < self._workers:
                thread = threading.Thread(target=self._work, name=f"{self._name}_{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
        return future

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            future, fn, args, kwargs = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - it belongs to whoever reads the future
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
            if cancel_futures:
                self._cancel_queued()
            for _ in self._threads:
                self._queue.put(None)
        if wait:
            for thread in self._threads:
                thread.join()

    def _cancel_queued(self) -> None:
        kept: list[None] = []  # the workers' stop signals (None); every job is cancelled
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                kept.append(job)
            else:
                job[0].cancel()
        for job in kept:
            self._queue.put(job)


class RequestPolicy:
    """Every outgoing request goes through `call`: a concurrency slot, a rate-limit token, and
    retries of retryable failures (429, 5xx, timeouts) honouring the server's requested delay.

    `stop()` ends it all at once: after it, `call` raises `Stopped` instead of sending or waiting."""

    def __init__(self, *, concurrency: int = 1, rate_limit_rpm: float | None = None,
                 retry: RetryPolicy = RetryPolicy(), seed: int = 0,
                 sleep: Callable[[float], None] | None = None, clock: Callable[[], float] = time.monotonic):
        self.concurrency = max(1, concurrency)
        self.retry = retry
        self._stopping = threading.Event()
        # Backoff and rate-limit waits end the moment the run stops: Ctrl-C must not sit out a
        # 60 s RetryInfo. (Tests pass a `sleep` that advances a fake clock instead.)
        self._sleep = sleep or self._stopping.wait
        self._clock = clock
        self.limiter = RateLimiter(rate_limit_rpm, clock, self._pause) if rate_limit_rpm else None
        self._slots = threading.BoundedSemaphore(self.concurrency)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._pool: DaemonPool | None = None
        self.requests = 0
        self.retries = 0

    def stop(self) -> None:
        """Stop now: waiting retries and rate-limited requests give up with `Stopped`, queued ones
        are cancelled, nothing more is sent. Requests already in flight are not waited for."""
        self._stopping.set()
        self.close()

    def _pause(self, seconds: float) -> None:
        self._sleep(seconds)
        self._refuse_if_stopped()

    def _refuse_if_stopped(self) -> None:
        if self._stopping.is_set():
            raise Stopped("the run is stopping; the request was not sent")

    def call(self, send: Callable[[], R]) -> R:
        """`send()` with a slot, a rate-limit token and retries. Raises the last SamplingError when
        retrying cannot help or is used up, and `Stopped` once `stop()` was called."""
        started = self._clock()
        for attempt in range(1, self.retry.attempts + 1):
            with self._slots:
                self._refuse_if_stopped()  # it may have waited for the slot while the run stopped
                # Recording into a cassette, the token is taken only if the request leaves for the
                # network (what the cassette or a batch answer plays costs none); else before it.
                gate: contextlib.AbstractContextManager = contextlib.nullcontext()
                if self.limiter:
                    if current_cassette() is None:
                        self.limiter.acquire()
                    else:
                        gate = before_network(self.limiter.acquire)
                with self._lock:
                    self.requests += 1
                try:
                    with gate:
                        return send()
                except SamplingError as exc:
                    if self._stopping.is_set():  # e.g. an SDK's connection error around a stopped wait
                        raise Stopped("the run is stopping; the request was not sent") from None
                    last = exc
                    if not exc.retryable or attempt == self.retry.attempts:
                        raise
                    with self._lock:
                        wait = self.retry.delay(attempt, exc.retry_after, self._rng)
                    if self._clock() - started + wait > self.retry.max_total:
                        raise
            with self._lock:
                self.retries += 1
            self._pause(wait)  # outside the slot: a waiting request does not hold up the others
        raise last  # pragma: no cover - the loop always returns or raises

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """`fn` over `items`, up to `concurrency` at once, in order; worker threads record into
        the caller's cassette."""
        items = list(items)
        self._refuse_if_stopped()
        if self.concurrency == 1 or len(items) < 2:
            return [fn(x) for x in items]
        cassette = current_cassette()

        def run(x):
            with bind(cassette):
                return fn(x)

        with self._lock:
            if self._pool is None:
                self._pool = DaemonPool(self.concurrency, "rlhf-eval-request")
        return list(self._pool.map(run, items))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


# The library's default: one request at a time and no retries, so a script sees exactly what the
# API said; the pytest plugin builds a policy from its options (--rlhf-concurrency, --rlhf-retries, ...).
SERIAL = RequestPolicy(retry=RetryPolicy(attempts=1))
