"""`provider: trl_vllm` against tests/vllm_server.py, a local server speaking TRL's vLLM-server
contract (that module says where the contract comes from), backed by the tiny random GPT-2 of
tests/tiny_lm.py: its tokens and logprobs are the model's, sampled for real."""
from __future__ import annotations

import json
import shutil

import pytest
import yaml

import tiny_lm
from vllm_server import TRLVLLMServer
from rlhf_eval import run_suites


@pytest.fixture(scope="module")
def tiny():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    tok = tiny_lm.char_tokenizer()
    return tiny_lm.gpt2(len(tok)), tok


def _suite(path, url, checkpoint, *, prompt, temperature=1.0, reference=True):
    doc = {"suite": "tiny_trl", "samples": 4, "seed": 3, "verifier": "exact", "prompt": prompt,
           "model": {"provider": "trl_vllm", "name": "tiny-policy", "base_url": url, "temperature": temperature,
                     "max_output_tokens": 8},
           "dpo": {"reference": {"provider": "hf", "name": str(checkpoint)} if reference else "none"},
           "questions": [{"id": "add", "question": "what is 2+2?", "answer": "4"}]}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_records_from_the_server_and_replays_with_it_stopped(tiny, tmp_path):
    """Text prompt (/v1/completions): at temperature 1 the server's processed logprobs are the raw
    model's, so each trace's logp is the hf reference's teacher-forced score of its text."""
    model, tok = tiny
    checkpoint = tiny_lm.save_checkpoint(tmp_path / "tiny-policy", model, tok)
    server = TRLVLLMServer(model, tok, "tiny-policy")
    cassettes = tmp_path / "cassettes"
    try:
        suite = _suite(tmp_path / "s.yaml", server.url, checkpoint, prompt="Q: {question}\nA:")
        recorded = run_suites([suite], record_mode="once", cassette_dir=cassettes, rootdir=tmp_path).to_dict()
    finally:
        server.stop()
    question = recorded["suites"][0]["questions"][0]
    assert question.get("error") is None, question
    traces = question["traces"]
    assert [t["seed"] for t in traces] == [3, 4, 5, 6] and len({t["text"] for t in traces}) > 1
    assert all(t["model_version"] == "tiny-policy" and t["logp_source"].startswith("trl vllm-serve") for t in traces)
    assert [t["logp"] for t in traces] == pytest.approx([t["ref_logp"] for t in traces], abs=1e-4)
    assert [t["token_count"] for t in traces] == [t["ref_token_count"] for t in traces]
    # one request for the k traces, asked as TRL's VLLMClient.generate asks
    assert [p for p, _ in server.requests] == ["/v1/completions"]
    body = server.requests[0][1]
    assert (body["n"], body["seed"], body["logprobs"], body["return_token_ids"]) == (4, 3, 0, True)
    assert body["prompt"] == "Q: what is 2+2?\nA:" and body["max_tokens"] == 8

    shutil.rmtree(checkpoint)  # the reference's scores replay from the cassette too
    replayed = run_suites([suite], cassette_dir=cassettes, rootdir=tmp_path).to_dict()
    assert replayed["suites"][0]["questions"][0] == question
    stale = run_suites([_suite(suite, server.url, checkpoint, prompt="Q: {question}\nA:", temperature=0.5)],
                       cassette_dir=cassettes, rootdir=tmp_path).to_dict()
    error = stale["suites"][0]["questions"][0]["error"]
    assert error.startswith("stale cassette") and "temperature: 1.0 → 0.5" in error and "\n" not in error, error


def test_a_chat_prompt_goes_to_chat_completions_and_replays(tiny, tmp_path):
    model, tok = tiny
    server = TRLVLLMServer(model, tok, "tiny-policy")
    chat = [{"role": "user", "content": "{question}"}]
    suite = _suite(tmp_path / "s.yaml", server.url, None, prompt=chat, reference=False)
    try:
        recorded = run_suites([suite], record_mode="once", cassette_dir=tmp_path / "c", rootdir=tmp_path).to_dict()
    finally:
        server.stop()
    question = recorded["suites"][0]["questions"][0]
    assert question.get("error") is None, question
    assert [p for p, _ in server.requests] == ["/v1/chat/completions"]
    body = server.requests[0][1]
    assert body["messages"] == [{"role": "user", "content": "what is 2+2?"}]
    assert (body["logprobs"], body["top_logprobs"], body["n"]) == (True, 0, 4)
    for trace in question["traces"]:
        # the stop token (kept by vLLM in token_ids) is not counted; every other token is the answer's
        assert trace["token_count"] == len(trace["text"]) and trace["logp"] < 0
        assert trace["output_tokens"] == trace["token_count"] + (trace["finish_reason"] == "STOP")
    replayed = run_suites([suite], cassette_dir=tmp_path / "c", rootdir=tmp_path).to_dict()
    assert replayed["suites"][0]["questions"][0] == question


def test_a_server_that_is_not_there_is_one_line(tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    suite = _suite(tmp_path / "s.yaml", url, None, prompt="Q: {question}\nA:", reference=False)
    report = run_suites([suite], record_mode="once", cassette_dir=tmp_path / "c", rootdir=tmp_path,
                        retries=0).to_dict()  # a refused connection is transient: retried, by default
    error = report["suites"][0]["questions"][0]["error"]
    assert error.startswith(f"could not reach TRL's vLLM server at {url}") and "trl vllm-serve" in error, error
    assert "\n" not in error


def test_the_server_a_trainer_generates_with(tmp_path):
    trl = pytest.importorskip("trl")
    from rlhf_eval.backends.trl_vllm import trainer_server_url

    def config(**vllm):
        return trl.GRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, **vllm)

    assert trainer_server_url(config(use_vllm=True, vllm_mode="server")) == "http://0.0.0.0:8000"  # TRL's defaults
    own = config(use_vllm=True, vllm_mode="server", vllm_server_base_url="http://gpu-box:8001")
    assert trainer_server_url(own) == "http://gpu-box:8001"
    assert trainer_server_url(config(use_vllm=True)) is None  # colocate: TRL's default mode
    assert trainer_server_url(config()) is None


def test_a_model_the_server_does_not_serve_is_its_one_line(tiny, tmp_path):
    model, tok = tiny
    server = TRLVLLMServer(model, tok, "another-policy")
    try:
        suite = _suite(tmp_path / "s.yaml", server.url, None, prompt="Q: {question}\nA:", reference=False)
        report = run_suites([suite], record_mode="once", cassette_dir=tmp_path / "c", rootdir=tmp_path).to_dict()
    finally:
        server.stop()
    error = report["suites"][0]["questions"][0]["error"]
    assert error == (f"TRL's vLLM server at {server.url} answered 404: The model `tiny-policy` does not exist."), error


def test_a_body_without_token_ids_says_what_the_server_lacks():
    from rlhf_eval.backends.trl_vllm import traces_from_vllm_server
    from rlhf_eval.sampling import SamplingError

    body = {"model": "m", "choices": [{"index": 0, "text": "4", "finish_reason": "stop",
                                       "logprobs": {"tokens": ["4"], "token_logprobs": [-0.5]}}]}
    with pytest.raises(SamplingError, match=r"sent no token_ids; it needs vLLM ≥ 0\.10\.2") as info:
        traces_from_vllm_server(body, seed=0, expected=1, tags=None)
    assert "\n" not in str(info.value)
    body["choices"][0]["token_ids"] = [7]  # stopped on a stop string: nothing to drop, every token the answer's
    body["choices"][0]["stop_reason"] = "\n\n"
    (trace,) = traces_from_vllm_server(body, seed=0, expected=1, tags=None)
    assert (trace.text, trace.logp, trace.token_count, trace.finish_reason) == ("4", -0.5, 1, "STOP")


def test_reasoning_sent_beside_the_answer_is_left_out_of_its_logp(tiny):
    """vLLM with `--reasoning-parser` sends `message.reasoning` beside `content`, while `token_ids`
    and `logprobs` cover both (the real O04 body has the split, without logprobs). A chat body the
    tiny model really sampled, split after its first tokens as that parser splits it: the answer's
    logp and token count are the content's tokens only, the reasoning is kept apart."""
    from rlhf_eval.backends.trl_vllm import traces_from_vllm_server

    model, tok = tiny
    server = TRLVLLMServer(model, tok, "tiny-policy")
    try:
        body = server.chat({"model": "tiny-policy", "messages": [{"role": "user", "content": "what is 2+2?"}],
                            "n": 1, "seed": 11, "temperature": 1.0, "max_tokens": 8, "skip_special_tokens": False})
    finally:
        server.stop()
    choice = body["choices"][0]
    entries = choice["logprobs"]["content"]
    answer_entries = entries[3:-1] if choice["finish_reason"] == "stop" else entries[3:]  # not the stop token
    assert answer_entries, "the tiny model must write more than 3 tokens for this test"
    whole = choice["message"]["content"]
    thought = "".join(e["token"] for e in entries[:3])
    choice["message"] = {"role": "assistant", "reasoning": thought, "content": whole[len(thought):]}
    [trace] = traces_from_vllm_server(json.dumps(body).encode(), seed=11, expected=1, tags=("<think>", "</think>"))
    assert trace.reasoning == thought and trace.text == whole[len(thought):].lstrip()
    assert trace.logp == pytest.approx(sum(e["logprob"] for e in answer_entries))
    assert (trace.token_count, trace.reasoning_tokens) == (len(answer_entries), 3)

