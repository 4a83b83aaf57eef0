"""The emulator's OpenAI-compatible endpoints, exercised through the real ``openai`` SDK (and raw
HTTP where the SDK hides what is on the wire). No mocks: every test talks HTTP to a live emulator."""
from __future__ import annotations

import gzip
import json
import math
import re
import time
import urllib.error
import urllib.request
import zlib
from importlib import resources

import openai
import pytest

from conftest import F32
from rlhf_eval.emulator import Emulator

MODEL = "Qwen/Qwen2.5-Math-7B-Instruct"
REF_MODEL = "meta-llama/Llama-3.1-8B-Instruct"  # e.g. a DPO reference model
TOKEN_RE = re.compile(r"\w+|[^\w\s]|\s+")  # the documented tokenizer: word, punctuation, whitespace run


def documented_tau(model: str) -> float:
    """The documented temperature of a model name (independent of the emulator's code)."""
    m = model.lower()
    if m.startswith("models/"):
        m = m[len("models/"):]
    if m.startswith("gemini"):
        return 1.0
    return 0.8 + 0.4 * (zlib.crc32(model.encode("utf-8")) % 1000) / 999


# --------------------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def emu():
    with Emulator(port=0, latency_ms=0) as e:
        yield e


@pytest.fixture(scope="module")
def client(emu):
    return openai.OpenAI(base_url=f"{emu.base_url}/v1", api_key="x", max_retries=0)


@pytest.fixture(scope="module")
def bank():
    ref = resources.files("rlhf_eval.emulator") / "data" / "bank.json.gz"
    with ref.open("rb") as fh:
        return [(q, sols) for q, sols in json.loads(gzip.decompress(fh.read()))["questions"]]


@pytest.fixture(scope="module")
def logp_for(bank):
    """An independent, slow re-implementation of the documented per-model token logp:
    ``logp_for(model)(token)``. Base: add-one smoothing over the V seen tokens plus one
    "unseen" entry of count 0; then tempered with the model's tau and renormalised over the
    same V + 1 entries."""
    counts: dict[str, int] = {}
    for _, sols in bank:
        for s in sols:
            for t in TOKEN_RE.findall(s):
                counts[t] = counts.get(t, 0) + 1
    denom = sum(counts.values()) + len(counts) + 1
    base = [(c + 1) / denom for c in counts.values()] + [1 / denom]  # the last one: "unseen"
    assert abs(sum(base) - 1) < 1e-12

    def for_model(model):
        tau = documented_tau(model)
        z = 0.0
        for p in base:
            z += p ** (1 / tau)
        return lambda tok: math.log((counts.get(tok, 0) + 1) / denom) / tau - math.log(z)

    return for_model


@pytest.fixture(scope="module")
def unigram(logp_for):
    """The documented token logp of :data:`MODEL`."""
    return logp_for(MODEL)


def distinct_question(bank, start=0):
    return next(i for i in range(start, len(bank)) if len(set(bank[i][1])) == 4)


def prompt_for(question: str) -> str:
    return f"Solve the problem. Think step by step and end with 'A: <number>'.\n\nQ: {question}\nA:"


def chat(client, content, model=MODEL, **kw):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}], **kw)


def raw(emu, method, path, body=None, headers=None):
    req = urllib.request.Request(
        emu.base_url + path, data=None if body is None else json.dumps(body).encode(), method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, dict(e.headers), json.loads(e.read())


# --------------------------------------------------------------------------------------
# models and wire format
# --------------------------------------------------------------------------------------
def test_models_list_and_retrieve(client):
    ids = [m.id for m in client.models.list()]
    assert MODEL in ids and "llama-cpp" in ids and "llama-cpp-strict" in ids
    m = client.models.retrieve("any/model-name")
    assert m.id == "any/model-name" and m.object == "model" and m.owned_by == "rlhf-eval-emulator"


def test_chat_returns_a_bank_solution_with_openai_fields(client, bank):
    q, sols = bank[distinct_question(bank)]
    r = chat(client, prompt_for(q), seed=1)
    assert r.object == "chat.completion" and r.created == 0 and r.model == MODEL
    # vLLM's shape (wire corpus O04): a null system_fingerprint (a build id, never the model); the
    # emulator says so in the id
    assert r.id.startswith("chatcmpl-emulator-") and r.system_fingerprint is None
    assert r.model_extra == {"prompt_logprobs": None, "prompt_token_ids": None, "prompt_text": None,
                             "kv_transfer_params": None, "metrics": None}
    (c,) = r.choices
    assert c.index == 0 and c.finish_reason == "stop" and c.logprobs is None
    assert c.model_extra == {"stop_reason": None, "token_ids": None, "routed_experts": None}
    assert c.message.role == "assistant" and c.message.content in sols
    assert c.message.model_extra == {"reasoning": None}  # not a reasoning model
    assert r.usage.completion_tokens == len(TOKEN_RE.findall(c.message.content))
    assert r.usage.completion_tokens_details is None and r.usage.prompt_tokens_details.cached_tokens == 0
    assert r.usage.prompt_tokens == len(TOKEN_RE.findall(prompt_for(q)))
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_no_auth_header_and_any_bearer_are_accepted(emu):
    body = {"model": "m", "messages": [{"role": "user", "content": "What is 6 times 7?"}], "seed": 0}
    s1, _, r1 = raw(emu, "POST", "/v1/chat/completions", body)
    s2, _, r2 = raw(emu, "POST", "/v1/chat/completions", body, {"Authorization": "Bearer whatever"})
    assert s1 == s2 == 200 and r1 == r2
    assert emu.requests[-1]["model"] == "m" and "whatever" not in json.dumps(emu.requests)


def test_same_engine_as_the_gemini_side(emu, client, bank):
    """Same model name, prompt and seed: the chat answer is the Gemini candidate, token for token."""
    q, _ = bank[distinct_question(bank, 5)]
    for seed in range(3):
        body = {"contents": [{"role": "user", "parts": [{"text": prompt_for(q)}]}],
                "generationConfig": {"seed": seed, "candidateCount": 2, "responseLogprobs": True}}
        _, _, g = raw(emu, "POST", "/v1beta/models/gemini-2.0-flash:generateContent", body, {"x-goog-api-key": "k"})
        r = chat(client, prompt_for(q), model="gemini-2.0-flash", seed=seed, n=2, logprobs=True)
        for cand, choice in zip(g["candidates"], r.choices):
            assert choice.message.content == cand["content"]["parts"][0]["text"]
            assert [t.logprob for t in choice.logprobs.content] == [
                x["logProbability"] for x in cand["logprobsResult"]["chosenCandidates"]]


# --------------------------------------------------------------------------------------
# chat sampling
# --------------------------------------------------------------------------------------
def test_chat_logprobs_and_top_logprobs(client, bank, unigram):
    q, sols = bank[distinct_question(bank, 10)]
    r = chat(client, prompt_for(q), seed=4, logprobs=True, top_logprobs=3)
    c = r.choices[0]
    content = c.logprobs.content
    assert "".join(t.token for t in content) == c.message.content and c.message.content in sols
    for t in content:
        assert t.logprob == pytest.approx(unigram(t.token), rel=F32)
        assert bytes(t.bytes) == t.token.encode()
        lps = [a.logprob for a in t.top_logprobs]
        assert len(lps) == 3 and lps == sorted(lps, reverse=True) and t.token in [a.token for a in t.top_logprobs]
    plain = chat(client, prompt_for(q), seed=4, logprobs=True)
    assert all(t.top_logprobs == [] for t in plain.choices[0].logprobs.content)


def test_chat_n_seed_determinism_and_greedy(client, bank):
    q, sols = bank[distinct_question(bank, 20)]
    r = chat(client, prompt_for(q), seed=7, n=8)
    texts = [c.message.content for c in r.choices]
    assert [c.index for c in r.choices] == list(range(8)) and set(texts) <= set(sols) and len(set(texts)) >= 2
    assert [c.message.content for c in chat(client, prompt_for(q), seed=7, n=8).choices] == texts
    assert chat(client, prompt_for(q), seed=7).choices[0].message.content == texts[0]
    assert r.usage.completion_tokens == sum(len(TOKEN_RE.findall(t)) for t in texts)
    greedy = {c.message.content for s in range(3)
              for c in chat(client, prompt_for(q), seed=s, n=3, temperature=0).choices}
    assert len(greedy) == 1


def test_chat_max_tokens_gives_finish_reason_length(client, bank):
    q, sols = bank[distinct_question(bank, 30)]
    for kw in ({"max_tokens": 6}, {"max_completion_tokens": 6}):
        c = chat(client, prompt_for(q), seed=2, logprobs=True, **kw).choices[0]
        assert c.finish_reason == "length" and len(c.logprobs.content) == 6
        assert len(TOKEN_RE.findall(c.message.content)) == 6 and any(s.startswith(c.message.content) for s in sols)
    full = chat(client, prompt_for(q), seed=2, max_tokens=4000).choices[0]
    assert full.finish_reason == "stop" and full.message.content in sols


def test_chat_stop_and_system_message(client, bank):
    q, sols = bank[distinct_question(bank, 40)]
    r = client.chat.completions.create(model=MODEL, seed=0, stop=["\n"], messages=[
        {"role": "system", "content": "You are careful."},
        {"role": "user", "content": [{"type": "text", "text": prompt_for(q)}]}])
    text = r.choices[0].message.content
    assert "\n" not in text and any(s.startswith(text) for s in sols) and r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens == len(TOKEN_RE.findall(prompt_for(q))) + len(TOKEN_RE.findall("You are careful."))


# --------------------------------------------------------------------------------------
# legacy completions: sampling, echo scoring, prompt_logprobs
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", [MODEL, REF_MODEL, "gemini-2.0-flash"])
@pytest.mark.parametrize("suffix", ["", " ", "\n"])
def test_echo_scoring_agrees_with_sampling(client, bank, model, suffix):
    """Sample with chat, score the same text with /v1/completions echo under the same model:
    the same tokens and the same logp, whether the context ends in "A:", "A: " or "A:\\n"."""
    for i, seed in ((distinct_question(bank, 50), 3), (distinct_question(bank, 60), 8)):
        q, _ = bank[i]
        sample = chat(client, prompt_for(q), model=model, seed=seed, logprobs=True).choices[0]
        text = sample.message.content
        sampled_logp = sum(t.logprob for t in sample.logprobs.content)
        context = prompt_for(q) + suffix  # the tokenisation splits cleanly at the boundary
        scored = client.completions.create(model=model, prompt=context + text, echo=True, max_tokens=0, logprobs=0)
        c = scored.choices[0]
        assert c.text == context + text and c.finish_reason == "length"
        lp = c.logprobs
        assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None and lp.text_offset[0] == 0
        assert "".join(lp.tokens) == c.text
        assert [c.text[o:o + len(t)] for t, o in zip(lp.tokens, lp.text_offset)] == lp.tokens
        start = lp.text_offset.index(len(context))  # a token starts exactly where the text does
        assert lp.tokens[start:] == [t.token for t in sample.logprobs.content]
        assert lp.token_logprobs[start:] == [t.logprob for t in sample.logprobs.content]
        scored_logp = sum(x for x, o in zip(lp.token_logprobs, lp.text_offset) if o >= len(context))
        assert abs(scored_logp - sampled_logp) <= 1e-9
        assert all(len(d) == 1 for d in lp.top_logprobs[1:])  # logprobs=0: the chosen token only
        assert scored.usage.completion_tokens == 0
        assert scored.usage.prompt_tokens == len(lp.tokens)


def test_logprobs_depend_on_the_model(client, bank, logp_for):
    """Policy and reference model score the same text differently (non-zero DPO margins), each
    exactly as documented; gemini* names get the untempered base model."""
    q, _ = bank[distinct_question(bank, 55)]
    text = prompt_for(q) + " " + bank[distinct_question(bank, 55)][1][0] + " Zyzzyva"  # + an unseen token
    tokens = TOKEN_RE.findall(text)
    per_model = {}
    for model in (MODEL, REF_MODEL, "gemini-2.0-flash", "gemini-1.5-pro"):
        r = client.completions.create(model=model, prompt=text, echo=True, max_tokens=0, logprobs=2)
        lp = r.choices[0].logprobs
        assert lp.tokens == tokens
        ref = logp_for(model)
        for tok, x, top in zip(lp.tokens[1:], lp.token_logprobs[1:], lp.top_logprobs[1:]):
            assert x == pytest.approx(ref(tok), rel=F32)
            for alt, alt_lp in top.items():
                assert alt_lp == pytest.approx(ref(alt), rel=F32)
        per_model[model] = lp.token_logprobs[1:]
    assert per_model["gemini-2.0-flash"] == per_model["gemini-1.5-pro"]
    assert documented_tau(MODEL) != documented_tau(REF_MODEL)
    margin = sum(per_model[MODEL]) - sum(per_model[REF_MODEL])
    assert abs(margin) > 1.0
    assert all(a != b for a, b in zip(per_model[MODEL], per_model[REF_MODEL]))
    # chat sampling reports each model's values too (top_logprobs ranked by them), llama.cpp included
    for model in (REF_MODEL, "llama-cpp"):
        ref = logp_for(model)
        c = chat(client, prompt_for(q), model=model, seed=0, logprobs=True, top_logprobs=5).choices[0]
        for t in c.logprobs.content:
            assert t.logprob == pytest.approx(ref(t.token), rel=F32)
            lps = [a.logprob for a in t.top_logprobs]
            assert lps == sorted(lps, reverse=True)
            assert all(a.logprob == pytest.approx(ref(a.token), rel=F32) for a in t.top_logprobs)


@pytest.mark.parametrize("model", [MODEL, REF_MODEL, "llama-cpp", "gemini-2.0-flash"])
def test_each_model_distribution_sums_to_one(model):
    """Over the V seen tokens plus the one "unseen" entry (the emulator's own model object)."""
    from rlhf_eval.emulator import load_bank

    lm = load_bank().model_for(model)
    assert lm.tau == documented_tau(model)
    total = math.fsum([math.exp(lm.logp(t)) for t in lm.counts] + [math.exp(lm.logp("Zyzzyva-unseen"))])
    assert total == pytest.approx(1.0, abs=F32)  # each logp is sent as a float32


def test_completions_sampling_with_logprobs(client, bank):
    q, sols = bank[distinct_question(bank, 70)]
    r = client.completions.create(model=MODEL, prompt=prompt_for(q), max_tokens=1000, seed=5, logprobs=3)
    assert r.object == "text_completion" and r.id.startswith("cmpl-") and r.created == 0
    c = r.choices[0]
    assert c.text in sols and c.finish_reason == "stop"
    lp = c.logprobs
    assert "".join(lp.tokens) == c.text and lp.text_offset[0] == 0 and None not in lp.token_logprobs
    for tok, x, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert len(top) == 4 and top[tok] == x  # the chosen token and 3 alternatives
    assert chat(client, prompt_for(q), seed=5).choices[0].message.content == c.text  # same engine
    # OpenAI's (and vLLM's) default max_tokens of 16
    short = client.completions.create(model=MODEL, prompt=prompt_for(q), seed=5).choices[0]
    assert short.finish_reason == "length" and len(TOKEN_RE.findall(short.text)) == 16 and c.text.startswith(short.text)


def test_echo_with_generation(client, bank):
    q, _ = bank[distinct_question(bank, 80)]
    p = prompt_for(q)
    r = client.completions.create(model=MODEL, prompt=p, echo=True, max_tokens=20, seed=1, logprobs=1)
    c = r.choices[0]
    gen = client.completions.create(model=MODEL, prompt=p, max_tokens=20, seed=1, logprobs=1).choices[0]
    assert c.text == p + gen.text and c.finish_reason == gen.finish_reason == "length"
    n_prompt = len(TOKEN_RE.findall(p))
    assert len(c.logprobs.tokens) == n_prompt + 20
    assert c.logprobs.token_logprobs[n_prompt:] == gen.logprobs.token_logprobs
    assert c.logprobs.text_offset[n_prompt] == len(p)
    assert r.usage.prompt_tokens == n_prompt and r.usage.completion_tokens == 20


def test_list_of_prompts_and_n(client, bank):
    (q1, s1), (q2, s2) = bank[distinct_question(bank, 90)], bank[distinct_question(bank, 100)]
    prompts = [prompt_for(q1), prompt_for(q2)]
    r = client.completions.create(model=MODEL, prompt=prompts, n=3, max_tokens=2000, seed=6)
    assert [c.index for c in r.choices] == list(range(6))
    assert all(c.text in s1 for c in r.choices[:3]) and all(c.text in s2 for c in r.choices[3:])
    for pi, p in enumerate(prompts):
        single = client.completions.create(model=MODEL, prompt=p, n=3, max_tokens=2000, seed=6)
        assert [c.text for c in single.choices] == [c.text for c in r.choices[3 * pi:3 * pi + 3]]
    assert r.usage.prompt_tokens == sum(len(TOKEN_RE.findall(p)) for p in prompts)


def test_max_tokens_zero_needs_echo(client):
    r = client.completions.create(model=MODEL, prompt="Just score this text.", echo=True, max_tokens=0)
    assert r.choices[0].text == "Just score this text." and r.choices[0].logprobs is None
    with pytest.raises(openai.BadRequestError) as ei:
        client.completions.create(model=MODEL, prompt="Just score this text.", max_tokens=0)
    assert ei.value.body["param"] == "max_tokens"


def test_prompt_logprobs_vllm_shape(client, unigram):
    text = "The cat sat on the mat. The answer is 4."
    r = client.completions.create(model=MODEL, prompt=text, echo=True, max_tokens=0, logprobs=0,
                                  extra_body={"prompt_logprobs": 2})
    c = r.choices[0]
    pl = c.model_extra["prompt_logprobs"]
    tokens = TOKEN_RE.findall(text)
    assert len(pl) == len(tokens) and pl[0] is None
    for tok, d, lp in zip(tokens[1:], pl[1:], c.logprobs.token_logprobs[1:]):
        first_id, first = next(iter(d.items()))
        assert (first_id.isdigit() and first["decoded_token"] == tok
                and first["logprob"] == lp == pytest.approx(unigram(tok)))
        assert 2 <= len(d) <= 3 and all(set(v) == {"logprob", "rank", "decoded_token"} for v in d.values())
        assert all(isinstance(v["rank"], int) and v["rank"] >= 1 for v in d.values())
        # rank is consistent with the logprobs: a more probable token never ranks lower
        by_lp = sorted(d.values(), key=lambda v: -v["logprob"])
        assert [v["rank"] for v in by_lp] == sorted(v["rank"] for v in by_lp)


# --------------------------------------------------------------------------------------
# llama.cpp imitation
# --------------------------------------------------------------------------------------
def test_llama_cpp_ignores_echo(client, bank):
    q, sols = bank[distinct_question(bank, 110)]
    p = prompt_for(q)
    c = chat(client, p, model="llama-cpp", seed=2, logprobs=True).choices[0]  # chat is fine
    assert c.message.content in sols and c.logprobs.content
    r = client.completions.create(model="llama-cpp", prompt=p, echo=True, logprobs=1, seed=2)
    ch = r.choices[0]
    assert ch.text == c.message.content  # no echo (and no default limit of 16 tokens)
    # llama.cpp's current completions logprobs: {"content": [{id, token, logprob, bytes, top_logprobs}]} (S01)
    content = ch.logprobs.model_extra["content"]
    assert ch.logprobs.tokens is None and ch.logprobs.text_offset is None
    assert len(content) == len(TOKEN_RE.findall(ch.text)) == r.usage.completion_tokens
    assert len(content) < len(TOKEN_RE.findall(p + ch.text))
    assert "".join(t["token"] for t in content) == ch.text
    assert [t["logprob"] for t in content] == [t.logprob for t in c.logprobs.content]
    for t in content:
        assert set(t) == {"id", "token", "logprob", "bytes", "top_logprobs"} and t["id"] == zlib.crc32(
            t["token"].encode()) % 2**18
        (alt,) = t["top_logprobs"]  # logprobs=1: the chosen token alone
        assert alt == {k: t[k] for k in ("id", "token", "logprob", "bytes")}
    # llama.cpp's build id as the fingerprint, its chatcmpl- ids on /v1/completions too (O03)
    assert r.system_fingerprint == "b0000-emulator" and r.id.startswith("chatcmpl-emulator-")
    # the scoring request gets nothing back for the text it sent
    s = client.completions.create(model="llama-cpp-q4", prompt=p + c.message.content, echo=True, max_tokens=0,
                                  logprobs=0).choices[0]
    assert s.text == "" and s.logprobs.model_extra["content"] == []


def test_llama_cpp_strict_refuses_echo(emu, client):
    with pytest.raises(openai.BadRequestError) as ei:
        client.completions.create(model="llama-cpp-strict", prompt="2+2=", echo=True, logprobs=1)
    assert ei.value.status_code == 400
    status, _, body = raw(emu, "POST", "/v1/completions", {"model": "llama-cpp-strict", "prompt": "2+2=", "echo": True})
    assert status == 400
    assert body == {"error": {"code": 400, "message": "echo is not supported", "type": "invalid_request_error"}}
    ok = client.completions.create(model="llama-cpp-strict", prompt="2+2=", logprobs=1)
    assert ok.choices[0].text and ok.choices[0].logprobs.model_extra["content"]


def test_llama_cpp_chat_shape(client):
    r = chat(client, "What is 6 times 7?", model="llama-cpp", seed=0)
    assert r.system_fingerprint == "b0000-emulator" and r.id.startswith("chatcmpl-emulator-")
    c = r.choices[0]
    assert c.logprobs is None and "logprobs" not in c.model_dump(exclude_unset=True)  # sent only when asked
    lp = chat(client, "What is 6 times 7?", model="llama-cpp", seed=0, logprobs=True, top_logprobs=2).choices[0]
    assert lp.logprobs.model_extra == {} and lp.logprobs.refusal is None  # llama.cpp sends {"content"} alone
    assert all(t.model_extra["id"] == zlib.crc32(t.token.encode()) % 2**18 for t in lp.logprobs.content)


# --------------------------------------------------------------------------------------
# reasoning models
# --------------------------------------------------------------------------------------
NUMBER_PROMPT = "Tom has 14 marbles and wins 23 more. How many does he have?"


@pytest.mark.parametrize("model, field", [
    ("deepseek-reasoner", "reasoning_content"), ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "reasoning_content"),
    ("zai/GLM-5.2", "reasoning"), ("THUDM/glm-4-9b", "reasoning"),
])
def test_reasoning_beside_the_content(client, bank, model, field):
    q, sols = bank[distinct_question(bank, 140)]
    for content, seed in ((prompt_for(q), 0), (prompt_for(q), 1), (NUMBER_PROMPT, 2)):
        r = chat(client, content, model=model, seed=seed, logprobs=True)
        plain = chat(client, "[[emulator:reasoning=none]] " + content, model=model, seed=seed, logprobs=True)
        c = r.choices[0]
        reasoning = c.message.model_extra[field]
        other = {"reasoning_content", "reasoning"} - {field}
        assert not any(c.message.model_extra.get(f) for f in other)
        # the answer is the one the same model gives without reasoning (a bank solution)
        assert c.message.content == plain.choices[0].message.content
        if content != NUMBER_PROMPT:
            assert c.message.content in sols
        # a decoy: the reasoning's number is not the answer's, and occurs nowhere in it
        decoys = re.findall(r"\d+", reasoning)
        assert decoys and all(not re.search(rf"(?<![\d.]){d}(?!\d)", c.message.content) for d in decoys)
        # logprobs cover every generated token: <think>, the reasoning, </think>, then the answer,
        # whose tokens are a suffix spelling exactly the content
        toks = [t.token for t in c.logprobs.content]
        assert "".join(toks) == "<think>\n" + reasoning + "\n</think>\n\n" + c.message.content
        n_answer = len(TOKEN_RE.findall(c.message.content))
        assert toks[-n_answer:] == [t.token for t in plain.choices[0].logprobs.content]
        assert [t.logprob for t in c.logprobs.content[-n_answer:]] == [
            t.logprob for t in plain.choices[0].logprobs.content]
        # completion_tokens includes the reasoning tokens (wire corpus O04, O05)
        u = r.usage
        assert u.completion_tokens == len(toks) == u.completion_tokens_details.reasoning_tokens + n_answer
        assert u.total_tokens == u.prompt_tokens + u.completion_tokens


@pytest.mark.parametrize("model", ["Qwen/QwQ-32B", "Qwen/Qwen3-8B", "qwen3:4b"])
def test_inline_think_reasoning(client, bank, model):
    q, sols = bank[distinct_question(bank, 150)]
    r = chat(client, prompt_for(q), model=model, seed=3, logprobs=True)
    c = r.choices[0]
    m = re.fullmatch(r"<think>\n(.*)\n</think>\n\n(.*)", c.message.content, re.S)
    assert m and m.group(2) in sols and c.message.model_extra["reasoning"] is None
    assert "".join(t.token for t in c.logprobs.content) == c.message.content  # the tokens tile content, tags included
    assert c.logprobs.content[0].token == "<think>" and "</think>" in [t.token for t in c.logprobs.content]
    assert r.usage.completion_tokens == len(c.logprobs.content) and r.usage.completion_tokens_details is None
    # /v1/completions (no reasoning parser there): the <think> span inline in the text
    t = client.completions.create(model=model, prompt=prompt_for(q), seed=3, max_tokens=2000, logprobs=0).choices[0]
    assert t.text == c.message.content and "".join(t.logprobs.tokens) == t.text


def test_reasoning_rules_and_marker(client):
    for model in ("Qwen/Qwen2.5-Math-7B-Instruct", "deepseek-chat", "Qwen/Qwen3-30B-A3B-Instruct-2507",
                  "Qwen/Qwen3-Coder-30B", "llama-cpp"):
        msg = chat(client, NUMBER_PROMPT, model=model, seed=0).choices[0].message
        assert not msg.content.startswith("<think>") and not msg.model_extra.get("reasoning") \
            and not msg.model_extra.get("reasoning_content"), model
    for mode, check in (("reasoning_content", lambda m: m.model_extra["reasoning_content"]),
                        ("reasoning", lambda m: m.model_extra["reasoning"]),
                        ("think", lambda m: m.content.startswith("<think>\n"))):
        for model in (MODEL, "deepseek-chat", "llama-cpp"):
            msg = chat(client, f"[[emulator:reasoning={mode}]] {NUMBER_PROMPT}", model=model, seed=0).choices[0].message
            assert check(msg), (mode, model)


def test_reasoning_counts_against_max_tokens(client):
    full = chat(client, NUMBER_PROMPT, model="zai/GLM-5.2", seed=4)
    n_r = full.usage.completion_tokens_details.reasoning_tokens
    cut = chat(client, NUMBER_PROMPT, model="zai/GLM-5.2", seed=4, max_tokens=n_r + 3).choices[0]
    assert cut.finish_reason == "length" and full.choices[0].message.content.startswith(cut.message.content)
    assert len(TOKEN_RE.findall(cut.message.content)) == 3
    inside = chat(client, NUMBER_PROMPT, model="zai/GLM-5.2", seed=4, max_tokens=5)
    c = inside.choices[0]  # stopped inside the reasoning: no content, a partial reasoning
    assert c.finish_reason == "length" and c.message.content is None
    assert full.choices[0].message.model_extra["reasoning"].startswith(c.message.model_extra["reasoning"])
    assert inside.usage.completion_tokens == inside.usage.completion_tokens_details.reasoning_tokens == 5
    think = chat(client, NUMBER_PROMPT, model="Qwen/Qwen3-8B", seed=4, max_tokens=5).choices[0]
    assert think.message.content.startswith("<think>") and "</think>" not in think.message.content


def test_deepseek_shape(client):
    r = chat(client, NUMBER_PROMPT, model="deepseek-reasoner", seed=0)
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", r.id)
    assert re.fullmatch(r"fp_[0-9a-f]{10}_emulator", r.system_fingerprint)  # a build id, never the model
    u = r.usage
    assert u.model_extra == {"prompt_cache_hit_tokens": 0, "prompt_cache_miss_tokens": u.prompt_tokens}
    assert set(r.choices[0].message.model_extra) == {"reasoning_content"}
    assert chat(client, NUMBER_PROMPT, model="deepseek-chat", seed=0).choices[0].message.model_extra == {}


# --------------------------------------------------------------------------------------
# errors and faults
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, param", [
    (dict(n=9), "n"), (dict(temperature=2.5), "temperature"), (dict(top_logprobs=3), "top_logprobs"),
    (dict(logprobs=True, top_logprobs=21), "top_logprobs"), (dict(max_tokens=0), "max_tokens"),
])
def test_chat_validation_errors(client, kw, param):
    with pytest.raises(openai.BadRequestError) as ei:
        chat(client, "What is 6 times 7?", **kw)
    err = ei.value.body
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
    assert err["param"] == param


def test_completions_validation_errors(emu, client):
    with pytest.raises(openai.BadRequestError) as ei:
        client.completions.create(model=MODEL, prompt="x", logprobs=6)
    assert ei.value.body["param"] == "logprobs"
    status, _, body = raw(emu, "POST", "/v1/completions", {"model": MODEL, "prompt": [1, 2, 3]})
    assert status == 400 and body["error"]["param"] == "prompt"
    status, _, body = raw(emu, "POST", "/v1/completions", {"prompt": "x"})
    assert status == 400 and "model" in body["error"]["message"]
    status, _, body = raw(emu, "POST", "/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user",
                          "content": "x"}], "stream": True})
    assert status == 400 and body["error"]["param"] == "stream"
    status, _, body = raw(emu, "GET", "/v1/chat/completions")
    assert status == 404 and body["error"]["message"] == "Invalid URL (GET /v1/chat/completions)"


def test_429_with_retry_after(emu, client):
    with pytest.raises(openai.RateLimitError) as ei:
        chat(client, "[[emulator:429]] What is 6 times 7?")
    e = ei.value
    assert e.status_code == 429 and e.response.headers["retry-after"] == "2"
    assert e.body["code"] == "rate_limit_exceeded" and e.body["type"] == "requests" and "param" in e.body


@pytest.mark.parametrize("code, exc", [(500, openai.InternalServerError), (503, openai.InternalServerError),
                                       (404, openai.NotFoundError), (400, openai.BadRequestError)])
def test_injected_errors(client, code, exc):
    with pytest.raises(exc) as ei:
        client.completions.create(model=MODEL, prompt=f"[[emulator:{code}]] 2+2=")
    assert ei.value.status_code == code and set(ei.value.body) == {"message", "type", "param", "code"}


def test_fault_twice_then_success_and_content_markers(emu, client, bank):
    q, _ = bank[distinct_question(bank, 120)]
    p = "[[emulator:503x2]] " + prompt_for(q)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            chat(client, p, seed=3)
    assert (chat(client, p, seed=3).choices[0].message.content
            == chat(client, prompt_for(q), seed=3).choices[0].message.content)
    s = chat(client, "[[emulator:safety]] hi", n=2)
    assert [c.finish_reason for c in s.choices] == ["content_filter"] * 2 and s.choices[0].message.content is None
    for reason in ("RECITATION", "PROHIBITED_CONTENT", "NEW_REASON_2027"):  # any reason: a content filter
        f = chat(client, f"[[emulator:finish={reason}]] hi")
        assert f.choices[0].finish_reason == "content_filter" and f.choices[0].message.content is None
    with pytest.raises(openai.BadRequestError) as ei:
        chat(client, "[[emulator:block=JAILBREAK]] hi")
    assert ei.value.body["code"] == "content_filter"
    m = chat(client, "[[emulator:max_tokens]] hi", max_completion_tokens=64)
    assert m.choices[0].finish_reason == "length" and m.choices[0].message.content == ""
    assert m.usage.completion_tokens_details.reasoning_tokens == 64
    with pytest.raises(openai.BadRequestError) as ei:
        chat(client, "[[emulator:block]] hi")
    assert ei.value.body["code"] == "content_filter"
    with pytest.raises(openai.BadRequestError) as ei:
        chat(client, "[[emulator:explode]] hi")
    assert "explode" in ei.value.body["message"]
    t = time.perf_counter()
    chat(client, "[[emulator:latency=150]] hi")
    assert time.perf_counter() - t >= 0.15


# --------------------------------------------------------------------------------------
# requests without a seed
# --------------------------------------------------------------------------------------
def test_no_seed_gives_implicit_seeds_that_restart_after_reset(bank):
    q, sols = bank[distinct_question(bank, 130)]
    with Emulator(port=0) as emu:  # a private emulator: reset() must not disturb the others
        client = openai.OpenAI(base_url=f"{emu.base_url}/v1", api_key="x", max_retries=0)
        first = [chat(client, prompt_for(q)) for _ in range(6)]
        texts = [r.choices[0].message.content for r in first]
        assert texts == [chat(client, prompt_for(q), seed=s).choices[0].message.content for s in range(6)]
        assert len(set(texts)) >= 2 and set(texts) <= set(sols)
        assert len({r.id for r in first}) == 6
        emu.reset()
        again = [chat(client, prompt_for(q)) for _ in range(6)]
        assert [r.choices[0].message.content for r in again] == texts and [r.id for r in again] == [r.id for r in first]
