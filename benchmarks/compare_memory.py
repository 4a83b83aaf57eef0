"""Peak memory (and time) of comparing two large runs, as `--rlhf-compare BASELINE` does.

    pytest suites --rlhf-report-json=/tmp/rlhf-bench/report.json     # in the make_suite.py folder
    python benchmarks/compare_memory.py /tmp/rlhf-bench/report.json --questions 10000

Builds, in this process, two reports of N questions whose questions stay on disk (a `QuestionSpool`
each, as a run of more than 1,000 questions has them: `report.build_streamed_report`): question i of
the "current" run is question i mod n of REPORT (its first suite, n questions), and question i of
the "baseline" has the same id and prompt but the traces, pairs and metrics of REPORT's question
(i ± 400) mod n, the same GSM8K problem in make_suite.py's suite: other samples, so the comparison
has changes, flips and GRPO signal lost and gained. Then it measures, each from the RSS the process
has before it (the high-water mark reset through /proc/self/clear_refs):

  compare: `compare.compare_reports(current, baseline)`;
  write:   the current report with that comparison written as JSON (`Report.dump`).

Prints the RSS before, the peak of each step and its seconds, and one JSON line. The process's RSS
before includes what building the two runs freed and the allocator kept (Python reuses it first),
so a small step may show +0 MB: `--tracemalloc` measures the peak of Python's and numpy's
allocations during each step instead (2-3 times slower).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import tempfile
import time
import tracemalloc
from pathlib import Path

from rlhf_eval.compare import compare_reports
from rlhf_eval.report import build_streamed_report
from rlhf_eval.report_model import Report
from rlhf_eval.spool import QuestionSpool

SAME_PROBLEM = 400  # make_suite.py's suite reuses the emulator's 400 problems round-robin


def rss() -> dict[str, int]:
    """This process's current and peak RSS (MB)."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmHWM:", "VmRSS:")):
                out[line[:5]] = int(line.split()[1]) // 1024
    return out


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:  # "5": reset the peak RSS to the current RSS
        f.write("5")


def spooled_runs(source: Path, n: int) -> tuple[Report, Report]:
    report = Report.load(source)
    suite = report.suites[0]
    qs = suite.questions
    settings = suite.model_dump(mode="json", exclude_unset=True, exclude={"aggregates", "threshold_failures",
                                                                          "questions"})
    current, baseline = QuestionSpool(), QuestionSpool()
    for i in range(n):
        j = i % len(qs)
        q = qs[j]
        other = qs[(j + SAME_PROBLEM) % len(qs) if j + SAME_PROBLEM < len(qs) else j - SAME_PROBLEM]
        ids = {"id": f"q-{i:06d}", "index": i}
        current.add(q.model_copy(update=ids))
        baseline.add(other.model_copy(update={**ids, "prompt": q.prompt, "answer": q.answer}))
    settings = {suite.name: settings}
    return build_streamed_report(current, settings), build_streamed_report(baseline, settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="a JSON report of make_suite.py's suite (at least 800 questions)")
    parser.add_argument("--questions", type=int, default=10000, help="N (default 10000)")
    parser.add_argument("--tracemalloc", action="store_true", help="measure allocations (tracemalloc), not RSS")
    args = parser.parse_args()
    current, baseline = spooled_runs(args.report, args.questions)
    gc.collect()
    before = rss()["VmRSS"]
    reset_peak()
    if args.tracemalloc:
        tracemalloc.start()
    start = time.perf_counter()
    comparison = current.comparison = compare_reports(current, baseline, "baseline")
    compare_s = time.perf_counter() - start
    compare_peak = rss()["VmHWM"]
    if args.tracemalloc:
        held, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"{args.questions} questions a run: compare_reports allocated at most {peak / 1e6:.1f} MB "
              f"(the comparison it returned holds {held / 1e6:.1f} MB) in {compare_s:.1f} s under tracemalloc",
              flush=True)
        print(json.dumps({"questions": args.questions, "traced_peak_mb": round(peak / 1e6, 1),
                          "traced_held_mb": round(held / 1e6, 1), "compare_s": round(compare_s, 1)}))
        return
    entries = sum(len(s.questions) for s in comparison.suites)
    with tempfile.TemporaryDirectory() as tmp:
        gc.collect()
        reset_peak()
        written_from = rss()["VmRSS"]
        start = time.perf_counter()
        out = Path(tmp) / "report.json"
        current.dump(out)
        write_s = time.perf_counter() - start
        write_peak = rss()["VmHWM"]
        size = out.stat().st_size
    print(f"{args.questions} questions a run, {entries} compared: RSS before {before} MB; "
          f"compare peak {compare_peak} MB (+{compare_peak - before}) in {compare_s:.1f} s; "
          f"writing the report ({size / 1e6:.0f} MB) peak {write_peak} MB (+{write_peak - written_from}) "
          f"in {write_s:.1f} s", flush=True)
    print(json.dumps({"questions": args.questions, "compared": entries, "rss_before_mb": before,
                      "compare_peak_mb": compare_peak, "compare_s": round(compare_s, 1),
                      "write_peak_mb": write_peak, "write_s": round(write_s, 1), "pid": os.getpid()}))


if __name__ == "__main__":
    main()
