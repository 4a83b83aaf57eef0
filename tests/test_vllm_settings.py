"""Local providers' settings in a suite (`model.device`, `batch_size`, `dtype`, `model.vllm`):
checked when the suite loads (one line each, with a suggestion), and in the cassette only where
they change a trace — dtype is, device and batch_size are not."""
from __future__ import annotations

import json

import pytest
import yaml

import tiny_lm
from rlhf_eval import SuiteError, load_suite, run_suites
from rlhf_eval.compare import settings_changed


def _write(path, model: dict, **extra):
    doc = {"suite": "local", "model": model, "samples": 2, "seed": 3, "prompt": "Q: {question}\nA:",
           "verifier": "exact", "questions": [{"id": "add", "question": "what is 2+2?", "answer": "4"}], **extra}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.parametrize("model, said", [
    ({"provider": "vllm", "name": "m", "vllm": {"gpu_memory_utilisation": 0.5}},
     "model.vllm.gpu_memory_utilisation: unknown key (did you mean 'gpu_memory_utilization'?)"),
    ({"provider": "vllm", "name": "m", "tensor_parallel_size": 2},
     "model.tensor_parallel_size: unknown key; tensor_parallel_size is a vLLM engine setting: write it under "
     "model.vllm"),
    ({"provider": "hf", "name": "m", "batchsize": 4}, "model.batchsize: unknown key (did you mean 'batch_size'?)"),
    ({"provider": "gemini", "name": "m", "device": "cuda"}, "model: device is a setting of provider hf, not of gemini"),
    ({"provider": "hf", "name": "m", "vllm": {"enforce_eager": True}},
     "model: vllm is a setting of provider vllm, not of hf"),
    ({"provider": "openai", "name": "m", "dtype": "bfloat16"},
     "model: dtype is a setting of provider hf and vllm, not of openai"),
    ({"provider": "hf", "name": "m", "dtype": "auto"},
     "model: dtype auto is vLLM's (the checkpoint's own); provider hf takes float32, float16 or bfloat16"),
    ({"provider": "hf", "name": "m", "dtype": "fp16"}, "model.dtype: expected 'auto', 'float32', 'float16' or "
                                                       "'bfloat16', got 'fp16'"),
    ({"provider": "hf", "name": "m", "device": "gpu"},
     "model: device 'gpu' is not a torch device; write e.g. cpu, cuda, cuda:1 or mps"),
    ({"provider": "vllm", "name": "m", "vllm": {"gpu_memory_utilization": 1.5}},
     "model.vllm.gpu_memory_utilization: Input should be less than or equal to 1"),
    ({"provider": "trl_vllm", "name": "m"},
     "model: provider trl_vllm needs max_output_tokens (vLLM's completions default to 16 tokens)"),
])
def test_a_wrong_local_setting_is_one_line_with_its_line(tmp_path, model, said):
    path = _write(tmp_path / "local.yaml", model)
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    # a problem of the block is on `model:` (line 2); of a key, on the key (model.vllm's keys one line lower)
    line = 2 if said.startswith("model:") else 6 if said.startswith("model.vllm.") else 5
    assert str(info.value) == f"{path}:{line}: {said}"


def test_the_settings_load_and_reach_the_samplers(tmp_path):
    from rlhf_eval.backends import make_sampler

    hf = load_suite(_write(tmp_path / "hf.yaml", {"provider": "hf", "name": "m", "device": "cuda:1",
                                                  "batch_size": 3, "dtype": "bfloat16"})).spec.model
    sampler = make_sampler(hf, replay=True)  # replay: nothing is loaded, no GPU is needed
    assert sampler.batch_size == 3 and sampler._body("x", 0)["dtype"] == "bfloat16"
    assert "device" not in sampler._body("x", 0) and "batch_size" not in sampler._body("x", 0)

    from rlhf_eval.backends.vllm_sampler import engine_settings

    vllm = load_suite(_write(tmp_path / "v.yaml", {"provider": "vllm", "name": "~/ckpt", "vllm": {
        "tensor_parallel_size": 2, "gpu_memory_utilization": 0.6, "max_model_len": 4096}})).spec.model
    settings = engine_settings(vllm)
    assert settings["tensor_parallel_size"] == 2 and settings["gpu_memory_utilization"] == 0.6
    assert settings["max_model_len"] == 4096 and settings["dtype"] == "auto" and not settings["model"].startswith("~")


def test_hf_batch_size_and_device_replay_the_same_cassette_and_dtype_does_not(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    tok = tiny_lm.char_tokenizer()
    checkpoint = tiny_lm.save_checkpoint(tmp_path / "tiny", tiny_lm.gpt2(len(tok)), tok)
    model = {"provider": "hf", "name": str(checkpoint), "max_output_tokens": 6, "batch_size": 1, "device": "cpu"}
    cassettes = tmp_path / "cassettes"
    recorded = run_suites([_write(tmp_path / "s.yaml", model)], record_mode="once", cassette_dir=cassettes,
                          rootdir=tmp_path).to_dict()["suites"][0]["questions"][0]
    assert recorded.get("error") is None, recorded
    body = json.loads(json.loads((cassettes / "local" / "add.yaml").read_text().splitlines()[1].rstrip(","))
                      ["request"]["body"])
    assert body["dtype"] == "float32" and "device" not in body and "batch_size" not in body

    # a GPU and a bigger batch on replay: the same cassette (replay loads nothing, so needs no GPU),
    # and, against the recording run as a baseline, no changed setting
    base = run_suites([_write(tmp_path / "s.yaml", model)], cassette_dir=cassettes, rootdir=tmp_path).suites[0]
    moved_run = run_suites([_write(tmp_path / "s.yaml", {**model, "batch_size": 8, "device": "cuda"})],
                           cassette_dir=cassettes, rootdir=tmp_path)
    assert moved_run.to_dict()["suites"][0]["questions"][0] == recorded
    assert settings_changed(moved_run.suites[0], base) == {}
    stale_run = run_suites([_write(tmp_path / "s.yaml", {**model, "dtype": "bfloat16"})], cassette_dir=cassettes,
                           rootdir=tmp_path)
    stale = stale_run.to_dict()["suites"][0]["questions"][0]["error"]
    assert stale.startswith("stale cassette") and "\n" not in stale, stale
    assert ("its traces were drawn in float32 and this run asks for bfloat16: set model.dtype: float32 in the suite "
            "to replay them, or re-record in bfloat16: pytest") in stale, stale
    assert list(settings_changed(stale_run.suites[0], base)) == ["model.dtype"]

    # recorded in bfloat16 (the suite's dtype loads the checkpoint so), which the request says
    low = run_suites([_write(tmp_path / "s.yaml", {**model, "dtype": "bfloat16"})], record_mode="rewrite",
                     cassette_dir=cassettes, rootdir=tmp_path).to_dict()["suites"][0]["questions"][0]
    assert low.get("error") is None, low
    body = json.loads(json.loads((cassettes / "local" / "add.yaml").read_text().splitlines()[1].rstrip(","))
                      ["request"]["body"])
    assert body["dtype"] == "bfloat16"
    assert [t["logp"] for t in low["traces"]] != [t["logp"] for t in recorded["traces"]]
