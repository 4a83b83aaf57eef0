"""A recording that pytest ends early -- -x, --maxfail, a plugin's session stop -- keeps every
answer already paid for: the questions sampling ahead of the stop (the prefetcher's) finish their
cassettes, none is started, and the closing line says what was kept and what is left to record.
Through real pytest processes against the emulator, counting the requests it answered against the
interactions in the cassettes."""
import signal
import subprocess
import threading
import time

import pytest
import yaml

from conftest import TEST_KEY
from test_interrupt import PROMPT_EXIT_S, lines_of, recording, wait_for
from test_memory_faults import recorded
from test_plugin import suite_yaml

from rlhf_eval.emulator import Emulator

# A conftest whose plugin stops the session after the first question, as a plugin may
# (pytest-timeout's session timeout, a CI budget): pytest then raises session.Interrupted.
SESSION_STOP = """
import pytest

SESSION = []

def pytest_sessionstart(session):
    SESSION.append(session)

def pytest_runtest_logreport(report):
    if report.when == "call":
        SESSION[0].shouldstop = "a plugin stopped the session"
"""
QUESTIONS = 30
KEPT = ("rlhf-eval stopped early ({why}); kept {kept} complete cassettes under cassettes/demo/ ({ahead} finished "
        "by questions sampling ahead of the stop), {left} questions not recorded — {rerun}")


@pytest.mark.parametrize("args, conftest, code, why, rerun", [
    (["-x"], None, pytest.ExitCode.TESTS_FAILED, "stopping after 1 failures",
     "run again without -x / --maxfail to record them"),
    (["--maxfail=1"], None, pytest.ExitCode.TESTS_FAILED, "stopping after 1 failures",
     "run again without -x / --maxfail to record them"),
    ([], SESSION_STOP, pytest.ExitCode.INTERRUPTED, "a plugin stopped the session",
     "run the same command again to record them"),
], ids=["-x", "--maxfail", "session-stop"])
def test_a_run_ended_early_keeps_the_answers_already_on_their_way(project, monkeypatch, args, conftest, code, why,
                                                                   rerun):
    """The first question fails a threshold; pytest stops after it. The questions sampling ahead
    had sent requests (paid for) that `run.stop(0)` then dropped: now every request the API
    answered is in a cassette, and no question that had not started is recorded."""
    project.makefile(".yaml", demo=suite_yaml(samples=2, limit=QUESTIONS, thresholds={"pairs": {"min": 1000}}))
    if conftest:
        project.makeconftest(conftest)
    with Emulator(port=0, latency_ms=500) as emu:
        monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", emu.base_url)
        monkeypatch.setenv("GEMINI_API_KEY", TEST_KEY)
        result = project.runpytest_subprocess("-p", "no:cacheprovider", "--rlhf-record-mode=once",
                                              "--rlhf-concurrency=8", *args)
        answered = emu.stats["requests"]
    out = result.stdout.str()
    assert result.ret == code, out[-3000:]
    assert "Traceback" not in out and "INTERNALERROR" not in out, out[-3000:]
    kept = recorded(project)  # each loads, one exchange a trace, no key
    assert 1 < len(kept) < QUESTIONS  # the questions in flight finished; those not started never began
    assert sum(len(yaml.safe_load(data)["interactions"]) for data in kept.values()) == answered
    line = next((text for text in out.splitlines() if text.startswith("rlhf-eval stopped early")), None)
    assert line is not None, out[-3000:]
    ahead = int(line.split(" (")[2].split(" finished")[0])
    assert 0 < ahead < len(kept)
    assert line == KEPT.format(why=why, kept=len(kept), ahead=ahead, left=QUESTIONS - len(kept), rerun=rerun)
    assert TEST_KEY not in out


def test_a_conftests_pytest_exit_with_its_own_status_still_says_what_was_kept(project, monkeypatch):
    """pytest shows no terminal summary for an exit status of a plugin's own: the closing line of
    what the stopped recording kept was lost with it (only the wait for the questions ahead showed)."""
    project.makefile(".yaml", demo=suite_yaml(samples=2, limit=12))
    project.makeconftest("""
import pytest

def pytest_runtest_logreport(report):
    if report.when == "call":
        pytest.exit("budget spent", returncode=7)
""")
    with Emulator(port=0, latency_ms=300) as emu:
        monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", emu.base_url)
        monkeypatch.setenv("GEMINI_API_KEY", TEST_KEY)
        result = project.runpytest_subprocess("-p", "no:cacheprovider", "--rlhf-record-mode=once",
                                              "--rlhf-concurrency=4")
    out = result.stdout.str()
    assert result.ret == 7 and "Traceback" not in out, out[-3000:]
    kept = len(recorded(project))
    lines = [text for text in out.splitlines() if text.startswith("rlhf-eval stopped early")]
    assert len(lines) == 1 and lines[0].startswith(
        f"rlhf-eval stopped early (pytest.exit: budget spent); kept {kept} complete cassettes under cassettes/demo/"), \
        out[-3000:]
    assert lines[0].endswith(f"{12 - kept} questions not recorded — run the same command again to record them")


@pytest.mark.parametrize("mode", ["all", "rewrite"])
def test_a_rerecording_ended_early_counts_only_the_cassettes_it_wrote(project, monkeypatch, mode):
    """Re-recording (all, rewrite) over cassettes of an earlier run, -x stopped it after a few
    questions: the line said "every question's cassette is complete", counting the old files."""
    project.makefile(".yaml", demo=suite_yaml(samples=2, limit=12, thresholds={"pairs": {"min": 1000}}))
    with Emulator(port=0, latency_ms=300) as emu:
        monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", emu.base_url)
        monkeypatch.setenv("GEMINI_API_KEY", TEST_KEY)
        args = ("-p", "no:cacheprovider", "--rlhf-concurrency=4")
        first = project.runpytest_subprocess(*args, "--rlhf-record-mode=once")
        assert len(recorded(project)) == 12, first.stdout.str()[-3000:]
        before = {p: p.stat().st_mtime_ns for p in (project.path / "cassettes").rglob("*.yaml")}
        result = project.runpytest_subprocess(*args, f"--rlhf-record-mode={mode}", "-x")
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED and "Traceback" not in out, out[-3000:]
    redone = sum(p.stat().st_mtime_ns != ns for p, ns in before.items())
    assert 0 < redone < 12
    line = next(text for text in out.splitlines() if text.startswith("rlhf-eval stopped early"))
    assert line.startswith(f"rlhf-eval stopped early (stopping after 1 failures); kept {redone} complete "
                           "cassettes under cassettes/demo/"), line
    assert f", {12 - redone} questions not recorded — " in line, line


def test_ctrl_c_while_a_stopped_run_waits_for_the_questions_in_flight_ends_it_at_once(project, live):
    """Waiting for the questions in flight is bounded by the user: the line says Ctrl-C abandons
    them, and Ctrl-C then stops the run within seconds (as it does any recording), with its line
    of what was kept and what is left. Here the questions after the first take 30 s to answer."""
    slow = "[[emulator:latency=30000]] "
    questions = [{"id": "quick", "question": "What is 2+3?", "answer": 5}] + [
        {"id": f"slow-{i}", "question": slow + f"What is {i}+1?", "answer": i + 1} for i in range(3)]
    project.makefile(".yaml", demo=suite_yaml(samples=2, questions=questions, thresholds={"pairs": {"min": 1000}}))
    proc = recording(project, live.base_url, "--rlhf-concurrency=8", "-x")
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    wait_for(lambda: any("waiting for the 3 questions already sampling" in line for line in lines), proc,
             "the line saying the run waits for the questions in flight")
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)  # faulthandler writes every thread's stack, then it dies
        proc.wait()
    elapsed = time.monotonic() - sent
    reader.join(timeout=10)
    out = "".join(lines)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out[-3000:]
    assert elapsed < PROMPT_EXIT_S, out[-3000:]
    assert ("rlhf-eval: the run stopped early; waiting for the 3 questions already sampling to write their "
            "cassettes (Ctrl-C abandons them)") in lines_of(out)
    assert ("Interrupted: rlhf-eval stopped on Ctrl-C; kept 1 complete cassette under cassettes/demo/, 3 questions "
            "not recorded — run the same command again to record them") in lines_of(out), out[-3000:]
    assert "Traceback" not in out
    assert sorted(recorded(project)) == ["demo/quick.yaml"]
