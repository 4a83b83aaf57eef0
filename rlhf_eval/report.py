"""The run report: question dicts → the typed `Report` (report_model) with suite aggregates → the
terminal table (rows) → text; `write_json` / `load_report` write and read it as JSON.

Each step is its own function (data → model → rows → rendering), and the JSON holds every trace with
the settings used, so every number can be recomputed from the file alone (tests/test_report.py does).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Collection, Iterable, Iterator, Sequence

import numpy as np
from pydantic import ValidationError

from . import objectives as obj
from . import rows as rows_
from . import stats
from .compare import one_sided_lines
from .credentials import redact_base_urls
from .paths import shown_path
from .prices import suite_price
from .report_model import (REPORT_VERSION, Comparison, Question, Report, ReportError, Suite, SuiteAggregates,
                           problem_line)
from .suite import Bound
from .spool import QuestionSpool
from .tally import SuiteTally
from .thresholds import check_thresholds

__all__ = ["REPORT_VERSION", "Report", "ReportError", "aggregates_of", "build_report", "build_streamed_report",
           "load_report", "report_question", "render_comparison",
           "render_table", "report_lines", "suite_aggregates", "suite_intervals", "suite_settings", "summary_lines",
           "usage_line", "write_json"]


def suite_settings(suite) -> dict[str, Any]:
    """The settings a reader needs to recompute the metrics of `suite` from its traces."""
    s = suite.spec
    return redact_base_urls({
        "name": s.suite, "path": shown_path(suite.path), "description": s.description,
        "model": s.model.model_dump(), "samples": s.samples, "seed": s.seed,
        "verifier": {"name": s.verifier.name, **s.verifier.options},
        "rewards": s.rewards.model_dump(),
        "reward_funcs": [{"name": name, "weight": weight} for name, weight in suite.reward_funcs],
        "dpo": s.dpo.model_dump(), "grpo": s.grpo.model_dump(),
        "suite_thresholds": {k: v.model_dump(exclude_none=True) for k, v in s.suite_thresholds.items()},
        "price": price.to_dict() if (price := suite_price(s.model)[0]) is not None else None,
    })


def suite_aggregates(questions: list[Question], dpo: dict, settings: dict | None = None) -> SuiteAggregates:
    """Suite-level metrics over the questions that ran (pooled over traces and pairs); `settings`
    (`suite_settings`) gives the price for the cost."""
    tally = SuiteTally(dpo)
    for q in questions:
        tally.add(q)
    return aggregates_of(tally, dpo, settings)


def aggregates_of(tally: SuiteTally, dpo: dict, settings: dict | None = None) -> SuiteAggregates:
    """`suite_aggregates` from a `SuiteTally` of the suite's questions (added in report order): what
    a run that streams its questions to disk (rlhf_eval.spool) keeps instead of the questions."""
    settings = settings or {}
    scored = tally.scored
    n = tally.traces
    correct = tally.correct
    margins = np.frombuffer(tally.margins, dtype=float) if len(tally.margins) else np.zeros(0)
    out: dict[str, Any] = {
        "questions": tally.questions,
        "questions_failed": tally.failed,
        "traces": n,
        "accuracy": correct / n if n else None,
        "pass_at_k": _mean(tally.pass_at_k),
        "unparsable_rate": tally.unparsable / n if n else None,
        "pairs": tally.pairs,
        "mean_spread": _mean(tally.spreads),
        "frac_zero_spread": obj.frac_zero_spread(tally.spreads) if scored else None,
        # answer and reasoning tokens apart, over the traces whose API reported them
        "mean_tokens": _mean(tally.token_counts),
        "mean_reasoning_tokens": _mean(tally.reasoning_tokens),
        "dpo_unavailable": (tally.dpo_unavailable if scored and tally.dpo_unavailable_count == scored
                            else None),
    }
    out["maj_at_k"] = _mean(tally.maj_at_k)
    if out["dpo_unavailable"] or not len(margins):
        out.update({"mean_margin": None, "reward_accuracy": None, "dpo_loss": None})
    else:
        out["mean_margin"] = float(margins.mean())
        out["reward_accuracy"] = obj.reward_accuracy(margins)
        out["dpo_loss"] = (obj.simpo_loss(margins, dpo["simpo_gamma"]) if dpo["length_normalized"]
                           else obj.dpo_loss(margins, dpo["loss_type"], dpo["label_smoothing"], beta=dpo["beta"]))
    out["unique_traces"] = tally.unique_traces if scored else None
    for curve in ("pass_at", "pass_hat"):
        out[curve] = tally.curve(curve)  # k up to the shortest
    out.update(_usage_and_cost(tally, settings))
    out.update(_length_bias(tally, with_margins=out["mean_margin"] is not None))
    out["intervals"] = stats.cluster_bootstrap_intervals(
        tally.n_traces, tally.n_correct, tally.spreads, tally.question_margins(),
        with_margins=out["mean_margin"] is not None)
    return SuiteAggregates.model_validate(out, strict=False)


def _usage_and_cost(tally: SuiteTally, settings: dict) -> dict[str, Any]:
    """The suite's token totals (`evaluate.token_usage` over all its traces) and their cost at the
    suite's price (`settings["price"]`, from `suite_settings`), with why there is no cost."""
    from .evaluate import token_usage  # evaluate imports the backends: only when a report is built
    from .prices import Price

    raw = settings.get("price")
    price = Price(float(raw["input"]), float(raw["output"]), str(raw.get("source", ""))) if raw else None
    out: dict[str, Any] = token_usage([tally.usage()], price)  # the suite's sums: one trace's worth
    if out["cost_usd"] is None:
        traces = tally.traces
        if price is None:
            out["cost_unavailable"] = suite_price(settings.get("model") or {})[1]
        elif not traces:
            out["cost_unavailable"] = "no trace was scored"
        else:
            out["cost_unavailable"] = (f"{tally.usage_missing} of {traces} traces came from requests whose "
                                       "response reported no token usage")
    return out


def _length_bias(tally: SuiteTally, *, with_margins: bool) -> dict[str, Any]:
    """margin_per_token over every scored pair of the suite, and the correlation of pair margins
    with their token-length difference (rlhf_eval.length_bias), with why there is none."""
    from .length_bias import pearson

    if not with_margins:
        return {"margin_per_token": None, "margin_length_corr": None}
    per_token = np.frombuffer(tally.per_token, dtype=float) if len(tally.per_token) else np.zeros(0)
    corr, why = pearson(tally.bias_margins, tally.length_diffs)
    return {"margin_per_token": float(per_token.mean()) if len(per_token) else None,
            "margin_length_corr": corr, "margin_length_corr_unavailable": why}


def suite_intervals(questions: list[Question], *, with_margins: bool, n_resamples: int = 2000,
                    seed: int = 0) -> dict[str, list[float]]:
    """95% intervals of suite aggregates by a cluster bootstrap over `questions` (scored ones,
    metrics set); see `stats.cluster_bootstrap_intervals`. Returns {metric: [low, high]}."""
    return stats.cluster_bootstrap_intervals(
        [len(q.traces) for q in questions],
        [sum(t.verdict == "correct" for t in q.traces) for q in questions],
        [q.metrics.spread if q.metrics else None for q in questions],
        [[p.margin for p in q.pairs if p.margin is not None] for q in questions],
        with_margins=with_margins, n_resamples=n_resamples, seed=seed)


def load_report(path: str | Path, what: str = "report", hint: str | None = None, *,
                stream: bool | None = None) -> Report:
    """Read a JSON report written by ``pytest --rlhf-report-json`` (`Report.load`); any problem is a
    one-line ReportError. A file over `report_stream.STREAM_ABOVE_BYTES` (or any, with `stream`) is
    read a piece at a time, its questions kept on disk (rlhf_eval.report_stream)."""
    return Report.load(path, what, hint, stream=stream)


def build_report(questions: Iterable[dict | Question], suites: dict[str, dict]) -> Report:
    """The whole run as a Report, questions in suite order whatever order they ran in.

    `questions`: QuestionResult.to_dict() dicts (or Question models); `suites`: suite name →
    `suite_settings(suite)`. Raises ReportError for a question dict that does not fit the model (a bug)."""
    by_suite: dict[str, list[Question]] = {}
    for q in questions:
        q = q if isinstance(q, Question) else report_question(q)
        by_suite.setdefault(q.suite, []).append(q)
    out_suites = []
    for name in sorted(by_suite):
        qs = sorted(by_suite[name], key=lambda q: q.index)
        settings = suites.get(name, {})
        out_suites.append(_report_suite(name, settings, suite_aggregates(qs, settings.get("dpo", {}), settings), qs))
    return Report(version=REPORT_VERSION, suites=out_suites)


def build_streamed_report(spool: QuestionSpool, suites: dict[str, dict]) -> Report:
    """`build_report` of the questions in `spool`, which stay there: each suite's `questions` is a
    `SpooledQuestions` (read from disk, one question at a time), its aggregates come from a
    `SuiteTally` of one pass over them. The same report, byte for byte in its JSON, as
    `build_report` of the same questions; its memory does not grow with the questions."""
    out_suites = []
    for name in sorted(spool.suites()):
        qs = spool.questions(name)
        settings = suites.get(name, {})
        dpo = settings.get("dpo", {})
        tally = SuiteTally(dpo)
        for q in qs:
            tally.add(q)
        out_suites.append(_report_suite(name, settings, aggregates_of(tally, dpo, settings), qs))
    return Report(version=REPORT_VERSION, suites=out_suites)


def _report_suite(name: str, settings: dict, aggregates: SuiteAggregates, questions: Sequence[Question]) -> Suite:
    suite = Suite.model_validate({**settings, "name": name, "questions": []}, strict=False)
    suite.aggregates = aggregates
    suite.threshold_failures = suite_threshold_failures(aggregates, settings)
    suite.questions = questions  # type: ignore[assignment]  # validated already (a list, or read from disk)
    return suite


def report_question(data: dict) -> Question:
    """A `QuestionResult.to_dict()` dict as the report's `Question` (ReportError, one line, for one
    that does not fit: a bug)."""
    return _question(data)


def _question(data: dict) -> Question:
    # Strict first: QuestionResult.to_dict() gives plain Python values, and pydantic's strict path is
    # the faster one; a numpy scalar (a team's verifier or reward) is converted by the lax one.
    try:
        return Question.model_validate(data, strict=True)
    except ValidationError:
        pass
    try:
        return Question.model_validate(data, strict=False)
    except ValidationError as e:
        raise ReportError(problem_line(f"question {data.get('suite')}::{data.get('id')}", e,
                                  "a bug in rlhf-eval or in a plugin that adds to results: please report it")) from None


def suite_threshold_failures(aggregates: SuiteAggregates, settings: dict) -> list[str]:
    """One line per breached suite threshold (like --cov-fail-under)."""
    thresholds = {name: Bound(**raw) for name, raw in (settings.get("suite_thresholds") or {}).items()}
    n = aggregates.questions
    nothing_scored = (f"none of its {n} question{'s' * (n != 1)} was scored: see their errors above"
                      if not aggregates.traces else None)
    failures, _ = check_thresholds(aggregates.model_dump(), thresholds, aggregates.dpo_unavailable,
                                   aggregates.intervals, unmeasured="fail", nothing_scored=nothing_scored)
    # the suite knows why it has no cost or length correlation: that reason, not the list of possible ones
    why = {"cost_usd": aggregates.cost_unavailable, "margin_length_corr": aggregates.margin_length_corr_unavailable}
    return [f"{f.metric} could not be measured: {why[f.metric]}"
            if f.value is None and why.get(f.metric) else f.reason for f in failures]


SUITE_ROW = "(suite)"  # the suite row's label: parentheses are never in a question id
MAX_REASONS = 10  # FAIL / ERROR lines of questions shown per suite; the rest are counted


def suite_rows(suite: Suite, maj_at_k: bool = False, digest: rows_.SuiteDigest | None = None) -> Iterator[list[str]]:
    """A suite's rows of the terminal table (`columns(maj_at_k)` without the suite): one per
    question, then the suite's (labelled SUITE_ROW), made one at a time. `digest`:
    `rows_.suite_digest(suite)`, when the caller has it."""
    yield from (digest or rows_.suite_digest(suite, MAX_REASONS)).table_rows(maj_at_k)
    yield [SUITE_ROW, *(rows_.cells_text(c) for c in rows_.suite_cells(suite, maj_at_k)), rows_.suite_result(suite)]


def report_rows(report: Report, maj_at_k: bool | None = None) -> list[list[str]]:
    """Every row of the terminal tables, each led by its suite's name (`columns(maj_at_k)`); maj@k
    when the report has it unless `maj_at_k` says."""
    maj = rows_.has_maj_at_k(report.suites) if maj_at_k is None else maj_at_k
    return [[s.name, *row] for s in report.suites for row in suite_rows(s, maj)]


def columns(maj_at_k: bool = False) -> list[str]:
    return ["suite", "question", *(c.label for c in rows_.summary_columns(maj_at_k)), "result"]


def suite_heading(suite: Suite) -> str:
    """The line above a suite's table: what ran (model, k, how many questions)."""
    n = suite.aggregates.questions if "questions" in suite.aggregates.model_fields_set else len(suite.questions)
    return (f"{suite.name} · {suite.model.get('name', '?')} · k = {rows_.fmt(suite.samples)} · "
            f"{n} question{'s' * (n != 1)}")


def suite_notes(suite: Suite, digest: rows_.SuiteDigest | None = None) -> list[tuple[str, str]]:
    """The lines under a suite's table, each with its style ("text" or "fail"): why its DPO metrics
    are unavailable (once), why each FAIL or ERROR question row failed (the first MAX_REASONS), and
    why the suite's row says FAIL. `digest`: `rows_.suite_digest(suite)`, when the caller has it
    (all of it comes from that one pass over the questions: a large report reads them from disk)."""
    d = digest if digest is not None and digest.reasons == MAX_REASONS else rows_.suite_digest(suite, MAX_REASONS)
    lines = [("text", line) for line in rows_.dpo_unavailable_lines(suite, d)]
    usage = usage_line(suite, d)
    lines += [("text", usage)] if usage else []
    said = d.dpo_unavailable_said  # by the DPO line(s) above

    def once(reason: str) -> str:  # a gate on a DPO metric names the line that says why, not the reason again
        for why in said:
            reason = reason.replace(f" is unavailable: {why}", " is unavailable (see DPO metrics unavailable above)")
        return reason

    lines += [("fail", f"{result} {suite.name}::{qid}: {once(reason)}") for result, qid, reason in d.failing]
    if d.failing_count > len(d.failing):
        lines.append(("fail", f"… and {d.failing_count - len(d.failing)} more failing questions of {suite.name} "
                              "(each one's reason is in the JSON report: questions[].failures and .error)"))
    lines += [("fail", f"FAIL suite {suite.name}: {once(reason)}")
              for reason in rows_.suite_failure_reasons(suite, d)]
    return lines


def report_lines(report: Report | dict, maj_at_k: bool | None = None) -> list[tuple[str, str]]:
    """The terminal report as (style, line): per suite a heading, its table (question rows, then
    the suite's row) and `suite_notes`; style "fail" for a failure's line, else "text". Numbers are
    right-aligned, and the columns line up across suites. maj@k is shown when the report has it."""
    report = Report.of(report)
    # one pass over each suite's questions gives its rows and its notes (rows_.SuiteDigest)
    digests = [rows_.suite_digest(s, MAX_REASONS) for s in report.suites]
    maj = rows_.has_maj_at_k(report.suites, digests) if maj_at_k is None else maj_at_k
    headers = columns(maj)[1:]
    # one alignment for every suite's rows, so the columns line up from one suite to the next; the
    # rows are made twice (widths, then lines) rather than held: 0.5 KB a question as lists of strings
    left = (0, len(headers) - 1)
    widths = column_widths(headers, (r for s, d in zip(report.suites, digests) for r in suite_rows(s, maj, d)))
    head, rule = table_line(headers, widths, left), table_line(["-" * w for w in widths], widths, left)
    out: list[tuple[str, str]] = []
    for n, (s, d) in enumerate(zip(report.suites, digests)):
        if n:
            out.append(("text", ""))
        out += [("text", suite_heading(s)), ("text", head), ("text", rule)]
        out += [("text", table_line(row, widths, left)) for row in suite_rows(s, maj, d)]
        out += suite_notes(s, d)
    return out


def summary_lines(report: Report) -> list[tuple[str, str]]:
    """What closes a run (pytest's terminal summary, `rlhf-eval run`), as (style, text): "title" and
    "section" (a separator line with the text), "text", or "fail" (shown red). The report's tables
    with every FAIL's reason, then the comparison with its regressions when it has one."""
    lines = [("title", "rlhf-eval report"), *report_lines(report)]
    if report.comparison is not None:
        lines += [("section", f"compared with baseline {report.comparison.baseline}"),
                  ("text", render_comparison(report.comparison))]
        lines += [("fail", f"FAIL regression: {line}") for line in report.comparison.failures]
    return lines


def render_table(report: Report | dict, maj_at_k: bool | None = None) -> str:
    """The terminal report (`report_lines`) as text."""
    return "\n".join(text for _, text in report_lines(report, maj_at_k))


def usage_line(suite: Suite, digest: rows_.SuiteDigest | None = None) -> str | None:
    """What a suite's requests were billed, in one line under its table (None when no trace was
    scored): `tokens: 4,692 prompt + 6,815 output (4,232 thinking) = 11,507; cost $0.0210` (the
    thinking count when there was thinking, the cost when the suite has a price; how many questions
    that errored are not counted, when some did), or, when a response
    reported no usage, `tokens: none (3 of 32 traces came from requests whose response reported no
    token usage)`, never a partial sum. `digest`: `rows_.suite_digest(suite)`, when the caller has it."""
    a = suite.aggregates
    d = digest or rows_.suite_digest(suite, MAX_REASONS)
    if a.total_tokens is None:
        missing, n, kept = d.usage_missing, d.traces, d.usage_kept
        # nothing scored (see the errors), traces left out, or a report from before usage was kept
        if not missing or not kept:
            return None
        no_cost = ", so no cost" if suite.price else ""
        return (f"tokens: none ({missing} of {n} traces came from requests whose response "
                f"reported no token usage){no_cost}")
    thinking = f" ({a.thinking_tokens:,} thinking)" if a.thinking_tokens else ""
    cost = f"; cost ${a.cost_usd:,.4f}" if a.cost_usd is not None else ""
    # the totals are over the scored questions' traces: a question that errored has none, whatever it sent
    errored = d.errored
    left_out = (f" (the scored questions' requests; {errored} question{'s' * (errored != 1)} that errored "
                "not counted)") if errored else ""
    return (f"tokens: {a.prompt_tokens:,} prompt + {a.output_tokens:,} output{thinking} "
            f"= {a.total_tokens:,}{cost}{left_out}")


def write_json(report: Report | dict, path: str | Path) -> None:
    """Write atomically (`Report.dump`), so a reader never sees half a report. Raises OSError, or
    SecretInOutput (and writes nothing) if the report would contain one of the run's secrets."""
    Report.of(report).dump(path)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


COMPARISON_COLUMNS = ["suite", "metric", "baseline", "current", "delta", "p", "significant"]


def comparison_rows(comparison: Comparison) -> list[list[str]]:
    """One row per compared suite metric; a metric measured on one side only reads "none" on the
    other, and is significant (its reason follows the table: `lost_lines`)."""
    rows = []
    for s in comparison.suites:
        for metric, e in s.aggregates.items():
            mark = ("WORSE" if e.worse else "better") if e.significant else ""
            one_sided = e.reason is not None
            rows.append([s.name, metric, "none" if one_sided and e.baseline is None else rows_.fmt(e.baseline),
                         "none" if one_sided and e.current is None else rows_.fmt(e.current),
                         rows_.fmt_signed(e.delta), rows_.fmt_p(e.p_value), mark])
    return rows


def render_comparison(comparison: Comparison, max_drift: int = 10) -> str:
    """What else changed (model, settings, prompts, suites that ran on one side only: `notes`), the
    suite deltas with significance and why a metric went missing, then the preference drift: answer
    pairs whose preference flipped, and questions whose GRPO signal was lost or gained (the first
    `max_drift` lines)."""
    notes = comparison.notes or ([comparison.note] if comparison.note else [])  # a report before `notes`
    lines = [f"note: {note}" for note in notes]
    rows = comparison_rows(comparison)
    if rows:
        lines += aligned(COMPARISON_COLUMNS, rows, left={0, 1, 6})
    lines += [line for _, line in one_sided_lines(comparison)]
    drift = []
    for s in comparison.suites:
        for qid, q in s.questions.items():
            for f in q.flips:
                drift.append(f"{s.name}::{qid}: {f.chosen} over {f.rejected} {f.direction} "
                             f"(margin {f.baseline_margin:+.3f} → {f.current_margin:+.3f})")
            if q.grpo_signal:
                drift.append(f"{s.name}::{qid}: GRPO signal {q.grpo_signal}")
    if drift:
        lines.append(f"preference drift ({len(drift)}):")
        lines += ["  " + d for d in drift[:max_drift]]
        if len(drift) > max_drift:
            lines.append(f"  … and {len(drift) - max_drift} more in the JSON report (comparison.suites[].questions)")
    return "\n".join(lines)


def aligned(headers: list[str], rows: list[list[str]], left: Collection[int] = (0,)) -> list[str]:
    """A plain table: the header, a rule, the rows; columns in `left` left-aligned (names, words),
    the others right-aligned (numbers); no trailing spaces."""
    widths = column_widths(headers, rows)
    return [table_line(r, widths, left) for r in (headers, ["-" * w for w in widths], *rows)]


def column_widths(headers: list[str], rows: Iterable[list[str]]) -> list[int]:
    """Each column's width in `aligned`: its longest cell or header (`rows` read once)."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    return widths


def table_line(cells: list[str], widths: list[int], left: Collection[int] = (0,)) -> str:
    """One line of `aligned`'s table."""
    return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
