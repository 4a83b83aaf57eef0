"""The legacy google-generativeai sampler, against the real emulator and real vcrpy cassettes."""
import inspect
import json
import warnings

import pytest
import yaml

pytest.importorskip("google.generativeai")

from conftest import GSM8K_TEST, TEST_KEY  # noqa: E402
from rlhf_eval.backends import gemini_legacy  # noqa: E402
from rlhf_eval.backends.gemini_legacy import LegacyGeminiSampler, LegacySeedWarning  # noqa: E402
from rlhf_eval.emulator import Emulator  # noqa: E402
from rlhf_eval.recording import use_cassette  # noqa: E402
from rlhf_eval.sampling import Sampler, SamplingError  # noqa: E402
from rlhf_eval.suite import ModelConfig  # noqa: E402

# Every sampler here warns that it cannot send a seed; one test checks that warning on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::rlhf_eval.backends.gemini_legacy.LegacySeedWarning")

QUESTION = json.loads(GSM8K_TEST.read_text(encoding="utf-8").splitlines()[0])["question"]
PROMPT = f"Solve the problem. Reason step by step, then answer as 'A: <number>'.\n\nQuestion: {QUESTION}"
DEAD = "http://127.0.0.1:9"


@pytest.fixture(scope="module")
def emu():
    with Emulator(port=0) as emulator:
        yield emulator


@pytest.fixture
def record_env(emu, monkeypatch):
    monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", emu.base_url)
    monkeypatch.setenv("GEMINI_API_KEY", TEST_KEY)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    return emu


@pytest.fixture
def replay_env(monkeypatch):
    monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", DEAD)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)


def _model(name="gemini-2.0-flash", **kw):
    return ModelConfig(provider="gemini-legacy", name=name, **kw)


def _interactions(path):
    return yaml.safe_load(path.read_text())["interactions"]


def _record_then_replay(tmp_path, monkeypatch, emu, model, k=4, prompt=PROMPT):
    path = tmp_path / "c.yaml"
    monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", emu.base_url)
    monkeypatch.setenv("GEMINI_API_KEY", TEST_KEY)
    with use_cassette(path, "once"):
        recorded = LegacyGeminiSampler(model).sample(prompt, k, 1000)
    monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", DEAD)
    monkeypatch.delenv("GEMINI_API_KEY")
    with use_cassette(path, "none") as cassette:
        replayed = LegacyGeminiSampler(model, replay=True).sample(prompt, k, 1000)
        assert cassette.all_played
    return path, recorded, replayed


def test_make_sampler_builds_the_legacy_sampler(replay_env):
    from rlhf_eval.backends import make_sampler

    sampler = make_sampler(_model(), replay=True)
    assert isinstance(sampler, LegacyGeminiSampler) and isinstance(sampler, Sampler)
    assert sampler.base_url == DEAD


def test_record_then_replay_offline_gives_identical_traces(tmp_path, monkeypatch, emu):
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    model = _model(logprobs=True, max_output_tokens=512, top_p=0.95)
    path, recorded, replayed = _record_then_replay(tmp_path, monkeypatch, emu, model)
    assert len(recorded) == 4 and replayed == recorded
    assert all(t.seed is None for t in recorded), "the legacy SDK sends no seed, so none may be claimed"
    assert all(t.text and t.finish_reason == "STOP" for t in recorded)

    text = path.read_text()
    assert TEST_KEY not in text and "x-goog-api-key" not in text
    interactions = _interactions(path)
    assert len(interactions) == 4  # one request per trace, retries off
    for it in interactions:
        assert it["request"]["uri"].endswith(":generateContent?%24alt=json%3Benum-encoding%3Dint")
        body = json.loads(it["request"]["body"])
        assert "seed" not in body["generationConfig"]
        assert body["generationConfig"]["responseLogprobs"] is True
        response = json.loads(it["response"]["body"]["string"])
        assert response["candidates"][0]["finishReason"] == 1  # enum-encoding=int
    assert len({it["request"]["body"] for it in interactions}) == 1, "identical requests, replayed in order"


def test_logprobs_come_from_the_raw_json(tmp_path, monkeypatch, emu):
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    path, recorded, replayed = _record_then_replay(tmp_path, monkeypatch, emu, _model(logprobs=True), k=2)
    for trace, it in zip(replayed, _interactions(path)):
        raw = json.loads(it["response"]["body"]["string"])["candidates"][0]["logprobsResult"]
        assert trace.token_count == len(raw["chosenCandidates"])
        # the answer's logp is the sum of its chosen tokens (float32 values summed in float64), never
        # logProbabilitySum, which Vertex does not send
        assert trace.logp_source == "logprobsResult.chosenCandidates"
        assert trace.logp == sum(c["logProbability"] for c in raw["chosenCandidates"])
        assert trace.logp == pytest.approx(raw["logProbabilitySum"], rel=1e-6)


def test_without_the_hook_the_proto_fallback_still_reads_logprobs(record_env, monkeypatch):
    def no_hook(model, client, on_response):
        model._client = client
        return False
    monkeypatch.setattr(gemini_legacy, "_wire", no_hook)
    (trace,) = LegacyGeminiSampler(_model(logprobs=True)).sample(PROMPT, 1, 0)
    assert trace.text and trace.finish_reason == "STOP" and trace.logp is not None
    assert trace.logp_source == "logprobsResult.chosenCandidates"


def test_model_refusing_logprobs_is_never_asked(tmp_path, monkeypatch, emu):
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    path, recorded, replayed = _record_then_replay(tmp_path, monkeypatch, emu, _model("gemini-3-flash", logprobs=True),
                                                   k=2)
    assert replayed == recorded and all(t.logp is None and t.text for t in recorded)
    for it in _interactions(path):
        assert it["response"]["status"]["code"] == 200
        assert "responseLogprobs" not in json.loads(it["request"]["body"])["generationConfig"]


def test_refusals_fall_back_and_replay_the_same_way(tmp_path, monkeypatch, emu):
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    # Unknown model: logprobs are asked, refused (400), asked again without; gemini-3: 4 candidates refused.
    for model, codes in ((_model("emu-unknown-model", logprobs=True), [400, 200]),
                         (_model("gemini-3-flash", candidates_per_request=4), [400, 200, 200, 200, 200])):
        target = tmp_path / model.name
        target.mkdir()
        path, recorded, replayed = _record_then_replay(target, monkeypatch, emu, model, k=len(codes) - 1)
        assert replayed == recorded and all(t.text for t in recorded)
        assert [it["response"]["status"]["code"] for it in _interactions(path)] == codes


def test_candidates_per_request(record_env):
    before = len(record_env.requests)
    traces = LegacyGeminiSampler(_model(candidates_per_request=3, logprobs=True)).sample(PROMPT, 4, 0)
    assert [t.candidate_index for t in traces] == [0, 1, 2, 0]
    assert all(t.logp is not None for t in traces)
    sent = [r["body"]["generationConfig"].get("candidateCount") for r in record_env.requests[before:]]
    assert sent == [3, None]


def test_seed_warning_is_given_once_per_process(record_env, monkeypatch):
    monkeypatch.setattr(gemini_legacy, "_seed_warning_given", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        LegacyGeminiSampler(_model()).sample(PROMPT, 2, 0)
        LegacyGeminiSampler(_model("gemini-3-flash")).sample(PROMPT, 1, 5)
    ours = [w for w in caught if issubclass(w.category, LegacySeedWarning)]
    assert len(ours) == 1, [str(w.message) for w in caught]
    assert "cannot send a seed" in str(ours[0].message) and "replay deterministically" in str(ours[0].message)
    assert ours[0].filename == __file__  # points at the caller of sample()
    assert not [w for w in caught if issubclass(w.category, FutureWarning)]


def test_server_error_is_one_line_and_not_retried(record_env):
    before = len(record_env.requests)
    with pytest.raises(SamplingError) as info:
        LegacyGeminiSampler(_model()).sample("What is 6*7? [[emulator:503]]", 2, 0)
    message = str(info.value)
    assert "\n" not in message and "503" in message and "overloaded" in message
    assert "$alt" not in message and "%24alt" not in message
    assert [r["status"] for r in record_env.requests[before:]] == [503]


@pytest.mark.parametrize("marker, words", [("429", ["rate limited", "retry after 2s"]),
                                            ("404", ["not found", "model.name"])])
def test_client_errors_are_one_line(record_env, marker, words):
    with pytest.raises(SamplingError) as info:
        LegacyGeminiSampler(_model()).sample(f"What is 6*7? [[emulator:{marker}]]", 1, 0)
    assert "\n" not in str(info.value) and all(w in str(info.value) for w in words)


def test_unreachable_server_and_missing_scheme(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", TEST_KEY)
    with pytest.raises(SamplingError, match=r"^could not reach http://127\.0\.0\.1:9 \(ConnectionError"):
        LegacyGeminiSampler(_model(base_url=DEAD)).sample(PROMPT, 1, 0)
    # without one the transport would assume https: refused in the suite, and from the variable
    with pytest.raises(ValueError, match="needs a scheme"):
        _model(base_url="127.0.0.1:9")
    monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", "127.0.0.1:9")
    with pytest.raises(SamplingError, match=r"^base URL '127\.0\.0\.1:9' \(the suite's base_url, else "
                                            r"\$RLHF_EVAL_GEMINI_BASE_URL\) is not a server URL \(it needs a scheme"):
        LegacyGeminiSampler(_model())


def test_blocked_prompt_gives_blocked_traces(record_env):
    traces = LegacyGeminiSampler(_model()).sample(f"{QUESTION} [[emulator:block]]", 3, 0)
    assert len(traces) == 3
    assert all(t.finish_reason.startswith("PROMPT_BLOCKED") and t.text == "" for t in traces)
    assert traces[0].finish_reason == "PROMPT_BLOCKED:SAFETY"  # blockReason arrived as int 1


def test_system_instruction_and_sampling_settings_reach_the_wire(record_env):
    model = _model(system_instruction="Be terse.", temperature=0.0, top_k=40, top_p=0.5, max_output_tokens=64,
                   logprobs=True, top_logprobs=3)
    LegacyGeminiSampler(model).sample(PROMPT, 1, 0)
    body = record_env.requests[-1]["body"]
    assert body["systemInstruction"] == {"parts": [{"text": "Be terse."}]}
    assert body["generationConfig"] == {"temperature": 0.0, "topP": 0.5, "topK": 40, "maxOutputTokens": 64,
                                         "responseLogprobs": True, "logprobs": 3}


def _evaluate(evaluate, suite, qid, sampler, cassette_dir, mode):
    params = inspect.signature(evaluate.evaluate_question).parameters
    if "backends" in params:
        extra = {"backends": evaluate.Backends(sampler=sampler)}
    else:
        extra = {"sampler": sampler}
    return evaluate.evaluate_question(suite, qid, cassette_dir=cassette_dir, record_mode=mode, **extra)


def test_end_to_end_through_the_library(tmp_path, monkeypatch, emu):
    from rlhf_eval import evaluate
    from rlhf_eval.suite import load_suite

    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    suite_file = tmp_path / "legacy.yaml"
    suite_file.write_text(f"""\
suite: legacy_smoke
model: {{provider: gemini-legacy, name: gemini-2.0-flash, logprobs: true, max_output_tokens: 512}}
samples: 4
prompt: "Solve step by step, then answer as 'A: <number>'.\\n\\nQuestion: {{question}}"
verifier: numeric
questions:
  source: {json.dumps(str(GSM8K_TEST))}
  id_prefix: gsm8k
  answer_regex: '####\\s*(.+)$'
  limit: 1
""")
    suite = load_suite(suite_file)
    qid = suite.questions[0].id
    cassettes = tmp_path / "cassettes"

    monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", emu.base_url)
    monkeypatch.setenv("GEMINI_API_KEY", TEST_KEY)
    first = _evaluate(evaluate, suite, qid, LegacyGeminiSampler(suite.spec.model), cassettes, "once")
    monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", DEAD)
    monkeypatch.delenv("GEMINI_API_KEY")
    again = _evaluate(evaluate, suite, qid, LegacyGeminiSampler(suite.spec.model, replay=True), cassettes, "none")

    assert first.to_dict() == again.to_dict()
    # and through the library's own wiring (make_sampler picks the legacy sampler, with replay credentials)
    assert (evaluate.evaluate_question(suite, qid, cassette_dir=cassettes, record_mode="none").to_dict()
            == first.to_dict())
    assert len(first.traces) == 4 and all(t.seed is None and t.logp is not None for t in first.traces)
    assert first.metrics["mean_logp"] is not None
    cassette = cassettes / "legacy_smoke" / f"{qid}.yaml"
    assert cassette.is_file() and TEST_KEY not in cassette.read_text()
