"""The shipped suites replay offline, and every number in the JSON report recomputes from the file alone."""
import itertools
import math
import statistics

import pytest



def test_shipped_suites_pass_offline_and_print_the_report(shipped_report):
    report, stdout = shipped_report
    assert "rlhf-eval report" in stdout
    names = [s["name"] for s in report["suites"]]
    assert names == ["gsm8k_reference", "gsm8k_smoke", "science_choice"]
    report = {**report, "suites": report["suites"][1:]}
    gsm8k = report["suites"][0]
    assert len(gsm8k["questions"]) >= 25 and gsm8k["samples"] == 8
    assert any(q["metrics"]["spread"] == 0 for q in gsm8k["questions"]), "a zero-spread question is shown"
    assert all(t["logp"] is not None for q in gsm8k["questions"] for t in q["traces"])
    assert all(t["model_version"] == "gemini-2.0-flash-emulator" for q in gsm8k["questions"] for t in q["traces"])
    choice = report["suites"][1]
    assert choice["aggregates"]["dpo_unavailable"] and choice["aggregates"]["mean_margin"] is None


def _slow_logsigmoid(x):
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def test_every_number_recomputes_from_the_json_alone(shipped_report):
    report, _ = shipped_report
    for suite in report["suites"]:
        rewards_table, dpo, grpo = suite["rewards"], suite["dpo"], suite["grpo"]
        assert dpo["pairing"] == "all" and not dpo["length_normalized"] and dpo["loss_type"] == "sigmoid"
        all_margins, all_correct, all_traces, spreads = [], 0, 0, []
        for q in suite["questions"]:
            traces, m = q["traces"], q["metrics"]
            k = len(traces)
            rewards = [rewards_table[t["verdict"]] for t in traces]
            assert rewards == [t["reward"] for t in traces]
            correct = [t["verdict"] == "correct" for t in traces]
            assert m["k"] == k == suite["samples"]
            assert m["accuracy"] == pytest.approx(sum(correct) / k)
            assert m["unparsable_rate"] == pytest.approx(sum(t["verdict"] == "unparsable" for t in traces) / k)
            mean = sum(rewards) / k
            std = statistics.stdev(rewards)
            assert m["spread"] == pytest.approx(std)
            spreads.append(std)
            for t, r in zip(traces, rewards):
                expected = (r - mean) / (std + grpo["epsilon"]) if grpo["scale_rewards"] == "group" else r - mean
                assert t["advantage"] == pytest.approx(expected)
            pairs = [(won, lost) for won in range(k) if correct[won] for lost in range(k) if not correct[lost]]
            assert [(p["chosen"], p["rejected"]) for p in q["pairs"]] == pairs
            assert m["pairs"] == len(pairs)
            if q["dpo_unavailable"]:
                assert all(t["logp"] is None for t in traces)
                assert m["mean_margin"] is None and all(p["margin"] is None for p in q["pairs"])
            else:
                def rho(t, dpo=dpo):  # DPO's implicit reward without β: ℓ − ℓ_ref, or ℓ reference-free
                    return t["logp"] - (t["ref_logp"] if dpo["reference"] != "none" else 0.0)
                margins = [dpo["beta"] * (rho(traces[won]) - rho(traces[lost])) for won, lost in pairs]
                assert [p["margin"] for p in q["pairs"]] == pytest.approx(margins)
                if margins:
                    assert m["mean_margin"] == pytest.approx(sum(margins) / len(margins))
                    assert m["reward_accuracy"] == pytest.approx(sum(x > 0 for x in margins) / len(margins))
                    assert m["dpo_loss"] == pytest.approx(-sum(map(_slow_logsigmoid, margins)) / len(margins))
                all_margins += margins
            all_correct += sum(correct)
            all_traces += k
            assert m["unique_traces"] == len({t["text"] for t in traces})
            for size in range(1, k + 1):
                subsets = list(itertools.combinations(correct, size))
                assert m["pass_at"][size - 1] == pytest.approx(sum(any(s) for s in subsets) / len(subsets))
                assert m["pass_hat"][size - 1] == pytest.approx(sum(all(s) for s in subsets) / len(subsets))
        agg = suite["aggregates"]
        questions = suite["questions"]
        assert agg["unique_traces"] == sum(q["metrics"]["unique_traces"] for q in questions)
        for curve in ("pass_at", "pass_hat"):
            assert agg[curve] == pytest.approx([statistics.fmean(q["metrics"][curve][i] for q in questions)
                                                for i in range(suite["samples"])])
        assert agg["accuracy"] == pytest.approx(all_correct / all_traces)
        assert agg["frac_zero_spread"] == pytest.approx(sum(s == 0 for s in spreads) / len(spreads))
        if all_margins:
            assert agg["mean_margin"] == pytest.approx(sum(all_margins) / len(all_margins))
            assert agg["reward_accuracy"] == pytest.approx(sum(x > 0 for x in all_margins) / len(all_margins))


def test_the_reference_suite_holds_logp_and_ref_logp_for_every_trace(shipped_report):
    report, stdout = shipped_report
    suite = next(s for s in report["suites"] if s["name"] == "gsm8k_reference")
    reference = suite["dpo"]["reference"]
    assert reference["provider"] == "openai" and reference["name"] == "Qwen/Qwen2.5-Math-7B"
    traces = [t for q in suite["questions"] for t in q["traces"]]
    assert len(traces) == 20 * 4
    assert all(t["logp"] is not None and t["ref_logp"] is not None for t in traces)
    assert all(t["logp_source"] == "logprobs.content" for t in traces)
    # the policy and the reference disagree, so margins are not just β(ℓw − ℓl)
    assert all(t["logp"] != t["ref_logp"] for t in traces)
    assert all(t["model_version"] == "Qwen/Qwen2.5-Math-7B-Instruct" and t["system_fingerprint"] is None
               for t in traces)
    margins = [p["margin"] for q in suite["questions"] for p in q["pairs"]]
    assert len(margins) == suite["aggregates"]["pairs"] > 0 and None not in margins
    assert "gsm8k_reference · Qwen/Qwen2.5-Math-7B-Instruct · k = 4 · 20 questions" in stdout


def test_the_html_report_shows_the_reference_suites_ref_logps(shipped_report):
    from rlhf_eval.html_report import render_html

    report, _ = shipped_report
    html = render_html(report)
    assert html.count("<th>ref logp</th>") == 20  # one trace table per question of gsm8k_reference
    t = report["suites"][0]["questions"][0]["traces"][0]
    assert f"<td>{t['ref_logp']:.2f}</td>".replace("-", "\u2212") in html  # a typographic minus


def test_suite_aggregates_keep_answer_and_reasoning_tokens_apart(shipped_report):
    report, _ = shipped_report
    for suite in report["suites"]:
        traces = [t for q in suite["questions"] for t in q["traces"]]
        for key in ("token_count", "reasoning_tokens"):
            counts = [t[key] for t in traces if t[key] is not None]
            metric = "mean_tokens" if key == "token_count" else "mean_reasoning_tokens"
            assert suite["aggregates"][metric] == (pytest.approx(sum(counts) / len(counts)) if counts else None)
    by_name = {s["name"]: s["aggregates"] for s in report["suites"]}
    # gemini-3-flash thinks (thoughtsTokenCount); gemini-2.0-flash and the served Qwen model do not
    assert by_name["science_choice"]["mean_reasoning_tokens"] > 0
    assert by_name["gsm8k_smoke"]["mean_reasoning_tokens"] is None


def test_a_suite_threshold_with_no_question_scored_names_that_cause(project, offline):
    """No cassette, replay only: every question errors, so the suite gate fails on the real cause
    (nothing was scored), not on a lack of preference pairs."""
    from test_plugin import suite_yaml
    project.makefile(".yaml", demo=suite_yaml(limit=2, suite_thresholds={"frac_zero_spread": {"max": 0.5},
                                                                          "mean_margin": {"min": 0}}))
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "FAIL suite demo: frac_zero_spread could not be measured (none of its 2 questions was scored: "
        "see their errors above)",
        "FAIL suite demo: mean_margin could not be measured (none of its 2 questions was scored: "
        "see their errors above)"])


def test_suite_thresholds_gate_maj_at_k_and_unique_traces(tmp_path):
    """The suite row has maj@k and the unique traces, so a suite gate may name them; replayed from
    the shipped cassettes."""
    from conftest import shipped_copy
    from rlhf_eval import run_suites

    root = shipped_copy(tmp_path)
    path = root / "suites" / "gsm8k_smoke.yaml"
    text = path.read_text().replace("suite_thresholds:\n",
                                    "suite_thresholds:\n  maj_at_k: {min: 0.5}\n  unique_traces: {max: 100}\n")
    path.write_text(text)
    report = run_suites([path], cassette_dir=root / "cassettes", rootdir=root)
    suite = report.suites[0]
    a = suite.aggregates
    assert a.maj_at_k < 0.5 and a.unique_traces > 100
    assert suite.threshold_failures == [f"maj_at_k = {a.maj_at_k:.4g} < min 0.5",
                                        f"unique_traces = {a.unique_traces} > max 100"]
