"""`provider: vllm` (vLLM's offline engine) where vLLM cannot run: replay, stale cassettes, the refusal.

vLLM is not installed here (it pulls a multi-GB CUDA torch). The cassettes these tests replay are
recorded through the product's `VLLMSampler` handed `StandInLLM` below — *not vLLM*: a stand-in
with `vllm.LLM`'s `generate`/`chat`/`get_tokenizer` and vLLM's output shapes (RequestOutput with
`prompt_token_ids` and `outputs`; CompletionOutput with `index`, `token_ids` (the stop token
included), `logprobs` as one {token id: Logprob} per position, `finish_reason`, `stop_reason`),
taken from vllm-project/vllm `vllm/outputs.py` and `vllm/logprobs.py`, and its V1 seeding of an
n > 1 request (child i seeded `seed + i`, `vllm/v1/engine/parallel_sampling.py`). Its tokens and
logprobs are the tiny random GPT-2's (tests/tiny_lm.py), sampled for real. A test that needs vLLM
itself `importorskip`s it."""
from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field

import pytest
import yaml

import tiny_lm
from rlhf_eval import run_suites
from rlhf_eval.backends.vllm_sampler import NOT_INSTALLED
from rlhf_eval.evaluate import Backends


# ------------------------------------------------------------------ the stand-in (vLLM's shapes, our tiny model)

@dataclass
class Logprob:  # vllm.logprobs.Logprob
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:  # vllm.outputs.CompletionOutput
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: list[dict[int, Logprob]] | None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:  # vllm.outputs.RequestOutput (the fields read)
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput] = field(default_factory=list)
    finished: bool = True


class StandInLLM:
    """`vllm.LLM`'s sampling surface over a transformers model: NOT vLLM (see the module docstring).
    Raw logprobs (vLLM's default logprobs_mode) or processed ones (after temperature, as TRL's
    colocated engine asks); temperature only (what these tests sample with)."""

    def __init__(self, model, tokenizer, logprobs_mode="raw_logprobs"):
        import types

        self.model, self.tokenizer = model, tokenizer
        self.mode = logprobs_mode  # where vLLM keeps it: llm.llm_engine.model_config.logprobs_mode
        self.llm_engine = types.SimpleNamespace(model_config=types.SimpleNamespace(logprobs_mode=logprobs_mode))
        self.calls: list[list[tuple[int, int | None]]] = []  # (n, seed) of each request of each call

    def get_tokenizer(self):
        return self.tokenizer

    def generate(self, prompts, sampling_params, use_tqdm=True):
        ids = [self.tokenizer(p)["input_ids"] for p in prompts]  # vLLM adds the special tokens (BOS)
        return self._run(prompts, ids, sampling_params)

    def chat(self, messages, sampling_params, use_tqdm=True):
        texts = [self.tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in messages]
        ids = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        return self._run(texts, ids, sampling_params)

    def _run(self, prompts, prompt_ids, params):
        params = params if isinstance(params, list) else [params] * len(prompts)
        self.calls.append([(p.n, p.seed) for p in params])
        return [RequestOutput(str(r), text, ids, [self._child(ids, p, i) for i in range(p.n)])
                for r, (text, ids, p) in enumerate(zip(prompts, prompt_ids, params))]

    def _child(self, prompt_ids, p, index):
        import torch

        generator = torch.Generator().manual_seed(p.seed + index)  # vLLM V1: child i is seeded seed + i
        tokens, logprobs, eos = [], [], self.tokenizer.eos_token_id
        context = list(prompt_ids)
        with torch.inference_mode():
            while len(tokens) < (p.max_tokens or 64):
                logits = self.model(torch.tensor([context])).logits[0, -1].float()
                raw = torch.log_softmax(logits if self.mode == "raw_logprobs" else logits / p.temperature, -1)
                token = int(torch.multinomial(torch.softmax(logits / p.temperature, -1), 1, generator=generator))
                tokens.append(token)
                logprobs.append({token: Logprob(float(raw[token]), decoded_token=self.tokenizer.decode([token]))})
                context.append(token)
                if token == eos:
                    break
        stopped = tokens[-1] == eos
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        return CompletionOutput(index, text, tokens, sum(next(iter(d.values())).logprob for d in logprobs), logprobs,
                                finish_reason="stop" if stopped else "length", stop_reason=None)


@dataclass
class SamplingParams:  # vllm.SamplingParams, the fields the sampler sets
    n: int = 1
    seed: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    max_tokens: int | None = 16
    logprobs: int | None = None


@pytest.fixture(scope="module")
def engine():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    tok = tiny_lm.char_tokenizer()
    return StandInLLM(tiny_lm.gpt2(len(tok)), tok)


@pytest.fixture
def vllm_params(monkeypatch):
    """`from vllm import SamplingParams` inside the sampler finds the stand-in's: vLLM is not here."""
    import sys
    import types

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed: these tests are for where it is not")
    module = types.ModuleType("vllm")
    module.SamplingParams = SamplingParams  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)


def _suite(path, *, temperature=1.0, dtype=None, engine_settings=None, samples=4):
    model = {"provider": "vllm", "name": "tiny-vllm", "temperature": temperature, "max_output_tokens": 8}
    if dtype:
        model["dtype"] = dtype
    if engine_settings:
        model["vllm"] = engine_settings
    doc = {"suite": "tiny_vllm", "model": model, "samples": samples, "seed": 3,
           "prompt": [{"role": "user", "content": "{question}"}], "verifier": "exact",
           "questions": [{"id": "add", "question": "what is 2+2?", "answer": "4"}]}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _with(engine):
    from rlhf_eval.backends.vllm_sampler import VLLMSampler

    return lambda suite, replay, policy: Backends(sampler=VLLMSampler(suite.spec.model, llm=engine))


def test_a_vllm_suite_replays_without_vllm_and_a_changed_setting_is_stale(engine, vllm_params, tmp_path):
    suite = _suite(tmp_path / "tiny.yaml")
    cassettes = tmp_path / "cassettes"
    engine.calls.clear()
    recorded = run_suites([suite], record_mode="once", cassette_dir=cassettes, rootdir=tmp_path,
                          backends=_with(engine)).to_dict()
    question = recorded["suites"][0]["questions"][0]
    assert question.get("error") is None, question
    assert engine.calls == [[(4, 3)]]  # one request, n = k, seeded with the question's seed
    traces = question["traces"]
    assert [t["seed"] for t in traces] == [3, 4, 5, 6]
    assert all(t["logp"] is not None and t["logp_source"].startswith("vllm generate") for t in traces)
    assert len({t["text"] for t in traces}) > 1

    entries = [json.loads(line.rstrip(","))
               for line in (cassettes / "tiny_vllm" / "add.yaml").read_text().splitlines()[1:-1]]
    assert [e["request"]["uri"] for e in entries] == ["local://vllm/generate"] * 4
    body = json.loads(entries[0]["request"]["body"])
    assert body == {"model": "tiny-vllm", "prompt": [{"role": "user", "content": "what is 2+2?"}], "seed": 3,
                    "temperature": 1.0, "top_p": None, "top_k": None, "max_output_tokens": 8, "dtype": "auto"}

    # Replay through the product's own path: make_sampler builds VLLMSampler, vLLM is not imported.
    replayed = run_suites([suite], cassette_dir=cassettes, rootdir=tmp_path).to_dict()
    assert replayed["suites"][0]["questions"][0] == question
    # the engine's settings change memory and speed, not a trace: still the same cassette
    same = run_suites([_suite(suite, engine_settings={"gpu_memory_utilization": 0.5, "tensor_parallel_size": 2})],
                      cassette_dir=cassettes, rootdir=tmp_path).to_dict()
    assert same["suites"][0]["questions"][0] == question

    for changed, said in (({"temperature": 0.7}, "temperature: 1.0 → 0.7"), ({"dtype": "bfloat16"}, "dtype:")):
        stale = run_suites([_suite(suite, **changed)], cassette_dir=cassettes, rootdir=tmp_path).to_dict()
        error = stale["suites"][0]["questions"][0]["error"]
        assert error.startswith("stale cassette") and said in error and "\n" not in error, error


def test_one_seed_per_trace_whatever_was_recorded_before(engine, vllm_params, tmp_path):
    """More samples later (`new_episodes`): the traces already recorded replay, and only the missing
    ones are drawn (n=2 from seed 5: vLLM's children 5 and 6) — the same traces n = k gives at once."""
    cassettes = tmp_path / "cassettes"
    run_suites([_suite(tmp_path / "tiny.yaml", samples=2)], record_mode="once", cassette_dir=cassettes,
               rootdir=tmp_path, backends=_with(engine))
    engine.calls.clear()
    grown = run_suites([_suite(tmp_path / "tiny.yaml", samples=4)], record_mode="new_episodes",
                       cassette_dir=cassettes, rootdir=tmp_path, backends=_with(engine)).to_dict()
    assert engine.calls == [[(2, 5)]]
    at_once = run_suites([_suite(tmp_path / "other.yaml", samples=4)], record_mode="once",
                         cassette_dir=tmp_path / "at_once", rootdir=tmp_path, backends=_with(engine)).to_dict()
    assert [t["text"] for t in grown["suites"][0]["questions"][0]["traces"]] == \
        [t["text"] for t in at_once["suites"][0]["questions"][0]["traces"]]


def test_an_engine_with_processed_logprobs_says_so(engine, vllm_params, tmp_path):
    """TRL's colocated engine (`logprobs_mode="processed_logprobs"`) handed in: the logp is after
    temperature, and the trace says so (the mode is recorded with the result, so a replay too)."""
    processed = StandInLLM(engine.model, engine.tokenizer, logprobs_mode="processed_logprobs")
    suite = _suite(tmp_path / "tiny.yaml", temperature=0.5)
    run = run_suites([suite], record_mode="once", cassette_dir=tmp_path / "c", rootdir=tmp_path,
                     backends=_with(processed)).to_dict()
    raw = run_suites([suite], record_mode="once", cassette_dir=tmp_path / "raw", rootdir=tmp_path,
                     backends=_with(engine)).to_dict()
    traces, raw_traces = run["suites"][0]["questions"][0]["traces"], raw["suites"][0]["questions"][0]["traces"]
    assert all("processed_logprobs" in t["logp_source"] for t in traces)
    assert all("raw_logprobs" in t["logp_source"] for t in raw_traces)
    assert [t["text"] for t in traces] == [t["text"] for t in raw_traces]  # the same draws, other numbers
    assert [t["logp"] for t in traces] != pytest.approx([t["logp"] for t in raw_traces])
    replayed = run_suites([suite], cassette_dir=tmp_path / "c", rootdir=tmp_path).to_dict()
    assert replayed["suites"][0]["questions"][0]["traces"] == traces


def test_recording_without_vllm_is_one_line(tmp_path):
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    report = run_suites([_suite(tmp_path / "tiny.yaml")], record_mode="once", cassette_dir=tmp_path / "c",
                        rootdir=tmp_path).to_dict()
    assert report["suites"][0]["questions"][0]["error"] == NOT_INSTALLED
    assert "pip install 'rlhf-eval[vllm]'" in NOT_INSTALLED and not (tmp_path / "c" / "tiny_vllm").exists()


def test_the_stop_token_is_not_the_answers(engine):
    """vLLM keeps the EOS in token_ids (and its logprob); the answer's text, logp and count do not."""
    from rlhf_eval.backends.vllm_sampler import _vllm_trace, completion_result

    tok = engine.tokenizer
    ids = tok("4", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    out = CompletionOutput(0, "4", ids, None, [{ids[0]: Logprob(-0.5)}, {ids[1]: Logprob(-2.0)}], "stop", None)
    trace = _vllm_trace(completion_result(out, tok, 7, "m"), 0, None)
    assert (trace.text, trace.logp, trace.token_count, trace.finish_reason, trace.output_tokens) == \
        ("4", -0.5, 1, "STOP", 2)


def test_with_real_vllm_a_trace_is_its_seed(tmp_path):
    """On a GPU with vLLM: n = k at seed s gives the traces of n = 1 at seeds s, s+1, … (V1 seeding)."""
    vllm = pytest.importorskip("vllm")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    checkpoint = tiny_lm.save_checkpoint(tmp_path / "tiny", tiny_lm.gpt2(len(tiny_lm.char_tokenizer())),
                                         tiny_lm.char_tokenizer())
    llm = vllm.LLM(model=str(checkpoint), gpu_memory_utilization=0.2, enforce_eager=True)
    params = {"temperature": 1.0, "max_tokens": 8, "logprobs": 0}
    together = llm.generate(["Q: hi\nA:"], vllm.SamplingParams(n=3, seed=5, **params), use_tqdm=False)[0].outputs
    apart = [llm.generate(["Q: hi\nA:"], vllm.SamplingParams(n=1, seed=5 + i, **params), use_tqdm=False)[0]
             .outputs[0] for i in range(3)]
    assert [list(o.token_ids) for o in sorted(together, key=lambda o: o.index)] == [list(o.token_ids) for o in apart]
