"""RLHFEvalCallback given bad settings or used in odd ways: each is one line (what is wrong, what to
do) when the callback is made or before a training step is spent, never a library traceback nor
silently wrong numbers. Trains a tiny random GPT-2 (tests/tiny_lm.py, nothing downloaded) with a
plain `transformers.Trainer` for 1-3 steps on one question."""
from __future__ import annotations

import logging
import random

import pytest
import yaml

WORDS = "A: 7 3 9 so the answer is".split()


pytestmark = pytest.mark.usefixtures("hf_offline")


@pytest.fixture(scope="module", autouse=True)
def _libraries():
    global torch, transformers, datasets, RLHFEvalCallback, RLHFEvalError, StopRuleError
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    datasets = pytest.importorskip("datasets")
    pytest.importorskip("tokenizers")
    from rlhf_eval.callback import RLHFEvalCallback, RLHFEvalError, StopRuleError


@pytest.fixture(scope="module")
def tokenizer():
    from tiny_lm import word_tokenizer

    return word_tokenizer(WORDS)


def _suite(folder, answer="7"):
    doc = {"suite": "w", "model": {"provider": "hf", "name": "tiny", "temperature": 1.0, "max_output_tokens": 4,
                                   "reasoning_tags": None},
           "samples": 2, "seed": 0, "prompt": "Question: {question} End with A: <number>.\n", "verifier": "numeric",
           "questions": [{"id": "add", "question": "what is 3 + 4 ?", "answer": answer}]}
    path = folder / "w.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _trainer(tmp_path, tokenizer, max_steps=2, callbacks=None):
    from tiny_lm import trl_gpt2

    rows = datasets.Dataset.from_dict({"text": ["what is 3 + 4 ? A: 7"] * 8})
    rows = rows.map(lambda r: tokenizer(r["text"]), remove_columns=["text"])
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "out"), report_to="none", max_steps=max_steps,
                                          per_device_train_batch_size=2, save_strategy="no", use_cpu=True, seed=0,
                                          logging_steps=1, learning_rate=0.05)
    return transformers.Trainer(model=trl_gpt2(tokenizer), args=args, train_dataset=rows, processing_class=tokenizer,
                                data_collator=transformers.DataCollatorForLanguageModeling(tokenizer, mlm=False),
                                callbacks=callbacks)


@pytest.mark.parametrize("kwargs, error, line", [
    ({"stop_on_regression": 0.05}, "StopRuleError",
     "stop_on_regression 0.05: expected a METRIC:DELTA rule such as 'accuracy:0.05', or a list of them"),
    ({"stop_when": {"accuracy": 0.5}}, "StopRuleError",
     "stop_when {'accuracy': 0.5}: expected a rule such as 'frac_zero_spread >= 0.9', a callable(metrics, step), "
     "or a list of them"),
    ({"batch_size": 0}, "ValueError",
     "RLHFEvalCallback: batch_size = 0; expected a whole number of traces per forward pass, at least 1"),
    ({"backends": "vllm"}, "ValueError",
     "RLHFEvalCallback: backends = 'vllm'; expected a function backends(suite, replay, policy) returning "
     "rlhf_eval.Backends or None"),
    ({"output_dir": 123}, "ValueError", "RLHFEvalCallback: output_dir = 123; expected a folder path"),
    ({"at_start": "no"}, "ValueError", "RLHFEvalCallback: at_start = 'no'; expected True or False"),
])
def test_a_setting_of_the_wrong_kind_is_one_line_when_the_callback_is_made(tmp_path, tokenizer, kwargs, error, line):
    trainer = _trainer(tmp_path, tokenizer)
    with pytest.raises((ValueError, StopRuleError)) as e:
        RLHFEvalCallback(_suite(tmp_path), trainer=trainer, every=1, **kwargs)
    assert (type(e.value).__name__, str(e.value)) == (error, line)


def test_a_rule_may_name_the_metric_as_tensorboard_shows_it(tmp_path, tokenizer):
    np = pytest.importorskip("numpy")
    trainer = _trainer(tmp_path, tokenizer)
    cb = RLHFEvalCallback(_suite(tmp_path), trainer=trainer, every=np.int64(1), stop_when="train/rlhf/w/accuracy < 0.5")
    assert [(r.suite, r.metric, r.op, r.value) for r in cb.rules] == [("w", "accuracy", "<", 0.5)] and cb.every == 1
    # a misspelt name with a dash or a digit gets its suggestion, not the rule's syntax
    for typo, known in (("frac-zero-spread", "frac_zero_spread"), ("accuracy2", "accuracy")):
        with pytest.raises(StopRuleError) as e:
            RLHFEvalCallback(_suite(tmp_path), trainer=trainer, every=1, stop_when=f"{typo} >= 0.9")
        assert str(e.value) == f"stop_when '{typo} >= 0.9': no metric '{typo}'; did you mean '{known}'?"


def test_a_callback_made_for_another_trainer_is_refused_before_step_0(tmp_path, tokenizer):
    """`callbacks=[RLHFEvalCallback(..., trainer=old)]` on a new trainer: the metrics would go into
    the old trainer's log, silently missing from this one's."""
    old = _trainer(tmp_path, tokenizer)
    cb = RLHFEvalCallback(_suite(tmp_path), trainer=old, every=1)
    new = _trainer(tmp_path, tokenizer, callbacks=[cb])
    with pytest.raises(RLHFEvalError) as e:
        new.train()
    assert str(e.value) == ("RLHFEvalCallback: trainer= is not the trainer this callback was added to, so its metrics "
                            "would miss this training's logs; make the trainer first, then "
                            "trainer.add_callback(RLHFEvalCallback(..., trainer=trainer))")
    assert new.state.global_step == 0 and not (tmp_path / "out" / "rlhf").exists()


def test_an_output_folder_that_cannot_be_written_is_one_line(tmp_path, tokenizer):
    (tmp_path / "a-file").write_text("")
    trainer = _trainer(tmp_path, tokenizer)
    trainer.add_callback(RLHFEvalCallback(_suite(tmp_path), trainer=trainer, every=1,
                                          output_dir=tmp_path / "a-file" / "rlhf"))
    with pytest.raises(RLHFEvalError) as e:
        trainer.train()
    where = tmp_path / "a-file" / "rlhf"
    assert str(e.value).startswith(f"RLHFEvalCallback: cannot write step 0's report under {where} (")
    assert str(e.value).endswith("); pass output_dir= a writable folder") and trainer.state.global_step == 0


def test_a_new_run_into_the_same_folder_leaves_no_step_of_the_earlier_run(tmp_path, tokenizer, caplog):
    """Three steps evaluated every step, then two evaluated every two: the folder (and the steps
    page) holds the second run alone, and its step 2 is compared with its own step 0. The watched
    training is left as it was: mode, grad mode, random state, tokenizer and cache settings."""
    from rlhf_eval.steps_report import load_steps

    suite = _suite(tmp_path)
    first = _trainer(tmp_path, tokenizer, max_steps=3)
    first.add_callback(RLHFEvalCallback(suite, trainer=first, every=1))
    first.train()
    root = tmp_path / "out" / "rlhf"
    (root / "notes").mkdir()  # not a step folder: not ours to remove
    assert [s.step for s in load_steps(root)] == [0, 1, 2, 3]

    second = _trainer(tmp_path, tokenizer, max_steps=2)
    cb = RLHFEvalCallback(suite, trainer=second, every=2)
    second.add_callback(cb)
    changed = []

    class Before(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            self.seen = _training_state(model, tokenizer)

    class After(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            now = _training_state(model, tokenizer)
            changed.extend(k for k in now if now[k] != before.seen[k])

    before = Before()
    second.callback_handler.callbacks.insert(second.callback_handler.callbacks.index(cb), before)
    second.add_callback(After())
    with caplog.at_level(logging.WARNING, logger="rlhf_eval.callback"):
        second.train()
    assert changed == []
    assert sorted(p.name for p in root.iterdir()) == ["notes", "step-000000", "step-000002"]
    assert [r.getMessage() for r in caplog.records if r.name == "rlhf_eval.callback"] == [
        f"rlhf-eval: removed 4 step folder(s) of an earlier run from {root} (step-000000, step-000001, step-000002 "
        "and 1 more): this training starts at step 0"]
    assert [s.step for s in load_steps(root)] == [0, 2]
    assert [h.step for h in cb.history] == [0, 2]


def _training_state(model, tokenizer):
    return {"training": model.training, "grad": torch.is_grad_enabled(), "inference": torch.is_inference_mode_enabled(),
            "torch_rng": torch.get_rng_state().tolist(), "python_rng": random.getstate(),
            "padding_side": tokenizer.padding_side, "use_cache": model.config.use_cache,
            "grads": [p.grad is None for p in model.parameters()],
            "requires_grad": [p.requires_grad for p in model.parameters()]}


def test_a_rule_on_a_metric_the_steps_lack_says_so_once(tmp_path, tokenizer, caplog):
    """No trace can be right (the answer is not a word the model knows): no preference pairs, so no
    reward_accuracy at any step — the rule is said to be unchecked, once, not silently idle."""
    trainer = _trainer(tmp_path, tokenizer)
    cb = RLHFEvalCallback(_suite(tmp_path, answer="12345"), trainer=trainer, every=1,
                          stop_when="reward_accuracy < 0.5")
    trainer.add_callback(cb)
    with caplog.at_level(logging.WARNING, logger="rlhf_eval.callback"):
        assert trainer.train().global_step == 2
    assert [h.step for h in cb.history] == [0, 1, 2] and cb.stopped is None
    assert all("rlhf/w/reward_accuracy" not in h.metrics for h in cb.history)
    assert [r.getMessage() for r in caplog.records if r.name == "rlhf_eval.callback"] == [
        "rlhf-eval: step 0: stop_when 'reward_accuracy < 0.5' cannot be checked: no suite has reward_accuracy at this "
        "step (it needs preference pairs, and log-probabilities for margins); it is checked at the steps that have it"]


def test_a_second_train_call_is_a_training_of_its_own(tmp_path, tokenizer):
    """`trainer.train()` again with the same callback (a notebook): its history, stop and baseline
    are the new training's, not the earlier one's (whose step folders are gone)."""
    trainer = _trainer(tmp_path, tokenizer)
    cb = RLHFEvalCallback(_suite(tmp_path), trainer=trainer, every=1, stop_when="pairs >= 0")
    trainer.add_callback(cb)
    for _ in range(2):
        assert trainer.train().global_step == 1
        assert [h.step for h in cb.history] == [0, 1] and cb.stopped is not None and cb.stopped.step == 0
        assert "comparison" not in (cb.history[0].folder / "report.json").read_text()


def test_two_callbacks_writing_to_one_folder_are_refused_before_step_0(tmp_path, tokenizer):
    trainer = _trainer(tmp_path, tokenizer)
    suite = _suite(tmp_path)
    trainer.add_callback(RLHFEvalCallback(suite, trainer=trainer, every=1))
    trainer.add_callback(RLHFEvalCallback(suite, trainer=trainer, every=2, output_dir=tmp_path / "out" / "rlhf"))
    with pytest.raises(RLHFEvalError) as e:
        trainer.train()
    assert str(e.value) == (f"RLHFEvalCallback: two callbacks of this trainer write their steps to "
                            f"{(tmp_path / 'out' / 'rlhf').resolve()} (each step's report.json would be the other's); "
                            "give one callback all the suites, or each its own output_dir=")
    assert trainer.state.global_step == 0 and not (tmp_path / "out" / "rlhf").exists()
