"""Seconds (and question reads) of the terminal summary of a run of many questions, now and before.

    pytest suites --rlhf-report-json=/tmp/rlhf-bench/report.json     # in the make_suite.py folder
    python benchmarks/summary_passes.py /tmp/rlhf-bench/report.json --questions 10000

A run of more than `runner.IN_MEMORY_QUESTIONS` questions keeps them on disk (rlhf_eval.spool) and
reads one back per access (~1 ms a question of k = 8). This builds, in this process, such a report of
N questions (`report.build_streamed_report` of a `QuestionSpool`, as the run does): question i is
question i mod n of REPORT's first suite under a new id, and every `--fail-every`-th one is a FAIL
with its own reason (so the notes have reasons to show, and to leave out). Then it times, each with
the number of questions it read from disk:

  one read:  every question read once (`for q in suite.questions`): what any pass costs;
  before:    the summary as rlhf-eval made it before `rows.SuiteDigest` (`legacy_report_lines`
             below: the table, then one pass each for the DPO lines, the usage line, the failing
             questions' reasons and the suite's failed ids, holding every failing reason);
  now:       `report.summary_lines(report)`: one pass (`rows.SuiteDigest`), each row kept as a
             short JSON text while the table is aligned.

"now" is checked to give the same lines as "before". Prints one line of figures and one JSON line.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rlhf_eval import report as report_
from rlhf_eval import rows as rows_
from rlhf_eval import spool as spool_
from rlhf_eval.report import MAX_REASONS, aligned, build_streamed_report, columns, summary_lines
from rlhf_eval.report_model import Failure, Report
from rlhf_eval.spool import QuestionSpool

READS = [0]


def _counting(getitem):
    def counted(self, i):
        READS[0] += 1 if isinstance(i, int) else len(range(*i.indices(len(self))))
        return getitem(self, i)
    return counted


spool_.SpooledQuestions.__getitem__ = _counting(spool_.SpooledQuestions.__getitem__)  # type: ignore[method-assign]


def spooled_run(source: Path, n: int, fail_every: int) -> Report:
    """A report of n questions on disk, as a run of n questions builds it."""
    suite = Report.load(source).suites[0]
    qs = suite.questions
    settings = suite.model_dump(mode="json", exclude_unset=True, exclude={"aggregates", "threshold_failures",
                                                                          "questions"})
    spool = QuestionSpool()
    for i in range(n):
        update: dict = {"id": f"q-{i:06d}", "index": i}
        if fail_every and i % fail_every == 0:
            update.update(passed=False, failures=[Failure(metric="accuracy", value=0.0, bound=">= 1",
                                                          reason=f"accuracy of q-{i:06d} below 1")])
        spool.add(qs[i % len(qs)].model_copy(update=update))
    return build_streamed_report(spool, {suite.name: settings})


# ---------------------------------------------------------------------------------------------- before
# rlhf_eval.report's and rlhf_eval.rows' summary functions as they were before rows.SuiteDigest
# (commit 7b500a4), verbatim but for their names: one pass over the questions each.

def legacy_dpo_unavailable_lines(s) -> list[str]:
    scored = 0
    by_reason: dict[str, list[str]] = {}
    for q in s.questions:
        if q.metrics is None:
            continue
        scored += 1
        if q.dpo_unavailable:
            by_reason.setdefault(q.dpo_unavailable, []).append(q.id)
    lines = []
    for reason, ids in by_reason.items():
        if len(ids) == scored:
            lines.append(f"DPO metrics unavailable: {reason}")
        else:
            lines.append(f"DPO metrics unavailable for {len(ids)} of {scored} questions "
                         f"({rows_._ids(ids)}): {reason}")
    return lines


def legacy_suite_failure_reasons(s) -> list[str]:
    reasons = list(s.threshold_failures)
    none_failed = not isinstance(s.questions, list) and not s.aggregates.questions_failed
    failed = [] if none_failed else [q.id for q in s.questions if q.result != "pass"]
    if failed:
        reasons.append(f"{len(failed)} of {len(s.questions)} question{'s' * (len(s.questions) != 1)} "
                       f"failed: {rows_._ids(failed)}")
    elif s.aggregates.questions_failed:
        reasons.append(f"{s.aggregates.questions_failed} of {s.aggregates.questions} questions failed")
    return reasons


def legacy_usage_line(suite) -> str | None:
    a = suite.aggregates
    if a.total_tokens is None:
        missing = n = 0
        kept = False
        for q in suite.questions:
            for t in q.traces:
                n += 1
                missing += t.prompt_tokens is None or t.output_tokens is None
                kept = kept or "prompt_tokens" in t.model_fields_set
        if not missing or not kept:
            return None
        no_cost = ", so no cost" if suite.price else ""
        return (f"tokens: none ({missing} of {n} traces came from requests whose response "
                f"reported no token usage){no_cost}")
    thinking = f" ({a.thinking_tokens:,} thinking)" if a.thinking_tokens else ""
    cost = f"; cost ${a.cost_usd:,.4f}" if a.cost_usd is not None else ""
    errored = sum(q.metrics is None for q in suite.questions)
    left_out = (f" (the scored questions' requests; {errored} question{'s' * (errored != 1)} that errored "
                "not counted)") if errored else ""
    return (f"tokens: {a.prompt_tokens:,} prompt + {a.output_tokens:,} output{thinking} "
            f"= {a.total_tokens:,}{cost}{left_out}")


def legacy_suite_notes(suite) -> list[tuple[str, str]]:
    lines = [("text", line) for line in legacy_dpo_unavailable_lines(suite)]
    usage = legacy_usage_line(suite)
    lines += [("text", usage)] if usage else []
    failing, said = [], set()
    for q in suite.questions:
        if (reason := rows_.question_reason(q)) is not None:
            failing.append((q.result, q.id, reason))
        if q.dpo_unavailable:
            said.add(q.dpo_unavailable)

    def once(reason: str) -> str:
        for why in said:
            reason = reason.replace(f" is unavailable: {why}", " is unavailable (see DPO metrics unavailable above)")
        return reason

    lines += [("fail", f"{result} {suite.name}::{qid}: {once(reason)}")
              for result, qid, reason in failing[:MAX_REASONS]]
    if len(failing) > MAX_REASONS:
        lines.append(("fail", f"… and {len(failing) - MAX_REASONS} more failing questions of {suite.name} "
                              "(each one's reason is in the JSON report: questions[].failures and .error)"))
    lines += [("fail", f"FAIL suite {suite.name}: {once(reason)}") for reason in legacy_suite_failure_reasons(suite)]
    return lines


def legacy_suite_rows(suite, maj_at_k: bool) -> list[list[str]]:
    rows = [[q.id, *(c.text for c in rows_.question_cells(q, maj_at_k)), q.result] for q in suite.questions]
    rows.append([report_.SUITE_ROW, *(rows_.cells_text(c) for c in rows_.suite_cells(suite, maj_at_k)),
                 rows_.suite_result(suite)])
    return rows


def legacy_summary_lines(report: Report) -> list[tuple[str, str]]:
    maj = rows_.has_maj_at_k(report.suites)
    headers = columns(maj)[1:]
    blocks = [(s, legacy_suite_rows(s, maj)) for s in report.suites]
    head, rule, *body = aligned(headers, [r for _, rows in blocks for r in rows], left=(0, len(headers) - 1))
    out: list[tuple[str, str]] = [("title", "rlhf-eval report")]
    for n, (s, rows) in enumerate(blocks):
        if n:
            out.append(("text", ""))
        out += [("text", report_.suite_heading(s)), ("text", head), ("text", rule)]
        out += [("text", line) for line in body[:len(rows)]]
        del body[:len(rows)]
        out += legacy_suite_notes(s)
    return out  # the report has no comparison here


# ---------------------------------------------------------------------------------------------- timing

def timed(fn):
    READS[0] = 0
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start, READS[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="a JSON report of make_suite.py's suite")
    parser.add_argument("--questions", type=int, default=10000, help="N (default 10000)")
    parser.add_argument("--fail-every", type=int, default=7, help="every this many questions is a FAIL (0: none)")
    args = parser.parse_args()
    report = spooled_run(args.report, args.questions, args.fail_every)
    assert report.streamed

    def one_read():
        for s in report.suites:
            for _ in s.questions:
                pass

    _, read_s, read_n = timed(one_read)
    before, before_s, before_n = timed(lambda: legacy_summary_lines(report))
    now, now_s, now_n = timed(lambda: summary_lines(report))
    assert now == before, "the summary changed"
    print(f"{args.questions} questions on disk, {len(before)} summary lines: one read of every question "
          f"{read_s:.1f} s; the summary before {before_s:.1f} s ({before_n} reads), now {now_s:.1f} s "
          f"({now_n} reads)", flush=True)
    print(json.dumps({"questions": args.questions, "summary_lines": len(before), "one_read_s": round(read_s, 2),
                      "before_s": round(before_s, 2), "before_reads": before_n, "now_s": round(now_s, 2),
                      "now_reads": now_n}))

if __name__ == "__main__":
    main()
