"""Metrics over training steps (rlhf_eval.steps_report) from step folders laid out as RLHFEvalCallback
writes them, here holding the shipped suites' replayed report (no torch needed): the series are the
reports' own numbers, a suite a step did not run is left out of its series, and `rlhf-eval html
STEPS_DIR OUT.html` draws them or refuses in one line."""
from __future__ import annotations

import copy
import json

import pytest

from rlhf_eval.cli import main
from rlhf_eval.compare import compare_reports
from rlhf_eval.report_model import Report
from rlhf_eval.steps_report import LOGGED_METRICS, load_steps, metric_series, render_steps_html, step_metrics


@pytest.fixture
def steps_dir(shipped_report, tmp_path):
    """step 0: every shipped suite; step 2: gsm8k_smoke alone; step 10: every suite again, compared
    with step 0 (as the callback compares each step with its first); a folder of no step, and a step
    folder without its report, beside them."""
    full = shipped_report[0]
    smoke = copy.deepcopy(full)
    smoke["suites"] = [s for s in smoke["suites"] if s["name"] == "gsm8k_smoke"]
    last = Report.from_data(copy.deepcopy(full))
    last.comparison = compare_reports(last, Report.from_data(full), "step-000000")
    root = tmp_path / "rlhf"
    for step, report in ((0, full), (2, smoke), (10, last.to_dict())):
        (root / f"step-{step:06d}").mkdir(parents=True)
        (root / f"step-{step:06d}" / "report.json").write_text(json.dumps(report))
    (root / "step-000003").mkdir()
    (root / "notes").mkdir()
    return root


def test_the_series_are_the_step_reports_numbers_in_step_order(steps_dir, shipped_report):
    steps = load_steps(steps_dir)
    assert [(s.step, s.folder.name) for s in steps] == [(0, "step-000000"), (2, "step-000002"), (10, "step-000010")]
    series = metric_series(steps)
    aggregates = {s["name"]: s["aggregates"] for s in shipped_report[0]["suites"]}
    smoke = aggregates["gsm8k_smoke"]
    assert series["gsm8k_smoke"]["accuracy"] == [(step, smoke["accuracy"]) for step in (0, 2, 10)]
    assert series["gsm8k_smoke"]["mean_margin"][0] == (0, smoke["mean_margin"])
    # science_choice did not run at step 2, and has no log-probabilities: no margin series at all
    assert [s for s, _ in series["science_choice"]["accuracy"]] == [0, 10]
    assert "mean_margin" not in series["science_choice"] and "reward_accuracy" not in series["science_choice"]
    assert step_metrics(steps[1].report) == {f"rlhf/gsm8k_smoke/{m}": smoke[m] for m in LOGGED_METRICS
                                             if smoke.get(m) is not None}


def test_the_steps_page_and_the_command(steps_dir, tmp_path, capsys):
    page = render_steps_html(load_steps(steps_dir))
    assert page.count("<section") == 3 and page.count("<figure>") == sum(
        len(m) for m in metric_series(load_steps(steps_dir)).values())
    assert "step-000010" in page and "http" not in page.replace("http://www.w3.org/2000/svg", "")
    out = tmp_path / "steps.html"
    assert main(["html", str(steps_dir), str(out)]) == 0
    assert out.read_text() == page
    assert capsys.readouterr().out == f"rlhf-eval: wrote {out} (3 steps)\n"


def test_a_folder_of_no_steps_or_a_comparison_is_one_line(tmp_path, steps_dir, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["html", str(empty), str(tmp_path / "o.html")]) == 2
    assert capsys.readouterr().err == (f"rlhf-eval: {empty}: no step-NNNNNN/report.json in it; RLHFEvalCallback "
                                       "writes them under <output_dir>/rlhf/\n")
    assert main(["html", str(steps_dir), str(tmp_path / "o.html"), "--compare", "base.json"]) == 2
    assert "is a folder of step reports" in capsys.readouterr().err
    (steps_dir / "step-000002" / "report.json").write_text("{")
    assert main(["html", str(steps_dir), str(tmp_path / "o.html")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "step-000002" in err, err
    assert not (tmp_path / "o.html").exists()


def test_only_the_callbacks_step_folders_count_and_the_trainers_output_dir_finds_them(steps_dir, tmp_path, capsys):
    """A `step-2` (or `step-0000002`) copied beside `step-000002` is not the callback's: it would be
    step 2 twice. Given the trainer's output_dir rather than its rlhf/ folder, the page is drawn
    from rlhf/."""
    for name in ("step-2", "step-0000002"):
        (steps_dir / name).mkdir()
        (steps_dir / name / "report.json").write_text((steps_dir / "step-000002" / "report.json").read_text())
    assert [s.folder.name for s in load_steps(steps_dir)] == ["step-000000", "step-000002", "step-000010"]
    assert steps_dir.name == "rlhf"
    assert [s.step for s in load_steps(steps_dir.parent)] == [0, 2, 10]
    out = tmp_path / "steps.html"
    assert main(["html", str(steps_dir.parent), str(out)]) == 0
    assert capsys.readouterr().out == f"rlhf-eval: wrote {out} (3 steps)\n"
