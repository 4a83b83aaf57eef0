"""What a newcomer and bad input do to sharded runs and `rlhf-eval merge`: a shard that did not run
every question dealt to it (interrupted, -k), questions moved between shard reports by hand, an
output that would overwrite a shard's report. Each is refused in one line, never merged into a
report of part of the run."""
import json

import pytest

from test_shard_merge import SHARDS, comparable, here, pytest_shard, root, runs, sharded_project  # noqa: F401

from rlhf_eval.cli import main
from rlhf_eval.merge import MergeError, merge_reports, merged_run
from rlhf_eval.shard import assign, dealt


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
            assert dealt(f"s{size}", size, count) == [shards.count(i) for i in range(1, count + 1)]


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


def test_a_shard_that_lost_questions_is_refused_not_merged_into_part_of_the_run(here, runs):
    """An interrupted shard writes the report of the questions it ran: the merge must not take it."""
    def cut(data):
        _suite(data, "demo")["questions"].pop()

    _edit(here, "shard-2.json", "cut-2.json", cut)
    held = len(_suite(json.loads((here / "shard-2.json").read_text()), "demo")["questions"])
    with pytest.raises(MergeError) as info:
        merge_reports(["shard-1.json", "cut-2.json", "shard-3.json"])
    assert str(info.value) == (f"cut-2.json holds {held - 1} of the {held} questions of suite demo dealt to shard 2/3: "
                               "that shard was interrupted or ran with -k, --lf or --deselect; run it again in "
                               "full, then merge")

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
                                 "it (interrupted, or -k, --lf, --deselect): rlhf-eval merge refuses this report; "
                                 "run the whole shard before merging"])
    (sharded_project.path / "shard-2.json").write_text(shards[1].to_json())
    (sharded_project.path / "shard-3.json").write_text(shards[2].to_json())
    with pytest.raises(MergeError) as info:
        merge_reports([sharded_project.path / name for name in ("pytest-1.json", "shard-2.json", "shard-3.json")])
    assert str(info.value).startswith(f"{sharded_project.path / 'pytest-1.json'} holds {held - 1} of the {held} "
                                      "questions of suite demo dealt to shard 1/3")
