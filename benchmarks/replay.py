"""Replay speed: the shipped suites through `pytest suites/`, against a bare vcrpy + SDK loop.

    python benchmarks/replay.py [--repeat 3]

Prints ms per question for (a) the whole harness in-process (collection, replay, verification,
metrics, report) and (b) a baseline that only replays the same cassettes through vcrpy and
google-genai's typed response (what a hand-written eval loop would do), and their ratio.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import time
from pathlib import Path

import pytest
import vcr
from google import genai
from google.genai import types

from rlhf_eval import load_suite
from rlhf_eval.recording import json_body

REPO = Path(__file__).resolve().parents[1]


def harness_once() -> tuple[float, int]:
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = pytest.main([str(REPO / "suites"), "-q", "-p", "no:cacheprovider",
                            f"--rlhf-cassette-dir={REPO / 'cassettes'}"])
    assert code == 0, f"pytest exited {code}"
    return time.perf_counter() - start, count_questions()


def count_questions() -> int:
    return sum(len(load_suite(p).questions) for p in sorted((REPO / "suites").glob("*.yaml")))


def baseline_once() -> tuple[float, int]:
    """Bare replay: vcrpy + google-genai's typed response, no verification, no metrics."""
    client = genai.Client(api_key="bench", http_options=types.HttpOptions(base_url="http://127.0.0.1:9",
                                                                           api_version="v1beta"))
    my_vcr = vcr.VCR(record_mode="none", match_on=["method", "path", "json_body"])
    my_vcr.register_matcher("json_body", json_body)
    n = 0
    start = time.perf_counter()
    for path in sorted((REPO / "suites").glob("*.yaml")):
        suite = load_suite(path)
        m = suite.spec.model
        for q in suite.questions:
            with my_vcr.use_cassette(str(REPO / "cassettes" / suite.name / f"{q.id}.yaml")):
                for i in range(suite.spec.samples):
                    config = types.GenerateContentConfig(
                        system_instruction=m.system_instruction, temperature=m.temperature, top_p=m.top_p,
                        max_output_tokens=m.max_output_tokens, seed=suite.spec.seed + i,
                        response_logprobs=True if m.logprobs else None)
                    client.models.generate_content(model=m.name, contents=suite.render_prompt(q), config=config)
            n += 1
    return time.perf_counter() - start, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ.pop("GEMINI_API_KEY", None)
    os.environ.pop("GOOGLE_API_KEY", None)
    harness, baseline = [], []
    for _ in range(args.repeat):
        seconds, n = harness_once()
        harness.append(seconds / n)
        seconds, n = baseline_once()
        baseline.append(seconds / n)
    h, b = statistics.median(harness), statistics.median(baseline)
    print(f"questions per run: {n} (k traces each, from the shipped cassettes)")
    print(f"harness  (pytest suites/, in-process): {h * 1000:7.2f} ms/question  (median of {args.repeat})")
    print(f"baseline (vcrpy + google-genai typed): {b * 1000:7.2f} ms/question")
    print(f"ratio harness / baseline: {h / b:.2f}")


if __name__ == "__main__":
    main()
