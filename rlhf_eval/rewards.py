"""Reward functions, called exactly as TRL's ``GRPOTrainer`` calls them, and summed as it sums them.

A reward function takes one question's k completions and returns one reward each::

    def format_reward(completions, **kwargs) -> list[float | None]:
        return [1.0 if c.startswith("<think>") else 0.0 for c in completions]

It is called with keyword arguments only (as TRL calls it), so it must take ``**kwargs`` or name
every argument it is given:

* ``completions``: the k answers (``Trace.text``), in trace order, as TRL passes them for the
  suite's prompt format: strings for a text prompt (TRL's "standard" format); for a chat prompt
  (TRL's "conversational" format, see README "Chat prompts") each a one-message list
  ``[{"role": "assistant", "content": text}]``, as ``GRPOTrainer`` decodes a conversational
  completion.
  A reasoning model's inline ``<think>`` span is split off by ``model.reasoning_tags`` before
  this; set ``reasoning_tags: null`` to pass the whole generated text, as TRL decodes it.
* ``prompts``: the rendered prompt, repeated k times (TRL repeats each prompt per generation):
  text, or for a chat prompt the conversation as sent, a list of ``{"role", "content"}`` messages.
* every field of the question, repeated k times as TRL repeats each dataset column: ``question``,
  ``answer`` (the reference the verifier reads), and every other field or JSONL column.
* ``verdicts``: the verdict of each completion (`rlhf_eval.types.VERDICTS`); and
  ``verdict_rewards``: the suite's ``rewards:`` table. Neither exists in TRL; the built-in
  ``accuracy`` reward reads them, and a team's may.

What TRL passes that there is nothing to pass for here: ``completion_ids`` (an API returns no token
ids), ``trainer_state``, ``log_extra``, ``log_metric`` and ``environments`` (there is no trainer).

It returns k numbers; ``None`` (or NaN) means "does not apply" to that completion. As in TRL
(``GRPOTrainer._calculate_rewards`` and ``_generate_and_score_completions``, its default
``multi_objective_aggregation="sum_then_normalize"``): each None becomes NaN, and a completion's
reward is ``nansum_i(weight_i * reward_i)`` with ``reward_weights`` (default 1.0 each). A
completion for which *every* function returned None is unscorable: TRL sets its reward to NaN,
leaves it out of its group's mean and std, and sets its advantage to 0 (it warns "All reward
functions returned None"); here its reward is None in the JSON and the same rules apply
(`rlhf_eval.evaluate.score_question`).

Reward functions come from one registry (`rlhf_eval.registry`), as verifiers and providers do:
``@reward_function`` in a team's code, an installed package's ``rlhf_eval.rewards`` entry point, or
a ``module:function`` reference in the suite (TRL's own dotted form ``my_lib.rewards.custom`` works
too). The built-in ``accuracy`` registers the same way; a suite that names no reward function uses it
alone, with weight 1.
"""
from __future__ import annotations

import contextlib
import copy
import inspect
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from .registry import Registry, RegistryError, check_name, exception_line, origin_of
from .verify import VerifierError

__all__ = [
    "DEFAULT_REWARD",
    "HARNESS_ARGUMENTS",
    "REWARDS",
    "RewardError",
    "RewardFunction",
    "as_completions",
    "is_conversational",
    "resolve_reward",
    "reward_function",
    "reward_kwargs",
    "rewards_per_function",
    "weighted_sum",
]

F = TypeVar("F", bound=Callable[..., Any])

#: The reward function a suite that names none uses: the verdict table (`rewards:`), weight 1.
DEFAULT_REWARD = "accuracy"
#: Keyword arguments rlhf-eval passes besides the question's fields; a field may not take one.
HARNESS_ARGUMENTS = ("completions", "prompts", "verdicts", "verdict_rewards")


class RewardError(VerifierError):
    """A reward function that raised, or returned something other than one number or None per
    completion; one line naming the function and the question. A `VerifierError`, because it is
    the same kind of failure (a team's scoring code failing on one question's answers) and a runner
    that handles one handles the other: that question errors, the run goes on."""


@dataclass(frozen=True)
class RewardFunction:
    """A registered reward function: `run(completions=..., prompts=..., **columns)` returns one
    reward (a number, or None for "does not apply") per completion. `needs` are the keyword
    arguments it requires (no default), checked against a suite's questions when it loads."""

    name: str
    run: Callable[..., Sequence[Any]]
    needs: tuple[str, ...] = ()

    def __call__(self, completions: list, **kwargs: Any) -> list[float | None]:
        return list(self.run(completions=completions, **kwargs))


def _signature_needs(name: str, run: Callable) -> tuple[str, ...]:
    """The keyword arguments `run` requires; RegistryError (one line) when TRL could not call it
    (keywords only: it must take `completions` and `**kwargs`, or name every argument)."""
    try:
        signature = inspect.signature(run)
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"reward function {name!r}: cannot read the signature of {run!r} ({exc})") from None
    params = list(signature.parameters.values())
    positional_only = [p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_ONLY]
    takes_rest = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    named = {p.name for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                  inspect.Parameter.KEYWORD_ONLY)}
    shown = getattr(run, "__name__", type(run).__name__)
    if positional_only or not takes_rest:
        raise RegistryError(f"reward function {name!r}: {shown!r} must take (completions, **kwargs), as TRL's "
                            "GRPOTrainer calls it with keyword arguments only (prompts, completions and every "
                            "column)")
    return tuple(p.name for p in params if p.name in named and p.default is inspect.Parameter.empty)


def _as_reward(name: str, obj: Any) -> RewardFunction:
    """The registry's adapter: a `RewardFunction` (renamed), or a function (or callable object,
    as TRL's `get_cosine_scaled_reward(...)` returns) taking (completions, **kwargs)."""
    if isinstance(obj, RewardFunction):
        return obj if obj.name == name else RewardFunction(name, obj.run, obj.needs)
    if not callable(obj) or isinstance(obj, type):
        raise RegistryError(f"reward function {name!r}: {obj!r} is not a function taking (completions, **kwargs)")
    return RewardFunction(name, obj, _signature_needs(name, obj))


REWARDS: Registry[RewardFunction] = Registry("reward function", "rlhf_eval.rewards", _as_reward,
                                             example="my_evals.rewards:format_reward")


def reward_function(name: str | None = None) -> Callable[[F], F]:
    """Register the decorated function as reward function `name` (default: its own name). The
    function is returned unchanged, so it still serves TRL's trainer as it is::

        @reward_function("think_format")
        def think_format(completions, **kwargs):
            return [1.0 if c.lstrip().startswith("<think>") else 0.0 for c in completions]

    A suite then says ``reward_funcs: [accuracy, think_format]`` once the module is imported, or
    names it through an installed package's ``rlhf_eval.rewards`` entry point, or as
    ``my_evals.rewards:think_format`` with nothing registered."""
    def register(fn: F) -> F:
        registered = name or getattr(fn, "__name__", None)
        check_name(registered, "reward function")  # text without spaces or ':', else one line
        REWARDS.register(str(registered), fn, origin=origin_of(fn))
        return fn
    return register


def resolve_reward(name: str) -> RewardFunction:
    """The reward function a suite names: registered, installed, ``module:function``, or TRL's
    dotted ``module.function`` (read as ``module:function`` when no registered name matches).
    Raises RegistryError (one line; an unknown name lists the known ones)."""
    if isinstance(name, str) and "." in name and ":" not in name and name not in REWARDS:
        module, _, attribute = name.rpartition(".")
        if module and attribute:
            return REWARDS.get(f"{module}:{attribute}")
    return REWARDS.get(name)


@reward_function(DEFAULT_REWARD)
def accuracy(completions: list, verdicts: list[str], verdict_rewards: dict[str, float],
             **kwargs: Any) -> list[float | None]:
    """The verdict table as a reward function: each completion gets the suite's `rewards:` value
    of its verdict (by default 1.0 for correct, 0.0 for anything else)."""
    return [float(verdict_rewards[v]) for v in verdicts]


# ---------------------------------------------------------------------------------------------
# Calling them, and summing as TRL does
# ---------------------------------------------------------------------------------------------


def reward_kwargs(prompt: str | list[dict[str, str]], fields: dict[str, Any], answer: str, verdicts: Sequence[str],
                  verdict_rewards: dict[str, float]) -> dict[str, Any]:
    """What a reward function gets besides `completions`, for one question of k = len(verdicts)
    completions: each column repeated k times, as TRL repeats a dataset row per generation.
    `prompt` is text or a chat (a list of messages); `rewards_per_function` passes the completions
    in the same format."""
    k = len(verdicts)
    columns = {**fields, "answer": answer}
    return {**{key: [value] * k for key, value in columns.items()}, "prompts": [prompt] * k,
            "verdicts": list(verdicts), "verdict_rewards": dict(verdict_rewards)}


def is_conversational(prompts: Any) -> bool:
    """Whether `prompts` (the ``prompts`` argument) are chats: TRL's `is_conversational` test on the
    first, a list whose first item is a mapping with a ``role``."""
    first = prompts[0] if isinstance(prompts, list) and prompts else None
    return isinstance(first, list) and bool(first) and isinstance(first[0], dict) and "role" in first[0]


def as_completions(texts: Sequence[str], conversational: bool) -> list:
    """The completions a reward function gets, as TRL's GRPOTrainer passes them: the texts, or for
    a conversational prompt each as ``[{"role": "assistant", "content": text}]``."""
    if conversational:
        return [[{"role": "assistant", "content": text}] for text in texts]
    return list(texts)


def rewards_per_function(funcs: Sequence[RewardFunction], completions: list[str], kwargs: dict[str, Any],
                         question_id: str) -> np.ndarray:
    """Each function's rewards: (k, F) floats, NaN where it returned None (TRL's `rewards_per_func`).
    `completions` are the k texts; a function gets them as TRL would for the prompts' format
    (`as_completions`: message lists when ``kwargs["prompts"]`` are chats).
    Raises RewardError (one line naming the function and the question) for a function that raises
    or does not return k numbers or Nones (inf is refused: it would make every advantage NaN)."""
    out = np.full((len(completions), len(funcs)), np.nan)
    conversational = is_conversational(kwargs.get("prompts"))
    for i, fn in enumerate(funcs):
        out[:, i] = _called(fn, completions, kwargs, question_id, conversational)
    return out


def _called(fn: RewardFunction, completions: list[str], kwargs: dict[str, Any], question_id: str,
            conversational: bool = False) -> list[float]:
    where = f"on question {question_id!r}"
    try:
        returned = fn.run(completions=as_completions(completions, conversational), **_copied(kwargs))
    except (KeyboardInterrupt, RewardError):
        raise
    except BaseException as exc:  # noqa: BLE001 - a team's code, SystemExit included, is one line
        raise RewardError(f"reward function {fn.name!r} raised {exception_line(exc)} {where}") from None
    try:  # TRL takes any iterable (it builds a list of it): a tuple, a numpy array, a generator
        if isinstance(returned, (str, bytes, dict)):
            raise TypeError
        iterator = iter(returned)
    except Exception:  # noqa: BLE001 - not iterable (or a team's __iter__ that fails)
        raise RewardError(f"reward function {fn.name!r} returned {type(returned).__name__} {where}; return a list "
                          "with one float (or None) per completion") from None
    try:  # a generator runs the team's code only now: what it raises is its failure, as in the call
        returned = list(iterator)
    except (KeyboardInterrupt, RewardError):
        raise
    except BaseException as exc:  # noqa: BLE001 - as above
        raise RewardError(f"reward function {fn.name!r} raised {exception_line(exc)} {where} (while reading the "
                          f"{type(returned).__name__} it returned)") from None
    if len(returned) != len(completions):
        raise RewardError(f"reward function {fn.name!r} returned {len(returned)} rewards for {len(completions)} "
                          f"completions {where}; return one per completion")
    if all(type(reward) is float and -math.inf < reward < math.inf for reward in returned):
        return returned  # the common case, at a fraction of the checks below
    values = []
    for j, reward in enumerate(returned):
        if reward is None:
            values.append(math.nan)
            continue
        if not isinstance(reward, numbers.Real):  # bool is one, as torch.tensor takes True as 1.0
            raise RewardError(f"reward function {fn.name!r} returned {type(reward).__name__} {_short(reward)} for "
                              f"completion {j} {where}; a reward is a number or None")
        try:  # an int or Fraction past ~1.8e308 has no float
            value = float(reward)
        except OverflowError:
            raise RewardError(f"reward function {fn.name!r} returned {type(reward).__name__} {_short(reward)} for "
                              f"completion {j} {where}, beyond the float range (about ±1.8e308); a reward is "
                              "finite (None, or NaN, means it does not apply)") from None
        if math.isinf(value):
            raise RewardError(f"reward function {fn.name!r} returned {value} for completion {j} {where}; a reward "
                              "is finite (None, or NaN, means it does not apply)")
        values.append(value)
    return values


def _copied(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Each argument list (and the verdict table) copied: a function that edits its arguments in
    place cannot change what the next function is given. Lists of chats (``prompts``, a chat
    ``question``) are copied message by message."""
    return {key: _fresh(value) if isinstance(value, list) else dict(value) if isinstance(value, dict) else value
            for key, value in kwargs.items()}


def _fresh(value: list) -> list:
    if value and isinstance(value[0], (list, dict)):  # rows of chats: copy each message too
        return copy.deepcopy(value)
    return list(value)


def weighted_sum(per_function: np.ndarray, weights: Sequence[float], names: Sequence[str] | None = None,
                 question_id: str | None = None) -> np.ndarray:
    """TRL's reward: ``nansum(rewards_per_func * reward_weights, dim=1)``, (k, F) -> (k,), and NaN
    for a completion every function returned None for (TRL's `unscorable_mask`).

    Raises RewardError (one line naming the question, the functions that applied and the value)
    when a completion's sum is not finite: finite rewards times finite weights can still pass the
    float range (about ±1.8e308), and an infinite reward makes every advantage of its group NaN.
    `names` (default ``reward_funcs[i]``) and `question_id` only word that line."""
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused below, in one line
        if per_function.shape[1] == 1:  # one function (the default): its None stays NaN, as TRL's mask makes it
            total = per_function[:, 0] * float(weights[0])
        else:
            weighted = per_function * np.asarray(weights, dtype=float)[None, :]
            missing = np.isnan(per_function)
            if not missing.any():  # the common case: nansum's copy and masks would change nothing
                total = weighted.sum(axis=1)
            else:
                total = np.where(missing, 0.0, weighted).sum(axis=1)
                total[missing.all(axis=1)] = np.nan
    if not np.isfinite(total).all():  # NaN is fine only where no function applied (inf - inf is NaN too)
        overflowed = np.flatnonzero(~np.isfinite(total) & ~np.isnan(per_function).all(axis=1))
        if overflowed.size:
            raise RewardError(_overflow_line(per_function, weights, names, question_id, int(overflowed[0]),
                                             float(total[overflowed[0]])))
    return total


def _overflow_line(per_function: np.ndarray, weights: Sequence[float], names: Sequence[str] | None,
                   question_id: str | None, j: int, value: float) -> str:
    shown = list(names) if names is not None else [f"reward_funcs[{i}]" for i in range(per_function.shape[1])]
    applied = [i for i in range(per_function.shape[1]) if not math.isnan(per_function[j, i])]
    who = ", ".join(repr(shown[i]) for i in applied)
    terms = " + ".join(f"{per_function[j, i]:g} × {float(weights[i]):g}" for i in applied)
    where = f" on question {question_id!r}" if question_id is not None else ""
    return (f"reward function{'s' * (len(applied) != 1)} {who} give{'s' * (len(applied) == 1)} completion {j}{where} "
            f"a weighted reward of {value} ({terms}); keep each reward times its weight, and their sum, within "
            "the float range (about ±1.8e308)")


def _short(value: Any) -> str:
    with contextlib.suppress(Exception):
        text = repr(value)
        return text if len(text) <= 40 else text[:39] + "…"
    return f"<{type(value).__name__}>"
