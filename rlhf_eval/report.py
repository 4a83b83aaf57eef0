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
from .atomic import atomic_write_text
from .paths import shown_path

REPORT_VERSION = 1


def suite_settings(suite) -> dict[str, Any]:
    """The settings a reader needs to recompute the metrics of `suite` from its traces."""
    s = suite.spec
    return {
        "name": s.suite, "path": shown_path(suite.path), "description": s.description,
        "model": s.model.model_dump(), "samples": s.samples, "seed": s.seed,
        "verifier": {"name": s.verifier.name, **s.verifier.options},
        "rewards": s.rewards.model_dump(), "dpo": s.dpo.model_dump(), "grpo": s.grpo.model_dump(),
        "suite_thresholds": {k: v.model_dump(exclude_none=True) for k, v in s.suite_thresholds.items()},
    }


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
        "dpo_unavailable": (unavailable[0]["dpo_unavailable"] if scored and len(unavailable) == len(scored)
                            else None),
    }
    if out["dpo_unavailable"] or not len(margins):
        out.update({"mean_margin": None, "reward_accuracy": None, "dpo_loss": None})
    else:
        out["mean_margin"] = float(margins.mean())
        out["reward_accuracy"] = obj.reward_accuracy(margins)
        out["dpo_loss"] = (obj.simpo_loss(margins, dpo["simpo_gamma"]) if dpo["length_normalized"]
                           else obj.dpo_loss(margins, dpo["loss_type"], dpo["label_smoothing"], beta=dpo["beta"]))
    return out


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
    from .suite import DPO_METRICS, Bound

    lines = []
    for name, raw in (settings.get("suite_thresholds") or {}).items():
        bound = Bound(**raw)
        value = aggregates.get(name)
        if name in DPO_METRICS and aggregates.get("dpo_unavailable"):
            lines.append(f"{name} is unavailable: {aggregates['dpo_unavailable']}")
        elif value is None:
            lines.append(f"{name} could not be measured (no preference pairs in the run)")
        else:
            breach = bound.check(value)
            if breach:
                lines.append(f"{name} = {value:.4g} {breach}")
    return lines


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
    """Write atomically, so a reader never sees half a report."""
    atomic_write_text(path, json.dumps(report, indent=1, ensure_ascii=False, allow_nan=False, default=_jsonable) + "\n")


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
