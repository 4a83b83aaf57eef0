"""Shard reports → the one report of the whole run (`rlhf-eval merge`).

A run split with `--rlhf-shard I/N` (rlhf_eval.shard) leaves N JSON reports. Their questions are
gathered into a `runner.Run` exactly as a single run gathers its questions' results, and
`Run.finish` builds the report: so the suite aggregates, the cluster-bootstrap intervals over every
question (same seed), the suite thresholds, the comparison with a baseline, the HTML and the
exports are computed by the very code that computes a single run's. Apart from its provenance
(when it was made, by which command, from which shard reports: `provenance.merged_from`), the
merged report is the single run's, byte for byte (tests/test_shard_merge.py).

    from rlhf_eval.merge import merge_reports
    report = merge_reports(["shard-1.json", "shard-2.json", "shard-3.json"])

Each shard report is read streamed (rlhf_eval.report_stream), one after the other: its questions
wait in a temporary file and are read back one at a time into the run, so merging the shards of a
50,000-question run does not hold their questions in memory.

Refused, in one line each (`MergeError`): a file that is not a report; shards of different runs
(a different shard count, a shard given twice or missing); a shard that holds fewer questions of a
suite than were dealt to it (interrupted, or run with -k/--lf: its report records each suite's size,
`shard.suite_sizes`) or a question that SHA-256 deals to another shard (an edited report); an output
that would overwrite a report being merged; reports made from different suite files
(their SHA-256 in `provenance.suites`), with different settings of a suite, by different versions
of rlhf-eval, Python or a package that computes results, at different git commits; the same question
in two reports. Reports with no shard (e.g. one CI job per suite) merge too, when no question is in
two of them; sharded and unsharded reports do not mix.
"""
from __future__ import annotations

import itertools
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence, cast

from .paths import shown_path
from .provenance import _version, redact_argv
from .report import load_report
from .report_model import Report, ReportError, Suite
from .runner import Run, RunError, RunOptions
from .shard import Shard, assign

__all__ = ["MergeError", "merge_reports", "merged_run"]

# The Suite fields that are its settings (report.suite_settings); the rest is computed from the questions.
_COMPUTED = ("aggregates", "threshold_failures", "questions")
# What must be the same in every shard's provenance: the code that sampled and scored its questions.
_SAME = (("rlhf_eval_version", "rlhf-eval"), ("python", "Python"))
_LISTED = 10  # shards named in a message, at most


class MergeError(ValueError):
    """Reports that cannot be merged into one run's report; the message is one line."""


def merge_reports(paths: Iterable[str | Path], *, command_line: Sequence[str] | None = None) -> Report:
    """The report of the whole run from its shards' JSON reports (see the module's docstring).

    `command_line` is what the merged report's provenance names as its command (default
    `sys.argv`). Raises MergeError (one line) for reports that cannot be merged."""
    return cast(Report, merged_run(paths, command_line=command_line).report)


def merged_run(paths: Iterable[str | Path], *, command_line: Sequence[str] | None = None, **options: Any) -> Run:
    """`merge_reports`, returning the finished `runner.Run`: `options` are RunOptions fields (report_json,
    html, export, export_*, save, baseline, baseline_name, fail_rules) and its outputs are written as a
    run writes them (`run.problems` lists those that could not be). Raises MergeError (one line) for
    reports that cannot be merged, RunError for a bad option or baseline."""
    files = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    if not files:
        raise MergeError("no report to merge: give the shards' JSON reports")
    unknown = set(options) - {"report_json", "html", "export", "export_pass_rate", "export_nonzero_spread",
                              "export_format", "save", "save_name", "baseline", "baseline_name", "fail_rules"}
    if unknown:
        raise RunError(f"merged_run() has no option {sorted(unknown)[0]!r}")
    run = Run(RunOptions(**options), command_line=command_line)
    run.load_baseline()  # a bad option or baseline is found before the reports are read
    reports = []
    seen: dict[Path, Path] = {}
    for path in files:
        first = seen.setdefault(path.resolve(), path)
        if first is not path:
            raise MergeError(f"{path}: given twice; give each shard's report once")
    outputs = [getattr(run.options, name) for name in ("report_json", "html", "save")]
    for output in outputs:
        if output is not None and output.resolve() in seen:
            raise MergeError(f"{output}: is a report being merged; write the merged report to another file")
    for path in files:
        try:
            # streamed, whatever its size: each report's questions wait in a temporary file, not in memory
            reports.append((str(path), load_report(path, "shard report", "write one with pytest --rlhf-shard I/N "
                                                                          f"--rlhf-report-json={path}", stream=True)))
        except ReportError as exc:
            raise MergeError(str(exc)) from None
    _check_shards(reports)
    merged_provenance = _provenance(reports, command_line)
    settings = _check_suites(reports)
    owner: dict[tuple[str, str], str] = {}  # (suite, question id) -> the report it came from
    held: dict[tuple[str, str], list[str]] = {}  # (report, suite) -> its question ids, for _check_complete
    for source, report in reports:
        for suite in report.suites:
            ids = held.setdefault((source, suite.name), [])
            for question in suite.questions:  # read from disk one at a time
                key = (suite.name, question.id)
                other = owner.setdefault(key, source)
                if other != source:
                    raise MergeError(f"{suite.name}::{question.id} is in both {other} and {source}: a question "
                                     "belongs to one shard; merge the reports of one sharded run")
                ids.append(question.id)
                run.add(settings[suite.name], question)
    _check_complete(reports, held)
    run.finish(merged_provenance)
    return run


def _check_shards(reports: list[tuple[str, Report]]) -> None:
    """All reports are the shards 1..N of one run, each once, or none is a shard."""
    sharded = [(source, r.shard) for source, r in reports if r.shard is not None]
    if not sharded:
        return
    if len(sharded) != len(reports):
        whole = next(source for source, r in reports if r.shard is None)
        raise MergeError(f"{whole} is not a shard's report but {sharded[0][0]} is shard "
                         f"{sharded[0][1].index}/{sharded[0][1].count}: merge the N shards of one run "
                         "(or only reports without --rlhf-shard)")
    first_source, first = sharded[0]
    by_index: dict[int, str] = {}
    for source, shard in sharded:
        if shard.count != first.count:
            raise MergeError(f"{source} is shard {shard.index}/{shard.count} but {first_source} is shard "
                             f"{first.index}/{first.count}: the shards of one run share N")
        other = by_index.setdefault(shard.index, source)
        if other != source:
            raise MergeError(f"shard {shard.index}/{shard.count} given twice: {other} and {source}")
    n_missing = first.count - len(by_index)
    if n_missing:
        # named up to a few: N comes from a report, and a typo (1/100000000) must not list them all
        missing = list(itertools.islice((i for i in range(1, first.count + 1) if i not in by_index), _LISTED))
        names, got = (", ".join(f"{i}/{first.count}" for i in indexes)
                      for indexes in (missing, sorted(by_index)[:_LISTED]))
        names += f" and {n_missing - len(missing):,} more" if n_missing > len(missing) else ""
        got += f" and {len(by_index) - _LISTED:,} more" if len(by_index) > _LISTED else ""
        raise MergeError(f"missing shard{'s' * (n_missing != 1)} {names} of {first.count}: merge the reports "
                         f"of all {first.count} shards (got {got})")


def _check_complete(reports: list[tuple[str, Report]], ids: dict[tuple[str, str], list[str]]) -> None:
    """Every shard holds each question dealt to it (`Shard.dealt`, from the suite sizes the shards
    recorded), and each is in the shard SHA-256 deals it to: else the merge would be a report of
    part of the run, or of questions moved by hand. Suites no report gives a size of (reports of
    rlhf-eval before shards recorded them) are not checked. `ids`: (report, suite) -> the ids of
    the suite's questions in that report (gathered as they were merged: a report's questions are
    read from disk)."""
    sharded = [(source, r.shard, r) for source, r in reports if r.shard is not None]
    sizes: dict[str, tuple[int, str]] = {}  # suite -> (how many questions its file has, the report saying so)
    for source, shard, _ in sharded:
        for name, size in (shard.suite_sizes or {}).items():
            known = sizes.setdefault(name, (size, source))
            if known[0] != size:
                raise MergeError(f"suite {name} has {size} questions in {source} but {known[0]} in {known[1]}: "
                                 "run every shard on the same suite files")
    for name, (size, _) in sorted(sizes.items()):
        held = {source: ids.get((source, name), []) for source, _, _ in sharded}
        count = sharded[0][1].count
        for source, shard, _ in sharded:
            want, got = Shard(shard.index, count).dealt(name, size), len(held[source])
            if got < want:
                raise MergeError(f"{source} holds {got} of the {want} questions of suite {name} dealt to shard "
                                 f"{shard.index}/{count}: that shard was interrupted (Ctrl-C, -x) or ran with "
                                 "-k, --lf or --deselect; run it again in full, then merge")
        where = {qid: (source, shard.index) for source, shard, _ in sharded for qid in held[source]}
        if len(where) != size:
            raise MergeError(f"the shards hold {len(where)} questions of suite {name}, which has {size}: "
                             "merge the reports of one sharded run")
        for qid, shard_index in assign(name, where, count).items():
            source, index = where[qid]
            if index != shard_index:
                raise MergeError(f"{name}::{qid} is in {source}, shard {index}/{count}, but SHA-256 deals it to "
                                 f"shard {shard_index}/{count}: the report was edited or comes from another run; "
                                 "merge the reports of one sharded run")


def _settings(suite: Suite) -> dict[str, Any]:
    """A report suite's settings, as `report.suite_settings` gave them to the run that wrote it."""
    return suite.model_dump(mode="json", exclude_unset=True, exclude=set(_COMPUTED))


def _check_suites(reports: list[tuple[str, Report]]) -> dict[str, dict[str, Any]]:
    """Each suite's settings (the same in every report that ran it, else MergeError)."""
    settings: dict[str, dict[str, Any]] = {}
    first_in: dict[str, str] = {}
    for source, report in reports:
        for suite in report.suites:
            mine = _settings(suite)
            theirs = settings.setdefault(suite.name, mine)
            first_in.setdefault(suite.name, source)
            if mine != theirs:
                key = _first_difference(theirs, mine)
                raise MergeError(f"suite {suite.name} has other settings in {source} than in {first_in[suite.name]} "
                                 f"({key}: {_short(theirs, key)} → {_short(mine, key)}): merge the shards of one run")
    return settings


def _first_difference(a: Any, b: Any, prefix: str = "") -> str:
    """The dotted key of the first value that differs between two settings dicts."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in [*a, *(k for k in b if k not in a)]:
            if a.get(key, _MISSING) != b.get(key, _MISSING):
                return _first_difference(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else str(key))
    return prefix or "(settings)"


_MISSING = object()


def _short(settings: dict[str, Any], dotted: str, limit: int = 60) -> str:
    value: Any = settings
    for part in dotted.split("."):
        value = value.get(part, "(none)") if isinstance(value, dict) else "(none)"
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _provenance(reports: list[tuple[str, Report]], command_line: Sequence[str] | None) -> dict[str, Any]:
    """The merged report's provenance: the shards' (which must agree on the code and the suite files
    that made their results), made now by `command_line`, with each shard's time and command under
    `merged_from`."""
    given = [(source, r.provenance) for source, r in reports if r.provenance]
    for source, prov in given:
        _check_provenance(source, prov)
    merged: dict[str, Any] = {"time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    if given:
        first_source, first = given[0]
        for source, prov in given[1:]:
            for key, what in _SAME:
                if prov.get(key) != first.get(key):
                    raise MergeError(f"{source} was made with {what} {prov.get(key) or '(not recorded)'} but "
                                     f"{first_source} with {first.get(key) or '(not recorded)'}: merge shards run "
                                     "with the same versions")
            packages, theirs = prov.get("packages") or {}, first.get("packages") or {}
            for name in sorted(set(packages) | set(theirs)):
                if packages.get(name) != theirs.get(name):
                    raise MergeError(f"{source} was made with {name} {packages.get(name) or 'not installed'} but "
                                     f"{first_source} with {theirs.get(name) or 'not installed'}: merge shards run "
                                     "with the same versions")
        ours = _version("rlhf-eval")
        if first.get("rlhf_eval_version") and ours and first.get("rlhf_eval_version") != ours:
            raise MergeError(f"{first_source} was made with rlhf-eval {first.get('rlhf_eval_version')}, this is "
                             f"{ours}: merge with the version that ran the shards (it computes the aggregates)")
        git = _git([(source, prov.get("git")) for source, prov in given])
        suites: dict[str, dict[str, Any]] = {}
        where: dict[str, str] = {}
        for source, prov in given:
            for name, entry in (prov.get("suites") or {}).items():
                known = suites.setdefault(name, entry)
                where.setdefault(name, source)
                if (entry or {}).get("sha256") != (known or {}).get("sha256"):
                    raise MergeError(
                        f"suite {name} was run from another file in {source} than in {where[name]} (sha256 "
                        f"{str((entry or {}).get('sha256'))[:12]}… of {(entry or {}).get('path')} vs "
                        f"{str((known or {}).get('sha256'))[:12]}… of {(known or {}).get('path')}): "
                        "run every shard on the same suite files")
        merged.update({"rlhf_eval_version": first.get("rlhf_eval_version"), "python": first.get("python"),
                       "packages": first.get("packages") or {}, "git": git})
    merged["command_line"] = redact_argv(sys.argv if command_line is None else command_line)
    if given:
        merged["suites"] = dict(sorted(suites.items()))
    merged["merged_from"] = [
        {"report": shown_path(source), "shard": f"{r.shard.index}/{r.shard.count}" if r.shard else None,
         "time": (r.provenance or {}).get("time"), "command_line": (r.provenance or {}).get("command_line")}
        for source, r in reports]
    return merged


def _check_provenance(source: str, prov: dict[str, Any]) -> None:
    """The parts of a report's provenance the merge compares have their shapes (the report model
    leaves provenance free-form): else MergeError, not an AttributeError on a hand-edited file."""
    suites = prov.get("suites")
    shapes = [(f"provenance.{key}", prov.get(key)) for key in ("packages", "suites")]
    if isinstance(suites, dict):
        shapes += [(f"provenance.suites.{name}", entry) for name, entry in suites.items()]
    for where, value in shapes:
        if value is not None and not isinstance(value, dict):
            raise MergeError(f"{source}: {where} is a {type(value).__name__}, not a mapping: the report was edited or "
                             "is not rlhf-eval's; write it again with pytest --rlhf-report-json=PATH")


def _git(states: list[tuple[str, Any]]) -> dict[str, Any] | None:
    """The shards' git state: one commit (else MergeError); dirty when any shard's tree was."""
    known = [(source, state) for source, state in states if isinstance(state, dict) and state.get("commit")]
    if not known:
        return None
    first_source, first = known[0]
    for source, state in known[1:]:
        if state["commit"] != first["commit"]:
            raise MergeError(f"{source} was run at git commit {str(state['commit'])[:12]} but {first_source} at "
                             f"{str(first['commit'])[:12]}: run every shard on the same commit")
    return {**first, "dirty": any(bool(state.get("dirty")) for _, state in known)}
