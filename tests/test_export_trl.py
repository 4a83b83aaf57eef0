"""The exported datasets in TRL's own trainers: DPOTrainer, RewardTrainer, SFTTrainer and GRPOTrainer
each prepare them (tokenisation, column checks) and take one training step, on a tiny random GPT-2
and a tokenizer trained here: nothing is downloaded. Exports of a pass-rate band, in both formats,
standard (plain text) and conversational (a system turn) prompts."""
from __future__ import annotations

import copy

import pytest

from rlhf_eval.export import export_report
from rlhf_eval.report_model import Report
from tiny_lm import trl_bpe_tokenizer, trl_gpt2, trl_gpt2_config


pytestmark = pytest.mark.usefixtures("hf_offline")


@pytest.fixture(scope="module", autouse=True)
def _libraries():
    """torch, transformers and trl load when these tests run, not while pytest collects."""
    global torch, datasets, trl, transformers
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    trl = pytest.importorskip("trl")
    datasets = pytest.importorskip("datasets")
    pytest.importorskip("tokenizers")


@pytest.fixture(scope="module")
def exported(shipped_report, tmp_path_factory):
    """gsm8k_smoke exported with the band (0, 1) as jsonl, and as parquet with its prompts made
    conversational (the suite given a system instruction)."""
    root = tmp_path_factory.mktemp("trl")
    report = Report.from_data(shipped_report[0])
    export_report(report, root / "jsonl", pass_rate="(0:1)")
    chat = copy.deepcopy(shipped_report[0])
    for suite in chat["suites"]:
        suite["model"]["system_instruction"] = "Answer briefly."
    export_report(chat, root / "parquet", pass_rate="(0:1)", format="parquet")
    return root


@pytest.fixture(scope="module")
def tokenizer(exported):
    return trl_bpe_tokenizer((exported / "jsonl" / "gsm8k_smoke" / "dpo.jsonl").read_text().splitlines())


def _args(config_class, tmp_path, **kw):
    return config_class(output_dir=str(tmp_path), report_to="none", max_steps=1, per_device_train_batch_size=2,
                        save_strategy="no", use_cpu=True, **kw)


def _load(exported, fmt, name):
    """As a TRL user loads a file: a DatasetDict with a `train` split."""
    path = exported / fmt / "gsm8k_smoke" / f"{name}.{fmt}"
    loaded = datasets.load_dataset("parquet" if fmt == "parquet" else "json", data_files={"train": str(path)},
                                   cache_dir=str(exported / "cache"))
    assert list(loaded) == ["train"] and len(loaded["train"]) > 0
    return loaded["train"]


def _trains(trainer):
    """Prepared (constructed) and one optimizer step taken, with a finite loss."""
    result = trainer.train()
    assert result.global_step == 1 and result.training_loss == result.training_loss  # not NaN


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_dpo_trainer_takes_the_dpo_pairs(exported, tokenizer, tmp_path, fmt):
    ds = _load(exported, fmt, "dpo")
    assert isinstance(ds[0]["prompt"], list if fmt == "parquet" else str)  # conversational / standard
    lm = trl_gpt2(tokenizer)
    trainer = trl.DPOTrainer(model=lm, ref_model=copy.deepcopy(lm), args=_args(trl.DPOConfig, tmp_path,
                                                                               max_length=256),
                             train_dataset=ds, processing_class=tokenizer)
    assert {"prompt_ids", "chosen_ids", "rejected_ids"} <= set(trainer.train_dataset.column_names)
    _trains(trainer)


def test_dpo_trainer_precomputing_reference_logps_takes_them_too(exported, tokenizer, tmp_path):
    """With precompute_ref_log_probs TRL adds `ref_chosen_logps` columns: ours are named apart."""
    lm = trl_gpt2(tokenizer)
    trainer = trl.DPOTrainer(model=lm, ref_model=copy.deepcopy(lm),
                             args=_args(trl.DPOConfig, tmp_path, max_length=256, precompute_ref_log_probs=True),
                             train_dataset=_load(exported, "jsonl", "dpo"), processing_class=tokenizer)
    assert {"ref_chosen_logps", "chosen_ref_logps"} <= set(trainer.train_dataset.column_names)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_reward_trainer_takes_the_dpo_pairs(exported, tokenizer, tmp_path, fmt):
    torch.manual_seed(0)
    model = transformers.GPT2ForSequenceClassification(trl_gpt2_config(tokenizer, num_labels=1))
    trainer = trl.RewardTrainer(model=model, args=_args(trl.RewardConfig, tmp_path, max_length=1024),
                                train_dataset=_load(exported, fmt, "dpo"), processing_class=tokenizer)
    assert len(trainer.train_dataset) > 0  # no pair dropped as too long
    _trains(trainer)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_sft_trainer_takes_the_sft_rows(exported, tokenizer, tmp_path, fmt):
    trainer = trl.SFTTrainer(model=trl_gpt2(tokenizer), args=_args(trl.SFTConfig, tmp_path, max_length=256),
                             train_dataset=_load(exported, fmt, "sft"), processing_class=tokenizer)
    labels = trainer.train_dataset[0]["labels"]  # read as prompt-completion: the prompt is masked out
    assert labels[0] == -100 and labels[-1] != -100
    _trains(trainer)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_grpo_trainer_takes_the_prompts_and_hands_the_columns_to_reward_functions(exported, tokenizer, tmp_path,
                                                                                   fmt):
    seen = {}

    def accuracy(completions, answer, pass_rate, question_id, **kwargs):
        seen.update(answer=answer, pass_rate=pass_rate, question_id=question_id, prompts=kwargs["prompts"])
        return [1.0 if a in str(c) else 0.0 for c, a in zip(completions, answer)]

    ds = _load(exported, fmt, "grpo_prompts")
    trainer = trl.GRPOTrainer(model=trl_gpt2(tokenizer), reward_funcs=accuracy, train_dataset=ds,
                              args=_args(trl.GRPOConfig, tmp_path, num_generations=2, max_completion_length=4),
                              processing_class=tokenizer)
    _trains(trainer)
    rows = {r["question_id"]: r for r in ds}
    assert seen["question_id"] and all(rows[q]["answer"] == a and rows[q]["pass_rate"] == p
                                       for q, a, p in zip(seen["question_id"], seen["answer"], seen["pass_rate"]))
    assert all(0 < p < 1 for p in seen["pass_rate"])  # the band (0, 1)
