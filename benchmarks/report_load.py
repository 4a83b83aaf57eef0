"""Peak RSS and wall time of reading a large JSON report, and of merging reports, whole vs streamed.

    python benchmarks/report_load.py [--questions 10000] [--parts 4] [--out /tmp/rlhf-report-load]

Builds (once, in OUT) a report of N questions x 8 traces (the shipped gsm8k_smoke suite replayed
from its cassettes, its questions cloned under new ids, written by a run that streams them) and the
same N questions as PARTS reports (no question in two: what `rlhf-eval merge` accepts from one CI job
per part). Then, each in a fresh subprocess (peak RSS: its ru_maxrss):

- load whole:     `Report.load(path, stream=False)`, what every reader did before report_stream;
- load streamed:  `Report.load(path)` (above STREAM_ABOVE_BYTES: streamed);
- merge whole:    `merge_reports(parts)` with each part loaded whole and held (the merge before);
- merge streamed: `merge_reports(parts)` as it is.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

BUILD = r"""
import os, sys
from pathlib import Path
sys.path.insert(0, str(Path(sys.argv[1]) / "tests"))
from conftest import shipped_copy
from rlhf_eval.report_model import Report
from rlhf_eval.runner import Run, RunOptions, finished_run

out, n, parts = Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
root = shipped_copy(out / "shipped")
os.chdir(root)
os.environ["RLHF_EVAL_GEMINI_BASE_URL"] = "http://127.0.0.1:9"
os.environ.pop("GEMINI_API_KEY", None)
os.environ.pop("GOOGLE_API_KEY", None)
run = finished_run(["suites/gsm8k_smoke.yaml"], report_json=root / "smoke.json")
assert not run.problems, run.problems
report = Report.load(root / "smoke.json")
suite = report.suites[0]
settings = suite.model_dump(mode="json", exclude_unset=True, exclude={"aggregates", "threshold_failures", "questions"})
qs = list(suite.questions)
for name, ranges in [("report.json", [range(n)])] + [(f"part-{p}.json", [range(p * n // parts, (p + 1) * n // parts)])
                                                   for p in range(parts)]:
    run = Run(RunOptions(report_json=out / name))
    run.in_memory_questions = 0
    for i in ranges[0]:
        q = qs[i % len(qs)]
        run.add(settings, q.model_copy(update={"id": f"{q.id}-{i}", "index": i}))
    run.finish({"time": "then"})
    assert not run.problems, run.problems
"""

MEASURE = r"""
import json, resource, sys, time
from pathlib import Path
kind, paths = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
if kind.startswith("load"):
    from rlhf_eval.report_model import Report
    report = Report.load(paths[0], stream=False if kind == "load-whole" else None)
    n = sum(len(s.questions) for s in report.suites)
else:
    import rlhf_eval.merge as merge
    from rlhf_eval.report import load_report
    if kind == "merge-whole":
        merge.load_report = lambda path, what, hint, stream=None: load_report(path, what, hint, stream=False)
    report = merge.merge_reports(paths, command_line=["rlhf-eval", "merge"])
    n = sum(len(s.questions) for s in report.suites)
print(json.dumps({"questions": n, "seconds": time.perf_counter() - start,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=10000)
    parser.add_argument("--parts", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "rlhf-report-load")
    args = parser.parse_args()
    out = args.out / str(args.questions)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "plugin"),
                                                        os.environ.get("PYTHONPATH", "")])}
    if not (out / "report.json").exists():
        subprocess.run([sys.executable, "-c", BUILD, str(REPO), str(out), str(args.questions), str(args.parts)],
                       check=True, env=env)
    size = (out / "report.json").stat().st_size / 1e6
    parts = [str(out / f"part-{p}.json") for p in range(args.parts)]
    print(f"{args.questions} questions x 8 traces: report {size:.0f} MB, {args.parts} parts")
    for kind, paths in [("load-whole", [str(out / "report.json")]), ("load-streamed", [str(out / "report.json")]),
                        ("merge-whole", parts), ("merge-streamed", parts)]:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", MEASURE, kind, *paths], capture_output=True, text=True, env=env)
        if proc.returncode:
            raise SystemExit(proc.stderr[-3000:])
        got = json.loads(proc.stdout.splitlines()[-1])
        print(f"  {kind:15} peak RSS {got['rss_mb']:6.0f} MB   {got['seconds']:6.1f} s "
              f"({time.perf_counter() - start:.1f} s with the interpreter)   {got['questions']} questions")


if __name__ == "__main__":
    main()
