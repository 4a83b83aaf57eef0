"""This run against a saved baseline: deltas, which changes are significant, and where preference moved.

Everything is computed from the two JSON reports alone. A change counts as significant at
`ALPHA`: proportions (accuracy, unparsable rate, reward accuracy, fraction of zero-spread
questions) by a two-proportion z-test, the mean margin by a bootstrap test on the two runs' pair
margins, and the mean spread by a paired bootstrap over the questions both runs have. A metric the
baseline measured and this run could not (reward accuracy once every preference pair is gone, or
without log-probabilities) is a significant regression, with the reason; one measured only now is
a significant improvement.

Besides the deltas, a comparison lists what else changed and may explain them, as notes: the
model version, each suite setting (temperature, system instruction, verifier, rewards, samples,
DPO and GRPO settings, ...), the prompts, and the suites that ran in only one of the two reports.
"""
from __future__ import annotations

import json
import math
from typing import Any

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
    SettingChange,
    Suite,
    SuiteComparison,
)
from .rows import fmt, higher_is_better, is_number, is_zero_spread

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
    """Suite-level deltas with tests, and per-question deltas with drift. When the two ran different
    questions (`-k`, `--lf`, a changed `limit`), the suite metrics of both are taken over the questions
    both ran, so a subset is not compared with the whole (a question that errored still counts as run)."""
    cq, bq = _shared_questions(cur, base), _shared_questions(base, cur)
    cq = [q for q in cq if q.metrics]
    bq = [q for q in bq if q.metrics]
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
    for metric in COMPARED_METRICS:
        e = aggregates.get(metric)
        change = _measured_on_one_side(e.baseline if e else base.aggregates.get(metric),
                                       e.current if e else cur.aggregates.get(metric),
                                       lambda suite, metric=metric: _why_unmeasured(metric, suite),
                                       base, cur)
        if change is not None:
            aggregates[metric] = change
    questions = {c.id: compare_question(c, b) for b, c in shared}
    base_prompts = {q.id: _as_sent(q.prompt) for q in base.questions}
    ran = {q.id for q in cur.questions}
    return SuiteComparison(name=cur.name, aggregates=aggregates, questions=questions,
                           only_in_baseline=[q.id for q in base.questions if q.id not in ran],  # did not run
                           only_in_current=[q.id for q in cur.questions if q.id not in base_prompts],
                           settings_changed=settings_changed(cur, base),
                           prompts_changed=[q.id for q in cur.questions
                                            if base_prompts.get(q.id) is not None and q.prompt is not None
                                            and _as_sent(q.prompt) != base_prompts[q.id]])


def _as_sent(prompt: Any) -> Any:
    """A prompt as the request carries it: a chat of one user message is sent as that text (the same
    request, the same cassette), so turning a text prompt into that chat changes nothing."""
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], dict) \
            and prompt[0].get("role") == "user" and set(prompt[0]) <= {"role", "content"}:
        return prompt[0].get("content")
    return prompt


def _shared_questions(suite: Suite, other: Suite) -> list[Question]:
    """`suite`'s questions that `other` ran too; all of them when the two share none (nothing else to compare)."""
    ids = {q.id for q in other.questions}
    shared = [q for q in suite.questions if q.id in ids]
    return shared or suite.questions


def _measured_on_one_side(base_value, cur_value, why, base, cur) -> MetricChange | None:
    """A change for a metric that has a value on one side only (None when both or neither have one):
    lost since the baseline is a significant regression, gained a significant improvement; `why(x)`
    says why `x` (base or cur) has none."""
    if is_number(base_value) and cur_value is None:
        return MetricChange(baseline=base_value, current=None, significant=True, worse=True,
                            reason=f"not measured in this run: {why(cur)}")
    if base_value is None and is_number(cur_value):
        return MetricChange(baseline=None, current=cur_value, significant=True, worse=False,
                            reason=f"not measured in the baseline: {why(base)}")
    return None


def _why_unmeasured(metric: str, suite: Suite) -> str:
    """Why `suite` (a report's) has no value of a compared metric, in words."""
    scored = [q for q in suite.questions if q.metrics]
    if not scored:
        n = len(suite.questions)
        return f"none of its {n} question{'s' * (n != 1)} was scored"
    if metric in ("reward_accuracy", "mean_margin"):
        if suite.aggregates.dpo_unavailable:
            return f"DPO metrics unavailable: {suite.aggregates.dpo_unavailable}"
        pairs = sum(len(q.pairs) for q in scored)
        if not pairs:
            return "no preference pairs: each question's traces were all correct or all not correct"
        return f"none of its {pairs} preference pairs has a margin (no log-probabilities)"
    return "no value in the report"


# The suite settings whose changes are listed (the report's Suite fields); `path` and `description`
# say nothing about the numbers, and `suite_thresholds` change the verdict, not the metrics.
COMPARED_SETTINGS = ("model", "samples", "seed", "verifier", "rewards", "reward_funcs", "dpo", "grpo")
_IGNORED_SETTINGS = {"model.api_key_env"}  # where the key is read from changes no answer
# Where and how fast a local model runs changes no answer either (not in its cassette's requests):
# a local model's device and batch size, vLLM's engine settings (rlhf_eval.suite.LOCAL_SETTINGS).
_IGNORED_PREFIXES = ("model.device", "model.batch_size", "model.vllm")


def _flat(value: Any, prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flat(v, f"{prefix}.{k}", out)
    else:
        out[prefix] = value
    return out


def _settings(suite: Suite) -> dict[str, Any]:
    """The suite's compared settings as {dotted key: value}; reward functions as TRL's two lists."""
    # as JSON holds them: a run's own report has tuples where a loaded baseline has lists
    data = json.loads(json.dumps(suite.model_dump(include=set(COMPARED_SETTINGS), exclude_unset=True), default=str))
    funcs = data.pop("reward_funcs", None)
    out: dict[str, Any] = {}
    for key, value in data.items():
        _flat(value, key, out)
    if funcs is not None:  # a report before reward functions has none: not a change
        out["reward_funcs"] = [f["name"] for f in funcs]
        out["reward_weights"] = [f["weight"] for f in funcs]
    return {k: v for k, v in out.items()
            if k not in _IGNORED_SETTINGS and not k.startswith(_IGNORED_PREFIXES)}


DEFAULT = "(default)"  # a verifier option a suite leaves out


def _free_form(key: str) -> bool:
    """Whether `key` lies in a mapping of the suite's own keys (verifier options, a team's provider
    `options`), where a key on one side only is a setting added or removed, not another version's field."""
    return key.startswith("verifier.") or ".options." in f".{key}"


def _leaf_ancestor(key: str, flat: dict[str, Any]) -> str | None:
    """The nearest dotted prefix of `key` that `flat` holds as a value: the other side holds a plain
    value (`dpo.reference: "none"`, `model.scorer: null`, `model.options: {}`) where this one holds
    a mapping (a reference scorer, a price)."""
    parts = key.split(".")
    for n in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in flat:
            return prefix
    return None


def _subtree(flat: dict[str, Any], key: str) -> Any:
    """The value at `key` of a flattened mapping: the value itself, or the mapping under it rebuilt."""
    if key in flat:
        return flat[key]
    out: dict[str, Any] = {}
    for k, v in flat.items():
        if k.startswith(key + "."):
            *path, last = k[len(key) + 1:].split(".")
            node = out
            for part in path:
                node = node.setdefault(part, {})
            node[last] = v
    return out


def settings_changed(cur: Suite, base: Suite) -> dict[str, SettingChange]:
    """The settings of `cur` that differ from `base`'s, by dotted key. A report holds the verifier
    options a suite sets, so one set on one side only is a change (from or to DEFAULT), as is a key
    of a team's provider `options`; a setting that is a plain value on one side and a mapping on the
    other (`dpo.reference: none` → a scorer, `model.price: null` → a price) is one change, at that
    key. Any other setting only one of the two reports holds (one written by another version of
    rlhf-eval) is not a change."""
    now, was = _settings(cur), _settings(base)
    keys = list(now) + [k for k in was if k not in now]
    out = {}
    for k in keys:
        if k in now and k in was:
            if now[k] != was[k]:
                out[k] = SettingChange(baseline=was[k], current=now[k])
        elif (ancestor := _leaf_ancestor(k, was if k in now else now)) is not None:
            if ancestor not in out:
                out[ancestor] = SettingChange(baseline=_subtree(was, ancestor), current=_subtree(now, ancestor))
        elif _free_form(k):
            out[k] = SettingChange(baseline=was.get(k, DEFAULT), current=now.get(k, DEFAULT))
    return out


def show_setting(value: Any, limit: int = 60) -> str:
    """A setting's value in a note, as JSON (strings quoted, null), clipped to `limit` characters; a
    mapping (a reference scorer) without its unset (null, empty) entries, so what is set fits."""
    text = value if value == DEFAULT else json.dumps(_set_entries(value), ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _set_entries(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    return {k: _set_entries(v) for k, v in value.items() if not (v is None or v == {} or v == [])}


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
    for metric, e in list(metrics.items()):
        change = _measured_on_one_side(e.baseline, e.current,
                                       lambda q, metric=metric: _why_question_unmeasured(metric, q),
                                       base, cur)
        if change is not None:
            metrics[metric] = change
    was_zero, now_zero = is_zero_spread(_m(base).spread), is_zero_spread(_m(cur).spread)
    signal = None
    if not was_zero and now_zero:
        signal = "lost: every trace now gets the same reward (no GRPO signal)"
    elif was_zero and not now_zero:
        signal = "gained: traces now get different rewards"
    return QuestionComparison(metrics=metrics, flips=preference_flips(cur, base), grpo_signal=signal)


def _why_question_unmeasured(metric: str, q: Question) -> str:
    if metric in ("reward_accuracy", "mean_margin"):
        if q.dpo_unavailable:
            return f"DPO metrics unavailable: {q.dpo_unavailable}"
        if not q.pairs:
            return "no preference pairs: its traces were all correct or all not correct"
        return "no pair has a margin"
    return "no value in the report"


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
            notes.append(f"suite {s.name} is not in baseline {baseline_name} (new): nothing to compare it with")
            continue
        was, now = _versions(b), _versions(s)
        if was and now and was != now:  # a side with no trace (every question errored) has no version to compare
            changed = True
            notes.append(f"suite {s.name}: model version changed: {', '.join(was)} → {', '.join(now)}")
        # A server build or cache id (system_fingerprint) changes without the model changing.
        fp_was, fp_now = _versions(b, "system_fingerprint"), _versions(s, "system_fingerprint")
        if fp_was and fp_now and fp_was != fp_now:
            notes.append(f"suite {s.name}: backend fingerprint changed ({', '.join(fp_was)} → {', '.join(fp_now)}); "
                         "the model is the same")
        cs = compare_suite(s, b)
        notes += [f"suite {s.name}: {key} changed: {show_setting(c.baseline)} → {show_setting(c.current)}"
                  for key, c in cs.settings_changed.items()]
        both = len(s.questions) - len(cs.only_in_current)  # the questions both runs have
        if cs.prompts_changed:
            notes.append(f"suite {s.name}: prompt changed on {len(cs.prompts_changed)} of the {both} questions "
                         f"both runs have ({_first(cs.prompts_changed)})")
        for ids, what in ((cs.only_in_baseline, f"of baseline {baseline_name} did not run"),
                          (cs.only_in_current, f"are not in baseline {baseline_name}")):
            if ids:
                notes.append(f"suite {s.name}: {len(ids)} question{'s' * (len(ids) != 1)} {what} ({_first(ids)})")
        if (cs.only_in_baseline or cs.only_in_current) and both:
            notes.append(f"suite {s.name}: its metrics below are compared over the {both} question"
                         f"{'s' * (both != 1)} both runs have")
        suites.append(cs)
    ran = {s.name for s in current.suites}
    missing = [s.name for s in baseline.suites if s.name not in ran]
    notes += [f"suite {name} of baseline {baseline_name} did not run: nothing to compare it with" for name in missing]
    notes += [f"package changed: {change}" for change in package_changes(current.provenance, baseline.provenance)]
    return Comparison(baseline=baseline_name, model_version_changed=changed, note="; ".join(notes), notes=notes,
                      suites=suites, failures=[], only_in_baseline=missing,
                      only_in_current=sorted(ran - set(base_suites)))


def one_sided_lines(comparison: Comparison) -> list[tuple[bool, str]]:
    """(worse, line) for each suite metric measured on one side only: "demo: reward_accuracy 0.909 →
    none: not measured in this run: <why>" (worse: lost since the baseline)."""
    def shown(v) -> str:
        return "none" if v is None else fmt(v)

    return [(e.worse, f"{s.name}: {metric} {shown(e.baseline)} → {shown(e.current)}: {e.reason}")
            for s in comparison.suites for metric, e in s.aggregates.items() if e.reason]


def _first(ids: list[str], most: int = 5) -> str:
    return ", ".join(ids[:most]) + (f", … ({len(ids) - most} more)" if len(ids) > most else "")


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
    """Suite-level changes that are worse by more than the allowed delta *and* significant; a metric
    the baseline measured and this run could not is worse than any allowed delta."""
    lines = []
    for s in comparison.suites:
        for metric, allowed in rules.items():
            e = s.aggregates.get(metric)
            if e and e.worse and e.significant and e.current is None and is_number(e.baseline):
                lines.append(f"suite {s.name}: {metric} {e.baseline:.4g} → none (allowed {allowed:g}; {e.reason})")
            elif e and e.worse and e.significant and e.delta is not None and abs(e.delta) > allowed:
                lines.append(f"suite {s.name}: {metric} {e.baseline:.4g} → {e.current:.4g} "
                             f"(Δ {e.delta:+.4g}, allowed {allowed:g}; p = {e.p_value:.3g}, {e.test})")
    return lines
