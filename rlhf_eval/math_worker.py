"""math-verify in a worker process, so that a timeout really stops a runaway sympy computation.

A thread can only abandon a computation, which then keeps a core busy; here the worker is killed
on a timeout and replaced. One long-lived worker per process (started on first use, its start-up
never counted against a timeout) serves every caller, one request at a time; it caches parses,
so a suite's reference is parsed once.
"""
from __future__ import annotations

import atexit
import functools
import os
import pickle
import queue
import subprocess
import sys
import threading


class MathWorkerError(RuntimeError):
    """The worker could not start (math-verify missing, or the process failed); one line."""


# The worker runs in its own interpreter, started with subprocess rather than multiprocessing's
# spawn/forkserver: those re-import the caller's __main__ in the child, which re-runs a script
# that calls verify() at top level without an `if __name__ == "__main__"` guard. fork is unsafe in
# the threaded processes that verify (the harness verifies from worker threads). The child loads
# only this module under a bare package, not rlhf_eval/__init__, whose imports cost as much as
# math_verify's own.
_MATH_BOOT = (
    "import sys, types\n"
    "sys.path[:] = {path!r}\n"
    "package = types.ModuleType('rlhf_eval'); package.__path__ = [{package!r}]\n"
    "sys.modules['rlhf_eval'] = package\n"
    "import rlhf_eval.math_worker as w\n"
    "w.serve()\n"
)
_MATH_START_TIMEOUT = 120.0  # importing sympy on a loaded CI machine; never counted against `timeout`


def serve() -> None:  # pragma: no cover - runs in the worker process
    """The worker's loop: read pickled requests on stdin, write one pickled reply per step."""
    import logging
    import signal

    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print() from sympy must not corrupt the replies
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it kills us

    def send(*reply):
        pickle.dump(reply, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()

    try:
        import math_verify
    except ImportError as e:
        send("import-error", str(e), True)
        return
    # "Timeout is disabled ..." on every call: the parent enforces the timeout by killing us.
    logging.getLogger("math_verify").setLevel(logging.ERROR)

    @functools.lru_cache(maxsize=2048)
    def parse(s: str):
        return math_verify.parse(s, parsing_timeout=None)

    def check(gold, pred, float_rounding, strict) -> bool:
        return bool(math_verify.verify(gold, pred, float_rounding=float_rounding, strict=strict, timeout_seconds=None))

    def extracted(pred) -> str:
        return pred[-1] if isinstance(pred[-1], str) else str(pred[0])

    send("ready", os.getpid(), True)
    inp = sys.stdin.buffer
    while True:
        try:
            request = pickle.load(inp)
        except (EOFError, OSError):
            return
        try:
            op, a, b, float_rounding, strict = request
            first = parse(a)
            if op == "verify":  # a = reference, b = text
                send("ok", bool(first), not first)
                if first:
                    pred = parse(b)
                    send("ok", extracted(pred) if pred else None, not pred)
                    if pred:
                        send("ok", check(first, pred, float_rounding, strict), True)
            else:  # "equivalent": both parse, and verify holds both ways
                send("ok", bool(first), not first)
                if first:
                    second = parse(b)
                    send("ok", bool(second), not second)
                    if second:
                        ok = check(first, second, float_rounding, strict)
                        send("ok", ok, not ok)
                        if ok:
                            send("ok", check(second, first, float_rounding, strict), True)
        except Exception as e:  # a model's text must never take the worker down
            send("error", f"{type(e).__name__}: {e}", True)


class _MathWorker:
    """One worker process and the thread that reads its replies into a queue."""

    def __init__(self):
        here = os.path.dirname(os.path.abspath(__file__))
        boot = _MATH_BOOT.format(path=list(sys.path), package=here)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", boot], stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True
        )
        self.replies: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, name="rlhf-eval-math-reader", daemon=True).start()
        self.ready = False

    def _read(self) -> None:
        stream = self.proc.stdout
        try:
            while True:
                self.replies.put(pickle.load(stream))
        except Exception:  # EOF, or the pipe torn down by kill()
            self.replies.put(("exited", None, True))

    def reply(self, timeout: float | None):
        try:
            return self.replies.get(timeout=timeout)
        except queue.Empty:
            return None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


_math_lock = threading.Lock()
_math_worker: _MathWorker | None = None
_math_owner = os.getpid()


def _reset_math_after_fork() -> None:
    # A forked child shares the parent's pipes; it must start its own worker, and a lock held by
    # another thread at fork time would never be released in the child.
    global _math_worker, _math_lock, _math_owner
    _math_worker, _math_lock, _math_owner = None, threading.Lock(), os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_math_after_fork)


@atexit.register
def _stop_math_worker() -> None:
    global _math_worker
    if _math_worker is not None and _math_owner == os.getpid():
        _math_worker.kill()
        _math_worker = None


def worker_pid() -> int | None:
    """The running worker's process id (for tests and diagnostics), or None."""
    worker = _math_worker
    return worker.proc.pid if worker is not None and worker.proc.poll() is None else None


def _math_ready() -> _MathWorker:
    global _math_worker
    worker = _math_worker
    if worker is not None and worker.proc.poll() is not None:
        worker.kill()
        worker = None
    if worker is None:
        worker = _math_worker = _MathWorker()
    if not worker.ready:
        kind, value, _ = worker.reply(_MATH_START_TIMEOUT) or ("timeout", None, True)
        if kind != "ready":
            worker.kill()
            _math_worker = None
            if kind == "import-error":
                raise MathWorkerError(f"math verifier needs math-verify: pip install 'rlhf-eval[math]' ({value})")
            raise MathWorkerError(f"math verifier: the math-verify worker process did not start ({kind})")
        worker.ready = True
    return worker


def math_call(op: str, a: str, b: str, timeout: float | None, float_rounding: int, strict: bool):
    """Run one request in the worker: (step results, outcome), outcome one of "done", "timeout",
    "exited" or "error: ...". Each step gets its own `timeout`; on a timeout the worker is killed
    (so the computation really stops) and a fresh one is started for the next call."""
    global _math_worker
    with _math_lock:
        worker = _math_ready()
        results: list = []
        try:
            pickle.dump((op, a, b, float_rounding, strict), worker.proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            worker.proc.stdin.flush()
        except OSError:
            worker.kill()
            _math_worker = None
            return results, "exited"
        while True:
            try:
                reply = worker.reply(timeout or None)  # 0, like None, means no timeout
            except BaseException:  # e.g. KeyboardInterrupt: its late replies must not answer the next call
                worker.kill()
                _math_worker = None
                raise
            if reply is None:
                worker.kill()
                # Start the replacement now: it imports sympy while the caller gets on with its work.
                _math_worker = _MathWorker()
                return results, "timeout"
            kind, value, last = reply
            if kind == "exited":
                worker.kill()
                _math_worker = None
                return results, "exited"
            if kind == "error":
                return results, f"error: {value}"
            results.append(value)
            if last:
                return results, "done"
