"""Recording under load and faults: concurrency without cross-talk, retries, rate limits, a killed
run, and secrets — through real pytest runs against the emulator."""
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import yaml

from conftest import TEST_KEY
from rlhf_eval.emulator import Emulator
from rlhf_eval.sampling import SamplingError
from rlhf_eval.throttle import RateLimiter, RequestPolicy, RetryPolicy
from test_plugin import metrics_of, report_json, run, suite_yaml


def cassettes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.yaml"))}


def test_concurrent_recording_writes_the_same_cassettes_as_serial(project, live):
    project.makefile(".yaml", demo=suite_yaml(limit=6, samples=4), other=suite_yaml("other", offset=20, limit=4))
    serial, serial_report = report_json(project, "--rlhf-record-mode=once", "--rlhf-concurrency=1",
                                        "--rlhf-cassette-dir=serial")
    serial.assert_outcomes(passed=10)
    concurrent, concurrent_report = report_json(project, "--rlhf-record-mode=once", "--rlhf-concurrency=8",
                                                "--rlhf-cassette-dir=concurrent")
    concurrent.assert_outcomes(passed=10)
    assert metrics_of(concurrent_report) == metrics_of(serial_report)
    assert cassettes(project.path / "concurrent") == cassettes(project.path / "serial")  # byte for byte
    concurrent.stdout.fnmatch_lines(["rlhf-eval recording: 10/10 questions · 40 requests · 0 retries · ETA 0s"])


def test_concurrent_recording_under_xdist_writes_the_same_cassettes(project, live):
    pytest.importorskip("xdist")
    project.makefile(".yaml", demo=suite_yaml(limit=6, samples=4))
    run(project, "--rlhf-record-mode=once", "--rlhf-concurrency=1", "--rlhf-cassette-dir=serial")
    result = run(project, "--rlhf-record-mode=once", "--rlhf-concurrency=8", "-n", "2", "--rlhf-cassette-dir=xdist")
    result.assert_outcomes(passed=6)
    assert cassettes(project.path / "xdist") == cassettes(project.path / "serial")


def test_failed_attempts_are_retried_and_only_the_final_exchange_is_kept(project, live, monkeypatch):
    questions = [{"id": "flaky", "question": "[[emulator:503x2]] What is 2+3?", "answer": 5}]
    project.makefile(".yaml", demo=suite_yaml(samples=3, questions=questions))
    # --rlhf-retry-delay: the backoff is computed as in production (checked with a fake clock
    # below), only from 10 ms instead of 1 s, so the test does not sit out seconds of waiting.
    result, report = report_json(project, "--rlhf-record-mode=once", "--rlhf-concurrency=3", "--rlhf-retry-delay=0.01")
    result.assert_outcomes(passed=1)
    cassette = yaml.safe_load((project.path / "cassettes/demo/flaky.yaml").read_text())
    assert [i["response"]["status"]["code"] for i in cassette["interactions"]] == [200, 200, 200]
    result.stdout.fnmatch_lines(["rlhf-eval recording: 1/1 questions · 9 requests · 6 retries · ETA 0s"])
    monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", "http://127.0.0.1:9")
    replayed, rep = report_json(project)
    replayed.assert_outcomes(passed=1)
    assert metrics_of(rep) == metrics_of(report)


def test_retries_give_up_with_one_line_and_write_nothing(project, live):
    questions = [{"id": "down", "question": "[[emulator:503]] What is 2+3?", "answer": 5}]
    project.makefile(".yaml", demo=suite_yaml(samples=2, questions=questions))
    result = run(project, "--rlhf-record-mode=once", "--rlhf-retries=1", "--rlhf-retry-delay=0.01")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["demo.yaml::down: the API answered 503: The model is overloaded.*"])
    assert not (project.path / "cassettes/demo/down.yaml").exists()


class FakeTime:
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_retry_delays_honour_retry_info_and_back_off_exponentially_with_jitter():
    t = FakeTime()
    policy = RequestPolicy(retry=RetryPolicy(attempts=5, initial_delay=1.0, jitter=0.5), sleep=t.sleep,
                           clock=t.clock, seed=3)
    errors = [SamplingError("429", status=429, retry_after=47.0), SamplingError("503", status=503),
              SamplingError("timeout", transient=True), SamplingError("503", status=503)]

    def send():
        if errors:
            raise errors.pop(0)
        return "ok"

    assert policy.call(send) == "ok"
    assert policy.requests == 5 and policy.retries == 4
    first, *rest = t.sleeps
    assert 47 * 0.5 <= first <= 47 * 1.5  # the server's RetryInfo, jittered
    for n, delay in enumerate(rest, start=2):  # backoff 2, 4, 8 (1 * 2**(n-1)), ±50%
        assert 2 ** (n - 1) * 0.5 <= delay <= 2 ** (n - 1) * 1.5


def test_no_retry_for_a_client_error_a_daily_quota_or_past_the_time_cap():
    t = FakeTime()
    policy = RequestPolicy(retry=RetryPolicy(attempts=5, max_total=10), sleep=t.sleep, clock=t.clock)
    for error in (SamplingError("400", status=400), SamplingError("per day", status=429, permanent=True),
                  SamplingError("429", status=429, retry_after=60.0)):
        def send(error=error):
            raise error
        with pytest.raises(SamplingError):
            policy.call(send)
    assert t.sleeps == [] and policy.requests == 3


def test_rate_limiter_spaces_requests_to_the_rate():
    t = FakeTime()
    limiter = RateLimiter(600, clock=t.clock, sleep=t.sleep)  # 10 a second, a burst of 10
    for _ in range(110):
        limiter.acquire()
    # 10 at once, then one every 0.1 s: 100 more take 10 s
    assert t.now == pytest.approx(10.0, rel=1e-6)


def test_rate_limit_option_paces_recording(project, live):
    project.makefile(".yaml", demo=suite_yaml(limit=2, samples=15))
    start = time.monotonic()
    run(project, "--rlhf-record-mode=once", "--rlhf-rate-limit=600").assert_outcomes(passed=2)
    # 30 requests at 10 a second with a burst of 10: at least 2 s (unpaced, well under 1 s)
    assert time.monotonic() - start >= 1.9


def test_rate_limited_requests_wait_what_the_server_asks(project, monkeypatch):
    """The emulator's quota refuses most requests with a 429 whose RetryInfo asks for ~50 ms. Our
    own backoff would start at 1000 s, past the 100 s retry cap, so the question could only be
    recorded by waiting what the server asked, through the real SDK's error."""
    with Emulator(port=0, rate_limit_rpm=1200, rate_limit_burst=1) as emu:  # 20 a second, one at once
        monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", emu.base_url)
        monkeypatch.setenv("GEMINI_API_KEY", TEST_KEY)
        project.makefile(".yaml", demo=suite_yaml(limit=2, samples=4))
        result = run(project, "--rlhf-record-mode=once", "--rlhf-concurrency=4", "--rlhf-retries=40",
                     "--rlhf-retry-delay=1000", "--rlhf-retry-timeout=100")
        result.assert_outcomes(passed=2)
        refused = emu.stats["rate_limited"]
    assert refused > 0
    result.stdout.fnmatch_lines([f"rlhf-eval recording: 2/2 questions · {8 + refused} requests · {refused} retries*"])
    for name, data in cassettes(project.path / "cassettes").items():
        assert [i["response"]["status"]["code"] for i in yaml.safe_load(data)["interactions"]] == [200] * 4, name


def test_a_secret_echoed_in_a_response_is_never_written(project, live):
    questions = [{"id": "leak", "question": "[[emulator:echo_key]] What is 2+3?", "answer": 5}]
    project.makefile(".yaml", demo=suite_yaml(samples=1, questions=questions))
    result = run(project, "--rlhf-record-mode=once")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["demo.yaml::leak: refusing to write cassettes/demo/leak.yaml: it would contain "
                                 "the value of $GEMINI_API_KEY; nothing was written*"])
    assert TEST_KEY not in result.stdout.str()
    assert not (project.path / "cassettes/demo/leak.yaml").exists()


def test_a_killed_recording_leaves_whole_cassettes_or_none(project, live):
    """SIGKILL a recording at a random moment while it writes cassettes: every cassette is complete
    or absent, the ones recorded before are untouched, and `once` then records only what is
    missing. The recording killed is a real process; the runs before and after it are in-process."""
    project.makefile(".yaml", demo=suite_yaml(limit=12, samples=4))
    record = ["--rlhf-record-mode=once", "--rlhf-concurrency=4"]
    run(project, *record, "-k", "q-0000 or q-0001").assert_outcomes(passed=2)
    before = cassettes(project.path / "cassettes")
    assert len(before) == 2

    # The moment: once the nth of the 10 missing cassettes has appeared, nth drawn from 1..8, while
    # the questions after it are still being answered (200 ms a request) and written.
    nth = random.Random(os.getpid()).randint(1, 8)
    folder = project.path / "cassettes" / "demo"
    live.latency_ms = 200
    try:
        proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "demo.yaml", *record],
                                cwd=project.path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # live's env
        try:
            deadline = time.monotonic() + 120
            while len(list(folder.glob("*.yaml"))) < 2 + nth:
                assert proc.poll() is None, f"the run ended before its new cassette number {nth}"
                assert time.monotonic() < deadline, f"no new cassette number {nth} after 120 s"
                time.sleep(0.005)  # polling, not waiting out a fixed time
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    finally:
        live.latency_ms = 0
    after = cassettes(project.path / "cassettes")
    assert 2 + nth <= len(after) < 12, len(after)  # killed mid-run
    assert {k: v for k, v in after.items() if k in before} == before
    for name, data in after.items():
        interactions = yaml.safe_load(data)["interactions"]
        assert len(interactions) == 4 and all(i["response"]["status"]["code"] == 200 for i in interactions), name
    # SIGKILL can land between a cassette's temporary file being made and its rename over the
    # cassette (the write is fsynced, so that is milliseconds): such a file may stay behind. It is
    # hidden, named after its cassette, and never read as one; a half-written cassette never exists.
    for tmp in (project.path / "cassettes").rglob("*.tmp"):
        assert tmp.parent == folder and tmp.name.startswith(".q-00") and ".yaml." in tmp.name, tmp

    requests_before = len(live.requests)
    run(project, *record).assert_outcomes(passed=12)
    assert len(live.requests) - requests_before == 4 * (12 - len(after))
    assert len(cassettes(project.path / "cassettes")) == 12


def test_only_a_request_that_goes_to_the_network_takes_a_rate_limit_token(live, tmp_path):
    """What a cassette plays (a replay, or a batch job's answer) is not sent, so it takes no token:
    replaying a question recorded at one request a second waits nothing."""
    from rlhf_eval.backends import make_sampler
    from rlhf_eval.recording import use_cassette
    from rlhf_eval.suite import ModelConfig

    t = FakeTime()
    policy = RequestPolicy(rate_limit_rpm=60, retry=RetryPolicy(attempts=1), sleep=t.sleep, clock=t.clock)
    sampler = make_sampler(ModelConfig(name="gemini-2.0-flash"), policy=policy)  # one token a second, a burst of 1
    path = tmp_path / "q.yaml"

    def sample(mode, seed):
        with use_cassette(path, mode):
            return [tr.text for tr in sampler.sample("What is 2+3?", 3, seed)]

    recorded = sample("once", 0)
    assert t.sleeps == [1.0, 1.0] and policy.requests == 3  # the first token is there; two more a second apart
    assert sample("once", 0) == recorded and sample("new_episodes", 0) == recorded
    assert t.sleeps == [1.0, 1.0] and policy.requests == 9  # six requests played, none waited
    sample("new_episodes", 7)  # three new ones go to the network: each waits its token
    assert t.sleeps == [1.0, 1.0, 1.0, 1.0, 1.0]
