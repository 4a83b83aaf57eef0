"""rlhf-eval: does the model still produce the preference signal online RLHF needs?

Usable without pytest:

    from rlhf_eval import load_suite, evaluate_question
    suite = load_suite("suites/gsm8k_smoke.yaml")
    result = evaluate_question(suite, "gsm8k-0000", cassette_dir="cassettes")
    result.metrics["accuracy"], result.metrics["mean_margin"]

    from rlhf_eval import run_suites
    report = run_suites(["suites/"], report_json="report.json")   # what `pytest suites/` does
    report.suites[0].aggregates.frac_zero_spread                   # a typed rlhf_eval.Report
"""
from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

# The names below load on first use (PEP 562): importing one submodule — the emulator, the report,
# the command line, or the pytest plugin in a run with no suite — does not pay for vcrpy, the
# provider SDKs, or the verifiers' patterns (~40 ms).
_EXPORTS = {
    "rewards": ("RewardError", "reward_function"),
    "evaluate": ("Backends", "QuestionResult", "evaluate_question", "sample_question", "score_question"),
    "runner": ("Run", "RunError", "RunOptions", "run_suites"),
    "report_model": ("Report", "ReportError"),
    "sampling": ("Sampler", "SamplingError", "Score", "Scorer", "ScoringError"),
    "suite": ("Question", "Suite", "SuiteError", "load_suite"),
    "types": ("VERDICTS", "Trace", "Verdict"),
    "verify": ("Verifier", "VerifierError", "verifier"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted([*_MODULE_OF, "verify"])


class _Package(types.ModuleType):
    """This package, whose `verify` is the function `rlhf_eval.verify.verify`, loaded on first use.

    `verify` also names the submodule, and importing a submodule binds it on its package (the
    evaluator imports it): a plain lazy name would then turn into the module. As a property the
    name stays the function; anything else assigned to it (a test's monkeypatch) is kept."""

    @property
    def verify(self) -> Any:
        if "verify" in self.__dict__:
            return self.__dict__["verify"]
        from .verify import verify as function  # binds the submodule here: the setter skips it

        return function

    @verify.setter
    def verify(self, value: Any) -> None:
        if not (isinstance(value, types.ModuleType) and value.__name__ == f"{__name__}.verify"):
            self.__dict__["verify"] = value

    @verify.deleter
    def verify(self) -> None:
        self.__dict__.pop("verify", None)


sys.modules[__name__].__class__ = _Package


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
    from .report_model import Report, ReportError
    from .runner import Run, RunError, RunOptions, run_suites
    from .sampling import Sampler, SamplingError, Score, Scorer, ScoringError
    from .suite import Question, Suite, SuiteError, load_suite
    from .types import VERDICTS, Trace, Verdict
    from .verify import Verifier, VerifierError, verifier, verify
