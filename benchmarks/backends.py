"""Building a suite's backends again and again in one process — several suites in one run, an
in-process pytest run per test, a training callback that evaluates every N steps — against the
bare cost of the SDK client it used to build each time.

    python benchmarks/backends.py [--repeat 50]

(a) rlhf-eval: `Backends.for_suite(suite, replay=True)` for a Gemini suite and an OpenAI-compatible
    one, `--repeat` times each (the first build in the process is timed separately).
(b) baseline: `genai.Client(...)` / `openai.OpenAI(...)` with the same settings, `--repeat` times:
    each builds an SSL context and loads the CA bundle (twice for google-genai).

Prints CPU milliseconds per build (time.process_time) and the ratio baseline / rlhf-eval.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from functools import partial
from pathlib import Path

from rlhf_eval.evaluate import Backends
from rlhf_eval.suite import load_suite

SUITES = {
    "gemini": ("suite: g\nmodel: {name: gemini-2.0-flash}\nsamples: 2\n"
               "questions:\n  - {id: a, question: q, answer: 1}\n"),
    "openai": ("suite: o\nmodel: {provider: openai, name: m, base_url: 'http://127.0.0.1:9/v1'}\nsamples: 2\n"
               "questions:\n  - {id: a, question: q, answer: 1}\n"),
}


def cpu_ms(fn, repeat: int) -> float:
    start = time.process_time()
    for _ in range(repeat):
        fn()
    return (time.process_time() - start) * 1000 / repeat


def sdk_client(provider: str):
    if provider == "gemini":
        from google import genai
        from google.genai import types
        return genai.Client(api_key="replay-without-a-key",
                            http_options=types.HttpOptions(base_url="https://generativelanguage.googleapis.com",
                                                           api_version="v1beta"))
    import openai
    return openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="replay-without-a-key", max_retries=0, timeout=300.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for provider, text in SUITES.items():
            path = Path(tmp) / f"{provider}.yaml"
            path.write_text(text)
            suite = load_suite(path)
            build = partial(Backends.for_suite, suite, replay=True)
            first = cpu_ms(build, 1)  # imports the SDK
            ours = cpu_ms(build, args.repeat)
            baseline = cpu_ms(partial(sdk_client, provider), args.repeat)
            print(f"{provider:7s} first build {first:7.1f} ms (SDK import included) · then {ours:6.2f} ms a build "
                  f"· a new SDK client {baseline:6.2f} ms · ratio {baseline / ours:5.1f}x")


if __name__ == "__main__":
    main()
