"""Rebuild the emulator's trace bank (``data/bank.json.gz``) from the GSM8K model solutions.

Usage::

    python -m rlhf_eval.emulator.build_bank /work/shared/data/gsm8k/model_solutions_dev.jsonl

The bank keeps only what the emulator needs: each question's text and the text of its
four model-written solutions, in the fixed order of :data:`SOLUTION_KEYS`. The
``is_correct`` labels and the ground-truth answer are deliberately dropped, because the
emulator must never be able to consult an answer key. The output is byte-for-byte
deterministic (sorted keys, fixed gzip mtime), so rebuilding produces no spurious diff.
The MIT licence of the source data (``data/LICENSE``) must stay next to the bank.
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
from pathlib import Path

SOLUTION_KEYS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")
BANK_PATH = Path(__file__).with_name("data") / "bank.json.gz"


def build(src: Path, dst: Path = BANK_PATH) -> int:
    questions = []
    with open(src, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            questions.append([row["question"], [row[k]["solution"] for k in SOLUTION_KEYS]])
    doc = {
        "format": "rlhf-eval emulator trace bank v1",
        "source": "openai/grade-school-math example_model_solutions.jsonl (first 400 rows); "
        "MIT License, (c) 2021 OpenAI, see LICENSE",
        "solution_sources": list(SOLUTION_KEYS),
        "questions": questions,
    }
    raw = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(raw)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(buf.getvalue())
    return len(questions)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path, help="model_solutions_dev.jsonl")
    ap.add_argument("--out", type=Path, default=BANK_PATH)
    args = ap.parse_args(argv)
    n = build(args.src, args.out)
    print(f"wrote {n} questions to {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
