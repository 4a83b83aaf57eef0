"""rlhf-eval: does the model still produce the preference signal online RLHF needs?

Usable without pytest:

    from rlhf_eval import load_suite, evaluate_question
    suite = load_suite("suites/gsm8k_smoke.yaml")
    result = evaluate_question(suite, "gsm8k-0000", cassette_dir="cassettes")
    result.metrics["accuracy"], result.metrics["mean_margin"]

    from rlhf_eval import run_suites
    report = run_suites(["suites/"], report_json="report.json")   # what `pytest suites/` does
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# `verify` is both a submodule and the function exported under its name: imported now, so the
# name is the function. Loading the submodule later (the evaluator does) would otherwise bind the
# package attribute to the module before a lazy lookup could run. It loads no SDK.
from .verify import Verifier, VerifierError, verifier, verify

# The names below load on first use (PEP 562): importing one submodule — the emulator, the report
# or the command line — does not pay for vcrpy and the provider SDKs.
_EXPORTS = {
    "rewards": ("RewardError", "reward_function"),
    "evaluate": ("Backends", "QuestionResult", "evaluate_question", "sample_question", "score_question"),
    "runner": ("Run", "RunError", "RunOptions", "run_suites"),
    "sampling": ("Sampler", "SamplingError", "Score", "Scorer", "ScoringError"),
    "suite": ("Question", "Suite", "SuiteError", "load_suite"),
    "types": ("VERDICTS", "Trace", "Verdict"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted([*_MODULE_OF, "Verifier", "VerifierError", "verifier", "verify"])


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # for type checkers and editors: the same names, imported eagerly
    from .rewards import RewardError, reward_function
    from .evaluate import Backends, QuestionResult, evaluate_question, sample_question, score_question
    from .runner import Run, RunError, RunOptions, run_suites
    from .sampling import Sampler, SamplingError, Score, Scorer, ScoringError
    from .suite import Question, Suite, SuiteError, load_suite
    from .types import VERDICTS, Trace, Verdict
