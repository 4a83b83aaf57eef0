"""Peak memory (and wall time) of replaying a large suite: does RSS stay flat in the questions?

    python benchmarks/make_suite.py /tmp/rlhf-bench --questions 1000      # record 1,000 x 8 once
    python benchmarks/memory.py /tmp/rlhf-bench --questions 50000 [--workers 2] [--html]
    python benchmarks/memory.py /tmp/rlhf-bench --questions 2000,5000,10000   # the slope

For each N it builds OUT/N/ (default /tmp/rlhf-memory): the suite of N questions × k that
make_suite.py writes, and N cassettes. Recording 50,000 × 8 through the emulator takes over an hour
on 2 cores, so the cassettes past the recorded ones are *cloned*: question i (problem set
i // 400 + 1) gets the cassette of recorded question i mod 400 (problem set 1) with its requests'
"Problem set 1." line rewritten to its own, so every request matches its own question (the answers
are question i mod 400's, a real emulator response each). Clones are kept for the next run.

Then it runs, in a subprocess each:

(0) `pytest suites --collect-only`: the floor every run of N questions pays (pytest, the plugin,
    the suite and N test items), before anything is replayed;
(1) `pytest suites -n W --rlhf-report-json=... [--rlhf-html=...] [--rlhf-compare=BASELINE]`: the
    replay, writing the JSON report (and the HTML page with --html; compared with the report of
    an earlier run of the same N with --compare, e.g. one without -n: a baseline as large as the run).

Peak RSS is each process's high-water mark (VmHWM in /proc, sampled every 0.2 s; for a process that
exits between samples, its last sample), for the pytest process and, under xdist (`--workers W`),
the largest of its workers; "sum" is the largest total RSS of the process tree at one sample. Wall
time is from spawn to exit. Each run's report is checked: N questions, N × k traces.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import make_suite  # noqa: E402  (benchmarks/ is not a package)

REPO = HERE.parent
BANK = make_suite.BANK_QUESTIONS
SUITE = make_suite.SUITE_NAME


def cassette_name(i: int) -> str:
    return f"q-{i:04d}.yaml"  # the suite's ids: id_prefix q, row number (sources: <prefix>-<i:04d>)


def build(source: Path, out: Path, n: int, k: int) -> None:
    """OUT: the suite of n questions and n cassettes (recorded ones linked, the rest cloned)."""
    make_suite.write_suite(out, n, k)
    src = source / "cassettes" / SUITE
    dst = out / "cassettes" / SUITE
    dst.mkdir(parents=True, exist_ok=True)
    recorded = len(list(src.glob("*.yaml")))
    if recorded < BANK:
        raise SystemExit(f"{src}: {recorded} cassettes; record at least {BANK} with make_suite.py --questions {BANK}")
    made = 0
    for i in range(n):
        target = dst / cassette_name(i)
        if target.exists():
            continue
        if i < recorded:
            os.link(src / cassette_name(i), target)
        else:
            text = (src / cassette_name(i % BANK)).read_text(encoding="utf-8")
            line = "Problem set 1.\\\\n"  # in the request body, JSON in JSON: an escaped newline
            if text.count(line) != k:
                raise SystemExit(f"{src / cassette_name(i % BANK)}: expected {k} requests saying {line!r}")
            target.write_text(text.replace(line, f"Problem set {i // BANK + 1}.\\\\n"), encoding="utf-8")
        made += 1
    if made:
        print(f"  {out}: {made} cassettes made ({n} questions)", flush=True)


def _status(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    out[line[:5]] = int(line.split()[1]) // 1024  # MB
    except OSError:
        pass
    return out


def _children(pid: int) -> list[int]:
    kids = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return kids


def measured(cmd: list[str], cwd: Path) -> dict:
    """Run `cmd`; its wall time, the peak RSS of it and of its largest descendant, and the largest sum."""
    env = {**os.environ, "RLHF_EVAL_GEMINI_BASE_URL": "http://127.0.0.1:9"}  # offline: nothing listens
    env.pop("GEMINI_API_KEY", None)
    env.pop("GOOGLE_API_KEY", None)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peaks: dict[int, int] = {}
    total = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            tree, rss = [proc.pid], 0
            while len(tree) < 64 and (kids := [c for p in tree for c in _children(p) if c not in tree]):
                tree += kids
            for pid in tree:
                st = _status(pid)
                if st:
                    peaks[pid] = max(peaks.get(pid, 0), st.get("VmHWM", 0))
                    rss += st.get("VmRSS", 0)
            total[0] = max(total[0], rss)
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = proc.communicate()[0]
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    main_peak = peaks.get(proc.pid, 0)
    others = [v for pid, v in peaks.items() if pid != proc.pid]
    return {"seconds": seconds, "rss": main_peak, "worker_rss": max(others, default=None), "sum_rss": total[0],
            "code": proc.returncode, "output": output}


def check_report(path: Path, n: int, k: int) -> str:
    """The report holds every question and trace (read line by line: it is large)."""
    questions = traces = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith('     "suite": '):  # a question's first key: depth 5 of the indented JSON
                questions += 1
            elif line.startswith('       "verdict": '):  # a trace's key: depth 7
                traces += 1
    if questions != n or traces != n * k:
        raise SystemExit(f"{path}: {questions} questions and {traces} traces, expected {n} and {n * k}")
    return f"{questions} questions, {traces} traces, {path.stat().st_size / 1e6:.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a directory made by make_suite.py (at least 400 questions)")
    parser.add_argument("--questions", default="50000", help="N, or N1,N2,... (default 50000)")
    parser.add_argument("--samples", type=int, default=8, help="k of the source suite (default 8)")
    parser.add_argument("--workers", type=int, default=0, help="pytest-xdist workers (-n; default 0: one process)")
    parser.add_argument("--html", action="store_true", help="also write the HTML report")
    parser.add_argument("--compare", action="store_true",
                        help="compare with the report an earlier run of the same N left (OUT/N/report.json)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/rlhf-memory"))
    parser.add_argument("--no-floor", action="store_true", help="skip the --collect-only floor")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; source {args.source}; workers {args.workers}", flush=True)
    for n in [int(x) for x in args.questions.split(",")]:
        out = (args.out / str(n)).resolve()
        build(args.source.resolve(), out, n, args.samples)
        base = [sys.executable, "-m", "pytest", "suites", "-q", "-p", "no:cacheprovider",
                f"--rlhf-cassette-dir={out / 'cassettes'}"]
        if not args.no_floor:
            floor = measured([*base, "-n", "0", "--collect-only"], out)
            print(f"  N = {n:6d}: (0) collect only:   peak RSS {floor['rss']:5d} MB, {floor['seconds']:7.1f} s",
                  flush=True)
        report = out / "report.json"
        if args.compare:  # the earlier run's report is the baseline; this run writes beside it
            baseline = out / "baseline.json"
            if not report.exists():
                raise SystemExit(f"{report}: no earlier report of {n} questions to compare with; "
                                 "run once without --compare")
            report.replace(baseline)
        cmd = [*base, "-n", str(args.workers), f"--rlhf-report-json={report}"]
        if args.compare:
            cmd.append(f"--rlhf-compare={baseline}")
        if args.html:
            cmd.append(f"--rlhf-html={out / 'report.html'}")
        run = measured(cmd, out)
        tail = [line for line in run["output"].splitlines() if re.search(r"\d+ (passed|failed)", line)]
        if run["code"] not in (0, 1) or not tail:
            sys.stdout.write(run["output"][-3000:])
            raise SystemExit(f"pytest exited {run['code']}")
        workers = (f", largest worker {run['worker_rss']} MB, sum {run['sum_rss']} MB"
                   if args.workers and run["worker_rss"] else "")
        html = f", HTML {(out / 'report.html').stat().st_size / 1e6:.0f} MB" if args.html else ""
        html += f", compared with a baseline of {baseline.stat().st_size / 1e6:.0f} MB" if args.compare else ""
        print(f"  N = {n:6d}: (1) replay, k = {args.samples}: peak RSS {run['rss']:5d} MB{workers}, "
              f"{run['seconds']:7.1f} s wall ({run['seconds'] / n * 1000:.1f} ms/question); "
              f"report {check_report(report, n, args.samples)}{html}; pytest: {tail[-1].strip('= ')}", flush=True)
        print(json.dumps({"questions": n, "samples": args.samples, "workers": args.workers, "compare": args.compare,
                          "floor_rss_mb": None if args.no_floor else floor["rss"], "rss_mb": run["rss"],
                          "worker_rss_mb": run["worker_rss"], "sum_rss_mb": run["sum_rss"],
                          "seconds": round(run["seconds"], 1)}), flush=True)


if __name__ == "__main__":
    main()
