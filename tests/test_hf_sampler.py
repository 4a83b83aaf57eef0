"""The `hf` sampler against a tiny random GPT-2 built here (tests/tiny_lm.py): nothing is downloaded.

Its traces' logps are the `hf` scorer's teacher-forced scores of the same texts; a suite with
`provider: hf` records into the questions' cassettes and replays with the checkpoint deleted."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml

import tiny_lm
from rlhf_eval.sampling import SamplingError
from rlhf_eval.suite import ModelConfig, ScorerConfig


@pytest.fixture(scope="module", autouse=True)
def _libraries():
    """torch and transformers load when these tests run, not while pytest collects."""
    global HFSampler, HFScorer
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from rlhf_eval.backends.hf import HFScorer
    from rlhf_eval.backends.hf_sampler import HFSampler


@pytest.fixture(scope="module")
def tok():
    return tiny_lm.char_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    return tiny_lm.gpt2(len(tok))


def _sampler(model, tok, batch_size=8, **settings):
    settings.setdefault("max_output_tokens", 16)
    return HFSampler(ModelConfig(provider="hf", name="tiny", **settings), model=model, tokenizer=tok,
                     batch_size=batch_size)


CHAT = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "what is 2+2?"}]


@pytest.mark.parametrize("prompt", ["Q: what is 2+2?\nA:", CHAT], ids=["text", "chat"])
@pytest.mark.parametrize("settings", [{"temperature": 1.0}, {"temperature": 0.7, "top_p": 0.9, "top_k": 40}],
                         ids=["plain", "truncated"])
def test_generation_logprobs_equal_the_hf_scorers_teacher_forced_scores(model, tok, prompt, settings):
    """logp is the raw model's (temperature 1, no truncation), whatever distribution sampled the tokens."""
    traces = _sampler(model, tok, batch_size=3, **settings).sample(prompt, 6, 40)
    scorer = HFScorer(ScorerConfig(provider="hf", name="tiny"), model=model, tokenizer=tok)
    scores = scorer.score(prompt, [t.text for t in traces])
    assert len({t.text for t in traces}) > 1  # sampled, not six copies of one text
    assert {t.finish_reason for t in traces} <= {"STOP", "MAX_TOKENS"}
    for trace, score in zip(traces, scores):
        assert trace.token_count == score.token_count == len(tok(trace.text, add_special_tokens=False).input_ids)
        assert trace.logp == pytest.approx(score.logp, abs=1e-4)
        assert trace.logp_source.startswith("hf generate")
        assert "text_retokenizes" not in trace.extra  # one token per character: always the sampled ones


def test_a_text_that_re_encodes_to_other_tokens_says_so():
    """A random model over a BPE vocabulary emits token sequences its tokenizer would not produce:
    the trace says so, as the scorer's logp of the text is then of other tokens."""
    tok = tiny_lm.bpe_tokenizer()
    model = tiny_lm.gpt2(len(tok))
    prompt = "Q: what is two plus two\n"
    traces = _sampler(model, tok).sample(prompt, 4, 0)
    scores = HFScorer(ScorerConfig(provider="hf", name="tiny"), model=model, tokenizer=tok).score(
        prompt, [t.text for t in traces])
    assert any(t.extra.get("text_retokenizes") is False for t in traces)
    for trace, score in zip(traces, scores):
        sampled_tokens = tok(trace.text, add_special_tokens=False).input_ids
        assert (trace.extra.get("text_retokenizes", True)
                is (len(sampled_tokens) == trace.token_count and abs(score.logp - trace.logp) < 1e-4))


def test_each_trace_has_its_own_seed_whatever_the_batching(model, tok):
    together = _sampler(model, tok, batch_size=5).sample("Q: hi\nA:", 5, 7)
    one_by_one = _sampler(model, tok, batch_size=1).sample("Q: hi\nA:", 5, 7)
    assert [t.seed for t in together] == [7, 8, 9, 10, 11]
    assert [t.text for t in together] == [t.text for t in one_by_one]
    # a batched matmul may round differently in the last float32 bits; the tokens are the same
    assert [t.logp for t in together] == pytest.approx([t.logp for t in one_by_one], abs=1e-4)
    later = _sampler(model, tok).sample("Q: hi\nA:", 2, 9)  # seeds 9, 10: traces 2 and 3 above
    assert [t.text for t in later] == [t.text for t in together[2:4]]


def test_temperature_zero_is_greedy(model, tok):
    traces = _sampler(model, tok, temperature=0.0).sample("Q: hi\nA:", 3, 0)
    assert len({t.text for t in traces}) == 1


def test_max_output_tokens_beyond_the_context_is_one_line(model, tok):
    with pytest.raises(SamplingError) as e:
        _sampler(model, tok, max_output_tokens=500).sample("Q: hi\nA:", 1, 0)
    assert "\n" not in str(e.value) and "128 positions" in str(e.value) and "max_output_tokens" in str(e.value)


# ----------------------------------------------------------------------------- through a suite's cassettes

def _suite(path, checkpoint, *, temperature=1.0, reference=True):
    doc = {
        "suite": "tiny_hf",
        "model": {"provider": "hf", "name": str(checkpoint), "temperature": temperature, "max_output_tokens": 8},
        "samples": 4,
        "seed": 3,
        "prompt": [{"role": "user", "content": "{question}"}],
        "verifier": "exact",
        # the same checkpoint as the DPO reference: its teacher-forced scores of the sampled texts
        "dpo": {"reference": {"provider": "hf", "name": str(checkpoint)} if reference else "none"},
        "questions": [{"id": "add", "question": "what is 2+2?", "answer": "4"},
                      {"id": "cat", "question": "where is the cat?", "answer": "mat"}],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_a_suite_records_and_replays_with_the_checkpoint_deleted(model, tok, tmp_path):
    from rlhf_eval import run_suites

    checkpoint = tiny_lm.save_checkpoint(tmp_path / "tiny-policy", model, tok)
    suite = _suite(tmp_path / "tiny.yaml", checkpoint)
    cassettes = tmp_path / "cassettes"
    recorded = run_suites([suite], record_mode="once", cassette_dir=cassettes, rootdir=tmp_path).to_dict()
    questions = recorded["suites"][0]["questions"]
    assert [q.get("error") for q in questions] == [None, None]
    traces = [t for q in questions for t in q["traces"]]
    assert all(t["logp"] is not None and t["model_version"].startswith(f"{checkpoint}@") for t in traces)
    # generation's logps are the reference's (the same checkpoint) teacher-forced scores
    assert [t["logp"] for t in traces] == pytest.approx([t["ref_logp"] for t in traces], abs=1e-4)
    assert [t["token_count"] for t in traces] == [t["ref_token_count"] for t in traces]

    # One non-HTTP entry per trace, in seed order, then the scorer's; matched like any request.
    lines = (cassettes / "tiny_hf" / "add.yaml").read_text().splitlines()[1:-1]
    entries = [json.loads(line.rstrip(",")) for line in lines]
    assert [e["request"]["uri"] for e in entries] == ["local://hf/generate"] * 4 + ["local://hf/score"]
    bodies = [json.loads(e["request"]["body"]) for e in entries]
    assert [b.get("seed") for b in bodies] == [3, 4, 5, 6, None]
    assert bodies[0]["prompt"] == [{"role": "user", "content": "what is 2+2?"}] and bodies[0]["temperature"] == 1.0

    shutil.rmtree(checkpoint)
    replayed = run_suites([suite], cassette_dir=cassettes, rootdir=tmp_path).to_dict()
    assert replayed["suites"][0]["questions"] == questions
    # ... and where neither torch nor transformers can be imported (a CI that replays only)
    assert _questions_without_torch(suite, cassettes, tmp_path, "none") == json.loads(json.dumps(questions))

    stale = run_suites([_suite(suite, checkpoint, temperature=0.7)], cassette_dir=cassettes,
                       rootdir=tmp_path).to_dict()
    errors = [q.get("error") for q in stale["suites"][0]["questions"]]
    assert all(e.startswith("stale cassette") and "temperature: 1.0 → 0.7" in e for e in errors), errors


def _questions_without_torch(suite, cassettes, rootdir, record_mode):
    """`run_suites` in a Python where importing torch or transformers fails: the questions, as JSON."""
    script = ("import json, sys; sys.modules.update(torch=None, transformers=None); "
              "from rlhf_eval import run_suites; "
              f"r = run_suites([{str(suite)!r}], record_mode={record_mode!r}, cassette_dir={str(cassettes)!r}, "
              f"rootdir={str(rootdir)!r}).to_dict(); "
              "print(json.dumps(r['suites'][0]['questions']))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_recording_without_transformers_is_one_line(tmp_path):
    suite = _suite(tmp_path / "tiny.yaml", tmp_path / "policy", reference=False)
    questions = _questions_without_torch(suite, tmp_path / "cassettes", tmp_path, "once")
    assert [q["error"] for q in questions] == [
        "hf sampler: recording needs transformers and torch, which are not installed here: "
        "pip install 'rlhf-eval[hf]'; replaying (--rlhf-record-mode=none) needs neither"] * 2
    assert not (tmp_path / "cassettes" / "tiny_hf" / "add.yaml").exists()


def test_a_missing_checkpoint_is_one_line_when_recording(tmp_path):
    from rlhf_eval import run_suites

    suite = _suite(tmp_path / "tiny.yaml", tmp_path / "no-such-checkpoint", reference=False)
    report = run_suites([suite], record_mode="once", cassette_dir=tmp_path / "cassettes", rootdir=tmp_path).to_dict()
    error = report["suites"][0]["questions"][0]["error"]
    assert "\n" not in error and error.startswith(f"hf sampler: no checkpoint at {tmp_path / 'no-such-checkpoint'}")
    assert not (tmp_path / "cassettes" / "tiny_hf" / "add.yaml").exists()


def test_a_reference_added_after_recording_is_a_stale_cassette_and_a_bad_entry_is_the_cassettes(model, tok, tmp_path):
    from rlhf_eval import run_suites

    checkpoint = tiny_lm.save_checkpoint(tmp_path / "tiny-policy", model, tok)
    cassettes = tmp_path / "cassettes"
    suite = _suite(tmp_path / "tiny.yaml", checkpoint, reference=False)
    run_suites([suite], record_mode="once", cassette_dir=cassettes, rootdir=tmp_path)
    shutil.rmtree(checkpoint)
    report = run_suites([_suite(suite, checkpoint)], cassette_dir=cassettes, rootdir=tmp_path).to_dict()
    error = report["suites"][0]["questions"][0]["error"]
    assert error.startswith("stale cassette ") and "holds no answer to local://hf/score" in error, error

    add = cassettes / "tiny_hf" / "add.yaml"
    add.write_text(add.read_text().replace('\\"finish_reason\\":', '\\"finished\\":', 1))
    report = run_suites([_suite(suite, checkpoint, reference=False)], cassette_dir=cassettes,
                        rootdir=tmp_path).to_dict()
    error = report["suites"][0]["questions"][0]["error"]
    assert error.startswith("cassette ") and "interaction 1 of 4" in error, error
    assert "finish_reason" in error and "\n" not in error, error


def test_reasoning_is_split_off_and_the_logp_is_the_answers():
    from rlhf_eval.backends.hf_sampler import _trace

    tokens = ["<think>", "hm", "</think>", " ", "4"]
    result = {"text": "".join(tokens), "tokens": tokens, "logprobs": [-1.0, -2.0, -3.0, -0.5, -0.25],
              "finish_reason": "STOP", "model_version": "m@1", "prompt_tokens": 5, "stop_token_id": 1}
    trace = _trace(result, 0, ("<think>", "</think>"))
    assert (trace.text, trace.reasoning, trace.logp, trace.token_count) == ("4", "hm", -0.25, 1)
    assert (trace.reasoning_tokens, trace.output_tokens) == (4, 6)


def test_a_given_model_is_sampled_as_it_is_and_keeps_its_mode(tok):
    """A trainer's live policy: not cast or moved in place, and back in training mode afterwards."""
    import torch

    policy = tiny_lm.gpt2(len(tok), seed=1).to(torch.bfloat16).train()
    sampler = _sampler(policy, tok)
    traces = sampler.sample("Q: hi\nA:", 2, 0)
    assert all(t.logp is not None for t in traces)
    assert next(policy.parameters()).dtype == torch.bfloat16 and policy.training
    assert sampler._body("x", 0)["dtype"] == "bfloat16"
