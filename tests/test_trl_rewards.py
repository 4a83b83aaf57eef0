"""The suite as a training reward (rlhf_eval.trl): TRL reward functions that grade completions as
`score_question` grades traces, the suite's prompts as the export's `grpo_prompts` rows, and
GRPOTrainer training 2 steps on CPU with them, a tiny random GPT-2 built here (nothing downloaded),
logging the eval's rewards for the completions it generated."""
from __future__ import annotations

import copy
import dataclasses
import json
import warnings

import pytest
import yaml

from rlhf_eval import SuiteError, Trace, load_suite, reward_function, score_question
from rlhf_eval.export import export_files
from rlhf_eval.reasoning import split_reasoning
from rlhf_eval.report_model import Report
from rlhf_eval.rewards import REWARDS
from rlhf_eval.trl import SuiteRewardError, suite_dataset, suite_rewards, suite_rows

from conftest import REPO

WORDS = "A: 7 3 9 <think> </think> so the answer is".split()  # what the tiny model writes (tiny_lm.word_tokenizer)


@pytest.fixture(autouse=True)
def wordy():
    """A team's reward function, registered for a test and forgotten after it: minus the number
    of words (an integer, exact in TRL's float32), None for an empty answer (does not apply)."""
    @reward_function("wordy")
    def wordy(completions, **kwargs):
        texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
        return [-float(len(t.split())) if t.strip() else None for t in texts]

    yield
    REWARDS.unregister("wordy")


def _suite_file(tmp_path, **model):
    doc = {"suite": "trl_reward", "model": {"name": "gemini-2.0-flash", **model}, "samples": 2,
           "prompt": "Question: {question} End with A: <number>.", "verifier": "numeric",
           "rewards": {"correct": 1.0, "incorrect": 0.0, "unparsable": -0.5},
           "reward_funcs": ["accuracy", "wordy"], "reward_weights": [1.0, 0.25],
           "questions": [{"id": "add", "question": "what is 3 + 4 ?", "answer": "7"},
                         {"id": "sub", "question": "what is 12 - 3 ?", "answer": "9"}]}
    path = tmp_path / "trl_reward.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _trace(completion, tags=("<think>", "</think>")) -> Trace:
    """A completion as a backend would record it: the answer split from the reasoning."""
    if isinstance(completion, list):
        message = completion[0]
        split = split_reasoning(message["content"], tags, beside=message.get("reasoning_content"))
    else:
        split = split_reasoning(completion, tags)
    return Trace(text=split.answer, finish_reason="STOP", token_count=None, logp=None, seed=None, model_version=None,
                 reasoning=split.reasoning, answer_missing=split.answer_missing)


def _eval(suite, question_of, completions):
    """score_question on each question's completions: per row, ({function: reward}, verdict, weighted)."""
    out: list = [None] * len(completions)
    for qid in dict.fromkeys(question_of):
        rows = [i for i, q in enumerate(question_of) if q == qid]
        result = score_question(suite, suite.question(qid), [_trace(completions[i]) for i in rows])
        for j, i in enumerate(rows):
            out[i] = ({n: r[j] for n, r in result.rewards_by_function.items()}, result.verdicts[j].status,
                      result.rewards[j])
    return out


# ------------------------------------------------------------------------------ grading a batch

def test_a_batch_of_two_questions_gets_the_evals_rewards_reasoning_split_off(tmp_path):
    path = _suite_file(tmp_path)
    suite = load_suite(path)
    rewards = suite_rewards(path)
    assert [f.__name__ for f in rewards] == rewards.names == ["accuracy", "wordy"]  # TRL logs rewards/<name>
    assert rewards.weights == [1.0, 0.25]
    rows = {r["question_id"]: r for r in suite_rows(path)}
    # TRL's order: each prompt's generations together, two questions in one batch
    question_of = ["add", "add", "add", "sub", "sub", "sub"]
    completions = ["so the answer is A: 7",
                   "<think> 7 </think> A: 3",      # the reasoning's 7 is not the answer
                   "<think> A: 7",                 # never closed: no answer (unparsable)
                   "A: 9", "the answer is 9 so", "so the"]
    kwargs = {key: [rows[q][key] for q in question_of] for key in ("answer", "question", "question_id", "pass_rate")}
    prompts = [rows[q]["prompt"] for q in question_of]
    got = [fn(prompts=prompts, completions=completions, completion_ids=[[0]] * 6, **kwargs) for fn in rewards]
    want = _eval(suite, question_of, completions)
    assert [list(r) for r in zip(*got)] == [[w[0]["accuracy"], w[0]["wordy"]] for w in want]
    assert [w[1] for w in want] == ["correct", "incorrect", "unparsable", "correct", "correct", "unparsable"]
    assert got[0] == [1.0, 0.0, -0.5, 1.0, 1.0, -0.5] and got[1] == [-6.0, -2.0, None, -2.0, -5.0, -2.0]
    # without a question_id column the prompt finds the question
    del kwargs["question_id"]
    assert [fn(prompts=prompts, completions=completions, **kwargs) for fn in rewards] == got


def test_conversational_completions_and_a_reasoning_field_are_graded_as_the_eval_does(tmp_path):
    path = _suite_file(tmp_path, system_instruction="Answer briefly.")
    suite = load_suite(path)
    row = suite_rows(path)[0]
    assert row["prompt"] == [{"role": "system", "content": "Answer briefly."},
                             {"role": "user", "content": "Question: what is 3 + 4 ? End with A: <number>."}]
    completions = [[{"role": "assistant", "content": "A: 7"}],
                   [{"role": "assistant", "content": "A: 8", "reasoning_content": "so 7"}],
                   [{"role": "assistant", "content": "so 7 </think> A: 3"}]]
    rewards = suite_rewards(suite)
    got = [fn(prompts=[row["prompt"]] * 3, completions=completions, question_id=["add"] * 3) for fn in rewards]
    want = _eval(suite, ["add"] * 3, completions)
    assert got == [[w[0][name] for w in want] for name in rewards.names]
    assert got[0] == [1.0, 0.0, 0.0]  # the closing tag alone: the reasoning's 7 is not the answer


def test_a_row_of_no_question_or_of_another_suite_version_and_a_broken_suite_are_one_line(tmp_path):
    path = _suite_file(tmp_path)
    accuracy = suite_rewards(path)[0]
    cases = [({"prompts": ["p"], "completions": ["A: 7"], "question_id": ["mul"]},
              "rlhf_eval.trl: question_id 'mul' (row 0 of the batch) is no question of suite 'trl_reward'"),
             ({"prompts": ["What is 2 + 2?"], "completions": ["A: 4"]},
              "rlhf_eval.trl: the prompt 'What is 2 + 2?' (row 0 of the batch) is no question of suite 'trl_reward'"),
             ({"prompts": ["p"], "completions": ["A: 7"], "question_id": ["add"], "answer": ["8"]},
              "rlhf_eval.trl: row 0 of the batch gives question 'add' the answer '8', suite 'trl_reward'"),
             ({"prompts": ["p"], "completions": [42], "question_id": ["add"]},
              "rlhf_eval.trl: completion 0 is 42; TRL passes text or a list of messages")]
    for kwargs, line in cases:
        with pytest.raises(SuiteRewardError) as e:
            accuracy(**kwargs)
        assert str(e.value).startswith(line) and "\n" not in str(e.value)
    broken = tmp_path / "broken.yaml"
    broken.write_text(path.read_text().replace("verifier: numeric", "verifier: numerik"))
    with pytest.raises(SuiteError) as e:
        suite_rewards(broken)
    assert "\n" not in str(e.value) and "numerik" in str(e.value)


def test_the_suite_dataset_is_the_exports_grpo_prompts_without_a_run(shipped_report):
    """Same rows as the export of a run of the shipped suite, pass rate and spread not measured."""
    report = copy.deepcopy(shipped_report[0])
    for chat in (False, True):
        if chat:
            for s in report["suites"]:
                s["model"]["system_instruction"] = "Answer briefly."
        files = export_files(Report.from_data(report), "out")
        exported = [json.loads(line) for line in
                    files[next(p for p in files if p.as_posix().endswith("gsm8k_smoke/grpo_prompts.jsonl"))]
                    .splitlines()]
        suite = load_suite(REPO / "suites" / "gsm8k_smoke.yaml")
        if chat:
            model = suite.spec.model.model_copy(update={"system_instruction": "Answer briefly."})
            suite = dataclasses.replace(suite, spec=suite.spec.model_copy(update={"model": model}))
        ours = {r["question_id"]: r for r in suite_dataset(suite)}
        assert exported and len(ours) == 30
        for row in exported:
            assert list(ours[row["question_id"]]) == list(row)
            assert ours[row["question_id"]] == {**row, "pass_rate": None, "spread": None}


# ------------------------------------------------------------------------------ GRPOTrainer

@pytest.mark.usefixtures("hf_offline")
@pytest.mark.parametrize("conversational", [False, True])
def test_grpo_trainer_trains_two_steps_and_logs_the_evals_rewards(tmp_path, conversational):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    trl = pytest.importorskip("trl")
    import transformers

    from tiny_lm import trl_gpt2, word_tokenizer

    path = _suite_file(tmp_path, **({"system_instruction": "Answer briefly."} if conversational else {}))
    suite = load_suite(path)
    tokenizer = word_tokenizer(WORDS)
    rewards = suite_rewards(path)
    dataset = suite_dataset(path)
    # The conversational run leaves TRL's default weights (1.0 each): the functions warn once, and
    # TRL's reward is then the unweighted sum.
    weights = [1.0, 1.0] if conversational else rewards.weights
    args = trl.GRPOConfig(output_dir=str(tmp_path / "out"), report_to="none", max_steps=2, logging_steps=1,
                          per_device_train_batch_size=4, num_generations=2, max_completion_length=8,
                          save_strategy="no", use_cpu=True, seed=0,
                          **({} if conversational else {"reward_weights": rewards.weights}))
    trainer = trl.GRPOTrainer(model=trl_gpt2(tokenizer), reward_funcs=rewards, train_dataset=dataset, args=args,
                              processing_class=tokenizer)
    logged = []

    class Capture(transformers.TrainerCallback):
        """What TRL logged at each step, and the generation batch it logged it for."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if "reward" in (logs or {}):
                logs_ = trainer._logs
                logged.append((dict(logs), list(logs_["prompt"]), list(logs_["completion"]),
                               {n: list(v) for n, v in logs_["rewards"].items()}, list(logs_["extra"]["verdict"])))

    trainer.add_callback(Capture())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = trainer.train()
    ours = [str(w.message) for w in caught if "rlhf_eval.trl" in str(w.message)]
    if conversational:
        assert ours == ["rlhf_eval.trl: the trainer weighs 'wordy' 1 (the suite: 0.25); pass GRPOConfig("
                        "reward_weights=suite_rewards(...).weights) so its reward is the eval's"]
    else:
        assert ours == []
    assert result.global_step == 2 and len(logged) == 2

    question_by_prompt = {json.dumps(r["prompt"]): r["question_id"] for r in dataset}
    verdicts_seen = set()
    for logs, prompts, completions, by_function, verdicts in logged:
        assert len(completions) == 4
        question_of = [question_by_prompt[json.dumps(p)] for p in prompts]
        want = _eval(suite, question_of, completions)
        for name in rewards.names:
            got = [None if r != r else r for r in by_function[name]]  # TRL's NaN is the eval's None
            assert got == [w[0][name] for w in want], (name, completions)
            applied = [r for r in got if r is not None]
            assert logs[f"rewards/{name}/mean"] == pytest.approx(sum(applied) / len(applied), rel=1e-6)
        assert verdicts == [w[1] for w in want]
        weighted = [sum(w * r for w, r in zip(weights, [x[0][n] for n in rewards.names]) if r is not None)
                    for x in want]
        assert logs["reward"] == pytest.approx(sum(weighted) / len(weighted), rel=1e-6)
        if not conversational:
            assert weighted == pytest.approx([float(w[2]) for w in want])  # score_question's weighted reward
        verdicts_seen.update(verdicts)
    assert len(verdicts_seen) > 1, verdicts_seen  # the tiny model's words give more than one verdict
