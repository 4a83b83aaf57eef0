"""The suite as a training reward: TRL reward functions that grade as the eval grades, and the
suite's prompts as a dataset for `GRPOTrainer` (optional extra `trl`)::

    from trl import GRPOConfig, GRPOTrainer
    from rlhf_eval.trl import suite_dataset, suite_rewards

    rewards = suite_rewards("suites/gsm8k_smoke.yaml")
    trainer = GRPOTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", reward_funcs=rewards,
                          train_dataset=suite_dataset("suites/gsm8k_smoke.yaml"),
                          args=GRPOConfig(reward_weights=rewards.weights))

Each completion TRL generates is graded as `rlhf_eval.evaluate.score_question` grades a trace: the
reasoning split off by `model.reasoning_tags` (`rlhf_eval.reasoning`; a reasoning field TRL's
response parser fills counts as reasoning sent beside the answer), the verdict from the suite's
verifier with the question's reference and options (`evaluate.verdict_for`), then every reward
function of the suite called with the eval's arguments, one call per question of the batch
(`evaluate.suite_rewards`). TRL gets one reward function per suite reward function, named as the
suite names it, so it logs `rewards/<name>/mean`; the weighted sum is TRL's, with `reward_weights`.

The question of each row is found by its `question_id` column (the dataset here and the export's
`grpo_prompts` carry it), or else by its prompt. Nothing is sampled from an API: no cassette and
no key are needed.

One difference stays: an API says when it cut an answer at its token limit (the eval's
`truncated` verdict); TRL does not tell a reward function, so a completion cut at
`max_completion_length` is graded on its text (`GRPOConfig(mask_truncated_completions=True)`
keeps such completions out of the loss).

Neither trl nor datasets is imported by the core; this module imports `datasets` only in
`suite_dataset`, and needs no trl at all.
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any, Sequence

from .evaluate import suite_rewards as _question_rewards
from .evaluate import verdict_for
from .export import _key, grpo_prompt_row, trl_prompt
from .reasoning import split_reasoning
from .suite import Question, Suite, _short, load_suite
from .types import Trace

__all__ = ["SuiteReward", "SuiteRewardError", "SuiteRewards", "completion_trace", "suite_dataset", "suite_rewards",
           "suite_rows"]

NEEDS_DATASETS = "rlhf_eval.trl.suite_dataset needs the datasets library: pip install 'rlhf-eval[trl]'"
# Where a message TRL's response parser builds (`parse_response`) puts the model's reasoning.
_REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")


class SuiteRewardError(ValueError):
    """A batch the suite cannot grade (a prompt of no question of the suite, a row whose `answer`
    is not the suite's, a completion that is not text or messages); one line."""


def _suite(path_or_suite: str | Path | Suite) -> Suite:
    """The suite itself, or the one its file holds (SuiteError, one line, for a file with errors)."""
    return path_or_suite if isinstance(path_or_suite, Suite) else load_suite(path_or_suite)


def _dataset_prompt(suite: Suite, question: Question) -> Any:
    return trl_prompt(suite.render_prompt(question), suite.spec.model.system_instruction)


class _Grader:
    """Grades one batch once for all of a suite's TRL reward functions: TRL calls them one after
    the other with the same `completions` list, and each takes its column of the result."""

    def __init__(self, suite: Suite):
        self.suite = suite
        self.names = [name for name, _ in suite.reward_funcs]
        self.weights = [w for _, w in suite.reward_funcs]
        self.by_id = {q.id: q for q in suite.questions}
        self.by_prompt: dict[str, Question] = {}
        for q in suite.questions:
            self.by_prompt.setdefault(_key(_dataset_prompt(suite, q)), q)
            self.by_prompt.setdefault(_key(suite.render_prompt(q)), q)
        self._last: tuple[list, str, list[list[float | None]]] | None = None
        self._checked_trainer = False

    def column(self, index: int, prompts: list, completions: list, kwargs: dict[str, Any]) -> list[float | None]:
        texts = json.dumps(completions, ensure_ascii=False, default=repr)  # the batch's completions, as given
        last = self._last
        # The same list object (held here, so its id is not reused) with the same texts: the same batch.
        if last is None or last[0] is not completions or last[1] != texts:
            rows, verdicts = self.grade(prompts, completions, kwargs)
            self._last = last = (completions, texts, rows)
            log_extra = kwargs.get("log_extra")
            if callable(log_extra):  # TRL's completions table then shows each completion's verdict
                log_extra("verdict", verdicts)
            self._check_trainer(kwargs.get("log_metric"))
        return [row[index] for row in last[2]]

    def grade(self, prompts: list, completions: list, kwargs: dict[str, Any]) -> tuple[list[list[float | None]],
                                                                                       list[str]]:
        """(each row's reward per function, None where it does not apply; each row's verdict)."""
        n = len(completions)
        questions = self._questions(prompts, kwargs, n)
        groups: dict[str, list[int]] = {}
        for i, q in enumerate(questions):
            groups.setdefault(q.id, []).append(i)
        rows: list[list[float | None]] = [[None] * len(self.names) for _ in range(n)]
        verdicts = [""] * n
        tags = self.suite.spec.model.reasoning_tags
        for qid, indices in groups.items():
            q = self.by_id[qid]
            traces = [completion_trace(completions[i], tags, i) for i in indices]
            found = [verdict_for(t, q, self.suite) for t in traces]
            by_function, _ = _question_rewards(self.suite, q, self.suite.render_prompt(q), traces, found)
            for j, i in enumerate(indices):
                verdicts[i] = found[j].status
                rows[i] = [by_function[name][j] for name in self.names]
        return rows, verdicts

    def _questions(self, prompts: list, kwargs: dict[str, Any], n: int) -> list[Question]:
        ids = kwargs.get("question_id")
        answers = kwargs.get("answer")
        out = []
        for i in range(n):
            if ids is not None:
                q = self.by_id.get(str(ids[i]))
                if q is None:
                    raise SuiteRewardError(
                        f"rlhf_eval.trl: question_id {_short(ids[i])} (row {i} of the batch) is no question of "
                        f"suite {self.suite.name!r} ({self.suite.path}); train on suite_dataset() of that suite "
                        "or on its export's grpo_prompts")
            else:
                prompt = prompts[i] if i < len(prompts) else None
                found = self.by_prompt.get(_key(prompt))
                if found is None:
                    raise SuiteRewardError(
                        f"rlhf_eval.trl: the prompt {_short(prompt)} (row {i} of the batch) is no question of suite "
                        f"{self.suite.name!r} ({self.suite.path}); train on suite_dataset() of that suite, whose "
                        "question_id column names each row's question")
                q = found
            if answers is not None and answers[i] != q.answer:
                raise SuiteRewardError(
                    f"rlhf_eval.trl: row {i} of the batch gives question {q.id!r} the answer {_short(answers[i])}, "
                    f"suite {self.suite.name!r} ({self.suite.path}) gives it {_short(q.answer)}; the dataset is of "
                    "another version of the suite: build it again (suite_dataset, or export the suite again)")
            out.append(q)
        return out

    def _check_trainer(self, log_metric: Any) -> None:
        """Warn once when the trainer that calls (TRL passes its own `_log_metric` method) weighs
        these functions otherwise than the suite: its logged `reward` would not be the eval's."""
        if self._checked_trainer:
            return
        self._checked_trainer = True
        trainer = getattr(log_metric, "__self__", None)
        funcs, weights = getattr(trainer, "reward_funcs", None), getattr(trainer, "reward_weights", None)
        if not isinstance(funcs, list) or weights is None:
            return
        try:
            given = [float(w) for w in weights]
        except (TypeError, ValueError):
            return
        ours = [(f.index, given[i]) for i, f in enumerate(funcs)
                if isinstance(f, SuiteReward) and f.grader is self and i < len(given)]
        wrong = [(self.names[k], w, self.weights[k]) for k, w in ours if not math.isclose(w, self.weights[k])]
        if wrong:
            shown = ", ".join(f"{name!r} {w:g} (the suite: {want:g})" for name, w, want in wrong)
            warnings.warn(f"rlhf_eval.trl: the trainer weighs {shown}; pass GRPOConfig(reward_weights="
                          "suite_rewards(...).weights) so its reward is the eval's", stacklevel=2)


def completion_trace(completion: Any, tags: Sequence[str] | None, row: int = 0) -> Trace:
    """A completion as TRL passes it (text, or `[{"role": "assistant", "content": ...}]`) as the
    `Trace` a backend would make of it: the answer split from its reasoning by `tags`, finished
    (`STOP`), with no token counts or logprobs. Raises SuiteRewardError for anything else."""
    beside = None
    if isinstance(completion, str):
        text = completion
    elif isinstance(completion, list) and all(isinstance(m, dict) for m in completion):
        parts = [m for m in completion if m.get("role", "assistant") == "assistant"]
        contents = [m.get("content") if m.get("content") is not None else "" for m in parts]
        if not all(isinstance(c, str) for c in contents):
            raise SuiteRewardError(f"rlhf_eval.trl: completion {row} has content that is not text "
                                   f"({_short(completion)}); the suite's verifier reads text")
        text = "".join(contents)
        reasoning = [m[k] for m in parts for k in _REASONING_KEYS if isinstance(m.get(k), str)]
        beside = "\n\n".join(reasoning) if reasoning else None
    else:
        raise SuiteRewardError(f"rlhf_eval.trl: completion {row} is {_short(completion)}; TRL passes text or a list "
                               "of messages")
    split = split_reasoning(text, tags, beside=beside)
    return Trace(text=split.answer, finish_reason="STOP", token_count=None, logp=None, seed=None,
                 model_version=None, reasoning=split.reasoning, answer_missing=split.answer_missing)


class SuiteReward:
    """One of the suite's reward functions as TRL calls it: `(prompts, completions, **columns)`
    → one float per completion, None where the function does not apply. Its `__name__` is the
    suite's name for it, which TRL logs it under (`rewards/<name>/mean`)."""

    def __init__(self, grader: _Grader, index: int):
        self.grader = grader
        self.index = index
        self.__name__ = grader.names[index]

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
        return self.grader.column(self.index, prompts, completions, kwargs)

    def __repr__(self) -> str:
        return f"<rlhf-eval reward {self.__name__!r} of suite {self.grader.suite.name!r}>"


class SuiteRewards(list):
    """The suite's reward functions for `GRPOTrainer(reward_funcs=...)` (a list, as TRL takes),
    with `weights` (the suite's `reward_weights`, 1.0 each by default) for
    `GRPOConfig(reward_weights=...)`, `names` and the `suite`."""

    def __init__(self, suite: Suite):
        grader = _Grader(suite)
        super().__init__(SuiteReward(grader, i) for i in range(len(grader.names)))
        self.suite = suite
        self.names = list(grader.names)
        self.weights = list(grader.weights)


def suite_rewards(path_or_suite: str | Path | Suite) -> SuiteRewards:
    """TRL reward functions that grade completions as the eval grades the suite's traces: one per
    reward function of the suite (`reward_funcs`, the built-in `accuracy` by default), each
    returning one reward per completion (None: does not apply). Pass `.weights` as
    `GRPOConfig(reward_weights=...)` when the suite weighs its functions (a warning says so when
    the trainer's weights differ).

    Raises SuiteError (one line) for a suite file with errors; calling a function raises
    SuiteRewardError (one line) for a row of no question of the suite, and RewardError /
    VerifierError (one line) as the eval does for a team's reward function or verifier that fails."""
    return SuiteRewards(_suite(path_or_suite))


def suite_rows(path_or_suite: str | Path | Suite) -> list[dict[str, Any]]:
    """The suite's prompts as the export's `grpo_prompts` rows, one per question in the suite's
    order, built from the suite file without running it: `pass_rate` and `spread` are None."""
    suite = _suite(path_or_suite)
    return [grpo_prompt_row(_dataset_prompt(suite, q), q.answer, q.fields, q.id, None, None)
            for q in suite.questions]


def suite_dataset(path_or_suite: str | Path | Suite) -> Any:
    """A `datasets.Dataset` of the suite's prompts for `GRPOTrainer(train_dataset=...)`: the
    columns of the export's `grpo_prompts` (`prompt`, `answer`, the question's columns,
    `question_id`, `pass_rate` and `spread`, None as the suite has not run). Prompts are TRL's
    standard format (text), or conversational (messages) for a chat suite or one with a system
    instruction. Raises SuiteError (one line) for a suite file with errors, ImportError (one line)
    without `datasets`, SuiteRewardError (one line) for columns Arrow cannot hold."""
    rows = suite_rows(path_or_suite)
    try:
        import datasets
    except ImportError:
        raise ImportError(NEEDS_DATASETS) from None
    try:
        return datasets.Dataset.from_list(rows)
    except Exception as exc:  # noqa: BLE001 - Arrow's many errors for a column of mixed types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SuiteRewardError(f"rlhf_eval.trl: the questions' columns do not make one table ({first}); give each "
                               "field one type across the suite's questions") from None
