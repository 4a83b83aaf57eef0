"""Reward functions as TRL calls them: a team's functions, written in the test in TRL's signature,
run on a suite recorded through the emulator and replayed offline; every per-function reward, the
weighted sum and the GRPO advantages are recomputed here with TRL's formulas (GRPOTrainer's
`_calculate_rewards`, nansum with `reward_weights`, nanmean/nanstd per group, unscorable -> 0).
Then the suite syntax, the default (the verdict table as the `accuracy` reward), and what a
reward function can do wrong."""
import json
import math
import sys
import warnings

import numpy as np
import pytest
import yaml

from conftest import GSM8K_TEST, TEST_KEY
from rlhf_eval import RewardError, SuiteError, Trace, load_suite, reward_function, score_question
from rlhf_eval.rewards import REWARDS, weighted_sum
from test_plugin import report_json, suite_yaml

pytest.importorskip("openai")

DEAD = "http://127.0.0.1:9"

# A team's reward functions, written for TRL's GRPOTrainer: keyword arguments, a dataset column
# (`solution`) by its name, None where a reward does not apply.
TEAM_REWARDS = r'''
import re


def boxed_accuracy(completions, solution, **kwargs):
    """TRL's accuracy_reward on numbers: 1.0 when the last \boxed{} holds the solution, 0.0 when it
    does not (or there is none), None when the solution is no number (the example is skipped)."""
    rewards = []
    for completion, sol in zip(completions, solution):
        try:
            gold = float(sol.replace(",", ""))
        except ValueError:
            rewards.append(None)
            continue
        boxed = re.findall(r"\\boxed\{([^{}]*)\}", completion)
        try:
            rewards.append(1.0 if boxed and float(boxed[-1].replace(",", "")) == gold else 0.0)
        except ValueError:
            rewards.append(0.0)
    return rewards


def think_format(completions, **kwargs):
    """TRL's think_format_reward, on plain-text completions."""
    pattern = r"^<think>(?!.*<think>)(.*?)</think>.*$"
    return [1.0 if re.match(pattern, c, re.DOTALL | re.MULTILINE) else 0.0 for c in completions]


def reward_len(completions, **kwargs):
    """The example of TRL's GRPOTrainer documentation (ints, as it returns them)."""
    return [-abs(20 - len(completion)) for completion in completions]


def raises_on_robes(completions, question, **kwargs):
    if "robe" in question[0]:
        raise ValueError("no robes here")
    return [0.0] * len(completions)


def huge_on_robes(completions, question, **kwargs):
    """Finite, but times its weight beyond the float range."""
    return [1e308 if "robe" in question[0] else 0.0 for _ in completions]
'''

FUNCS = ["team_rewards:boxed_accuracy", "team_rewards.think_format", "team_rewards:reward_len"]  # TRL's dotted form too
WEIGHTS = [1.0, 0.5, 0.001]

# GSM8K rows (suites/data/gsm8k/test.jsonl) and how the emulated Qwen3 answers them: the markers
# ask for a \boxed{} final answer and/or no <think> span, as a prompt's instructions would.
ROWS = {6: "[[emulator:boxed]] ",                                    # reasons in <think>, boxes its answer
        1: "[[emulator:boxed]] [[emulator:reasoning=none]] ",       # boxes, no <think>
        3: ""}                                                      # reasons, no box; its solution is no number


@pytest.fixture(autouse=True)
def registered():
    """What a test registers (or loads from a reference) is forgotten after it: every test sees
    the built-in `accuracy` alone."""
    before = set(REWARDS.registered())
    yield
    for name in set(REWARDS.registered()) - before:
        REWARDS.unregister(name)


@pytest.fixture
def team(project, monkeypatch):
    (project.path / "team_rewards.py").write_text(TEAM_REWARDS)
    monkeypatch.syspath_prepend(str(project.path))
    yield project
    sys.modules.pop("team_rewards", None)


def _questions(path):
    rows = [json.loads(line) for line in GSM8K_TEST.read_text().splitlines()]
    with path.open("w") as f:
        for i, style in ROWS.items():
            answer = rows[i]["answer"].split("####")[-1].strip()
            solution = answer if "boxed" in style else "see the worked solution"
            f.write(json.dumps({"question": rows[i]["question"], "answer": answer, "style": style,
                                "solution": solution}) + "\n")


def _suite(url, **extra):
    doc = {"suite": "tr", "model": {"provider": "openai", "name": "Qwen/Qwen3-8B", "base_url": f"{url}/v1",
                                    "max_output_tokens": 600, "reasoning_tags": None},
           "samples": 6, "seed": 3,
           "prompt": "{style}Solve it. Put your final answer within \\boxed{{}}.\n\nQuestion: {question}",
           "reward_funcs": FUNCS, "reward_weights": WEIGHTS,
           "questions": {"source": "q.jsonl"}, **extra}
    return yaml.safe_dump(doc, sort_keys=False)


def trl_group(per_function: np.ndarray, weights) -> tuple[np.ndarray, np.ndarray, float]:
    """GRPOTrainer on one group (sum_then_normalize, scale_rewards="group"), in numpy: rewards,
    advantages and the group's reward std, exactly as trl/trainer/grpo_trainer.py computes them."""
    unscorable = np.isnan(per_function).all(axis=1)
    rewards = np.nansum(per_function * np.asarray(weights)[None, :], axis=1)
    rewards[unscorable] = np.nan
    mean = np.nanmean(rewards) if (~unscorable).any() else np.nan
    count = int((~np.isnan(rewards)).sum())
    std = math.sqrt(np.nanmean((rewards - mean) ** 2) * count / (count - 1)) if count > 1 else math.nan  # trl nanstd
    advantages = np.nan_to_num((rewards - mean) / (std + 1e-4), nan=0.0)
    return rewards, advantages, std


def test_trl_reward_functions_give_trls_rewards_sums_and_advantages_recorded_and_replayed(team, emulator,
                                                                                         monkeypatch):
    _questions(team.path / "q.jsonl")
    text = _suite(emulator.base_url)
    team.makefile(".yaml", tr=text)
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    before = len(emulator.requests)
    recorded, rec = report_json(team, "--rlhf-record-mode=once")
    recorded.assert_outcomes(passed=3)
    assert len(emulator.requests) == before + 18
    (team.path / "tr.yaml").write_text(text.replace(emulator.base_url, DEAD))
    monkeypatch.delenv("OPENAI_API_KEY")
    replayed, rep = report_json(team)
    replayed.assert_outcomes(passed=3)
    assert len(emulator.requests) == before + 18
    assert rep["suites"][0]["questions"] == rec["suites"][0]["questions"]

    suite = rep["suites"][0]
    assert suite["reward_funcs"] == [{"name": n, "weight": w} for n, w in zip(FUNCS, WEIGHTS)]
    team_rewards = __import__("team_rewards")
    functions = [team_rewards.boxed_accuracy, team_rewards.think_format, team_rewards.reward_len]
    rows = [json.loads(line) for line in (team.path / "q.jsonl").read_text().splitlines()]
    spreads = []
    for q, row in zip(suite["questions"], rows):
        traces = q["traces"]
        texts = [t["text"] for t in traces]
        kwargs = {key: [value] * len(texts) for key, value in row.items()}
        kwargs["prompts"] = [q["prompt"]] * len(texts)
        # every per-function reward is what the team's function gives when TRL calls it
        expected = [fn(completions=texts, **kwargs) for fn in functions]
        for i, name in enumerate(FUNCS):
            assert [t["rewards_by_function"][name] for t in traces] == expected[i], (q["id"], name)
        per_function = np.array([[np.nan if r is None else r for r in column] for column in zip(*expected)])
        rewards, advantages, std = trl_group(per_function, WEIGHTS)
        assert [t["reward"] for t in traces] == pytest.approx(list(rewards), rel=1e-12, abs=1e-12)
        assert [t["advantage"] for t in traces] == pytest.approx(list(advantages), rel=1e-9, abs=1e-12)
        assert q["metrics"]["spread"] == pytest.approx(std, rel=1e-12)
        spreads.append(std)
        # and the rewards mean what they say, read independently of the functions
        boxed, thinks = "boxed" in row["style"], "reasoning=none" not in row["style"]
        assert [t["rewards_by_function"][FUNCS[1]] for t in traces] == [1.0 if thinks else 0.0] * 6
        assert all(t["text"].startswith("<think>") == thinks for t in traces)
        if boxed:  # the numeric verifier reads the same \boxed{} answer
            assert [t["rewards_by_function"][FUNCS[0]] for t in traces] == [float(t["verdict"] == "correct")
                                                                            for t in traces]
        else:
            assert {t["rewards_by_function"][FUNCS[0]] for t in traces} == {None}
    # the HTML report shows each function's reward beside their sum, per trace
    from rlhf_eval.html_report import render_html
    from rlhf_eval.rows import fmt, typographic

    page = render_html(rep)
    assert "reward functions " + ", ".join(f"{n} ×{w}" for n, w in zip(FUNCS, WEIGHTS)) in page
    assert "".join(f'<th title="{n}">{n.rpartition(":")[2]}</th>' for n in FUNCS) in page
    for t in suite["questions"][0]["traces"]:
        cells = [t["reward"]] + [t["rewards_by_function"][n] for n in FUNCS]
        assert "".join(f"<td>{typographic(fmt(v, 2))}</td>" for v in cells) in page
    accuracies = [sum(t["verdict"] == "correct" for t in q["traces"]) for q in suite["questions"][:2]]
    assert all(0 < c < 6 for c in accuracies), "the boxed questions have correct and incorrect answers"
    assert suite["aggregates"]["mean_spread"] == pytest.approx(float(np.mean(spreads)))


def test_trls_own_reward_functions_on_a_chat_suite_get_the_datasets_columns_and_give_trls_rewards(
        tmp_path, emulator, monkeypatch):
    """TRL's accuracy_reward (math-verify on a `solution` column) and think_format_reward, by
    reference, in a chat suite whose dataset also has a worked `answer` and a `q` question column:
    each reward recorded is what TRL's function gives for TRL's arguments, and the sum and the
    advantages are GRPOTrainer's."""
    trl_rewards = pytest.importorskip("trl.rewards")
    pytest.importorskip("math_verify")
    from rlhf_eval import run_suites

    rows = [json.loads(line) for line in GSM8K_TEST.read_text().splitlines()]
    data = []
    for i, style in ROWS.items():
        worked = rows[i]["answer"]
        data.append({"q": rows[i]["question"], "answer": worked, "solution": worked.split("####")[-1].strip(),
                     "style": style, "uid": f"g{i}"})
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
    funcs = ["trl.rewards:accuracy_reward", "trl.rewards:think_format_reward"]
    doc = {"suite": "trl_own", "model": {"provider": "openai", "name": "Qwen/Qwen3-8B",
                                         "base_url": f"{emulator.base_url}/v1", "max_output_tokens": 600,
                                         "reasoning_tags": None},
           "samples": 6, "seed": 5,
           "prompt": [{"role": "system", "content": "Put your final answer within \\boxed{{}}."},
                      {"role": "user", "content": "{style}{question}"}],
           "reward_funcs": funcs, "reward_weights": [1.0, 0.25],
           "questions": {"source": "q.jsonl", "question_field": "q", "answer_field": "solution", "id_field": "uid"}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    recorded = run_suites([tmp_path / "s.yaml"], record_mode="once", cassette_dir=tmp_path / "c", rootdir=tmp_path)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({**doc, "model": {**doc["model"], "base_url": f"{DEAD}/v1"}},
                                                    sort_keys=False))
    monkeypatch.delenv("OPENAI_API_KEY")
    replayed = run_suites([tmp_path / "s.yaml"], cassette_dir=tmp_path / "c", rootdir=tmp_path).to_dict()
    assert replayed["suites"][0]["questions"] == recorded.to_dict()["suites"][0]["questions"]

    functions = [trl_rewards.accuracy_reward, trl_rewards.think_format_reward]
    for q, row in zip(replayed["suites"][0]["questions"], data):
        texts = [t["text"] for t in q["traces"]]
        # GRPOTrainer's arguments: every dataset column under its own name, the chat prompt,
        # conversational completions
        kwargs = {key: [row[key]] * len(texts) for key in ("solution", "style", "q")}
        completions = [[{"role": "assistant", "content": t}] for t in texts]
        expected = [fn(completions=completions, prompts=[q["prompt"]] * len(texts), **kwargs) for fn in functions]
        for name, want in zip(funcs, expected):
            assert [t["rewards_by_function"][name] for t in q["traces"]] == want, (q["id"], name)
        per_function = np.array([[np.nan if r is None else r for r in column] for column in zip(*expected)])
        rewards, advantages, std = trl_group(per_function, [1.0, 0.25])
        assert [t["reward"] for t in q["traces"]] == pytest.approx(list(rewards), rel=1e-12, abs=1e-12)
        assert [t["advantage"] for t in q["traces"]] == pytest.approx(list(advantages), rel=1e-9, abs=1e-12)
    # the boxed questions are graded by math-verify against `solution`, not the worked `answer`
    graded = [t["rewards_by_function"][funcs[0]] for q in replayed["suites"][0]["questions"][:2] for t in q["traces"]]
    assert set(graded) == {0.0, 1.0}


# ------------------------------------------------------------------ the default: the verdict table

def _inline(tmp_path, **extra):
    path = tmp_path / "s.yaml"
    path.write_text(suite_yaml(samples=4, limit=1, extra={
        "questions": [{"id": "a", "question": "How many?", "answer": "4"},
                      {"id": "b", "question": "How much?", "answer": "7"}], **extra}))
    return path


def _traces(*texts, finish="STOP"):
    return [Trace(text=t, finish_reason=finish, token_count=len(t.split()), logp=None, seed=i, model_version="m")
            for i, t in enumerate(texts)]


def test_a_suite_naming_no_reward_function_is_the_verdict_table_as_accuracy(tmp_path):
    suite = load_suite(_inline(tmp_path, rewards={"correct": 2.0, "unparsable": -1.0}))
    assert suite.reward_funcs == [("accuracy", 1.0)]
    result = score_question(suite, suite.questions[0], _traces("A: 4", "A: 5", "no idea", "A: 4"))
    assert list(result.rewards) == [2.0, 0.0, -1.0, 2.0]
    assert result.rewards_by_function == {"accuracy": [2.0, 0.0, -1.0, 2.0]}
    traces = result.to_dict()["traces"]
    assert [t["rewards_by_function"] for t in traces] == [{"accuracy": r} for r in (2.0, 0.0, -1.0, 2.0)]
    rewards, advantages, std = trl_group(np.array([[2.0], [0.0], [-1.0], [2.0]]), [1.0])
    assert [t["reward"] for t in traces] == list(rewards)
    assert [t["advantage"] for t in traces] == pytest.approx(list(advantages), rel=1e-12)
    assert result.metrics["spread"] == pytest.approx(std)


def test_registered_functions_weights_and_a_completion_no_function_applies_to(tmp_path):
    @reward_function("only_short")
    def only_short(completions, **kwargs):
        return [None if len(c) > 6 else float(len(c)) for c in completions]

    @reward_function()
    def shouting(completions, prompts, answer, verdicts, **kwargs):
        assert prompts == [prompts[0]] * len(completions) and answer == ["4"] * len(completions)
        return [None if "ANSWER" in c or v != "correct" else 1 for c, v in zip(completions, verdicts)]

    try:
        suite = load_suite(_inline(tmp_path, reward_funcs=["only_short", "shouting"], reward_weights=[2.0, -0.5]))
        texts = ["A: 4", "A: 5", "The answer is 4.", "THE ANSWER IS 5.", "A: 44"]
        result = score_question(suite, suite.questions[0], _traces(*texts))
        assert result.rewards_by_function == {"only_short": [4.0, 4.0, None, None, 5.0],
                                              "shouting": [1.0, None, 1.0, None, None]}
        per_function = np.array([[4.0, 1.0], [4.0, np.nan], [np.nan, 1.0], [np.nan, np.nan], [5.0, np.nan]])
        rewards, advantages, std = trl_group(per_function, [2.0, -0.5])
        assert list(weighted_sum(per_function, [2.0, -0.5])[:3]) == [7.5, 8.0, -0.5]
        np.testing.assert_array_equal(result.rewards, rewards)  # NaN where no function applies
        np.testing.assert_allclose(result.advantages, advantages, rtol=1e-12)
        assert result.advantages[3] == 0.0 and result.metrics["spread"] == pytest.approx(std)
        assert result.to_dict()["traces"][3]["reward"] is None
        assert result.metrics["nonzero_advantages"] == 4
    finally:
        REWARDS.unregister("only_short")
        REWARDS.unregister("shouting")


def test_best_worst_pairs_rank_by_the_weighted_reward_and_an_unscorable_trace_is_never_picked(tmp_path):
    @reward_function("brevity")
    def brevity(completions, **kwargs):
        return [None if "skip" in c else -len(c) for c in completions]

    try:
        suite = load_suite(_inline(tmp_path, reward_funcs=["brevity"], dpo={"pairing": "best_worst"}))
        texts = ["skip A: 4", "so, A: 4", "A: 4", "A: 5", "it is A: 9 skip", "we get A: 6"]
        result = score_question(suite, suite.questions[0], _traces(*texts))
        assert [v.status for v in result.verdicts] == ["correct"] * 3 + ["incorrect"] * 3
        # correct: None, -8, -4; incorrect: -4, None, -11. No reward is neither the best nor the worst.
        assert (list(result.chosen_idx), list(result.rejected_idx)) == ([2], [5])
    finally:
        REWARDS.unregister("brevity")
    suite = load_suite(_inline(tmp_path, dpo={"pairing": "best_worst"}))
    result = score_question(suite, suite.questions[0], _traces("A: 5", "A: 4", "A: 4", "none"))
    assert (list(result.chosen_idx), list(result.rejected_idx)) == ([1], [0])  # as before: lowest index on ties


# ------------------------------------------------------------------ the suite syntax

def _load_error(path) -> str:
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    return str(info.value)


def _line_of(path, key) -> int:
    return next(i for i, row in enumerate(path.read_text().splitlines(), 1) if row.startswith(f"{key}:"))


def test_unknown_names_weights_and_settings_that_cannot_work_are_one_line_at_load(tmp_path, monkeypatch):
    (tmp_path / "rewards_load.py").write_text(TEAM_REWARDS + "\n\ndef positional(completions):\n    return []\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _inline(tmp_path, reward_funcs=["acuracy"])
    assert _load_error(path).endswith("reward_funcs[0]: unknown reward function 'acuracy'; did you mean 'accuracy'?")
    path = _inline(tmp_path, reward_funcs=["zzz"])
    assert _load_error(path).endswith("reward_funcs[0]: unknown reward function 'zzz'; known: accuracy")
    path = _inline(tmp_path, reward_funcs=["accuracy", "rewards_load:boxed_accuracy"], reward_weights=[1.0])
    assert _load_error(path) == (f"{path}:{_line_of(path, 'reward_weights')}: reward_weights: 1 weight for 2 "
                                 "reward functions (accuracy, rewards_load:boxed_accuracy); "
                                 "give one weight per function, in the same order, as TRL's GRPOConfig.reward_weights")
    path = _inline(tmp_path, reward_weights=[1.0, 2.0])
    assert _load_error(path).endswith("reward_weights: 2 weights for 1 reward function (accuracy); give one weight "
                                      "per function, in the same order, as TRL's GRPOConfig.reward_weights")
    path = _inline(tmp_path, reward_funcs=["rewards_load:think_format"], rewards={"correct": 2.0})
    assert _load_error(path).endswith(f"{_line_of(path, 'rewards')}: rewards: the verdict table is the setting of "
                                      "the built-in 'accuracy' reward function, which reward_funcs does not name; add "
                                      "accuracy to reward_funcs, or remove rewards")
    path = _inline(tmp_path, reward_funcs=["accuracy", "accuracy"])
    assert _load_error(path).endswith("reward_funcs[1]: 'accuracy' is named twice; each reward function counts once "
                                      "(give it a larger weight in reward_weights instead)")
    path = _inline(tmp_path, reward_funcs=["accuracy", "rlhf_eval.rewards:accuracy"])  # one function, two names
    assert _load_error(path) == (f"{path}:{_line_of(path, 'reward_funcs') + 2}: reward_funcs[1]: "  # its item
                                 "'rlhf_eval.rewards:accuracy' is the same function as 'accuracy'; each reward "
                                 "function counts once (give it a larger weight in reward_weights instead)")
    for weight in (True, "2"):  # pydantic would read them as 1.0 and 2.0
        path = _inline(tmp_path, reward_funcs=["accuracy", "rewards_load:think_format"], reward_weights=[weight, 1])
        assert _load_error(path) == (f"{path}:{_line_of(path, 'reward_weights') + 1}: reward_weights[0]: expected a "
                                     f"number, got {weight!r}")
    path = _inline(tmp_path, reward_funcs=[":think_format"])
    assert _load_error(path).endswith("reward_funcs[0]: reward function ':think_format': cannot load reference "
                                      "(ValueError: expected module:attribute, e.g. my_evals.rewards:format_reward)")
    path = _inline(tmp_path, reward_funcs=["rewards_load:boxed_accuracy"])  # TRL's column is `solution`
    assert _load_error(path).endswith("reward_funcs[0]: reward function 'rewards_load:boxed_accuracy' requires the "
                                      "argument 'solution', which no question has; it gets answer, completions, "
                                      "prompts, question, verdict_rewards, verdicts (a JSONL column arrives under its "
                                      "own name, the reference as answer)")
    path = _inline(tmp_path, reward_funcs=["rewards_load:positional"])
    assert _load_error(path).endswith("reward_funcs[0]: reward function 'rewards_load:positional': 'positional' must "
                                      "take (completions, **kwargs), as TRL's GRPOTrainer calls it with keyword "
                                      "arguments only (prompts, completions and every column)")
    path = _inline(tmp_path, reward_funcs=["rewards_load.nowhere"])
    assert _load_error(path).endswith("reward_funcs[0]: reward function 'rewards_load:nowhere': cannot load reference "
                                      "(AttributeError: module 'rewards_load' has no attribute 'nowhere')")
    path = _inline(tmp_path, reward_funcs=[], reward_weights=[1.0])
    assert "reward_funcs: " in _load_error(path)
    (tmp_path / "q.jsonl").write_text('{"question": "2+2?", "answer": "4", "completions": "x"}\n')
    path.write_text(suite_yaml(limit=1, extra={"questions": {"source": "q.jsonl"}}))
    assert _load_error(path) == (f"{tmp_path / 'q.jsonl'}:1: question 'q-0000': field 'completions' is an argument "
                                 "rlhf-eval gives reward functions; rename it")


def test_module_references_load_and_the_decorator_refuses_what_trl_could_not_call(tmp_path, monkeypatch):
    (tmp_path / "rewards_ref.py").write_text(TEAM_REWARDS)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "q.jsonl").write_text('{"question": "2+2?", "answer": "4", "solution": "4"}\n')
    path = tmp_path / "s.yaml"
    path.write_text(suite_yaml(samples=2, extra={"questions": {"source": "q.jsonl"},
                                                 "reward_funcs": ["rewards_ref:boxed_accuracy", "accuracy"]}))
    suite = load_suite(path)
    assert suite.reward_funcs == [("rewards_ref:boxed_accuracy", 1.0), ("accuracy", 1.0)]
    result = score_question(suite, suite.questions[0], _traces(r"so \boxed{4}", "A: 4"))
    assert result.rewards_by_function == {"rewards_ref:boxed_accuracy": [1.0, 0.0], "accuracy": [1.0, 1.0]}
    assert list(result.rewards) == [2.0, 1.0]
    with pytest.raises(ValueError, match=r"^a reward function name is text without spaces or ':'"):
        reward_function("a:b")(lambda completions, **kwargs: [])
    with pytest.raises(ValueError, match=r"^reward function 'accuracy' is already registered by "
                                         r"rlhf_eval\.rewards:accuracy; register "):
        reward_function("accuracy")(lambda completions, **kwargs: [])
    with pytest.raises(ValueError, match=r"^reward function 'cls': <class 'int'> is not a function taking "):
        REWARDS.register("cls", int)


# ------------------------------------------------------------------ what a reward function does wrong

@pytest.mark.parametrize("body, message", [
    ("raise KeyError('solution')", "reward function 'odd' raised KeyError: 'solution' on question 'a'"),
    ("raise SystemExit(3)", "reward function 'odd' raised SystemExit: 3 on question 'a'"),
    ("return [1.0]", ("reward function 'odd' returned 1 rewards for 2 completions on question 'a'; return one per "
                     "completion")),
    ("return [1.0, 'high']", ("reward function 'odd' returned str 'high' for completion 1 on question 'a'; a reward "
                             "is a number or None")),
    ("return [float('inf'), 0.0]", ("reward function 'odd' returned inf for completion 0 on question 'a'; a reward "
                                   "is finite (None, or NaN, means it does not apply)")),
    ("return [10 ** 400, 0]", ("reward function 'odd' returned int 100000000000000000000000000000000000000… for "
                               "completion 0 on question 'a', beyond the float range (about ±1.8e308); a reward is "
                               "finite (None, or NaN, means it does not apply)")),
    ("import fractions\n    return [0.5, fractions.Fraction(-10 ** 400, 3)]",
     ("reward function 'odd' returned Fraction Fraction(-10000000000000000000000000000… for completion 1 "
      "on question 'a', beyond the float range (about ±1.8e308); a reward is finite (None, or NaN, means it "
      "does not apply)")),
    ("return 1.0", ("reward function 'odd' returned float on question 'a'; return a list with one float (or None) "
                   "per completion")),
    ("return {'a': 1.0, 'b': 2.0}", ("reward function 'odd' returned dict on question 'a'; return a list with one "
                                    "float (or None) per completion")),
    ("return (1.0 / (c == 'A: 4') for c in completions)",  # a generator that raises partway, at the second
     ("reward function 'odd' raised ZeroDivisionError: float division by zero on question 'a' (while reading the "
      "generator it returned)")),
])
def test_what_a_reward_function_does_wrong_is_one_line_naming_it_and_the_question(tmp_path, body, message):
    namespace: dict = {}
    exec(f"def odd(completions, **kwargs):\n    {body}\n", namespace)  # noqa: S102 - the faulty function under test
    REWARDS.register("odd", namespace["odd"])
    try:
        suite = load_suite(_inline(tmp_path, reward_funcs=["accuracy", "odd"]))
        with pytest.raises(RewardError) as info:
            score_question(suite, suite.questions[0], _traces("A: 4", "A: 5"))
        assert str(info.value) == message
    finally:
        REWARDS.unregister("odd")


def test_numpy_arrays_tuples_generators_and_nan_are_taken_as_trl_takes_them(tmp_path):
    REWARDS.register("np", lambda completions, **kwargs: np.array([1, 0], dtype=np.int64))
    REWARDS.register("gen", lambda completions, **kwargs: (float("nan") if "5" in c else True for c in completions))
    try:
        suite = load_suite(_inline(tmp_path, reward_funcs=["np", "gen"]))
        result = score_question(suite, suite.questions[0], _traces("A: 4", "A: 5"))
        assert result.rewards_by_function == {"np": [1.0, 0.0], "gen": [1.0, None]}
        assert list(result.rewards) == [2.0, 0.0]
    finally:
        REWARDS.unregister("np")
        REWARDS.unregister("gen")


def test_a_weighted_reward_beyond_the_float_range_is_one_line_naming_the_functions_and_the_question(tmp_path):
    REWARDS.register("huge", lambda completions, **kwargs: [None if "5" in c else 1e200 for c in completions])
    REWARDS.register("opposed", lambda completions, **kwargs: [-1e308 if "4" in c else None for c in completions])
    try:
        for funcs, weights, message in [
            (["accuracy", "huge"], [1e308, 1e308], "reward functions 'accuracy', 'huge' give completion 0 on "
             "question 'a' a weighted reward of inf (1 × 1e+308 + 1e+200 × 1e+308)"),
            (["huge"], [1e200], "reward function 'huge' gives completion 0 on question 'a' a weighted reward of inf "
             "(1e+200 × 1e+200)"),
            (["huge", "opposed"], [1e110, 10.0], "reward functions 'huge', 'opposed' give completion 0 on question "
             "'a' a weighted reward of nan (1e+200 × 1e+110 + -1e+308 × 10)"),  # inf - inf: not "does not apply"
        ]:
            suite = load_suite(_inline(tmp_path, reward_funcs=funcs, reward_weights=weights))
            with pytest.raises(RewardError) as info, warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)  # numpy's overflow warning is no second report
                score_question(suite, suite.questions[0], _traces("A: 4", "A: 5"))
            assert str(info.value) == (message + "; keep each reward times its weight, and their sum, within the "
                                       "float range (about ±1.8e308)")
        # Each sum finite, but the group's std is not: refused too, as the spread would be inf in the JSON.
        REWARDS.register("apart", lambda completions, **kwargs: [1e200 if "4" in c else -1e200 for c in completions])
        suite = load_suite(_inline(tmp_path, reward_funcs=["apart"]))
        with pytest.raises(RewardError) as info, warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            score_question(suite, suite.questions[0], _traces("A: 4", "A: 5"))
        assert str(info.value) == ("the weighted rewards on question 'a' (from -1e+200 to 1e+200) are too large for "
                                   "their group's mean and std to be finite; scale the reward functions or "
                                   "reward_weights down")
        # A completion no function applies to stays NaN (unscorable), not an overflow.
        assert np.isnan(weighted_sum(np.array([[np.nan, np.nan], [1.0, np.nan]]), [1e308, 1e308])[0])
    finally:
        for name in ("huge", "opposed", "apart"):
            REWARDS.unregister(name)


def test_a_weighted_reward_that_overflows_fails_that_question_and_the_run_goes_on(team, live):
    team.makefile(".yaml", demo=suite_yaml(samples=2, limit=2, extra={
        "reward_funcs": ["accuracy", "team_rewards:huge_on_robes"], "reward_weights": [1.0, 10.0]}))
    result, report = report_json(team, "--rlhf-record-mode=once")
    result.assert_outcomes(passed=1, failed=1)
    failure = [line for line in result.stdout.lines if line.startswith("demo.yaml::q-0001:")]
    assert len(failure) == 1 and failure[0].startswith(
        "demo.yaml::q-0001: reward functions 'accuracy', 'team_rewards:huge_on_robes' give completion 0 on question "
        "'q-0001' a weighted reward of inf (")
    assert "Traceback" not in result.stdout.str()
    assert [q["id"] for s in report["suites"] for q in s["questions"]] == ["q-0000", "q-0001"]


def test_a_reward_function_that_raises_fails_that_question_in_one_line_and_the_run_goes_on(team, live):
    team.makefile(".yaml", demo=suite_yaml(samples=2, limit=2, extra={
        "reward_funcs": ["accuracy", "team_rewards:raises_on_robes"]}))
    result = report_json(team, "--rlhf-record-mode=once")[0]
    result.assert_outcomes(passed=1, failed=1)
    failure = [line for line in result.stdout.lines if line.startswith("demo.yaml::q-0001:")]
    assert failure == [("demo.yaml::q-0001: reward function 'team_rewards:raises_on_robes' raised ValueError: no "
                       "robes here on question 'q-0001'")]
    assert "Traceback" not in result.stdout.str()
