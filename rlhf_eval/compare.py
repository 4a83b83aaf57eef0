"""This run against a saved baseline: deltas, which changes are significant, and where preference moved.

Everything is computed from the two JSON reports alone. A change counts as significant at
`ALPHA`: proportions (accuracy, unparsable rate, reward accuracy, fraction of zero-spread
questions) by a two-proportion z-test, the mean margin by a bootstrap test on the two runs' pair
margins, and the mean spread by a paired bootstrap over the questions both runs have.
"""
from __future__ import annotations

import math

import numpy as np

from . import stats
from .provenance import package_changes
from .report_model import (
    Comparison,
    MetricChange,
    PreferenceFlip,
    Question,
    QuestionComparison,
    QuestionMetrics,
    Report,
    Suite,
    SuiteComparison,
)
from .rows import higher_is_better, is_zero_spread

ALPHA = 0.05
# The suite aggregates compare_suite tests, so the ones --rlhf-compare-fail may gate on.
COMPARED_METRICS = ("accuracy", "unparsable_rate", "frac_zero_spread", "reward_accuracy", "mean_margin", "mean_spread")


def _m(q: Question) -> QuestionMetrics:
    """The metrics of a scored question (only those are compared)."""
    assert q.metrics is not None
    return q.metrics


def _traces(questions: list[Question]):
    return [t for q in questions for t in q.traces]


def _margins(questions: list[Question]) -> np.ndarray:
    return np.array([p.margin for q in questions for p in q.pairs if p.margin is not None], float)


def _entry(metric: str, base, cur, p_value: float | None, test: str | None) -> MetricChange:
    delta = None if base is None or cur is None else cur - base
    worse = None if delta is None else (delta < 0 if higher_is_better(metric) else delta > 0)
    return MetricChange(baseline=base, current=cur, delta=delta, p_value=p_value, test=test,
                        significant=bool(p_value is not None and p_value < ALPHA and delta not in (None, 0)),
                        worse=bool(worse) and bool(delta))


def _proportion(metric, x1, n1, x2, n2):
    if not n1 or not n2:
        return _entry(metric, x1 / n1 if n1 else None, x2 / n2 if n2 else None, None, None)
    return _entry(metric, x1 / n1, x2 / n2, stats.two_proportion_test(x1, n1, x2, n2), "two-proportion z-test")


def compare_suite(cur: Suite, base: Suite) -> SuiteComparison:
    """Suite-level deltas with tests, and per-question deltas with drift."""
    cq = [q for q in cur.questions if q.metrics]
    bq = [q for q in base.questions if q.metrics]
    ct, bt = _traces(cq), _traces(bq)
    cm, bm = _margins(cq), _margins(bq)
    aggregates = {
        "accuracy": _proportion("accuracy", sum(t.verdict == "correct" for t in bt), len(bt),
                                sum(t.verdict == "correct" for t in ct), len(ct)),
        "unparsable_rate": _proportion("unparsable_rate", sum(t.verdict == "unparsable" for t in bt), len(bt),
                                       sum(t.verdict == "unparsable" for t in ct), len(ct)),
        "frac_zero_spread": _proportion("frac_zero_spread", sum(is_zero_spread(_m(q).spread) for q in bq), len(bq),
                                        sum(is_zero_spread(_m(q).spread) for q in cq), len(cq)),
        "reward_accuracy": _proportion("reward_accuracy", int((bm > 0).sum()), len(bm), int((cm > 0).sum()), len(cm)),
    }
    if len(bm) > 1 and len(cm) > 1:
        aggregates["mean_margin"] = _entry("mean_margin", float(bm.mean()), float(cm.mean()),
                                           stats.bootstrap_difference_test(bm, cm), "bootstrap difference of means")
    else:
        aggregates["mean_margin"] = _entry("mean_margin", float(bm.mean()) if len(bm) else None,
                                           float(cm.mean()) if len(cm) else None, None, None)
    base_by_id = {q.id: q for q in bq}
    shared = [(base_by_id[q.id], q) for q in cq if q.id in base_by_id]
    if len(shared) > 1:
        b_spread = np.array([_m(b).spread for b, _ in shared], float)
        c_spread = np.array([_m(c).spread for _, c in shared], float)
        aggregates["mean_spread"] = _entry("mean_spread", float(np.mean(b_spread)), float(np.mean(c_spread)),
                                           stats.paired_bootstrap_test(b_spread, c_spread),
                                           "paired bootstrap over questions")
    questions = {c.id: compare_question(c, b) for b, c in shared}
    return SuiteComparison(name=cur.name, aggregates=aggregates, questions=questions,
                           only_in_baseline=sorted(set(base_by_id) - {q.id for q in cq}),
                           only_in_current=sorted({q.id for q in cq} - set(base_by_id)))


def compare_question(cur: Question, base: Question) -> QuestionComparison:
    """Per-question deltas of two scored questions, the preference flips and the GRPO signal change."""
    ct, bt = cur.traces, base.traces
    cm, bm = _margins([cur]), _margins([base])
    metrics = {
        "accuracy": _proportion("accuracy", sum(t.verdict == "correct" for t in bt), len(bt),
                                sum(t.verdict == "correct" for t in ct), len(ct)),
        "reward_accuracy": _proportion("reward_accuracy", int((bm > 0).sum()), len(bm), int((cm > 0).sum()), len(cm)),
        "spread": _entry("spread", _m(base).spread, _m(cur).spread, None, None),
        "mean_margin": _entry("mean_margin", _m(base).mean_margin, _m(cur).mean_margin,
                              stats.bootstrap_difference_test(bm, cm) if len(bm) > 1 and len(cm) > 1 else None,
                              "bootstrap difference of means" if len(bm) > 1 and len(cm) > 1 else None),
    }
    was_zero, now_zero = is_zero_spread(_m(base).spread), is_zero_spread(_m(cur).spread)
    signal = None
    if not was_zero and now_zero:
        signal = "lost: every trace now gets the same reward (no GRPO signal)"
    elif was_zero and not now_zero:
        signal = "gained: traces now get different rewards"
    return QuestionComparison(metrics=metrics, flips=preference_flips(cur, base), grpo_signal=signal)


def _answer_margins(question: Question) -> dict[tuple[str, str], float]:
    """Mean margin per (chosen answer, rejected answer): how the model's implicit reward ranks them."""
    traces = question.traces
    sums: dict[tuple[str, str], list[float]] = {}
    for p in question.pairs:
        if p.margin is None:
            continue
        key = (str(traces[p.chosen].extracted), str(traces[p.rejected].extracted))
        sums.setdefault(key, []).append(p.margin)
    return {k: float(np.mean(v)) for k, v in sums.items()}


def preference_flips(cur: Question, base: Question) -> list[PreferenceFlip]:
    """Answer pairs whose preference changed side: the model's implicit reward used to favour the
    correct answer over that wrong one and now does not (or the reverse)."""
    before, after = _answer_margins(base), _answer_margins(cur)
    flips = []
    for key in sorted(set(before) & set(after)):
        b, a = before[key], after[key]
        if (b > 0) != (a > 0):
            flips.append(PreferenceFlip(chosen=key[0], rejected=key[1], baseline_margin=b, current_margin=a,
                                        direction="now rejected" if b > 0 else "now preferred"))
    return flips


def _versions(suite: Suite, key: str = "model_version") -> list[str]:
    return sorted({str(v) for q in suite.questions for t in q.traces if (v := getattr(t, key, None))})


def compare_reports(current: Report | dict, baseline: Report | dict, baseline_name: str) -> Comparison:
    """This run against `baseline` (its suites matched by name); `failures` is left empty for
    `regressions` to fill. A report dict is validated into a Report first (ReportError if it does not fit)."""
    current, baseline = Report.of(current), Report.of(baseline)
    base_suites = {s.name: s for s in baseline.suites}
    suites, notes = [], []
    changed = False
    for s in current.suites:
        b = base_suites.get(s.name)
        if b is None:
            notes.append(f"suite {s.name} is not in baseline {baseline_name}")
            continue
        was, now = _versions(b), _versions(s)
        if was != now:
            changed = True
            notes.append(f"suite {s.name}: model version changed: {', '.join(was)} → {', '.join(now)}")
        # A server build or cache id (system_fingerprint) changes without the model changing.
        fp_was, fp_now = _versions(b, "system_fingerprint"), _versions(s, "system_fingerprint")
        if fp_was and fp_now and fp_was != fp_now:
            notes.append(f"suite {s.name}: backend fingerprint changed ({', '.join(fp_was)} → {', '.join(fp_now)}); "
                         "the model is the same")
        suites.append(compare_suite(s, b))
    notes += [f"package changed: {change}" for change in package_changes(current.provenance, baseline.provenance)]
    return Comparison(baseline=baseline_name, model_version_changed=changed, note="; ".join(notes),
                      suites=suites, failures=[])


def parse_fail_rules(values: list[str]) -> dict[str, float]:
    """`accuracy:0.05` → {"accuracy": 0.05}: the worsening each metric may show before the run fails.
    Raises ValueError with one line for a bad rule, a DELTA that is not a finite number ≥ 0 included
    (NaN would never be exceeded, so it would switch the gate off without a word)."""
    rules = {}
    for value in values:
        metric, sep, delta = value.partition(":")
        if not sep or metric not in COMPARED_METRICS:
            raise ValueError(f"--rlhf-compare-fail {value!r}: expected METRIC:DELTA with METRIC one of "
                             f"{', '.join(sorted(COMPARED_METRICS))}")
        try:
            allowed = float(delta)
        except ValueError:
            allowed = math.nan
        if not (math.isfinite(allowed) and allowed >= 0):
            raise ValueError(f"--rlhf-compare-fail {value!r}: DELTA must be a finite number ≥ 0 (the worsening "
                             f"allowed, e.g. {metric}:0.05)")
        rules[metric] = abs(allowed)  # -0.0 → 0.0
    return rules


def regressions(comparison: Comparison, rules: dict[str, float]) -> list[str]:
    """Suite-level changes that are worse by more than the allowed delta *and* significant."""
    lines = []
    for s in comparison.suites:
        for metric, allowed in rules.items():
            e = s.aggregates.get(metric)
            if e and e.worse and e.significant and e.delta is not None and abs(e.delta) > allowed:
                lines.append(f"suite {s.name}: {metric} {e.baseline:.4g} → {e.current:.4g} "
                             f"(Δ {e.delta:+.4g}, allowed {allowed:g}; p = {e.p_value:.3g}, {e.test})")
    return lines
