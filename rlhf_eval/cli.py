"""The ``rlhf-eval`` command (also ``python -m rlhf_eval``).

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
from typing import Callable

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
    p = sub.add_parser("html", help="write the self-contained HTML report of a JSON report")
    p.add_argument("report", metavar="REPORT.json")
    p.add_argument("output", metavar="OUT.html")
    p.set_defaults(func=run_html)


def run_html(args: argparse.Namespace) -> int:
    from .html_report import write_html

    report_ = load_report(args.report)
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


@contextlib.contextmanager
def _writing(label: str, path):
    """A disk fault or a secret while writing `path` becomes the one line of a CliError."""
    from .credentials import SecretInOutput, write_problem

    try:
        yield
    except (SecretInOutput, OSError) as exc:
        raise CliError(write_problem(label, path, exc)) from None


# ---------------------------------------------------------------------------------------------- main

SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [add_ui, add_html, add_export]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="rlhf-eval: tools for the reports of a pytest run.")
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


if __name__ == "__main__":
    sys.exit(main())
