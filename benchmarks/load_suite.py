"""Suite loading speed: dense suites of ~1 MB, each shape against a plain YAML load of the same file.

    python benchmarks/load_suite.py [--size 990000] [--repeat 3] [--keep DIR]

Issue 11 asks that any suite under 1 MB load in under a second of CPU, or be refused in one line.
This writes one valid suite of each dense shape into a temporary directory (or DIR), just under
`--size` bytes:

    brackets    the densest YAML, a list of empty lists (refused: more values than a suite may hold)
    inline      one-line flow mappings: `- {id: q00001, question: "What is 3 + 4?", answer: 7}`
    block       block mappings of five keys: id, question, answer, an extra prompt field, thresholds
    long        few questions, each a ~20 KB block-literal question
    deep        questions whose extra field nests lists as deep as the loader allows (MAX_DEPTH;
                refused past the node limit)
    aliases     a thresholds block anchored once and aliased by as many questions as the alias
                limit allows (yamlines.MAX_ALIASED_VALUES), the rest plain

and prints for each: size, questions, CPU seconds of `load_suite` (the median of `--repeat`
runs, `time.process_time`), and the ratio to the baseline: `yaml.load(text, Loader=CSafeLoader)`
of the same text in the same process (libyaml's parser, PyYAML's constructor: no line numbers,
no schema, no checks).
"""
from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rlhf_eval.suite import SuiteError, load_suite  # noqa: E402
from rlhf_eval.yamlines import MAX_ALIASED_VALUES, MAX_DEPTH  # noqa: E402

HEAD = "suite: dense\nmodel:\n  name: gemini-2.0-flash\nsamples: 2\n"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def fill(head: str, item, size: int) -> str:
    """`head`, then `item(i)` for i = 0, 1, ... while the text stays under `size` bytes."""
    parts, total, i = [head], len(head), 0
    while True:
        part = item(i)
        if total + len(part) >= size:
            return "".join(parts)
        parts.append(part)
        total += len(part)
        i += 1


def inline(size: int) -> str:
    return fill(HEAD + "questions:\n", lambda i: f'  - {{id: q{i:06d}, question: "What is 3 + {i % 10}?", '
                                                 f"answer: {3 + i % 10}}}\n", size)


def block(size: int) -> str:
    head = HEAD + 'prompt: "Topic: {topic}. {question}"\nquestions:\n'
    return fill(head, lambda i: f"  - id: q{i:06d}\n    question: Natalia sold clips to {i} of her friends. "
                                f"How many clips?\n    answer: {i}\n    topic: arithmetic\n"
                                f"    thresholds:\n      accuracy: {{min: 0.5}}\n", size)


def long(size: int) -> str:
    line = "      Natalia sold clips to 48 of her friends in April, and then half as many in May.\n"
    text = line * (20_000 // len(line))
    return fill(HEAD + "questions:\n", lambda i: f"  - id: q{i:06d}\n    answer: 72\n    question: |\n{text}", size)


def deep(size: int, depth: int = MAX_DEPTH - 3) -> str:  # the question list and its mapping are 2 levels
    nested = "[" * depth + "x" + "]" * depth
    head = HEAD + 'prompt: "{question} {context}"\nquestions:\n'
    return fill(head, lambda i: f'  - {{id: q{i:06d}, question: "What is 3 + 4?", answer: 7, context: {nested}}}\n',
                size)


def aliases(size: int) -> str:
    per_alias = 3  # the thresholds mapping, the bound's mapping and its number
    shared = MAX_ALIASED_VALUES // per_alias

    def item(i: int) -> str:
        if i == 0:
            thresholds = "&bound {accuracy: {min: 0.5}}"
        elif i <= shared:
            thresholds = "*bound"
        else:
            return f'  - {{id: q{i:06d}, question: "What is 3 + 4?", answer: 7}}\n'
        return f'  - {{id: q{i:06d}, question: "What is 3 + 4?", answer: 7, thresholds: {thresholds}}}\n'
    return fill(HEAD + "questions:\n", item, size)


def brackets(size: int) -> str:
    """The densest YAML: a list of empty lists, two bytes a value (refused past the node limit)."""
    return HEAD + 'questions:\n  - {id: a, question: "What is 3 + 4?", answer: 7}\ndescription: [' + \
        "[]," * ((size - len(HEAD) - 80) // 3) + "[]]\n"


SHAPES = {"brackets": brackets, "inline": inline, "block": block, "long": long, "deep": deep, "aliases": aliases}


def cpu_seconds(run, repeat: int) -> tuple[float, Any]:
    """The median CPU time of `repeat` runs of `run()`, and its last result."""
    times, result = [], None
    for _ in range(repeat):
        result = None
        gc.collect()
        start = time.process_time()
        result = run()
        times.append(time.process_time() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=990_000, help="bytes per suite (default: just under 1 MB)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the median is shown")
    parser.add_argument("--keep", type=Path, help="write the suites here (kept) instead of a temporary directory")
    parser.add_argument("shapes", nargs="*", help=f"which shapes (default: all of {', '.join(SHAPES)})")
    args = parser.parse_args()
    unknown = set(args.shapes) - set(SHAPES)
    if unknown:
        parser.error(f"unknown shape {sorted(unknown)[0]!r}; known: {', '.join(SHAPES)}")
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        print(f"{'shape':<8} {'size':>9} {'questions':>9} {'load_suite':>11} {'yaml.load':>10} {'ratio':>6}")
        for name in args.shapes or SHAPES:
            path = out / f"{name}.yaml"
            path.write_text(SHAPES[name](args.size), encoding="utf-8")
            text = path.read_text(encoding="utf-8")
            seconds, suite = cpu_seconds(partial(load_or_refuse, path), args.repeat)
            baseline, _ = cpu_seconds(partial(yaml.load, text, Loader=_Loader), args.repeat)
            count = f"{len(suite.questions):,}" if not isinstance(suite, SuiteError) else "refused"
            print(f"{name:<8} {path.stat().st_size / 1e6:>7.2f}MB {count:>9} "
                  f"{seconds:>9.3f} s {baseline:>8.3f} s {seconds / baseline:>5.2f}x")


def load_or_refuse(path: Path):
    """The suite, or the SuiteError refusing it (too dense a file is refused, in bounded time)."""
    try:
        return load_suite(path)
    except SuiteError as exc:
        return exc


if __name__ == "__main__":
    main()
