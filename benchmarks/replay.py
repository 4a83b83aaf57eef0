"""Replay speed and memory: `pytest <suites>` against a bare vcrpy + google-genai loop, plus a profile.

    python benchmarks/replay.py                      # the shipped suites/ and cassettes/
    python benchmarks/replay.py /tmp/rlhf-bench      # a suite made by benchmarks/make_suite.py
    python benchmarks/replay.py --suite-dir S --cassette-dir C [--repeat 3] [--profile-questions 200]

(a) harness: `python -m pytest <suite dir> -q -p no:cacheprovider --rlhf-cassette-dir=<dir>` in a
    subprocess, offline (no key, base URL where nothing listens); wall time from spawn to exit,
    and the peak RSS of that process (os.wait4 → ru_maxrss).
(b) baseline: a subprocess running a bare loop — for each question, `vcr.use_cassette` (vcrpy's own
    JSON serializer, match on method + path + body, record mode none) around the k
    `client.models.generate_content(...)` calls of google-genai with its typed response (as a
    hand-written eval loop would: `response.text`, the logprob sum) — no verification, no metrics,
    no report. Its prompts and configs are computed by this script beforehand, so it does no
    suite parsing. Wall time from spawn to exit (same terms as (a)) and the time of the loop alone.
(b') the same bare loop reading the raw JSON body (`should_return_http_response`, `json.loads`)
    instead of the typed response, as the harness does: the least a vcrpy + google-genai
    replay, to see the harness's own overhead (`--baseline typed|raw|both`, default both).
    `--without-orjson` also times (a) with orjson hidden (rlhf-eval then parses with `json`).
(f) floor: a subprocess that only does what any replay must: loads the suites (their questions and
    references), reads and parses every cassette and every response body in it (orjson when
    installed, as the harness), verifies every trace with the suite's verifier (`rlhf_eval.verify`)
    and computes every metric of the report in numpy (per question: rewards, accuracy, pass@k,
    all preference pairs, GRPO advantages and spread, DPO margins, reward accuracy, DPO loss,
    maj@k and the 95% intervals; per suite: the cluster-bootstrap intervals) — no pytest, no HTTP,
    no SDK, no vcrpy, no report written. Timed as (a): spawn to exit, peak RSS. harness / floor is
    the target of issue 12 (<= 5). `--baseline none` skips (b), which takes minutes.
(c) profile: cProfile of an in-process `pytest.main` over the first N questions, time grouped by
    what it is spent on, and the top functions by cumulative and by own time.

Prints ms per question, the ratios harness / baseline and harness / floor, and the peak RSS.
Every run of (a), (b) and (f) alternates within one repeat, so a ratio compares runs made under
the same load; compare ratios from one invocation, not across them.
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OFFLINE_URL = "http://127.0.0.1:9"  # nothing listens there: a request that escapes vcrpy fails


def offline_env() -> dict[str, str]:
    """No key, a base URL where nothing listens, and bytecode cached as usual (a machine that sets
    PYTHONDONTWRITEBYTECODE would compile every module of the product again in every run)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "PYTHONDONTWRITEBYTECODE")}
    env["RLHF_EVAL_GEMINI_BASE_URL"] = OFFLINE_URL
    return env


# CPU seconds (user + system) of each measured process, by command kind: on a machine others
# load, wall time swings with them while CPU time mostly does not, so ratios are shown for both.
CPU: dict[str, list[float]] = {}


def run_measured(cmd: list[str], cwd: Path, env: dict, kind: str = "") -> tuple[float, float, int, str]:
    """Run `cmd`; (wall seconds, peak RSS in MB of that process, exit code, its output). Its CPU
    seconds are appended to CPU[kind]."""
    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        CPU.setdefault(kind, []).append(usage.ru_utime + usage.ru_stime)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return seconds, usage.ru_maxrss / 1024, proc.returncode, out.read()


def suites_in(suite_dir: Path) -> list:
    """The suites in `suite_dir`: every .yaml/.yml file directly in it (a suite folder holds only
    suites; their data and cassettes live in folders of their own), or the file itself."""
    from rlhf_eval import load_suite

    paths = [suite_dir] if suite_dir.is_file() else sorted(suite_dir.glob("*.y*ml"))
    return [load_suite(p) for p in paths]


# ---------------------------------------------------------------------------------------------
# (a) the harness
# ---------------------------------------------------------------------------------------------

def harness_cmd(suite_dir: Path, cassette_dir: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", str(suite_dir), "-q", "-p", "no:cacheprovider",
            f"--rlhf-cassette-dir={cassette_dir}", *extra]


def run_harness(suite_dir: Path, cassette_dir: Path, extra: list[str], *, without_orjson: bool = False
                ) -> tuple[float, float]:
    cwd = suite_dir.parent if suite_dir.is_dir() else suite_dir.parent.parent
    env = offline_env()
    with tempfile.TemporaryDirectory(prefix="rlhf-no-orjson-") as blocker:
        if without_orjson:  # a module named orjson that fails to import shadows the real one
            Path(blocker, "orjson.py").write_text('raise ImportError("blocked by benchmarks/replay.py")\n')
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [blocker, env.get("PYTHONPATH")]))
        seconds, rss, code, output = run_measured(harness_cmd(suite_dir, cassette_dir, extra), cwd, env,
                                                   "harness-no-orjson" if without_orjson else "harness")
    if code != 0:
        sys.stdout.write(output[-4000:])
        raise SystemExit(f"pytest exited {code}")
    return seconds, rss


# ---------------------------------------------------------------------------------------------
# (b) the baseline: bare vcrpy + google-genai, typed responses
# ---------------------------------------------------------------------------------------------

def plain_gemini(suite) -> bool:
    """A suite the bare loops and the floor replay: Gemini's Developer API, one candidate a
    request, no scorer and no DPO reference (the others' requests are not generateContent alone)."""
    m = suite.spec.model
    return (m.provider == "gemini" and m.vertex is None and m.candidates_per_request == 1 and m.scorer is None
            and suite.spec.dpo.reference == "none")


def baseline_plan(suites: list, cassette_dir: Path) -> list[dict]:
    """What the bare loop sends: per question its cassette, model, prompt and generation configs."""
    from rlhf_eval.backends.gemini import logprobs_supported

    plan = []
    for suite in suites:
        m = suite.spec.model
        if not plain_gemini(suite):
            print(f"baseline and floor: skipping suite {suite.name} (only plain Gemini suites are replayed "
                  "by the bare loop and the floor)")
            continue
        logprobs = bool(m.logprobs and logprobs_supported(m.name, vertex=False) is not False)
        config = {"system_instruction": m.system_instruction, "temperature": m.temperature, "top_p": m.top_p,
                  "top_k": m.top_k, "max_output_tokens": m.max_output_tokens,
                  "response_logprobs": True if logprobs else None,
                  "logprobs": m.top_logprobs if logprobs else None}
        if m.thinking_budget is not None:
            config["thinking_config"] = {"thinking_budget": m.thinking_budget}
        for q in suite.questions:
            plan.append({"cassette": str(cassette_dir / suite.name / f"{q.id}.yaml"), "model": m.name,
                         "prompt": suite.render_prompt(q), "config": config,
                         "seeds": [suite.spec.seed + i for i in range(suite.spec.samples)]})
    return plan


def baseline_child(plan_path: str, mode: str) -> None:
    """The bare loop (runs in its own process; imports nothing from rlhf_eval).

    mode "typed": google-genai's pydantic response, as a hand-written loop would use it;
    mode "raw": the raw HTTP body (`should_return_http_response`) parsed with `json`, as the
    harness does — the least any vcrpy + google-genai replay does."""
    started = time.perf_counter()
    import vcr
    from google import genai
    from google.genai import types

    plan = json.loads(Path(plan_path).read_text(encoding="utf-8"))
    client = genai.Client(api_key="bench", http_options=types.HttpOptions(base_url=OFFLINE_URL,
                                                                           api_version="v1beta"))
    my_vcr = vcr.VCR(record_mode="none", serializer="json", match_on=["method", "path", "body"])
    imported = time.perf_counter()
    requests = 0
    checksum = 0.0
    for q in plan:
        with my_vcr.use_cassette(q["cassette"]):
            for seed in q["seeds"]:
                config = types.GenerateContentConfig(seed=seed, should_return_http_response=mode == "raw" or None,
                                                     **q["config"])
                response = client.models.generate_content(model=q["model"], contents=q["prompt"], config=config)
                if mode == "raw":
                    cand = json.loads(response.sdk_http_response.body)["candidates"][0]
                    text = "".join(p.get("text", "") for p in cand["content"]["parts"])
                    checksum += (cand.get("logprobsResult") or {}).get("logProbabilitySum") or 0.0
                else:
                    text = response.text or ""
                    cand = response.candidates[0]
                    if cand.logprobs_result is not None and cand.logprobs_result.log_probability_sum is not None:
                        checksum += cand.logprobs_result.log_probability_sum
                checksum += len(text)
                requests += 1
    done = time.perf_counter()
    print(json.dumps({"questions": len(plan), "requests": requests, "import_s": imported - started,
                      "loop_s": done - imported, "checksum": checksum}))


def run_baseline(plan: list[dict], mode: str) -> tuple[float, float, dict]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(plan, f)
    try:
        seconds, rss, code, output = run_measured(
            [sys.executable, str(Path(__file__).resolve()), "--baseline-child", f.name, "--baseline-mode", mode],
            REPO, offline_env(), mode)
    finally:
        os.unlink(f.name)
    if code != 0:
        sys.stdout.write(output[-4000:])
        raise SystemExit(f"baseline exited {code}")
    return seconds, rss, json.loads(output.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# (f) the floor: read + parse every cassette, verify, metrics in numpy
# ---------------------------------------------------------------------------------------------

def floor_child(suite_dir: str, cassette_dir: str) -> None:
    """The floor (runs in its own process): the work no replay can skip, with none of the machinery.

    Per question: read its cassette, parse it and each response body once, take each candidate's
    text and sum its chosen-token log-probabilities, verify the text against the reference with
    the suite's verifier, then every metric the report gives a question, in numpy: rewards,
    accuracy, pass@k (and pass@1..k, pass^1..k), unique traces, all preference pairs, GRPO
    advantages and spread, DPO margins, reward accuracy, DPO loss, maj@k (answer classes under
    the verifier's equivalence) and the 95% intervals (Wilson for accuracy and reward accuracy,
    the seeded bootstrap of `rlhf_eval.stats` for spread and mean margin). Per suite: the
    cluster-bootstrap intervals of its aggregates (`rlhf_eval.stats.cluster_bootstrap_intervals`,
    as the report). Until 2026-11-30 the floor stopped before maj@k and the
    intervals. Prints a JSON line with timings and checksums (mean accuracy, mean margin, mean
    maj@k, the suite interval of accuracy) so the work cannot be optimised away."""
    started = time.perf_counter()
    import math

    import numpy as np
    try:
        import orjson
        loads = orjson.loads
    except ImportError:  # the harness parses with `json` then too
        loads = json.loads
    from rlhf_eval import stats
    from rlhf_eval.objectives import pass_curves, reward_spread
    from rlhf_eval.suite import load_suite
    from rlhf_eval.verify import equivalent, verify

    root, cassettes = Path(suite_dir), Path(cassette_dir)
    paths = [root] if root.is_file() else sorted(root.glob("*.y*ml"))
    suites = [load_suite(p) for p in paths]
    loaded = time.perf_counter()
    accuracies, margins_sum, margins_n, requests, questions, majorities = [], 0.0, 0, 0, 0, []
    suite_accuracy_interval = None
    for suite in suites:
        per_question: list[tuple[int, int, float, np.ndarray]] = []  # traces, correct, spread, margins
        spec = suite.spec
        if not plain_gemini(suite):
            continue
        name, table, beta, eps = spec.verifier.name, spec.rewards, spec.dpo.beta, spec.grpo.epsilon
        for q in suite.questions:
            data = loads((cassettes / suite.name / f"{q.id}.yaml").read_bytes())
            statuses, logps, tokens, answers, texts = [], [], [], [], []
            for interaction in data["interactions"]:
                body = loads(interaction["response"]["body"]["string"])
                if not body.get("candidates"):  # a blocked prompt: no answer, no logprob
                    statuses.append("blocked")
                    answers.append(None)
                    logps.append(math.nan)
                    tokens.append(0)
                for cand in body.get("candidates") or ():
                    parts = (cand.get("content") or {}).get("parts") or ()
                    text = "".join(part.get("text", "") for part in parts)
                    texts.append(text)
                    chosen = (cand.get("logprobsResult") or {}).get("chosenCandidates") or ()
                    logps.append(sum([c.get("logProbability", 0.0) for c in chosen]) if chosen else math.nan)
                    tokens.append(len(chosen))
                    verdict = verify(text, q.answer, name, **q.verifier_options)
                    statuses.append(verdict.status)
                    answers.append(verdict.extracted if verdict.status in ("correct", "incorrect") else None)
                requests += 1
            k = len(statuses)
            rewards = np.array([getattr(table, s) for s in statuses], dtype=float)
            correct = np.array([s == "correct" for s in statuses], dtype=bool)
            logp = np.array(logps, dtype=float)
            c = int(correct.sum())
            accuracy = c / k
            pass_at_k = 1.0 if c else 0.0  # n = k: pass@k is whether any trace is correct
            spread = float(rewards.std())
            advantages = (rewards - rewards.mean()) / (rewards.std() + eps)
            winners, losers = np.meshgrid(np.flatnonzero(correct), np.flatnonzero(~correct), indexing="ij")
            winners, losers = winners.ravel(), losers.ravel()
            scored = ~np.isnan(logp[winners]) & ~np.isnan(logp[losers])  # pairs with a logp on both sides
            margins = beta * (logp[winners[scored]] - logp[losers[scored]])
            metrics = {"accuracy": accuracy, "pass_at_k": pass_at_k, "pairs": len(winners), "spread": spread,
                       "nonzero_advantages": int((np.abs(advantages) > 0).sum()),
                       "mean_tokens": float(np.mean(tokens)),
                       "mean_logp": None if np.isnan(logp).all() else float(np.nanmean(logp))}
            if len(margins):
                metrics.update(mean_margin=float(margins.mean()), reward_accuracy=float((margins > 0).mean()),
                               dpo_loss=float(np.logaddexp(0.0, -margins).mean()))
                margins_sum += float(margins.sum())
                margins_n += len(margins)
            same = functools.partial(equivalent, verifier=name, **q.verifier_options)
            classes = stats.answer_classes(answers, same)
            metrics["maj_at_k"] = stats.maj_at_k(classes, correct, k)
            metrics["pass_at"], metrics["pass_hat"] = pass_curves(k, c)
            metrics["unique_traces"] = len(set(texts))
            metrics["intervals"] = {"accuracy": stats.wilson_interval(c, k),
                                    "spread": stats.bootstrap_interval(rewards, "std")}
            if len(margins):
                metrics["intervals"].update(
                    reward_accuracy=stats.wilson_interval(int((margins > 0).sum()), len(margins)),
                    mean_margin=stats.bootstrap_interval(margins, "mean"))
            per_question.append((k, c, reward_spread(rewards), margins))
            accuracies.append(metrics["accuracy"])
            majorities.append(metrics["maj_at_k"])
            questions += 1
        if per_question:
            n_traces, n_correct, spreads, suite_margins = zip(*per_question)
            suite_accuracy_interval = stats.cluster_bootstrap_intervals(
                n_traces, n_correct, spreads, suite_margins,
                with_margins=any(len(m) for m in suite_margins))["accuracy"]
    done = time.perf_counter()
    print(json.dumps({"questions": questions, "requests": requests, "import_s": loaded - started,
                      "loop_s": done - loaded, "mean_accuracy": sum(accuracies) / max(1, len(accuracies)),
                      "mean_margin": margins_sum / max(1, margins_n),
                      "mean_maj_at_k": sum(majorities) / max(1, len(majorities)),
                      "suite_accuracy_interval": suite_accuracy_interval}))


def run_floor(suite_dir: Path, cassette_dir: Path) -> tuple[float, float, dict]:
    seconds, rss, code, output = run_measured(
        [sys.executable, str(Path(__file__).resolve()), "--floor-child", str(suite_dir),
         "--floor-cassettes", str(cassette_dir)], REPO, offline_env(), "floor")
    if code != 0:
        sys.stdout.write(output[-4000:])
        raise SystemExit(f"floor exited {code}")
    return seconds, rss, json.loads(output.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# (c) the profile
# ---------------------------------------------------------------------------------------------

def _key_matches(key, path_end: str, func: str) -> bool:
    filename, _, name = key
    return name == func and filename.replace(os.sep, "/").endswith(path_end)


class Profile:
    def __init__(self, stats: pstats.Stats) -> None:
        self.raw = stats.stats  # (file, line, func) -> (cc, nc, tt, ct, callers)
        self.total = stats.total_tt

    def cum(self, path_end: str, func: str) -> float:
        return sum(v[3] for k, v in self.raw.items() if _key_matches(k, path_end, func))

    def cum_from(self, path_end: str, func: str, caller_end: str, caller_func: str) -> float:
        """Cumulative time of `func` when called from `caller_func`."""
        total = 0.0
        for k, v in self.raw.items():
            if _key_matches(k, path_end, func):
                for ck, cv in v[4].items():
                    if _key_matches(ck, caller_end, caller_func):
                        total += cv[3]
        return total


def profile_groups(p: Profile) -> list[tuple[str, float]]:
    """Exclusive time per group (they add up to the total)."""
    g = {}
    g["collection: suite YAML + JSONL, items"] = p.cum("pytest_rlhf_eval/__init__.py", "collect")
    g["cassette load: read + JSON parse + vcrpy Cassette"] = p.cum("rlhf_eval/recording/cassette.py", "open_cassette")
    g["vcrpy patch install/remove"] = (p.cum("rlhf_eval/recording/router.py", "hold")
                                       + p.cum("rlhf_eval/recording/router.py", "release"))
    vcr_stub = (p.cum("vcr/stubs/httpx_stubs.py", "_vcr_handle_request")
                + p.cum("rlhf_eval/backends/replay_http.py", "_replay"))
    g["cassette matching + playback (replay client, or vcrpy's stub)"] = vcr_stub
    parse = (p.cum("rlhf_eval/backends/gemini.py", "traces_from_response")
             + p.cum_from("json/__init__.py", "loads", "rlhf_eval/backends/gemini.py", "_request")
             + p.cum_from("rlhf_eval/recording/bodies.py", "loads_json", "rlhf_eval/backends/gemini.py", "_request"))
    g["response parsing: JSON body → traces"] = parse
    request = p.cum("rlhf_eval/backends/gemini.py", "_request")
    g["SDK request building (google-genai; httpx when recording)"] = max(0.0, request - vcr_stub - parse)
    verification = p.cum("rlhf_eval/evaluate.py", "verdict_for") + p.cum("rlhf_eval/evaluate.py",
                                                                         "majority_vote_accuracy")
    g["verification: answer extraction + verifier"] = verification
    g["metrics: pairs, DPO, GRPO, intervals, thresholds"] = max(
        0.0, p.cum("rlhf_eval/evaluate.py", "score_question") - verification)
    g["result → dict (user_properties)"] = p.cum("rlhf_eval/evaluate.py", "to_dict")
    g["SDK client creation (once per suite)"] = p.cum("rlhf_eval/evaluate.py", "for_suite")
    per_item = sum(g.values()) - g["collection: suite YAML + JSONL, items"]
    g["report: aggregate + table"] = (p.cum("rlhf_eval/report.py", "build_report")
                                      + p.cum("rlhf_eval/report.py", "report_lines"))
    runtest = p.cum("pytest_rlhf_eval/__init__.py", "runtest")
    inside = per_item
    g["rest of the item (plumbing, policy, cassette save)"] = max(0.0, runtest - inside)
    g["pytest itself: start-up, collection, hooks, terminal"] = max(0.0, p.total - sum(g.values()))
    return list(g.items())


def _short(key) -> str:
    filename, line, func = key
    if filename == "~":
        return func
    path = filename.replace(os.sep, "/")
    for marker in ("site-packages/", "/work/main/", str(REPO).replace(os.sep, "/") + "/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{path}:{line}({func})"


def profile_harness(suites: list, cassette_dir: Path, n: int, top: int) -> None:
    import pytest

    ids = []
    for suite in suites:
        for q in suite.questions:
            if len(ids) < n:
                ids.append(f"{suite.path}::{q.id}")
    n = len(ids)
    env = offline_env()
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    profiler = cProfile.Profile()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            start = time.perf_counter()
            profiler.enable()
            code = pytest.main([*ids, "-q", "-p", "no:cacheprovider", f"--rlhf-cassette-dir={cassette_dir}",
                                "--rootdir", str(suites[0].path.parent.parent)])
            profiler.disable()
            seconds = time.perf_counter() - start
    finally:
        os.environ.clear()
        os.environ.update(saved)
    if code != 0:
        raise SystemExit(f"profiled pytest run exited {code}")
    stats = pstats.Stats(profiler)
    p = Profile(stats)
    print(f"\n(c) profile: in-process pytest.main over {n} questions, {seconds:.2f} s wall under cProfile "
          f"({p.total / n * 1000:.1f} ms/question profiled; cProfile inflates pure-Python code)")
    print("    where the time goes (exclusive):")
    for name, t in sorted(profile_groups(p), key=lambda x: -x[1]):
        print(f"      {t / p.total * 100:5.1f}%  {t / n * 1000:7.2f} ms/q  {name}")
    skip = ("_pytest/", "pluggy/", "<frozen", "<string>", "contextlib.py", "runpy.py")
    rows = [(k, v) for k, v in p.raw.items() if not any(s in k[0] for s in skip) and k[0] != "~"
            and not str(k[2]).startswith("<")]
    print(f"    top {top} by cumulative time (ncalls, cum s, own s):")
    for k, v in sorted(rows, key=lambda kv: -kv[1][3])[:top]:
        print(f"      {v[1]:>8} {v[3]:7.2f} {v[2]:7.2f}  {_short(k)}")
    print(f"    top {top} by own time:")
    for k, v in sorted(p.raw.items(), key=lambda kv: -kv[1][2])[:top]:
        print(f"      {v[1]:>8} {v[3]:7.2f} {v[2]:7.2f}  {_short(k)}")


# ---------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", type=Path,
                        help="a directory with suites/ and cassettes/ (e.g. /tmp/rlhf-bench from make_suite.py); "
                             "default: this repository")
    parser.add_argument("--suite-dir", type=Path, help="suite directory or file (default ROOT/suites)")
    parser.add_argument("--cassette-dir", type=Path, help="cassette directory (default ROOT/cassettes)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of (a) and (b) each; the median is shown")
    parser.add_argument("--profile-questions", type=int, default=200, help="questions in the profiled run")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--pytest-arg", action="append", default=[], help="extra argument for (a), repeatable")
    parser.add_argument("--baseline", choices=["typed", "raw", "both", "none"], default="both",
                        help="typed: the brief's bare loop (genai's typed response); raw: the same loop reading "
                             "the raw JSON body, as the harness does; both (default); none: only (a) and the floor")
    parser.add_argument("--without-orjson", action="store_true",
                        help="also time (a) with orjson hidden (rlhf-eval then parses JSON with the json module)")
    parser.add_argument("--baseline-child", help=argparse.SUPPRESS)
    parser.add_argument("--baseline-mode", default="typed", help=argparse.SUPPRESS)
    parser.add_argument("--floor-child", help=argparse.SUPPRESS)
    parser.add_argument("--floor-cassettes", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_child:
        return baseline_child(args.baseline_child, args.baseline_mode)
    if args.floor_child:
        return floor_child(args.floor_child, args.floor_cassettes)

    root = (args.root or REPO).resolve()
    suite_dir = (args.suite_dir or root / "suites").resolve()
    cassette_dir = (args.cassette_dir or root / "cassettes").resolve()
    suites = suites_in(suite_dir)
    n = sum(len(s.questions) for s in suites)
    traces = sum(len(s.questions) * s.spec.samples for s in suites)
    print(f"suites: {', '.join(s.name for s in suites)} — {n} questions, {traces} traces "
          f"(cassettes in {cassette_dir}); {os.cpu_count()} CPUs")

    plan = baseline_plan(suites, cassette_dir)
    nb = len(plan)
    modes = {"both": ["typed", "raw"], "none": []}.get(args.baseline, [args.baseline])
    harness, rss = [], []
    floor = {"wall": [], "rss": [], "loop": [], "ratio": []}
    base = {m: {"wall": [], "rss": [], "loop": []} for m in modes}
    for _ in range(args.repeat):
        seconds, peak = run_harness(suite_dir, cassette_dir, args.pytest_arg)
        harness.append(seconds)
        rss.append(peak)
        f_seconds, f_peak, f_info = run_floor(suite_dir, cassette_dir)
        floor["wall"].append(f_seconds)
        floor["rss"].append(f_peak)
        floor["loop"].append(f_info["loop_s"])
        floor["ratio"].append(seconds / f_seconds)  # this repeat's pair, run back to back
        for m in modes:
            seconds, peak, info = run_baseline(plan, m)
            base[m]["wall"].append(seconds)
            base[m]["rss"].append(peak)
            base[m]["loop"].append(info["loop_s"])
    h = statistics.median(harness)
    shown = suite_dir.relative_to(root) if suite_dir.is_relative_to(root) else suite_dir
    print(f"\n(a) $ {' '.join(harness_cmd(shown, cassette_dir, args.pytest_arg)[2:])}   (cwd {root})")
    print(f"    harness, pytest subprocess:     {h:7.2f} s wall  {h / n * 1000:6.2f} ms/question  "
          f"peak RSS {max(rss):5.0f} MB   (median of {args.repeat}: {', '.join(f'{x:.2f}' for x in harness)})")
    if args.without_orjson:
        runs = [run_harness(suite_dir, cassette_dir, args.pytest_arg, without_orjson=True)
                for _ in range(args.repeat)]
        w = statistics.median(r[0] for r in runs)
        print(f"    the same without orjson:        {w:7.2f} s wall  {w / n * 1000:6.2f} ms/question  "
              f"peak RSS {max(r[1] for r in runs):5.0f} MB   (median of {args.repeat}: "
              f"{', '.join(f'{r[0]:.2f}' for r in runs)})")
    f, f_loop = statistics.median(floor["wall"]), statistics.median(floor["loop"])
    print(f"(f) floor: parse + verify + numpy:  {f:7.2f} s wall  {f / n * 1000:6.2f} ms/question  "
          f"peak RSS {max(floor['rss']):5.0f} MB   (median of {args.repeat}: "
          f"{', '.join(f'{x:.2f}' for x in floor['wall'])}; loop alone {f_loop:.2f} s; "
          f"mean accuracy {f_info['mean_accuracy']:.4f}, mean margin {f_info['mean_margin']:.4f}, "
          f"mean maj@k {f_info['mean_maj_at_k']:.4f})")
    hc, fc = statistics.median(CPU["harness"]), statistics.median(CPU["floor"])
    nf = f_info["questions"]
    if nf == n:
        print(f"    ratio harness / floor: {h / f:.2f} (medians; per repeat: "
              f"{', '.join(f'{x:.2f}' for x in floor['ratio'])}; issue 12 asks for <= 5)")
        print(f"    CPU seconds (user + system), medians: harness {hc:.2f}, floor {fc:.2f}; ratio {hc / fc:.2f}")
    else:  # the floor replays only the plain Gemini suites: compare per question
        print(f"    ratio harness / floor per question: {(h / n) / (f / max(1, nf)):.2f} on wall, "
              f"{(hc / n) / (fc / max(1, nf)):.2f} on CPU (the floor replays {nf} of the {n} questions)")
    labels = {"typed": "(b) baseline, vcrpy + genai typed: ", "raw": "(b') vcrpy + genai raw JSON body:  "}
    for m in modes:
        b, loop = statistics.median(base[m]["wall"]), statistics.median(base[m]["loop"])
        print(f"{labels[m]}{b:7.2f} s wall  {b / nb * 1000:6.2f} ms/question  peak RSS {max(base[m]['rss']):5.0f} MB"
              f"   (subprocess; loop alone {loop:.2f} s = {loop / nb * 1000:.2f} ms/question)")
        if nb == n:
            print(f"    ratio harness / {m} loop: {h / b:.2f} (both processes end to end); "
                  f"{h / loop:.2f} against its loop alone")
        else:
            print(f"    ratio harness / {m} loop per question: {(h / n) / (b / nb):.2f} "
                  f"(it replays {nb} of the {n} questions)")
    if not args.no_profile:
        profile_harness(suites, cassette_dir, args.profile_questions, args.top)


if __name__ == "__main__":
    main()
