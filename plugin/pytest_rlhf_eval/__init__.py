"""pytest glue for rlhf-eval: suite files become test files, questions become test items.

Follows "Working with non-python tests": `pytest_collect_file` → `SuiteFile` → `QuestionItem`.
Per-question results travel as `item.user_properties` (plain values), are gathered in
`pytest_runtest_logreport`, and the report is built once on the process that saw every report
(the xdist controller, or the only process), so it is the same under `pytest -n auto`.

Everything else is `rlhf_eval.runner.Run`, the engine `run_suites` drives too: these hooks only
hand it the items in pytest's order and show what it reports.
"""
from __future__ import annotations

import atexit
import contextlib
import gc
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from rlhf_eval.discovery import DEFAULT_SUITE_FILES, SUITE_SUFFIXES, is_suite_path as _matches
from rlhf_eval.paths import shown_path
from rlhf_eval.record_modes import RECORD_MODES

# The engine (rlhf_eval.runner: suites, the recorder and vcrpy, the SDKs, numpy) is imported by the
# hooks that need it, when a run has suites: the plugin loads into every pytest run of an
# environment that has rlhf-eval installed, and a run with no suite should not pay a second for it.
if TYPE_CHECKING:
    from rlhf_eval.runner import Run
    from rlhf_eval.shard import Shard

RESULT_KEY = "rlhf_eval"  # user_properties key of a question's result dict
SETTINGS_KEY = "rlhf_eval_suite"  # user_properties key of its suite's settings
SIZE_KEY = "rlhf_eval_suite_size"  # with --rlhf-shard: how many questions its suite has (for the merge)

run_key = pytest.StashKey["Run"]()
nodeids_key = pytest.StashKey[dict]()  # (suite file, question id) -> the item's node id


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hooks

    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rlhf-eval", "rlhf-eval: preference-signal evals from YAML suites")
    group.addoption("--rlhf-record-mode", choices=RECORD_MODES, default=None,
                    help="none (default: replay only, never touch the network) | once (record missing "
                         "cassettes) | new_episodes | all | rewrite (re-record from scratch)")
    group.addoption("--rlhf-record-via", choices=("online", "batch"), default="online",
                    help="while recording: online (default: one request at a time) | batch (the provider's batch API, "
                         "half the price: Gemini Developer API and OpenAI; resumable, see README)")
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
    group.addoption("--rlhf-export-pass-rate", default=None, metavar="LOW:HIGH",
                    help="with --rlhf-export: export only the questions whose pass rate (accuracy) is in this band; "
                         "both ends kept (0.2:0.8), or brackets for open ends: '(0:1)' drops all-wrong and "
                         "all-correct questions")
    group.addoption("--rlhf-export-nonzero-spread", action="store_true", default=False,
                    help="with --rlhf-export: export only the questions whose rewards differ (a GRPO group with "
                         "signal; DAPO's dynamic sampling)")
    group.addoption("--rlhf-export-format", choices=("jsonl", "parquet"), default="jsonl",
                    help="with --rlhf-export: jsonl (default) or parquet (needs pip install 'rlhf-eval[datasets]')")
    group.addoption("--rlhf-html", default=None, metavar="PATH",
                    help="write a self-contained HTML report (tables, every trace, plots) to PATH")
    group.addoption("--rlhf-shard", default=None, metavar="I/N",
                    help="run only shard I of N of the questions (the others are deselected; the same split on "
                         "every machine); merge the shards' JSON reports with: rlhf-eval merge")
    parser.addini("rlhf_cassette_dir", "cassette directory, relative to the rootdir", default="cassettes")
    parser.addini("rlhf_baseline_dir", "baseline directory, relative to the rootdir", default="baselines")
    parser.addini("rlhf_record_mode", "default record mode", default="none")
    parser.addini("rlhf_suite_files", "glob patterns of suite files, as python_files: a pattern without / matches "
                  "the file name, one with / the end of the path from the rootdir", type="args",
                  default=list(DEFAULT_SUITE_FILES))


shard_key: pytest.StashKey[Shard | None] = pytest.StashKey()  # the parsed --rlhf-shard
# with --rlhf-shard: {suite name: its number of questions} for the suites with a question selected here
sizes_key: pytest.StashKey[dict[str, int]] = pytest.StashKey()


def pytest_configure(config: pytest.Config) -> None:
    mode = record_mode(config)
    if mode not in RECORD_MODES:
        raise pytest.UsageError(f"rlhf_record_mode = {mode!r}; expected one of {', '.join(RECORD_MODES)}")
    config.stash[shard_key] = None
    if config.getoption("--rlhf-shard") is not None:
        from rlhf_eval.shard import Shard

        try:
            config.stash[shard_key] = Shard.of(config.getoption("--rlhf-shard"))
        except ValueError as exc:
            raise pytest.UsageError(f"--rlhf-shard {config.getoption('--rlhf-shard')!r}: {exc}") from None
    if config.getoption("--rlhf-record-via") == "batch" and mode != "none" and _distributed(config):
        raise pytest.UsageError("--rlhf-record-via batch submits the run's requests from one process: drop -n "
                                "(the batch API does the parallel work)")
    if mode != "none" and not _distributed(config):
        config.pluginmanager.register(Progress(config), "rlhf-eval-progress")
    # Pushed before the cleanups of pytest's own plugins (ours configures first), so it runs after them
    config.add_cleanup(lambda: _after_session(config))
    if _is_xdist_worker(config):
        config.pluginmanager.register(WorkerReports(), "rlhf-eval-worker-reports")
        return
    config.pluginmanager.register(ReportPlugin(config), "rlhf-eval-report")
    if config.getoption("--rlhf-compare") or config.getoption("--rlhf-compare-fail"):
        the_run(config)  # bad comparison settings stop the run before anything is sampled
    _check_export_options(config)


def _check_export_options(config: pytest.Config) -> None:
    """A bad export filter or format stops the run before anything is sampled, in one line."""
    opt = config.getoption
    given = [name for name in ("--rlhf-export-pass-rate", "--rlhf-export-nonzero-spread")
             if opt(name)] + ["--rlhf-export-format"] * (opt("--rlhf-export-format") != "jsonl")
    if not given:
        return
    if not opt("--rlhf-export"):
        raise pytest.UsageError(f"{given[0]} needs --rlhf-export DIR")
    from rlhf_eval.export import ExportFilter, check_format

    for name, check in (("--rlhf-export-pass-rate", lambda: ExportFilter.of(opt("--rlhf-export-pass-rate"))),
                        ("--rlhf-export-format", lambda: check_format(opt("--rlhf-export-format")))):
        try:
            check()
        except ValueError as exc:
            raise pytest.UsageError(f"{name}: {exc}") from None


def the_run(config: pytest.Config) -> Run:
    """The session's `rlhf_eval.runner.Run`, made on first use (a run with no suite never makes one)."""
    run = config.stash.get(run_key, None)
    if run is None:
        from rlhf_eval.runner import Run, RunError, RunOptions

        opt = config.getoption
        save, compare = opt("--rlhf-save"), opt("--rlhf-compare")
        run = Run(RunOptions(
            cassette_dir=cassette_dir(config), record_mode=record_mode(config),
            concurrency=opt("--rlhf-concurrency"), rate_limit_rpm=opt("--rlhf-rate-limit"),
            retries=opt("--rlhf-retries"), retry_timeout=opt("--rlhf-retry-timeout"),
            retry_delay=opt("--rlhf-retry-delay"),
            workers=int(getattr(config, "workerinput", {}).get("workercount", 1)),
            report_json=opt("--rlhf-report-json"), html=opt("--rlhf-html"), export=opt("--rlhf-export"),
            export_pass_rate=opt("--rlhf-export-pass-rate"), export_nonzero_spread=opt("--rlhf-export-nonzero-spread"),
            export_format=opt("--rlhf-export-format"),
            save=baseline_path(config, save) if save else None, save_name=save,
            baseline=baseline_path(config, compare) if compare else None, baseline_name=compare,
            fail_rules=opt("--rlhf-compare-fail"), shard=config.stash.get(shard_key, None),
            record_via=opt("--rlhf-record-via"),
            batch=_batch_settings(config) if opt("--rlhf-record-via") == "batch" else None,
        ), rerecord_command=lambda suite, question, mode: _rerecord_command(config, suite, question, mode),
            make_backends=lambda suite, replay, policy: config.hook.pytest_rlhf_eval_backends(
                config=config, suite=suite, replay=replay, policy=policy),
            command_line=["pytest", *config.invocation_params.args])
        if not _is_xdist_worker(config):
            try:
                run.load_baseline()
            except RunError as exc:
                raise pytest.UsageError(str(exc)) from None
        config.stash[run_key] = run
    return run


def _batch_settings(config: pytest.Config):
    """Batch recording's settings, its progress lines written by pytest's terminal (pytest's
    capture would hold lines written to stderr until the session ends)."""
    from rlhf_eval.batch import BatchSettings

    def say(line: str) -> None:
        writer = config.pluginmanager.get_plugin("terminalreporter")
        if writer is None:
            print(line, file=sys.stderr, flush=True)
            return
        writer.ensure_newline()
        writer.write_line(line)

    return BatchSettings(progress=say)


def _after_session(config: pytest.Config) -> None:
    """The run's objects stay frozen through pytest's last two full garbage collections (~0.3 s
    each after a replay of 1,000 questions) and are then handed back to the collector; the
    interpreter's own final collection, at exit, is skipped the same way."""
    run = config.stash.get(run_key, None)
    if run is not None:
        run.unfreeze()
        atexit.unregister(gc.freeze)  # pytest.main run again in one process registers it once
        atexit.register(gc.freeze)


def _rerecord_command(config: pytest.Config, suite, question, mode: str) -> str:
    from rlhf_eval.runner import pytest_command

    nodeid = config.stash.get(nodeids_key, {}).get((str(suite.path), question.id))
    return pytest_command(suite, question, mode, config.getoption("--rlhf-cassette-dir"), nodeid)


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
    shard = config.stash.get(shard_key, None)
    return (f"rlhf-eval: record mode {record_mode(config)}, cassettes in {cassette_dir(config)}"
            + (f", shard {shard} of the questions" if shard is not None else ""))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With --rlhf-shard I/N, deselect the questions of the other shards (as -k does: pytest's count
    line says how many). Other tests are not questions: every shard runs them."""
    shard = config.stash.get(shard_key, None)
    if shard is None:
        return
    chosen: dict[str, set[str]] = {}  # suite file -> the ids of its questions this shard runs
    keep, drop = [], []
    for item in items:
        if isinstance(item, QuestionItem):
            suite = item.suite
            ids = chosen.get(str(suite.path))
            if ids is None:  # dealt over the whole suite, whatever else deselected some of it
                ids = chosen[str(suite.path)] = shard.selects(suite.name, [q.id for q in suite.questions])
            if item.question.id not in ids:
                drop.append(item)
                continue
        keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_collection_finish(session: pytest.Session) -> None:
    """With --rlhf-shard, note the size of every suite a selected question belongs to (after -k and
    the shard's deselection), so the shard's report tells the merge whether it ran all of them."""
    if session.config.stash.get(shard_key, None) is not None:
        session.config.stash[sizes_key] = {item.suite.name: len(item.suite.questions)
                                           for item in session.items if isinstance(item, QuestionItem)}


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
    """Whether `file_path` matches ini `rlhf_suite_files` (see `rlhf_eval.discovery.is_suite_path`)."""
    return _matches(file_path, config.rootpath, config.getini("rlhf_suite_files"), cassette_dir(config))


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
        from rlhf_eval.runner import check_unique_name
        from rlhf_eval.suite import load_suite

        suite = load_suite(self.path)
        check_unique_name(suite, self.config.stash.setdefault(suite_names_key, {}), cassette_dir(self.config))
        nodeids = self.config.stash.setdefault(nodeids_key, {})
        for question in suite.questions:
            item = QuestionItem.from_parent(self, name=question.id, suite=suite, question=question)
            nodeids[(str(suite.path), question.id)] = item.nodeid
            yield item

    def repr_failure(self, excinfo):
        from rlhf_eval.suite import SuiteError

        exc = excinfo.value
        if isinstance(exc, SuiteError):
            return str(exc)
        # Anything else that escapes loading is our bug, but it must fail this file alone, in one line.
        return (f"{shown_path(self.path)}: could not load the suite ({type(exc).__name__}: {exc}); "
                "this is a bug in rlhf-eval, please report it with the file")


class QuestionFailed(Exception):
    """Raised by an item whose thresholds failed; carries the result for the failure text."""

    def __init__(self, result) -> None:
        super().__init__(f"{len(result.failures)} threshold(s) failed")
        self.result = result


class ItemError(Exception):
    """A problem that stopped the item before scoring (cassette, API); its text is the whole story."""


class QuestionItem(pytest.Item):
    def __init__(self, *, suite, question, **kwargs) -> None:
        super().__init__(**kwargs)
        self.suite = suite
        self.question = question

    def runtest(self) -> None:
        outcome = the_run(self.config).evaluate(self.suite, self.question)
        result: dict | str = _as_json(outcome.result) if _is_xdist_worker(self.config) else outcome.result
        self.user_properties += [(SETTINGS_KEY, outcome.settings), (RESULT_KEY, result)]
        if self.config.stash.get(shard_key, None) is not None:  # under xdist, the only way to the controller
            self.user_properties.append((SIZE_KEY, len(self.suite.questions)))
        if outcome.error is not None:
            raise ItemError(outcome.error)
        if outcome.scored is not None and outcome.scored.failures:
            raise QuestionFailed(outcome.scored)

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


def _questions(items: list[pytest.Item]) -> list[tuple]:
    return [(item.suite, item.question) for item in items if isinstance(item, QuestionItem)]


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session):
    """Start the run (its prefetcher when recording in a single process: an xdist worker is handed
    its questions one at a time, so there it is the traces of a question that run concurrently).

    Ctrl-C or SIGTERM stops the run within moments, even while requests wait out a 429's backoff,
    keeps every cassette already complete, and ends with one line saying what is still to record."""
    config = session.config
    rows: list[list[tuple]] = []  # runs of consecutive questions in pytest's order
    for previous, item in zip([None, *session.items], session.items):
        if isinstance(item, QuestionItem):
            if isinstance(previous, QuestionItem):
                rows[-1].append((item.suite, item.question))
            else:
                rows.append([(item.suite, item.question)])
    if not rows:  # no question in this run: nothing to sample, prefetch or stop
        return (yield)
    run = the_run(config)
    from rlhf_eval.runner import Interrupted, RunError

    if not _is_xdist_worker(config) and not config.option.collectonly:
        try:  # where results are gathered: a temporary folder that cannot take them stops the run now
            run.open_spool()
        except RunError as exc:
            raise pytest.UsageError(f"rlhf-eval: {exc}; no question was sampled") from None
    try:
        run.start(rows, prefetch=not _distributed(config) and not config.option.collectonly)
    except RunError as exc:  # recording by batch could not start
        raise pytest.UsageError(str(exc)) from None
    except Interrupted as exc:  # Ctrl-C while the batch jobs were submitted or waited for: pytest's own stop line
        raise session.Interrupted(str(exc)) from None
    from rlhf_eval.runner import sigterm_as_interrupt

    # Around it all: a second SIGTERM also cuts the stop short. An xdist worker is stopped by its controller.
    with sigterm_as_interrupt() if not _is_xdist_worker(config) else contextlib.nullcontext():
        try:
            result = yield
            run.close()  # a Ctrl-C while it waits for the started questions stops at once too
            return result
        except session.Interrupted as exc:  # pytest's own stop (a plugin's, or the run's spool failed):
            _finish_started(session, exc)  # not a signal, so its message stands
            raise
        except KeyboardInterrupt as exc:
            raise _stopped(session, exc) from None
        except Exception as exc:  # -x / --maxfail (session.Failed), pytest.exit, an error
            _finish_started(session, exc)
            raise
        finally:
            run.stop(0)  # after any other error too: nothing may keep running behind it
            run.release_patch()  # the run stopped early (-x, ^C) inside a row of questions


def _finish_started(session: pytest.Session, exc: Exception | KeyboardInterrupt) -> None:
    """The run ended early without a signal (`exc`: -x, --maxfail, a plugin's session stop,
    pytest.exit, an error): the questions sampling ahead whose requests were sent (paid for) finish
    their cassettes, none starts, and the closing lines say what was kept. A Ctrl-C while they
    finish stops the run as Ctrl-C does (raises session.Interrupted)."""
    config = session.config
    run = the_run(config)
    reports = config.pluginmanager.get_plugin("rlhf-eval-report")
    if isinstance(exc, session.Failed):
        why, rerun = str(exc), "run again without -x / --maxfail to record them"
    elif reports is not None and reports.stopped:
        why, rerun = "its question results could not be gathered", "run the same command again to record them"
    elif isinstance(exc, session.Interrupted):
        why, rerun = str(exc), "run the same command again to record them"
    else:
        why = f"pytest.exit: {exc.msg}" if isinstance(exc, pytest.exit.Exception) else f"an error: {type(exc).__name__}"
        rerun = "run the same command again to record them"
    waiting = run.in_flight
    writer = config.pluginmanager.get_plugin("terminalreporter")
    if waiting and writer is not None:
        writer.ensure_newline()
        them = ("s", "their cassettes", "them") if waiting != 1 else ("", "its cassette", "it")
        writer.write_line(f"rlhf-eval: the run stopped early; waiting for the {waiting} question{them[0]} already "
                          f"sampling to write {them[1]} (Ctrl-C abandons {them[2]})")
    try:
        run.close()
    except KeyboardInterrupt as second:
        raise _stopped(session, second) from None
    if not _is_xdist_worker(config):
        run.stop_note = run.stopped_early_line(_questions(session.items), why, rerun)


def _stopped(session: pytest.Session, exc: KeyboardInterrupt) -> KeyboardInterrupt:
    """Stop an interrupted run now; what pytest should report: when recording, the one line of
    what was kept and what is left to record."""
    from rlhf_eval.runner import INTERRUPT_GRACE, Terminated

    run = the_run(session.config)
    cause = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
    try:
        run.stop(INTERRUPT_GRACE)
    except KeyboardInterrupt:  # a second Ctrl-C: stop waiting for the requests in flight
        pass
    line = run.interrupted_line(_questions(session.items), cause)
    if line:
        return session.Interrupted(line)
    return session.Interrupted(f"stopped on {cause}") if isinstance(exc, Terminated) else exc


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """Keep vcrpy's patch installed from the first to the last of consecutive questions (one
    install per row of questions, not one per question); any other test runs without it."""
    run = item.config.stash.get(run_key, None)
    if isinstance(item, QuestionItem):
        run = the_run(item.config)
        run.hold_patch()
    try:
        yield
    finally:
        if run is not None and not isinstance(nextitem, QuestionItem):
            run.release_patch()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """The call's report carries the question's result (to the xdist controller too); the item,
    which lives to the end of the session, and its teardown report then hold it no more."""
    yield
    if call.when == "call" and isinstance(item, QuestionItem):
        item.user_properties = _without_result(item.user_properties)


def _as_json(result: dict) -> str:
    """A question's result as the text an xdist worker sends its controller: execnet carries only
    valid UTF-8, and a dataset's or an API's lone surrogate ("\\ud800", which json reads as one)
    is not; its JSON escape is. The controller reads it back with `json.loads`."""
    from rlhf_eval.report_model import _jsonable, escape_lone_surrogates

    return escape_lone_surrogates(json.dumps(result, ensure_ascii=False, default=_jsonable))


def _without_result(properties: list) -> list:
    """`properties` without the question's result and settings: once gathered (or sent to the
    xdist controller), holding them to the end of the session would grow memory with the questions."""
    return [p for p in properties if p[0] not in (RESULT_KEY, SETTINGS_KEY)]


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
        policy = the_run(self.config).policy
        done, total = len(self.done), len(self.questions)
        eta = (now - self.started) / done * (total - done)
        self.shown = done
        writer.ensure_newline()  # ends a line pytest is writing (a file's dots, a -v result)
        if getattr(getattr(writer, "_tw", None), "width_of_current_line", 0):
            writer.write("\n")  # a line of -q dots, which ensure_newline does not know about
        writer.write_line(f"rlhf-eval recording: {done}/{total} questions · {policy.requests} "
                          f"requests · {policy.retries} retries · ETA {eta:.0f}s")


@pytest.hookimpl(specname="pytest_collection_finish")
def pytest_rlhf_check_cassette_folders(session: pytest.Session) -> None:
    """When recording, stop before anything is sampled (one line, no request sent) if a folder a
    cassette will be written to is not writable: a read-only disk, or a file in the way."""
    config = session.config
    questions = _questions(session.items)
    if record_mode(config) == "none" or config.option.collectonly or not questions:
        return
    message = the_run(config).unwritable_cassette_folder(questions)
    if message:
        if not _is_xdist_worker(config):
            raise pytest.UsageError(f"rlhf-eval: {message}")
        config.stash[_unwritable_key] = message  # a worker cannot stop the run: its questions fail


_unwritable_key = pytest.StashKey[str]()


@pytest.hookimpl(specname="pytest_runtest_call", tryfirst=True)
def pytest_rlhf_refuse_unwritable(item: pytest.Item) -> None:
    """On an xdist worker whose cassette folder is not writable: fail each question in one line
    before it samples anything."""
    message = item.config.stash.get(_unwritable_key, None)
    if message and isinstance(item, QuestionItem):
        raise ItemError(message)


class WorkerReports:
    """On an xdist worker: a question's call report, once sent to the controller (xdist's own
    logreport hook), keeps no result; the worker's terminal would hold every one to the end."""

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" and any(key == RESULT_KEY for key, _ in report.user_properties):
            report.user_properties = _without_result(report.user_properties)


class ReportPlugin:
    """Gathers question results and prints the report; registered only where every report arrives
    (the xdist controller, or the single process) — never on an xdist worker."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.session: pytest.Session | None = None
        self.stopped: str | None = None  # why the run stopped gathering results (its spool failed)
        self.summarized = False  # pytest asked for the terminal summary

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.session = session

    def _stop(self, problem: str) -> None:
        """Results can no longer be gathered (the run's temporary file could not be made or written):
        stop the run after the question running now, as -x does, with one line; every cassette
        already written stays (each is written whole, before its result is gathered)."""
        line = f"rlhf-eval stopped: {problem}"
        if record_mode(self.config) != "none":
            line += "; every cassette recorded so far is kept"
        self.stopped = line
        dsession = self.config.pluginmanager.get_plugin("dsession")  # the xdist controller stops its workers
        if dsession is not None:
            dsession.shouldstop = line
        elif self.session is not None:
            self.session.shouldstop = line

    @pytest.hookimpl(trylast=True)  # after other readers of the report (junitxml, the terminal)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            if report.passed and Path(report.location[0]).suffix in SUITE_SUFFIXES:  # a question's
                # pytest's terminal keeps every report to the end, a passed setup's and teardown's
                # too (under the category "", which it never shows): 2 of the 3 reports a question
                # leaves, ~3 KB of the run's memory a question of a suite of 50,000
                terminal = self.config.pluginmanager.get_plugin("terminalreporter")
                kept = terminal.stats.get("") if terminal is not None else None
                if kept and kept[-1] is report:
                    kept.pop()
            return
        props: dict[str, Any] = dict(report.user_properties)
        if RESULT_KEY in props:
            from rlhf_eval.runner import RunError

            run = the_run(self.config)
            try:
                if self.stopped is None:  # else an xdist worker's question that ran on as the run stopped
                    result = props[RESULT_KEY]
                    run.add(props[SETTINGS_KEY], json.loads(result) if isinstance(result, str) else result)
            except RunError as exc:
                self._stop(str(exc))
            if SIZE_KEY in props:
                run.suite_sizes[props[SETTINGS_KEY]["name"]] = props[SIZE_KEY]
            # pytest keeps every report to the end (the terminal's stats): the run's spool has it now
            report.user_properties = _without_result(report.user_properties)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtestloop(self, session: pytest.Session):
        yield
        run = self.config.stash.get(run_key, None)
        if self.config.stash.get(shard_key, None) is not None and (run is None or not run.results):
            run = the_run(self.config)  # a shard with no question still writes its report: the merge needs it
        elif run is None or not run.results:
            return
        if run.options.shard is not None:  # also the suites whose questions did not run (interrupted, -x)
            sizes: dict[str, int] = self.config.stash.get(sizes_key, {})
            run.suite_sizes.update(sizes)
        run.finish()
        if not run.passed:
            session.testsfailed += 1  # like --cov-fail-under: the run fails after every item ran

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)  # around the terminal's, which shows the summary
    def pytest_sessionfinish(self, session: pytest.Session):
        yield
        # pytest shows no summary for an exit status of a plugin's own (pytest.exit("...",
        # returncode=7) from a conftest): what the stopped recording kept is still said
        run = self.config.stash.get(run_key, None)
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        if not self.summarized and run is not None and run.stop_note and terminal is not None:
            terminal.write_line(run.stop_note)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        self.summarized = True
        run = self.config.stash.get(run_key, None)
        for style, text in run.summary() if run is not None else []:
            if style in ("title", "section"):
                terminalreporter.write_sep("=" if style == "title" else "-", text)
            else:
                terminalreporter.write_line(text, **({"red": True, "bold": True} if style == "fail" else {}))
