"""Real log-probabilities end to end: OpenAI-compatible sampling and scoring (a reference model),
Gemini on Vertex AI, and the legacy SDK — each recorded through the emulator and replayed offline."""
import json

import pytest
import yaml

from conftest import GSM8K_TEST, TEST_KEY
from test_plugin import metrics_of, report_json, run

pytest.importorskip("openai")

DEAD = "http://127.0.0.1:9"


def openai_suite(emulator_url, *, name="oa", reference=None, dpo=None, model=None, samples=6, limit=3,
                 thresholds=None):
    doc = {
        "suite": name,
        "model": {"provider": "openai", "name": "policy-7b", "base_url": f"{emulator_url}/v1",
                  "temperature": 1.0, "max_output_tokens": 400, "logprobs": True, **(model or {})},
        "samples": samples, "seed": 10,
        "prompt": "Solve it and end with 'A: <number>'.\nQuestion: {question}",
        "dpo": {"beta": 0.1, **(dpo or {})},
        "thresholds": thresholds or {},
        "questions": {"source": str(GSM8K_TEST), "answer_regex": r"####\s*(.+)$", "limit": limit},
    }
    if reference:
        doc["dpo"]["reference"] = {"provider": "openai", "base_url": f"{emulator_url}/v1",
                                   "template": "{prompt}\n", **reference}
    return yaml.safe_dump(doc, sort_keys=False)


@pytest.fixture
def project(project, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    return project


def replay_offline(project, monkeypatch, text_before, **kwargs):
    """Point every URL at a dead port and drop the keys, then replay."""
    suite = project.path / "oa.yaml"
    suite.write_text(text_before.replace(kwargs["url"], DEAD))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return report_json(project)


def margins_from_json(question, beta, *, reference, length_normalized=False):
    traces = question["traces"]

    def reward(t):
        if length_normalized:
            return beta * t["logp"] / t["token_count"]
        return beta * (t["logp"] - (t["ref_logp"] if reference else 0.0))

    return [reward(traces[p["chosen"]]) - reward(traces[p["rejected"]]) for p in question["pairs"]]


def test_openai_sampler_with_a_reference_model_records_replays_and_recomputes(project, emulator, monkeypatch):
    text = openai_suite(emulator.base_url, reference={"name": "ref-1b"})
    project.makefile(".yaml", oa=text)
    recorded, rec = report_json(project, "--rlhf-record-mode=once")
    recorded.assert_outcomes(passed=3)
    cassette = (project.path / "cassettes/oa/test-0000.yaml").read_text()
    assert TEST_KEY not in cassette and "/v1/chat/completions" in cassette and "/v1/completions" in cassette

    replayed, rep = replay_offline(project, monkeypatch, text, url=emulator.base_url)
    replayed.assert_outcomes(passed=3)
    assert metrics_of(rep) == metrics_of(rec)
    questions = rep["suites"][0]["questions"]
    assert all(t["logp"] is not None and t["ref_logp"] is not None for q in questions for t in q["traces"])
    assert any(t["logp"] != t["ref_logp"] for q in questions for t in q["traces"]), \
        "a different model scores differently"
    scored = [q for q in questions if q["pairs"]]
    assert scored, "at least one question has preference pairs"
    for q in scored:
        assert [p["margin"] for p in q["pairs"]] == pytest.approx(margins_from_json(q, 0.1, reference=True))
    policy_only = [margins_from_json(q, 0.1, reference=False) for q in scored]
    assert policy_only != [[p["margin"] for p in q["pairs"]] for q in scored], "the reference term counts"


def test_reference_none_and_simpo_margins(project, emulator):
    project.makefile(".yaml", oa=openai_suite(emulator.base_url),
                     simpo=openai_suite(emulator.base_url, name="simpo", dpo={"length_normalized": True,
                                                                               "simpo_gamma": 0.5, "beta": 2.0}))
    result, report = report_json(project, "--rlhf-record-mode=once")
    result.assert_outcomes(passed=6)
    by_name = {s["name"]: s for s in report["suites"]}
    for q in by_name["oa"]["questions"]:
        assert all(t["ref_logp"] is None for t in q["traces"])
        assert [p["margin"] for p in q["pairs"]] == pytest.approx(margins_from_json(q, 0.1, reference=False))
    for q in by_name["simpo"]["questions"]:
        assert [p["margin"] for p in q["pairs"]] == pytest.approx(
            margins_from_json(q, 2.0, reference=False, length_normalized=True))


@pytest.mark.parametrize("scorer_model,expected", [
    ("llama-cpp-q8", "*the server did not score the given text*llama.cpp*score with vLLM or SGLang, or provider: hf*"),
    ("llama-cpp-strict", "*echo is not supported*llama.cpp's server rejects `echo`*"),
])
def test_a_scorer_that_does_not_score_the_text_fails_naming_the_cause(project, emulator, scorer_model, expected):
    project.makefile(".yaml", oa=openai_suite(emulator.base_url, reference={"name": scorer_model}, limit=1))
    result, report = report_json(project, "--rlhf-record-mode=once")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([expected])
    question = report["suites"][0]["questions"][0]
    assert question["metrics"] is None and "error" in question  # no number was reported


def test_llama_cpp_samples_with_logprobs(project, emulator):
    project.makefile(".yaml", oa=openai_suite(emulator.base_url, model={"name": "llama-cpp-q8"}, limit=1))
    result, report = report_json(project, "--rlhf-record-mode=once")
    result.assert_outcomes(passed=1)
    traces = report["suites"][0]["questions"][0]["traces"]
    assert all(t["logp"] is not None and t["logp_source"] == "logprobs.content" for t in traces)


def test_completions_endpoint_and_n_choices(project, emulator, monkeypatch):
    text = openai_suite(emulator.base_url, model={"endpoint": "completions", "candidates_per_request": 3},
                        limit=1)
    project.makefile(".yaml", oa=text)
    recorded, rec = report_json(project, "--rlhf-record-mode=once")
    recorded.assert_outcomes(passed=1)
    cassette = yaml.safe_load((project.path / "cassettes/oa/test-0000.yaml").read_text())
    bodies = [json.loads(i["request"]["body"]) for i in cassette["interactions"]]
    assert [(b["seed"], b["n"]) for b in bodies] == [(10, 3), (13, 3)]
    traces = rec["suites"][0]["questions"][0]["traces"]
    assert all(t["logp_source"] == "logprobs.token_logprobs" for t in traces)
    replayed, rep = replay_offline(project, monkeypatch, text, url=emulator.base_url)
    assert metrics_of(rep) == metrics_of(rec)


def test_completions_endpoint_without_max_tokens_is_refused_at_load(project, emulator):
    project.makefile(".yaml", oa=openai_suite(emulator.base_url, model={"endpoint": "completions",
                                                                       "max_output_tokens": None}))
    result = run(project)
    result.stdout.fnmatch_lines(["oa.yaml:*: model: endpoint completions needs max_output_tokens*"])


def vertex_suite(emulator_url, model, thresholds=None):
    return yaml.safe_dump({
        "suite": "vx", "samples": 4, "seed": 5, "thresholds": thresholds or {},
        "model": {"name": model, "logprobs": True, "base_url": emulator_url,
                  "vertex": {"project": "demo-project", "location": "us-central1"}},
        "prompt": "Question: {question}",
        "questions": {"source": str(GSM8K_TEST), "answer_regex": r"####\s*(.+)$", "limit": 2},
    }, sort_keys=False)


def test_vertex_gemini_25_gives_logprobs_and_replays_without_credentials(project, emulator, monkeypatch):
    monkeypatch.setenv("RLHF_EVAL_VERTEX_ACCESS_TOKEN", "ya29.test-token-never-recorded")
    project.makefile(".yaml", vx=vertex_suite(emulator.base_url, "gemini-2.5-flash"))
    recorded, rec = report_json(project, "--rlhf-record-mode=once")
    recorded.assert_outcomes(passed=2)
    cassette = (project.path / "cassettes/vx/test-0000.yaml").read_text()
    assert "ya29.test-token-never-recorded" not in cassette
    assert "/v1beta1/projects/demo-project/locations/us-central1/publishers/google/models/gemini-2.5-flash" in cassette
    assert all(t["logp"] is not None for q in rec["suites"][0]["questions"] for t in q["traces"])

    monkeypatch.delenv("RLHF_EVAL_VERTEX_ACCESS_TOKEN")
    (project.path / "vx.yaml").write_text(vertex_suite(DEAD, "gemini-2.5-flash"))
    replayed, rep = report_json(project)
    replayed.assert_outcomes(passed=2)
    assert metrics_of(rep) == metrics_of(rec)


def test_vertex_gemini_3_is_not_asked_for_logprobs(project, emulator, monkeypatch):
    monkeypatch.setenv("RLHF_EVAL_VERTEX_ACCESS_TOKEN", "ya29.t")
    project.makefile(".yaml", vx=vertex_suite(emulator.base_url, "gemini-3-flash",
                                              thresholds={"reward_accuracy": {"min": 0.5}}))
    result = run(project, "--rlhf-record-mode=once")
    result.stdout.fnmatch_lines(["*reward_accuracy is unavailable: gemini-3-flash returns no log-probabilities "
                                 "on Vertex AI, so none were requested*"])
    cassette = yaml.safe_load((project.path / "cassettes/vx/test-0000.yaml").read_text())
    assert all(i["response"]["status"]["code"] == 200 for i in cassette["interactions"])


def test_legacy_sdk_records_and_replays_a_suite(project, emulator, monkeypatch):
    pytest.importorskip("google.generativeai")
    monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", emulator.base_url)
    monkeypatch.setenv("GEMINI_API_KEY", TEST_KEY)
    text = yaml.safe_dump({
        "suite": "legacy", "samples": 4, "seed": 0,
        "model": {"provider": "gemini-legacy", "name": "gemini-2.0-flash", "logprobs": True},
        "prompt": "Question: {question}",
        "questions": {"source": str(GSM8K_TEST), "answer_regex": r"####\s*(.+)$", "limit": 2},
    })
    project.makefile(".yaml", legacy=text)
    recorded, rec = report_json(project, "--rlhf-record-mode=once",
                                "-W", "ignore::rlhf_eval.backends.gemini_legacy.LegacySeedWarning")
    recorded.assert_outcomes(passed=2)
    assert TEST_KEY not in (project.path / "cassettes/legacy/test-0000.yaml").read_text()
    traces = rec["suites"][0]["questions"][0]["traces"]
    assert all(t["seed"] is None and t["logp"] is not None for t in traces)
    monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", DEAD)
    monkeypatch.delenv("GEMINI_API_KEY")
    replayed, rep = report_json(project)
    replayed.assert_outcomes(passed=2)
    assert metrics_of(rep) == metrics_of(rec)


def test_policy_logps_from_a_scorer_when_the_api_gives_none(project, emulator, monkeypatch):
    """Gemini 3.x returns no logprobs; the suite's model.scorer supplies the policy's, honestly labelled."""
    monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", emulator.base_url)
    monkeypatch.setenv("GEMINI_API_KEY", TEST_KEY)
    project.makefile(".yaml", g3=yaml.safe_dump({
        "suite": "g3", "samples": 4, "seed": 1,
        "model": {"name": "gemini-3-flash", "logprobs": False,
                  "scorer": {"provider": "openai", "name": "policy-weights", "base_url": f"{emulator.base_url}/v1",
                             "template": "{prompt}\n"}},
        "prompt": "Question: {question}",
        "questions": {"source": str(GSM8K_TEST), "answer_regex": r"####\s*(.+)$", "limit": 2},
    }))
    result, report = report_json(project, "--rlhf-record-mode=once")
    result.assert_outcomes(passed=2)
    traces = [t for q in report["suites"][0]["questions"] for t in q["traces"]]
    assert all(t["logp"] is not None and t["logp_source"] == "scorer openai:policy-weights" for t in traces)
    assert all(t["token_count"] > 0 for t in traces)
    assert report["suites"][0]["aggregates"]["dpo_unavailable"] is None
