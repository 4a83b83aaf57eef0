"""What the report's readers show, defined once: metric definitions, the summary table's columns and
cells, and the number formatters. The terminal table (`report.render_table`), the HTML report
(`html_report`) and the Gradio viewer (`ui`) all render from here, so a metric has one label, one
format, one place in the order and one "higher is better" wherever it appears.

Formatting is plain text: `fmt(None)` is "-", a float has `digits` decimals, an int is exact. The
HTML report escapes these strings and sets minus signs typographically (`typographic`).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Iterator, NamedTuple, TypeGuard

from .report_model import Question, Suite

UNAVAILABLE = "unavailable"  # a DPO metric of a model that gave no log-probabilities


@dataclass(frozen=True)
class Metric:
    """A metric as readers show it. `higher_is_better` None: neither (a count, a size); `dpo`: needs
    log-probabilities, so it is "unavailable" (with the reason) rather than a number without them."""
    key: str
    label: str
    digits: int = 3
    higher_is_better: bool | None = None
    dpo: bool = False


# The one order metrics are listed in (a question's metrics, then the suite-only ones).
METRICS: dict[str, Metric] = {m.key: m for m in (
    Metric("k", "k"),
    Metric("correct", "correct"),
    Metric("incorrect", "incorrect"),
    Metric("unparsable", "unparsable"),
    Metric("blocked", "blocked"),
    Metric("truncated", "truncated"),
    Metric("error", "error"),
    Metric("accuracy", "accuracy", higher_is_better=True),
    Metric("pass_at_k", "pass@k", higher_is_better=True),
    Metric("maj_at_k", "maj@k", higher_is_better=True),
    Metric("pass_at", "pass@1…k"),
    Metric("pass_hat", "pass^1…k"),
    Metric("unparsable_rate", "unparsable", higher_is_better=False),
    Metric("unique_traces", "unique traces"),
    Metric("spread", "spread", higher_is_better=True),
    Metric("nonzero_advantages", "nonzero advantages"),
    Metric("pairs", "pairs"),
    Metric("pairs_scored", "pairs scored"),
    Metric("mean_margin", "mean margin", higher_is_better=True, dpo=True),
    Metric("reward_accuracy", "reward acc", higher_is_better=True, dpo=True),
    Metric("dpo_loss", "DPO loss", higher_is_better=False, dpo=True),
    Metric("mean_logp", "mean logp", digits=2, dpo=True),
    Metric("mean_ref_logp", "mean ref logp", digits=2, dpo=True),
    Metric("mean_tokens", "mean tokens", digits=2),
    Metric("mean_reasoning_tokens", "mean reasoning tokens", digits=2),
    Metric("prompt_tokens", "prompt tokens"),
    Metric("output_tokens", "output tokens"),
    Metric("total_tokens", "total tokens"),
    Metric("answer_tokens", "answer tokens"),
    Metric("thinking_tokens", "thinking tokens"),
    Metric("cost_usd", "cost (USD)", digits=4, higher_is_better=False),
    Metric("margin_per_token", "margin per token", digits=4, dpo=True),
    # suite aggregates only
    Metric("questions", "questions"),
    Metric("questions_failed", "questions failed"),
    Metric("traces", "traces"),
    Metric("mean_spread", "mean spread", higher_is_better=True),
    Metric("frac_zero_spread", "zero spread", higher_is_better=False),
    Metric("margin_length_corr", "margin~length r", dpo=True),
)}
DPO_METRICS = frozenset(k for k, m in METRICS.items() if m.dpo)
# Metrics that are a value per budget k = 1..k (index k - 1): drawn as a curve, not shown as a number.
CURVES = ("pass_at", "pass_hat")
# Suite aggregates a summary names, in this order (the viewer's suite lines and their deltas).
SUITE_SUMMARY = ("accuracy", "pass_at_k", "pairs", "mean_margin", "reward_accuracy", "mean_spread", "frac_zero_spread")


def metric_order(keys) -> list[str]:
    """`keys` in the order of METRICS, unknown ones (a newer version's, a team's) after, sorted."""
    keys = set(keys)
    return [k for k in METRICS if k in keys] + sorted(keys - METRICS.keys())


_DIGITS = {k: m.digits for k, m in METRICS.items()}


def digits_of(key: str) -> int:
    return _DIGITS.get(key, 3)


def higher_is_better(key: str) -> bool:
    """For a delta's direction; a metric with no preferred direction counts as higher is better."""
    m = METRICS.get(key)
    return m is None or m.higher_is_better is not False


# ---------------------------------------------------------------------------------------------- formatters

def is_number(v: Any) -> TypeGuard[int | float]:
    """A finite int or float (bool is not a number here)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def fmt(v: Any, digits: int = 3) -> str:
    """None / NaN → "-"; int exact; float with `digits` decimals; ±∞; bool yes/no; else str()."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if math.isinf(v):
            return "∞" if v > 0 else "-∞"
        return f"{v:.{digits}f}"
    return str(v)


def fmt_signed(v: Any, digits: int = 3) -> str:
    """A change with its sign (+0.250 / -0.250); fmt() for what is not a number."""
    return f"{v:+.{digits}f}" if is_number(v) else fmt(v, digits)


def fmt_delta(d: Any) -> str:
    """A delta in a table: +0.250, +2, "0" for no change (or one below the shown precision), "-" for none."""
    if d is None:
        return "-"
    if isinstance(d, int):
        return f"{d:+d}" if d else "0"
    return f"{d:+.3f}" if abs(d) >= 5e-4 else "0"


def fmt_p(p: Any) -> str:
    """A p-value: three significant digits."""
    return "-" if p is None else f"{p:.3g}"


def typographic(text: str) -> str:
    """A formatted number with a true minus sign (U+2212), as the HTML report shows numbers."""
    return text.replace("-", "\u2212")


def delta(before: Any, after: Any) -> float | int | None:
    """after − before when both are numbers, else None."""
    return after - before if is_number(before) and is_number(after) else None


def is_zero_spread(spread: Any) -> bool:
    """Every trace got the same reward: no GRPO signal (the tolerance of objectives.frac_zero_spread)."""
    from .objectives import ZERO_TOL  # here: suite.py loads this module, and should not load numpy

    return is_number(spread) and abs(spread) < ZERO_TOL


# ---------------------------------------------------------------------------------------------- the summary table

class Cell(NamedTuple):  # a NamedTuple: a table has one per value, and it is the cheapest to make
    """One value of a table: `metric` names it (for its interval and its delta), `text` is how it
    reads ("-" when absent, "unavailable" for a DPO metric without log-probabilities, then
    `unavailable` says why); `prefix` is a label inside a cell holding two values."""
    metric: str | None
    value: Any
    text: str
    unavailable: str | None = None
    prefix: str = ""


def cell(metric: str, value: Any, unavailable: str | None = None) -> Cell:
    if unavailable and metric in DPO_METRICS:
        return Cell(metric, value, UNAVAILABLE, unavailable)
    return Cell(metric, value, fmt(value, _DIGITS.get(metric, 3)))


@dataclass(frozen=True)
class Column:
    """A summary-table column: the question metric of a question's row (None: a suite-only column,
    blank there), and the suite aggregate(s) of the suite's row. Every column holds one kind of value:
    a count, a rate or a mean, the same in both rows (the suite's spread is the questions' mean)."""
    label: str
    question: str | None
    suite: tuple[str, ...]


# Between the question id and the result. maj@k is shown where the report has it (`has_maj_at_k`).
SUMMARY_COLUMNS = (
    Column("k", "k", ("samples",)),
    Column("accuracy", "accuracy", ("accuracy",)),
    Column("maj@k", "maj_at_k", ("maj_at_k",)),
    Column("unparsable", "unparsable_rate", ("unparsable_rate",)),  # a rate: comparable across k and suites
    Column("pairs", "pairs", ("pairs",)),
    Column("mean margin", "mean_margin", ("mean_margin",)),
    Column("reward acc", "reward_accuracy", ("reward_accuracy",)),
    Column("spread", "spread", ("mean_spread",)),
    Column("zero spread", None, ("frac_zero_spread",)),  # TRL's frac_reward_zero_std: a suite's fraction
)


_WITHOUT_MAJ = tuple(c for c in SUMMARY_COLUMNS if c.question != "maj_at_k")


def summary_columns(maj_at_k: bool = False) -> tuple[Column, ...]:
    """The columns between the question and the result; maj@k only where the report has it."""
    return SUMMARY_COLUMNS if maj_at_k else _WITHOUT_MAJ


def has_maj_at_k(suites: list[Suite], digests: list[SuiteDigest] | None = None) -> bool:
    """Whether any question or suite of `suites` has maj@k measured (a report written before it
    existed, or a verifier with no extracted answers, has none: its column is left out).
    `digests`: the suites' `suite_digest`s, when the caller has them (no pass over the questions)."""
    # the suites' aggregates first: they answer without a pass over the questions (read from disk
    # one at a time in a large report, rlhf_eval.spool)
    if any(s.aggregates.maj_at_k is not None for s in suites):
        return True
    if digests is not None:
        return any(d.has_maj_at_k for d in digests)
    return any(q.metrics is not None and q.metrics.maj_at_k is not None for s in suites for q in s.questions)


def question_cells(q: Question, maj_at_k: bool = False) -> list[Cell]:
    """A question's summary cells, one per `summary_columns(maj_at_k)` (a suite-only column's is blank)."""
    m, unavailable = q.metrics, q.dpo_unavailable
    return [cell(c.question, getattr(m, c.question) if m else None, unavailable) if c.question
            else Cell(None, None, "") for c in summary_columns(maj_at_k)]


def suite_cells(s: Suite, maj_at_k: bool = False) -> list[list[Cell]]:
    """A suite's summary cells: per column, the cells of its aggregates (k is the suite's samples)."""
    a = s.aggregates
    out = []
    for c in summary_columns(maj_at_k):
        cells = []
        for key in c.suite:
            value = s.samples if key == "samples" else a.get(key)
            cells.append(cell(key, value, a.dpo_unavailable))
        out.append(cells)
    return out


def cells_text(cells: list[Cell]) -> str:
    return " · ".join(c.prefix + c.text for c in cells)


def suite_label(s: Suite) -> str:
    return f"(suite: {s.aggregates.questions} questions)"


class SuiteDigest:
    """What the terminal report shows of a suite's questions, gathered in one pass over them
    (`add` each, in report order): its table rows, and the counts and first few ids and reasons
    its notes name. A report of many questions reads them from disk, ~1 ms each
    (rlhf_eval.spool): the table and every note come from this one pass, not one pass each.

    Holds a question's row as one JSON text (0.13 KB at k = 8, against 0.5 KB as a list of
    strings: 25 MB at 50,000 questions), and at most `reasons` failing questions' reasons and
    `FIRST_IDS` ids per note, whatever the number of questions. Made for one summary, not kept:
    held through a run's outputs, the rows took the 50,000-question replay past 400 MB."""

    FIRST_IDS = 5  # ids a note names before "… (N more)"

    def __init__(self, reasons: int = 10) -> None:
        self.reasons = reasons
        # [id, cells of summary_columns(maj_at_k=True)..., result] as JSON, a question each, in order
        self.rows: list[str] = []
        self.has_maj_at_k = False  # a question has maj@k measured
        self.questions = 0
        self.scored = 0
        self.errored = 0  # questions without metrics (not scored)
        # scored questions' DPO reasons: reason -> [how many, their first ids], in order of appearance
        self.dpo_reasons: dict[str, list] = {}
        self.dpo_unavailable_said: set[str] = set()  # every question's DPO reason (a gate naming one is shortened)
        # traces' usage: how many, how many from a request without usage, whether any kept usage at all
        self.traces = 0
        self.usage_missing = 0
        self.usage_kept = False
        self.failing: list[tuple[str, str, str]] = []  # (result, id, reason): the first `reasons`
        self.failing_count = 0
        self.failed_ids: list[str] = []  # questions whose result is not "pass": the first FIRST_IDS
        self.failed_count = 0

    def add(self, q: Question) -> None:
        """Count question `q` (the next one in report order)."""
        m, result = q.metrics, q.result
        self.rows.append(json.dumps([q.id, *(c.text for c in question_cells(q, True)), result],
                                    ensure_ascii=False, separators=(",", ":")))
        self.has_maj_at_k = self.has_maj_at_k or (m is not None and m.maj_at_k is not None)
        self.questions += 1
        if m is None:
            self.errored += 1
        else:
            self.scored += 1
            if q.dpo_unavailable:
                seen = self.dpo_reasons.setdefault(q.dpo_unavailable, [0, []])
                seen[0] += 1
                if len(seen[1]) < self.FIRST_IDS:
                    seen[1].append(q.id)
        if q.dpo_unavailable:
            self.dpo_unavailable_said.add(q.dpo_unavailable)
        for t in q.traces:
            self.traces += 1
            self.usage_missing += t.prompt_tokens is None or t.output_tokens is None
            self.usage_kept = self.usage_kept or "prompt_tokens" in t.model_fields_set
        if (reason := question_reason(q)) is not None:
            self.failing_count += 1
            if len(self.failing) < self.reasons:
                self.failing.append((result, q.id, reason))
        if result != "pass":
            self.failed_count += 1
            if len(self.failed_ids) < self.FIRST_IDS:
                self.failed_ids.append(q.id)

    def table_rows(self, maj_at_k: bool = False) -> Iterator[list[str]]:
        """The questions' rows, one at a time: id, the cells of `summary_columns(maj_at_k)`, the result."""
        maj = 1 + SUMMARY_COLUMNS.index(_MAJ_COLUMN)  # after the id
        for text in self.rows:
            row = json.loads(text)
            if not maj_at_k:
                del row[maj]
            yield row


_MAJ_COLUMN = next(c for c in SUMMARY_COLUMNS if c.question == "maj_at_k")


def suite_digest(s: Suite, reasons: int = 10) -> SuiteDigest:
    """`s`'s `SuiteDigest`: one pass over its questions."""
    digest = SuiteDigest(reasons)
    for q in s.questions:
        digest.add(q)
    return digest


def dpo_unavailable_lines(s: Suite, digest: SuiteDigest | None = None) -> list[str]:
    """Why the suite's DPO metrics are unavailable, once per distinct reason (not once per question):
    "DPO metrics unavailable: <reason>", naming the questions when only some of them have it.
    `digest`: `suite_digest(s)`, when the caller has it."""
    d = digest or suite_digest(s)
    lines = []
    for reason, (count, ids) in d.dpo_reasons.items():
        if count == d.scored:
            lines.append(f"DPO metrics unavailable: {reason}")
        else:
            lines.append(f"DPO metrics unavailable for {count} of {d.scored} questions "
                         f"({_ids(ids, count=count)}): {reason}")
    return lines


def question_reason(q: Question) -> str | None:
    """Why a question's row says FAIL or ERROR, in one line (None when it passed)."""
    if q.error:
        return q.error
    if not q.passed:
        return "; ".join(f.reason or f"{f.metric} {f.bound}" for f in q.failures) or "failed"
    return None


def suite_failure_reasons(s: Suite, digest: SuiteDigest | None = None) -> list[str]:
    """Why a suite's row says FAIL, one line each: every breached suite threshold, and how many of its
    questions failed (naming the first few). Empty when it passed. `digest`: `suite_digest(s)`,
    when the caller has it."""
    reasons = list(s.threshold_failures)
    # A suite streamed from disk counted its failed questions (an ERROR is not passed): none, no pass over them.
    # A digest at hand is read even then: a file's aggregates may say 0 of questions that failed (a
    # hand-edited file), and the held report's lines name them.
    none_failed = not isinstance(s.questions, list) and not s.aggregates.questions_failed
    d = digest if digest is not None else None if none_failed else suite_digest(s)
    if d is not None and d.failed_count:
        n = d.questions
        reasons.append(f"{d.failed_count} of {n} question{'s' * (n != 1)} "
                       f"failed: {_ids(d.failed_ids, count=d.failed_count)}")
    elif s.aggregates.questions_failed:  # a report whose questions were left out
        reasons.append(f"{s.aggregates.questions_failed} of {s.aggregates.questions} questions failed")
    return reasons


def _ids(ids: list[str], most: int = 5, count: int | None = None) -> str:
    """The first `most` of `ids`, and how many more of `count` (default: all of `ids`) there are."""
    count = len(ids) if count is None else count
    return ", ".join(ids[:most]) + (f", … ({count - most} more)" if count > most else "")


def suite_result(s: Suite) -> str:
    return "FAIL" if s.failed else "pass"
