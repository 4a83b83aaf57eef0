"""The `rlhf-eval` command: `run` (the library runner, no pytest), `html --compare`, `--version`;
exit status as pytest's, and a usage mistake in one line."""
import importlib.metadata
import json
import os
import subprocess
import sys

import pytest

from conftest import shipped_copy
from test_plugin import suite_yaml

from rlhf_eval.cli import main
from rlhf_eval.report import render_table
from rlhf_eval.report_model import Report


def test_run_replays_the_shipped_suites_without_importing_pytest(shipped_report, tmp_path):
    """`python -m rlhf_eval run suites/` offline: exit 0, the report pytest prints, the JSON pytest
    writes, and not one pytest module imported (python -X importtime lists every import)."""
    root = shipped_copy(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
    env.update(RLHF_EVAL_GEMINI_BASE_URL="http://127.0.0.1:9", OPENAI_BASE_URL="http://127.0.0.1:9/v1")
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "rlhf_eval", "run", "suites/",
                           "--report-json", "r.json"], cwd=root, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert "rlhf_eval.runner" in imported
    assert not [m for m in imported if m.split(".")[0] in ("pytest", "_pytest", "pytest_rlhf_eval")]
    report = json.loads((root / "r.json").read_text())
    provenance, shipped = report.pop("provenance"), dict(shipped_report[0])
    assert provenance["command_line"][:2] == ["python -m rlhf_eval", "run"]  # the when and the how differ, nothing else
    shipped.pop("provenance")
    assert report == shipped
    out = proc.stdout.splitlines()
    assert out[0] == "=" * 31 + " rlhf-eval report " + "=" * 31
    assert "\n".join(out[1:-2]) == render_table(report)
    assert out[-2:] == ["rlhf-eval: wrote r.json", "rlhf-eval: 60 questions in 3 suites: 60 passed"]


@pytest.fixture
def demo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "demo.yaml").write_text(suite_yaml(samples=3, limit=2))
    return tmp_path


def test_run_exits_1_when_a_suite_fails_and_says_why(demo, live, capsys):
    (demo / "suites" / "demo.yaml").write_text(suite_yaml(samples=3, limit=2,
                                                          suite_thresholds={"pairs": {"min": 1000}}))
    assert main(["run", "suites", "--record", "once", "--report-json", "r.json"]) == 1
    out = capsys.readouterr().out.splitlines()
    pairs = json.loads((demo / "r.json").read_text())["suites"][0]["aggregates"]["pairs"]
    assert f"FAIL suite demo: pairs = {pairs} < min 1000" in out
    assert out[-1] == "rlhf-eval: 2 questions in 1 suite: 2 passed, suite thresholds failed in demo"
    # replayed: the same cassettes, no key; a regression gate on a baseline fails the run too
    (demo / "suites" / "demo.yaml").write_text(suite_yaml(samples=3, limit=2))
    assert main(["run", "suites/demo.yaml", "--save", "base.json"]) == 0
    capsys.readouterr()
    assert main(["run", "suites/demo.yaml", "--compare", "base.json", "--compare-fail", "accuracy:0"]) == 0
    assert "note:" not in capsys.readouterr().out  # the same run: nothing else changed


@pytest.mark.parametrize("args, line", [
    (["run", "nowhere/"], "rlhf-eval: nowhere/: no such file or folder"),
    (["run", "suites", "--compare", "missing.json"],
     "rlhf-eval: missing.json: no such baseline report file (save one with rlhf-eval run SUITES --save PATH)"),
    (["run", "suites", "--compare-fail", "accuracy:0.1"], "rlhf-eval: --compare-fail needs --compare BASELINE.json"),
    (["run", "suites", "--compare", "suites/demo.yaml"],
     "rlhf-eval: suites/demo.yaml:1: not valid JSON: Expecting value (column 1)"),
    (["run", "suites", "--rootdir", "nowhere"],
     "rlhf-eval: --rootdir nowhere: no such folder (the folder --suite-files patterns are relative to)"),
    (["run", "suites", "--export-pass-rate", "0.2:0.8"], "rlhf-eval: --export-pass-rate needs --export DIR"),
    (["run", "suites", "--export-nonzero-spread"], "rlhf-eval: --export-nonzero-spread needs --export DIR"),
    (["run", "suites", "--export-format", "parquet"], "rlhf-eval: --export-format needs --export DIR"),
    # worded with this command's options, not run_suites' keywords nor the plugin's --rlhf- options
    (["run", "suites", "--concurrency", "0"], "rlhf-eval: --concurrency 0: expected a whole number, at least 1"),
    (["run", "suites", "--rate-limit", "nan"],
     "rlhf-eval: --rate-limit nan: expected a positive number of requests a minute"),
    (["run", "suites", "--compare", "suites/demo.yaml", "--compare-fail", "accuracy"],
     "rlhf-eval: --compare-fail 'accuracy': expected METRIC:DELTA with METRIC one of accuracy, frac_zero_spread, "
     "mean_margin, mean_spread, reward_accuracy, unparsable_rate"),
])
def test_a_usage_mistake_is_one_line_and_exit_2(demo, offline, capsys, args, line):
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [line] and captured.out == ""


def test_a_bad_suite_is_its_one_line_and_exit_2(demo, offline, capsys):
    (demo / "suites" / "demo.yaml").write_text(suite_yaml(extra={"samples": 0}))
    assert main(["run", "suites"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("rlhf-eval: suites/demo.yaml:") and "samples" in err[0]


def test_an_output_that_cannot_be_written_exits_1_after_the_report(demo, live, capsys):
    (demo / "taken").write_text("a file")
    assert main(["run", "suites", "--record", "once", "--html", "taken/r.html", "--report-json", "r.json",
                 "--export", "exp"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert "(suite)" in "\n".join(out)  # the table still prints
    assert (demo / "exp" / "demo").is_dir()
    assert out[-4:] == ["rlhf-eval: wrote r.json",
                        "rlhf-eval: exported 1 suite to exp/: 2 of 2 questions kept; 1 DPO pair (2 before dedupe), "
                        "3 SFT rows (4 before dedupe), 2 GRPO prompts (jsonl); per suite: exp/summary.json",
                        "rlhf-eval: could not write the HTML report to taken/r.html (taken is a file, not a folder); "
                        "choose a writable path",
                        "rlhf-eval: 2 questions in 1 suite: 2 passed"]


def test_version_is_the_installed_distribution_s(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"rlhf-eval {importlib.metadata.version('rlhf-eval')}\n"


def test_html_compare_writes_the_comparison_into_the_page(demo, live, capsys):
    main(["run", "suites", "--record", "once", "--save", "base.json"])
    (demo / "suites" / "demo.yaml").write_text(suite_yaml(samples=3, limit=2, temperature=0.0))
    main(["run", "suites", "--record", "once", "--cassette-dir", "greedy", "--report-json", "now.json"])
    capsys.readouterr()
    assert main(["html", "now.json", "out.html", "--compare", "base.json"]) == 0
    assert capsys.readouterr().out == "rlhf-eval: wrote out.html\n"
    html = (demo / "out.html").read_text()
    assert "Compared with baseline <b>base</b>" in html
    assert "<li>suite demo: model.temperature changed: 1.0 → 0.0</li>" in html
    assert Report.load(demo / "now.json").comparison is None  # the report itself is left as it was
    assert main(["html", "now.json", "out.html", "--compare", "nope.json"]) == 2
    assert capsys.readouterr().err == ("rlhf-eval: nope.json: no such baseline report file (write one with "
                                       "pytest --rlhf-report-json=nope.json)\n")


def test_ctrl_c_exits_130_with_what_was_kept_in_one_line(demo, live):
    """Ctrl-C while recording: exit 130 and the runner's one line, said once (not "rlhf-eval: rlhf-eval
    stopped ..."); the quick question's cassette is kept."""
    import signal
    import time

    questions = [{"id": "quick", "question": "What is 2+3?", "answer": 5},
                 {"id": "slow", "question": "[[emulator:latency=30000]] What is 3+4?", "answer": 7}]
    (demo / "suites" / "demo.yaml").write_text(suite_yaml(samples=2, questions=questions))
    proc = subprocess.Popen([sys.executable, "-m", "rlhf_eval", "run", "suites", "--record-mode", "once"],
                            env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (demo / "cassettes" / "demo" / "quick.yaml").is_file():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, out + err
    assert err.splitlines() == ["rlhf-eval stopped on Ctrl-C; kept 1 complete cassette under cassettes/demo/, "
                                "1 question not recorded — run the same command again to record them"]
    assert out == ""


def test_the_closing_line_counts_one_error_as_pytest_does(demo, live, capsys):
    assert main(["run", "suites", "--record", "once"]) == 0
    (demo / "suites" / "demo.yaml").write_text(suite_yaml(samples=3, limit=3))  # a third question, not recorded
    capsys.readouterr()
    assert main(["run", "suites"]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "rlhf-eval: 3 questions in 1 suite: 2 passed, 1 error"


def test_a_suite_named_twice_runs_once_as_pytest_collects_it(demo, live, capsys):
    """`rlhf-eval run suites/ suites/demo.yaml` ran demo's questions twice into one suite (its metrics
    over duplicates); pytest collects the file once."""
    assert main(["run", "suites", "--record", "once"]) == 0
    capsys.readouterr()
    assert main(["run", "suites", "suites/demo.yaml", "./suites/demo.yaml", "--report-json", "r.json"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "rlhf-eval: 2 questions in 1 suite: 2 passed"
    questions = json.loads((demo / "r.json").read_text())["suites"][0]["questions"]
    assert [q["id"] for q in questions] == ["q-0000", "q-0001"]


def test_a_reader_that_goes_away_gets_no_traceback(demo, live):
    """`rlhf-eval run suites/ | head -1`: the pipe closes before the report is printed; the outputs
    are written, and stderr holds no BrokenPipeError traceback."""
    assert main(["run", "suites", "--record", "once"]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "rlhf_eval", "run", "suites", "--report-json", "r.json"],
                            env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # the reader is gone before the first line
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 1
    assert "Traceback" not in err and err == ""
    assert Report.load(demo / "r.json").suites[0].name == "demo"
