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

Memory: each side's questions are walked one question at a time (a list, or a sequence read from
disk: rlhf_eval.spool), keeping a few numbers a question (`_Side`), so comparing two runs of 50,000
questions holds neither; the numbers are those of the lists held in memory, bit for bit. The
per-question entries of a run read from disk are kept on disk (rlhf_eval.comparison_spool).
"""
from __future__ import annotations

import json
import math
from array import array
from typing import Any

import numpy as np

from . import stats
from .comparison_spool import SpooledComparisons
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
    SuiteAggregates,
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
    both ran, so a subset is not compared with the whole (a question that errored still counts as run).

    Each side's `questions` is walked one question at a time (a list, or a sequence read from disk:
    rlhf_eval.spool), keeping a few numbers a question; the per-question entries of a suite whose
    questions are read from disk are written to disk too (`comparison_spool.SpooledComparisons`),
    so comparing two runs of 50,000 questions holds neither run."""
    return _compare_suite(cur, base)[0]


def _compare_suite(cur: Suite, base: Suite) -> tuple[SuiteComparison, _Side, _Side]:
    """`compare_suite`, with what it gathered from the baseline's questions and the current ones."""
    b = _Side(base.aggregates)
    for q in base.questions:
        b.add(q)
    c = _Side(cur.aggregates)
    entries: dict[str, QuestionComparison] | SpooledComparisons = (
        {} if isinstance(cur.questions, list) else SpooledComparisons())
    in_base = array("b")
    b_spread, c_spread = array("d"), array("d")  # the questions both scored, in this run's order
    only_in_current, prompts_changed = [], []
    base_questions = base.questions
    for q in cur.questions:
        c.add(q)
        j_prompt = b.last.get(q.id)  # the baseline's question of that id (its last, as a dict keeps)
        in_base.append(j_prompt is not None)
        if j_prompt is None:
            only_in_current.append(q.id)
            continue
        j = b.last_scored.get(q.id) if q.metrics else None
        bq = None
        if j is not None:
            bq = base_questions[j]
            b_spread.append(_spread(bq))
            c_spread.append(_spread(q))
            entries[q.id] = compare_question(q, bq)
        if q.prompt is not None:
            was = _as_sent((bq if j == j_prompt else base_questions[j_prompt]).prompt)  # type: ignore[union-attr]
            if was is not None and _as_sent(q.prompt) != was:
                prompts_changed.append(q.id)
    # Over the questions both ran; over all of each side's when they share none (nothing else to compare).
    if any(in_base):
        cur_shared = np.array(in_base, dtype=bool)
        base_shared = np.fromiter((i in c.last for i in b.ids), dtype=bool, count=len(b.ids))
    else:
        cur_shared, base_shared = np.ones(len(c.ids), bool), np.ones(len(b.ids), bool)
    cx, cu, cn, cz, cnq, cm = c.compared(cur_shared)
    bx, bu, bn, bz, bnq, bm = b.compared(base_shared)
    aggregates = {
        "accuracy": _proportion("accuracy", bx, bn, cx, cn),
        "unparsable_rate": _proportion("unparsable_rate", bu, bn, cu, cn),
        "frac_zero_spread": _proportion("frac_zero_spread", bz, bnq, cz, cnq),
        "reward_accuracy": _proportion("reward_accuracy", int((bm > 0).sum()), len(bm), int((cm > 0).sum()), len(cm)),
    }
    if len(bm) > 1 and len(cm) > 1:
        aggregates["mean_margin"] = _entry("mean_margin", float(bm.mean()), float(cm.mean()),
                                           stats.bootstrap_difference_test(bm, cm), "bootstrap difference of means")
    else:
        aggregates["mean_margin"] = _entry("mean_margin", float(bm.mean()) if len(bm) else None,
                                           float(cm.mean()) if len(cm) else None, None, None)
    if len(b_spread) > 1:
        bs, cs_ = np.array(b_spread, float), np.array(c_spread, float)
        aggregates["mean_spread"] = _entry("mean_spread", float(np.mean(bs)), float(np.mean(cs_)),
                                           stats.paired_bootstrap_test(bs, cs_), "paired bootstrap over questions")
    for metric in COMPARED_METRICS:
        e = aggregates.get(metric)
        change = _measured_on_one_side(e.baseline if e else base.aggregates.get(metric),
                                       e.current if e else cur.aggregates.get(metric),
                                       lambda side, metric=metric: side.why_unmeasured(metric),
                                       b, c)
        if change is not None:
            aggregates[metric] = change
    out = SuiteComparison(name=cur.name, aggregates=aggregates,
                          questions=entries if isinstance(entries, dict) else {},
                          only_in_baseline=[i for i in b.ids if i not in c.last],  # did not run
                          only_in_current=only_in_current,
                          settings_changed=settings_changed(cur, base), prompts_changed=prompts_changed)
    if not isinstance(entries, dict):
        out.questions = entries  # type: ignore[assignment]  # validated as they were written
    return out, b, c


def _spread(q: Question) -> float:
    spread = _m(q).spread
    return math.nan if spread is None else spread  # as np.array([None], float) holds it


class _Side:
    """What a comparison reads from one suite's questions, gathered one question at a time: a few
    numbers a question (its id, counts, spread, scored-pair margins), never the question."""

    def __init__(self, aggregates: SuiteAggregates) -> None:
        self.aggregates = aggregates  # the suite's own (why a metric has no value)
        self.ids: list[str] = []  # every question's id, in report order
        self.last: dict[str, int] = {}  # id -> position of its last question (a dict keeps the last)
        self.last_scored: dict[str, int] = {}  # id -> position of its last scored question
        self.scored = array("b")
        self.n_traces = array("q")  # per question (0 for one not scored)
        self.n_correct = array("q")
        self.n_unparsable = array("q")
        self.zero_spread = array("b")
        self.margins = array("d")  # scored pairs' margins (margin set), in order ...
        self.margin_counts = array("q")  # ... and how many each question has
        self.pairs = 0  # preference pairs of the scored questions (margin set or not)
        self.versions: set[str] = set()  # the model_version of every trace ...
        self.fingerprints: set[str] = set()  # ... and its system_fingerprint

    def add(self, q: Question) -> None:
        """Count question `q`, the next one in report order."""
        i = len(self.ids)
        self.ids.append(q.id)
        self.last[q.id] = i
        for t in q.traces:
            if v := t.model_version:
                self.versions.add(str(v))
            if v := t.system_fingerprint:
                self.fingerprints.add(str(v))
        m = q.metrics
        self.scored.append(bool(m))
        if not m:
            for a in (self.n_traces, self.n_correct, self.n_unparsable, self.zero_spread, self.margin_counts):
                a.append(0)
            return
        self.last_scored[q.id] = i
        self.n_traces.append(len(q.traces))
        self.n_correct.append(sum(t.verdict == "correct" for t in q.traces))
        self.n_unparsable.append(sum(t.verdict == "unparsable" for t in q.traces))
        self.zero_spread.append(is_zero_spread(m.spread))
        margins = [p.margin for p in q.pairs if p.margin is not None]
        self.margins.extend(margins)
        self.margin_counts.append(len(margins))
        self.pairs += len(q.pairs)

    def compared(self, shared: np.ndarray) -> tuple[int, int, int, int, int, np.ndarray]:
        """(correct, unparsable, traces, zero-spread questions, questions, margins in order) over the
        scored questions where `shared` (a bool per question) is set: what the suite metrics compare."""
        mask = np.array(self.scored, dtype=bool) & shared
        n_correct, n_unparsable, n_traces = (np.array(a, dtype=np.int64)[mask] for a in
                                             (self.n_correct, self.n_unparsable, self.n_traces))
        margins = np.array(self.margins, dtype=float)[np.repeat(mask, np.array(self.margin_counts, dtype=np.int64))]
        return (int(n_correct.sum()), int(n_unparsable.sum()), int(n_traces.sum()),
                int(np.array(self.zero_spread, dtype=bool)[mask].sum()), int(mask.sum()), margins)

    def why_unmeasured(self, metric: str) -> str:
        """Why the suite has no value of a compared metric, in words."""
        if not self.last_scored:
            n = len(self.ids)
            return f"none of its {n} question{'s' * (n != 1)} was scored"
        if metric in ("reward_accuracy", "mean_margin"):
            if self.aggregates.dpo_unavailable:
                return f"DPO metrics unavailable: {self.aggregates.dpo_unavailable}"
            if not self.pairs:
                return "no preference pairs: each question's traces were all correct or all not correct"
            return f"none of its {self.pairs} preference pairs has a margin (no log-probabilities)"
        return "no value in the report"


def _as_sent(prompt: Any) -> Any:
    """A prompt as the request carries it: a chat of one user message is sent as that text (the same
    request, the same cassette), so turning a text prompt into that chat changes nothing."""
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], dict) \
            and prompt[0].get("role") == "user" and set(prompt[0]) <= {"role", "content"}:
        return prompt[0].get("content")
    return prompt


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
        cs, was_side, now_side = _compare_suite(s, b)
        was, now = sorted(was_side.versions), sorted(now_side.versions)
        if was and now and was != now:  # a side with no trace (every question errored) has no version to compare
            changed = True
            notes.append(f"suite {s.name}: model version changed: {', '.join(was)} → {', '.join(now)}")
        # A server build or cache id (system_fingerprint) changes without the model changing.
        fp_was, fp_now = sorted(was_side.fingerprints), sorted(now_side.fingerprints)
        if fp_was and fp_now and fp_was != fp_now:
            notes.append(f"suite {s.name}: backend fingerprint changed ({', '.join(fp_was)} → {', '.join(fp_now)}); "
                         "the model is the same")
        notes += [f"suite {s.name}: {key} changed: {show_setting(c.baseline)} → {show_setting(c.current)}"
                  for key, c in cs.settings_changed.items()]
        both = len(s.questions) - len(cs.only_in_current)  # the questions both runs have
        if cs.prompts_changed:
            notes.append(f"suite {s.name}: prompt changed on {len(cs.prompts_changed)} of the {both} questions "
                         f"both runs have ({_first(cs.prompts_changed)})")
        for ids, what in ((cs.only_in_baseline, f"of baseline {baseline_name} did not run"),
                          (cs.only_in_current, f"{'is' if len(cs.only_in_current) == 1 else 'are'} not in "
                                               f"baseline {baseline_name}")):
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
