"""What a comparison with a baseline says besides the deltas: a metric lost since the baseline is a
significant regression with its reason, every changed suite setting and prompt is listed like a model
change, and suites or questions that ran on one side only are reported. Runs go through the library
runner (`run_suites`) against the real emulator; the expected lines are written out in full."""
import json

import pytest

from test_plugin import suite_yaml

from rlhf_eval import run_suites
from rlhf_eval.compare import compare_reports, regressions
from rlhf_eval.html_report import render_html
from rlhf_eval.report import render_comparison
from rlhf_eval.report_model import Report


@pytest.fixture
def demo(tmp_path, monkeypatch, live):
    """A folder with suites/demo.yaml (6 questions, k = 4, temperature 1) recorded into
    cassettes/ and saved as baseline base.json."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "demo.yaml").write_text(suite_yaml(limit=6, samples=4))
    run_suites(["suites"], record_mode="once", save="base.json")
    return tmp_path


def _aggregate(report: Report, metric: str, suite: str = "demo"):
    comparison = report.comparison
    assert comparison is not None
    cs = comparison.suite(suite)
    assert cs is not None
    return cs.aggregates[metric]


def test_losing_every_pair_is_a_significant_regression_with_its_reason(demo):
    """Greedy decoding: each question's traces are all alike, so there is no preference pair left and
    reward accuracy has no value. That is a regression, not a silent "-", and a gate on it fails."""
    base = json.loads((demo / "base.json").read_text())["suites"][0]["aggregates"]
    assert base["pairs"] > 0 and base["reward_accuracy"] is not None
    (demo / "suites" / "demo.yaml").write_text(suite_yaml(limit=6, samples=4, temperature=0.0))
    report = run_suites(["suites"], record_mode="once", cassette_dir="greedy", baseline="base.json",
                        fail_rules=["reward_accuracy:0.1"])
    assert report.suites[0].aggregates.pairs == 0
    why = "no preference pairs: each question's traces were all correct or all not correct"
    for metric in ("reward_accuracy", "mean_margin"):
        e = _aggregate(report, metric)
        assert (e.baseline, e.current, e.significant, e.worse) == (pytest.approx(base[metric]), None, True, True)
        assert e.reason == f"not measured in this run: {why}"
    text = render_comparison(report.comparison).splitlines()
    ra, mm = base["reward_accuracy"], base["mean_margin"]
    row = next(line for line in text if line.startswith("demo   reward_accuracy"))
    assert row.split() == ["demo", "reward_accuracy", f"{ra:.3f}", "none", "-", "-", "WORSE"]
    assert f"demo: reward_accuracy {ra:.3f} → none: not measured in this run: {why}" in text
    assert f"demo: mean_margin {mm:.3f} → none: not measured in this run: {why}" in text
    assert "note: suite demo: model.temperature changed: 1.0 → 0.0" in text
    assert report.comparison.failures == [
        f"suite demo: reward_accuracy {ra:.4g} → none (allowed 0.1; not measured in this run: {why})"]
    html = render_html(report)  # the HTML report's comparison says the same
    assert f'<li class="neg">demo: reward_accuracy {ra:.3f} → none: not measured in this run: {why}</li>' \
        .replace("'", "&#x27;") in html
    assert "<li>suite demo: model.temperature changed: 1.0 → 0.0</li>" in html
    # and back: a metric measured only now is a significant improvement, with the baseline's reason
    back = compare_reports(Report.load(demo / "base.json"), report, "greedy").suite("demo").aggregates[
        "reward_accuracy"]
    assert (back.baseline, back.significant, back.worse) == (None, True, False)
    assert back.reason == f"not measured in the baseline: {why}"


def test_dpo_metrics_lost_to_a_model_without_logprobs_say_so(demo):
    (demo / "suites" / "demo.yaml").write_text(suite_yaml(limit=6, samples=4, model="gemini-3-flash",
                                                          logprobs=False))
    report = run_suites(["suites"], record_mode="once", cassette_dir="nologp", baseline="base.json")
    e = _aggregate(report, "reward_accuracy")
    assert e.significant and e.worse and e.current is None
    assert e.reason == ("not measured in this run: DPO metrics unavailable: gemini-3-flash was not asked for "
                        "log-probabilities (the suite has model.logprobs: false)")
    notes = report.comparison.notes
    assert 'suite demo: model.name changed: "gemini-2.0-flash" → "gemini-3-flash"' in notes
    assert "suite demo: model.logprobs changed: true → false" in notes
    assert regressions(report.comparison, {"reward_accuracy": 0.5}) == [
        f"suite demo: reward_accuracy {e.baseline:.4g} → none (allowed 0.5; {e.reason})"]


def test_every_changed_suite_setting_is_listed_like_a_model_change(demo):
    extra = {"model": {"name": "gemini-2.0-flash", "temperature": 0.7, "max_output_tokens": 400, "logprobs": True,
                       "system_instruction": "Be brief."},
             "samples": 3, "verifier": {"name": "numeric", "rel_tol": 0.01},
             "rewards": {"correct": 1.0, "incorrect": -1.0},
             "reward_funcs": ["accuracy"], "reward_weights": [2.0],
             "dpo": {"beta": 0.5}, "grpo": {"scale_rewards": "none"},
             "prompt": "Q: {question}\nEnd with 'A: <number>'."}
    (demo / "suites" / "demo.yaml").write_text(suite_yaml(limit=6, extra=extra))
    report = run_suites(["suites"], record_mode="once", cassette_dir="changed", baseline="base.json")
    assert report.comparison.notes == [
        "suite demo: model.temperature changed: 1.0 → 0.7",
        'suite demo: model.system_instruction changed: null → "Be brief."',
        "suite demo: samples changed: 4 → 3",
        "suite demo: verifier.rel_tol changed: (default) → 0.01",
        "suite demo: rewards.incorrect changed: 0.0 → -1.0",
        "suite demo: dpo.beta changed: 0.1 → 0.5",
        'suite demo: grpo.scale_rewards changed: "group" → "none"',
        "suite demo: reward_weights changed: [1.0] → [2.0]",
        "suite demo: prompt changed on 6 of the 6 questions both runs have (q-0000, q-0001, q-0002, q-0003, "
        "q-0004, … (1 more))",
    ]
    settings = report.comparison.suite("demo").settings_changed
    assert (settings["samples"].baseline, settings["samples"].current) == (4, 3)
    assert report.comparison.model_version_changed is False  # the same model, other settings
    text = render_comparison(report.comparison).splitlines()
    assert text[:len(report.comparison.notes)] == [f"note: {n}" for n in report.comparison.notes]
    # the same settings are no change, whichever run wrote them (a tuple in memory, a list in JSON)
    again = compare_reports(report, Report.from_data(json.loads(report.to_json())), "same")
    assert again.notes == [] and again.suite("demo").settings_changed == {}


def test_suites_and_questions_that_ran_on_one_side_only_are_reported(demo):
    (demo / "suites" / "demo.yaml").write_text(suite_yaml(limit=4, samples=4))  # q-0004, q-0005 left out
    (demo / "suites" / "extra.yaml").write_text(suite_yaml("extra", limit=1, samples=2))
    (demo / "suites" / "other.yaml").write_text(suite_yaml("other", limit=1, samples=2))
    run_suites(["suites"], record_mode="once", save="base2.json")  # demo (4 questions), extra, other ...
    (demo / "suites" / "other.yaml").unlink()  # ... and now demo (4) and extra only
    baseline = Report.load(demo / "base2.json")
    baseline.suites = [s for s in baseline.suites if s.name != "extra"]  # a baseline from before `extra`
    current = run_suites(["suites"])
    comparison = compare_reports(current, baseline, "base2")
    assert comparison.notes == [
        "suite extra is not in baseline base2 (new): nothing to compare it with",
        "suite other of baseline base2 did not run: nothing to compare it with",
    ]
    assert (comparison.only_in_baseline, comparison.only_in_current) == (["other"], ["extra"])
    with_six = Report.load(demo / "base.json")
    comparison = compare_reports(current, with_six, "base")
    assert comparison.notes == ["suite demo: 2 questions of baseline base did not run (q-0004, q-0005)",
                                "suite demo: its metrics below are compared over the 4 questions both runs have",
                                "suite extra is not in baseline base (new): nothing to compare it with"]
    assert comparison.suite("demo").only_in_baseline == ["q-0004", "q-0005"]
    # a subset (-k, --lf, a smaller limit) is compared with the same questions of the baseline, not all six:
    # the same cassettes, so no change at all
    for metric, change in comparison.suite("demo").aggregates.items():
        assert change.delta == 0 and not change.significant, metric
    traces = [t for q in with_six.suites[0].questions if q.id not in ("q-0004", "q-0005") for t in q.traces]
    assert len(traces) == 16
    assert comparison.suite("demo").aggregates["accuracy"].baseline == \
        sum(t.verdict == "correct" for t in traces) / len(traces)


def test_a_setting_set_since_the_baseline_where_it_was_none_is_one_note(tmp_path, monkeypatch, emulator):
    """A reference model where the baseline had `reference: none`, a price where it had none, a
    team's provider option: each is a mapping on one side and a plain value on the other, and is
    listed once, at its key (not left out as a field of another version's report)."""
    from test_logprob_backends import openai_suite

    from conftest import TEST_KEY

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    (tmp_path / "suites").mkdir()
    suite = tmp_path / "suites" / "oa.yaml"
    suite.write_text(openai_suite(emulator.base_url, samples=2, limit=2))
    run_suites(["suites"], record_mode="once", save="base.json")
    suite.write_text(openai_suite(emulator.base_url, samples=2, limit=2, reference={"name": "ref-1b"},
                                  model={"price": {"input": 0.1, "output": 0.4}}))
    report = run_suites(["suites"], record_mode="once", cassette_dir="changed", baseline="base.json")
    assert report.comparison.notes == [
        'suite oa: model.price changed: null → {"input": 0.1, "output": 0.4}',
        'suite oa: dpo.reference changed: "none" → {"provider": "openai", "name": "ref-1b", "base_url": "http:…',
    ]
    change = report.comparison.suite("oa").settings_changed["dpo.reference"]
    assert change.baseline == "none" and change.current["name"] == "ref-1b"
    # and back: the reference removed again is the same one note, the other way round
    back = compare_reports(Report.load("base.json"), report, "now")
    assert back.notes[1].startswith('suite oa: dpo.reference changed: {"provider": "openai", "name": "ref-1b"')
    assert back.notes[1].endswith(' → "none"')


def test_a_run_whose_questions_all_errored_claims_no_model_version_change(demo):
    """No trace means no model version to compare: the note would say "gemini-2.0-flash → " (nothing)."""
    report = run_suites(["suites"], cassette_dir="nowhere", baseline="base.json")  # replay: every cassette missing
    assert all(q.error for q in report.suites[0].questions)
    assert report.comparison.notes == [] and report.comparison.model_version_changed is False
    assert _aggregate(report, "accuracy").reason == "not measured in this run: none of its 6 questions was scored"


def test_a_text_prompt_turned_into_the_same_one_message_chat_is_no_change(demo):
    """A chat of one user message sends the very request of its text (the cassettes replay): no
    "prompt changed" note; a chat that adds a system turn is one."""
    text = "Solve it and end with 'A: <number>'.\n\nQuestion: {question}"
    (demo / "suites" / "demo.yaml").write_text(suite_yaml(limit=6, samples=4,
                                                          extra={"prompt": [{"role": "user", "content": text}]}))
    report = run_suites(["suites"], baseline="base.json")  # replayed from the baseline's cassettes
    assert isinstance(report.suites[0].questions[0].prompt, list)
    assert report.comparison.notes == []
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]
    (demo / "suites" / "demo.yaml").write_text(suite_yaml(limit=6, samples=4, extra={"prompt": chat}))
    report = run_suites(["suites"], record_mode="once", cassette_dir="chat", baseline="base.json")
    assert report.comparison.notes[0].startswith("suite demo: prompt changed on 6 of the 6 questions both runs have")


def test_a_baseline_written_before_prompts_were_kept_notes_no_prompt_change(demo):
    """An older report has no `prompt` per question: unknown is not "changed"."""
    older = json.loads((demo / "base.json").read_text())
    for q in older["suites"][0]["questions"]:
        del q["prompt"]
    current = Report.load(demo / "base.json")
    assert compare_reports(current, older, "older").notes == []
    assert compare_reports(Report.from_data(older), current, "base").notes == []
