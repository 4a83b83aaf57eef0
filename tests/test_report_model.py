"""The typed report (rlhf_eval.report_model) and the rows layer every reader renders from (rlhf_eval.rows).

The report under test is the shipped suites' real one (conftest's `shipped_report`, replayed from the
shipped cassettes), changed where a test needs a bad or a newer file.
"""
import copy
import json
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlhf_eval import rows
from rlhf_eval.cli import main
from rlhf_eval.compare import COMPARED_METRICS, compare_reports, parse_fail_rules
from rlhf_eval.export import export_files
from rlhf_eval.html_report import render_html
from rlhf_eval.report import build_report, report_rows, write_json
from rlhf_eval.report import columns as report_columns
from rlhf_eval.report_model import REPORT_VERSION, WRITE_HINT, Report, ReportError
from rlhf_eval.ui import question_row


@pytest.fixture(scope="module")
def shipped(shipped_report):
    return shipped_report[0]


def _write(tmp_path, data, name="report.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------- load / dump

def test_a_report_loads_and_dumps_to_the_same_bytes(shipped, tmp_path):
    src = _write(tmp_path, shipped)
    report = Report.load(src)
    assert report.version == REPORT_VERSION == 1
    assert [s.name for s in report.suites] == ["gsm8k_reference", "gsm8k_smoke", "science_choice"]
    first = report.suites[0].questions[0]
    assert (first.metrics.k, first.traces[0].verdict, first.pairs[0].chosen) == (
        shipped["suites"][0]["questions"][0]["metrics"]["k"],
        shipped["suites"][0]["questions"][0]["traces"][0]["verdict"],
        shipped["suites"][0]["questions"][0]["pairs"][0]["chosen"])
    out = tmp_path / "again.json"
    report.dump(out)
    assert out.read_bytes() == src.read_bytes()


def test_build_report_gives_the_model_that_the_json_holds(shipped):
    """Rebuilt from its own question dicts and settings, a suite has the same aggregates, threshold
    verdicts and questions as the file: building and loading agree."""
    questions = [q for s in shipped["suites"] for q in s["questions"]]
    settings = {s["name"]: {k: v for k, v in s.items() if k not in ("aggregates", "threshold_failures", "questions")}
                for s in shipped["suites"]}
    built = build_report(copy.deepcopy(questions), settings)
    built.provenance = shipped["provenance"]  # the runner adds it: when, and from which files, not what
    assert built.to_dict() == shipped
    assert built.to_json() == json.dumps(shipped, indent=1, ensure_ascii=False) + "\n"


@pytest.mark.parametrize("change, where, what", [
    (lambda d: d["suites"][1]["questions"][2]["traces"][3].update(logp="-12.5"),
     "suites[1].questions[2].traces[3].logp", "should be a valid number, got '-12.5'"),
    (lambda d: d["suites"][0]["questions"][0]["metrics"].update(k=4.5),
     "suites[0].questions[0].metrics.k", "should be a valid integer, got 4.5"),
    (lambda d: d["suites"][0]["questions"][1].pop("id"), "suites[0].questions[1].id", "is missing"),
    (lambda d: d["suites"][2]["questions"][0].update(passed="yes"),
     "suites[2].questions[0].passed", "should be a valid boolean, got 'yes'"),
    (lambda d: d["suites"][0]["aggregates"]["intervals"].update(accuracy="wide"),
     "suites[0].aggregates.intervals.accuracy", "should be a valid list, got 'wide'"),
], ids=["string-for-number", "float-for-count", "missing-id", "string-for-bool", "bad-interval"])
def test_a_field_of_the_wrong_type_is_one_line_with_its_path(shipped, tmp_path, change, where, what):
    data = copy.deepcopy(shipped)
    change(data)
    path = _write(tmp_path, data)
    with pytest.raises(ReportError) as e:
        Report.load(path)
    message = str(e.value)
    assert "\n" not in message
    assert message == f"{path}: {where}: {what}; fix that field, or write the report again with " \
                      "pytest --rlhf-report-json=PATH"


@pytest.mark.parametrize("version, what", [
    (2, "the report is version 2, this rlhf-eval reads up to 1; upgrade rlhf-eval (pip install -U rlhf-eval) "
        "to read it"),
    ("1", "expected a report version (a whole number ≥ 1), got '1'"),
    (0, "expected a report version (a whole number ≥ 1), got 0"),
])
def test_a_report_of_another_version_is_refused_in_one_line(shipped, tmp_path, version, what):
    path = _write(tmp_path, {**shipped, "version": version})
    with pytest.raises(ReportError, match="^" + json.dumps(str(path))[1:-1] + ": version: ") as e:
        Report.load(path)
    assert what in str(e.value)


def test_not_json_and_not_a_report_are_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"suites": [\n  {"name": "s",\n')
    with pytest.raises(ReportError, match=r"^.*bad\.json:3: not valid JSON: Expecting property name"):
        Report.load(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ReportError, match=r"bad\.json: not an rlhf-eval report \(no 'suites' list\)"):
        Report.load(bad)
    with pytest.raises(ReportError, match=r"nope\.json: no such baseline file \(save one\)"):
        Report.load(tmp_path / "nope.json", "baseline", "save one")


def test_fields_other_work_adds_load_typed_and_survive_a_dump(shipped, tmp_path):
    """Per-trace `rewards_by_function` and the suite's `reward_funcs` (TRL-style reward functions) are
    typed; a field only a newer rlhf-eval knows, at any level, is kept as it is."""
    data = copy.deepcopy(shipped)
    suite = data["suites"][1]
    suite["reward_funcs"] = [{"name": "format", "weight": 0.5}, {"name": "correctness", "weight": 1.0}]
    suite["future_setting"] = {"a": [1, 2]}
    data["generated_by"] = "rlhf-eval 9.9"
    q = suite["questions"][0]
    q["future_field"] = None
    q["metrics"]["future_metric"] = 0.25
    for t in q["traces"]:
        t["rewards_by_function"] = {"format": 1.0, "correctness": t["reward"], "judge": None}
    path = _write(tmp_path, data)
    report = Report.load(path)
    s = report.suites[1]
    assert [(f.name, f.weight) for f in s.reward_funcs] == [("format", 0.5), ("correctness", 1.0)]
    assert s.questions[0].traces[0].rewards_by_function["judge"] is None
    assert s.questions[0].metrics.get("future_metric") == 0.25
    unchanged = report.suites[0]  # as the harness wrote it: the built-in accuracy alone
    assert [(f.name, f.weight) for f in unchanged.reward_funcs] == [("accuracy", 1.0)]
    assert all(t.rewards_by_function == {"accuracy": t.reward} for q in unchanged.questions for t in q.traces)
    out = tmp_path / "out.json"
    report.dump(out)
    assert json.loads(out.read_text()) == data  # known keys come in the model's order, unknown ones after
    legacy = copy.deepcopy(shipped)  # a report written before reward functions existed
    for s_ in legacy["suites"]:
        del s_["reward_funcs"]
        for t in (t for q_ in s_["questions"] for t in q_["traces"]):
            del t["rewards_by_function"]
    old = Report.load(_write(tmp_path, legacy, "legacy.json"))
    assert old.suites[0].reward_funcs is None and old.suites[0].questions[0].traces[0].rewards_by_function is None
    assert old.to_dict() == legacy
    assert "future_metric" in render_html(report)  # readers show a metric they do not know, after the known ones

    data["suites"][1]["reward_funcs"][0]["weight"] = "half"
    with pytest.raises(ReportError, match=r"suites\[1\]\.reward_funcs\[0\]\.weight: should be a valid number"):
        Report.load(_write(tmp_path, data))


@settings(max_examples=150, deadline=None)
@given(numbers=st.lists(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10**20, 10**20), max_size=12),
       texts=st.lists(st.text(st.characters(exclude_categories=["Cs"])), max_size=6))
def test_the_written_json_is_byte_for_byte_the_json_modules(numbers, texts):
    """`to_json` uses pydantic's serializer for speed; its float text (1e-06, 1e+16, 1e-05) and
    string escapes must be what json.dumps(indent=1, ensure_ascii=False) writes."""
    report = Report.from_data({"version": 1, "suites": [{
        "name": "s", "samples": 2, "extra_numbers": numbers, "extra_texts": texts,
        "questions": [{"id": "q", "prompt": "".join(texts), "metrics": {"mean_margin": numbers[0] if numbers else None},
                       "traces": [{"text": t, "logp": float(n), "extracted": t}
                                  for t, n in zip(texts, numbers)]}]}]}, strict=False)
    assert report.to_json() == json.dumps(report.to_dict(), indent=1, ensure_ascii=False, allow_nan=False) + "\n"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_report_with_nan_is_refused_not_written_as_null(tmp_path, value):
    report = Report.from_data({"suites": [{"name": "s", "questions": [{"id": "q", "metrics": {"spread": value}}]}]},
                              strict=False)
    with pytest.raises(ValueError, match=r"^Out of range float values are not JSON compliant: "
                                         r"suites\[0\]\.questions\[0\]\.metrics\.spread is -?(nan|inf)$"):
        write_json(report, tmp_path / "r.json")
    assert not (tmp_path / "r.json").exists()


FIX = "fix that field, or write the report again with pytest --rlhf-report-json=PATH"


def _refused(path) -> str:
    with pytest.raises(ReportError) as e:
        Report.load(path)
    assert "\n" not in str(e.value)
    return str(e.value)


@pytest.mark.parametrize("name", ["../../etc/evil", "/tmp/x/abs", "", "a\n", "..", "a/b"])
def test_a_suite_name_must_be_a_folder_name_so_an_export_stays_in_its_directory(shipped, tmp_path, name, capsys):
    """The export writes DIR/<suite name>/: "../../etc/evil" wrote outside DIR, "" into DIR itself."""
    data = copy.deepcopy(shipped)
    data["suites"][2]["name"] = name
    path = _write(tmp_path, data)
    assert _refused(path) == (
        f"{path}: suites[2].name: must be a suite name: letters, digits, '.', '_' or '-', starting with a letter "
        f"or digit (it names a folder), got {name!r}; {FIX}")
    out = tmp_path / "sub" / "out"
    assert main(["export", str(path), str(out)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"rlhf-eval: {_refused(path)}"]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["report.json"]  # nothing written, anywhere


def test_export_refuses_two_suites_of_one_name_and_writes_nothing(shipped, tmp_path, capsys):
    data = copy.deepcopy(shipped)
    data["suites"][2]["name"] = data["suites"][0]["name"]
    path = _write(tmp_path, data)
    assert main(["export", str(path), str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"rlhf-eval: {path}: suites[2].name: 'gsm8k_reference' is also the name of suites[0]; export writes one "
        "folder per suite, so suite names must differ"]
    assert not (tmp_path / "out").exists()
    with pytest.raises(ReportError, match=r"^suites\[2\]\.name: 'gsm8k_reference' is also"):
        export_files(Report.load(path), tmp_path / "out")


@pytest.mark.parametrize("token, shown", [("NaN", "nan"), ("Infinity", "inf"), ("-Infinity", "-inf"),
                                          ("1e400", "inf"), ("-1e400", "-inf")])
@pytest.mark.parametrize("where", ["suites[1].questions[2].traces[3].logp", "suites[0].aggregates.accuracy",
                                   "suites[2].questions[0].traces[1].extra.scores[1]"])
def test_a_nan_or_infinite_number_is_refused_at_load_with_its_field(shipped, tmp_path, token, shown, where):
    """json.loads reads NaN, Infinity and 1e400 (as inf) which `dump` then cannot write: refused when read,
    in a typed field or in a free-form one (a trace's `extra`)."""
    data = copy.deepcopy(shipped)
    fields = {"suites[1].questions[2].traces[3].logp": (data["suites"][1]["questions"][2]["traces"][3], "logp"),
              "suites[0].aggregates.accuracy": (data["suites"][0]["aggregates"], "accuracy")}
    if where in fields:
        holder, key = fields[where]
        holder[key] = "PLACEHOLDER"
    else:
        data["suites"][2]["questions"][0]["traces"][1]["extra"] = {"scores": [0.5, "PLACEHOLDER"]}
    path = _write(tmp_path, data)
    path.write_text(path.read_text().replace('"PLACEHOLDER"', token))
    assert _refused(path) == f"{path}: {where}: {shown} is not a finite number (JSON has no NaN or infinity); {FIX}"


def test_a_report_nested_too_deeply_is_one_line(tmp_path, capsys):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    assert _refused(deep) == f"{deep}: not a report: nested too deeply to read; {WRITE_HINT}"
    deep.write_text('{"suites": [], "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert _refused(deep) == f"{deep}: not a report: nested too deeply to read; {WRITE_HINT}"
    for command in (["html", str(deep), str(tmp_path / "r.html")], ["export", str(deep), str(tmp_path / "out")]):
        assert main(command) == 2
        assert capsys.readouterr().err.strip().splitlines() == [f"rlhf-eval: {_refused(deep)}"]


@pytest.mark.parametrize("side, index", [("chosen", 99), ("rejected", -5), ("rejected", -1), ("chosen", "k")])
def test_a_pair_index_must_be_one_of_the_questions_traces(shipped, tmp_path, side, index, capsys):
    """99 was an IndexError traceback in `export`; -1 silently picked the last trace."""
    data = copy.deepcopy(shipped)
    q = data["suites"][1]["questions"][3]
    k = len(q["traces"])
    assert k > 1 and q["pairs"]
    q["pairs"][0][side] = index = k if index == "k" else index  # k: one past the last trace
    path = _write(tmp_path, data)
    assert _refused(path) == (f"{path}: suites[1].questions[3].pairs[0].{side}: {index} is not the index of one of "
                              f"the question's traces (0 to {k - 1}); {FIX}")
    assert main(["export", str(path), str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"rlhf-eval: {_refused(path)}"]


@pytest.mark.parametrize("where, field, value, problem", [
    ("aggregates", "pass_at", [-3.0, 0.5], "aggregates.pass_at[0]: -3.0 is not a probability (0 to 1)"),
    ("aggregates", "pass_hat", [0.1] * 50, "aggregates: pass_at has 8 values and pass_hat 50; both hold one per "
     "budget k"),
    ("question", "pass_at", [0.5, 1e300], "questions[3].metrics.pass_at[1]: 1e+300 is not a probability (0 to 1)"),
    ("question", "pass_at", [0.5] * 20, "questions[3].metrics.pass_at: 20 values for k = 8; it holds one per budget "
     "1..k"),
    ("question", "unique_traces", -5, "questions[3].metrics.unique_traces: -5 distinct answers among k = 8 traces"),
    ("question", "unique_traces", 9, "questions[3].metrics.unique_traces: 9 distinct answers among k = 8 traces"),
])
def test_pass_curves_and_unique_traces_the_html_cannot_show_are_one_line(shipped, tmp_path, where, field, value,
                                                                         problem, capsys):
    """Edited by hand, these were drawn: a curve off its chart (hundreds of digits of coordinates),
    pass^k's points past pass@k's last budget."""
    data = copy.deepcopy(shipped)
    suite = data["suites"][1]
    assert suite["samples"] == 8
    (suite["aggregates"] if where == "aggregates" else suite["questions"][3]["metrics"])[field] = value
    path = _write(tmp_path, data)
    assert _refused(path) == f"{path}: suites[1].{problem}; {FIX}"
    assert main(["html", str(path), str(tmp_path / "r.html")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"rlhf-eval: {_refused(path)}"]
    assert not (tmp_path / "r.html").exists()


def test_no_path_and_a_huge_version_are_one_short_line(shipped, tmp_path):
    for path in ("", None):
        with pytest.raises(ReportError) as e:
            Report.load(path)
        assert str(e.value) == f"no report file given (expected a path, got {path!r}); {WRITE_HINT}"
    message = _refused(_write(tmp_path, {**shipped, "version": int("9" * 400)}))
    assert len(message) < 300 and "9" * 57 + "..., this rlhf-eval reads up to 1" in message
    message = _refused(_write(tmp_path, {**shipped, "version": "9" * 400}))
    assert len(message) < 300 and "got '" + "9" * 56 + "...; write one" in message
    huge = tmp_path / "huge.json"
    huge.write_text('{"version": ' + "9" * 5000 + ', "suites": []}')
    assert _refused(huge) == f"{huge}: not a report: it holds a number of over 4300 digits; {WRITE_HINT}"


def test_the_version_is_always_written():
    assert Report.from_data({"suites": []}).to_dict() == {"version": REPORT_VERSION, "suites": []}
    assert json.loads(Report(suites=[]).to_json()) == {"version": REPORT_VERSION, "suites": []}


# ---------------------------------------------------------------------------------------------- one rows layer

def test_the_terminal_table_the_html_and_the_viewer_show_the_same_cells(shipped):
    """Every summary cell reads the same in all three readers (the HTML with a true minus sign, and
    its interval and delta after the value)."""
    from test_html_report import parse

    report = Report.of(shipped)
    terminal = report_rows(report, maj_at_k=False)  # the viewer has no maj@k column
    viewer = [question_row(s.name, q) for s in report.suites for q in s.questions]
    assert [r for r in terminal if r[1] != "(suite)"] == viewer
    table = parse(render_html(report)).find("table", cls="sum")
    headers = [th.text() for th in table.find("thead").find_all("th")]
    html_rows = [[td.text() for td in tr.find_all("td")] for tr in table.find_all("tr") if tr.find("td")]
    assert len(html_rows) == len(terminal)
    checked = 0
    for t_row, h_row in zip(terminal, html_rows):
        for label, text in zip(report_columns()[2:], t_row[2:]):
            shown = re.sub(r" \[[^\]]*\]", "", h_row[headers.index(label)])  # without its intervals
            assert shown.startswith(rows.typographic(text) if text != "-" else text), (label, text, shown)
            checked += 1
    assert checked == len(terminal) * (len(report_columns()) - 2)
    smoke = report.suite("gsm8k_smoke")  # the suite row: the mean spread, and the zero-spread fraction apart
    assert [r for r in terminal if r[0] == "gsm8k_smoke"][-1][-3:-1] == \
        [f"{smoke.aggregates.mean_spread:.3f}", f"{smoke.aggregates.frac_zero_spread:.3f}"]


def test_each_metric_is_defined_once_with_its_direction_and_dpo_flag():
    from rlhf_eval import suite, thresholds

    assert suite.DPO_METRICS is rows.DPO_METRICS is thresholds.DPO_METRICS
    assert rows.DPO_METRICS == {"mean_margin", "reward_accuracy", "dpo_loss", "mean_logp", "mean_ref_logp",
                                "margin_per_token", "margin_length_corr"}
    assert all(rows.METRICS[m].higher_is_better is not None for m in COMPARED_METRICS)
    assert [m for m in COMPARED_METRICS if not rows.higher_is_better(m)] == ["unparsable_rate", "frac_zero_spread"]
    # metrics are listed in one order everywhere: the model's own field order is that order's subset
    from rlhf_eval.report_model import QuestionMetrics
    fields = [f for f in QuestionMetrics.model_fields if f in rows.METRICS]
    assert set(fields) == set(QuestionMetrics.model_fields)
    assert rows.metric_order(["pass_at_k", "zzz", "k", "aaa"]) == ["k", "pass_at_k", "aaa", "zzz"]


@pytest.mark.parametrize("value, text", [(None, "-"), (math.nan, "-"), (3, "3"), (0.5, "0.500"), (-0.25, "-0.250"),
                                         (True, "yes"), (math.inf, "∞"), ("x", "x")])
def test_one_formatter(value, text):
    assert rows.fmt(value) == text


def test_a_fail_rule_must_name_a_metric_the_comparison_tests():
    """pass_at_k was accepted and then never checked (the comparison does not test it): now refused."""
    assert parse_fail_rules(["accuracy:0.05", "frac_zero_spread:0.1"]) == {"accuracy": 0.05, "frac_zero_spread": 0.1}
    with pytest.raises(ValueError, match="'pass_at_k:0.1': expected METRIC:DELTA with METRIC one of accuracy, "
                       "frac_zero_spread, mean_margin, mean_spread, reward_accuracy, unparsable_rate"):
        parse_fail_rules(["pass_at_k:0.1"])


@pytest.mark.parametrize("delta", ["nan", "NaN", "inf", "-inf", "-1", "-0.05", "1e400", "x", ""])
def test_a_fail_rules_delta_must_be_a_finite_number_not_below_zero(delta):
    """accuracy:nan was accepted and switched the gate off (nothing exceeds NaN); -1 became 1."""
    with pytest.raises(ValueError) as e:
        parse_fail_rules([f"accuracy:{delta}"])
    assert str(e.value) == (f"--rlhf-compare-fail 'accuracy:{delta}': DELTA must be a finite number ≥ 0 "
                            "(the worsening allowed, e.g. accuracy:0.05)")
    assert parse_fail_rules(["accuracy:0", "mean_margin:-0"]) == {"accuracy": 0.0, "mean_margin": 0.0}


def test_a_comparison_is_typed_and_flips_are_preference_flips(shipped):
    baseline = copy.deepcopy(shipped)
    q = baseline["suites"][1]["questions"][0]
    for p in q["pairs"]:
        p["margin"] = -p["margin"]  # every answer pair of this question now prefers the other side
    comparison = compare_reports(shipped, baseline, "base")
    cq = comparison.suite("gsm8k_smoke").questions[q["id"]]
    assert cq.flips and all((f.baseline_margin > 0) != (f.current_margin > 0) for f in cq.flips)
    assert {f.direction for f in cq.flips} <= {"now rejected", "now preferred"}
    report = Report.of(shipped)
    report.comparison = comparison
    again = Report.from_data(json.loads(report.to_json()))
    assert again.comparison == comparison
