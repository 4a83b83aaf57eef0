"""rlhf_eval.objectives against slow, obviously-correct pure-Python references and hand values."""
from __future__ import annotations

import math
import statistics
from fractions import Fraction

import numpy as np
import pytest

from rlhf_eval import objectives as obj
from rlhf_eval.types import VERDICTS

# --------------------------------------------------------------------------- references
# Deliberately naive: loops, math.comb, statistics, math.log1p/exp. No numpy arithmetic.


def ref_pass_at_k(n, c, k):
    return float(1 - Fraction(math.comb(n - c, k), math.comb(n, k)))


def ref_pairs_all(correct):
    chosen, rejected = [], []
    for win in range(len(correct)):
        for lose in range(len(correct)):
            if correct[win] and not correct[lose]:
                chosen.append(win)
                rejected.append(lose)
    return chosen, rejected


def ref_pairs_best_worst(correct, rewards):
    best = worst = None
    for i in range(len(correct)):
        if correct[i] and (best is None or rewards[i] > rewards[best]):
            best = i
        if not correct[i] and (worst is None or rewards[i] < rewards[worst]):
            worst = i
    if best is None or worst is None:
        return [], []
    return [best], [worst]


def ref_logsigmoid(x):
    # log σ(x), split by sign so exp never overflows
    if x >= 0:
        return -math.log1p(math.exp(-x))
    return x - math.log1p(math.exp(x))


def ref_dpo_loss(margins, loss_type="sigmoid", ls=0.0, beta=None):
    total = 0.0
    for m in margins:
        if loss_type == "sigmoid":
            total += -ref_logsigmoid(m) * (1 - ls) - ref_logsigmoid(-m) * ls
        elif loss_type == "ipo":
            total += (m / beta - 1 / (2 * beta)) ** 2
        else:
            total += max(0.0, 1 - m)
    return total / len(margins)


def ref_advantages(group, scale="group", eps=1e-4):
    mu = statistics.fmean(group)
    if len(group) == 1:
        return [0.0]
    sd = statistics.stdev(group)
    if scale == "none":
        return [r - mu for r in group]
    return [(r - mu) / (sd + eps) for r in group]


def rand_group(rng, k, kind):
    if kind == "binary":
        return [float(x) for x in rng.integers(0, 2, size=k)]
    if kind == "levels":  # a reward table: correct 1, partial 0.5, else 0 or -1
        return [float(x) for x in rng.choice([-1.0, 0.0, 0.5, 1.0], size=k)]
    return [float(x) for x in rng.normal(size=k)]


# --------------------------------------------------------------------------- pass@k


def test_pass_at_k_hand_values():
    # n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10 = 0.7
    assert obj.pass_at_k(5, 2, 2) == pytest.approx(0.7, abs=1e-15)
    # k=1 is plain accuracy: 3/8 = 0.375
    assert obj.pass_at_k(8, 3, 1) == pytest.approx(0.375, abs=1e-15)
    # n=c: everything correct -> 1; c=0 -> 0; k=n with c>=1 -> 1 (the only subset is all n)
    assert obj.pass_at_k(4, 4, 2) == 1.0
    assert obj.pass_at_k(4, 0, 3) == 0.0
    assert obj.pass_at_k(6, 1, 6) == 1.0
    assert obj.pass_at_k(6, 0, 6) == 0.0
    assert isinstance(obj.pass_at_k(5, 2, 2), float)


def test_pass_at_1_is_the_accuracy_to_the_last_bit():
    """pass@1 is c/n, the accuracy the report shows beside it; the product form gave 0.2499… for 0.25."""
    for n in range(1, 60):
        for c in range(n + 1):
            assert obj.pass_at_k(n, c, 1) == c / n == obj.accuracy(np.arange(n) < c)
            assert obj.pass_curves(n, c)[0][0] == c / n == obj.pass_hat_k(n, c, 1)


def test_pass_curves_are_the_fractions_of_k_subsets_with_one_and_with_all_correct():
    """pass@k and pass^k against every size-k subset of n traces (itertools, no formula): the
    fraction of subsets holding at least one correct trace, and holding only correct ones."""
    import itertools

    for n in range(1, 9):
        for c in range(n + 1):
            correct = [True] * c + [False] * (n - c)
            at, hat = obj.pass_curves(n, c)
            assert len(at) == len(hat) == n
            for k in range(1, n + 1):
                subsets = list(itertools.combinations(correct, k))
                assert at[k - 1] == pytest.approx(sum(any(s) for s in subsets) / len(subsets), abs=1e-12)
                assert hat[k - 1] == pytest.approx(sum(all(s) for s in subsets) / len(subsets), abs=1e-12)
                assert hat[k - 1] == obj.pass_hat_k(n, c, k)
            assert at[0] == pytest.approx(hat[0]) == pytest.approx(c / n)  # pass@1 = pass^1 = accuracy
    assert obj.pass_hat_k(8, 8, 8) == 1.0 and obj.pass_hat_k(8, 7, 8) == 0.0
    with pytest.raises(ValueError, match="exceeds the number of samples"):
        obj.pass_hat_k(4, 2, 5)
    with pytest.raises(TypeError):
        obj.pass_hat_k(4, True, 1)


def test_unique_traces_counts_distinct_answer_texts():
    assert obj.unique_traces(["A: 4", "A: 4", "A: 5", "a: 4"]) == 3
    assert obj.unique_traces([]) == 0
    with pytest.raises(TypeError):
        obj.unique_traces("A: 4")


def test_pass_at_k_matches_comb_random():
    rng = np.random.default_rng(0)
    for _ in range(400):
        n = int(rng.integers(1, 120))
        c = int(rng.integers(0, n + 1))
        k = int(rng.integers(1, n + 1))
        assert obj.pass_at_k(n, c, k) == pytest.approx(ref_pass_at_k(n, c, k), rel=1e-9, abs=1e-12)
    # exhaustive small grid, every edge (c=0, c=n, k=1, k=n) included
    for n in range(1, 13):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert obj.pass_at_k(n, c, k) == pytest.approx(ref_pass_at_k(n, c, k), abs=1e-12)
    # large n: C(n, k) would overflow a float, the product form does not
    assert obj.pass_at_k(2000, 7, 100) == pytest.approx(ref_pass_at_k(2000, 7, 100), rel=1e-9)
    assert obj.pass_at_k(np.int64(10), np.int64(3), np.int64(2)) == pytest.approx(ref_pass_at_k(10, 3, 2))


@pytest.mark.parametrize("n,c,k", [(3, 1, 4), (0, 0, 1), (5, 2, 0), (5, 6, 1), (5, -1, 1), (-1, 0, 1)])
def test_pass_at_k_rejects_bad_arguments(n, c, k):
    with pytest.raises(ValueError):
        obj.pass_at_k(n, c, k)


def test_pass_at_k_rejects_non_integers():
    with pytest.raises(TypeError):
        obj.pass_at_k(5.0, 2, 1)
    with pytest.raises(TypeError):
        obj.pass_at_k(5, True, 1)


# --------------------------------------------------------------------------- verdicts / accuracy


def test_verdict_counts_all_keys_and_zeros():
    counts = obj.verdict_counts(["correct", "blocked", "correct", "truncated"])
    assert list(counts) == list(VERDICTS)
    assert counts == {
        "correct": 2, "incorrect": 0, "unparsable": 0, "blocked": 1, "truncated": 1, "error": 0,
    }
    assert obj.verdict_counts([]) == {v: 0 for v in VERDICTS}
    assert all(type(v) is int for v in counts.values())


def test_verdict_counts_random_against_loop():
    rng = np.random.default_rng(1)
    for _ in range(100):
        statuses = [str(s) for s in rng.choice(VERDICTS, size=int(rng.integers(0, 20)))]
        expected = {v: 0 for v in VERDICTS}
        for s in statuses:
            expected[s] += 1
        assert obj.verdict_counts(statuses) == expected
        assert obj.verdict_counts(tuple(statuses)) == expected


def test_verdict_counts_rejects_unknown():
    with pytest.raises(ValueError, match="'wrong'"):
        obj.verdict_counts(["correct", "wrong"])
    with pytest.raises(TypeError):
        obj.verdict_counts("correct")


def test_accuracy():
    # 3 of 4 correct -> 0.75
    assert obj.accuracy([True, True, False, True]) == 0.75
    assert obj.accuracy(np.array([0, 1, 0, 0])) == 0.25
    assert obj.accuracy([False]) == 0.0
    assert math.isnan(obj.accuracy([]))
    assert isinstance(obj.accuracy(np.array([True])), float)
    rng = np.random.default_rng(2)
    for _ in range(100):
        c = [bool(x) for x in rng.integers(0, 2, size=int(rng.integers(1, 30)))]
        assert obj.accuracy(c) == pytest.approx(sum(c) / len(c), abs=1e-15)
    with pytest.raises(ValueError):
        obj.accuracy([0, 2, 1])
    with pytest.raises(ValueError):
        obj.accuracy([[True]])


# --------------------------------------------------------------------------- pairs


def test_preference_pairs_hand_values():
    correct = [True, False, True, False, False]
    rewards = [1.0, 0.0, 1.0, -1.0, 0.0]
    ch, rj = obj.preference_pairs(correct, rewards, "all")
    # w in {0, 2}, l in {1, 3, 4}; ordered by w then l
    assert ch.tolist() == [0, 0, 0, 2, 2, 2]
    assert rj.tolist() == [1, 3, 4, 1, 3, 4]
    assert ch.dtype.kind == "i" and rj.dtype.kind == "i"
    ch, rj = obj.preference_pairs(correct, rewards, "best_worst")
    # best correct: rewards 1.0 at 0 and 2 -> tie -> 0; worst non-correct: -1.0 at 3
    assert ch.tolist() == [0] and rj.tolist() == [3]
    # default pairing is "all"
    assert obj.preference_pairs(correct, rewards)[0].tolist() == [0, 0, 0, 2, 2, 2]


@pytest.mark.parametrize("pairing", ["all", "best_worst"])
@pytest.mark.parametrize("correct", [[], [True], [False], [True, True, True], [False, False]])
def test_preference_pairs_none_possible(pairing, correct):
    ch, rj = obj.preference_pairs(correct, [0.0] * len(correct), pairing)
    assert ch.shape == (0,) and rj.shape == (0,)
    assert ch.dtype.kind == "i" and rj.dtype.kind == "i"


def test_preference_pairs_random_against_loops():
    rng = np.random.default_rng(3)
    for _ in range(400):
        k = int(rng.integers(1, 17))
        correct = [bool(x) for x in rng.random(k) < rng.random()]
        # few distinct reward values so ties happen often
        rewards = [float(x) for x in rng.integers(-2, 3, size=k)]
        ch, rj = obj.preference_pairs(np.array(correct), np.array(rewards), "all")
        assert (ch.tolist(), rj.tolist()) == ref_pairs_all(correct)
        ch, rj = obj.preference_pairs(correct, rewards, "best_worst")
        assert (ch.tolist(), rj.tolist()) == ref_pairs_best_worst(correct, rewards)


def test_preference_pairs_rejects_bad_input():
    with pytest.raises(ValueError, match="pairing"):
        obj.preference_pairs([True, False], [1.0, 0.0], "pairwise")
    with pytest.raises(ValueError, match="same shape"):
        obj.preference_pairs([True, False], [1.0], "all")
    with pytest.raises(ValueError, match="nan"):
        obj.preference_pairs([True, False], [float("nan"), 0.0], "best_worst")


# --------------------------------------------------------------------------- DPO rewards, margins


def test_dpo_rewards_and_margin_hand_values():
    # chosen logp -10, rejected -12, no reference, beta 0.1:
    # rewards 0.1*-10 = -1.0 and 0.1*-12 = -1.2; margin -1.0 - (-1.2) = 0.2
    rho = obj.dpo_implicit_rewards([-10.0, -12.0], None, 0.1)
    assert rho.tolist() == pytest.approx([-1.0, -1.2])
    m = obj.dpo_margins(rho[[0]], rho[[1]])
    assert m.tolist() == pytest.approx([0.2])
    # -log σ(0.2) = log(1 + e^-0.2) = log(1.8187307531) = 0.5981388693815918
    assert obj.dpo_loss(m) == pytest.approx(0.5981388693815918, rel=1e-12)
    # with a reference: beta 0.5 * (-10 - -11) = 0.5 ; 0.5 * (-12 - -11) = -0.5 ; margin 1.0
    rho = obj.dpo_implicit_rewards([-10.0, -12.0], [-11.0, -11.0], 0.5)
    assert rho.tolist() == pytest.approx([0.5, -0.5])


def test_dpo_pipeline_matches_trl_formula_random():
    """rewards -> margins -> loss equals TRL's loss on logits (pi_c-pi_r)-(ref_c-ref_r)."""
    rng = np.random.default_rng(4)
    for _ in range(200):
        p = int(rng.integers(1, 12))
        beta = float(rng.uniform(0.01, 2.0))
        pc, pr = rng.normal(-50, 20, p), rng.normal(-50, 20, p)
        rc, rr = rng.normal(-50, 20, p), rng.normal(-50, 20, p)
        use_ref = bool(rng.integers(0, 2))
        ch = obj.dpo_implicit_rewards(pc, rc if use_ref else None, beta)
        rj = obj.dpo_implicit_rewards(pr, rr if use_ref else None, beta)
        m = obj.dpo_margins(ch, rj)
        ref_m = []
        for i in range(p):
            logits = (pc[i] - pr[i]) - ((rc[i] - rr[i]) if use_ref else 0.0)
            ref_m.append(beta * logits)
        assert m.tolist() == pytest.approx(ref_m, rel=1e-9, abs=1e-9)
        # TRL rewards/accuracies: chosen_rewards > rejected_rewards, strict
        acc = sum(1 for i in range(p) if ch[i] > rj[i]) / p
        assert obj.reward_accuracy(m) == pytest.approx(acc)
        ls = float(rng.choice([0.0, 0.1, 0.3]))
        assert obj.dpo_loss(m, label_smoothing=ls) == pytest.approx(ref_dpo_loss(ref_m, ls=ls), rel=1e-9)


def test_dpo_rewards_accepts_lists_and_checks_shapes():
    assert obj.dpo_implicit_rewards([-1.0], [-2.0], 1.0).tolist() == [1.0]
    assert obj.dpo_implicit_rewards([], None, 0.1).shape == (0,)
    with pytest.raises(ValueError):
        obj.dpo_implicit_rewards([-1.0, -2.0], [-1.0], 0.1)
    with pytest.raises(ValueError):
        obj.dpo_implicit_rewards([-1.0], None, 0.0)
    with pytest.raises(ValueError):
        obj.dpo_margins([1.0, 2.0], [1.0])


def test_sequence_logps():
    # -10 over 5 tokens -> -2.0 ; -12 over 4 tokens -> -3.0
    assert obj.sequence_logps([-10.0, -12.0], [5, 4], True).tolist() == [-2.0, -3.0]
    assert obj.sequence_logps([-10.0, -12.0], [5, 4], False).tolist() == [-10.0, -12.0]
    assert obj.sequence_logps([-10.0], None, False).tolist() == [-10.0]
    rng = np.random.default_rng(5)
    for _ in range(100):
        k = int(rng.integers(1, 10))
        lp = [float(x) for x in rng.normal(-100, 50, k)]
        n = [int(x) for x in rng.integers(1, 500, k)]
        got = obj.sequence_logps(lp, n, True)
        assert got.tolist() == pytest.approx([lp[i] / n[i] for i in range(k)], rel=1e-15)
    with pytest.raises(ValueError, match="positive"):
        obj.sequence_logps([-1.0, -2.0], [3, 0], True)
    with pytest.raises(ValueError):
        obj.sequence_logps([-1.0], None, True)
    with pytest.raises(ValueError):
        obj.sequence_logps([-1.0, -2.0], [3], True)


def test_reward_accuracy_strict_and_empty():
    # margins 0.2, 0.0, -0.1, 3.0: > 0 strictly for 2 of 4 -> 0.5 (a tie is not a win)
    assert obj.reward_accuracy([0.2, 0.0, -0.1, 3.0]) == 0.5
    assert obj.reward_accuracy([0.0]) == 0.0
    assert math.isnan(obj.reward_accuracy([]))
    assert isinstance(obj.reward_accuracy(np.array([1.0])), float)


# --------------------------------------------------------------------------- losses


def test_dpo_loss_variants_hand_values():
    m = [0.2]
    # sigmoid with label smoothing 0.1:
    # 0.9 * log(1+e^-0.2) + 0.1 * log(1+e^0.2) = 0.9*0.5981388694 + 0.1*0.7981388694 = 0.6181388694
    assert obj.dpo_loss(m, "sigmoid", 0.1) == pytest.approx(0.6181388693815918, rel=1e-12)
    # ipo, beta 0.1: logits = 0.2/0.1 = 2 ; 1/(2*0.1) = 5 ; (2 - 5)^2 = 9
    assert obj.dpo_loss(m, "ipo", beta=0.1) == pytest.approx(9.0, rel=1e-12)
    # hinge: relu(1 - 0.2) = 0.8 ; and relu(1 - 1.5) = 0 -> mean over [0.2, 1.5] = 0.4
    assert obj.dpo_loss(m, "hinge") == pytest.approx(0.8)
    assert obj.dpo_loss([0.2, 1.5], "hinge") == pytest.approx(0.4)
    # margin 0 -> log 2 for any smoothing
    assert obj.dpo_loss([0.0], label_smoothing=0.3) == pytest.approx(math.log(2))
    assert isinstance(obj.dpo_loss(np.array(m)), float)


def test_dpo_loss_is_stable_for_huge_logps():
    # chosen logp -5000 vs rejected -10, beta 1, no ref: margin -4990, loss = 4990 (not inf)
    rho = obj.dpo_implicit_rewards([-5000.0, -10.0], None, 1.0)
    m = obj.dpo_margins(rho[[0]], rho[[1]])
    assert obj.dpo_loss(m) == pytest.approx(4990.0, rel=1e-12)
    # the other way round: margin +4990 -> loss e^-4990 underflows to 0, no nan
    assert obj.dpo_loss(-m) == 0.0
    # label smoothing 0.5 is symmetric: 0.5*4990 + 0.5*0 = 2495
    assert obj.dpo_loss(m, label_smoothing=0.5) == pytest.approx(2495.0, rel=1e-12)
    assert obj.simpo_loss([-5000.0], gamma=0.5) == pytest.approx(5000.5, rel=1e-12)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        obj.dpo_loss([-5000.0, 5000.0, -745.0, 710.0])
        obj.simpo_loss([-5000.0, 5000.0], gamma=1.0)


def test_dpo_loss_random_against_loop():
    rng = np.random.default_rng(6)
    for _ in range(300):
        p = int(rng.integers(1, 15))
        scale = float(rng.choice([0.1, 1.0, 30.0, 3000.0]))
        m = [float(x) for x in rng.normal(0, scale, p)]
        beta = float(rng.uniform(0.01, 1.0))
        ls = float(rng.choice([0.0, 0.05, 0.25, 0.5]))
        assert obj.dpo_loss(m, "sigmoid", ls) == pytest.approx(ref_dpo_loss(m, "sigmoid", ls), rel=1e-9, abs=1e-300)
        assert obj.dpo_loss(m, "ipo", beta=beta) == pytest.approx(ref_dpo_loss(m, "ipo", beta=beta), rel=1e-9)
        assert obj.dpo_loss(m, "hinge") == pytest.approx(ref_dpo_loss(m, "hinge"), rel=1e-9, abs=1e-12)


def test_dpo_loss_errors_and_empty():
    assert math.isnan(obj.dpo_loss([]))
    assert math.isnan(obj.dpo_loss([], "hinge"))
    with pytest.raises(ValueError, match="beta"):
        obj.dpo_loss([0.2], "ipo")
    with pytest.raises(ValueError, match="loss_type"):
        obj.dpo_loss([0.2], "kto")
    with pytest.raises(ValueError, match="label_smoothing"):
        obj.dpo_loss([0.2], "hinge", label_smoothing=0.1)
    with pytest.raises(ValueError, match="label_smoothing"):
        obj.dpo_loss([0.2], label_smoothing=0.7)


def test_simpo_loss_hand_and_random():
    # logps -10 over 5 tokens and -12 over 4: averages -2 and -3; beta 2 -> rewards -4, -6;
    # margin 2; gamma 0.5 -> -log σ(2 - 0.5) = log(1 + e^-1.5) = 0.2014132779827524
    avg = obj.sequence_logps([-10.0, -12.0], [5, 4], True)
    rho = obj.dpo_implicit_rewards(avg, None, 2.0)
    m = obj.dpo_margins(rho[[0]], rho[[1]])
    assert m.tolist() == pytest.approx([2.0])
    assert obj.simpo_loss(m, gamma=0.5) == pytest.approx(0.2014132779827524, rel=1e-12)
    # gamma 0 reduces to the sigmoid DPO loss on the same margins
    rng = np.random.default_rng(7)
    for _ in range(200):
        p = int(rng.integers(1, 10))
        m = [float(x) for x in rng.normal(0, 5, p)]
        g = float(rng.uniform(0, 3))
        ls = float(rng.choice([0.0, 0.2]))
        expected = sum(-ref_logsigmoid(x - g) * (1 - ls) - ref_logsigmoid(g - x) * ls for x in m) / p
        assert obj.simpo_loss(m, g, ls) == pytest.approx(expected, rel=1e-9)
        assert obj.simpo_loss(m, 0.0) == pytest.approx(obj.dpo_loss(m), rel=1e-12)
    assert math.isnan(obj.simpo_loss([], 0.5))


# --------------------------------------------------------------------------- GRPO


def test_grpo_advantages_hand_values():
    # rewards [1,0,0,1]: mean 0.5, sample std = sqrt(4*0.25/3) = sqrt(1/3) = 0.5773502692
    # A = ±0.5 / (0.5773502692 + 1e-4) = ±0.8658754297607016
    a = obj.grpo_advantages([1, 0, 0, 1])
    A = 0.8658754297607016
    assert a.tolist() == pytest.approx([A, -A, -A, A], rel=1e-12)
    # Dr. GRPO: r - mean = [0.5, -0.5, -0.5, 0.5]
    assert obj.grpo_advantages([1, 0, 0, 1], "none").tolist() == [0.5, -0.5, -0.5, 0.5]
    # [3,1,2]: mean 2, std sqrt((1+1+0)/2) = 1 -> ±1/(1+1e-4) = ±0.9999000099990001
    assert obj.grpo_advantages([3.0, 1.0, 2.0]).tolist() == pytest.approx(
        [0.9999000099990001, -0.9999000099990001, 0.0], rel=1e-12, abs=1e-15)
    # all equal -> zero advantages; k == 1 -> zero, never nan
    assert obj.grpo_advantages([1, 1, 1]).tolist() == [0.0, 0.0, 0.0]
    assert obj.grpo_advantages([0.7]).tolist() == [0.0]
    assert obj.grpo_advantages([0.7], "none").tolist() == [0.0]
    # legacy TRL booleans
    assert obj.grpo_advantages([1, 0], True).tolist() == obj.grpo_advantages([1, 0], "group").tolist()
    assert obj.grpo_advantages([1, 0], False).tolist() == [0.5, -0.5]


def test_grpo_advantages_2d_groups_and_batch():
    # two groups of 4: the second has no spread -> its row is all zero
    r = np.array([[1, 0, 0, 1], [1, 1, 1, 1]], dtype=float)
    a = obj.grpo_advantages(r)
    assert a.shape == (2, 4)
    assert a[0].tolist() == pytest.approx(obj.grpo_advantages(r[0]).tolist())
    assert a[1].tolist() == [0.0] * 4
    # batch: group-wise mean, std over all 8 rewards: mean 0.75, ss = 2*0.5625 + 6*0.0625 = 1.5,
    # var = 1.5/7, std = 0.4629100498862757 ; A[0,0] = 0.5 / (0.46291 + 1e-4)
    b = obj.grpo_advantages(r, "batch")
    assert b[0, 0] == pytest.approx(0.5 / (math.sqrt(1.5 / 7) + 1e-4), rel=1e-12)
    assert b[1].tolist() == [0.0] * 4
    assert obj.grpo_advantages(np.ones((3, 1))).tolist() == [[0.0]] * 3


def test_grpo_advantages_random_against_statistics():
    rng = np.random.default_rng(8)
    for _ in range(300):
        k = int(rng.integers(1, 17))
        kind = str(rng.choice(["binary", "levels", "normal"]))
        g = rand_group(rng, k, kind)
        eps = float(rng.choice([1e-4, 1e-6, 0.0])) if kind == "normal" else 1e-4
        for scale in ("group", "none"):
            got = obj.grpo_advantages(g, scale, eps)
            assert not np.isnan(got).any()
            assert got.tolist() == pytest.approx(ref_advantages(g, scale, eps), rel=1e-9, abs=1e-9)
        # rows of a (G, k) call equal separate (k,) calls
        G = int(rng.integers(1, 5))
        rows = [rand_group(rng, k, kind) for _ in range(G)]
        got = obj.grpo_advantages(rows)
        for i in range(G):
            assert got[i].tolist() == pytest.approx(ref_advantages(rows[i]), rel=1e-9, abs=1e-9)


def test_grpo_advantages_errors():
    with pytest.raises(ValueError, match="scale_rewards"):
        obj.grpo_advantages([1, 0], "std")
    with pytest.raises(ValueError):
        obj.grpo_advantages(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="finite"):
        obj.grpo_advantages([1.0, float("nan")])
    assert obj.grpo_advantages([]).shape == (0,)


def test_reward_spread():
    # [1,0,0,0]: mean 0.25, ss = 0.5625 + 3*0.0625 = 0.75, var = 0.75/3 = 0.25, std 0.5
    assert obj.reward_spread([1, 0, 0, 0]) == pytest.approx(0.5, rel=1e-15)
    # [1,0,0,1]: sqrt(1/3) = 0.5773502691896257
    assert obj.reward_spread([1, 0, 0, 1]) == pytest.approx(0.5773502691896257, rel=1e-15)
    assert obj.reward_spread([0.3]) == 0.0
    assert obj.reward_spread([1, 1, 1]) == 0.0
    assert isinstance(obj.reward_spread(np.array([1.0, 0.0])), float)
    with pytest.raises(ValueError):
        obj.reward_spread([])
    rng = np.random.default_rng(9)
    for _ in range(300):
        k = int(rng.integers(2, 20))
        g = rand_group(rng, k, str(rng.choice(["binary", "levels", "normal"])))
        assert obj.reward_spread(g) == pytest.approx(statistics.stdev(g), rel=1e-9, abs=1e-12)


def test_nonzero_advantages_and_frac_zero_spread():
    assert obj.nonzero_advantages([0.0, 1e-13, -1e-13, 0.5, -2.0]) == 2
    assert obj.nonzero_advantages(obj.grpo_advantages([1, 0, 0, 1])) == 4
    assert obj.nonzero_advantages(obj.grpo_advantages([0.1, 0.1, 0.1])) == 0
    assert obj.nonzero_advantages(np.zeros((2, 3))) == 0
    assert type(obj.nonzero_advantages([1.0])) is int
    # spreads of 4 questions, two zero (one by rounding) -> 2/4 = 0.5
    assert obj.frac_zero_spread([0.577, 0.0, 1e-17, 0.5]) == 0.5
    assert math.isnan(obj.frac_zero_spread([]))
    rng = np.random.default_rng(10)
    for _ in range(100):
        q = int(rng.integers(1, 12))
        groups = [rand_group(rng, int(rng.integers(1, 6)), "binary") for _ in range(q)]
        spreads = [obj.reward_spread(g) for g in groups]
        expected = sum(1 for g in groups if len(set(g)) == 1) / q  # no spread: one reward value
        assert obj.frac_zero_spread(spreads) == pytest.approx(expected)
        for g in groups:
            n_ref = sum(1 for x in ref_advantages(g) if abs(x) > 1e-12)
            assert obj.nonzero_advantages(obj.grpo_advantages(g)) == n_ref


def test_trl_published_formulas_with_a_reference_model():
    """One pair with a reference model, every loss type, values derived by hand from TRL's formulas.

    TRL DPOTrainer.dpo_loss (trl/trainer/dpo_trainer.py):
        logits = (policy_chosen_logps - policy_rejected_logps) - (ref_chosen_logps - ref_rejected_logps)
        sigmoid: -logsigmoid(beta*logits)*(1-label_smoothing) - logsigmoid(-beta*logits)*label_smoothing
        ipo:     (logits - 1/(2*beta))**2
        hinge:   relu(1 - beta*logits)
        rewards/chosen = beta*(policy_chosen_logps - ref_chosen_logps), likewise rejected;
        rewards/margins = chosen - rejected = beta*logits
    Pair: policy -10 (chosen) / -12 (rejected); reference -11 / -11.5; beta 0.1.
        logits = (-10 - -12) - (-11 - -11.5) = 2 - 0.5 = 1.5 ; margin = 0.1*1.5 = 0.15
        rewards/chosen = 0.1*(-10 - -11) = 0.1 ; rewards/rejected = 0.1*(-12 - -11.5) = -0.05
        sigmoid, ls 0:   log(1 + e^-0.15)                                   = 0.6209570477895321
        sigmoid, ls 0.2: 0.8*log(1 + e^-0.15) + 0.2*log(1 + e^0.15)
                         = 0.8*0.62095704779 + 0.2*0.77095704779          = 0.6509570477895321
        ipo:   (1.5 - 1/(2*0.1))^2 = (1.5 - 5)^2                            = 12.25
        hinge: relu(1 - 0.15)                                               = 0.85
    """
    beta = 0.1
    rewards = obj.dpo_implicit_rewards([-10.0, -12.0], [-11.0, -11.5], beta)
    assert rewards.tolist() == pytest.approx([0.1, -0.05], rel=1e-12)
    margins = obj.dpo_margins(rewards[[0]], rewards[[1]])
    assert margins.tolist() == pytest.approx([0.15], rel=1e-12)
    assert obj.dpo_loss(margins, "sigmoid") == pytest.approx(0.6209570477895321, rel=1e-12)
    assert obj.dpo_loss(margins, "sigmoid", label_smoothing=0.2) == pytest.approx(0.6509570477895321, rel=1e-12)
    assert obj.dpo_loss(margins, "ipo", beta=beta) == pytest.approx(12.25, rel=1e-12)
    assert obj.dpo_loss(margins, "hinge") == pytest.approx(0.85, rel=1e-12)
    assert obj.reward_accuracy(margins) == 1.0
