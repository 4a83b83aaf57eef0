"""Comparing with a baseline keeps memory flat in the number of questions (rlhf_eval.compare):
each side's questions are walked one at a time, keeping a few numbers a question, and the
per-question entries of a run whose questions are on disk are written to disk too
(rlhf_eval.comparison_spool). A comparison of two spooled reports is the comparison of the same
reports held in memory, byte for byte in the JSON report, the HTML page and the terminal summary.

The reports are generated from the shipped suites' replayed report (the `shipped_report`
fixture): clones of its questions, the baseline's changed so that the comparison has something to
say on every count (flips, GRPO signal lost and gained, prompts and settings changed, questions and
suites on one side only, a model version change, questions that errored)."""
import json
import re
import tracemalloc

import numpy as np
import pytest

from rlhf_eval import stats
from rlhf_eval.compare import compare_reports
from rlhf_eval.comparison_spool import SpooledComparisons
from rlhf_eval.report import build_report, build_streamed_report, render_comparison
from rlhf_eval.report_model import Question, Report
from rlhf_eval.runner import Run, RunOptions
from rlhf_eval.spool import QuestionSpool

BIG = "gsm8k_smoke"  # 30 questions x 8 traces, cloned past runner.IN_MEMORY_QUESTIONS


def _negated(q: Question) -> Question:
    """`q` with every pair's margin of the other sign: each answer pair's preference flips."""
    pairs = [p.model_copy(update={"margin": None if p.margin is None else -p.margin}) for p in q.pairs]
    metrics = q.metrics.model_copy(update={"mean_margin": -q.metrics.mean_margin}) \
        if q.metrics is not None and q.metrics.mean_margin is not None else q.metrics
    return q.model_copy(update={"pairs": pairs, "metrics": metrics})


def generated(source, n: int) -> tuple[dict[str, list[Question]], dict[str, list[Question]], dict, dict]:
    """(current questions by suite, baseline's, current settings, baseline's): suite BIG has n
    questions on each side, 20 of them on one side only."""
    questions, settings = source
    big = questions[BIG]
    current: dict[str, list[Question]] = {BIG: [], "science_choice": questions["science_choice"],
                                          "gsm8k_reference": questions["gsm8k_reference"]}
    baseline: dict[str, list[Question]] = {BIG: [], "science_choice": questions["science_choice"][1:],
                                           "retired": [q.model_copy(update={"suite": "retired"})
                                                       for q in questions["gsm8k_reference"]]}
    for i in range(n + 20):
        q = big[i % len(big)].model_copy(update={"id": f"q-{i:05d}", "index": i})
        if i < n:
            current[BIG].append(q)
        if i < 20:
            continue
        b = q.model_copy(update={"index": i - 20})
        if i % 5 == 0:
            b = _negated(b)
        if i % 7 == 0 and b.metrics is not None:
            b = b.model_copy(update={"metrics": b.metrics.model_copy(
                update={"spread": 0.0 if b.metrics.spread else 0.5})})
        if i % 11 == 0:
            b = b.model_copy(update={"prompt": f"Earlier wording. {b.prompt}"})
        if i % 13 == 0:
            b = b.model_copy(update={"metrics": None, "error": "timeout", "traces": [], "pairs": [], "passed": False})
        b = b.model_copy(update={"traces": [t.model_copy(update={"model_version": "gemini-2.0-flash-001"})
                                            for t in b.traces]})
        baseline[BIG].append(b)
    base_settings = {**settings, "retired": {**settings["gsm8k_reference"], "name": "retired"}}
    base_settings[BIG] = {**settings[BIG], "model": {**settings[BIG]["model"], "temperature": 0.7}}
    return current, baseline, settings, base_settings


def _report(questions: dict[str, list[Question]], settings: dict, streamed: bool) -> Report:
    if not streamed:
        return build_report([q for qs in questions.values() for q in qs], settings)
    spool = QuestionSpool()
    for qs in questions.values():
        for q in qs:
            spool.add(q)
    return build_streamed_report(spool, settings)


@pytest.fixture(scope="module")
def generated_1100(shipped_questions):
    return generated(shipped_questions, 1100)


def test_two_spooled_reports_compare_to_the_bytes_of_the_same_reports_held(generated_1100):
    current, baseline, settings, base_settings = generated_1100
    held = _report(current, settings, False)
    held.comparison = compare_reports(held, _report(baseline, base_settings, False), "base")
    spooled = _report(current, settings, True)
    spooled.comparison = compare_reports(spooled, _report(baseline, base_settings, True), "base")
    assert spooled.streamed and not held.streamed
    cs = spooled.comparison.suite(BIG)
    assert isinstance(cs.questions, SpooledComparisons) and isinstance(held.comparison.suite(BIG).questions, dict)
    assert spooled.to_json() == held.to_json()
    assert render_comparison(spooled.comparison, max_drift=10**6) == render_comparison(held.comparison, 10**6)
    # ... and the comparison has something to say on each count
    c = held.comparison
    big = c.suite(BIG)
    assert big.only_in_current == [f"q-{i:05d}" for i in range(20)]
    assert big.only_in_baseline == [f"q-{i:05d}" for i in range(1100, 1120)]
    assert big.prompts_changed == [f"q-{i:05d}" for i in range(20, 1100) if i % 11 == 0]
    assert set(big.settings_changed) == {"model.temperature"}
    assert (c.only_in_baseline, c.only_in_current) == (["retired"], ["gsm8k_reference"])
    assert c.model_version_changed and c.suite("science_choice").only_in_current == [current["science_choice"][0].id]
    assert f"suite science_choice: 1 question is not in baseline base ({current['science_choice'][0].id})" in c.notes
    entries = big.questions
    assert len(entries) == len([i for i in range(20, 1100) if i % 13]) == 997  # scored on both sides
    assert sum(bool(e.flips) for e in entries.values()) > 100
    assert {e.grpo_signal.split(":")[0] for e in entries.values() if e.grpo_signal} == {"lost", "gained"}
    assert any(m.significant for e in entries.values() for m in e.metrics.values())
    notes = "\n".join(c.notes)
    for said in ("model version changed", "model.temperature changed: 0.7 → 1.0",
                 "prompt changed on 98 of the 1080 questions both runs have",
                 "20 questions of baseline base did not run", "20 questions are not in baseline base",
                 "suite retired of baseline base did not run", "suite gsm8k_reference is not in baseline base"):
        assert said in notes, said


def test_a_suite_metric_is_computed_over_the_questions_both_runs_scored(generated_1100):
    """The numbers themselves, recomputed here from the questions: accuracy pooled over the traces
    and the mean margin over the pairs of the questions both ran, in report order."""
    current, baseline, settings, base_settings = generated_1100
    report = _report(current, settings, True)
    aggregates = compare_reports(report, _report(baseline, base_settings, True), "base").suite(BIG).aggregates
    both = {q.id for q in current[BIG]} & {q.id for q in baseline[BIG]}
    for side, qs in (("current", current[BIG]), ("baseline", baseline[BIG])):
        scored = [q for q in qs if q.id in both and q.metrics is not None]
        traces = [t for q in scored for t in q.traces]
        margins = np.array([p.margin for q in scored for p in q.pairs if p.margin is not None], float)
        assert getattr(aggregates["accuracy"], side) == sum(t.verdict == "correct" for t in traces) / len(traces)
        assert getattr(aggregates["mean_margin"], side) == float(margins.mean())
    assert aggregates["mean_margin"].p_value is not None and aggregates["mean_spread"].p_value is not None


def test_a_run_compared_with_a_baseline_writes_the_same_files_streamed_or_held(generated_1100, tmp_path):
    """Through the runner (`--rlhf-compare`): the JSON report, the HTML page (each question's
    comparison beside it) and the terminal summary (the preference drift) are the same bytes
    whether the run's questions were held or read back from disk."""
    current, baseline, settings, base_settings = generated_1100
    _report(baseline, base_settings, False).dump(tmp_path / "base.json")

    def written(in_memory: int):
        out = tmp_path / str(in_memory)
        run = Run(RunOptions(report_json=out / "report.json", html=out / "report.html",
                             baseline=tmp_path / "base.json"))
        run.load_baseline()
        run.in_memory_questions = in_memory
        for name, qs in current.items():
            for q in qs:
                run.add(settings[name], q)
        run.finish({"time": "then"})
        assert not run.problems and run.report.streamed == (in_memory == 0)
        summary = [(style, text.replace(str(out), "OUT")) for style, text in run.summary()]
        return [(out / name).read_bytes() for name in ("report.json", "report.html")], summary

    streamed, held = written(0), written(10**9)
    assert streamed == held
    assert any("preference drift" in text for _, text in held[1])
    assert b"now rejected" in held[0][1]  # the HTML shows the flips


def test_comparing_two_spooled_reports_holds_a_few_bytes_a_question(shipped_questions, monkeypatch):
    """The mechanism: comparing two reports whose questions are on disk grows, at its peak, by under
    1 KB for each question of the two runs (ids, counts, margins; measured: ~0.4 KB), where a
    question of 8 traces is ~10 KB as JSON and more as models; the comparison it returns keeps its
    entries on disk (~0.1 KB a question). Small bootstrap blocks, so their buffers (otherwise 8 MB,
    whatever the number of questions) do not hide what grows."""
    monkeypatch.setattr(stats, "_BLOCK", 1 << 12)

    def measured(n: int) -> tuple[int, int, int]:
        current, baseline, settings, base_settings = generated(shipped_questions, n)
        cur, base = _report(current, settings, True), _report(baseline, base_settings, True)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            comparison = compare_reports(cur, base, "base")
            kept, peak = (m - before for m in tracemalloc.get_traced_memory())
        finally:
            tracemalloc.stop()
        assert len(comparison.suite(BIG).questions) > n * 0.9 - 20
        return len(current[BIG]) + len(baseline[BIG]), peak, kept

    (n1, peak1, kept1), (n2, peak2, kept2) = measured(200), measured(800)
    grown, kept = (peak2 - peak1) / (n2 - n1), (kept2 - kept1) / (n2 - n1)
    question = len(json.dumps(shipped_questions[0][BIG][0].model_dump(mode="json")))
    assert grown < 1024 < question and kept < 200, (grown, kept, question)


def test_a_comparison_of_held_spooled_and_empty_suites_writes_what_the_dicts_write(generated_1100):
    """A report whose suites are partly on disk (a comparison's entries spooled for those, a dict for
    the others, an empty one where nothing was compared) writes the JSON of the same report held;
    `model_dump` of the comparison alone (examples/online_dpo.py writes it) reads every entry."""
    current, baseline, settings, base_settings = generated_1100
    baseline = {**baseline, "science_choice": [q.model_copy(update={"id": f"other-{q.id}"})
                                               for q in baseline["science_choice"]]}  # nothing compared
    held = _report(current, settings, False)
    held.comparison = compare_reports(held, _report(baseline, base_settings, False), "base")
    mixed = _report(current, settings, True)
    for s in mixed.suites:
        if s.name != BIG:
            s.questions = list(s.questions)
    mixed.comparison = compare_reports(mixed, _report(baseline, base_settings, True), "base")
    kinds = {cs.name: (type(cs.questions).__name__, len(cs.questions)) for cs in mixed.comparison.suites}
    assert kinds == {BIG: ("SpooledComparisons", 997), "science_choice": ("dict", 0)}
    assert mixed.to_json() == held.to_json()
    assert mixed.comparison.model_dump(mode="json") == held.comparison.model_dump(mode="json")
    entries = mixed.comparison.suite(BIG).questions
    assert "q-00021" in entries and "q-00000" not in entries
    assert entries["q-00021"] == held.comparison.suite(BIG).questions["q-00021"]
    text = mixed.to_json()
    assert re.search(r'^    "questions": \{\},$', text, re.MULTILINE)  # science_choice's, as the dict writes it
