"""A corpus of bad input (tests/bad_input/): every mistake reads as ONE line naming file:line, what
is wrong and what to do, and the run stops before sampling anything. Never a traceback, never a
pydantic dump.

Each case is a small real file. The expected message is compared for equality, after a chdir to
tests/bad_input (messages show paths relative to the working directory).

Messages the corpus found inadequate are in INADEQUATE: their expected line is the *proposed*
one and the case is a strict xfail, so it starts failing (XPASS) the moment the product says it,
and the mark can be removed.
"""
import os
import re
import shutil
import time
from pathlib import Path

import pytest
import yaml

from conftest import GSM8K_TEST, TEST_KEY
from rlhf_eval import Backends, SuiteError, evaluate_question, load_suite, sample_question
from rlhf_eval.recording import CassetteProblem

BAD = Path(__file__).resolve().parent / "bad_input"
ABS = "<BAD>"  # stands for the absolute path of tests/bad_input in a few messages
HAVE_LIBYAML = hasattr(yaml, "CSafeLoader")  # PyYAML's wording of syntax errors depends on it
WORDED_BY_LIBYAML = {"yaml_unclosed_bracket.yaml", "yaml_bad_indentation.yaml", "yaml_tab_indentation.yaml",
                     "yaml_unterminated_quote.yaml", "control_character.yaml"}

# file under tests/bad_input → the exact line load_suite raises
CASES = {
    "fraction_bound.yaml": "fraction_bound.yaml:6: thresholds.accuracy.min: accuracy is a fraction from 0 to 1, "
                           "not 50 (for 50% write 0.5)",
    "fraction_bound_suite.yaml": "fraction_bound_suite.yaml:6: suite_thresholds.frac_zero_spread.max: frac_zero_spread "
                                 "is a fraction from 0 to 1, not 1.5 (for 50% write 0.5)",
    "dpo_scalar.yaml": "dpo_scalar.yaml:5: dpo: expected a mapping, got 5",
    "reasoning_tags_same.yaml": "reasoning_tags_same.yaml:4: model.reasoning_tags: the opening and closing tags are "
                                "both '<think>'; the closing one is e.g. '</think>'",
    "reasoning_tags_one.yaml": "reasoning_tags_one.yaml:4: model.reasoning_tags: must be an opening and a closing tag, "
                               "e.g. ['<think>', '</think>'], or null",
    # --- YAML syntax (wording from libyaml) ---
    "yaml_unclosed_bracket.yaml": "yaml_unclosed_bracket.yaml:3: invalid YAML: did not find expected ',' or ']'",
    "yaml_bad_indentation.yaml":
        "yaml_bad_indentation.yaml:4: invalid YAML: mapping values are not allowed in this context",
    "yaml_tab_indentation.yaml":
        "yaml_tab_indentation.yaml:3: invalid YAML: a tab character indents this line; indent with spaces",
    "yaml_unterminated_quote.yaml":
        "yaml_unterminated_quote.yaml:5: invalid YAML: the quoted string that starts here is never closed "
        "(the parser ran on to line 7); close the quote",
    "duplicate_yaml_key.yaml": "duplicate_yaml_key.yaml:5: duplicate key 'temperature'",
    "control_character.yaml":
        "control_character.yaml:5: invalid YAML: unacceptable character #x001b: control characters are not allowed",
    # --- not a mapping at all ---
    "doc_is_list.yaml":
        "doc_is_list.yaml:1: a suite must be a YAML mapping with `suite`, `model`, `samples` and `questions`",
    "doc_is_scalar.yaml":
        "doc_is_scalar.yaml:1: a suite must be a YAML mapping with `suite`, `model`, `samples` and `questions`",
    "empty.yaml": "empty.yaml:1: a suite must be a YAML mapping with `suite`, `model`, `samples` and `questions`",
    "comments_only.yaml":
        "comments_only.yaml:1: a suite must be a YAML mapping with `suite`, `model`, `samples` and `questions`",
    # --- wrong types ---
    "type_samples_word.yaml": "type_samples_word.yaml:4: samples: expected an integer, got 'eight'",
    "type_samples_float.yaml": "type_samples_float.yaml:4: samples: expected an integer, got 2.5",
    "type_temperature_word.yaml": "type_temperature_word.yaml:4: model.temperature: expected a number, got 'hot'",
    "type_logprobs_word.yaml": "type_logprobs_word.yaml:4: model.logprobs: expected true or false, got 'maybe'",
    "type_model_is_string.yaml": "type_model_is_string.yaml:2: model: expected a mapping, got 'gemini-2.0-flash'",
    "type_questions_is_string.yaml":
        "type_questions_is_string.yaml:5: questions: expected a mapping, got 'data/questions.jsonl'",
    "type_answer_is_list.yaml": "type_answer_is_list.yaml:8: questions[0] (a).answer: must be a string or a number",
    "threshold_bound_not_mapping.yaml":
        "threshold_bound_not_mapping.yaml:6: thresholds.accuracy: expected a mapping, got 0.5",
    # --- out of range ---
    "range_temperature_3.yaml":
        "range_temperature_3.yaml:4: model.temperature: Input should be less than or equal to 2",
    "range_samples_0.yaml": "range_samples_0.yaml:4: samples: Input should be greater than or equal to 1",
    "range_top_logprobs_25.yaml":
        "range_top_logprobs_25.yaml:5: model.top_logprobs: Input should be less than or equal to 20",
    "range_candidates_9.yaml":
        "range_candidates_9.yaml:4: model.candidates_per_request: Input should be less than or equal to 8",
    # --- unknown keys, with the suggestion ---
    "unknown_key_top.yaml": "unknown_key_top.yaml:4: sampels: unknown key (did you mean 'samples'?)",
    "unknown_key_model.yaml": "unknown_key_model.yaml:4: model.temprature: unknown key (did you mean 'temperature'?)",
    "unknown_key_dpo.yaml": "unknown_key_dpo.yaml:7: dpo.pairng: unknown key (did you mean 'pairing'?)",
    "unknown_key_grpo.yaml": "unknown_key_grpo.yaml:6: grpo.scale_reward: unknown key (did you mean 'scale_rewards'?)",
    "unknown_key_bound.yaml": "unknown_key_bound.yaml:7: thresholds.accuracy.mn: unknown key (did you mean 'min'?)",
    "unknown_key_question.yaml":
        "unknown_key_question.yaml:9: questions[0] (a): unknown key 'threshholds' (did you mean 'thresholds'?); "
        "extra question fields must appear in the prompt as {threshholds}",
    "unknown_key_source.yaml":
        "unknown_key_source.yaml:7: questions.answer_feild: unknown key (did you mean 'answer_field'?)",
    "unknown_provider.yaml":
        "unknown_provider.yaml:3: model.provider: unknown sampler provider 'anthropic'; known: gemini, gemini-legacy, "
        "hf, openai, trl_vllm, vllm",
    # --- missing required fields ---
    "missing_suite.yaml": "missing_suite.yaml:1: suite: required key is missing",
    "not_a_suite.yaml": "not_a_suite.yaml:1: not a suite: none of `suite`, `model`, `samples`, `questions` is here; "
                        "a suite starts with `suite: <name>` "
                        "(keep other YAML files out of the rlhf_suite_files patterns)",
    "missing_model.yaml": "missing_model.yaml:1: model: required key is missing",
    "missing_model_name.yaml": "missing_model_name.yaml:2: model.name: required key is missing",
    "missing_samples.yaml": "missing_samples.yaml:1: samples: required key is missing",
    "missing_questions.yaml": "missing_questions.yaml:1: questions: required key is missing",
    "missing_question_answer.yaml": "missing_question_answer.yaml:9: questions[1] (b).answer: required key is missing",
    "missing_question_question.yaml":
        "missing_question_question.yaml:6: questions[0] (a).question: required key is missing",
    "missing_question_id.yaml": "missing_question_id.yaml:6: questions[0].id: required key is missing",
    "empty_questions.yaml": "empty_questions.yaml:5: the suite has no questions",
    # --- duplicates ---
    "duplicate_id_inline.yaml":
        "duplicate_id_inline.yaml:9: duplicate question id 'ducks' (first at line 6); "
        "ids must be unique within a suite",
    "duplicate_id_jsonl.yaml":
        "data/duplicate_ids.jsonl:4: duplicate question id 'q1' (first at line 1); ids must be unique within a suite",
    # --- thresholds ---
    "threshold_min_gt_max.yaml":
        "threshold_min_gt_max.yaml:6: thresholds.accuracy: impossible threshold: min 0.9 > max 0.1",
    "threshold_empty_bound.yaml": "threshold_empty_bound.yaml:6: thresholds.spread: a threshold needs min and/or max",
    "threshold_on_sideways.yaml":
        "threshold_on_sideways.yaml:6: thresholds.accuracy.on: expected 'point', 'lower' or 'upper', got 'middle'",
    "unknown_metric_question.yaml":
        "unknown_metric_question.yaml:10: questions[0] (a).thresholds.acuracy: unknown metric "
        "(did you mean 'accuracy'?); "
        "known: accuracy, pass_at_k, maj_at_k, unparsable_rate, pairs, mean_margin, reward_accuracy, dpo_loss, spread, "
        "nonzero_advantages, mean_logp, mean_tokens, mean_reasoning_tokens, unique_traces, prompt_tokens, "
        "output_tokens, total_tokens, cost_usd, margin_per_token, correct, incorrect, unparsable, blocked, truncated, "
        "error",
    "unknown_metric_suite.yaml":
        "unknown_metric_suite.yaml:6: suite_thresholds.frac_zero_sprd: unknown metric "
        "(did you mean 'frac_zero_spread'?); "
        "known: accuracy, pass_at_k, unparsable_rate, pairs, mean_margin, reward_accuracy, dpo_loss, frac_zero_spread, "
        "mean_spread, questions_failed, mean_tokens, mean_reasoning_tokens, prompt_tokens, output_tokens, "
        "total_tokens, cost_usd, margin_per_token, margin_length_corr, maj_at_k, unique_traces",
    "question_metric_in_suite_thresholds.yaml":
        "question_metric_in_suite_thresholds.yaml:6: suite_thresholds.spread: unknown metric (did you mean "
        "'mean_spread'?); known: accuracy, pass_at_k, unparsable_rate, pairs, mean_margin, reward_accuracy, dpo_loss, "
        "frac_zero_spread, mean_spread, questions_failed, mean_tokens, mean_reasoning_tokens, prompt_tokens, "
        "output_tokens, total_tokens, cost_usd, margin_per_token, margin_length_corr, maj_at_k, unique_traces",
    "on_lower_no_interval.yaml":
        "on_lower_no_interval.yaml:6: thresholds.pairs.on: pairs has no interval; `on: lower` works for accuracy, "
        "reward_accuracy, mean_margin, spread",
    "on_lower_quoted.yaml":
        "on_lower_quoted.yaml:6: thresholds.pairs.on: pairs has no interval; `on: lower` works for accuracy, "
        "reward_accuracy, mean_margin, spread",
    # --- verifiers ---
    "unknown_verifier.yaml": "unknown_verifier.yaml:5: verifier: unknown verifier 'numerik'; did you mean 'numeric'?",
    "unknown_verifier_option.yaml":
        "unknown_verifier_option.yaml:5: verifier: numeric verifier: unknown option 'tolerence'; "
        "known: abs_tol, rel_tol",
    "unknown_question_verifier_option.yaml":
        "unknown_question_verifier_option.yaml:9: questions[0] (a).verifier: numeric verifier: unknown option "
        "'abs_tolerance'; did you mean 'abs_tol'?",
    "verifier_option_wrong_type.yaml":
        "verifier_option_wrong_type.yaml:5: verifier: numeric verifier: option 'rel_tol' must be int or float, "
        "got str 'tiny'",
    "regex_bad_pattern.yaml":
        "regex_bad_pattern.yaml:5: verifier: regex verifier: bad pattern 'Answer: (?P<answer>[A-D]': missing ), "
        "unterminated subpattern at position 8",
    "regex_missing_pattern.yaml":
        "regex_missing_pattern.yaml:5: verifier: regex verifier: option 'pattern' is required",
    "bad_answer_regex.yaml":
        "bad_answer_regex.yaml:7: questions.answer_regex: answer_regex does not compile: missing ), unterminated "
        "subpattern at position 7",
    "numeric_answer_unreadable.yaml":
        "numeric_answer_unreadable.yaml:7: question 'b': answer 'lots': numeric verifier: reference 'lots' contains "
        "no number",
    "empty_answer.yaml": "empty_answer.yaml:6: question 'a' has an empty answer",
    # --- JSONL sources ---
    "jsonl_missing_file.yaml":
        f"jsonl_missing_file.yaml:6: questions.source: no file 'data/no_such_file.jsonl' "
        f"(looked for {ABS}/data/no_such_file.jsonl)",
    "jsonl_malformed_line.yaml": "data/malformed.jsonl:3: not valid JSON: Expecting ',' delimiter",
    "jsonl_missing_question_field.yaml":
        "data/no_question_field.jsonl:2: no field 'question' (the row has the keys problem, answer); set "
        "questions.question_field in the suite",
    "jsonl_missing_answer_field.yaml":
        "data/no_answer_field.jsonl:1: no field 'solution' (did you mean 'solutions'?); set questions.answer_field "
        "in the suite",
    "jsonl_row_not_object.yaml": "data/row_not_object.jsonl:2: each line must be a JSON object",
    "jsonl_question_not_string.yaml":
        "data/question_not_string.jsonl:2: question: expected text or a list of chat messages ({role, content}), "
        "got {'text': 'What is 2+2?'}",
    "jsonl_answer_regex_no_match.yaml":
        "data/good.jsonl:1: answer_regex '####\\\\s*(.+)' does not match the answer '2'",
    "jsonl_id_with_slash.yaml":
        "data/slash_ids.jsonl:2: question id '../q2' must be letters, digits, '.', '_' or '-' "
        "(it names the cassette file)",
    "jsonl_prompt_missing_field.yaml":
        "data/good.jsonl:1: prompt uses {topic} but question 'good-0000' has no field 'topic'; add it to the question "
        "or remove it from the prompt",
    "jsonl_empty.yaml": "jsonl_empty.yaml:6: questions.source: data/empty.jsonl: the dataset has no rows; name a "
                        "file or split that holds the questions",
    # --- prompts ---
    "prompt_missing_field.yaml":
        "prompt_missing_field.yaml:8: prompt uses {topic} but question 'b' has no field 'topic'; add it to the "
        "question or remove it from the prompt",
    "prompt_without_question.yaml":
        "prompt_without_question.yaml:5: prompt has no {question} placeholder; add it where the question goes",
    "prompt_uses_answer.yaml":
        "prompt_uses_answer.yaml:5: prompt uses {answer}: the ground truth must never reach the model; write "
        "{{answer}} for literal braces",
    # --- ids and names ---
    "id_with_space.yaml":
        "id_with_space.yaml:6: question id 'question one' must be letters, digits, '.', '_' or '-' (it names the "
        "cassette file)",
    "id_with_slash.yaml":
        "id_with_slash.yaml:7: question id 'gsm8k/0001' must be letters, digits, '.', '_' or '-' (it names the "
        "cassette file)",
    "suite_name_with_space.yaml":
        "suite_name_with_space.yaml:1: suite: must be letters, digits, '.', '_' or '-' (it names the cassette folder)",
    # --- provider-specific ---
    "openai_completions_no_max_tokens.yaml":
        "openai_completions_no_max_tokens.yaml:2: model: endpoint completions needs max_output_tokens (servers "
        "default to 16 tokens)",
    "vertex_non_gemini.yaml": "vertex_non_gemini.yaml:2: model: vertex is only for provider gemini",
    "top_logprobs_without_logprobs.yaml":
        "top_logprobs_without_logprobs.yaml:2: model: top_logprobs needs logprobs: true",
    "length_normalized_with_reference.yaml":
        "length_normalized_with_reference.yaml:6: dpo: length_normalized (SimPO) is reference-free; "
        "set reference: none",
    "legacy_thinking_budget.yaml":
        "legacy_thinking_budget.yaml:2: model: google-generativeai cannot send thinking_budget; use provider gemini",
    "reference_template_without_prompt.yaml":
        "reference_template_without_prompt.yaml:10: dpo.reference.template: template must contain {prompt}",
    "dpo_reference_unknown_provider.yaml":
        "dpo_reference_unknown_provider.yaml:8: dpo.reference.provider: unknown scorer provider 'sglang'; known: hf, "
        "openai",
    # --- encodings ---
    "non_utf8_suite.yaml": "non_utf8_suite.yaml:5: not UTF-8 text; save the suite as UTF-8",
    "utf16_suite.yaml": "utf16_suite.yaml:1: not UTF-8 text; save the suite as UTF-8",
    "non_utf8_jsonl.yaml": "data/latin1.jsonl:3: not UTF-8 text; save the file as UTF-8",
    # --- YAML tags, aliases and sizes: only plain data is built, and never too much of it ---
    "tag_unknown_scalar.yaml": "tag_unknown_scalar.yaml:4: unknown YAML tag '!foo'; remove it",
    "tag_int_not_a_number.yaml": "tag_int_not_a_number.yaml:4: 'hi' is not a valid !!int; fix the value or remove "
                                 "the tag",
    "tag_float_not_a_number.yaml": "tag_float_not_a_number.yaml:4: 'warm' is not a valid !!float; fix the value or "
                                   "remove the tag",
    "tag_python_object.yaml": "tag_python_object.yaml:5: YAML tag '!!python/object/apply:os.system' is not supported "
                              "in suites (only plain values, lists and mappings); remove it",
    "tag_binary.yaml": "tag_binary.yaml:5: YAML tag '!!binary' is not supported in suites (only plain values, lists "
                       "and mappings); remove it",
    "tag_set.yaml": "tag_set.yaml:5: YAML tag '!!set' is not supported in suites (only plain values, lists and "
                    "mappings); remove it",
    "tag_str_on_mapping.yaml": "tag_str_on_mapping.yaml:2: YAML tag '!!str' cannot tag a mapping; remove it",
    "alias_recursive.yaml": "alias_recursive.yaml:5: this anchor's value contains an alias to itself (a recursive "
                            "structure); a suite cannot hold one, remove the alias",
    "billion_laughs.yaml": "billion_laughs.yaml:9: YAML aliases expand to more than 10,000 values; write the values "
                           "out or alias less",
    "deep_nesting.yaml": "deep_nesting.yaml:5: values are nested more than 16 levels deep; a suite needs only a few",
    "huge_int.yaml": "huge_int.yaml:4: the number 999999999999999999999999999999999999999… has 5,000 digits; write "
                     "a smaller number",
    "threshold_nan.yaml": "threshold_nan.yaml:6: thresholds.spread.min: expected a finite number, got nan",
    # a base URL that cannot reach a server, shown without its credentials
    "base_url_bad_port.yaml": "base_url_bad_port.yaml:5: model.base_url: 'http://***@localhost:80000/v1' is not a "
                              "server URL (its port is not a number from 0 to 65535); write e.g. "
                              "http://localhost:8000/v1",
    "scorer_base_url_no_scheme.yaml": "scorer_base_url_no_scheme.yaml:4: model.scorer.base_url: "
                                      "'localhost:8000/v1?key=***' "
                                      "is not a server URL (it needs a scheme, http:// or https://); write e.g. "
                                      "http://localhost:8000/v1",
    # --- hints, and every problem at once (a line each) ---
    "k_for_samples.yaml": "k_for_samples.yaml:4: k: unknown key; the number of traces per question is `samples`",
    "typo_question_key.yaml": "typo_question_key.yaml:8: questions[0] (a).anwser: unknown key (did you mean 'answer'?)",
    "regex_flag_unknown.yaml": "regex_flag_unknown.yaml:5: verifier: regex verifier: unknown flag 'IGNORCASE' (did you "
                               "mean 'IGNORECASE'?); known: IGNORECASE, MULTILINE, DOTALL, VERBOSE, ASCII (or the "
                               "letters imsxa)",
    "fraction_bound_question.yaml": "fraction_bound_question.yaml:9: questions[0] (a).thresholds.maj_at_k.max: "
                                    "maj_at_k is a fraction from 0 to 1, not -0.2 (for 50% write 0.5)",
    "several_problems.yaml":
        "several_problems.yaml:4: model.temprature: unknown key (did you mean 'temperature'?)\n"
        "several_problems.yaml:5: samples: Input should be greater than or equal to 1\n"
        "several_problems.yaml:7: dpo.beta: Input should be greater than 0\n"
        "several_problems.yaml:9: questions[0] (a).answer: required key is missing",
    "several_question_problems.yaml":
        "several_question_problems.yaml:6: thresholds.accuracy.min: accuracy is a fraction from 0 to 1, not 1.5 (for "
        "50% write 0.5)\n"
        "several_question_problems.yaml:8: questions[0] (a).thresholds.acuracy: unknown metric (did you mean "
        "'accuracy'?); known: accuracy, pass_at_k, maj_at_k, unparsable_rate, pairs, mean_margin, reward_accuracy, "
        "dpo_loss, spread, nonzero_advantages, mean_logp, mean_tokens, mean_reasoning_tokens, unique_traces, "
        "prompt_tokens, output_tokens, total_tokens, cost_usd, margin_per_token, correct, incorrect, unparsable, "
        "blocked, truncated, error\n"
        "several_question_problems.yaml:9: duplicate question id 'a' (first at line 8); ids must be unique within a "
        "suite\n"
        "several_question_problems.yaml:10: question id 'b c' must be letters, digits, '.', '_' or '-' (it names the "
        "cassette file)",
    # --- question files in other formats, broken ---
    "source_parquet.yaml": "data/questions.parquet: not a readable Parquet file (Could not open Parquet input source "
                           "'data/questions.parquet': Parquet file size is 22 bytes, smaller than the size reported "
                           "by footer's (4608bytes)); write it again (e.g. pyarrow.parquet.write_table)",
    "source_gzip.yaml": "data/questions.jsonl.gz:2: not a readable gzip file (Compressed file ended before the "
                        "end-of-stream marker was reached); download or compress it again",
    "source_csv.yaml": "data/questions.csv:2: no field 'answer' (the row has the keys question, solution); set "
                       "questions.answer_field in the suite",
    "jsonl_missing_id_field.yaml": "data/good.jsonl:1: no field 'uid' (the row has the keys question, answer); set "
                                   "questions.id_field in the suite",
}

# Cases whose current message is inadequate (see the module docstring): file → what is wrong today.
INADEQUATE = {
    "yaml_unterminated_quote.yaml": "says line 7 'did not find expected key'; the unclosed quote is on line 5",
}

# Files that look wrong but are accepted: what YAML and pydantic make of them.
ACCEPTED = {
    "accepted_logprobs_yes_unquoted.yaml": True,  # `logprobs: yes` is a YAML 1.1 boolean
    "accepted_logprobs_yes_quoted.yaml": True,  # `logprobs: "yes"` is a string pydantic (lax mode) reads as true
    "bom_suite.yaml": False,  # saved with a UTF-8 byte order mark, as some Windows editors do
}

# question id of tests/bad_input/corrupt_cassettes.yaml → the CassetteProblem line (replay, mode none)
CASSETTE = "cassettes/corrupt_cassettes"
CASSETTE_CASES = {
    "truncated": f"{CASSETTE}/truncated.yaml: corrupt cassette (ScannerError: while scanning a quoted scalar); "
                 "delete it and re-record",
    "truncated_json": f"{CASSETTE}/truncated_json.yaml: corrupt cassette (ParserError: while parsing a flow node); "
                      "delete it and re-record",
    "string_content": f"{CASSETTE}/string_content.yaml: corrupt cassette (it holds a string, not a mapping with "
                      "'interactions'); delete it and re-record",
    "no_response": f"{CASSETTE}/no_response.yaml: corrupt cassette (interaction 1 lacks a request or a response); "
                   "delete it and re-record",
    "non_utf8": f"{CASSETTE}/non_utf8.yaml: cannot read cassette ('utf-8' codec can't decode byte 0xe9 in position "
                "230: invalid continuation byte); delete it and re-record",
    "no_interactions_key": f"{CASSETTE}/no_interactions_key.yaml: corrupt cassette (no 'interactions' list); "
                           "delete it and re-record",
    "empty_interactions": f"cassette {CASSETTE}/empty_interactions.yaml holds no requests",
    "body_not_json": f"cassette {CASSETTE}/body_not_json.yaml interaction 1 of 2 holds a response the API does not "
                     "send (its body is not JSON: '<html><body>502 Bad Gateway</body></html>'); re-record it in "
                     "record mode rewrite",
    "status_not_int": f"{CASSETTE}/status_not_int.yaml: corrupt cassette (interaction 1: response status code 'OK' "
                      "is not a number); delete it and re-record",
}
CASSETTE_INADEQUATE: dict[str, str] = {}


def expected(name: str, base: Path = BAD) -> str:
    return CASES[name].replace(ABS, str(base))


def _param(name, inadequate):
    if name in inadequate:
        return pytest.param(name, marks=pytest.mark.xfail(strict=True, raises=AssertionError,
                                                          reason=f"inadequate message: {inadequate[name]}"))
    return name


@pytest.fixture
def in_bad_input(monkeypatch):
    monkeypatch.chdir(BAD)


def suite_error(path) -> str:
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    return str(info.value)


def assert_one_plain_line(message: str) -> None:
    assert "\n" not in message and "\r" not in message, message
    assert "Traceback" not in message and "pydantic" not in message.lower(), message
    assert len(message) < 600, f"{len(message)} characters: {message[:200]}…"


# ---------------------------------------------------------------------------------------------
# The corpus through load_suite
# ---------------------------------------------------------------------------------------------

def test_the_corpus_is_complete():
    files = {p.name for p in BAD.glob("*.yaml")} - {"corrupt_cassettes.yaml"}
    assert files == set(CASES) | set(ACCEPTED), "every file in tests/bad_input needs an expected line"
    assert len(CASES) >= 36
    assert set(INADEQUATE) <= set(CASES) and set(CASSETTE_INADEQUATE) <= set(CASSETTE_CASES)
    referenced = {m for p in BAD.glob("*.yaml")
                  for m in re.findall(r"data/[\w.]+\.jsonl", p.read_bytes().decode("latin-1"))}
    assert {f"data/{p.name}" for p in (BAD / "data").glob("*.jsonl")} <= referenced, "an unused data file"
    cassettes = {p.stem for p in (BAD / CASSETTE).glob("*.yaml")}
    assert cassettes == set(CASSETTE_CASES)


@pytest.mark.parametrize("name", [_param(n, INADEQUATE) for n in CASES])
def test_bad_suite_gives_its_exact_line(name, in_bad_input):
    if name in WORDED_BY_LIBYAML and not HAVE_LIBYAML:
        pytest.skip("PyYAML without libyaml words syntax errors differently")
    assert suite_error(name) == expected(name)


@pytest.mark.parametrize("name", list(CASES))
def test_every_message_is_one_plain_line_naming_the_file(name, in_bad_input):
    """One line per problem (most files have one), each naming its file."""
    for line, wanted in zip(suite_error(name).split("\n"), expected(name).split("\n"), strict=True):
        assert_one_plain_line(line)
        where = wanted.split(": ", 1)[0].split(":")[0]  # the file the expected line names
        assert line.startswith(where + ":"), line


@pytest.mark.parametrize("name", ACCEPTED)
def test_what_yaml_makes_of_yes(name, in_bad_input):
    assert load_suite(name).spec.model.logprobs is ACCEPTED[name]


def test_messages_do_not_depend_on_the_working_directory(monkeypatch, tmp_path):
    """From elsewhere, the same line with the path as given (relative to that directory)."""
    monkeypatch.chdir(BAD.parent)
    assert suite_error("bad_input/unknown_key_model.yaml") == "bad_input/" + CASES["unknown_key_model.yaml"]
    assert suite_error("bad_input/duplicate_id_jsonl.yaml") == "bad_input/" + CASES["duplicate_id_jsonl.yaml"]
    monkeypatch.chdir(tmp_path)  # not under the working directory: the path as given
    assert suite_error(BAD / "unknown_key_model.yaml") == f"{BAD}/" + CASES["unknown_key_model.yaml"]


# ---------------------------------------------------------------------------------------------
# Huge files: the right line, and quickly
# ---------------------------------------------------------------------------------------------

HEAD = "suite: huge\nmodel:\n  name: gemini-2.0-flash\nsamples: 2\nquestions:\n"
QUESTION = ('  - id: q{i:06d}\n    question: "Natalia sold clips to {i} of her friends in April, and then she sold '
            'half as many clips in May. How many clips did Natalia sell altogether in April and May?"\n'
            '    answer: {a}\n')


def huge_suite(size: int = 5_000_000) -> tuple[list[str], int]:
    """The lines of a valid suite of about `size` bytes, and its number of questions."""
    parts, total, i = [HEAD], len(HEAD), 0
    while total < size:
        parts.append(QUESTION.format(i=i, a=i * 3 // 2))
        total += len(parts[-1])
        i += 1
    return "".join(parts).splitlines(), i


def timed_error(path: Path, measured: Path | None = None) -> tuple[str, float]:
    """The error and the CPU seconds load_suite took (CPU, not wall time: a busy CI machine or
    parallel workers would otherwise make the bound flaky)."""
    start, wall = time.process_time(), time.perf_counter()
    message = suite_error(path)
    seconds = time.process_time() - start
    measured = measured or path
    print(f"\n{measured.name} ({measured.stat().st_size / 1e6:.1f} MB): error after {seconds:.2f} s CPU, "
          f"{time.perf_counter() - wall:.2f} s wall")
    return message, seconds


def test_huge_suite_names_the_right_line_quickly(tmp_path, monkeypatch, record_property):
    monkeypatch.chdir(tmp_path)
    lines, n = huge_suite()
    first = lines.index("  - id: q000010") + 1
    dup = lines.index(f"  - id: q{n - 3:06d}")  # 0-based: near the end
    lines[dup] = "  - id: q000010"
    path = tmp_path / "huge.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size >= 5_000_000
    message, seconds = timed_error(path)
    record_property("huge_suite_cpu_seconds", seconds)
    assert message == (f"huge.yaml:{dup + 1}: duplicate question id 'q000010' (first at line {first}); "
                       "ids must be unique within a suite")
    assert seconds < 5.0


def test_a_dense_1_mb_suite_loads_without_quadratic_work(tmp_path, record_property):
    """Issue 11: a suite under 1 MB loads in under a second of CPU. That figure lives in
    benchmarks/load_suite.py (shape `inline`: 0.5-0.75 s when written, about half the time
    before): a shared CI machine is no place for a tight timed assert, so the bound here is
    loose, 3 s, and still catches work that grows with the square of the questions (17,500
    questions would take minutes)."""
    head = "suite: dense\nmodel:\n  name: gemini-2.0-flash\nsamples: 2\nquestions:\n"
    rows = [f'  - {{id: q{i:05d}, question: "What is 3 + {i % 10}?", answer: {3 + i % 10}}}\n' for i in range(17_500)]
    path = tmp_path / "dense.yaml"
    path.write_text(head + "".join(rows))
    assert 900_000 < path.stat().st_size < 1_000_000
    start = time.process_time()
    suite = load_suite(path)
    seconds = time.process_time() - start
    record_property("dense_suite_cpu_seconds", seconds)
    assert len(suite.questions) == 17_500
    last = suite.questions[-1]
    assert (last.id, last.question, last.answer, last.line) == ("q17499", "What is 3 + 9?", "12", 17_505)
    assert seconds < 3.0


@pytest.mark.parametrize("anchored", [False, True], ids=["plain", "with-an-anchor"])
def test_a_file_denser_than_any_suite_is_refused_in_one_line(tmp_path, monkeypatch, anchored):
    """1 MB of `[],` is 330,000 values: refused at the first value past 150,000 a megabyte, in one
    line, instead of building them all (with or without an anchor, which takes the slower path)."""
    monkeypatch.chdir(tmp_path)
    head = "suite: dense\nmodel:\n  name: gemini-2.0-flash\nsamples: 2\n" + ("x: &a 1\n" if anchored else "")
    (tmp_path / "dense.yaml").write_text(head + "questions: [" + "[]," * 330_000 + "[]]\n")
    message, _ = timed_error(tmp_path / "dense.yaml")
    assert message == (f"dense.yaml:{5 + anchored}: the file holds more than 150,000 YAML keys and values, too many "
                       "to load quickly; put the questions in a JSONL file (questions: {source: ...})")


def test_huge_suite_schema_error_near_the_end(tmp_path, monkeypatch):
    """An error pydantic finds (not the expansion loop) is mapped back to its line too."""
    monkeypatch.chdir(tmp_path)
    lines, n = huge_suite()
    bad = lines.index(f"  - id: q{n - 2:06d}")
    assert lines[bad + 2].startswith("    answer: ")
    lines[bad + 2] = lines[bad + 2].replace("answer:", "answr:")
    (tmp_path / "huge.yaml").write_text("\n".join(lines) + "\n")
    message, seconds = timed_error(tmp_path / "huge.yaml")
    # the misspelt key, at its line, rather than the answer it leaves missing
    assert message == (f"huge.yaml:{bad + 3}: questions[{n - 2}] (q{n - 2:06d}).answr: unknown key "
                       "(did you mean 'answer'?)")
    assert seconds < 5.0


def test_huge_jsonl_names_the_right_line_quickly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    row = '{{"question": "Natalia sold clips to {i} of her friends. How many clips in all?", "answer": "#### {i}"}}\n'
    rows = [row.format(i=i) for i in range(60_000)]
    rows[-7] = rows[-7].replace('", "answer"', '" "answer"')
    (tmp_path / "rows.jsonl").write_text("".join(rows))
    (tmp_path / "s.yaml").write_text("suite: s\nmodel: {name: gemini-2.0-flash}\nsamples: 2\n"
                                     "questions: {source: rows.jsonl}\n")
    assert (tmp_path / "rows.jsonl").stat().st_size >= 5_000_000
    message, seconds = timed_error(tmp_path / "s.yaml", tmp_path / "rows.jsonl")
    assert message == f"rows.jsonl:{60_000 - 6}: not valid JSON: Expecting ',' delimiter"
    assert seconds < 5.0


def test_a_huge_single_line_does_not_hide_the_next_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    long = "What is 1+1? " + "Consider it carefully. " * 100_000  # 2.3 MB on one line
    (tmp_path / "s.yaml").write_text(
        "suite: s\nmodel: {name: gemini-2.0-flash}\nsamples: 2\nquestions:\n"
        f'  - {{id: a, question: "{long}", answer: 2}}\n  - {{id: a, question: q, answer: 3}}\n')
    message, seconds = timed_error(tmp_path / "s.yaml")
    assert message == "s.yaml:6: duplicate question id 'a' (first at line 5); ids must be unique within a suite"
    assert seconds < 2.0


def test_a_huge_wrong_value_is_shown_shortened(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text("suite: s\nmodel: {name: gemini-2.0-flash}\nsamples: '" + "x" * 2_000_000
                                     + "'\nquestions:\n  - {id: a, question: q, answer: 1}\n")
    message = suite_error(tmp_path / "s.yaml")
    assert message.startswith("s.yaml:3: samples: expected an integer, got 'xxxxxxxx")
    assert_one_plain_line(message)


# ---------------------------------------------------------------------------------------------
# Corrupt cassettes (replay, mode none)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("qid", [_param(q, CASSETTE_INADEQUATE) for q in CASSETTE_CASES])
def test_corrupt_cassette_is_one_line(qid, in_bad_input, offline):
    suite = load_suite("corrupt_cassettes.yaml")
    try:
        evaluate_question(suite, qid, cassette_dir="cassettes")
    except CassetteProblem as exc:
        message = str(exc)
    except Exception as exc:  # anything else is a traceback under pytest
        raise AssertionError(f"{type(exc).__name__} instead of CassetteProblem: {exc}") from exc
    else:
        raise AssertionError("the corrupt cassette replayed")
    assert message == CASSETTE_CASES[qid]
    assert_one_plain_line(message)


def test_sample_question_reports_the_corrupt_cassette_too(in_bad_input, offline):
    suite = load_suite("corrupt_cassettes.yaml")
    backends = Backends.for_suite(suite, replay=True)
    with pytest.raises(CassetteProblem) as info:
        sample_question(suite, suite.question("truncated"), backends, cassette_dir=BAD / "cassettes")
    assert str(info.value) == CASSETTE_CASES["truncated"]  # an absolute cassette dir is shown relative


# ---------------------------------------------------------------------------------------------
# Through pytest (pytester, in process)
# ---------------------------------------------------------------------------------------------

GOOD_SUITE = ("suite: good\nmodel: {name: gemini-2.0-flash, logprobs: true}\nsamples: 2\n"
              f"questions:\n  source: {GSM8K_TEST}\n  limit: 2\n")


def run(pytester, *args):
    return pytester.runpytest("-p", "no:cacheprovider", *args)


@pytest.mark.parametrize("record_mode", ["none", "once"])
def test_collection_errors_one_line_each_then_interrupted(project, record_mode):
    shutil.copytree(BAD / "data", project.path / "data")
    copied = [n for n in CASES if n not in INADEQUATE and n != "utf16_suite.yaml"]
    for name in copied:
        shutil.copy(BAD / name, project.path / name)
    (project.path / "good.yaml").write_text(GOOD_SUITE)
    # the project's ini makes every top-level YAML file a suite: one without a `suite:` key (a list,
    # empty, comments only) fails like any other broken suite, never skipped
    collected = copied
    result = run(project, f"--rlhf-record-mode={record_mode}")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    out = result.stdout.str()
    assert "Traceback" not in out and "pydantic" not in out.lower()
    # pytest's own stop, also while recording: not a Ctrl-C, nothing was left unrecorded by it
    assert f"Interrupted: {len(collected)} errors during collection" in out and "Ctrl-C" not in out
    for name in collected:
        for line in expected(name, project.path.resolve()).split("\n"):
            assert result.stdout.lines.count(line) == 1, f"{name}: {line!r} not shown exactly once"
    assert "good.yaml" not in out  # a good suite among them is collected without complaint


def test_a_utf16_suite_is_reported_not_skipped(project):
    shutil.copy(BAD / "utf16_suite.yaml", project.path / "utf16_suite.yaml")
    result = run(project)
    assert CASES["utf16_suite.yaml"] in result.stdout.lines


def corrupt_cassette_project(project, names):
    """corrupt_cassettes.yaml plus two good questions, recorded; then `names`' corrupt cassettes copied in."""
    text = (BAD / "corrupt_cassettes.yaml").read_text()
    text += ('  - {id: good-1, question: "What is 20 plus 22?", answer: 42}\n'
             '  - {id: good-2, question: "What is 3 times 5?", answer: 15}\n')
    project.makefile(".yaml", corrupt_cassettes=text)
    run(project, "--rlhf-record-mode=once", "-k", "good").assert_outcomes(passed=2)
    folder = project.path / CASSETTE
    assert sorted(p.name for p in folder.iterdir()) == ["good-1.yaml", "good-2.yaml"]
    for name in names:
        shutil.copy(BAD / CASSETTE / f"{name}.yaml", folder / f"{name}.yaml")
    return "good or " + " or ".join(names)


def replay_offline(monkeypatch):
    monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("GEMINI_API_KEY")


def test_a_corrupt_cassette_fails_its_item_only(project, live, monkeypatch):
    names = [q for q in CASSETTE_CASES if q not in CASSETTE_INADEQUATE]
    selection = corrupt_cassette_project(project, names)
    replay_offline(monkeypatch)
    result = run(project, "-k", selection)
    result.assert_outcomes(passed=2, failed=len(names))
    out = result.stdout.str()
    assert "Traceback" not in out
    for qid in names:
        line = line_under_pytest(qid)
        assert result.stdout.lines.count(line) == 1, f"{qid}: {line!r}\n{out}"
    result.stdout.fnmatch_lines(["corrupt_cassettes · *", "good-1 * pass", "good-2 * pass"])


def test_a_damaged_response_in_a_cassette_is_one_line_under_pytest(project, live, monkeypatch):
    names = ["body_not_json", "status_not_int"]
    selection = corrupt_cassette_project(project, names)
    replay_offline(monkeypatch)
    result = run(project, "-k", selection)
    result.assert_outcomes(passed=2, failed=2)
    assert "Traceback" not in result.stdout.str() and "JSONDecodeError" not in result.stdout.str()
    for qid in names:
        assert line_under_pytest(qid) in result.stdout.lines


def line_under_pytest(qid: str) -> str:
    """CASSETTE_CASES[qid] as pytest shows it: after the item's id, the advice being the command that re-records."""
    line = f"corrupt_cassettes.yaml::{qid}: {CASSETTE_CASES[qid]}"
    command = f"GEMINI_API_KEY=<your key> pytest corrupt_cassettes.yaml::{qid}"
    if qid == "empty_interactions":
        line += f"; re-record with: {command} --rlhf-record-mode=once"
    return line.replace("re-record it in record mode rewrite", f"re-record with: {command} --rlhf-record-mode=rewrite")


def test_following_the_hint_for_an_empty_cassette_fixes_it(project, live, monkeypatch):
    selection = corrupt_cassette_project(project, ["empty_interactions"])
    monkeypatch.delenv("GEMINI_API_KEY")
    failed = run(project, "-k", selection)
    failed.assert_outcomes(passed=2, failed=1)
    hint = re.search(r"re-record with: GEMINI_API_KEY=<your key> pytest (\S+) (--rlhf-record-mode=\w+)",
                     failed.stdout.str())
    monkeypatch.setenv("GEMINI_API_KEY", TEST_KEY)
    run(project, hint.group(1), hint.group(2)).assert_outcomes(passed=1)


def test_a_value_its_yaml_tag_cannot_read_fails_that_file_in_one_line(project):
    # `!!int hi` once escaped load_suite as a ValueError (issue 11); now it is the suite's own line,
    # and the other suites still run.
    project.makefile(".yaml", bad_tag='suite: t\nmodel:\n  name: gemini-2.0-flash\nsamples: !!int hi\n'
                                      'questions:\n  - {id: a, question: q, answer: 2}\n')
    result = project.runpytest("-p", "no:cacheprovider")
    out = result.stdout.str()
    assert "INTERNALERROR" not in out and "Traceback" not in out and result.ret == 2
    assert "bad_tag.yaml:4: 'hi' is not a valid !!int; fix the value or remove the tag" in result.stdout.lines


def test_a_suite_saved_with_a_byte_order_mark_is_collected(project):
    shutil.copy(BAD / "bom_suite.yaml", project.path / "bom_suite.yaml")
    result = run(project, "--collect-only", "-q")
    assert "bom_suite.yaml::a" in result.stdout.lines, result.stdout.str()


# ---------------------------------------------------------------------------------------------
# Files that cannot be read
# ---------------------------------------------------------------------------------------------

def test_a_directory_named_like_a_suite_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.yaml").mkdir()
    assert suite_error("x.yaml") == "x.yaml: cannot read the file (it is a directory); name a suite file"


def test_a_dangling_link_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.yaml").symlink_to(tmp_path / "gone.yaml")
    assert suite_error("x.yaml") == (f"x.yaml: cannot read the file (a link to '{tmp_path}/gone.yaml', which does "
                                     "not exist); fix or remove the link")


def test_a_missing_file_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert suite_error("x.yaml") == "x.yaml: cannot read the file (No such file or directory); check the path"


def test_a_fifo_is_refused_not_waited_on(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.mkfifo(tmp_path / "x.yaml")  # reading it would block until a writer comes
    assert suite_error("x.yaml") == "x.yaml: cannot read the file (it is not a regular file); a suite is a YAML file"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its permissions")
def test_a_file_without_read_permission_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.yaml").write_text(GOOD_SUITE)
    (tmp_path / "x.yaml").chmod(0)
    assert suite_error("x.yaml") == ("x.yaml: cannot read the file (Permission denied); make it readable "
                                     "(chmod u+r) or move it away")


def test_a_suite_over_the_size_limit_is_refused_unread(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open(tmp_path / "x.yaml", "wb") as f:  # sparse: 60 MB that take no disk and would take long to parse
        f.truncate(60_000_000)
    assert suite_error("x.yaml") == ("x.yaml: the file is 60 MB, over the 50 MB a suite may be; put the questions "
                                     "in a JSONL file (questions: {source: ...})")
