"""Reasoning models: only the answer is verified, counted and scored, whichever way the API sends it.

The same trace — reasoning "Maybe \\boxed{20}? No: 3 boxes of 6 is 18." (a decoy 20 in it), answer
"The answer is 18." — arrives as Gemini thought parts, as OpenAI `reasoning_content`, and inline
in `<think>` tags; all three must give the same verdict, answer, token counts and logp. Then every
route a log-probability can take is checked for its value, or for none with its reason.
"""
from __future__ import annotations

import json

import pytest

from rlhf_eval.backends.gemini import traces_from_response
from rlhf_eval.backends.openai_compat import traces_from_openai
from rlhf_eval.evaluate import Backends, sample_question, score_question
from rlhf_eval.reasoning import answer_logprobs, split_reasoning
from rlhf_eval.suite import load_suite

REASONING = "Maybe \\boxed{20}? No: 3 boxes of 6 is 18."
ANSWER = "The answer is 18."
# 14 generated tokens before the answer (tags and separators included), then the answer's 6.
BEFORE = ["<think>", "\n", "Maybe", " \\boxed{20}", "?", " No", ":", " 3 boxes", " of 6", " is 18", ".", "\n",
          "</think>", "\n\n"]
ANSWER_TOKENS = ["The", " answer", " is", " ", "18", "."]
ANSWER_LOGPS = [-0.5, -0.25, -0.125, -0.0625, -1.0, -0.03125]
ANSWER_LOGP = -1.96875  # their sum, exact in binary
BEFORE_LOGPS = [-2.0] * len(BEFORE)
INLINE = "".join(BEFORE) + ANSWER
assert INLINE == f"<think>\n{REASONING}\n</think>\n\n{ANSWER}"


def gemini_body(*, logprobs=True) -> dict:
    """Vertex shape (no index, no logProbabilitySum), as the wire corpus's G01 and G03 show it."""
    cand = {"content": {"role": "model", "parts": [{"text": REASONING, "thought": True},
                                                   {"text": ANSWER, "thoughtSignature": "c2lnbmF0dXJl"}]},
            "finishReason": "STOP", "avgLogprobs": -3.25}
    if logprobs:
        cand["logprobsResult"] = {"chosenCandidates": [
            {"token": t, "logProbability": v, "tokenId": i}
            for i, (t, v) in enumerate(zip(ANSWER_TOKENS, ANSWER_LOGPS))]}
    return {"candidates": [cand], "modelVersion": "gemini-2.5-flash",
            "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 6, "thoughtsTokenCount": 14,
                              "totalTokenCount": 29}}


def openai_body(*, inline: bool, logprobs=True, report_reasoning_tokens=None) -> dict:
    """vLLM's chat shape: logprobs cover every generated token, reasoning included."""
    message = {"role": "assistant", "content": INLINE if inline else ANSWER}
    if not inline:
        message["reasoning_content"] = REASONING
    choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
    if logprobs:
        choice["logprobs"] = {"content": [{"token": t, "logprob": v, "top_logprobs": []}
                                          for t, v in zip(BEFORE + ANSWER_TOKENS, BEFORE_LOGPS + ANSWER_LOGPS)]}
    usage = {"prompt_tokens": 9, "completion_tokens": 20, "total_tokens": 29}
    if report_reasoning_tokens if report_reasoning_tokens is not None else not inline:
        usage["completion_tokens_details"] = {"reasoning_tokens": 14}
    return {"id": "chatcmpl-1", "object": "chat.completion", "model": "deepseek-r1-distill-qwen-7b",
            "system_fingerprint": None, "choices": [choice], "usage": usage}


def _suite(tmp_path, model: str, verifier: str):
    path = tmp_path / "r.yaml"
    path.write_text(f"suite: r\nmodel:\n{model}\nsamples: 1\nseed: 3\nverifier: {verifier}\n"
                    "questions:\n  - id: eggs\n    question: 3 boxes of 6 eggs. How many eggs?\n    answer: 18\n")
    return load_suite(path)


@pytest.mark.parametrize("verifier", ["numeric", "math"])
def test_the_same_reasoning_trace_scores_the_same_through_every_route(fixed_body, monkeypatch, tmp_path, verifier):
    monkeypatch.setenv("RLHF_EVAL_VERTEX_ACCESS_TOKEN", "t")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    routes = {
        "gemini thought parts": (gemini_body(), f"  provider: gemini\n  name: gemini-2.5-flash\n  logprobs: true\n"
                                                f"  base_url: {fixed_body.url}\n  vertex: {{project: p}}"),
        "openai reasoning_content": (openai_body(inline=False), f"  provider: openai\n  name: r1\n  logprobs: true\n"
                                                                f"  base_url: {fixed_body.url}/v1"),
        "inline <think>": (openai_body(inline=True), f"  provider: openai\n  name: r1\n  logprobs: true\n"
                                                     f"  base_url: {fixed_body.url}/v1"),
    }
    seen = {}
    for route, (body, model) in routes.items():
        fixed_body.serve(body)
        suite = _suite(tmp_path, model, verifier)
        (trace,) = sample_question(suite, suite.questions[0], Backends.for_suite(suite))
        result = score_question(suite, suite.questions[0], [trace])
        v = result.verdicts[0]
        seen[route] = (v.status, v.extracted, trace.text, trace.reasoning, trace.token_count,
                       trace.reasoning_tokens, trace.logp)
    assert seen["gemini thought parts"] == ("correct", "18", ANSWER, REASONING, 6, 14, ANSWER_LOGP)
    assert seen["openai reasoning_content"] == seen["gemini thought parts"]
    assert seen["inline <think>"] == seen["gemini thought parts"]


def test_without_logprobs_the_answer_token_count_comes_from_usage_or_is_unknown():
    (g,) = traces_from_response(gemini_body(logprobs=False), seed=0, expected=1)
    assert (g.token_count, g.reasoning_tokens, g.logp) == (6, 14, None)  # candidatesTokenCount excludes thoughts
    assert "avgLogprobs" in g.logp_note  # -3.25 x 6 would have been an invented -19.5
    (o,) = traces_from_openai(openai_body(inline=False, logprobs=False), seed=0, expected=1)
    assert (o.token_count, o.reasoning_tokens, o.logp) == (20 - 14, 14, None)  # completion_tokens includes reasoning
    (i,) = traces_from_openai(openai_body(inline=True, logprobs=False), seed=0, expected=1)
    # completion_tokens 20 covers the <think> span too and nothing says how much of it: unknown, not 20
    assert (i.text, i.token_count, i.reasoning_tokens, i.logp) == (ANSWER, None, None, None)
    (r,) = traces_from_openai(openai_body(inline=True, logprobs=False, report_reasoning_tokens=True),
                              seed=0, expected=1)
    assert (r.token_count, r.reasoning_tokens) == (6, 14)


# --- every route a logp can take: its value, or none with the reason ------------------------------------

def test_gemini_logprobs_result_on_a_model_without_reasoning_is_the_sum_of_every_chosen_token():
    body = gemini_body()
    cand = body["candidates"][0]
    cand["content"]["parts"] = [{"text": ANSWER}]
    body["usageMetadata"].pop("thoughtsTokenCount")
    cand["logprobsResult"]["logProbabilitySum"] = -99.0  # never read: the sum is of the answer's tokens
    (t,) = traces_from_response(body, seed=0, expected=1)
    assert (t.logp, t.token_count, t.logp_source) == (ANSWER_LOGP, 6, "logprobsResult.chosenCandidates")


def test_gemini_chosen_tokens_that_cover_the_thoughts_keep_the_answers_suffix():
    body = gemini_body()
    thought_tokens = [{"token": "Maybe \\boxed{20}? No: 3 boxes of 6 is 18.", "logProbability": -7.0}]
    lr = body["candidates"][0]["logprobsResult"]
    lr["chosenCandidates"] = thought_tokens + lr["chosenCandidates"]
    (t,) = traces_from_response(body, seed=0, expected=1)
    assert (t.logp, t.token_count) == (ANSWER_LOGP, 6)


def test_gemini_chosen_tokens_that_do_not_spell_the_answer_on_a_thinking_model_give_no_logp():
    body = gemini_body()
    body["candidates"][0]["logprobsResult"]["chosenCandidates"][0]["token"] = "A"
    (t,) = traces_from_response(body, seed=0, expected=1)
    assert t.logp is None and t.logp_source is None and "do not spell the text" in t.logp_note
    assert t.token_count == 6  # candidatesTokenCount still counts the answer


@pytest.mark.parametrize("vertex_version", ["gemini-2.0-flash", "gemini-2.5-flash"])
def test_avg_logprobs_alone_is_never_a_logp(vertex_version):
    body = gemini_body(logprobs=False)
    body["modelVersion"] = vertex_version
    if vertex_version == "gemini-2.0-flash":  # not a thinking model
        body["candidates"][0]["content"]["parts"] = [{"text": ANSWER}]
        body["usageMetadata"].pop("thoughtsTokenCount")
    (t,) = traces_from_response(body, seed=0, expected=1)
    assert t.logp is None and t.logp_source is None and t.logp_note.startswith("the API sent only avgLogprobs")


def test_openai_chat_and_completions_without_reasoning_sum_every_token():
    body = openai_body(inline=False)
    msg = body["choices"][0]["message"]
    del msg["reasoning_content"]
    body["usage"].pop("completion_tokens_details")
    body["choices"][0]["logprobs"]["content"] = body["choices"][0]["logprobs"]["content"][len(BEFORE):]
    (t,) = traces_from_openai(body, seed=0, expected=1)
    assert (t.logp, t.token_count, t.logp_source) == (ANSWER_LOGP, 6, "logprobs.content")
    completions = {"model": "m", "choices": [{"index": 0, "text": ANSWER, "finish_reason": "stop", "logprobs": {
        "tokens": ANSWER_TOKENS, "token_logprobs": ANSWER_LOGPS, "text_offset": [0, 3, 10, 13, 14, 16]}}]}
    (c,) = traces_from_openai(completions, seed=0, expected=1)
    assert (c.logp, c.token_count, c.logp_source) == (ANSWER_LOGP, 6, "logprobs.token_logprobs")


def test_openai_logprobs_spanning_the_reasoning_keep_only_a_provable_answer_suffix():
    (t,) = traces_from_openai(openai_body(inline=True), seed=0, expected=1)
    assert (t.logp, t.token_count, t.reasoning_tokens) == (ANSWER_LOGP, 6, 14)
    # a token that straddles the end of the reasoning and the answer: no honest split exists
    body = openai_body(inline=True)
    content = body["choices"][0]["logprobs"]["content"]
    content[13:15] = [{"token": "\n\nThe", "logprob": -0.5}]
    (s,) = traces_from_openai(body, seed=0, expected=1)
    assert (s.logp, s.token_count) == (None, None)
    assert s.logp_note.startswith("a token straddles the reasoning and the answer, "
                                  "so the answer's tokens cannot be told")
    # token texts that do not spell the content (a detokenizer's byte tokens, say)
    body = openai_body(inline=False)
    body["choices"][0]["logprobs"]["content"][-1]["token"] = "bytes:\\x2e"
    (b,) = traces_from_openai(body, seed=0, expected=1)
    assert b.logp is None and "do not spell the text" in b.logp_note and b.token_count == 6


def test_a_withheld_answer_has_no_logp_even_if_text_and_logprobs_came_with_it():
    body = openai_body(inline=False)
    body["choices"][0]["finish_reason"] = "content_filter"
    (t,) = traces_from_openai(body, seed=0, expected=1)
    assert (t.finish_reason, t.logp) == ("SAFETY", None) and "withheld" in t.logp_note
    g = gemini_body()
    g["candidates"][0]["finishReason"] = "RECITATION"
    (r,) = traces_from_response(g, seed=0, expected=1)
    assert (r.finish_reason, r.logp) == ("RECITATION", None)


def test_an_unclosed_think_has_no_answer(tmp_path):
    from rlhf_eval.evaluate import verdict_for

    suite = _suite(tmp_path, "  provider: openai\n  name: r1\n  base_url: http://x/v1", "numeric")
    body = openai_body(inline=True, logprobs=False)
    body["choices"][0]["message"]["content"] = "<think>\nMaybe 20? Let me check: 3 boxes of 6"
    (t,) = traces_from_openai(body, seed=0, expected=1)
    assert (t.text, t.reasoning, t.logp) == ("", "Maybe 20? Let me check: 3 boxes of 6", None)
    v = verdict_for(t, suite.questions[0], suite)
    assert (v.status, v.detail) == ("unparsable", "<think> was never closed: the model stopped before its answer")
    body["choices"][0]["finish_reason"] = "length"  # out of tokens while reasoning
    (cut,) = traces_from_openai(body, seed=0, expected=1)
    assert verdict_for(cut, suite.questions[0], suite).status == "truncated"


@pytest.mark.parametrize("text, answer, reasoning", [
    ("plain answer 18", "plain answer 18", ""),
    ("<think>a</think>b", "b", "a"),
    ("a</think>\n\nb", "b", "a"),  # the template opened <think> in the prompt (DeepSeek-R1, Qwen3)
    ("<think>a</think><think>c</think> b", "b", "a\n\nc"),
    ("  <think>\nx\n</think>\n", "", "x"),
])
def test_split_reasoning(text, answer, reasoning):
    s = split_reasoning(text)
    assert (s.answer, s.reasoning, s.unclosed) == (answer, reasoning, False)
    assert text[s.answer_start:] == answer


def test_custom_reasoning_tags_and_none(tmp_path):
    s = split_reasoning("[R]x[/R] 18", ("[R]", "[/R]"))
    assert (s.answer, s.reasoning) == ("18", "x")
    assert split_reasoning("<think>x</think>18", None).answer == "<think>x</think>18"
    suite = _suite(tmp_path, "  provider: openai\n  name: r1\n  base_url: http://x/v1\n  reasoning_tags: null",
                   "numeric")
    assert suite.spec.model.reasoning_tags is None


def test_answer_logprobs_refuses_what_it_cannot_prove():
    assert answer_logprobs([], [], "x", 0, has_reasoning=False) == (None, None, "the API returned no token logprobs")
    assert answer_logprobs(["x"], [None], "x", 0, has_reasoning=False)[2] == "some tokens have no logprob"
    assert answer_logprobs([], [-1.0], "x", 0, has_reasoning=False) == (-1.0, 1, None)  # no reasoning: all tokens
    assert answer_logprobs([], [-1.0], "x", 0, has_reasoning=True)[0] is None


def test_the_json_report_keeps_answer_and_reasoning_apart(tmp_path):
    suite = _suite(tmp_path, "  provider: openai\n  name: r1\n  base_url: http://x/v1", "numeric")
    (t,) = traces_from_openai(openai_body(inline=True), seed=0, expected=1)
    d = json.loads(json.dumps(score_question(suite, suite.questions[0], [t]).to_dict()))
    trace = d["traces"][0]
    assert (trace["text"], trace["reasoning"], trace["token_count"], trace["reasoning_tokens"]) == (
        ANSWER, REASONING, 6, 14)
    assert (d["metrics"]["mean_tokens"], d["metrics"]["mean_reasoning_tokens"]) == (6, 14)


def test_a_new_backend_fingerprint_is_not_a_model_change(shipped_report):
    import copy

    from rlhf_eval.compare import compare_reports

    report, _ = shipped_report
    baseline, current = copy.deepcopy(report), copy.deepcopy(report)
    for r, fp in ((baseline, "b4501-667d7284"), (current, "b6000-abcdef12")):
        for s in r["suites"]:
            for q in s["questions"]:
                for t in q["traces"]:
                    t["system_fingerprint"] = fp
    comparison = compare_reports(current, baseline, "base")
    assert comparison.model_version_changed is False
    assert "backend fingerprint changed (b4501-667d7284 → b6000-abcdef12); the model is the same" in comparison.note
    for t in (t for s in current["suites"] for q in s["questions"] for t in q["traces"]):
        t["model_version"] = "other-model"
    assert compare_reports(current, baseline, "base").model_version_changed is True


# --- field reports: an attack on the parsers found these; each is a case with its right value ---------

def _chat(content, *, tokens=None, logps=None, beside=None, finish="stop", usage=None, key="reasoning_content"):
    message = {"role": "assistant", "content": content}
    if beside is not None:
        message[key] = beside
    choice = {"index": 0, "message": message, "finish_reason": finish}
    if tokens is not None:
        choice["logprobs"] = {"content": [{"token": t, "logprob": v} for t, v in zip(tokens, logps)]}
    return {"model": "m", "choices": [choice], **({"usage": usage} if usage else {})}


EMPTY_THINK = ["<think>", "\n\n", "</think>", "\n\n", "42"]


def test_an_empty_think_block_is_still_reasoning_and_its_tokens_not_the_answers():
    (t,) = traces_from_openai(_chat("".join(EMPTY_THINK), tokens=EMPTY_THINK, logps=[-1, -1, -1, -1, -0.5]),
                              seed=0, expected=1)
    assert (t.text, t.logp, t.token_count, t.reasoning_tokens) == ("42", -0.5, 1, 4)
    closing_only = ["</think>", "\n\n", "42"]
    (c,) = traces_from_openai(_chat("".join(closing_only), tokens=closing_only, logps=[-1, -1, -0.5]),
                              seed=0, expected=1)
    assert (c.text, c.logp, c.token_count) == ("42", -0.5, 1)
    # a reasoning parser that leaves an empty reasoning field, logprobs over every token
    (v,) = traces_from_openai(_chat("42", tokens=EMPTY_THINK, logps=[-1, -1, -1, -1, -0.5], beside="\n\n"),
                              seed=0, expected=1)
    assert (v.text, v.logp, v.token_count) == ("42", -0.5, 1)
    g = {"candidates": [{"content": {"parts": [{"text": "".join(EMPTY_THINK)}]}, "finishReason": "STOP",
                         "logprobsResult": {"chosenCandidates": [{"token": t, "logProbability": p} for t, p in
                                                                 zip(EMPTY_THINK, [-1, -1, -1, -1, -0.5])]}}]}
    (gt,) = traces_from_response(g, seed=0, expected=1)
    assert (gt.text, gt.logp, gt.token_count) == ("42", -0.5, 1)


def test_a_reasoning_field_without_a_reasoning_count_leaves_the_answers_count_unknown():
    (t,) = traces_from_openai(_chat("42", beside="long reasoning", usage={"completion_tokens": 500}),
                              seed=0, expected=1)
    assert (t.token_count, t.reasoning_tokens) == (None, None)  # not 500: that counts the reasoning too


def test_a_reasoning_parsers_leading_newlines_are_not_the_answer():
    # vLLM's deepseek_r1/qwen3 parsers leave the text after </think> as it is: content "\n\n42"
    tokens = ["<think>", "r", "</think>", "\n\n", "42"]
    (p,) = traces_from_openai(_chat("\n\n42", tokens=tokens, logps=[-1, -1, -1, -1, -0.5], beside="r"),
                              seed=0, expected=1)
    (i,) = traces_from_openai(_chat("".join(tokens), tokens=tokens, logps=[-1, -1, -1, -1, -0.5]),
                              seed=0, expected=1)
    assert (p.text, p.logp, p.token_count, p.reasoning) == (i.text, i.logp, i.token_count, i.reasoning) == (
        "42", -0.5, 1, "r")


@pytest.mark.parametrize("content", ["The answer is 42. Some models wrap reasoning in <think> tags.",
                                     "The answer is 42.\n<think>not reasoning, a quoted tag</think>"])
def test_a_tag_inside_the_answer_is_the_answers_own_words(tmp_path, content):
    from rlhf_eval.evaluate import verdict_for

    suite = _suite(tmp_path, "  provider: openai\n  name: m\n  base_url: http://x/v1", "numeric")
    (t,) = traces_from_openai(_chat(content), seed=0, expected=1)
    assert (t.text, t.reasoning, t.answer_missing) == (content, "", None)
    body = _chat(content)
    body["choices"][0]["message"]["content"] = content.replace("42", "18")
    (t18,) = traces_from_openai(body, seed=0, expected=1)
    assert verdict_for(t18, suite.questions[0], suite).status == "correct"


def test_a_zero_width_token_between_reasoning_and_answer_gives_no_logp():
    (t,) = traces_from_openai(_chat("42", tokens=["r", "", "42"], logps=[-1, -3, -0.5], beside="r"), seed=0, expected=1)
    assert t.logp is None and t.logp_note.startswith("a zero-width token sits between the reasoning and the answer")


@pytest.mark.parametrize("value", ["NaN", "-Infinity", float("nan")])
def test_a_non_finite_logprob_gives_no_logp(value):
    (t,) = traces_from_openai(_chat("42", tokens=["42"], logps=[value]), seed=0, expected=1)
    assert t.logp is None and t.logp_note == "the API sent a non-finite logprob"


def test_mistral_thinking_chunks_are_reasoning():
    content = [{"type": "thinking", "thinking": [{"type": "text", "text": "Maybe 20? No, 18."}]},
               {"type": "text", "text": "The answer is 18."}]
    (t,) = traces_from_openai(_chat(content), seed=0, expected=1)
    assert (t.text, t.reasoning) == ("The answer is 18.", "Maybe 20? No, 18.")


@pytest.mark.parametrize("raw, finish, verdict", [
    ("eos_token", "STOP", None), ("stop_sequence", "STOP", None), ("", "STOP", None),  # TGI, and empty
    ("model_length", "MAX_TOKENS", "truncated"),  # Mistral
    ("abort", "ABORTED", "error"),  # vLLM
    ("tool_calls", "UNEXPECTED_TOOL_CALL", "error"),
    ("something_new", "SOMETHING_NEW", "error"),
])
def test_openai_finish_reasons(raw, finish, verdict):
    from rlhf_eval.finish import finish_verdict

    (t,) = traces_from_openai(_chat("42", finish=raw), seed=0, expected=1)
    assert t.finish_reason == finish
    assert (finish_verdict(finish) or (None,))[0] == verdict


def test_every_google_genai_finish_and_block_reason_has_its_verdict():
    from google.genai import types

    from rlhf_eval.finish import ERRORS, FINISHED, TRUNCATED, WITHHELD, finish_verdict

    for reason in types.FinishReason:
        assert reason.value in FINISHED | TRUNCATED | WITHHELD | set(ERRORS), f"{reason.value} is not mapped"
    for reason in types.BlockedReason:
        assert finish_verdict(f"PROMPT_BLOCKED:{reason.value}")[0] == "blocked"
    verdict, detail = finish_verdict("A_REASON_FROM_2027")
    assert verdict == "error" and "A_REASON_FROM_2027" in detail
    body = {"promptFeedback": {"blockReason": 5}}  # the legacy SDK's int enums
    assert traces_from_response(body, seed=0, expected=1)[0].finish_reason == "PROMPT_BLOCKED:IMAGE_SAFETY"


@pytest.mark.parametrize("body", [
    {"model": "m", "choices": [{"index": 0, "message": {"content": "42", "reasoning": {"x": 1}}}]},
    {"model": "m", "choices": [{"index": 0, "message": {"content": "42"}, "logprobs": {"content": [None]}}]},
    {"model": "m", "choices": [None]},
    {"model": "m", "choices": [{"index": 0, "message": {"content": "42"}, "finish_reason": ["stop"]}]},
    [1, 2],
])
def test_an_openai_body_of_another_shape_is_one_line(body):
    from rlhf_eval.sampling import SamplingError

    with pytest.raises(SamplingError, match=r"^the API answered with a body of an unexpected shape \(\w+: .*\); "
                                            r"re-record, or report it with the cassette$"):
        traces_from_openai(body, seed=0, expected=1)


@pytest.mark.parametrize("body", [
    {"candidates": [None]},
    {"candidates": [{"content": {"parts": [None]}}]},
    {"candidates": [{"content": {"parts": [{"text": "4"}]}, "logprobsResult": {"chosenCandidates": [None]}}]},
])
def test_a_gemini_body_of_another_shape_is_one_line(body):
    from rlhf_eval.sampling import SamplingError

    with pytest.raises(SamplingError, match="body of an unexpected shape"):
        traces_from_response(body, seed=0, expected=1)


def test_odd_but_valid_bodies_parse():
    # index as null or text keeps the order the server sent; a null text part is no text
    body = {"model": "m", "choices": [{"index": None, "message": {"content": "a"}},
                                      {"index": "1", "message": {"content": "b"}}]}
    assert [t.text for t in traces_from_openai(body, seed=0, expected=2)] == ["a", "b"]
    g = {"candidates": [{"content": {"parts": [{"text": None}, {"text": "4"}]}, "finishReason": "STOP"}]}
    assert traces_from_response(g, seed=0, expected=1)[0].text == "4"
    # proto3 JSON omits a logProbability of 0 (probability 1): the token counts as 0, not as missing
    g = {"candidates": [{"content": {"parts": [{"text": "4"}]},
                         "logprobsResult": {"chosenCandidates": [{"token": "4"}]}}]}
    assert traces_from_response(g, seed=0, expected=1)[0].logp == 0.0


def test_the_scorer_refuses_offsets_that_drift_from_the_text(fixed_body):
    from rlhf_eval.backends.openai_compat import OpenAIScorer
    from rlhf_eval.sampling import ScoringError
    from rlhf_eval.suite import ScorerConfig

    # tokens decoded one by one lose SentencePiece's leading space ("▁eggs" -> "eggs"), and the
    # server's offsets are running sums of those lengths: they drift from the echoed text
    context, completion = "Q: eggs?\n", "18 eggs"
    tokens = ["Q", ":", "eggs", "?", "\n", "1", "8", "eggs", "."]
    offsets = [sum(map(len, tokens[:i])) for i in range(len(tokens))]
    fixed_body.serve({"model": "ref", "choices": [{"index": 0, "text": context + completion + ".", "logprobs": {
        "tokens": tokens, "token_logprobs": [None, -1, -1, -1, -1, -0.25, -0.125, -0.5, -7.0],
        "text_offset": offsets}}]})
    scorer = OpenAIScorer(ScorerConfig(provider="openai", name="ref", base_url=f"{fixed_body.url}/v1"))
    with pytest.raises(ScoringError, match="token offsets do not tile the text"):
        scorer.score(context, [completion])


def test_a_threshold_on_a_count_no_trace_reported_fails_saying_so(tmp_path):
    from rlhf_eval.thresholds import check_thresholds
    from rlhf_eval.suite import Bound

    metrics = {"mean_reasoning_tokens": None, "mean_margin": None}
    failures, unchecked = check_thresholds(metrics, {"mean_reasoning_tokens": Bound(max=2000),
                                                     "mean_margin": Bound(min=0.0)}, None)
    assert [f.reason for f in failures] == [
        "mean_reasoning_tokens could not be measured: no trace has a reasoning token count (the model did not "
        "reason, or the server does not count reasoning tokens)"]
    assert unchecked == ["mean_margin (no preference pairs to measure)"]


def test_a_traces_dict_is_dataclasses_asdict():
    from dataclasses import asdict

    (t,) = traces_from_openai(openai_body(inline=True), seed=5, expected=1)
    t = type(t)(**{**t.__dict__, "extra": {"api_token_count": 20, "nested": [{"a": 1}]}})
    d = t.to_dict()
    assert d == asdict(t) and list(d) == list(asdict(t))
    d["extra"]["nested"][0]["a"] = 2  # a copy, as asdict's is
    assert t.extra["nested"][0]["a"] == 1
