import os
from pathlib import Path

import json
import shutil
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The tests start many pytest processes (subprocess runs, xdist workers). With bytecode writing off
# (PYTHONDONTWRITEBYTECODE, set on some machines) each of them recompiles every module, and pytest
# re-rewrites the asserts of every plugin's modules: ~2 s a process. Let them cache bytecode.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False
# Nor do they need hypothesis's pytest plugin (only tests/test_suite_fuzz.py uses hypothesis, and
# `@given` works without it), which costs 0.4 s of CPU in every pytest process that loads it:
# their environment has PYTEST_ADDOPTS=NO_HYPOTHESIS (see `pytester` and `shipped_report`).
NO_HYPOTHESIS = "-p no:hypothesispytest"

# Tests stop the pytest and emulator processes they start with Ctrl-C. A run a shell started in the
# background (`pytest &` in a script) ignores SIGINT, and processes inherit an ignored signal: give
# this one Python's handler, which they do not inherit (they start with the default).
if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

import google.genai  # noqa: E402,F401  (see below)
import numpy.fft  # noqa: F401
import pytest
from filelock import FileLock

from rlhf_eval.emulator import Emulator
from rlhf_eval.report_model import Report

pytest_plugins = ["pytester"]
# pytester's in-process runs drop the modules first imported inside them. A C extension such as
# numpy.fft (pulled in lazily by torch, pandas, datasets) cannot be loaded twice, and an SDK loaded
# half before and half after a run raises exception classes its own `except` clauses do not know:
# load both here, once.

REPO = Path(__file__).resolve().parents[1]
GSM8K_TEST = REPO / "suites" / "data" / "gsm8k" / "test.jsonl"
SHARED = Path(os.environ.get("RLHF_EVAL_SHARED_DIR", REPO.parent / "shared"))
# logprobs travel as float32 (a proto FLOAT) written as their shortest decimal: within one
# float32 ulp (1.2e-7 of the value) of the exact number; a sum of a few hundred such terms
# stays within 1e-6 of the exact sum.
F32 = 2.5e-7
F32_SUM = 1e-6
TEST_KEY = "AIzaTEST-key-that-must-never-be-recorded-0123"


# Under `pytest -n auto` a test file is one unit of work (`--dist loadfile`). These files take the
# longest (seconds of wall on 2 cores, from `--durations=0`: ui 20, plugin 19, load 16, ...); they go
# out first and the many short files fill the gaps, so no worker is left alone with a slow file at
# the end. (xdist's own order, most tests first, sends them last: `--no-loadscope-reorder` in
# pyproject.toml keeps this one.)
SLOWEST_FIRST = ["test_ui.py", "test_export_trl.py", "test_trl_rewards.py", "test_callback.py", "test_online_dpo.py",
                 "test_callback_faults.py", "test_plugin.py", "test_load.py",
                 "test_interrupt.py",
                 "test_compare_export.py", "test_collection.py", "test_registry.py", "test_hf_scorer.py",
                 "test_bad_input.py",
                 "test_emulator_load.py", "test_html_report.py", "test_verifier_math_worker.py",
                 "test_write_faults.py", "test_cassette_faults.py"]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file keeps its order


@pytest.fixture
def hf_offline(monkeypatch):
    """Hugging Face libraries as the torch/TRL tests need them: nothing fetched from the Hub (the
    tiny models are built in the test), no progress bars in the output."""
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def emulator():
    """A real local Gemini emulator (HTTP on 127.0.0.1, free port) for the whole test session."""
    with Emulator(port=0) as emu:
        yield emu


@pytest.fixture
def live(emulator, monkeypatch):
    """Environment for recording: the emulator's URL and a key (which must never reach a cassette)."""
    monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", emulator.base_url)
    monkeypatch.setenv("GEMINI_API_KEY", TEST_KEY)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    return emulator


@pytest.fixture
def offline(monkeypatch):
    """Environment for replay: no key, and a base URL where nothing listens."""
    monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)


@pytest.fixture
def pytester(pytester, monkeypatch):
    """pytest's pytester, whose runs (and the xdist workers and processes they start) also go
    without hypothesis's plugin: pytester clears PYTEST_ADDOPTS, this sets it again."""
    monkeypatch.setenv("PYTEST_ADDOPTS", NO_HYPOTHESIS)
    return pytester


@pytest.fixture
def project(pytester):
    """An in-process pytest project. Its ini pins the rootdir (cassettes go to <tmp>/cassettes),
    makes each YAML file at its top level a suite (`project.makefile(".yaml", demo=...)` collects
    as demo.yaml::q-0000) and searches no folder below it: cassettes recorded elsewhere
    (`--rlhf-cassette-dir=serial`) and data files sit there. A folder named on the command line is
    still collected."""
    pytester.makeini("[pytest]\nrlhf_suite_files = *.yaml *.yml\nnorecursedirs = *\n")
    return pytester


SHIPPED = ("gsm8k_smoke", "science_choice", "gsm8k_reference")


def shipped_copy(root: Path) -> Path:
    """A copy of the repository's shipped suites (with suites/data/), their cassettes and its
    pytest settings in `root`: a test runs `pytest suites/` there, never in the repository, so a
    suite someone adds to suites/ cannot change what the tests see."""
    (root / "suites").mkdir(parents=True, exist_ok=True)
    for name in SHIPPED:
        shutil.copy(REPO / "suites" / f"{name}.yaml", root / "suites" / f"{name}.yaml")
        shutil.copytree(REPO / "cassettes" / name, root / "cassettes" / name)
    shutil.copytree(REPO / "suites" / "data", root / "suites" / "data")
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


@pytest.fixture(scope="session")
def shipped_report(tmp_path_factory, worker_id):
    """The shipped suites replayed from the shipped cassettes in a subprocess, with no key and no
    network (a base URL where nothing listens): (report JSON, stdout). Under xdist the first worker
    to ask replays them and the others read its result (a session fixture is per worker)."""
    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent  # base.parent: this run's, common to its workers
    with FileLock(shared / "shipped.lock"):
        root = shared / "shipped"
        out, stdout = root / "report.json", root / "stdout.txt"
        if not stdout.exists():
            shipped_copy(root)
            env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
            env["RLHF_EVAL_GEMINI_BASE_URL"] = "http://127.0.0.1:9"
            env["OPENAI_BASE_URL"] = "http://127.0.0.1:9/v1"
            env["PYTEST_ADDOPTS"] = NO_HYPOTHESIS
            proc = subprocess.run([sys.executable, "-m", "pytest", "suites/", "-p", "no:cacheprovider", "-q",
                                   f"--rlhf-report-json={out}"], cwd=root, env=env, capture_output=True, text=True)
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
            stdout.write_text(proc.stdout)
    return json.loads(out.read_text()), stdout.read_text()


class FixedBody:
    """A local server that answers every POST with one fixed JSON body (a real body from the wire
    corpus, or one a test builds), and remembers each request's path."""

    def __init__(self):
        self.body = b"{}"
        self.paths: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length") or 0))
                owner.paths.append(self.path)
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(owner.body)))
                self.end_headers()
                self.wfile.write(owner.body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def serve(self, body: bytes | dict) -> dict:
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()
        return json.loads(self.body)


@pytest.fixture(scope="session")
def fixed_body():
    server = FixedBody()
    yield server
    server.server.shutdown()


@pytest.fixture(scope="module")
def shipped_questions(shipped_report):
    """The shipped report's questions and the suites' settings: ({suite: [Question]}, {suite: settings})."""
    report = Report.of(shipped_report[0])
    settings = {s.name: s.model_dump(mode="json", exclude_unset=True,
                                     exclude={"aggregates", "threshold_failures", "questions"})
                for s in report.suites}
    return {s.name: list(s.questions) for s in report.suites}, settings
