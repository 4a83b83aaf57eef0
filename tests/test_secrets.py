"""No secret in anything a run writes or prints: the key a suite names (whatever its variable is
called), the default key variables, and the credentials in a base URL.

Which variables and URLs are watched is kept per process (module state in
rlhf_eval.credentials), so a run here must not pass on what an earlier run in the same process
made it watch. Each run is in-process, but starts as a new process would: with nothing watched
(`fresh_watch_state`), the state of the runs before it set aside and put back after it."""
import json
from contextlib import contextmanager

import pytest
import yaml

from conftest import GSM8K_TEST

try:  # the OpenAI SDK loaded once, here, not anew inside each in-process run (see conftest)
    import openai  # noqa: F401
except ImportError:
    pass
from rlhf_eval import credentials
from rlhf_eval.credentials import redact_url, url_credentials
from test_plugin import suite_yaml

KEY = "my-own-key-value-0123456789"  # no known key shape: only its variable can tell it is a key
OUTPUTS = ["--rlhf-report-json=out/r.json", "--rlhf-html=out/r.html", "--rlhf-export=out/export", "--rlhf-save=base"]


WATCH_STATE = ("_key_envs", "_url_secrets")  # rlhf_eval.credentials: what this process watches


@contextmanager
def fresh_watch_state():
    """Nothing watched, as in a new process; yields the state the run fills. The state before is
    put back after."""
    saved = {name: getattr(credentials, name) for name in WATCH_STATE}  # AttributeError if renamed
    fresh = {name: type(value)() for name, value in saved.items()}
    for name, value in fresh.items():
        setattr(credentials, name, value)
    try:
        yield fresh
    finally:
        for name, value in saved.items():
            setattr(credentials, name, value)


def run(project, *args):
    """An in-process run that starts watching nothing. `result.watched`: what it came to watch
    (a check that the run used the fresh state, not one of its own)."""
    with fresh_watch_state() as watched:
        result = project.runpytest("-p", "no:cacheprovider", *args)
    result.watched = watched
    return result


def files_containing(root, text, *, besides=()):
    """Every file under `root` (but those in `besides`) whose bytes contain `text`."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and p.name not in besides and text.encode() in p.read_bytes())


def keyed_suite(questions=None, limit=1):
    doc = yaml.safe_load(suite_yaml(samples=2, limit=limit, questions=questions))
    doc["model"]["api_key_env"] = "MY_KEY_VAR"
    return yaml.safe_dump(doc, sort_keys=False)


@pytest.fixture
def my_key(live, monkeypatch):
    """Record against the emulator with the key in MY_KEY_VAR, and no default key variable set."""
    monkeypatch.delenv("GEMINI_API_KEY")
    monkeypatch.setenv("MY_KEY_VAR", KEY)
    return live


def test_a_key_echoed_from_the_variable_a_suite_names_is_never_written(project, my_key):
    questions = [{"id": "leak", "question": "[[emulator:echo_key]] What is 2+3?", "answer": 5},
                 {"id": "fine", "question": "What is 2+3?", "answer": 5}]
    project.makefile(".yaml", demo=keyed_suite(questions))
    result = run(project, "--rlhf-record-mode=once", *OUTPUTS)
    result.assert_outcomes(failed=1, passed=1)
    assert result.watched["_key_envs"] >= {"MY_KEY_VAR"}
    result.stdout.fnmatch_lines(["demo.yaml::leak: refusing to write cassettes/demo/leak.yaml: it would contain "
                                 "the value of $MY_KEY_VAR; nothing was written*"])
    assert KEY not in result.stdout.str() + result.stderr.str()
    assert (project.path / "cassettes/demo/fine.yaml").is_file() and (project.path / "out/r.html").is_file()
    assert files_containing(project.path, KEY) == []


def test_every_output_refuses_a_key_a_cassette_already_holds(project, my_key, monkeypatch):
    """A cassette recorded before the key was known to be one (by hand, by an older version) is
    replayed: the report, the HTML, the baseline and each exported file are refused in one line
    each, and the run fails."""
    project.makefile(".yaml", demo=keyed_suite())
    run(project, "--rlhf-record-mode=once").assert_outcomes(passed=1)
    cassette = project.path / "cassettes/demo/q-0000.yaml"
    data = json.loads(cassette.read_text())
    for interaction in data["interactions"]:
        body = json.loads(interaction["response"]["body"]["string"])
        part = body["candidates"][0]["content"]["parts"][0]
        part["text"] = f"My key is {KEY}. " + part["text"]
        interaction["response"]["body"]["string"] = json.dumps(body)
    cassette.write_text(json.dumps(data))
    monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", "http://127.0.0.1:9")

    result = run(project, *OUTPUTS)  # a replay, watching only what it names itself
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert result.watched["_key_envs"] >= {"MY_KEY_VAR"}
    result.assert_outcomes(passed=1)
    why = "it would contain the value of $MY_KEY_VAR; nothing was written (find which answer or error holds it in " \
          "the cassettes, and re-record them)"
    result.stdout.fnmatch_lines([
        "demo · * · 1 question", "(suite) *",
        f"rlhf-eval: refusing to write the JSON report out/r.json: {why}",
        f"rlhf-eval: refusing to write the HTML report out/r.html: {why}",
        f"rlhf-eval: refusing to write baseline base baselines/base.json: {why}",
        f"rlhf-eval: refusing to write the export out/export/demo/grpo_groups.jsonl: {why}",
    ])
    assert KEY not in result.stdout.str() + result.stderr.str()
    assert files_containing(project.path, KEY) == ["cassettes/demo/q-0000.yaml"]  # the one the test wrote
    assert (project.path / "out/export/demo/grpo_prompts.jsonl").is_file()  # the files without it are written


def test_credentials_in_a_base_url_are_never_printed_nor_written(project, emulator, monkeypatch):
    token = "url-token-0123456789abcdef"
    host = emulator.base_url.removeprefix("http://")
    doc = {"suite": "oa", "samples": 2, "seed": 10, "verifier": "numeric",
           "model": {"provider": "openai", "name": "policy-7b", "base_url": f"http://user:s3cret@{host}/v1",
                     "max_output_tokens": 400, "logprobs": True},
           "prompt": "Solve it and end with 'A: <number>'.\nQuestion: {question}",
           "questions": {"source": str(GSM8K_TEST), "answer_regex": r"####\s*(.+)$", "limit": 1}}
    project.makefile(".yaml", oa=yaml.safe_dump(doc))
    doc = {**doc, "suite": "bad", "model": {**doc["model"], "base_url": f"http://{host}/v1?api_key={token}"}}
    project.makefile(".yaml", bad=yaml.safe_dump(doc))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789abcdefghij")
    result = run(project, "--rlhf-record-mode=once", *OUTPUTS)
    assert set(result.watched["_url_secrets"]) >= {"s3cret", token}
    text = result.stdout.str() + result.stderr.str()
    assert "s3cret" not in text and token not in text
    assert files_containing(project.path, "s3cret", besides={"oa.yaml"}) == []
    assert files_containing(project.path, token, besides={"bad.yaml"}) == []
    report = json.loads((project.path / "out/r.json").read_text())
    settings = {s["name"]: s["model"]["base_url"] for s in report["suites"]}
    assert settings == {"oa": f"http://***@{host}/v1", "bad": f"http://{host}/v1?api_key=***"}
    assert "http://***@" in (project.path / "cassettes/oa/test-0000.yaml").read_text()  # recorded, redacted
    replayed = run(project, "-k", "oa")  # the redacted address replays: requests match on path and body
    replayed.assert_outcomes(passed=1)


@pytest.mark.parametrize("url, shown", [
    ("http://user:s3cret@127.0.0.1:8000/v1?key=abc&x=1", "http://***@127.0.0.1:8000/v1?key=***&x=1"),
    ("https://h/v1?api_key=zzz&token=&Api-Key=q", "https://h/v1?api_key=***&token=&Api-Key=***"),
    ("https://TOKEN123@host/v1#frag", "https://***@host/v1#frag"),
    ("http://[bad/x?key=1&y=2", "http://[bad/x?key=***&y=2"),  # not parsable: still redacted
    ("http://h:8000/v1?", "http://h:8000/v1?"),  # nothing to hide: unchanged, byte for byte
    (None, None),
])
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_url_credentials_says_what_each_is():
    assert url_credentials("http://me:pw@h/v1?token=t&x=1") == [
        ("the user name", "me"), ("the password", "pw"), ("the token= parameter", "t")]


@pytest.mark.parametrize("provider, env", [("openai", "OPENAI_BASE_URL"), ("gemini", "RLHF_EVAL_GEMINI_BASE_URL")])
def test_a_base_url_variable_no_server_can_have_is_one_line_without_its_credentials(monkeypatch, provider, env):
    """A suite's own base_url is checked when it loads (tests/bad_input); one from a variable when
    the sampler is made: one line, never the password nor an SDK's traceback."""
    from rlhf_eval.backends import make_sampler
    from rlhf_eval.sampling import SamplingError
    from rlhf_eval.suite import ModelConfig

    monkeypatch.setenv(env, "http://me:Secret-Pw-12345@[::1/v1")
    with pytest.raises(SamplingError) as info:
        make_sampler(ModelConfig(provider=provider, name="m"))
    assert str(info.value) == (f"base URL 'http://***@[::1/v1' (the suite's base_url, else ${env}) is not a server "
                               "URL (its IPv6 address is not valid); write e.g. http://localhost:8000/v1")
