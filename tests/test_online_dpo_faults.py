"""examples/online_dpo.py given bad input or stopped half way: one line each, said before the
checkpoint loads where it can be, and a Ctrl-C that says what is kept and that the loop cannot
resume. The tiny policy and the suite are test_online_dpo's."""
from __future__ import annotations

import io
import json
import signal
import sys

import pytest
import yaml

import test_online_dpo as base
import tiny_lm
from test_online_dpo import _main, _suite

# test_online_dpo's fixtures: the libraries, the script as a module, the fitted tiny policy
_libraries, example, start_policy = base._libraries, base.example, base.start_policy
pytestmark = pytest.mark.usefixtures("hf_offline")

ROUNDS_ARGS = ["--rounds", 2, "--dpo-steps", 1, "--reward-steps", 1, "--batch-size", 4, "--max-length", 64,
               "--device", "cpu"]


def _one_line(code, stdout, stderr, said: str) -> None:
    assert code == 2 and stdout == "" and len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith("online_dpo: ") and said in stderr, stderr


def test_an_out_folder_that_cannot_be_made_is_one_line_before_the_checkpoint_loads(example, tmp_path):
    """The checkpoint does not exist: the --out problem is said first, not after minutes of loading."""
    suite = _suite(tmp_path / "s.yaml", tmp_path / "no_checkpoint")
    (tmp_path / "a_file").write_text("")
    _one_line(*_main(example, [suite, "--out", tmp_path / "a_file" / "out"]),
              f"cannot make the --out folder {tmp_path / 'a_file' / 'out'}: Not a directory; give a writable one")
    _one_line(*_main(example, [suite, "--out", tmp_path / "a_file"]),
              f"--out {tmp_path / 'a_file'} is a file; the loop writes its rounds into a folder")


def test_a_checkpoint_folder_missing_or_without_its_tokenizer_is_one_line(example, start_policy, tmp_path):
    suite = _suite(tmp_path / "s.yaml", tmp_path / "gone")
    _one_line(*_main(example, [suite, "--out", tmp_path / "out1", "--device", "cpu"]),
              f"the suites' model.name {tmp_path / 'gone'} is no checkpoint folder (it does not exist)")
    # transformers would build an empty tokenizer from config.json alone, and the loop sample nonsense
    start_policy[0].save_pretrained(tmp_path / "weights_only")
    suite = _suite(tmp_path / "s.yaml", tmp_path / "weights_only")
    _one_line(*_main(example, [suite, "--out", tmp_path / "out2", "--device", "cpu"]),
              f"the checkpoint folder {tmp_path / 'weights_only'} has no tokenizer")


def test_suites_with_different_betas_are_one_line(example, tmp_path):
    """DPOTrainer trains with one beta; a suite whose margins use another is not judged by it."""
    first = _suite(tmp_path / "a.yaml", tmp_path / "ckpt")
    doc = yaml.safe_load(first.read_text())
    doc.update(suite="other")
    doc["dpo"]["beta"] = 0.5
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(doc))
    _one_line(*_main(example, [first, tmp_path / "b.yaml", "--out", tmp_path / "out"]),
              f"the suites have different dpo.beta ({first}: 0.1, {tmp_path / 'b.yaml'}: 0.5); DPOTrainer trains "
              "with one: give the suites one dpo.beta")


def test_a_note_says_when_the_evals_margins_are_not_dpos_implicit_rewards(example, tmp_path):
    """A --beta other than the suite's, or the starting checkpoint as reference scored in another
    dtype than the policy trains in (round 0's margins are then not 0)."""
    from rlhf_eval import load_suite

    path = _suite(tmp_path / "s.yaml", tmp_path / "ckpt")
    suite = load_suite(path)
    name = str(tmp_path / "ckpt")
    assert example.margin_notes([suite], name, "float32", 0.1) == []
    assert example.margin_notes([suite], name, "bfloat16", 0.5) == [
        "note: suite yes_no: its margins use its dpo.beta 0.1, DPOTrainer trains with --beta 0.5: the eval's margins "
        "are not DPO's implicit rewards",
        "note: suite yes_no: its DPO reference (the starting checkpoint) is scored in float32, the policy trains in "
        "bfloat16: round 0's margins are not 0; set dpo.reference.dtype: bfloat16"]


def test_replay_with_suites_or_out_is_refused(example, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        example.main([str(tmp_path / "s.yaml"), "--replay", str(tmp_path)])
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "online_dpo.py: error: --replay OUT takes the suites and settings from OUT/loop.json: give no suite files "
        "or --out with it")


class _CtrlCAt(io.StringIO):
    """stdout that presses Ctrl-C (SIGINT to this process) as `line` is printed: the user
    stopping the loop at a known point, through Python's own SIGINT handling."""

    def __init__(self, line: str):
        super().__init__()
        self.line = line

    def write(self, text: str) -> int:
        written = super().write(text)
        if text.startswith(self.line):
            signal.raise_signal(signal.SIGINT)
        return written


def test_ctrl_c_mid_loop_says_what_is_kept_and_that_it_cannot_resume(example, start_policy, tmp_path,
                                                                     monkeypatch, capsys):
    """Stopped once round 1 has trained: round 0 is kept and replays (from any folder: loop.json
    names the suite by its absolute path), and the message does not ask to run the command again
    (the out folder is not empty then, and the trained weights are gone)."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is not Python's KeyboardInterrupt here")
    tiny_lm.save_checkpoint(tmp_path / "start", *start_policy)
    _suite(tmp_path / "yes_no.yaml", tmp_path / "start")
    monkeypatch.chdir(tmp_path)  # the suite given relative to the folder the loop runs in
    stdout = _CtrlCAt("round 1: DPOTrainer")
    monkeypatch.setattr(sys, "stdout", stdout)
    code = example.main(["yes_no.yaml", "--out", "out", "--learning-rate", "0.01", *map(str, ROUNDS_ARGS)])
    monkeypatch.undo()
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("online_dpo")]
    assert code == 130 and err == [
        "online_dpo: stopped on Ctrl-C in round 1; round 0 is in out/loop.json (--replay out replays it); the loop "
        "cannot resume (the trained policy was in memory only): run it again with a new --out"]
    loop = json.loads((tmp_path / "out" / "loop.json").read_text())
    assert [e["round"] for e in loop["rounds"]] == [0] and loop["stopped"] == "Ctrl-C in round 1"
    assert loop["suites"] == [str(tmp_path / "yes_no.yaml")]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, stdout, _ = _main(example, ["--replay", tmp_path / "out"])
    assert code == 0 and stdout.splitlines() == [
        f"round 0: replayed from {tmp_path}/out/round_0/cassettes: the same report"]


def test_bfloat16_weights_are_said_to_lose_adamws_small_updates(example, tmp_path):
    """The note comes before the checkpoint loads (here: before its absence is found)."""
    suite = _suite(tmp_path / "s.yaml", tmp_path / "gone")
    code, stdout, stderr = _main(example, [suite, "--out", tmp_path / "out", "--device", "cpu", "--dtype", "bfloat16"])
    assert code == 2 and "is no checkpoint folder" in stderr
    assert stdout.splitlines()[0] == (
        "note: --dtype bfloat16: the weights keep no AdamW update smaller than their bfloat16 precision (at "
        "--learning-rate 1e-06 nearly none); the float32 default trains in bfloat16 mixed precision on a GPU that "
        "has it")
