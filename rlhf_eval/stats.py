"""Uncertainty for the metrics in ``rlhf_eval.objectives``: intervals, tests and majority voting.

Pure numpy (and the standard library's ``statistics.NormalDist`` for normal quantiles); no I/O.
Everything random is driven by ``np.random.default_rng(seed)``, so the same inputs and seed give
the same result on every run.  Inputs may be plain lists; scalar results are Python floats.

* ``wilson_interval`` — Wilson score interval for a proportion (accuracy, reward accuracy);
  matches ``statsmodels.stats.proportion.proportion_confint(method="wilson")``.
* ``bootstrap_interval`` — percentile bootstrap of a mean (margins) or a ddof=1 std (GRPO spread).
* ``cluster_bootstrap_intervals`` — a suite's pooled metrics, resampling questions.
* ``two_proportion_test`` — pooled two-sided z-test, ``statsmodels...proportions_ztest``'s default.
* ``bootstrap_difference_test`` / ``paired_bootstrap_test`` — bootstrap p-values for a change of
  a mean between two runs, on independent samples or on the same questions.
* ``answer_classes`` / ``maj_at_k`` — majority-vote accuracy over k of the n sampled answers.

A caveat that applies to every bootstrap here: with the handful of traces a question gets
(k = 4..16) the bootstrap distribution is lumpy and the percentile interval is rough (it tends to
be too narrow, and for 0/1 rewards it often collapses to a point); treat it as a readable
indication, not as an exact 95% guarantee.  Over many questions (suite level) it is reliable.
"""
from __future__ import annotations

import functools
import itertools
import math
from statistics import NormalDist
from typing import Callable, Hashable, Iterable, Iterator, Literal, Sequence

import numpy as np

from rlhf_eval.objectives import ZERO_TOL, _bool_vec

__all__ = [
    "MAJ_EXACT_LIMIT",
    "MAJ_MC_SUBSETS",
    "wilson_interval",
    "bootstrap_interval",
    "cluster_bootstrap_intervals",
    "two_proportion_test",
    "bootstrap_difference_test",
    "paired_bootstrap_test",
    "answer_classes",
    "maj_at_k",
]

#: maj_at_k enumerates every size-k subset when there are at most this many of them ...
MAJ_EXACT_LIMIT = 20_000
#: ... and otherwise averages over this many seeded random subsets.
MAJ_MC_SUBSETS = 20_000

BOOTSTRAP_STATISTICS = ("mean", "std")

# Resampling is vectorised in blocks of about this many drawn indices (rows x sample size), which
# bounds memory for large samples.  Row-by-row and block draws from one Generator give the same
# stream, so the block size does not change any result.
_BLOCK = 1 << 20


# --------------------------------------------------------------------------- helpers


def _finite_vec(x, name: str) -> np.ndarray:
    """``x`` as a 1-D float64 array of finite values; a clear ValueError otherwise."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite (no nan or inf)")
    return arr


def _int(v, name: str, fn: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{fn}: {name} must be an int, got {type(v).__name__}")
    return int(v)


def _check_confidence(confidence: float, fn: str) -> float:
    confidence = float(confidence)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"{fn}: confidence must be in (0, 1), got {confidence}")
    return confidence


def _check_resamples(n_resamples: int, fn: str) -> int:
    n_resamples = _int(n_resamples, "n_resamples", fn)
    if n_resamples < 1:
        raise ValueError(f"{fn}: n_resamples must be >= 1, got {n_resamples}")
    return n_resamples


def _blocks(total: int, width: int):
    """Yield row counts summing to ``total``, each block holding about _BLOCK elements."""
    rows = max(1, _BLOCK // max(1, width))
    for start in range(0, total, rows):
        yield min(rows, total - start)


def _z(confidence: float) -> float:
    """Two-sided critical value: the standard normal (1 + confidence)/2 quantile (1.959964 for 0.95)."""
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def _bootstrap_p(null_stats: np.ndarray, observed: float, scale: float) -> float:
    """Two-sided bootstrap p-value (1 + #{|T*| >= |t|}) / (B + 1).

    The +1 counts the observed sample as one of the resamples (Davison & Hinkley 1997, eq. 4.11),
    so p is never 0 and the smallest attainable value is 1/(B + 1).  ``|T*| >= |t|`` is taken with
    a 1e-9 relative tolerance (``scale``: the data's magnitude) so that a resample whose statistic
    equals the observed one in exact arithmetic, common with 0/1 rewards, is not lost to rounding.
    """
    tol = 1e-9 * max(abs(observed), scale)
    extreme = int(np.count_nonzero(np.abs(null_stats) >= abs(observed) - tol))
    return (1.0 + extreme) / (null_stats.size + 1.0)


# --------------------------------------------------------------------------- intervals


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion: two ints -> (low, high) floats in [0, 1].

    With z the two-sided normal critical value and p = successes / n::

        centre = (p + z²/2n) / (1 + z²/n),   half = z·sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n)

    the same as ``statsmodels.stats.proportion.proportion_confint(successes, n, method="wilson")``.
    Unlike the normal (Wald) interval it stays inside [0, 1] and is not a point at 0/n or n/n:
    0 correct out of 8 gives (0, 0.324).  ``n == 0`` gives (nan, nan).
    """
    fn = "wilson_interval"
    x, n = _int(successes, "successes", fn), _int(n, "n", fn)
    if n < 0 or not 0 <= x <= max(n, 0):
        raise ValueError(f"{fn}: need 0 <= successes <= n, got successes={x}, n={n}")
    z = _z(_check_confidence(confidence, fn))
    if n == 0:
        return float("nan"), float("nan")
    p = x / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom
    # In exact arithmetic the bound at 0/n is 0 and at n/n is 1; do not leave a 1e-17 residue.
    low = 0.0 if x == 0 else max(0.0, centre - half)
    high = 1.0 if x == n else min(1.0, centre + half)
    return float(low), float(high)


def _statistic(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """Row-wise statistic over the last axis: (B, n) -> (B,)."""
    if name == "mean":
        return lambda m: m.mean(axis=-1)
    return lambda m: m.std(axis=-1, ddof=1)


def bootstrap_interval(
    values,
    statistic: Literal["mean", "std"] = "mean",
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a statistic: values (n,) -> (low, high) floats.

    ``statistic``: ``"mean"`` (e.g. mean DPO margin) or ``"std"`` with ddof=1 (a question's GRPO
    reward spread, as ``objectives.reward_spread``).  Draws ``n_resamples`` resamples of size n
    with replacement (``np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))``,
    vectorised), computes the statistic of each, and returns its ``(1 - confidence)/2`` and
    ``(1 + confidence)/2`` quantiles (``np.quantile``'s default linear interpolation).

    Fewer than 2 values: 0 values give (nan, nan); 1 value gives the statistic twice, (v, v) for
    the mean and (0.0, 0.0) for the std (one trace has no spread, as ``reward_spread`` says).
    The interval is rough on tiny samples (see the module docstring): with k = 4 traces there are
    only 35 distinct resamples, and a spread of 0/1 rewards has a handful of possible values.
    Values must be finite (ValueError otherwise).
    """
    fn = "bootstrap_interval"
    v = _finite_vec(values, "values")
    if statistic not in BOOTSTRAP_STATISTICS:
        raise ValueError(f"{fn}: statistic must be one of {BOOTSTRAP_STATISTICS}, got {statistic!r}")
    confidence = _check_confidence(confidence, fn)
    n_resamples = _check_resamples(n_resamples, fn)
    if v.size == 0:
        return float("nan"), float("nan")
    if v.size == 1:
        point = float(v[0]) if statistic == "mean" else 0.0
        return point, point
    if v.size <= _KEPT_VALUES:
        return _kept_interval(v.tobytes(), statistic, confidence, n_resamples, seed)
    return _interval(v, statistic, confidence, n_resamples, seed)


def _interval(v: np.ndarray, statistic: str, confidence: float, n_resamples: int, seed: int) -> tuple[float, float]:
    stat = _statistic(statistic)
    if (v == v[0]).all():  # every resample is v itself (a question with no spread, often): no draws
        point = float(stat(v[None, :])[0])
        return point, point
    boot = np.concatenate([stat(v[rows]) for rows in _resample_rows(v.size, n_resamples, seed)])
    alpha = 1.0 - confidence
    low, high = np.quantile(boot, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


# A question's rewards are often the very vector another question had (k 0/1 rewards take at most
# 2^k values), and an interval is a function of its arguments alone: each is computed once. Kept
# for samples of up to 64 values (4096 of them, at most 2 MB).
_KEPT_VALUES = 64


@functools.lru_cache(maxsize=4096)
def _kept_interval(values: bytes, statistic: str, confidence: float, n_resamples: int,
                   seed: int) -> tuple[float, float]:
    return _interval(np.frombuffer(values), statistic, confidence, n_resamples, seed)


def _resample_rows(n: int, n_resamples: int, seed: int) -> Iterable[np.ndarray]:
    """The blocks of indices `bootstrap_interval` draws for n values: (rows, n) int arrays,
    ``n_resamples`` rows in all, from ``np.random.default_rng(seed)``."""
    if n * n_resamples <= _KEPT_DRAWS:
        return _kept_resample_rows(n, n_resamples, seed)
    return _draw_rows(n, n_resamples, seed)


def _draw_rows(n: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Drawn block by block, so that a large sample never holds all its indices at once."""
    rng = np.random.default_rng(seed)
    for rows in _blocks(n_resamples, n):
        yield rng.integers(0, n, size=(rows, n))


# Every question with the same number of traces (or of pairs) draws the same indices: drawing them
# was a third of an interval. Kept for small samples only (8 of at most 1 MB each).
_KEPT_DRAWS = 1 << 17


@functools.lru_cache(maxsize=8)
def _kept_resample_rows(n: int, n_resamples: int, seed: int) -> tuple[np.ndarray, ...]:
    rows = tuple(_draw_rows(n, n_resamples, seed))
    for block in rows:
        block.flags.writeable = False
    return rows


def cluster_bootstrap_intervals(n_traces, n_correct, spread, margins, *, with_margins: bool,
                                n_resamples: int = 2000, seed: int = 0) -> dict[str, list[float]]:
    """95% intervals of a suite's pooled metrics by a cluster bootstrap: resample *questions* (the
    traces of one question are not independent), recompute each pooled statistic, take the 2.5th
    and 97.5th percentiles (``np.percentile``). Resamples where a statistic is undefined (no pairs,
    no spread) are left out; a metric with none left is not in the result.

    Args:
        n_traces: traces per question. Shape: (q,) ints.
        n_correct: correct traces per question. Shape: (q,) ints.
        spread: each question's reward spread (None for none). Shape: (q,) floats.
        margins: each question's scored-pair DPO margins. Shape: q lists of floats, any length.
        with_margins: also give ``mean_margin`` and ``reward_accuracy`` (pooled over pairs).

    Returns {"accuracy", "mean_spread", "frac_zero_spread"[, "mean_margin", "reward_accuracy"]: [low, high]}
    ({} for no question), with the indices ``default_rng(seed).integers(0, q, size=(n_resamples, q))``.
    """
    q = len(n_traces)
    if not q:
        return {}
    traces, correct = np.asarray(n_traces, float), np.asarray(n_correct, float)
    spreads = np.array(spread, float)
    margin_arrays = [np.asarray(m, float) for m in margins]
    m_count = np.array([len(m) for m in margin_arrays], float)
    m_sum = np.array([m.sum() for m in margin_arrays])
    m_pos = np.array([(m > 0).sum() for m in margin_arrays], float)
    # Drawn and reduced a block of resamples at a time: all of them at once are n_resamples x q
    # indices (800 MB for 50,000 questions). One generator's blocks are its one big draw, row for
    # row, and each row is reduced on its own, so the result does not depend on the block size.
    rng = np.random.default_rng(seed)
    columns: dict[str, list[np.ndarray]] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for rows in _blocks(n_resamples, q):
            idx = rng.integers(0, q, size=(rows, q))
            block = {"accuracy": correct[idx].sum(1) / traces[idx].sum(1),
                     "mean_spread": spreads[idx].mean(1),
                     "frac_zero_spread": (spreads[idx] < ZERO_TOL).mean(1)}
            if with_margins:
                count = m_count[idx].sum(1)
                block["mean_margin"] = m_sum[idx].sum(1) / count
                block["reward_accuracy"] = m_pos[idx].sum(1) / count
            for name, values in block.items():
                columns.setdefault(name, []).append(values)

    def pct(samples):
        samples = samples[np.isfinite(samples)]
        return [float(x) for x in np.percentile(samples, [2.5, 97.5])] if len(samples) else None

    out = {name: pct(np.concatenate(parts)) for name, parts in columns.items()}
    return {k: v for k, v in out.items() if v is not None}


# --------------------------------------------------------------------------- tests


def two_proportion_test(x1: int, n1: int, x2: int, n2: int) -> float:
    """Two-sided p-value that two proportions x1/n1 and x2/n2 are equal: four ints -> float.

    Pooled z-test, ``statsmodels.stats.proportion.proportions_ztest([x1, x2], [n1, n2])`` with its
    defaults: p = (x1 + x2)/(n1 + n2), z = (x1/n1 - x2/n2) / sqrt(p(1-p)(1/n1 + 1/n2)),
    p-value = 2·(1 - Φ(|z|)).  When both samples are all failures or all successes the pooled
    variance is 0 and there is no evidence of a difference: 1.0 (statsmodels gives nan there).
    Needs n1, n2 >= 1.  A normal approximation: with few traces (n·p < 5 or so) prefer a bootstrap
    or an exact test, and read the p-value as rough.
    """
    fn = "two_proportion_test"
    x1, n1, x2, n2 = (_int(v, name, fn) for v, name in ((x1, "x1"), (n1, "n1"), (x2, "x2"), (n2, "n2")))
    for x, n, i in ((x1, n1, 1), (x2, n2, 2)):
        if n < 1 or not 0 <= x <= n:
            raise ValueError(f"{fn}: need 0 <= x{i} <= n{i} and n{i} >= 1, got x{i}={x}, n{i}={n}")
    pooled = (x1 + x2) / (n1 + n2)
    var = pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)
    if var <= 0.0:
        return 1.0
    z = (x1 / n1 - x2 / n2) / math.sqrt(var)
    # 2·(1 - Φ(|z|)) = erfc(|z|/√2), accurate far into the tail.
    return float(min(1.0, math.erfc(abs(z) / math.sqrt(2.0))))


def bootstrap_difference_test(a, b, n_resamples: int = 5000, seed: int = 0) -> float:
    """Two-sided bootstrap p-value for mean(b) - mean(a) != 0, unpaired: a (n_a,), b (n_b,) -> float.

    For two independent samples, e.g. the rewards of two runs on different questions.  The
    statistic is t = mean(b) - mean(a).  To sample under the null of equal means, both samples
    are shifted to the pooled mean (a - mean(a) + m, b - mean(b) + m, m the mean of a and b
    together; Efron & Tibshirani 1993, Algorithm 16.2, with the plain difference of means as the
    statistic).  Each of ``n_resamples`` rounds resamples each shifted sample with replacement at
    its own size (rng = ``np.random.default_rng(seed)``; per block of rounds, the a indices are
    drawn before the b indices) and records t* = mean(b*) - mean(a*).  The p-value is
    (1 + #{|t*| >= |t|}) / (n_resamples + 1), never 0.

    Identical samples give t = 0 and p = 1.  Needs at least 2 values in each sample (nan
    otherwise: one value has no spread to resample).  Each sample's spread is kept as observed
    (no equal-variance assumption).  On very small samples the bootstrap null distribution is too
    narrow and p-values run small; values must be finite.
    """
    fn = "bootstrap_difference_test"
    xa, xb = _finite_vec(a, "a"), _finite_vec(b, "b")
    n_resamples = _check_resamples(n_resamples, fn)
    if xa.size < 2 or xb.size < 2:
        return float("nan")
    observed = float(xb.mean() - xa.mean())
    pooled = np.concatenate([xa, xb]).mean()
    a0, b0 = xa - xa.mean() + pooled, xb - xb.mean() + pooled
    na, nb = xa.size, xb.size
    rng = np.random.default_rng(seed)
    null = []
    for rows in _blocks(n_resamples, na + nb):
        ia = rng.integers(0, na, size=(rows, na))
        ib = rng.integers(0, nb, size=(rows, nb))
        null.append(b0[ib].mean(axis=1) - a0[ia].mean(axis=1))
    scale = float(max(np.abs(xa).max(), np.abs(xb).max()))
    return _bootstrap_p(np.concatenate(null), observed, scale)


def paired_bootstrap_test(a, b, n_resamples: int = 5000, seed: int = 0) -> float:
    """Two-sided bootstrap p-value for a paired change: a (n,), b (n,) -> float.

    For the same n questions scored in two runs (a = before, b = after; e.g. per-question
    accuracy).  With differences d = b - a and t = mean(d), the null "mean difference 0" is
    imposed by centring, d0 = d - t; each of ``n_resamples`` rounds resamples d0 with
    replacement (rng = ``np.random.default_rng(seed)``, indices ``integers(0, n, size=(B, n))``)
    and records t* = mean(d0*).  The p-value is (1 + #{|t*| >= |t|}) / (n_resamples + 1), never 0.
    Pairing removes the between-question variation, so it detects a change that an unpaired test
    on the same numbers would miss.

    Identical runs (all d = 0) give p = 1; the same non-zero change on every question gives the
    minimum 1/(n_resamples + 1).  Needs equal lengths (ValueError) and at least 2 pairs (nan
    otherwise); values must be finite.
    """
    fn = "paired_bootstrap_test"
    xa, xb = _finite_vec(a, "a"), _finite_vec(b, "b")
    if xa.shape != xb.shape:
        raise ValueError(f"{fn}: a and b must have the same length (paired), got {xa.size} and {xb.size}")
    n_resamples = _check_resamples(n_resamples, fn)
    n = xa.size
    if n < 2:
        return float("nan")
    d = xb - xa
    observed = float(d.mean())
    d0 = d - observed
    rng = np.random.default_rng(seed)
    null = np.concatenate([d0[rng.integers(0, n, size=(rows, n))].mean(axis=1) for rows in _blocks(n_resamples, n)])
    scale = float(max(np.abs(xa).max(), np.abs(xb).max()))
    return _bootstrap_p(null, observed, scale)


# --------------------------------------------------------------------------- majority voting


def answer_classes(answers: Sequence[str | None], equivalent: Callable[[str, str], bool]) -> list[int | None]:
    """Class id per answer under an equivalence: answers (n,) -> list of int or None, length n.

    Ids are 0, 1, 2, ... in order of first appearance.  Each parsable answer is compared, in id
    order, with the *first member* of each existing class (``equivalent(first_member, answer)``)
    and joins the first class that matches; if none does it starts a new class.  Comparing
    against one fixed representative keeps the result well defined for a non-transitive relation
    such as numeric closeness.  ``None`` (an unparsable trace: ``Verdict.extracted`` is None) gets
    None.  E.g. with ``functools.partial(rlhf_eval.verify.equivalent, verifier="numeric")``,
    ``["18", "$18", None, "17", "18.0"]`` -> ``[0, 0, None, 1, 0]``.
    """
    firsts: list[str] = []
    out: list[int | None] = []
    for answer in answers:
        if answer is None:
            out.append(None)
            continue
        for cid, first in enumerate(firsts):
            if equivalent(first, answer):
                out.append(cid)
                break
        else:
            firsts.append(answer)
            out.append(len(firsts) - 1)
    return out


def maj_at_k(classes: Sequence[Hashable | None], correct, k: int, seed: int = 0) -> float:
    """Majority-vote accuracy with k of the n samples: classes (n,), correct bool (n,) -> float.

    The expected score, over all size-k subsets of the n samples equally likely, of "the most
    frequent answer class among the subset's parsable answers is correct".  Per subset: count
    each class among its parsable (class not None) samples; the classes with the top count are
    the vote; the score is the fraction of those tied classes that are correct (a tie between a
    right and a wrong answer scores 1/2, i.e. a random tie-break in expectation); a subset with
    no parsable answer scores 0.

    A class is correct iff ``correct`` of its first member (first in sample order) is True.  With
    a consistent verifier equivalent answers share correctness, so the choice does not matter.

    Exact when there are at most MAJ_EXACT_LIMIT (20,000) subsets, enumerated with
    ``itertools.combinations``; otherwise the mean over MAJ_MC_SUBSETS (20,000) uniformly random
    k-subsets drawn with ``np.random.default_rng(seed)`` (standard error <= 0.0036), so
    ``seed`` matters only then.  maj@1 is plain accuracy with unparsable counted wrong (computed
    directly, always exact); maj@n is the vote of all n samples.  Needs 1 <= k <= n (ValueError
    otherwise).
    """
    fn = "maj_at_k"
    ok = _bool_vec(correct, "correct")
    if isinstance(classes, (str, bytes)):
        raise TypeError(f"{fn}: classes must be a sequence of class ids, not one string")
    classes = list(classes)
    n = len(classes)
    if ok.size != n:
        raise ValueError(f"{fn}: classes and correct must have the same length, got {n} and {ok.size}")
    k = _int(k, "k", fn)
    if not 1 <= k <= n:
        raise ValueError(f"{fn}: need 1 <= k <= n (the number of samples), got k={k}, n={n}")

    # Dense labels: 0 = unparsable, 1..C = the classes in order of first appearance.
    dense: dict = {}
    labels = np.zeros(n, dtype=np.intp)
    class_ok = [False]  # column 0 (unparsable) is never a vote
    for i, c in enumerate(classes):
        if c is None:
            continue
        if c not in dense:
            dense[c] = len(dense) + 1
            class_ok.append(bool(ok[i]))
        labels[i] = dense[c]
    n_classes = len(dense)
    if n_classes == 0:
        return 0.0
    class_ok_arr = np.array(class_ok)
    width = n_classes + 1
    if k == 1:  # each subset is one sample, its own majority
        return float(np.count_nonzero(class_ok_arr[labels]) / n)

    def score(subsets: np.ndarray) -> float:
        """Summed score of subsets (rows, k) of sample indices."""
        rows = subsets.shape[0]
        flat = (np.arange(rows)[:, None] * width + labels[subsets]).ravel()
        counts = np.bincount(flat, minlength=rows * width).reshape(rows, width)
        counts[:, 0] = 0
        top = counts.max(axis=1)
        tied = (counts == top[:, None]) & (top[:, None] > 0)
        n_tied = tied.sum(axis=1)
        right = (tied & class_ok_arr).sum(axis=1)
        return float(np.sum(np.where(n_tied > 0, right / np.maximum(n_tied, 1), 0.0)))

    rows_per_block = max(1, _BLOCK // max(k, width))
    if math.comb(n, k) <= MAJ_EXACT_LIMIT:
        combos = itertools.combinations(range(n), k)
        total, count = 0.0, 0
        while True:
            block = np.fromiter(
                itertools.chain.from_iterable(itertools.islice(combos, rows_per_block)), dtype=np.intp
            ).reshape(-1, k)
            if block.shape[0] == 0:
                break
            total += score(block)
            count += block.shape[0]
        return total / count

    rng = np.random.default_rng(seed)
    total = 0.0
    few = k * k <= n  # k indices drawn with replacement are then distinct with probability > 1/2
    for rows in _blocks(MAJ_MC_SUBSETS, max(k if few else n, width)):
        total += score(_random_subsets(rng, n, k, rows, few))
    return total / MAJ_MC_SUBSETS


def _random_subsets(rng: np.random.Generator, n: int, k: int, rows: int, few: bool) -> np.ndarray:
    """``rows`` independent uniformly random k-subsets of range(n): (rows, k) indices."""
    if not few:
        # The k smallest of n iid uniform keys index a uniformly random k-subset.
        return np.argpartition(rng.random((rows, n)), k - 1, axis=1)[:, :k]
    # k iid indices conditioned on being distinct are a uniform k-subset: redraw rows with a repeat.
    idx = rng.integers(0, n, size=(rows, k))
    while True:
        ordered = np.sort(idx, axis=1)
        repeat = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
        if not repeat.any():
            return idx
        idx[repeat] = rng.integers(0, n, size=(int(repeat.sum()), k))
