"""Batch recording given bad input and odd events, against the emulator's real batch endpoints:
Ctrl-C while a job is created, a state file that is corrupt, hand-edited or from another suite
version, a job the provider no longer knows, a server without a batch API, results files that are
not JSON or answer a request twice. Each is one line, nothing recorded is lost, no stale answer is
written, nothing is paid twice. No test sleeps (the emulator counts polls; the sleep is injected)."""
import json

import pytest

from conftest import TEST_KEY
from test_batch_recording import OPENAI_KEY, Polls, cassettes, online_paths, openai_suite, settings, without_provenance
from test_plugin import suite_yaml

from rlhf_eval import RunError, run_suites
from rlhf_eval.batch import BatchSettings, state_path
from rlhf_eval.batch_apis import BatchAPIError, GeminiBatches, OpenAIBatches
from rlhf_eval.runner import Interrupted

BODY = b'{"contents":[{"role":"user","parts":[{"text":"1+1?"}]}],"generationConfig":{"seed":1}}'


@pytest.fixture
def emu(live, monkeypatch, tmp_path):
    """The session's emulator with its batch knobs at their defaults (again after the test)."""
    knobs = live.batch

    def defaults():
        knobs.delay_polls, knobs.fail_every, knobs.fail_polls = 1, 0, 0
        knobs.served, knobs.interrupt_after_create, knobs.fail_jobs = True, 0, 0

    defaults()
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "suites").mkdir()
    yield live
    defaults()


def batch_run(**kw):
    return run_suites(["suites"], record_mode="once", cassette_dir="batch", record_via="batch",
                      batch=kw.pop("batch", None) or settings(), **kw)


@pytest.mark.parametrize("suite_of", ["gemini", "openai"])
def test_ctrl_c_while_a_job_is_created_keeps_the_job_and_the_next_run_collects_it(emu, tmp_path, suite_of):
    name = "demo" if suite_of == "gemini" else "oa"
    (tmp_path / "suites" / f"{name}.yaml").write_text(suite_yaml(samples=2, limit=2) if suite_of == "gemini"
                                                      else openai_suite(emu))
    run_suites(["suites"], record_mode="once", cassette_dir="online")
    creates = emu.batch.creates
    emu.batch.interrupt_after_create = 1  # Ctrl-C lands once the job exists, before its id is read
    lines: list[str] = []
    with pytest.raises(Interrupted) as stopped:
        batch_run(batch=settings(lines=lines))
    assert str(stopped.value) == (f"rlhf-eval stopped on Ctrl-C while submitting, with 1 batch job submitted (kept "
                                  f"in batch/.batches/{name}.json); run the same command again to collect them and "
                                  "submit the rest: nothing is submitted twice")
    assert lines[0].startswith("rlhf-eval: batch: Ctrl-C: writing down the job being created first")
    assert emu.batch.creates == creates + 1
    saved = json.loads(state_path(tmp_path / "batch", name).read_text())
    assert len(saved["jobs"]) == 1 and saved["jobs"][0]["id"] in emu.batch.jobs
    since = len(emu.requests)
    batch_run()
    assert emu.batch.creates == creates + 1 and online_paths(emu, since) == []
    assert cassettes(tmp_path / "batch") == cassettes(tmp_path / "online")


def test_ctrl_c_between_two_suites_keeps_the_first_ones_job_and_the_next_run_submits_the_rest(emu, tmp_path):
    for name in ("a", "b"):
        (tmp_path / "suites" / f"{name}.yaml").write_text(suite_yaml(name=name, samples=1, limit=2))
    run_suites(["suites"], record_mode="once", cassette_dir="online")
    creates = emu.batch.creates

    def stop_after_the_first_submit(line: str) -> None:
        if line.startswith("rlhf-eval: batch a: "):
            raise KeyboardInterrupt

    with pytest.raises(Interrupted, match=r"^rlhf-eval stopped on Ctrl-C while submitting, with 1 batch job submitted "
                                          r"\(kept in batch/.batches/a.json\)"):
        batch_run(batch=BatchSettings(sleep=Polls(), progress=stop_after_the_first_submit))
    assert emu.batch.creates == creates + 1
    lines: list[str] = []
    batch_run(batch=settings(lines=lines))
    assert lines[:2] == ["rlhf-eval: batch a: 2 requests; 0 jobs submitted, 1 resumed from batch/.batches/a.json",
                         "rlhf-eval: batch b: 2 requests; 1 job submitted"]
    assert emu.batch.creates == creates + 2
    assert cassettes(tmp_path / "batch") == cassettes(tmp_path / "online")


@pytest.mark.parametrize("content, why", [
    ("{not json", "Expecting property name"),
    ('{"version": 1, "suite": "demo", "jobs": [{"id": "batches/x"}]}', "missing"),
    ('{"version": 1, "suite": "demo", "jobs": [{"id": "batches/x", "provider": "gemini", "server": "s", '
     '"target": "m", "items": "abc", "input": "inline", "submitted": "t"}]}', "not an id, a state"),
    ('{"version": 7, "suite": "demo", "jobs": []}', "version 7, this rlhf-eval reads version 1"),
    ('[]', "has no attribute"),
])
def test_a_state_file_rlhf_eval_did_not_write_is_one_line_and_nothing_is_submitted(emu, tmp_path, content, why):
    (tmp_path / "suites" / "demo.yaml").write_text(suite_yaml(samples=1, limit=1))
    saved = state_path(tmp_path / "batch", "demo")
    saved.parent.mkdir(parents=True)
    saved.write_text(content)
    creates = emu.batch.creates
    with pytest.raises(RunError) as refused:
        batch_run()
    line = str(refused.value)
    assert line.startswith("batch/.batches/demo.json: not a batch state file this rlhf-eval wrote (")
    assert why in line and line.endswith("else delete it to submit the suite's batch again") and "\n" not in line
    assert emu.batch.creates == creates and saved.read_text() == content


def test_a_suite_changed_since_its_jobs_were_submitted_gets_no_stale_answer(emu, tmp_path):
    suite = tmp_path / "suites" / "demo.yaml"
    suite.write_text(suite_yaml(samples=2, limit=2))
    emu.batch.delay_polls = 3
    with pytest.raises(Interrupted):
        batch_run(batch=settings(Polls(interrupt_at=1)))
    suite.write_text(suite_yaml(samples=2, limit=2, temperature=0.5))  # every request differs now
    online = run_suites(["suites"], record_mode="once", cassette_dir="online")
    creates, since, lines = emu.batch.creates, len(emu.requests), []
    batched = batch_run(batch=settings(lines=lines))
    assert emu.batch.creates == creates + 1 and lines[0] == "rlhf-eval: batch demo: 4 requests; 1 job submitted"
    assert online_paths(emu, since) == []
    assert cassettes(tmp_path / "batch") == cassettes(tmp_path / "online")
    assert without_provenance(batched) == without_provenance(online)
    assert not (tmp_path / "batch" / ".batches").exists()  # all recorded: the jobs and their folder are gone


def test_a_job_the_provider_no_longer_knows_is_one_line_and_submitted_again_next_run(emu, tmp_path):
    (tmp_path / "suites" / "demo.yaml").write_text(suite_yaml(samples=1, limit=2))
    emu.batch.delay_polls = 3
    with pytest.raises(Interrupted):
        batch_run(batch=settings(Polls(interrupt_at=1)))
    saved = state_path(tmp_path / "batch", "demo")
    data = json.loads(saved.read_text())
    gone = data["jobs"][0]["id"]
    del emu.batch.jobs[gone]  # deleted at the provider, or past its retention
    with pytest.raises(RunError) as refused:
        batch_run()
    assert str(refused.value) == (f"batch job {gone} is unknown to {emu.base_url} (404); it is marked so in "
                                  "batch/.batches/demo.json: run the same command again to submit its requests again")
    assert json.loads(saved.read_text())["jobs"][0]["state"] == "not found"
    creates, since = emu.batch.creates, len(emu.requests)
    emu.batch.delay_polls = 0
    batch_run()
    assert emu.batch.creates == creates + 1 and online_paths(emu, since) == []
    assert len(cassettes(tmp_path / "batch")) == 2


@pytest.mark.parametrize("suite_of", ["gemini", "openai"])
def test_a_server_without_a_batch_api_is_one_line(emu, tmp_path, suite_of):
    (tmp_path / "suites" / "s.yaml").write_text(suite_yaml(samples=1, limit=1) if suite_of == "gemini"
                                                else openai_suite(emu))
    emu.batch.served = False  # a vLLM / SGLang server: 404 {"detail": "Not Found"}
    with pytest.raises(RunError) as refused:
        batch_run()
    api = "Gemini Batch Mode" if suite_of == "gemini" else "OpenAI's Batch API"
    line = str(refused.value)
    assert line.startswith(f"{emu.base_url}{'/v1' * (suite_of == 'openai')} answered 404 to ")
    assert line.endswith(f"it does not serve {api} (a vLLM, SGLang or llama.cpp server, a proxy, a base_url that is "
                         "not the provider's do not); record this suite online (drop --rlhf-record-via batch)")
    assert not (tmp_path / "batch").exists() or not any((tmp_path / "batch").rglob("*.yaml"))


def test_a_key_in_a_later_chunk_stops_before_the_first_job_is_submitted(emu, tmp_path):
    (tmp_path / "suites" / "demo.yaml").write_text(suite_yaml(samples=1, limit=2, prompt="{question}", questions=[
        {"id": "fine", "question": "What is 2 + 2?", "answer": "4"},
        {"id": "leaky", "question": f"{TEST_KEY} What is 3 + 3?", "answer": "6"}]))
    creates = emu.batch.creates
    with pytest.raises(RunError, match=r"^suite 'demo': a request would upload the value of \$GEMINI_API_KEY"):
        batch_run(batch=settings(max_requests=1))
    assert emu.batch.creates == creates
    assert not state_path(tmp_path / "batch", "demo").exists()


def _done_gemini_job(emu, items, inline):
    api = GeminiBatches(emu.base_url, {"x-goog-api-key": TEST_KEY}, max_inline_bytes=10**9 if inline else 0)
    emu.batch.delay_polls = 0  # done at the first read
    job, _ = api.submit("gemini-2.0-flash", items, "t")
    status = api.status(job, len(items))
    assert status.done
    return api, status


def test_a_gemini_results_file_that_is_not_jsonl_is_one_line(emu):
    api, status = _done_gemini_job(emu, [("a", BODY)], inline=False)
    name = status.output["responsesFile"]
    emu.batch.files[name] = emu.batch.files[name] + b"<html>Service Unavailable</html>\n"
    with pytest.raises(BatchAPIError) as bad:
        api.results(status, ["a"])
    assert str(bad.value) == (f"line 2 of the responses file {name} is not a JSON object: "
                              "<html>Service Unavailable</html>")


def test_a_request_answered_twice_differently_is_answered_by_neither_and_extra_keys_are_kept_apart(emu):
    other = BODY.replace(b'"seed":1', b'"seed":2')
    api, status = _done_gemini_job(emu, [("a", BODY), ("b", other)], inline=False)
    name = status.output["responsesFile"]
    first, second = emu.batch.files[name].splitlines()
    again = json.loads(second)
    again["key"] = "a"  # b's answer, under a's key; and one for a request never sent
    stray = dict(json.loads(first), key="zzz")
    emu.batch.files[name] = b"\n".join([first, json.dumps(again).encode(), json.dumps(stray).encode()]) + b"\n"
    results = api.results(status, ["a", "b"])
    assert results["a"].body is None and results["a"].error == "the batch answered request a twice, differently"
    assert "b" not in results  # missing: the run sends it online


def test_an_openai_results_file_that_is_not_jsonl_is_one_line(emu):
    api = OpenAIBatches(f"{emu.base_url}/v1", OPENAI_KEY)
    body = b'{"model":"Qwen/Qwen2.5-0.5B-Instruct","messages":[{"role":"user","content":"1+1?"}],"seed":1}'
    emu.batch.delay_polls = 0
    job, _ = api.submit("/v1/chat/completions", [("a", body)], "t")
    status = api.status(job, 1)
    out = status.output[0]
    emu.batch.files[out] = b'{"custom_id": "a", "response": {"status_code": 200, "body": {"id": 1}}}\n[1, 2]\n'
    with pytest.raises(BatchAPIError, match=rf"^line 2 of the batch's file {out} is not a JSON object: \[1, 2\]$"):
        api.results(status, ["a"])


def test_the_plugin_ends_a_ctrl_c_while_submitting_with_pytests_stop_line(project, emu, monkeypatch):
    from test_plugin import run

    monkeypatch.chdir(project.path)
    project.makefile(".yaml", demo=suite_yaml(samples=1, limit=1))
    emu.batch.interrupt_after_create = 1
    emu.batch.delay_polls = 0  # done at the first poll: the plugin's real sleep is never reached
    creates = emu.batch.creates
    result = run(project, "--rlhf-record-mode=once", "--rlhf-record-via=batch")
    assert result.ret == pytest.ExitCode.INTERRUPTED and emu.batch.creates == creates + 1
    result.stdout.fnmatch_lines(["*! Interrupted: rlhf-eval stopped on Ctrl-C while submitting, with 1 batch job "
                                 "submitted (kept in cassettes/.batches/demo.json); run the same command again *"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    again = run(project, "--rlhf-record-mode=once", "--rlhf-record-via=batch")
    again.assert_outcomes(passed=1)
    assert emu.batch.creates == creates + 1


@pytest.mark.parametrize("suite_of, state", [("gemini", "BATCH_STATE_FAILED"), ("openai", "failed")])
def test_a_job_that_failed_as_a_whole_says_why_its_requests_go_online_and_the_cassettes_are_the_online_ones(
        emu, tmp_path, suite_of, state):
    (tmp_path / "suites" / "s.yaml").write_text(suite_yaml(samples=1, limit=2) if suite_of == "gemini"
                                                else openai_suite(emu))
    run_suites(["suites"], record_mode="once", cassette_dir="online")
    emu.batch.fail_jobs = 1
    lines: list[str] = []
    since = len(emu.requests)
    batch_run(batch=settings(lines=lines))
    n = 2 if suite_of == "gemini" else 9
    assert lines[-1].startswith(f"rlhf-eval: batch: {n} of {n} requests got no answer from the batch (first: job ")
    assert lines[-1].endswith(f" ended {state} (The batch could not be processed: the model is not available for batch "
                              "jobs.) without it); they are sent online")
    assert len(online_paths(emu, since)) == n
    assert cassettes(tmp_path / "batch") == cassettes(tmp_path / "online")


def test_a_results_file_gone_at_the_provider_is_marked_and_submitted_again_next_run(emu, tmp_path):
    (tmp_path / "suites" / "demo.yaml").write_text(suite_yaml(samples=1, limit=2))
    emu.batch.delay_polls = 0
    finished: list[str] = []

    def drop_the_results_file(line: str) -> None:  # as the provider does after its retention time
        finished.append(line)
        if line.endswith(", done"):
            for job in emu.batch.jobs.values():
                if job.output_file:
                    emu.batch.files.pop(job.output_file, None)

    with pytest.raises(RunError) as refused:
        batch_run(batch=BatchSettings(sleep=Polls(), progress=drop_the_results_file, max_inline_bytes=0))
    saved = state_path(tmp_path / "batch", "demo")
    job = json.loads(saved.read_text())["jobs"][0]
    assert str(refused.value).startswith(f"batch job {job['id']}: the Gemini batch API answered 404 to GET ")
    assert str(refused.value).endswith("its results are gone: it is marked so in batch/.batches/demo.json, run the "
                                       "same command again to submit its requests again")
    assert job["state"] == "results not found"
    creates = emu.batch.creates
    batch_run()
    assert emu.batch.creates == creates + 1 and len(cassettes(tmp_path / "batch")) == 2
