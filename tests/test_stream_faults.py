"""Faults of reading and comparing large reports (rlhf_eval.report_stream, rlhf_eval.compare,
rlhf_eval.comparison_spool, rlhf_eval.merge), as a user meets them: a compared report whose
per-question comparison entries would be held whole, bad or repeated entries, a disk that fills or a
temporary folder that is gone while a spool is written. Real files, real subprocesses for the size
cap; no mock of rlhf-eval's own code."""
import json
import os
import subprocess
import sys
import tempfile
import tracemalloc

import pytest
from test_compare_stream import BIG, _report, generated

from rlhf_eval import report_stream
from rlhf_eval.compare import compare_reports
from rlhf_eval.comparison_spool import SpooledComparisons
from rlhf_eval.report_model import Report, ReportError

# A prelude that caps the size of any file the process writes (RLIMIT_FSIZE), as a disk that fills
# does (tests/test_memory_faults.py): the write crossing the cap writes what fits, the next fails.
FILE_SIZE_CAP = """
import resource, signal
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({cap}, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
"""


def compared_file(source, path, n: int) -> str:
    """A report of a run compared with a baseline (n questions in BIG, ~n entries), written to `path`."""
    current, baseline, settings, base_settings = generated(source, n)
    report = _report(current, settings, False)
    report.comparison = compare_reports(report, _report(baseline, base_settings, False), "base")
    report.dump(path)
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def compared(shipped_questions, tmp_path_factory):
    path = tmp_path_factory.mktemp("compared") / "report.json"
    return path, compared_file(shipped_questions, path, 300)


def outcome(path, stream):
    try:
        return Report.load(path, stream=stream).to_json()
    except ReportError as e:
        return "error: " + str(e)


# ------------------------------------------------------------------ a compared report's own entries

@pytest.mark.parametrize("chunk", [7, 4096, 1 << 20])
def test_a_streamed_load_keeps_the_reports_comparison_entries_on_disk_and_writes_them_back(
        compared, monkeypatch, chunk):
    """The comparison block of a compared run (an entry a question both runs scored) was parsed
    whole by the streamed load: ~6 KB a question as models, 300 MB for 50,000."""
    path, text = compared
    monkeypatch.setattr(report_stream, "_CHUNK", chunk)
    report = Report.load(path, stream=True)
    entries = report.comparison.suite(BIG).questions
    assert isinstance(entries, SpooledComparisons) and len(entries) == 258  # of 300: 20 on one side, some errored
    assert report.to_json() == text
    whole = Report.load(path, stream=False)
    assert dict(entries.items()) == whole.comparison.suite(BIG).questions
    assert report.to_dict() == whole.to_dict()


def test_a_streamed_load_of_a_compared_report_holds_no_comparison_entry(shipped_questions, tmp_path):
    """What a streamed load of a compared report keeps (and its peak) grows by well under 1 KB an
    entry, not by the entry's models. Measured: held, the loaded report kept 6 KB more an entry
    (1.3 MB at 166 entries, 4.6 MB at 720: 300 MB at 50,000); spooled, nothing grows (0.25 MB and
    0.22 MB kept; the peak, 8.5 MB, is the text read and one question)."""
    def measured(n: int) -> tuple[int, int, int]:
        path = tmp_path / f"r{n}.json"
        compared_file(shipped_questions, path, n)
        tracemalloc.start()
        try:
            report = Report.load(path, stream=True)
            kept, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return kept, peak, len(report.comparison.suite(BIG).questions)

    (k1, p1, e1), (k2, p2, e2) = measured(200), measured(800)
    assert (k2 - k1) / (e2 - e1) < 1024 and (p2 - p1) / (e2 - e1) < 1024, (k1, k2, p1, p2, e1, e2)


def _with_entry(text: str, change) -> str:
    data = json.loads(text)
    change(data["comparison"]["suites"][0]["questions"], data)
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def _first_entry(entries):
    return entries[next(iter(entries))]


BAD_ENTRIES = {
    "an entry of the wrong type": (lambda e, d: _first_entry(e)["metrics"]["accuracy"].update(significant="yes"),
                                   ".metrics.accuracy.significant: should be a valid boolean, got 'yes'"),
    "an entry that is no object": (lambda e, d: e.update({next(iter(e)): 5}), "should be a valid dictionary"),
    "a NaN in an entry": (lambda e, d: _first_entry(e)["metrics"]["accuracy"].update(p_value=float("nan")),
                          "nan is not a finite number"),
    "an entry and the comparison's failures": (
        lambda e, d: (list(e.values())[3].update(flips=3), d["comparison"].update(failures=[1])),
        "flips: should be a valid list, got 3 (and 1 more problem)"),
    "the comparison's notes before an entry": (
        lambda e, d: (list(e.values())[3].update(flips=3), d["comparison"].update(notes=7)),
        "comparison.notes: should be a valid list, got 7 (and 1 more problem)"),
    "a suite's name before its entries": (
        lambda e, d: (list(e.values())[3].update(flips=3), d["comparison"]["suites"][0].update(name=5)),
        "comparison.suites[0].name: should be a valid string, got 5 (and 1 more problem)"),
    "an entry before the suite's later field": (
        lambda e, d: (list(e.values())[3].update(flips=3), d["comparison"]["suites"][0].update(prompts_changed=5)),
        ".flips: should be a valid list, got 3 (and 1 more problem)"),
    "a question's problem before the comparison's": (
        lambda e, d: (list(e.values())[3].update(flips=3), d["suites"][0]["questions"][0].update(passed="x")),
        "suites[0].questions[0].passed: should be a valid boolean, got 'x' (and 1 more problem)"),
    "the second of two bad entries": (
        lambda e, d: (list(e.values())[5].update(flips=5), list(e.values())[9].update(flips=9)),
        ".flips: should be a valid list, got 5 (and 1 more problem)"),
}


@pytest.mark.parametrize("case", sorted(BAD_ENTRIES))
def test_a_bad_comparison_entry_is_the_whole_loads_one_line(compared, tmp_path, case):
    change, expected = BAD_ENTRIES[case]
    path = tmp_path / "bad.json"
    path.write_text(_with_entry(compared[1], change), encoding="utf-8")
    whole, streamed = outcome(path, False), outcome(path, True)
    assert streamed == whole
    assert whole.startswith(f"error: {path}: ") and expected in whole, whole


def test_a_question_id_given_twice_in_the_comparison_keeps_its_first_place_and_last_entry(compared, tmp_path):
    """json keeps a key's last value at its first place: so does the streamed load, and a bad first
    value then replaced by a good one is no problem (as for json)."""
    text = compared[1]
    data = json.loads(text)
    entries = data["comparison"]["suites"][0]["questions"]
    ids = list(entries)
    first = json.dumps(entries[ids[0]], indent=1)
    body = ",\n".join(f'{json.dumps(k)}: {json.dumps(v, indent=1)}' for k, v in entries.items())
    for name, extra in {"good then good": f'{json.dumps(ids[2])}: {first}',
                        "bad then good": None}.items():
        if extra is None:
            doubled = f'{json.dumps(ids[1])}: {{"flips": 3}},\n' + body
        else:
            doubled = body + ",\n" + extra
        data["comparison"]["suites"][0]["questions"] = "@@"
        path = tmp_path / "twice.json"
        path.write_text(json.dumps(data, indent=1, ensure_ascii=False).replace('"@@"', "{" + doubled + "}"),
                        encoding="utf-8")
        whole, streamed = outcome(path, False), outcome(path, True)
        assert streamed == whole and not whole.startswith("error"), (name, whole[:300])


@pytest.mark.parametrize("stream", [False, True])
def test_a_lone_surrogate_in_a_compared_question_id_or_answer_is_written_back_as_read(compared, tmp_path, stream):
    """A dataset's id or a model's answer may hold a lone surrogate ("\\ud800", which JSON can
    escape and UTF-8 cannot encode). As a comparison entry's key pydantic wrote it as U+FFFD (the
    held report's id changed without a word); spooled, the key and a flip's answer went raw to the
    file: `dump` failed with a UnicodeEncodeError traceback."""
    data = json.loads(compared[1])
    entries = data["comparison"]["suites"][0]["questions"]
    flipped = next(k for k, v in entries.items() if v["flips"])
    entries[flipped]["flips"][0]["chosen"] = "\ud800x"
    entries["q-\udc80"] = entries.pop(next(iter(entries)))
    path, out = tmp_path / "odd.json", tmp_path / "out.json"
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")  # ASCII: the surrogates escaped
    report = Report.load(path, stream=stream)
    report.dump(out)
    written = json.loads(out.read_text(encoding="utf-8"))["comparison"]["suites"][0]["questions"]
    assert list(written) == list(entries) and written[flipped]["flips"][0]["chosen"] == "\ud800x"
    assert report.to_json() == Report.load(path, stream=not stream).to_json() == out.read_text(encoding="utf-8")


# ------------------------------------------------------------------ a disk that fills, a folder that goes

def _cli(cwd, script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


@pytest.mark.parametrize("what", ["its questions", "its comparison's entries"])
def test_a_disk_that_fills_while_a_large_report_is_read_is_one_line(compared, tmp_path, what):
    """`rlhf-eval html` of a large report whose spool meets a full disk (each file capped at 2 MB;
    the report is 4.3 MB, its comparison's entries 0.3 MB, so a report without its questions shows
    the entries' spool). Was `cannot read the report: File too large` (the report file is fine:
    the temporary file is not), and, for the comparison's entries, a short write taken as whole."""
    path, text = compared
    cap = 2_000_000
    if what != "its questions":
        data = json.loads(text)
        for suite in data["suites"]:
            suite["questions"] = []
        path = tmp_path / "entries.json"
        path.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
        cap = 100_000
    env_tmp = tmp_path / "tmp"
    env_tmp.mkdir()
    proc = _cli(tmp_path, FILE_SIZE_CAP.format(cap=cap) + "from rlhf_eval import report_stream\n"
                "report_stream.STREAM_ABOVE_BYTES = 0\n" + (
                    "import sys, tempfile\n"
                    f"tempfile.tempdir = {str(env_tmp)!r}\n"
                    "from rlhf_eval.cli import main\n"
                    f"sys.exit(main(['html', {str(path)!r}, 'out.html']))\n"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.splitlines() == [
        f"rlhf-eval: {path}: cannot write {what} to a temporary file in {env_tmp} (File too large); free space "
        "there or set TMPDIR to a folder with room"]
    assert not (tmp_path / "out.html").exists()


def test_a_temporary_folder_gone_before_a_large_report_is_read_is_one_line(compared, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))
    with pytest.raises(ReportError) as e:
        Report.load(compared[0], stream=True)
    assert str(e.value) == (f"{compared[0]}: cannot write its questions to a temporary file in {tmp_path / 'gone'} "
                            "(No such file or directory); set TMPDIR to a writable folder")


def test_a_spooled_comparison_entry_cut_by_a_full_disk_is_never_read_back(shipped_questions, tmp_path):
    """`SpooledComparisons` wrote with one `pwrite` and took it as whole: a write cut by a full disk
    left an entry whose text was cut (a JSON error, or another entry's bytes, when read back)."""
    current, baseline, settings, base_settings = generated(shipped_questions, 40)
    report = _report(current, settings, False)
    entries = compare_reports(report, _report(baseline, base_settings, False), "base").suite(BIG).questions
    script = FILE_SIZE_CAP.format(cap=5_000) + (
        "import json, sys\n"
        "from rlhf_eval.comparison_spool import SpooledComparisons\n"
        "from rlhf_eval.report_model import QuestionComparison\n"
        "entries = {k: QuestionComparison.model_validate(v) for k, v in json.load(sys.stdin).items()}\n"
        "spool = SpooledComparisons()\n"
        "for k, v in entries.items():\n"
        "    try:\n"
        "        spool[k] = v\n"
        "    except OSError as e:\n"
        "        print('stopped', len(spool), e.strerror)\n"
        "        break\n"
        "assert all(spool[k] == entries[k] for k in spool), 'an entry read back differs'\n"
        "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", script], input=json.dumps(
        {k: v.model_dump(mode="json", exclude_unset=True) for k, v in entries.items()}),
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    stopped, ok = proc.stdout.splitlines()
    assert stopped.startswith("stopped ") and ok == "ok", proc.stdout
    assert 0 < int(stopped.split()[1]) < len(entries)

