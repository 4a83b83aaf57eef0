"""Cassettes: secrets filtered, atomic and all-or-nothing writes, clear errors; the library without pytest."""
import json

import httpx2
import pytest
import yaml

from conftest import GSM8K_TEST, REPO, TEST_KEY
from rlhf_eval import evaluate_question, load_suite
from rlhf_eval.emulator import Emulator
from rlhf_eval.recording import CassetteProblem, json_diff, use_cassette

BODY = {"contents": [{"role": "user", "parts": [{"text": "What is 6*7?"}]}], "generationConfig": {"seed": 1}}


def test_key_in_header_and_query_never_reaches_the_cassette(tmp_path, emulator):
    path = tmp_path / "c.yaml"
    with use_cassette(path, "once"):
        for params, headers in (({}, {"x-goog-api-key": TEST_KEY}), ({"key": TEST_KEY}, {})):
            r = httpx2.post(f"{emulator.base_url}/v1beta/models/gemini-2.0-flash:generateContent",
                            params=params, headers=headers, json=BODY)
            assert r.status_code == 200
    text = path.read_text()
    assert TEST_KEY not in text and "x-goog-api-key" not in text
    assert text.count("generateContent") == 2


def test_a_failed_block_writes_nothing_and_keeps_the_old_cassette(tmp_path, emulator):
    path = tmp_path / "c.yaml"
    url = f"{emulator.base_url}/v1beta/models/gemini-2.0-flash:generateContent"
    with use_cassette(path, "once"):
        httpx2.post(url, headers={"x-goog-api-key": "k"}, json=BODY)
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        with use_cassette(path, "all"):
            httpx2.post(url, headers={"x-goog-api-key": "k"}, json={**BODY, "generationConfig": {"seed": 2}})
            raise RuntimeError("sampling failed halfway")
    assert path.read_bytes() == before
    assert not list(tmp_path.glob(".*.tmp")), "no temp file left behind"


def test_rewrite_drops_what_is_not_asked_again(tmp_path, emulator):
    path = tmp_path / "c.yaml"
    url = f"{emulator.base_url}/v1beta/models/gemini-2.0-flash:generateContent"
    with use_cassette(path, "once"):
        for seed in (1, 2):
            httpx2.post(url, headers={"x-goog-api-key": "k"}, json={**BODY, "generationConfig": {"seed": seed}})
    with use_cassette(path, "rewrite"):
        httpx2.post(url, headers={"x-goog-api-key": "k"}, json={**BODY, "generationConfig": {"seed": 3}})
    cassette = yaml.safe_load(path.read_text())  # compact JSON, which is YAML too
    assert [json.loads(i["request"]["body"])["generationConfig"]["seed"] for i in cassette["interactions"]] == [3]


@pytest.mark.parametrize("content", ["interactions:\n- request: {body: [unclosed\n", "just a string\n"])
def test_corrupt_cassette_is_one_clear_line(tmp_path, content, offline):
    suite = load_suite(_suite(tmp_path))
    path = tmp_path / "cassettes" / "s" / "test-0000.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(CassetteProblem) as info:
        evaluate_question(suite, "test-0000", cassette_dir=tmp_path / "cassettes")
    assert "corrupt cassette" in str(info.value) and "delete it and re-record" in str(info.value)
    assert "\n" not in str(info.value)


def _suite(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(f"suite: s\nmodel: {{name: gemini-2.0-flash, logprobs: true}}\nsamples: 3\nseed: 7\n"
                    f"questions:\n  source: {GSM8K_TEST}\n  limit: 2\n")
    return path


def test_library_works_without_pytest_record_then_replay(tmp_path, live, monkeypatch):
    """What a notebook does: load a suite, evaluate one question, get its metrics."""
    suite = load_suite(_suite(tmp_path))
    recorded = evaluate_question(suite, "test-0001", cassette_dir=tmp_path / "c", record_mode="once")
    monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("GEMINI_API_KEY")
    replayed = evaluate_question(suite, "test-0001", cassette_dir=tmp_path / "c")
    assert replayed.metrics == recorded.metrics and replayed.to_dict() == recorded.to_dict()
    assert [t.seed for t in replayed.traces] == [7, 8, 9]
    assert all(t.logp is not None and t.token_count for t in replayed.traces)


def test_json_diff_reads_like_a_change_list():
    old = {"generationConfig": {"temperature": 0.7, "seed": 1}, "contents": [{"parts": [{"text": "a"}]}]}
    new = {"generationConfig": {"temperature": 0.8, "seed": 1, "topK": 40.0}, "contents": [{"parts": [{"text": "b"}]}]}
    assert json_diff(old, new) == [
        "generationConfig.temperature: 0.7 → 0.8",
        "generationConfig.topK: (absent) → 40.0",
        'contents[0].parts[0].text: "a" → "b"',
    ]
    assert json_diff({"a": 1}, {"a": 1.0}) == []


def test_sampler_sends_what_the_sdk_makes_of_the_plain_call(tmp_path, live):
    """The sampler builds its request from faster subclasses of google-genai's types; the bytes on
    the wire must be what the SDK makes of the plain call (a string prompt, a plain config)."""
    from google import genai
    from google.genai import types

    from rlhf_eval.backends.gemini import GeminiSampler
    from rlhf_eval.suite import ModelConfig

    prompt = "Tom has 14 marbles and wins 23 more. How many marbles does he have?\nA:"
    settings = dict(system_instruction="Answer with a number.", temperature=0.7, top_p=0.9, top_k=40,
                    max_output_tokens=64)
    with use_cassette(tmp_path / "sampler.yaml", "all"):
        GeminiSampler(ModelConfig(name="gemini-2.0-flash", logprobs=True, top_logprobs=2, **settings)).sample(
            prompt, 1, 42)
    client = genai.Client(api_key=TEST_KEY, http_options=types.HttpOptions(base_url=live.base_url,
                                                                             api_version="v1beta"))
    with use_cassette(tmp_path / "sdk.yaml", "all"):
        client.models.generate_content(model="gemini-2.0-flash", contents=prompt, config=types.GenerateContentConfig(
            seed=42, response_logprobs=True, logprobs=2, **settings))
    sampler, sdk = (json.loads((tmp_path / name).read_text())["interactions"] for name in ("sampler.yaml", "sdk.yaml"))
    assert len(sampler) == len(sdk) == 1
    assert sampler[0]["request"]["uri"] == sdk[0]["request"]["uri"]
    assert sampler[0]["request"]["body"] == sdk[0]["request"]["body"]
    assert json.loads(sampler[0]["request"]["body"])["generationConfig"]["topK"] == 40  # the settings went out


@pytest.mark.parametrize("text", [
    '{"a": 1, "b": [1.5, -0.0, 1e-7, -13.375002, 1.5496514e-06], "c": "é ✓ \\u00e9", "d": null, "e": true}',
    "9223372036854775807", "-9223372036854775808", "18446744073709551615",  # orjson keeps 64-bit ints exact
    '"a run of 19 digits in a string 1234567890123456789"',
    "NaN", "[Infinity, -Infinity]", '"\\ud800"', "1e400",  # json accepts these; orjson does not
    "\ufeff{}", "{", '{"a": 1,}', "",  # errors: the same as json's
])
@pytest.mark.parametrize("as_bytes", [False, True])
def test_loads_json_gives_what_json_gives(text, as_bytes):
    from rlhf_eval.recording import loads_json

    raw = text.encode("utf-8", "surrogatepass") if as_bytes else text
    try:
        want = repr(json.loads(raw))  # repr tells 1 from 1.0 and keeps nan, inf and lone surrogates
    except ValueError as exc:
        with pytest.raises(type(exc)):
            loads_json(raw)
    else:
        assert repr(loads_json(raw)) == want


@pytest.mark.parametrize("text", ["18446744073709551616", "-9223372036854775809", '{"tokenId": 123456789012345678901}'])
def test_loads_json_gives_an_integer_beyond_64_bits_as_the_nearest_float(text):
    """The one difference from `json`, where no cassette or API body has a number (its docstring)."""
    pytest.importorskip("orjson")
    from rlhf_eval.recording import loads_json

    want = json.loads(text, parse_int=float)
    assert loads_json(text) == want and repr(loads_json(text)) == repr(want)


def test_loads_json_on_a_shipped_cassette_and_its_bodies():
    from rlhf_eval.recording import loads_json

    path = sorted((REPO / "cassettes" / "gsm8k_smoke").glob("*.yaml"))[0]
    text = path.read_text(encoding="utf-8")
    assert loads_json(text) == json.loads(text)
    for interaction in json.loads(text)["interactions"]:
        body = interaction["response"]["body"]["string"]
        assert repr(loads_json(body.encode())) == repr(json.loads(body))


def test_the_secret_scan_holds_while_another_thread_changes_the_environment(monkeypatch):
    # Cassettes are saved on worker threads while pytest's main thread sets and unsets
    # PYTEST_CURRENT_TEST; iterating os.environ then failed with KeyError now and then.
    import os
    import threading

    from rlhf_eval.credentials import secrets_in_use

    monkeypatch.setenv("RACE_TEST_API_KEY", "a-value-long-enough")
    done = threading.Event()

    def flip():
        try:
            for _ in range(100_000):
                os.environ["RLHF_EVAL_RACE"] = "x"
                del os.environ["RLHF_EVAL_RACE"]
        finally:
            done.set()

    flipper = threading.Thread(target=flip)
    flipper.start()
    scans = 0
    try:
        while not done.is_set():
            assert secrets_in_use()["RACE_TEST_API_KEY"] == "a-value-long-enough"
            scans += 1
    finally:
        flipper.join()
    assert scans > 100


@pytest.mark.parametrize("provider", ["gemini", "openai"])
def test_suites_in_one_process_share_an_sdk_client_and_each_key_reaches_the_server(emulator, monkeypatch, provider):
    """Building an SDK client loads the CA bundle (~0.1 s of CPU), so samplers with the same
    settings share one; a different key or server gets its own, and its own key is the one sent."""
    from rlhf_eval.backends import make_sampler
    from rlhf_eval.suite import ModelConfig

    env = "GEMINI_API_KEY" if provider == "gemini" else "OPENAI_API_KEY"
    base = emulator.base_url if provider == "gemini" else f"{emulator.base_url}/v1"
    monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", emulator.base_url)
    model = ModelConfig(provider=provider, name="gemini-2.0-flash", base_url=None if provider == "gemini" else base)

    def key_seen(sampler) -> str:
        (trace,) = sampler.sample("[[emulator:echo_key]] What is 2+3?", 1, 7)
        return trace.text.splitlines()[0]

    monkeypatch.setenv(env, "key-one")
    first, again = make_sampler(model), make_sampler(model)
    assert first._client is again._client
    assert key_seen(again) == "The API key of this request is key-one"
    monkeypatch.setenv(env, "key-two")
    other = make_sampler(model)
    assert other._client is not first._client
    assert key_seen(other) == "The API key of this request is key-two"
    assert key_seen(first) == "The API key of this request is key-one"  # a client keeps its own key
    with Emulator(port=0) as second:
        url = second.base_url if provider == "gemini" else f"{second.base_url}/v1"
        elsewhere = make_sampler(model.model_copy(update={"base_url": url}))
        assert elsewhere._client is not other._client
        assert key_seen(elsewhere) == "The API key of this request is key-two"


def test_the_package_and_its_light_modules_load_no_recorder_or_sdk():
    """`import rlhf_eval`, the emulator (`python -m rlhf_eval.emulator`), the report and the command
    line (`rlhf-eval html/ui/export`) start without vcrpy or a provider SDK, which take ~1 s to load;
    the names rlhf_eval exports load on first use."""
    import subprocess
    import sys

    heavy = ["vcr", "google.genai", "openai", "google.generativeai", "torch"]
    code = ("import sys, rlhf_eval, rlhf_eval.emulator, rlhf_eval.report, rlhf_eval.cli\n"
            f"print([m for m in {heavy!r} if m in sys.modules])\n"
            "from rlhf_eval import load_suite, evaluate_question, verify\n"
            "print(load_suite.__module__, evaluate_question.__module__, 'vcr' in sys.modules)\n"
            # `verify` names a submodule too, which the evaluator has loaded by now: still the function
            "import rlhf_eval, rlhf_eval.verify\n"
            "print(verify('A: 18', '18').correct, rlhf_eval.verify('A: 18', '18').correct)\n"
            "namespace = {}; exec('from rlhf_eval import *', namespace)\n"
            "print(sorted(k for k in namespace if not k.startswith('__')) == dir(rlhf_eval) == rlhf_eval.__all__,"
            " callable(namespace['verify']))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.splitlines() == ["[]", "rlhf_eval.suite rlhf_eval.evaluate True", "True True", "True True"]


REQUESTS_PROVIDER = '''
import os

import requests

from rlhf_eval import SamplingError, Trace


class RequestsChat:
    """A team's sampler that sends each trace's request with `requests` (urllib3), not httpx."""

    def __init__(self, model, *, replay=False, policy=None):
        self.model = model
        self.url = os.environ["TEAM_CHAT_URL"] + "/v1/chat/completions"

    def sample(self, prompt, k, seed):
        traces = []
        for i in range(k):
            body = {"model": self.model.name, "messages": [{"role": "user", "content": prompt}], "seed": seed + i,
                    "temperature": self.model.temperature, "max_tokens": 400}
            response = requests.post(self.url, json=body, timeout=30)
            if response.status_code != 200:
                raise SamplingError(f"the chat server answered {response.status_code}", status=response.status_code)
            choice = response.json()["choices"][0]
            traces.append(Trace(text=choice["message"]["content"], finish_reason="STOP", token_count=None, logp=None,
                                seed=seed + i, model_version=response.json()["model"]))
        return traces
'''


def test_a_provider_sending_with_requests_records_concurrently_as_serially(project, live, monkeypatch):
    """vcrpy un-patches every HTTP library, for every thread, while it sends one request for real;
    questions recording at once through `requests` lost requests to the network (unrecorded) until
    the adapter kept the other threads' patches in place."""
    from test_load import cassettes
    from test_plugin import metrics_of, report_json, suite_yaml

    (project.path / "team_requests.py").write_text(REQUESTS_PROVIDER)
    monkeypatch.syspath_prepend(str(project.path))
    monkeypatch.setenv("TEAM_CHAT_URL", live.base_url)
    model = {"provider": "team_requests:RequestsChat", "name": "gemini-2.0-flash", "temperature": 1.0}
    project.makefile(".yaml", demo=suite_yaml(samples=4, limit=8, logprobs=False, extra={"model": model}))
    serial, serial_report = report_json(project, "--rlhf-record-mode=once", "--rlhf-concurrency=1",
                                        "--rlhf-cassette-dir=serial")
    serial.assert_outcomes(passed=8)
    sent = len(live.requests)
    concurrent, concurrent_report = report_json(project, "--rlhf-record-mode=once", "--rlhf-concurrency=8",
                                                "--rlhf-cassette-dir=concurrent")
    concurrent.assert_outcomes(passed=8)
    assert len(live.requests) == sent + 32
    assert cassettes(project.path / "concurrent") == cassettes(project.path / "serial")  # byte for byte
    assert metrics_of(concurrent_report) == metrics_of(serial_report)


def test_a_team_providers_seed_hook_orders_its_cassette_and_explains_a_changed_seed(fixed_body, tmp_path,
                                                                                    monkeypatch):
    """Recording knows no provider's body format: where the seed is comes from the provider
    (`request_seed`), so a team's own format is ordered and explained as Gemini's and OpenAI's are."""
    import httpx

    from rlhf_eval.providers import PROVIDERS, provider

    monkeypatch.chdir(tmp_path)
    fixed_body.serve({"text": "4"})

    def body(seed):
        return {"prompt": "What is 2+2?", "sampling": {"random_seed": seed, "temperature": 1.0}}

    with use_cassette("c.yaml", "once"):
        for seed in (102, 100, 101):  # as concurrent traces may finish
            httpx.post(f"{fixed_body.url}/generate", json=body(seed))

    def replay_seed(seed):
        with pytest.raises(CassetteProblem) as info, use_cassette("c.yaml", "none", rerecord_hint="pytest s.yaml::q"):
            httpx.post("http://127.0.0.1:9/generate", json=body(seed))
        return str(info.value)

    def recorded_seeds():
        return [json.loads(i["request"]["body"])["sampling"]["random_seed"]
                for i in json.loads((tmp_path / "c.yaml").read_text())["interactions"]]

    assert recorded_seeds() == [102, 100, 101]  # no provider reads this format: recorded order
    assert replay_seed(103) == ("stale cassette c.yaml: the suite changed since it was recorded: "
                                "sampling.random_seed: 102 → 103; re-record with: pytest s.yaml::q")

    @provider("seeded-team", request_seed=lambda body: body["sampling"]["random_seed"])  # KeyError on others' bodies
    def seeded_team():
        raise AssertionError("never sampled here")
    try:
        with use_cassette("c.yaml", "all"):
            for seed in (102, 100, 101):
                httpx.post(f"{fixed_body.url}/generate", json=body(seed))
        assert recorded_seeds() == [100, 101, 102]
        assert replay_seed(103) == ("stale cassette c.yaml: it holds seeds 100–102 (3 requests) but this run asks "
                                    "for seed 103 (did `samples` or `seed` change?); re-record with: pytest s.yaml::q")
        # Gemini's bodies (on which the team's hook raises) beside the team's: each read by its provider.
        gemini = f"{fixed_body.url}/v1beta/models/m:generateContent"
        with use_cassette("g.yaml", "once"):
            for url, sent in ((gemini, {**BODY, "generationConfig": {"seed": 2}}),
                              (f"{fixed_body.url}/generate", body(0)),
                              (gemini, {**BODY, "generationConfig": {"seed": 1}})):
                httpx.post(url, json=sent)
        lines = json.loads((tmp_path / "g.yaml").read_text())["interactions"]
        assert [json.loads(i["request"]["body"]).get("generationConfig", {}).get("seed", "team") for i in lines] == [
            "team", 1, 2]
    finally:
        PROVIDERS.unregister("seeded-team")


def test_filter_request_keeps_a_clean_request_as_it_is_and_cleans_any_other():
    """A request with only the kept headers and no query or user info (every one loaded from a
    cassette written here) is kept as it is; any other is filtered on a copy."""
    from vcr.request import Request

    from rlhf_eval.recording.matching import filter_request

    clean = Request("POST", "https://api.example/v1beta/models/m:generateContent", b"{}",
                    {"content-type": "application/json"})
    assert filter_request(clean) is clean
    for uri, headers in [("https://api.example/v1?key=SECRET", {"content-type": "application/json"}),
                         ("https://user:SECRET@api.example/v1", {}),
                         ("https://api.example/v1", {"x-goog-api-key": "SECRET", "content-type": "application/json"})]:
        raw = Request("POST", uri, b"{}", headers)
        kept = filter_request(raw)
        assert kept is not raw and "SECRET" not in kept.uri and "x-goog-api-key" not in kept.headers
        assert "SECRET" in raw.uri + "".join(raw.headers.values())  # the caller's request is untouched


def test_the_match_index_plays_what_vcrpy_s_own_scan_plays(tmp_path):
    """A cassette with repeated requests, requests whose bodies differ only in key order and
    spacing, and one request in another path, replayed in shuffled orders (in recorded order too,
    where no body is parsed): the index plays exactly the interactions vcrpy's scan of every
    recorded request plays, and refuses exactly the requests it refuses."""
    import random

    from vcr.errors import UnhandledHTTPRequestError
    from vcr.request import Request

    from rlhf_eval.recording import open_cassette

    url = "https://generativelanguage.googleapis.com/v1beta/models/m:generateContent"
    bodies = [{"contents": "a", "seed": s} for s in (1, 2, 1, 3)]
    texts = [json.dumps(b) for b in bodies] + [json.dumps(bodies[1], indent=1), json.dumps(bodies[3])[::1]]
    recorded = [(url, t) for t in texts] + [(url.replace("m:", "n:"), texts[0])]
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps({"version": 1, "interactions": [
        {"request": {"method": "POST", "uri": u, "body": t, "headers": {"content-type": ["application/json"]}},
         "response": {"status": {"code": 200, "message": "OK"}, "headers": {"content-type": ["application/json"]},
                      "body": {"string": json.dumps({"answer": i})}}} for i, (u, t) in enumerate(recorded)]}))
    asked = [*recorded, (url, json.dumps({"seed": 2, "contents": "a"})), (url, json.dumps({"contents": "b"}))]

    def played(cassette, requests):
        out = []
        for u, t in requests:
            request = Request("POST", u, t.encode(), {"content-type": "application/json"})
            try:
                out.append((cassette.can_play_response_for(request), cassette.play_response(request)["body"]))
            except UnhandledHTTPRequestError:
                out.append("refused")
        return out

    rng = random.Random(0)
    orders = [asked, *(rng.sample(asked, len(asked)) for _ in range(30))]
    for order in orders:
        indexed, plain = open_cassette(path, "none"), open_cassette(path, "none")
        plain._plain = True  # vcrpy's own scan of every recorded request
        assert played(indexed, order) == played(plain, order)
    from rlhf_eval.recording.bodies import frozen_body

    frozen_body.cache_clear()
    assert all(p != "refused" for p in played(open_cassette(path, "none"), recorded))
    assert frozen_body.cache_info().misses == 0  # in recorded order, no body was parsed to match
