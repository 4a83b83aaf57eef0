"""Pure numpy implementations of the metrics in DESIGN.md, "Metrics — exact definitions".

Names and semantics follow TRL:

* ``DPOTrainer``: ``rewards/chosen = beta * (policy_chosen_logps - ref_chosen_logps)``,
  ``rewards/margins = chosen_rewards - rejected_rewards``,
  ``rewards/accuracies = mean(chosen_rewards > rejected_rewards)`` (strict), and the sigmoid
  loss ``-logsigmoid(beta*logits)*(1-ls) - logsigmoid(-beta*logits)*ls`` with
  ``logits = (pi_c - pi_r) - (ref_c - ref_r)``.  Since ``beta * logits`` is exactly the reward
  margin, every loss here takes the margins ``m = beta * logits`` as its input.
* ``CPOTrainer`` with ``loss_type="simpo"``: rewards use length-averaged logps and the loss is
  ``-logsigmoid(beta*(avg_c - avg_r) - gamma)``.
* ``GRPOTrainer``: ``A = (r - mean_group) / (std_group + 1e-4)`` with the unbiased (ddof=1)
  std, ``scale_rewards="none"`` giving Dr. GRPO's ``r - mean_group``; ``reward_std`` and
  ``frac_reward_zero_std``.

Everything is side-effect free; inputs may be plain lists; scalar results are Python floats.
"""
from __future__ import annotations

from collections import Counter
from typing import Literal, Sequence

import numpy as np

from rlhf_eval.types import VERDICTS

__all__ = [
    "ZERO_TOL",
    "pass_at_k",
    "pass_hat_k",
    "pass_curves",
    "unique_traces",
    "verdict_counts",
    "accuracy",
    "preference_pairs",
    "dpo_implicit_rewards",
    "sequence_logps",
    "dpo_margins",
    "reward_accuracy",
    "dpo_loss",
    "simpo_loss",
    "grpo_advantages",
    "reward_spread",
    "nonzero_advantages",
    "frac_zero_spread",
]

#: Below this magnitude an advantage or a reward spread counts as zero.
ZERO_TOL = 1e-12

DPO_LOSS_TYPES = ("sigmoid", "ipo", "hinge")
PAIRINGS = ("all", "best_worst")
SCALE_REWARDS = ("group", "batch", "none")


# --------------------------------------------------------------------------- helpers


def _vec(x, name: str, dtype=np.float64) -> np.ndarray:
    """Coerce ``x`` to a 1-D array of ``dtype``; a clear ValueError otherwise."""
    arr = np.asarray(x, dtype=dtype)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def _bool_vec(x, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and arr.dtype != np.bool_:
        if not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name} must be booleans (or 0/1), got {arr.dtype} values")
    return arr.astype(bool)


def _same_shape(a: np.ndarray, b: np.ndarray, na: str, nb: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{na} and {nb} must have the same shape, got {a.shape} and {b.shape}")


def _logsigmoid(x: np.ndarray) -> np.ndarray:
    """log σ(x) = -log(1 + e^{-x}), stable for any finite x (e.g. ±5000)."""
    return -np.logaddexp(0.0, -x)


# --------------------------------------------------------------------------- accuracy


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k, 1 - C(n-c, k)/C(n, k) (Chen et al. 2021). Scalars in, float out.

    ``n`` traces sampled, ``c`` of them correct, ``k`` the budget (1 <= k <= n).  Computed in
    the stable product form 1 - prod_{i=n-c+1}^{n} (1 - k/i), which never forms a binomial.
    """
    n, c, k = _pass_args("pass_at_k", n, c, k)
    if n - c < k:  # every k-subset contains a correct trace
        return 1.0
    if k == 1:  # c/n itself: the product's rounding would make pass@1 differ from accuracy (0.25 → 0.2499…)
        return c / n
    i = np.arange(n - c + 1, n + 1, dtype=np.float64)
    return float(1.0 - np.prod(1.0 - k / i))


def pass_hat_k(n: int, c: int, k: int) -> float:
    """Unbiased pass^k, C(c, k)/C(n, k): the chance that k traces drawn without replacement from
    the n sampled are all correct (Yao et al. 2024, τ-bench, eq. 1). Scalars in, float out.

    ``n`` traces sampled, ``c`` of them correct, ``k`` the budget (1 <= k <= n). pass^1 equals
    pass@1 (c/n); pass^n is 1 only when every trace is correct. Computed as the product
    prod_{i=0}^{k-1} (c - i)/(n - i), which never forms a binomial.
    """
    n, c, k = _pass_args("pass_hat_k", n, c, k)
    if c < k:
        return 0.0
    i = np.arange(k, dtype=np.float64)
    return float(np.prod((c - i) / (n - i)))


def _pass_args(fn: str, n: int, c: int, k: int) -> tuple[int, int, int]:
    for name, v in (("n", n), ("c", c), ("k", k)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{fn}: {name} must be an int, got {type(v).__name__}")
    n, c, k = int(n), int(c), int(k)
    if n < 0 or not 0 <= c <= n:
        raise ValueError(f"{fn}: need 0 <= c <= n, got n={n}, c={c}")
    if k < 1:
        raise ValueError(f"{fn}: k must be >= 1, got k={k}")
    if k > n:
        raise ValueError(f"{fn}: k={k} exceeds the number of samples n={n}")
    return n, c, k


def pass_curves(n: int, c: int) -> tuple[list[float], list[float]]:
    """pass@k and pass^k for every budget k = 1..n: two lists of n floats (index k - 1).

    Args:
        n: traces sampled for the question. Shape: scalar int, >= 1.
        c: how many of them are correct. Shape: scalar int, 0 <= c <= n.
    """
    return [pass_at_k(n, c, k) for k in range(1, n + 1)], [pass_hat_k(n, c, k) for k in range(1, n + 1)]


def unique_traces(texts: Sequence[str]) -> int:
    """How many distinct answer texts (exactly equal strings) there are among a question's traces.

    Args:
        texts: each trace's answer text. Shape: (k,) strings.

    Identical answers each make their own preference pairs with every answer of the other verdict,
    so k traces with few distinct answers inflate the pair count with repeats."""
    if isinstance(texts, str):
        raise TypeError("unique_traces: texts must be a sequence of strings, not one string")
    return len(set(texts))


def verdict_counts(statuses: Sequence[str]) -> dict[str, int]:
    """Count of each verdict in ``statuses`` (length k), for all of VERDICTS, zeros included.

    Keys come in VERDICTS order. An unknown status raises ValueError.
    """
    if isinstance(statuses, str):
        raise TypeError("verdict_counts: statuses must be a sequence of strings, not one string")
    counts = Counter(statuses)
    unknown = sorted(set(counts) - set(VERDICTS), key=str)
    if unknown:
        raise ValueError(f"verdict_counts: unknown status {unknown[0]!r}; expected one of {VERDICTS}")
    return {v: int(counts.get(v, 0)) for v in VERDICTS}


def accuracy(correct) -> float:
    """Fraction of correct traces: bool (k,) -> float; nan when k == 0."""
    arr = _bool_vec(correct, "correct")
    if arr.size == 0:
        return float("nan")
    return float(arr.mean())


# --------------------------------------------------------------------------- pairs / DPO


def preference_pairs(
    correct, rewards, pairing: Literal["all", "best_worst"] = "all"
) -> tuple[np.ndarray, np.ndarray]:
    """Preference pairs within one question: correct bool (k,), rewards (k,) -> two int64 (P,).

    Returns ``(chosen_idx, rejected_idx)``, indices into the k traces.

    * ``"all"``: every (w, l) with w correct and l not correct, ordered by w then l
      (P = c * (k - c)); ``rewards`` is only shape-checked.
    * ``"best_worst"``: a single pair — chosen = the highest-reward correct trace, rejected =
      the lowest-reward non-correct trace, ties broken by the lowest index.

    With no correct or no non-correct trace there are no pairs: two empty int64 arrays.
    """
    ok = _bool_vec(correct, "correct")
    r = _vec(rewards, "rewards")
    _same_shape(ok, r, "correct", "rewards")
    if pairing not in PAIRINGS:
        raise ValueError(f"preference_pairs: pairing must be one of {PAIRINGS}, got {pairing!r}")
    won = np.flatnonzero(ok).astype(np.int64)
    lost = np.flatnonzero(~ok).astype(np.int64)
    if won.size == 0 or lost.size == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    if pairing == "all":
        chosen, rejected = np.meshgrid(won, lost, indexing="ij")  # rows: won, columns: lost -> won-major
        return chosen.ravel(), rejected.ravel()
    if np.isnan(r).any():
        raise ValueError("preference_pairs: rewards contain nan; best_worst needs comparable rewards")
    # np.argmax/argmin return the first extremum and won, lost are ascending: lowest index wins ties.
    best = won[np.argmax(r[won])]
    worst = lost[np.argmin(r[lost])]
    return np.array([best], dtype=np.int64), np.array([worst], dtype=np.int64)


def dpo_implicit_rewards(policy_logps, ref_logps, beta: float) -> np.ndarray:
    """DPO implicit reward beta * (policy - ref): policy (P,), ref (P,) or None -> (P,).

    ``ref_logps=None`` is the reference-free form (reference term 0), i.e. beta * policy.
    """
    pi = _vec(policy_logps, "policy_logps")
    if ref_logps is None:
        ref = np.zeros_like(pi)
    else:
        ref = _vec(ref_logps, "ref_logps")
        _same_shape(pi, ref, "policy_logps", "ref_logps")
    beta = float(beta)
    if not np.isfinite(beta) or beta <= 0:
        raise ValueError(f"dpo_implicit_rewards: beta must be a positive number, got {beta}")
    return beta * (pi - ref)


def sequence_logps(logps, token_counts, length_normalized: bool) -> np.ndarray:
    """Sequence log-probability per trace: logps (k,), token_counts (k,) -> (k,).

    With ``length_normalized`` the mean per-token logp ℓ/n (SimPO's reward input); otherwise
    ``logps`` unchanged (``token_counts`` may then be None).  Counts must be positive.
    """
    lp = _vec(logps, "logps")
    if not length_normalized:
        if token_counts is not None:
            _same_shape(lp, _vec(token_counts, "token_counts"), "logps", "token_counts")
        return lp.copy()
    if token_counts is None:
        raise ValueError("sequence_logps: length_normalized needs token_counts")
    n = _vec(token_counts, "token_counts")
    _same_shape(lp, n, "logps", "token_counts")
    if (~(n > 0)).any():
        raise ValueError("sequence_logps: token_counts must all be positive to length-normalize")
    return lp / n


def dpo_margins(chosen_rewards, rejected_rewards) -> np.ndarray:
    """TRL ``rewards/margins`` per pair: chosen (P,) - rejected (P,) -> (P,)."""
    c = _vec(chosen_rewards, "chosen_rewards")
    r = _vec(rejected_rewards, "rejected_rewards")
    _same_shape(c, r, "chosen_rewards", "rejected_rewards")
    return c - r


def reward_accuracy(margins) -> float:
    """TRL ``rewards/accuracies``: fraction of pairs with margin > 0 (strict). (P,) -> float, nan if P == 0."""
    m = _vec(margins, "margins")
    if m.size == 0:
        return float("nan")
    return float((m > 0).mean())


def dpo_loss(
    margins,
    loss_type: Literal["sigmoid", "ipo", "hinge"] = "sigmoid",
    label_smoothing: float = 0.0,
    beta: float | None = None,
) -> float:
    """Mean DPO loss over pairs: margins (P,) -> float; nan when P == 0.

    ``margins`` are reward margins ``m = rho_w - rho_l = beta * logits`` where
    ``logits = (pi_w - pi_l) - (ref_w - ref_l)`` — i.e. ``dpo_margins`` of the
    ``dpo_implicit_rewards``, already multiplied by beta. Per pair, as in TRL:

    * ``"sigmoid"``: ``-logsigmoid(m) * (1 - ls) - logsigmoid(-m) * ls`` (cDPO when ls > 0).
    * ``"ipo"``: ``(logits - 1/(2*beta))**2`` on the un-scaled ``logits = m / beta``;
      requires ``beta``.
    * ``"hinge"``: ``relu(1 - m)`` (TRL's ``relu(1 - beta*logits)``).

    ``label_smoothing`` (in [0, 0.5]) applies to ``"sigmoid"`` only.
    """
    m = _vec(margins, "margins")
    if loss_type not in DPO_LOSS_TYPES:
        raise ValueError(f"dpo_loss: loss_type must be one of {DPO_LOSS_TYPES}, got {loss_type!r}")
    ls = float(label_smoothing)
    if not 0.0 <= ls <= 0.5:
        raise ValueError(f"dpo_loss: label_smoothing must be in [0, 0.5], got {ls}")
    if ls and loss_type != "sigmoid":
        raise ValueError(f"dpo_loss: label_smoothing is only defined for the sigmoid loss, not {loss_type!r}")
    ipo_beta = 1.0
    if loss_type == "ipo":
        if beta is None:
            raise ValueError("dpo_loss: the ipo loss needs beta (to recover logits = margins / beta)")
        ipo_beta = float(beta)
        if not np.isfinite(ipo_beta) or ipo_beta <= 0:
            raise ValueError(f"dpo_loss: beta must be a positive number, got {beta}")
    if m.size == 0:
        return float("nan")
    if loss_type == "sigmoid":
        losses = -_logsigmoid(m) * (1.0 - ls) - _logsigmoid(-m) * ls
    elif loss_type == "ipo":
        losses = (m / ipo_beta - 1.0 / (2.0 * ipo_beta)) ** 2
    else:
        losses = np.maximum(0.0, 1.0 - m)
    return float(losses.mean())


def simpo_loss(margins, gamma: float, label_smoothing: float = 0.0) -> float:
    """Mean SimPO loss: margins (P,) -> float; nan when P == 0.

    ``margins = beta * (avg_w - avg_l)`` with length-averaged logps (``sequence_logps`` with
    ``length_normalized=True``, reference-free rewards). Per pair, as TRL's CPO ``simpo``:
    ``-logsigmoid(m - gamma) * (1 - ls) - logsigmoid(-(m - gamma)) * ls``.
    """
    m = _vec(margins, "margins")
    gamma = float(gamma)
    if not np.isfinite(gamma):
        raise ValueError(f"simpo_loss: gamma must be finite, got {gamma}")
    ls = float(label_smoothing)
    if not 0.0 <= ls <= 0.5:
        raise ValueError(f"simpo_loss: label_smoothing must be in [0, 0.5], got {ls}")
    if m.size == 0:
        return float("nan")
    z = m - gamma
    return float((-_logsigmoid(z) * (1.0 - ls) - _logsigmoid(-z) * ls).mean())


# --------------------------------------------------------------------------- GRPO


def grpo_advantages(
    rewards,
    scale_rewards: Literal["group", "batch", "none"] | bool = "group",
    epsilon: float = 1e-4,
) -> np.ndarray:
    """GRPO advantages: rewards (k,) or (G, k) -> same shape (one group per row).

    ``"group"`` (TRL default): ``(r - mean_g) / (std_g + epsilon)``, std with ddof=1.
    ``"none"`` (Dr. GRPO): ``r - mean_g``. ``"batch"``: std over all rewards given.
    TRL's legacy booleans are accepted (True = "group", False = "none").
    A group of one trace has no group signal: its advantages are 0 (never nan).
    """
    if scale_rewards is True:
        scale_rewards = "group"
    elif scale_rewards is False:
        scale_rewards = "none"
    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(f"grpo_advantages: scale_rewards must be one of {SCALE_REWARDS}, got {scale_rewards!r}")
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim not in (1, 2):
        raise ValueError(f"grpo_advantages: rewards must be (k,) or (G, k), got shape {r.shape}")
    if not np.isfinite(r).all():
        raise ValueError("grpo_advantages: rewards must be finite")
    epsilon = float(epsilon)
    if not epsilon >= 0:
        raise ValueError(f"grpo_advantages: epsilon must be >= 0, got {epsilon}")
    k = r.shape[-1]
    if r.size == 0 or k == 1:
        return np.zeros_like(r)
    centered = r - r.mean(axis=-1, keepdims=True)
    if scale_rewards == "none":
        return centered
    if scale_rewards == "group":
        std = r.std(axis=-1, ddof=1, keepdims=True)
    else:
        std = r.std(ddof=1) if r.size > 1 else 0.0
    return centered / (std + epsilon)


def reward_spread(rewards) -> float:
    """Advantage spread (TRL ``reward_std`` per group): std, ddof=1, of rewards (k,) -> float.

    0.0 for k == 1 (one trace teaches nothing); k == 0 raises ValueError.
    """
    r = _vec(rewards, "rewards")
    if r.size == 0:
        raise ValueError("reward_spread: no rewards")
    if r.size == 1:
        return 0.0
    return float(r.std(ddof=1))


def nonzero_advantages(advantages) -> int:
    """Number of advantages with |A| > 1e-12: any shape -> int."""
    a = np.asarray(advantages, dtype=np.float64)
    return int(np.count_nonzero(np.abs(a) > ZERO_TOL))


def frac_zero_spread(spreads) -> float:
    """TRL ``frac_reward_zero_std``: fraction of questions whose spread < 1e-12. (Q,) -> float, nan if Q == 0."""
    s = _vec(spreads, "spreads")
    if s.size == 0:
        return float("nan")
    return float((np.abs(s) < ZERO_TOL).mean())
