"""The Gemini replay client (rlhf_eval/backends/replay_http.py): google-genai's requests answered by
the thread's cassette without httpx's pipeline must replay exactly what the vcrpy-patched httpx path
replays, fail a stale request the same way, and be an ordinary client when no cassette is bound."""
import pytest

from conftest import GSM8K_TEST
from rlhf_eval import load_suite
from rlhf_eval.backends.gemini import GeminiSampler
from rlhf_eval.backends.replay_http import ReplayClient
from rlhf_eval.evaluate import Backends, evaluate_question, sample_question
from rlhf_eval.recording import CassetteProblem, hold_patch, release_patch
from rlhf_eval.suite import ModelConfig

SUITE = ("suite: s\nmodel: {{name: gemini-2.0-flash, logprobs: true, temperature: {t}}}\nsamples: 4\nseed: 11\n"
         f"questions:\n  source: {GSM8K_TEST}\n  limit: 2\n")


def _httpx_client(sampler: GeminiSampler):
    return sampler._client._api_client._httpx_client  # the client google-genai sends through


def _recorded(tmp_path, monkeypatch):
    path = tmp_path / "s.yaml"
    path.write_text(SUITE.format(t=0.7))
    suite = load_suite(path)
    for question in suite.questions:
        evaluate_question(suite, question, cassette_dir=tmp_path / "c", record_mode="once")
    monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("GEMINI_API_KEY")
    return path, suite


def test_the_replay_client_replays_what_httpx_and_vcrpy_replay(tmp_path, live, monkeypatch):
    _, suite = _recorded(tmp_path, monkeypatch)
    fast, usual = Backends.for_suite(suite, replay=True), Backends.for_suite(suite, replay=False)
    assert isinstance(_httpx_client(fast.sampler), ReplayClient)
    assert not isinstance(_httpx_client(usual.sampler), ReplayClient)
    hold_patch()  # as the plugin runs a row of questions: vcrpy's patch installed throughout
    try:
        for question in suite.questions:
            traces = sample_question(suite, question, fast, cassette_dir=tmp_path / "c")
            assert traces == sample_question(suite, question, usual, cassette_dir=tmp_path / "c")
            assert [t.seed for t in traces] == [11, 12, 13, 14] and all(t.logp is not None for t in traces)
    finally:
        release_patch()


def test_a_request_the_cassette_does_not_hold_still_fails_as_stale(tmp_path, live, monkeypatch):
    path, _ = _recorded(tmp_path, monkeypatch)
    path.write_text(SUITE.format(t=0.9))
    changed = load_suite(path)
    with pytest.raises(CassetteProblem) as info:
        evaluate_question(changed, changed.questions[0], cassette_dir=tmp_path / "c")
    assert "stale cassette" in str(info.value) and "generationConfig.temperature: 0.7 → 0.9" in str(info.value)


def test_with_no_cassette_bound_the_replay_client_sends_over_http(live):
    sampler = GeminiSampler(ModelConfig(name="gemini-2.0-flash", logprobs=True), replay=True)
    assert isinstance(_httpx_client(sampler), ReplayClient)
    before = live.stats["requests"]
    traces = sampler.sample("Tom has 3 apples and buys 4 more. How many apples?\nA:", 2, 5)
    assert [t.seed for t in traces] == [5, 6] and all(t.text for t in traces)
    assert live.stats["requests"] == before + 2  # both went to the emulator
