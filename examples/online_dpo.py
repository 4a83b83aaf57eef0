#!/usr/bin/env python
"""Online DPO with a suite as the judge: sample → verify → pairs → DPOTrainer → re-evaluate → compare.

    python examples/online_dpo.py examples/online_dpo.yaml --out runs/online_dpo --rounds 3

The suite's `model` (`provider: hf`) names the starting checkpoint; it is loaded once and trained in
place. Round 0 samples the suite from it (the suite's k traces per question, verified, scored).
Each round r ≥ 1 then

1. takes the preference pairs of round r−1's report (verified-correct ≻ not correct, as
   `rlhf-eval export` writes them: `round_{r-1}/pairs/<suite>/dpo.jsonl`);
2. trains the policy on them with TRL's `DPOTrainer` (`--dpo-steps`; the reference model is the
   starting policy, as TRL's online DPO keeps it; `beta` is the suite's `dpo.beta`);
3. trains a reward model on the same pairs with TRL's `RewardTrainer` (`--reward-steps`; the
   distillation step: a scalar head on the starting checkpoint, carried from round to round);
4. samples the suite again from the updated policy — round r's report, whose pairs train round r+1;
5. compares round r's report with round r−1's (`rlhf_eval.compare`: deltas, their significance,
   answer pairs whose preference flipped, questions whose GRPO signal was lost or gained).

Every round samples with the suite's seeds, so the two reports compared differ only by the
weights. A round whose report has no pair (every question's traces all correct or all not correct)
gives DPO nothing to train on: the loop says so in one line and stops.

What it writes under `--out` (which must be empty or new):

    round_<r>/cassettes/    the round's traces; the report replays from them without the model
    round_<r>/report.json   the round's report (rounds ≥ 1: with its comparison to round r−1)
    round_<r>/comparison.json, comparison.txt   that comparison, as data and as printed
    round_<r>/pairs/        the round's export: dpo.jsonl (the next round's training pairs), sft, grpo
    round_<r>/dpo/, reward_model/   the trainers' output_dir (save_strategy "no": no checkpoint there)
    loop.json               per round: the policy's version, pair count, trainer logs, files
    policy/, reward_model/  the trained policy and reward model (save_pretrained), at the end

Each round's traces name the policy as `<model.name>@<sha256 of its weights, 12 hex>`, so the
comparison notes the change of weights. `--replay OUT` needs no checkpoint and no GPU: each
round's report is rebuilt from its cassettes and checked against the one written.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import sys
from pathlib import Path
from typing import Any, cast

from rlhf_eval import Backends, Report, RunError, Suite, SuiteError, load_suite, run_suites
from rlhf_eval.credentials import SecretInOutput, write_without_secrets
from rlhf_eval.export import export_report
from rlhf_eval.report import aligned, render_comparison
from rlhf_eval.rows import fmt

DTYPES = ("float32", "bfloat16")  # float16 needs loss scaling, which training a model loaded in it cannot do
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
NEEDS = "needs torch, transformers, trl and datasets: pip install 'rlhf-eval[hf,trl,datasets]'"


class LoopError(Exception):
    """Something that stops the loop before or between rounds; one line."""


class LoopInterrupted(KeyboardInterrupt):
    """Ctrl-C during the loop: which rounds finished and that it cannot resume; one line."""


# --------------------------------------------------------------------------------------- arguments

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="online_dpo.py", description="Online DPO judged by rlhf-eval suites: each round samples the "
        "suites from the current policy, trains TRL's DPOTrainer (and a RewardTrainer) on the verified "
        "preference pairs, re-evaluates and compares with the previous round.")
    p.add_argument("suites", nargs="*", metavar="SUITE.yaml",
                   help="suite files with model.provider hf, all naming the one starting checkpoint")
    p.add_argument("--out", type=Path, help="output folder (new or empty)")
    p.add_argument("--rounds", type=int, default=3, help="DPO rounds after round 0 (default 3)")
    p.add_argument("--dpo-steps", type=int, default=8, help="DPOTrainer optimizer steps per round (default 8)")
    p.add_argument("--reward-steps", type=int, default=8,
                   help="RewardTrainer optimizer steps per round on the same pairs; 0: no reward model (default 8)")
    p.add_argument("--batch-size", type=int, default=8, help="per_device_train_batch_size of both trainers")
    p.add_argument("--gradient-accumulation-steps", type=int, default=1)
    p.add_argument("--learning-rate", type=float, default=1e-6, help="DPOTrainer's (default 1e-6, DPOConfig's)")
    p.add_argument("--reward-learning-rate", type=float, default=1e-4,
                   help="RewardTrainer's (default 1e-4, RewardConfig's)")
    p.add_argument("--beta", type=float, default=None, help="DPO beta (default: the suites' dpo.beta)")
    p.add_argument("--max-length", type=int, default=1024, help="the trainers' max_length in tokens")
    p.add_argument("--device", default=None,
                   help="cuda or cpu (default: cuda when available); pick a GPU with CUDA_VISIBLE_DEVICES")
    p.add_argument("--dtype", choices=DTYPES, default="float32",
                   help="the policy's and reward model's weights (default float32; on a GPU that has bfloat16 the "
                   "trainers compute in it, mixed precision: bfloat16 weights lose AdamW's small updates)")
    p.add_argument("--sample-batch-size", type=int, default=None,
                   help="traces per forward pass while sampling (default: the suite's model.batch_size, else 8)")
    p.add_argument("--seed", type=int, default=0, help="the trainers' seed (sampling uses the suites' seeds)")
    p.add_argument("--replay", type=Path, metavar="OUT",
                   help="rebuild every round's report of an earlier loop from its cassettes and check it")
    args = p.parse_args(argv)
    if args.replay is None and (not args.suites or args.out is None):
        p.error("give the suite files and --out (or --replay OUT)")
    if args.replay is not None and (args.suites or args.out is not None):
        p.error("--replay OUT takes the suites and settings from OUT/loop.json: give no suite files or --out with it")
    for name in ("rounds", "dpo_steps", "batch_size", "gradient_accumulation_steps", "sample_batch_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.reward_steps < 0:
        p.error("--reward-steps must be 0 or more")
    return args


# ------------------------------------------------------------------------------------------ suites

def load_suites(paths: list[str]) -> tuple[list[Suite], str]:
    """The suites and the checkpoint they all sample (their `model.name`); LoopError otherwise."""
    suites = []
    for path in paths:
        try:
            suites.append(load_suite(path))
        except SuiteError as exc:
            raise LoopError(str(exc)) from None
    for s in suites:
        if s.spec.model.provider != "hf":
            raise LoopError(f"{s.path}: model.provider is {s.spec.model.provider!r}; the loop samples the policy it "
                            "trains in process, so it needs provider: hf (see README 'A local transformers policy')")
    names = sorted({s.spec.model.name for s in suites})
    if len(names) > 1:
        raise LoopError(f"the suites sample different models ({', '.join(names)}); the loop trains one policy: "
                        "give suites of one model.name")
    if len({s.spec.dpo.beta for s in suites}) > 1:  # DPOTrainer trains with one; each suite's margins use its own
        betas = ", ".join(f"{s.path}: {s.spec.dpo.beta:g}" for s in suites)
        raise LoopError(f"the suites have different dpo.beta ({betas}); DPOTrainer trains with one: give the suites "
                        "one dpo.beta")
    return suites, names[0]


def margin_notes(suites: list[Suite], name: str, dtype: str, beta: float) -> list[str]:
    """Why a suite's margins are not the implicit rewards DPOTrainer optimizes (policy and
    reference both in `dtype`, its `beta`): a `--beta` other than the suite's, or a reference that
    is the starting checkpoint scored in another dtype (round 0's margins are then not 0)."""
    notes = []
    for s in suites:
        ref = s.spec.dpo.reference
        if s.spec.dpo.beta != beta:
            notes.append(f"note: suite {s.name}: its margins use its dpo.beta {s.spec.dpo.beta:g}, DPOTrainer trains "
                         f"with --beta {beta:g}: the eval's margins are not DPO's implicit rewards")
        if ref != "none" and ref.provider == "hf" and ref.name == name and ref.dtype != dtype:
            notes.append(f"note: suite {s.name}: its DPO reference (the starting checkpoint) is scored in {ref.dtype}, "
                         f"the policy trains in {dtype}: round 0's margins are not 0; set dpo.reference.dtype: {dtype}")
    return notes


# ---------------------------------------------------------------------------------------- the model

def weights_version(name: str, model: Any) -> str:
    """`name@<12 hex>`: the sha256 of the model's state dict (names, dtypes and bytes), what changes
    when training changes a weight."""
    import torch

    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"{name}@{digest.hexdigest()[:12]}"


def load_policy(name: str, device: str, dtype: str):
    """(policy, tokenizer) from a checkpoint directory or hub id (downloaded if not cached)."""
    import torch
    import transformers

    folder = Path(name).expanduser()
    if folder.is_absolute() or name.startswith(".") or folder.is_dir():
        if not folder.is_dir():
            raise LoopError(f"the suites' model.name {name} is no checkpoint folder (it does not exist); give the "
                            "folder save_pretrained wrote, or a hub id")
        if not any((folder / f).is_file() for f in TOKENIZER_FILES):
            # transformers would build an empty tokenizer from config.json alone and sample nonsense
            raise LoopError(f"the checkpoint folder {name} has no tokenizer ({', '.join(TOKENIZER_FILES[:2])}); "
                            "save it there too: tokenizer.save_pretrained(folder)")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(name)
        model = transformers.AutoModelForCausalLM.from_pretrained(name, dtype=getattr(torch, dtype))
    except (OSError, ValueError) as exc:
        raise LoopError(f"could not load the policy {name}: {' '.join(str(exc).split())[:300]}") from None
    if tokenizer.pad_token is None:  # TRL's collators pad; the EOS is the customary pad token
        tokenizer.pad_token = tokenizer.eos_token
    return cast(Any, model).to(device), tokenizer


def load_reward_model(name: str, tokenizer, device: str, dtype: str, seed: int):
    """The starting checkpoint with a one-output classification head (RewardTrainer's model); the
    head is new, initialised from `seed`."""
    import torch
    import transformers

    torch.manual_seed(seed)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # "some weights were newly initialized": the head, as meant
    try:
        model = transformers.AutoModelForSequenceClassification.from_pretrained(name, num_labels=1,
                                                                                dtype=getattr(torch, dtype))
    finally:
        transformers.logging.set_verbosity(verbosity)
    if model.config.pad_token_id is None:  # the score is read at the last token that is not padding
        model.config.pad_token_id = tokenizer.pad_token_id
    return cast(Any, model).to(device)


# --------------------------------------------------------------------------------------- one round

def sample_round(paths: list[str], round_dir: Path, *, policy, tokenizer, version: str, batch_size: int | None,
                 previous: Path | None, scorers: dict[str, Backends]) -> Report:
    """Sample the suites from the live `policy`, recording into `round_dir/cassettes`; the report
    (compared with `previous`, a report file, when given) is written to `round_dir/report.json`."""
    from rlhf_eval.backends.hf_sampler import HFSampler

    def backends(suite: Suite, replay: bool, request_policy) -> Backends:
        usual = scorers.get(str(suite.path))
        if usual is None:
            usual = Backends.for_suite(suite, replay=replay, policy=request_policy)
            spec = suite.spec
            if all(c is None or c == "none" or c.provider == "hf" for c in (spec.model.scorer, spec.dpo.reference)):
                # Local scorers (the DPO reference: the starting checkpoint) load once, not each round. One
                # that sends requests is built anew: it holds its run's request policy, stopped as the run ends.
                scorers[str(suite.path)] = usual
        sampler = HFSampler(suite.spec.model, replay=replay, policy=request_policy, model=policy,
                            tokenizer=tokenizer, batch_size=batch_size, model_version=version)
        return dataclasses.replace(usual, sampler=sampler)

    options: dict[str, Any] = {"report_json": round_dir / "report.json"}
    if previous is not None:
        options.update(baseline=previous, baseline_name=previous.parent.name)
    try:
        # One question at a time: the questions would share one model, whose train/eval mode the
        # sampler switches per call (a thread pool would race on it, and gains nothing on one device).
        return run_suites(paths, record_mode="once", cassette_dir=round_dir / "cassettes", backends=backends,
                          concurrency=1, **options)
    except (RunError, SuiteError) as exc:
        raise LoopError(str(exc)) from None


def pair_rows(report: Report, pairs_dir: Path) -> list[dict[str, Any]]:
    """Export the report under `pairs_dir` and read back every suite's DPO pairs (TRL's
    prompt/chosen/rejected columns): what the trainers take is the file a user can inspect."""
    try:
        export_report(report, pairs_dir)
    except (OSError, ValueError, SecretInOutput) as exc:  # a full disk; a row holding a secret of the run
        raise LoopError(f"could not export the pairs to {pairs_dir}: {exc}") from None
    rows = []
    for suite in report.suites:
        with open(pairs_dir / suite.name / "dpo.jsonl", encoding="utf-8") as f:
            rows += [{k: row[k] for k in ("prompt", "chosen", "rejected")} for row in map(json.loads, f)]
    return rows


def no_pairs_reason(report: Report) -> str:
    scored = sum(q.metrics is not None for s in report.suites for q in s.questions)
    total = sum(len(s.questions) for s in report.suites)
    if not scored:
        return f"none of its {total} questions was scored (see the errors in its report)"
    return (f"each of its {scored} scored question{'s' * (scored != 1)} had traces all correct or all not correct "
            "(more samples, a higher temperature or questions the policy sometimes gets right give pairs)")


def train_args(config_class, out: Path, args: argparse.Namespace, *, steps: int, learning_rate: float, **kw):
    return config_class(output_dir=str(out), max_steps=steps, per_device_train_batch_size=args.batch_size,
                        gradient_accumulation_steps=args.gradient_accumulation_steps, learning_rate=learning_rate,
                        max_length=args.max_length, logging_steps=1, save_strategy="no", report_to="none",
                        use_cpu=args.device == "cpu", bf16=args.bf16, seed=args.seed, **kw)


def train_dpo(policy, ref_model, tokenizer, rows, round_dir: Path, args, beta: float) -> dict[str, Any]:
    import datasets
    import trl

    trainer = trl.DPOTrainer(model=policy, ref_model=ref_model, processing_class=tokenizer,
                             train_dataset=datasets.Dataset.from_list(rows),
                             args=train_args(trl.DPOConfig, round_dir / "dpo", args, steps=args.dpo_steps,
                                             learning_rate=args.learning_rate, beta=beta))
    trainer.train()
    return {"steps": trainer.state.global_step, "train_rows": len(cast(Any, trainer.train_dataset)),
            "log": trainer.state.log_history}


def train_reward_model(reward_model, tokenizer, rows, round_dir: Path, args) -> dict[str, Any]:
    import datasets
    import trl

    trainer = trl.RewardTrainer(model=reward_model, processing_class=tokenizer,
                                train_dataset=datasets.Dataset.from_list(rows),
                                args=train_args(trl.RewardConfig, round_dir / "reward_model", args,
                                                steps=args.reward_steps, learning_rate=args.reward_learning_rate))
    trainer.train()
    return {"steps": trainer.state.global_step, "train_rows": len(cast(Any, trainer.train_dataset)),
            "log": trainer.state.log_history}


def _last(log: list[dict], key: str) -> float | None:
    values = [e[key] for e in log if key in e]
    return values[-1] if values else None


def _first(log: list[dict], key: str) -> float | None:
    values = [e[key] for e in log if key in e]
    return values[0] if values else None


def training_line(r: int, n_pairs: int, dpo: dict, reward: dict | None) -> str:
    line = (f"round {r}: DPOTrainer {dpo['steps']} step{'s' * (dpo['steps'] != 1)} on the {n_pairs} distinct pairs "
            f"of round {r - 1} (loss {fmt(_first(dpo['log'], 'loss'))} → {fmt(_last(dpo['log'], 'loss'))}, "
            f"rewards/accuracies {fmt(_last(dpo['log'], 'rewards/accuracies'))})")
    if reward is not None:
        line += (f"; RewardTrainer {reward['steps']} step{'s' * (reward['steps'] != 1)} "
                 f"(loss {fmt(_last(reward['log'], 'loss'))}, accuracy {fmt(_last(reward['log'], 'accuracy'))})")
    return line


def write_comparison(report: Report, round_dir: Path) -> list[Path]:
    """The report's comparison with the previous round as JSON and as the text printed."""
    comparison = report.comparison
    assert comparison is not None
    data, text = round_dir / "comparison.json", round_dir / "comparison.txt"
    write_without_secrets(data, json.dumps(comparison.model_dump(mode="json"), indent=1, ensure_ascii=False) + "\n")
    write_without_secrets(text, render_comparison(comparison) + "\n")
    return [data, text]


# ------------------------------------------------------------------------------------------ the loop

def rounds_table(rounds: list[dict[str, Any]]) -> list[str]:
    """One row per round and suite: the policy's version and the suite's signal."""
    rows = []
    for entry in rounds:
        for name, a in entry["suites"].items():
            rows.append([str(entry["round"]), name, entry["model_version"].rsplit("@", 1)[-1], fmt(a["accuracy"]),
                         fmt(a["mean_margin"]), fmt(a["reward_accuracy"]), fmt(a["frac_zero_spread"]),
                         str(a["pairs"])])
    return aligned(["round", "suite", "weights", "accuracy", "mean margin", "reward acc", "zero spread", "pairs"],
                   rows, left=(1, 2))


def _suite_signal(report: Report) -> dict[str, dict[str, Any]]:
    out = {}
    for s in report.suites:
        a = s.aggregates
        out[s.name] = {"accuracy": a.accuracy, "mean_margin": a.mean_margin, "reward_accuracy": a.reward_accuracy,
                       "frac_zero_spread": a.frac_zero_spread, "pairs": a.pairs}
    return out


def run_loop(args: argparse.Namespace) -> int:
    suites, name = load_suites(args.suites)
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise LoopError(f"--out {out} is a file; the loop writes its rounds into a folder: give a new or empty one")
    if out.exists() and any(out.iterdir()):
        raise LoopError(f"{out} is not an empty folder; the loop writes its rounds into a new one: give another --out")
    try:
        import datasets  # noqa: F401 - checked here, used by the trainers
        import torch
        import trl  # noqa: F401
    except ImportError as exc:
        raise LoopError(f"the online loop {NEEDS} ({exc.name} is missing)") from None
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    # float32 weights with bfloat16 compute where the GPU has it (the trainers' bf16=True autocast):
    # AdamW's step at a DPO learning rate (~1e-6) is far below bfloat16's precision at a weight's
    # size (~1e-4 at 0.03), so bfloat16 weights drop nearly every update.
    args.bf16 = args.dtype == "bfloat16" or (args.device.startswith("cuda") and torch.cuda.is_bf16_supported())
    if args.dtype == "bfloat16":
        print("note: --dtype bfloat16: the weights keep no AdamW update smaller than their bfloat16 precision "
              f"(at --learning-rate {args.learning_rate:g} nearly none); the float32 default trains in bfloat16 mixed "
              "precision on a GPU that has it")
    beta = args.beta if args.beta is not None else suites[0].spec.dpo.beta
    paths = [str(Path(s.path).resolve()) for s in suites]  # loop.json's: --replay works from any folder
    try:  # before the checkpoint loads: a folder that cannot be made is said now, not after minutes
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LoopError(f"cannot make the --out folder {out}: {exc.strerror or exc}; give a writable one") from None
    for note in margin_notes(suites, name, args.dtype, beta):
        print(note)

    policy, tokenizer = load_policy(name, args.device, args.dtype)
    ref_model = copy.deepcopy(policy).eval().requires_grad_(False)  # DPO's reference: the starting policy
    reward_model = None
    scorers: dict[str, Backends] = {}
    loop: dict[str, Any] = {"suites": paths, "model": name, "device": args.device, "dtype": args.dtype,
                            "mixed_precision": "bf16" if args.bf16 and args.dtype != "bfloat16" else None, "beta": beta,
                            "rounds": [], "stopped": None}

    def write_loop() -> None:
        write_without_secrets(out / "loop.json", json.dumps(loop, indent=1, ensure_ascii=False, default=str) + "\n")

    previous: Path | None = None
    last_report: Report | None = None
    rows: list[dict[str, Any]] = []
    try:
        for r in range(args.rounds + 1):
            round_dir = out / f"round_{r}"
            entry: dict[str, Any] = {"round": r}
            if last_report is not None:
                if not rows:
                    loop["stopped"] = f"round {r - 1} has no preference pairs: {no_pairs_reason(last_report)}"
                    print(f"round {r}: no DPO step: {loop['stopped']}; the loop stops after round {r - 1}")
                    break
                entry["pairs"] = {"from": f"round_{r - 1}/pairs", "rows": len(rows)}
                entry["dpo"] = train_dpo(policy, ref_model, tokenizer, rows, round_dir, args, beta)
                if args.reward_steps:
                    if reward_model is None:
                        reward_model = load_reward_model(name, tokenizer, args.device, args.dtype, args.seed)
                    entry["reward_model"] = train_reward_model(reward_model, tokenizer, rows, round_dir, args)
                print(training_line(r, len(rows), entry["dpo"], entry.get("reward_model")))
            version = weights_version(name, policy)
            report = sample_round(paths, round_dir, policy=policy, tokenizer=tokenizer, version=version,
                                  batch_size=args.sample_batch_size, previous=previous, scorers=scorers)
            rows = pair_rows(report, round_dir / "pairs")  # the next round's training data
            entry.update(model_version=version, report=f"round_{r}/report.json", cassettes=f"round_{r}/cassettes",
                         suites=_suite_signal(report), distinct_pairs=len(rows))
            if report.comparison is not None:
                entry["comparison"] = [str(p.relative_to(out)) for p in write_comparison(report, round_dir)]
                print(f"round {r} ({version}) against round {r - 1}:")
                print(render_comparison(report.comparison))
            else:
                print(f"round {r} ({version}): sampled the starting policy")
            loop["rounds"].append(entry)
            write_loop()
            previous, last_report = round_dir / "report.json", report
    except KeyboardInterrupt:
        # The trained weights live in memory only: there is nothing to resume from.
        r = len(loop["rounds"])
        loop["stopped"] = f"Ctrl-C in round {r}"
        write_loop()
        done = ("no round finished" if not r else
                f"round{'s 0-' if r > 1 else ' '}{r - 1} {'are' if r > 1 else 'is'} in {out}/loop.json (--replay {out} "
                "replays it)")
        raise LoopInterrupted(f"stopped on Ctrl-C in round {r}; {done}; the loop cannot resume (the trained policy "
                              "was in memory only): run it again with a new --out") from None

    policy.save_pretrained(out / "policy")
    tokenizer.save_pretrained(out / "policy")
    if reward_model is not None:
        reward_model.save_pretrained(out / "reward_model")
        tokenizer.save_pretrained(out / "reward_model")
    loop.update(policy="policy", reward_model="reward_model" if reward_model is not None else None)
    write_loop()
    print("\n".join(rounds_table(loop["rounds"])))
    print(f"online_dpo: wrote {out}/ (loop.json; each round_<r>/ holds its report, cassettes, pairs and comparison)")
    return 0


# --------------------------------------------------------------------------------------------- replay

def replay(out: Path) -> int:
    """Rebuild each round's report from its cassettes (no checkpoint is loaded) and check it equals
    the report written, bar provenance and the suite files' paths (shown relative to the folder
    each ran in); 1 when one differs."""
    from rlhf_eval.backends.hf_sampler import HFSampler

    try:
        loop = json.loads((out / "loop.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LoopError(f"{out / 'loop.json'}: {exc}; --replay takes the --out folder of a loop") from None

    def backends(suite: Suite, replay: bool, request_policy) -> Backends:
        # a live policy in bfloat16 recorded `dtype: bfloat16` in its requests: replay asks the same
        usual = Backends.for_suite(suite, replay=True, policy=request_policy)
        return dataclasses.replace(usual, sampler=HFSampler(suite.spec.model, replay=True, policy=request_policy,
                                                            dtype=loop["dtype"]))

    same = True
    for entry in loop["rounds"]:
        r = entry["round"]
        options: dict[str, Any] = {}
        if r:
            options.update(baseline=out / f"round_{r - 1}" / "report.json", baseline_name=f"round_{r - 1}")
        try:
            again = run_suites(loop["suites"], cassette_dir=out / entry["cassettes"], backends=backends, **options)
        except (RunError, SuiteError) as exc:
            raise LoopError(str(exc)) from None
        written = json.loads((out / entry["report"]).read_text(encoding="utf-8"))
        rebuilt = json.loads(again.to_json())
        for data in (written, rebuilt):
            data.pop("provenance", None)  # when and by which command: not a number of the report
            for suite in data.get("suites", []):
                suite.pop("path", None)  # the suite file as seen from the folder run in, which may differ
        if rebuilt == written:
            print(f"round {r}: replayed from {out / entry['cassettes']}: the same report")
        else:
            same = False
            print(f"round {r}: replayed from {out / entry['cassettes']}: the report DIFFERS from "
                  f"{out / entry['report']}")
    return 0 if same else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return replay(args.replay) if args.replay is not None else run_loop(args)
    except LoopError as exc:
        print(f"online_dpo: {exc}", file=sys.stderr)
        return 2
    except LoopInterrupted as exc:
        print(f"online_dpo: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # in --replay, or before the loop began: nothing was written
        print("online_dpo: stopped on Ctrl-C", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
