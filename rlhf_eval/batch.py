"""Recording through the providers' batch APIs (`--rlhf-record-via batch`): half the price, and
their own throughput instead of the online rate limit.

Three steps, before the run's questions are sampled:

1. **Capture.** Each question to record is sampled by its suite's own sampler with every request
   caught instead of sent (answered with an empty body, so the sampler goes on to its next
   request): the requests are the online path's, byte for byte, built by the same code.
2. **Batch.** The requests of each suite are submitted as one job per chunk (`batch_apis`), the
   job ids written at once to `<cassette_dir>/.batches/<suite>.json` (atomically, scanned for
   secrets), and polled with backoff, one progress line per poll (jobs, states, ETA). A re-run of
   the same command after an interruption finds the jobs there and collects them: a request
   already in a job that is running or succeeded is never submitted again.
3. **Record.** The answers are installed (`recording.answers`) and the run records as usual: each
   request is answered from the batch and recorded by the online path's own code into the
   question's cassette, so a batch-recorded cassette is the one an online recording writes. A
   request the batch did not answer (a failed item, a scorer's request, a fallback after a refusal)
   goes online; the failed items are named in one line.

Covers the Gemini Developer API and OpenAI-compatible servers that serve OpenAI's Batch API.
Vertex AI batch prediction (input and output in Cloud Storage or BigQuery) is not covered: a Vertex
suite records online.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import urlsplit

from .batch_apis import (GEMINI_INLINE_BYTES, OPENAI_MAX_BYTES, BatchAPIError, GeminiBatches, ItemResult,
                         OpenAIBatches, Status)
from .credentials import SecretInOutput, find_secret, redact_url, write_without_secrets
from .paths import shown_path
from .recording import ROUTER, cassette_path, open_cassette
from .recording.answers import ANSWERS, request_key
from .sampling import SamplingError
from .suite import Question, Suite

PLACEHOLDER = {"status": {"code": 200, "message": "OK"}, "headers": {"content-type": ["application/json"]},
               "body": {"string": b"{}"}}
STATE_VERSION = 1


@dataclass
class BatchSettings:
    """How batch recording polls and chunks. `sleep` and `clock` are injectable so that tests
    never wait; `progress` gets one line per poll (default: stderr).

    poll_interval: seconds before the first poll, then multiplied by `backoff` each poll up to
    `max_poll_interval`. max_requests / max_bytes: one job's size (OpenAI allows 50,000 requests and
    200 MB a file; 10,000 keeps one job's answers, read at once, to a few hundred MB with
    logprobs). max_inline_bytes: Gemini requests larger in all go as an uploaded file."""

    poll_interval: float = 30.0
    max_poll_interval: float = 600.0
    backoff: float = 1.5
    max_requests: int = 10_000
    max_bytes: int = OPENAI_MAX_BYTES
    max_inline_bytes: int = GEMINI_INLINE_BYTES
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    progress: Callable[[str], None] | None = None

    def say(self, line: str) -> None:
        if self.progress is not None:
            self.progress(line)
        else:
            print(line, file=sys.stderr, flush=True)


class BatchError(SamplingError):
    """Batch recording cannot go on (a suite it cannot batch, a secret in what would be sent); one line."""


# ------------------------------------------------------------------------------------ 1. capture

@dataclass
class Pending:
    """One request the online path would send: where, its body, and its auth headers (kept in
    memory only, to talk to the same server's batch API)."""

    provider: str  # "gemini" or "openai"
    url: str
    body: bytes
    auth: dict[str, str]
    custom_id: str  # the job item's id, and how its answer is found again: `recording.answers.request_key`

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def target(self) -> str:
        """Gemini: the model; OpenAI: the endpoint (`/v1/chat/completions`, `/v1/completions`)."""
        if self.provider == "gemini":
            return self.path.rsplit("/models/", 1)[1].split(":", 1)[0]
        return "/v1/chat/completions" if self.path.endswith("/chat/completions") else "/v1/completions"

    @property
    def server(self) -> str:
        """The root the batch API lives under: Gemini's before `/v1beta`, OpenAI's base URL."""
        parts = urlsplit(self.url)
        if self.provider == "gemini":
            prefix = parts.path.split("/v1beta/", 1)[0]
        else:
            prefix = parts.path.rsplit("/chat/completions" if self.path.endswith("/chat/completions")
                                       else "/completions", 1)[0]
        return f"{parts.scheme}://{parts.netloc}{prefix}"


def _provider(path: str) -> str | None:
    if "/v1beta/models/" in path and path.endswith(":generateContent"):
        return "gemini"
    if path.endswith(("/chat/completions", "/completions")):
        return "openai"
    return None


class CaptureTarget:
    """What the recording patch sees while requests are captured: it can "play" every request,
    noting it and answering an empty JSON object (or, for a request `existing` — a cassette kept
    in mode new_episodes — holds, that cassette's recorded answer)."""

    def __init__(self, existing=None) -> None:
        self.existing = existing
        self.captured: list[Pending] = []
        self.unbatchable: list[str] = []

    write_protected = False
    rewound = False
    record_mode = "all"
    _path = "rlhf-eval-batch-capture"

    def can_play_response_for(self, request) -> bool:
        return True

    def play_response(self, request):
        if self.existing is not None and self.existing.can_play_response_for(request):
            return self.existing.play_response(request)
        path = urlsplit(request.uri).path
        provider = _provider(path)
        body = request.body or b""
        body = body.encode("utf-8") if isinstance(body, str) else body
        if provider is None or request.method != "POST":
            self.unbatchable.append(f"{request.method} {path}")
        else:
            auth = {k: v for k, v in request.headers.items() if k.lower() in ("x-goog-api-key", "authorization")}
            self.captured.append(Pending(provider, request.uri, body, auth,
                                         request_key(request.method, request.uri, body)))
        return {**PLACEHOLDER, "body": {"string": b"{}"}}

    def filter_request(self, request):
        return request

    def append(self, request, response) -> None:
        pass

    def __len__(self) -> int:
        return 0

    def __contains__(self, request) -> bool:
        return True


def batch_problem(suite: Suite) -> str | None:
    """Why `suite` cannot be recorded by batch, or None."""
    from .backends import credentials_problem

    model = suite.spec.model
    if model.provider == "gemini" and model.vertex is not None:
        return (f"suite {suite.name!r} samples through Vertex AI, whose batch prediction (Cloud Storage or BigQuery) "
                "rlhf-eval does not drive: record it online (drop --rlhf-record-via batch)")
    if model.provider not in ("gemini", "openai"):
        return (f"suite {suite.name!r} uses provider {model.provider!r}; batch recording covers providers gemini "
                "(Developer API) and openai: record it online (drop --rlhf-record-via batch)")
    return credentials_problem(model)


def capture(suite: Suite, questions: Iterable[Question], cassette_dir: Path, mode: str) -> list[Pending]:
    """The requests recording `questions` would send, each once, in order (mode once skips a
    question whose cassette exists; mode new_episodes leaves out what its cassette holds)."""
    from .backends import make_sampler
    from .throttle import RequestPolicy, RetryPolicy

    # Gemini's replay client hands each request the SDK built straight to the patch target (here the
    # capture) without httpx's pipeline: the same request, captured in half the time. OpenAI's replay
    # client would have no key and no server: it is built as for recording.
    replay = suite.spec.model.provider == "gemini"
    sampler = make_sampler(suite.spec.model, replay=replay, policy=RequestPolicy(retry=RetryPolicy(attempts=1)))
    found: dict[str, Pending] = {}
    for question in questions:
        path = cassette_path(cassette_dir, suite.name, question.id)
        if mode == "once" and path.is_file():
            continue
        existing = open_cassette(path, "new_episodes") if mode == "new_episodes" and path.is_file() else None
        target = CaptureTarget(existing)
        with ROUTER.bound(target):  # type: ignore[arg-type]
            sampler.sample(suite.render_prompt(question), suite.spec.samples, suite.spec.seed)
        if target.unbatchable:
            raise BatchError(f"suite {suite.name!r}: {target.unbatchable[0]} is not a request a batch API takes; "
                             "record this suite online")
        for pending in target.captured:
            found.setdefault(pending.custom_id, pending)
    return list(found.values())


# ------------------------------------------------------------------------------- 2. jobs on disk

def state_path(cassette_dir: Path, suite: str) -> Path:
    """Where a suite's batch jobs are remembered: <cassette_dir>/.batches/<suite>.json."""
    return Path(cassette_dir) / ".batches" / f"{suite}.json"


@dataclass
class Job:
    """One submitted job, as `state_path` keeps it."""

    id: str
    provider: str
    server: str  # without credentials
    target: str
    items: list[str]
    input: str
    submitted: str
    state: str = "submitted"
    finished: int | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class SuiteJobs:
    suite: str
    path: Path
    jobs: list[Job] = field(default_factory=list)

    @classmethod
    def load(cls, cassette_dir: Path, suite: str) -> "SuiteJobs":
        path = state_path(cassette_dir, suite)
        if not path.is_file():
            return cls(suite, path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") != STATE_VERSION:
                raise ValueError(f"version {data.get('version')!r}, this rlhf-eval reads version {STATE_VERSION}")
            jobs = [Job(**job) for job in data["jobs"]]
            for job in jobs:
                if not (isinstance(job.id, str) and job.id and isinstance(job.state, str)
                        and isinstance(job.server, str) and isinstance(job.items, list)
                        and all(isinstance(item, str) for item in job.items)):
                    raise ValueError(f"job {job.id!r} is not an id, a state, a server and a list of request ids")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BatchError(f"{shown_path(path)}: not a batch state file this rlhf-eval wrote ({exc}); the jobs it "
                             "names may still be running at the provider (collect them with the rlhf-eval that wrote "
                             "it), else delete it to submit the suite's batch again") from None
        return cls(suite, path, jobs)

    def save(self) -> None:
        text = json.dumps({"version": STATE_VERSION, "suite": self.suite, "jobs": [j.to_dict() for j in self.jobs]},
                          indent=1, ensure_ascii=False) + "\n"
        try:
            write_without_secrets(self.path, text)
        except SecretInOutput as exc:
            raise BatchError(f"refusing to write {shown_path(self.path)}: it would contain {exc.what}") from None


USABLE = {"submitted", "BATCH_STATE_PENDING", "BATCH_STATE_RUNNING", "BATCH_STATE_SUCCEEDED", "validating",
          "in_progress", "finalizing", "completed", "cancelling"}  # a job whose answers may still come


def _chunks(items: list[Pending], settings: BatchSettings) -> Iterator[list[Pending]]:
    chunk: list[Pending] = []
    size = 0
    for item in items:
        if chunk and (len(chunk) >= settings.max_requests or size + len(item.body) > settings.max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += len(item.body) + 200
    if chunk:
        yield chunk


def _client(pending: Pending, settings: BatchSettings):
    if pending.provider == "gemini":
        return GeminiBatches(pending.server, pending.auth, max_inline_bytes=settings.max_inline_bytes)
    token = pending.auth.get("authorization") or pending.auth.get("Authorization") or ""
    return OpenAIBatches(pending.server, token.removeprefix("Bearer ").strip())


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextlib.contextmanager
def _ctrl_c_after(say: Callable[[str], None]) -> Iterator[None]:
    """Hold a first Ctrl-C until the block is over (then raise it): a job created at the provider
    but not yet written to the state file would be lost, and paid for again by the next run. A
    second Ctrl-C stops at once. Outside the main thread (no signal handler to set) a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum, frame) -> None:
        if held:
            raise KeyboardInterrupt
        held.append(signum)
        say("rlhf-eval: batch: Ctrl-C: writing down the job being created first (Ctrl-C again to stop at once: "
            "that job may then be created and forgotten)")

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        raise KeyboardInterrupt


# ----------------------------------------------------------------------------------- the whole

@dataclass
class _Running:
    suite: SuiteJobs
    job: Job
    client: Any
    status: Status | None = None


class BatchRecording:
    """The batch side of one recording run: `collect` does steps 1 and 2 and installs the answers;
    `release` takes them away (the run stopped); `finish` also forgets the suites' jobs (every
    question was recorded)."""

    def __init__(self, cassette_dir: Path, mode: str, settings: BatchSettings | None = None) -> None:
        self.cassette_dir = Path(cassette_dir)
        self.mode = mode
        self.settings = settings or BatchSettings()
        self.suites: list[SuiteJobs] = []
        self.failed: dict[str, str] = {}  # custom id -> why the batch did not answer it
        self.cassettes: dict[str, list[Path]] = {}  # suite -> the cassettes its jobs are for

    def collect(self, questions: Iterable[tuple[Suite, Question]]) -> None:
        by_suite: dict[str, tuple[Suite, list[Question]]] = {}
        for suite, question in questions:
            by_suite.setdefault(suite.name, (suite, []))[1].append(question)
        for suite, _ in by_suite.values():  # every suite checked before anything is captured or paid for
            problem = batch_problem(suite)
            if problem:
                raise BatchError(problem)
        running: list[_Running] = []
        wanted: set[str] = set()  # the requests' ids (their bodies are let go once submitted)
        polling = False
        try:
            for suite, qs in by_suite.values():
                pending = capture(suite, qs, self.cassette_dir, self.mode)
                self.cassettes[suite.name] = [cassette_path(self.cassette_dir, suite.name, q.id) for q in qs]
                if not pending:
                    continue
                wanted.update(p.custom_id for p in pending)
                self._submit(suite.name, pending, running)
            if not running:
                return
            polling = True
            self._poll(running)
        except KeyboardInterrupt:
            from .runner import Interrupted

            if not running:
                raise Interrupted("rlhf-eval stopped on Ctrl-C before any batch job was submitted; nothing was "
                                  "recorded or paid for") from None
            files = ", ".join(sorted({shown_path(r.suite.path) for r in running}))
            jobs = f"{len(running)} batch job{'s' * (len(running) != 1)}"
            if polling:
                raise Interrupted(f"rlhf-eval stopped on Ctrl-C while waiting for {jobs} (kept in {files}); run the "
                                  "same command again to collect them: nothing is submitted twice") from None
            raise Interrupted(f"rlhf-eval stopped on Ctrl-C while submitting, with {jobs} submitted (kept in {files}); "
                              "run the same command again to collect them and submit the rest: nothing is submitted "
                              "twice") from None
        answered: set[str] = set()
        for r in running:
            assert r.status is not None
            try:
                results = r.client.results(r.status, r.job.items) if r.status.output else {}
            except BatchAPIError as exc:
                if exc.status == 404:  # the results file is gone (the provider keeps files for a while only)
                    r.job.state = "results not found"
                    r.suite.save()
                    raise BatchError(f"batch job {r.job.id}: {exc}; its results are gone: it is marked so in "
                                     f"{shown_path(r.suite.path)}, run the same command again to submit its requests "
                                     "again") from None
                raise BatchError(f"batch job {r.job.id}: {exc}; nothing was recorded from it: run the same command "
                                 f"again to read its results again, or delete {shown_path(r.suite.path)} to submit "
                                 "the suite's requests again") from None
            answers = []
            for cid in r.job.items:
                if cid not in wanted:
                    continue
                why = f" ({r.status.error})" if r.status.error else ""
                result = results.get(cid) or ItemResult(error=f"job {r.job.id} ended {r.status.state}{why} without it")
                if result.body is None:
                    self.failed.setdefault(cid, result.error or "no answer")
                    continue
                leaked = find_secret(result.body.decode("utf-8", "replace"))
                if leaked:
                    raise BatchError(f"the results of batch job {r.job.id} contain {leaked}; nothing was recorded "
                                     "from them (report this: a secret reached a request or response; record the suite "
                                     f"online, or delete {shown_path(r.suite.path)} to submit it again)")
                answers.append((cid, result.status, r.status.content_type, result.body))
                answered.add(cid)
            del results
            ANSWERS.install(answers)  # to disk, job by job: all of them would not fit in memory
        for cid in answered & self.failed.keys():  # failed in one job, answered by a later one
            del self.failed[cid]
        if self.failed:
            first = next(iter(self.failed.values()))
            self.settings.say(f"rlhf-eval: batch: {len(self.failed)} of {len(wanted)} requests got no answer from "
                              f"the batch (first: {first}); they are sent online")

    def _submit(self, suite: str, pending: list[Pending], started: list[_Running]) -> None:
        """Add to `started` the jobs that hold `pending`: those remembered for the suite that still
        may answer, and new ones for the requests none of them holds (each saved and added the
        moment it is created, so that a Ctrl-C between two chunks names every job kept)."""
        jobs = SuiteJobs.load(self.cassette_dir, suite)
        self.suites.append(jobs)
        first = pending[0]
        server = redact_url(first.server)
        covered = {cid for job in jobs.jobs if job.state in USABLE and job.server == server for cid in job.items}
        running = [_Running(jobs, job, _client(first, self.settings)) for job in jobs.jobs
                   if job.state in USABLE and job.server == server and set(job.items) & {p.custom_id for p in pending}]
        started += running
        todo = [p for p in pending if p.custom_id not in covered]
        by_target: dict[str, list[Pending]] = {}
        for p in todo:
            by_target.setdefault(p.target, []).append(p)
        self._refuse_secrets(suite, todo)  # all of them before the first job: nothing half submitted
        for target, items in by_target.items():
            client = _client(items[0], self.settings)
            for chunk in _chunks(items, self.settings):
                name = f"rlhf-eval-{suite}-{len(jobs.jobs) + 1}"
                with _ctrl_c_after(self.settings.say):  # from create to saved: a Ctrl-C would lose a paid job
                    job_id, where = client.submit(target, [(p.custom_id, p.body) for p in chunk], name)
                    job = Job(job_id, first.provider, server, target, [p.custom_id for p in chunk], where, _now())
                    jobs.jobs.append(job)
                    jobs.save()
                    running.append(_Running(jobs, job, client))
                    started.append(running[-1])
        resumed = len(running) - sum(len(list(_chunks(v, self.settings))) for v in by_target.values())
        self.settings.say(f"rlhf-eval: batch {suite}: {len(pending)} requests; "
                          f"{len(running) - resumed} job{'s' * (len(running) - resumed != 1)} submitted"
                          + (f", {resumed} resumed from {shown_path(jobs.path)}" if resumed else ""))

    @staticmethod
    def _refuse_secrets(suite: str, chunk: list[Pending]) -> None:
        for p in chunk:
            leaked = find_secret(p.body.decode("utf-8", "replace"))
            if leaked:
                raise BatchError(f"suite {suite!r}: a request would upload {leaked} to the batch API; nothing was "
                                 "submitted (a prompt or setting holds a secret)")

    def _poll(self, running: list[_Running]) -> None:
        s = self.settings
        started = s.clock()
        interval = s.poll_interval
        while True:
            for r in running:
                if r.status is None or not r.status.done:
                    try:
                        r.status = r.client.status(r.job.id, len(r.job.items))
                    except BatchAPIError as exc:
                        if exc.status == 404:  # gone at the provider (deleted, or past its retention)
                            r.job.state = "not found"
                            r.suite.save()
                            raise BatchError(f"batch job {r.job.id} is unknown to {r.job.server} (404); it is "
                                             f"marked so in {shown_path(r.suite.path)}: run the same command again "
                                             "to submit its requests again") from None
                        if not exc.retryable:
                            raise
                        s.say(f"rlhf-eval: batch: could not read job {r.job.id} ({exc}); asking again at the next poll")
                        continue
                    if (r.status.state, r.status.finished) != (r.job.state, r.job.finished):
                        r.job.state, r.job.finished = r.status.state, r.status.finished
                        r.suite.save()
            s.say(_progress_line(running, s.clock() - started))
            if running and all(r.status is not None and r.status.done for r in running):
                return
            s.sleep(interval)
            interval = min(interval * s.backoff, s.max_poll_interval)

    def release(self) -> None:
        """The run is over or stopped: requests are no longer answered from the batch."""
        ANSWERS.clear()

    def unused_line(self) -> str | None:
        """When some batch answers were never asked for by the end of the run: the one line saying so."""
        unused = ANSWERS.unused()
        if not unused:
            return None
        were = "were" if unused != 1 else "was"
        return (f"rlhf-eval: batch: {unused} answer{'s' * (unused != 1)} from the batch {were} not asked for "
                "(questions that did not run, or a pytest_rlhf_eval_backends hook whose sampler sends other requests "
                "than the suite's: those went online)")

    def finish(self) -> None:
        """The run asked for every question: a suite whose questions all have their cassettes is
        done with its jobs (a later run with mode all records afresh rather than reusing them); a
        suite with a question left (its online retry failed, pytest -x stopped the run) keeps them,
        so the next run collects them again instead of paying twice."""
        line = self.unused_line()
        if line:
            self.settings.say(line)
        self.release()
        for jobs in self.suites:
            if all(path.is_file() for path in self.cassettes.get(jobs.suite, ())):
                with contextlib.suppress(OSError):
                    jobs.path.unlink()
                with contextlib.suppress(OSError):  # the folder too, once no suite has jobs left in it
                    jobs.path.parent.rmdir()


def _progress_line(running: list[_Running], elapsed: float) -> str:
    states: dict[str, int] = {}
    for r in running:
        state = r.status.state if r.status else "?"
        states[state] = states.get(state, 0) + 1
    total = sum(len(r.job.items) for r in running)
    known = [r for r in running if r.status is not None and r.status.finished is not None]
    done = sum((r.status.finished or 0) for r in known if r.status is not None)
    eta = "ETA unknown"
    if all(r.status is not None and r.status.done for r in running):
        eta = "done"
    elif done and len(known) == len(running):
        eta = f"ETA {_duration(elapsed * (total - done) / done)}"
    shown = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    return (f"rlhf-eval: batch: {len(running)} job{'s' * (len(running) != 1)} ({shown}); "
            f"{done if known else '?'}/{total} requests answered; {_duration(elapsed)} elapsed, {eta}")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def record_by_batch(questions: Iterable[tuple[Suite, Question]], cassette_dir: Path, mode: str,
                    settings: BatchSettings | None = None) -> BatchRecording:
    """Steps 1 and 2 for `questions` (those a recording in `mode` would sample); their answers are
    installed for step 3 until the returned recording's `release` or `finish`. Raises BatchError
    (one line) for a suite that cannot be batched, a job that cannot be created; `Interrupted`
    on Ctrl-C while waiting (the jobs are kept for the next run)."""
    recording = BatchRecording(cassette_dir, mode, settings)
    try:
        recording.collect(questions)
    except BaseException:
        recording.release()
        raise
    return recording


RECORD_VIA = ("online", "batch")
__all__ = ["BatchError", "BatchRecording", "BatchSettings", "RECORD_VIA", "record_by_batch", "state_path"]
