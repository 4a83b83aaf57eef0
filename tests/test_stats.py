"""rlhf_eval.stats against pasted statsmodels/scipy values and slow pure-Python references.

The project does not depend on scipy or statsmodels; the reference values below were computed
once with statsmodels 0.15.0 and scipy 1.17.1 (numpy 2.4.6, Python 3.11) and pasted in.
"""
from __future__ import annotations

import functools
import itertools
import math
import random
import statistics
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest

from rlhf_eval import stats
from rlhf_eval.verify import equivalent

# --------------------------------------------------------------------------- shared data

# Fixed samples (rounded normal draws, pasted as literals so no generator stream is involved).
A = [1.03, 1.64, 1.15, -0.97, -1.39, 0.07, 0.86, 0.51, 1.81, 0.75, 0.64, -0.73, -1.11, 1.48, 0.05, 0.81, -1.38,
     -0.44, -1.29, -0.78, 0.9, -1.48, -0.53, 0.16, -0.67, -0.25, -0.22, 0.42, -0.43, 0.27, 0.06, 0.42, 0.22, 1.66,
     -0.66, 1.2, -0.4, -0.96, 1.21, -0.44]
# Independent of A, true mean 0.4 higher.
B = [0.01, -0.99, -1.7, 1.03, -0.77, 1.18, 2.25, 0.29, -0.73, 0.79, 1.16, 0.14, 0.42, 1.74, 1.67, 1.11, -0.47, 0.35,
     1.0, 0.19, -0.21, -0.37, -0.23, -0.27, -0.05, 1.55, -0.4, 1.29, 0.82, 0.54, -0.43, -0.06, 2.37, 0.5, 0.94, 1.06,
     1.46, 0.16, -0.21, 0.34]
# Paired with A: C = A + 0.25 + N(0, 0.6), rounded.
C = [1.12, 2.36, 1.51, -0.58, -1.05, 1.06, 0.78, 0.47, 2.59, 0.94, 1.11, -0.92, -0.85, 1.99, -0.5, 0.64, -0.88, 1.16,
     -0.76, -0.57, 0.64, -1.0, -1.78, 0.38, -0.62, -0.31, 1.42, -0.81, -0.19, 0.56, 0.59, -0.29, 0.19, 1.01, -0.49,
     1.57, -0.05, -0.83, 1.57, -0.08]
X10 = [0.3, -1.2, 2.5, 0.7, 1.1, -0.4, 0.9, 3.2, 0.0, 1.6]


# --------------------------------------------------------------------------- wilson_interval

# (successes, n, confidence, low, high) from
# statsmodels 0.15.0: statsmodels.stats.proportion.proportion_confint(x, n, alpha=1 - confidence, method="wilson")
WILSON_CASES = [
    (0, 1, 0.95, 0.0, 0.7934506856227626),
    (1, 1, 0.95, 0.20654931437723745, 1.0),
    (0, 8, 0.95, 0.0, 0.32440756488388023),
    (1, 8, 0.95, 0.02241749145005667, 0.4708881822128535),
    (3, 10, 0.95, 0.10779126740630099, 0.6032218525388546),
    (8, 8, 0.95, 0.6755924351161198, 1.0),
    (10, 10, 0.95, 0.7224672001371107, 0.9999999999999999),
    (50, 100, 0.95, 0.4038315303659956, 0.5961684696340044),
    (1, 1000, 0.95, 0.00017654637062607809, 0.0056425585979579355),
    (7, 20, 0.90, 0.202260040056761, 0.5334873111515284),
    (7, 20, 0.99, 0.1463934413769388, 0.6283381789526871),
    (16, 16, 0.99, 0.706873120828753, 0.9999999999999999),
]


@pytest.mark.parametrize("x, n, conf, low, high", WILSON_CASES)
def test_wilson_matches_statsmodels(x, n, conf, low, high):
    got = stats.wilson_interval(x, n, conf)
    assert got == pytest.approx((low, high), rel=1e-12, abs=1e-14)
    assert all(type(v) is float for v in got)


def test_wilson_edges_are_exact():
    # statsmodels leaves 1 - 1e-16 at n/n; ours is exactly 1 (and exactly 0 at 0/n).
    assert stats.wilson_interval(0, 8)[0] == 0.0
    assert stats.wilson_interval(10, 10)[1] == 1.0
    assert stats.wilson_interval(np.int64(3), np.int64(10)) == stats.wilson_interval(3, 10)


def test_wilson_symmetry_and_monotonicity():
    for n in (1, 5, 16, 101):
        for x in range(n + 1):
            lo, hi = stats.wilson_interval(x, n)
            lo2, hi2 = stats.wilson_interval(n - x, n)
            assert lo == pytest.approx(1 - hi2, abs=1e-12) and hi == pytest.approx(1 - lo2, abs=1e-12)
            assert 0.0 <= lo <= x / n <= hi <= 1.0
    widths = [np.subtract(*stats.wilson_interval(3, 10, c)[::-1]) for c in (0.5, 0.8, 0.95, 0.999)]
    assert widths == sorted(widths)


def test_wilson_empty_and_errors():
    lo, hi = stats.wilson_interval(0, 0)
    assert math.isnan(lo) and math.isnan(hi)
    for args in ((5, 4), (-1, 4), (0, -1)):
        with pytest.raises(ValueError):
            stats.wilson_interval(*args)
    for conf in (0.0, 1.0, 95):
        with pytest.raises(ValueError, match="confidence"):
            stats.wilson_interval(1, 2, conf)
    with pytest.raises(TypeError):
        stats.wilson_interval(1.0, 2)
    with pytest.raises(TypeError):
        stats.wilson_interval(True, 2)


# --------------------------------------------------------------------------- bootstrap_interval


def slow_bootstrap_interval(values, statistic, confidence, n_resamples, seed):
    """One resample per rng call, statistics module, hand-written linear-interpolated percentile."""
    rng = np.random.default_rng(seed)
    n = len(values)
    boot = []
    for _ in range(n_resamples):
        sample = [values[int(i)] for i in rng.integers(0, n, size=n)]
        boot.append(statistics.fmean(sample) if statistic == "mean" else statistics.stdev(sample))
    boot.sort()

    def quantile(q):  # numpy's default "linear" method (Hyndman & Fan type 7)
        pos = q * (len(boot) - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, len(boot) - 1)
        return boot[lo] + (boot[hi] - boot[lo]) * (pos - lo)

    alpha = 1 - confidence
    return quantile(alpha / 2), quantile(1 - alpha / 2)


@pytest.mark.parametrize("statistic", ["mean", "std"])
@pytest.mark.parametrize("values, confidence, n_resamples, seed", [
    (X10, 0.95, 2000, 0),
    ([0.0, 1.0, 1.0, 0.0, 1.0], 0.95, 500, 7),
    ([2.5, -1.0], 0.8, 300, 3),
    (A, 0.9, 400, 11),
    ([1.0] * 8, 0.95, 2000, 0),  # no spread: answered without drawing, the same numbers
    ([0.1] * 7, 0.95, 50, 1),
])
def test_bootstrap_matches_slow_loop(values, statistic, confidence, n_resamples, seed):
    got = stats.bootstrap_interval(values, statistic, confidence, n_resamples, seed)
    want = slow_bootstrap_interval(values, statistic, confidence, n_resamples, seed)
    assert got == pytest.approx(want, rel=1e-12, abs=1e-12)


def forget_bootstraps():
    """Computed intervals and drawn indices are kept (see `stats._kept_interval`): start afresh."""
    stats._kept_interval.cache_clear()
    stats._kept_resample_rows.cache_clear()


def test_bootstrap_block_size_does_not_change_the_result(monkeypatch):
    want = stats.bootstrap_interval(A, "std", n_resamples=333, seed=5)
    for block in (7, 40 * 50):  # blocks of one row each; 50 rows per block, the last one partial
        monkeypatch.setattr(stats, "_BLOCK", block)
        forget_bootstraps()
        assert stats.bootstrap_interval(A, "std", n_resamples=333, seed=5) == want
    forget_bootstraps()


def test_kept_intervals_and_kept_draws_change_no_result(monkeypatch):
    """An interval asked for again, and one drawing the indices an earlier one drew, are the
    intervals computed afresh with nothing kept; kept indices cannot be written to."""
    samples = [[0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0], X10, A, [0.3, -0.2, 0.5]]
    kept = [[stats.bootstrap_interval(x, s, seed=seed) for x in samples for s in ("mean", "std")]
            for seed in (0, 1, 0)]
    monkeypatch.setattr(stats, "_KEPT_DRAWS", 0)
    monkeypatch.setattr(stats, "_KEPT_VALUES", 0)
    forget_bootstraps()
    fresh = [stats.bootstrap_interval(x, s, seed=0) for x in samples for s in ("mean", "std")]
    assert kept[0] == kept[2] == fresh and kept[1] != kept[0]
    # nothing was kept: every interval computed and every index drawn afresh
    assert stats._kept_resample_rows.cache_info().currsize == stats._kept_interval.cache_info().currsize == 0
    with pytest.raises(ValueError):
        stats._kept_resample_rows(8, 100, 0)[0][0, 0] = 1
    forget_bootstraps()


def test_bootstrap_is_seeded():
    one = stats.bootstrap_interval(X10, seed=3)
    assert stats.bootstrap_interval(X10, seed=3) == one
    assert stats.bootstrap_interval(np.array(X10), seed=3) == one
    assert stats.bootstrap_interval(X10, seed=4) != one
    assert all(type(v) is float for v in one)


@pytest.mark.parametrize("values", [X10, A, B, [0, 0, 1, 1, 1], [5.0, 5.0, 5.0, 6.0]])
def test_bootstrap_contains_the_estimate(values):
    lo, hi = stats.bootstrap_interval(values)
    assert lo <= statistics.fmean(values) <= hi
    lo, hi = stats.bootstrap_interval(values, "std")
    assert 0.0 <= lo <= hi


def test_bootstrap_near_scipy():
    # scipy 1.17.1: scipy.stats.bootstrap((X10,), np.mean, method="percentile", n_resamples=200000, rng=0)
    # and the same with statistic = np.std(ddof=1). Different rng streams: agreement up to Monte Carlo error.
    assert stats.bootstrap_interval(X10, n_resamples=20000) == pytest.approx(
        (0.11999999999999995, 1.6600000000000001), abs=0.04)
    assert stats.bootstrap_interval(X10, "std", n_resamples=20000) == pytest.approx(
        (0.6786424357167444, 1.700467254945888), abs=0.04)


def test_bootstrap_coverage_sanity():
    # 300 fixed-seed synthetic samples: the 95% interval should cover the truth about 95% of the time.
    mean_hits = prop_hits = 0
    for t in range(300):
        x = np.random.default_rng(1000 + t).normal(5.0, 2.0, 30)
        lo, hi = stats.bootstrap_interval(x, seed=t)
        mean_hits += lo <= 5.0 <= hi
        y = (np.random.default_rng(5000 + t).random(40) < 0.3).astype(float)
        lo, hi = stats.bootstrap_interval(y, seed=t)
        prop_hits += lo <= 0.3 <= hi
    assert 0.88 <= mean_hits / 300 <= 0.99
    assert 0.88 <= prop_hits / 300 <= 0.995


def test_bootstrap_small_and_degenerate():
    lo, hi = stats.bootstrap_interval([])
    assert math.isnan(lo) and math.isnan(hi)
    assert stats.bootstrap_interval([2.5]) == (2.5, 2.5)
    assert stats.bootstrap_interval([2.5], "std") == (0.0, 0.0)  # one trace has no spread
    assert stats.bootstrap_interval([1.0, 1.0, 1.0]) == (1.0, 1.0)
    assert stats.bootstrap_interval([1.0, 1.0, 1.0], "std") == (0.0, 0.0)


def test_bootstrap_errors():
    with pytest.raises(ValueError, match="statistic"):
        stats.bootstrap_interval(X10, "median")
    with pytest.raises(ValueError, match="finite"):
        stats.bootstrap_interval([1.0, float("nan")])
    with pytest.raises(ValueError, match="1-D"):
        stats.bootstrap_interval([[1.0, 2.0]])
    with pytest.raises(ValueError, match="confidence"):
        stats.bootstrap_interval(X10, confidence=1.5)
    with pytest.raises(ValueError, match="n_resamples"):
        stats.bootstrap_interval(X10, n_resamples=0)


# --------------------------------------------------------------------------- two_proportion_test

# (x1, n1, x2, n2, p) from statsmodels 0.15.0:
# statsmodels.stats.proportion.proportions_ztest([x1, x2], [n1, n2])[1] (defaults: pooled, two-sided)
ZTEST_CASES = [
    (3, 10, 7, 10, 0.07363827012030266),
    (0, 8, 8, 8, 6.334248366623973e-05),
    (0, 8, 1, 8, 0.3016995824783478),
    (45, 100, 60, 100, 0.033672068856345855),
    (1, 20, 5, 30, 0.2136207303090525),
    (500, 1000, 530, 1000, 0.1795165918994962),
    (12, 16, 12, 16, 1.0),
]


@pytest.mark.parametrize("x1, n1, x2, n2, p", ZTEST_CASES)
def test_two_proportion_matches_statsmodels(x1, n1, x2, n2, p):
    assert stats.two_proportion_test(x1, n1, x2, n2) == pytest.approx(p, rel=1e-9)
    assert stats.two_proportion_test(x2, n2, x1, n1) == pytest.approx(p, rel=1e-9)
    assert type(stats.two_proportion_test(x1, n1, x2, n2)) is float


def test_two_proportion_degenerate():
    # statsmodels 0.15.0 returns nan for these (zero pooled variance); no evidence of a difference -> 1.
    assert stats.two_proportion_test(0, 10, 0, 10) == 1.0
    assert stats.two_proportion_test(10, 10, 5, 5) == 1.0
    assert stats.two_proportion_test(0, 1, 0, 3) == 1.0


def test_two_proportion_errors():
    for args in ((1, 0, 1, 2), (3, 2, 1, 2), (-1, 2, 1, 2), (1, 2, 1, 0)):
        with pytest.raises(ValueError):
            stats.two_proportion_test(*args)
    with pytest.raises(TypeError):
        stats.two_proportion_test(1.0, 2, 1, 2)


# --------------------------------------------------------------------------- bootstrap tests


def slow_p(null, observed, scale):
    tol = 1e-9 * max(abs(observed), scale)
    return (1 + sum(abs(t) >= abs(observed) - tol for t in null)) / (len(null) + 1)


def slow_difference_test(a, b, n_resamples, seed):
    """Single-block draw order: all rounds' a indices, then all rounds' b indices, one row per call."""
    rng = np.random.default_rng(seed)
    pooled = statistics.fmean(a + b)
    a0 = [v - statistics.fmean(a) + pooled for v in a]
    b0 = [v - statistics.fmean(b) + pooled for v in b]
    ia = [rng.integers(0, len(a), size=len(a)) for _ in range(n_resamples)]
    ib = [rng.integers(0, len(b), size=len(b)) for _ in range(n_resamples)]
    null = [statistics.fmean(b0[j] for j in rb) - statistics.fmean(a0[i] for i in ra) for ra, rb in zip(ia, ib)]
    scale = max(abs(v) for v in a + b)
    return slow_p(null, statistics.fmean(b) - statistics.fmean(a), scale)


def slow_paired_test(a, b, n_resamples, seed):
    rng = np.random.default_rng(seed)
    d = [y - x for x, y in zip(a, b)]
    t = statistics.fmean(d)
    d0 = [v - t for v in d]
    null = [statistics.fmean(d0[int(i)] for i in rng.integers(0, len(d), size=len(d))) for _ in range(n_resamples)]
    return slow_p(null, t, max(abs(v) for v in a + b))


@pytest.mark.parametrize("a, b, seed", [(A, B, 0), (A[:7], B[:12], 3), ([0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 1.0], 1)])
def test_difference_test_matches_slow_loop(a, b, seed):
    assert stats.bootstrap_difference_test(a, b, 1000, seed) == pytest.approx(slow_difference_test(a, b, 1000, seed))


@pytest.mark.parametrize("a, b, seed", [(A, C, 0), (A[:9], B[:9], 2), ([0, 1, 1, 0, 1], [1, 1, 1, 0, 1], 4)])
def test_paired_test_matches_slow_loop(a, b, seed):
    assert stats.paired_bootstrap_test(a, b, 1000, seed) == pytest.approx(slow_paired_test(a, b, 1000, seed))


@pytest.mark.parametrize("test", [stats.bootstrap_difference_test, stats.paired_bootstrap_test])
def test_bootstrap_tests_identical_shifted_seeded(test):
    assert test(A, A) == 1.0
    assert test([0, 1, 1, 0], [0, 1, 1, 0]) == 1.0
    shifted = [v + 1.5 for v in A]
    assert test(A, shifted) < 0.01
    assert test(shifted, A) < 0.01
    p = test(A, C, seed=3)
    assert test(A, C, seed=3) == p and type(p) is float
    assert 1 / 5001 <= p <= 1.0
    assert math.isnan(test([1.0], [2.0]))
    with pytest.raises(ValueError, match="finite"):
        test([1.0, float("inf")], [1.0, 2.0])


def test_difference_test_near_welch():
    # scipy 1.17.1: scipy.stats.ttest_ind(B, A, equal_var=False).pvalue = 0.0848683038228327.
    # The bootstrap is a different (slightly anti-conservative) method: agreement within 0.03.
    assert stats.bootstrap_difference_test(A, B) == pytest.approx(0.0848683038228327, abs=0.03)
    # 0/1 rewards, 12/16 vs 4/16 correct: clearly different; identical counts: p = 1.
    assert stats.bootstrap_difference_test([1] * 4 + [0] * 12, [1] * 12 + [0] * 4) < 0.01
    assert stats.bootstrap_difference_test([1] * 6 + [0] * 10, [0] * 10 + [1] * 6) == 1.0


def test_paired_test_near_ttest_rel_and_beats_unpaired():
    # scipy 1.17.1: scipy.stats.ttest_rel(C, A).pvalue = 0.036979746635277234,
    #               scipy.stats.ttest_ind(C, A, equal_var=False).pvalue = 0.37576363141957825.
    paired = stats.paired_bootstrap_test(A, C)
    assert paired == pytest.approx(0.036979746635277234, abs=0.03)
    assert stats.bootstrap_difference_test(A, C) == pytest.approx(0.37576363141957825, abs=0.05)
    assert paired < 0.05 < 0.2 < stats.bootstrap_difference_test(A, C)


def test_paired_test_constant_change_and_errors():
    assert stats.paired_bootstrap_test([1, 2, 3], [2, 3, 4], n_resamples=999) == 1 / 1000
    with pytest.raises(ValueError, match="same length"):
        stats.paired_bootstrap_test([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="n_resamples"):
        stats.paired_bootstrap_test([1, 2, 3], [1, 2, 3], n_resamples=0)


def test_bootstrap_tests_block_size_invariant(monkeypatch):
    p_diff = stats.bootstrap_difference_test(A, B, 500, 9)
    p_pair = stats.paired_bootstrap_test(A, C, 500, 9)
    monkeypatch.setattr(stats, "_BLOCK", 1)
    assert stats.paired_bootstrap_test(A, C, 500, 9) == p_pair
    # The unpaired test interleaves a and b blocks, so its stream depends on the block size;
    # it is still deterministic and agrees up to Monte Carlo error.
    assert stats.bootstrap_difference_test(A, B, 500, 9) == stats.bootstrap_difference_test(A, B, 500, 9)
    assert stats.bootstrap_difference_test(A, B, 500, 9) == pytest.approx(p_diff, abs=0.05)


# --------------------------------------------------------------------------- answer_classes


def test_answer_classes_numeric():
    eq = functools.partial(equivalent, verifier="numeric")
    assert stats.answer_classes(["18", "$18", None, "17", "18.0", "0.5", "1/2", "17.00"], eq) == [
        0, 0, None, 1, 0, 2, 2, 1]
    assert stats.answer_classes([], eq) == []
    assert stats.answer_classes([None, None], eq) == [None, None]


def test_answer_classes_compares_with_first_member():
    calls = []

    def near(x, y):  # not transitive: 0 ~ 1 ~ 2 but not 0 ~ 2
        calls.append((x, y))
        return abs(int(x) - int(y)) <= 1

    assert stats.answer_classes(["0", "1", "2", "1", "3"], near) == [0, 0, 1, 0, 1]
    assert calls[:3] == [("0", "1"), ("0", "2"), ("0", "1")]  # (first member, answer)


# --------------------------------------------------------------------------- maj_at_k


def brute_maj_at_k(classes, correct, k):
    """Exact, with Fractions, by looping over every k-subset."""
    first: dict = {}
    for c, ok in zip(classes, correct):
        if c is not None:
            first.setdefault(c, bool(ok))
    total = Fraction(0)
    subsets = list(itertools.combinations(range(len(classes)), k))
    for subset in subsets:
        counts = Counter(classes[i] for i in subset if classes[i] is not None)
        if not counts:
            continue
        top = max(counts.values())
        tied = [c for c, m in counts.items() if m == top]
        total += Fraction(sum(first[c] for c in tied), len(tied))
    return total / len(subsets)


def random_case(rng: random.Random):
    n = rng.randint(1, 10)
    n_classes = rng.randint(1, 4)
    classes = [None if rng.random() < 0.2 else rng.randrange(n_classes) for _ in range(n)]
    right = {c: rng.random() < 0.4 for c in range(n_classes)}  # a consistent verifier
    correct = [c is not None and right[c] for c in classes]
    return classes, correct


def test_maj_at_k_matches_brute_force():
    rng = random.Random(12345)
    for _ in range(150):
        classes, correct = random_case(rng)
        for k in range(1, len(classes) + 1):
            got = stats.maj_at_k(classes, correct, k)
            assert got == pytest.approx(float(brute_maj_at_k(classes, correct, k)), abs=1e-12), (classes, correct, k)
            assert type(got) is float


def test_maj_at_k_uses_first_member_correctness():
    # An inconsistent verifier: class 0's first member is correct, a later one not.
    assert stats.maj_at_k([0, 0, 1], [True, False, False], 3) == 1.0
    assert stats.maj_at_k([0, 0, 1], [False, True, True], 3) == 0.0
    rng = random.Random(7)
    for _ in range(30):
        classes = [rng.choice([None, 0, 1, 2]) for _ in range(rng.randint(1, 8))]
        correct = [rng.random() < 0.5 for _ in classes]
        k = rng.randint(1, len(classes))
        assert stats.maj_at_k(classes, correct, k) == pytest.approx(float(brute_maj_at_k(classes, correct, k)))


def test_maj_at_1_is_accuracy():
    rng = random.Random(99)
    for _ in range(50):
        classes, correct = random_case(rng)
        acc = sum(ok and c is not None for c, ok in zip(classes, correct)) / len(classes)
        assert stats.maj_at_k(classes, correct, 1) == pytest.approx(acc, abs=1e-12)
    # Beyond the enumeration limit too (k = 1 is computed directly).
    classes = [i % 7 if i % 11 else None for i in range(30_000)]
    correct = [c == 3 for c in classes]
    assert stats.maj_at_k(classes, correct, 1) == sum(correct) / 30_000


def test_maj_at_k_ties_and_unparsable():
    assert stats.maj_at_k([0, 1], [True, False], 2) == 0.5
    assert stats.maj_at_k([0, 1, 2], [False, True, False], 3) == pytest.approx(1 / 3)
    assert stats.maj_at_k([0, 0, 1, 1, 2], [True, True, False, False, False], 5) == 0.5
    assert stats.maj_at_k([None, None, None], [False] * 3, 2) == 0.0
    assert stats.maj_at_k([None, 0, None], [False, True, False], 3) == 1.0  # unparsable answers do not vote
    assert stats.maj_at_k([None, 0, None], [False, True, False], 1) == pytest.approx(1 / 3)
    # Class ids need only be hashable and are compared for equality, not order.
    assert stats.maj_at_k(["b", "a", "b"], [True, False, True], 3) == 1.0


def test_maj_at_k_errors():
    with pytest.raises(ValueError, match="1 <= k <= n"):
        stats.maj_at_k([0, 1], [True, False], 3)
    with pytest.raises(ValueError, match="1 <= k <= n"):
        stats.maj_at_k([0, 1], [True, False], 0)
    with pytest.raises(ValueError, match="1 <= k <= n"):
        stats.maj_at_k([], [], 1)
    with pytest.raises(ValueError, match="same length"):
        stats.maj_at_k([0, 1], [True], 1)
    with pytest.raises(TypeError):
        stats.maj_at_k([0, 1], [True, False], 1.0)


def hypergeometric_maj(n_right, n_wrong, n_unparsable, k):
    """Exact maj@k for one correct class, one wrong class and unparsable answers."""
    n = n_right + n_wrong + n_unparsable
    total = Fraction(0)
    for a in range(k + 1):
        for b in range(k + 1 - a):
            u = k - a - b
            ways = math.comb(n_right, a) * math.comb(n_wrong, b) * math.comb(n_unparsable, u)
            score = Fraction(1) if a > b else Fraction(1, 2) if a == b > 0 else Fraction(0)
            total += ways * score
    return float(total / math.comb(n, k))


@pytest.mark.parametrize("n_right, n_wrong, n_unparsable, k", [
    (22, 14, 4, 10),  # C(40, 10) ~ 8.5e8 subsets: Monte Carlo by random keys (k * k > n)
    (90, 80, 30, 6),  # C(200, 6) ~ 8.2e10: Monte Carlo by distinct draws (k * k <= n)
])
def test_maj_at_k_monte_carlo(n_right, n_wrong, n_unparsable, k):
    classes = [0] * n_right + [1] * n_wrong + [None] * n_unparsable
    correct = [True] * n_right + [False] * (n_wrong + n_unparsable)
    want = hypergeometric_maj(n_right, n_wrong, n_unparsable, k)
    got = stats.maj_at_k(classes, correct, k)
    assert got == pytest.approx(want, abs=0.015)  # standard error <= 0.0036
    assert stats.maj_at_k(classes, correct, k, seed=0) == got
    assert stats.maj_at_k(classes, correct, k, seed=1) != got
    assert stats.maj_at_k(classes, correct, k, seed=1) == pytest.approx(want, abs=0.015)


def test_maj_at_k_exact_threshold(monkeypatch):
    classes, correct = [0, 0, 1, 2, 1, 0, None, 1], [True, True, False, False, False, True, False, False]
    exact = float(brute_maj_at_k(classes, correct, 4))
    assert stats.maj_at_k(classes, correct, 4) == pytest.approx(exact, abs=1e-12)  # C(8, 4) = 70: exact
    monkeypatch.setattr(stats, "MAJ_EXACT_LIMIT", 69)
    mc = stats.maj_at_k(classes, correct, 4)
    assert mc != pytest.approx(exact, abs=1e-12) and mc == pytest.approx(exact, abs=0.015)


def test_maj_at_k_exact_in_blocks(monkeypatch):
    rng = random.Random(3)
    classes, correct = random_case(rng)
    while len(classes) < 6:
        classes, correct = random_case(rng)
    want = stats.maj_at_k(classes, correct, 3)
    monkeypatch.setattr(stats, "_BLOCK", 5)
    assert stats.maj_at_k(classes, correct, 3) == pytest.approx(want, abs=1e-12)


def test_maj_at_k_from_verifier_answers():
    # The numeric verifier's extracted answers, grouped by verify.equivalent.
    answers = ["18", "$18", "17", None, "18.0", "17"]
    correct = [True, True, False, False, True, False]
    classes = stats.answer_classes(answers, functools.partial(equivalent, verifier="numeric"))
    assert classes == [0, 0, 1, None, 0, 1]
    assert stats.maj_at_k(classes, correct, 6) == 1.0
    assert stats.maj_at_k(classes, correct, 1) == pytest.approx(0.5)
    assert stats.maj_at_k(classes, correct, 2) == pytest.approx(float(brute_maj_at_k(classes, correct, 2)))
