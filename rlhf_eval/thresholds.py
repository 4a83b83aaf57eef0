"""Suite and question thresholds: which bounds a run breached, and which it could not check."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .suite import DPO_METRICS, Bound


@dataclass(frozen=True)
class ThresholdFailure:
    metric: str
    value: float | None
    bound: str  # e.g. "min 0.5"
    reason: str  # one line a person can act on

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "value": self.value, "bound": self.bound, "reason": self.reason}


# Metrics that are None for want of what they are computed from (not of signal); a threshold on one
# then fails saying so.
_NOT_MEASURABLE = {
    "maj_at_k": "the verifier gives no extracted answer to vote with (it returns True/False); return a "
                "rlhf_eval.Verdict with `extracted` from it",
    "mean_tokens": "no trace has an answer token count (the API reported none that is the answer's alone)",
    "mean_reasoning_tokens": "no trace has a reasoning token count (the model did not reason, or the server "
                             "does not count reasoning tokens)",
    **dict.fromkeys(("prompt_tokens", "output_tokens", "total_tokens"),
                    "a response reported no token usage (rlhf_eval.types.charge_request)"),
    "margin_length_corr": "it needs 3 scored pairs with token counts whose margins and length differences "
                          "are not all equal",
    "cost_usd": "the model has no price (set model.price: {input: USD, output: USD} per 1M tokens), or a "
                "response reported no token usage",
}


def check_thresholds(metrics: dict, thresholds: dict[str, Bound], dpo_unavailable: str | None,
                     intervals: dict | None = None, *, unmeasured: str = "unchecked",
                     nothing_scored: str | None = None):
    """Failures for breached bounds, and the thresholds with nothing to measure.

    A metric with no value (no preference pairs) is listed as unchecked, or fails with
    `unmeasured="fail"` (suite thresholds: a run with no pairs at all cannot pass a margin gate).
    `nothing_scored` is the reason when no question was scored at all, which then is the cause."""
    failures, unchecked = [], []
    for name, bound in thresholds.items():
        if name in DPO_METRICS and dpo_unavailable:
            failures.append(ThresholdFailure(name, None, bound.describe(), f"{name} is unavailable: {dpo_unavailable}"))
            continue
        value = bound.pick(metrics.get(name), (intervals or {}).get(name))
        if value is None or (isinstance(value, float) and math.isnan(value)):
            if name in _NOT_MEASURABLE:  # not a lack of signal: the gate cannot be checked at all
                failures.append(ThresholdFailure(name, None, bound.describe(),
                                                 f"{name} could not be measured: {_NOT_MEASURABLE[name]}"))
            elif unmeasured == "fail":
                cause = nothing_scored or "no preference pairs in the run"
                failures.append(ThresholdFailure(name, None, bound.describe(),
                                                 f"{name} could not be measured ({cause})"))
            else:
                unchecked.append(f"{name} (no preference pairs to measure)")
            continue
        breach = bound.check(value)
        if breach:
            shown = name if bound.on == "point" else f"{name} ({bound.on} bound of its interval)"
            failures.append(ThresholdFailure(name, value, bound.describe(), f"{shown} = {value:.4g} {breach}"))
    return failures, unchecked
