"""Faults of a large run's path (rlhf_eval.spool, rlhf_eval.tally, the streamed outputs), as a user
with a big suite meets them: a temporary folder that cannot take the run's spool, a disk that fills
while the run goes, odd texts in a dataset, ... Each through real pytest runs (or `run_suites`),
with the spooled path forced by a lowered `runner.IN_MEMORY_QUESTIONS` where it matters."""
import json
import os
import subprocess
import sys
import tempfile
import tracemalloc

import pytest
import yaml

from conftest import TEST_KEY
from test_plugin import suite_yaml

from rlhf_eval import runner
from rlhf_eval.emulator import Emulator
from rlhf_eval.export import export_report
from rlhf_eval.report import load_report
from rlhf_eval.runner import Run, RunError, RunOptions, run_suites

# A conftest that points Python's temporary folder at one that does not exist (as when TMPDIR names
# a folder since removed and the usual fallbacks are read-only: tempfile then has nowhere to go).
NO_TEMP_FOLDER = """
import tempfile
tempfile.tempdir = {folder!r}
"""
# A conftest that caps the size of any file the run writes (RLIMIT_FSIZE), as a disk that fills
# does: the write crossing the cap writes what fits, the next one fails (EFBIG, "File too large").
FILE_SIZE_CAP = """
import resource, signal
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the cap fails instead of killing the run
resource.setrlimit(resource.RLIMIT_FSIZE, ({cap}, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
"""
STREAMED = "from rlhf_eval import runner\nrunner.IN_MEMORY_QUESTIONS = 0\n"


def recorded(project) -> dict[str, bytes]:
    """The cassettes under cassettes/, each checked whole: it loads, one exchange a trace, no key."""
    found = {p.relative_to(project.path / "cassettes").as_posix(): p.read_bytes()
             for p in sorted((project.path / "cassettes").rglob("*.yaml"))}
    for name, data in found.items():
        assert TEST_KEY.encode() not in data, name
        assert all(i["response"]["status"]["code"] == 200 for i in yaml.safe_load(data)["interactions"]), name
    return found


def test_a_temporary_folder_that_cannot_take_the_spool_stops_the_run_before_anything_is_sampled(project, live):
    """Was an INTERNALERROR traceback after the first question had been sampled (and paid for)."""
    project.makefile(".yaml", demo=suite_yaml(samples=2, limit=3))
    project.makeconftest(NO_TEMP_FOLDER.format(folder=str(project.path / "gone")))
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--rlhf-record-mode=once")
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out[-3000:]
    assert "INTERNALERROR" not in out and "Traceback" not in out, out[-3000:]
    result.stderr.fnmatch_lines(["ERROR: rlhf-eval: cannot write the run's question results to a temporary file "
                                 f"in {project.path / 'gone'} (*); set TMPDIR to a writable folder; no question "
                                 "was sampled"])
    assert not (project.path / "cassettes").exists()  # nothing sampled, nothing paid for


def test_run_suites_without_a_usable_temporary_folder_raises_before_anything_is_sampled(project, live, monkeypatch):
    project.makefile(".yaml", demo=suite_yaml(samples=2, limit=2))
    monkeypatch.setattr(tempfile, "tempdir", str(project.path / "gone"))
    with pytest.raises(RunError, match=r"^cannot write the run's question results to a temporary file in .*gone "):
        run_suites([project.path / "demo.yaml"], record_mode="once", cassette_dir=project.path / "cassettes")
    assert not (project.path / "cassettes").exists()


def test_under_xdist_a_temporary_folder_that_cannot_take_the_spool_stops_the_run_in_one_line(project, live):
    """The controller gathers the results: it stops the workers at the first one, in one line;
    what the workers recorded is kept, whole."""
    project.makefile(".yaml", demo=suite_yaml(samples=2, limit=4))
    project.makeconftest(NO_TEMP_FOLDER.format(folder=str(project.path / "gone")))
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--rlhf-record-mode=once", "-n", "2")
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.INTERRUPTED, out[-3000:]
    assert "INTERNALERROR" not in out and "Traceback" not in out, out[-3000:]
    result.stdout.fnmatch_lines(["*Interrupted: rlhf-eval stopped: cannot write the run's question results to a "
                                 f"temporary file in {project.path / 'gone'} (*); set TMPDIR to a writable folder; "
                                 "every cassette recorded so far is kept*"])
    assert recorded(project)  # loadable and whole, whichever questions ran


def test_a_disk_that_fills_while_the_run_goes_stops_it_in_one_line_and_keeps_what_was_recorded(project, live):
    """The spool's write that crosses the cap is cut short: it was taken as written (the question's
    text cut, and the report built from it a traceback); now the next write's error stops the run."""
    project.makefile(".yaml", demo=suite_yaml(samples=2, limit=20))
    project.makeconftest(FILE_SIZE_CAP.format(cap=40_000) + STREAMED)
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--rlhf-record-mode=once",
                                          "--rlhf-report-json=out/report.json")
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.INTERRUPTED, out[-3000:]
    assert "INTERNALERROR" not in out and "Traceback" not in out, out[-3000:]
    result.stdout.fnmatch_lines(["*Interrupted: rlhf-eval stopped: cannot write the run's question results to a "
                                 "temporary file in * (File too large); free space there or set TMPDIR to a folder "
                                 "with room; every cassette recorded so far is kept*"])
    # the results gathered before the disk filled are read back whole (the table), and the report
    # file, under the same cap, is one line too
    result.stdout.fnmatch_lines(["demo · gemini-2.0-flash · k = 2 · * questions",
                                 "rlhf-eval: could not write the JSON report to out/report.json (File too large); "
                                 "choose a writable path"])
    shown = int(result.stdout.str().split("k = 2 · ")[1].split(" questions")[0])
    assert 0 < shown < 20
    assert len(recorded(project)) > shown  # every question that ran (or was prefetched) kept, whole


ODD = ["What is 2+3? \ud800 a lone surrogate from a scraped page", "What is 3+4? a NUL \x00 here",
       "What is 1+1? 😀 𝔘 outside the BMP", "What is 2+2? " + "long " * 20_000]


def odd_suite(project) -> None:
    with open(project.path / "q.jsonl", "w", encoding="utf-8") as f:
        for i, text in enumerate(ODD):
            f.write(json.dumps({"question": text, "answer": f"#### {[5, 7, 2, 4][i]}"}) + "\n")
    project.makefile(".yaml", demo=suite_yaml(samples=2, questions={"source": "q.jsonl", "id_prefix": "q",
                                                                    "answer_regex": r"####\s*(.+)$"}))


@pytest.mark.parametrize("streamed", [False, True, "xdist"], ids=["held", "streamed", "streamed-under-xdist"])
def test_odd_texts_in_a_dataset_reach_every_output_and_read_back(project, live, monkeypatch, streamed):
    """A lone surrogate in a dataset's question (json reads "\\ud800" as one) made the run end in an
    INTERNALERROR, held or streamed: pydantic's JSON parser refuses it, and UTF-8 cannot encode it;
    under xdist, the worker could not send the question's result to the controller (execnet
    carries UTF-8)."""
    odd_suite(project)
    outputs = ("--rlhf-record-mode=once", "--rlhf-report-json=r.json", "--rlhf-html=r.html", "--rlhf-export=exp")
    if streamed == "xdist":
        project.makeconftest(STREAMED)
        result = project.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", *outputs)
    else:
        monkeypatch.setattr(runner, "IN_MEMORY_QUESTIONS", 0 if streamed else 10**9)
        result = project.runpytest("-p", "no:cacheprovider", *outputs)
    out = result.stdout.str()
    assert result.ret == 0, out[-3000:]
    assert "INTERNALERROR" not in out
    report = load_report(project.path / "r.json")
    prompts = [q.prompt for q in report.suites[0].questions]
    assert [any(text in p for text in ODD) for p in prompts] == [True] * 4
    assert "\ud800" in prompts[0] and "\x00" in prompts[1]  # kept as they were: JSON escapes both
    rows = [json.loads(line) for line in (project.path / "exp" / "demo" / "grpo_prompts.jsonl").open()]
    assert "\ufffd a lone surrogate" in rows[0]["prompt"]  # a dataset for training: valid text
    assert "\ufffd a lone surrogate" in (project.path / "r.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def small_report(tmp_path_factory, emulator):
    """A report of 3 questions × 4 traces recorded through the emulator (its questions are copied
    into larger reports below), with each suite's settings as a run holds them."""
    root = tmp_path_factory.mktemp("small")
    (root / "demo.yaml").write_text(suite_yaml(samples=4, limit=3))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RLHF_EVAL_GEMINI_BASE_URL", emulator.base_url)
        mp.setenv("GEMINI_API_KEY", TEST_KEY)
        report = run_suites([root / "demo.yaml"], record_mode="once", cassette_dir=root / "cassettes")
    suite = report.suites[0]
    settings = suite.model_dump(mode="json", exclude_unset=True, exclude={"aggregates", "threshold_failures",
                                                                          "questions"})
    return settings, list(suite.questions)


def gathered(small_report, n: int, in_memory: int, filler: int = 0, **options) -> Run:
    """A run that gathered `n` copies of the small report's questions, each trace's text its own
    (so no row is a duplicate of another; `filler` characters longer), ready to `finish`."""
    settings, questions = small_report
    run = Run(RunOptions(**options))
    run.in_memory_questions = in_memory
    for i in range(n):
        q = questions[i % len(questions)]
        traces = [t.model_copy(update={"text": f"{t.text} (copy {i}.{j})" + "x" * filler})
                  for j, t in enumerate(q.traces)]
        run.add(settings, q.model_copy(update={"id": f"{q.id}-{i}", "index": i, "traces": traces}))
    return run


def test_the_export_of_a_streamed_report_holds_no_question(small_report, tmp_path):
    """The export gathered every row of a suite (and a copy of its texts as the dedupe key) before
    writing a file: ~68 KB a question of k = 8, 3.4 GB at 50,000. Now a streamed report's rows go
    to temporary files a question at a time: its peak grows by under 1 KB a question (a digest
    of each DPO and SFT row's texts, to tell a duplicate)."""
    def peak(n: int) -> int:
        run = gathered(small_report, n, 0, filler=2000)
        run.finish({"time": "then"})
        assert run.report.streamed
        tracemalloc.start()
        try:
            export = export_report(run.report, tmp_path / f"exp-{n}")
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            assert export.summary()["totals"]["kept"] == n

    # both large enough that every file is read and checked in pieces of their full size (1 MB)
    small, large = peak(400), peak(1200)
    assert (large - small) / 800 < 1024, (small, large)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_streamed_export_is_the_held_ones_bytes(small_report, tmp_path, fmt):
    if fmt == "parquet":
        pytest.importorskip("datasets")
    files = {}
    for in_memory in (0, 10**9):
        out = tmp_path / str(in_memory)
        run = gathered(small_report, 60, in_memory, export=out, export_format=fmt)
        run.finish({"time": "then"})
        assert not run.problems and run.report.streamed == (in_memory == 0)
        files[in_memory] = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
                            if p.is_file()}
        assert run.export_line.replace(str(out), "OUT") == files.setdefault("line", run.export_line.replace(
            str(out), "OUT"))
    assert sorted(files[0]) == sorted(files[10**9]) and len(files[0]) == 5
    assert files[0] == files[10**9]


def test_a_streamed_export_whose_temporary_folder_went_away_is_one_line_and_the_rest_is_written(
        small_report, tmp_path, monkeypatch):
    """A streamed report's export gathers its rows in TMPDIR first: a folder that cannot take them
    then is the export's one line; the JSON report is written all the same."""
    run = gathered(small_report, 20, 0, export=tmp_path / "exp", report_json=tmp_path / "report.json")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))
    run.finish({"time": "then"})
    assert run.problems == [f"rlhf-eval: cannot write the export's rows to a temporary file in {tmp_path / 'gone'} "
                            f"(No such file or directory); set TMPDIR to a folder with room; nothing was exported "
                            f"to {tmp_path / 'exp'}"]
    assert load_report(tmp_path / "report.json").suites[0].aggregates.questions == 20
    assert not (tmp_path / "exp").exists() and run.export_line is None


def test_a_disk_that_fills_while_recording_keeps_the_answers_already_on_their_way(project, monkeypatch):
    """Stopping for the spool abandoned the questions sampling ahead (the prefetcher): requests
    paid for whose answers then went nowhere. Now they finish their cassettes: every request the
    API answered is in one."""
    project.makefile(".yaml", demo=suite_yaml(samples=2, limit=30))
    project.makeconftest(FILE_SIZE_CAP.format(cap=40_000) + STREAMED)
    with Emulator(port=0, latency_ms=500) as emu:
        monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", emu.base_url)
        monkeypatch.setenv("GEMINI_API_KEY", TEST_KEY)
        result = project.runpytest_subprocess("-p", "no:cacheprovider", "--rlhf-record-mode=once",
                                              "--rlhf-concurrency=8")
        answered = emu.stats["requests"]
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.INTERRUPTED and "rlhf-eval stopped: cannot write" in out, out[-3000:]
    kept = recorded(project)
    assert len(kept) < 30  # stopped part way: the questions not started never will be
    assert sum(len(yaml.safe_load(data)["interactions"]) for data in kept.values()) == answered


def test_rlhf_eval_run_on_a_disk_that_fills_says_so_in_one_line_and_keeps_the_answers_on_their_way(project,
                                                                                                   monkeypatch):
    """`rlhf-eval run` (run_suites) stopped by its spool: one line, and the questions sampling
    ahead finish their cassettes (they were abandoned, paid for)."""
    project.makefile(".yaml", demo=suite_yaml(samples=2, limit=30))
    script = FILE_SIZE_CAP.format(cap=40_000) + STREAMED + (
        "import sys\nfrom rlhf_eval.cli import main\n"
        "sys.exit(main(['run', 'demo.yaml', '--record-mode', 'once', '--concurrency', '8']))\n")
    with Emulator(port=0, latency_ms=500) as emu:
        env = {**os.environ, "RLHF_EVAL_GEMINI_BASE_URL": emu.base_url, "GEMINI_API_KEY": TEST_KEY}
        proc = subprocess.run([sys.executable, "-c", script], cwd=project.path, env=env, capture_output=True,
                              text=True, timeout=300)
        answered = emu.stats["requests"]
    assert proc.returncode not in (0, 1) and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [
        "rlhf-eval: cannot write the run's question results to a temporary file in "
        f"{tempfile.gettempdir()} (File too large); free space there or set TMPDIR to a folder with room"]
    kept = recorded(project)
    assert len(kept) < 30
    assert sum(len(yaml.safe_load(data)["interactions"]) for data in kept.values()) == answered
