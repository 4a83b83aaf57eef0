"""One question end to end: traces → verdicts → rewards, pairs, margins, advantages → thresholds.

`score_question` is pure (traces in, result out), so the JSON report can be re-scored from its
recorded traces alone; `evaluate_question` adds sampling through a cassette.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import objectives as obj
from . import stats
from .backends import logprobs_note, make_sampler, make_scorer
from .finish import finish_verdict, withheld
from .length_bias import per_token_margins
from .paths import shown_path
from .prices import Price, suite_price
from .recording import CassetteProblem, cassette_path, use_cassette
from .rewards import RewardError, resolve_reward, reward_kwargs, rewards_per_function, weighted_sum
from .sampling import Prompt, Sampler, Scorer
from .suite import Question, ScorerConfig, Suite
from .thresholds import ThresholdFailure, check_thresholds
from .throttle import SERIAL, RequestPolicy
from .types import Trace, Verdict
from .verify import equivalent, verify


@dataclass
class QuestionResult:
    suite: str
    question_id: str
    index: int
    traces: list[Trace]
    verdicts: list[Verdict]
    rewards: np.ndarray
    advantages: np.ndarray
    chosen_idx: np.ndarray
    rejected_idx: np.ndarray
    margins: np.ndarray | None  # one per *scored* pair (both sides have logps); None when unavailable
    scored_pairs: np.ndarray  # indices into the pair arrays that have margins
    metrics: dict[str, float | int | None]
    dpo_unavailable: str | None  # why DPO metrics are unavailable, or None
    intervals: dict[str, list[float]] = field(default_factory=dict)  # 95% intervals of some metrics
    failures: list[ThresholdFailure] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)  # thresholds not applicable (e.g. no pairs)
    prompt: Prompt = ""  # as sent (rendered from the suite's template): text or a chat
    answer: str = ""  # the reference the verifier compared against
    # The question's fields (dataset columns, an inline question's extra keys, `question`): what
    # reward functions got besides prompts and answer, so the rewards recompute from the report and
    # GRPO exports carry the columns a team's reward functions read.
    columns: dict[str, Any] = field(default_factory=dict)
    # Each reward function's reward per trace (None: it does not apply); `rewards` is their weighted
    # sum, NaN where every function returned None (see rlhf_eval.rewards).
    rewards_by_function: dict[str, list[float | None]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values: travels through pytest-xdist and into the JSON report."""
        margin_of = {}
        if self.margins is not None:
            margin_of = {int(p): float(m) for p, m in zip(self.scored_pairs, self.margins)}
        return {
            "suite": self.suite,
            "id": self.question_id,
            "index": self.index,
            "passed": self.passed,
            "prompt": self.prompt,
            "answer": self.answer,
            "columns": dict(self.columns),
            "metrics": dict(self.metrics),
            "intervals": dict(self.intervals),
            "dpo_unavailable": self.dpo_unavailable,
            "failures": [f.to_dict() for f in self.failures],
            "unchecked": list(self.unchecked),
            "traces": [
                {**t.to_dict(), "verdict": v.status, "extracted": v.extracted, "detail": v.detail,
                 "reward": None if math.isnan(r) else float(r), "advantage": float(a),
                 "rewards_by_function": {name: rewards[i] for name, rewards in self.rewards_by_function.items()}}
                for i, (t, v, r, a) in enumerate(zip(self.traces, self.verdicts, self.rewards, self.advantages))
            ],
            "pairs": [
                {"chosen": int(chosen), "rejected": int(rejected), "margin": margin_of.get(p)}
                for p, (chosen, rejected) in enumerate(zip(self.chosen_idx, self.rejected_idx))
            ],
        }


def error_result(suite: Suite, question: Question, error: str) -> dict[str, Any]:
    """A report question that could not be scored (its cassette, the API or a verifier failed):
    the keys of `QuestionResult.to_dict`, with no traces or metrics, and the one-line `error`."""
    return {"suite": suite.name, "id": question.id, "index": question.index, "passed": False,
            "prompt": suite.render_prompt(question), "answer": question.answer,
            "columns": dict(question.fields), "metrics": None, "intervals": {},
            "dpo_unavailable": None, "failures": [], "unchecked": [], "traces": [], "pairs": [], "error": error}


def verdict_for(trace: Trace, question: Question, suite: Suite) -> Verdict:
    """How the API finished decides first (`rlhf_eval.finish`); only a finished answer goes to the verifier."""
    decided = finish_verdict(trace.finish_reason)
    if decided is not None:
        return Verdict(decided[0], None, decided[1])
    if trace.answer_missing:
        return Verdict("unparsable", None, trace.answer_missing)
    return verify(trace.text, question.answer, suite.spec.verifier.name, **question.verifier_options)


def score_question(suite: Suite, question: Question, traces: list[Trace]) -> QuestionResult:
    """Verdicts, rewards, advantages, pairs, DPO margins and thresholds of one question's traces.
    Raises VerifierError for a verifier's failure and RewardError (a VerifierError) for a reward
    function's, each one line naming it; RewardError too for weighted rewards whose sum, or whose
    group's mean and std, is beyond the float range."""
    spec = suite.spec
    verdicts = [verdict_for(t, question, suite) for t in traces]
    prompt = suite.render_prompt(question)
    by_function, rewards = suite_rewards(suite, question, prompt, traces, verdicts)
    scorable = ~np.isnan(rewards)
    correct = np.array([v.correct for v in verdicts], dtype=bool)
    # Pairs stay on correctness, as DPO data is built from verified answers; best_worst ranks by the
    # weighted reward, an unscorable trace ranking last on its side (never "best", never "worst").
    ranked = np.where(scorable, rewards, np.where(correct, -np.inf, np.inf))
    chosen_idx, rejected_idx = obj.preference_pairs(correct, ranked, spec.dpo.pairing)
    # As TRL: unscorable traces are out of the group's mean and std, and their advantage is 0.
    advantages = np.zeros(len(traces))
    signal = rewards[scorable] if scorable.any() else np.zeros(1)
    with np.errstate(over="ignore", invalid="ignore"):  # finite rewards near the float range: refused below
        advantages[scorable] = obj.grpo_advantages(rewards[scorable], scale_rewards=spec.grpo.scale_rewards,
                                                   epsilon=spec.grpo.epsilon)
        # No trace with a reward (every function returned None for each) is no signal: spread 0.
        spread = obj.reward_spread(signal)
    if not (np.isfinite(advantages).all() and math.isfinite(spread)):
        raise RewardError(f"the weighted rewards on question {question.id!r} (from {signal.min():g} to "
                          f"{signal.max():g}) are too large for their group's mean and std to be finite; scale the "
                          "reward functions or reward_weights down")

    counts = obj.verdict_counts([v.status for v in verdicts])
    k = len(traces)
    metrics: dict[str, Any] = {
        "k": k, **counts,
        "accuracy": obj.accuracy(correct),
        "pass_at_k": obj.pass_at_k(k, int(correct.sum()), k),
        "unparsable_rate": counts["unparsable"] / k,
        "unique_traces": obj.unique_traces([t.text for t in traces]),
        "pairs": int(len(chosen_idx)),
        "spread": spread,
        "nonzero_advantages": obj.nonzero_advantages(advantages),
        "mean_tokens": _mean([t.token_count for t in traces]),
        "mean_reasoning_tokens": _mean([t.reasoning_tokens for t in traces]),
        **token_usage(traces, suite_price(spec.model)[0]),
    }

    reference = spec.dpo.reference if isinstance(spec.dpo.reference, ScorerConfig) else None  # None: "none"
    with_reference = reference is not None
    logps = _array([t.logp for t in traces])
    ref_logps = _array([t.ref_logp for t in traces])
    tokens = np.array([t.token_count or 0 for t in traces], dtype=float)
    has_logp = ~np.isnan(logps) & ((tokens > 0) | (not spec.dpo.length_normalized))
    if with_reference:
        has_logp &= ~np.isnan(ref_logps)
    scored = np.flatnonzero(has_logp[chosen_idx] & has_logp[rejected_idx]) if len(chosen_idx) else np.array([], int)
    margins = None
    unavailable = None
    if np.isnan(logps).all():
        unavailable = (logprobs_note(spec.model) or next((t.logp_note for t in traces if t.logp_note), None)
                       or f"{spec.model.name} returned no log-probabilities")
    elif reference is not None and np.isnan(ref_logps).all():
        unavailable = f"the reference model {reference.name} scored no trace"
    elif len(chosen_idx) and not len(scored):
        unavailable = "no preference pair has log-probabilities on both sides"
    if unavailable is None:
        metrics["mean_logp"] = float(np.nanmean(np.where(has_logp, logps, np.nan)))
        if with_reference:
            metrics["mean_ref_logp"] = float(np.nanmean(np.where(has_logp, ref_logps, np.nan)))
        seq = obj.sequence_logps(np.where(has_logp, logps, 0.0), np.maximum(tokens, 1),
                                 spec.dpo.length_normalized)
        ref = np.where(has_logp, ref_logps, 0.0) if with_reference else None
        rewards_dpo = obj.dpo_implicit_rewards(seq, ref, spec.dpo.beta)
        margins = obj.dpo_margins(rewards_dpo[chosen_idx[scored]], rewards_dpo[rejected_idx[scored]])
        metrics["pairs_scored"] = int(len(scored))
        metrics.update(dpo_summary(margins, spec.dpo))
        sides = [(t.logp, t.ref_logp, t.token_count) for t in traces]
        per_token = per_token_margins([sides[i] for i in chosen_idx[scored]], [sides[i] for i in rejected_idx[scored]],
                                      spec.dpo.beta, with_reference)
        metrics["margin_per_token"] = float(per_token.mean()) if len(per_token) else None
    else:
        metrics.update({"mean_logp": None, "pairs_scored": 0, "mean_margin": None,
                        "reward_accuracy": None, "dpo_loss": None, "margin_per_token": None})

    metrics["maj_at_k"] = majority_vote_accuracy(verdicts, question, suite)
    metrics["pass_at"], metrics["pass_hat"] = obj.pass_curves(k, int(correct.sum())) if k else ([], [])
    intervals = question_intervals(correct, signal, margins)
    result = QuestionResult(
        suite=suite.name, question_id=question.id, index=question.index, traces=list(traces),
        verdicts=verdicts, rewards=rewards, advantages=advantages, chosen_idx=chosen_idx,
        rejected_idx=rejected_idx, margins=margins, scored_pairs=scored, metrics=metrics,
        dpo_unavailable=unavailable, intervals=intervals, prompt=prompt,
        answer=question.answer, columns=question.fields, rewards_by_function=by_function,
    )
    result.failures, result.unchecked = check_thresholds(metrics, question.thresholds, unavailable, intervals)
    return result


def suite_rewards(suite: Suite, question: Question, prompt: Prompt, traces: list[Trace],
                  verdicts: list[Verdict]) -> tuple[dict[str, list[float | None]], np.ndarray]:
    """Each of the suite's reward functions called on the traces (sampled from `prompt`) as TRL
    calls it, and their weighted sum: ({name: k rewards, None where it does not apply}, (k,)
    floats, NaN where none applies). Raises RewardError (one line) for a function that fails."""
    funcs = suite.reward_funcs
    entries = [resolve_reward(name) for name, _ in funcs]
    kwargs = reward_kwargs(prompt, question.fields, question.answer, [v.status for v in verdicts],
                           suite.verdict_rewards)
    per_function = rewards_per_function(entries, [t.text for t in traces], kwargs, question.id)
    by_function = {name: [None if r != r else r for r in column]  # NaN (r != r): it does not apply
                   for (name, _), column in zip(funcs, per_function.T.tolist())}
    return by_function, weighted_sum(per_function, [w for _, w in funcs], [name for name, _ in funcs], question.id)


def question_intervals(correct: np.ndarray, rewards: np.ndarray, margins: np.ndarray | None) -> dict:
    """95% intervals: Wilson for proportions, seeded percentile bootstrap for margin and spread."""
    out = {"accuracy": list(stats.wilson_interval(int(correct.sum()), len(correct))),
           "spread": list(stats.bootstrap_interval(rewards, "std"))}
    if margins is not None and len(margins):
        out["reward_accuracy"] = list(stats.wilson_interval(int((margins > 0).sum()), len(margins)))
        out["mean_margin"] = list(stats.bootstrap_interval(margins, "mean"))
    return out


def majority_vote_accuracy(verdicts: list[Verdict], question: Question, suite: Suite) -> float | None:
    """maj@k with k = samples: answers grouped by the verifier's equivalence, unparsable ones excluded.
    None when a judged trace has no extracted answer to vote with (a verifier that returns a bool)."""
    name, options = suite.spec.verifier.name, question.verifier_options
    answers = [v.extracted if v.status in ("correct", "incorrect") else None for v in verdicts]
    if any(a is None for a, v in zip(answers, verdicts) if v.status in ("correct", "incorrect")):
        return None
    classes = stats.answer_classes(answers, lambda a, b: equivalent(a, b, name, **options))
    return stats.maj_at_k(classes, [v.correct for v in verdicts], len(verdicts))


def dpo_summary(margins: np.ndarray, dpo) -> dict[str, float | None]:
    """Mean margin, reward accuracy and loss over scored pairs (None when there are none)."""
    if not len(margins):
        return {"mean_margin": None, "reward_accuracy": None, "dpo_loss": None}
    if dpo.length_normalized:
        loss = obj.simpo_loss(margins, dpo.simpo_gamma)
    else:
        loss = obj.dpo_loss(margins, dpo.loss_type, dpo.label_smoothing, beta=dpo.beta)
    return {"mean_margin": float(np.mean(margins)), "reward_accuracy": obj.reward_accuracy(margins),
            "dpo_loss": float(loss)}


def token_usage(traces, price: Price | None) -> dict[str, int | float | None]:
    """What a question's requests were billed, from its traces (dicts or `Trace`s, with
    `prompt_tokens`, `output_tokens`, `token_count`, `reasoning_tokens`):

    - `prompt_tokens`, `output_tokens`, `total_tokens`: sums over the traces (each request counted
      once: see `types.charge_request`); None when any trace's request reported no usage.
    - `answer_tokens`, `thinking_tokens`: sums of `token_count` and `reasoning_tokens` over the
      traces that have one (None when none has): how the output splits.
    - `cost_usd`: `price.cost(prompt, output)`; None without a price or without the usage.
    """
    def get(t, key):
        return t.get(key) if isinstance(t, dict) else getattr(t, key)

    def total(key: str, every: bool) -> int | None:
        values = [get(t, key) for t in traces]
        present = [v for v in values if v is not None]
        return None if not present or (every and len(present) < len(values)) else int(sum(present))

    prompt, output = total("prompt_tokens", True), total("output_tokens", True)
    both = prompt is not None and output is not None
    return {"prompt_tokens": prompt, "output_tokens": output,
            "total_tokens": prompt + output if both else None,  # type: ignore[operator]
            "answer_tokens": total("token_count", False), "thinking_tokens": total("reasoning_tokens", False),
            "cost_usd": price.cost(prompt, output) if price is not None and both else None}  # type: ignore[arg-type]


def _array(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _mean(values) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


@dataclass
class Backends:
    """What a suite samples and scores with; built once per suite and reused for its questions."""

    sampler: Sampler
    policy_scorer: Scorer | None = None  # gives the policy's logps when the sampler returns none
    reference: Scorer | None = None  # the DPO reference model

    @classmethod
    def for_suite(cls, suite: Suite, *, replay: bool = False, policy: RequestPolicy = SERIAL) -> "Backends":
        spec = suite.spec
        return cls(
            sampler=make_sampler(spec.model, replay=replay, policy=policy),
            policy_scorer=(make_scorer(spec.model.scorer, replay=replay, policy=policy)
                           if spec.model.scorer else None),
            reference=(make_scorer(spec.dpo.reference, replay=replay, policy=policy)
                       if spec.dpo.reference != "none" else None),
        )


def draw_traces(prompt: Prompt, k: int, seed: int, backends: Backends) -> list[Trace]:
    """Sample k traces, then add scorer log-probabilities: the policy scorer's for every trace when the
    sampler's are missing for any, the reference's for all."""
    traces = backends.sampler.sample(prompt, k, seed)
    scorable = [i for i, t in enumerate(traces) if t.text and not withheld(t.finish_reason)]
    if backends.policy_scorer is not None and any(traces[i].logp is None for i in scorable):
        # The scorer then scores every trace of the question: a margin must never compare the
        # sampler's logp (conditioned on any reasoning) with a scorer's (conditioned on the prompt).
        scores = backends.policy_scorer.score(prompt, [traces[i].text for i in scorable])
        for i, sc in zip(scorable, scores):
            # The scorer's token count goes with its logp, so a per-token mean stays consistent.
            traces[i] = dataclasses.replace(
                traces[i], logp=sc.logp, token_count=sc.token_count,
                logp_source=f"scorer {backends.policy_scorer.name}", logp_note=None,
                extra={**traces[i].extra, "api_token_count": traces[i].token_count})
    if backends.reference is not None and scorable:
        scores = backends.reference.score(prompt, [traces[i].text for i in scorable])
        for i, sc in zip(scorable, scores):
            traces[i] = dataclasses.replace(traces[i], ref_logp=sc.logp, ref_token_count=sc.token_count)
    return traces


def sample_question(suite: Suite, question: Question, backends: Backends, *,
                    cassette_dir: str | Path | None = None, record_mode: str = "none",
                    rerecord_hint: str = "") -> list[Trace]:
    """Draw the question's k traces, through its cassette when `cassette_dir` is given."""
    prompt = suite.render_prompt(question)
    if cassette_dir is None:
        return draw_traces(prompt, suite.spec.samples, suite.spec.seed, backends)
    path = cassette_path(cassette_dir, suite.name, question.id)
    with use_cassette(path, record_mode, rerecord_hint=rerecord_hint) as cassette:
        traces = draw_traces(prompt, suite.spec.samples, suite.spec.seed, backends)
        if record_mode != "none" and traces and not len(cassette):  # nothing to replay them from
            raise CassetteProblem(f"provider {suite.spec.model.provider!r} gave traces but sent no request that can "
                                  "be recorded (rlhf-eval records HTTP through httpx, requests, urllib3 or aiohttp); "
                                  f"nothing was written to {shown_path(path)}")
        return traces


def evaluate_question(suite: Suite, question: Question | str, *, backends: Backends | None = None,
                      cassette_dir: str | Path | None = None, record_mode: str = "none") -> QuestionResult:
    """Sample, verify and score one question — the whole item, usable from a notebook."""
    if isinstance(question, str):
        question = suite.question(question)
    backends = backends or Backends.for_suite(suite, replay=record_mode == "none" and cassette_dir is not None)
    traces = sample_question(suite, question, backends, cassette_dir=cassette_dir, record_mode=record_mode)
    return score_question(suite, question, traces)
