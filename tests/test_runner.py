"""`rlhf_eval.run_suites`: the library runner behind the plugin. Without pytest it gives the same
report as `pytest suites/`, records and replays the same cassettes, and fails bad input in one line."""
import gc
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, TEST_KEY, shipped_copy
from test_plugin import suite_yaml

from rlhf_eval import RunError, SuiteError, run_suites


def test_run_suites_without_pytest_writes_the_json_of_pytest_suites(shipped_report, tmp_path):
    """The shipped suites, replayed offline in a process that never imports pytest, give the JSON
    report `pytest suites/ --rlhf-report-json` gives, byte for byte once parsed."""
    root = shipped_copy(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
    env["RLHF_EVAL_GEMINI_BASE_URL"] = "http://127.0.0.1:9"
    code = ("import sys\nfrom rlhf_eval import run_suites\n"
            "report = run_suites(['suites/'], report_json='runner.json')\n"
            "assert not any(m == 'pytest' or m.startswith(('_pytest', 'pytest_')) for m in sys.modules), "
            "sorted(m for m in sys.modules if 'pytest' in m)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runner, plugin = json.loads((root / "runner.json").read_text()), dict(shipped_report[0])
    # when and by which command a report was made differs, by design; what it was made from does not
    ours, theirs = runner.pop("provenance"), plugin.pop("provenance")
    assert runner == plugin
    for same in ("suites", "packages", "rlhf_eval_version", "python"):
        assert ours[same] == theirs[same], same
    assert ours["command_line"] == ["-c"]
    assert theirs["command_line"][:2] == ["pytest", "suites/"] and theirs["command_line"][-1].startswith(
        "--rlhf-report-json=")


def without_provenance(report: dict) -> dict:
    """A report's JSON without its `provenance` (its time differs from run to run)."""
    return {k: v for k, v in report.items() if k != "provenance"}


@pytest.fixture
def demo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "demo.yaml").write_text(suite_yaml(samples=3, limit=3))
    return tmp_path


def test_run_suites_records_with_prefetch_then_replays_offline(demo, live, monkeypatch):
    recorded = run_suites(["suites"], record_mode="once", concurrency=4, report_json="rec.json")
    cassettes = sorted(p.name for p in (demo / "cassettes" / "demo").glob("*.yaml"))
    assert cassettes == ["q-0000.yaml", "q-0001.yaml", "q-0002.yaml"]
    assert TEST_KEY not in "".join(p.read_text() for p in (demo / "cassettes" / "demo").glob("*.yaml"))
    monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("GEMINI_API_KEY")
    replayed = run_suites(["suites/demo.yaml"])
    # mode once with every cassette there records nothing, so it needs no key either
    assert (without_provenance(run_suites(["suites/demo.yaml"], record_mode="once").to_dict())
            == without_provenance(replayed.to_dict()))
    assert (without_provenance(replayed.to_dict()) == without_provenance(json.loads((demo / "rec.json").read_text()))
            == without_provenance(recorded.to_dict()))
    assert [q.id for q in replayed.suites[0].questions] == ["q-0000", "q-0001", "q-0002"]


def test_a_missing_cassette_is_that_question_s_error_with_the_command_that_records_it(demo, offline):
    report = run_suites(["suites"]).to_dict()
    (suite,) = report["suites"]
    assert [q["passed"] for q in suite["questions"]] == [False] * 3
    error = suite["questions"][0]["error"]
    assert "no cassette" in error and "pytest suites/demo.yaml::q-0000 --rlhf-record-mode=once" in error
    # the error row carries every key a scored question has
    assert set(suite["questions"][0]) >= {"prompt", "answer", "metrics", "intervals", "traces", "pairs"}
    assert suite["aggregates"]["questions_failed"] == 3 and suite["aggregates"]["traces"] == 0


def test_a_run_gives_what_it_froze_back_to_the_garbage_collector(project, offline):
    """A run freezes what it loaded (and, at its end, its results) so that full garbage
    collections skip them; once its outputs are written, in-process or under pytest.main, nothing
    it froze stays frozen — also when an output cannot be written."""
    project.makefile(".yaml", demo=suite_yaml(samples=2, limit=2))
    assert gc.get_freeze_count() == 0
    run_suites(["demo.yaml"])
    assert gc.get_freeze_count() == 0
    (project.path / "taken").write_text("a file")
    with pytest.raises(RunError):
        run_suites(["demo.yaml"], report_json="taken/r.json")
    assert gc.get_freeze_count() == 0
    project.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(failed=2)  # no cassettes
    assert gc.get_freeze_count() == 0


def test_a_run_leaves_what_its_host_process_froze_frozen(project, offline):
    """gc.unfreeze thaws every frozen object: a run in a process that froze its own (a pre-fork
    server, before forking) must not thaw them, in-process or under pytest.main."""
    project.makefile(".yaml", demo=suite_yaml(samples=2, limit=2))
    assert gc.get_freeze_count() == 0
    host = [[] for _ in range(3)]  # lists: objects the collector tracks

    def thawed() -> bool:  # frozen objects are in no generation gc.get_objects lists
        ids = {id(o) for o in gc.get_objects()}
        return any(id(o) in ids for o in host)

    gc.freeze()
    try:
        assert not thawed()
        run_suites(["demo.yaml"])
        assert not thawed()
        project.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(failed=2)  # no cassettes
        assert not thawed()
    finally:
        gc.unfreeze()
    assert thawed()


def test_bad_input_fails_in_one_line_before_anything_is_sampled(demo, offline):
    with pytest.raises(RunError, match=r"^nowhere: no such file or folder$"):
        run_suites(["nowhere"])
    with pytest.raises(RunError, match="record mode 'sometimes'; expected one of none, once"):
        run_suites(["suites"], record_mode="sometimes")
    (demo / "suites" / "twin.yaml").write_text(suite_yaml(name="demo"))
    with pytest.raises(SuiteError, match=r"twin.yaml:1: suite name 'demo' is already used by suites/demo.yaml"):
        run_suites(["suites"])
    (demo / "suites" / "twin.yaml").write_text("suite: twin\nsamples: many\n")
    with pytest.raises(SuiteError, match=r"twin.yaml"):
        run_suites(["suites/twin.yaml"])
    with pytest.raises(RunError, match="no such baseline report file"):
        run_suites(["suites/demo.yaml"], baseline="base.json")
    with pytest.raises(RunError, match="--rlhf-compare-fail needs --rlhf-compare"):
        run_suites(["suites/demo.yaml"], fail_rules=["accuracy:0.05"])


def test_recording_into_an_unwritable_folder_sends_no_request(demo, live):
    (demo / "taken").write_text("a file where the cassette folder should be")
    sent = len(live.requests)
    with pytest.raises(RunError, match=r"cannot record cassettes into taken .*no request was sent"):
        run_suites(["suites/demo.yaml"], record_mode="once", cassette_dir="taken")
    assert len(live.requests) == sent


def test_an_output_that_cannot_be_written_is_one_line_after_the_others_are_written(demo, live):
    (demo / "taken").write_text("a file")
    with pytest.raises(RunError) as raised:
        run_suites(["suites/demo.yaml"], record_mode="once", report_json="taken/r.json", html="out.html")
    assert str(raised.value).startswith("rlhf-eval: could not write the JSON report to taken/r.json")
    assert "\n" not in str(raised.value) and (demo / "out.html").is_file()


def test_the_runner_is_what_the_plugin_runs():
    """No engine logic left in the plugin: it imports the runner and holds no sampling, policy,
    report-building or output-writing code of its own."""
    source = (REPO / "plugin" / "pytest_rlhf_eval" / "__init__.py").read_text()
    for engine in ("sample_question", "score_question", "build_report", "RequestPolicy", "compare_reports",
                   "write_json", "export_files", "DaemonPool", "Backends"):
        assert engine not in source, engine


def test_a_conftest_supplies_a_suite_s_backends_through_the_hook(project, live, monkeypatch):
    """`pytest_rlhf_eval_backends` in a conftest.py gives the sampler of one suite (here: Gemini
    through an explicit base URL, as a proxy would be); what it sends is recorded like any request,
    and the other suite is built as usual."""
    monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", "http://127.0.0.1:9")  # only the hook's URL reaches a server
    project.makeconftest(f"""
from rlhf_eval import Backends
from rlhf_eval.backends.gemini import GeminiSampler

def pytest_rlhf_eval_backends(config, suite, replay, policy):
    if suite.name == "proxied":
        return Backends(sampler=GeminiSampler(suite.spec.model, replay=replay, policy=policy,
                                              base_url={live.base_url!r}))
""")
    project.makefile(".yaml", proxied=suite_yaml(name="proxied", samples=2, limit=2))
    sent = len(live.requests)
    result = project.runpytest("-p", "no:cacheprovider", "--rlhf-record-mode=once", "proxied.yaml")
    result.assert_outcomes(passed=2)
    assert len(live.requests) == sent + 4
    assert sorted(p.name for p in (project.path / "cassettes" / "proxied").glob("*.yaml")) == [
        "q-0000.yaml", "q-0001.yaml"]
    (project.path / "conftest.py").unlink()  # replay needs no hook: the cassettes hold the exchange
    monkeypatch.delenv("GEMINI_API_KEY")
    project.runpytest("-p", "no:cacheprovider", "proxied.yaml").assert_outcomes(passed=2)
    project.makefile(".yaml", plain=suite_yaml(name="plain", samples=2, limit=1))
    result = project.runpytest("-p", "no:cacheprovider", "plain.yaml")  # built as usual: no cassette yet
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*no cassette*"])


def test_supplied_backends_are_held_to_the_provider_contracts_in_one_line(demo, live):
    """Whatever the backends hook gives or raises, and a sampler it gives that breaks the Sampler
    contract, fails each question in one line naming the hook; the run goes on."""
    from rlhf_eval import Backends, Trace

    class OneTrace:
        def sample(self, prompt, k, seed):
            return [Trace(text="A: 4", finish_reason="STOP", token_count=2, logp=None, seed=seed,
                          model_version="m")]

    def explode(suite, replay, policy):
        raise RuntimeError("hook exploded")

    hook = "the backends hook (pytest_rlhf_eval_backends)"
    for make, error in [
        (lambda suite, replay, policy: "a sampler",
         f"{hook} returned str for suite 'demo', not rlhf_eval.Backends or None"),
        (explode, f"{hook} raised RuntimeError: hook exploded"),
        (lambda suite, replay, policy: Backends(sampler="x"),
         f"the sampler from {hook} raised AttributeError: 'str' object has no attribute 'sample'"),
        (lambda suite, replay, policy: Backends(sampler=OneTrace()),
         f"the sampler from {hook} returned 1 traces for samples: 3"),
    ]:
        report = run_suites(["suites/demo.yaml"], record_mode="once", backends=make)
        assert {q.error for q in report.suites[0].questions} == {error}


def test_run_suites_settings_of_the_wrong_kind_are_one_line(demo, offline):
    for options, error in [
        ({"concurrency": "8"}, "concurrency = '8': expected a whole number, at least 1"),
        ({"retries": -1}, "retries = -1: expected a whole number, at least 0"),
        ({"workers": 0}, "workers = 0: expected a whole number, at least 1"),
        ({"rate_limit_rpm": "10"}, "rate_limit_rpm = '10': expected a positive number of requests a minute"),
        ({"retry_timeout": float("nan")}, "retry_timeout = nan: expected a non-negative number of seconds"),
        ({"report_json": True}, "report_json = True: expected a path"),
        ({"cassette_dir": None}, "cassette_dir = None: expected a path"),
        ({"reportjson": "r.json"}, "run_suites() has no option 'reportjson'; did you mean 'report_json'?"),
    ]:
        with pytest.raises(RunError) as raised:
            run_suites(["suites"], **options)
        assert str(raised.value) == error
    (demo / "cassettes").mkdir()
    with pytest.raises(RunError, match=r"^no suite in cassettes: a folder's suite files are the YAML files matching"):
        run_suites(["cassettes"])
    # one path, or one rule, is taken whole
    assert [s.name for s in run_suites("suites/demo.yaml").suites] == ["demo"]
    with pytest.raises(RunError, match="no such baseline report file"):
        run_suites("suites/demo.yaml", baseline="base.json", fail_rules="accuracy:0.05")
