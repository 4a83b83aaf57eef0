"""Replaying cassettes that hold what no API sends, and repeated identical requests (issue 11).

Every test records real cassettes through the real SDKs against the emulator, changes what a
hand, an older tool or a broken disk could change, and replays them through the same SDKs."""
import gzip
import json
import re
import shutil
import tempfile
import zlib
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import GSM8K_TEST, TEST_KEY
from rlhf_eval.backends import make_sampler
from rlhf_eval.emulator import Emulator
from rlhf_eval.recording import RECORD_MODES, ReplayFault, use_cassette
from rlhf_eval.suite import ModelConfig
from rlhf_eval.throttle import SERIAL, RequestPolicy, RetryPolicy

pytest.importorskip("google.generativeai")
pytestmark = pytest.mark.filterwarnings("ignore::rlhf_eval.backends.gemini_legacy.LegacySeedWarning")

QUESTION = json.loads(GSM8K_TEST.read_text(encoding="utf-8").splitlines()[0])["question"]
PROMPT = f"Solve the problem and end with 'A: <number>'.\n\nQuestion: {QUESTION}"
SEED = 100
HINT = "pytest s.yaml::q --rlhf-record-mode=once"  # what the plugin passes in mode none
REWRITE = "re-record with: pytest s.yaml::q --rlhf-record-mode=rewrite"
MODELS = {
    "gemini": dict(provider="gemini", name="gemini-2.0-flash", logprobs=True),
    "legacy": dict(provider="gemini-legacy", name="gemini-2.0-flash", logprobs=True),
    "chat": dict(provider="openai", name="Qwen/Qwen2.5-0.5B", logprobs=True),
    "completions": dict(provider="openai", name="Qwen/Qwen2.5-0.5B", logprobs=True, endpoint="completions",
                        max_output_tokens=200),
}
DEAD = "http://127.0.0.1:9"


@pytest.fixture(scope="module")
def emu():
    with Emulator(port=0) as emulator:
        yield emulator


def _point_at(mp: pytest.MonkeyPatch, base_url: str, key: str | None) -> None:
    mp.setenv("RLHF_EVAL_GEMINI_BASE_URL", base_url)
    mp.setenv("OPENAI_BASE_URL", f"{base_url}/v1")
    mp.delenv("GOOGLE_API_KEY", raising=False)
    if key:
        mp.setenv("GEMINI_API_KEY", key)
    else:
        mp.delenv("GEMINI_API_KEY", raising=False)


def sample(kind: str, path: Path, mode: str, k: int = 2, *, replay: bool = False, policy=SERIAL, hint: str = HINT):
    with use_cassette(path, mode, rerecord_hint=hint):
        return make_sampler(ModelConfig(**MODELS[kind]), replay=replay, policy=policy).sample(PROMPT, k, SEED)


@pytest.fixture(scope="module")
def recorded(emu, tmp_path_factory):
    """kind → (cassette of 2 requests recorded against the emulator, its traces)."""
    folder = tmp_path_factory.mktemp("recorded")
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        _point_at(mp, emu.base_url, TEST_KEY)
        for kind in MODELS:
            out[kind] = folder / f"{kind}.yaml", sample(kind, folder / f"{kind}.yaml", "once")
    return out


@pytest.fixture
def offline(monkeypatch):
    _point_at(monkeypatch, DEAD, None)


def damaged(recorded_path: Path, folder: Path, change, number: int = 2) -> Path:
    """A copy of a recorded cassette with interaction `number`'s response changed by `change`."""
    data = json.loads(recorded_path.read_text())
    change(data["interactions"][number - 1]["response"])
    path = folder / recorded_path.name
    path.write_text(yaml.safe_dump(data))  # YAML: bytes become !!binary, as vcrpy writes them
    return path


def fault_line(kind: str, path: Path) -> str:
    try:
        traces = sample(kind, path, "none", replay=True)
    except ReplayFault as fault:
        assert "\n" not in str(fault)
        return str(fault)
    raise AssertionError(f"replayed: {traces}")


def body(text):
    return lambda response: response["body"].update(string=text)


def field(kind: str, value, *, gemini: str = "candidates", openai: str = "choices"):
    """Set a top-level field of the JSON body (Gemini's name or OpenAI's)."""
    def change(response):
        data = json.loads(response["body"]["string"])
        data[gemini if kind in ("gemini", "legacy") else openai] = value
        response["body"]["string"] = json.dumps(data)
    return change


def text_is_a_number(kind: str):
    def change(response):
        data = json.loads(response["body"]["string"])
        if kind in ("gemini", "legacy"):
            data["candidates"][0]["content"]["parts"][0]["text"] = 5
        elif kind == "chat":
            data["choices"][0]["message"]["content"] = 5
        else:
            data["choices"][0]["text"] = 5
        response["body"]["string"] = json.dumps(data)
    return change


def http_error(code: int, text: str):
    def change(response):
        response["status"] = {"code": code, "message": "whatever the reason phrase was"}
        response["body"]["string"] = text
    return change


# ---------------------------------------------------------------------------------------------
# Malformed bodies: one line, naming the interaction, for every provider
# ---------------------------------------------------------------------------------------------

# Found before any SDK sees the body: the same line whatever the provider.
BEFORE_THE_SDK = {
    "cut mid-JSON": (lambda kind: body('{"choices": [{"text": "The answer'),
                     "holds a response the API does not send (its body is cut off mid-JSON: …"
                     "'{\"choices\": [{\"text\": \"The answer')"),
    "a list": (lambda kind: body("[]"),
               "holds a response the API does not send (its body is a JSON list, not an object)"),
    "null": (lambda kind: body(None), "holds a response the API does not send (its body is null, not text)"),
    "no body": (lambda kind: lambda response: response.update(body=None),
                "holds a response the API does not send (its body field is null, not a mapping with 'string')"),
    "empty": (lambda kind: body(""), "holds a response the API does not send (its body is empty)"),
    "html": (lambda kind: body("<html><body>Bad Gateway</body></html>"),
             "holds a response the API does not send (its body is not JSON: '<html><body>Bad Gateway</body></html>')"),
    "gzip that is not": (lambda kind: lambda response: (response["headers"].update({"Content-Encoding": ["gzip"]}),
                                                        response["body"].update(string=b"not gzip at all")),
                         "holds a response the API does not send (its body is marked gzip-encoded but does not "
                         "decompress (Error -3 while decompressing data: incorrect header check))"),
    "zstd": (lambda kind: lambda response: (response["headers"].update({"content-encoding": ["zstd"]}),
                                            response["body"].update(string=b"\x28\xb5\x2f\xfd")),
             "holds a response the API does not send (its body is zstd-encoded, which cannot be decoded here "
             "(gzip, deflate and br can))"),
    "503": (lambda kind: http_error(503, '{"error": {"code": 503, "message": "The model is overloaded.", '
                                         '"status": "UNAVAILABLE"}}'),
            "recorded an HTTP 503 from the API (The model is overloaded.)"),
    "502 html": (lambda kind: http_error(502, "<html><body>502 Bad Gateway</body></html>"),
                 "recorded an HTTP 502 from the API (<html><body>502 Bad Gateway</body></html>)"),
    "400": (lambda kind: http_error(400, '{"error": {"message": "Request contains an invalid argument."}}'),
            "recorded an HTTP 400 from the API (Request contains an invalid argument.)"),
    "429 no body": (lambda kind: http_error(429, ""),
                    "recorded an HTTP 429 from the API (whatever the reason phrase was)"),
}


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("case", BEFORE_THE_SDK)
def test_a_malformed_or_failed_response_is_one_line(kind, case, recorded, offline, tmp_path):
    change, what = BEFORE_THE_SDK[case]
    path = damaged(recorded[kind][0], tmp_path, change(kind))
    assert fault_line(kind, path) == f"cassette {path} interaction 2 of 2 {what}; {REWRITE}"


LEGACY_PARSE = "ParseError: Failed to parse "
# Found while the SDK or our parser reads the body: the reader's own words, in the same line.
WHILE_READING = {
    "a string for a list": (lambda kind: field(kind, "oops"), {
        "gemini": "TypeError: 'candidates' is a JSON string, not a JSON list",
        "legacy": LEGACY_PARSE + "candidates field: repeated field candidates must be in [] which is oops at "
                                 "GenerateContentResponse.",
        "chat": "TypeError: 'choices' is a JSON string, not a JSON list",
        "completions": "TypeError: 'choices' is a JSON string, not a JSON list"}),
    "an object for a list": (lambda kind: field(kind, {}), {
        "gemini": "TypeError: 'candidates' is a JSON object, not a JSON list",
        "legacy": LEGACY_PARSE + "candidates field: repeated field candidates must be in [] which is {} at "
                                 "GenerateContentResponse.",
        "chat": "TypeError: 'choices' is a JSON object, not a JSON list",
        "completions": "TypeError: 'choices' is a JSON object, not a JSON list"}),
    "usage is a list": (lambda kind: field(kind, [1], gemini="usageMetadata", openai="usage"), {
        "gemini": "TypeError: 'usageMetadata' is a JSON list, not a JSON object",
        "legacy": LEGACY_PARSE + "usageMetadata field: Failed to parse 1 field: expected string or bytes-like "
                                 "object, got 'int'..",
        "chat": "TypeError: 'usage' is a JSON list, not a JSON object",
        "completions": "TypeError: 'usage' is a JSON list, not a JSON object"}),
    "a number for text": (text_is_a_number, {
        "gemini": "TypeError: sequence item 0: expected str instance, int found",
        "legacy": LEGACY_PARSE + "candidates field: Failed to parse content field: Failed to parse parts field: "
                                 "Failed to parse text field: expected string or bytes-…",
        "chat": "TypeError: message content of type int, reasoning NoneType",
        "completions": "TypeError: object of type 'int' has no len()"}),
}


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("case", WHILE_READING)
def test_a_body_the_reader_rejects_is_one_line(kind, case, recorded, offline, tmp_path):
    change, details = WHILE_READING[case]
    path = damaged(recorded[kind][0], tmp_path, change(kind))
    assert fault_line(kind, path) == (f"cassette {path} interaction 2 of 2 holds a response the API does not send "
                                      f"({details[kind]}); {REWRITE}")


def test_without_a_hint_the_line_still_says_what_to_do(recorded, offline, tmp_path):
    path = damaged(recorded["gemini"][0], tmp_path, body("[]"))
    with pytest.raises(ReplayFault) as info:
        sample("gemini", path, "none", replay=True, hint="")
    assert str(info.value) == (f"cassette {path} interaction 2 of 2 holds a response the API does not send (its "
                               "body is a JSON list, not an object); re-record it in record mode rewrite")


def test_the_line_shows_the_path_relative_to_the_working_directory(recorded, offline, tmp_path, monkeypatch):
    (tmp_path / "cassettes").mkdir()
    path = damaged(recorded["chat"][0], tmp_path / "cassettes", body(""))
    monkeypatch.chdir(tmp_path)
    assert fault_line("chat", path).startswith("cassette cassettes/chat.yaml interaction 2 of 2 holds")


@pytest.mark.parametrize("kind", ["gemini", "chat"])
def test_a_recorded_server_error_is_not_retried_nor_called_already_replayed(kind, recorded, offline, tmp_path):
    path = damaged(recorded[kind][0], tmp_path, http_error(503, '{"error": {"message": "Overloaded."}}'))
    waits = []
    policy = RequestPolicy(retry=RetryPolicy(attempts=4), sleep=waits.append)  # what the plugin builds
    with pytest.raises(ReplayFault) as info:
        sample(kind, path, "none", replay=True, policy=policy)
    assert str(info.value) == (f"cassette {path} interaction 2 of 2 recorded an HTTP 503 from the API (Overloaded.); "
                               f"{REWRITE}")
    assert waits == [] and policy.retries == 0


def test_a_fault_in_new_episodes_mode_writes_nothing(recorded, offline, tmp_path):
    path = damaged(recorded["gemini"][0], tmp_path, field("gemini", "oops"))
    before = path.read_bytes()
    with pytest.raises(ReplayFault):
        sample("gemini", path, "new_episodes", k=3, replay=True)
    assert path.read_bytes() == before


def test_following_the_advice_rewrites_a_damaged_cassette(recorded, emu, tmp_path, monkeypatch):
    path = damaged(recorded["legacy"][0], tmp_path, body('{"candidates": [{"content'))
    _point_at(monkeypatch, emu.base_url, TEST_KEY)
    sample("legacy", path, "rewrite")
    _point_at(monkeypatch, DEAD, None)
    assert len(sample("legacy", path, "none", replay=True)) == 2


# ---------------------------------------------------------------------------------------------
# Compressed bodies replay, as the SDK's HTTP client would read them
# ---------------------------------------------------------------------------------------------

def compressed(encoding: str, compress):
    def change(response):
        response["headers"]["Content-Encoding"] = [encoding]
        response["body"]["string"] = compress(response["body"]["string"].encode())
    return change


ENCODINGS = {
    "gzip": compressed("gzip", gzip.compress),
    "deflate": compressed("deflate", zlib.compress),
    "raw deflate": compressed("deflate", lambda data: zlib.compress(data)[2:-4]),
    "deflate then gzip": compressed("deflate, gzip", lambda data: gzip.compress(zlib.compress(data))),
}


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_compressed_body_replays(kind, encoding, recorded, offline, tmp_path):
    path, traces = recorded[kind]
    data = json.loads(path.read_text())
    for interaction in data["interactions"]:
        ENCODINGS[encoding](interaction["response"])
    copy = tmp_path / path.name
    copy.write_text(yaml.safe_dump(data))
    assert "!!binary" in copy.read_text()  # as vcrpy stores it without decode_compressed_response
    assert sample(kind, copy, "none", replay=True) == traces


# ---------------------------------------------------------------------------------------------
# Any change to a real body: traces or the one line, never a foreign exception
# ---------------------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)
LINE = (r"cassette \S+ interaction 2 of 2 (holds a response the API does not send \(.+\)|recorded an HTTP \d+ from "
        r"the API \(.*\)); re-record with: pytest s\.yaml::q --rlhf-record-mode=rewrite")


def _walk(data, node):
    """A (container, key) inside `node`, chosen by hypothesis, or None for the whole body."""
    place = None
    while isinstance(node, (dict, list)) and node and data.draw(st.integers(0, 4)) > 0:
        key = data.draw(st.sampled_from(sorted(node) if isinstance(node, dict) else list(range(len(node)))))
        place, node = (node, key), node[key]
    return place


def _mutate(data, text: str) -> str:
    how = data.draw(st.sampled_from(["replace", "delete", "cut"]))
    if how == "cut":
        return text[:data.draw(st.integers(0, len(text) - 1))]
    value = json.loads(text)
    place = _walk(data, value)
    if place is None:
        return json.dumps(data.draw(JSON))
    container, key = place
    if how == "delete" and isinstance(container, dict):
        del container[key]
    else:
        container[key] = data.draw(JSON)
    return json.dumps(value)


@pytest.mark.parametrize("kind", MODELS)
@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_change_to_a_recorded_body_gives_traces_or_the_line(kind, data, recorded, offline):
    source = json.loads(recorded[kind][0].read_text())
    response = source["interactions"][1]["response"]
    response["body"]["string"] = _mutate(data, response["body"]["string"])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.yaml"
        path.write_text(json.dumps(source))
        try:
            traces = sample(kind, path, "none", replay=True)
        except ReplayFault as fault:
            assert re.fullmatch(LINE, str(fault)), str(fault)
        else:
            assert len(traces) == 2


# ---------------------------------------------------------------------------------------------
# Identical requests (the legacy SDK sends no seed): each recorded, each replayed, in order
# ---------------------------------------------------------------------------------------------

def _answered(emu) -> int:
    return len(emu.requests)


def _bodies(path: Path) -> list[str]:
    return [i["response"]["body"]["string"] for i in json.loads(path.read_text())["interactions"]]


def test_growing_samples_under_new_episodes_records_only_the_missing_identical_requests(emu, tmp_path, monkeypatch):
    _point_at(monkeypatch, emu.base_url, TEST_KEY)
    emu.reset()
    path = tmp_path / "c.yaml"
    sample("legacy", path, "once", k=2)
    before = _answered(emu)
    grown = sample("legacy", path, "new_episodes", k=4)
    assert _answered(emu) - before == 2  # two replayed, two sent
    assert len(set(_bodies(path))) == 4  # four interactions, four different answers
    emu.reset()
    assert grown == sample("legacy", tmp_path / "fresh.yaml", "once", k=4)  # the emulator's samples 0..3, in order
    _point_at(monkeypatch, DEAD, None)
    assert sample("legacy", path, "none", k=4, replay=True) == grown


def test_asking_for_more_identical_requests_than_recorded_says_to_record_the_missing_ones(
        emu, tmp_path, monkeypatch):
    _point_at(monkeypatch, emu.base_url, TEST_KEY)
    monkeypatch.chdir(tmp_path)
    sample("legacy", tmp_path / "c.yaml", "once", k=2)
    _point_at(monkeypatch, DEAD, None)
    with pytest.raises(Exception) as info:
        sample("legacy", tmp_path / "c.yaml", "none", k=3, replay=True)
    assert str(info.value) == ("cassette c.yaml holds 2 answers to this request and the run asks for more (did "
                               "`samples` grow?); re-record with: pytest s.yaml::q --rlhf-record-mode=new_episodes "
                               "(records only the missing ones)")
    _point_at(monkeypatch, emu.base_url, TEST_KEY)
    assert len(sample("legacy", tmp_path / "c.yaml", "new_episodes", k=3)) == 3  # the advice works
    assert len(_bodies(tmp_path / "c.yaml")) == 3


@pytest.mark.parametrize("mode", RECORD_MODES)
def test_identical_requests_replay_or_record_in_order_in_every_mode(mode, emu, tmp_path, monkeypatch):
    _point_at(monkeypatch, emu.base_url, TEST_KEY)
    emu.reset()
    path = tmp_path / "c.yaml"
    first = sample("legacy", path, "once", k=3)
    emu.reset()  # a mode that records asks the emulator for its samples 0..2 again
    again = sample("legacy", path, mode, k=3)
    assert again == first
    assert _answered(emu) == (3 if mode in ("all", "rewrite") else 0)
    assert len(_bodies(path)) == 3


def test_a_seeded_cassette_asked_for_more_seeds_names_them(recorded, offline, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(recorded["chat"][0], tmp_path / "c.yaml")
    with pytest.raises(Exception) as info:
        sample("chat", Path("c.yaml"), "none", k=3, replay=True)
    assert str(info.value) == ("stale cassette c.yaml: it holds seeds 100–101 (2 requests) but this run asks for "
                               "seed 102 (did `samples` or `seed` change?); re-record with: " + HINT)


# ---------------------------------------------------------------------------------------------
# Under pytest: the item fails with the line, the command it gives works
# ---------------------------------------------------------------------------------------------

SUITE = ("suite: s\nmodel: {name: gemini-2.0-flash, logprobs: true}\nsamples: 2\nseed: 100\n"
         "questions:\n  - {id: q, question: \"What is 20 plus 22?\", answer: 42}\n"
         "  - {id: other, question: \"What is 3 times 5?\", answer: 15}\n")


def test_under_pytest_the_item_fails_in_one_line_and_its_command_re_records(project, live, monkeypatch):
    project.makefile(".yaml", s=SUITE)
    project.runpytest("-p", "no:cacheprovider", "--rlhf-record-mode=once").assert_outcomes(passed=2)
    path = project.path / "cassettes" / "s" / "q.yaml"
    damaged(path, path.parent, field("gemini", "oops"))
    monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", DEAD)
    monkeypatch.delenv("GEMINI_API_KEY")
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    assert "Traceback" not in result.stdout.str()
    command = "pytest s.yaml::q --rlhf-record-mode=rewrite"
    assert result.stdout.lines.count(
        "s.yaml::q: cassette cassettes/s/q.yaml interaction 2 of 2 holds a response the API does not send "
        f"(TypeError: 'candidates' is a JSON string, not a JSON list); re-record with: GEMINI_API_KEY=<your key> "
        f"{command}") == 1, result.stdout.str()
    monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", live.base_url)
    monkeypatch.setenv("GEMINI_API_KEY", TEST_KEY)
    project.runpytest("-p", "no:cacheprovider", *command.split()[1:]).assert_outcomes(passed=1)
    monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", DEAD)
    monkeypatch.delenv("GEMINI_API_KEY")
    project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_a_scorer_response_of_the_wrong_shape_is_one_line(emu, tmp_path, monkeypatch):
    from rlhf_eval.backends.openai_compat import OpenAIScorer
    from rlhf_eval.suite import ScorerConfig

    config = ScorerConfig(provider="openai", name="ref-1b", template="Q: {prompt}\nA:")
    path = tmp_path / "c.yaml"
    _point_at(monkeypatch, emu.base_url, None)
    with use_cassette(path, "once"):
        scores = OpenAIScorer(config).score(PROMPT, [" 4", " five"])
    _point_at(monkeypatch, DEAD, None)
    with use_cassette(path, "none"):
        assert OpenAIScorer(config, replay=True).score(PROMPT, [" 4", " five"]) == scores

    def logprobs_as_a_list(response):
        data = json.loads(response["body"]["string"])
        data["choices"][1]["logprobs"] = [1]
        response["body"]["string"] = json.dumps(data)
    (tmp_path / "broken").mkdir()
    broken = damaged(path, tmp_path / "broken", logprobs_as_a_list, number=1)
    with pytest.raises(ReplayFault) as info, use_cassette(broken, "none", rerecord_hint=HINT):
        OpenAIScorer(config, replay=True).score(PROMPT, [" 4", " five"])
    assert str(info.value) == (f"cassette {broken} interaction 1 of 1 holds a response the API does not send "
                               f"(TypeError: 'logprobs' is a JSON list, not a JSON object); {REWRITE}")
