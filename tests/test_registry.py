"""Verifiers come from one registry, built-ins and a team's own alike: registered with
`@verifier`, from an installed package's `rlhf_eval.verifiers` entry point, or named in a suite as
`module:function`. Each way is run end to end: recorded through the emulator, replayed offline."""
import base64
import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import NO_HYPOTHESIS, TEST_KEY
from rlhf_eval import SuiteError, Verdict, VerifierError, load_suite, verifier, verify
from rlhf_eval.providers import PROVIDERS
from rlhf_eval.registry import Registry, RegistryError
from rlhf_eval.rewards import REWARDS
from rlhf_eval.verify import VERIFIERS, _as_verifier, check_options, equivalent
from test_plugin import report_json, suite_yaml

# A team's verifier, as it would write it: the last integer of the answer, within `tolerance`.
TEAM_MODULE = '''
import os
import re

from rlhf_eval import Verdict


def last_integer(text: str, reference: str, tolerance: int = 0) -> Verdict:
    want = int(float(reference))
    numbers = re.findall(r"-?\\d+", text.replace(",", ""))
    if not numbers:
        return Verdict("unparsable", None, "no integer")
    got = int(numbers[-1])
    return Verdict("correct" if abs(got - want) <= tolerance else "incorrect", str(got))


class TinyChat:
    """A team's own sampler: one request per trace to an OpenAI-style chat server, by hand with httpx."""

    def __init__(self, model, *, replay=False, policy=None):
        import httpx

        self.model = model
        self.url = os.environ["TEAM_CHAT_URL"] + "/v1/chat/completions"
        self.client = httpx.Client(timeout=30)

    def sample(self, prompt, k, seed):
        from rlhf_eval import SamplingError, Trace

        traces = []
        for i in range(k):
            body = {"model": self.model.name, "messages": [{"role": "user", "content": prompt}], "seed": seed + i,
                    "temperature": self.model.temperature, "max_tokens": self.model.options.get("max_tokens", 400)}
            response = self.client.post(self.url, json=body)
            if response.status_code != 200:
                raise SamplingError(f"the chat server answered {response.status_code}", status=response.status_code)
            choice = response.json()["choices"][0]
            finish = {"stop": "STOP", "length": "MAX_TOKENS"}.get(choice["finish_reason"], choice["finish_reason"])
            traces.append(Trace(text=choice["message"]["content"], finish_reason=finish,  # Gemini's names
                                token_count=None, logp=None, seed=seed + i, model_version=response.json()["model"]))
        return traces


def short_answer(completions, **kwargs):
    """A team's length penalty, written for TRL's GRPOTrainer."""
    return [-len(completion) / 1000 for completion in completions]


def crashes_on_answers(text: str, reference: str) -> bool:
    if text:
        raise ValueError(f"cannot read {text[:5]!r}")
    return False
'''


@pytest.fixture(autouse=True)
def registered():
    """What a test registers (or loads from a reference) is forgotten after it, pass or fail, so
    every test sees only the built-ins."""
    before = {registry: set(registry.registered()) for registry in (VERIFIERS, PROVIDERS, REWARDS)}
    yield
    for registry, names in before.items():
        for name in set(registry.registered()) - names:
            registry.unregister(name)


def test_a_decorated_function_is_a_verifier_with_its_signature_as_options():
    @verifier("ends_with")
    def ends_with(text: str, reference: str, suffix_only: bool = True, weight: float = 1.0, note: str | None = None):
        return text.rstrip().endswith(reference)

    assert "ends_with" in VERIFIERS and "ends_with" in VERIFIERS.names()
    assert ends_with("plain call", "call") is True  # the function itself is unchanged
    assert verify("It is 42", "42", "ends_with") == Verdict("correct", None, "")  # a bool is a verdict
    assert verify("It is 41", "42", "ends_with", weight=2) == Verdict("incorrect", None, "")  # an int is a float
    assert VERIFIERS["ends_with"]("x 42", "42").correct
    for options, message in [
        ({"sufix_only": True}, "ends_with verifier: unknown option 'sufix_only'; did you mean 'suffix_only'?"),
        ({"weight": True}, "ends_with verifier: option 'weight' must be int or float, got bool True"),
        ({"suffix_only": "yes"}, "ends_with verifier: option 'suffix_only' must be bool, got str 'yes'"),
        ({"note": 3}, "ends_with verifier: option 'note' must be str or None, got int 3"),
    ]:
        with pytest.raises(VerifierError) as info:
            check_options("ends_with", options)
        assert str(info.value) == message
    check_options("ends_with", {"note": None, "weight": -1.5})  # no sign rule a team did not ask for
    # maj@k without an equivalence of its own: extracted answers equal after stripping, never empty
    assert equivalent(" 7", "7 ", "ends_with") and not equivalent("", "", "ends_with")


def test_required_options_hooks_and_equivalence_are_the_teams():
    def check(options):
        if options.get("unit") not in (None, "cm", "m"):
            raise VerifierError(f"option 'unit' must be cm or m, got {options['unit']!r}")

    @verifier("length", equivalent=lambda a, b, unit="cm": a.lower() == b.lower(), check=check,
              prepare=lambda options: {**options, "unit": options["unit"].lower()} if "unit" in options else options,
              reference=lambda answer: answer.split("=")[-1].strip())
    def length(text: str, reference: str, unit: str) -> Verdict:
        return Verdict("correct" if f"{reference} {unit}" in text else "incorrect", text.split()[-2])

    with pytest.raises(VerifierError, match=r"^length verifier: option 'unit' is required$"):
        verify("3 cm", "3", "length")
    with pytest.raises(VerifierError, match=r"^length verifier: option 'unit' must be cm or m, got 'km'$"):
        verify("3 km", "3", "length", unit="KM")
    assert verify("it is 3 cm long", "3", "length", unit="CM").correct  # prepared before it runs
    assert equivalent("3 CM", "3 cm", "length")  # a required option may be left out when comparing answers
    from rlhf_eval.verify import extract_reference
    assert extract_reference("a = 3", "length") == "3"


@pytest.mark.parametrize("returned, shown", [(None, "NoneType None"), ("correct", "str 'correct'")])
def test_a_verifier_that_returns_neither_verdict_nor_bool_is_one_line(returned, shown):
    VERIFIERS.register("sloppy", lambda text, reference: returned)
    with pytest.raises(VerifierError) as info:
        verify("x", "y", "sloppy")
    assert str(info.value) == f"verifier 'sloppy' returned {shown}; return a rlhf_eval.Verdict or a bool"


def test_a_function_that_cannot_be_a_verifier_is_refused_when_registered():
    def judge(text):
        return True
    with pytest.raises(VerifierError) as info:
        VERIFIERS.register("one_arg", judge)
    assert str(info.value) == ("verifier 'one_arg': 'judge' must take (text, reference, **options) as its first "
                               "two parameters")
    assert "one_arg" not in VERIFIERS


def test_unknown_names_list_what_is_known_and_references_fail_in_one_line(tmp_path, monkeypatch):
    with pytest.raises(VerifierError, match=r"^unknown verifier 'numerik'; did you mean 'numeric'\?$"):
        verify("1", "1", "numerik")
    with pytest.raises(VerifierError, match=r"^unknown verifier 'zzz'; known: choice, exact, math, numeric, regex"):
        verify("1", "1", "zzz")
    with pytest.raises(VerifierError, match=r"^verifier 'no_such_module:f': cannot load reference "
                                            r"\(ModuleNotFoundError: No module named 'no_such_module'\)$"):
        verify("1", "1", "no_such_module:f")
    (tmp_path / "team_refs.py").write_text(TEAM_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(VerifierError, match=r"^verifier 'team_refs:nope': cannot load reference \(AttributeError: "):
        verify("1", "1", "team_refs:nope")
    assert verify("so 12", "10", "team_refs:last_integer", tolerance=2).correct


def _suite_with(verifier_spec, model: dict | None = None, **extra) -> str:
    return suite_yaml(samples=4, limit=3, extra={"verifier": verifier_spec, **({"model": model} if model else {}),
                                                 **extra})


def test_a_module_reference_in_a_suite_records_and_replays(project, live, monkeypatch):
    (project.path / "team_checks.py").write_text(TEAM_MODULE)
    monkeypatch.syspath_prepend(str(project.path))
    project.makefile(".yaml", demo=_suite_with({"name": "team_checks:last_integer", "tolerance": 0}))
    recorded, rec_report = report_json(project, "--rlhf-record-mode=once")
    recorded.assert_outcomes(passed=3)
    monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("GEMINI_API_KEY")
    replayed, rep_report = report_json(project)
    replayed.assert_outcomes(passed=3)
    assert rep_report["suites"][0]["questions"] == rec_report["suites"][0]["questions"]
    # Every verdict is the team's verifier's, recomputed here from the recorded answers.
    team = __import__("team_checks").last_integer
    suite = load_suite(project.path / "demo.yaml")
    for q in rep_report["suites"][0]["questions"]:
        reference = next(x.answer for x in suite.questions if x.id == q["id"])
        for trace in q["traces"]:
            if trace["verdict"] in ("correct", "incorrect", "unparsable"):
                assert trace["verdict"] == team(trace["text"], reference).status


def test_a_team_verifier_that_raises_fails_that_question_in_one_line(project, live, monkeypatch):
    (project.path / "team_crash.py").write_text(TEAM_MODULE)
    monkeypatch.syspath_prepend(str(project.path))
    project.makefile(".yaml", demo=suite_yaml(samples=2, limit=1, extra={"verifier": "team_crash:crashes_on_answers"}))
    result = report_json(project, "--rlhf-record-mode=once")[0]
    result.assert_outcomes(failed=1)
    failure = [line for line in result.stdout.lines if line.startswith("demo.yaml::q-0000: verifier")]
    assert len(failure) == 1 and re.fullmatch(r"demo\.yaml::q-0000: verifier 'team_crash:crashes_on_answers' "
                                              r"raised ValueError: cannot read '.{1,5}'", failure[0]), failure
    assert "Traceback" not in result.stdout.str()


def test_a_reference_a_team_verifier_cannot_read_fails_the_suite_at_load(tmp_path, monkeypatch):
    (tmp_path / "team_load.py").write_text(TEAM_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "s.yaml"
    path.write_text(suite_yaml(limit=1, extra={"verifier": "team_load:last_integer", "questions": [
        {"id": "a", "question": "How many?", "answer": "many"}]}))
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    assert str(info.value).endswith("question 'a': answer 'many': verifier 'team_load:last_integer' raised "
                                    "ValueError: could not convert string to float: 'many'")


def test_a_suite_naming_an_unknown_verifier_fails_at_load_with_the_known_ones(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(_suite_with("numerik"))
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    assert str(info.value).endswith("verifier: unknown verifier 'numerik'; did you mean 'numeric'?")


# ------------------------------------------------------------------ an installed outside package

def _wheel(directory: Path, name: str, modules: dict[str, str], entry_points: dict[str, str],
           providers: dict[str, str] | None = None, rewards: dict[str, str] | None = None) -> Path:
    """A real wheel of package `name`: its modules, `rlhf_eval.verifiers`, `rlhf_eval.providers`
    and `rlhf_eval.rewards` entry points."""
    dist = f"{name}-0.1.dist-info"
    files = {f"{module}.py": text for module, text in modules.items()}
    files[f"{dist}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n"
    files[f"{dist}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    points = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    files[f"{dist}/entry_points.txt"] = f"[rlhf_eval.verifiers]\n{points}" + "".join(
        f"\n[rlhf_eval.{group}]\n" + "".join(f"{k} = {v}\n" for k, v in offered.items())
        for group, offered in (("providers", providers), ("rewards", rewards)) if offered)
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join(record + [f"{dist}/RECORD,,"]) + "\n"
    wheel = directory / f"{name}-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The team's package, installed by pip (no index, no network) into its own site folder."""
    root = tmp_path_factory.mktemp("site")
    wheel = _wheel(root, "team_evals", {"team_evals": TEAM_MODULE, "team_broken": "raise ImportError('no GPU here')"},
                   {"last_integer": "team_evals:last_integer", "needs_gpu": "team_broken:whatever"},
                   {"tiny-chat": "team_evals:TinyChat"}, {"short_answer": "team_evals:short_answer"})
    target = root / "site-packages"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(target),
                    str(wheel)], check=True, capture_output=True)
    return target


def _pytest(cwd: Path, site: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "PYTEST_ADDOPTS": NO_HYPOTHESIS}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_an_installed_packages_verifier_reward_function_and_provider_record_and_replay(installed, tmp_path, live):
    """The team's package brings its sampler (entry point `tiny-chat`, its own HTTP client), its
    verifier and a reward function in TRL's signature: recorded through the emulator, replayed
    offline with nothing listening (issue 12, Done-when 1)."""
    (tmp_path / "pytest.ini").write_text("[pytest]\nrlhf_suite_files = *.yaml\n")
    model = {"provider": "tiny-chat", "name": "gemini-2.0-flash", "temperature": 1.0, "options": {"max_tokens": 300}}
    (tmp_path / "demo.yaml").write_text(_suite_with({"name": "last_integer", "tolerance": 0}, model=model,
                                                    reward_funcs=["accuracy", "short_answer"],
                                                    reward_weights=[1.0, 2.0]))
    recording = {"TEAM_CHAT_URL": live.base_url, "RLHF_EVAL_GEMINI_BASE_URL": live.base_url, "GEMINI_API_KEY": TEST_KEY}
    before = len(live.requests)
    rec = _pytest(tmp_path, installed, recording, "--rlhf-record-mode=once", "--rlhf-report-json=rec.json")
    assert rec.returncode == 0, rec.stdout[-2000:] + rec.stderr[-2000:]
    sent = live.requests[before:]
    assert len(sent) == 12 and {r["path"] for r in sent} == {"/v1/chat/completions"}
    offline = {"TEAM_CHAT_URL": "http://127.0.0.1:9", "RLHF_EVAL_GEMINI_BASE_URL": "http://127.0.0.1:9",
               "GEMINI_API_KEY": ""}
    rep = _pytest(tmp_path, installed, offline, "--rlhf-report-json=rep.json")
    assert rep.returncode == 0, rep.stdout[-2000:] + rep.stderr[-2000:]
    assert len(live.requests) == before + 12
    recorded, replayed = (json.loads((tmp_path / f).read_text()) for f in ("rec.json", "rep.json"))
    assert replayed["suites"][0]["questions"] == recorded["suites"][0]["questions"]
    assert replayed["suites"][0]["model"]["provider"] == "tiny-chat"
    verdicts = {t["verdict"] for q in replayed["suites"][0]["questions"] for t in q["traces"]}
    assert verdicts & {"correct", "incorrect"}
    # The package's reward function, weighted 2, beside the verdict table's accuracy; the sum drives the advantages.
    assert replayed["suites"][0]["reward_funcs"] == [{"name": "accuracy", "weight": 1.0},
                                                     {"name": "short_answer", "weight": 2.0}]
    for q in replayed["suites"][0]["questions"]:
        traces = q["traces"]
        for t in traces:
            accuracy = float(t["verdict"] == "correct")
            assert t["rewards_by_function"] == {"accuracy": accuracy, "short_answer": -len(t["text"]) / 1000}
            assert t["reward"] == pytest.approx(accuracy - 2 * len(t["text"]) / 1000, rel=1e-12)
        rewards = np.array([t["reward"] for t in traces])
        assert [t["advantage"] for t in traces] == pytest.approx(
            list((rewards - rewards.mean()) / (rewards.std(ddof=1) + 1e-4)), rel=1e-9)  # TRL's, group-scaled

    # A package whose entry point cannot load costs nothing until a suite names it; then one line.
    text = _suite_with("needs_gpu")
    line = next(i for i, row in enumerate(text.splitlines(), 1) if row.startswith("verifier:"))
    (tmp_path / "demo.yaml").write_text(text)
    broken = _pytest(tmp_path, installed, offline)
    assert broken.returncode != 0
    assert (f"demo.yaml:{line}: verifier: verifier 'needs_gpu': cannot load entry point 'team_broken:whatever' of "
            "rlhf_eval.verifiers (ImportError: no GPU here)") in broken.stdout.splitlines()
    assert "Traceback" not in broken.stdout + broken.stderr
    # An unknown name lists the installed verifiers with the built-ins.
    (tmp_path / "demo.yaml").write_text(_suite_with("zzz"))
    unknown = _pytest(tmp_path, installed, offline)
    assert (f"demo.yaml:{line}: verifier: unknown verifier 'zzz'; known: choice, exact, last_integer, math, needs_gpu, "
            "numeric, regex") in unknown.stdout.splitlines()
    # and an unknown reward function lists the installed one with the built-in
    text = _suite_with("numeric", reward_funcs=["zzz"])
    line = next(i for i, row in enumerate(text.splitlines(), 1) if row.startswith("- zzz"))
    (tmp_path / "demo.yaml").write_text(text)
    unknown = _pytest(tmp_path, installed, offline)
    assert (f"demo.yaml:{line}: reward_funcs[0]: unknown reward function 'zzz'; known: accuracy, short_answer"
            in unknown.stdout.splitlines()), unknown.stdout[-2000:]


# ------------------------------------------------------------------ what a helper's attack found

def test_a_taken_name_is_refused_and_the_same_function_again_is_not_a_conflict():
    def exact(text: str, reference: str) -> bool:
        return True
    with pytest.raises(VerifierError) as info:
        verifier()(exact)  # named like the built-in
    assert str(info.value) == ("verifier 'exact' is already registered by rlhf_eval.verify:_exact; register "
                               "test_registry:test_a_taken_name_is_refused_and_the_same_function_again_is_not_a_"
                               "conflict.<locals>.exact under another name")
    assert verify("Paris", "Berlin", "exact").status == "incorrect"  # the built-in still judges
    verifier("mine")(exact)
    verifier("mine")(exact)  # a module imported twice registers the same function again
    for bad in (5, "", "  "):
        with pytest.raises(VerifierError, match=r"^a verifier needs a name, got "):
            VERIFIERS.register(bad, exact)


def test_a_verifier_returning_bools_has_no_maj_at_k_and_says_why(project, live, monkeypatch):
    (project.path / "team_bools.py").write_text("def says_yes(text: str, reference: str) -> bool:\n    return True\n")
    monkeypatch.syspath_prepend(str(project.path))
    project.makefile(".yaml", demo=suite_yaml(samples=2, limit=1, extra={
        "verifier": "team_bools:says_yes", "thresholds": {"maj_at_k": {"min": 0.5}}}))
    result, report = report_json(project, "--rlhf-record-mode=once")
    result.assert_outcomes(failed=1)
    metrics = report["suites"][0]["questions"][0]["metrics"]
    assert metrics["accuracy"] == 1.0 and metrics["maj_at_k"] is None
    result.stdout.fnmatch_lines(["*maj_at_k could not be measured: the verifier gives no extracted answer to vote "
                                 "with (it returns True/False)*"])


@pytest.mark.parametrize("run, message", [
    (lambda text, reference: Verdict("yes"), "verifier 'odd' returned a Verdict with status 'yes'; a verifier "
                                             "decides correct, incorrect, unparsable"),
    (lambda text, reference: Verdict("blocked"), "verifier 'odd' returned a Verdict with status 'blocked'; a "
                                                 "verifier decides correct, incorrect, unparsable"),
    (lambda text, reference: sys.exit(3), "verifier 'odd' raised SystemExit: 3"),
    (lambda text, reference, **opts: True, "verifier 'odd' raised TypeError: "),
])
def test_what_a_verifier_does_wrong_is_one_line_naming_it(run, message):
    VERIFIERS.register("odd", run)
    with pytest.raises(VerifierError) as info:
        verify("x", "y", "odd", **({"text": "clash"} if "TypeError" in message else {}))
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_a_hook_that_raises_is_one_line_naming_the_hook():
    def boom(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    @verifier("hooked", equivalent=boom, prepare=boom)
    def hooked(text: str, reference: str) -> bool:
        return True
    with pytest.raises(VerifierError, match=r"^hooked verifier: prepare of verifier 'hooked' raised "
                                            r"ZeroDivisionError: division by zero$"):
        verify("x", "y", "hooked")
    entry = VERIFIERS.get("hooked")
    VERIFIERS.unregister("hooked")
    VERIFIERS.register("hooked", dataclasses.replace(entry, prepare=None))
    with pytest.raises(VerifierError, match=r"^equivalent of verifier 'hooked' raised ZeroDivisionError"):
        equivalent("1", "1", "hooked")


def test_a_bound_method_can_be_decorated_and_an_unresolvable_annotation_checks_the_others():
    class Judge:
        def judge(self, text: str, reference: str, tolerance: int = 0) -> bool:
            return text == reference
    verifier("method")(Judge().judge)
    assert verify("a", "a", "method").correct

    namespace: dict = {}
    exec("from __future__ import annotations\n"
         "def partly(text: str, reference: str, tol: int = 0, scale: Decimal = None) -> bool:\n"
         "    return True\n", namespace)  # Decimal is not importable where the function lives
    VERIFIERS.register("partly", namespace["partly"])
    with pytest.raises(VerifierError, match=r"^partly verifier: option 'tol' must be int, got str 'oops'$"):
        check_options("partly", {"tol": "oops"})
    check_options("partly", {"scale": "anything"})


def test_installed_entry_points_never_replace_a_builtin_and_a_name_two_packages_offer_is_one_line(
        tmp_path, monkeypatch):
    site = tmp_path / "site"
    for package, points in (("pkg_one", {"numeric": "pkg_one:f", "dup": "pkg_one:f", "bad": "pkg_one always"}),
                            ("pkg_two", {"dup": "pkg_two:f"})):
        wheel = _wheel(tmp_path, package, {package: "def f(text, reference):\n    return True\n"}, points)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target",
                        str(site), str(wheel)], check=True, capture_output=True)
    monkeypatch.syspath_prepend(str(site))
    fresh = Registry("verifier", "rlhf_eval.verifiers", _as_verifier, VerifierError)
    for name in ("numeric", "exact", "regex", "choice", "math"):
        fresh.register(name, VERIFIERS.get(name))
    assert fresh.get("numeric") is VERIFIERS.get("numeric")
    assert fresh.names().count("numeric") == 1
    with pytest.raises(VerifierError) as info:
        fresh.get("dup")
    assert str(info.value) == ("verifier 'dup' is offered by several installed packages: pkg_one (pkg_one:f), "
                               "pkg_two (pkg_two:f); uninstall one, or name the one you mean as module:attribute")
    with pytest.raises(VerifierError) as info:
        fresh.get("bad")
    assert str(info.value) == ("verifier 'bad': cannot load entry point 'pkg_one always' of rlhf_eval.verifiers "
                               "(ValueError: expected module:attribute)")


def test_a_jsonl_suite_with_an_unknown_verifier_says_so_at_the_verifier_line(tmp_path):
    (tmp_path / "q.jsonl").write_text('{"question": "2+2?", "answer": "4"}\n')
    path = tmp_path / "s.yaml"
    path.write_text("suite: s\nmodel: {name: gemini-2.0-flash}\nsamples: 2\nverifier: numerik\n"
                    "questions: {source: q.jsonl}\n")
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    assert str(info.value) == f"{path}:4: verifier: unknown verifier 'numerik'; did you mean 'numeric'?"


def test_an_option_named_verifier_is_refused_in_one_line(tmp_path):
    VERIFIERS.register("loose", lambda text, reference, **options: True)
    with pytest.raises(VerifierError, match=r"^loose verifier: an option cannot be named 'verifier' \(it names "):
        check_options("loose", {"verifier": 1})
    with pytest.raises(VerifierError, match=r"^verifier 'strict': an option cannot be named 'verifier'"):
        VERIFIERS.register("strict", lambda text, reference, verifier=None: True)
    path = tmp_path / "s.yaml"
    path.write_text(_suite_with({"name": "loose", "verifier": 2}))
    with pytest.raises(SuiteError, match=r"verifier: loose verifier: an option cannot be named 'verifier'"):
        load_suite(path)


# ------------------------------------------------------------------ providers

def test_a_providers_module_reference_records_and_replays_and_a_wrong_role_is_one_line(project, live,
                                                                                       monkeypatch):
    (project.path / "team_sampler.py").write_text(TEAM_MODULE)
    monkeypatch.syspath_prepend(str(project.path))
    monkeypatch.setenv("TEAM_CHAT_URL", live.base_url)
    model = {"provider": "team_sampler:TinyChat", "name": "gemini-2.0-flash", "temperature": 1.0}
    project.makefile(".yaml", demo=suite_yaml(samples=2, limit=2, logprobs=False, extra={"model": model}))
    recorded, rec_report = report_json(project, "--rlhf-record-mode=once")
    recorded.assert_outcomes(passed=2)
    monkeypatch.setenv("TEAM_CHAT_URL", "http://127.0.0.1:9")
    replayed, rep_report = report_json(project)
    replayed.assert_outcomes(passed=2)
    assert rep_report["suites"][0]["questions"] == rec_report["suites"][0]["questions"]
    # A changed setting the team's provider sends is a stale cassette, explained, as for a built-in.
    project.makefile(".yaml", demo=suite_yaml(samples=2, limit=2, logprobs=False, extra={
        "model": {**model, "temperature": 0.5}}))
    stale = project.runpytest("-p", "no:cacheprovider")
    stale.assert_outcomes(failed=2)
    stale.stdout.fnmatch_lines(["demo.yaml::q-0000: stale cassette cassettes/demo/q-0000.yaml: "
                                "*temperature: 1.0 → 0.5*"])

    for dpo_reference, message in [
        ({"provider": "gemini", "name": "m"}, "dpo.reference.provider: provider 'gemini' has no scorer; scorers: hf, "
                                              "openai"),
        ({"provider": "team_sampler:TinyChat", "name": "m"}, "dpo.reference.provider: provider "
                                                             "'team_sampler:TinyChat' has no scorer; "
                                                             "scorers: hf, openai"),
        ({"provider": "hf", "name": "m", "options": {"x": 1}}, "dpo.reference.options: options are a team's own "
                                                               "provider's settings; hf takes its own as keys"),
    ]:
        path = project.path / "bad.yaml"
        path.write_text(suite_yaml(limit=1, extra={"dpo": {"reference": dpo_reference}}))
        with pytest.raises(SuiteError) as info:
            load_suite(path)
        assert str(info.value).split(": ", 1)[1] == message


def test_a_provider_name_is_taken_once_and_the_same_class_again_is_no_conflict(tmp_path, monkeypatch):
    (tmp_path / "team_classes.py").write_text(TEAM_MODULE + "\n\nclass Other(TinyChat):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import team_classes
    PROVIDERS.register("tiny", team_classes.TinyChat)
    PROVIDERS.register("tiny", team_classes.TinyChat)  # a module imported twice registers it again
    with pytest.raises(RegistryError) as info:
        PROVIDERS.register("tiny", team_classes.Other)
    assert str(info.value) == ("provider 'tiny' is already registered by team_classes:TinyChat; register "
                               "team_classes:Other under another name")
    from rlhf_eval.providers import provider
    with pytest.raises(RegistryError, match=r"^provider 'gemini' is already registered by "
                                            r"rlhf_eval\.providers:_gemini; register "):
        provider("gemini")(lambda: team_classes.TinyChat)


PROVIDER_FAULTS = '''
from rlhf_eval import Trace


class Base:
    def __init__(self, model, *, replay=False, policy=None):
        self.model = model

    def trace(self, i):
        return Trace(text="A: 4", finish_reason="STOP", token_count=None, logp=None, seed=i, model_version="m")


class TooFew(Base):
    def sample(self, prompt, k, seed):
        return [self.trace(seed)]


class Strings(Base):
    def sample(self, prompt, k, seed):
        return ["A: 4"] * k


class Raises(Base):
    def sample(self, prompt, k, seed):
        raise KeyError("choices")


class Exits(Base):
    def sample(self, prompt, k, seed):
        raise SystemExit(3)


class NoGpu(Base):
    def __init__(self, model, *, replay=False, policy=None):
        raise RuntimeError("no GPU here")

    def sample(self, prompt, k, seed):
        return []


class Local(Base):
    def sample(self, prompt, k, seed):
        return [self.trace(seed + i) for i in range(k)]


class OldSignature:
    def __init__(self, model):
        pass

    def sample(self, prompt, k, seed):
        return []
'''


@pytest.mark.parametrize("cls, message", [
    ("TooFew", "provider 'team_faults:TooFew' returned 1 traces for samples: 2"),
    ("Local", "provider 'team_faults:Local' gave traces but sent no request that can be recorded (rlhf-eval records "
              "HTTP through httpx, requests, urllib3 or aiohttp); nothing was written to cassettes/demo/q-0000.yaml"),
    ("Strings", "provider 'team_faults:Strings' returned str, not a list of rlhf_eval.Trace"),
    ("Raises", "provider 'team_faults:Raises' raised KeyError: 'choices'"),
    ("Exits", "provider 'team_faults:Exits' raised SystemExit: 3"),
    ("NoGpu", "provider 'team_faults:NoGpu' raised RuntimeError: no GPU here"),
    ("OldSignature", "provider 'team_faults:OldSignature' raised TypeError: OldSignature.__init__() got an "
                     "unexpected keyword argument 'replay'"),
])
def test_a_provider_that_breaks_its_contract_fails_the_question_in_one_line(project, monkeypatch, cls, message):
    (project.path / "team_faults.py").write_text(PROVIDER_FAULTS)
    monkeypatch.syspath_prepend(str(project.path))
    monkeypatch.setenv("GEMINI_API_KEY", TEST_KEY)
    model = {"provider": f"team_faults:{cls}", "name": "m"}
    project.makefile(".yaml", demo=suite_yaml(samples=2, limit=1, logprobs=False, extra={"model": model}))
    result = project.runpytest("-p", "no:cacheprovider", "--rlhf-record-mode=once")
    result.assert_outcomes(failed=1)
    assert f"demo.yaml::q-0000: {message}" in result.stdout.lines
    assert "Traceback" not in result.stdout.str()
    assert not (project.path / "cassettes" / "demo" / "q-0000.yaml").exists()


def test_provider_decorator_misuse_and_odd_names_are_one_line():
    from rlhf_eval.providers import provider
    with pytest.raises(RegistryError, match=r"^provider 'x': @provider decorates a function that imports and "
                                            r"returns the class, not the class TinyChat itself$"):
        provider("x")(type("TinyChat", (), {"sample": lambda self, p, k, s: []}))
    for name in ("team:Good", "weird name", ""):
        with pytest.raises(RegistryError, match=r"^a provider name is text without spaces or ':'"):
            provider(name)
    with pytest.raises(VerifierError, match=r"^a verifier name is text without spaces or ':'"):
        verifier("a:b")(lambda text, reference: True)
    with pytest.raises(RegistryError, match=r"^provider 'x': role must be 'sampler' or 'scorer'"):
        provider("x", role="judge")


def test_a_providers_options_are_plain_data(tmp_path, monkeypatch):
    (tmp_path / "team_opts.py").write_text(TEAM_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "s.yaml"
    path.write_text(suite_yaml(limit=1, extra={"model": {"provider": "team_opts:TinyChat", "name": "m",
                                                         "options": {"scale": float("nan")}}}))
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    assert str(info.value).endswith("model: options.scale: nan is not a finite number")


def test_a_scorer_registered_with_provider_serves_as_a_reference_not_as_a_sampler(tmp_path):
    from rlhf_eval import Score
    from rlhf_eval.backends import make_scorer
    from rlhf_eval.providers import provider

    class LengthScorer:
        name = "length"

        def __init__(self, config, *, replay=False, policy=None):
            pass

        def score(self, prompt, completions):
            return [Score(logp=-float(len(c)), token_count=len(c)) for c in completions]

    provider("length-scorer", role="scorer")(lambda: LengthScorer)
    path = tmp_path / "s.yaml"
    path.write_text(suite_yaml(limit=1, extra={"dpo": {"reference": {"provider": "length-scorer", "name": "m"}}}))
    suite = load_suite(path)
    assert make_scorer(suite.spec.dpo.reference).score("p", ["ab", "abcd"]) == [Score(-2.0, 2), Score(-4.0, 4)]
    path.write_text(suite_yaml(limit=1, extra={"model": {"provider": "length-scorer", "name": "m"}}))
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    assert str(info.value).endswith("model.provider: provider 'length-scorer' has no sampler; samplers: gemini, "
                                    "gemini-legacy, hf, openai, trl_vllm, vllm")
