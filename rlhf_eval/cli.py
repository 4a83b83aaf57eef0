"""The ``rlhf-eval`` command (also ``python -m rlhf_eval``): ``run`` runs suites without pytest,
``merge`` combines the reports of a sharded run, ``html``, ``export`` and ``ui`` read a JSON report;
``--version``.

Each subcommand is one ``add_<name>(subparsers)`` function that declares its arguments and sets
``func`` to a ``run_<name>(args) -> int``; list the ``add_`` function in `SUBCOMMANDS`. A run
function reports a user mistake by raising `CliError`: `main` prints it as one line on stderr and
exits 2, without a traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Callable, cast

from . import report
from .report_model import Report

PROG = "rlhf-eval"


class CliError(Exception):
    """A mistake the user can fix: printed as one line, exit status 2."""


def load_report(path: str | Path, what: str = "report") -> Report:
    try:
        return report.load_report(path, what)
    except report.ReportError as e:
        raise CliError(str(e)) from None


# ---------------------------------------------------------------------------------------------- ui

def add_ui(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ui", help="browse a JSON report in a local Gradio app",
                       description="Browse a JSON report (pytest --rlhf-report-json) in a local Gradio app: "
                                   "questions, traces, pairs, and deltas against a baseline report.")
    p.add_argument("report", metavar="REPORT.json", help="the report to browse")
    p.add_argument("--compare", metavar="BASELINE.json", help="a baseline report: show per-question deltas")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=7860, help="port (default: %(default)s)")
    p.set_defaults(func=run_ui)


def run_ui(args: argparse.Namespace) -> int:
    report = load_report(args.report)
    baseline = load_report(args.compare, "baseline report") if args.compare else None
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise CliError("the ui needs gradio: pip install 'rlhf-eval[ui]'") from None
    from .ui import build_app

    app = build_app(report, baseline, source=args.report, baseline_source=args.compare)
    try:
        app.launch(server_name=args.host, server_port=args.port, share=False, inbrowser=False, quiet=True,
                   ssr_mode=False, prevent_thread_lock=True, footer_links=["api"])
    except OSError as e:
        raise CliError(f"cannot serve on {args.host}:{args.port}: {e}") from None
    print(f"{PROG} ui: serving {args.report} at {app.local_url} (Ctrl+C to stop)", flush=True)
    try:
        app.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        app.close()
    return 0


# ------------------------------------------------------------------------------------ html, export

def add_html(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("html", help="write the self-contained HTML report of a JSON report",
                       description="Write the self-contained HTML report of a JSON report; with --compare, "
                                   "with its deltas against a baseline report (as pytest --rlhf-compare shows). "
                                   "Given the folder of step reports RLHFEvalCallback writes "
                                   "(<output_dir>/rlhf), a page of each metric over the training steps.")
    p.add_argument("report", metavar="REPORT.json|STEPS_DIR")
    p.add_argument("output", metavar="OUT.html")
    p.add_argument("--compare", metavar="BASELINE.json",
                   help="a baseline report: deltas with significance, what changed, preference drift "
                        "(replaces a comparison the report holds)")
    p.set_defaults(func=run_html)


def run_html(args: argparse.Namespace) -> int:
    from .html_report import write_html

    if Path(args.report).is_dir():
        return _steps_html(args)
    report_ = load_report(args.report)
    if args.compare:
        from .compare import compare_reports

        baseline = load_report(args.compare, "baseline report")
        report_.comparison = compare_reports(report_, baseline, Path(args.compare).stem)
    with _writing("the HTML report", args.output):
        write_html(report_, args.output)
    print(f"{PROG}: wrote {args.output}")
    return 0


def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write TRL-ready datasets (DPO, GRPO, SFT) from a JSON report",
                       description="Write TRL-ready datasets (DPO, GRPO, SFT) from a JSON report under DIR/<suite>/, "
                                   "deduplicated, with a summary in DIR/summary.json; the options are the plugin's "
                                   "--rlhf-export-* options, which are accepted too.")
    p.add_argument("report", metavar="REPORT.json")
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--pass-rate", "--rlhf-export-pass-rate", dest="pass_rate", metavar="LOW:HIGH",
                   help="only the questions whose pass rate (accuracy) is in this band: both ends kept (0.2:0.8), "
                        "or brackets for open ends: '(0:1)' drops all-wrong and all-correct questions")
    p.add_argument("--nonzero-spread", "--rlhf-export-nonzero-spread", dest="nonzero_spread", action="store_true",
                   help="only the questions whose rewards differ (a GRPO group with signal)")
    p.add_argument("--format", "--rlhf-export-format", dest="format", choices=("jsonl", "parquet"), default="jsonl",
                   help="jsonl (default) or parquet (needs pip install 'rlhf-eval[datasets]')")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from .export import ExportFilter, build_export, check_format

    for name, check in (("--pass-rate", lambda: ExportFilter.of(args.pass_rate)),
                        ("--format", lambda: check_format(args.format))):
        try:
            check()
        except ValueError as e:
            raise CliError(f"{name}: {e}") from None
    report_ = load_report(args.report)
    try:
        export = build_export(report_, args.directory, pass_rate=args.pass_rate, nonzero_spread=args.nonzero_spread,
                              format=args.format)
    except report.ReportError as e:
        raise CliError(f"{args.report}: {e}") from None
    for f in export.files:
        with _writing("the export", f.path):
            f.write()
    print(export.line())
    return 0


# ---------------------------------------------------------------------------------------------- run

def _output_options(opt: Callable[..., Any], report: str) -> None:
    """The outputs `run` and `merge` both write: HTML, exports, a saved baseline, a comparison."""
    opt("--html", default=argparse.SUPPRESS, metavar="PATH", help="write the self-contained HTML report")
    opt("--export", default=argparse.SUPPRESS, metavar="DIR", help="write TRL-ready datasets under DIR/<suite>/")
    opt("--export-pass-rate", default=argparse.SUPPRESS, metavar="LOW:HIGH",
        help="with --export: keep the questions whose pass rate is in this band ('(0:1)' leaves both ends out)")
    opt("--export-nonzero-spread", action="store_true", default=argparse.SUPPRESS,
        help="with --export: keep only the questions whose rewards differ")
    opt("--export-format", choices=("jsonl", "parquet"), default=argparse.SUPPRESS,
        help="with --export: jsonl (default) or parquet (needs datasets)")
    opt("--save", default=argparse.SUPPRESS, metavar="PATH", help=f"also write {report} here, as a baseline")
    opt("--compare", dest="baseline", default=argparse.SUPPRESS, metavar="BASELINE.json",
        help=f"compare {report} with a baseline report: deltas, significance, what changed, drift")
    opt("--compare-fail", dest="fail_rules", action="append", default=argparse.SUPPRESS, metavar="METRIC:DELTA",
        help="with --compare: fail when METRIC got worse by more than DELTA and the change is significant, "
             "e.g. accuracy:0.05 (repeatable)")


def add_run(sub: argparse._SubParsersAction) -> None:
    from .record_modes import RECORD_MODES

    p = sub.add_parser(
        "run", help="run suites without pytest (replaying their cassettes) and print the report",
        description="Run suites as `pytest SUITES` does (rlhf_eval.run_suites: the same sampling, cassettes, "
                    "report and outputs), without pytest. Replays by default: no key, no network. Exit "
                    "status as pytest's: 0 when every question and suite passed (and no regression failed), "
                    "1 when one failed or an output could not be written, 2 for a usage mistake (a bad "
                    "option, suite, path or baseline), 130 on Ctrl-C.")
    p.add_argument("paths", nargs="+", metavar="SUITE",
                   help="suite files, or folders whose suite files (--suite-files) are run")
    opt = p.add_argument
    # Options left out are not passed: run_suites' own defaults apply (the plugin's, shown in the help).
    opt("--record-mode", "--record", choices=RECORD_MODES, default=argparse.SUPPRESS,
        help="none (default: replay only) | once (record missing cassettes) | new_episodes | all | rewrite")
    opt("--record-via", choices=("online", "batch"), default=argparse.SUPPRESS,
        help="while recording: online (default) | batch (the provider's batch API, half the price; resumable)")
    opt("--cassette-dir", default=argparse.SUPPRESS, metavar="DIR", help="where cassettes live (default: cassettes)")
    opt("--report-json", default=argparse.SUPPRESS, metavar="PATH", help="write the JSON report, every trace in it")
    _output_options(opt, "the JSON report")
    opt("--concurrency", type=int, default=argparse.SUPPRESS, metavar="N",
        help="while recording: requests in flight at once (default 8)")
    opt("--rate-limit", dest="rate_limit_rpm", type=float, default=argparse.SUPPRESS, metavar="RPM",
        help="while recording: at most RPM requests a minute")
    opt("--retries", type=int, default=argparse.SUPPRESS, metavar="N", help="retries of a failed request (default 5)")
    opt("--retry-timeout", type=float, default=argparse.SUPPRESS, metavar="SECONDS",
        help="give up retrying a request after this long (default 600)")
    opt("--retry-delay", type=float, default=argparse.SUPPRESS, metavar="SECONDS",
        help="wait before the first retry when the API does not say (default 1)")
    opt("--shard", default=argparse.SUPPRESS, metavar="I/N",
        help="run only shard I of N of the questions (the same split on every machine); merge the shards' "
             f"--report-json files with {PROG} merge")
    opt("--rootdir", default=argparse.SUPPRESS, metavar="DIR",
        help="the folder --suite-files patterns are relative to (default: the working directory)")
    opt("--suite-files", dest="suite_patterns", action="append", default=argparse.SUPPRESS, metavar="PATTERN",
        help="a glob pattern of a folder's suite files, as ini rlhf_suite_files (repeatable; default: "
             "suites/*.yaml suites/*.yml *.suite.yaml *.suite.yml)")
    p.set_defaults(func=run_run)


def run_run(args: argparse.Namespace) -> int:
    from .report_model import ReportError
    from .runner import Interrupted, RunError, finished_run
    from .suite import SuiteError

    options = {k: v for k, v in vars(args).items() if k not in ("func", "command", "paths")}
    # worded with this command's options (run_suites words them as the plugin's)
    if "rootdir" in options and not Path(options["rootdir"]).is_dir():
        raise CliError(f"--rootdir {options['rootdir']}: no such folder (the folder --suite-files patterns are "
                       "relative to)")
    _check_outputs(options, f"{PROG} run SUITES --save PATH")
    try:
        run = finished_run(args.paths, **options)
    except (RunError, SuiteError, ReportError) as exc:  # before anything ran
        raise CliError(_cli_words(str(exc))) from None
    except Interrupted as exc:
        message = str(exc)
        print(message if message.startswith(f"{PROG} ") else f"{PROG}: {message}", file=sys.stderr)
        return 130
    return _finish(run)


def _check_outputs(options: dict[str, Any], save_hint: str) -> None:
    """`run`'s and `merge`'s output options that need another (worded with this command's options,
    as the plugin refuses --rlhf-export-pass-rate without --rlhf-export); a baseline's name."""
    given = [f"--{name.replace('_', '-')}" for name in ("export_pass_rate", "export_nonzero_spread", "export_format")
             if name in options]
    if given and "export" not in options:
        raise CliError(f"{given[0]} needs --export DIR")
    if "fail_rules" in options and "baseline" not in options:
        raise CliError("--compare-fail needs --compare BASELINE.json")
    if "baseline" in options:
        if not Path(options["baseline"]).is_file():
            raise CliError(f"{options['baseline']}: no such baseline report file (save one with {save_hint})")
        options["baseline_name"] = Path(options["baseline"]).stem


def _finish(run) -> int:
    """Print the plugin's closing lines (the table, what was written, the export's line, what could
    not be) and the outcome line; the exit status."""
    report_ = cast(Report, run.report)
    for style, text in run.summary():
        print(_separator("=" if style == "title" else "-", text) if style in ("title", "section") else text)
    print(outcome_line(report_))
    return 0 if run.passed and not any(_failed(s, report_) for s in report_.suites) else 1


def _failed(suite, report_: Report) -> bool:
    """A question of `suite` failed, or (in a whole run's report) a suite threshold did: a shard's
    suite thresholds are judged on the merged report."""
    return bool(suite.aggregates.questions_failed) if report_.shard is not None else suite.failed


# run_suites' keyword arguments, and the plugin's options, as this command spells them
_RUN_OPTIONS = {"concurrency": "--concurrency", "retries": "--retries", "rate_limit_rpm": "--rate-limit",
                "retry_timeout": "--retry-timeout", "retry_delay": "--retry-delay", "shard": "--shard"}


def _cli_words(message: str) -> str:
    """A runner's message about an option in this command's words: `concurrency = 0: ...` reads
    `--concurrency 0: ...`, `--rlhf-compare-fail 'x'` reads `--compare-fail 'x'`."""
    name, sep, rest = message.partition(" = ")
    if sep and name in _RUN_OPTIONS:
        return f"{_RUN_OPTIONS[name]} {rest}"
    return (message.replace("--rlhf-compare-fail", "--compare-fail")
            .replace("--rlhf-compare NAME", "--compare BASELINE.json"))


def outcome_line(report_: Report) -> str:
    """The last line of `rlhf-eval run`, like pytest's: how many questions passed, failed, errored."""
    questions = [q for s in report_.suites for q in s.questions]
    counts = {r: sum(q.result == r for q in questions) for r in ("pass", "FAIL", "ERROR")}
    shown = [f"{counts['pass']} passed"] + [f"{n} {word}" for n, word in (
        (counts["FAIL"], "failed"), (counts["ERROR"], "error" if counts["ERROR"] == 1 else "errors")) if n]
    suites = [s for s in report_.suites if s.threshold_failures]
    if suites and report_.shard is None:  # a shard's are judged on the merged report
        shown.append(f"suite thresholds failed in {', '.join(s.name for s in suites)}")
    if report_.comparison is not None and report_.comparison.failures:
        n = len(report_.comparison.failures)
        shown.append(f"{n} regression{'s' * (n != 1)}")
    n_suites = len(report_.suites)
    return (f"{PROG}: {len(questions)} question{'s' * (len(questions) != 1)} in {n_suites} "
            f"suite{'s' * (n_suites != 1)}: {', '.join(shown)}")


def _steps_html(args: argparse.Namespace) -> int:
    """`rlhf-eval html STEPS_DIR OUT.html`: the metrics of the step reports over the steps."""
    from .steps_report import write_steps_html

    if args.compare:
        raise CliError(f"--compare takes a report to compare one report with; {args.report} is a folder of step "
                       "reports, each already compared with its first step")
    with _writing("the steps page", args.output):
        try:
            steps = write_steps_html(args.report, args.output)
        except (ValueError, report.ReportError) as e:
            raise CliError(str(e)) from None
    print(f"{PROG}: wrote {args.output} ({len(steps)} steps)")
    return 0


def _separator(char: str, text: str, width: int = 80) -> str:
    """A section line as pytest writes one: `===== text =====`, `width` wide."""
    fill = max(2, (width - len(text) - 2) // 2)
    line = f"{char * fill} {text} {char * fill}"
    return line + char * (width - len(line)) if len(line) < width else line


@contextlib.contextmanager
def _writing(label: str, path):
    """A disk fault or a secret while writing `path` becomes the one line of a CliError."""
    from .credentials import SecretInOutput, write_problem

    try:
        yield
    except (SecretInOutput, OSError) as exc:
        raise CliError(write_problem(label, path, exc)) from None


# -------------------------------------------------------------------------------------------- merge

def add_merge(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "merge", help="merge the JSON reports of a sharded run (--rlhf-shard I/N) into the whole run's report",
        description="Merge the JSON reports of the N shards of a run (pytest --rlhf-shard I/N, rlhf-eval run "
                    "--shard I/N) into the report the whole run would have written: its questions, suite "
                    "aggregates, intervals, suite thresholds and, with --compare, its comparison, computed as a "
                    "single run computes them (rlhf_eval.merge). Refused in one line: a shard missing, given "
                    "twice or short of questions dealt to it (interrupted, -k), shards of other suite files, "
                    "settings, versions or commits. Prints the report; exit status as `run`'s: 0 when every "
                    "question and suite passed, 1 when one failed, 2 for reports that cannot be merged.")
    p.add_argument("reports", nargs="+", metavar="REPORT.json",
                   help="every shard's JSON report, each once (or reports of runs without --shard, e.g. one per suite)")
    opt = p.add_argument
    opt("-o", "--output", dest="report_json", default=argparse.SUPPRESS, metavar="MERGED.json",
        help="write the merged JSON report here")
    _output_options(opt, "the merged report")
    p.set_defaults(func=run_merge)


def run_merge(args: argparse.Namespace) -> int:
    from .merge import MergeError, merged_run
    from .runner import RunError

    options = {k: v for k, v in vars(args).items() if k not in ("func", "command", "reports")}
    _check_outputs(options, f"{PROG} merge REPORT.json… --save PATH, or {PROG} run SUITES --save PATH")
    try:
        run = merged_run(args.reports, **options)
    except (MergeError, RunError) as exc:
        raise CliError(_cli_words(str(exc))) from None
    return _finish(run)


# ---------------------------------------------------------------------------------------------- main

SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [add_run, add_merge, add_ui, add_html, add_export]


def version() -> str:
    """The installed rlhf-eval's version (importlib.metadata), or a line saying it is not installed."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("rlhf-eval")
    except PackageNotFoundError:
        return "unknown (not installed: run from a source folder)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="rlhf-eval: run suites without pytest, and read "
                                                            "the reports of a run.")
    parser.add_argument("--version", action="version", version=f"{PROG} {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.func(args)
    except CliError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`rlhf-eval run suites/ | head`): what was written is written; no
        # traceback, and none again when Python flushes stdout at exit (the Python docs' recipe)
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
