"""The numbers a team asks for (issue 13): token usage and cost, length bias, provenance.

Usage is read from the real response bodies of ../shared/data/wire/ (values worked out by hand from
each body below) and from the emulator's bodies as recorded in a cassette; every total, the cost
and the length-bias figures are recomputed here from the per-trace data of the JSON report alone.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess

import numpy as np
import pytest
import yaml

from conftest import REPO, SHARED, TEST_KEY, shipped_copy

from rlhf_eval import SuiteError, run_suites
from rlhf_eval.backends.gemini import traces_from_response
from rlhf_eval.backends.openai_compat import traces_from_openai
from rlhf_eval.evaluate import Backends, sample_question
from rlhf_eval.prices import DEFAULTS, suite_price
from rlhf_eval.provenance import provenance, redact_argv
from rlhf_eval.report_model import Report
from rlhf_eval.suite import load_suite

WIRE = SHARED / "data" / "wire"
wire_only = pytest.mark.skipif(not WIRE.is_dir(), reason=f"the real-wire corpus is not at {WIRE}")

# (body, prompt tokens, output tokens) as each real body reports them: Gemini's output is
# candidatesTokenCount + thoughtsTokenCount (an absent count is 0), OpenAI's completion_tokens.
GEMINI_USAGE = [
    ("G01_vertex_25flash_logprobs5.json", 7, 7 + 73),
    ("G02_vertex_25flash_logprobs_notop.json", 7, 7 + 17),
    ("G03_dev_3pro_thought_parts.json", 29, 736 + 1001),
    ("G04_dev_25pro_max_tokens_no_parts.json", 15, 0 + 2),  # no candidatesTokenCount: none generated
    ("G05_dev_25flash_max_tokens_text.json", 15, 5),  # thinking_budget 0: no thoughtsTokenCount
    ("G06_dev_15flash_safety.json", 14, 0),
    ("G07_vertex_25flash_prompt_blocked_model_armor.json", None, None),  # usageMetadata: only trafficType
    ("G09_vertex_20flash_avglogprobs_only.json", 13, 8),
    ("G11_dev_15flash_avglogprobs_only.json", 13, 8),
    ("G12_dev_25flash_thoughts_counted.json", 10, 119 + 699),
]
OPENAI_USAGE = [
    ("O03_llamacpp_b4501_completions_logprobs_null.json", 2, 1),
    ("O04_vllm_crusoe_glm_reasoning_chat.json", 20, 118),  # completion_tokens includes 108 reasoning
    ("O05_deepseek_reasoner_chat.json", 12, 789),
    ("S01_SYNTHETIC_llamacpp_completions_logprobs_content.json", 5, 2),
    ("O02_vllm016_completions_echo_logprobs.json", None, None),  # the excerpt holds no usage
]


# ---------------------------------------------------------------------------------------------- parsing usage

@wire_only
@pytest.mark.parametrize("body, prompt, output", GEMINI_USAGE)
def test_gemini_usage_of_each_real_body(body, prompt, output):
    raw = (WIRE / body).read_bytes()
    traces = traces_from_response(raw, seed=1, expected=1)
    assert [(t.prompt_tokens, t.output_tokens) for t in traces] == [(prompt, output)]
    usage = json.loads(raw).get("usageMetadata", {})
    if "totalTokenCount" in usage:  # what the API adds up itself
        assert prompt + output == usage["totalTokenCount"]


@wire_only
@pytest.mark.parametrize("body, prompt, output", OPENAI_USAGE)
def test_openai_usage_of_each_real_body(body, prompt, output):
    raw = (WIRE / body).read_bytes()
    traces = traces_from_openai(raw, seed=1, expected=1)
    assert [(t.prompt_tokens, t.output_tokens) for t in traces] == [(prompt, output)]
    if prompt is not None:
        assert prompt + output == json.loads(raw)["usage"]["total_tokens"]


@wire_only
def test_usage_arrives_through_the_real_sdk(fixed_body, monkeypatch, tmp_path):
    """G12 served to google-genai inside the sampler: the trace carries the request's usage, and
    the answer and thinking counts it already had add up to its output."""
    monkeypatch.setenv("GEMINI_API_KEY", "wire-test-key")
    fixed_body.serve((WIRE / "G12_dev_25flash_thoughts_counted.json").read_bytes())
    path = tmp_path / "wire.yaml"
    path.write_text(f"suite: wire\nmodel:\n  name: gemini-2.5-flash\n  base_url: {fixed_body.url}\nsamples: 1\n"
                    "seed: 7\nquestions:\n  - id: q\n    question: What is 2+2?\n    answer: 4\n")
    suite = load_suite(path)
    [trace] = sample_question(suite, suite.questions[0], Backends.for_suite(suite))
    assert (trace.prompt_tokens, trace.output_tokens) == (10, 818)
    assert trace.token_count + trace.reasoning_tokens == trace.output_tokens


@pytest.mark.parametrize("provider", ["gemini", "openai"])
def test_several_candidates_per_request_count_each_request_once(provider, live, tmp_path, monkeypatch):
    """k = 6 as 2 requests of 3 candidates: each request's prompt and output are on its first trace
    and 0 on the other two, so the sums are exactly what the 2 recorded response bodies report."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    model = ({"provider": "gemini", "name": "gemini-2.0-flash"} if provider == "gemini" else
             {"provider": "openai", "name": "policy-7b", "base_url": f"{live.base_url}/v1", "max_output_tokens": 300})
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "multi.yaml").write_text(yaml.safe_dump({
        "suite": "multi", "model": {**model, "candidates_per_request": 3, "price": {"input": 0.5, "output": 2.0}},
        "samples": 6, "seed": 3, "questions": [{"id": "q", "question": "What is 6 times 7?", "answer": 42}]}))
    report = run_suites(["suites"], record_mode="once").to_dict()
    [q] = report["suites"][0]["questions"]
    traces = q["traces"]
    assert [t["candidate_index"] for t in traces] == [0, 1, 2, 0, 1, 2]
    assert all(t["prompt_tokens"] == 0 == t["output_tokens"] for t in traces if t["candidate_index"])
    bodies = [json.loads(i["response"]["body"]["string"])
              for i in yaml.safe_load((tmp_path / "cassettes" / "multi" / "q.yaml").read_text())["interactions"]]
    assert len(bodies) == 2
    if provider == "gemini":
        usage = [b["usageMetadata"] for b in bodies]
        prompt = sum(u["promptTokenCount"] for u in usage)
        output = sum(u.get("candidatesTokenCount", 0) + u.get("thoughtsTokenCount", 0) for u in usage)
    else:
        prompt = sum(b["usage"]["prompt_tokens"] for b in bodies)
        output = sum(b["usage"]["completion_tokens"] for b in bodies)
    m = q["metrics"]
    assert (m["prompt_tokens"], m["output_tokens"], m["total_tokens"]) == (prompt, output, prompt + output)
    assert m["cost_usd"] == pytest.approx((prompt * 0.5 + output * 2.0) / 1e6)


# ---------------------------------------------------------------------------------------------- recomputing

def _pearson(x, y):
    return float(np.corrcoef(np.array(x, float), np.array(y, float))[0, 1])


def test_tokens_and_length_bias_recompute_from_the_json_alone(shipped_report):
    report, stdout = shipped_report
    for suite in report["suites"]:
        dpo, agg = suite["dpo"], suite["aggregates"]
        beta, with_ref = dpo["beta"], dpo["reference"] != "none"
        all_traces, per_token_all, margins, diffs = [], [], [], []
        for q in suite["questions"]:
            traces, m = q["traces"], q["metrics"]
            all_traces += traces
            assert m["prompt_tokens"] == sum(t["prompt_tokens"] for t in traces)
            assert m["output_tokens"] == sum(t["output_tokens"] for t in traces)
            assert m["total_tokens"] == m["prompt_tokens"] + m["output_tokens"]
            assert m["answer_tokens"] == sum(t["token_count"] for t in traces)
            thinking = [t["reasoning_tokens"] for t in traces if t["reasoning_tokens"] is not None]
            assert m["thinking_tokens"] == (sum(thinking) if thinking else None)
            # one request per trace in the shipped suites: each trace's own usage, its answer and
            # thinking within its output
            assert all(t["token_count"] + (t["reasoning_tokens"] or 0) <= t["output_tokens"] for t in traces)
            assert m["cost_usd"] is None and suite["price"] is None  # no shipped model has a default price
            per_token = []
            for p in q["pairs"]:
                if p["margin"] is None:
                    continue
                w, lo = traces[p["chosen"]], traces[p["rejected"]]
                reward = [(t["logp"] - (t["ref_logp"] if with_ref else 0.0)) / t["token_count"] for t in (w, lo)]
                per_token.append(beta * (reward[0] - reward[1]))
                margins.append(p["margin"])
                diffs.append(w["token_count"] - lo["token_count"])
            if q["dpo_unavailable"] or not per_token:
                assert m["margin_per_token"] is None
            else:
                assert m["margin_per_token"] == pytest.approx(sum(per_token) / len(per_token))
            per_token_all += per_token
        assert agg["prompt_tokens"] == sum(t["prompt_tokens"] for t in all_traces)
        assert agg["output_tokens"] == sum(t["output_tokens"] for t in all_traces)
        assert agg["total_tokens"] == agg["prompt_tokens"] + agg["output_tokens"]
        assert agg["cost_usd"] is None
        assert agg["cost_unavailable"] == (f"no price for {suite['model']['name']}: set model.price: "
                                           "{input: USD, output: USD} (per 1M tokens) in the suite")
        block = stdout[stdout.index(f"{suite['name']} · "):].split("\n\n")[0]  # the suite's table and notes
        assert f"tokens: {agg['prompt_tokens']:,} prompt + {agg['output_tokens']:,} output" in block
        if agg["dpo_unavailable"]:
            assert agg["margin_per_token"] is None and agg["margin_length_corr"] is None
        else:
            assert agg["margin_per_token"] == pytest.approx(sum(per_token_all) / len(per_token_all))
            assert agg["margin_length_corr"] == pytest.approx(_pearson(margins, diffs))
    smoke = next(s for s in report["suites"] if s["name"] == "gsm8k_smoke")
    # the reason these figures exist: the shipped reference-free margins are almost all length
    assert smoke["aggregates"]["margin_length_corr"] < -0.9


def test_a_suite_price_gives_the_cost_of_every_question_and_of_the_suite(tmp_path, monkeypatch, offline):
    root = shipped_copy(tmp_path)
    monkeypatch.chdir(root)
    path = root / "suites" / "gsm8k_smoke.yaml"
    path.write_text(path.read_text().replace("  name: gemini-2.0-flash\n",
                                             "  name: gemini-2.0-flash\n  price: {input: 0.1, output: 0.4}\n"))
    report = run_suites(["suites/gsm8k_smoke.yaml"]).to_dict()
    [suite] = report["suites"]
    assert suite["model"]["price"] == {"input": 0.1, "output": 0.4}
    assert suite["price"] == {"input": 0.1, "output": 0.4, "source": "the suite's model.price"}
    for q in suite["questions"]:
        prompt = sum(t["prompt_tokens"] for t in q["traces"])
        output = sum(t["output_tokens"] for t in q["traces"])
        assert q["metrics"]["cost_usd"] == pytest.approx((prompt * 0.1 + output * 0.4) / 1e6)
    agg = suite["aggregates"]
    assert agg["cost_usd"] == pytest.approx((agg["prompt_tokens"] * 0.1 + agg["output_tokens"] * 0.4) / 1e6)
    assert agg["cost_usd"] == pytest.approx(sum(q["metrics"]["cost_usd"] for q in suite["questions"]))
    assert "cost_unavailable" not in agg or agg["cost_unavailable"] is None
    from rlhf_eval.html_report import render_html
    from rlhf_eval.report import usage_line

    assert f"cost <b>${agg['cost_usd']:.4f}</b>" in render_html(report)
    assert usage_line(Report.of(report).suites[0]) == (
        f"tokens: {agg['prompt_tokens']:,} prompt + {agg['output_tokens']:,} output = "
        f"{agg['total_tokens']:,}; cost ${agg['cost_usd']:.4f}")


def test_prices_default_only_where_cited_and_the_suite_overrides_them(tmp_path):
    for name, price in DEFAULTS.items():
        assert price.source.startswith("rlhf-eval default: ") and "20" in price.source, name  # a source, a date
        assert suite_price({"provider": "gemini", "name": name})[0] == price
        assert suite_price({"provider": "gemini", "name": f"models/{name}"})[0] == price
        # not on Vertex AI or another provider, whose prices the sources do not give
        price, why = suite_price({"provider": "gemini", "name": name, "vertex": {"project": "p"}})
        assert price is None and why.startswith(f"no price for {name} on Vertex AI (rlhf-eval's default prices "
                                                "are the Gemini Developer API's): set model.price")
        price, why = suite_price({"provider": "openai", "name": name})
        assert price is None and why.startswith(f"no price for {name} through provider openai (")
    own = suite_price({"provider": "gemini", "name": "gemini-2.5-flash", "price": {"input": 1, "output": 2}})[0]
    assert (own.input, own.output, own.source) == (1.0, 2.0, "the suite's model.price")
    price, why = suite_price({"provider": "gemini", "name": "gemini-2.0-flash"})
    assert price is None and why.startswith("no price for gemini-2.0-flash: set model.price")


@pytest.mark.parametrize("price, line", [
    ("{input: -1, output: 2}", "model.price.input: Input should be greater than or equal to 0"),
    ("{input: 1}", "model.price.output: required key is missing"),
    ("{input: 1, output: 2, cached: 0.1}", "model.price.cached: "),
    # an infinite cost would stop the JSON report with a traceback
    ("{input: 1e308, output: 2}", "model.price.input: Input should be less than or equal to 1000000"),
])
def test_a_bad_price_is_one_line_at_load(tmp_path, price, line):
    path = tmp_path / "priced.yaml"
    path.write_text(f"suite: priced\nmodel:\n  name: m\n  price: {price}\nsamples: 1\n"
                    "questions:\n  - id: q\n    question: x\n    answer: 1\n")
    with pytest.raises(SuiteError) as raised:
        load_suite(path)
    assert f"priced.yaml:4: {line}" in str(raised.value) and "\n" not in str(raised.value)


# ---------------------------------------------------------------------------------------------- provenance

def _git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_provenance_names_the_commit_and_hashes_each_suite(tmp_path):
    repo = tmp_path / "repo"
    (repo / "suites").mkdir(parents=True)
    suite = repo / "suites" / "a.yaml"
    suite.write_text("suite: a\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "suites")
    head = _git(repo, "rev-parse", "HEAD")
    p = provenance({"a": suite}, ["pytest", "suites/"])
    assert p["git"] == {"commit": head, "dirty": False}
    assert p["suites"] == {"a": {"path": str(suite), "sha256": hashlib.sha256(b"suite: a\n").hexdigest()}}
    assert p["command_line"] == ["pytest", "suites/"]
    assert p["rlhf_eval_version"] and p["python"] and p["packages"]["vcrpy"] and p["time"].endswith("Z")
    suite.write_text("suite: a\nsamples: 2\n")
    assert provenance({"a": suite}, [])["git"] == {"commit": head, "dirty": True}
    _git(repo, "checkout", "-q", "--", ".")
    # a suite not added yet is in no commit: the commit alone does not give what ran
    (repo / "suites" / "new.yaml").write_text("suite: new\n")
    assert provenance({"a": suite, "new": repo / "suites" / "new.yaml"}, [])["git"] == {"commit": head, "dirty": True}
    assert provenance({"a": suite}, [])["git"] == {"commit": head, "dirty": False}  # another untracked file: clean

    elsewhere = tmp_path / "plain"
    elsewhere.mkdir()
    (elsewhere / "b.yaml").write_text("suite: b\n")
    assert provenance({"b": elsewhere / "b.yaml"}, [])["git"] is None
    assert provenance({"gone": tmp_path / "gone.yaml"}, [])["suites"]["gone"]["sha256"] is None
    fresh = tmp_path / "fresh"  # a repository with no commit yet has none to name
    fresh.mkdir()
    _git(fresh, "init", "-q")
    (fresh / "c.yaml").write_text("suite: c\n")
    assert provenance({"c": fresh / "c.yaml"}, [])["git"] is None


def test_no_secret_reaches_the_command_line(monkeypatch):
    monkeypatch.setenv("MY_SERVER_API_KEY", "s3cret-value-123")
    google_key = "AIza" + "x" * 35
    argv = ["/usr/lib/python3/site-packages/pytest/__main__.py", "suites/", "--api-key", "plain-token-value",
            f"GEMINI_API_KEY={google_key}", "--note=s3cret-value-123", "--rlhf-base-url=http://u:pw12345678@h/v1?key=k1234567",
            "--token=abcdefghijkl", "--gemini-key=gk-value-1", "--auth", "auth-value-2", "-k", "ducks"]
    shown = redact_argv(argv)
    text = " ".join(shown)
    for secret in ("plain-token-value", google_key, "s3cret-value-123", "pw12345678", "k1234567", "abcdefghijkl",
                   "gk-value-1", "auth-value-2"):
        assert secret not in text
    assert shown[:2] == ["python -m pytest", "suites/"] and shown[-2:] == ["-k", "ducks"]
    assert shown[2:4] == ["--api-key", "***"] and shown[4] == "GEMINI_API_KEY=***"


def test_a_run_writes_provenance_and_old_reports_without_it_still_load(tmp_path, monkeypatch, offline):
    root = shipped_copy(tmp_path)
    monkeypatch.chdir(root)
    run_suites(["suites/science_choice.yaml"], report_json="r.json")
    data = json.loads((root / "r.json").read_text())
    assert list(data)[:3] == ["version", "provenance", "suites"]
    digest = hashlib.sha256((root / "suites" / "science_choice.yaml").read_bytes()).hexdigest()
    assert data["provenance"]["suites"] == {"science_choice": {"path": "suites/science_choice.yaml",
                                                               "sha256": digest}}
    assert data["provenance"]["git"] is None  # the copy is in no repository
    old = {k: v for k, v in data.items() if k != "provenance"}
    for s in old["suites"]:  # as a report from before this change: no usage, no length bias, no price
        s.pop("price")
        for q in s["questions"]:
            for t in q["traces"]:
                t.pop("prompt_tokens"), t.pop("output_tokens")
    (root / "old.json").write_text(json.dumps(old))
    loaded = Report.load(root / "old.json")
    assert loaded.provenance is None and loaded.suites[0].questions[0].traces[0].prompt_tokens is None
    assert json.loads(loaded.to_json()) == old


def test_the_html_report_shows_tokens_cost_and_length_bias(shipped_report):
    from rlhf_eval.html_report import render_html

    report, _ = shipped_report
    page = render_html(report)
    smoke = next(s for s in report["suites"] if s["name"] == "gsm8k_smoke")["aggregates"]
    assert f"tokens {smoke['prompt_tokens']:,} prompt + {smoke['output_tokens']:,} output" in page
    assert "cost unknown: no price for gemini-2.0-flash" in page
    assert f"margin~length difference r {smoke['margin_length_corr']:+.3f}".replace("-", "\u2212") in page
    assert not math.isnan(smoke["margin_per_token"])


def test_shipped_repo_suites_hash_as_their_files():
    """The provenance of the repository's own suites names the commit of this repository."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    p = provenance({"gsm8k_smoke": REPO / "suites" / "gsm8k_smoke.yaml"}, [])
    assert p["git"]["commit"] == _git(REPO, "rev-parse", "HEAD")


def test_a_comparison_notes_changed_packages_and_ignores_the_rest_of_provenance(shipped_report):
    from rlhf_eval.compare import compare_reports

    report, _ = shipped_report
    base = json.loads(json.dumps(report))
    assert compare_reports(report, base, "same").note == ""  # same packages; time and argv never compared
    base["provenance"]["packages"]["google-genai"] = "0.0.1"
    del base["provenance"]["packages"]["vcrpy"]
    base["provenance"]["time"] = "2000-01-01T00:00:00Z"
    now = report["provenance"]["packages"]
    assert compare_reports(report, base, "old").note == (
        f"package changed: google-genai 0.0.1 → {now['google-genai']}; "
        f"package changed: vcrpy not installed → {now['vcrpy']}")
    del base["provenance"]
    assert compare_reports(report, base, "older").note == ""  # a baseline from before provenance


def test_a_threshold_on_cost_without_a_price_fails_saying_why(tmp_path, monkeypatch, offline):
    """A cost gate cannot pass on a model with no price: it fails, naming what is missing, rather
    than being skipped as a question without pairs would be."""
    root = shipped_copy(tmp_path)
    monkeypatch.chdir(root)
    path = root / "suites" / "science_choice.yaml"
    path.write_text(path.read_text() + "suite_thresholds:\n  cost_usd: {max: 1.0}\n  total_tokens: {max: 1000000}\n"
                    if "suite_thresholds:" not in path.read_text() else
                    path.read_text().replace("suite_thresholds:\n", "suite_thresholds:\n  cost_usd: {max: 1.0}\n"
                                             "  total_tokens: {max: 1000000}\n"))
    [suite] = run_suites(["suites/science_choice.yaml"]).suites
    assert suite.threshold_failures == [
        "cost_usd could not be measured: no price for gemini-3-flash: set model.price: {input: USD, output: USD} "
        "(per 1M tokens) in the suite"]


def test_a_length_correlation_gate_fails_on_length_bias_and_says_why_when_unmeasurable(tmp_path, monkeypatch, offline):
    root = shipped_copy(tmp_path)
    monkeypatch.chdir(root)
    path = root / "suites" / "gsm8k_smoke.yaml"
    gated = path.read_text().replace("suite_thresholds:\n", "suite_thresholds:\n  margin_length_corr: {min: -0.5}\n")

    def failures(window: str) -> tuple:
        path.write_text(gated.replace("  offset: 0\n  limit: 30\n", window))
        [suite] = run_suites(["suites/gsm8k_smoke.yaml"]).suites
        return suite.aggregates, [f for f in suite.threshold_failures if f.startswith("margin_length_corr")]

    a, failed = failures("  offset: 0\n  limit: 1\n")  # gsm8k-0000 alone: 12 pairs, their margins all length
    assert a.pairs == 12 and a.margin_length_corr < -0.5
    assert failed == [f"margin_length_corr = {a.margin_length_corr:.4g} < min -0.5"]
    a, failed = failures("  offset: 2\n  limit: 1\n")  # gsm8k-0002: every trace wrong, no pair
    assert a.pairs == 0 and a.margin_length_corr is None
    assert failed == ["margin_length_corr could not be measured: it needs 3 scored pairs with token counts whose "
                      "margins and length differences are not all equal"]
