"""examples/online_dpo.py for 2 rounds on CPU, on a tiny GPT-2 built here (nothing is downloaded).

The starting policy is a one-layer GPT-2 over a word vocabulary, fitted in a few steps to answer a
yes/no question with "yes" or "no" half the time each, then EOS: its traces are verified right and
wrong, so each round has preference pairs for DPOTrainer and RewardTrainer."""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import shutil
from pathlib import Path

import pytest
import yaml

import tiny_lm
from rlhf_eval.compare import COMPARED_METRICS
from rlhf_eval.report import render_comparison
from rlhf_eval.report_model import Report

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "online_dpo.py"
QUESTIONS = [("fire", "is fire hot?", "yes"), ("ice", "is ice hot?", "no"), ("sky", "is the sky green?", "no")]


pytestmark = pytest.mark.usefixtures("hf_offline")


@pytest.fixture(scope="module", autouse=True)
def _libraries():
    """torch, transformers, trl and datasets load when these tests run, not while pytest collects."""
    global torch, transformers
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("trl")
    pytest.importorskip("datasets")
    pytest.importorskip("tokenizers")


@pytest.fixture(scope="module")
def example():
    """The script as a module: its `main(argv)` is what `python examples/online_dpo.py ARGS` runs."""
    spec = importlib.util.spec_from_file_location("online_dpo_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def start_policy():
    """(model, tokenizer): fitted on each question answered "yes" once and "no" once, so it says
    either about half the time and then stops."""
    words = ["yes", "no", "user:", "assistant:"] + [w for _, q, _ in QUESTIONS for w in q.split()]
    tok = tiny_lm.word_tokenizer(words)
    model = tiny_lm.trl_gpt2(tok)
    texts = [tok.apply_chat_template([{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                                     tokenize=False) for _, q, _ in QUESTIONS for a in ("yes", "no")]
    batch = tok(texts, add_special_tokens=False, padding=True, return_tensors="pt")
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(60):
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), tok


def _suite(path: Path, checkpoint: Path, questions=QUESTIONS) -> Path:
    doc = {
        "suite": "yes_no",
        "model": {"provider": "hf", "name": str(checkpoint), "temperature": 1.0, "max_output_tokens": 4},
        "samples": 6,
        "seed": 0,
        "prompt": [{"role": "user", "content": "{question}"}],
        "verifier": "exact",
        # the starting checkpoint as the reference: the eval's margins are DPO's implicit rewards
        "dpo": {"beta": 0.1, "reference": {"provider": "hf", "name": str(checkpoint)}},
        "questions": [{"id": i, "question": q, "answer": a} for i, q, a in questions],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _main(example, argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = example.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def loop(example, start_policy, tmp_path_factory):
    """Two rounds, one DPO and one RewardTrainer step each: (out folder, suite file, checkpoint, stdout)."""
    root = tmp_path_factory.mktemp("online_dpo")
    checkpoint = tiny_lm.save_checkpoint(root / "start", *start_policy)
    suite = _suite(root / "yes_no.yaml", checkpoint)
    code, stdout, stderr = _main(example, [
        suite, "--out", root / "out", "--rounds", 2, "--dpo-steps", 1, "--reward-steps", 1, "--batch-size", 4,
        "--learning-rate", 0.01, "--reward-learning-rate", 0.01, "--max-length", 64, "--device", "cpu"])
    assert code == 0 and "online_dpo:" not in stderr, stderr  # stderr has transformers' progress bars
    return root / "out", suite, checkpoint, stdout


def _loop_json(out: Path) -> dict:
    return json.loads((out / "loop.json").read_text())


def _report(out: Path, r: int) -> Report:
    return Report.model_validate_json((out / f"round_{r}" / "report.json").read_text())


def test_two_rounds_ran_each_with_its_report_cassettes_pairs_and_comparison(loop):
    out, _, _, stdout = loop
    rounds = _loop_json(out)["rounds"]
    assert [e["round"] for e in rounds] == [0, 1, 2] and _loop_json(out)["stopped"] is None
    for r in range(3):
        assert sorted(p.name for p in (out / f"round_{r}" / "cassettes" / "yes_no").iterdir()) == \
            ["fire.yaml", "ice.yaml", "sky.yaml"]
        assert (out / f"round_{r}" / "pairs" / "yes_no" / "dpo.jsonl").is_file()
        assert [q.error for q in _report(out, r).suites[0].questions] == [None] * 3
    assert _report(out, 0).comparison is None and not (out / "round_0" / "comparison.json").exists()
    for r in (1, 2):
        assert rounds[r]["comparison"] == [f"round_{r}/comparison.json", f"round_{r}/comparison.txt"]
        assert f"round {r} ({rounds[r]['model_version']}) against round {r - 1}:" in stdout
        pairs = rounds[r]["pairs"]["rows"]
        assert f"round {r}: DPOTrainer 1 step on the {pairs} distinct pairs of round {r - 1}" in stdout
    assert (out / "policy" / "config.json").is_file() and (out / "reward_model" / "config.json").is_file()


def test_each_comparison_is_the_two_reports_deltas(loop):
    out = loop[0]
    for r in (1, 2):
        before, after = _report(out, r - 1).suites[0].aggregates, _report(out, r).suites[0].aggregates
        data = json.loads((out / f"round_{r}" / "comparison.json").read_text())
        assert data == json.loads(_report(out, r).comparison.model_dump_json())
        assert data["baseline"] == f"round_{r - 1}"
        compared = data["suites"][0]["aggregates"]
        assert set(compared) == set(COMPARED_METRICS)
        for metric, change in compared.items():
            was, now = getattr(before, metric), getattr(after, metric)
            assert (change["baseline"], change["current"]) == pytest.approx((was, now))
            if was is not None and now is not None:
                assert change["delta"] == pytest.approx(now - was)
        assert (out / f"round_{r}" / "comparison.txt").read_text() == \
            render_comparison(_report(out, r).comparison) + "\n"


def test_every_round_replays_offline_to_the_same_report(example, loop):
    """With the starting checkpoint deleted: the cassettes answer every trace and every reference score."""
    from rlhf_eval import run_suites

    out, suite, checkpoint, _ = loop
    shutil.rmtree(checkpoint)
    for r in range(3):
        options = {"baseline": out / f"round_{r - 1}" / "report.json", "baseline_name": f"round_{r - 1}"} if r else {}
        again = run_suites([suite], cassette_dir=out / f"round_{r}" / "cassettes", **options).to_dict()
        written = json.loads((out / f"round_{r}" / "report.json").read_text())
        assert again.pop("provenance")["time"] and written.pop("provenance")
        assert again == written
    code, stdout, _ = _main(example, ["--replay", out])
    assert code == 0 and stdout.splitlines() == [
        f"round {r}: replayed from {out}/round_{r}/cassettes: the same report" for r in range(3)]

    written = (out / "round_1" / "report.json").read_text()
    edited = json.loads(written)
    edited["suites"][0]["aggregates"]["accuracy"] += 0.25
    (out / "round_1" / "report.json").write_text(json.dumps(edited))
    try:
        code, stdout, _ = _main(example, ["--replay", out])
    finally:
        (out / "round_1" / "report.json").write_text(written)
    assert code == 1 and stdout.splitlines()[1] == (f"round 1: replayed from {out}/round_1/cassettes: the report "
                                                    f"DIFFERS from {out}/round_1/report.json")


def test_the_policy_weights_changed_every_round(example, loop, start_policy):
    out = loop[0]
    versions = [e["model_version"] for e in _loop_json(out)["rounds"]]
    assert len(set(versions)) == 3
    for r, version in enumerate(versions):  # every trace of a round names the weights that sampled it
        assert {t.model_version for q in _report(out, r).suites[0].questions for t in q.traces} == {version}
    name = versions[0].rsplit("@", 1)[0]
    trained = transformers.AutoModelForCausalLM.from_pretrained(out / "policy")
    assert example.weights_version(name, start_policy[0]) == versions[0]
    assert example.weights_version(name, trained) == versions[2]
    start = start_policy[0].state_dict()
    assert any(not torch.equal(t, start[k]) for k, t in trained.state_dict().items())


def test_reward_trainer_took_one_step_on_each_rounds_pairs(loop):
    out = loop[0]
    for entry in _loop_json(out)["rounds"][1:]:
        r = entry["round"]
        pairs = (out / f"round_{r - 1}" / "pairs" / "yes_no" / "dpo.jsonl").read_text().splitlines()
        assert len(pairs) == entry["pairs"]["rows"] > 0
        assert entry["dpo"]["steps"] == entry["reward_model"]["steps"] == 1
        assert entry["dpo"]["train_rows"] == entry["reward_model"]["train_rows"] == len(pairs)
        losses = [e["loss"] for e in entry["reward_model"]["log"] if "loss" in e]
        assert len(losses) == 1 and losses[0] == losses[0]  # not NaN
    reward_model = transformers.AutoModelForSequenceClassification.from_pretrained(out / "reward_model")
    assert reward_model.config.num_labels == 1


def test_a_round_without_pairs_says_so_in_one_line_and_stops(example, start_policy, tmp_path):
    """Every answer is one the policy never says: all traces wrong, no pair, nothing to train."""
    checkpoint = tiny_lm.save_checkpoint(tmp_path / "start", *start_policy)
    suite = _suite(tmp_path / "never.yaml", checkpoint, [(i, q, "maybe") for i, q, _ in QUESTIONS])
    code, stdout, stderr = _main(example, [suite, "--out", tmp_path / "out", "--rounds", 2, "--dpo-steps", 1,
                                           "--reward-steps", 1, "--device", "cpu"])
    assert code == 0 and "online_dpo:" not in stderr
    said = [line for line in stdout.splitlines() if "no DPO step" in line]
    assert said == ["round 1: no DPO step: round 0 has no preference pairs: each of its 3 scored questions had "
                    "traces all correct or all not correct (more samples, a higher temperature or questions the "
                    "policy sometimes gets right give pairs); the loop stops after round 0"]
    loop = _loop_json(tmp_path / "out")
    assert [e["round"] for e in loop["rounds"]] == [0] and loop["stopped"] in said[0]
    assert not (tmp_path / "out" / "round_1").exists() and loop["reward_model"] is None


@pytest.mark.parametrize("problem", ["not hf", "out not empty"])
def test_bad_input_is_one_line(example, tmp_path, problem):
    suite = _suite(tmp_path / "s.yaml", tmp_path / "ckpt")
    out = tmp_path / "out"
    if problem == "not hf":
        suite.write_text(suite.read_text().replace("provider: hf\n  name", "provider: openai\n  name", 1))
    else:
        out.mkdir()
        (out / "x").write_text("")
    code, stdout, stderr = _main(example, [suite, "--out", out])
    assert code == 2 and stdout == "" and len(stderr.splitlines()) == 1
    assert ("needs provider: hf" if problem == "not hf" else "is not an empty folder") in stderr


def test_dpo_trainer_trains_on_the_rounds_pairs_against_the_start_as_the_eval_measures_them(loop):
    """TRL's first logged step of round r is computed before its update, on round r-1's pairs with
    round r-1's weights: the eval's numbers for those pairs. Round 1: the policy is its reference,
    every implicit reward 0. Round 2: TRL's rewards/* are the means over the distinct pairs of the
    eval's β·(logπ − logπ_ref), up to the end-of-turn token the chat template closes each answer
    with (TRL scores it, the eval scores the answer's tokens only)."""
    out = loop[0]
    rounds = _loop_json(out)["rounds"]
    first = rounds[1]["dpo"]["log"][0]
    assert (first["rewards/chosen"], first["rewards/rejected"], first["rewards/margins"]) == (0.0, 0.0, 0.0)
    assert first["loss"] == pytest.approx(0.6931, abs=1e-4)  # log 2: no preference yet

    pairs = [json.loads(line) for line in (out / "round_1" / "pairs" / "yes_no" / "dpo.jsonl").open()]
    beta = _loop_json(out)["beta"]
    assert beta == 0.1 and len(pairs) == rounds[2]["dpo"]["train_rows"]
    logged = rounds[2]["dpo"]["log"][0]

    def mean(values):
        return sum(values) / len(values)

    chosen = mean([beta * (p["chosen_logps"] - p["chosen_ref_logps"]) for p in pairs])
    rejected = mean([beta * (p["rejected_logps"] - p["rejected_ref_logps"]) for p in pairs])
    assert logged["rewards/chosen"] == pytest.approx(chosen, abs=1e-3)
    assert logged["rewards/rejected"] == pytest.approx(rejected, abs=1e-3)
    assert logged["rewards/margins"] == pytest.approx(mean([p["dpo_margin"] for p in pairs]), abs=1e-3)
    assert logged["rewards/accuracies"] == pytest.approx(mean([p["dpo_margin"] > 0 for p in pairs]))
    assert logged["rewards/margins"] != 0.0  # the weights did move in round 1
