"""The terminal summary of a run of many questions reads them once, not once per note.

A run of more than `runner.IN_MEMORY_QUESTIONS` questions keeps them on disk (rlhf_eval.spool), and
each access parses one back (~1 ms with k = 8). The table and every note under it (the DPO lines,
the usage line, the failing questions' reasons, the suite's failed ids) come from one
`rows.SuiteDigest` a suite, gathered in one pass; it keeps only the reasons and ids the summary
shows, and each row as a short text.
The seconds are a benchmark (benchmarks/summary_passes.py)."""
import copy
import json
import tracemalloc
from collections.abc import Sequence

import pytest

from rlhf_eval import rows
from rlhf_eval.report import MAX_REASONS, build_report, build_streamed_report, summary_lines
from rlhf_eval.report_model import Failure, Report
from rlhf_eval.spool import QuestionSpool

COPIES = 40  # of each shipped question: 1,200 questions in gsm8k_smoke


def varied_questions(data: dict) -> tuple[list, dict]:
    """The shipped report's questions, many times over under new ids, with what every note shows:
    FAILs past MAX_REASONS, ERRORs (no metrics), DPO unavailable for some scored questions, and a
    suite whose responses reported no usage for some traces. (questions, suite settings)."""
    report = Report.of(copy.deepcopy(data))
    settings = {s.name: s.model_dump(mode="json", exclude_unset=True,
                                     exclude={"aggregates", "threshold_failures", "questions"})
                for s in report.suites}
    out = []
    for s in report.suites:
        copies = COPIES if s.name == "gsm8k_smoke" else 1
        for c in range(copies):
            for q in s.questions:
                i = c * len(s.questions) + q.index
                update: dict = {"id": f"{q.id}-{c}", "index": i}
                if s.name == "gsm8k_smoke" and i % 9 == 0:
                    update.update(passed=False, failures=[Failure(metric="accuracy", value=0.0, bound="min 1",
                                                                  reason=f"accuracy = 0 < min 1 ({i})")])
                if s.name == "gsm8k_smoke" and i % 13 == 0:
                    update.update(passed=False, metrics=None, traces=[], pairs=[], error=f"HTTP 500 ({i})")
                if s.name == "gsm8k_smoke" and i % 5 == 0 and not q.dpo_unavailable:
                    update["dpo_unavailable"] = "the scorer gave no logp for this question"
                if s.name == "science_choice" and i % 2 == 0 and q.traces:
                    update["traces"] = [q.traces[0].model_copy(update={"prompt_tokens": None}), *q.traces[1:]]
                out.append(q.model_copy(update=update))
    return out, settings


@pytest.fixture(scope="module")
def reports(shipped_report):
    """The same questions as a report held in memory and as one a run built from its spool."""
    questions, settings = varied_questions(shipped_report[0])
    held = build_report(questions, settings)
    spool = QuestionSpool()
    for q in reversed(questions):  # arrival order is not report order
        spool.add(q)
    streamed = build_streamed_report(spool, settings)
    assert streamed.streamed and not held.streamed
    return held, streamed, spool


def test_the_summary_of_a_streamed_run_is_the_held_ones_line_for_line(reports):
    held, streamed, _ = reports
    lines = summary_lines(held)
    assert summary_lines(streamed) == lines
    texts = [text for _, text in lines]
    # every note is there: what this test is about
    assert any(t.startswith("DPO metrics unavailable for ") for t in texts)
    assert any(t.startswith("tokens: none (") for t in texts)
    assert any("that errored not counted" in t for t in texts)
    assert any(t.startswith("… and ") and "more failing questions of gsm8k_smoke" in t for t in texts)
    assert any(t.startswith("FAIL suite gsm8k_smoke: ") and "… (" in t for t in texts)


def test_the_summary_of_many_questions_holds_a_short_text_a_question(reports):
    """Past its lines, the summary holds each question's row as one short JSON text while it
    aligns the table (145 B a question here), not as a list of strings (618 B: 25 MB more at
    50,000 questions; held through the run's outputs, it took the 50,000-question replay from
    385 MB to 417 MB)."""
    _, streamed, _ = reports
    n = sum(len(s.questions) for s in streamed.suites)
    summary_lines(streamed)  # imports, caches
    tracemalloc.start()
    try:
        lines = summary_lines(streamed)
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines and (peak - kept) / n < 250, (peak, kept, n)


class CountedReads(Sequence):
    """A suite's questions that count how often one is read (as a report read from disk reads it)."""

    def __init__(self, questions):
        self._questions = questions
        self.reads = 0

    def __len__(self):
        return len(self._questions)

    def __getitem__(self, i):
        q = self._questions[i]  # IndexError ends Sequence's iteration: not a read
        self.reads += 1
        return q


def test_a_report_without_a_digest_is_read_once_for_its_summary(reports):
    held = reports[0]
    lines = summary_lines(held)
    report = held.model_copy(update={"suites": [s.model_copy() for s in held.suites]})
    counted = []
    for s in report.suites:
        s.questions = CountedReads(s.questions)  # type: ignore[assignment]
        counted.append(s.questions)
    assert summary_lines(report) == lines
    assert [c.reads for c in counted] == [len(c) for c in counted]  # once each, not once per note


def test_the_digest_keeps_only_the_reasons_and_ids_the_summary_shows(reports):
    _, streamed, _ = reports
    smoke = streamed.suite("gsm8k_smoke")
    d = rows.suite_digest(smoke, MAX_REASONS)
    failing = sum(1 for i in range(len(smoke.questions)) if i % 9 == 0 or i % 13 == 0)
    assert d.questions == len(smoke.questions) == 30 * COPIES
    assert d.failing_count == d.failed_count == failing > MAX_REASONS
    assert len(d.failing) == MAX_REASONS and len(d.failed_ids) == rows.SuiteDigest.FIRST_IDS
    (count, ids), = d.dpo_reasons.values()
    assert count == sum(1 for i in range(len(smoke.questions)) if i % 5 == 0 and i % 13) and len(ids) == 5
    assert d.errored == sum(1 for i in range(len(smoke.questions)) if i % 13 == 0)


def test_a_file_whose_aggregates_count_no_failed_question_sums_up_as_held(shipped_report, tmp_path):
    """A streamed suite whose aggregates say no question failed skipped its questions for the
    "FAIL suite ...: 1 of 20 questions failed" line, even with their digest at hand: a file saying 0
    of a question that failed (hand-edited, or merged by hand) lost the line streamed, not held."""
    data = copy.deepcopy(shipped_report[0])
    for s in data["suites"]:
        s["questions"][0]["passed"] = False
        s["aggregates"]["questions_failed"] = 0
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    lines = summary_lines(Report.load(path, stream=False))
    assert any(text.startswith("FAIL suite gsm8k_smoke: 1 of 30 questions failed") for _, text in lines)
    assert summary_lines(Report.load(path, stream=True)) == lines
