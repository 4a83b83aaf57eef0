"""Metrics over training steps: the per-step reports `RLHFEvalCallback` writes, read back, as series
and rows, and drawn as one self-contained HTML page (drift across checkpoints).

The layers are the run report's: data (`load_steps`: each `step-NNNNNN/report.json` of a folder, a
`Report` each) → rows (`metric_series`: per suite and metric, the value at each step; `step_metrics`:
what the callback logs) → rendering (`render_steps_html`, `write_steps_html`; `rlhf-eval html
FOLDER OUT.html`). Every number is a report's own; a step whose report has no value for a metric
(no preference pairs, no log-probabilities) is a gap, never a filled-in point.

Nothing here imports torch, transformers or trl: the page is drawn where the reports are copied to.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .report_model import MetricChange, Report
from .rows import METRICS, digits_of, fmt, fmt_signed, is_number

__all__ = ["LOGGED_METRICS", "StepReport", "load_steps", "metric_series", "render_steps_html", "step_metrics",
           "write_steps_html"]

# The suite aggregates logged as rlhf/<suite>/<metric> and drawn over steps
# (rlhf_eval.report_model.SuiteAggregates; README "Metrics"): accuracy is the pass rate over all
# traces, pass_at_k the mean over questions, mean_spread the GRPO reward std (TRL's reward_std),
# frac_zero_spread TRL's frac_reward_zero_std, pairs/reward_accuracy/mean_margin/dpo_loss the DPO
# ones (TRL's rewards/accuracies, rewards/margins).
LOGGED_METRICS = ("accuracy", "pass_at_k", "maj_at_k", "unparsable_rate", "mean_spread", "frac_zero_spread",
                  "pairs", "reward_accuracy", "mean_margin", "dpo_loss", "mean_tokens")
PREFIX = "rlhf"
STEP_FOLDER = "step-{:06d}"
_STEP_RE = re.compile(r"step-(\d{6,})")
# Metrics that are fractions: their axis runs from 0 to 1 whatever the values.
_FRACTIONS = {"accuracy", "pass_at_k", "maj_at_k", "unparsable_rate", "frac_zero_spread", "reward_accuracy"}


def _value(aggregates: Any, metric: str) -> float | None:
    value = aggregates.get(metric)
    return value if is_number(value) and math.isfinite(value) else None


def step_metrics(report: Report) -> dict[str, float]:
    """{"rlhf/<suite>/<metric>": value} for each suite of `report` and each of `LOGGED_METRICS` it
    has (a metric the report has no value for is left out: nothing is invented)."""
    out: dict[str, float] = {}
    for s in report.suites:
        for metric in LOGGED_METRICS:
            value = _value(s.aggregates, metric)
            if value is not None:
                out[f"{PREFIX}/{s.name}/{metric}"] = value
    return out


@dataclass
class StepReport:
    """One evaluated step: its number, its folder (`step-NNNNNN`) and its report."""
    step: int
    folder: Path
    report: Report


def step_number(name: str) -> int | None:
    """The step of a folder named as `STEP_FOLDER` writes it (`step-000050` → 50), else None: a
    `step-50` or `step-0000050` beside `step-000050` is not the callback's, and would be step 50 twice."""
    m = _STEP_RE.fullmatch(name)
    return int(m[1]) if m and STEP_FOLDER.format(int(m[1])) == name else None


def load_steps(folder: str | Path) -> list[StepReport]:
    """Each `step-NNNNNN/report.json` directly under `folder` (or, given the trainer's output_dir,
    under its `rlhf/`), by step. Raises ValueError (one line)
    when there is none, ReportError (one line) for a report that cannot be read."""
    root = Path(folder)
    found = _step_folders(root)
    if not found and (root / PREFIX).is_dir():  # the trainer's output_dir, not its rlhf/ folder
        found = _step_folders(root / PREFIX)
    if not found:
        raise ValueError(f"{folder}: no step-NNNNNN/report.json in it; RLHFEvalCallback writes them under "
                         "<output_dir>/rlhf/")
    return [StepReport(step, sub, Report.load(sub / "report.json", f"step report {sub.name}"))
            for step, sub in sorted(found)]


def _step_folders(root: Path) -> list[tuple[int, Path]]:
    if not root.is_dir():
        return []
    return [(n, sub) for sub in root.iterdir() if (n := step_number(sub.name)) is not None
            and (sub / "report.json").is_file()]


def metric_series(steps: list[StepReport]) -> dict[str, dict[str, list[tuple[int, float | None]]]]:
    """{suite: {metric: [(step, value or None), ...]}} over `steps`, for each of `LOGGED_METRICS`
    that some step of the suite has a value for; a step without the suite is left out of its series."""
    out: dict[str, dict[str, list[tuple[int, float | None]]]] = {}
    for st in steps:
        for s in st.report.suites:
            series = out.setdefault(s.name, {})
            for metric in LOGGED_METRICS:
                series.setdefault(metric, []).append((st.step, _value(s.aggregates, metric)))
    return {name: {m: pts for m, pts in series.items() if any(v is not None for _, v in pts)}
            for name, series in out.items()}


# ---------------------------------------------------------------------------------------------
# rendering

def _interval(st: StepReport, suite: str, metric: str) -> tuple[float, float] | None:
    s = st.report.suite(suite)
    iv = s.aggregates.intervals.get(metric) if s else None
    return (float(iv[0]), float(iv[1])) if iv and all(is_number(x) and math.isfinite(x) for x in iv) else None


def _change(st: StepReport, suite: str, metric: str) -> MetricChange | None:
    c = st.report.comparison
    cs = c.suite(suite) if c else None
    return cs.aggregates.get(metric) if cs else None


def _chart(metric: str, points: list[tuple[int, float | None]], intervals: list[tuple[float, float] | None]) -> str:
    """The metric's value at each step as a line (a gap where a step has none), with its 95% interval."""
    from .html_report import _esc, _svg_open

    width, height, left, right, top, bottom = 300, 110, 40, 10, 18, 16
    pw, ph = width - left - right, height - top - bottom
    values = [v for _, v in points if v is not None] + [x for iv in intervals if iv for x in iv]
    if metric in _FRACTIONS:
        lo, hi = 0.0, 1.0
    else:
        lo, hi = min(values), max(values)
        # a margin around the values, at least 5% of their size: 0.5632 and 0.5635 are not drawn
        # as the whole height apart
        pad = max((hi - lo) * 0.1, max(abs(lo), abs(hi)) * 0.05) or 0.5
        lo, hi = (lo - pad if lo - pad >= 0 or lo < 0 else 0.0), hi + pad  # a count stays above 0
    steps = [s for s, _ in points]
    first, last = min(steps), max(steps)
    label = METRICS[metric].label if metric in METRICS else metric

    def x(step: int) -> float:
        return left + ((step - first) / (last - first) if last > first else 0.5) * pw

    def y(v: float) -> float:
        return top + (1.0 - (min(max(v, lo), hi) - lo) / (hi - lo)) * ph

    out = [_svg_open(width, height, f"{label} by step"),
           f'<text x="{left}" y="12" class="pt">{_esc(metric)}</text>']
    for v in (lo, hi):
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" class="grid"/>'
                   f'<text x="{left - 4}" y="{y(v) + 3:.1f}" class="ax" text-anchor="end">{v:.3g}</text>')
    for step in steps:  # a tick at each evaluated step
        out.append(f'<line x1="{x(step):.1f}" x2="{x(step):.1f}" y1="{top + ph}" y2="{top + ph + 3}" class="axis"/>')
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" class="axis"/>'
               f'<text x="{left}" y="{height - 3}" class="ax">step {first}</text>'
               f'<text x="{left + pw}" y="{height - 3}" class="ax" text-anchor="end">{last}</text>')
    run: list[str] = []
    for (step, value), iv in zip(points + [(last, None)], intervals + [None]):
        if value is None:  # a gap: close the line drawn so far
            if len(run) > 1:
                out.append(f'<polyline points="{" ".join(run)}" class="curve"/>')
            run = []
            continue
        run.append(f"{x(step):.1f},{y(value):.1f}")
        if iv:
            out.append(f'<line x1="{x(step):.1f}" x2="{x(step):.1f}" y1="{y(iv[0]):.1f}" y2="{y(iv[1]):.1f}" '
                       'class="err"/>')
    for (step, value), iv in zip(points, intervals):
        if value is not None:
            tip = f"step {step}: {fmt(value, digits_of(metric))}" + (f" [{iv[0]:.3g}, {iv[1]:.3g}]" if iv else "")
            out.append(f'<circle cx="{x(step):.1f}" cy="{y(value):.1f}" r="2.5" class="curve"><title>{_esc(tip)}'
                       '</title></circle>')
    out.append("</svg>")
    return "".join(out)


def _delta_cell(change: MetricChange | None, metric: str) -> str:
    """The change since the first step, marked when significant (the report's own comparison)."""
    from .html_report import _esc

    if change is None or change.delta is None:
        return ""
    if not change.delta:
        return ""
    direction = "worse" if change.worse else "better"
    cls = f"d sig {direction}" if change.significant else f"d ns {direction if change.worse else ''}".strip()
    tip = f"p = {change.p_value:.3g} ({change.test})" if change.p_value is not None else "no test"
    return f' <span class="{cls}" title="{_esc(tip)}">{_esc(fmt_signed(change.delta, digits_of(metric)))}</span>'


def render_steps_html(steps: list[StepReport], *, title: str = "rlhf-eval: metrics over training steps") -> str:
    """One self-contained page: per suite, a chart per metric over the steps and a table of every
    step's values with its change since the first step (significant ones marked, as the run
    report's comparison does)."""
    from .html_report import _CSS, _esc

    series = metric_series(steps)
    out = [f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
           f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{_esc(title)}</title>'
           f'<style>{_CSS}</style></head><body><header><div class="hl"><h1>{_esc(title)}</h1>'
           f'<span>{len(steps)} evaluated steps ({", ".join(str(s.step) for s in steps)}) · '
           f'{len(series)} suite(s)</span></div>'
           '<p class="suites-line">Every number is the step report\'s own (each step sampled from the policy '
           'as it was at that step, recorded in the step\'s cassettes); a step without a value is a gap. '
           'Bars are 95% intervals; a change since the first step is marked when it is significant.</p>'
           '</header>']
    for name, by_metric in series.items():
        with_suite = [st for st in steps if st.report.suite(name) is not None]
        out.append(f'<section class="suite"><h2>{_esc(name)}</h2><div class="charts">')
        for metric, points in by_metric.items():
            intervals = [_interval(st, name, metric) for st in with_suite]
            out.append(f"<figure>{_chart(metric, points, intervals)}</figure>")
        out.append('</div><div class="tablewrap"><table class="sum"><tr><th class="l">step</th>')
        out.extend(f"<th>{_esc(m)}</th>" for m in by_metric)
        out.append("<th class=\"l\">model version</th></tr>")
        for st in with_suite:
            s = st.report.suite(name)
            assert s is not None
            versions = sorted({str(t.model_version) for q in s.questions for t in q.traces if t.model_version})
            out.append(f'<tr><td class="l">{_esc(st.folder.name)}</td>')
            for metric in by_metric:
                value = _value(s.aggregates, metric)
                out.append(f"<td>{_esc(fmt(value, digits_of(metric)))}{_delta_cell(_change(st, name, metric), metric)}"
                           "</td>")
            out.append(f'<td class="l">{_esc(", ".join(versions))}</td></tr>')
        out.append("</table></div></section>")
    out.append("<footer>Generated by rlhf_eval.steps_report from the step reports; self-contained.</footer>"
               "</body></html>\n")
    return "".join(out)


def write_steps_html(folder: str | Path, path: str | Path) -> list[StepReport]:
    """Read the step reports under `folder` and write their page to `path` atomically (raises as
    `load_steps`, and OSError / SecretInOutput as `html_report.write_html`). Returns the steps."""
    from .credentials import write_without_secrets

    steps = load_steps(folder)
    write_without_secrets(path, render_steps_html(steps))
    return steps

