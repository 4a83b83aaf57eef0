"""pytest glue for rlhf-eval: suite files become test files, questions become test items.

Follows "Working with non-python tests": `pytest_collect_file` → `SuiteFile` → `QuestionItem`.
Per-question results travel as `item.user_properties` (plain values), are gathered in
`pytest_runtest_logreport`, and the report is built once on the process that saw every report
(the xdist controller, or the only process), so it is the same under `pytest -n auto`.
"""
from __future__ import annotations

import atexit
import contextlib
import fnmatch
import gc
import os
import shlex
import signal
import threading
import time
from concurrent.futures import Future, wait as futures_wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from rlhf_eval.atomic import unwritable_reason
from rlhf_eval.credentials import SecretInOutput, watch_settings, write_problem, write_without_secrets
from rlhf_eval.paths import shown_path
from rlhf_eval.record_modes import RECORD_MODES

# The engine (suites, the recorder and vcrpy, the SDKs, numpy) is imported by the hooks that need
# it, when a run has suites: the plugin loads into every pytest run of an environment that has
# rlhf-eval installed, and a run with no suite should not pay a second for it.
if TYPE_CHECKING:
    from rlhf_eval.evaluate import Backends
    from rlhf_eval.report_model import Report
    from rlhf_eval.throttle import RequestPolicy

RESULT_KEY = "rlhf_eval"  # user_properties key of a question's result dict
SETTINGS_KEY = "rlhf_eval_suite"  # user_properties key of its suite's settings
SUITE_SUFFIXES = (".yaml", ".yml")
# ini rlhf_suite_files: which files are suites, by name (pytest's way with python_files)
DEFAULT_SUITE_FILES = ["suites/*.yaml", "suites/*.yml", "*.suite.yaml", "*.suite.yml"]


class RunState:
    def __init__(self) -> None:
        self.policy: RequestPolicy | None = None
        self.prefetch: Prefetcher | None = None
        self.backends_lock = threading.Lock()
        self.questions: list[dict] = []
        self.suites: dict[str, dict] = {}
        self.backends: dict[str, Any] = {}  # suite path -> Backends
        self.report: Report | None = None
        self.baseline: Report | None = None
        self.fail_rules: dict[str, float] = {}
        self.written: list[str] = []  # files this run wrote, for the summary
        self.patch_held = False  # vcrpy's patch kept installed across consecutive questions


state_key = pytest.StashKey[RunState]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rlhf-eval", "rlhf-eval: preference-signal evals from YAML suites")
    group.addoption("--rlhf-record-mode", choices=RECORD_MODES, default=None,
                    help="none (default: replay only, never touch the network) | once (record missing "
                         "cassettes) | new_episodes | all | rewrite (re-record from scratch)")
    group.addoption("--rlhf-cassette-dir", default=None,
                    help="where cassettes live (default: <rootdir>/cassettes, or ini rlhf_cassette_dir)")
    group.addoption("--rlhf-report-json", default=None, metavar="PATH",
                    help="write the report, with every trace, as JSON to PATH")
    group.addoption("--rlhf-concurrency", type=int, default=8, metavar="N",
                    help="while recording: requests in flight at once, across the traces of a question and "
                         "across questions (default 8; under xdist, shared among the workers)")
    group.addoption("--rlhf-rate-limit", type=float, default=None, metavar="RPM",
                    help="while recording: at most RPM requests a minute (under xdist, shared among the workers)")
    group.addoption("--rlhf-retries", type=int, default=5, metavar="N",
                    help="retries of a request that got 429, 5xx or a timeout, with exponential backoff and "
                         "jitter, honouring the API's RetryInfo (default 5)")
    group.addoption("--rlhf-retry-timeout", type=float, default=600.0, metavar="SECONDS",
                    help="give up retrying a request after this long (default 600)")
    group.addoption("--rlhf-retry-delay", type=float, default=1.0, metavar="SECONDS",
                    help="wait before the first retry when the API does not say how long to wait; doubled each "
                         "retry, up to 60 s (default 1)")
    group.addoption("--rlhf-save", default=None, metavar="NAME",
                    help="save this run's JSON report as baseline NAME (in the baseline directory)")
    group.addoption("--rlhf-compare", default=None, metavar="NAME",
                    help="compare with baseline NAME (or a report .json path): deltas, significance, drift")
    group.addoption("--rlhf-compare-fail", action="append", default=[], metavar="METRIC:DELTA",
                    help="with --rlhf-compare: fail when METRIC got worse by more than DELTA and the change is "
                         "significant, e.g. accuracy:0.05 (repeatable)")
    group.addoption("--rlhf-baseline-dir", default=None,
                    help="where baselines live (default: <rootdir>/baselines, or ini rlhf_baseline_dir)")
    group.addoption("--rlhf-export", default=None, metavar="DIR",
                    help="write TRL-ready datasets (DPO pairs, GRPO prompts and groups, SFT) under DIR/<suite>/")
    group.addoption("--rlhf-html", default=None, metavar="PATH",
                    help="write a self-contained HTML report (tables, every trace, plots) to PATH")
    parser.addini("rlhf_cassette_dir", "cassette directory, relative to the rootdir", default="cassettes")
    parser.addini("rlhf_baseline_dir", "baseline directory, relative to the rootdir", default="baselines")
    parser.addini("rlhf_record_mode", "default record mode", default="none")
    parser.addini("rlhf_suite_files", "glob patterns of suite files, as python_files: a pattern without / matches "
                  "the file name, one with / the end of the path from the rootdir", type="args",
                  default=DEFAULT_SUITE_FILES)


def request_policy(config: pytest.Config) -> RequestPolicy:
    """One policy per process; under xdist each worker gets its share of the concurrency and rate."""
    from rlhf_eval.throttle import RequestPolicy, RetryPolicy

    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    rate = config.getoption("--rlhf-rate-limit")
    # A replay never waits on the network: it is pure CPU under one GIL, where a thread pool only
    # adds hand-offs and contention (it made replay ~2x slower). Concurrency is for recording.
    concurrency = config.getoption("--rlhf-concurrency") if record_mode(config) != "none" else 1
    return RequestPolicy(
        concurrency=max(1, concurrency // workers),
        rate_limit_rpm=rate / workers if rate else None,
        retry=RetryPolicy(attempts=1 + max(0, config.getoption("--rlhf-retries")),
                          max_total=config.getoption("--rlhf-retry-timeout"),
                          initial_delay=max(0.0, config.getoption("--rlhf-retry-delay"))),
    )


def pytest_configure(config: pytest.Config) -> None:
    mode = record_mode(config)
    if mode not in RECORD_MODES:
        raise pytest.UsageError(f"rlhf_record_mode = {mode!r}; expected one of {', '.join(RECORD_MODES)}")
    config.stash[state_key] = state = RunState()
    if mode != "none" and not _distributed(config):
        config.pluginmanager.register(Progress(config), "rlhf-eval-progress")
    if _is_xdist_worker(config):
        return
    config.pluginmanager.register(ReportPlugin(config), "rlhf-eval-report")
    name, rules = config.getoption("--rlhf-compare"), config.getoption("--rlhf-compare-fail")
    if not (name or rules):
        return
    from rlhf_eval.compare import parse_fail_rules
    from rlhf_eval.report import load_report

    try:  # bad comparison settings stop the run before anything is sampled
        state.fail_rules = parse_fail_rules(rules)
        if name:
            state.baseline = load_report(baseline_path(config, name), "baseline report",
                                         "save one with --rlhf-save NAME")
    except ValueError as exc:  # a bad rule, or a ReportError
        raise pytest.UsageError(str(exc)) from None
    if state.fail_rules and not name:
        raise pytest.UsageError("--rlhf-compare-fail needs --rlhf-compare NAME")


def record_mode(config: pytest.Config) -> str:
    return config.getoption("--rlhf-record-mode") or config.getini("rlhf_record_mode")


def cassette_dir(config: pytest.Config) -> Path:
    chosen = config.getoption("--rlhf-cassette-dir")
    if chosen:
        return Path(chosen).resolve()
    return config.rootpath / config.getini("rlhf_cassette_dir")


def baseline_path(config: pytest.Config, name: str) -> Path:
    """A baseline NAME lives at <baseline dir>/NAME.json; a path ending in .json is taken as is."""
    if name.endswith(".json"):
        return Path(name)
    chosen = config.getoption("--rlhf-baseline-dir")
    directory = Path(chosen).resolve() if chosen else config.rootpath / config.getini("rlhf_baseline_dir")
    return directory / f"{name}.json"


def pytest_report_header(config: pytest.Config) -> str:
    return f"rlhf-eval: record mode {record_mode(config)}, cassettes in {cassette_dir(config)}"


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    """A suite is a .yaml/.yml file named on the command line, or one whose path matches ini
    `rlhf_suite_files` -- as pytest picks test modules by `python_files`. Its content is never
    guessed from: a file picked this way that is not a suite fails in one line, and any other
    YAML file (a CI config, a cassette) is never opened."""
    if file_path.suffix not in SUITE_SUFFIXES:
        return None
    if parent.session.isinitpath(file_path) or is_suite_path(file_path, parent.config):
        return SuiteFile.from_parent(parent, path=file_path)
    return None


def is_suite_path(file_path: Path, config: pytest.Config) -> bool:
    """Whether `file_path` matches a pattern of ini `rlhf_suite_files`, as pytest matches
    `python_files`: a pattern without a `/` matches the file name; one with a `/` matches the end
    of the path from the rootdir (`*` crosses folders: `suites/*.yaml` matches suites/a.yaml,
    suites/math/b.yaml and evals/suites/c.yaml; no folder above the rootdir counts). A file inside
    the cassette directory is a cassette, never a suite."""
    path = Path(os.path.abspath(file_path))
    try:
        relative = path.relative_to(config.rootpath).as_posix()
    except ValueError:  # outside the rootdir: the end of its absolute path
        relative = path.as_posix()
    for pattern in config.getini("rlhf_suite_files"):
        pattern = pattern.replace(os.sep, "/")
        if "/" not in pattern:
            matched = fnmatch.fnmatch(path.name, pattern)
        elif pattern.startswith("/") or os.path.isabs(pattern):
            matched = fnmatch.fnmatch(path.as_posix(), pattern)
        else:
            matched = fnmatch.fnmatch(relative, pattern) or fnmatch.fnmatch(relative, "*/" + pattern)
        if matched:
            return not _inside(path, cassette_dir(config))
    return False


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    """pytest passes over a dangling symlink in a folder it collects; one whose name makes it a
    suite is collected anyway, so it fails in one line (cannot read suite) instead of vanishing."""
    report = yield
    if isinstance(collector, pytest.Directory) and report.passed:
        try:
            entries = sorted(collector.path.iterdir())
        except OSError:
            return report
        for entry in entries:
            if (entry.suffix in SUITE_SUFFIXES and entry.is_symlink() and not entry.exists()
                    and is_suite_path(entry, collector.config)):
                report.result.append(SuiteFile.from_parent(collector, path=entry))
    return report


suite_names_key = pytest.StashKey[dict]()  # suite name -> the file that first used it, this session


class SuiteFile(pytest.File):
    def collect(self):
        from rlhf_eval.suite import SuiteError, load_suite

        suite = load_suite(self.path)
        first = self.config.stash.setdefault(suite_names_key, {}).setdefault(suite.name, self.path)
        if first != self.path:  # the two would share (and overwrite) one cassette folder
            folder = shown_path(cassette_dir(self.config) / suite.name)
            raise SuiteError(self.path, _suite_key_line(self.path),
                             f"suite name {suite.name!r} is already used by {shown_path(first)}; each suite "
                             f"needs its own name (it names the cassette folder {folder}/)")
        for question in suite.questions:
            yield QuestionItem.from_parent(self, name=question.id, suite=suite, question=question)

    def repr_failure(self, excinfo):
        from rlhf_eval.suite import SuiteError

        exc = excinfo.value
        if isinstance(exc, SuiteError):
            return str(exc)
        # Anything else that escapes loading is our bug, but it must fail this file alone, in one line.
        return (f"{shown_path(self.path)}: could not load the suite ({type(exc).__name__}: {exc}); "
                "this is a bug in rlhf-eval, please report it with the file")


def _suite_key_line(path: Path) -> int | None:
    """The line of the top-level `suite:` key of a file that loaded as a suite."""
    from rlhf_eval.yamlines import line_of, load_with_lines

    try:
        _, lines = load_with_lines(path.read_bytes().decode("utf-8-sig"))
    except (OSError, ValueError):
        return None
    return line_of(lines, ("suite",))


class QuestionFailed(Exception):
    """Raised by an item whose thresholds failed; carries the result for the failure text."""

    def __init__(self, result) -> None:
        super().__init__(f"{len(result.failures)} threshold(s) failed")
        self.result = result


class QuestionItem(pytest.Item):
    def __init__(self, *, suite, question, **kwargs) -> None:
        super().__init__(**kwargs)
        self.suite = suite
        self.question = question

    def _rerecord_command(self, mode: str) -> str:
        from rlhf_eval.backends import record_env_hint

        parts = ["pytest", self.nodeid, f"--rlhf-record-mode={mode}"]
        if self.config.getoption("--rlhf-cassette-dir"):
            parts.append(f"--rlhf-cassette-dir={self.config.getoption('--rlhf-cassette-dir')}")
        return record_env_hint(self.suite.spec.model) + " ".join(shlex.quote(p) for p in parts)

    def _backends(self, mode: str) -> Backends:
        from rlhf_eval.evaluate import Backends

        state = self.config.stash[state_key]
        key = str(self.suite.path)
        with state.backends_lock:  # prefetch threads ask too
            if key not in state.backends:
                state.backends[key] = Backends.for_suite(self.suite, replay=mode == "none", policy=state.policy)
            return state.backends[key]

    def sample(self) -> list:
        """This question's traces, through its cassette (raises CassetteProblem / SamplingError)."""
        from rlhf_eval.backends import credentials_problem
        from rlhf_eval.evaluate import sample_question
        from rlhf_eval.sampling import SamplingError

        mode = record_mode(self.config)
        problem = credentials_problem(self.suite.spec.model) if mode != "none" else None
        if problem:
            raise SamplingError(problem)
        return sample_question(
            self.suite, self.question, self._backends(mode), cassette_dir=cassette_dir(self.config),
            record_mode=mode, rerecord_hint=self._rerecord_command("once" if mode == "none" else mode))

    def runtest(self) -> None:
        from rlhf_eval.evaluate import score_question
        from rlhf_eval.recording import CassetteProblem
        from rlhf_eval.report import suite_settings
        from rlhf_eval.sampling import SamplingError
        from rlhf_eval.verify import VerifierError

        self.user_properties.append((SETTINGS_KEY, suite_settings(self.suite)))
        prefetch = self.config.stash[state_key].prefetch
        try:
            traces = prefetch.result(self) if prefetch else self.sample()
        except CassetteProblem as exc:
            self._record_error(str(exc).replace("--rlhf-record-mode=once", "--rlhf-record-mode=rewrite")
                               if "stale" in str(exc) else str(exc))
        except SamplingError as exc:
            self._record_error(str(exc))
        try:
            result = score_question(self.suite, self.question, traces)
        except VerifierError as exc:  # a team's verifier that fails on one of the answers
            self._record_error(str(exc))
        self.user_properties.append((RESULT_KEY, result.to_dict()))
        if result.failures:
            raise QuestionFailed(result)

    def _record_error(self, message: str):
        self.user_properties.append((RESULT_KEY, {
            "suite": self.suite.name, "id": self.question.id, "index": self.question.index, "passed": False,
            "error": message, "metrics": None, "dpo_unavailable": None, "failures": [], "unchecked": [],
            "traces": [], "pairs": []}))
        raise ItemError(message)

    def repr_failure(self, excinfo, style=None):
        exc = excinfo.value
        if isinstance(exc, ItemError):
            return f"{self.nodeid}: {exc}"
        if isinstance(exc, QuestionFailed):
            return failure_text(self.nodeid, exc.result)
        from rlhf_eval.recording import find_cassette_mismatch

        mismatch = find_cassette_mismatch(exc)
        if mismatch is not None:  # raised somewhere we did not expect; still say it plainly
            return f"{self.nodeid}: {mismatch}"
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, (self.question.line or 1) - 1, f"{self.suite.name}::{self.question.id}"


class ItemError(Exception):
    """A problem that stopped the item before scoring (cassette, API); its text is the whole story."""


def failure_text(nodeid: str, result) -> str:
    from tabulate import tabulate

    lines = [f"{nodeid}: {len(result.failures)} threshold(s) failed"]
    lines += [f"  {f.reason}   (threshold: {f.metric} {f.bound})" for f in result.failures]
    with_ref = any(t.ref_logp is not None for t in result.traces)
    with_reasoning = any(t.reasoning_tokens is not None for t in result.traces)
    rows = []
    for i, (t, v, r, a) in enumerate(zip(result.traces, result.verdicts, result.rewards, result.advantages)):
        rows.append([i, t.seed, v.status, _short(v.extracted), f"{r:g}", f"{a:+.3f}", _count(t.token_count)]
                    + ([_count(t.reasoning_tokens)] if with_reasoning else [])
                    + [_logp(t.logp)] + ([_logp(t.ref_logp)] if with_ref else []))
    lines.append(f"traces (k={len(result.traces)}, accuracy {result.metrics['accuracy']:.3f}, "
                 f"spread {result.metrics['spread']:.3f}, pairs {result.metrics['pairs']}):")
    headers = (["#", "seed", "verdict", "extracted", "reward", "advantage", "tokens"]
               + (["reasoning tokens"] if with_reasoning else []) + ["logp"] + (["ref logp"] if with_ref else []))
    table = tabulate(rows, headers=headers, disable_numparse=True)
    lines += ["  " + line for line in table.splitlines()]
    return "\n".join(lines)


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _logp(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _short(text: str | None, width: int = 24) -> str:
    if text is None:
        return "-"
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _distributed(config: pytest.Config) -> bool:
    """Running under xdist, as its controller or one of its workers."""
    return getattr(config.option, "dist", "no") != "no" or _is_xdist_worker(config)


class Prefetcher:
    """While recording, samples the questions ahead of the one pytest is running, so requests of
    different questions overlap (each question still writes only its own cassette). Items then
    only collect their results, in pytest's order.

    Prefetching stays within a row of consecutive questions, started by the row's first item: a
    test that runs between two rows (any other test of the session) then runs with no question
    recording in the background, and so without vcrpy's patch installed."""

    def __init__(self, rows: list[list[QuestionItem]], workers: int) -> None:
        from rlhf_eval.throttle import DaemonPool

        self._pool = DaemonPool(workers, "rlhf-eval-question")
        self._rows = {item.nodeid: row for row in rows for item in row}
        self._futures: dict[str, Future] = {}

    def result(self, item: QuestionItem):
        row = self._rows.get(item.nodeid)
        if row is not None:  # the first item of its row to run
            for other in row:
                del self._rows[other.nodeid]
                self._futures[other.nodeid] = self._pool.submit(other.sample)
        future = self._futures.pop(item.nodeid, None)
        return future.result() if future else item.sample()

    def close(self) -> None:
        """The run ended (or stopped at -x): a started question finishes its cassette."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def abandon(self, grace: float) -> None:
        """The run was interrupted: questions not started never will be; started ones get `grace`
        seconds to finish (one whose last answer is arriving still writes its cassette)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        futures_wait([f for f in self._futures.values() if not f.done()], timeout=grace)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI timeout, `kill`), raised in the main thread so it stops the run as Ctrl-C does."""


# How long an interrupted run waits for the questions still running: one whose last answer is
# arriving writes its cassette; a long generation is abandoned (its question then writes nothing).
INTERRUPT_GRACE = 1.0


@contextlib.contextmanager
def _sigterm_as_interrupt(config: pytest.Config):
    """pytest stops cleanly on Ctrl-C but dies on SIGTERM; for the run's length, SIGTERM stops it
    like Ctrl-C. Only a process's main thread may handle signals (not an in-process pytest run
    from another thread), and an xdist worker is stopped by its controller."""
    if _is_xdist_worker(config) or threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop_now(state: RunState, grace: float) -> None:
    """No request is sent or retried any more; questions not started are dropped."""
    if state.policy is not None:
        state.policy.stop()
    if state.prefetch is not None:
        state.prefetch.abandon(grace)


def interrupted_line(session: pytest.Session, cause: str) -> str | None:
    """What an interrupted recording left: complete cassettes kept, questions still to record
    (None when the run had no question)."""
    from rlhf_eval.recording import cassette_path

    root = cassette_dir(session.config)
    paths = [cassette_path(root, item.suite.name, item.question.id)
             for item in session.items if isinstance(item, QuestionItem)]
    if not paths:
        return None
    kept = sum(p.is_file() for p in paths)  # written whole or not at all: any file is complete
    folders = {p.parent for p in paths}
    where = shown_path(folders.pop() if len(folders) == 1 else root) + "/"
    if kept == len(paths):
        return f"rlhf-eval stopped on {cause}; every question's cassette is complete under {where}"
    return (f"rlhf-eval stopped on {cause}; kept {kept} complete cassette{'s' * (kept != 1)} under {where}, "
            f"{len(paths) - kept} question{'s' * (len(paths) - kept != 1)} not recorded — "
            "run the same command again to record them")


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session):
    """Start the prefetcher when recording in a single process (an xdist worker is handed its
    questions one at a time, so there it is the traces of a question that run concurrently).

    Ctrl-C or SIGTERM stops the run within moments, even while requests wait out a 429's backoff,
    keeps every cassette already complete, and ends with one line saying what is still to record."""
    config = session.config
    state = config.stash[state_key]
    rows: list[list[QuestionItem]] = []  # runs of consecutive questions in pytest's order
    for previous, item in zip([None, *session.items], session.items):
        if isinstance(item, QuestionItem):
            if isinstance(previous, QuestionItem):
                rows[-1].append(item)
            else:
                rows.append([item])
    if not rows:  # no question in this run: nothing to sample, prefetch or stop
        return (yield)
    state.policy = request_policy(config)
    if (record_mode(config) != "none" and not _distributed(config) and sum(map(len, rows)) > 1
            and state.policy.concurrency > 1 and not config.option.collectonly):
        state.prefetch = Prefetcher(rows, state.policy.concurrency)
    with _sigterm_as_interrupt(config):  # around it all: a second SIGTERM also cuts the stop short
        try:
            result = yield
            if state.prefetch is not None:
                state.prefetch.close()  # a Ctrl-C while it waits for the started questions stops at once too
            return result
        except session.Interrupted:
            raise  # pytest's own stop (collection errors, -x): not a signal, its message stands
        except KeyboardInterrupt as exc:
            raise _stopped(session, exc) from None
        finally:
            _stop_now(state, 0)  # after any other error too: nothing may keep running behind it
            if state.patch_held:  # the run stopped early (-x, ^C) inside a row of questions
                from rlhf_eval.recording import release_patch

                state.patch_held = False
                release_patch()


def _stopped(session: pytest.Session, exc: KeyboardInterrupt) -> KeyboardInterrupt:
    """Stop an interrupted run now; what pytest should report: when recording, the one line of
    what was kept and what is left to record."""
    state = session.config.stash[state_key]
    cause = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
    # The interpreter's last garbage collection, over every object the SDKs loaded, takes seconds
    # on a busy machine; an interrupted process is ending anyway and need not wait for it.
    atexit.register(gc.freeze)
    try:
        _stop_now(state, INTERRUPT_GRACE)
    except KeyboardInterrupt:  # a second Ctrl-C: stop waiting for the requests in flight
        pass
    line = interrupted_line(session, cause) if record_mode(session.config) != "none" else None
    if line:
        return session.Interrupted(line)
    return session.Interrupted(f"stopped on {cause}") if isinstance(exc, Terminated) else exc


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """Keep vcrpy's patch installed from the first to the last of consecutive questions (one
    install per row of questions, not one per question); any other test runs without it."""
    state = item.config.stash[state_key]
    if isinstance(item, QuestionItem) and not state.patch_held:
        from rlhf_eval.recording import hold_patch

        hold_patch()
        state.patch_held = True
    try:
        yield
    finally:
        if state.patch_held and not isinstance(nextitem, QuestionItem):
            from rlhf_eval.recording import release_patch

            state.patch_held = False
            release_patch()


class Progress:
    """A progress line while recording, at most every few seconds and once at the end: questions
    done of the questions collected (other tests are not counted), requests sent, retries, and an
    estimate of the time left. Each line is written between pytest's own lines, never inside one."""

    EVERY = 3.0

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.last = time.monotonic()
        self.started = self.last
        self.questions: set[str] = set()  # node ids of the questions this run will run
        self.done: set[str] = set()
        self.shown = 0  # questions done at the last line written

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.questions = {item.nodeid for item in session.items if isinstance(item, QuestionItem)}

    @pytest.hookimpl(trylast=True)  # after the terminal has written this item's result
    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        if nodeid not in self.questions:
            return
        self.done.add(nodeid)
        now = time.monotonic()
        if now - self.last >= self.EVERY and len(self.done) < len(self.questions):
            self.last = now
            self._write(now)

    @pytest.hookimpl(wrapper=True, tryfirst=True)  # outermost: after pytest's own closing "[100%]"
    def pytest_runtestloop(self, session: pytest.Session):
        try:
            return (yield)
        finally:
            if len(self.done) > self.shown:
                self._write(time.monotonic())

    def _write(self, now: float) -> None:
        writer = self.config.pluginmanager.get_plugin("terminalreporter")
        if writer is None:
            return
        state = self.config.stash[state_key]
        done, total = len(self.done), len(self.questions)
        eta = (now - self.started) / done * (total - done)
        self.shown = done
        writer.ensure_newline()  # ends a line pytest is writing (a file's dots, a -v result)
        if getattr(getattr(writer, "_tw", None), "width_of_current_line", 0):
            writer.write("\n")  # a line of -q dots, which ensure_newline does not know about
        writer.write_line(f"rlhf-eval recording: {done}/{total} questions · {state.policy.requests} "
                          f"requests · {state.policy.retries} retries · ETA {eta:.0f}s")


@pytest.hookimpl(specname="pytest_collection_finish")
def pytest_rlhf_check_cassette_folders(session: pytest.Session) -> None:
    """When recording, stop before anything is sampled (one line, no request sent) if a folder a
    cassette will be written to is not writable: a read-only disk, or a file in the way."""
    config = session.config
    mode = record_mode(config)
    if mode == "none" or config.option.collectonly:
        return
    root = cassette_dir(config)
    folders = _folders_to_record_into(session.items, root, mode)
    for folder in ([root] if folders else []) + folders:  # the root first: its fault is every suite's
        reason = unwritable_reason(folder)
        if reason:
            message = (f"cannot record cassettes into {shown_path(folder)} ({reason}); no request was sent: "
                       "choose a writable folder with --rlhf-cassette-dir=DIR")
            if not _is_xdist_worker(config):
                raise pytest.UsageError(f"rlhf-eval: {message}")
            config.stash[_unwritable_key] = message  # a worker cannot stop the run: its questions fail
            return


_unwritable_key = pytest.StashKey[str]()


@pytest.hookimpl(specname="pytest_runtest_call", tryfirst=True)
def pytest_rlhf_refuse_unwritable(item: pytest.Item) -> None:
    """On an xdist worker whose cassette folder is not writable: fail each question in one line
    before it samples anything."""
    message = item.config.stash.get(_unwritable_key, None)
    if message and isinstance(item, QuestionItem):
        raise ItemError(message)


def _folders_to_record_into(items: list[pytest.Item], root: Path, mode: str) -> list[Path]:
    """The suite folders under `root` that this run will write cassettes to (in mode once, only
    those of suites with a cassette missing)."""
    from rlhf_eval.recording import cassette_path

    folders = set()
    for item in items:
        if isinstance(item, QuestionItem):
            path = cassette_path(root, item.suite.name, item.question.id)
            if mode != "once" or not path.is_file():
                folders.add(path.parent)
    return sorted(folders)


class ReportPlugin:
    """Gathers question results and prints the report; registered only where every report arrives
    (the xdist controller, or the single process) — never on an xdist worker."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.problems: list[str] = []  # outputs that could not be written, one line each

    @property
    def state(self) -> RunState:
        return self.config.stash[state_key]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == RESULT_KEY:
                self.state.questions.append(value)
            elif name == SETTINGS_KEY:
                self.state.suites.setdefault(value["name"], value)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtestloop(self, session: pytest.Session):
        yield
        if not self.state.questions:
            return
        from rlhf_eval.compare import compare_reports, regressions
        from rlhf_eval.report import build_report

        state, opt = self.state, self.config.getoption
        report = state.report = build_report(state.questions, state.suites)
        if any(s.threshold_failures for s in report.suites):
            session.testsfailed += 1  # like --cov-fail-under: the run fails after every item ran
        if state.baseline is not None:
            comparison = report.comparison = compare_reports(report, state.baseline, opt("--rlhf-compare"))
            comparison.failures = regressions(comparison, state.fail_rules)
            if comparison.failures:
                session.testsfailed += 1
        self._write_outputs(report)
        if self.problems:
            session.testsfailed += 1  # every output that could be written was; the run still fails

    def _write_outputs(self, report: Report) -> None:
        """Write each output asked for; one that cannot be written is one line in `self.problems`
        and does not stop the others."""
        from rlhf_eval.export import export_files
        from rlhf_eval.html_report import write_html
        from rlhf_eval.report import write_json

        opt = self.config.getoption
        for settings in self.state.suites.values():  # under xdist, this process built no backend
            watch_settings(settings)
        outputs = [("the JSON report", opt("--rlhf-report-json"), write_json), ("the HTML report", opt("--rlhf-html"),
                                                                             write_html)]
        if opt("--rlhf-save"):
            outputs.append((f"baseline {opt('--rlhf-save')}", baseline_path(self.config, opt("--rlhf-save")), write_json))
        for label, path, write in outputs:
            if path:
                self._write(label, path, lambda path=path, write=write: write(report, path))
        if opt("--rlhf-export"):
            for path, text in export_files(report, opt("--rlhf-export")).items():
                if not self._write("the export", path, lambda path=path, text=text: write_without_secrets(path, text)):
                    break

    def _write(self, label: str, path, write) -> bool:
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
        self.state.written.append(str(path))
        return True

    def pytest_terminal_summary(self, terminalreporter) -> None:
        report = self.state.report
        if report is None:
            return
        from rlhf_eval.report import render_comparison, render_table

        tr = terminalreporter
        tr.write_sep("=", "rlhf-eval report")
        tr.write_line(render_table(report))
        for s in report.suites:
            for line in s.threshold_failures:
                tr.write_line(f"FAIL suite {s.name}: {line}", red=True, bold=True)
        if report.comparison is not None:
            tr.write_sep("-", f"compared with baseline {report.comparison.baseline}")
            tr.write_line(render_comparison(report.comparison))
            for line in report.comparison.failures:
                tr.write_line(f"FAIL regression: {line}", red=True, bold=True)
        for path in self.state.written:
            tr.write_line(f"rlhf-eval: wrote {path}")
        for line in self.problems:
            tr.write_line(line, red=True, bold=True)
