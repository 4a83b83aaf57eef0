"""A Gradio viewer for a JSON report (``rlhf-eval ui REPORT.json [--compare BASELINE.json]``).

The logic is plain functions over the report dict (filtering, table rows, one question's traces,
pairs and metric deltas against a baseline report); `build_app` only wires them to components.
Gradio is imported inside `build_app`, so this module imports without it.

Endpoints callable from ``gradio_client`` (api_name):

* ``/questions`` (filter, suite) → the summary table ``{"headers": [...], "data": [[...], ...]}``;
  filter is one of `FILTERS` ("all", "failing", "zero-spread", "dpo-unavailable"), suite a suite
  name or `ALL_SUITES`.
* ``/question`` (suite, question_id) → ``(detail, traces, pairs, metrics, traces_html)``: detail is
  the dict of `question_detail` (every trace, pair, metric, and the deltas against the baseline),
  the next three are tables, the last the traces side by side as HTML.
"""
from __future__ import annotations

import html
import math
import os
import re
from typing import Any

ZERO_TOL = 1e-12  # rlhf_eval.objectives.ZERO_TOL: a spread below it is zero (TRL's frac_reward_zero_std)

FILTERS: dict[str, str] = {  # value -> label
    "all": "all questions",
    "failing": "failing",
    "zero-spread": "zero spread (no GRPO signal)",
    "dpo-unavailable": "DPO unavailable",
}
ALL_SUITES = "(all)"  # suite names are [A-Za-z0-9._-]+, so this never collides with one

TABLE_COLUMNS = ["suite", "question", "k", "accuracy", "unparsable", "pairs", "mean margin", "reward acc",
                 "spread", "result"]
# (column, metric) shown as a delta against the baseline
DELTA_COLUMNS = [("Δ accuracy", "accuracy"), ("Δ unparsable", "unparsable"), ("Δ pairs", "pairs"),
                 ("Δ mean margin", "mean_margin"), ("Δ reward acc", "reward_accuracy"), ("Δ spread", "spread")]
METRIC_ORDER = ["k", "correct", "incorrect", "unparsable", "blocked", "truncated", "error", "accuracy", "pass_at_k",
                "maj_at_k", "unparsable_rate", "pairs", "pairs_scored", "spread", "nonzero_advantages", "mean_tokens",
                "mean_logp", "mean_margin", "reward_accuracy", "dpo_loss"]
TRACE_COLUMNS = ["#", "seed", "verdict", "extracted", "reward", "advantage", "logp", "ref logp", "tokens",
                 "reasoning tokens", "finish", "text"]
PAIR_COLUMNS = ["chosen", "rejected", "margin", "chosen answer", "rejected answer"]
VERDICT_COLORS = {"correct": "#1a7f37", "incorrect": "#cf222e", "unparsable": "#9a6700", "truncated": "#8250df",
                  "blocked": "#57606a", "error": "#57606a"}


# ---------------------------------------------------------------------------------------------- lookup

def suite_names(report: dict) -> list[str]:
    return [s["name"] for s in report.get("suites", [])]


def find_question(report: dict | None, suite: str, question_id: str) -> dict | None:
    for s in (report or {}).get("suites", []):
        if s["name"] == suite:
            for q in s.get("questions", []):
                if q.get("id") == question_id:
                    return q
    return None


def is_failing(q: dict) -> bool:
    return bool(q.get("error")) or not q.get("passed", False)


def is_zero_spread(q: dict) -> bool:
    spread = (q.get("metrics") or {}).get("spread")
    return _number(spread) and abs(spread) < ZERO_TOL


def is_dpo_unavailable(q: dict) -> bool:
    return bool(q.get("dpo_unavailable"))


_PREDICATES = {"all": lambda q: True, "failing": is_failing, "zero-spread": is_zero_spread,
               "dpo-unavailable": is_dpo_unavailable}


def select_questions(report: dict, filter: str = "all", suite: str | None = ALL_SUITES) -> list[tuple[str, dict]]:
    """(suite name, question) for the questions that pass `filter`, in report order."""
    if filter not in _PREDICATES:
        raise ValueError(f"unknown filter {filter!r}; one of {', '.join(FILTERS)}")
    keep = _PREDICATES[filter]
    every = suite in (None, "", ALL_SUITES)
    if not every and suite not in suite_names(report):
        raise ValueError(f"no suite {suite!r} in the report; one of {', '.join(suite_names(report))}")
    return [(s["name"], q) for s in report.get("suites", []) if every or s["name"] == suite
            for q in s.get("questions", []) if keep(q)]


# ---------------------------------------------------------------------------------------------- summary table

def table_headers(baseline: dict | None = None) -> list[str]:
    cols = list(TABLE_COLUMNS)
    if baseline is not None:
        cols += [c for c, _ in DELTA_COLUMNS] + ["Δ result"]
    return cols


def question_row(suite: str, q: dict, baseline: dict | None = None) -> list[str]:
    """One summary-table row, formatted like the terminal table (plus deltas with a baseline)."""
    m = q.get("metrics") or {}
    unavailable = q.get("dpo_unavailable")
    row = [suite, q["id"], _fmt(m.get("k")), _fmt(m.get("accuracy")), _fmt(m.get("unparsable")),
           _fmt(m.get("pairs")), _dpo(m.get("mean_margin"), unavailable), _dpo(m.get("reward_accuracy"), unavailable),
           _fmt(m.get("spread")), result_of(q)]
    if baseline is not None:
        b = find_question(baseline, suite, q["id"])
        if b is None:
            row += ["new"] + [""] * (len(DELTA_COLUMNS) - 1) + [""]
        else:
            bm = b.get("metrics") or {}
            row += [_fmt_delta(_delta(bm.get(k), m.get(k))) for _, k in DELTA_COLUMNS]
            before, now = result_of(b), result_of(q)
            row.append("" if before == now else f"{before} → {now}")
    return row


def questions_table(report: dict, filter: str = "all", suite: str | None = ALL_SUITES,
                    baseline: dict | None = None) -> dict[str, Any]:
    """The summary table for the questions that pass `filter`: {"headers": [...], "data": rows}."""
    rows = [question_row(s, q, baseline) for s, q in select_questions(report, filter, suite)]
    return {"headers": table_headers(baseline), "data": rows}


def result_of(q: dict) -> str:
    if q.get("error"):
        return "ERROR"
    return "pass" if q.get("passed") else "FAIL"


def summary_markdown(report: dict, baseline: dict | None = None, source: str | None = None,
                     baseline_source: str | None = None) -> str:
    """Per-suite aggregates, suite threshold failures, and the report's own comparison if it has one."""
    lines = ["# rlhf-eval report" + (f" — `{source}`" if source else "")]
    if baseline is not None:
        lines.append(f"Compared with baseline `{baseline_source or 'baseline'}`: Δ = this report − baseline.")
    for s in report.get("suites", []):
        a = s.get("aggregates") or {}
        model = (s.get("model") or {}).get("name", "?")
        failed = bool(s.get("threshold_failures")) or bool(a.get("questions_failed"))
        lines.append(f"\n**{s['name']}** ({model}, k = {s.get('samples', '?')}) — "
                     f"{a.get('questions', len(s.get('questions', [])))} questions, "
                     f"{a.get('questions_failed', 0)} failed · accuracy {_fmt(a.get('accuracy'))} · "
                     f"pass@k {_fmt(a.get('pass_at_k'))} · pairs {_fmt(a.get('pairs'))} · "
                     f"mean margin {_dpo(a.get('mean_margin'), a.get('dpo_unavailable'))} · "
                     f"reward acc {_dpo(a.get('reward_accuracy'), a.get('dpo_unavailable'))} · "
                     f"mean spread {_fmt(a.get('mean_spread'))} · zero spread {_fmt(a.get('frac_zero_spread'))} · "
                     f"**{'FAIL' if failed else 'pass'}**")
        for failure in s.get("threshold_failures") or []:
            lines.append(f"- suite threshold: {_md(failure)}")
        if baseline is not None:
            b = next((x for x in baseline.get("suites", []) if x["name"] == s["name"]), None)
            if b is None:
                lines.append("- not in the baseline")
            else:
                ba = b.get("aggregates") or {}
                deltas = [f"{k} {_fmt_delta(_delta(ba.get(k), a.get(k)))}"
                          for k in ("accuracy", "pass_at_k", "pairs", "mean_margin", "reward_accuracy",
                                    "mean_spread", "frac_zero_spread")
                          if _delta(ba.get(k), a.get(k)) is not None]
                if deltas:
                    lines.append("- Δ vs baseline: " + " · ".join(deltas))
                current_ids = {q["id"] for q in s.get("questions", [])}
                gone = [q["id"] for q in b.get("questions", []) if q["id"] not in current_ids]
                if gone:
                    lines.append(f"- {len(gone)} baseline question(s) not in this report: "
                                 + ", ".join(f"`{g}`" for g in gone[:10]) + (" …" if len(gone) > 10 else ""))
    comparison = report.get("comparison")
    if isinstance(comparison, dict):
        lines.append(f"\n**Comparison in the report** (baseline `{comparison.get('baseline', '?')}`)")
        if comparison.get("model_version_changed"):
            lines.append("- the model version changed")
        if comparison.get("note"):
            lines.append(f"- {_md(str(comparison['note']))}")
        for failure in comparison.get("failures") or []:
            lines.append(f"- {_md(str(failure))}")
        for cs in comparison.get("suites") or []:
            worse = [f"{k} {_fmt_delta(v.get('delta'))} (p = {_fmt(v.get('p_value'))}"
                     f"{', worse' if v.get('worse') else ''})"
                     for k, v in (cs.get("aggregates") or {}).items()
                     if isinstance(v, dict) and v.get("significant")]
            lines.append(f"- {cs.get('name')}: " + ("significant: " + " · ".join(worse) if worse
                                                     else "no significant change"))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- one question

def question_detail(report: dict, suite: str, question_id: str, baseline: dict | None = None) -> dict[str, Any]:
    """Everything about one question as a JSON-able dict (raises LookupError if it is not in the report)."""
    q = find_question(report, suite, question_id)
    if q is None:
        raise LookupError(f"no question {question_id!r} in suite {suite!r}")
    traces = []
    for i, t in enumerate(q.get("traces") or []):
        text = t.get("text") or ""
        traces.append({
            "index": i, "seed": t.get("seed"), "verdict": t.get("verdict"), "extracted": t.get("extracted"),
            "detail": t.get("detail"), "reward": t.get("reward"), "advantage": t.get("advantage"),
            "logp": t.get("logp"), "logp_note": t.get("logp_note"), "ref_logp": t.get("ref_logp"),
            "token_count": t.get("token_count"), "reasoning_tokens": t.get("reasoning_tokens"),
            "reasoning": t.get("reasoning") or "", "finish_reason": t.get("finish_reason"), "model_version": t.get("model_version"), "text": text,
            "answer_span": answer_span(text, t.get("extracted")),
        })
    pairs = [{"chosen": p.get("chosen"), "rejected": p.get("rejected"), "margin": p.get("margin")}
             for p in q.get("pairs") or []]
    detail: dict[str, Any] = {
        "suite": suite, "id": q["id"], "index": q.get("index"), "result": result_of(q), "passed": q.get("passed"),
        "error": q.get("error"), "dpo_unavailable": q.get("dpo_unavailable"), "metrics": q.get("metrics"),
        "intervals": q.get("intervals"), "failures": q.get("failures") or [], "prompt": q.get("prompt"),
        "answer": q.get("answer"), "traces": traces, "pairs": pairs,
        "baseline": None,
    }
    if baseline is not None:
        b = find_question(baseline, suite, question_id)
        detail["baseline"] = ({"found": False, "deltas": {}, "flips": []} if b is None else
                              {"found": True, "result": result_of(b), "deltas": metric_deltas(b, q),
                               "flips": verdict_flips(b, q)})
    comparison = _comparison_entry(report, suite, question_id)
    if comparison is not None:
        detail["comparison"] = comparison
    return detail


def metric_deltas(before: dict, after: dict) -> dict[str, dict[str, Any]]:
    """{metric: {"baseline", "current", "delta"}} over the metrics of either question (delta None if one is missing)."""
    bm, am = before.get("metrics") or {}, after.get("metrics") or {}
    out = {}
    for k in _metric_keys(am, bm):
        b, a = bm.get(k), am.get(k)
        if (b is None or _number(b)) and (a is None or _number(a)):
            out[k] = {"baseline": b, "current": a, "delta": _delta(b, a)}
    return out


def verdict_flips(before: dict, after: dict) -> list[dict[str, Any]]:
    """Traces (matched by seed and candidate index) whose verdict changed."""
    old = {(t.get("seed"), t.get("candidate_index", 0)): t for t in before.get("traces") or []}
    flips = []
    for i, t in enumerate(after.get("traces") or []):
        b = old.get((t.get("seed"), t.get("candidate_index", 0)))
        if b is not None and b.get("verdict") != t.get("verdict"):
            flips.append({"index": i, "seed": t.get("seed"), "baseline": b.get("verdict"), "current": t.get("verdict"),
                          "baseline_extracted": b.get("extracted"), "current_extracted": t.get("extracted")})
    return flips


def traces_table(detail: dict) -> dict[str, Any]:
    rows = [[t["index"], _fmt(t["seed"]), t["verdict"] or "", t["extracted"] or "", _fmt(t["reward"]),
             _fmt(t["advantage"]), _fmt(t["logp"]), _fmt(t["ref_logp"]), _fmt(t["token_count"]),
             _fmt(t["reasoning_tokens"]), t["finish_reason"] or "", _preview(t["text"])] for t in detail["traces"]]
    return {"headers": TRACE_COLUMNS, "data": rows}


def pairs_table(detail: dict) -> dict[str, Any]:
    traces = detail["traces"]

    def answer(i):
        return traces[i]["extracted"] or "" if isinstance(i, int) and 0 <= i < len(traces) else ""

    rows = [[_fmt(p["chosen"]), _fmt(p["rejected"]),
             "unavailable" if p["margin"] is None and detail.get("dpo_unavailable") else _fmt(p["margin"]),
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
    for k in _metric_keys(metrics, {m: None for m in deltas}):
        v = metrics.get(k)
        if not (v is None or _number(v)):
            continue
        row = [k, _fmt(v)]
        if intervals:
            iv = intervals.get(k)
            row.append(f"[{_fmt(iv[0])}, {_fmt(iv[1])}]" if isinstance(iv, (list, tuple)) and len(iv) == 2 else "")
        if with_baseline:
            d = deltas.get(k)
            row += [_fmt(d["baseline"]), _fmt_delta(d["delta"])] if d else ["", ""]
        if tests:
            t = tests.get(k)
            row.append(f"{_fmt(t.get('p_value'))}{' *' if t.get('significant') else ''}"
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
    flips = (detail.get("baseline") or {}).get("flips") or []
    if flips:
        head += "<br>verdict flips vs baseline: " + ", ".join(
            f"#{f['index']} {html.escape(str(f['baseline']))} → {html.escape(str(f['current']))}" for f in flips)
    if detail.get("answer") is not None:
        head += f"<br>reference answer: <code>{html.escape(str(detail['answer']))}</code>"
    if detail.get("prompt"):
        head += ("<details><summary>prompt</summary><div style='white-space:pre-wrap;font-family:monospace;"
                 f"font-size:12px'>{html.escape(str(detail['prompt']))}</div></details>")
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
            f"<span style='color:#fff;background:{color};padding:0 4px;border-radius:3px'>{html.escape(str(t['verdict']))}</span>"
            f" answer <code>{html.escape(str(t['extracted'] if t['extracted'] is not None else '—'))}</code>"
            f" · reward {_fmt(t['reward'])} · adv {_fmt(t['advantage'])} · logp {_fmt(t['logp'])}"
            f" · {_fmt(t['token_count'])} tok · seed {_fmt(t['seed'])}</div>"
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


def question_view(report: dict, suite: str, question_id: str, baseline: dict | None = None):
    """What `/question` returns: (detail, traces table, pairs table, metrics table, traces HTML)."""
    detail = question_detail(report, suite, question_id, baseline)
    return detail, traces_table(detail), pairs_table(detail), metrics_table(detail), traces_html(detail)


# ---------------------------------------------------------------------------------------------- the app

def build_app(report: dict, baseline: dict | None = None, *, source: str | None = None,
              baseline_source: str | None = None):
    """A gradio.Blocks browsing `report` (and its deltas against `baseline`). Launch it yourself."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    names = suite_names(report)
    first = next(((s, q["id"]) for s, q in select_questions(report)), (names[0] if names else "", ""))
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

def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not (isinstance(v, float) and math.isnan(v))


def _delta(before, after):
    return after - before if _number(before) and _number(after) else None


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _fmt_delta(d) -> str:
    if d is None:
        return "-"
    if isinstance(d, int):
        return f"{d:+d}" if d else "0"
    return f"{d:+.3f}" if abs(d) >= 5e-4 else "0"


def _dpo(v, unavailable) -> str:
    return "unavailable" if unavailable else _fmt(v)


def _preview(text: str, n: int = 160) -> str:
    one = " ".join((text or "").split())
    return one if len(one) <= n else one[: n - 1] + "…"


def _md(s: str) -> str:
    return s.replace("*", r"\*").replace("_", r"\_").replace("<", "&lt;")


def _metric_keys(*dicts) -> list[str]:
    seen = set().union(*(d.keys() for d in dicts))
    return [k for k in METRIC_ORDER if k in seen] + sorted(seen - set(METRIC_ORDER))


def _comparison_entry(report: dict, suite: str, question_id: str):
    comparison = report.get("comparison")
    if not isinstance(comparison, dict):
        return None
    for cs in comparison.get("suites") or []:
        if isinstance(cs, dict) and cs.get("name") == suite:
            return (cs.get("questions") or {}).get(question_id)
    return None
