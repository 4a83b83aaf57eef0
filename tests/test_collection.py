"""Which files pytest collects as suites: by name (ini `rlhf_suite_files`, like `python_files`) or
named on the command line, never by guessing from content; a file picked that is not a suite, or
a second suite with a taken name, fails in one line. And the recording progress line."""
import ast
import os
import re
import socket
import subprocess

import pytest

import pytest_rlhf_eval
from conftest import REPO, SHIPPED, shipped_copy
from test_plugin import suite_yaml

SUITE = ("suite: {name}\nmodel: {{name: gemini-2.0-flash, logprobs: true}}\nsamples: 2\nquestions:\n"
         "  - {{id: q1, question: 'What is 2 plus 2?', answer: 4}}\n"
         "  - {{id: q2, question: 'What is 3 plus 4?', answer: 7}}\n")
# YAML files that are not suites but have a top-level `suite:` key, as CI configs may
CI_CONFIG = "suite: integration\nsteps:\n  - run: make test\n"
PLAIN_TEST = "def test_app():\n    assert 1 + 1 == 2\n"


def write(root, relative, text):
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def run(pytester, *args):
    return pytester.runpytest("-p", "no:cacheprovider", *args)


def collected(result):
    return sorted(line for line in result.stdout.lines if "::" in line and " " not in line)


@pytest.fixture
def plain(pytester):
    """A project with the default settings: an ini that names no suite files."""
    pytester.makeini("[pytest]\n")
    return pytester


def test_a_ci_config_with_a_suite_key_leaves_the_test_run_untouched(plain):
    write(plain.path, "ci.yaml", CI_CONFIG)
    write(plain.path, ".github/workflows/ci.yml", CI_CONFIG)
    write(plain.path, "config/suite.yaml", CI_CONFIG)  # `suite.yaml` is not `*.suite.yaml`
    write(plain.path, "test_app.py", PLAIN_TEST)
    result = run(plain, "-v")
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["test_app.py::test_app PASSED*"])
    out = result.stdout.str()
    assert "ci.yaml" not in out and "ci.yml" not in out and "suite.yaml" not in out
    assert run(plain, ".github", "config").ret == pytest.ExitCode.NO_TESTS_COLLECTED  # folders named: still no


def test_a_run_with_no_suite_loads_none_of_the_engine(plain):
    """The plugin is in every pytest run of an environment that has rlhf-eval: one that collects no
    suite loads no suite model, verifier, recorder, SDK or numpy for it (benchmarks/plugin_overhead.py says
    what that saves). A run that collects a suite has loaded them by its first test."""
    engine = ["rlhf_eval.suite", "pydantic", "rlhf_eval.recording", "rlhf_eval.verify", "vcr", "google.genai",
              "openai", "numpy", "tabulate"]
    write(plain.path, "test_app.py", f"import sys\n\n\ndef test_app():\n    print('LOADED', "
                                     f"[m for m in {engine!r} if m in sys.modules])\n")
    alone = plain.runpytest_subprocess("-p", "no:cacheprovider", "-s", "test_app.py")
    assert alone.ret == pytest.ExitCode.OK
    assert [line.partition("LOADED ")[2] for line in alone.stdout.lines if "LOADED" in line] == ["[]"]
    write(plain.path, "demo.suite.yaml", SUITE.format(name="demo"))
    with_suite = plain.runpytest_subprocess("-p", "no:cacheprovider", "-s", "test_app.py", "demo.suite.yaml")
    loaded = [line.partition("LOADED ")[2] for line in with_suite.stdout.lines if "LOADED" in line]
    assert len(loaded) == 1 and {"rlhf_eval.suite", "pydantic", "vcr"} <= set(ast.literal_eval(loaded[0]))


def test_a_folder_named_suites_above_the_rootdir_does_not_make_yaml_files_suites(plain, monkeypatch):
    """pytest matches python_files against the whole absolute path; a suite pattern counts only
    the path from the rootdir, so a project checked out under ~/suites/ keeps its ci.yaml its own."""
    project = plain.path / "suites" / "app"
    write(project, "pytest.ini", "[pytest]\n")
    write(project, "ci.yaml", CI_CONFIG)
    write(project, "test_app.py", PLAIN_TEST)
    monkeypatch.chdir(project)
    result = run(plain)
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1)


def test_pytest_suites_in_a_copy_of_the_repository_collects_the_shipped_suites(pytester):
    shipped_copy(pytester.path)
    result = run(pytester, "suites/", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    files = {line.split("::")[0] for line in collected(result)}
    assert files == {f"suites/{name}.yaml" for name in SHIPPED}
    assert len(collected(result)) == 30 + 10 + 20


def test_default_patterns_collect_suites_folder_nested_folders_and_dot_suite_files(plain):
    write(plain.path, "suites/a.yaml", SUITE.format(name="a"))
    write(plain.path, "suites/b.yml", SUITE.format(name="b"))
    write(plain.path, "suites/math/c.yaml", SUITE.format(name="c"))  # `*` crosses folders, as in pytest
    write(plain.path, "evals/d.suite.yaml", SUITE.format(name="d"))
    write(plain.path, "evals/e.yaml", SUITE.format(name="e"))  # matches no pattern
    write(plain.path, "suites/data/notes.txt", "not YAML, never opened\n")
    result = run(plain, "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    assert {line.split("::")[0] for line in collected(result)} == {
        "suites/a.yaml", "suites/b.yml", "suites/math/c.yaml", "evals/d.suite.yaml"}


def test_an_ini_pattern_replaces_the_defaults(pytester):
    pytester.makeini("[pytest]\nrlhf_suite_files =\n    evals/*.yaml\n")
    write(pytester.path, "evals/a.yaml", SUITE.format(name="a"))
    write(pytester.path, "suites/b.yaml", SUITE.format(name="b"))
    result = run(pytester, "--collect-only", "-q")
    assert collected(result) == ["evals/a.yaml::q1", "evals/a.yaml::q2"]


def test_a_file_named_on_the_command_line_is_a_suite_whatever_its_name(plain):
    write(plain.path, "notes/my_eval.yaml", SUITE.format(name="mine"))
    write(plain.path, "ci.yaml", CI_CONFIG)
    assert run(plain, "notes", "--collect-only", "-q").ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result = run(plain, "notes/my_eval.yaml::q2", "--collect-only", "-q")
    assert collected(result) == ["notes/my_eval.yaml::q2"]
    named = run(plain, "ci.yaml")  # asked for: it is read as a suite, and it is not one
    assert named.ret == pytest.ExitCode.INTERRUPTED
    assert any(line.startswith("ci.yaml:") for line in named.stdout.lines)
    assert "Traceback" not in named.stdout.str()


def test_a_suite_with_a_byte_order_mark_is_collected(plain):
    (plain.path / "suites").mkdir()
    (plain.path / "suites" / "bom.yaml").write_bytes(b"\xef\xbb\xbf" + SUITE.format(name="bom").encode())
    result = run(plain, "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    assert collected(result) == ["suites/bom.yaml::q1", "suites/bom.yaml::q2"]


BROKEN = {
    "a_list": "- one\n- two\n",
    "empty": "",
    "no_suite_key": "name: build\nsteps: []\n",
    "bad_yaml": "suite: x\nmodel: [oops\n",
}


@pytest.mark.parametrize("name", [*BROKEN, "utf16", "dangling_link", "unreadable"])
def test_a_file_in_suites_that_is_no_suite_fails_the_run_in_one_line(plain, name):
    path = plain.path / "suites" / f"{name}.yaml"
    path.parent.mkdir()
    if name == "utf16":
        path.write_bytes(SUITE.format(name="u").encode("utf-16"))
    elif name == "dangling_link":
        path.symlink_to(plain.path / "suites" / "gone.yaml")
    elif name == "unreadable":
        if os.geteuid() == 0:
            pytest.skip("root reads a file whatever its mode")
        path.write_text(SUITE.format(name="x"))
        path.chmod(0)
    else:
        path.write_text(BROKEN[name])
    write(plain.path, "suites/good.yaml", SUITE.format(name="good"))
    result = run(plain)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    out = result.stdout.str()
    assert "Traceback" not in out
    assert "1 error during collection" in out
    # the error section holds exactly one line, naming the file
    section = out.split(" ERROR collecting ")[1].split("\n", 1)[1].split("=====")[0].strip().splitlines()
    assert len(section) == 1 and re.search(rf"(^|/)suites/{name}\.yaml(:\d+)?: ", section[0]), section


def test_two_suites_with_one_name_fail_the_second_naming_both(plain):
    write(plain.path, "suites/a.yaml", SUITE.format(name="x"))
    write(plain.path, "suites/b.yaml", "# the same name again\n\n" + SUITE.format(name="x"))
    result = run(plain)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    line = ("suites/b.yaml:3: suite name 'x' is already used by suites/a.yaml; each suite needs its own name "
            "(it names the cassette folder cassettes/x/)")
    assert result.stdout.lines.count(line) == 1, result.stdout.str()
    assert "suites/a.yaml:" not in result.stdout.str()


def test_two_suites_with_one_name_fail_under_xdist_too(plain):
    pytest.importorskip("xdist")
    write(plain.path, "suites/a.yaml", SUITE.format(name="x"))
    write(plain.path, "suites/b.yaml", SUITE.format(name="x"))
    result = run(plain, "-n", "2", "--collect-only")
    assert result.ret != pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["suites/b.yaml:1: suite name 'x' is already used by suites/a.yaml; *"])


def test_a_file_in_the_cassette_folder_is_never_a_suite(pytester):
    pytester.makeini("[pytest]\nrlhf_suite_files = *.yaml\nrlhf_cassette_dir = suites/cassettes\n")
    write(pytester.path, "a.yaml", SUITE.format(name="a"))
    write(pytester.path, "suites/cassettes/a/q1.yaml", '{"interactions": [], "version": 1}\n')
    result = run(pytester, "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    assert collected(result) == ["a.yaml::q1", "a.yaml::q2"]


def test_the_tests_own_corpus_of_broken_files_is_not_collected_by_the_projects_run(pytester):
    """`pytest tests/bad_input` in the repository, in-process: its rootdir and its pyproject.toml."""
    result = pytester.runpytest("--collect-only", "-p", "no:cacheprovider", f"--rootdir={REPO}",
                                "-c", str(REPO / "pyproject.toml"), str(REPO / "tests" / "bad_input"))
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED, result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines([f"rootdir: {REPO}", "configfile: pyproject.toml"])  # the project's run


# ---------------------------------------------------------------------------------------------
# The recording progress line
# ---------------------------------------------------------------------------------------------

PROGRESS = re.compile(r"rlhf-eval recording: (\d+)/(\d+) questions · \d+ requests · \d+ retries · ETA \d+s")


@pytest.fixture
def progress_project(project, live, monkeypatch):
    """Two suites of two questions with a plain test between them, recorded against the emulator;
    a progress line after every question (not every few seconds)."""
    monkeypatch.setattr(pytest_rlhf_eval.Progress, "EVERY", 0.0)
    project.makefile(".yaml", a_demo=suite_yaml("a_demo", limit=2, samples=2),
                     z_demo=suite_yaml("z_demo", offset=5, limit=2, samples=2))
    project.makepyfile(test_m=PLAIN_TEST)
    return project


def progress_lines(result):
    lines = result.stdout.lines
    assert all(PROGRESS.fullmatch(line) for line in lines if "rlhf-eval recording" in line), lines
    return [(i, tuple(map(int, PROGRESS.fullmatch(line).groups()))) for i, line in enumerate(lines)
            if PROGRESS.fullmatch(line)]


@pytest.mark.parametrize("verbosity", ["-q", "", "-v"])
def test_progress_counts_questions_only_and_writes_between_lines(progress_project, verbosity):
    result = run(progress_project, "--rlhf-record-mode=once", "--rlhf-concurrency=1", *filter(None, [verbosity]))
    result.assert_outcomes(passed=5)
    found = progress_lines(result)  # each a whole line of its own: nothing before it, nothing after
    assert [counts for _, counts in found] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    lines = result.stdout.lines
    last = found[-1][0]
    if verbosity == "-v":  # every result line whole, each question's before its progress line
        for i, _ in found:
            before = [line for line in lines[:i] if line.strip()]
            assert re.match(r"\S+\.yaml::q-\d+ PASSED", before[-1]), before[-1]
        assert sum(bool(re.match(r"\S+::\S+ PASSED +\[ *\d+%\]$", line)) for line in lines) == 5
    else:  # every test's dot shown, pytest's closing [100%] before the last progress line
        dots = [re.sub(r" +\[ *\d+%\]$", "", line.strip()) for line in lines[:last]]
        dots = [line.split()[-1] for line in dots if re.fullmatch(r"(\S+ )?\.+", line)]
        assert "".join(dots) == ".....", lines
        assert [line for line in lines[:last] if line.strip()][-1].endswith("[100%]")


def test_the_recording_script_uses_the_repositorys_venv_and_records_suites_once(tmp_path):
    """scripts/record-with-emulator.sh with no arguments: `pytest suites/ --rlhf-record-mode=once`
    through the emulator, with the repository's .venv even when no python on PATH has rlhf-eval."""
    write(tmp_path, "pytest.ini", "[pytest]\n")
    write(tmp_path, "suites/mine.yaml", SUITE.format(name="mine"))
    write(tmp_path, "ci.yaml", CI_CONFIG)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "PYTHON",
                                                           "VIRTUAL_ENV")}
    env["PATH"] = "/usr/bin:/bin"
    env["RLHF_EVAL_EMULATOR_PORT"] = str(port)
    proc = subprocess.run([str(REPO / "scripts" / "record-with-emulator.sh")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "record mode once" in proc.stdout and "2 passed" in proc.stdout
    assert sorted(p.name for p in (tmp_path / "cassettes" / "mine").iterdir()) == ["q1.yaml", "q2.yaml"]
