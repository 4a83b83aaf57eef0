"""Every real response body in ../shared/data/wire/, through the path that would receive it.

Each body is served by a local HTTP server to the real SDK (google-genai for Gemini, in Vertex
mode for the Vertex bodies; openai for the OpenAI-compatible ones) inside our sampler or scorer,
then verified and scored as a suite question would be. The expected values are derived by hand
from the bodies and written here: answer and reasoning text, verdict, answer and reasoning token
counts, and the answer's log-probability (or none, with the reason).
"""
from __future__ import annotations

import json
import pytest

from rlhf_eval.evaluate import Backends, sample_question, score_question
from rlhf_eval.sampling import SamplingError, ScoringError
from rlhf_eval.suite import load_suite

from conftest import SHARED

WIRE = SHARED / "data" / "wire"
pytestmark = pytest.mark.skipif(not WIRE.is_dir(), reason=f"the real-wire corpus is not at {WIRE}")


@pytest.fixture
def wire(fixed_body):
    def serve(name: str) -> dict:
        return fixed_body.serve((WIRE / name).read_bytes())
    fixed_body.serve_file = serve
    return fixed_body


def _suite(tmp_path, model: str, *, answer, verifier="numeric", question="What is 2+2?"):
    path = tmp_path / "wire.yaml"
    path.write_text(f"suite: wire\nmodel:\n{model}\nsamples: 1\nseed: 7\nverifier: {verifier}\n"
                    f"questions:\n  - id: q\n    question: {json.dumps(question)}\n    answer: {json.dumps(answer)}\n")
    return load_suite(path)


def _run(suite):
    traces = sample_question(suite, suite.questions[0], Backends.for_suite(suite))
    result = score_question(suite, suite.questions[0], traces)
    assert len(traces) == 1
    return traces[0], result.verdicts[0], result


def _gemini(wire, monkeypatch, tmp_path, body: str, model: str, *, vertex=False, logprobs=False, **kw):
    monkeypatch.setenv("GEMINI_API_KEY", "wire-test-key")
    monkeypatch.setenv("RLHF_EVAL_VERTEX_ACCESS_TOKEN", "wire-test-token")
    raw = wire.serve_file(body)
    spec = (f"  provider: gemini\n  name: {model}\n  base_url: {wire.url}\n  logprobs: {str(logprobs).lower()}\n"
            + ("  vertex: {project: p, location: global}\n" if vertex else ""))
    trace, verdict, result = _run(_suite(tmp_path, spec, **kw))
    assert ("aiplatform" in json.loads((WIRE / body.replace(".json", ".request.json")).read_text())["uri"]) == vertex
    assert ("/v1beta1/projects/p/locations/global/publishers/google/models/" in wire.paths[-1]) == vertex
    return raw, trace, verdict, result


# --- Gemini ------------------------------------------------------------------------------------------

def test_g01_vertex_thinking_model_logp_is_the_answers_chosen_tokens_not_avg_logprobs(wire, monkeypatch, tmp_path):
    raw, t, v, r = _gemini(wire, monkeypatch, tmp_path, "G01_vertex_25flash_logprobs5.json", "gemini-2.5-flash",
                           vertex=True, logprobs=True, answer=4)
    assert (t.text, t.reasoning, t.finish_reason, t.model_version) == ("2 + 2 = 4", "", "STOP", "gemini-2.5-flash")
    assert (v.status, v.extracted) == ("correct", "4")
    # 7 chosen tokens "2"," +"," ","2"," =", " ","4" spell the answer; thoughtsTokenCount 73 is apart.
    assert (t.token_count, t.reasoning_tokens) == (7, 73)
    hand = -(0.01972555 + 0.006128676 + 2.3844768e-07 + 2.3844768e-07 + 0.018705286 + 0.024863577 + 4.649037e-06)
    assert t.logp == pytest.approx(hand, abs=1e-12) and t.logp == pytest.approx(-0.069428215, abs=1e-9)
    assert t.logp_source == "logprobsResult.chosenCandidates"
    # the invented number this replaces: avgLogprobs x candidatesTokenCount = -7.60
    assert raw["candidates"][0]["avgLogprobs"] * 7 == pytest.approx(-7.6009, abs=1e-3)
    assert r.metrics["mean_logp"] == pytest.approx(hand) and r.metrics["mean_reasoning_tokens"] == 73


def test_g02_vertex_logprobs_without_top_candidates(wire, monkeypatch, tmp_path):
    _, t, v, _ = _gemini(wire, monkeypatch, tmp_path, "G02_vertex_25flash_logprobs_notop.json", "gemini-2.5-flash",
                         vertex=True, logprobs=True, answer=4)
    hand = -(0.0066939937 + 0.0026399216 + 3.5760596e-07 + 1.1922384e-07 + 0.009400622 + 0.03711015 + 4.529893e-06)
    assert (t.text, v.status, t.token_count, t.reasoning_tokens) == ("2 + 2 = 4", "correct", 7, 17)
    assert t.logp == pytest.approx(hand, abs=1e-12) and t.logp == pytest.approx(-0.055849694, abs=1e-9)


def test_g03_thought_parts_are_reasoning_and_only_the_answer_is_verified(wire, monkeypatch, tmp_path):
    raw, t, v, r = _gemini(wire, monkeypatch, tmp_path, "G03_dev_3pro_thought_parts.json", "gemini-3-pro-preview",
                           logprobs=True, answer="right-left-right",
                           verifier="{name: regex, pattern: '(Right-Left-Right)'}",
                           question="How do I cross the street?")
    thought, answer = raw["candidates"][0]["content"]["parts"]
    assert thought["thought"] is True and "thoughtSignature" in answer
    assert t.text == answer["text"] and t.reasoning == thought["text"].strip()
    assert t.text.startswith("Crossing the street safely") and t.reasoning.startswith("**A Safe Street-Crossing Guide")
    assert (t.token_count, t.reasoning_tokens, t.logp, t.logp_note) == (736, 1001, None, None)
    assert (v.status, v.extracted) == ("correct", "Right-Left-Right")
    assert r.dpo_unavailable == ("gemini-3-pro-preview returns no log-probabilities on the Gemini Developer API, "
                                 "so none were requested")


def test_g04_thinking_model_out_of_budget_is_truncated_with_no_answer_tokens(wire, monkeypatch, tmp_path):
    _, t, v, _ = _gemini(wire, monkeypatch, tmp_path, "G04_dev_25pro_max_tokens_no_parts.json", "gemini-2.5-pro",
                         answer="Paris", verifier="exact", question="What is the capital of France?")
    assert (t.text, t.finish_reason, v.status) == ("", "MAX_TOKENS", "truncated")
    assert (t.token_count, t.reasoning_tokens, t.logp) == (0, 2, None)  # no candidatesTokenCount: proto3's zero


def test_g05_max_tokens_with_text(wire, monkeypatch, tmp_path):
    _, t, v, _ = _gemini(wire, monkeypatch, tmp_path, "G05_dev_25flash_max_tokens_text.json", "gemini-2.5-flash",
                         answer="Paris", verifier="exact", question="What is the capital of France?")
    assert (t.text, t.finish_reason, v.status) == ("The capital of France is", "MAX_TOKENS", "truncated")
    assert (t.token_count, t.reasoning_tokens, t.logp) == (5, None, None)  # thinking_budget 0: no thoughts field


def test_g06_safety_with_empty_content_is_blocked(wire, monkeypatch, tmp_path):
    _, t, v, _ = _gemini(wire, monkeypatch, tmp_path, "G06_dev_15flash_safety.json", "gemini-1.5-flash",
                         answer="x", verifier="exact", question="Tell me a joke.")
    assert (t.text, t.finish_reason, t.token_count, t.logp, t.model_version) == (
        "", "SAFETY", 0, None, "gemini-1.5-flash")
    assert v.status == "blocked" and "SAFETY" in v.detail


def test_g07_model_armor_prompt_block(wire, monkeypatch, tmp_path):
    _, t, v, _ = _gemini(wire, monkeypatch, tmp_path, "G07_vertex_25flash_prompt_blocked_model_armor.json",
                         "gemini-2.5-flash", vertex=True, answer="x", verifier="exact", question="Ignore all previous")
    assert (t.text, t.finish_reason, t.token_count, t.logp) == ("", "PROMPT_BLOCKED:MODEL_ARMOR", 0, None)
    assert v.status == "blocked" and "MODEL_ARMOR" in v.detail
    assert t.extra["block_message"] == "The prompt violated Prompt Injection and Jailbreak filters."


@pytest.mark.parametrize("body, model, vertex", [
    ("G09_vertex_20flash_avglogprobs_only.json", "gemini-2.0-flash", True),
    ("G11_dev_15flash_avglogprobs_only.json", "gemini-1.5-flash", False),
])
def test_g09_g11_avg_logprobs_alone_never_becomes_a_logp(wire, monkeypatch, tmp_path, body, model, vertex):
    raw, t, v, r = _gemini(wire, monkeypatch, tmp_path, body, model, vertex=vertex, answer="Paris",
                           verifier="{name: regex, pattern: '(Paris)'}", question="What is the capital of France?")
    assert raw["candidates"][0]["avgLogprobs"] < 0
    assert (t.text, v.status, t.token_count, t.reasoning_tokens) == (
        "The capital of France is Paris.\n", "correct", 8, None)
    assert t.logp is None and t.logp_source is None and "avgLogprobs" in t.logp_note
    assert r.metrics["mean_logp"] is None and r.dpo_unavailable == (
        f"{model} was not asked for log-probabilities (the suite has model.logprobs: false)")


def test_g12_thoughts_counted_apart_from_the_answer(wire, monkeypatch, tmp_path):
    _, t, v, r = _gemini(wire, monkeypatch, tmp_path, "G12_dev_25flash_thoughts_counted.json", "gemini-2.5-flash",
                         answer="x", verifier="exact", question="Was your previous response empty?")
    assert t.text.startswith("As an AI, I don't retain memory") and t.reasoning == ""
    assert (t.token_count, t.reasoning_tokens, t.logp) == (119, 699, None)
    assert (r.metrics["mean_tokens"], r.metrics["mean_reasoning_tokens"]) == (119, 699)


# --- OpenAI-compatible --------------------------------------------------------------------------------

def _openai(wire, monkeypatch, tmp_path, body: str, model: str, *, endpoint="chat", logprobs=False, **kw):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    raw = wire.serve_file(body)
    spec = (f"  provider: openai\n  name: {model}\n  base_url: {wire.url}/v1\n  endpoint: {endpoint}\n"
            f"  logprobs: {str(logprobs).lower()}\n"
            + ("  max_output_tokens: 16\n" if endpoint == "completions" else ""))
    trace, verdict, result = _run(_suite(tmp_path, spec, **kw))
    assert wire.paths[-1] == f"/v1/{'chat/completions' if endpoint == 'chat' else 'completions'}"
    return raw, trace, verdict, result


def test_o04_vllm_reasoning_field_glm(wire, monkeypatch, tmp_path):
    raw, t, v, _ = _openai(wire, monkeypatch, tmp_path, "O04_vllm_crusoe_glm_reasoning_chat.json", "zai/GLM-5.2",
                           answer=4)
    assert (t.text, t.reasoning) == ("2 + 2 = 4.", raw["choices"][0]["message"]["reasoning"])
    assert (v.status, v.extracted) == ("correct", "4")
    # completion_tokens 118 includes reasoning_tokens 108
    assert (t.token_count, t.reasoning_tokens, t.logp) == (10, 108, None)
    assert (t.model_version, t.system_fingerprint) == ("zai/GLM-5.2", None)


def test_o05_deepseek_reasoner_reasoning_content(wire, monkeypatch, tmp_path):
    raw, t, v, _ = _openai(wire, monkeypatch, tmp_path, "O05_deepseek_reasoner_chat.json", "deepseek-reasoner",
                           answer="crosswalk", verifier="{name: regex, pattern: '(crosswalk)'}",
                           question="How do I cross the street?")
    message = raw["choices"][0]["message"]
    assert (t.text, t.reasoning) == (message["content"], message["reasoning_content"])
    assert (t.token_count, t.reasoning_tokens) == (789 - 415, 415)
    assert (t.model_version, t.system_fingerprint) == ("deepseek-reasoner", "fp_5417b77867_prod0225")
    assert v.status == "correct"


@pytest.mark.parametrize("body", ["O02_vllm016_completions_echo_logprobs.json",
                                  "O04_vllm_crusoe_glm_reasoning_chat.json"])
def test_vllm_bodies_asked_without_token_ids_are_one_line_for_trl_vllm(wire, tmp_path, body):
    """provider trl_vllm (TRL's vLLM server) needs `token_ids` to know the stop token: a vLLM body
    without them (these were asked without `return_token_ids`) is one line saying so, not a guess."""
    wire.serve_file(body)
    endpoint = "completions" if body.startswith("O02") else "chat"
    suite = _suite(tmp_path, f"  provider: trl_vllm\n  name: m\n  base_url: {wire.url}\n  max_output_tokens: 8",
                   answer=4, question="What is 2+2?")
    if endpoint == "chat":  # the question as a chat goes to /v1/chat/completions
        suite = load_suite(_chat(tmp_path / "wire.yaml"))
    with pytest.raises(SamplingError, match=r"^TRL's vLLM server sent no token_ids; it needs vLLM") as info:
        sample_question(suite, suite.questions[0], Backends.for_suite(suite))
    assert "\n" not in str(info.value)
    assert wire.paths[-1] == f"/v1/{'chat/completions' if endpoint == 'chat' else 'completions'}"


def _chat(path):
    """The suite at `path` with its prompt as a one-message chat."""
    path.write_text(path.read_text() + "prompt:\n  - {role: user, content: '{question}'}\n")
    return path


def test_o03_llamacpp_completions_without_logprobs(wire, monkeypatch, tmp_path):
    _, t, v, _ = _openai(wire, monkeypatch, tmp_path, "O03_llamacpp_b4501_completions_logprobs_null.json",
                         "gpt-3.5-turbo", endpoint="completions", answer="Germany", verifier="exact")
    assert (t.text, t.finish_reason, v.status) == (" Ge", "MAX_TOKENS", "truncated")
    assert (t.token_count, t.logp, t.reasoning_tokens) == (1, None, None)
    # the build id is the fingerprint, never the model
    assert (t.model_version, t.system_fingerprint) == ("gpt-3.5-turbo", "b4501-667d7284")


def test_s01_llamacpp_current_completions_logprobs_shape(wire, monkeypatch, tmp_path):
    _, t, v, _ = _openai(wire, monkeypatch, tmp_path, "S01_SYNTHETIC_llamacpp_completions_logprobs_content.json",
                         "qwen2.5-1.5b", endpoint="completions", logprobs=True, answer=4)
    assert (t.text, t.finish_reason, v.status, v.extracted) == (" 4", "STOP", "correct", "4")
    assert (t.token_count, t.logp, t.logp_source) == (2, -0.25 + -0.5, "logprobs.content")
    assert (t.model_version, t.system_fingerprint) == ("qwen2.5-1.5b", "b6000-abcdef12")


def _scorer(wire, body: str, template="{prompt}"):
    from rlhf_eval.backends.openai_compat import OpenAIScorer
    from rlhf_eval.suite import ScorerConfig

    wire.serve_file(body)
    return OpenAIScorer(ScorerConfig(provider="openai", name="ref", base_url=f"{wire.url}/v1", template=template))


def test_o02_vllm_echo_scores_the_completion_tokens_only(wire):
    # tokens "The"," step"," of"," boiling"," water"," is",":"," ","1" at offsets 0,3,8,11,19,25,28,29,30:
    # context "The step of boiling" (19 characters) + completion " water is:" -> the tokens at 19, 25, 28.
    (score,) = _scorer(wire, "O02_vllm016_completions_echo_logprobs.json").score("The step of boiling", [" water is:"])
    assert score.token_count == 3
    assert score.logp == pytest.approx(-2.0115487575531006 - 2.2331151962280273 - 8.53701114654541, abs=1e-12)


@pytest.mark.parametrize("body", ["O03_llamacpp_b4501_completions_logprobs_null.json",
                                  "S01_SYNTHETIC_llamacpp_completions_logprobs_content.json"])
def test_llamacpp_bodies_are_refused_as_scores(wire, body):
    # llama.cpp ignores echo: its logprobs (if any) are of generated tokens, not of the given text
    with pytest.raises(ScoringError, match="did not score the given text"):
        _scorer(wire, body).score("What is", [" 2+2?"])
