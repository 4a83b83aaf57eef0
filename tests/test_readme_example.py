"""README's complete example, run as written: its shell and Python blocks in order, in a copy of
the shipped suites and cassettes, offline. The lines README shows as output must be what the
commands print, and the exported GRPO rows must give the team's reward functions, called as
GRPOTrainer calls them, the rewards the report recorded."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import NO_HYPOTHESIS, REPO, shipped_copy

pytest.importorskip("datasets")

HEADING = "## A complete example"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)


def section() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index(HEADING)
    return text[start:text.index("\n## ", start + 1)]


def blocks() -> list[tuple[str, str]]:
    """(language, code) of each fenced block of the section, in order ("" for shown output)."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(section())]


def test_the_complete_example_runs_as_written_and_prints_what_it_shows(tmp_path):
    root = shipped_copy(tmp_path / "repo")
    venv_bin = str(Path(sys.executable).parent)  # pytest, python and rlhf-eval of this install
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "PYTHONPATH")}
    env.update(PATH=venv_bin + os.pathsep + env.get("PATH", ""), PYTEST_ADDOPTS=NO_HYPOTHESIS,
               RLHF_EVAL_GEMINI_BASE_URL="http://127.0.0.1:9", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    printed, shown = "", []
    for language, code in blocks():
        if language == "bash":
            proc = subprocess.run(["bash", "-e", "-c", code], cwd=root, env=env, capture_output=True, text=True)
        elif language == "python" and "Trainer(" not in code:  # training needs a model download and a GPU
            proc = subprocess.run([sys.executable, "-c", code], cwd=root, env={**env, "PYTHONPATH": str(root)},
                                  capture_output=True, text=True)
        else:
            if language == "":
                shown.append(code)
            continue
        assert proc.returncode == 0, f"{code}\n---\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        printed += proc.stdout
    assert len(shown) == 2, "the section shows the table and the export line"
    table, export_line = shown
    for line in table.splitlines():
        if line != "…":
            assert line in printed.splitlines(), line
    assert export_line.strip() in printed.splitlines()

    # what the prose says, from the report
    report = json.loads((root / "team.json").read_text())
    suite = report["suites"][0]
    accuracies = {q["id"]: q["metrics"]["accuracy"] for q in suite["questions"]}
    assert (sum(a == 0 for a in accuracies.values()), sum(a == 1 for a in accuracies.values())) == (13, 1)
    assert round(suite["aggregates"]["margin_length_corr"], 3) == -0.997
    spread_0005 = next(q["metrics"]["spread"] for q in suite["questions"] if q["id"] == "gsm8k-0005")
    assert accuracies["gsm8k-0005"] == 0 and round(spread_0005, 3) == 0.071

    # GRPOTrainer hands each row's columns to the reward functions: on the recorded completions they
    # give the rewards the report holds
    sys.path.insert(0, str(root))
    try:
        import team_rewards
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("team_rewards", None)
    rows = [json.loads(line) for line in (root / "out" / "team_gsm8k" / "grpo_prompts.jsonl").read_text().splitlines()]
    by_id = {q["id"]: q for q in suite["questions"]}
    assert [r["question_id"] for r in rows] == [i for i, a in accuracies.items() if 0 < a < 1]
    for row in rows:
        traces = by_id[row["question_id"]]["traces"]
        completions = [t["text"] for t in traces]
        kwargs = {k: [v] * len(completions) for k, v in row.items() if k != "prompt"}
        for name, fn in (("answer_accuracy", team_rewards.answer_accuracy),
                         ("answer_format", team_rewards.answer_format)):
            got = fn(completions=completions, prompts=[row["prompt"]] * len(completions), **kwargs)
            assert got == [t["rewards_by_function"][f"team_rewards:{name}"] for t in traces], (row["question_id"], name)
