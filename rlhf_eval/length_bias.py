"""Length bias of DPO margins: is a preference only a length preference?

A reference-free DPO margin β·(ℓ_w − ℓ_l) sums log-probabilities over tokens, so a longer answer
has a lower ℓ whatever its quality, and a margin can measure nothing but the length difference
(Park et al. 2024, "Disentangling Length from Quality in Direct Preference Optimization", R-DPO;
Meng et al. 2024, SimPO, which normalises each side by its length for this reason). Two figures
make that visible beside a question's margin:

- `margin_per_token`: the mean over scored pairs of β·(r_w/n_w − r_l/n_l), with r = ℓ (or
  ℓ − ℓ_ref with a reference model) and n the answer's tokens: SimPO's length-normalised reward
  margin (Meng et al. 2024, eq. 4, without γ). A margin that keeps its sign per token is not length alone.
- `margin_length_corr`: the Pearson correlation, over a suite's scored pairs, of each pair's margin
  (as reported) with its token-length difference n_w − n_l. Near −1 on a reference-free margin:
  the margin mostly says which answer is shorter.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

MIN_PAIRS = 3  # a correlation of two points is ±1 whatever they are


def per_token_margins(chosen: Sequence[tuple[float | None, float | None, int | None]],
                      rejected: Sequence[tuple[float | None, float | None, int | None]], beta: float,
                      with_reference: bool) -> np.ndarray:
    """β·(r_w/n_w − r_l/n_l) for each pair whose two sides have a logp (and a ref_logp when
    `with_reference`) and a positive token count; pairs without are left out.

    chosen, rejected: (logp, ref_logp, token_count) of each pair's two traces, P each.
    Returns a float array of at most P margins per token (nats per token, times β)."""
    out = []
    for won, lost in zip(chosen, rejected):
        sides = []
        for logp, ref_logp, n in (won, lost):
            if logp is None or not n or n <= 0 or (with_reference and ref_logp is None):
                break
            sides.append((logp - (ref_logp if with_reference and ref_logp is not None else 0.0)) / n)
        if len(sides) == 2:
            out.append(beta * (sides[0] - sides[1]))
    return np.array(out, dtype=float)


def pearson(x: Sequence[float], y: Sequence[float]) -> tuple[float | None, str | None]:
    """(Pearson's r of x and y, None) or (None, why there is none): fewer than `MIN_PAIRS` points,
    or one of them constant (zero variance: every pair has the same length difference, say)."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(a) < MIN_PAIRS:
        return None, f"{len(a)} scored pair{'s' * (len(a) != 1)} with token counts; a correlation needs {MIN_PAIRS}"
    da, db = a - a.mean(), b - b.mean()
    sa, sb = float(np.sqrt((da * da).sum())), float(np.sqrt((db * db).sum()))
    if sa == 0.0 or sb == 0.0:
        which = "margin" if sa == 0.0 else "length difference"
        return None, f"every scored pair has the same {which} (zero variance)"
    r = float((da * db).sum() / (sa * sb))
    return (max(-1.0, min(1.0, r)) if math.isfinite(r) else None), None
