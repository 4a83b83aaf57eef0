"""The report viewer, for real: ``python -m rlhf_eval ui REPORT --compare BASELINE`` in a subprocess,
driven over HTTP with gradio_client (and photographed with headless Chromium when it is installed)."""
import copy
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

if importlib.util.find_spec("gradio") is None:  # the viewer runs in a subprocess; importing gradio here
    pytest.skip("gradio is not installed (pip install 'rlhf-eval[ui]')", allow_module_level=True)  # took ~5 s
gradio_client = pytest.importorskip("gradio_client")

from conftest import REPO  # noqa: E402

STARTUP_TIMEOUT = 60
ZERO = 1e-12


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
    env["RLHF_EVAL_GEMINI_BASE_URL"] = "http://127.0.0.1:9"  # nothing listens: any network use would fail
    env["GRADIO_ANALYTICS_ENABLED"] = "False"
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _questions(report):
    return [(s["name"], q) for s in report["suites"] for q in s["questions"]]


@pytest.fixture(scope="module")
def reports(tmp_path_factory, shipped_report):
    """The shipped suites' real report (replayed in a copy of them, conftest's shipped_report), and
    a baseline: a copy with one question's accuracy and one trace verdict changed, and one question
    removed."""
    d = tmp_path_factory.mktemp("ui")
    path = d / "report.json"
    report = copy.deepcopy(shipped_report[0])
    path.write_text(json.dumps(report))

    baseline = copy.deepcopy(report)
    suite = baseline["suites"][0]
    changed = next(q for q in suite["questions"] if q["metrics"] and 0 < q["metrics"]["accuracy"] < 1)
    changed["metrics"]["accuracy"] = changed["metrics"]["accuracy"] + 0.25
    flipped = changed["traces"][0]
    flipped["verdict"] = "incorrect" if flipped["verdict"] == "correct" else "correct"
    removed = suite["questions"].pop()
    base_path = d / "baseline.json"
    base_path.write_text(json.dumps(baseline))
    return {"report": report, "path": str(path), "baseline": baseline, "baseline_path": str(base_path),
            "changed": (suite["name"], changed["id"]), "removed": (suite["name"], removed["id"]), "dir": d}


@pytest.fixture(scope="module")
def server(reports):
    """`python -m rlhf_eval ui` on a free port; its URL once it answers. Killed at teardown."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    log = reports["dir"] / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "rlhf_eval", "ui", reports["path"],
                                 "--compare", reports["baseline_path"], "--port", str(port)],
                                cwd=REPO, env=_env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the ui exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200 and url in log.read_text():  # it answers, and printed its URL
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the ui did not answer on {url} within {STARTUP_TIMEOUT} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def client(server):
    return gradio_client.Client(server, verbose=False)


def test_questions_endpoint_filters_like_the_json(client, reports):
    report = reports["report"]
    zero = [(s, q["id"]) for s, q in _questions(report) if q["metrics"] and abs(q["metrics"]["spread"]) < ZERO]
    assert zero  # the shipped suites have questions with no GRPO signal

    table = client.predict("zero-spread", "(all)", api_name="/questions")
    assert table["headers"][:2] == ["suite", "question"] and "Δ accuracy" in table["headers"]
    assert [(r[0], r[1]) for r in table["data"]] == zero
    spread = table["headers"].index("spread")
    assert {r[spread] for r in table["data"]} == {"0.000"}

    table = client.predict("zero-spread", "science_choice", api_name="/questions")
    assert [(r[0], r[1]) for r in table["data"]] == [z for z in zero if z[0] == "science_choice"]

    everything = client.predict("all", "(all)", api_name="/questions")
    assert [(r[0], r[1]) for r in everything["data"]] == [(s, q["id"]) for s, q in _questions(report)]
    failing = client.predict("failing", "(all)", api_name="/questions")
    assert [(r[0], r[1]) for r in failing["data"]] == [(s, q["id"]) for s, q in _questions(report) if not q["passed"]]
    unavailable = client.predict("dpo-unavailable", "(all)", api_name="/questions")
    assert [(r[0], r[1]) for r in unavailable["data"]] == [(s, q["id"]) for s, q in _questions(report)
                                                           if q["dpo_unavailable"]]

    # the deltas against the baseline: the changed question, and the one the baseline lacks
    rows = {(r[0], r[1]): dict(zip(everything["headers"], r)) for r in everything["data"]}
    assert rows[reports["changed"]]["Δ accuracy"] == "-0.250"
    assert rows[reports["removed"]]["Δ accuracy"] == "new"
    assert all(r["Δ accuracy"] == "0" for k, r in rows.items() if k not in (reports["changed"], reports["removed"]))


def test_question_endpoint_returns_traces_pairs_and_deltas(client, reports):
    suite, qid = reports["changed"]
    q = next(q for s, q in _questions(reports["report"]) if (s, q["id"]) == (suite, qid))
    b = next(q for s, q in _questions(reports["baseline"]) if (s, q["id"]) == (suite, qid))

    detail, traces, pairs, metrics, cards = client.predict(suite, qid, api_name="/question")
    assert (detail["suite"], detail["id"], detail["result"]) == (suite, qid, "pass" if q["passed"] else "FAIL")
    assert len(detail["traces"]) == len(q["traces"]) == len(traces["data"])
    assert [t["verdict"] for t in detail["traces"]] == [t["verdict"] for t in q["traces"]]
    assert [t["extracted"] for t in detail["traces"]] == [t["extracted"] for t in q["traces"]]
    assert [t["text"] for t in detail["traces"]] == [t["text"] for t in q["traces"]]
    assert [r[traces["headers"].index("verdict")] for r in traces["data"]] == [t["verdict"] for t in q["traces"]]
    extracted = traces["headers"].index("extracted")
    assert [r[extracted] for r in traces["data"]] == [t["extracted"] or "" for t in q["traces"]]
    assert detail["pairs"] == q["pairs"] and len(pairs["data"]) == len(q["pairs"])
    for t in detail["traces"]:  # the highlighted span is the extracted answer
        if t["answer_span"]:
            assert t["text"][t["answer_span"][0]:t["answer_span"][1]] == t["extracted"]
    assert "<mark" in cards

    base = detail["baseline"]
    assert base["found"]
    acc = base["deltas"]["accuracy"]
    assert (acc["baseline"], acc["current"]) == (b["metrics"]["accuracy"], q["metrics"]["accuracy"])
    assert acc["delta"] == pytest.approx(-0.25)
    assert base["deltas"]["spread"]["delta"] == 0
    assert [(f["index"], f["baseline"], f["current"]) for f in base["verdict_changes"]] == \
        [(0, b["traces"][0]["verdict"], q["traces"][0]["verdict"])]
    row = dict(zip(metrics["headers"], next(r for r in metrics["data"] if r[0] == "accuracy")))
    assert (row["value"], row["baseline"], row["Δ"]) == (f"{q['metrics']['accuracy']:.3f}",
                                                        f"{b['metrics']['accuracy']:.3f}", "-0.250")
    if q.get("intervals", {}).get("accuracy"):  # the report's confidence intervals, where it has them
        lo, hi = q["intervals"]["accuracy"]
        assert row["interval"] == f"[{lo:.3f}, {hi:.3f}]"

    detail, *_ = client.predict(*reports["removed"], api_name="/question")
    assert detail["baseline"] == {"found": False, "deltas": {}, "verdict_changes": []}

    with pytest.raises(gradio_client.exceptions.AppError, match="no question 'nope'"):
        client.predict(suite, "nope", api_name="/question")


def test_screenshot_shows_the_table(server, reports):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed")
    png = reports["dir"] / "ui.png"
    profile = reports["dir"] / "chromium-profile"
    proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={profile}", "--window-size=1400,1200", "--virtual-time-budget=8000",
                           f"--screenshot={png}", server], capture_output=True, text=True, timeout=60)
    assert png.exists(), proc.stderr[-3000:]
    from PIL import Image

    with Image.open(png) as im:
        assert im.size == (1400, 1200)
        gray = im.convert("L")
        dark = sum(gray.histogram()[:128])  # text and borders
        assert dark > 0.005 * 1400 * 1200, "the page looks blank"
        assert len(im.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50


@pytest.mark.parametrize("content", [None, "{not json", '["a list"]', '{"suites": [{"name": "s"}]}',
                                     '{"version": 7, "suites": []}',
                                     '{"version": 1, "suites": [{"name": "s", "questions": '
                                     '[{"id": "q", "passed": "no"}]}]}'],
                         ids=["missing", "invalid-json", "not-a-report", "bad-suite", "newer-version", "wrong-type"])
def test_cli_refuses_a_bad_report_in_one_line(tmp_path, content):
    path = tmp_path / "report.json"
    if content is not None:
        path.write_text(content)
    proc = subprocess.run([sys.executable, "-m", "rlhf_eval", "ui", str(path)], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"rlhf-eval: {path}"), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_cli_without_gradio_says_what_to_install(reports, monkeypatch, capsys):
    from rlhf_eval.cli import main

    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")  # restored after run_ui sets it
    assert main(["ui", reports["path"]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["rlhf-eval: the ui needs gradio: pip install 'rlhf-eval[ui]'"]


def test_plain_functions_handle_an_errored_question_and_find_the_answer():
    from rlhf_eval import ui

    report = {"version": 1, "suites": [{"name": "s", "questions": [
        {"suite": "s", "id": "boom", "index": 0, "passed": False, "error": "sampling failed: 500",
         "metrics": None, "dpo_unavailable": None, "failures": [], "traces": [], "pairs": []}]}]}
    assert ui.questions_table(report, "failing")["data"] == [["s", "boom", *["-"] * 7, "", "ERROR"]]
    assert ui.questions_table(report, "zero-spread")["data"] == []
    assert ui.questions_table(report, "all", "s", baseline=report)["data"][0][-7:] == ["-"] * 6 + [""]
    detail = ui.question_detail(report, "s", "boom", baseline={"suites": []})
    assert detail["result"] == "ERROR" and detail["baseline"]["found"] is False
    assert "sampling failed: 500" in ui.traces_html(detail)
    with pytest.raises(ValueError, match="unknown filter"):
        ui.questions_table(report, "bogus")
    text = "A is wrong.\nThe answer is (A)."
    assert ui.answer_span(text, "A") == [len(text) - 3, len(text) - 2]  # the last one
    assert ui.answer_span("3 + 15 = 18 so 18 eggs", "18") == [15, 17]
    assert ui.answer_span("no answer here", "7") is None
    assert "&lt;script&gt;" in ui.traces_html(ui.question_detail(
        {"suites": [{"name": "s", "questions": [{"id": "x", "passed": True, "metrics": {}, "traces": [
            {"text": "<script>alert(1)</script> 4", "verdict": "correct", "extracted": "4"}], "pairs": []}]}]},
        "s", "x"))
