"""Recording throughput under a rate limit, with injected 503s: no trace may be lost.

    python benchmarks/record.py [--questions 60] [--samples 8] [--out /tmp/rlhf-record]

An in-process emulator (a server thread of this process) with `latency_ms=200`,
`rate_limit_rpm=600` (a token bucket: 10 at once, then 10 per second) and `fail_rate=0.05`
(5 % of attempts answer 503), and a suite of N GSM8K questions x k samples (benchmarks/
make_suite.py's, padded to ~300 tokens) recorded from scratch in a subprocess:

    pytest suites/bench.yaml --rlhf-record-mode=once --rlhf-rate-limit=600 --rlhf-concurrency=8

Prints the successful requests per second the emulator answered against the limit's 10/s (over
the recording window, from the first request to the last answer; and over the whole pytest run,
start-up included), the retries pytest made, the 429s and 503s the emulator sent, and checks that
nothing was lost: every question passed, every cassette holds k successful interactions with
seeds seed..seed+k-1, and the report has k traces per question.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_suite import BENCH_KEY, SUITE_NAME, write_suite  # noqa: E402

RATE_RPM = 600
LATENCY_MS = 200
FAIL_RATE = 0.05


class Watcher(threading.Thread):
    """Polls the emulator's counters: when the first request and the last one were answered."""

    def __init__(self, emu, every: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.emu, self.every = emu, every
        self.first: float | None = None  # perf_counter() seconds, once a request is answered
        self.last: float | None = None
        self.done = threading.Event()

    def run(self) -> None:
        seen = 0
        while not self.done.is_set():
            n = self.emu.stats["requests"]
            if n != seen:
                now = time.perf_counter()
                self.first = self.first or now
                self.last, seen = now, n
            time.sleep(self.every)


def check_cassettes(cassette_dir: Path, n: int, k: int, seed: int) -> list[str]:
    problems = []
    files = sorted(cassette_dir.glob("*.yaml"))
    if len(files) != n:
        problems.append(f"{len(files)} cassettes, expected {n}")
    for path in files:
        data = json.loads(path.read_text(encoding="utf-8"))
        codes = [i["response"]["status"]["code"] for i in data["interactions"]]
        seeds = sorted(json.loads(i["request"]["body"])["generationConfig"]["seed"] for i in data["interactions"])
        if codes != [200] * k or seeds != list(range(seed, seed + k)):
            problems.append(f"{path.name}: statuses {codes}, seeds {seeds}")
    return problems


def check_report(report: dict, n: int, k: int) -> list[str]:
    problems = []
    questions = [q for suite in report.get("suites", []) for q in suite.get("questions", [])]
    if len(questions) != n:
        problems.append(f"report has {len(questions)} questions, expected {n}")
    for q in questions:
        if q.get("error") or not q.get("passed") or len(q.get("traces", [])) != k:
            problems.append(f"{q.get('id')}: passed={q.get('passed')} traces={len(q.get('traces', []))} "
                            f"error={q.get('error')}")
        elif any(t.get("finish_reason") != "STOP" or not t.get("text") for t in q["traces"]):
            problems.append(f"{q.get('id')}: a trace is empty or did not finish")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=60)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--pad-to-tokens", type=int, default=300)
    parser.add_argument("--fault-seed", default="0")
    parser.add_argument("--out", type=Path, default=Path("/tmp/rlhf-record"))
    parser.add_argument("--pytest-arg", action="append", default=[], help="extra pytest argument, repeatable")
    args = parser.parse_args()

    from rlhf_eval.emulator import Emulator

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "cassettes", ignore_errors=True)
    suite = write_suite(out, args.questions, args.samples)
    report_path = out / "report.json"
    report_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", str(suite.relative_to(out)), "-p", "no:cacheprovider", "-q",
           "--rlhf-record-mode=once", f"--rlhf-rate-limit={RATE_RPM}", f"--rlhf-concurrency={args.concurrency}",
           f"--rlhf-cassette-dir={out / 'cassettes'}", f"--rlhf-report-json={report_path}", *args.pytest_arg]
    env = {**os.environ, "GEMINI_API_KEY": BENCH_KEY}
    env.pop("GOOGLE_API_KEY", None)
    with Emulator(port=0, latency_ms=LATENCY_MS, rate_limit_rpm=RATE_RPM, fail_rate=FAIL_RATE,
                  fault_seed=args.fault_seed, pad_to_tokens=args.pad_to_tokens, record_requests=False) as emu:
        env["RLHF_EVAL_GEMINI_BASE_URL"] = emu.base_url
        watcher = Watcher(emu)
        watcher.start()
        print(f"emulator {emu.base_url}: latency {LATENCY_MS} ms, {RATE_RPM} requests/minute, "
              f"{FAIL_RATE:.0%} injected 503s")
        print("$", " ".join(cmd[2:]), flush=True)
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        time.sleep(0.05)
        watcher.done.set()
        watcher.join()
        stats = emu.stats

    if watcher.first is None or watcher.last is None:  # nothing answered: there is no window to measure
        sys.stdout.write(proc.stdout[-3000:] + proc.stderr[-2000:])
        raise SystemExit(f"the emulator answered no request (pytest exited {proc.returncode})")
    lines = proc.stdout.strip().splitlines()
    progress = [line[line.index("rlhf-eval recording:"):] for line in lines if "rlhf-eval recording:" in line]
    retries = re.search(r"(\d+) requests · (\d+) retries", progress[-1]) if progress else None
    n_req = args.questions * args.samples
    ok = stats["by_status"].get(200, 0)
    rate = RATE_RPM / 60.0
    window = (watcher.last - watcher.first) + LATENCY_MS / 1000.0  # first answer - latency .. last answer
    ideal = (n_req - rate) / rate + LATENCY_MS / 1000.0  # the bucket's first second is a burst
    print(f"pytest exit {proc.returncode}: {lines[-1] if lines else ''}")
    if progress:
        print(f"  {progress[-1]}")
    print(f"emulator: {stats['requests']} requests answered, by status {stats['by_status']}: "
          f"{stats['rate_limited']} x 429 (rate limit), {stats['failures_injected']} x 503 (injected)")
    if retries:
        print(f"client: {retries.group(1)} requests sent, {retries.group(2)} retries")
    print(f"successful requests: {ok} of {n_req} traces")
    print(f"throughput over the recording window ({window:.1f} s, first request to last answer): "
          f"{ok / window:.2f} successful requests/s = {ok / window / rate:.1%} of the limit's {rate:g}/s "
          f"(ideal with the bucket's initial burst: {n_req / ideal:.2f}/s)")
    print(f"throughput over the whole pytest run ({wall:.1f} s, start-up and report included): "
          f"{ok / wall:.2f}/s = {ok / wall / rate:.1%}")
    problems = [] if proc.returncode == 0 else [f"pytest exited {proc.returncode}"]
    problems += check_cassettes(out / "cassettes" / SUITE_NAME, args.questions, args.samples, 1000)
    if report_path.exists():
        problems += check_report(json.loads(report_path.read_text(encoding="utf-8")), args.questions, args.samples)
    else:
        problems.append("no JSON report written")
    if ok != n_req:
        problems.append(f"the emulator answered {ok} requests with 200, expected exactly {n_req}")
    if problems:
        print("LOST OR BAD TRACES:")
        for p in problems[:20]:
            print("  " + p)
        if proc.returncode != 0:
            sys.stdout.write(proc.stdout[-3000:] + proc.stderr[-2000:])
        raise SystemExit(1)
    print(f"lost traces: 0 (all {args.questions} questions passed; every cassette holds {args.samples} "
          f"successful interactions, seeds 1000-{1000 + args.samples - 1}; the report has "
          f"{args.samples} finished traces per question)")


if __name__ == "__main__":
    main()
