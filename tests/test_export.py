"""The export's filter (pass-rate band, nonzero spread), deduplication, summary and formats, on the
shipped suites' real report (conftest's `shipped_report`, replayed from the shipped cassettes)."""
import copy
import json
import sys

import pytest

from rlhf_eval.cli import main
from rlhf_eval.export import PassRateBand, build_export, export_report
from rlhf_eval.report_model import Report, ReportError
from rlhf_eval.runner import RunError, run_suites


@pytest.fixture(scope="module")
def shipped(shipped_report):
    return Report.from_data(shipped_report[0])


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _scored(report):
    return [(s, q) for s in report.suites for q in s.questions if q.metrics]


def test_dpo_and_sft_rows_are_deduplicated_and_counted(shipped, tmp_path):
    export = export_report(shipped, tmp_path)
    smoke = shipped.suite("gsm8k_smoke")
    dpo = _rows(tmp_path / "gsm8k_smoke" / "dpo.jsonl")
    pairs = [(q.id, q.traces[p.chosen].text, q.traces[p.rejected].text) for q in smoke.questions for p in q.pairs]
    unique = list(dict.fromkeys(pairs))
    assert (len(pairs), len(unique)) == (202, 48)  # the figures of issue 13
    assert [(r["question_id"], r["chosen"], r["rejected"]) for r in dpo] == unique
    sft = _rows(tmp_path / "gsm8k_smoke" / "sft.jsonl")
    correct = [(q.id, t.text) for q in smoke.questions for t in q.traces if t.verdict == "correct"]
    assert [(r["question_id"], r["completion"]) for r in sft] == list(dict.fromkeys(correct))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["suites"]["gsm8k_smoke"]["duplicates_removed"] == {"dpo": 202 - 48,
                                                                      "sft": len(correct) - len(sft)}
    assert summary["totals"]["rows"]["dpo"] == sum(len(_rows(tmp_path / s.name / "dpo.jsonl"))
                                                   for s in shipped.suites)
    assert export.line() == (
        f"rlhf-eval: exported 3 suites to {tmp_path}/: 60 of 60 questions kept; "
        f"{summary['totals']['rows']['dpo']} DPO pairs ({sum(q.metrics.pairs for _, q in _scored(shipped))} "
        f"before dedupe), {summary['totals']['rows']['sft']} SFT rows "
        f"({sum(q.metrics.correct for _, q in _scored(shipped))} before dedupe), 60 GRPO prompts (jsonl); "
        f"per suite: {tmp_path}/summary.json")


def test_every_row_carries_its_question_pass_rate_margin_logps_and_rewards(shipped, tmp_path):
    export_report(shipped, tmp_path)
    suite = shipped.suite("gsm8k_reference")  # a policy scorer and a reference: logps on both sides
    by_id = {q.id: q for q in suite.questions}
    for row in _rows(tmp_path / suite.name / "dpo.jsonl"):
        q = by_id[row["question_id"]]
        assert row["prompt"][0]["role"] == "system"  # the suite has a system instruction: conversational
        texts = (row["chosen"][0]["content"], row["rejected"][0]["content"])
        pair = next(p for p in q.pairs if (q.traces[p.chosen].text, q.traces[p.rejected].text) == texts)
        w, lo = q.traces[pair.chosen], q.traces[pair.rejected]
        assert row["pass_rate"] == q.metrics.accuracy
        assert row["dpo_margin"] == pair.margin and "margin" not in row  # RewardTrainer reads `margin`
        assert (row["chosen_logps"], row["rejected_logps"]) == (w.logp, lo.logp)
        assert (row["chosen_ref_logps"], row["rejected_ref_logps"]) == (w.ref_logp, lo.ref_logp)
        assert row["chosen_ref_logps"] is not None
        assert (row["chosen_reward"], row["chosen_rewards_by_function"]) == (w.reward, w.rewards_by_function)
        assert row["rejected_rewards_by_function"] == lo.rewards_by_function
    groups = _rows(tmp_path / suite.name / "grpo_groups.jsonl")
    q = by_id[groups[0]["question_id"]]
    assert groups[0]["rewards_by_function"] == {"accuracy": [t.rewards_by_function["accuracy"] for t in q.traces]}
    assert groups[0]["spread"] == q.metrics.spread and groups[0]["answer"] == q.answer
    prompts = _rows(tmp_path / suite.name / "grpo_prompts.jsonl")
    assert [(r["question_id"], r["pass_rate"], r["answer"]) for r in prompts] == [
        (q.id, q.metrics.accuracy, q.answer) for q in suite.questions]
    # the question's columns, which reward functions got in the eval, for GRPOTrainer to hand them on
    science = shipped.suite("science_choice")
    rows = {r["question_id"]: r for r in _rows(tmp_path / science.name / "grpo_prompts.jsonl")}
    scored = [q for q in science.questions if q.metrics]
    assert scored and all(q.columns and {k: rows[q.id][k] for k in q.columns} == q.columns for q in scored)
    assert all(set(q.columns) > {"question"} for q in scored)  # its prompt fields (the choices) too


@pytest.mark.parametrize("band, inside, outside", [
    ("0.25:0.75", [0.25, 0.5, 0.75], [0.0, 0.125, 0.875, 1.0]),
    ("(0:1)", [0.125, 0.875], [0.0, 1.0]),
    ("[0.25,1)", [0.25, 0.875], [0.125, 1.0]),
    ("(0.25:0.75]", [0.375, 0.75], [0.25, 0.875]),
    (":0.5", [0.0, 0.5], [0.625]),
    ("0.5:", [0.5, 1.0], [0.375]),
    ("1:1", [1.0], [0.875]),
])
def test_a_band_keeps_its_ends_unless_bracketed_open(band, inside, outside):
    parsed = PassRateBand.parse(band)
    assert all(r in parsed for r in inside) and not any(r in parsed for r in outside)


@pytest.mark.parametrize("band, problem", [
    ("0.8:0.2", "LOW 0.8 is above HIGH 0.2"), ("0:1.5", "high 1.5 is not a number from 0 to 1"),
    ("(0.5:0.5]", "(0.5, 0.5] holds no pass rate"), ("abc", "expected LOW:HIGH"), (":", "expected LOW:HIGH"),
    ("0.2-0.8", "expected LOW:HIGH"), ("[0.2:0.8", "a bracket at one end only"),
    ("0.2:0.8)", "a bracket at one end only"),
])
def test_a_bad_band_is_one_line_from_the_command_and_the_plugin(shipped_report, tmp_path, band, problem, capsys,
                                                                pytester):
    report = tmp_path / "r.json"
    report.write_text(json.dumps(shipped_report[0]))
    assert main(["export", str(report), str(tmp_path / "out"), f"--pass-rate={band}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rlhf-eval: --pass-rate: pass rate band {band!r}: ") and problem in err
    assert err.count("\n") == 1 and not (tmp_path / "out").exists()
    result = pytester.runpytest("--rlhf-export=out", f"--rlhf-export-pass-rate={band}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    line = next(x for x in result.stderr.lines if x.startswith("ERROR:"))
    assert line.startswith(f"ERROR: --rlhf-export-pass-rate: pass rate band {band!r}: ") and problem in line
    with pytest.raises(ValueError, match="pass rate band"):
        build_export(shipped_report[0], tmp_path, pass_rate=band)


def test_parquet_without_the_datasets_library_is_one_line_before_anything_runs(shipped_report, tmp_path, capsys,
                                                                              monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if not installed: its import fails
    report = tmp_path / "r.json"
    report.write_text(json.dumps(shipped_report[0]))
    assert main(["export", str(report), str(tmp_path / "out"), "--format=parquet"]) == 2
    assert capsys.readouterr().err == ("rlhf-eval: --format: the parquet export needs the datasets library: "
                                       "pip install 'rlhf-eval[datasets]'\n")
    with pytest.raises(RunError, match=r"^the parquet export needs the datasets library: pip install"):
        run_suites(["nowhere"], export="out", export_format="parquet")
    assert not (tmp_path / "out").exists()


def test_run_suites_checks_the_export_options_before_anything_runs():
    with pytest.raises(RunError, match=r"^pass rate band '0.9:0.1': LOW 0.9 is above HIGH 0.1; expected LOW:HIGH"):
        run_suites(["nowhere"], export="out", export_pass_rate="0.9:0.1")
    with pytest.raises(RunError, match=r"^pass rate band \(0.2, 1.5\): high 1.5 is not a number from 0 to 1$"):
        run_suites(["nowhere"], export="out", export_pass_rate=(0.2, 1.5))


def test_a_filter_option_without_an_export_is_a_usage_error(pytester):
    result = pytester.runpytest("--rlhf-export-nonzero-spread")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --rlhf-export-nonzero-spread needs --rlhf-export DIR"])


def test_the_filter_keeps_the_band_and_counts_why_each_question_was_left_out(shipped, tmp_path):
    export = export_report(shipped, tmp_path, pass_rate=(0.2, 0.8), nonzero_spread=True)
    scored = _scored(shipped)
    kept = [(s.name, q.id) for s, q in scored if 0.2 <= q.metrics.accuracy <= 0.8 and q.metrics.spread > 0]
    assert 0 < len(kept) < len(scored)
    got = [(s.name, r["question_id"]) for s in shipped.suites for r in _rows(tmp_path / s.name / "grpo_prompts.jsonl")]
    assert got == kept
    for s in shipped.suites:  # every dataset holds the kept questions only
        for name in ("dpo", "sft", "grpo_groups"):
            assert {r["question_id"] for r in _rows(tmp_path / s.name / f"{name}.jsonl")} <= {q for n, q in kept
                                                                                               if n == s.name}
    below = sum(q.metrics.accuracy < 0.2 for _, q in scored)
    above = sum(q.metrics.accuracy > 0.8 for _, q in scored)
    totals = json.loads((tmp_path / "summary.json").read_text())["totals"]
    assert totals["dropped"] == {"errored": 0, "below": below, "above": above, "zero_spread": 0}
    assert totals["kept"] == len(kept) == len(scored) - below - above
    assert f"{len(kept)} of 60 questions kept by pass rate in [0.2, 0.8] and nonzero spread ({below} below, " \
           f"{above} above left out)" in export.line()
    # DAPO's rule: nonzero spread alone drops exactly the all-wrong and all-correct questions here
    # (a 0/1 reward), as the open band (0, 1) does.
    spread = build_export(shipped, tmp_path, nonzero_spread=True).summary()["totals"]
    band = build_export(shipped, tmp_path, pass_rate="(0:1)").summary()["totals"]
    assert spread["kept"] == band["kept"] == sum(0 < q.metrics.accuracy < 1 for _, q in scored)
    assert spread["dropped"]["zero_spread"] == band["dropped"]["below"] + band["dropped"]["above"]


def test_the_command_exports_what_the_library_does_with_the_same_options(shipped_report, shipped, tmp_path, capsys):
    report = tmp_path / "r.json"
    report.write_text(json.dumps(shipped_report[0]))
    assert main(["export", str(report), str(tmp_path / "cli"), "--rlhf-export-pass-rate=(0:1)",
                 "--nonzero-spread"]) == 0
    out = capsys.readouterr().out
    lib = export_report(Report.load(report), tmp_path / "lib", pass_rate="(0:1)", nonzero_spread=True)
    assert out == lib.line().replace(str(tmp_path / "lib"), str(tmp_path / "cli")) + "\n"  # one line
    files = sorted(p.relative_to(tmp_path / "lib") for p in (tmp_path / "lib").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "cli") for p in (tmp_path / "cli").rglob("*") if p.is_file())
    for f in files:
        assert (tmp_path / "lib" / f).read_bytes() == (tmp_path / "cli" / f).read_bytes()


def test_parquet_holds_the_jsonl_rows_and_loads_with_datasets(shipped, tmp_path):
    datasets = pytest.importorskip("datasets")
    pq = pytest.importorskip("pyarrow.parquet")
    export_report(shipped, tmp_path / "j", pass_rate="0.25:1")
    export_report(shipped, tmp_path / "p", pass_rate="0.25:1", format="parquet")
    for s in shipped.suites:
        for name in ("dpo", "grpo_prompts", "grpo_groups", "sft"):
            loaded = datasets.load_dataset("parquet", data_files={"train": str(tmp_path / "p" / s.name /
                                                                                f"{name}.parquet")},
                                           cache_dir=str(tmp_path / "cache"))
            assert list(loaded) == ["train"]
            assert loaded["train"].to_list() == _rows(tmp_path / "j" / s.name / f"{name}.jsonl")
    # No row left: the file is still written (no stale rows of an earlier export stay behind), with its
    # columns; `datasets` refuses to load an empty split ("corresponds to no data"), pyarrow reads it.
    export_report(shipped, tmp_path / "p", pass_rate="1:1", nonzero_spread=True, format="parquet")
    empty = pq.read_table(tmp_path / "p" / "gsm8k_smoke" / "dpo.parquet")
    assert empty.num_rows == 0 and empty.column_names[:3] == ["prompt", "chosen", "rejected"]


def test_a_run_prints_one_export_line_and_the_run_export_equals_the_report_export(shipped_report, tmp_path):
    """The export at the end of the run (pytest --rlhf-export) and one from its JSON report are the same files."""
    from conftest import NO_HYPOTHESIS, shipped_copy

    import os
    import subprocess
    import sys

    root = shipped_copy(tmp_path / "p")
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
    env.update(RLHF_EVAL_GEMINI_BASE_URL="http://127.0.0.1:9", OPENAI_BASE_URL="http://127.0.0.1:9/v1",
               PYTEST_ADDOPTS=NO_HYPOTHESIS)
    proc = subprocess.run([sys.executable, "-m", "pytest", "suites/", "-p", "no:cacheprovider", "-q",
                           "--rlhf-report-json=r.json", "--rlhf-export=run", "--rlhf-export-pass-rate=0.2:0.8"],
                          cwd=root, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("rlhf-eval:")]
    assert lines[0] == "rlhf-eval: wrote r.json" and len(lines) == 2
    assert lines[1].startswith("rlhf-eval: exported 3 suites to run/: ") and "by pass rate in [0.2, 0.8]" in lines[1]
    again = export_report(Report.load(root / "r.json"), root / "again", pass_rate="0.2:0.8")
    for f in again.files:
        assert f.path.read_bytes() == (root / "run" / f.path.relative_to(root / "again")).read_bytes()


def test_a_pair_with_an_errored_or_blocked_trace_is_no_training_pair(shipped_report, tmp_path):
    """A trace the API withheld (blocked) or failed (error) has no answer text: DPO would learn to
    prefer any answer over an empty one. Its pairs are left out and counted; a question whose every
    trace is such has no pass rate to select it by (its 0.0 measures the API) and is "errored"."""
    data = copy.deepcopy(shipped_report[0])
    smoke = next(s for s in data["suites"] if s["name"] == "gsm8k_smoke")
    q = next(q for q in smoke["questions"] if q["pairs"])
    withheld = q["pairs"][0]["rejected"]
    q["traces"][withheld].update(verdict="blocked", text="", finish_reason="SAFETY", logp=None)
    cut = [p for p in q["pairs"] if p["rejected"] == withheld]
    none = smoke["questions"][-1]
    for t in none["traces"]:
        t.update(verdict="error", text="", finish_reason="OTHER", logp=None)
    before = build_export(shipped_report[0], tmp_path / "before").suites
    export = export_report(data, tmp_path / "out")
    one = next(e for e in export.suites if e.name == "gsm8k_smoke")
    was = next(e for e in before if e.name == "gsm8k_smoke")
    dpo = _rows(tmp_path / "out" / "gsm8k_smoke" / "dpo.jsonl")
    assert all(r["rejected"] and r["chosen"] for r in dpo)
    assert not any(r["question_id"] == none["id"] for name in ("dpo", "sft", "grpo_prompts")
                   for r in _rows(tmp_path / "out" / "gsm8k_smoke" / f"{name}.jsonl"))
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())["suites"]["gsm8k_smoke"]
    assert summary["unanswered_removed"] == {"dpo": len(cut)}
    assert summary["dropped"]["errored"] == 1 and summary["kept"] == 29
    # every pair of the kept questions is written, a duplicate, or left out for its trace
    assert summary["rows"]["dpo"] + summary["duplicates_removed"]["dpo"] + len(cut) == \
        sum(len(x["pairs"]) for x in smoke["questions"] if x is not none)
    assert was.unanswered == {"dpo": 0} and len(one.records["dpo"]) <= len(was.records["dpo"])
    assert f"{len(cut)} with an errored or blocked trace left out" in export.line()
    assert "1 errored left out" in export.line()


def test_an_export_removes_the_files_an_earlier_export_wrote_and_nothing_else(shipped_report, shipped, tmp_path):
    """Parquet, then JSON lines, into one folder; then an export without a suite: a glob over
    out/*/dpo.* or a folder of an old suite never mixes two exports' rows."""
    pytest.importorskip("datasets")
    export_report(shipped, tmp_path, format="parquet")
    (tmp_path / "gsm8k_smoke" / "notes.txt").write_text("mine")
    export = export_report(shipped, tmp_path, pass_rate="0.25:1")
    assert sorted(p.name for p in (tmp_path / "gsm8k_smoke").iterdir()) == [
        "dpo.jsonl", "grpo_groups.jsonl", "grpo_prompts.jsonl", "notes.txt", "sft.jsonl"]
    assert export.line().endswith(f"(jsonl); removed 12 files of an earlier export; per suite: {tmp_path}/summary.json")
    data = shipped_report[0]
    export_report({**data, "suites": [s for s in data["suites"] if s["name"] == "gsm8k_smoke"]}, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gsm8k_smoke", "summary.json"]
    assert (tmp_path / "gsm8k_smoke" / "notes.txt").read_text() == "mine"
    assert set(json.loads((tmp_path / "summary.json").read_text())["suites"]) == {"gsm8k_smoke"}


def test_a_suite_named_like_the_summary_file_is_one_line_before_anything_is_written(shipped_report, tmp_path):
    data = copy.deepcopy(shipped_report[0])
    data["suites"][1]["name"] = "summary.json"  # a valid suite name, and the export's own file name
    with pytest.raises(ReportError, match=r"^suites\[1\]\.name: 'summary.json' is the name of the export's summary "
                                          r"file; rename the suite to export it$"):
        export_report(data, tmp_path / "out")
    assert not (tmp_path / "out").exists()
