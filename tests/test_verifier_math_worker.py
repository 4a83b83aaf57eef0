"""The math verifier's worker process: a timeout really ends a runaway sympy computation.

math_verify's own timeout is signal.alarm (main thread only), and a thread that runs past its
timeout cannot be stopped, only abandoned with a core still busy. So verify(..., "math") and
equivalent(..., "math") run math_verify in one long-lived worker process, killed and replaced on a
timeout. These inputs are real hangs, not sleeps: parsing `\\gcd(9^{9^{9}}, 6)` makes sympy expand
9^387420489, and comparing `9^{9^{9^{9}}}` with a number evaluates the tower; in-process neither
finished within 20 s when this was written (the parse had reached ~400 MB by then).
"""
from __future__ import annotations

import concurrent.futures
import importlib.util
import os
import time

import pytest

from rlhf_eval import math_worker
from rlhf_eval.verify import VerifierError, equivalent, verify

pytestmark = pytest.mark.skipif(importlib.util.find_spec("math_verify") is None, reason="math-verify not installed")

PARSE_HANGS = "So the value is \\boxed{\\gcd(9^{9^{9}}, 6)}."
COMPARISON_HANGS = "\\boxed{9^{9^{9^{9}}}}"
TIMEOUT = 0.5


def _module():
    return math_worker


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else: not ours, so not our worker
        return False
    return True


def _warm_pid() -> int:
    assert verify("$1$", "1", "math").correct  # starts the worker if need be (startup is not timed)
    pid = _module().worker_pid()
    assert pid is not None and pid != os.getpid() and _alive(pid)
    return pid


def test_parse_timeout_kills_the_worker_and_the_next_call_works():
    pid = _warm_pid()
    start = time.perf_counter()
    verdict = verify(PARSE_HANGS, "3", "math", timeout=TIMEOUT)
    elapsed = time.perf_counter() - start
    assert verdict.status == "unparsable" and verdict.extracted is None
    assert verdict.detail == f"math_verify parse timed out after {TIMEOUT}s"
    assert elapsed < TIMEOUT + 2.0  # the verdict came at the timeout, not when sympy finished
    assert not _alive(pid), "the worker that ran the runaway parse is still running"
    assert verify("$2$", "2", "math", timeout=10).correct  # a fresh worker answers
    new_pid = _module().worker_pid()
    assert new_pid not in (None, pid) and _alive(new_pid)


def test_comparison_timeout_is_incorrect_and_replaces_the_worker():
    pid = _warm_pid()
    verdict = verify(COMPARISON_HANGS, "1", "math", timeout=TIMEOUT)
    assert verdict.status == "incorrect"
    assert verdict.extracted == "9^{9^{9^{9}}}"
    assert verdict.detail == f"math_verify comparison timed out after {TIMEOUT}s"
    assert not _alive(pid)
    assert verify("$\\frac{1}{2}$", "0.5", "math").correct


def test_reference_timeout_is_a_configuration_error():
    with pytest.raises(VerifierError, match=r"reference .*parse timed out after 0.5s"):
        verify("$3$", "\\gcd(9^{9^{9}}, 6)", "math", timeout=TIMEOUT)
    assert verify("$3$", "3", "math").correct


def test_equivalent_uses_the_same_worker_and_timeout():
    pid = _warm_pid()
    assert equivalent("\\frac{1}{2}", "0.5", "math")
    assert _module().worker_pid() == pid  # reused, not restarted per call
    assert equivalent("\\gcd(9^{9^{9}}, 6)", "3", "math", timeout=TIMEOUT) is False
    assert not _alive(pid)
    assert equivalent("x+1", "1+x", "math")


def test_timeout_from_worker_threads():
    # The harness verifies from a thread pool; calls share one worker, one at a time, and a
    # timeout in one thread does not disturb the others' answers.
    _warm_pid()
    calls = [("$\\frac{1}{2}$", "0.5", 10.0), (PARSE_HANGS, "3", TIMEOUT), ("$x^2+2x+1$", "(x+1)^2", 10.0),
             ("\\boxed{3}", "3", 10.0)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(verify, text, ref, "math", timeout=t) for text, ref, t in calls]
        statuses = [f.result(timeout=60).status for f in futures]
    assert statuses == ["correct", "unparsable", "correct", "correct"]


def test_worker_is_reused_across_calls():
    pid = _warm_pid()
    for text, ref in [("$1$", "1"), ("\\boxed{2\\sqrt{2}}", "\\sqrt{8}"), ("no idea", "1")]:
        verify(text, ref, "math")
    assert _module().worker_pid() == pid
