"""What a suite's aggregates need from its questions, gathered one question at a time.

`report.suite_aggregates` pools over every scored question and trace of a suite (means, sums, the
cluster bootstrap over questions). Holding every question's model for that costs ~60 KB a question;
a `SuiteTally` keeps only the numbers those aggregates read, in flat arrays (about 1 KB a question
of k = 8 with 16 pairs), in the order the questions are added. `report.aggregates_of` computes the
aggregates from it; the in-memory report (`report.suite_aggregates`) builds a tally from its list, so
both give the same numbers, bit for bit, whether the questions were held or streamed from disk
(rlhf_eval.spool).

Add questions in report order (by `index`): means are summed in that order.
"""
from __future__ import annotations

from array import array
from typing import Any

import numpy as np

from .length_bias import per_token_margins
from .report_model import Question


class SuiteTally:
    """The numbers of a suite's questions that its aggregates need. `dpo`: the suite's `dpo`
    settings (β and the reference decide the per-token margins)."""

    def __init__(self, dpo: dict[str, Any] | None = None) -> None:
        dpo = dpo or {}
        self._beta = float(dpo.get("beta", 0.1))
        self._with_reference = dpo.get("reference", "none") != "none"
        self.questions = 0
        self.failed = 0
        self.scored = 0
        # scored questions: per question, in order
        self.n_traces = array("q")
        self.n_correct = array("q")
        self.spreads: list[float | None] = []
        self.pass_at_k: list[float] = []  # the questions that have one
        self.maj_at_k: list[float] = []
        self.pairs = 0
        self.unique_traces = 0
        self.dpo_unavailable: str | None = None  # the first scored question's reason ...
        self.dpo_unavailable_count = 0  # ... and how many scored questions have one
        self.curves: dict[str, tuple[array, array]] = {"pass_at": (array("d"), array("q")),
                                                        "pass_hat": (array("d"), array("q"))}  # values, lengths
        # traces of scored questions
        self.unparsable = 0
        self.token_counts = array("q")  # the traces that have one
        self.reasoning_tokens = array("q")
        self.prompt_tokens = self.output_tokens = 0  # sums over the traces that report them
        self.prompt_missing = self.output_missing = 0  # traces whose request reported none
        self.usage_missing = 0  # traces missing either
        # scored pairs (margin set), in order; `margin_counts` per scored question
        self.margins = array("d")
        self.margin_counts = array("q")
        self.per_token = array("d")  # length bias: per-token margins of the pairs that have one
        self.bias_margins = array("d")  # margins of pairs whose two traces have token counts ...
        self.length_diffs = array("d")  # ... and their token-length difference n_w - n_l

    def add(self, q: Question) -> None:
        """Count question `q` (the next one in report order)."""
        self.questions += 1
        self.failed += not q.passed
        m = q.metrics
        if m is None:
            return
        self.scored += 1
        traces = q.traces
        self.n_traces.append(len(traces))
        self.n_correct.append(sum(t.verdict == "correct" for t in traces))
        self.unparsable += sum(t.verdict == "unparsable" for t in traces)
        self.spreads.append(m.spread)
        if m.pass_at_k is not None:
            self.pass_at_k.append(m.pass_at_k)
        if m.maj_at_k is not None:
            self.maj_at_k.append(m.maj_at_k)
        self.pairs += m.pairs or 0
        self.unique_traces += m.unique_traces or 0
        if q.dpo_unavailable:
            self.dpo_unavailable = self.dpo_unavailable or q.dpo_unavailable
            self.dpo_unavailable_count += 1
        for name, (values, lengths) in self.curves.items():
            curve = getattr(m, name)
            if curve:
                values.extend(curve)
                lengths.append(len(curve))
        for t in traces:
            if t.token_count is not None:
                self.token_counts.append(t.token_count)
            if t.reasoning_tokens is not None:
                self.reasoning_tokens.append(t.reasoning_tokens)
            if t.prompt_tokens is None:
                self.prompt_missing += 1
            else:
                self.prompt_tokens += t.prompt_tokens
            if t.output_tokens is None:
                self.output_missing += 1
            else:
                self.output_tokens += t.output_tokens
            self.usage_missing += t.prompt_tokens is None or t.output_tokens is None
        scored_pairs = [p for p in q.pairs if p.margin is not None]
        self.margins.extend(p.margin for p in scored_pairs)  # type: ignore[misc]
        self.margin_counts.append(len(scored_pairs))
        chosen, rejected = [], []
        for p in scored_pairs:
            w, lo = traces[p.chosen], traces[p.rejected]
            chosen.append((w.logp, w.ref_logp, w.token_count))
            rejected.append((lo.logp, lo.ref_logp, lo.token_count))
            if w.token_count is not None and lo.token_count is not None:
                self.bias_margins.append(p.margin)  # type: ignore[arg-type]
                self.length_diffs.append(w.token_count - lo.token_count)
        self.per_token.extend(per_token_margins(chosen, rejected, self._beta, self._with_reference).tolist())

    # -- what the aggregates read

    @property
    def traces(self) -> int:
        return sum(self.n_traces)

    @property
    def correct(self) -> int:
        return sum(self.n_correct)

    def curve(self, name: str) -> list[float] | None:
        """The questions' `name` curves ("pass_at", "pass_hat") averaged per budget k, up to the
        shortest curve; None when no question has one."""
        values, lengths = self.curves[name]
        if not lengths:
            return None
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int)
        return [float(np.mean([values[s + j] for s in starts])) for j in range(min(lengths))]

    def question_margins(self) -> list[np.ndarray]:
        """Each scored question's scored-pair margins, in order (views of one array)."""
        flat = np.frombuffer(self.margins, dtype=float) if len(self.margins) else np.zeros(0)
        return np.split(flat, np.cumsum(self.margin_counts)[:-1]) if len(self.margin_counts) else []

    def usage(self) -> dict[str, int | None]:
        """The suite's traces' usage as one trace of `evaluate.token_usage` would hold it: a sum is
        None where token_usage's would be (a request without usage, or no trace with a count)."""
        none = not self.traces
        return {"prompt_tokens": None if none or self.prompt_missing else self.prompt_tokens,
                "output_tokens": None if none or self.output_missing else self.output_tokens,
                "token_count": int(sum(self.token_counts)) if len(self.token_counts) else None,
                "reasoning_tokens": int(sum(self.reasoning_tokens)) if len(self.reasoning_tokens) else None}


__all__ = ["SuiteTally"]
