"""A Gradio viewer for a JSON report (``rlhf-eval ui REPORT.json [--compare BASELINE.json]``).

The logic is plain functions over the `Report` (a report dict is validated into one): filtering,
table rows, one question's traces, pairs and metric deltas against a baseline report; `build_app`
only wires them to components.
Gradio is imported inside `build_app`, so this module imports without it.

Endpoints callable from ``gradio_client`` (api_name):

* ``/questions`` (filter, suite) → the summary table ``{"headers": [...], "data": [[...], ...]}``;
  filter is one of `FILTERS` ("all", "failing", "zero-spread", "dpo-unavailable"), suite a suite
  name or `ALL_SUITES`.
* ``/question`` (suite, question_id) → ``(detail, traces, pairs, metrics, traces_html)``: detail is
  the dict of `question_detail` (every trace, pair, metric, the deltas and verdict changes against
  the baseline),
  the next three are tables, the last the traces side by side as HTML.
"""
from __future__ import annotations

import html
import os
import re
from typing import Any

from .report_model import Question, Report
from .rows import (
    METRICS,
    SUITE_SUMMARY,
    cell,
    delta,
    digits_of,
    fmt,
    fmt_delta,
    fmt_p,
    is_number,
    is_zero_spread,
    metric_order,
    question_cells,
    suite_result,
    summary_columns,
)

FILTERS: dict[str, str] = {  # value -> label
    "all": "all questions",
    "failing": "failing",
    "zero-spread": "zero spread (no GRPO signal)",
    "dpo-unavailable": "DPO unavailable",
}
ALL_SUITES = "(all)"  # suite names are [A-Za-z0-9._-]+, so this never collides with one

# the summary table: rows.summary_columns() between the question and the result, then their deltas
TABLE_COLUMNS = ["suite", "question", *(c.label for c in summary_columns()), "result"]
DELTA_COLUMNS = [(f"Δ {c.label}", c.question) for c in summary_columns() if c.question not in ("k", None)]
TRACE_COLUMNS = ["#", "seed", "verdict", "extracted", "reward", "advantage", "logp", "ref logp", "tokens",
                 "reasoning tokens", "finish", "text"]
PAIR_COLUMNS = ["chosen", "rejected", "margin", "chosen answer", "rejected answer"]
VERDICT_COLORS = {"correct": "#1a7f37", "incorrect": "#cf222e", "unparsable": "#9a6700", "truncated": "#8250df",
                  "blocked": "#57606a", "error": "#57606a"}


# ---------------------------------------------------------------------------------------------- lookup

def suite_names(report: Report) -> list[str]:
    return [s.name for s in report.suites]


def find_question(report: Report | None, suite: str, question_id: str) -> Question | None:
    return report.question(suite, question_id) if report is not None else None


def is_failing(q: Question) -> bool:
    return bool(q.error) or not q.passed


def has_zero_spread(q: Question) -> bool:
    return q.metrics is not None and is_zero_spread(q.metrics.spread)


def is_dpo_unavailable(q: Question) -> bool:
    return bool(q.dpo_unavailable)


_PREDICATES = {"all": lambda q: True, "failing": is_failing, "zero-spread": has_zero_spread,
               "dpo-unavailable": is_dpo_unavailable}


def select_questions(report: Report | dict, filter: str = "all",
                     suite: str | None = ALL_SUITES) -> list[tuple[str, Question]]:
    """(suite name, question) for the questions that pass `filter`, in report order."""
    report = Report.of(report)
    if filter not in _PREDICATES:
        raise ValueError(f"unknown filter {filter!r}; one of {', '.join(FILTERS)}")
    keep = _PREDICATES[filter]
    every = suite in (None, "", ALL_SUITES)
    if not every and suite not in suite_names(report):
        raise ValueError(f"no suite {suite!r} in the report; one of {', '.join(suite_names(report))}")
    return [(s.name, q) for s in report.suites if every or s.name == suite for q in s.questions if keep(q)]


# ---------------------------------------------------------------------------------------------- summary table

def table_headers(baseline: Report | None = None) -> list[str]:
    cols = list(TABLE_COLUMNS)
    if baseline is not None:
        cols += [c for c, _ in DELTA_COLUMNS] + ["Δ result"]
    return cols


def question_row(suite: str, q: Question, baseline: Report | None = None) -> list[str]:
    """One summary-table row, the terminal table's (rows.question_cells), plus deltas with a baseline."""
    row = [suite, q.id, *(c.text for c in question_cells(q)), q.result]
    if baseline is not None:
        b = find_question(baseline, suite, q.id)
        if b is None:
            row += ["new"] + [""] * (len(DELTA_COLUMNS) - 1) + [""]
        else:
            row += [fmt_delta(delta(_metric(b, k), _metric(q, k))) for _, k in DELTA_COLUMNS]
            row.append("" if b.result == q.result else f"{b.result} → {q.result}")
    return row


def questions_table(report: Report | dict, filter: str = "all", suite: str | None = ALL_SUITES,
                    baseline: Report | dict | None = None) -> dict[str, Any]:
    """The summary table for the questions that pass `filter`: {"headers": [...], "data": rows}."""
    baseline = Report.of(baseline) if baseline is not None else None
    rows = [question_row(s, q, baseline) for s, q in select_questions(report, filter, suite)]
    return {"headers": table_headers(baseline), "data": rows}


def result_of(q: Question) -> str:
    return q.result


def summary_markdown(report: Report | dict, baseline: Report | dict | None = None, source: str | None = None,
                     baseline_source: str | None = None) -> str:
    """Per-suite aggregates, suite threshold failures, and the report's own comparison if it has one."""
    report = Report.of(report)
    baseline = Report.of(baseline) if baseline is not None else None
    lines = ["# rlhf-eval report" + (f" — `{source}`" if source else "")]
    if baseline is not None:
        lines.append(f"Compared with baseline `{baseline_source or 'baseline'}`: Δ = this report − baseline.")
    for s in report.suites:
        a = s.aggregates
        shown = " · ".join(f"{METRICS[k].label} {cell(k, a.get(k), a.dpo_unavailable).text}" for k in SUITE_SUMMARY)
        lines.append(f"\n**{s.name}** ({s.model.get('name', '?')}, k = {_or(s.samples, '?')}) — "
                     f"{a.questions} questions, {a.questions_failed} failed · {shown} · "
                     f"**{suite_result(s)}**")
        for failure in s.threshold_failures:
            lines.append(f"- suite threshold: {_md(failure)}")
        if baseline is not None:
            b = baseline.suite(s.name)
            if b is None:
                lines.append("- not in the baseline")
            else:
                deltas = [f"{k} {fmt_delta(d)}" for k in SUITE_SUMMARY
                          if (d := delta(b.aggregates.get(k), a.get(k))) is not None]
                if deltas:
                    lines.append("- Δ vs baseline: " + " · ".join(deltas))
                current_ids = {q.id for q in s.questions}
                gone = [q.id for q in b.questions if q.id not in current_ids]
                if gone:
                    lines.append(f"- {len(gone)} baseline question(s) not in this report: "
                                 + ", ".join(f"`{g}`" for g in gone[:10]) + (" …" if len(gone) > 10 else ""))
    comparison = report.comparison
    if comparison is not None:
        lines.append(f"\n**Comparison in the report** (baseline `{comparison.baseline or '?'}`)")
        if comparison.model_version_changed:
            lines.append("- the model version changed")
        if comparison.note:
            lines.append(f"- {_md(comparison.note)}")
        for failure in comparison.failures:
            lines.append(f"- {_md(failure)}")
        for cs in comparison.suites:
            significant = [f"{k} {fmt_delta(v.delta)} (p = {fmt_p(v.p_value)}{', worse' if v.worse else ''})"
                           for k, v in cs.aggregates.items() if v.significant]
            lines.append(f"- {cs.name}: " + ("significant: " + " · ".join(significant) if significant
                                             else "no significant change"))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- one question

def question_detail(report: Report | dict, suite: str, question_id: str,
                    baseline: Report | dict | None = None) -> dict[str, Any]:
    """Everything about one question as a JSON-able dict (raises LookupError if it is not in the report).

    With a baseline, "baseline" holds {"found", "result", "deltas": metric_deltas, "verdict_changes"};
    with the report's own comparison, "comparison" holds its entry for the question (metric changes
    with p-values, preference flips, GRPO signal)."""
    report = Report.of(report)
    q = find_question(report, suite, question_id)
    if q is None:
        raise LookupError(f"no question {question_id!r} in suite {suite!r}")
    traces = []
    for i, t in enumerate(q.traces):
        traces.append({
            "index": i, "seed": t.seed, "verdict": t.verdict, "extracted": t.extracted,
            "detail": t.detail, "reward": t.reward, "advantage": t.advantage,
            "logp": t.logp, "logp_note": t.logp_note, "ref_logp": t.ref_logp,
            "token_count": t.token_count, "reasoning_tokens": t.reasoning_tokens,
            "reasoning": t.reasoning, "finish_reason": t.finish_reason, "model_version": t.model_version,
            "text": t.text, "answer_span": answer_span(t.text, t.extracted),
        })
    detail: dict[str, Any] = {
        "suite": suite, "id": q.id, "index": q.index, "result": q.result, "passed": q.passed,
        "error": q.error, "dpo_unavailable": q.dpo_unavailable,
        "metrics": dict(q.metrics.items()) if q.metrics else None,
        "intervals": q.intervals, "failures": [f.model_dump() for f in q.failures], "prompt": q.prompt,
        "answer": q.answer, "traces": traces, "pairs": [p.model_dump() for p in q.pairs],
        "baseline": None,
    }
    if baseline is not None:
        b = find_question(Report.of(baseline), suite, question_id)
        detail["baseline"] = ({"found": False, "deltas": {}, "verdict_changes": []} if b is None else
                              {"found": True, "result": b.result, "deltas": metric_deltas(b, q),
                               "verdict_changes": verdict_changes(b, q)})
    cs = report.comparison.suite(suite) if report.comparison else None
    if cs is not None and question_id in cs.questions:
        detail["comparison"] = cs.questions[question_id].model_dump(exclude_unset=True)
    return detail


def metric_deltas(before: Question, after: Question) -> dict[str, dict[str, Any]]:
    """{metric: {"baseline", "current", "delta"}} over the metrics of either question (delta None if one is missing)."""
    bm = dict(before.metrics.items()) if before.metrics else {}
    am = dict(after.metrics.items()) if after.metrics else {}
    out = {}
    for k in metric_order(am.keys() | bm.keys()):
        b, a = bm.get(k), am.get(k)
        if (b is None or is_number(b)) and (a is None or is_number(a)):
            out[k] = {"baseline": b, "current": a, "delta": delta(b, a)}
    return out


def verdict_changes(before: Question, after: Question) -> list[dict[str, Any]]:
    """Traces (matched by seed and candidate index) whose verdict changed. Not "flips": a flip is a
    preference flip of the comparison (an answer pair whose margin changed sign)."""
    old = {(t.seed, t.candidate_index): t for t in before.traces}
    changes = []
    for i, t in enumerate(after.traces):
        b = old.get((t.seed, t.candidate_index))
        if b is not None and b.verdict != t.verdict:
            changes.append({"index": i, "seed": t.seed, "baseline": b.verdict, "current": t.verdict,
                            "baseline_extracted": b.extracted, "current_extracted": t.extracted})
    return changes


def traces_table(detail: dict) -> dict[str, Any]:
    rows = [[t["index"], fmt(t["seed"]), t["verdict"] or "", t["extracted"] or "", fmt(t["reward"]),
             fmt(t["advantage"]), fmt(t["logp"]), fmt(t["ref_logp"]), fmt(t["token_count"]),
             fmt(t["reasoning_tokens"]), t["finish_reason"] or "", _preview(t["text"])] for t in detail["traces"]]
    return {"headers": TRACE_COLUMNS, "data": rows}


def pairs_table(detail: dict) -> dict[str, Any]:
    traces = detail["traces"]

    def answer(i):
        return traces[i]["extracted"] or "" if isinstance(i, int) and 0 <= i < len(traces) else ""

    rows = [[fmt(p["chosen"]), fmt(p["rejected"]),
             "unavailable" if p["margin"] is None and detail.get("dpo_unavailable") else fmt(p["margin"]),
             answer(p["chosen"]), answer(p["rejected"])] for p in detail["pairs"]]
    return {"headers": PAIR_COLUMNS, "data": rows}


def metrics_table(detail: dict) -> dict[str, Any]:
    """metric | value [| interval] [| baseline | Δ] [| p (the report's own comparison; * significant)]."""
    metrics = detail.get("metrics") or {}
    intervals = detail.get("intervals") or {}
    deltas = (detail.get("baseline") or {}).get("deltas") or {}
    with_baseline = detail.get("baseline") is not None
    tests = ((detail.get("comparison") or {}).get("metrics")) or {}
    headers = (["metric", "value"] + (["interval"] if intervals else []) + (["baseline", "Δ"] if with_baseline else [])
               + (["p"] if tests else []))
    rows = []
    for k in metric_order(metrics.keys() | deltas.keys()):
        v = metrics.get(k)
        if not (v is None or is_number(v)):
            continue
        row = [k, fmt(v, digits_of(k))]
        if intervals:
            iv = intervals.get(k)
            row.append(f"[{fmt(iv[0])}, {fmt(iv[1])}]" if isinstance(iv, (list, tuple)) and len(iv) == 2 else "")
        if with_baseline:
            d = deltas.get(k)
            row += [fmt(d["baseline"], digits_of(k)), fmt_delta(d["delta"])] if d else ["", ""]
        if tests:
            t = tests.get(k)
            row.append(f"{fmt_p(t.get('p_value'))}{' *' if t.get('significant') else ''}"
                       if isinstance(t, dict) and t.get("p_value") is not None else "")
        rows.append(row)
    return {"headers": headers, "data": rows}


def traces_html(detail: dict) -> str:
    """The traces side by side as cards, the extracted answer highlighted in each text."""
    head = (f"<div style='margin:4px 0 8px'><b>{html.escape(detail['suite'])} / {html.escape(detail['id'])}</b> — "
            f"{html.escape(detail['result'])}")
    if detail.get("error"):
        head += f" — {html.escape(str(detail['error']))}"
    for f in detail.get("failures") or []:
        head += f"<br>✗ {html.escape(str(f.get('reason') or f.get('metric')))}"
    if detail.get("dpo_unavailable"):
        head += f"<br>DPO unavailable: {html.escape(str(detail['dpo_unavailable']))}"
    changes = (detail.get("baseline") or {}).get("verdict_changes") or []
    if changes:
        head += "<br>verdict changes vs baseline: " + ", ".join(
            f"#{c['index']} {html.escape(str(c['baseline']))} → {html.escape(str(c['current']))}" for c in changes)
    if detail.get("answer") is not None:
        head += f"<br>reference answer: <code>{html.escape(str(detail['answer']))}</code>"
    if detail.get("prompt"):
        prompt = detail["prompt"]
        # A chat: each message under its role, in order (text: one block, as before).
        blocks = ([(str(m.get("role", "")), str(m.get("content", ""))) for m in prompt] if isinstance(prompt, list)
                  else [("", str(prompt))])
        head += (f"<details><summary>{'chat prompt' if isinstance(prompt, list) else 'prompt'}</summary>" + "".join(
            (f"<div style='font-size:11px;font-weight:700;color:#57606a'>{html.escape(role.upper())}</div>"
             if role else "")
            + f"<div style='white-space:pre-wrap;font-family:monospace;font-size:12px'>{html.escape(text)}</div>"
            for role, text in blocks) + "</details>")
    head += "</div>"
    cards = []
    for t in detail["traces"]:
        color = VERDICT_COLORS.get(t["verdict"], "#57606a")
        text = t["text"]
        span = t["answer_span"]
        if span:
            body = (html.escape(text[:span[0]]) + "<mark style='background:#fff8c5;color:#000;font-weight:bold'>"
                    + html.escape(text[span[0]:span[1]]) + "</mark>" + html.escape(text[span[1]:]))
        else:
            body = html.escape(text)
        cards.append(
            f"<div style='border:2px solid {color};border-radius:6px;padding:6px;min-width:0'>"
            f"<div style='font-size:12px;margin-bottom:4px'><b>#{t['index']}</b> "
            f"<span style='color:#fff;background:{color};padding:0 4px;border-radius:3px'>"
            f"{html.escape(str(t['verdict']))}</span>"
            f" answer <code>{html.escape(str(t['extracted'] if t['extracted'] is not None else '—'))}</code>"
            f" · reward {fmt(t['reward'])} · adv {fmt(t['advantage'])} · logp {fmt(t['logp'])}"
            f" · {fmt(t['token_count'])} tok · seed {fmt(t['seed'])}</div>"
            f"<div style='white-space:pre-wrap;font-family:monospace;font-size:12px;max-height:320px;overflow:auto'>"
            f"{body}</div></div>")
    grid = ("<div style='display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:8px'>"
            + "".join(cards) + "</div>")
    return head + grid


def answer_span(text: str, extracted: str | None) -> list[int] | None:
    """[start, end) of the last occurrence of the extracted answer in the text (as a token, if it can), else None."""
    if not text or not extracted:
        return None
    needle = str(extracted).strip()
    if not needle:
        return None
    bounded = list(re.finditer(r"(?<![A-Za-z0-9])" + re.escape(needle) + r"(?![A-Za-z0-9])", text))
    if bounded:
        return [bounded[-1].start(), bounded[-1].end()]
    i = text.rfind(needle)
    return [i, i + len(needle)] if i >= 0 else None


def question_view(report: Report | dict, suite: str, question_id: str, baseline: Report | dict | None = None):
    """What `/question` returns: (detail, traces table, pairs table, metrics table, traces HTML)."""
    detail = question_detail(report, suite, question_id, baseline)
    return detail, traces_table(detail), pairs_table(detail), metrics_table(detail), traces_html(detail)


# ---------------------------------------------------------------------------------------------- the app

def build_app(report: Report | dict, baseline: Report | dict | None = None, *, source: str | None = None,
              baseline_source: str | None = None):
    """A gradio.Blocks browsing `report` (and its deltas against `baseline`). Launch it yourself."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    report = Report.of(report)
    baseline = Report.of(baseline) if baseline is not None else None
    names = suite_names(report)
    first = next(((s, q.id) for s, q in select_questions(report)), (names[0] if names else "", ""))
    initial = questions_table(report, "all", ALL_SUITES, baseline)

    def on_filter(filter, suite):
        try:
            return questions_table(report, filter, suite, baseline)
        except ValueError as e:
            raise gr.Error(str(e), print_exception=False) from None

    def on_question(suite, question_id):
        try:
            return question_view(report, (suite or "").strip(), (question_id or "").strip(), baseline)
        except LookupError as e:
            raise gr.Error(str(e), print_exception=False) from None

    def on_select(evt):
        row = evt.row_value
        if not row or len(row) < 2:
            raise gr.Error("select a question row")
        return row[0], row[1]
    on_select.__annotations__["evt"] = gr.SelectData  # a real class: gradio reads it to pass the event

    with gr.Blocks(title="rlhf-eval report", analytics_enabled=False) as app:
        gr.Markdown(summary_markdown(report, baseline, source, baseline_source))
        with gr.Row():
            filter_in = gr.Dropdown([(label, value) for value, label in FILTERS.items()], value="all",
                                    label="questions", interactive=True)
            suite_in = gr.Dropdown([("all suites", ALL_SUITES)] + [(n, n) for n in names], value=ALL_SUITES,
                                   label="suite", interactive=True)
        gr.Markdown("Click a row (or type a suite and question id) to show the question's traces, "
                    "pairs and metrics" + (" with their deltas against the baseline." if baseline is not None
                                           else "."))
        table = gr.Dataframe(value=initial, headers=initial["headers"], interactive=False, wrap=False,
                             max_height=420, label="questions", show_search="search")
        with gr.Row():
            q_suite = gr.Textbox(value=first[0], label="suite", scale=1)
            q_id = gr.Textbox(value=first[1], label="question id", scale=2)
            show = gr.Button("show question", scale=1)
        with gr.Tabs():
            with gr.Tab("traces"):
                cards = gr.HTML(label="traces side by side")
                traces = gr.Dataframe(headers=TRACE_COLUMNS, interactive=False, wrap=True, label="traces",
                                      max_height=400)
            with gr.Tab("pairs"):
                pairs = gr.Dataframe(headers=PAIR_COLUMNS, interactive=False, label="preference pairs",
                                     max_height=400)
            with gr.Tab("metrics" + (" & deltas" if baseline is not None else "")):
                metrics = gr.Dataframe(interactive=False, label="metrics", max_height=500)
            with gr.Tab("JSON"):
                detail = gr.JSON(label="question")
        outputs = [detail, traces, pairs, metrics, cards]

        gr.on([filter_in.change, suite_in.change], on_filter, inputs=[filter_in, suite_in], outputs=table,
              api_name="questions")
        gr.on([show.click, q_id.submit, q_suite.submit], on_question, inputs=[q_suite, q_id], outputs=outputs,
              api_name="question")
        table.select(on_select, inputs=None, outputs=[q_suite, q_id], api_visibility="private").then(
            on_question, inputs=[q_suite, q_id], outputs=outputs, api_visibility="private")
        if first[1]:
            app.load(on_question, inputs=[q_suite, q_id], outputs=outputs, api_visibility="private")
    return app


# ---------------------------------------------------------------------------------------------- formatting

def _metric(q: Question, key: str):
    return q.metrics.get(key) if q.metrics else None


def _or(value, default):
    return default if value is None else value


def _preview(text: str, n: int = 160) -> str:
    one = " ".join((text or "").split())
    return one if len(one) <= n else one[: n - 1] + "…"


def _md(s: str) -> str:
    return s.replace("*", r"\*").replace("_", r"\_").replace("<", "&lt;")


