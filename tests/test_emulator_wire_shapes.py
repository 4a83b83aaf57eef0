"""The emulator against REAL response bodies (the wire corpus, ``<shared>/data/wire``: bodies recorded
by other projects from Gemini, Vertex AI, vLLM, llama.cpp and DeepSeek; see its README.md and
SOURCES.txt). Each corpus request is sent to the emulator -- same model name, same
generationConfig / thinkingConfig / systemInstruction, same kind of endpoint (Developer API
``v1beta`` or Vertex AI ``v1beta1`` project/location path) -- and the **set of key paths** of the
answer must equal the real body's, but for the few keys listed (with the reason) in the tables
below. Then the values and relations that matter are checked: Vertex sends no ``index`` and no
``logProbabilitySum``; on thinking models ``avgLogprobs`` is not the answer's logp; token counts
add up; the reasoning holds a decoy the answer does not. Every emulator body must also parse with
the SDKs (google-genai, openai). Plain HTTP (urllib) on the wire, so nothing hides a key.

Fault bodies are asked for with the emulator's markers (part of the prompt): G06 (SAFETY) with
``[[emulator:safety]]``, G07 (MODEL_ARMOR) with ``[[emulator:block=MODEL_ARMOR]]``. G04 (a thinking
model out of budget) needs none: its own request (``maxOutputTokens: 5`` on gemini-2.5-pro) gets
that body, because thoughts count against ``maxOutputTokens``.

Request keys the emulator accepts and ignores (they do not change the response's keys):
``tools`` (G03: a dummy declaration, never called), ``modelArmorConfig`` (G07), ``safetySettings``
(G06: only read to name the blocking category of a SAFETY finish), ``responseModalities``,
``topP``.
"""
from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import openai.types
import openai.types.chat
import pytest
from openai._models import construct_type
from google.genai import models as genai_models
from google.genai import types

from conftest import F32, SHARED
from rlhf_eval.emulator import Emulator, load_bank

WIRE = SHARED / "data" / "wire"
pytestmark = pytest.mark.skipif(not WIRE.is_dir(), reason=f"no wire corpus at {WIRE}")
TOKEN_RE = re.compile(r"\w+|[^\w\s]|\s+")  # the emulator's documented tokenizer

PREDATES_SERVICE_TIER = ("the capture predates usageMetadata.serviceTier, which the Developer API sends "
                         "since 2026 (G04, G05 carry it); the emulator imitates the 2026 API")

#: Gemini cases: the prompt marker (if the body is a fault) and the allow-list of key paths the
#: emulator deliberately sends although the real body has none ("extra") or does not send although
#: it has ("missing"), each with the reason. Keep it small.
GEMINI = {
    "G01": {},  # Vertex, gemini-2.5-flash, responseLogprobs + logprobs: 5
    "G02": {},  # Vertex, gemini-2.5-flash, responseLogprobs only
    "G03": {"extra": {"usageMetadata.serviceTier": PREDATES_SERVICE_TIER}},  # Dev, 3-pro, includeThoughts
    "G04": {},  # Dev, 2.5-pro, maxOutputTokens 5: out of budget while thinking
    "G05": {},  # Dev, 2.5-flash, thinkingBudget 0, maxOutputTokens 5
    "G06": {"marker": "[[emulator:safety]]", "extra": {"usageMetadata.serviceTier": PREDATES_SERVICE_TIER}},
    "G07": {"marker": "[[emulator:block=MODEL_ARMOR]]"},  # Vertex, prompt blocked by Model Armor
    "G09": {},  # Vertex, gemini-2.0-flash: avgLogprobs unasked
    "G11": {"extra": {"usageMetadata.serviceTier": PREDATES_SERVICE_TIER}},  # Dev, 1.5-flash: avgLogprobs unasked
    "G12": {"extra": {"usageMetadata.serviceTier": PREDATES_SERVICE_TIER}},  # Dev, 2.5-flash, multi-turn
}

O02_EXCERPT = "the O02 capture is an excerpt that stops after `choices` (SOURCES.txt: usage not shown)"
#: OpenAI-compatible cases: the path, the request (from ``.request.json`` where there is one, else
#: built from SOURCES.txt's description) and the allow-list.
OPENAI = {
    # vLLM serving GLM with a reasoning parser: message.reasoning
    "O04": {"path": "/v1/chat/completions"},
    # DeepSeek's API: message.reasoning_content. DeepSeek posts to /chat/completions; the emulator
    # serves the OpenAI paths under /v1 only (DeepSeek accepts both).
    "O05": {"path": "/v1/chat/completions"},
    # vLLM 0.16 /v1/completions, echo=true logprobs=5 max_tokens=1 (the legacy logprobs shape)
    "O02": {"path": "/v1/completions",
            "request": {"model": "Intel/Qwen3-Coder-Next-int4-AutoRound", "prompt": "The step of boiling water is: ",
                        "echo": True, "logprobs": 5, "max_tokens": 1},
            "extra": {p: O02_EXCERPT for p in ("usage", "usage.prompt_tokens", "usage.completion_tokens",
                                                "usage.total_tokens", "system_fingerprint")}},
    # llama-server b4501 /v1/completions. It answered logprobs: null although logprobs=1 was sent (a
    # bug since fixed: today's shape is S01's); the emulator is asked without logprobs for that body.
    "O03": {"path": "/v1/completions",
            "request": {"model": "llama-cpp", "prompt": "I believe the meaning of life is", "max_tokens": 1}},
    # llama.cpp's current /v1/completions logprobs: {"content": [{id, token, logprob, bytes, top_logprobs}]}
    "S01": {"path": "/v1/completions",
            "request": {"model": "llama-cpp", "prompt": "What is 2 + 2? A:", "max_tokens": 2, "logprobs": 0}},
}


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
def key_paths(obj, prefix: str = "") -> set[str]:
    """Every key path of a JSON value: ``a.b``, ``a.list[].c``; a list adds ``[]``. The legacy
    completions ``top_logprobs[]`` maps (token -> logprob) count as one path ``...{token}``, their
    keys being tokens, not field names."""
    out: set[str] = set()
    if isinstance(obj, dict):
        if prefix.endswith("logprobs.top_logprobs[]") and ".content[]" not in prefix:
            return {prefix + ".{token}"}
        for k, v in obj.items():
            p = f"{prefix}.{k}" if prefix else k
            out.add(p)
            out |= key_paths(v, p)
    elif isinstance(obj, list):
        for v in obj:
            out |= key_paths(v, prefix + "[]")
    return out


def corpus_file(case: str, suffix: str = ".json") -> Path:
    (path,) = [p for p in WIRE.glob(f"{case}_*{suffix}") if suffix != ".json" or not p.name.endswith(".request.json")]
    return path


def post(url: str, body: dict, headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read())


def with_marker(request: dict, marker: str | None) -> dict:
    body = json.loads(json.dumps(request))
    if marker:
        part = body["contents"][0]["parts"][0]
        part["text"] = f"{marker} {part['text']}"
    return body


def compare(case: str, want: dict, got: dict, allow: dict) -> None:
    extra_ok, missing_ok = allow.get("extra", {}), allow.get("missing", {})
    want_paths, got_paths = key_paths(want), key_paths(got)
    missing = want_paths - got_paths
    extra = got_paths - want_paths
    assert missing - set(missing_ok) == set(), f"{case}: the emulator lacks {sorted(missing - set(missing_ok))}"
    assert extra - set(extra_ok) == set(), f"{case}: the emulator sends {sorted(extra - set(extra_ok))} in addition"
    # the allow-list does not rot: every entry is still a real difference
    assert set(missing_ok) <= missing and set(extra_ok) <= extra, f"{case}: stale allow-list entries"


def gemini_parse(body: dict, vertex: bool) -> types.GenerateContentResponse:
    """The response as google-genai parses it (its own converter, then the pydantic model: what
    ``generate_content`` does with the HTTP body)."""
    convert = genai_models._GenerateContentResponse_from_vertex if vertex else \
        genai_models._GenerateContentResponse_from_mldev
    body = json.loads(json.dumps(body))  # the SDK's parse path edits the dict it is given
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. an enum value the SDK does not know
        return types.GenerateContentResponse._from_response(response=convert(body), kwargs={})


def number_in(number: str, text: str) -> bool:
    return re.search(rf"(?<![\d.]){re.escape(number)}(?![\d])", text) is not None


# --------------------------------------------------------------------------------------
# fixtures: each corpus request sent once to one emulator
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def emu():
    with Emulator(port=0, latency_ms=0) as e:
        yield e


@pytest.fixture(scope="module")
def gemini(emu):
    """case -> (request URI path, vertex?, request body as sent, real body, emulator body)."""
    out = {}
    for case, spec in GEMINI.items():
        rq = json.loads(corpus_file(case, ".request.json").read_text())
        u = urlsplit(rq["uri"])
        vertex = "aiplatform" in u.netloc
        body = with_marker(rq["request"], spec.get("marker"))
        headers = {"Authorization": "Bearer t"} if vertex else {"x-goog-api-key": "k"}
        status, got = post(emu.base_url + u.path, body, headers)
        assert status == 200, (case, got)
        out[case] = (u.path, vertex, body, json.loads(corpus_file(case).read_text()), got)
    return out


@pytest.fixture(scope="module")
def oa(emu):
    """case -> (request body, real body, emulator body)."""
    out = {}
    for case, spec in OPENAI.items():
        body = spec.get("request") or json.loads(corpus_file(case, ".request.json").read_text())["request"]
        status, got = post(emu.base_url + spec["path"], body)
        assert status == 200, (case, got)
        out[case] = (body, json.loads(corpus_file(case).read_text()), got)
    return out


def test_every_corpus_request_is_covered():
    """A new corpus body with a request must get a case here (and so be compared)."""
    with_request = {p.name[:3] for p in WIRE.glob("*.request.json")}
    assert with_request <= set(GEMINI) | set(OPENAI)
    assert {p.name[:3] for p in WIRE.glob("*.json")} <= set(GEMINI) | set(OPENAI) | with_request


# --------------------------------------------------------------------------------------
# Gemini: key paths, SDK parsing
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", sorted(GEMINI))
def test_gemini_key_paths_match_the_real_body(gemini, case):
    _, _, _, want, got = gemini[case]
    compare(case, want, got, GEMINI[case])


@pytest.mark.parametrize("case", sorted(GEMINI))
def test_gemini_bodies_parse_with_the_sdk(gemini, case):
    _, vertex, _, want, got = gemini[case]
    mine, real = gemini_parse(got, vertex), gemini_parse(want, vertex)
    assert mine.usage_metadata is not None and real.usage_metadata is not None
    assert bool(mine.candidates) == bool(real.candidates)
    assert (mine.text is None) == (real.text is None)


# --------------------------------------------------------------------------------------
# Gemini: values and relations
# --------------------------------------------------------------------------------------
VERTEX_CASES = ("G01", "G02", "G07", "G09")
DEV_CASES = ("G03", "G04", "G05", "G06", "G11", "G12")


def test_the_cases_are_on_the_right_endpoints(gemini):
    assert {c for c, v in gemini.items() if v[1]} == set(VERTEX_CASES)
    for case, (path, vertex, *_rest) in gemini.items():
        assert path.startswith("/v1beta1/projects/" if vertex else "/v1beta/models/"), case


@pytest.mark.parametrize("case", VERTEX_CASES)
def test_vertex_values(gemini, case):
    path, _, _, want, got = gemini[case]
    for body in (want, got):  # the real body shows it, the emulator does it
        for c in body.get("candidates", []):
            assert "index" not in c
            assert "logProbabilitySum" not in c.get("logprobsResult", {})
        assert body["usageMetadata"]["trafficType"] == "ON_DEMAND"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", body["createTime"])
        assert "serviceTier" not in body["usageMetadata"]
    model = path.rsplit("/", 1)[1].split(":")[0]
    assert got["modelVersion"] == f"{model}-emulator"  # honest: not a real model's output


@pytest.mark.parametrize("case", DEV_CASES)
def test_developer_api_values(gemini, case):
    path, _, _, want, got = gemini[case]
    assert got["usageMetadata"]["serviceTier"] == "standard"
    assert "trafficType" not in got["usageMetadata"] and "createTime" not in got
    newer = "gemini-1.5" not in path  # 2.5/3 send index 0, the 1.5 bodies do not (G06, G11)
    for body in (want, got):
        assert all(("index" in c) == newer for c in body["candidates"]), case


@pytest.mark.parametrize("case", [c for c in sorted(GEMINI) if c != "G07"])
def test_token_counts_add_up(gemini, case):
    _, _, _, want, got = gemini[case]
    for body in (want, got):
        um = body["usageMetadata"]
        assert um["totalTokenCount"] == um["promptTokenCount"] + um.get("candidatesTokenCount", 0) + \
            um.get("thoughtsTokenCount", 0), case
        for c in body["candidates"]:
            chosen = c.get("logprobsResult", {}).get("chosenCandidates")
            if chosen is not None:  # the answer's tokens only; candidatesTokenCount counts the answer only
                assert len(chosen) == um["candidatesTokenCount"]
                assert "".join(x["token"] for x in chosen) == c["content"]["parts"][-1]["text"]
    thinking = case in ("G01", "G02", "G03", "G04", "G12")  # 2.5 and 3 models that think (G05: budget 0)
    assert ("thoughtsTokenCount" in got["usageMetadata"]) == thinking == ("thoughtsTokenCount" in want["usageMetadata"])


@pytest.mark.parametrize("case, present", [("G01", True), ("G02", True), ("G09", True), ("G11", True),
                                           ("G03", False), ("G05", False), ("G12", False)])
def test_avg_logprobs_arrives_unasked_where_the_real_api_sends_it(gemini, case, present):
    _, _, body, want, got = gemini[case]
    assert ("avgLogprobs" in got["candidates"][0]) == present == ("avgLogprobs" in want["candidates"][0])


@pytest.mark.parametrize("case", ["G01", "G02"])
def test_avg_logprobs_on_a_thinking_model_is_not_the_answers_logp(gemini, case):
    """Real: avgLogprobs * candidatesTokenCount = -7.60 (G01), -5.01 (G02) while the answer's chosen
    tokens sum to -0.069, -0.056. The emulator's avgLogprobs averages thought and answer tokens."""
    _, _, _, want, got = gemini[case]
    for body in (want, got):
        c = body["candidates"][0]
        n = body["usageMetadata"]["candidatesTokenCount"]
        chosen_sum = sum(x["logProbability"] for x in c["logprobsResult"]["chosenCandidates"])
        assert abs(c["avgLogprobs"] * n - chosen_sum) > 0.5, case
    # the emulator's value is the documented mean over the thought and the answer tokens
    c, um = got["candidates"][0], got["usageMetadata"]
    lm = load_bank().model_for("gemini-2.5-flash")
    answer_sum = sum(x["logProbability"] for x in c["logprobsResult"]["chosenCandidates"])
    thought_sum = c["avgLogprobs"] * (um["candidatesTokenCount"] + um["thoughtsTokenCount"]) - answer_sum
    assert thought_sum < 0 and lm.text_logp(c["content"]["parts"][0]["text"]) == pytest.approx(answer_sum, rel=F32)


@pytest.mark.parametrize("case, model", [("G09", "gemini-2.0-flash"), ("G11", "gemini-1.5-flash")])
def test_avg_logprobs_without_thinking_is_the_answers_mean(gemini, case, model):
    _, _, _, _, got = gemini[case]
    c, um = got["candidates"][0], got["usageMetadata"]
    text = c["content"]["parts"][0]["text"]
    assert c["avgLogprobs"] * um["candidatesTokenCount"] == pytest.approx(load_bank().model_for(model).text_logp(text),
                                                                          rel=1e-6)


def test_thought_parts_and_the_decoy(gemini, emu):
    """G03: includeThoughts gives a thought part first and a signed answer part; the thought holds
    a decoy (a number, here, that the answer does not contain); the answer is what the model says
    without showing (or having) thoughts."""
    path, _, body, want, got = gemini["G03"]
    for b in (want, got):
        thought, answer = b["candidates"][0]["content"]["parts"]
        assert thought["thought"] is True and "thoughtSignature" not in thought
        assert "thought" not in answer and answer["thoughtSignature"]
    thought, answer = got["candidates"][0]["content"]["parts"]
    decoys = re.findall(r"\d+|\([A-J]\)", thought["text"])
    assert decoys and all(not number_in(d, answer["text"]) and d not in answer["text"] for d in decoys)
    assert got["usageMetadata"]["thoughtsTokenCount"] == len(TOKEN_RE.findall(thought["text"]))
    assert got["usageMetadata"]["candidatesTokenCount"] == len(TOKEN_RE.findall(answer["text"]))
    hidden = json.loads(json.dumps(body))
    hidden["generationConfig"]["thinkingConfig"] = {"include_thoughts": False}
    off = json.loads(json.dumps(body))
    off["generationConfig"]["thinkingConfig"] = {"thinking_budget": 0}
    for variant, thinks in ((hidden, True), (off, False)):
        _, r = post(emu.base_url + path, variant, {"x-goog-api-key": "k"})
        (part,) = r["candidates"][0]["content"]["parts"]
        assert part == {"text": answer["text"]}
        assert ("thoughtsTokenCount" in r["usageMetadata"]) == thinks


def test_fault_bodies(gemini):
    _, _, _, _, g04 = gemini["G04"]  # out of budget while thinking: no parts, no candidatesTokenCount
    (c,) = g04["candidates"]
    assert c["content"] == {"role": "model"} and c["finishReason"] == "MAX_TOKENS"
    assert "candidatesTokenCount" not in g04["usageMetadata"] and g04["usageMetadata"]["thoughtsTokenCount"] == 5
    _, _, _, _, g05 = gemini["G05"]  # budget 0: no thoughts; the answer cut at 5 tokens
    (c,) = g05["candidates"]
    assert c["finishReason"] == "MAX_TOKENS" and g05["usageMetadata"]["candidatesTokenCount"] == 5
    assert len(TOKEN_RE.findall(c["content"]["parts"][0]["text"])) == 5
    _, _, _, want, g06 = gemini["G06"]  # SAFETY: content {} and the blocking category (from safetySettings)
    for b in (want, g06):
        (c,) = b["candidates"]
        assert c["content"] == {} and c["finishReason"] == "SAFETY"
        assert [(r["category"], r["probability"]) for r in c["safetyRatings"] if r.get("blocked")] == [
            ("HARM_CATEGORY_HATE_SPEECH", "LOW")]
    _, _, _, want, g07 = gemini["G07"]  # a prompt blocked by Model Armor
    for b in (want, g07):
        assert "candidates" not in b and b["promptFeedback"]["blockReason"] == "MODEL_ARMOR"
        assert b["promptFeedback"]["blockReasonMessage"] and b["usageMetadata"] == {"trafficType": "ON_DEMAND"}
    assert g07["promptFeedback"] == want["promptFeedback"]


# --------------------------------------------------------------------------------------
# OpenAI-compatible servers
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", sorted(OPENAI))
def test_openai_key_paths_match_the_real_body(oa, case):
    _, want, got = oa[case]
    compare(case, want, got, OPENAI[case])


@pytest.mark.parametrize("case", sorted(OPENAI))
def test_openai_bodies_parse_with_the_sdk(oa, case):
    _, want, got = oa[case]
    cls = openai.types.chat.ChatCompletion if want["object"] == "chat.completion" else openai.types.Completion
    for body in (want, got):
        parsed = construct_type(type_=cls, value=json.loads(json.dumps(body)))  # what the SDK does with a body
        assert isinstance(parsed, cls) and parsed.model == body["model"]
        assert [c.index for c in parsed.choices] == [c["index"] for c in body["choices"]]
        for c, raw in zip(parsed.choices, body["choices"]):
            text = c.message.content if cls is openai.types.chat.ChatCompletion else c.text
            assert text == (raw["message"]["content"] if "message" in raw else raw["text"])


@pytest.mark.parametrize("case, field, fingerprint", [
    ("O04", "reasoning", None),  # vLLM sends null
    ("O05", "reasoning_content", r"fp_[0-9a-f]{10}_emulator"),  # DeepSeek: fp_5417b77867_prod0225
])
def test_reasoning_models(oa, emu, case, field, fingerprint):
    body, want, got = oa[case]
    assert got["model"] == body["model"]  # the requested name, echoed
    if fingerprint is None:
        assert got["system_fingerprint"] is None is want["system_fingerprint"]
    else:
        assert re.fullmatch(fingerprint, got["system_fingerprint"])
        assert re.fullmatch(r"fp_[0-9a-f]{10}_\w+", want["system_fingerprint"])
    for b in (want, got):  # completion_tokens INCLUDES the reasoning tokens
        u = b["usage"]
        assert u["completion_tokens"] > u["completion_tokens_details"]["reasoning_tokens"] > 0
        assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    msg = got["choices"][0]["message"]
    u = got["usage"]
    assert u["completion_tokens"] == u["completion_tokens_details"]["reasoning_tokens"] + \
        len(TOKEN_RE.findall(msg["content"]))
    # the decoy: the reasoning's number occurs nowhere in the answer
    decoys = re.findall(r"\d+|\([A-J]\)", msg[field])
    assert decoys and all(not number_in(d, msg["content"]) and d not in msg["content"] for d in decoys)
    # the answer is what the same model says without reasoning
    plain = json.loads(json.dumps(body))
    plain["messages"][0]["content"] = "[[emulator:reasoning=none]] " + plain["messages"][0]["content"]
    _, p = post(emu.base_url + OPENAI[case]["path"], plain)
    assert p["choices"][0]["message"]["content"] == msg["content"]
    assert "completion_tokens_details" not in p["usage"]
    # with logprobs, the tokens cover the reasoning, then the answer, whose tokens spell the content
    _, lp = post(emu.base_url + OPENAI[case]["path"], {**body, "logprobs": True, "seed": 0})
    m = lp["choices"][0]["message"]
    toks = [t["token"] for t in lp["choices"][0]["logprobs"]["content"]]
    assert "".join(toks) == f"<think>\n{m[field]}\n</think>\n\n{m['content']}"
    n_answer = len(toks) - lp["usage"]["completion_tokens_details"]["reasoning_tokens"]
    assert "".join(toks[-n_answer:]) == m["content"] and len(toks) == lp["usage"]["completion_tokens"]


def test_llama_cpp_completions(oa):
    for case in ("O03", "S01"):
        _, want, got = oa[case]
        for b in (want, got):  # a build id as the fingerprint (b4501-667d7284), chatcmpl- ids on completions
            assert re.fullmatch(r"b\d+-\w+", b["system_fingerprint"]) and b["id"].startswith("chatcmpl-")
        assert got["system_fingerprint"] == "b0000-emulator"
    assert oa["O03"][2]["choices"][0]["logprobs"] is None  # not asked
    _, want, got = oa["S01"]
    for b in (want, got):  # one entry per generated token, spelling the text
        (c,) = b["choices"]
        content = c["logprobs"]["content"]
        assert len(content) == b["usage"]["completion_tokens"]
        assert "".join(t["token"] for t in content) == c["text"]
        assert all(bytes(t["bytes"]) == t["token"].encode() and t["top_logprobs"] == [] for t in content)


def test_vllm_echo_completions(oa):
    body, want, got = oa["O02"]
    for b in (want, got):
        (c,) = b["choices"]
        lp = c["logprobs"]
        assert c["text"].startswith(body["prompt"].rstrip()) and "".join(lp["tokens"]) == c["text"]
        assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None and lp["text_offset"][0] == 0
        assert [c["text"][o:o + len(t)] for t, o in zip(lp["tokens"], lp["text_offset"])] == lp["tokens"]
        assert all(len(d) <= body["logprobs"] + 1 for d in lp["top_logprobs"][1:])
        assert c["finish_reason"] == "length"
    assert got["id"].startswith("cmpl-emulator-") and got["system_fingerprint"] is None
