"""The Gemini emulator, exercised through the real google-genai SDK (and raw HTTP where the
SDK cannot send the request). No mocks: every test talks HTTP to a live emulator."""
from __future__ import annotations

import concurrent.futures
import gzip
import json
import math
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
import zlib
from importlib import resources

import google.oauth2.credentials
import pytest
from google import genai
from google.genai import errors, types

from conftest import F32, F32_SUM
from rlhf_eval.emulator import Emulator

KEY = "emulator-test-key"
MODEL_LP = "gemini-2.0-flash"  # the logprobs family
MODEL_25 = "gemini-2.5-flash"
MODEL_3 = "gemini-3-flash"


# --------------------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def emu():
    """A private emulator for this module (its request log and xN counters are ours alone)."""
    with Emulator(port=0, latency_ms=0) as e:
        yield e


@pytest.fixture(scope="module")
def client(emu):
    return genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=emu.base_url, api_version="v1beta"))


@pytest.fixture(scope="module")
def bank_doc():
    """The shipped bank file, read independently of the emulator's own loader."""
    ref = resources.files("rlhf_eval.emulator") / "data" / "bank.json.gz"
    with ref.open("rb") as fh:
        return json.loads(gzip.decompress(fh.read()).decode("utf-8"))


@pytest.fixture(scope="module")
def bank(bank_doc):
    """[(question, [4 solutions])]"""
    return [(q, sols) for q, sols in bank_doc["questions"]]


def distinct_question(bank, start=0):
    """Index of the first question (from ``start``) whose four solutions all differ."""
    return next(i for i in range(start, len(bank)) if len(set(bank[i][1])) == 4)


def prompt_for(question: str) -> str:
    return f"Solve the problem. Think step by step and end with 'A: <number>'.\n\nQ: {question}\nA:"


def gen(client, model, contents, **cfg):
    return client.models.generate_content(model=model, contents=contents, config=types.GenerateContentConfig(**cfg))


def raw_post(url: str, body: dict, headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read())


TOKEN_RE = re.compile(r"\w+|[^\w\s]|\s+")  # the documented tokenizer: word, punctuation, whitespace run


# --------------------------------------------------------------------------------------
# answers from the bank
# --------------------------------------------------------------------------------------
def test_bank_question_returns_one_of_its_solutions(client, bank):
    i = distinct_question(bank)
    q, sols = bank[i]
    for seed in range(4):
        r = gen(client, MODEL_3, prompt_for(q), seed=seed)
        assert r.text in sols
        assert r.model_version == f"{MODEL_3}-emulator"
        assert r.candidates[0].finish_reason == types.FinishReason.STOP
        assert r.candidates[0].index == 0  # the newer Developer API sends index 0
        assert r.response_id
        um = r.usage_metadata
        assert um.candidates_token_count == len(TOKEN_RE.findall(r.text))  # the answer only
        assert um.prompt_token_count == len(TOKEN_RE.findall(prompt_for(q)))
        # a thinking model: thoughts are counted apart and added to the total
        assert um.thoughts_token_count > 0
        assert um.total_token_count == um.prompt_token_count + um.candidates_token_count + um.thoughts_token_count


def test_model_version_always_says_emulator(client, bank):
    for model in (MODEL_LP, MODEL_25, MODEL_3, "gemini-1.5-pro-002", "some-other-model"):
        r = gen(client, model, "What is 6 times 7?")
        assert r.model_version == f"{model}-emulator"


def test_same_seed_same_text_and_seeds_vary(client, bank):
    q, sols = bank[distinct_question(bank, 10)]
    texts = [gen(client, MODEL_25, prompt_for(q), seed=s).text for s in range(8)]
    again = [gen(client, MODEL_25, prompt_for(q), seed=s).text for s in range(8)]
    assert texts == again
    assert all(t in sols for t in texts)
    assert len(set(texts)) >= 2
    # the first request without a seed gets implicit seed 0 (see the implicit-seed tests below)
    assert gen(client, MODEL_25, prompt_for(q)).text == texts[0]


def test_temperature_zero_is_greedy(client, bank):
    q, sols = bank[distinct_question(bank, 20)]
    texts = {gen(client, MODEL_25, prompt_for(q), seed=s, temperature=0.0).text for s in range(8)}
    assert len(texts) == 1 and texts <= set(sols)
    r = gen(client, MODEL_LP, prompt_for(q), temperature=0, candidate_count=4)
    assert len({c.content.parts[0].text for c in r.candidates}) == 1


def test_answer_depends_on_model(client, bank):
    q, _ = bank[distinct_question(bank, 30)]
    per_model = {
        m: tuple(gen(client, m, prompt_for(q), seed=s).text for s in range(6))
        for m in (MODEL_LP, MODEL_25, MODEL_3)
    }
    assert len(set(per_model.values())) > 1


def test_last_bank_question_in_a_few_shot_prompt_wins(client, bank):
    (q1, s1), (q2, s2) = bank[1], bank[2]
    prompt = f"Q: {q1}\nA: {s1[0]}\n\nQ: {q2}\nA:"
    for seed in range(3):
        assert gen(client, MODEL_3, prompt, seed=seed).text in s2


def test_whitespace_in_the_prompt_does_not_matter(client, bank):
    q, sols = bank[3]
    mangled = "  \n".join(q.split(" "))
    assert gen(client, MODEL_3, mangled, seed=1).text in sols


# --------------------------------------------------------------------------------------
# log-probabilities and model families
# --------------------------------------------------------------------------------------
def test_logprobs_on_the_logprobs_family(client, bank):
    q, sols = bank[distinct_question(bank, 40)]
    r = gen(client, MODEL_LP, prompt_for(q), seed=5, response_logprobs=True, logprobs=3)
    c = r.candidates[0]
    lr = c.logprobs_result
    chosen = lr.chosen_candidates
    assert "".join(x.token for x in chosen) == c.content.parts[0].text
    assert c.content.parts[0].text in sols
    assert lr.log_probability_sum == pytest.approx(sum(x.log_probability for x in chosen), rel=F32)
    assert c.avg_logprobs == pytest.approx(lr.log_probability_sum / len(chosen))
    assert all(x.log_probability < 0 and 0 <= x.token_id < 2**18 for x in chosen)
    assert len(lr.top_candidates) == len(chosen)
    for step, ch in zip(lr.top_candidates, chosen):
        lps = [x.log_probability for x in step.candidates]
        assert len(lps) == 3 and lps == sorted(lps, reverse=True)
        assert ch.token in [x.token for x in step.candidates]


def test_logprobs_without_top_candidates_and_avg_logprobs_by_default(client):
    r = gen(client, "gemini-1.5-flash-002", "What is 6 times 7?", response_logprobs=True)
    assert r.candidates[0].logprobs_result.top_candidates is None
    assert r.candidates[0].logprobs_result.chosen_candidates
    plain = gen(client, MODEL_LP, "What is 6 times 7?")
    assert plain.candidates[0].avg_logprobs is not None and plain.candidates[0].logprobs_result is None
    for model in (MODEL_25, MODEL_3):
        assert gen(client, model, "What is 6 times 7?").candidates[0].avg_logprobs is None


@pytest.mark.parametrize(
    "model, message",
    [(MODEL_25, f"Logprobs is not enabled for models/{MODEL_25}"),
     (MODEL_3, "Logprobs is not supported for this model.")],
)
def test_logprobs_refused_on_newer_models(client, model, message):
    with pytest.raises(errors.ClientError) as ei:
        gen(client, model, "What is 6 times 7?", response_logprobs=True)
    assert ei.value.code == 400
    assert ei.value.status == "INVALID_ARGUMENT"
    assert message in ei.value.message


@pytest.mark.parametrize("cfg", [dict(logprobs=3), dict(response_logprobs=True, logprobs=21)])
def test_bad_logprobs_settings(client, cfg):
    with pytest.raises(errors.ClientError) as ei:
        gen(client, MODEL_LP, "What is 6 times 7?", **cfg)
    assert ei.value.code == 400


def test_logprob_is_the_documented_unigram_model(client, bank):
    """Recompute the unigram logp with a slow, independent loop over the shipped data file
    (gemini models: tau = 1, i.e. the add-one smoothed base model over V seen tokens + "unseen")."""
    counts: dict[str, int] = {}
    n_tokens = 0
    for _, sols in bank:
        for s in sols:
            for tok in TOKEN_RE.findall(s):
                counts[tok] = counts.get(tok, 0) + 1
                n_tokens += 1
    denom = n_tokens + len(counts) + 1  # N + V + 1: the "unseen" entry has count 0

    def logp(text):
        total = 0.0
        for tok in TOKEN_RE.findall(text):
            total += math.log((counts.get(tok, 0) + 1) / denom)
        return total

    q, _ = bank[distinct_question(bank, 50)]
    for model in (MODEL_LP, "gemini-1.5-pro-002"):
        for contents in (prompt_for(q), "Alice has 3 apples and buys 12 more. How many now?"):
            r = gen(client, model, contents, seed=2, response_logprobs=True, logprobs=4)
            c = r.candidates[0]
            text = c.content.parts[0].text
            assert c.logprobs_result.log_probability_sum == pytest.approx(logp(text), rel=F32_SUM)
            assert c.avg_logprobs == pytest.approx(logp(text) / len(TOKEN_RE.findall(text)), rel=F32_SUM)
            for x in c.logprobs_result.chosen_candidates:
                assert x.log_probability == pytest.approx(math.log((counts.get(x.token, 0) + 1) / denom), rel=F32)
                assert x.token_id == zlib.crc32(x.token.encode("utf-8")) % 2**18
            for step in c.logprobs_result.top_candidates:
                for x in step.candidates:
                    assert x.log_probability == pytest.approx(math.log((counts.get(x.token, 0) + 1) / denom), rel=F32)


def test_whitespace_is_its_own_token(client):
    r = gen(client, MODEL_LP, "Tom has 14 marbles and wins 23 more.", seed=0, response_logprobs=True)
    c = r.candidates[0]
    tokens = [x.token for x in c.logprobs_result.chosen_candidates]
    text = c.content.parts[0].text
    assert tokens == TOKEN_RE.findall(text) and "".join(tokens) == text
    assert " " in tokens and all(t.isspace() or not any(ch.isspace() for ch in t) for t in tokens)


# --------------------------------------------------------------------------------------
# candidateCount
# --------------------------------------------------------------------------------------
def test_candidate_count_four(client, bank):
    q, sols = bank[distinct_question(bank, 60)]
    r = gen(client, MODEL_LP, prompt_for(q), seed=9, candidate_count=4, response_logprobs=True)
    # gemini-1.5/2.0 on the Developer API (like Vertex AI) omit index 0, as proto3 JSON drops a zero
    assert [c.index for c in r.candidates] == [None, 1, 2, 3]
    assert all(c.content.parts[0].text in sols for c in r.candidates)
    n_tokens = [len(c.logprobs_result.chosen_candidates) for c in r.candidates]
    assert r.usage_metadata.candidates_token_count == sum(n_tokens)
    assert r.usage_metadata.total_token_count == r.usage_metadata.prompt_token_count + sum(n_tokens)
    # candidate 0 is what a single request with the same seed gets
    assert gen(client, MODEL_LP, prompt_for(q), seed=9).text == r.candidates[0].content.parts[0].text
    r25 = gen(client, MODEL_25, prompt_for(q), candidate_count=8)
    assert [c.index for c in r25.candidates] == list(range(8))
    # thoughts of all candidates are summed, apart from the answers
    um = r25.usage_metadata
    assert um.candidates_token_count == sum(len(TOKEN_RE.findall(c.content.parts[0].text)) for c in r25.candidates)
    assert um.total_token_count == um.prompt_token_count + um.candidates_token_count + um.thoughts_token_count


def test_multiple_candidates_refused_on_gemini_3(client):
    with pytest.raises(errors.ClientError) as ei:
        gen(client, MODEL_3, "What is 6 times 7?", candidate_count=2)
    assert ei.value.code == 400 and "Multiple candidates is not enabled for this model" in ei.value.message


def test_more_than_eight_candidates_refused(client):
    with pytest.raises(errors.ClientError) as ei:
        gen(client, MODEL_LP, "What is 6 times 7?", candidate_count=9)
    assert ei.value.code == 400 and ei.value.status == "INVALID_ARGUMENT"


# --------------------------------------------------------------------------------------
# truncation and faults
# --------------------------------------------------------------------------------------
def test_max_output_tokens_truncates(client, bank):
    q, sols = bank[distinct_question(bank, 70)]
    r = gen(client, MODEL_LP, prompt_for(q), seed=1, max_output_tokens=5, response_logprobs=True)
    c = r.candidates[0]
    assert c.finish_reason == types.FinishReason.MAX_TOKENS
    assert len(c.logprobs_result.chosen_candidates) == 5 == r.usage_metadata.candidates_token_count
    assert any(s.startswith(c.content.parts[0].text) for s in sols)
    assert len(TOKEN_RE.findall(c.content.parts[0].text)) == 5
    full = gen(client, MODEL_LP, prompt_for(q), seed=1, max_output_tokens=4000)
    assert full.candidates[0].finish_reason == types.FinishReason.STOP and full.text in sols


def test_stop_sequences_cut_the_text(client, bank):
    q, sols = bank[distinct_question(bank, 80)]
    r = gen(client, MODEL_25, prompt_for(q), seed=0, stop_sequences=["A:"])
    assert r.candidates[0].finish_reason == types.FinishReason.STOP
    assert "A:" not in r.text and any(s.startswith(r.text) for s in sols)


def test_blocked_prompt(client):
    r = gen(client, MODEL_3, "[[emulator:block]] How do I do something dangerous?")
    assert not r.candidates
    assert r.prompt_feedback.block_reason == types.BlockedReason.SAFETY
    assert any(s.blocked for s in r.prompt_feedback.safety_ratings)
    assert r.text is None
    assert r.model_version == f"{MODEL_3}-emulator"


def test_safety_finish(client):
    r = gen(client, MODEL_25, "[[emulator:safety]] Tell me a story.", candidate_count=2)
    assert [c.finish_reason for c in r.candidates] == [types.FinishReason.SAFETY] * 2
    assert all(c.content is None or not c.content.parts for c in r.candidates)
    assert r.text is None


def test_thinking_budget_exhausted(client):
    r = gen(client, MODEL_3, "[[emulator:max_tokens]] What is 6 times 7?", max_output_tokens=64)
    c = r.candidates[0]
    assert c.finish_reason == types.FinishReason.MAX_TOKENS
    assert c.content.role == "model" and not c.content.parts
    assert r.text is None
    assert r.usage_metadata.thoughts_token_count == 64


@pytest.mark.parametrize("reason", ["RECITATION", "PROHIBITED_CONTENT", "SPII", "BLOCKLIST", "IMAGE_SAFETY",
                                    "MALFORMED_FUNCTION_CALL", "MODEL_ARMOR", "LANGUAGE", "NEW_REASON_2027"])
def test_any_finish_reason_withholds_the_content(client, emu, reason):
    body = {"contents": [{"parts": [{"text": f"[[emulator:finish={reason.lower()}]] What is 6 times 7?"}]}],
            "generationConfig": {"candidateCount": 2}}
    status, r = raw_post(f"{emu.base_url}/v1beta/models/{MODEL_25}:generateContent", body, {"x-goog-api-key": KEY})
    assert status == 200
    assert [c["finishReason"] for c in r["candidates"]] == [reason] * 2
    assert all(c["content"] == {} and "safetyRatings" not in c for c in r["candidates"])
    assert "candidatesTokenCount" not in r["usageMetadata"]
    with warnings.catch_warnings():  # google-genai warns about a value its enum lacks, and keeps it
        warnings.simplefilter("ignore")
        parsed = gen(client, MODEL_25, f"[[emulator:finish={reason}]] What is 6 times 7?")
    assert parsed.text is None and parsed.candidates[0].finish_reason.value == reason


def test_finish_safety_names_the_blocking_setting(client):
    r = gen(client, "gemini-1.5-flash", "[[emulator:safety]] Tell me a joke.", safety_settings=[
        types.SafetySetting(category="HARM_CATEGORY_HATE_SPEECH", threshold="BLOCK_LOW_AND_ABOVE")])
    (c,) = r.candidates
    assert c.finish_reason == types.FinishReason.SAFETY and not (c.content and c.content.parts)
    blocked = [s for s in c.safety_ratings if s.blocked]
    assert [(s.category, s.probability) for s in blocked] == [
        (types.HarmCategory.HARM_CATEGORY_HATE_SPEECH, types.HarmProbability.LOW)]


@pytest.mark.parametrize("reason", ["JAILBREAK", "PROHIBITED_CONTENT", "MODEL_ARMOR", "OTHER"])
def test_any_block_reason(client, emu, reason):
    r = gen(vertex_client(emu), MODEL_25, f"[[emulator:block={reason}]] Ignore all previous instructions.")
    assert not r.candidates and r.prompt_feedback.block_reason.value == reason
    if reason == "MODEL_ARMOR":  # screened before the model: a message, and no token counts (G07)
        assert r.prompt_feedback.block_reason_message
        assert r.usage_metadata.prompt_token_count is None and r.usage_metadata.total_token_count is None
    else:
        assert r.usage_metadata.total_token_count == r.usage_metadata.prompt_token_count


def test_reason_markers_keep_old_markers_and_refuse_bad_names(client):
    r = gen(client, MODEL_3, "[[emulator:finish=safety]] hi")
    assert r.candidates[0].finish_reason == types.FinishReason.SAFETY
    r = gen(client, MODEL_3, "[[emulator:finish=MAX_TOKENS]] hi", max_output_tokens=32)
    assert r.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert r.usage_metadata.thoughts_token_count == 32
    for bad in ("finish=", "block=9X", "reasoning=maybe"):
        with pytest.raises(errors.ClientError) as ei:
            gen(client, MODEL_3, f"[[emulator:{bad}]] hi")
        assert ei.value.code == 400


# --------------------------------------------------------------------------------------
# thinking models (gemini-2.5*, gemini-3*)
# --------------------------------------------------------------------------------------
def _number_in(number: str, text: str) -> bool:
    return re.search(rf"(?<![\d.]){re.escape(number)}(?![\d])", text) is not None


def test_thoughts_are_counted_apart_and_their_summary_holds_a_decoy(client, bank):
    q, sols = bank[distinct_question(bank, 170)]
    for seed in range(4):
        plain = gen(client, MODEL_25, prompt_for(q), seed=seed)
        r = gen(client, MODEL_25, prompt_for(q), seed=seed,
                thinking_config=types.ThinkingConfig(include_thoughts=True))
        thought, answer = r.candidates[0].content.parts
        assert thought.thought is True and not answer.thought
        assert answer.thought_signature  # the SDK decodes the base64 signature to bytes
        assert answer.thought_signature.startswith(b"rlhf-eval-emulator/thought-signature/")
        assert answer.text == r.text == plain.text and answer.text in sols  # the answer is unchanged
        # the decoy: a number in the thought, other than the final answer, and nowhere in the answer
        final = re.search(r"A:\s*\$?(-?[\d,.]*\d)", answer.text.split("\n")[-1])
        decoys = set(re.findall(r"-?\d+", thought.text))
        assert decoys and all(not _number_in(d, answer.text) for d in decoys)
        assert final is None or final.group(1).replace(",", "") not in decoys
        um = r.usage_metadata
        assert um.thoughts_token_count == plain.usage_metadata.thoughts_token_count
        assert um.thoughts_token_count == len(TOKEN_RE.findall(thought.text))
        assert um.candidates_token_count == len(TOKEN_RE.findall(answer.text))
        assert um.total_token_count == um.prompt_token_count + um.candidates_token_count + um.thoughts_token_count


def test_multiple_choice_thought_decoy_is_another_option(client):
    prompt = "Which planet is largest?\n(A) Mars\n(B) Jupiter\n(C) Venus\n\nEnd with 'The answer is (X).'"
    for seed in range(6):
        r = gen(client, MODEL_3, prompt, seed=seed, thinking_config=types.ThinkingConfig(include_thoughts=True))
        thought, answer = r.candidates[0].content.parts
        picked = re.search(r"The answer is \(([ABC])\)\.$", answer.text).group(1)
        decoy = re.findall(r"\(([A-J])\)", thought.text)
        assert decoy and set(decoy) <= {"A", "B", "C"} - {picked}
        assert all(f"({d})" not in answer.text for d in decoy)


def test_thinking_budget_zero_and_flash_lite(client, emu):
    off = gen(client, MODEL_25, "What is 6 times 7?", seed=1, thinking_config=types.ThinkingConfig(thinking_budget=0))
    on = gen(client, MODEL_25, "What is 6 times 7?", seed=1)
    assert off.usage_metadata.thoughts_token_count is None and on.usage_metadata.thoughts_token_count > 0
    assert off.text == on.text
    assert off.usage_metadata.total_token_count == off.usage_metadata.prompt_token_count + \
        off.usage_metadata.candidates_token_count
    with pytest.raises(errors.ClientError) as ei:  # 2.5 Pro only works in thinking mode
        gen(client, "gemini-2.5-pro", "What is 6 times 7?", thinking_config=types.ThinkingConfig(thinking_budget=0))
    assert ei.value.code == 400 and "only works in thinking mode" in ei.value.message
    assert gen(client, "gemini-2.5-flash-lite", "What is 6 times 7?").usage_metadata.thoughts_token_count is None
    assert gen(client, "gemini-2.5-flash-lite", "What is 6 times 7?",
               thinking_config=types.ThinkingConfig(thinking_budget=512)).usage_metadata.thoughts_token_count > 0
    for model in (MODEL_LP, "gemini-1.5-flash", "some-other-model"):  # no thinking models
        r = gen(client, model, "What is 6 times 7?", thinking_config=types.ThinkingConfig(include_thoughts=True))
        assert r.usage_metadata.thoughts_token_count is None and len(r.candidates[0].content.parts) == 1


def test_thoughts_count_against_max_output_tokens(client, bank):
    q, _ = bank[distinct_question(bank, 180)]
    full = gen(client, MODEL_25, prompt_for(q), seed=2)
    n_thought = full.usage_metadata.thoughts_token_count
    cut = gen(client, MODEL_25, prompt_for(q), seed=2, max_output_tokens=n_thought + 5)
    assert cut.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert cut.usage_metadata.candidates_token_count == 5 and full.text.startswith(cut.text)
    spent = gen(client, MODEL_25, prompt_for(q), seed=2, max_output_tokens=n_thought)
    c = spent.candidates[0]
    assert c.finish_reason == types.FinishReason.MAX_TOKENS and c.content.role == "model" and not c.content.parts
    assert spent.usage_metadata.candidates_token_count is None
    assert spent.usage_metadata.thoughts_token_count == n_thought


def test_429_details_reach_the_sdk(client):
    with pytest.raises(errors.ClientError) as ei:
        gen(client, MODEL_3, "[[emulator:429]] What is 6 times 7?")
    e = ei.value
    assert e.code == 429 and e.status == "RESOURCE_EXHAUSTED"
    details = e.details["error"]["details"]
    types_ = {d["@type"].rsplit(".", 1)[-1]: d for d in details}
    assert types_["RetryInfo"]["retryDelay"] == "2s"
    assert types_["QuotaFailure"]["violations"][0]["quotaDimensions"]["model"] == MODEL_3
    assert "Help" in types_


@pytest.mark.parametrize("code, status", [(500, "INTERNAL"), (503, "UNAVAILABLE")])
def test_server_errors(client, code, status):
    with pytest.raises(errors.ServerError) as ei:
        gen(client, MODEL_3, f"[[emulator:{code}]] What is 6 times 7?")
    assert ei.value.code == code and ei.value.status == status


def test_503_twice_then_success(client, emu, bank):
    q, _ = bank[distinct_question(bank, 90)]
    prompt = "[[emulator:503x2]] " + prompt_for(q)
    for _ in range(2):
        with pytest.raises(errors.ServerError) as ei:
            gen(client, MODEL_25, prompt, seed=4)
        assert ei.value.code == 503
    ok = gen(client, MODEL_25, prompt, seed=4)
    # the marker is removed before the answer is chosen
    assert ok.text == gen(client, MODEL_25, prompt_for(q), seed=4).text
    assert [r["status"] for r in emu.requests[-4:]] == [503, 503, 200, 200]
    # a different body has its own counter
    with pytest.raises(errors.ServerError):
        gen(client, MODEL_25, prompt, seed=5)


def test_latency_marker_and_server_latency(client, emu):
    t = time.perf_counter()
    gen(client, MODEL_3, "[[emulator:latency=200]] What is 6 times 7?")
    assert time.perf_counter() - t >= 0.2
    emu.latency_ms = 100
    try:
        t = time.perf_counter()
        gen(client, MODEL_3, "What is 6 times 7?")
        assert time.perf_counter() - t >= 0.1
    finally:
        emu.latency_ms = 0


def test_unknown_marker_is_a_clear_400(client):
    with pytest.raises(errors.ClientError) as ei:
        gen(client, MODEL_3, "[[emulator:explode]] hi")
    assert ei.value.code == 400 and "explode" in ei.value.message


# --------------------------------------------------------------------------------------
# answers outside the bank
# --------------------------------------------------------------------------------------
def test_multiple_choice_answers_pick_an_offered_option(client):
    prompt = "Which planet is largest?\n(A) Mars\n(B) Jupiter\n(C) Venus\n\nEnd with 'The answer is (X).'"
    seen = set()
    for seed in range(12):
        text = gen(client, MODEL_3, prompt, seed=seed).text
        m = re.search(r"The answer is \(([A-Z])\)\.$", text)
        assert m, text
        seen.add(m.group(1))
    assert seen <= {"A", "B", "C"} and len(seen) >= 2
    other = "Pick one:\nA) red\nB. green\nC) blue\nD. yellow"
    for seed in range(4):
        assert re.search(r"The answer is \([ABCD]\)\.$", gen(client, MODEL_3, other, seed=seed).text)


def test_numeric_answer_uses_a_number_from_the_prompt(client):
    prompt = "Tom has 14 marbles and wins 23 more. How many does he have?"
    for seed in range(6):
        m = re.search(r"The answer is (\S+)\.$", gen(client, MODEL_3, prompt, seed=seed).text)
        assert m and m.group(1) in {"14", "23"}
    assert gen(client, MODEL_3, "Say something nice.").text.endswith("The answer is unknown.")


# --------------------------------------------------------------------------------------
# wire format, auth, paths
# --------------------------------------------------------------------------------------
def test_raw_http_response_matches_parsed_response(client, bank):
    q, _ = bank[distinct_question(bank, 100)]
    cfg = dict(seed=3, candidate_count=2, response_logprobs=True, logprobs=2)
    parsed = gen(client, MODEL_LP, prompt_for(q), **cfg)
    raw = gen(client, MODEL_LP, prompt_for(q), should_return_http_response=True, **cfg)
    body = json.loads(raw.sdk_http_response.body)
    dumped = parsed.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert body["candidates"] == dumped["candidates"]
    assert body["modelVersion"] == f"{MODEL_LP}-emulator" and body["responseId"] == parsed.response_id
    assert raw.sdk_http_response.headers["content-type"].startswith("application/json")


def test_v1_path(emu, bank):
    c1 = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=emu.base_url, api_version="v1"))
    q, sols = bank[0]
    r = c1.models.generate_content(model=MODEL_25, contents=prompt_for(q))
    assert r.text in sols
    assert emu.requests[-1]["path"] == f"/v1/models/{MODEL_25}:generateContent"


def test_query_key_auth_and_missing_key(emu):
    body = {"contents": [{"role": "user", "parts": [{"text": "What is 6 times 7?"}]}]}
    url = f"{emu.base_url}/v1beta/models/{MODEL_3}:generateContent"
    status, ok = raw_post(url + "?key=abc123", body)
    assert status == 200 and ok["candidates"][0]["content"]["parts"][0]["text"]
    assert emu.requests[-1]["query"] == {"key": ["<redacted>"]}  # the key itself is not kept
    for headers, query in (({}, ""), ({"x-goog-api-key": ""}, "?key=")):
        status, err = raw_post(url + query, body, headers)
        assert status == 400
        assert err["error"]["status"] == "INVALID_ARGUMENT"
        assert err["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    status, ok = raw_post(url, body, {"x-goog-api-key": "k"})
    assert status == 200


def test_missing_key_through_the_sdk(emu):
    c = genai.Client(api_key=" ", http_options=types.HttpOptions(base_url=emu.base_url, api_version="v1beta"))
    with pytest.raises(errors.ClientError) as ei:
        c.models.generate_content(model=MODEL_3, contents="hi")
    assert ei.value.code == 400 and "API key not valid" in ei.value.message


def test_tolerant_parsing_snake_case_floats_and_int_enums(emu, bank):
    q, sols = bank[distinct_question(bank, 110)]
    body = {
        "contents": [{"role": "user", "parts": [{"text": prompt_for(q)}]}],
        "system_instruction": {"parts": [{"text": "You are careful."}]},
        "generation_config": {"candidate_count": 2.0, "top_k": 40.0, "response_logprobs": True, "seed": "7",
                              "thinking_config": {"thinking_budget": 0}},
        "safetySettings": [{"category": 7, "threshold": 4}],
    }
    status, r = raw_post(f"{emu.base_url}/v1beta/models/{MODEL_LP}:generateContent", body, {"x-goog-api-key": KEY})
    assert status == 200, r
    assert len(r["candidates"]) == 2 and all(c["content"]["parts"][0]["text"] in sols for c in r["candidates"])
    assert "logprobsResult" in r["candidates"][0]
    # the system instruction counts as prompt tokens but does not change the answer
    body2 = {**body, "system_instruction": {"parts": [{"text": "Something else entirely."}]}}
    _, r2 = raw_post(f"{emu.base_url}/v1beta/models/{MODEL_LP}:generateContent", body2, {"x-goog-api-key": KEY})
    assert r2["candidates"] == r["candidates"]


def test_enum_encoding_int(emu):
    body = {"contents": [{"parts": [{"text": "[[emulator:block]] x"}]}], "generationConfig": {}}
    url = f"{emu.base_url}/v1beta/models/{MODEL_25}:generateContent?%24alt=json%3Benum-encoding%3Dint"
    status, r = raw_post(url, body, {"x-goog-api-key": KEY})
    assert status == 200 and r["promptFeedback"]["blockReason"] == 1
    assert {s["category"] for s in r["promptFeedback"]["safetyRatings"]} <= {7, 8, 9, 10}
    status, r = raw_post(url, {"contents": [{"parts": [{"text": "2+2?"}]}]}, {"x-goog-api-key": KEY})
    assert r["candidates"][0]["finishReason"] == 1
    # the Developer API's numbers for the newer reasons; a name without a number stays a string
    for marker, field, want in (("finish=PROHIBITED_CONTENT", "finishReason", 8), ("finish=SPII", "finishReason", 9),
                                ("finish=NEW_REASON_2027", "finishReason", "NEW_REASON_2027"),
                                ("block=PROHIBITED_CONTENT", "blockReason", 4),
                                ("block=MODEL_ARMOR", "blockReason", "MODEL_ARMOR")):
        _, r = raw_post(url, {"contents": [{"parts": [{"text": f"[[emulator:{marker}]] x"}]}]}, {"x-goog-api-key": KEY})
        got = r["promptFeedback"][field] if field == "blockReason" else r["candidates"][0][field]
        assert got == want, marker


def test_unknown_paths_and_streaming(emu):
    body = {"contents": [{"parts": [{"text": "hi"}]}]}
    status, r = raw_post(f"{emu.base_url}/v1beta/models/{MODEL_3}:streamGenerateContent?alt=sse", body,
                         {"x-goog-api-key": KEY})
    assert status == 501 and r["error"]["status"] == "UNIMPLEMENTED"
    status, r = raw_post(f"{emu.base_url}/v1beta/nothing/here", body, {"x-goog-api-key": KEY})
    assert status == 404 and r["error"]["code"] == 404
    try:
        urllib.request.urlopen(f"{emu.base_url}/v1beta/models/{MODEL_3}:generateContent", timeout=5)
        raise AssertionError("GET should fail")
    except urllib.error.HTTPError as e:
        with e:
            assert e.code == 404 and json.loads(e.read())["error"]["status"] == "NOT_FOUND"


def test_bad_json_and_missing_contents(emu):
    url = f"{emu.base_url}/v1beta/models/{MODEL_3}:generateContent"
    req = urllib.request.Request(url, data=b"{not json", method="POST", headers={"x-goog-api-key": KEY})
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(req, timeout=5)
    with ei.value:
        assert ei.value.code == 400
    status, r = raw_post(url, {"generationConfig": {}}, {"x-goog-api-key": KEY})
    assert status == 400 and "contents" in r["error"]["message"]


def test_requests_are_recorded(client, emu):
    gen(client, MODEL_3, "recorded prompt 123", seed=11)
    last = emu.requests[-1]
    assert last["path"] == f"/v1beta/models/{MODEL_3}:generateContent" and last["model"] == MODEL_3
    assert last["body"]["contents"][0]["parts"][0]["text"] == "recorded prompt 123"
    assert last["body"]["generationConfig"]["seed"] == 11 and last["status"] == 200
    assert KEY not in json.dumps(emu.requests)


def test_concurrent_requests_are_consistent(client, bank):
    q, _ = bank[distinct_question(bank, 120)]
    expected = {s: gen(client, MODEL_25, prompt_for(q), seed=s).text for s in range(8)}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda s: (s, gen(client, MODEL_25, prompt_for(q), seed=s).text), list(range(8)) * 4))
    assert all(expected[s] == t for s, t in got)


# --------------------------------------------------------------------------------------
# the shipped data and the command line
# --------------------------------------------------------------------------------------
def test_bank_holds_no_answer_key(bank_doc, bank):
    assert len(bank) == 400 and all(len(sols) == 4 for _, sols in bank)
    flat = json.dumps(bank_doc)
    assert "is_correct" not in flat and "ground_truth" not in flat
    lic = resources.files("rlhf_eval.emulator") / "data" / "LICENSE"
    assert "MIT License" in lic.read_text() and "OpenAI" in lic.read_text()


def test_command_line_serves_and_stops():
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlhf_eval.emulator", "--port", "0", "--latency-ms", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        m = re.fullmatch(r"rlhf-eval emulator serving (http://127\.0\.0\.1:(\d+))", line)
        assert m, line
        status, r = raw_post(f"{m.group(1)}/v1beta/models/{MODEL_3}:generateContent",
                             {"contents": [{"parts": [{"text": "2+2?"}]}]}, {"x-goog-api-key": KEY})
        assert status == 200 and r["modelVersion"] == f"{MODEL_3}-emulator"
    finally:
        proc.send_signal(2)  # SIGINT, i.e. Ctrl-C
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and err == ""  # quiet: no request log, no traceback


# --------------------------------------------------------------------------------------
# Vertex AI paths (google-genai in Vertex mode)
# --------------------------------------------------------------------------------------
def vertex_client(emu, api_version="v1beta1"):
    return genai.Client(
        vertexai=True, project="p", location="us-central1",
        credentials=google.oauth2.credentials.Credentials(token="t"),
        http_options=types.HttpOptions(base_url=emu.base_url, api_version=api_version),
    )


def test_vertex_path_and_same_answers_as_the_developer_api(emu, client, bank):
    q, sols = bank[distinct_question(bank, 130)]
    for version in ("v1beta1", "v1"):
        r = gen(vertex_client(emu, version), MODEL_3, prompt_for(q), seed=2)
        assert emu.requests[-1]["path"] == (
            f"/{version}/projects/p/locations/us-central1/publishers/google/models/{MODEL_3}:generateContent")
        assert emu.requests[-1]["model"] == MODEL_3 and emu.requests[-1]["status"] == 200
        assert r.text in sols and r.text == gen(client, MODEL_3, prompt_for(q), seed=2).text
        assert r.model_version == f"{MODEL_3}-emulator"


def test_vertex_gives_logprobs_on_gemini_25_but_the_developer_api_refuses(emu, client, bank):
    q, _ = bank[distinct_question(bank, 140)]
    r = gen(vertex_client(emu), MODEL_25, prompt_for(q), seed=1, response_logprobs=True, logprobs=2, candidate_count=2)
    for c in r.candidates:
        lr = c.logprobs_result
        assert "".join(x.token for x in lr.chosen_candidates) == c.content.parts[0].text  # the answer only
        assert lr.log_probability_sum is None  # Vertex has no logProbabilitySum
        chosen_sum = sum(x.log_probability for x in lr.chosen_candidates)
        # avgLogprobs also averages the thought tokens: times the answer's token count it is not the answer's logp
        assert c.avg_logprobs * len(lr.chosen_candidates) != pytest.approx(chosen_sum, rel=1e-3)
        assert all(len(step.candidates) == 2 for step in lr.top_candidates)
    assert r.usage_metadata.candidates_token_count == sum(len(c.logprobs_result.chosen_candidates)
                                                          for c in r.candidates)
    # the same text as the Developer API answers (without logprobs there)
    assert gen(client, MODEL_25, prompt_for(q), seed=1).text == r.candidates[0].content.parts[0].text
    with pytest.raises(errors.ClientError) as ei:
        gen(client, MODEL_25, prompt_for(q), seed=1, response_logprobs=True)
    assert ei.value.code == 400 and "Logprobs is not enabled" in ei.value.message
    # gemini-3 refuses on Vertex too, in Vertex's words
    with pytest.raises(errors.ClientError) as ei:
        gen(vertex_client(emu), MODEL_3, "What is 6 times 7?", response_logprobs=True)
    assert ei.value.code == 400 and ei.value.status == "INVALID_ARGUMENT"
    assert ei.value.message == "Unable to submit request because Logprobs is not supported for this model."


def test_vertex_needs_a_bearer_token(emu):
    body = {"contents": [{"role": "user", "parts": [{"text": "What is 6 times 7?"}]}]}
    url = f"{emu.base_url}/v1beta1/projects/p/locations/us-central1/publishers/google/models/{MODEL_25}:generateContent"
    for headers in ({}, {"x-goog-api-key": KEY}, {"Authorization": "Bearer "}):
        status, err = raw_post(url, body, headers)
        assert status == 401, headers
        assert err["error"]["code"] == 401 and err["error"]["status"] == "UNAUTHENTICATED"
        assert err["error"]["message"].startswith("Request is missing required authentication credential.")
    status, ok = raw_post(url, body, {"Authorization": "Bearer anything"})
    assert status == 200 and ok["candidates"][0]["content"]["parts"][0]["text"]


def test_vertex_express_mode_and_vertex_faults(emu):
    express = genai.Client(vertexai=True, api_key=KEY,
                           http_options=types.HttpOptions(base_url=emu.base_url, api_version="v1beta1"))
    assert gen(express, MODEL_25, "What is 6 times 7?").text
    assert emu.requests[-1]["path"] == f"/v1beta1/publishers/google/models/{MODEL_25}:generateContent"
    with pytest.raises(errors.ClientError) as ei:
        gen(vertex_client(emu), MODEL_25, "[[emulator:429]] What is 6 times 7?")
    assert ei.value.code == 429 and ei.value.status == "RESOURCE_EXHAUSTED"
    with pytest.raises(errors.ServerError) as ei:
        gen(vertex_client(emu), MODEL_25, "[[emulator:503]] What is 6 times 7?")
    assert ei.value.code == 503


# --------------------------------------------------------------------------------------
# requests without a seed (the legacy google-generativeai SDK cannot send one)
# --------------------------------------------------------------------------------------
@pytest.fixture
def private_emu():
    """An emulator of our own: these tests reset it."""
    with Emulator(port=0) as e:
        yield e


def test_no_seed_gives_seed_n_to_the_nth_identical_request(private_emu, bank):
    c = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=private_emu.base_url, api_version="v1beta"))
    q, sols = bank[distinct_question(bank, 150)]
    first = [gen(c, MODEL_LP, prompt_for(q), response_logprobs=True) for _ in range(3)]
    seeded = [gen(c, MODEL_LP, prompt_for(q), response_logprobs=True, seed=s).text for s in range(6)]
    # requests with a seed do not move the counter: the 4th unseeded request gets seed 3
    first += [gen(c, MODEL_LP, prompt_for(q), response_logprobs=True) for _ in range(3)]
    texts = [r.text for r in first]
    assert texts == seeded
    assert len(set(texts)) >= 2 and set(texts) <= set(sols)
    assert len({r.response_id for r in first}) == 6
    # another body has its own counter
    assert gen(c, MODEL_LP, prompt_for(q)).text == texts[0]
    private_emu.reset()
    again = [gen(c, MODEL_LP, prompt_for(q), response_logprobs=True) for _ in range(6)]
    assert [r.text for r in again] == texts
    assert [r.response_id for r in again] == [r.response_id for r in first]


def test_failed_requests_do_not_use_up_implicit_seeds(private_emu, bank):
    q, _ = bank[distinct_question(bank, 160)]
    url = f"{private_emu.base_url}/v1beta/models/{MODEL_25}:generateContent"
    faulty = {"contents": [{"parts": [{"text": "[[emulator:503x1]] " + prompt_for(q)}]}]}
    status, _ = raw_post(url, faulty, {"x-goog-api-key": KEY})
    assert status == 503
    answers = [raw_post(url, faulty, {"x-goog-api-key": KEY})[1]["candidates"][0]["content"]["parts"][0]["text"]
               for _ in range(3)]
    clean = {"contents": [{"parts": [{"text": prompt_for(q)}]}]}
    for s, text in enumerate(answers):
        assert raw_post(url, {**clean, "generationConfig": {"seed": s}}, {"x-goog-api-key": KEY})[1][
            "candidates"][0]["content"]["parts"][0]["text"] == text
