"""Disk faults in everything a run writes: cassettes, reports, HTML, exports, baselines.

Each fault is one line (which file or folder, the OS's reason, what to do), never a traceback;
what was recorded before is kept, no temp file is left, and the outputs that can be written are.
Root ignores permission bits, so the faults here are the ones root meets too: a file where a
folder should be, a full device (/dev/full) and a file-size limit (RLIMIT_FSIZE, EFBIG)."""
import os
import resource
import stat
import subprocess
import sys
import warnings

import pytest

from conftest import TEST_KEY
from rlhf_eval.atomic import atomic_write_text, unwritable_reason
from rlhf_eval.cli import main
from test_plugin import run, suite_yaml

# Warning categories Python does not print unless asked (its default filters)
QUIET_BY_DEFAULT = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


def temp_files(root):
    return sorted(str(p) for p in root.rglob("*.tmp"))


@pytest.mark.parametrize("blocked, option", [
    ("blocked", "--rlhf-cassette-dir=blocked"),  # the cassette folder is a file
    ("cassettes/demo", None),  # the suite's folder name is taken by a file
])
def test_a_file_in_the_way_of_the_cassettes_stops_recording_before_any_request(project, live, blocked, option):
    project.makefile(".yaml", demo=suite_yaml(samples=2, limit=2))
    (project.path / blocked).parent.mkdir(parents=True, exist_ok=True)
    (project.path / blocked).write_text("not a folder\n")
    sent = len(live.requests)
    result = run(project, "--rlhf-record-mode=once", *([option] if option else []))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.errlines if line] == [
        f"ERROR: rlhf-eval: cannot record cassettes into {blocked} ({blocked} is a file, not a folder); no request "
        "was sent: choose a writable folder with --rlhf-cassette-dir=DIR"]
    assert len(live.requests) == sent
    assert (project.path / blocked).read_text() == "not a folder\n"


def test_replay_and_complete_cassettes_need_no_writable_folder(project, live, monkeypatch):
    """Only recording that will write checks the folder: a replay, or `once` with every cassette
    there, runs as before next to a file named like another suite's folder."""
    project.makefile(".yaml", demo=suite_yaml(samples=2, limit=1))
    run(project, "--rlhf-record-mode=once").assert_outcomes(passed=1)
    (project.path / "cassettes" / "other").write_text("a file named like a suite\n")
    run(project, "--rlhf-record-mode=once").assert_outcomes(passed=1)
    monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", "http://127.0.0.1:9")
    run(project).assert_outcomes(passed=1)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder anyway")
def test_a_read_only_cassette_folder_stops_recording_before_any_request(project, live):
    project.makefile(".yaml", demo=suite_yaml(samples=2, limit=1))
    folder = project.path / "cassettes"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        sent = len(live.requests)
        result = run(project, "--rlhf-record-mode=once")
    finally:
        folder.chmod(stat.S_IRWXU)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: rlhf-eval: cannot record cassettes into cassettes (Permission denied); "
                                 "no request was sent: choose a writable folder with --rlhf-cassette-dir=DIR"])
    assert len(live.requests) == sent


def test_unwritable_reason_names_the_file_in_the_way(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f").write_text("")
    assert unwritable_reason(tmp_path / "f" / "a" / "b") == "f is a file, not a folder"
    assert unwritable_reason(tmp_path / "new" / "deeper") is None
    assert not (tmp_path / "new").exists(), "the check creates nothing"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"], "and leaves no probe file"


def test_a_write_to_a_full_device_fails_in_place_and_keeps_the_device():
    with pytest.raises(OSError) as info:
        atomic_write_text("/dev/full", "x" * 100_000)
    assert info.value.strerror == "No space left on device"
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode), "never renamed a file over a device"
    assert not [n for n in os.listdir("/dev") if n.startswith(".full.")]


def _cassette_sizes(root):
    return {p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*.yaml")}


def test_a_disk_that_fills_up_mid_run_fails_those_questions_in_one_line_each(project, live):
    """RLIMIT_FSIZE makes every write past the limit fail with EFBIG, as a full disk fails with
    ENOSPC: the questions whose cassettes do not fit fail in one line each, the others pass,
    a cassette recorded before is untouched and no temp file is left."""
    project.makefile(".yaml", small=suite_yaml("small", samples=1, limit=2),
                     big=suite_yaml("big", samples=8, limit=2))
    env = {**os.environ, "RLHF_EVAL_GEMINI_BASE_URL": live.base_url, "GEMINI_API_KEY": TEST_KEY}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "small.yaml", "big.yaml"]
    # Everything recorded without a limit first (in-process: no limit to set): the sizes put the
    # limit between the two suites.
    run(project, "small.yaml", "big.yaml", "--rlhf-record-mode=once").assert_outcomes(passed=4)
    sizes = _cassette_sizes(project.path / "cassettes")
    small = max(v for k, v in sizes.items() if k.startswith("small/"))
    big = min(v for k, v in sizes.items() if k.startswith("big/"))
    assert small * 2 < big
    limit = (small + big) // 2
    old = project.path / "cassettes/big/q-0000.yaml"
    old.write_bytes(old.read_bytes() + b"\n")  # marked: a re-recording would not end so
    kept = old.read_bytes()
    (project.path / "cassettes/big/q-0001.yaml").unlink()

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # Python ignores SIGXFSZ: writes get EFBIG

    # No bytecode written under the limit: a module changed since it was last compiled would get a
    # .pyc cut at the limit (a short write raises nothing there), which every later import fails on.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    result = subprocess.run(command + ["--rlhf-record-mode=all"], cwd=project.path, env=env, capture_output=True,
                            text=True, preexec_fn=limited)
    out = result.stdout
    assert result.returncode == 1, out[-3000:]
    for q in ("q-0000", "q-0001"):
        line = (f"big.yaml::{q}: could not write cassette cassettes/big/{q}.yaml (File too large); what was there "
                "before is unchanged: free some space or choose a writable directory with --rlhf-cassette-dir, "
                "then record again")
        assert line in out.splitlines(), out[-3000:]
    assert "Traceback" not in out and "2 failed, 2 passed" in out
    assert (project.path / "cassettes/big/q-0000.yaml").read_bytes() == kept
    assert not (project.path / "cassettes/big/q-0001.yaml").exists()
    assert sorted(_cassette_sizes(project.path / "cassettes")) == ["big/q-0000.yaml", "small/q-0000.yaml",
                                                                  "small/q-0001.yaml"]
    assert temp_files(project.path) == []


def test_outputs_that_cannot_be_written_are_one_line_each_and_the_others_are_written(project, live):
    project.makefile(".yaml", demo=suite_yaml(samples=2, limit=2))
    (project.path / "taken").write_text("a file\n")
    result = run(project, "--rlhf-record-mode=once", "--rlhf-report-json=/dev/full", "--rlhf-html=taken/r.html",
                 "--rlhf-export=taken", "--rlhf-save=main", "--rlhf-baseline-dir=taken/baselines")
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # every question passed; the outputs did not
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([
        "*rlhf-eval report*",
        "demo · * · 2 questions", "(suite) *",  # the table still prints
        "rlhf-eval: could not write the JSON report to /dev/full (No space left on device); choose a writable path",
        "rlhf-eval: could not write the HTML report to taken/r.html (taken is a file, not a folder); choose a "
        "writable path",
        "rlhf-eval: could not write baseline main to taken/baselines/main.json (taken is a file, not a folder); "
        "choose a writable path",
        "rlhf-eval: could not write the export to taken/demo/dpo.jsonl (taken is a file, not a folder); choose a "
        "writable path",
    ])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert (project.path / "taken").read_text() == "a file\n"

    # The same run with the HTML going somewhere writable: it is written, and only /dev/full fails.
    result = run(project, "--rlhf-report-json=/dev/full", "--rlhf-html=out/r.html", "--rlhf-export=out/export")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert (project.path / "out/r.html").read_text().startswith("<!")
    assert (project.path / "out/export/demo/dpo.jsonl").exists()
    text = result.stdout.str()
    assert text.count("rlhf-eval: could not write") == 1 and "rlhf-eval: wrote out/r.html" in text
    assert temp_files(project.path) == []


def test_under_xdist_each_question_fails_in_one_line_before_any_request(project, live):
    pytest.importorskip("xdist")
    project.makefile(".yaml", demo=suite_yaml(samples=2, limit=2))
    (project.path / "blocked").write_text("not a folder\n")
    sent = len(live.requests)
    result = run(project, "--rlhf-record-mode=once", "--rlhf-cassette-dir=blocked", "-n", "2")
    result.assert_outcomes(failed=2)
    for q in ("q-0000", "q-0001"):
        result.stdout.fnmatch_lines([f"demo.yaml::{q}: cannot record cassettes into blocked (blocked is a file, not a "
                                     "folder); no request was sent: choose a writable folder with "
                                     "--rlhf-cassette-dir=DIR"])
    assert "INTERNALERROR" not in result.stdout.str() and len(live.requests) == sent


def test_the_cli_says_in_one_line_that_it_could_not_write(project, live, capsys):
    """The command's entry point in-process (`python -m rlhf_eval` is `sys.exit(main())`, run as a
    process in test_ui): its exit code, and all it prints, with the warnings a new process would
    print on stderr counted as printed."""
    project.makefile(".yaml", demo=suite_yaml(samples=2, limit=1))
    run(project, "--rlhf-record-mode=once", "--rlhf-report-json=r.json").assert_outcomes(passed=1)
    (project.path / "taken").write_text("a file\n")
    for args, line in [
        (["html", "r.json", "/dev/full"],
         "rlhf-eval: could not write the HTML report to /dev/full (No space left on device); choose a writable path"),
        (["export", "r.json", "taken/x"],
         "rlhf-eval: could not write the export to taken/x/demo/dpo.jsonl (taken is a file, not a folder); choose a "
         "writable path"),
    ]:
        capsys.readouterr()
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            code = main(args)  # in project.path, pytester's working directory
        out, err = capsys.readouterr()
        shown = [w for w in warned if not issubclass(w.category, QUIET_BY_DEFAULT)]
        assert (code, out, err, shown) == (2, "", line + "\n", [])
