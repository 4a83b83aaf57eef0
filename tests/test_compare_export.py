"""Baselines, comparisons with significance, preference drift, and TRL-ready exports — through pytest runs."""
import json

import pytest

from test_plugin import report_json, run, suite_yaml


def significant(comparison, suite="demo"):
    s = next(s for s in comparison["suites"] if s["name"] == suite)
    return {m: e["worse"] for m, e in s["aggregates"].items() if e["significant"]}


# Questions per run. 20 keep the verdicts clear of the 0.05 line both ways (measured against the
# emulator; 30 gave the same verdicts): control (other seeds) smallest p 0.098 (mean_spread),
# greedy frac_zero_spread 0.5 -> 1 at p 2.6e-4 and mean_spread at p 2e-4.
N = 20


def test_compare_flags_the_significant_changes_and_only_those(project, live):
    suite = project.makefile(".yaml", demo=suite_yaml(limit=N, samples=8, temperature=1.0))
    saved = run(project, "--rlhf-record-mode=once", "--rlhf-save=base")
    saved.assert_outcomes(passed=N)
    assert (project.path / "baselines" / "base.json").is_file()

    # Control: the same model and settings with other seeds — sampling noise, nothing significant.
    suite.write_text(suite_yaml(limit=N, samples=8, temperature=1.0, extra={"seed": 5000}))
    control, report = report_json(project, "--rlhf-record-mode=once", "--rlhf-cassette-dir=seed5000",
                                  "--rlhf-compare=base",
                                  "--rlhf-compare-fail=accuracy:0.05", "--rlhf-compare-fail=frac_zero_spread:0.1")
    assert control.ret == 0, control.stdout.str()
    assert significant(report["comparison"]) == {}
    assert report["comparison"]["model_version_changed"] is False

    # Greedy decoding: every trace of a question is the same, so GRPO signal collapses.
    suite.write_text(suite_yaml(limit=N, samples=8, temperature=0.0))
    greedy, report = report_json(project, "--rlhf-record-mode=once", "--rlhf-cassette-dir=greedy",
                                 "--rlhf-compare=base", "--rlhf-compare-fail=frac_zero_spread:0.1")
    assert greedy.ret == 1
    flagged = significant(report["comparison"])
    assert flagged.get("frac_zero_spread") is True and flagged.get("mean_spread") is True
    base = json.loads((project.path / "baselines" / "base.json").read_text())
    base_acc = base["suites"][0]["aggregates"]["accuracy"]
    acc = report["comparison"]["suites"][0]["aggregates"]["accuracy"]
    assert acc["baseline"] == pytest.approx(base_acc) and acc["p_value"] is not None
    greedy.stdout.fnmatch_lines(["*compared with baseline base*", "*frac_zero_spread*WORSE*", "*GRPO signal lost*",
                                 "FAIL regression: suite demo: frac_zero_spread *→ 1 *allowed 0.1*"
                                 "two-proportion z-test*"])
    # Not asked to gate on accuracy: whatever it did, only the named metric decides the exit code.
    allowed = run(project, "--rlhf-cassette-dir=greedy", "--rlhf-compare=base",
                  "--rlhf-compare-fail=frac_zero_spread:0.95")
    assert allowed.ret == 0


def test_a_new_model_version_is_noticed_and_flips_are_listed(project, live):
    suite = project.makefile(".yaml", demo=suite_yaml(limit=12, samples=8))
    run(project, "--rlhf-record-mode=once", "--rlhf-save=v1")
    suite.write_text(suite_yaml(limit=12, samples=8, model="gemini-1.5-flash"))
    result, report = report_json(project, "--rlhf-record-mode=once", "--rlhf-cassette-dir=v2", "--rlhf-compare=v1")
    comparison = report["comparison"]
    assert comparison["model_version_changed"] is True
    assert "gemini-2.0-flash-emulator → gemini-1.5-flash-emulator" in comparison["note"]
    result.stdout.fnmatch_lines(["note: suite demo: model version changed: *"])
    flips = [f for q in comparison["suites"][0]["questions"].values() for f in q["flips"]]
    for f in flips:  # a flip is a sign change of the answer pair's mean margin
        assert (f["baseline_margin"] > 0) != (f["current_margin"] > 0)
        assert f["direction"] == ("now rejected" if f["baseline_margin"] > 0 else "now preferred")


def test_compare_options_are_checked_before_anything_runs(project, live):
    project.makefile(".yaml", demo=suite_yaml(limit=1))
    missing = run(project, "--rlhf-compare=nope")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines(
        ["*baselines/nope.json: no such baseline report file (save one with --rlhf-save NAME)*"])
    bad = run(project, "--rlhf-compare-fail=acuracy:0.1")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--rlhf-compare-fail 'acuracy:0.1': expected METRIC:DELTA*"])


def test_exports_load_with_datasets_and_hold_exactly_the_reported_pairs_and_groups(project, live):
    datasets = pytest.importorskip("datasets")
    project.makefile(".yaml", demo=suite_yaml(limit=6, samples=4),
                     chat=suite_yaml("chat", limit=3, samples=4,
                                     extra={"model": {"name": "gemini-2.0-flash", "logprobs": True,
                                                      "system_instruction": "You are careful."}}))
    out = project.path / "export"
    result, report = report_json(project, "--rlhf-record-mode=once", f"--rlhf-export={out}")
    result.assert_outcomes(passed=9)
    for suite in report["suites"]:
        qs = suite["questions"]
        folder = out / suite["name"]

        def load(name):
            return datasets.load_dataset("json", data_files=str(folder / f"{name}.jsonl"), split="train")  # noqa: B023

        dpo = load("dpo")
        assert dpo.column_names[:5] == ["prompt", "chosen", "rejected", "question_id", "pass_rate"]
        pairs = [(q["id"], q["traces"][p["chosen"]]["text"], q["traces"][p["rejected"]]["text"])
                 for q in qs for p in q["pairs"]]
        assert len(pairs) == suite["aggregates"]["pairs"]
        expected = [(c, r) for _, c, r in dict.fromkeys(pairs)]  # identical pairs once, the first kept
        assert len(dpo) == len(expected)
        if suite["name"] == "chat":  # conversational: the system turn is kept
            assert dpo[0]["prompt"][0] == {"role": "system", "content": "You are careful."}
            assert [(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in dpo] == expected
        else:
            assert [(r["chosen"], r["rejected"]) for r in dpo] == expected
            assert dpo[0]["prompt"] == qs[0]["prompt"] or len(dpo) == 0
        prompts = load("grpo_prompts")
        assert {"prompt", "answer"} <= set(prompts.column_names) and len(prompts) == len(qs)
        assert prompts["answer"] == [q["answer"] for q in qs]
        groups = load("grpo_groups")
        assert len(groups) == len(qs)
        assert groups["rewards"] == [[t["reward"] for t in q["traces"]] for q in qs]
        assert groups["advantages"] == [pytest.approx([t["advantage"] for t in q["traces"]]) for q in qs]
        sft = load("sft")
        assert {"prompt", "completion", "question_id", "pass_rate"} <= set(sft.column_names)
        assert len(sft) == len({(q["id"], t["text"]) for q in qs for t in q["traces"] if t["verdict"] == "correct"})


def test_interval_threshold_gates_on_the_bound(project, live):
    # accuracy of 3/8 has a Wilson 95% interval of about [0.137, 0.694]: a min of 0.5 fails on the
    # point estimate, passes on the upper bound, and fails on the lower bound.
    def with_bound(on):
        return suite_yaml(limit=1, samples=8, thresholds={"accuracy": {"min": 0.5, "on": on}})

    suite = project.makefile(".yaml", demo=with_bound("point"))
    run(project, "--rlhf-record-mode=once").assert_outcomes(failed=1)
    suite.write_text(with_bound("upper"))
    result, report = report_json(project)
    result.assert_outcomes(passed=1)
    lo, hi = report["suites"][0]["questions"][0]["intervals"]["accuracy"]
    assert lo < 0.5 < hi
    suite.write_text(with_bound("lower"))
    result = run(project)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*accuracy (lower bound of its interval) = 0.1368 < min 0.5*"])


def test_interval_threshold_on_a_metric_without_interval_is_refused(project):
    project.makefile(".yaml", demo=suite_yaml(limit=1, thresholds={"pairs": {"min": 1, "on": "lower"}}))
    result = run(project)
    result.stdout.fnmatch_lines(["demo.yaml:*: thresholds.pairs.on: pairs has no interval; `on: lower` works for *"])
