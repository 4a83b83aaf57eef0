"""Recording through the providers' batch APIs (`record_via="batch"`, `--rlhf-record-via batch`),
against the emulator's real batch endpoints: the cassettes and the report are those an online
recording of the same suite gives; an interrupted batch recording resumes without submitting again;
failed items go online; nothing holds a key. No test sleeps: the emulator's jobs finish after a
number of polls, and the poll's sleep is injected."""
import json

import pytest

from conftest import TEST_KEY
from test_plugin import suite_yaml

from rlhf_eval import RunError, run_suites
from rlhf_eval.batch import BatchSettings, state_path
from rlhf_eval.runner import Interrupted

OPENAI_KEY = "sk-TEST-openai-key-that-must-never-be-recorded-42"


def without_provenance(report) -> dict:
    return {k: v for k, v in report.to_dict().items() if k != "provenance"}


def cassettes(root) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*.yaml"))}


@pytest.fixture
def emu(live, monkeypatch, tmp_path):
    """The session's emulator, its batch knobs at their defaults, the key of both providers set."""
    live.batch.delay_polls, live.batch.fail_every = 1, 0
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "suites").mkdir()
    return live


def openai_suite(emu, **kw) -> str:
    model = {"provider": "openai", "name": "Qwen/Qwen2.5-0.5B-Instruct", "base_url": f"{emu.base_url}/v1",
             "temperature": 1.0, "max_output_tokens": 400, "logprobs": True}
    return suite_yaml(name="oa", samples=3, limit=3, extra={"model": model}, **kw)


class Polls:
    """The injected sleep: notes each wait instead of waiting (and may stop the run there)."""

    def __init__(self, interrupt_at: int | None = None):
        self.waits: list[float] = []
        self.interrupt_at = interrupt_at

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.interrupt_at is not None and len(self.waits) == self.interrupt_at:
            raise KeyboardInterrupt


def settings(polls=None, lines=None, **kw) -> BatchSettings:
    return BatchSettings(sleep=polls or Polls(), progress=(lines if lines is not None else []).append, **kw)


def online_paths(emu, since: int) -> list[str]:
    return [r["path"] for r in emu.requests[since:] if r["path"].endswith(("generateContent", "completions"))
            and "batch" not in r["path"]]


def test_a_gemini_suite_recorded_by_batch_gives_the_online_cassettes_and_report(emu, tmp_path):
    (tmp_path / "suites" / "demo.yaml").write_text(suite_yaml(samples=3, limit=3))
    online = run_suites(["suites"], record_mode="once", cassette_dir="online")
    since, creates = len(emu.requests), emu.batch.creates
    emu.batch.delay_polls = 2
    polls, lines = Polls(), []
    batch = run_suites(["suites"], record_mode="once", cassette_dir="batch", record_via="batch",
                       batch=settings(polls, lines))
    assert cassettes(tmp_path / "batch") == cassettes(tmp_path / "online")
    assert len(cassettes(tmp_path / "batch")) == 3
    assert without_provenance(batch) == without_provenance(online)
    # every generation went through the one job: nothing was sent online
    assert emu.batch.creates == creates + 1 and online_paths(emu, since) == []
    assert [r["path"] for r in emu.requests[since:]][0] == "/v1beta/models/gemini-2.0-flash:batchGenerateContent"
    # one line per poll, with the jobs' states and an ETA; the poll interval backs off
    assert polls.waits == [30.0, 45.0]
    assert lines[0] == "rlhf-eval: batch demo: 9 requests; 1 job submitted"
    assert lines[1:] == [
        "rlhf-eval: batch: 1 job (1 BATCH_STATE_RUNNING); 0/9 requests answered; 0s elapsed, ETA unknown",
        "rlhf-eval: batch: 1 job (1 BATCH_STATE_RUNNING); 0/9 requests answered; 0s elapsed, ETA unknown",
        "rlhf-eval: batch: 1 job (1 BATCH_STATE_SUCCEEDED); 9/9 requests answered; 0s elapsed, done"]
    # every question recorded: the jobs are forgotten, and the batch answers nothing any more
    assert not state_path(tmp_path / "batch", "demo").exists()
    replayed = run_suites(["suites"], cassette_dir="batch")
    assert without_provenance(replayed) == without_provenance(online)
    assert TEST_KEY not in "".join(cassettes(tmp_path / "batch").values())


def test_requests_past_the_inline_limit_go_as_an_uploaded_jsonl_file(emu, tmp_path):
    (tmp_path / "suites" / "demo.yaml").write_text(suite_yaml(samples=2, limit=2))
    run_suites(["suites"], record_mode="once", cassette_dir="online")
    since = len(emu.requests)
    run_suites(["suites"], record_mode="once", cassette_dir="batch", record_via="batch",
               batch=settings(max_inline_bytes=100, max_requests=3))
    paths = [r["path"] for r in emu.requests[since:]]
    # two chunks of at most 3 requests, each uploaded (resumable upload: start, then upload+finalize)
    assert paths.count("/upload/v1beta/files") == 4
    assert paths.count("/v1beta/models/gemini-2.0-flash:batchGenerateContent") == 2
    assert sum(p.startswith("/download/v1beta/files/") for p in paths) == 2
    uploads = [r for r in emu.requests[since:] if r["path"] == "/upload/v1beta/files"]
    assert all(TEST_KEY not in json.dumps(r["body"]) for r in uploads)
    assert cassettes(tmp_path / "batch") == cassettes(tmp_path / "online")


def test_an_openai_suite_by_batch_sends_failed_items_online_and_gives_the_online_cassettes(emu, tmp_path):
    (tmp_path / "suites" / "oa.yaml").write_text(openai_suite(emu))
    online = run_suites(["suites"], record_mode="once", cassette_dir="online")
    since = len(emu.requests)
    emu.batch.fail_every = 4  # items 4 and 8 of the job fail
    lines: list[str] = []
    batch = run_suites(["suites"], record_mode="once", cassette_dir="batch", record_via="batch",
                       batch=settings(lines=lines))
    paths = [r["path"] for r in emu.requests[since:]]
    assert paths[:2] == ["/v1/files", "/v1/batches"]
    assert online_paths(emu, since) == ["/v1/chat/completions"] * 2
    assert lines[-1] == ("rlhf-eval: batch: 2 of 9 requests got no answer from the batch (first: The server had an "
                         "error processing this request.); they are sent online")
    assert cassettes(tmp_path / "batch") == cassettes(tmp_path / "online")
    assert without_provenance(batch) == without_provenance(online)
    upload = next(r for r in emu.requests[since:] if r["path"] == "/v1/files")
    assert OPENAI_KEY not in json.dumps(upload["body"]) and "custom_id" in json.dumps(upload["body"])


def test_an_interrupted_batch_recording_resumes_without_submitting_again(emu, tmp_path):
    (tmp_path / "suites" / "demo.yaml").write_text(suite_yaml(samples=2, limit=3))
    run_suites(["suites"], record_mode="once", cassette_dir="online")
    creates = emu.batch.creates
    emu.batch.delay_polls = 3
    with pytest.raises(Interrupted) as stopped:
        run_suites(["suites"], record_mode="once", cassette_dir="batch", record_via="batch",
                   batch=settings(Polls(interrupt_at=1)))
    saved = state_path(tmp_path / "batch", "demo")
    assert str(stopped.value) == ("rlhf-eval stopped on Ctrl-C while waiting for 1 batch job (kept in "
                                  "batch/.batches/demo.json); run the same command again to collect them: nothing is "
                                  "submitted twice")
    job = json.loads(saved.read_text())["jobs"][0]
    assert job["state"] == "BATCH_STATE_RUNNING" and len(job["items"]) == 6 and job["input"] == "inline"
    assert TEST_KEY not in saved.read_text()
    assert not (tmp_path / "batch" / "demo").exists()  # nothing recorded yet
    assert emu.batch.creates == creates + 1
    lines: list[str] = []
    since = len(emu.requests)
    run_suites(["suites"], record_mode="once", cassette_dir="batch", record_via="batch", batch=settings(lines=lines))
    assert emu.batch.creates == creates + 1  # the same job, collected
    assert lines[0] == "rlhf-eval: batch demo: 6 requests; 0 jobs submitted, 1 resumed from batch/.batches/demo.json"
    assert online_paths(emu, since) == []
    assert cassettes(tmp_path / "batch") == cassettes(tmp_path / "online")


def test_a_job_that_failed_is_submitted_again_and_mode_once_batches_only_missing_cassettes(emu, tmp_path):
    (tmp_path / "suites" / "demo.yaml").write_text(suite_yaml(samples=2, limit=2))
    with pytest.raises(Interrupted):
        run_suites(["suites"], record_mode="once", cassette_dir="batch", record_via="batch",
                   batch=settings(Polls(interrupt_at=1)))
    saved = state_path(tmp_path / "batch", "demo")
    data = json.loads(saved.read_text())
    data["jobs"][0]["state"] = "BATCH_STATE_EXPIRED"
    saved.write_text(json.dumps(data))
    creates = emu.batch.creates
    run_suites(["suites"], record_mode="once", cassette_dir="batch", record_via="batch", batch=settings())
    assert emu.batch.creates == creates + 1
    (tmp_path / "batch" / "demo" / "q-0001.yaml").unlink()
    lines: list[str] = []
    run_suites(["suites"], record_mode="once", cassette_dir="batch", record_via="batch", batch=settings(lines=lines))
    assert lines[0] == "rlhf-eval: batch demo: 2 requests; 1 job submitted"


def test_a_key_in_what_would_be_uploaded_stops_before_anything_is_submitted(emu, tmp_path):
    (tmp_path / "suites" / "demo.yaml").write_text(suite_yaml(samples=1, limit=1, prompt=f"{TEST_KEY} {{question}}"))
    creates = emu.batch.creates
    with pytest.raises(RunError) as refused:
        run_suites(["suites"], record_mode="once", cassette_dir="batch", record_via="batch", batch=settings())
    assert str(refused.value) == ("suite 'demo': a request would upload the value of $GEMINI_API_KEY to the batch "
                                  "API; nothing was submitted (a prompt or setting holds a secret)")
    assert emu.batch.creates == creates


def test_a_suite_batch_mode_cannot_record_is_one_line(emu, tmp_path, monkeypatch):
    (tmp_path / "suites" / "v.yaml").write_text(suite_yaml(name="v", samples=1, limit=1, extra={"model": {
        "name": "gemini-2.5-flash", "vertex": {"project": "p", "location": "us-central1"}}}))
    with pytest.raises(RunError, match=r"^suite 'v' samples through Vertex AI, whose batch prediction"):
        run_suites(["suites"], record_mode="once", record_via="batch", batch=settings())
    with pytest.raises(RunError, match=r"^record_via = 'bulk': expected online or batch$"):
        run_suites(["suites"], record_mode="once", record_via="bulk")
    (tmp_path / "suites" / "v.yaml").unlink()
    (tmp_path / "suites" / "demo.yaml").write_text(suite_yaml(samples=1, limit=1))
    monkeypatch.delenv("GEMINI_API_KEY")
    with pytest.raises(RunError, match=r"^recording needs an API key: set GEMINI_API_KEY"):
        run_suites(["suites"], record_mode="once", record_via="batch", batch=settings())


def test_batch_results_that_quote_the_key_are_refused_and_nothing_is_recorded(emu, tmp_path):
    (tmp_path / "suites" / "demo.yaml").write_text(suite_yaml(samples=1, limit=1,
                                                              prompt="[[emulator:echo_key]] {question}"))
    with pytest.raises(RunError, match=r"^the results of batch job batches/\w+ contain the value of \$GEMINI_API_KEY; "
                                        r"nothing was recorded from them"):
        run_suites(["suites"], record_mode="once", cassette_dir="batch", record_via="batch", batch=settings())
    assert not (tmp_path / "batch" / "demo").exists()
    assert TEST_KEY not in state_path(tmp_path / "batch", "demo").read_text()


def test_new_episodes_by_batch_sends_only_the_requests_the_cassettes_lack(emu, tmp_path):
    suite = tmp_path / "suites" / "demo.yaml"
    suite.write_text(suite_yaml(samples=2, limit=2))
    for folder in ("online", "batch"):
        run_suites(["suites"], record_mode="once", cassette_dir=folder)
    suite.write_text(suite_yaml(samples=3, limit=2))
    online = run_suites(["suites"], record_mode="new_episodes", cassette_dir="online")
    since, lines = len(emu.requests), []
    batch = run_suites(["suites"], record_mode="new_episodes", cassette_dir="batch", record_via="batch",
                       batch=settings(lines=lines))
    assert lines[0] == "rlhf-eval: batch demo: 2 requests; 1 job submitted"  # seed 102 of each question
    assert online_paths(emu, since) == []
    assert cassettes(tmp_path / "batch") == cassettes(tmp_path / "online")
    assert without_provenance(batch) == without_provenance(online)


@pytest.mark.parametrize("provider", ["gemini", "openai"])
def test_the_emulator_cancels_a_running_job_and_gives_no_results(emu, provider):
    from rlhf_eval.batch_apis import GeminiBatches, OpenAIBatches

    emu.batch.delay_polls = 5
    if provider == "gemini":
        api = GeminiBatches(emu.base_url, {"x-goog-api-key": TEST_KEY})
        body = b'{"contents":[{"role":"user","parts":[{"text":"1+1?"}]}],"generationConfig":{"seed":1}}'
        job, where = api.submit("gemini-2.0-flash", [("a", body)], "t")
        cancelled = "BATCH_STATE_CANCELLED"
    else:
        api = OpenAIBatches(f"{emu.base_url}/v1", OPENAI_KEY)
        body = b'{"model":"Qwen/Qwen2.5-0.5B-Instruct","messages":[{"role":"user","content":"1+1?"}],"seed":1}'
        job, where = api.submit("/v1/chat/completions", [("a", body)], "t")
        cancelled = "cancelled"
    assert not api.status(job, 1).done
    cancels = emu.batch.cancels
    api.cancel(job)
    status = api.status(job, 1)
    assert (status.state, status.done, emu.batch.cancels) == (cancelled, True, cancels + 1)
    assert api.results(status, ["a"]) == {}


def test_the_plugin_records_by_batch_with_rlhf_record_via(project, emu, monkeypatch):
    from test_plugin import run

    monkeypatch.chdir(project.path)
    project.makefile(".yaml", demo=suite_yaml(samples=2, limit=2))
    emu.batch.delay_polls = 0  # done at the first poll: the plugin's real sleep is never reached
    creates, since = emu.batch.creates, len(emu.requests)
    result = run(project, "--rlhf-record-mode=once", "--rlhf-record-via=batch")
    result.assert_outcomes(passed=2)
    assert emu.batch.creates == creates + 1 and online_paths(emu, since) == []
    # written by pytest's terminal, as they come (pytest's capture would hold stderr to the end)
    result.stdout.fnmatch_lines(["rlhf-eval: batch demo: 4 requests; 1 job submitted",
                                 "rlhf-eval: batch: 1 job (1 BATCH_STATE_SUCCEEDED); 4/4 requests answered; *, done"])
    assert sorted(p.name for p in (project.path / "cassettes" / "demo").glob("*.yaml")) == ["q-0000.yaml",
                                                                                            "q-0001.yaml"]
    refused = run(project, "--rlhf-record-mode=all", "--rlhf-record-via=batch", "-n", "2")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(["ERROR: --rlhf-record-via batch submits the run's requests from one process: *"])


def test_rlhf_eval_run_records_by_batch(emu, tmp_path, capsys):
    from rlhf_eval.cli import main

    (tmp_path / "suites" / "demo.yaml").write_text(suite_yaml(samples=2, limit=1))
    emu.batch.delay_polls = 0
    creates = emu.batch.creates
    assert main(["run", "suites", "--record", "once", "--record-via", "batch"]) == 0
    assert emu.batch.creates == creates + 1
    assert "rlhf-eval: batch demo: 2 requests; 1 job submitted" in capsys.readouterr().err
    assert (tmp_path / "cassettes" / "demo" / "q-0000.yaml").is_file()


@pytest.mark.parametrize("suite_of", ["gemini", "openai"])
def test_a_poll_the_api_fails_is_asked_again_at_the_next_one(emu, tmp_path, suite_of):
    name = "demo" if suite_of == "gemini" else "oa"
    (tmp_path / "suites" / f"{name}.yaml").write_text(suite_yaml(samples=1, limit=1) if suite_of == "gemini"
                                                      else openai_suite(emu))
    emu.batch.fail_polls = 1
    polls, lines = Polls(), []
    run_suites(["suites"], record_mode="once", cassette_dir="batch", record_via="batch", batch=settings(polls, lines))
    assert lines[1].startswith("rlhf-eval: batch: could not read job ") and lines[1].endswith(
        "asking again at the next poll")
    assert len(polls.waits) == 2 and (tmp_path / "batch" / name).is_dir()


def test_rewrite_by_batch_gives_the_online_rewrite(emu, tmp_path):
    suite = tmp_path / "suites" / "demo.yaml"
    suite.write_text(suite_yaml(samples=2, limit=2))
    for folder in ("online", "batch"):
        run_suites(["suites"], record_mode="once", cassette_dir=folder)
    suite.write_text(suite_yaml(samples=2, limit=2, temperature=0.7))
    online = run_suites(["suites"], record_mode="rewrite", cassette_dir="online")
    since = len(emu.requests)
    batch = run_suites(["suites"], record_mode="rewrite", cassette_dir="batch", record_via="batch", batch=settings())
    assert online_paths(emu, since) == []
    assert cassettes(tmp_path / "batch") == cassettes(tmp_path / "online")
    assert without_provenance(batch) == without_provenance(online)


def test_a_question_left_unrecorded_keeps_the_jobs_for_the_next_run(emu, tmp_path):
    (tmp_path / "suites" / "demo.yaml").write_text(suite_yaml(samples=1, limit=2, prompt="{question}", questions=[
        {"id": "fine", "question": "What is 2 + 2?", "answer": "4"},
        {"id": "broken", "question": "[[emulator:500]] What is 3 + 3?", "answer": "6"}]))
    lines: list[str] = []
    report = run_suites(["suites"], record_mode="once", cassette_dir="batch", record_via="batch", retries=0,
                        batch=settings(lines=lines))
    errors = {q.id: q.error for q in report.suites[0].questions}
    assert errors["fine"] is None and errors["broken"].startswith("the API answered 500")
    assert lines[-1].startswith("rlhf-eval: batch: 1 of 2 requests got no answer from the batch (first: 500 ")
    assert state_path(tmp_path / "batch", "demo").is_file()  # kept: the next run pays for nothing twice
    creates = emu.batch.creates
    run_suites(["suites"], record_mode="once", cassette_dir="batch", record_via="batch", retries=0, batch=settings())
    assert emu.batch.creates == creates


def test_answers_a_backends_hook_never_asks_for_are_named_in_one_line(emu, tmp_path):
    from rlhf_eval import Backends, load_suite

    (tmp_path / "suites" / "demo.yaml").write_text(suite_yaml(samples=1, limit=2))
    (tmp_path / "other.yaml").write_text(suite_yaml(samples=1, limit=2, temperature=0.5))
    other = load_suite(tmp_path / "other.yaml")
    lines: list[str] = []
    since = len(emu.requests)
    run_suites(["suites"], record_mode="once", cassette_dir="batch", record_via="batch", batch=settings(lines=lines),
               backends=lambda suite, replay, policy: Backends.for_suite(other, replay=replay, policy=policy))
    assert len(online_paths(emu, since)) == 2
    assert lines[-1] == ("rlhf-eval: batch: 2 answers from the batch were not asked for (questions that did not run, "
                         "or a pytest_rlhf_eval_backends hook whose sampler sends other requests than the suite's: "
                         "those went online)")
