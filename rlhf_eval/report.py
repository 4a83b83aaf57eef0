"""The run report: question dicts → suite aggregates → table rows → text or JSON.

Each step is its own function (data → rows → rendering), and the JSON holds every trace with the
settings used, so every number can be recomputed from the file alone (tests/test_report.py does).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from tabulate import tabulate

from . import objectives as obj
from .thresholds import check_thresholds
from .suite import Bound
from .credentials import redact_base_urls, write_without_secrets
from .paths import shown_path

REPORT_VERSION = 1


def suite_settings(suite) -> dict[str, Any]:
    """The settings a reader needs to recompute the metrics of `suite` from its traces."""
    s = suite.spec
    return redact_base_urls({
        "name": s.suite, "path": shown_path(suite.path), "description": s.description,
        "model": s.model.model_dump(), "samples": s.samples, "seed": s.seed,
        "verifier": {"name": s.verifier.name, **s.verifier.options},
        "rewards": s.rewards.model_dump(),
        "reward_funcs": [{"name": name, "weight": weight} for name, weight in suite.reward_funcs],
        "dpo": s.dpo.model_dump(), "grpo": s.grpo.model_dump(),
        "suite_thresholds": {k: v.model_dump(exclude_none=True) for k, v in s.suite_thresholds.items()},
    })


def suite_aggregates(questions: list[dict], dpo: dict) -> dict[str, Any]:
    """Suite-level metrics over the questions that ran (pooled over traces and pairs)."""
    scored = [q for q in questions if q.get("metrics")]
    traces = [t for q in scored for t in q["traces"]]
    n = len(traces)
    correct = sum(t["verdict"] == "correct" for t in traces)
    margins = np.array([p["margin"] for q in scored for p in q["pairs"] if p["margin"] is not None], float)
    unavailable = [q for q in scored if q["dpo_unavailable"]]
    out: dict[str, Any] = {
        "questions": len(questions),
        "questions_failed": sum(not q["passed"] for q in questions),
        "traces": n,
        "accuracy": correct / n if n else None,
        "pass_at_k": _mean(q["metrics"]["pass_at_k"] for q in scored),
        "unparsable_rate": sum(t["verdict"] == "unparsable" for t in traces) / n if n else None,
        "pairs": sum(q["metrics"]["pairs"] for q in scored),
        "mean_spread": _mean(q["metrics"]["spread"] for q in scored),
        "frac_zero_spread": obj.frac_zero_spread([q["metrics"]["spread"] for q in scored]) if scored else None,
        # answer and reasoning tokens apart, over the traces whose API reported them
        "mean_tokens": _mean(t.get("token_count") for t in traces),
        "mean_reasoning_tokens": _mean(t.get("reasoning_tokens") for t in traces),
        "dpo_unavailable": (unavailable[0]["dpo_unavailable"] if scored and len(unavailable) == len(scored)
                            else None),
    }
    out["maj_at_k"] = _mean(q["metrics"].get("maj_at_k") for q in scored)
    if out["dpo_unavailable"] or not len(margins):
        out.update({"mean_margin": None, "reward_accuracy": None, "dpo_loss": None})
    else:
        out["mean_margin"] = float(margins.mean())
        out["reward_accuracy"] = obj.reward_accuracy(margins)
        out["dpo_loss"] = (obj.simpo_loss(margins, dpo["simpo_gamma"]) if dpo["length_normalized"]
                           else obj.dpo_loss(margins, dpo["loss_type"], dpo["label_smoothing"], beta=dpo["beta"]))
    out["intervals"] = suite_intervals(scored, with_margins=out["mean_margin"] is not None)
    return out


def suite_intervals(questions: list[dict], *, with_margins: bool, n_resamples: int = 2000, seed: int = 0) -> dict:
    """95% intervals of suite aggregates by a cluster bootstrap: resample *questions* (traces of one
    question are not independent), recompute each pooled statistic, take percentiles."""
    if not questions:
        return {}
    n_traces = np.array([len(q["traces"]) for q in questions], float)
    n_correct = np.array([sum(t["verdict"] == "correct" for t in q["traces"]) for q in questions], float)
    spread = np.array([q["metrics"]["spread"] for q in questions], float)
    margins = [np.array([p["margin"] for p in q["pairs"] if p["margin"] is not None], float) for q in questions]
    m_count = np.array([len(m) for m in margins], float)
    m_sum = np.array([m.sum() for m in margins])
    m_pos = np.array([(m > 0).sum() for m in margins], float)
    idx = np.random.default_rng(seed).integers(0, len(questions), size=(n_resamples, len(questions)))

    def pct(samples):
        samples = samples[np.isfinite(samples)]
        return [float(x) for x in np.percentile(samples, [2.5, 97.5])] if len(samples) else None

    with np.errstate(invalid="ignore", divide="ignore"):
        out = {
            "accuracy": pct(n_correct[idx].sum(1) / n_traces[idx].sum(1)),
            "mean_spread": pct(spread[idx].mean(1)),
            "frac_zero_spread": pct((spread[idx] < obj.ZERO_TOL).mean(1)),
        }
        if with_margins:
            out["mean_margin"] = pct(m_sum[idx].sum(1) / m_count[idx].sum(1))
            out["reward_accuracy"] = pct(m_pos[idx].sum(1) / m_count[idx].sum(1))
    return {k: v for k, v in out.items() if v is not None}


class ReportError(ValueError):
    """A report file that cannot be used; the message is one line."""


def load_report(path: str | Path, what: str = "report", hint: str | None = None) -> dict[str, Any]:
    """Read a JSON report written by ``pytest --rlhf-report-json``; any problem is a one-line ReportError."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(f"{path}: no such {what} file ({hint or f'write one with pytest --rlhf-report-json={path}'})") from None
    except IsADirectoryError:
        raise ReportError(f"{path}: is a directory, not a JSON {what}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ReportError(f"{path}: cannot read the {what}: {getattr(e, 'strerror', None) or e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}:{e.lineno}: not valid JSON: {e.msg} (column {e.colno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("suites"), list):
        raise ReportError(f"{path}: not an rlhf-eval report (no 'suites' list); "
                       "write one with pytest --rlhf-report-json=PATH")
    for i, s in enumerate(data["suites"]):
        if not (isinstance(s, dict) and isinstance(s.get("name"), str) and isinstance(s.get("questions"), list)
                and all(isinstance(q, dict) and isinstance(q.get("id"), str) for q in s["questions"])):
            raise ReportError(f"{path}: suites[{i}] is not a suite of the report (needs 'name' and 'questions' with ids)")
    return data


def build_report(questions: Iterable[dict], suites: dict[str, dict]) -> dict[str, Any]:
    """The whole run as one JSON-able dict, questions in suite order whatever order they ran in."""
    by_suite: dict[str, list[dict]] = {}
    for q in questions:
        by_suite.setdefault(q["suite"], []).append(q)
    out_suites = []
    for name in sorted(by_suite):
        qs = sorted(by_suite[name], key=lambda q: q["index"])
        settings = suites.get(name, {})
        aggregates = suite_aggregates(qs, settings.get("dpo", {}))
        out_suites.append({**settings, "name": name, "aggregates": aggregates,
                           "threshold_failures": suite_threshold_failures(aggregates, settings),
                           "questions": qs})
    return {"version": REPORT_VERSION, "suites": out_suites}


def suite_threshold_failures(aggregates: dict, settings: dict) -> list[str]:
    """One line per breached suite threshold (like --cov-fail-under)."""
    thresholds = {name: Bound(**raw) for name, raw in (settings.get("suite_thresholds") or {}).items()}
    n = aggregates.get("questions", 0)
    nothing_scored = (f"none of its {n} question{'s' * (n != 1)} was scored: see their errors above"
                      if not aggregates.get("traces") else None)
    failures, _ = check_thresholds(aggregates, thresholds, aggregates.get("dpo_unavailable"),
                                   aggregates.get("intervals"), unmeasured="fail", nothing_scored=nothing_scored)
    return [f.reason for f in failures]


COLUMNS = ["suite", "question", "k", "accuracy", "unparsable", "pairs", "mean margin", "reward acc",
           "spread", "result"]


def report_rows(report: dict) -> list[list[Any]]:
    rows = []
    for s in report["suites"]:
        for q in s["questions"]:
            m = q.get("metrics") or {}
            rows.append([s["name"], q["id"], m.get("k", "-"), _fmt(m.get("accuracy")), m.get("unparsable", "-"),
                         m.get("pairs", "-"), _dpo(m.get("mean_margin"), q.get("dpo_unavailable")),
                         _dpo(m.get("reward_accuracy"), q.get("dpo_unavailable")), _fmt(m.get("spread")),
                         _result(q)])
        a = s["aggregates"]
        rows.append([s["name"], f"(suite: {a['questions']} questions)", s.get("samples", "-"), _fmt(a["accuracy"]),
                     _fmt(a["unparsable_rate"]), a["pairs"], _dpo(a["mean_margin"], a["dpo_unavailable"]),
                     _dpo(a["reward_accuracy"], a["dpo_unavailable"]),
                     f"zero: {_fmt(a['frac_zero_spread'])}",
                     "FAIL" if s["threshold_failures"] or a["questions_failed"] else "pass"])
    return rows


def render_table(report: dict) -> str:
    return tabulate(report_rows(report), headers=COLUMNS, tablefmt="simple", disable_numparse=True)


def write_json(report: dict, path: str | Path) -> None:
    """Write atomically, so a reader never sees half a report. Raises OSError, or SecretInOutput
    (and writes nothing) if the report would contain one of the run's secrets."""
    write_without_secrets(path, json.dumps(report, indent=1, ensure_ascii=False, allow_nan=False,
                                           default=_jsonable) + "\n")


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _result(q: dict) -> str:
    if q.get("error"):
        return "ERROR"
    return "pass" if q["passed"] else "FAIL"


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.3f}"


def _dpo(value, unavailable) -> str:
    return "unavailable" if unavailable else _fmt(value)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def comparison_rows(comparison: dict) -> list[list[Any]]:
    rows = []
    for s in comparison["suites"]:
        for metric, e in s["aggregates"].items():
            mark = ("WORSE" if e["worse"] else "better") if e["significant"] else ""
            rows.append([s["name"], metric, _fmt(e["baseline"]), _fmt(e["current"]),
                         "-" if e["delta"] is None else f"{e['delta']:+.3f}",
                         "-" if e["p_value"] is None else f"{e['p_value']:.3g}", mark])
    return rows


def render_comparison(comparison: dict, max_flips: int = 10) -> str:
    """Suite deltas with significance, then where preference flipped and GRPO signal changed."""
    lines = []
    if comparison.get("note"):
        lines.append(f"note: {comparison['note']}")
    lines.append(tabulate(comparison_rows(comparison), disable_numparse=True,
                          headers=["suite", "metric", "baseline", "current", "delta", "p", "significant"]))
    drift = []
    for s in comparison["suites"]:
        for qid, q in s["questions"].items():
            for f in q["flips"]:
                drift.append(f"{s['name']}::{qid}: {f['chosen']} over {f['rejected']} {f['direction']} "
                             f"(margin {f['baseline_margin']:+.3f} → {f['current_margin']:+.3f})")
            if q["grpo_signal"]:
                drift.append(f"{s['name']}::{qid}: GRPO signal {q['grpo_signal']}")
    if drift:
        lines.append(f"preference drift ({len(drift)}):")
        lines += ["  " + d for d in drift[:max_flips]]
        if len(drift) > max_flips:
            lines.append(f"  … and {len(drift) - max_flips} more in the JSON report (comparison.suites[].questions)")
    return "\n".join(lines)
