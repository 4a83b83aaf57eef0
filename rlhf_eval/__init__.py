"""rlhf-eval: does the model still produce the preference signal online RLHF needs?

Usable without pytest:

    from rlhf_eval import load_suite, evaluate_question
    suite = load_suite("suites/gsm8k_smoke.yaml")
    result = evaluate_question(suite, "gsm8k-0000", cassette_dir="cassettes")
    result.metrics["accuracy"], result.metrics["mean_margin"]
"""
from .evaluate import Backends, QuestionResult, evaluate_question, sample_question, score_question
from .sampling import Sampler, SamplingError, Score, Scorer, ScoringError
from .suite import Question, Suite, SuiteError, load_suite
from .types import VERDICTS, Trace, Verdict
from .verify import verify

__all__ = [
    "Backends", "Question", "Score", "Scorer", "ScoringError", "QuestionResult", "Sampler", "SamplingError", "Suite", "SuiteError",
    "Trace", "VERDICTS", "Verdict", "evaluate_question", "load_suite", "sample_question", "score_question",
    "verify",
]
