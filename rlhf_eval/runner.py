"""Running suites: the one engine behind `pytest suites/` and `run_suites`.

A `Run` owns everything between the questions and the report: the request policy, each suite's
backends, prefetching while recording, sampling through the cassettes, scoring, gathering the
results, building the report, comparing it with a baseline and writing the outputs. The pytest
plugin adapts it to items and hooks (as syrupy's hooks call its snapshot session); `run_suites`
drives it in a plain loop. Both give the same report for the same suites and cassettes.

    from rlhf_eval import run_suites
    report = run_suites(["suites/"], record_mode="none", report_json="report.json")
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import os
import signal
import shlex
import tempfile
import threading
import time
from concurrent.futures import Future, wait as futures_wait
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, cast

from .atomic import unwritable_reason
from .backends import CheckedSampler, CheckedScorer, credentials_problem, guard, record_env_hint
from .credentials import SecretInOutput, watch_settings, write_problem, write_without_secrets
from .discovery import DEFAULT_SUITE_FILES, suite_files
from .evaluate import Backends, QuestionResult, error_result, sample_question, score_question
from .paths import shown_path
from .provenance import provenance
from .record_modes import RECORD_MODES
from .registry import suggest
from .recording import CassetteProblem, cassette_path, hold_patch, release_patch
from .report import (Report, ReportError, build_report, build_streamed_report, load_report, report_question,
                     suite_settings, summary_lines)
from .report_model import Question as ReportQuestion, ShardSpec
from .sampling import SamplingError
from .spool import QuestionSpool
from .suite import Question, Suite, SuiteError, load_suite
from .throttle import DaemonPool, RequestPolicy, RetryPolicy
from .types import Trace
from .verify import VerifierError

# How long an interrupted run waits for the questions still running: one whose last answer is
# arriving writes its cassette; a long generation is abandoned (its question then writes nothing).
INTERRUPT_GRACE = 1.0
# A run of at most this many questions builds its report in memory (about 60 KB a question of k = 8);
# a larger one leaves the questions in its spool on disk and reads them one at a time.
IN_MEMORY_QUESTIONS = 1000

Key = tuple[str, str]  # (suite file, question id): one question of a run
Rerecord = Callable[[Suite, Question, str], str]
MakeBackends = Callable[[Suite, bool, RequestPolicy], "Backends | None"]


class RunError(ValueError):
    """A setting or a place on disk that stops a run before anything is sampled; one line. Raised
    after the run for outputs that could not be written (one line each): `report` is then the run's."""

    report: Report | None = None


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI timeout, `kill`), raised in the main thread so it stops the run as Ctrl-C does."""


@dataclass
class RunOptions:
    """How a run samples and what it writes. Each field is one `--rlhf-...` option of the plugin.

    Paths are as given (relative to the working directory). `workers` is how many processes share
    `concurrency` and `rate_limit_rpm` (pytest-xdist's workers): each gets its share."""

    cassette_dir: Path = Path("cassettes")
    record_mode: str = "none"
    concurrency: int = 8  # requests in flight while recording, across traces and questions
    rate_limit_rpm: float | None = None
    retries: int = 5
    retry_timeout: float = 600.0  # seconds
    retry_delay: float = 1.0  # seconds before the first retry when the API does not say
    workers: int = 1
    report_json: Path | None = None
    html: Path | None = None
    export: Path | None = None  # TRL-ready datasets under export/<suite>/
    export_pass_rate: Any = None  # keep questions whose pass rate is in this band ("0.2:0.8", (0.2, 0.8))
    export_nonzero_spread: bool = False  # keep only questions whose rewards differ
    export_format: str = "jsonl"  # or "parquet" (needs `datasets`)
    save: Path | None = None  # also write the JSON report here, as a baseline
    save_name: str | None = None  # how the baseline is named in messages (default: the file's stem)
    baseline: Path | None = None  # compare with this report
    baseline_name: str | None = None
    fail_rules: Sequence[str] = ()  # METRIC:DELTA regressions that fail the run
    # run only shard I of N of the questions ("I/N" or a rlhf_eval.shard.Shard; rlhf_eval.shard says
    # which): the report records it, and suite thresholds and regressions are judged on the merge
    shard: Any = None
    # how a recording sends its requests: "online" (one by one) or "batch" (the providers' batch APIs,
    # rlhf_eval.batch); `batch` may hold a rlhf_eval.batch.BatchSettings (polling, chunking, progress)
    record_via: str = "online"
    batch: Any = None

    def __post_init__(self) -> None:
        """Raises RunError (one line) for a setting of the wrong kind or out of range."""
        if self.record_mode not in RECORD_MODES:
            raise RunError(f"record mode {self.record_mode!r}; expected one of {', '.join(RECORD_MODES)}")
        if self.record_via not in ("online", "batch"):
            raise RunError(f"record_via = {self.record_via!r}: expected online or batch")
        for name in ("cassette_dir", "report_json", "html", "export", "save", "baseline"):
            value = getattr(self, name)
            if value is None and name != "cassette_dir":
                continue
            if not isinstance(value, (str, os.PathLike)) or not str(value):
                raise RunError(f"{name} = {value!r}: expected a path")
            setattr(self, name, Path(value))
        for name, least in (("concurrency", 1), ("retries", 0), ("workers", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise RunError(f"{name} = {value!r}: expected a whole number, at least {least}")
        for name, positive in (("rate_limit_rpm", True), ("retry_timeout", False), ("retry_delay", False)):
            value = getattr(self, name)
            if value is None and name == "rate_limit_rpm":
                continue
            if (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
                    or value < 0 or (positive and value == 0)):
                raise RunError(f"{name} = {value!r}: expected a {'positive' if positive else 'non-negative'} "
                               "number of " + ("requests a minute" if name == "rate_limit_rpm" else "seconds"))
        if isinstance(self.fail_rules, str):  # one rule, not its characters
            self.fail_rules = (self.fail_rules,)
        if self.shard is not None:
            from .shard import Shard

            try:
                self.shard = Shard.of(self.shard)
            except ValueError as exc:
                raise RunError(f"shard = {self.shard!r}: {exc}") from None
        from .export import ExportFilter, check_format

        try:
            ExportFilter.of(self.export_pass_rate, self.export_nonzero_spread)
            check_format(self.export_format)
        except ValueError as exc:
            raise RunError(str(exc)) from None


def request_policy(options: RunOptions) -> RequestPolicy:
    """One policy per process, its share of the concurrency and rate when `workers` share them."""
    # A replay never waits on the network: it is pure CPU under one GIL, where a thread pool only
    # adds hand-offs and contention (it made replay ~2x slower). Concurrency is for recording.
    concurrency = options.concurrency if options.record_mode != "none" else 1
    return RequestPolicy(
        concurrency=max(1, concurrency // options.workers),
        rate_limit_rpm=options.rate_limit_rpm / options.workers if options.rate_limit_rpm else None,
        retry=RetryPolicy(attempts=1 + max(0, options.retries), max_total=options.retry_timeout,
                          initial_delay=max(0.0, options.retry_delay)),
    )


def pytest_command(suite: Suite, question: Question, mode: str, cassette_dir: str | Path | None = None,
                   nodeid: str | None = None) -> str:
    """The command that (re-)records one question (`nodeid`: its pytest node id, by default
    `<suite file>::<question id>`), with the key it needs when none is set."""
    parts = ["pytest", nodeid or f"{shown_path(suite.path)}::{question.id}", f"--rlhf-record-mode={mode}"]
    if cassette_dir is not None:
        parts.append(f"--rlhf-cassette-dir={cassette_dir}")
    return record_env_hint(suite.spec.model) + " ".join(shlex.quote(p) for p in parts)


@dataclass
class Outcome:
    """One question's result: `result` (a report question) always; `scored` when it was scored,
    `error` (one line) when it could not be."""

    settings: dict[str, Any]  # its suite's settings, as the report holds them
    result: dict[str, Any]
    scored: QuestionResult | None = None
    error: str | None = None


class Prefetcher:
    """While recording, samples the questions ahead of the one being run, so requests of different
    questions overlap (each question still writes only its own cassette); the runner then only
    collects their traces, in its order.

    Prefetching stays within a row of consecutive questions, started by the row's first question
    asked for: a test that runs between two rows (any other test of a pytest session) then runs
    with no question recording in the background, and so without vcrpy's patch installed."""

    def __init__(self, rows: list[list[tuple[Suite, Question]]], workers: int,
                 sample: Callable[[Suite, Question], list[Trace]]) -> None:
        self._pool = DaemonPool(workers, "rlhf-eval-question")
        self._sample = sample
        self._rows = {_key(s, q): row for row in rows for s, q in row}
        self._futures: dict[Key, Future] = {}

    def result(self, suite: Suite, question: Question) -> list[Trace]:
        row = self._rows.get(_key(suite, question))
        if row is not None:  # the first question of its row to run
            for s, q in row:
                del self._rows[_key(s, q)]
                self._futures[_key(s, q)] = self._pool.submit(self._sample, s, q)
        future = self._futures.pop(_key(suite, question), None)
        return future.result() if future else self._sample(suite, question)

    def in_flight(self) -> int:
        """How many questions are sampling now (their requests sent or about to be)."""
        return sum(f.running() for f in self._futures.values())

    def close(self) -> int:
        """The run ended, or stopped early without a signal (-x, --maxfail, a session stop): no
        question starts any more; a started one finishes its cassette (its requests were paid for).
        Returns how many were still running and then finished without an error."""
        running = [f for f in self._futures.values() if f.running()]
        self._pool.shutdown(wait=True, cancel_futures=True)
        return sum(not f.cancelled() and f.exception() is None for f in running)

    def abandon(self, grace: float) -> None:
        """The run was interrupted: questions not started never will be; started ones get `grace`
        seconds to finish (one whose last answer is arriving still writes its cassette)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        futures_wait([f for f in self._futures.values() if not f.done()], timeout=grace)


def _key(suite: Suite, question: Question) -> Key:
    return str(suite.path), question.id


class Run:
    """One run of questions: call `load_baseline`, `start`, then `evaluate` each question (and
    `add` its outcome where results are gathered), then `close` and `finish`.
    `command_line` is what the report's provenance names as the command (default `sys.argv`).

    Under pytest-xdist the workers evaluate and the controller adds and finishes; any one process
    may do all of it. `rerecord_command(suite, question, mode)` words the command a message offers
    to (re-)record a question; `make_backends(suite, replay, policy)` may supply a suite's
    `Backends` (None: built from the suite's `model:` as usual)."""

    def __init__(self, options: RunOptions | None = None, *, rerecord_command: Rerecord | None = None,
                 make_backends: MakeBackends | None = None, command_line: Sequence[str] | None = None) -> None:
        self.options = options or RunOptions()
        self.command_line = command_line  # for the report's provenance (None: sys.argv)
        self._rerecord = rerecord_command or (lambda s, q, mode: pytest_command(s, q, mode))
        self._make_backends = make_backends
        self.policy = request_policy(self.options)
        self.prefetch: Prefetcher | None = None
        self._backends: dict[str, Backends] = {}
        self._backends_lock = threading.Lock()  # prefetch threads ask too
        self._settings: dict[str, dict] = {}  # suite file -> its settings, as the report holds them
        self._patch_held = False
        self._frozen = False
        self._spool: QuestionSpool | None = None  # the questions gathered, on disk (rlhf_eval.spool)
        # a report of at most this many questions holds them in memory (`report.suites[].questions`
        # lists); a larger one reads them from the spool as it is shown and written
        self.in_memory_questions = IN_MEMORY_QUESTIONS
        self.suites: dict[str, dict] = {}  # suite name -> its settings
        # suite name -> how many questions its file has: a shard's report records them, so the merge
        # can tell whether the shard ran every question dealt to it (whoever runs the suites sets them)
        self.suite_sizes: dict[str, int] = {}
        self.report: Report | None = None
        self.baseline: Report | None = None
        self.baseline_name = self.options.baseline_name or (self.options.baseline or Path()).stem
        self.fail_rules: dict[str, float] = {}
        self.written: list[str] = []  # files written, for the summary
        self.export_line: str | None = None  # what the export wrote, in one line
        self.problems: list[str] = []  # outputs that could not be written, one line each
        self.batch: Any = None  # a rlhf_eval.batch.BatchRecording while recording by batch
        # questions sampling ahead that were still running when the run was closed, and finished
        self.finished_ahead = 0
        self.stop_note: str | None = None  # why the run stopped early and what it kept (`stopped_early_line`)
        self.started_at: float | None = None  # time.time() when sampling started (`start`)

    @property
    def recording(self) -> bool:
        return self.options.record_mode != "none"

    # ---------------------------------------------------------------------------- before sampling

    def load_baseline(self) -> None:
        """Read the baseline and the regression rules; raises RunError (one line) when either is bad."""
        from .compare import parse_fail_rules

        o = self.options
        try:
            self.fail_rules = parse_fail_rules(list(o.fail_rules))
            if o.baseline is not None:
                self.baseline = load_report(o.baseline, "baseline report", "save one with --rlhf-save NAME")
        except (ValueError, ReportError) as exc:
            raise RunError(str(exc)) from None
        if self.fail_rules and o.baseline is None:
            raise RunError("--rlhf-compare-fail needs --rlhf-compare NAME")

    def unwritable_cassette_folder(self, questions: Iterable[tuple[Suite, Question]]) -> str | None:
        """When recording: why a folder a cassette will be written to is not writable (a read-only
        disk, a file in the way), in one line; None when all are (or when replaying)."""
        if not self.recording:
            return None
        root = self.options.cassette_dir
        folders = set()
        for suite, question in questions:
            path = cassette_path(root, suite.name, question.id)
            if self.options.record_mode != "once" or not path.is_file():
                folders.add(path.parent)
        for folder in ([root] if folders else []) + sorted(folders):  # the root first: its fault is every suite's
            reason = unwritable_reason(folder)
            if reason:
                return (f"cannot record cassettes into {shown_path(folder)} ({reason}); no request was sent: "
                        "choose a writable folder with --rlhf-cassette-dir=DIR")
        return None

    def start(self, rows: list[list[tuple[Suite, Question]]], *, prefetch: bool = True) -> None:
        """When recording `rows` (runs of consecutive questions) with `prefetch`, sample ahead
        within each row. Recording by batch, first sends every request through the batch API
        (rlhf_eval.batch; RunError for what stops it, `Interrupted` on Ctrl-C while it waits)."""
        self.started_at = time.time()
        if self.recording and self.options.record_via == "batch":
            from .batch import record_by_batch

            try:
                self.batch = record_by_batch([q for row in rows for q in row], self.options.cassette_dir,
                                             self.options.record_mode, self.options.batch)
            except SamplingError as exc:
                raise RunError(str(exc)) from None
        # What is loaded by now (the suites, the SDKs, vcrpy) lives to the end of the run: the
        # collector need not walk it again on every collection of the oldest generation (about a
        # twentieth of a replay's CPU). A host process that froze objects of its own (a pre-fork
        # server does) keeps them frozen: gc.unfreeze cannot tell the run's from the host's, so
        # then the run freezes nothing and `unfreeze` leaves the host's as they are.
        if gc.get_freeze_count() == 0:
            gc.freeze()
            self._frozen = True
        if (prefetch and self.recording and sum(map(len, rows)) > 1 and self.policy.concurrency > 1):
            self.prefetch = Prefetcher(rows, self.policy.concurrency, self.sample)

    # ------------------------------------------------------------------------------- per question

    def backends(self, suite: Suite) -> Backends:
        with self._backends_lock:
            key = str(suite.path)
            if key not in self._backends:
                supplied = self._supplied_backends(suite, self._make_backends) if self._make_backends else None
                self._backends[key] = supplied or Backends.for_suite(suite, replay=not self.recording,
                                                                     policy=self.policy)
            return self._backends[key]

    def _supplied_backends(self, suite: Suite, make: MakeBackends) -> Backends | None:
        """The backends `make_backends` gives for `suite` (None: the usual ones), held to the same
        contracts as a team's provider: what it raises, or its samplers and scorers do wrong, is one
        line for each question."""
        who = "the backends hook (pytest_rlhf_eval_backends)"
        supplied = guard(who, "raised", lambda: make(suite, not self.recording, self.policy))
        if supplied is None:
            return None
        if not isinstance(supplied, Backends):
            raise SamplingError(f"{who} returned {type(supplied).__name__} for suite {suite.name!r}, "
                                "not rlhf_eval.Backends or None")
        return Backends(
            sampler=CheckedSampler(f"the sampler from {who}", supplied.sampler),
            policy_scorer=(CheckedScorer(f"the policy scorer from {who}", supplied.policy_scorer)
                           if supplied.policy_scorer is not None else None),
            reference=(CheckedScorer(f"the reference scorer from {who}", supplied.reference)
                       if supplied.reference is not None else None))

    def sample(self, suite: Suite, question: Question) -> list[Trace]:
        """The question's traces, through its cassette (raises CassetteProblem / SamplingError)."""
        mode = self.options.record_mode
        # Mode once replays a question whose cassette exists: that needs no key.
        if self.recording and not (mode == "once" and cassette_path(self.options.cassette_dir, suite.name,
                                                                    question.id).is_file()):
            problem = credentials_problem(suite.spec.model)
            if problem:
                raise SamplingError(problem)
        return sample_question(suite, question, self.backends(suite), cassette_dir=self.options.cassette_dir,
                               record_mode=mode, rerecord_hint=self._rerecord(suite, question,
                                                                              "once" if mode == "none" else mode))

    def evaluate(self, suite: Suite, question: Question) -> Outcome:
        """Sample (or collect the prefetched traces of) one question and score it. A cassette, API
        or verifier problem is the outcome's one-line `error`; anything else is raised."""
        settings = self._settings.get(str(suite.path))
        if settings is None:
            settings = self._settings[str(suite.path)] = suite_settings(suite)
        try:
            traces = self.prefetch.result(suite, question) if self.prefetch else self.sample(suite, question)
            scored = score_question(suite, question, traces)
        except CassetteProblem as exc:
            error = str(exc)
            if "stale" in error:  # `once` would keep the stale cassette
                error = error.replace("--rlhf-record-mode=once", "--rlhf-record-mode=rewrite")
        except (SamplingError, VerifierError) as exc:  # the API, or a team's verifier on one answer
            error = str(exc)
        else:
            return Outcome(settings, scored.to_dict(), scored=scored)
        return Outcome(settings, error_result(suite, question, error), error=error)

    def add(self, settings: dict[str, Any], result: dict[str, Any] | ReportQuestion) -> None:
        """Gather one question's result (an `Outcome`'s, possibly from another process; or a
        report's question, as rlhf_eval.merge gathers the shards'). It is written to the run's
        spool (a temporary file) at once: memory does not grow with the questions. Raises
        ReportError for a result that does not fit the report (a bug); RunError (one line) when no
        temporary file can be made, OSError when the disk fills."""
        question = result if isinstance(result, ReportQuestion) else report_question(result)
        spool = self.open_spool()
        try:
            spool.add(question)
        except OSError as exc:  # the disk filled (or went read-only) under the run
            raise RunError(_spool_problem(exc, "free space there or set TMPDIR to a folder with room")) from None
        self.suites.setdefault(settings["name"], settings)

    def open_spool(self) -> QuestionSpool:
        """The run's spool (rlhf_eval.spool), made on first use. Call it before sampling anything,
        so a temporary folder that cannot take the file stops the run before a request is paid for.
        Raises RunError (one line) when no temporary file can be made."""
        if self._spool is None:
            try:
                self._spool = QuestionSpool()
            except OSError as exc:
                raise RunError(_spool_problem(exc, "set TMPDIR to a writable folder")) from None
        return self._spool

    @property
    def results(self) -> int:
        """How many question results were gathered (`add`)."""
        return len(self._spool) if self._spool is not None else 0

    # ------------------------------------------------------------------------ vcrpy's patch, stops

    def hold_patch(self) -> None:
        """Keep vcrpy's patch installed across consecutive questions (one install per row)."""
        if not self._patch_held:
            hold_patch()
            self._patch_held = True

    def release_patch(self) -> None:
        if self._patch_held:
            self._patch_held = False
            release_patch()

    def stop(self, grace: float = 0.0) -> None:
        """No request is sent or retried any more; questions not started are dropped; started ones
        get `grace` seconds to write their cassettes."""
        self.policy.stop()
        if self.prefetch is not None:
            self.prefetch.abandon(grace)
        if self.batch is not None:
            self.batch.release()

    def unfreeze(self) -> None:
        """Give what `start` froze back to the garbage collector, once the run and its outputs
        are over: some of it may be garbage by then. Until this, a full collection (pytest runs
        two as a session ends) does not walk the run's objects."""
        if self._frozen:
            self._frozen = False
            gc.unfreeze()

    @property
    def in_flight(self) -> int:
        """How many questions sampling ahead are running now (what `close` waits for)."""
        return self.prefetch.in_flight() if self.prefetch is not None else 0

    def close(self) -> None:
        """Every question was asked for, or the run ended early without a signal (-x, --maxfail, a
        session stop, its spool's disk full, an error): wait for the questions sampling ahead that
        had started, so every request paid for ends in a cassette; none starts any more. A Ctrl-C
        meanwhile (KeyboardInterrupt) cuts the wait short: then call `stop`."""
        if self.prefetch is not None:
            self.finished_ahead += self.prefetch.close()
        if self.batch is not None:
            self.batch.finish()

    def interrupted_line(self, questions: Iterable[tuple[Suite, Question]], cause: str) -> str | None:
        """What an interrupted recording left: complete cassettes kept, questions still to record
        (None when replaying or when the run had no question)."""
        return self._left_line(questions, f"stopped on {cause};")

    def stopped_early_line(self, questions: Iterable[tuple[Suite, Question]], why: str,
                           rerun: str = "run the same command again to record them") -> str | None:
        """What a recording that ended early without a signal (`why`: pytest's "stopping after 1
        failures", a plugin's stop) kept, after `close`: the complete cassettes, how many of them
        questions sampling ahead finished, the questions still to record and how (`rerun`). None
        when replaying or when the run had no question."""
        return self._left_line(questions, f"stopped early ({why});", rerun, self.finished_ahead)

    def _left_line(self, questions: Iterable[tuple[Suite, Question]], stopped: str,
                   rerun: str = "run the same command again to record them", ahead: int = 0) -> str | None:
        if not self.recording:
            return None
        root = self.options.cassette_dir
        paths = [cassette_path(root, s.name, q.id) for s, q in questions]
        if not paths:
            return None
        # written whole or not at all: any file is complete; re-recording (all, rewrite), a file of
        # before the run is not what it kept (it said "every question's cassette is complete")
        since = self.started_at if self.options.record_mode in ("all", "rewrite") else None
        kept = sum(_recorded_since(p, since) for p in paths)
        folders = {p.parent for p in paths}
        where = shown_path(folders.pop() if len(folders) == 1 else root) + "/"
        if kept == len(paths):
            return f"rlhf-eval {stopped} every question's cassette is complete under {where}"
        finished = f" ({ahead} finished by questions sampling ahead of the stop)" if ahead else ""
        return (f"rlhf-eval {stopped} kept {kept} complete cassette{'s' * (kept != 1)} under {where}{finished}, "
                f"{len(paths) - kept} question{'s' * (len(paths) - kept != 1)} not recorded — {rerun}")

    # -------------------------------------------------------------------------------- the report

    def finish(self, provenance_: dict[str, Any] | None = None) -> Report:
        """Build the report from the gathered results, compare it with the baseline, and write
        every output asked for (one that cannot be written is a line in `problems`). `provenance_`
        replaces the provenance of this process (rlhf_eval.merge gives the shards')."""
        from .compare import compare_reports, regressions

        spool = self._spool
        if spool is None:  # no result gathered (a shard dealt no question): no temporary file needed
            report = build_report([], self.suites)
        elif len(spool) <= self.in_memory_questions:
            report = build_report([q for name in spool.suites() for q in spool.questions(name)], self.suites)
            spool.close()
        else:
            report = build_streamed_report(spool, self.suites)
        self.report = report
        report.provenance = provenance_ or provenance(
            {name: s["path"] for name, s in self.suites.items() if s.get("path")}, self.command_line)
        if self.options.shard is not None:
            report.shard = ShardSpec.model_validate(
                {**self.options.shard.to_dict(), "suite_sizes": dict(sorted(self.suite_sizes.items()))})
        if self.baseline is not None:
            comparison = report.comparison = compare_reports(report, self.baseline, self.baseline_name)
            comparison.failures = regressions(comparison, self.fail_rules)
        self._write_outputs(report)
        if self._frozen:  # the results and the report live to `unfreeze` as well
            gc.freeze()
        return report

    @property
    def passed(self) -> bool:
        """No suite threshold failed, no significant regression, every output written. A shard's
        suite thresholds and regressions are over a part of each suite: the merged report judges them."""
        report = self.report
        if report is None or self.options.shard is not None:
            return not self.problems
        return not (any(s.threshold_failures for s in report.suites)
                    or (report.comparison is not None and report.comparison.failures) or self.problems)

    def summary(self) -> list[tuple[str, str]]:
        """The closing lines, each with its style: "title" and "section" (a separator line with
        the text), "text", or "fail" (shown red)."""
        report = self.report
        stopped = [("text", self.stop_note)] if self.stop_note else []
        if report is None:
            return stopped
        lines = summary_lines(report) + stopped
        if self.options.shard is not None:
            n = sum(len(s.questions) for s in report.suites)
            lines.append(("text", f"rlhf-eval: shard {self.options.shard}: {n} question{'s' * (n != 1)}; suite "
                                  "thresholds and regressions are judged on the shards' merged report "
                                  "(rlhf-eval merge), not on one shard"))
            short = self._short_of_dealt(report)
            if short:
                lines.append(("fail", short))
        lines += [("text", f"rlhf-eval: wrote {path}") for path in self.written]
        lines += [("text", self.export_line)] if self.export_line else []
        return lines + [("fail", line) for line in self.problems]

    def _short_of_dealt(self, report: Report) -> str | None:
        """A shard that did not run every question dealt to it (interrupted, -k, --lf): said at once,
        as `rlhf-eval merge` will refuse its report."""
        shard = self.options.shard
        held = {s.name: len(s.questions) for s in report.suites}
        for name, size in sorted(self.suite_sizes.items()):
            want = shard.dealt(name, size)
            if held.get(name, 0) < want:
                return (f"rlhf-eval: shard {shard} ran {held.get(name, 0)} of the {want} questions of suite {name} "
                        "dealt to it (interrupted by Ctrl-C or -x, or -k, --lf, --deselect): rlhf-eval merge "
                        "refuses this report; run the whole shard before merging")
        return None

    def _write_outputs(self, report: Report) -> None:
        o = self.options
        for settings in self.suites.values():  # under xdist, this process built no backend
            watch_settings(settings)
        # The JSON report and the baseline are the same text: serialized once (~0.7 s for 1,000 x 8),
        # unless the questions are on disk: then each file is written a question at a time.
        json_text = (report.to_json() if (o.report_json is not None or o.save is not None) and not report.streamed
                     else "")

        def json_file(path: Path) -> None:
            if report.streamed:
                report.dump(path)
            else:
                write_without_secrets(path, json_text)

        outputs: list[tuple[str, Path | None, Callable[[Path], None]]] = [
            ("the JSON report", o.report_json, json_file), ("the HTML report", o.html, partial(_write_html, report))]
        if o.save is not None:
            outputs.append((f"baseline {o.save_name or o.save.stem}", o.save, json_file))
        for label, path, write in outputs:
            if path is not None:
                self._write(label, path, partial(write, path))
        if o.export is not None:
            from .export import build_export

            try:
                export = build_export(report, o.export, pass_rate=o.export_pass_rate,
                                      nonzero_spread=o.export_nonzero_spread, format=o.export_format)
            except OSError as exc:  # a report read from disk gathers its rows in TMPDIR first
                problem = _spool_problem(exc, "set TMPDIR to a folder with room", "the export's rows")
                self.problems.append(f"rlhf-eval: {problem}; nothing was exported to {shown_path(o.export)}")
                return
            written, problems = len(self.written), len(self.problems)
            for f in export.files:
                if not self._write("the export", f.path, f.write):
                    break
            del self.written[written:]  # one line says what the export wrote, not one a file
            if len(self.problems) == problems:
                self.export_line = export.line()

    def _write(self, label: str, path: Path, write: Callable[[], None]) -> bool:
        """Run `write()`; False (after noting the one line that says why) if it failed for the disk.
        A file refused for a secret is noted too, but True: the next file may be fine."""
        try:
            write()
        except SecretInOutput as exc:
            self.problems.append(f"rlhf-eval: {write_problem(label, path, exc)} (find which answer or error holds "
                                 "it in the cassettes, and re-record them)")
            return True
        except OSError as exc:
            self.problems.append(f"rlhf-eval: {write_problem(label, path, exc)}")
            return False
        self.written.append(str(path))
        return True


def _spool_problem(exc: OSError, fix: str, what: str = "the run's question results") -> str:
    """The one line for a temporary file of `what` that could not be made or written (`exc`),
    ending with `fix`."""
    from .atomic import os_reason

    try:
        folder = tempfile.gettempdir()
    except OSError:  # none of TMPDIR, /tmp, /var/tmp, ... is usable: `exc` lists them
        folder = "the temporary folder"
    return f"cannot write {what} to a temporary file in {folder} ({os_reason(exc)}); {fix}"


def _write_html(report: Report, path: Path) -> None:
    from .html_report import write_html  # its import is not free, and most runs write no HTML

    write_html(report, path)


def check_unique_name(suite: Suite, seen: dict[str, Path], cassette_dir: Path) -> None:
    """Raise SuiteError when another suite of the run has `suite`'s name: the two would share (and
    overwrite) one cassette folder. `seen` maps the names met so far to their files."""
    first = seen.setdefault(suite.name, suite.path)
    if first != suite.path:
        from .yamlines import line_of, load_with_lines

        try:
            _, lines = load_with_lines(Path(suite.path).read_bytes().decode("utf-8-sig"))
            line = line_of(lines, ("suite",))
        except (OSError, ValueError):
            line = None
        folder = shown_path(Path(cassette_dir) / suite.name)
        raise SuiteError(suite.path, line, f"suite name {suite.name!r} is already used by {shown_path(first)}; each "
                                           f"suite needs its own name (it names the cassette folder {folder}/)")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """For the block's length, SIGTERM stops the run like Ctrl-C (raises `Terminated`). Only a
    process's main thread may handle signals; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Interrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C or SIGTERM; the message says what was kept and what is left."""


def run_suites(paths: Iterable[str | Path], *, record_mode: str = "none", cassette_dir: str | Path = "cassettes",
               rootdir: str | Path = ".", suite_patterns: Iterable[str] = DEFAULT_SUITE_FILES,
               backends: MakeBackends | None = None, **options: Any) -> Report:
    """Run suites without pytest, as `pytest PATHS` would: the same sampling, cassettes and report.

    Args:
        paths: suite files, or folders whose suite files (by `suite_patterns`, like ini
            `rlhf_suite_files`, relative to `rootdir`) are run.
        record_mode: as `--rlhf-record-mode`.
        cassette_dir: as `--rlhf-cassette-dir`.
        backends: `backends(suite, replay, policy)` may return a suite's `Backends` (None: built
            from its `model:`), as the plugin's `pytest_rlhf_eval_backends` hook does.
        **options: any other `RunOptions` field (report_json, html, export, export_pass_rate,
            export_nonzero_spread, export_format, save, baseline, fail_rules, concurrency,
            rate_limit_rpm, retries, shard: "I/N" runs only that shard of the questions, see
            rlhf_eval.shard, record_via: "batch" records through the providers' batch APIs, see
            rlhf_eval.batch, with batch: a rlhf_eval.batch.BatchSettings, ...).

    Returns the report (the `Report` `--rlhf-report-json` writes; `report.to_dict()` is that JSON).
    What pytest would fail: a suite's `failed` (a question failed, or a suite threshold: its
    `threshold_failures`; each question's `passed` and `error`) and, with a baseline, its
    `comparison.failures`. Raises
    SuiteError for a file that is not a valid suite; RunError for a bad setting, an unwritable
    cassette folder, or (after writing every other) an output that could not be written, one line
    each; `Interrupted` (a KeyboardInterrupt) on Ctrl-C or SIGTERM, keeping every complete cassette.
    """
    run = finished_run(paths, record_mode=record_mode, cassette_dir=cassette_dir, rootdir=rootdir,
                       suite_patterns=suite_patterns, backends=backends, **options)
    if run.problems:
        error = RunError("\n".join(run.problems))
        error.report = run.report
        raise error
    return cast(Report, run.report)


def finished_run(paths: Iterable[str | Path], *, record_mode: str = "none", cassette_dir: str | Path = "cassettes",
                 rootdir: str | Path = ".", suite_patterns: Iterable[str] = DEFAULT_SUITE_FILES,
                 backends: MakeBackends | None = None, **options: Any) -> Run:
    """`run_suites`, returning the finished `Run` instead of its report: `run.report`, the closing
    lines the plugin prints (`run.summary()`: the table, what was written, the export's line) and
    `run.problems` (outputs that could not be written, which run_suites raises as a RunError).
    Raises as run_suites does before anything ran."""
    known = {f.name for f in dataclasses.fields(RunOptions)} - {"record_mode", "cassette_dir"}
    for name in options:
        if name not in known:
            raise RunError(f"run_suites() has no option {name!r}{suggest(name, known)}")
    if isinstance(paths, (str, os.PathLike)):  # one path, not its characters
        paths = [paths]
    if isinstance(suite_patterns, str):
        suite_patterns = [suite_patterns]
    # RunOptions takes any path-like and checks it (a None or a number is one RunError line)
    run = Run(RunOptions(record_mode=record_mode, cassette_dir=cast(Path, cassette_dir), **options),
              rerecord_command=lambda s, q, mode: pytest_command(s, q, mode, cassette_dir),
              make_backends=backends)
    run.load_baseline()
    root = Path(rootdir).resolve()
    seen: dict[str, Path] = {}
    questions = []
    try:
        files = suite_files(paths, root, suite_patterns, run.options.cassette_dir)
    except FileNotFoundError as exc:
        raise RunError(str(exc)) from None
    if not files:
        raise RunError(f"no suite in {', '.join(map(str, paths)) or 'no paths'}: a folder's suite files are the YAML "
                       f"files matching {', '.join(suite_patterns)}")
    shard = run.options.shard
    for path in files:
        suite = load_suite(path)
        check_unique_name(suite, seen, run.options.cassette_dir)
        chosen = shard.selects(suite.name, [q.id for q in suite.questions]) if shard is not None else None
        if chosen:  # as the plugin: the suites this shard runs a question of
            run.suite_sizes[suite.name] = len(suite.questions)
        questions += [(suite, q) for q in suite.questions if chosen is None or q.id in chosen]
    problem = run.unwritable_cassette_folder(questions)
    if problem:
        raise RunError(problem)
    run.open_spool()  # a temporary folder that cannot take the results stops the run before any request
    run.start([questions])
    try:
        _run_questions(run, questions)
    finally:
        run.unfreeze()
    return run


def _run_questions(run: Run, questions: list[tuple[Suite, Question]]) -> Report:
    with sigterm_as_interrupt():
        try:
            run.hold_patch()
            for suite, question in questions:
                outcome = run.evaluate(suite, question)
                run.add(outcome.settings, outcome.result)
            run.close()  # a Ctrl-C while it waits for the questions sampling ahead stops at once too
        except KeyboardInterrupt as exc:
            raise _interrupted(run, questions, exc) from None
        except Exception:  # results can no longer be gathered (RunError: the spool's disk is full), or a
            try:  # bug: the questions sampling ahead were paid for, so they finish their cassettes
                run.close()
            except KeyboardInterrupt as exc:  # ... unless Ctrl-C says not to wait
                raise _interrupted(run, questions, exc) from None
            raise
        finally:
            run.stop(0)
            run.release_patch()
    return run.finish()


def _interrupted(run: Run, questions: list[tuple[Suite, Question]], exc: KeyboardInterrupt) -> Interrupted:
    """Stop an interrupted run now (the questions in flight get `INTERRUPT_GRACE`); what to raise."""
    cause = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
    with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C: stop waiting for requests
        run.stop(INTERRUPT_GRACE)
    return Interrupted(run.interrupted_line(questions, cause) or f"stopped on {cause}")


def _recorded_since(path: Path, since: float | None) -> bool:
    """Whether the cassette `path` exists (and was written at `since` or later, when given; a
    file's time lags the clock by up to a tick of the kernel's)."""
    try:
        return path.is_file() and (since is None or path.stat().st_mtime >= since - 0.1)
    except OSError:
        return False


__all__ = ["Interrupted", "Outcome", "Prefetcher", "Run", "RunError", "RunOptions", "run_suites"]
