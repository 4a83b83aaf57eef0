"""Suite loading: real YAML and JSONL files, and the one-line errors for bad ones."""
import json
import re

import pytest

from conftest import GSM8K_TEST, REPO
from rlhf_eval import SuiteError, load_suite
from rlhf_eval.suite import render

HEAD = "suite: s\nmodel: {name: gemini-2.0-flash}\nsamples: 2\n"


def write(tmp_path, text, name="s.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path):
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_shipped_suites_load():
    gsm8k = load_suite(REPO / "suites" / "gsm8k_smoke.yaml")
    assert len(gsm8k.questions) == 30 and gsm8k.questions[0].id == "gsm8k-0000"
    assert gsm8k.questions[0].answer == "18"
    assert "Janet" in gsm8k.render_prompt(gsm8k.questions[0])
    choice = load_suite(REPO / "suites" / "science_choice.yaml")
    assert "B) 100 °C" in choice.render_prompt(choice.question("water-boiling"))


def test_jsonl_source_offset_limit_id_field_and_regex(tmp_path):
    rows = [{"uid": f"u{i}", "q": f"What is {i}+{i}?", "a": f"work\n#### {2 * i}"} for i in range(6)]
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    suite = load_suite(write(tmp_path, HEAD + "questions:\n  source: data.jsonl\n  question_field: q\n"
                             "  answer_field: a\n  id_field: uid\n  answer_regex: '####\\s*(\\d+)'\n"
                             "  offset: 2\n  limit: 3\n"))
    assert [(q.id, q.answer, q.line) for q in suite.questions] == [("u2", "4", 3), ("u3", "6", 4), ("u4", "8", 5)]


def test_gsm8k_source_ids_follow_the_row_number(tmp_path):
    suite = load_suite(write(tmp_path, HEAD + f"questions:\n  source: {GSM8K_TEST}\n  offset: 5\n  limit: 2\n"))
    assert [q.id for q in suite.questions] == ["test-0005", "test-0006"]


@pytest.mark.parametrize("jsonl,extra,expected", [
    (None, "", r"s\.yaml:5: questions\.source: no file 'data\.jsonl'"),
    ('{"question": "q", "answer": "1"}\n{oops\n', "", r"data\.jsonl:2: not valid JSON"),
    ('{"question": "q", "answr": "1"}\n', "", r"data\.jsonl:1: no field 'answer' \(did you mean 'answr'\?\)"),
    ('{"question": "q", "answer": "no number"}\n', "  answer_regex: '####\\s*(.+)'\n",
     r"data\.jsonl:1: answer_regex .* does not match"),
    ('{"question": "q", "answer": "x"}\n', "  answer_regex: '(unclosed'\n",
     r"s\.yaml:\d+: questions\.answer_regex: answer_regex does not compile"),
    ('["a list"]\n', "", r"data\.jsonl:1: each line must be a JSON object"),
])
def test_bad_jsonl_sources(tmp_path, jsonl, extra, expected):
    if jsonl is not None:
        (tmp_path / "data.jsonl").write_text(jsonl)
    message = error_of(write(tmp_path, HEAD + "questions:\n  source: data.jsonl\n" + extra))
    assert re.search(expected, message), message


def test_non_utf8_suite_names_the_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_bytes(HEAD.encode() + b"description: caf\xe9\n")
    assert error_of(path).endswith("s.yaml:4: not UTF-8 text; save the suite as UTF-8")


def test_a_reference_the_verifier_cannot_read_is_caught_at_load(tmp_path):
    message = error_of(write(tmp_path, HEAD + "questions:\n  - {id: a, question: q, answer: lots}\n"))
    assert re.search(r"s\.yaml:5: question 'a': answer 'lots': ", message), message


@pytest.mark.parametrize("body,expected", [
    ("prompt: 'no placeholder'\nquestions:\n  - {id: a, question: q, answer: 1}\n",
     r"s\.yaml:4: prompt has no \{question\} placeholder"),
    ("prompt: '{question} {answer}'\nquestions:\n  - {id: a, question: q, answer: 1}\n",
     r"s\.yaml:4: prompt uses \{answer\}: the ground truth must never reach the model"),
    ("thresholds:\n  accuracy: {min: 0.9, max: 0.1}\nquestions:\n  - {id: a, question: q, answer: 1}\n",
     r"s\.yaml:5: thresholds\.accuracy: impossible threshold: min 0\.9 > max 0\.1"),
    ("thresholds:\n  accuracy: {}\nquestions:\n  - {id: a, question: q, answer: 1}\n",
     r"thresholds\.accuracy: a threshold needs min and/or max"),
    ("suite_thresholds:\n  frac_zero_sprd: {max: 0.5}\nquestions:\n  - {id: a, question: q, answer: 1}\n",
     r"s\.yaml:5: suite_thresholds\.frac_zero_sprd: unknown metric \(did you mean 'frac_zero_spread'\?\)"),
    ("questions:\n  - {id: a, question: q, answer: 1, threshholds: {accuracy: {min: 1}}}\n",
     r"unknown key 'threshholds' \(did you mean 'thresholds'\?\)"),
    ("questions:\n  - {id: 'has space', question: q, answer: 1}\n", r"question id 'has space' must be"),
    ("questions: []\n", r"s\.yaml:4: the suite has no questions"),
    ("verifier: {name: numeric, tolerence: 0.1}\nquestions:\n  - {id: a, question: q, answer: 1}\n",
     r"s\.yaml:4: verifier: .*tolerence"),
    ("dpo: {pairing: best}\nquestions:\n  - {id: a, question: q, answer: 1}\n",
     r"s\.yaml:4: dpo\.pairing: expected 'all' or 'best_worst', got 'best'"),
    ("questions:\n  - {id: a, question: q, answer: 1}\nquestions:\n  - {id: b, question: q, answer: 1}\n",
     r"s\.yaml:6: invalid YAML|s\.yaml:6: duplicate key 'questions'"),
])
def test_bad_suites_one_line_each(tmp_path, body, expected):
    message = error_of(write(tmp_path, HEAD + body))
    assert re.search(expected, message), message


def test_question_thresholds_override_suite_thresholds(tmp_path):
    suite = load_suite(write(tmp_path, HEAD + "thresholds:\n  accuracy: {min: 0.5}\n  spread: {min: 0.1}\n"
                             "questions:\n  - {id: a, question: q, answer: 1, thresholds: {accuracy: {min: 0.9}}}\n"
                             "  - {id: b, question: q, answer: 2}\n"))
    a, b = suite.questions
    assert a.thresholds["accuracy"].min == 0.9 and a.thresholds["spread"].min == 0.1
    assert b.thresholds["accuracy"].min == 0.5


def test_render_keeps_latex_braces():
    assert render(r"Put the answer in \boxed{}. {{literal}} {question}", {"question": "1+1?"}) == \
        r"Put the answer in \boxed{}. {literal} 1+1?"


Q = "questions:\n  - {id: a, question: q, answer: 1}\n"


@pytest.mark.parametrize("body, expected", [
    ("model: {name: m, temperature: true}\n", "s.yaml:3: model.temperature: expected a number, got True"),
    ("reward_weights: [true]\n", "s.yaml:4: reward_weights[0]: expected a number, got True"),
    ("thresholds:\n  accuracy: {min: true}\n", "s.yaml:5: thresholds.accuracy.min: expected a number, got True"),
    ("model: {name: m, price: {input: '0.1', output: 1}}\n",
     "s.yaml:3: model.price.input: expected a number, got '0.1'"),
    ("rewards: {correct: yes}\n", "s.yaml:4: rewards.correct: expected a number, got True"),
])
def test_a_boolean_or_text_is_no_number_in_any_setting(tmp_path, body, expected):
    head = HEAD if not body.startswith("model:") else "suite: s\nsamples: 2\n"
    assert error_of(write(tmp_path, head + body + Q)).endswith(expected)


def test_numbers_yaml_1_2_writes_with_an_exponent_are_numbers(tmp_path):
    """PyYAML (YAML 1.1) reads `2e0` and `1e-4` as text; every YAML 1.2 tool reads numbers."""
    suite = load_suite(write(tmp_path, HEAD + "reward_weights: [2e0]\ngrpo: {epsilon: 1e-4}\nthresholds:\n"
                                           "  accuracy: {min: 5E-1}\ndpo: {beta: +1e-1}\n" + Q))
    assert suite.reward_funcs == [("accuracy", 2.0)]
    assert (suite.spec.grpo.epsilon, suite.spec.thresholds["accuracy"].min, suite.spec.dpo.beta) == (1e-4, 0.5, 0.1)


@pytest.mark.parametrize("body, expected", [
    ("thresholds:\n  unique_traces: {min: 3}\n" + Q, "s.yaml:5: thresholds.unique_traces.min: 3 can never be met: "
     "a question has 2 traces (samples: 2)"),
    ("questions:\n  - {id: a, question: q, answer: 1, thresholds: {correct: {min: 2.5}}}\n",
     "s.yaml:5: questions[0] (a).thresholds.correct.min: 2.5 can never be met: a question has 2 traces (samples: 2)"),
])
def test_a_count_of_traces_above_samples_can_never_be_met(tmp_path, body, expected):
    assert error_of(write(tmp_path, HEAD + body)).endswith(expected)
    load_suite(write(tmp_path, HEAD + body.replace("min: 3", "min: 2").replace("min: 2.5", "min: 2")))
