"""RLHFEvalCallback: GRPOTrainer and DPOTrainer train a tiny random GPT-2 built here (nothing is
downloaded) for 4 steps on CPU while the callback samples a suite from the live policy at steps 0,
2 and 4; its `rlhf/*` numbers are in the trainer's log history, equal the per-step reports, and each
step's report replays offline from that step's cassettes. Stop rules fire and stop training early;
rules that cannot be read are refused when the callback is made."""
from __future__ import annotations

import copy
import json
import logging

import pytest
import yaml

from rlhf_eval import Backends, Trace, run_suites
from rlhf_eval.report_model import Report

WORDS = "A: 7 3 9 <think> </think> so the answer is".split()  # what the tiny model writes
SUITE = "trl_watch"


pytestmark = pytest.mark.usefixtures("hf_offline")


@pytest.fixture(scope="module", autouse=True)
def _libraries():
    """torch, transformers and trl load when these tests run, not while pytest collects."""
    global torch, transformers, trl, datasets, RLHFEvalCallback, StopRuleError, step_metrics, LOGGED_METRICS
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    trl = pytest.importorskip("trl")
    datasets = pytest.importorskip("datasets")
    pytest.importorskip("tokenizers")
    from rlhf_eval.callback import LOGGED_METRICS, RLHFEvalCallback, StopRuleError, step_metrics


def _suite_file(folder, **extra):
    """The policy's suite: `model.name` only labels the live policy (no such checkpoint exists)."""
    doc = {"suite": SUITE, "model": {"provider": "hf", "name": "tiny-policy", "temperature": 1.0,
                                     "max_output_tokens": 8, "reasoning_tags": None},
           "samples": 4, "seed": 0, "prompt": "Question: {question} End with A: <number>.\n", "verifier": "numeric",
           "questions": [{"id": "add", "question": "what is 3 + 4 ?", "answer": "7"},
                         {"id": "sub", "question": "what is 12 - 3 ?", "answer": "9"}], **extra}
    path = folder / f"{SUITE}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def tokenizer():
    from tiny_lm import word_tokenizer

    return word_tokenizer(WORDS)


def _grpo(tmp_path, tokenizer, watch=True, **callback):
    from tiny_lm import trl_gpt2

    from rlhf_eval.trl import suite_dataset, suite_rewards

    suite = _suite_file(tmp_path)
    rewards = suite_rewards(suite)
    args = trl.GRPOConfig(output_dir=str(tmp_path / "out"), report_to="none", max_steps=4, logging_steps=1,
                          per_device_train_batch_size=4, num_generations=2, max_completion_length=8,
                          save_strategy="no", use_cpu=True, seed=0, reward_weights=rewards.weights,
                          learning_rate=0.05)
    trainer = trl.GRPOTrainer(model=trl_gpt2(tokenizer), reward_funcs=rewards, train_dataset=suite_dataset(suite),
                              args=args, processing_class=tokenizer)
    cb = RLHFEvalCallback(suite, trainer=trainer, every=2, **callback) if watch else None
    if cb is not None:
        trainer.add_callback(cb)
    return trainer, cb, suite


def _dpo(tmp_path, tokenizer, suite_extra=None, reference=False, **callback):
    """DPOTrainer on 8 pairs; with `reference`, the suite's DPO reference is the trainer's ref_model."""
    from tiny_lm import trl_gpt2

    if reference:
        suite_extra = {**(suite_extra or {}), "dpo": {"reference": {"provider": "hf", "name": "tiny-reference"}}}
    suite = _suite_file(tmp_path, **(suite_extra or {}))
    pairs = datasets.Dataset.from_dict({"prompt": ["what is 3 + 4 ?", "what is 12 - 3 ?"] * 4,
                                        "chosen": ["A: 7", "A: 9"] * 4, "rejected": ["A: 3", "so the"] * 4})
    lm = trl_gpt2(tokenizer)
    args = trl.DPOConfig(output_dir=str(tmp_path / "out"), report_to="none", max_steps=4, logging_steps=1,
                         per_device_train_batch_size=2, save_strategy="no", use_cpu=True, seed=0, max_length=64,
                         learning_rate=0.05)
    trainer = trl.DPOTrainer(model=lm, ref_model=copy.deepcopy(lm), args=args, train_dataset=pairs,
                             processing_class=tokenizer)
    if reference:
        callback["reference_model"] = trainer.ref_model
    cb = RLHFEvalCallback(suite, trainer=trainer, every=2, **callback)
    trainer.add_callback(cb)
    return trainer, cb, suite


@pytest.fixture(scope="module", params=["grpo", "dpo"])
def trained(request, tmp_path_factory, tokenizer):
    tmp_path = tmp_path_factory.mktemp(request.param)
    if request.param == "grpo":
        trainer, cb, suite = _grpo(tmp_path, tokenizer)
    else:
        trainer, cb, suite = _dpo(tmp_path, tokenizer, reference=True)
    seen = []

    class Integration(transformers.TrainerCallback):
        """What a reporting integration (W&B's, TensorBoard's) gets: each on_log's step and logs."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            seen.append((state.global_step, dict(logs or {})))

    trainer.add_callback(Integration())
    result = trainer.train()
    return trainer, cb, suite, result, tmp_path, seen


# ------------------------------------------------------------------------- logged, saved, replayed

def test_rlhf_metrics_are_logged_at_the_eval_steps_and_are_the_saved_reports(trained):
    trainer, cb, suite, result, tmp_path, seen = trained
    assert result.global_step == 4 and cb.stopped is None
    history = trainer.state.log_history
    ours = [e for e in history if any(k.startswith("rlhf/") for k in e)]
    assert [e["step"] for e in ours] == [0, 2, 4] == [h.step for h in cb.history]
    root = tmp_path / "out" / "rlhf"
    assert sorted(p.name for p in root.iterdir()) == ["step-000000", "step-000002", "step-000004"]
    for entry in ours:
        saved = json.loads((root / f"step-{entry['step']:06d}" / "report.json").read_text())
        aggregates = saved["suites"][0]["aggregates"]
        logged = {k: v for k, v in entry.items() if k.startswith("rlhf/")}
        # every metric the report has, as it has it; none it lacks (no margin without pairs)
        assert logged == {f"rlhf/{SUITE}/{m}": aggregates[m] for m in LOGGED_METRICS
                          if aggregates.get(m) is not None}
        assert {"accuracy", "frac_zero_spread", "mean_spread", "pass_at_k", "pairs"} <= {k.split("/")[-1]
                                                                                          for k in logged}
        traces = [t for q in saved["suites"][0]["questions"] for t in q["traces"]]
        assert len(traces) == 8 and {t["model_version"] for t in traces} == {f"tiny-policy@step-{entry['step']}"}
        assert all(t["logp"] is not None for t in traces)  # the live policy's own log-probabilities
        assert ("comparison" in saved) == (entry["step"] > 0)  # later steps are compared with step 0
    # the integrations got the same values at the same steps, through on_log
    assert [(step, logs) for step, logs in seen if any(k.startswith("rlhf/") for k in logs)] == [
        (e["step"], {k: v for k, v in e.items() if k != "step"}) for e in ours]
    # the trainer's own log of every step is still there (its should_log was not swallowed)
    assert [e["step"] for e in history if "loss" in e] == [1, 2, 3, 4]
    # the policy changed between evaluations (a large learning rate): its traces differ
    texts = [[t.text for q in h.report.suites[0].questions for t in q.traces] for h in cb.history]
    assert texts[0] != texts[-1]


@pytest.mark.parametrize("trained", ["grpo"], indirect=True)
def test_watching_does_not_change_the_training(trained, tmp_path, tokenizer):
    """The same GRPO run without the callback generates and learns exactly the same: sampling the
    policy draws from its own seeded generators, never the trainer's random state."""
    trainer = trained[0]
    plain = _grpo(tmp_path, tokenizer, watch=False)[0]
    plain.train()
    timing = ("step_time", "train_runtime", "train_samples_per_second", "train_steps_per_second")

    def learned(history):
        return [{k: v for k, v in e.items() if k not in timing} for e in history
                if not any(k.startswith("rlhf/") for k in e)]

    assert learned(plain.state.log_history) == learned(trainer.state.log_history)


@pytest.mark.parametrize("trained", ["dpo"], indirect=True)
def test_with_the_trainers_reference_the_margins_are_dpos_and_start_at_zero(trained):
    """At step 0 the policy is its reference (a copy): every implicit reward β·(ℓ − ℓ_ref) is 0, as
    TRL's rewards/margins start; after training the policy has moved away from it."""
    trainer, cb, suite, result, tmp_path, seen = trained
    first, last = (h.report.suites[0] for h in (cb.history[0], cb.history[-1]))
    traces = [t for q in first.questions for t in q.traces if t.text]  # an empty answer is not scored
    assert traces and all(t.ref_logp is not None for t in traces)
    assert [t.ref_logp for t in traces] == pytest.approx([t.logp for t in traces], abs=1e-4)
    if first.aggregates.pairs:
        assert first.aggregates.mean_margin == pytest.approx(0, abs=1e-4)
    moved = [t.logp - t.ref_logp for q in last.questions for t in q.traces if t.text]
    assert max(abs(d) for d in moved) > 1e-2


def test_each_steps_report_replays_offline_from_its_own_cassettes(trained):
    """No model exists by the suite's name: replay needs the cassettes only."""
    trainer, cb, suite, result, tmp_path, seen = trained
    for h in cb.history:
        saved = json.loads((h.folder / "report.json").read_text())
        replayed = run_suites([suite], cassette_dir=h.folder / "cassettes").to_dict()
        assert replayed["suites"][0]["aggregates"] == saved["suites"][0]["aggregates"]
        assert replayed["suites"][0]["questions"] == saved["suites"][0]["questions"]
        assert step_metrics(Report.from_data(replayed)) == h.metrics


def test_the_steps_page_draws_each_metric_over_the_steps(trained, tmp_path):
    from rlhf_eval.cli import main
    from rlhf_eval.steps_report import load_steps, metric_series

    trainer, cb, suite, result, run_path, seen = trained
    root = run_path / "out" / "rlhf"
    steps = load_steps(root)
    assert [s.step for s in steps] == [0, 2, 4]
    series = metric_series(steps)[SUITE]
    assert series["accuracy"] == [(h.step, h.metrics[f"rlhf/{SUITE}/accuracy"]) for h in cb.history]
    out = tmp_path / "steps.html"
    assert main(["html", str(root), str(out)]) == 0
    page = out.read_text()
    assert "frac_zero_spread" in page and "<svg" in page and "step-000004" in page


# ------------------------------------------------------------------------------------- stopping

def test_a_rule_that_holds_at_step_0_stops_training_after_the_first_step(tmp_path, tokenizer, caplog):
    trainer, cb, _ = _dpo(tmp_path, tokenizer, stop_when=["accuracy > 1", "pairs >= 0"])
    with caplog.at_level(logging.WARNING, logger="rlhf_eval.callback"):
        result = trainer.train()
    assert result.global_step == 1  # the trainer checks its stop flag after a step
    assert cb.stopped is not None and cb.stopped.step == 0 and cb.stopped.rule == "stop_when 'pairs >= 0'"
    line = cb.stopped.line
    assert line.startswith(f"rlhf-eval: stopping training at step 0: stop_when 'pairs >= 0': suite {SUITE}: pairs = ")
    assert line.endswith("(>= 0)") and [r.getMessage() for r in caplog.records] == [line]
    assert [h.step for h in cb.history] == [0, 1]  # the last step is evaluated too


def test_a_failed_suite_threshold_stops_training(tmp_path, tokenizer):
    trainer, cb, _ = _dpo(tmp_path, tokenizer, suite_extra={"suite_thresholds": {"pairs": {"min": 1000}}},
                          stop_on_thresholds=True)
    assert trainer.train().global_step == 1
    assert cb.stopped.line.startswith(f"rlhf-eval: stopping training at step 0: stop_on_thresholds: suite {SUITE}: "
                                      "pairs = ")
    assert cb.stopped.line.endswith("< min 1000")


def test_a_callable_rule_stops_at_step_2(tmp_path, tokenizer):
    seen = []

    def past_step_one(metrics, step):
        seen.append((step, sorted(metrics)))
        return step >= 2 and "forced at step 2"

    trainer, cb, _ = _grpo(tmp_path, tokenizer, stop_when=past_step_one)
    result = trainer.train()
    assert result.global_step == 2 and [s for s, _ in seen] == [0, 2]
    assert seen[0][1] == sorted(cb.history[0].metrics)
    assert cb.stopped.line == "rlhf-eval: stopping training at step 2: stop_when 'past_step_one': forced at step 2"


def test_a_resumed_training_is_compared_with_the_runs_step_0(tmp_path, tokenizer):
    def at_step_two(metrics, step):
        return step == 2

    trainer, cb, _ = _dpo(tmp_path, tokenizer, stop_when=at_step_two)
    trainer.args.save_strategy, trainer.args.save_steps = "steps", 2
    assert trainer.train().global_step == 2 and (tmp_path / "out" / "checkpoint-2").is_dir()
    resumed, cb2, _ = _dpo(tmp_path, tokenizer)
    assert resumed.train(resume_from_checkpoint=True).global_step == 4
    assert [h.step for h in cb2.history] == [2, 4] and cb2.stopped is None
    for h in cb2.history:
        saved = json.loads((h.folder / "report.json").read_text())
        assert saved["comparison"]["baseline"] == "step-000000"
    root = tmp_path / "out" / "rlhf"
    assert sorted(p.name for p in root.iterdir()) == ["step-000000", "step-000002", "step-000004"]


class _Scripted:
    """A team's local sampler behind the `backends` hook (the seam for other routes), recorded in
    the question's cassette as local samplers are: every trace answers right until step 2, then wrong."""

    def __init__(self, trainer):
        self.trainer = trainer

    def sample(self, prompt, k, seed):
        from rlhf_eval.recording.local import local_request, record

        step = self.trainer.state.global_step
        text = ("A: 7" if "3 + 4" in str(prompt) else "A: 9") if step < 2 else "A: 0"
        traces = []
        for i in range(k):
            record(local_request("scripted", "generate", {"prompt": prompt, "seed": seed + i, "step": step}),
                   {"text": text})
            traces.append(Trace(text=text, finish_reason="STOP", token_count=None, logp=None, seed=seed + i,
                                model_version=f"scripted@step-{step}"))
        return traces


def test_a_significant_drop_against_step_0_stops_training(tmp_path, tokenizer, caplog):
    holder = {}
    trainer, cb, _ = _dpo(tmp_path, tokenizer, stop_on_regression="accuracy:0.1",
                          backends=lambda suite, replay, policy: Backends(sampler=_Scripted(holder["trainer"])))
    holder["trainer"] = trainer
    with caplog.at_level(logging.WARNING, logger="rlhf_eval.callback"):
        result = trainer.train()
    assert result.global_step == 2 and cb.stopped.step == 2
    assert [h.metrics[f"rlhf/{SUITE}/accuracy"] for h in cb.history] == [1.0, 0.0]
    assert cb.stopped.line.startswith("rlhf-eval: stopping training at step 2: stop_on_regression accuracy:0.1: "
                                      f"significant drop against step-000000: suite {SUITE}: accuracy 1 → 0 ")
    assert [r.getMessage() for r in caplog.records] == [cb.stopped.line]


@pytest.mark.parametrize("kwargs, line", [
    ({"stop_when": "frac_zero_spread => 0.9"},
     "stop_when 'frac_zero_spread => 0.9': expected '[SUITE/]METRIC OP NUMBER' with OP one of >=, >, <=, < "
     "(e.g. 'frac_zero_spread >= 0.9')"),
    ({"stop_when": "frac_zero_sprad >= 0.9"},
     "stop_when 'frac_zero_sprad >= 0.9': no metric 'frac_zero_sprad'; did you mean 'frac_zero_spread'?"),
    ({"stop_when": ["accuracy < 0.1", "other/accuracy < 0.1"]},
     "stop_when 'other/accuracy < 0.1': no suite 'other' among this callback's; known: trl_watch"),
    ({"stop_when": "accuracy < nan"}, "stop_when 'accuracy < nan': 'nan' is not a finite number"),
    ({"stop_when": [0.9]},
     "stop_when 0.9: expected a rule such as 'frac_zero_spread >= 0.9' or a callable(metrics, step)"),
    ({"stop_on_regression": "accuracy>0.05"},
     "stop_on_regression 'accuracy>0.05': expected METRIC:DELTA with METRIC one of accuracy, frac_zero_spread, "
     "mean_margin, mean_spread, reward_accuracy, unparsable_rate"),
])
def test_a_rule_that_cannot_be_read_is_one_line_when_the_callback_is_made(tmp_path, tokenizer, kwargs, line):
    with pytest.raises(StopRuleError) as e:
        _dpo(tmp_path, tokenizer, **kwargs)
    assert str(e.value) == line


def test_a_suite_of_another_provider_or_a_bad_setting_is_one_line(tmp_path, tokenizer):
    trainer, _, suite = _dpo(tmp_path, tokenizer)
    gemini = tmp_path / "gemini" / f"{SUITE}.yaml"
    gemini.parent.mkdir()
    gemini.write_text(suite.read_text().replace("provider: hf", "provider: gemini"))
    for given, kwargs, want in [
        (gemini, {}, "has model.provider 'gemini'; the callback samples the trainer's model through the hf sampler: "
                     "set model.provider: hf"),
        (suite, {"every": 0}, "RLHFEvalCallback: every = 0; expected a whole number of steps, at least 1"),
        (tmp_path / "nope.yaml", {}, "nope.yaml: no such file or folder"),
        (suite, {"trainer": trainer.args}, "RLHFEvalCallback: trainer = DPOConfig; pass the transformers/TRL Trainer "
                                           "the callback is added to"),
        (suite, {"reference_model": trainer.ref_model}, "reference_model= scores the suite's DPO reference, but "
                                                        f"suite {SUITE} ({suite}) has none of provider hf"),
    ]:
        with pytest.raises(ValueError) as e:
            RLHFEvalCallback(given, **{"trainer": trainer, "every": 2, **kwargs})
        assert want in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------------ the trainer's vLLM server

def test_a_trl_vllm_suite_is_sampled_on_the_trainers_vllm_server(tmp_path, tokenizer):
    """A GRPO trainer whose args say it generates on TRL's vLLM server: a `provider: trl_vllm` suite
    is asked there (tests/vllm_server.py, our picture of that server, serving the trainer's own
    live model as a synced server would), its exchanges are the step's cassettes, and the same
    suite replays them with the server stopped. The trainer itself generates in process (a real
    vLLM server cannot run here), so only the callback's route is tested, not TRL's weight sync."""
    from vllm_server import TRLVLLMServer

    trainer, _, hf_suite = _grpo(tmp_path, tokenizer, watch=False)
    server = TRLVLLMServer(trainer.model, tokenizer, "tiny-policy")
    suite = tmp_path / "served" / f"{SUITE}.yaml"
    suite.parent.mkdir()
    suite.write_text(hf_suite.read_text().replace("provider: hf", "provider: trl_vllm"))
    with pytest.raises(ValueError, match="generates on no vLLM server") as e:
        RLHFEvalCallback(suite, trainer=trainer, every=2)
    assert "\n" not in str(e.value)
    trainer.args.use_vllm, trainer.args.vllm_mode, trainer.args.vllm_server_base_url = True, "server", server.url
    cb = RLHFEvalCallback(suite, trainer=trainer, every=2)
    trainer.add_callback(cb)
    try:
        trainer.train()
    finally:
        server.stop()
    assert [h.step for h in cb.history] == [0, 2, 4]
    assert {path for path, _ in server.requests} == {"/v1/completions"}
    assert len(server.requests) == 3 * 2  # one request of k traces per question and step
    logged = {e["step"]: e for e in trainer.state.log_history if any(k.startswith("rlhf/") for k in e)}
    for h in cb.history:
        assert {k: logged[h.step][k] for k in h.metrics} == h.metrics
        cassette = (h.folder / "cassettes" / SUITE / "add.yaml").read_text()
        assert "/v1/completions" in cassette and "local://hf" not in cassette
        saved = json.loads((h.folder / "report.json").read_text())
        replayed = run_suites([suite], cassette_dir=h.folder / "cassettes").to_dict()
        assert replayed["suites"][0]["questions"] == saved["suites"][0]["questions"]
