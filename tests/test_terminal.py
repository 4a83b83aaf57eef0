"""The terminal report, as a newcomer reads it: a table per suite, every column one kind of value, the
suite row's spread the mean spread with the zero-spread fraction in its own column, the reason DPO
metrics are unavailable once per suite, and a line saying why for every FAIL and ERROR row."""
import copy
import re

import pytest

from conftest import shipped_copy

from rlhf_eval import run_suites
from rlhf_eval.report import MAX_REASONS, render_table, report_lines, report_rows
from rlhf_eval.report_model import Failure, Report
from rlhf_eval.rows import summary_columns

NO_LOGPROBS = "gemini-3-flash was not asked for log-probabilities (the suite has model.logprobs: false)"

# The shipped science_choice suite with gates it breaches (see `failing_science`), as printed.
FAILING_SCIENCE_TABLE = """\
science_choice · gemini-3-flash · k = 6 · 11 questions
question            k  accuracy  maj@k  unparsable  pairs  mean margin   reward acc  spread  zero spread  result
------------------  -  --------  -----  ----------  -----  -----------  -----------  ------  -----------  ------
water-boiling       6     0.000  0.000       0.000      0  unavailable  unavailable   0.000               FAIL
photosynthesis-gas  6     0.167  0.000       0.000      5  unavailable  unavailable   0.408               pass
largest-planet      6     0.167  0.000       0.000      5  unavailable  unavailable   0.408               pass
speed-of-light      6     0.500  1.000       0.000      9  unavailable  unavailable   0.548               pass
dna-base            6     0.000  0.000       0.000      0  unavailable  unavailable   0.000               FAIL
newton-unit         6     0.667  1.000       0.000      8  unavailable  unavailable   0.516               pass
ph-neutral          6     0.167  0.000       0.000      5  unavailable  unavailable   0.408               pass
noble-gas           6     0.167  0.000       0.000      5  unavailable  unavailable   0.408               pass
mitochondria        6     0.333  0.333       0.000      8  unavailable  unavailable   0.516               pass
sound-medium        6     0.333  0.000       0.000      8  unavailable  unavailable   0.516               pass
no-cassette         -         -      -           -      -            -            -       -               ERROR
(suite)             6     0.250  0.233       0.000     53  unavailable  unavailable   0.373        0.200  FAIL
"""


@pytest.fixture
def failing_science(tmp_path, monkeypatch, offline):
    """The shipped science_choice suite replayed from its cassettes, with gates it breaches: accuracy
    ≥ 0.1 per question (two have none right), ≥ 0.3 for the suite (it has 0.25), and one question
    more that has no cassette."""
    root = shipped_copy(tmp_path)
    monkeypatch.chdir(root)
    path = root / "suites" / "science_choice.yaml"
    text = path.read_text()
    text = text.replace("  unparsable_rate: {max: 0.0}\n", "  accuracy: {min: 0.1}\n")
    text = text.replace("  accuracy: {min: 0.15}\n", "  accuracy: {min: 0.3}\n")
    text += '  - id: no-cassette\n    question: Which is a mammal?\n    options: "A) Shark\\nB) Whale"\n    answer: B\n'
    path.write_text(text)
    return run_suites(["suites/science_choice.yaml"])


def test_a_failing_suite_says_why_and_the_dpo_reason_is_printed_once(failing_science):
    assert render_table(failing_science) == FAILING_SCIENCE_TABLE + "\n".join([
        f"DPO metrics unavailable: {NO_LOGPROBS}",
        # the totals are the scored questions' (a question that errored has no trace to count)
        "tokens: 4,692 prompt + 6,815 output (4,232 thinking) = 11,507 (the scored questions' requests; "
        "1 question that errored not counted)",
        "FAIL science_choice::water-boiling: accuracy = 0 < min 0.1",
        "FAIL science_choice::dna-base: accuracy = 0 < min 0.1",
        "ERROR science_choice::no-cassette: no cassette at cassettes/science_choice/no-cassette.yaml; record it "
        "with: GEMINI_API_KEY=<your key> pytest suites/science_choice.yaml::no-cassette --rlhf-record-mode=once "
        "--rlhf-cassette-dir=cassettes",
        "FAIL suite science_choice: accuracy = 0.25 < min 0.3",
        "FAIL suite science_choice: 3 of 11 questions failed: water-boiling, dna-base, no-cassette",
    ])
    # the lines that say why are the ones a terminal shows red
    assert [text for style, text in report_lines(failing_science) if style == "fail"] == \
        render_table(failing_science).splitlines()[-5:]


def test_every_column_holds_one_kind_of_value(shipped_report):
    """A count (an int), a rate or mean (3 decimals), never both in one column; the suite row's spread
    is the mean spread and its zero-spread fraction has its own column, blank on question rows."""
    report = Report.of(shipped_report[0])
    rows = report_rows(report)
    labels = ["suite", "question", *(c.label for c in summary_columns(True)), "result"]
    assert len(rows[0]) == len(labels)

    def kind(text):
        return "count" if re.fullmatch(r"\d+", text) else "number" if re.fullmatch(r"-?\d+\.\d+", text) else text

    for i, label in enumerate(labels[2:-1], start=2):
        kinds = {kind(r[i]) for r in rows} - {"-", "unavailable", ""}
        assert len(kinds) == 1, (label, kinds)
    assert {kind(r[labels.index("pairs")]) for r in rows} == {"count"}
    assert {kind(r[labels.index("unparsable")]) for r in rows} == {"number"}
    for s in report.suites:
        suite_row = next(r for r in rows if r[0] == s.name and r[1] == "(suite)")
        assert suite_row[labels.index("spread")] == f"{s.aggregates.mean_spread:.3f}"
        assert suite_row[labels.index("zero spread")] == f"{s.aggregates.frac_zero_spread:.3f}"
        assert suite_row[labels.index("unparsable")] == f"{s.aggregates.unparsable_rate:.3f}"
        assert {r[labels.index("zero spread")] for r in rows if r[0] == s.name and r[1] != "(suite)"} == {""}


def test_the_dpo_reason_is_one_line_per_suite_and_names_the_questions_when_only_some_have_it(shipped_report):
    data = copy.deepcopy(shipped_report[0])
    lines = render_table(data).splitlines()
    assert lines.count(f"DPO metrics unavailable: {NO_LOGPROBS}") == 1
    assert sum(NO_LOGPROBS in line for line in lines) == 1  # never on a question's row
    smoke = next(s for s in data["suites"] if s["name"] == "gsm8k_smoke")
    for q in smoke["questions"][:2]:
        q["dpo_unavailable"] = "the scorer gave no logp for this question"
    assert "DPO metrics unavailable for 2 of 30 questions (gsm8k-0000, gsm8k-0001): the scorer gave no logp " \
           "for this question" in render_table(data).splitlines()


def test_more_failing_questions_than_shown_are_counted(shipped_report):
    report = Report.of(copy.deepcopy(shipped_report[0]))
    smoke = report.suite("gsm8k_smoke")
    for q in smoke.questions[:12]:
        q.passed = False
        q.failures = [Failure(metric="pairs", value=0, bound="min 99", reason="pairs = 0 < min 99")]
    lines = [text for style, text in report_lines(report) if style == "fail"]
    assert lines == [f"FAIL gsm8k_smoke::gsm8k-{i:04d}: pairs = 0 < min 99" for i in range(MAX_REASONS)] + [
        "… and 2 more failing questions of gsm8k_smoke (each one's reason is in the JSON report: "
        "questions[].failures and .error)",
        "FAIL suite gsm8k_smoke: 12 of 30 questions failed: gsm8k-0000, gsm8k-0001, gsm8k-0002, gsm8k-0003, "
        "gsm8k-0004, … (7 more)"]


def test_maj_at_k_is_shown_when_the_report_has_it(shipped_report):
    data = copy.deepcopy(shipped_report[0])
    assert "maj@k" in render_table(data).splitlines()[1]
    for s in data["suites"]:  # a report written before maj@k, or a verifier with no answers to vote with
        s["aggregates"].pop("maj_at_k", None)
        for q in s["questions"]:
            q["metrics"].pop("maj_at_k", None)
    header = render_table(data).splitlines()[1]
    assert "maj@k" not in header and header.startswith("question ")


def test_the_shipped_report_fits_in_120_columns_and_is_what_pytest_prints(shipped_report):
    report, stdout = shipped_report
    table = render_table(report)
    assert max(map(len, table.splitlines())) <= 120
    assert table in stdout  # the plugin's terminal summary prints exactly these lines
    assert not any(line != line.rstrip() for line in table.splitlines())  # no trailing blanks


def test_a_suite_whose_responses_reported_no_usage_says_so_and_its_cost_gate_says_why(tmp_path, monkeypatch, live):
    """A Model Armor block comes back with no usage: the suite's token totals are none, never the sum
    of the rest, and the terminal says so (the cost line does not just vanish); the cost gate names that
    cause, not the list of possible ones."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "suites").mkdir()
    suite = tmp_path / "suites" / "armor.yaml"
    suite.write_text(
        "suite: armor\nmodel: {name: gemini-2.0-flash, logprobs: true, price: {input: 0.1, output: 0.4}}\n"
        "samples: 2\nverifier: numeric\nsuite_thresholds: {cost_usd: {max: 1}}\nquestions:\n"
        "  - {id: a, question: 'What is 2 plus 5?', answer: 7}\n"
        "  - {id: b, question: 'What is 3 plus 5? [[emulator:block=MODEL_ARMOR]]', answer: 8}\n")
    report = run_suites(["suites"], record_mode="once")
    lines = render_table(report).splitlines()
    assert "tokens: none (2 of 4 traces came from requests whose response reported no token usage), so no cost" \
        in lines
    assert lines[-1] == ("FAIL suite armor: cost_usd could not be measured: 2 of 4 traces came from requests whose "
                         "response reported no token usage")
    assert report.suites[0].aggregates.cost_usd is None and report.suites[0].aggregates.total_tokens is None


def test_gates_on_unavailable_dpo_metrics_point_to_the_one_line_that_says_why(tmp_path, monkeypatch, offline):
    """Gates on reward accuracy and the mean margin of a model without log-probabilities fail, each
    saying so, but the reason itself is printed once per suite, not on every question's FAIL line."""
    root = shipped_copy(tmp_path)
    monkeypatch.chdir(root)
    path = root / "suites" / "science_choice.yaml"
    path.write_text(path.read_text().replace("  unparsable_rate: {max: 0.0}\n", "  reward_accuracy: {min: 0.5}\n")
                    .replace("  accuracy: {min: 0.15}\n", "  mean_margin: {min: 0}\n"))
    report = run_suites(["suites/science_choice.yaml"])
    lines = render_table(report).splitlines()
    assert sum(NO_LOGPROBS in line for line in lines) == 1
    assert "FAIL science_choice::water-boiling: reward_accuracy is unavailable (see DPO metrics unavailable above)" \
        in lines
    assert "FAIL suite science_choice: mean_margin is unavailable (see DPO metrics unavailable above)" in lines
    # the JSON keeps each reason whole
    assert report.suites[0].questions[0].failures[0].reason == f"reward_accuracy is unavailable: {NO_LOGPROBS}"


def test_a_report_from_before_token_usage_prints_no_token_line(shipped_report):
    """Traces without the usage fields at all come from an older rlhf-eval, not from responses that
    reported no usage: no "tokens: none (...)" line claims the latter."""
    data = copy.deepcopy(shipped_report[0])
    for s in data["suites"]:
        for key in ("prompt_tokens", "output_tokens", "total_tokens", "answer_tokens", "thinking_tokens", "cost_usd",
                    "cost_unavailable"):
            s["aggregates"].pop(key, None)
        for q in s["questions"]:
            for t in q["traces"]:
                del t["prompt_tokens"], t["output_tokens"]
    assert not [line for line in render_table(data).splitlines() if line.startswith("tokens")]
