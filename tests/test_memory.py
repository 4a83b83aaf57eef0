"""Memory flat in the number of questions: a run writes each question's result to a spool on disk
(rlhf_eval.spool) and keeps only the numbers its aggregates need (rlhf_eval.tally); a report of
more than `runner.IN_MEMORY_QUESTIONS` questions reads them back one at a time, and its JSON, HTML,
export, terminal table and comparison are what the report held in memory gives, byte for byte.

The 50,000-question figure is a benchmark (benchmarks/memory.py), not a test."""
import json
import os
import random
import re
import string
import tempfile
import threading
import tracemalloc

import numpy as np
import pytest

from conftest import TEST_KEY, shipped_copy
from test_plugin import suite_yaml

from rlhf_eval import runner, stats
from rlhf_eval.atomic import atomic_writer
from rlhf_eval.credentials import (CheckedWriter, SecretInOutput, write_chunks_without_secrets, write_problem,
                                   write_without_secrets)
from rlhf_eval.report import load_report
from rlhf_eval.runner import Run, RunError, RunOptions, finished_run

PROVENANCE_TIME = re.compile(r'"time": "[^"]*"')


def outputs(root, tag, baseline=None):
    """The shipped suites replayed with every output; the files' texts (times masked) and the summary."""
    out = root / tag
    run = finished_run(["suites"], report_json=out / "report.json", html=out / "report.html", export=out / "export",
                       save=out / "baseline.json", baseline=baseline)
    assert not run.problems
    files = {p.relative_to(out).as_posix(): PROVENANCE_TIME.sub('"time": ""', p.read_text(encoding="utf-8"))
             for p in sorted(out.rglob("*")) if p.is_file()}
    summary = [(style, text.replace(str(out), "OUT").replace(f"{tag}/", "OUT/")) for style, text in run.summary()]
    return run, files, summary


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    root = shipped_copy(tmp_path_factory.mktemp("shipped"))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("RLHF_EVAL_GEMINI_BASE_URL", "http://127.0.0.1:9")
        mp.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        mp.delenv("GEMINI_API_KEY", raising=False)
        mp.delenv("GOOGLE_API_KEY", raising=False)
        held = outputs(root, "held")
        baseline = root / "held" / "baseline.json"
        mp.setattr(runner, "IN_MEMORY_QUESTIONS", 0)  # every report streamed from the spool
        streamed = outputs(root, "streamed")
        compared = (outputs(root, "streamed-compared", baseline),)
        mp.setattr(runner, "IN_MEMORY_QUESTIONS", 10**9)
        compared += (outputs(root, "held-compared", baseline),)
    return root, held, streamed, compared


def test_a_streamed_report_writes_the_json_html_export_and_table_a_held_one_does(shipped):
    _, (held_run, held, held_summary), (streamed_run, streamed, streamed_summary), _ = shipped
    assert not held_run.report.streamed and streamed_run.report.streamed
    assert sorted(held) == sorted(streamed) and "report.json" in held and "report.html" in held
    assert any(name.startswith("export/") for name in held)
    for name in held:
        assert streamed[name] == held[name], name
    assert streamed_summary == held_summary
    questions = sum(len(s.questions) for s in streamed_run.report.suites)
    assert questions == 60 and json.loads(held["report.json"])["suites"][0]["questions"]


def test_a_streamed_report_compares_with_a_baseline_as_a_held_one_does(shipped):
    _, _, _, ((s_run, s_files, s_summary), (h_run, h_files, h_summary)) = shipped
    assert s_run.report.streamed and s_run.report.comparison is not None
    assert s_files["report.json"] == h_files["report.json"] and s_files["report.html"] == h_files["report.html"]
    assert s_summary == h_summary and any("compared with baseline" in text for _, text in s_summary)


def test_a_streamed_report_is_read_one_question_at_a_time_and_to_dict_is_its_json(shipped):
    root, _, (run, files, _), _ = shipped
    suite = run.report.suites[0]
    first, last = suite.questions[0], suite.questions[-1]
    assert [q.id for q in suite.questions[:2]] == [first.id, suite.questions[1].id]
    assert last.index == max(q.index for q in suite.questions)
    assert run.report.to_dict() == json.loads((root / "streamed" / "report.json").read_text())
    assert run.report.question(suite.name, last.id) == last


def test_a_generated_report_of_thousands_streams_to_the_bytes_a_held_one_writes(shipped, tmp_path):
    root = shipped[0]
    report = load_report(root / "held" / "report.json")
    settings = {s.name: {**s.model_dump(mode="json", exclude_unset=True,
                                        exclude={"aggregates", "threshold_failures", "questions"})}
                for s in report.suites}
    questions = [(s.name, q) for s in report.suites for q in s.questions]
    provenance = {"time": "then"}

    def written(in_memory):
        run = Run(RunOptions(report_json=tmp_path / f"{in_memory}.json", html=tmp_path / f"{in_memory}.html"))
        run.in_memory_questions = in_memory
        order = np.random.default_rng(0).permutation(1500)
        for i in order:
            name, q = questions[i % len(questions)]
            run.add(settings[name], q.model_copy(update={"id": f"{q.id}-{i}", "index": int(i)}))
        run.finish(provenance)
        assert not run.problems and run.report.streamed == (in_memory == 0)
        return [(tmp_path / f"{in_memory}.{ext}").read_bytes() for ext in ("json", "html")]

    assert written(0) == written(10**9)


def test_a_run_holds_no_question_it_gathered(shipped):
    """The mechanism: gathering a question costs the run a few bytes of index, not the question
    (~25 KB of models here): Python's heap grows by under 1 KB a question over 2,000 of them."""
    report = load_report(shipped[0] / "held" / "report.json")
    suite = report.suites[0]
    settings = suite.model_dump(mode="json", exclude_unset=True, exclude={"aggregates", "threshold_failures",
                                                                            "questions"})
    run = Run(RunOptions())
    question = suite.questions[0]
    copies = [question.model_copy(update={"id": f"q{i}", "index": i}) for i in range(2500)]
    for q in copies[:500]:
        run.add(settings, q)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for q in copies[500:]:
            run.add(settings, q)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    held = len(json.dumps(question.model_dump(mode="json")))  # far less than the models take
    assert run.results == 2500
    assert grown / 2000 < 1024 < held, (grown / 2000, held)


def test_the_cluster_bootstrap_does_not_depend_on_its_block_of_resamples(monkeypatch):
    rng = np.random.default_rng(3)
    q = 300
    args = ([8] * q, list(rng.integers(0, 9, q)), [float(x) if i % 7 else 0.0 for i, x in enumerate(rng.random(q))],
            [list(rng.normal(size=rng.integers(0, 5))) for _ in range(q)])
    whole = stats.cluster_bootstrap_intervals(*args, with_margins=True)  # 2000 x 300 < one block
    monkeypatch.setattr(stats, "_BLOCK", 1000)  # blocks of 3 resamples
    assert stats.cluster_bootstrap_intervals(*args, with_margins=True) == whole
    assert set(whole) == {"accuracy", "mean_spread", "frac_zero_spread", "mean_margin", "reward_accuracy"}


def test_a_secret_cut_by_a_chunk_boundary_is_found_and_nothing_is_written(tmp_path):
    key = "AIza" + "0123456789abcdefghijABCDEFGHIJ_-xyz"
    text = "x" * 30 + key + "y" * 30
    path = tmp_path / "out.json"
    with pytest.raises(SecretInOutput):
        with atomic_writer(path) as f:
            out = CheckedWriter(path, f, chunk=16, overlap=64)
            for i in range(0, len(text), 7):  # the key spans several chunks
                out.write(text[i:i + 7])
            out.flush()
    assert not path.exists() and not list(tmp_path.iterdir())
    write_chunks_without_secrets(path, ["x" * 30, "y" * 30])
    assert path.read_text() == "x" * 30 + "y" * 30


def test_the_plugin_leaves_no_result_on_pytests_items_and_reports(project, live):
    """pytest keeps every item and every report to the end of the session: once the run gathered a
    question's result, neither holds it, and a question's passed setup and teardown reports (which
    the terminal never shows) are not kept."""
    project.makefile(".yaml", demo=suite_yaml("demo", samples=2, limit=3))
    project.makeconftest("""
import pytest

@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    reports = [r for rs in session.config.pluginmanager.get_plugin("terminalreporter").stats.values() for r in rs]
    held = [k for item in session.items for k, _ in item.user_properties]
    held += [k for r in reports for k, _ in getattr(r, "user_properties", [])]
    print("HELD", sorted(set(held)), len(session.items), len(reports))
""")
    result = project.runpytest_subprocess("--rlhf-record-mode=once", "-s", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()[-2000:]
    result.stdout.fnmatch_lines(["*HELD [] 3 3*"])  # no result kept; of the reports, the 3 calls
    assert TEST_KEY not in result.stdout.str()


def test_a_run_without_a_writable_temporary_folder_says_so_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    run = Run(RunOptions())
    with pytest.raises(RunError, match=r"^cannot write the run's question results to a temporary file in .*missing "
                                       r"\(.*\); set TMPDIR to a writable folder$"):
        run.add({"name": "demo"}, {"suite": "demo", "id": "q-0000", "index": 0})


def test_a_secret_longer_than_the_look_back_is_found_across_a_chunks_boundary(tmp_path, monkeypatch):
    """A variable's value is found only whole: one longer than the 4,096 characters kept from the
    previous chunk (a service account's key, a JWT) and cut by a 1 MiB boundary was written."""
    secret = "".join(random.Random(3).choices(string.ascii_letters + string.digits, k=6000))
    monkeypatch.setenv("MY_SERVICE_TOKEN", secret)
    path = tmp_path / "out.json"
    with pytest.raises(SecretInOutput, match=r"\$MY_SERVICE_TOKEN; nothing was written$"):
        write_chunks_without_secrets(path, ["a" * (1 << 20) + secret[:5000], secret[5000:] + "b"])
    assert not path.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("before", ["ta", " "])
def test_a_chunks_boundary_makes_no_key_of_a_word_and_hides_none(tmp_path, before):
    """The look-back kept from the previous chunk began mid-word: "ta|sk-..." (a task id) cut
    there read as an OpenAI-style key (`\\bsk-`), and a report the whole check wrote was refused.
    After a space it is one, cut or not."""
    text = "y" * (1 << 20) + before + "sk-" + "abcdefghijklmnopqrstuvwxyz" + "z" * (4096 - 29)
    path = tmp_path / "out.json"
    if before == "ta":
        write_without_secrets(tmp_path / "whole.json", text + "}")
        write_chunks_without_secrets(path, [text, "}"])
        assert path.read_text() == text + "}"
    else:
        with pytest.raises(SecretInOutput, match="an OpenAI-style key; nothing was written$"):
            write_chunks_without_secrets(path, [text, "}"])


def test_a_pipe_that_took_the_text_before_a_secret_is_told_so(tmp_path, monkeypatch):
    """`--rlhf-report-json /dev/stdout` of a report written a piece at a time: the pieces before
    the one holding the key were already in the pipe, so "nothing was written" was untrue."""
    monkeypatch.setenv("MY_API_KEY", "k3y-" + "x" * 20)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    taken: list[bytes] = []
    reader = threading.Thread(target=lambda: taken.append(fifo.read_bytes()))
    reader.start()
    first = "a" * (1 << 20)
    with pytest.raises(SecretInOutput) as e:
        write_chunks_without_secrets(fifo, [first, "then k3y-" + "x" * 20])
    reader.join(timeout=30)
    # the pipe took the first chunk but its last 4,096 characters, held for the check of the next
    assert taken == [first[:-4096].encode()] and e.value.partial
    assert write_problem("the JSON report", fifo, e.value) == (
        f"stopped writing the JSON report {fifo}: the rest would contain the value of $MY_API_KEY; what it "
        "already took (a pipe or device cannot take it back) is incomplete and holds no secret")


def test_a_pipe_takes_no_part_of_a_secret_cut_by_a_chunks_boundary(tmp_path, monkeypatch):
    """A key whose first characters end a chunk and whose rest starts the next: the first chunk
    was checked (no key in it yet) and written whole, so a pipe the refusal said "holds no secret"
    held the key's first 20 characters."""
    secret = "k3y-" + "x" * 20 + "0123456789"
    monkeypatch.setenv("MY_API_KEY", secret)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    taken: list[bytes] = []
    reader = threading.Thread(target=lambda: taken.append(fifo.read_bytes()))
    reader.start()
    with pytest.raises(SecretInOutput) as e:
        write_chunks_without_secrets(fifo, ["a" * (1 << 20) + secret[:24], secret[24:] + "b"])
    reader.join(timeout=30)
    assert e.value.partial and taken and taken[0] and b"k3y-" not in taken[0]
    path = tmp_path / "out.json"  # and a text without a secret is written whole, its held end too
    monkeypatch.delenv("MY_API_KEY")
    write_chunks_without_secrets(path, ["a" * (1 << 20) + secret[:24], secret[24:] + "b"])
    assert path.read_text() == "a" * (1 << 20) + secret + "b"
