"""Every case in tests/verifier_corpus.yaml: what models really write, and the verdict it must get.

The corpus names each case's kind of fault and where that kind was reported; add a case there,
not here."""
from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import pytest
import yaml

from rlhf_eval.types import VERDICTS
from rlhf_eval.verify import VERIFIERS, equivalent, verify

CORPUS = Path(__file__).with_name("verifier_corpus.yaml")
CASES = yaml.safe_load(CORPUS.read_text(encoding="utf-8"))
FIELDS = {"verifier", "text", "reference", "options", "expected", "extracted", "kind", "source"}
HAS_MATH = importlib.util.find_spec("math_verify") is not None


def _id(case: dict) -> str:
    text = case["text"].replace("\n", "⏎")
    return f"{case.get('verifier', 'numeric')}-{case['kind']}-{text[:40]}"


def test_corpus_is_well_formed():
    assert len(CASES) >= 80
    for case in CASES:
        assert set(case) <= FIELDS, f"unknown field(s) {set(case) - FIELDS} in {case}"
        assert {"text", "reference", "expected", "kind", "source"} <= set(case), case
        assert case.get("verifier", "numeric") in VERIFIERS, case
        assert case["expected"] in VERDICTS[:3], case
        assert case["kind"].strip() and str(case["source"]).strip(), case
    kinds = Counter(case["kind"] for case in CASES)
    # every kind of fault the verifiers were fixed for is covered more than once
    for kind in ("latex-fraction", "scientific-notation", "mixed-number", "thousands-space", "number-word",
                 "marker-statement", "choice-format", "choice-letter-in-word", "choice-article"):
        assert kinds[kind] >= 2, kind


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_corpus_case(case):
    verifier = case.get("verifier", "numeric")
    if verifier == "math" and not HAS_MATH:
        pytest.skip("math-verify not installed")
    verdict = verify(case["text"], str(case["reference"]), verifier, **case.get("options", {}))
    assert verdict.status == case["expected"], (verdict, case["kind"], case["source"])
    if "extracted" in case:
        assert verdict.extracted == str(case["extracted"]), (verdict, case["kind"])


@pytest.mark.parametrize("case", [c for c in CASES if c.get("verifier", "numeric") != "math"], ids=_id)
def test_equivalent_reads_extracted_answers_as_verify_does(case):
    # Majority voting groups extracted answers with `equivalent`; an extracted answer must be the
    # same answer as the reference exactly when verify called it correct.
    verifier = case.get("verifier", "numeric")
    options = case.get("options", {})
    verdict = verify(case["text"], str(case["reference"]), verifier, **options)
    if verdict.extracted is None:
        return
    if verifier == "regex":
        options = {k: v for k, v in options.items() if k != "pattern"}
    assert equivalent(verdict.extracted, str(case["reference"]), verifier, **options) == verdict.correct, verdict
