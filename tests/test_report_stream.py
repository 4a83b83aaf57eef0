"""Reading a large report a piece at a time (rlhf_eval.report_stream): a file above
`STREAM_ABOVE_BYTES` is read 1 MiB at a time, its questions validated one by one into a spool on
disk. It must be the whole load's Report (its JSON byte for byte) and, for a bad file, the whole
load's one line. The report under test is the shipped suites' real one (conftest's `shipped_report`)
and a generated one of 1,500 questions; the text is read in chunks as small as 7 characters, so every
token is cut by a chunk's end somewhere."""
import json
import re
import tracemalloc

import numpy as np
import pytest

from rlhf_eval import report_stream
from rlhf_eval.cli import main
from rlhf_eval.report import load_report
from rlhf_eval.report_model import Report, ReportError
from rlhf_eval.runner import Run, RunOptions
from rlhf_eval.spool import SpooledQuestions

CHUNKS = [7, 100, 4096, 1 << 20]  # characters read at a time: tokens cut everywhere, and the default


@pytest.fixture(scope="module")
def shipped(shipped_report):
    return shipped_report[0]


@pytest.fixture(scope="module")
def generated(shipped, tmp_path_factory):
    """A report of 1,500 questions (the shipped questions with new ids, in a shuffled arrival order),
    written by a run that streams them (runner.IN_MEMORY_QUESTIONS): 14 MB."""
    path = tmp_path_factory.mktemp("generated") / "report.json"
    report = Report.from_data(shipped)
    run = Run(RunOptions(report_json=path))
    run.in_memory_questions = 0
    questions = [(s, q) for s in report.suites for q in s.questions]
    settings = {s.name: s.model_dump(mode="json", exclude_unset=True,
                                     exclude={"aggregates", "threshold_failures", "questions"}) for s in report.suites}
    for i in np.random.default_rng(0).permutation(1500):
        suite, q = questions[i % len(questions)]
        run.add(settings[suite.name], q.model_copy(update={"id": f"{q.id}-{i}", "index": int(i)}))
    run.finish({"time": "then"})
    assert not run.problems
    return path


def outcome(path, stream):
    """The Report's JSON, or the one line of its ReportError."""
    try:
        report = Report.load(path, stream=stream)
    except ReportError as e:
        return "error: " + str(e)
    assert report.streamed == (stream and bool(report.suites))
    return report.to_json()


def same_both_ways(path, chunk=None, monkeypatch=None):
    if chunk is not None:
        monkeypatch.setattr(report_stream, "_CHUNK", chunk)
    whole, streamed = outcome(path, False), outcome(path, True)
    assert streamed == whole
    return whole


# ------------------------------------------------------------------------------------------- equal

@pytest.mark.parametrize("chunk", CHUNKS)
def test_a_streamed_load_is_the_whole_load_byte_for_byte(shipped, tmp_path, monkeypatch, chunk):
    path = tmp_path / "report.json"
    path.write_text(Report.from_data(shipped).to_json(), encoding="utf-8")
    monkeypatch.setattr(report_stream, "_CHUNK", chunk)
    report = Report.load(path, stream=True)
    assert report.streamed and all(isinstance(s.questions, SpooledQuestions) for s in report.suites)
    assert report.to_json() == path.read_text(encoding="utf-8")
    whole = Report.load(path, stream=False)
    assert [list(s.questions) for s in report.suites] == [s.questions for s in whole.suites]
    assert report.model_copy(update={"suites": []}) == whole.model_copy(update={"suites": []})


def test_a_file_above_the_threshold_streams_by_itself_and_reads_as_the_run_wrote_it(generated, monkeypatch):
    text = generated.read_text(encoding="utf-8")
    assert not Report.load(generated).streamed  # 14 MB: under the 16 MiB threshold
    monkeypatch.setattr(report_stream, "STREAM_ABOVE_BYTES", 1 << 20)
    report = load_report(generated)
    assert report.streamed and sum(len(s.questions) for s in report.suites) == 1500
    assert report.to_json() == text
    assert report.suites[0].questions[-1].index == max(q.index for q in report.suites[0].questions)


def test_other_layouts_load_the_same_compact_crlf_and_hand_ordered(shipped, tmp_path, monkeypatch):
    monkeypatch.setattr(report_stream, "_CHUNK", 100)
    data = json.loads(json.dumps(shipped))
    questions = data["suites"][0]["questions"]
    questions.reverse()  # by hand: not in index order, and one filed under another suite's name
    questions[0]["suite"] = data["suites"][1]["name"]
    for name, text in {"compact": json.dumps(data), "crlf": json.dumps(data, indent=2).replace("\n", "\r\n"),
                       "ascii": json.dumps(data, indent=1, ensure_ascii=True)}.items():
        path = tmp_path / f"{name}.json"
        path.write_bytes(text.encode("utf-8"))
        same_both_ways(path)
        report = Report.load(path, stream=True)
        assert [q.id for q in report.suites[0].questions] == [q["id"] for q in questions], name


def test_a_report_without_questions_or_suites_streams(shipped, tmp_path):
    data = {**shipped, "suites": [{**shipped["suites"][0], "questions": []}]}
    path = tmp_path / "empty.json"
    path.write_text(json.dumps(data, indent=1))
    same_both_ways(path)
    path.write_text(json.dumps({**shipped, "suites": []}))
    assert same_both_ways(path).startswith("{")


# ------------------------------------------------------------------------------------------- bad files

def _written(tmp_path, data, name="bad.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _q(data, n=0, m=17):
    return data["suites"][n]["questions"][m]


def _break(change):
    def apply(shipped):
        data = json.loads(json.dumps(shipped))
        change(data)
        return data
    return apply


BAD = {  # a change to the shipped report -> what the (whole and streamed) load says, in part
    "a field of the wrong type deep in a question": (
        _break(lambda d: _q(d)["traces"][3].update(verdict=5)),
        "suites[0].questions[17].traces[3].verdict: should be a valid string, got 5"),
    "a question that is no object": (
        _break(lambda d: d["suites"][1]["questions"].insert(2, 5)), "suites[1].questions[2]: should be a valid"),
    "a missing field": (_break(lambda d: _q(d, 1, 3).pop("id")), "suites[1].questions[3].id: is missing"),
    "an index of over 64 bits (the spool's OverflowError traceback)": (
        _break(lambda d: _q(d, 1, 3).update(index=10**23)),
        "suites[1].questions[3].index: should be less than or equal to 9223372036854775807, got 1000"),
    "several problems, in and out of the questions": (
        _break(lambda d: (_q(d, 1, 4)["traces"][0].update(logp="x"), d["suites"][1].update(samples="8"),
                          _q(d, 0, 2).update(passed="yes"), d.update(comparison={"suites": 3}))),
        "suites[0].questions[2].passed: should be a valid boolean, got 'yes' (and 3 more problems)"),
    "a suite's setting before its questions, a suite before the next": (
        _break(lambda d: (d["suites"][0].update(samples="8"), _q(d, 0, 5).update(passed="yes"),
                          _q(d, 1, 1).update(passed="no"))),
        "suites[0].samples: should be a valid integer, got '8' (and 2 more problems)"),
    "a question before the next suite's": (
        _break(lambda d: (_q(d, 0, 5).update(passed="yes"), _q(d, 1, 1).update(passed="no"))),
        "suites[0].questions[5].passed: should be a valid boolean, got 'yes' (and 1 more problem)"),
    "a suite that is no object": (_break(lambda d: d["suites"].insert(1, "x")), "suites[1]: should be a valid"),
    "a suite without questions": (_break(lambda d: d["suites"][0].pop("questions")), "suites[0].questions: is missing"),
    "questions that are no list": (_break(lambda d: d["suites"][0].update(questions={})), "suites[0].questions: "),
    "a bad suite name": (_break(lambda d: d["suites"][0].update(name="../x")), "suites[0].name: must be a suite name"),
    "NaN": (_break(lambda d: _q(d)["traces"][2].update(logp=float("nan"))),
            "suites[0].questions[17].traces[2].logp: nan is not a finite number"),
    "1e400 in the aggregates": (
        _break(lambda d: d["suites"][1]["aggregates"].update(accuracy=float("inf"))),
        "suites[1].aggregates.accuracy: inf is not a finite number"),
    "a bad pair index": (_break(lambda d: _q(d)["pairs"].append({"chosen": 0, "rejected": 99})),
                         "suites[0].questions[17].pairs["),
    "a bad pair index beats a NaN before it": (
        _break(lambda d: (_q(d, 0, 1)["traces"][0].update(logp=float("nan")),
                          _q(d)["pairs"].append({"chosen": -1, "rejected": 0}))),
        "suites[0].questions[17].pairs["),
    "a curve that is no probability": (_break(lambda d: _q(d)["metrics"].update(pass_at=[2.0] * 8)),
                                       "suites[0].questions[17].metrics.pass_at[0]: 2.0 is not a probability"),
    "the suite's curve before its questions'": (
        _break(lambda d: (_q(d)["metrics"].update(pass_at=[2.0] * 8),
                          d["suites"][0]["aggregates"].update(pass_hat=[-1.0]))),
        "suites[0].aggregates.pass_hat[0]: -1.0 is not a probability"),
    "a newer version": (_break(lambda d: d.update(version=99)), "version: the report is version 99"),
    "a newer version written last": (_break(lambda d: d.update(version=d.pop("version") + 98)),
                                     "version: the report is version 99"),
    "a version that is no number": (_break(lambda d: d.update(version="1")), "version: expected a report version"),
    "no suites": (_break(lambda d: d.pop("suites")), "not an rlhf-eval report (no 'suites' list)"),
    "suites that are no list": (_break(lambda d: d.update(suites={"a": 1})), "not an rlhf-eval report"),
}


@pytest.mark.parametrize("chunk", [7, 4096])
@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_report_is_the_whole_loads_one_line(shipped, tmp_path, monkeypatch, case, chunk):
    change, expected = BAD[case]
    path = _written(tmp_path, change(shipped))
    line = same_both_ways(path, chunk, monkeypatch)
    assert line.startswith(f"error: {path}: ") and expected in line, line
    assert "\n" not in line


def _text_of(shipped):
    return Report.from_data(shipped).to_json()


def _mid_question(text):
    """The offset of the `"verdict": ` of trace 3 of question 17 of the first suite (a line deep in the file)."""
    at = text.index('"questions": [')
    for _ in range(18):
        at = text.index("\n    {\n", at + 1)
    for _ in range(4):
        at = text.index('"verdict": ', at + 1)
    return at


SYNTAX = {  # (text of the shipped report) -> a broken text
    "a bare word mid-question": lambda t: t[:_mid_question(t)] + '"verdict": correct' + t[
        t.index("\n", _mid_question(t)):],
    "a missing comma between questions": lambda t: t.replace("\n    },\n    {", "\n    }\n    {", 1),
    "a word after a question, on its line": lambda t: t.replace("\n    },\n    {", "\n    } x,\n    {", 3),
    "a trailing comma in the questions": lambda t: t.replace("\n    }\n   ]", "\n    },\n   ]", 1),
    "a trailing comma in the report": lambda t: t[:t.rindex("\n}")] + ",\n}\n",
    "a missing colon after a suite key": lambda t: t.replace('"samples": ', '"samples" ', 1),
    "an unquoted key in the report": lambda t: t.replace('"provenance":', "provenance:", 1),
    "a stray bracket after the suites": lambda t: t[:t.rindex("\n ]")] + "\n ]]" + t[t.rindex("\n ]") + 3:],
    "extra data": lambda t: t + "{}\n",
    "a control character in a string": lambda t: t.replace('"text": "', '"text": "\x01', 1),
    "a bad escape": lambda t: t.replace('"text": "', '"text": "\\q', 1),
    "a BOM": lambda t: "\ufeff" + t,
    "empty": lambda t: "",
    "not JSON": lambda t: "not json",
    "a list": lambda t: "[1, 2]",
    "a string": lambda t: '"report"',
    "deeply nested": lambda t: t.replace('"extra": {}', '"extra": ' + "[" * 100000 + "]" * 100000, 1),
    "a number of 5000 digits": lambda t: t.replace('"index": ', '"index": ' + "9" * 5000, 1),
}


@pytest.mark.parametrize("chunk", [7, 100, 1 << 20])
@pytest.mark.parametrize("case", sorted(SYNTAX))
def test_invalid_json_is_the_whole_loads_line_and_column(shipped, tmp_path, monkeypatch, case, chunk):
    path = tmp_path / "bad.json"
    path.write_text(SYNTAX[case](_text_of(shipped)), encoding="utf-8")
    line = same_both_ways(path, chunk, monkeypatch)
    assert line.startswith(f"error: {path}") and "\n" not in line, line


def test_the_line_of_an_error_mid_question_is_its_line_in_the_file(shipped, tmp_path, monkeypatch):
    text = _text_of(shipped)
    at = _mid_question(text)
    path = tmp_path / "bad.json"
    path.write_text(SYNTAX["a bare word mid-question"](text), encoding="utf-8")
    line = same_both_ways(path, 100, monkeypatch)
    word = at + len('"verdict": ')  # where `correct` starts
    assert line == (f"error: {path}:{text.count(chr(10), 0, at) + 1}: not valid JSON: Expecting value "
                    f"(column {word - text.rfind(chr(10), 0, word)})")


def test_the_column_of_an_error_on_a_long_line_is_the_whole_loads(shipped, tmp_path, monkeypatch):
    """A report written on one line: the error's column counts the text read before it in earlier chunks."""
    text = json.dumps(shipped)
    at = 0
    for _ in range(40):
        at = text.index('"verdict": "', at + 1)
    path = tmp_path / "compact.json"
    path.write_text(text[:at] + '"verdict": x' + text[at + len('"verdict": '):], encoding="utf-8")
    line = same_both_ways(path, 100, monkeypatch)
    column = at + len('"verdict": ') + 1  # of the x, counted from 1
    assert line == f"error: {path}:1: not valid JSON: Expecting value (column {column})"


def test_a_report_cut_anywhere_is_the_whole_loads_line(shipped, tmp_path, monkeypatch):
    """A copy cut short (a full disk, an interrupted download) at 60 places: mid-string, mid-number,
    between questions, in the suites' settings."""
    text = _text_of(shipped)
    path = tmp_path / "cut.json"
    for cut in np.random.default_rng(1).integers(1, len(text), 60):
        path.write_text(text[:cut], encoding="utf-8")
        line = same_both_ways(path, 4096, monkeypatch)
        assert re.match(rf"error: {re.escape(str(path))}:\d+: not valid JSON: ", line), (cut, line)


def test_bytes_that_are_not_utf8_are_the_whole_loads_line(shipped, tmp_path, monkeypatch):
    data = _text_of(shipped).encode("utf-8")
    at = len(data) // 2
    path = tmp_path / "bad.json"
    for bad in (b"\xff", b"\xe2\x82"):  # an invalid byte; a sequence cut short
        path.write_bytes(data[:at] + bad + b"x" + data[at:])
        line = same_both_ways(path, 4096, monkeypatch)
        assert line.startswith(f"error: {path}: cannot read the report: 'utf-8' codec can't decode") and \
            f"position {at}" in line, line


def test_a_missing_file_or_a_folder_is_one_line(tmp_path):
    for stream in (True, False):
        with pytest.raises(ReportError, match=r"missing\.json: no such report file \(write one with "):
            Report.load(tmp_path / "missing.json", stream=stream)
        with pytest.raises(ReportError, match=r": is a directory, not a JSON report$"):
            Report.load(tmp_path, stream=stream)


def test_the_cli_reads_a_large_report_streamed(generated, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(report_stream, "STREAM_ABOVE_BYTES", 1 << 20)
    assert main(["html", str(generated), str(tmp_path / "a.html")]) == 0
    monkeypatch.setattr(report_stream, "STREAM_ABOVE_BYTES", 1 << 40)
    assert main(["html", str(generated), str(tmp_path / "b.html")]) == 0
    assert (tmp_path / "a.html").read_bytes() == (tmp_path / "b.html").read_bytes()
    capsys.readouterr()


# ------------------------------------------------------------------------------------------- memory

def _peak(load):
    tracemalloc.start()
    try:
        report = load()
        return tracemalloc.get_traced_memory()[1], report
    finally:
        tracemalloc.stop()


def test_a_streamed_load_holds_no_question(generated):
    """Python's heap at its peak while loading 1,500 questions (14 MB of JSON): the whole load holds
    every question's models (~100 MB); the streamed one a few MiB of text and one question at a time
    (~8 MB, whatever the number of questions)."""
    whole, _ = _peak(lambda: Report.load(generated, stream=False))
    streamed, report = _peak(lambda: Report.load(generated, stream=True))
    assert sum(len(s.questions) for s in report.suites) == 1500
    size = generated.stat().st_size
    assert whole > 3 * size and streamed * 5 < whole, (whole, streamed, size)
