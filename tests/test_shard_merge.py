"""Sharded runs that merge exactly: `--rlhf-shard I/N` deals every question to one shard, the same
on every machine, and `rlhf-eval merge` builds from the shards' reports the report a single run
writes — questions, aggregates, intervals, suite thresholds, comparison, exports — byte for byte
bar its provenance."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tracemalloc

import pytest

from conftest import TEST_KEY
from test_plugin import suite_yaml

from rlhf_eval import RunError, report_stream, run_suites
from rlhf_eval.cli import main
from rlhf_eval.merge import MergeError, merge_reports, merged_run
from rlhf_eval.report import report_lines
from rlhf_eval.report_model import Report, ReportError
from rlhf_eval.runner import Run, RunOptions
from rlhf_eval.shard import Shard, assign

SIZES = {"demo": 8, "other": 5}  # questions per suite
# a suite threshold that the whole run breaches (the emulator solves some GSM8K questions, not all)
FAILING = {"accuracy": {"min": 0.99}}


def suites_in(root):
    (root / "suites").mkdir(exist_ok=True)
    (root / "suites" / "demo.yaml").write_text(suite_yaml("demo", samples=3, limit=8, suite_thresholds=FAILING))
    (root / "suites" / "other.yaml").write_text(suite_yaml("other", samples=3, limit=5, offset=8))


@pytest.fixture(scope="module")
def root(tmp_path_factory, emulator):
    """Two suites recorded once through the emulator; every run below replays them offline."""
    root = tmp_path_factory.mktemp("sharded")
    suites_in(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("RLHF_EVAL_GEMINI_BASE_URL", emulator.base_url)
        mp.setenv("GEMINI_API_KEY", TEST_KEY)
        mp.delenv("GOOGLE_API_KEY", raising=False)
        run_suites(["suites"], record_mode="once")
    return root


@pytest.fixture
def here(root, offline, monkeypatch):
    monkeypatch.chdir(root)
    return root


@pytest.fixture(scope="module")
def runs(root):
    """The whole run and its three shards, replayed, with their JSON reports (whole.json, shard-I.json)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("RLHF_EVAL_GEMINI_BASE_URL", "http://127.0.0.1:9")
        mp.delenv("GEMINI_API_KEY", raising=False)
        whole = run_suites(["suites"], report_json="whole.json")
        shards = [run_suites(["suites"], shard=f"{i}/3", report_json=f"shard-{i}.json") for i in (1, 2, 3)]
    return whole, shards


SHARDS = ["shard-1.json", "shard-2.json", "shard-3.json"]


def comparable(report: dict) -> str:
    """A report's JSON text without what says when and by which command it was made."""
    report = dict(report)
    provenance = dict(report.pop("provenance"))
    for key in ("time", "command_line", "merged_from"):
        provenance.pop(key, None)
    return json.dumps({**report, "provenance": provenance}, indent=1, ensure_ascii=False)


def test_three_shards_merged_are_the_single_run_byte_for_byte(here, runs):
    whole, shards = runs
    merged = merge_reports(list(reversed(SHARDS)), command_line=["rlhf-eval", "merge", *SHARDS])
    assert comparable(merged.to_dict()) == comparable(json.loads((here / "whole.json").read_text()))
    assert "shard" not in merged.to_dict() and all(s.shard is not None for s in shards)
    provenance = merged.provenance
    assert provenance["command_line"] == ["rlhf-eval", "merge", *SHARDS]
    assert [(m["report"], m["shard"]) for m in provenance["merged_from"]] == [
        ("shard-3.json", "3/3"), ("shard-2.json", "2/3"), ("shard-1.json", "1/3")]
    # not the trivial case: every shard holds questions of each suite, and its aggregates differ from the whole's
    for shard in shards:
        assert sorted(s.name for s in shard.suites) == ["demo", "other"]
        assert shard.suite("demo").aggregates.intervals != whole.suite("demo").aggregates.intervals


def test_a_suite_threshold_fails_the_merge_as_it_fails_the_single_run(here, runs):
    whole, _ = runs
    merged = merge_reports(SHARDS)
    assert whole.suite("demo").threshold_failures and whole.suite("other").threshold_failures == []
    assert merged.suite("demo").threshold_failures == whole.suite("demo").threshold_failures
    assert report_lines(merged) == report_lines(whole)
    fails = [line for style, line in report_lines(merged) if style == "fail"]
    assert fails and fails[0].startswith("FAIL suite demo: accuracy = ")


def test_every_question_is_in_exactly_one_shard_and_the_shards_are_balanced(runs):
    whole, shards = runs
    for suite in whole.suites:
        held = [[q.id for q in shard.suite(suite.name).questions] for shard in shards]
        assert sorted(sum(held, [])) == sorted(q.id for q in suite.questions)
        assert max(map(len, held)) - min(map(len, held)) <= 1, held


def expected_assignment(suite: str, ids: list[str], n: int) -> dict[str, int]:
    """The documented formula, from hashlib: the suite's questions ordered by SHA-256 of
    "<suite>/<id>", dealt to shards 1..n in turn from shard 1 + (first 8 bytes of SHA-256 of the
    suite's name, big-endian) mod n."""
    start = int.from_bytes(hashlib.sha256(suite.encode()).digest()[:8], "big") % n
    order = sorted(ids, key=lambda i: hashlib.sha256(f"{suite}/{i}".encode()).hexdigest())
    return {qid: (start + rank) % n + 1 for rank, qid in enumerate(order)}


def test_the_assignment_is_the_documented_formula_and_the_shards_run_it(runs):
    _, shards = runs
    for suite, size in SIZES.items():
        ids = [f"q-{i:04d}" for i in range(8 if suite == "other" else 0, (8 if suite == "other" else 0) + size)]
        expected = expected_assignment(suite, ids, 3)
        assert assign(suite, ids, 3) == expected
        for index, shard in enumerate(shards, 1):
            assert [q.id for q in shard.suite(suite).questions] == sorted(i for i in ids if expected[i] == index)
    assert Shard.of("2/3").selects("demo", ["a", "b", "c"]) == {
        i for i, s in expected_assignment("demo", ["a", "b", "c"], 3).items() if s == 2}


def test_the_assignment_does_not_depend_on_the_process_or_its_hash_seed():
    ids = [f"gsm8k-{i:05d}" for i in range(300)]
    code = ("import json, sys\nfrom rlhf_eval.shard import assign\n"
            "print(json.dumps(assign('gsm8k_big', json.loads(sys.argv[1]), 7)))")
    seen = []
    for seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run([sys.executable, "-c", code, json.dumps(ids)], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        seen.append(json.loads(proc.stdout))
    assert seen[0] == seen[1] == assign("gsm8k_big", ids, 7) == expected_assignment("gsm8k_big", ids, 7)
    # the order questions come in does not matter
    assert assign("gsm8k_big", list(reversed(ids)), 7) == seen[0]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 16])
def test_each_suite_is_dealt_evenly_and_suites_start_on_different_shards(n):
    totals, uneven = [0] * n, 0
    for s in range(40):
        ids = [f"x-{i}" for i in range(s * 3 % 23 + 1)]
        assignment = assign(f"suite{s}", ids, n)
        assert set(assignment) == set(ids) and set(assignment.values()) <= set(range(1, n + 1))
        counts = [list(assignment.values()).count(i) for i in range(1, n + 1)]
        assert max(counts) - min(counts) <= 1
        totals = [t + c for t, c in zip(totals, counts)]
        uneven += len(ids) % n != 0
    # dealt from shard 1 every time, shard 1 would take every uneven suite's extra question
    assert max(totals) - min(totals) <= uneven // 2, (totals, uneven)


@pytest.mark.parametrize("value, line", [
    ("0/3", "there is no shard 0 of 3: shards are numbered 1 to 3"),
    ("4/3", "there is no shard 4 of 3: shards are numbered 1 to 3"),
    ("a/b", "expected I/N, shard I of N with 1 ≤ I ≤ N, e.g. 2/3"),
    ("1/0", "N = 0: a run has at least 1 shard; expected I/N, shard I of N with 1 ≤ I ≤ N, e.g. 2/3"),
    ("2", "expected I/N, shard I of N with 1 ≤ I ≤ N, e.g. 2/3"),
    ("1/3/4", "expected I/N, shard I of N with 1 ≤ I ≤ N, e.g. 2/3"),
])
def test_a_bad_shard_is_one_line(value, line):
    with pytest.raises(ValueError) as info:
        Shard.of(value)
    assert str(info.value) == line
    with pytest.raises(RunError) as info:
        run_suites(["nowhere"], shard=value)
    assert str(info.value) == f"shard = {value!r}: {line}"


def test_a_bad_shard_on_the_command_line_is_one_line(here, capsys):
    assert main(["run", "suites", "--shard", "4/3"]) == 2
    assert capsys.readouterr().err == "rlhf-eval: --shard '4/3': there is no shard 4 of 3: shards are numbered 1 to 3\n"


def test_a_shard_run_passes_on_its_questions_and_leaves_suite_thresholds_to_the_merge(here, runs, capsys):
    assert runs[1][0].suite("demo").threshold_failures  # breached over the shard's questions too
    assert main(["run", "suites", "--shard", "1/3"]) == 0  # demo's accuracy threshold is judged on the merge
    out = capsys.readouterr().out
    held = sum(len(s.questions) for s in runs[1][0].suites)
    assert f"rlhf-eval: shard 1/3: {held} questions; suite thresholds and regressions are judged on the shards' " \
           "merged report (rlhf-eval merge), not on one shard" in out
    assert main(["run", "suites"]) == 1
    capsys.readouterr()


def test_rlhf_eval_merge_writes_the_merged_report_and_fails_as_the_run_does(here, runs, capsys):
    code = main(["merge", *SHARDS, "-o", "merged.json", "--html", "merged.html"])
    out = capsys.readouterr().out
    assert code == 1  # the demo suite's threshold, as `rlhf-eval run suites` exits
    assert comparable(json.loads((here / "merged.json").read_text())) == \
        comparable(json.loads((here / "whole.json").read_text()))
    # the files themselves: after the provenance (the first key, and a shard's `shard`), the same bytes
    merged_text, whole_text = (here / "merged.json").read_text(), (here / "whole.json").read_text()
    tail = '\n "suites": [\n'
    assert merged_text[merged_text.index(tail):] == whole_text[whole_text.index(tail):]
    assert "FAIL suite demo: accuracy = " in out and "rlhf-eval: wrote merged.json" in out
    assert out.rstrip().endswith("13 questions in 2 suites: 13 passed, suite thresholds failed in demo")
    assert (here / "merged.html").read_text().startswith("<!DOCTYPE html>")


def test_the_merge_compares_with_a_baseline_and_exports_as_the_single_run(here, runs):
    # the baseline: a shard's report (a subset of the questions), so the comparison has notes, deltas and a gate
    whole = run_suites(["suites"], baseline="shard-2.json", fail_rules=["accuracy:0.01"], export="out-whole")
    merged = merged_run(SHARDS, baseline="shard-2.json", baseline_name="shard-2", fail_rules=["accuracy:0.01"],
                        export="out-merged")
    assert merged.report is not None and merged.report.comparison is not None
    assert merged.report.comparison.model_dump() == whole.comparison.model_dump()
    assert merged.report.comparison.notes  # the baseline ran fewer questions: said so
    files = sorted(p.relative_to(here / "out-whole") for p in (here / "out-whole").rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(here / "out-merged")
                                     for p in (here / "out-merged").rglob("*") if p.is_file())
    for f in files:
        assert (here / "out-whole" / f).read_bytes() == (here / "out-merged" / f).read_bytes(), f


def test_questions_that_errored_merge_as_they_report_in_a_single_run(root, offline, tmp_path, monkeypatch):
    shutil.copytree(root / "suites", tmp_path / "suites")
    shutil.copytree(root / "cassettes", tmp_path / "cassettes")
    (tmp_path / "cassettes" / "demo" / "q-0002.yaml").unlink()  # its question errors: no cassette
    monkeypatch.chdir(tmp_path)
    whole = run_suites(["suites"])
    assert whole.question("demo", "q-0002").error and whole.suite("demo").aggregates.questions_failed == 1
    for i in (1, 2, 3):
        run_suites(["suites"], shard=f"{i}/3", report_json=f"s{i}.json")
    assert comparable(merge_reports(["s1.json", "s2.json", "s3.json"]).to_dict()) == comparable(whole.to_dict())


# ------------------------------------------------------------------------------------ refusals

def _copy(here, source, target, change=None):
    data = json.loads((here / source).read_text())
    if change:
        change(data)
    (here / target).write_text(json.dumps(data, indent=1))
    return target


def test_what_cannot_be_merged_is_refused_in_one_line(here, runs):
    (here / "notes.txt").write_text("not json")
    (here / "list.json").write_text("[1, 2]")
    shutil.copy(here / "shard-1.json", here / "again-1.json")
    cases = {
        "notes.txt": ("notes.txt:1: not valid JSON: Expecting value (column 1)", ["notes.txt", *SHARDS]),
        "list": ("list.json: not an rlhf-eval report (no 'suites' list); write one with pytest --rlhf-report-json=PATH",
                 ["list.json"]),
        "missing": ("missing shard 2/3 of 3: merge the reports of all 3 shards (got 1/3, 3/3)",
                    ["shard-1.json", "shard-3.json"]),
        "twice": ("shard 1/3 given twice: shard-1.json and again-1.json", [*SHARDS, "again-1.json"]),
        "same file": ("shard-1.json: given twice; give each shard's report once", [*SHARDS, "shard-1.json"]),
        "mixed": ("whole.json is not a shard's report but shard-1.json is shard 1/3: merge the N shards of one run "
                  "(or only reports without --rlhf-shard)", [*SHARDS, "whole.json"]),
        "one question twice": ("demo::q-0000 is in both whole.json and copy.json: a question belongs to one shard; "
                               "merge the reports of one sharded run",
                               ["whole.json", _copy(here, "whole.json", "copy.json")]),
    }
    for name, (line, paths) in cases.items():
        with pytest.raises(MergeError) as info:
            merge_reports(paths)
        assert str(info.value) == line, name


def test_shards_of_other_suite_files_settings_or_versions_are_refused(here, runs, monkeypatch):
    def packages(data):
        data["provenance"]["packages"]["numpy"] = "1.0.0"

    def settings(data):
        data["suites"][0]["seed"] = 7

    def count(data):
        data["shard"]["count"] = 4

    cases = {
        "numpy": (packages, "shard-2b.json was made with numpy 1.0.0 but shard-1.json with "),
        "seed": (settings, "suite demo has other settings in shard-2b.json than in shard-1.json (seed: 100 → 7): "
                           "merge the shards of one run"),
        "count": (count, "shard-2b.json is shard 2/4 but shard-1.json is shard 1/3: the shards of one run share N"),
    }
    for name, (change, start) in cases.items():
        _copy(here, "shard-2.json", "shard-2b.json", change)
        with pytest.raises(MergeError) as info:
            merge_reports(["shard-1.json", "shard-2b.json", "shard-3.json"])
        assert str(info.value).startswith(start), (name, str(info.value))
    # a suite file edited between shards (here a comment: the same settings, another file)
    edited = here / "edited"
    shutil.copytree(here / "suites", edited / "suites")
    shutil.copytree(here / "cassettes", edited / "cassettes")
    with (edited / "suites" / "demo.yaml").open("a") as f:
        f.write("# edited\n")
    monkeypatch.chdir(edited)
    run_suites(["suites"], shard="2/3", report_json=here / "shard-2-edited.json")
    monkeypatch.chdir(here)
    with pytest.raises(MergeError) as info:
        merge_reports(["shard-1.json", "shard-2-edited.json", "shard-3.json"])
    assert str(info.value).startswith("suite demo was run from another file in shard-2-edited.json than in "
                                      "shard-1.json (sha256 ")
    assert str(info.value).endswith("run every shard on the same suite files")


@pytest.mark.parametrize("key, value, where, kind", [
    ("packages", ["numpy"], "provenance.packages", "list"),
    ("suites", "demo", "provenance.suites", "str"),
    ("suites", {"demo": "suites/demo.yaml", "other": {}}, "provenance.suites.demo", "str"),
])
def test_a_provenance_of_the_wrong_shape_is_one_line(here, runs, key, value, where, kind):
    _copy(here, "shard-2.json", "shape-2.json", lambda data: data["provenance"].update({key: value}))
    with pytest.raises(MergeError) as info:
        merge_reports(["shard-1.json", "shape-2.json", "shard-3.json"])
    assert str(info.value) == (f"shape-2.json: {where} is a {kind}, not a mapping: the report was edited or is not "
                               "rlhf-eval's; write it again with pytest --rlhf-report-json=PATH")


def test_a_huge_n_is_refused_naming_a_few_missing_shards(here, runs):
    _copy(here, "shard-2.json", "huge-2.json", lambda data: data["shard"].update(count=10**9, suite_sizes={}))
    with pytest.raises(MergeError) as info:
        merge_reports(["huge-2.json"])
    assert str(info.value) == (
        "missing shards " + ", ".join(f"{i}/1000000000" for i in (1, *range(3, 12))) + " and 999,999,989 more of "
        "1000000000: merge the reports of all 1000000000 shards (got 2/1000000000)")


def test_a_bad_merge_on_the_command_line_is_one_line(here, runs, capsys):
    assert main(["merge", "shard-1.json", "shard-3.json", "-o", "never.json"]) == 2
    assert capsys.readouterr().err == ("rlhf-eval: missing shard 2/3 of 3: merge the reports of all 3 shards "
                                       "(got 1/3, 3/3)\n")
    assert not (here / "never.json").exists()
    assert main(["merge", *SHARDS, "--compare", "baselines/main.json"]) == 2  # README's gate, before a baseline
    assert capsys.readouterr().err == ("rlhf-eval: baselines/main.json: no such baseline report file (save one with "
                                       "rlhf-eval merge REPORT.json… --save PATH, or rlhf-eval run SUITES --save "
                                       "PATH)\n")


# ------------------------------------------------------------------------------------ under pytest

@pytest.fixture
def sharded_project(project, root):
    shutil.copytree(root / "suites", project.path / "suites")
    shutil.copytree(root / "cassettes", project.path / "cassettes")
    return project


def pytest_shard(project, index, *args):
    out = project.path / f"pytest-{index}.json"
    result = project.runpytest("-p", "no:cacheprovider", "suites/demo.yaml", "suites/other.yaml",
                               f"--rlhf-shard={index}/3", f"--rlhf-report-json={out}", *args)
    return result, json.loads(out.read_text())


def test_under_pytest_a_shard_deselects_the_others_and_merges_with_any_shard(sharded_project, runs, offline):
    whole, shards = runs
    for index, args in ((1, ()), (2, ("-p", "xdist", "-n", "2"))):
        result, report = pytest_shard(sharded_project, index, *args)
        held = sum(len(s.questions) for s in shards[index - 1].suites)
        result.assert_outcomes(passed=held, **({} if args else {"deselected": 13 - held}))
        assert result.ret == 0  # the shard's suite thresholds are the merge's to judge
        if not args:
            result.stdout.fnmatch_lines(["rlhf-eval: record mode none, cassettes in *, shard 1/3 of the questions",
                                         f"collected 13 items / {13 - held} deselected / {held} selected"])
        assert comparable(report) == comparable(shards[index - 1].to_dict())
    (sharded_project.path / "shard-3.json").write_text(shards[2].to_json())
    merged = merge_reports([sharded_project.path / "pytest-1.json", sharded_project.path / "pytest-2.json",
                            sharded_project.path / "shard-3.json"])
    assert comparable(merged.to_dict()) == comparable(whole.to_dict())


def test_a_bad_shard_stops_pytest_in_one_line(sharded_project, offline):
    result = sharded_project.runpytest("-p", "no:cacheprovider", "suites/demo.yaml", "--rlhf-shard=0/3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.stderr.lines if line.strip()] == [
        "ERROR: --rlhf-shard '0/3': there is no shard 0 of 3: shards are numbered 1 to 3"]


def test_a_shard_without_questions_still_writes_its_report(sharded_project, offline):
    (sharded_project.path / "tiny.yaml").write_text(suite_yaml("tiny", samples=3, limit=1, offset=0))
    empty = next(i for i in (1, 2, 3) if assign("tiny", ["q-0000"], 3)["q-0000"] != i)
    out = sharded_project.path / "empty.json"
    result = sharded_project.runpytest("-p", "no:cacheprovider", "tiny.yaml", f"--rlhf-shard={empty}/3",
                                       f"--rlhf-report-json={out}")
    result.assert_outcomes(deselected=1)
    assert json.loads(out.read_text())["shard"] == {"index": empty, "count": 3, "suite_sizes": {}}
    assert json.loads(out.read_text())["suites"] == []


# ------------------------------------------------------------ a shard that did not run all of its questions
# An interrupted shard (Ctrl-C, -x) or one run with -k writes the report of the questions it ran, and a
# report can be edited by hand: the merge must refuse them, never build a report of part of the run.

def _edit(here, source, target, change):
    data = json.loads((here / source).read_text())
    change(data)
    (here / target).write_text(json.dumps(data, indent=1))
    return target


def _suite(data, name):
    return next(s for s in data["suites"] if s["name"] == name)


def test_dealt_is_what_assign_deals():
    for size in range(0, 30):
        for count in (1, 2, 3, 5, 8):
            ids = [f"q-{i}" for i in range(size)]
            shards = list(assign(f"s{size}", ids, count).values())
            assert [Shard(i, count).dealt(f"s{size}", size) for i in range(1, count + 1)] == [
                shards.count(i) for i in range(1, count + 1)]


def test_a_lone_surrogate_in_a_hand_edited_id_is_dealt_not_a_traceback(here, runs):
    ids = ["q-\ud800", "q-1", "q-2"]
    assert sorted(assign("demo", ids, 2)) == sorted(ids)
    assert assign("démo", ["q-é", "q-1"], 2) == assign("démo", ["q-1", "q-é"], 2)  # other text: UTF-8, as before

    def rename(data):
        _suite(data, "demo")["questions"][0]["id"] = "q-\ud800"

    _edit(here, "shard-2.json", "surrogate-2.json", rename)
    with pytest.raises(MergeError):
        merge_reports(["shard-1.json", "surrogate-2.json", "shard-3.json"])


def test_a_shard_report_records_each_suite_size(runs):
    _, shards = runs
    assert [s.shard.suite_sizes for s in shards] == [{"demo": 8, "other": 5}] * 3
    # a typo's N (1/100000000) is no list of N counts: one shard's count, at once
    assert Shard(1, 10**12).dealt("demo", 8) + Shard(2, 10**12).dealt("demo", 8) <= 1


def test_a_shard_that_lost_questions_is_refused_not_merged_into_part_of_the_run(here, runs):
    """An interrupted shard writes the report of the questions it ran: the merge must not take it."""
    def cut(data):
        _suite(data, "demo")["questions"].pop()

    _edit(here, "shard-2.json", "cut-2.json", cut)
    held = len(_suite(json.loads((here / "shard-2.json").read_text()), "demo")["questions"])
    with pytest.raises(MergeError) as info:
        merge_reports(["shard-1.json", "cut-2.json", "shard-3.json"])
    assert str(info.value) == (f"cut-2.json holds {held - 1} of the {held} questions of suite demo dealt to shard 2/3: "
                               "that shard was interrupted (Ctrl-C, -x) or ran with -k, --lf or --deselect; run it "
                               "again in full, then merge")

    def empty(data):  # a hand-made shard: nothing in it
        data["suites"], data["provenance"] = [], {}
        del data["shard"]["suite_sizes"]

    _edit(here, "shard-2.json", "empty-2.json", empty)
    with pytest.raises(MergeError) as info:
        merge_reports(["shard-1.json", "empty-2.json", "shard-3.json"])
    assert str(info.value).startswith("empty-2.json holds 0 of the ")


def test_questions_swapped_between_shard_reports_are_refused(here, runs):
    one, two = (json.loads((here / f"shard-{i}.json").read_text()) for i in (1, 2))
    a, b = _suite(one, "demo")["questions"], _suite(two, "demo")["questions"]
    a[0], b[0] = b[0], a[0]
    (here / "swap-1.json").write_text(json.dumps(one))
    (here / "swap-2.json").write_text(json.dumps(two))
    with pytest.raises(MergeError) as info:
        merge_reports(["swap-1.json", "swap-2.json", "shard-3.json"])
    tail = "the report was edited or comes from another run; merge the reports of one sharded run"
    assert str(info.value) in {  # whichever of the two SHA-256 ranks first
        f"demo::{a[0]['id']} is in swap-1.json, shard 1/3, but SHA-256 deals it to shard 2/3: {tail}",
        f"demo::{b[0]['id']} is in swap-2.json, shard 2/3, but SHA-256 deals it to shard 1/3: {tail}"}


def test_shards_that_disagree_on_a_suite_size_are_refused(here, runs):
    def grow(data):
        data["shard"]["suite_sizes"]["demo"] = 9

    _edit(here, "shard-2.json", "grown-2.json", grow)
    with pytest.raises(MergeError) as info:
        merge_reports(["shard-1.json", "grown-2.json", "shard-3.json"])
    assert str(info.value) == ("suite demo has 9 questions in grown-2.json but 8 in shard-1.json: run every shard on "
                               "the same suite files")


def test_shard_reports_without_suite_sizes_still_merge(here, runs):
    """Reports of rlhf-eval before shards recorded their suites' sizes: merged, not checked."""
    def older(data):
        del data["shard"]["suite_sizes"]

    older_ones = [_edit(here, name, f"older-{name}", older) for name in SHARDS]
    assert comparable(merge_reports(older_ones).to_dict()) == comparable(json.loads((here / "whole.json").read_text()))


def test_the_merged_report_never_overwrites_a_report_being_merged(here, runs, capsys):
    before = (here / "shard-1.json").read_bytes()
    with pytest.raises(MergeError) as info:
        merged_run(SHARDS, html="out.html", report_json=here / "shard-1.json")
    assert str(info.value) == f"{here / 'shard-1.json'}: is a report being merged; write the merged report to " \
                              "another file"
    assert main(["merge", *SHARDS, "--save", "./shard-3.json"]) == 2
    assert capsys.readouterr().err == ("rlhf-eval: shard-3.json: is a report being merged; write the merged report "
                                       "to another file\n")
    assert (here / "shard-1.json").read_bytes() == before and not (here / "out.html").exists()


def test_under_pytest_a_shard_run_with_k_is_refused_by_the_merge(sharded_project, runs, offline):
    _, shards = runs
    left_out = shards[0].suite("demo").questions[0].id
    result, report = pytest_shard(sharded_project, 1, "-k", f"not {left_out}")
    held = len(shards[0].suite("demo").questions)
    assert report["shard"]["suite_sizes"] == {"demo": 8, "other": 5}
    result.stdout.fnmatch_lines([f"rlhf-eval: shard 1/3 ran {held - 1} of the {held} questions of suite demo dealt to "
                                 "it (interrupted by Ctrl-C or -x, or -k, --lf, --deselect): rlhf-eval merge refuses "
                                 "this report; run the whole shard before merging"])
    (sharded_project.path / "shard-2.json").write_text(shards[1].to_json())
    (sharded_project.path / "shard-3.json").write_text(shards[2].to_json())
    with pytest.raises(MergeError) as info:
        merge_reports([sharded_project.path / name for name in ("pytest-1.json", "shard-2.json", "shard-3.json")])
    assert str(info.value).startswith(f"{sharded_project.path / 'pytest-1.json'} holds {held - 1} of the {held} "
                                      "questions of suite demo dealt to shard 1/3")


def test_more_shards_than_questions_merge_to_the_single_run(here, runs):
    """20 shards of 13 questions: most hold one question or none, and some hold no question of a suite."""
    for i in range(1, 21):
        run_suites(["suites"], shard=f"{i}/20", report_json=f"of20-{i}.json")
    reports = [json.loads((here / f"of20-{i}.json").read_text()) for i in range(1, 21)]
    assert sum(not r["suites"] for r in reports) >= 7  # 13 questions in 20 shards
    assert [sum(len(s["questions"]) for s in r["suites"]) for r in reports] == [
        Shard(i, 20).dealt("demo", 8) + Shard(i, 20).dealt("other", 5) for i in range(1, 21)]
    merged = merge_reports([f"of20-{i}.json" for i in range(1, 21)])
    assert comparable(merged.to_dict()) == comparable(json.loads((here / "whole.json").read_text()))


def test_a_shard_stopped_by_x_records_the_suites_it_never_reached(sharded_project, runs, offline):
    """-x stops the shard at its first failed question: the suite after it never ran a question, but
    the report still gives its size (from collection), so the merge sees the shard is short of it."""
    (sharded_project.path / "suites" / "demo.yaml").write_text(
        suite_yaml("demo", samples=3, limit=8, suite_thresholds=FAILING, thresholds={"accuracy": {"min": 1.0}}))
    result, report = pytest_shard(sharded_project, 1, "-x")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert [s["name"] for s in report["suites"]] == ["demo"] and report["shard"]["suite_sizes"] == SIZES
    result.stdout.fnmatch_lines(["rlhf-eval: shard 1/3 ran * of the * questions of suite * dealt to it (interrupted "
                                 "by Ctrl-C or -x, or -k, --lf, --deselect): rlhf-eval merge refuses this report; "
                                 "run the whole shard before merging"])


# ------------------------------------------------------------ large shards: read a piece at a time

def test_the_merge_reads_each_shard_a_piece_at_a_time_to_the_same_report(here, runs, monkeypatch):
    """Every shard report is read streamed (rlhf_eval.report_stream), whatever its size or layout:
    here in chunks of 256 characters, one shard written without indentation."""
    monkeypatch.setattr(report_stream, "_CHUNK", 256)
    _copy(here, "shard-2.json", "compact-2.json")
    (here / "compact-2.json").write_text(json.dumps(json.loads((here / "shard-2.json").read_text())))
    merged = merge_reports(["shard-1.json", "compact-2.json", "shard-3.json"])
    assert comparable(merged.to_dict()) == comparable(json.loads((here / "whole.json").read_text()))


def test_a_bad_question_in_a_shard_is_the_whole_loads_line(here, runs):
    def bad(data):
        _suite(data, "demo")["questions"][1]["traces"][2]["verdict"] = 5

    _edit(here, "shard-2.json", "bad-2.json", bad)
    with pytest.raises(ReportError) as whole:
        Report.load("bad-2.json", "shard report", stream=False)
    with pytest.raises(MergeError) as info:
        merge_reports(["shard-1.json", "bad-2.json", "shard-3.json"])
    assert str(info.value) == str(whole.value)
    assert str(info.value).startswith("bad-2.json: suites[0].questions[1].traces[2].verdict: should be a valid string")


def _generated_reports(shipped, root, parts, size):
    """`parts` reports of `size` questions each, no question in two: the shipped questions under new ids."""
    report = Report.from_data(shipped)
    questions = [(s, q) for s in report.suites for q in s.questions]
    settings = {s.name: s.model_dump(mode="json", exclude_unset=True,
                                     exclude={"aggregates", "threshold_failures", "questions"}) for s in report.suites}
    paths = []
    for part in range(parts):
        run = Run(RunOptions(report_json=root / f"part-{part}.json"))
        run.in_memory_questions = 0
        for i in range(part * size, (part + 1) * size):
            suite, q = questions[i % len(questions)]
            run.add(settings[suite.name], q.model_copy(update={"id": f"{q.id}-{i}", "index": i}))
        run.finish({"time": "then"})
        paths.append(root / f"part-{part}.json")
    return paths


def test_merging_large_reports_holds_no_report_whole(shipped_report, tmp_path):
    """Three reports of 600 questions (~5.5 MB each), merged: Python's heap at its peak stays far
    below what holding the three reports loaded whole takes, as the merge did before it streamed them."""
    paths = _generated_reports(shipped_report[0], tmp_path, 3, 600)
    tracemalloc.start()
    try:
        held = [Report.load(p, stream=False) for p in paths]
        whole = tracemalloc.get_traced_memory()[1]
        del held
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        merged = merge_reports(paths, command_line=["rlhf-eval", "merge"])
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert sum(len(s.questions) for s in merged.suites) == 1800 and merged.streamed
    assert peak * 3 < whole, (peak, whole)  # measured: 19 MB against 85 MB
