"""The pytest plugin end to end: in-process pytest runs (pytester) against the real emulator."""
import contextlib
import importlib
import importlib.util
import json
import re

import pytest
import yaml

from conftest import GSM8K_TEST, TEST_KEY

# pytester's in-process runs drop the modules first imported inside them (see conftest) and import
# them anew in the next run: httpx2 loads its transport (httpcore2, h11) and truststore only when a
# client is first made, ~0.1 s every run. Loaded here once; every xdist worker collects this file.
for _name in ("httpcore2", "h11", "truststore"):
    with contextlib.suppress(ImportError):
        importlib.import_module(_name)


def suite_yaml(name="demo", *, model="gemini-2.0-flash", logprobs=True, samples=4, temperature=1.0,
               thresholds=None, suite_thresholds=None, limit=3, offset=0, prompt=None, extra=None, questions=None):
    doc = {
        "suite": name,
        "description": "test suite",
        "model": {"name": model, "temperature": temperature, "max_output_tokens": 400, "logprobs": logprobs},
        "samples": samples,
        "seed": 100,
        "prompt": prompt or "Solve it and end with 'A: <number>'.\n\nQuestion: {question}",
        "verifier": "numeric",
        "thresholds": thresholds or {},
        "suite_thresholds": suite_thresholds or {},
        "questions": questions or {"source": str(GSM8K_TEST), "id_prefix": "q", "answer_regex": r"####\s*(.+)$",
                                   "offset": offset, "limit": limit},
    }
    doc.update(extra or {})
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def run(pytester, *args):
    return pytester.runpytest("-p", "no:cacheprovider", *args)


def report_json(pytester, *args):
    out = pytester.path / "report.json"
    result = run(pytester, *args, f"--rlhf-report-json={out}")
    return result, json.loads(out.read_text())


def metrics_of(report):
    return {(s["name"], q["id"]): q["metrics"] for s in report["suites"] for q in s["questions"]}


def test_record_then_replay_offline_gives_identical_metrics_and_no_key(project, live, monkeypatch):
    project.makefile(".yaml", demo=suite_yaml(samples=4, limit=3))
    recorded, rec_report = report_json(project, "--rlhf-record-mode=once")
    recorded.assert_outcomes(passed=3)
    cassettes = sorted((project.path / "cassettes" / "demo").glob("*.yaml"))
    assert [c.name for c in cassettes] == ["q-0000.yaml", "q-0001.yaml", "q-0002.yaml"]
    for c in cassettes:
        assert TEST_KEY not in c.read_text()

    monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("GEMINI_API_KEY")
    requests_before = len(live.requests)
    replayed, rep_report = report_json(project)
    replayed.assert_outcomes(passed=3)
    assert len(live.requests) == requests_before
    assert metrics_of(rep_report) == metrics_of(rec_report)
    assert "rlhf-eval report" in replayed.stdout.str()
    replayed.stdout.fnmatch_lines(["demo · gemini-2.0-flash · k = 4 · 3 questions", "q-0000 *4 *pass",
                                    "(suite) *4 *pass"])


def test_question_threshold_failure_names_metric_value_bound_and_traces(project, live):
    # GSM8K test question 0: the emulator's bank holds two right and two wrong solutions for it.
    project.makefile(".yaml", demo=suite_yaml(samples=8, limit=1, thresholds={"accuracy": {"min": 0.9}}))
    result = run(project, "--rlhf-record-mode=once")
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert "demo.yaml::q-0000: 1 threshold(s) failed" in text
    assert re.search(r"accuracy = 0\.\d+ < min 0\.9", text)
    result.stdout.fnmatch_lines(["*seed*verdict*extracted*reward*advantage*tokens*logp*"])
    failures = result.stdout.str().split("FAILURES")[1].split("short test summary")[0]  # CI=true repeats it there
    rows = [line.split() for line in failures.splitlines() if re.match(r"\s+\d+\s+1\d\d\s", line)]
    assert len(rows) == 8 and [r[1] for r in rows] == [str(100 + i) for i in range(8)]
    assert {(r[2], r[3]) for r in rows if r[2] == "correct"} == {("correct", "18")}
    assert any(r[2] == "incorrect" for r in rows)
    assert "Traceback" not in text


def test_suite_threshold_breach_fails_the_run_after_all_items(project, live):
    project.makefile(".yaml", demo=suite_yaml(limit=2, suite_thresholds={"accuracy": {"min": 0.99}}))
    result = run(project, "--rlhf-record-mode=once")
    result.assert_outcomes(passed=2)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["FAIL suite demo: accuracy = * < min 0.99"])


# ---------------------------------------------------------------------------------------------
# Under xdist: one replay with `-n 2` of suites recorded serially, checked by several tests
# ---------------------------------------------------------------------------------------------

HAS_MATH_VERIFY = importlib.util.find_spec("math_verify") is not None


@pytest.fixture(scope="module")
def _xdist_runs_cache():
    return {}


@pytest.fixture
def xdist_runs(_xdist_runs_cache, project, live):
    """Suites recorded serially, then replayed serially and with `-n 2`: {"recorded", "serial",
    "serial_json", "parallel", "parallel_json", "questions"}. `demo` (5 questions) has a suite
    threshold it breaches, `other` (3) none, `maths` (the same 5 questions as demo, with the math
    verifier; when math-verify is installed) none. Two xdist workers cost seconds to start, so the
    replay runs once per module, in whichever test asks first; each test below checks one property."""
    pytest.importorskip("xdist")
    cache = _xdist_runs_cache
    if not cache:
        suites = {"demo": suite_yaml(limit=5, suite_thresholds={"accuracy": {"min": 0.99}}),
                  "other": suite_yaml("other", offset=10, limit=3)}
        if HAS_MATH_VERIFY:
            suites["maths"] = suite_yaml("maths", limit=5, extra={"verifier": "math"})
        questions = 5 + 3 + (5 if HAS_MATH_VERIFY else 0)
        project.makefile(".yaml", **suites)
        recorded = run(project, "--rlhf-record-mode=once")
        recorded.assert_outcomes(passed=questions)
        serial, serial_json = report_json(project)
        serial.assert_outcomes(passed=questions)
        parallel, parallel_json = report_json(project, "-n", "2")
        cache.update(recorded=recorded, serial=serial, serial_json=serial_json, parallel=parallel,
                     parallel_json=parallel_json, questions=questions)
    return cache


def test_suite_threshold_failure_holds_under_xdist(xdist_runs):
    assert xdist_runs["recorded"].ret == 1  # serial: the breach fails the run
    result = xdist_runs["parallel"]
    result.assert_outcomes(passed=xdist_runs["questions"])
    assert result.ret == 1
    result.stdout.fnmatch_lines(["FAIL suite demo: accuracy = * < min 0.99"])
    assert sum(line.startswith("FAIL suite") for line in result.stdout.lines) == 1  # demo's, and only once


def test_xdist_report_equals_serial_report(xdist_runs):
    serial, parallel = xdist_runs["serial"], xdist_runs["parallel"]
    parallel.assert_outcomes(passed=xdist_runs["questions"])
    parallel_json, serial_json = dict(xdist_runs["parallel_json"]), dict(xdist_runs["serial_json"])
    ours, theirs = parallel_json.pop("provenance"), serial_json.pop("provenance")
    assert parallel_json == serial_json
    # the same suite files, hashed by the controller as by a lone process; only when and how it ran differ
    assert {k: v for k, v in ours.items() if k not in ("time", "command_line")} == \
        {k: v for k, v in theirs.items() if k not in ("time", "command_line")}
    assert ours["command_line"][0] == "pytest" and any(a.startswith("--rlhf-report-json=")
                                                       for a in ours["command_line"])
    assert [a for a in ours["command_line"] if a not in ("-n", "2")] == theirs["command_line"]
    names = sorted(s["name"] for s in xdist_runs["serial_json"]["suites"])
    assert names == sorted(["demo", "other"] + ["maths"] * HAS_MATH_VERIFY)

    def table(result):  # the rlhf-eval report, up to pytest's next section
        lines = result.stdout.lines
        start = next(i for i, line in enumerate(lines) if "rlhf-eval report" in line) + 1
        end = next(i for i, line in enumerate(lines) if i >= start and line.startswith("="))
        return lines[start:end]

    assert table(parallel) == table(serial)
    rows = [line for line in table(serial) if line.startswith(("q-", "(suite)"))]
    assert len(rows) == 5 + 1 + 3 + 1 + (5 + 1 if HAS_MATH_VERIFY else 0)


def test_missing_cassette_fails_with_the_record_command(project, offline):
    project.makefile(".yaml", demo=suite_yaml(limit=1))
    result = run(project)
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert "no cassette at" in text and "q-0000.yaml" in text
    assert "record it with: GEMINI_API_KEY=<your key> pytest demo.yaml::q-0000 --rlhf-record-mode=once" in text
    assert "Traceback" not in text


def test_changed_temperature_fails_with_the_diff_and_rerecord_command(project, live, monkeypatch):
    suite = project.makefile(".yaml", demo=suite_yaml(limit=1, temperature=0.7))
    run(project, "--rlhf-record-mode=once").assert_outcomes(passed=1)
    suite.write_text(suite_yaml(limit=1, temperature=0.8))
    monkeypatch.delenv("GEMINI_API_KEY")
    result = run(project)
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert "generationConfig.temperature: 0.7 → 0.8" in text
    assert "pytest demo.yaml::q-0000 --rlhf-record-mode=rewrite" in text

    monkeypatch.setenv("GEMINI_API_KEY", TEST_KEY)
    run(project, "demo.yaml::q-0000", "--rlhf-record-mode=rewrite").assert_outcomes(passed=1)
    monkeypatch.delenv("GEMINI_API_KEY")
    run(project).assert_outcomes(passed=1)


def test_changed_prompt_shows_where_the_text_differs(project, live):
    suite = project.makefile(".yaml", demo=suite_yaml(limit=1))
    run(project, "--rlhf-record-mode=once").assert_outcomes(passed=1)
    suite.write_text(suite_yaml(limit=1, prompt="Solve it and end with 'Answer: <number>'.\n\nQuestion: {question}"))
    result = run(project)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*stale cassette*contents[[]0[]].parts[[]0[]].text changed at character 24:*"
                                 "A: <number>*→*Answer: <number>*"])


def test_more_samples_than_recorded_says_which_seeds_the_cassette_holds(project, live):
    suite = project.makefile(".yaml", demo=suite_yaml(limit=1, samples=3))
    run(project, "--rlhf-record-mode=once").assert_outcomes(passed=1)
    suite.write_text(suite_yaml(limit=1, samples=4))
    result = run(project)
    result.stdout.fnmatch_lines(["*it holds seeds 100–102 (3 requests) but this run asks for seed 103*"])


def test_changed_model_shows_the_path(project, live):
    suite = project.makefile(".yaml", demo=suite_yaml(limit=1))
    run(project, "--rlhf-record-mode=once").assert_outcomes(passed=1)
    suite.write_text(suite_yaml(limit=1, model="gemini-1.5-flash"))
    result = run(project)
    result.stdout.fnmatch_lines(["*path: /v1beta/models/gemini-2.0-flash:generateContent → "
                                 "/v1beta/models/gemini-1.5-flash:generateContent*"])


def test_recording_without_a_key_is_one_clear_line(project, emulator, monkeypatch):
    monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", emulator.base_url)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    project.makefile(".yaml", demo=suite_yaml(limit=1))
    result = run(project, "--rlhf-record-mode=once")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*recording needs an API key: set GEMINI_API_KEY*"])
    assert not (project.path / "cassettes" / "demo" / "q-0000.yaml").exists()


def test_dpo_threshold_on_a_model_without_logprobs_fails_with_the_reason(project, live):
    project.makefile(".yaml", demo=suite_yaml(model="gemini-3-flash", logprobs=False, limit=1,
                                              thresholds={"reward_accuracy": {"min": 0.5}}))
    result = run(project, "--rlhf-record-mode=once")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*reward_accuracy is unavailable: gemini-3-flash was not asked for log-probabilities "
        "(the suite has model.logprobs: false)*",
        "q-0000 *unavailable*unavailable*FAIL",
    ])


def test_a_model_known_to_refuse_logprobs_is_not_asked_and_dpo_says_why(project, live):
    project.makefile(".yaml", demo=suite_yaml(model="gemini-2.5-flash", logprobs=True, limit=1,
                                              thresholds={"mean_margin": {"min": 0.0}}))
    result = run(project, "--rlhf-record-mode=once")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*mean_margin is unavailable: gemini-2.5-flash returns no log-probabilities on "
                                 "the Gemini Developer API, so none were requested*"])
    cassette = yaml.safe_load((project.path / "cassettes/demo/q-0000.yaml").read_text())
    assert all(i["response"]["status"]["code"] == 200 for i in cassette["interactions"])
    assert not any("responseLogprobs" in i["request"]["body"] for i in cassette["interactions"])


def test_an_unknown_model_refusing_logprobs_is_asked_again_without(project, live, monkeypatch):
    # The emulator treats unknown names like Gemini 3.x: 400 to responseLogprobs. Each request
    # falls back on its own, so what is sent does not depend on how many requests ran at once.
    project.makefile(".yaml", demo=suite_yaml(model="gemini-exp-1206", logprobs=True, limit=1, samples=3))
    recorded, rec = report_json(project, "--rlhf-record-mode=once")
    recorded.assert_outcomes(passed=1)
    cassette = yaml.safe_load((project.path / "cassettes/demo/q-0000.yaml").read_text())
    assert [i["response"]["status"]["code"] for i in cassette["interactions"]] == [400, 200] * 3
    monkeypatch.delenv("GEMINI_API_KEY")
    replayed, rep = report_json(project)
    replayed.assert_outcomes(passed=1)
    assert metrics_of(rep) == metrics_of(rec)
    assert rep["suites"][0]["questions"][0]["dpo_unavailable"] == "gemini-exp-1206 returned no log-probabilities"


def test_blocked_and_truncated_traces_are_counted_not_crashed(project, live, pytester):
    questions = [
        {"id": "blocked", "question": "[[emulator:block]] What is 2+2?", "answer": 4},
        {"id": "empty", "question": "[[emulator:max_tokens]] What is 3+3?", "answer": 6},
        {"id": "safety", "question": "[[emulator:safety]] What is 4+4?", "answer": 8},
    ]
    project.makefile(".yaml", demo=suite_yaml(samples=2, questions=questions))
    result, report = report_json(project, "--rlhf-record-mode=once")
    result.assert_outcomes(passed=3)
    m = metrics_of(report)
    assert m[("demo", "blocked")]["blocked"] == 2
    assert m[("demo", "empty")]["truncated"] == 2
    assert m[("demo", "safety")]["blocked"] == 2
    traces = report["suites"][0]["questions"][0]["traces"]
    assert traces[0]["finish_reason"] == "PROMPT_BLOCKED:SAFETY" and traces[0]["reward"] == 0.0


def test_candidates_per_request_falls_back_on_a_model_that_refuses_and_replays(project, live, monkeypatch):
    project.makefile(".yaml", demo=suite_yaml(model="gemini-3-flash", logprobs=False, limit=1, samples=4,
                                              extra={"model": {"name": "gemini-3-flash", "logprobs": False,
                                                               "candidates_per_request": 4}}))
    recorded, rec = report_json(project, "--rlhf-record-mode=once")
    recorded.assert_outcomes(passed=1)
    cassette = yaml.safe_load((project.path / "cassettes/demo/q-0000.yaml").read_text())
    statuses = [i["response"]["status"]["code"] for i in cassette["interactions"]]
    assert statuses == [400, 200, 200, 200, 200]
    monkeypatch.delenv("GEMINI_API_KEY")
    replayed, rep = report_json(project)
    replayed.assert_outcomes(passed=1)
    assert metrics_of(rep) == metrics_of(rec)


def test_candidates_per_request_batches_on_a_model_that_allows_it(project, live):
    project.makefile(".yaml", demo=suite_yaml(limit=1, samples=6, extra={
        "model": {"name": "gemini-2.0-flash", "logprobs": True, "candidates_per_request": 4}}))
    _, report = report_json(project, "--rlhf-record-mode=once")
    cassette = yaml.safe_load((project.path / "cassettes/demo/q-0000.yaml").read_text())
    counts = [json.loads(i["request"]["body"])["generationConfig"].get("candidateCount", 1)
              for i in cassette["interactions"]]
    assert counts == [4, 2]
    traces = report["suites"][0]["questions"][0]["traces"]
    assert [(t["seed"], t["candidate_index"]) for t in traces] == [(100, 0), (100, 1), (100, 2), (100, 3),
                                                                   (104, 0), (104, 1)]


def test_selection_k_x_and_last_failed(project, live):
    # With accuracy >= 0.99 required, exactly the questions with a wrong trace fail.
    project.makefile(".yaml", demo=suite_yaml(limit=4, thresholds={"accuracy": {"min": 0.99}}))
    first = project.runpytest("--rlhf-record-mode=once")
    outcomes = first.parseoutcomes()
    assert outcomes["failed"] >= 2 and outcomes.get("passed", 0) >= 1
    failed_ids = sorted(re.findall(r"FAILED demo.yaml::(q-\d+)", first.stdout.str()))

    run(project, "-k", failed_ids[0]).assert_outcomes(failed=1)
    stopped = run(project, "-x")
    assert stopped.parseoutcomes()["failed"] == 1 and "stopping after 1 failures" in stopped.stdout.str()
    last_failed = project.runpytest("--lf", "-rf")
    last_failed.assert_outcomes(failed=len(failed_ids))
    assert sorted(re.findall(r"FAILED demo.yaml::(q-\d+)", last_failed.stdout.str())) == failed_ids


@pytest.mark.parametrize("name,text,expected", [
    ("bad_yaml", "suite: x\nmodel: [oops\n", r"bad_yaml\.yaml:3: invalid YAML: .*"),
    ("typo", "suite: x\nmodel:\n  name: g\n  temprature: 0.5\nsamples: 2\nquestions:\n"
             "  - {id: a, question: q, answer: 1}\n",
     r"typo\.yaml:4: model\.temprature: unknown key \(did you mean 'temperature'\?\)"),
    ("wrong_type", "suite: x\nmodel: {name: g}\nsamples: eight\nquestions:\n  - {id: a, question: q, answer: 1}\n",
     r"wrong_type\.yaml:3: samples: expected an integer, got 'eight'"),
    ("dup_id", "suite: x\nmodel: {name: g}\nsamples: 2\nquestions:\n  - {id: a, question: q, answer: 1}\n"
               "  - {id: a, question: r, answer: 2}\n",
     r"dup_id\.yaml:6: duplicate question id 'a' \(first at line 5\); ids must be unique within a suite"),
    ("bad_verifier", "suite: x\nmodel: {name: g}\nsamples: 2\nverifier: numerik\nquestions:\n"
                     "  - {id: a, question: q, answer: 1}\n",
     r"bad_verifier\.yaml:4: verifier: unknown verifier 'numerik'.*'numeric'"),
    ("no_answer", "suite: x\nmodel: {name: g}\nsamples: 2\nquestions:\n  - id: a\n    question: q\n",
     r"no_answer\.yaml:5: questions\[0\] \(a\)\.answer: required key is missing"),
    ("placeholder", "suite: x\nmodel: {name: g}\nsamples: 2\nprompt: '{question} {topic}'\nquestions:\n"
                    "  - {id: a, question: q, answer: 1}\n",
     r"placeholder\.yaml:6: prompt uses \{topic\} but question 'a' has no field 'topic'"),
])
def test_malformed_suites_give_one_clear_line(project, name, text, expected):
    project.makefile(".yaml", **{name: text})
    result = run(project)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    out = result.stdout.str()
    assert re.search(expected, out), out
    assert "Traceback" not in out and "pydantic" not in out
    error_lines = [line for line in result.stdout.lines if re.match(rf"{name}\.yaml:\d+: ", line)]
    assert len(error_lines) == 1, out


def test_item_reports_its_location(project, live):
    project.makefile(".yaml", demo=suite_yaml(limit=1, thresholds={"accuracy": {"min": 0.99}}))
    result = run(project, "--rlhf-record-mode=once", "-rf")
    result.stdout.fnmatch_lines(["FAILED demo.yaml::q-0000*"])


def test_unreachable_endpoint_while_recording_is_one_clear_line(project, monkeypatch):
    monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("GEMINI_API_KEY", TEST_KEY)
    project.makefile(".yaml", demo=suite_yaml(limit=1))
    result = run(project, "--rlhf-record-mode=once", "--rlhf-retry-delay=0.001")  # retried, without real waiting
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["demo.yaml::q-0000: could not reach http://127.0.0.1:9 (ConnectError: *"])
    assert "Traceback" not in result.stdout.str()


def test_math_verifier_runs_in_xdist_workers(xdist_runs):
    if not HAS_MATH_VERIFY:
        pytest.skip("math-verify is not installed")
    xdist_runs["parallel"].assert_outcomes(passed=xdist_runs["questions"])
    suites = {s["name"]: s for s in xdist_runs["parallel_json"]["suites"]}
    assert suites["maths"]["verifier"]["name"] == "math" and suites["demo"]["verifier"]["name"] == "numeric"
    # math-verify (in the xdist workers) reads the same final numbers as the numeric verifier on
    # these GSM8K traces: maths and demo ask the same questions with the same prompt and seeds
    verdicts = {name: [[t["verdict"] for t in q["traces"]] for q in suites[name]["questions"]]
                for name in ("maths", "demo")}
    assert verdicts["maths"] == verdicts["demo"]
    accuracy = {name: suites[name]["aggregates"]["accuracy"] for name in ("maths", "demo")}
    assert accuracy["maths"] == accuracy["demo"] and accuracy["maths"] > 0


def test_vcrpy_is_patched_only_while_questions_run(project, live):
    """The patch stays installed across a row of questions and is gone for any other test (here one
    collected between two suites) and after the run, also when -x stops it inside a row."""
    probe = ("import httpx2\n\n\ndef test_{name}():\n"
             "    assert not hasattr(httpx2.HTTPTransport.handle_request, '__wrapped__')\n")
    # z_demo's answers come slowly: before rows, its questions were prefetched while test_m ran
    slow = "[[emulator:latency=200]] Solve it and end with 'A: <number>'.\n\nQuestion: {question}"
    project.makefile(".yaml", a_demo=suite_yaml("a_demo", limit=2), z_demo=suite_yaml("z_demo", limit=2, prompt=slow))
    project.makepyfile(test_m=probe.format(name="between_suites"))
    result = run(project, "--rlhf-record-mode=once", "-v")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["*a_demo.yaml::q-0001 PASSED*", "*test_between_suites PASSED*",
                                 "*z_demo.yaml::q-0000 PASSED*"])
    import httpx2
    assert not hasattr(httpx2.HTTPTransport.handle_request, "__wrapped__")
    stopped = run(project, "-x", "--rlhf-record-mode=none", "--rlhf-cassette-dir=elsewhere")
    assert "stopping after 1 failures" in stopped.stdout.str()
    assert not hasattr(httpx2.HTTPTransport.handle_request, "__wrapped__")
