"""Suite files: YAML → validated `Suite` with its `Question`s; every error names file:line.

The schema is a set of pydantic models (pydantic ships with google-genai), so types, ranges and
unknown keys are checked declaratively; line numbers come from the YAML node marks.
"""
from __future__ import annotations

import contextlib
import difflib
import errno
import functools
import gc
import math
import os
import re
import stat
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationError,
                      field_validator, model_validator)
from pydantic_core import PydanticCustomError

from .credentials import redact_url, url_problem
from .paths import FOLDER_NAME_RE, shown_path
from .prices import MAX_PRICE
from .providers import BUILT_IN, provider_problem
from .registry import RegistryError
from .rewards import DEFAULT_REWARD, HARNESS_ARGUMENTS, RewardFunction, resolve_reward
from .rows import DPO_METRICS  # noqa: F401  (needs log-probabilities: "unavailable", never a number; one definition)
from .types import VERDICTS
from .verify import VerifierError, prepared_options, verify
from .yamlines import YamlError, line_of, load_with_lines

# Metrics a threshold may name. Question metrics are computed per item, suite metrics over the run.
QUESTION_METRICS = (
    "accuracy", "pass_at_k", "maj_at_k", "unparsable_rate", "pairs", "mean_margin", "reward_accuracy",
    "dpo_loss", "spread", "nonzero_advantages", "mean_logp", "mean_tokens",
    "mean_reasoning_tokens", "unique_traces", "prompt_tokens", "output_tokens", "total_tokens", "cost_usd",
    "margin_per_token",
) + VERDICTS
SUITE_METRICS = (
    "accuracy", "pass_at_k", "unparsable_rate", "pairs", "mean_margin", "reward_accuracy",
    "dpo_loss", "frac_zero_spread", "mean_spread", "questions_failed", "mean_tokens", "mean_reasoning_tokens",
    "prompt_tokens", "output_tokens", "total_tokens", "cost_usd", "margin_per_token", "margin_length_corr",
    "maj_at_k", "unique_traces",
)
# Question metrics that count traces: at most `samples`.
TRACE_COUNTS = frozenset(("unique_traces", "nonzero_advantages") + VERDICTS)
# Metrics that are fractions in [0, 1]: a bound outside it is a mistake (a percentage, say).
FRACTIONS = frozenset({"accuracy", "pass_at_k", "maj_at_k", "unparsable_rate", "reward_accuracy", "frac_zero_spread"})
# Metrics with a 95% interval, which a threshold may gate on with `on: lower|upper`.
QUESTION_INTERVALS = ("accuracy", "reward_accuracy", "mean_margin", "spread")
SUITE_INTERVALS = ("accuracy", "reward_accuracy", "mean_margin", "mean_spread", "frac_zero_spread")

_ID_RE = FOLDER_NAME_RE  # whole-string matches only (fullmatch): "a\n" names no folder
_PLACEHOLDER_RE = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)\}(?!\})")


class SuiteError(Exception):
    """Problems with a suite file, one line each: `path:line: what is wrong; what to do`.

    `path`, `line` and `message` are the first problem's; `problems` holds every one (itself
    first), each a SuiteError. Use `SuiteError.joined` to report several."""

    def __init__(self, path: str | Path, line: int | None, message: str, *, as_given: bool = False):
        # as_given: a dangling link is named as the user named it, not as where it points
        self.path, self.line, self.message = str(path) if as_given else shown_path(path), line, message
        self.problems: list[SuiteError] = [self]
        super().__init__(self.where() + ": " + message)

    def where(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path

    @classmethod
    def joined(cls, problems: list[SuiteError]) -> SuiteError:
        """One error showing `problems` a line each (at most MAX_SHOWN_PROBLEMS, then a count)."""
        first = problems[0]
        if len(problems) == 1:
            return first
        error = cls(first.path, first.line, first.message)
        error.problems = list(problems)
        shown = [str(p) for p in problems[:MAX_SHOWN_PROBLEMS]]
        hidden = len(problems) - len(shown)
        if hidden:
            shown.append(f"{first.path}: and {hidden} more problem{'s' * (hidden > 1)}")
        error.args = ("\n".join(shown),)
        return error


MAX_SHOWN_PROBLEMS = 20  # a file wrong throughout (a bad edit on every question) needs no 10,000 lines


# A number as YAML 1.2 writes it with an exponent and no dot (`1e-3`, `2E5`): PyYAML reads YAML 1.1,
# where such a plain scalar is text.
_EXPONENT_NUMBER = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+")


def _a_number(value: Any) -> Any:
    """A suite's numbers: `true` is no number (pydantic would read it as 1.0), nor is text (`"0.5"`),
    except a number PyYAML left as text (`1e-3`)."""
    if isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value):
        return float(value)
    if isinstance(value, (bool, str)):
        raise PydanticCustomError("float_type", "Input should be a valid number")
    return value


Number = Annotated[float, BeforeValidator(_a_number)]


class _Strict(BaseModel):
    # `min: .nan` would make a threshold that never fails; `beta: .inf` metrics that are never numbers.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class PriceConfig(_Strict):
    """What the model's tokens cost, USD per 1M tokens (`rlhf_eval.prices`): prompt tokens at
    `input`, output tokens (answer and thinking) at `output`."""

    input: Number = Field(ge=0.0, le=MAX_PRICE)
    output: Number = Field(ge=0.0, le=MAX_PRICE)


class VertexConfig(_Strict):
    """Gemini on Vertex AI (google-genai's Vertex mode; credentials from Application Default Credentials)."""

    project: str
    location: str = "us-central1"


def _base_url(url: str) -> str:
    problem = url_problem(url)
    if problem:  # shown without its credentials: the message is printed and may be logged
        raise ValueError(f"{redact_url(url)!r} is not a server URL ({problem}); write e.g. http://localhost:8000/v1")
    return url


BaseUrl = Annotated[str, AfterValidator(_base_url)]


def _team_options(options: dict, provider: str | None, keys: str) -> dict:
    """`options` checked: only a team's provider takes them (a built-in takes its settings as
    `keys`), and they go into the JSON report, so text keys and finite numbers only."""
    if options and provider in BUILT_IN:
        raise ValueError(f"options are a team's own provider's settings; {provider} takes its own as {keys}")
    _plain_options(options)
    return options


def _plain_options(value: Any, where: str = "options") -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: keys are text, got {key!r}")
            _plain_options(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _plain_options(item, f"{where}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: {value} is not a finite number")


def _provider_for(role: str):
    def check(name: str) -> str:
        problem = provider_problem(name, role)
        if problem:
            raise ValueError(problem)
        return name
    return AfterValidator(check)


class ScorerConfig(_Strict):
    """A model that scores a given text by teacher forcing: a reference model, or the policy's scorer."""

    provider: Annotated[str, _provider_for("scorer")]
    options: dict[str, Any] = Field(default_factory=dict)  # a team's own provider's settings
    name: str  # the served model id (openai), or a local checkpoint path / cached hub id (hf)
    base_url: BaseUrl | None = None  # openai: the server's /v1 URL (default: env OPENAI_BASE_URL)
    api_key_env: str = "OPENAI_API_KEY"  # openai: the environment variable holding the key, if any
    # The text the completion is appended to when scoring; {prompt} is the rendered prompt.
    # For a chat model and a text prompt, write its chat template here so the scored context matches
    # sampling; a chat prompt is rendered by the tokenizer's own chat template (hf) before this.
    template: str = "{prompt}"
    device: str = "cpu"  # hf
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"  # hf
    batch_size: int = Field(8, ge=1)  # hf

    @field_validator("template")
    @classmethod
    def _template_has_prompt(cls, v):
        if "{prompt}" not in v:
            raise ValueError("template must contain {prompt}")
        return v

    @field_validator("options")
    @classmethod
    def _own_options(cls, v, info):
        return _team_options(v, info.data.get("provider"), "keys")


# Where a local checkpoint runs: a torch device (`cuda`, `cuda:1`, `mps`, `cpu`, …).
_DEVICE_RE = re.compile(r"(cpu|cuda|mps|xpu|npu|hpu)(:[0-9]+)?")
#: The settings only a local provider takes, and which: (key -> providers). `dtype` changes the
#: numbers a model computes, so it is part of each recorded request; `device` and `batch_size`
#: change where and how many at once, not what is sampled (float rounding aside), so they are
#: not (a cassette recorded on a GPU replays on a laptop, one recorded 8 at a time 1 at a time).
LOCAL_SETTINGS = {"device": ("hf",), "batch_size": ("hf",), "dtype": ("hf", "vllm"), "vllm": ("vllm",)}


class VLLMConfig(_Strict):
    """vLLM's engine settings (`vllm.LLM(...)`, as `trl vllm-serve` names them) for `provider: vllm`.
    They change speed and memory, not what a dtype and seed sample, so none is in the recorded request."""

    tensor_parallel_size: int = Field(1, ge=1)  # GPUs the model is split over
    gpu_memory_utilization: Number = Field(0.9, gt=0.0, le=1.0)  # share of each GPU vLLM may take
    max_model_len: int | None = Field(None, ge=1)  # the context vLLM reserves KV cache for (default: the model's)
    enforce_eager: bool = False  # no CUDA graphs: slower, less memory, faster start


class ModelConfig(_Strict):
    provider: Annotated[str, _provider_for("sampler")] = "gemini"
    options: dict[str, Any] = Field(default_factory=dict)  # a team's own provider's settings
    name: str
    temperature: Number = Field(1.0, ge=0.0, le=2.0)
    top_p: Number | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=1)
    max_output_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    candidates_per_request: int = Field(1, ge=1, le=8)
    system_instruction: str | None = None
    thinking_budget: int | None = None
    base_url: BaseUrl | None = None  # openai: the server's /v1 URL (default: env OPENAI_BASE_URL)
    api_key_env: str | None = None  # env var with the key (default GEMINI_API_KEY/GOOGLE_API_KEY, OPENAI_API_KEY)
    endpoint: Literal["chat", "completions"] = "chat"  # openai: /v1/chat/completions or /v1/completions
    vertex: VertexConfig | None = None  # gemini: use Vertex AI instead of the Gemini Developer API
    scorer: ScorerConfig | None = None  # scores the policy's log-probabilities when the API returns none
    # Inline reasoning in the answer text (DeepSeek-R1, Qwen3, GLM without a reasoning parser): the span
    # between these tags is reasoning, never verified; null takes the whole text as the answer.
    reasoning_tags: tuple[str, str] | None = ("<think>", "</think>")
    price: PriceConfig | None = None  # USD per 1M tokens; else rlhf_eval.prices' default for the model, if any
    # Local providers (see LOCAL_SETTINGS): hf runs a checkpoint on `device` (default cpu), `batch_size`
    # traces per forward pass (default 8), in `dtype` (default float32); vllm in `dtype` (default auto).
    device: str | None = None
    batch_size: int | None = Field(None, ge=1)
    dtype: Literal["auto", "float32", "float16", "bfloat16"] | None = None
    vllm: VLLMConfig | None = None  # vllm: the engine's settings

    @field_validator("reasoning_tags", mode="before")
    @classmethod
    def _two_tags(cls, v):
        if v is not None and not (isinstance(v, (list, tuple)) and len(v) == 2
                                  and all(isinstance(t, str) and t.strip() for t in v)):
            raise ValueError("must be an opening and a closing tag, e.g. ['<think>', '</think>'], or null")
        if v is not None and v[0] == v[1]:
            raise ValueError(f"the opening and closing tags are both {v[0]!r}; the closing one is e.g. '</think>'")
        return v

    @model_validator(mode="after")
    def _consistent(self):
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        _team_options(self.options, self.provider, "model keys")
        if self.vertex is not None and self.provider != "gemini":
            raise ValueError("vertex is only for provider gemini")
        if self.provider == "openai" and self.endpoint == "completions" and self.max_output_tokens is None:
            raise ValueError("endpoint completions needs max_output_tokens (servers default to 16 tokens)")
        if self.thinking_budget is not None and self.provider == "gemini-legacy":
            raise ValueError("google-generativeai cannot send thinking_budget; use provider gemini")
        for key, takers in LOCAL_SETTINGS.items():
            if getattr(self, key) is not None and self.provider not in takers:
                raise ValueError(f"{key} is a setting of provider {' and '.join(takers)}, not of {self.provider}")
        if self.dtype == "auto" and self.provider == "hf":
            raise ValueError("dtype auto is vLLM's (the checkpoint's own); provider hf takes float32, float16 or "
                             "bfloat16")
        if self.device is not None and not _DEVICE_RE.fullmatch(self.device):
            raise ValueError(f"device {self.device!r} is not a torch device; write e.g. cpu, cuda, cuda:1 or mps")
        if self.provider == "trl_vllm" and self.max_output_tokens is None:
            raise ValueError("provider trl_vllm needs max_output_tokens (vLLM's completions default to 16 tokens)")
        return self


class Rewards(_Strict):
    correct: Number = 1.0
    incorrect: Number = 0.0
    unparsable: Number = 0.0
    blocked: Number = 0.0
    truncated: Number = 0.0
    error: Number = 0.0


class DPOConfig(_Strict):
    beta: Number = Field(0.1, gt=0.0)
    pairing: Literal["all", "best_worst"] = "all"
    length_normalized: bool = False
    reference: Literal["none"] | ScorerConfig = "none"  # a scorer: β·(ℓ − ℓ_ref), as DPO defines it
    loss_type: Literal["sigmoid", "ipo", "hinge"] = "sigmoid"
    label_smoothing: Number = Field(0.0, ge=0.0, lt=0.5)
    simpo_gamma: Number = 0.0


    @model_validator(mode="after")
    def _simpo_is_reference_free(self):
        if self.length_normalized and self.reference != "none":
            raise ValueError("length_normalized (SimPO) is reference-free; set reference: none")
        return self


class GRPOConfig(_Strict):
    scale_rewards: Literal["group", "none"] = "group"
    epsilon: Number = Field(1e-4, ge=0.0)


class Bound(_Strict):
    min: Number | None = None
    max: Number | None = None
    # Which number is compared: the estimate, or a bound of its 95% interval (see README "Statistics").
    on: Literal["point", "lower", "upper"] = "point"

    @model_validator(mode="after")
    def _sane(self):
        if self.min is None and self.max is None:
            raise ValueError("a threshold needs min and/or max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"impossible threshold: min {self.min} > max {self.max}")
        return self

    def describe(self) -> str:
        sides = " and ".join(f"{side} {getattr(self, side):g}" for side in ("min", "max")
                             if getattr(self, side) is not None)
        return sides if self.on == "point" else f"{sides} on the interval's {self.on} bound"

    def pick(self, value: float | None, interval: list | tuple | None) -> float | None:
        """The number this bound is compared with: the estimate or one end of its interval."""
        if self.on == "point":
            return value
        return None if interval is None else interval[0 if self.on == "lower" else 1]

    def check(self, value: float) -> str | None:
        """The breached side as text, or None when `value` is within bounds."""
        if self.min is not None and value < self.min:
            return f"< min {self.min:g}"
        if self.max is not None and value > self.max:
            return f"> max {self.max:g}"
        return None


class VerifierConfig(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    name: str = "numeric"

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class QuestionSpec(BaseModel):
    """An inline question; keys beyond these are extra prompt fields (checked against the prompt)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    id: str
    # Text, or a chat: a list of {role, content} messages (TRL's conversational `prompt`), checked
    # with its lines by `chat_problems` when the suite expands.
    question: str | list[Any]
    answer: str
    # Factories, not `= {}`: pydantic deep-copies a mutable default for every question it builds.
    thresholds: dict[str, Bound] = Field(default_factory=dict)
    verifier: dict[str, Any] = Field(default_factory=dict)

    @field_validator("question", mode="before")
    @classmethod
    def _text_or_chat(cls, v):
        if isinstance(v, (str, list)):
            return v
        # Its own error type: the message is shown as it is (a ValueError's gets "Value error, ").
        raise PydanticCustomError("text_or_chat", "expected text or a list of chat messages ({role, content}), "
                                  "got {got}", {"got": _short(v)})

    @field_validator("id", "answer", mode="before")
    @classmethod
    def _scalar_to_str(cls, v):
        if type(v) is str:  # nearly always: no further checks
            return v
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise ValueError("must be a string or a number")
        return str(v)


def _dotted_path(v: str | None) -> str | None:
    if v is not None and (not v or any(not part for part in v.split("."))):
        raise ValueError(f"{_short(v)} is not a column name or a dotted path to one (e.g. problem.text)")
    return v


DottedPath = Annotated[str, AfterValidator(_dotted_path)]


class QuestionSource(_Strict):
    """Questions read from a dataset, so it is referenced, never copied into the suite: a local
    file or folder (`source`) or a Hugging Face Hub dataset (`hf`, with `datasets.load_dataset`'s
    `name` as `config`, `split`, `revision`). Read by rlhf_eval/sources.py, which says the formats."""

    source: str | None = None  # .jsonl, .jsonl.gz, .json, .csv, .tsv, .parquet, or a folder saved by datasets
    hf: str | None = None  # a Hub dataset id, e.g. openai/gsm8k
    config: str | None = None  # the dataset's configuration (load_dataset's `name`), e.g. main
    split: str | None = None  # e.g. test; may be left out when the dataset has one split
    revision: str | None = None  # hf: a branch, tag or commit of the dataset repository
    question_field: DottedPath = "question"
    answer_field: DottedPath = "answer"
    id_field: DottedPath | None = None
    fields: dict[str, DottedPath] = Field(default_factory=dict)  # more prompt fields: {name: dotted path}
    id_prefix: str | None = None
    answer_regex: str | None = None
    # Strict: `shuffle: "yes"` or a seed `true` is a mistake, not a choice.
    shuffle: Annotated[bool, Strict()] = False  # as datasets' .shuffle(seed=shuffle_seed), before offset/limit
    shuffle_seed: Annotated[int, Strict()] = Field(42, ge=0)
    offset: int = Field(0, ge=0)
    limit: int | None = Field(None, ge=1)

    @field_validator("answer_regex")
    @classmethod
    def _compiles(cls, v):
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"answer_regex does not compile: {exc}") from None
        return v

    @field_validator("hf")
    @classmethod
    def _hub_id(cls, v):
        if v is not None and not _HUB_ID_RE.fullmatch(v):
            raise ValueError(f"{_short(v)} is not a Hub dataset id (owner/name, e.g. openai/gsm8k); "
                             "a local file or folder goes in source")
        return v

    @field_validator("fields")
    @classmethod
    def _field_names(cls, v):
        for name in v:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or name in ("question", "answer", "id"):
                raise ValueError(f"{_short(name)} cannot name a prompt field (letters, digits and _, not question, "
                                 "answer or id: those have their own *_field keys)")
        return v

    @model_validator(mode="after")
    def _one_place(self):
        if (self.source is None) == (self.hf is None):
            raise ValueError("give source (a local file or folder) or hf (a Hugging Face Hub dataset id), "
                             + ("not both" if self.source is not None else "e.g. source: data/test.jsonl"))
        if self.revision is not None and self.hf is None:
            raise ValueError("revision is for a Hub dataset (hf:); a local source has none")
        if "shuffle_seed" in self.model_fields_set and not self.shuffle:
            raise ValueError("shuffle_seed is set but shuffle is not; add shuffle: true")
        return self


_HUB_ID_RE = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


class SuiteSpec(_Strict):
    suite: str
    description: str = ""
    model: ModelConfig
    samples: int = Field(ge=1, le=1000)
    seed: int = Field(0, ge=0, lt=2**31 - 1000)
    # A template (text), or a chat: a list of {role, content} messages whose contents are templates.
    prompt: str | list[Any] = "{question}"
    verifier: VerifierConfig = VerifierConfig()
    rewards: Rewards = Rewards()  # the built-in `accuracy` reward function's setting
    # TRL's names and shapes (GRPOTrainer(reward_funcs=...), GRPOConfig.reward_weights, the keys of a
    # `trl grpo --config` recipe), so a team's recipe copies over; None: [accuracy], weight 1.
    reward_funcs: list[str] | None = Field(None, min_length=1)
    # `true` (or "2") is no weight, though pydantic would read it as 1.0 (2.0); `2e0` is (see Number).
    reward_weights: list[Number] | None = Field(None, min_length=1)
    dpo: DPOConfig = DPOConfig()
    grpo: GRPOConfig = GRPOConfig()
    thresholds: dict[str, Bound] = {}
    suite_thresholds: dict[str, Bound] = {}
    questions: list[QuestionSpec] | QuestionSource

    @field_validator("suite")
    @classmethod
    def _name_is_a_folder_name(cls, v):
        if not _ID_RE.fullmatch(v):
            raise ValueError("must be letters, digits, '.', '_' or '-' (it names the cassette folder)")
        return v

    @field_validator("prompt", mode="before")
    @classmethod
    def _template_or_chat(cls, v):
        if isinstance(v, (str, list)):
            return v
        raise ValueError(f"expected a template such as 'Solve: {{question}}' or a list of chat messages "
                         f"({{role, content}}), got {_short(v)}")

    @field_validator("verifier", mode="before")
    @classmethod
    def _verifier_shorthand(cls, v):
        return {"name": v} if isinstance(v, str) else v


@dataclass(frozen=True)
class Question:
    id: str
    question: str | list[dict[str, str]]  # text, or a chat sent as it is (see `Suite.render_prompt`)
    answer: str  # the reference the verifier compares against
    fields: dict[str, Any]  # every prompt field, `question` included
    thresholds: dict[str, Bound]  # suite thresholds merged with this question's overrides
    verifier_options: dict[str, Any]
    index: int  # position in the suite, for stable report order
    line: int | None  # where it is defined (suite file or JSONL source)


@dataclass(frozen=True)
class Suite:
    spec: SuiteSpec
    path: Path
    questions: list[Question] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.suite

    # Cached (the spec is frozen): read for every question scored.
    @functools.cached_property
    def reward_funcs(self) -> list[tuple[str, float]]:
        """(name, weight) of each reward function, in the suite's order: `reward_funcs` with
        `reward_weights` (TRL's default 1.0 each), or the built-in accuracy alone."""
        names = self.spec.reward_funcs or [DEFAULT_REWARD]
        weights = self.spec.reward_weights or [1.0] * len(names)
        return list(zip(names, (float(w) for w in weights)))

    @functools.cached_property
    def verdict_rewards(self) -> dict[str, float]:
        """The `rewards:` table, verdict -> reward (the built-in accuracy reward's setting)."""
        return dict(self.spec.rewards)

    @property
    def chat(self) -> bool:
        """Whether this suite's prompts are chats (lists of messages), not text: its prompt is a
        list of messages, or its questions are (a suite's questions are all one or the other)."""
        return isinstance(self.spec.prompt, list) or bool(self.questions) and isinstance(self.questions[0].question,
                                                                                           list)

    def render_prompt(self, question: Question) -> str | list[dict[str, str]]:
        """The prompt as sent. Text for a text template (`model.system_instruction`, if any, is sent
        beside it, as today). For a chat — the suite's prompt is a list of messages, or the question
        is one — the whole conversation, as TRL's conversational `prompt`: a list of
        `{"role": "system"|"user"|"assistant", "content": str}` ending with the user's turn, each
        content rendered, with `model.system_instruction` (if any) as its first, system, message."""
        template = self.spec.prompt
        if isinstance(question.question, list):
            messages = [{"role": m["role"], "content": m["content"]} for m in question.question]
        elif isinstance(template, list):
            messages = [{"role": m["role"], "content": render(m["content"], question.fields)} for m in template]
        else:
            return render(template, question.fields)
        system = self.spec.model.system_instruction
        return [{"role": "system", "content": system}, *messages] if system else messages

    def question(self, question_id: str) -> Question:
        for q in self.questions:
            if q.id == question_id:
                return q
        raise KeyError(question_id)


def render(template: str, fields: dict[str, Any]) -> str:
    """Fill `{name}` placeholders; `{{`/`}}` are literal braces, so LaTeX such as `\\boxed{}` is safe."""
    out = _PLACEHOLDER_RE.sub(lambda m: str(fields[m.group(1)]), template)
    return out.replace("{{", "{").replace("}}", "}")


def placeholders(template: str | list) -> set[str]:
    """The `{name}` fields a template (text, or a chat's message contents) fills."""
    if isinstance(template, list):
        return {name for m in template if isinstance(m, dict) and isinstance(m.get("content"), str)
                for name in _PLACEHOLDER_RE.findall(m["content"])}
    return set(_PLACEHOLDER_RE.findall(template))


#: The roles of a chat message: TRL's conversational format (OpenAI's chat roles).
CHAT_ROLES = ("system", "user", "assistant")
# Other chat formats' names for them (ShareGPT's from/value, Gemini's "model"), named in the error.
_ROLE_ALIASES = {"human": "user", "gpt": "assistant", "model": "assistant", "bot": "assistant",
                 "developer": "system"}


def chat_problems(messages: list, where: str) -> list[tuple[tuple, str]]:
    """What is wrong with a chat (`where` names it in messages, e.g. "prompt"): (key path inside
    it, one line) each. A chat is a non-empty list of `{role, content}` mappings, roles
    system/user/assistant, content non-empty text, at most one system message and only first, the
    last message the user's (the model answers it)."""
    if not messages:
        return [((), f"{where}: an empty list of messages; give at least the user's message")]
    problems: list[tuple[tuple, str]] = []
    for i, m in enumerate(messages):
        at = f"{where}[{i}]"
        if not isinstance(m, dict):
            problems.append(((i,), f"{at}: expected a message {{role, content}}, got {_short(m)}"))
            continue
        # A key set to null is no key: Arrow gives every message of a column every key any message
        # has (`name: None` on all when one has a name), and chat templates skip a null one.
        unknown = [k for k in m if k not in ("role", "content") and m[k] is not None]
        if unknown:
            key = str(unknown[0])
            hint = " (ShareGPT's from/value: map them to role/content)" if key in ("from", "value") else \
                _closest(key, ["role", "content"])
            problems.append(((i, key), f"{at}: unknown key {_short(key)}{hint}; a message has role and content"))
            continue
        missing = [k for k in ("role", "content") if k not in m]
        if missing:
            problems.append(((i,), f"{at}: no {missing[0]}; a message is {{role: user, content: ...}}"))
            continue
        role, content = m["role"], m["content"]
        if role not in CHAT_ROLES:
            meant = _ROLE_ALIASES.get(role) if isinstance(role, str) else None
            hint = f" (write {meant!r})" if meant else _closest(role, CHAT_ROLES)
            problems.append(((i, "role"), f"{at}.role: unknown role {_short(role)}{hint}; roles are "
                             f"{', '.join(CHAT_ROLES)}"))
        elif role == "system" and i:
            problems.append(((i, "role"), f"{at}: a system message comes first, and only once; move it to the "
                             "start (Gemini takes one system instruction)"))
        if not isinstance(content, str):
            kind = "a list of parts (multimodal content)" if isinstance(content, list) else _short(content)
            problems.append(((i, "content"), f"{at}.content: expected text, got {kind}; rlhf-eval sends text "
                             "messages"))
        elif not content.strip():
            problems.append(((i, "content"), f"{at}.content: empty; the APIs refuse an empty message"))
    last = messages[-1]
    if not problems and last.get("role") != "user":
        problems.append(((len(messages) - 1, "role"), f"{where}[{len(messages) - 1}]: the last message is "
                         f"{last.get('role')!r}; a prompt ends with the user's message, which the model answers "
                         "(drop a trailing assistant answer from the chat)"))
    return problems


def load_suite(path: str | Path) -> Suite:
    """Read, validate and expand one suite file. Raises `SuiteError` (one line) on any problem."""
    # A suite builds a few objects per line and no reference cycles: the cyclic collector would
    # only walk the heap again and again (in a long pytest session, everything earlier tests left).
    with _without_gc():
        return _load_suite(Path(path))


@contextlib.contextmanager
def _without_gc():
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _load_suite(path: Path) -> Suite:
    raw = _read_suite_file(path)
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")  # a byte order mark is no part of the YAML
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SuiteError(path, line, "not UTF-8 text; save the suite as UTF-8") from None
    try:
        data, lines = load_with_lines(text)
    except YamlError as exc:
        raise SuiteError(path, exc.line, exc.message) from None
    if not isinstance(data, dict):
        raise SuiteError(path, 1, "a suite must be a YAML mapping with `suite`, `model`, `samples` and `questions`")
    if not {"suite", "model", "samples", "questions"} & data.keys():
        # Some other YAML file matched the suite patterns: listing every key it lacks would be noise.
        raise SuiteError(path, 1, "not a suite: none of `suite`, `model`, `samples`, `questions` is here; a suite "
                                  "starts with `suite: <name>` "
                                  "(keep other YAML files out of the rlhf_suite_files patterns)")
    try:
        spec = SuiteSpec.model_validate(data)
    except ValidationError as exc:
        raise SuiteError.joined(_schema_problems(path, exc, lines, data)) from None
    return _expand(spec, path, lines)


MAX_SUITE_BYTES = 50_000_000  # a suite this big should hold its questions in a JSONL file


def _read_suite_file(path: Path) -> bytes:
    """The file's bytes; SuiteError when it is not a readable regular file of sane size (a FIFO or
    a device would block or never end)."""
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise SuiteError(path, None, "cannot read the file (it is a directory); name a suite file")
        if not stat.S_ISREG(info.st_mode):
            raise SuiteError(path, None, "cannot read the file (it is not a regular file); a suite is a YAML file")
        if info.st_size > MAX_SUITE_BYTES:
            raise SuiteError(path, None, f"the file is {info.st_size / 1e6:.0f} MB, "
                             f"over the {MAX_SUITE_BYTES / 1e6:.0f} MB "
                             "a suite may be; put the questions in a JSONL file (questions: {source: ...})")
        return path.read_bytes()
    except OSError as exc:
        raise SuiteError(path, None, _unreadable(path, exc), as_given=path.is_symlink()) from None


def _unreadable(path: Path, exc: OSError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"cannot read the file ({exc.strerror}); make it readable (chmod u+r) or move it away"
    if exc.errno == errno.ENOENT and path.is_symlink():
        return f"cannot read the file (a link to {os.readlink(path)!r}, which does not exist); fix or remove the link"
    return f"cannot read the file ({exc.strerror or exc}); check the path"


def _expand(spec: SuiteSpec, path: Path, lines: dict) -> Suite:
    """The suite's questions, checked; SuiteError listing every problem found (one per question at most)."""
    def err(keypath, message):
        return SuiteError(path, line_of(lines, keypath), message)

    problems: list[SuiteError] = []
    options, problem = _checked_verifier(spec.verifier.name, spec.verifier.options)
    if problem:
        problems.append(err(("verifier",), f"verifier: {problem}"))
    reward_funcs, reward_problems = _reward_problems(spec, err)
    problems += reward_problems
    problems += _metric_problems(spec.thresholds, QUESTION_METRICS, ("thresholds",), err, QUESTION_INTERVALS,
                                 samples=spec.samples)
    problems += _metric_problems(spec.suite_thresholds, SUITE_METRICS, ("suite_thresholds",), err, SUITE_INTERVALS)

    chat_prompt = isinstance(spec.prompt, list)
    if isinstance(spec.prompt, list):  # `chat_prompt`, tested again here so the type narrows
        problems += [err(("prompt",) + at, message) for at, message in chat_problems(spec.prompt, "prompt")]
        setting = _chat_setting_problem(spec, _has_system(spec.prompt))
        if setting:
            problems.append(err(("prompt",), f"prompt: {setting}"))
    used = placeholders(spec.prompt)
    if "question" not in used:
        problems.append(err(("prompt",), "prompt has no {question} placeholder in any message; add it to the "
                            "user's message" if chat_prompt else
                            "prompt has no {question} placeholder; add it where the question goes"))
    if "answer" in used:
        problems.append(err(("prompt",), "prompt uses {answer}: the ground truth must never reach the model; "
                            "write {{answer}} for literal braces"))

    inline = isinstance(spec.questions, list)
    verifier = None if problem else spec.verifier.name
    try:
        if isinstance(spec.questions, list):  # `inline`, tested again here so the type narrows
            raw_questions = [(q, line_of(lines, ("questions", i)), ("questions", i))
                             for i, q in enumerate(spec.questions)]
            where_path = str(path)
        else:
            from .sources import read_source  # imports this module: here, not at the top
            raw_questions, where_path = read_source(spec.questions, path, lines, verifier)
    except SuiteError as exc:
        raise SuiteError.joined(problems + exc.problems) from None
    seen: dict[str, int | None] = {}
    # A prompt field no question has is one problem, not one per question; {answer} is reported above.
    unfilled = {"answer"}

    # Answers the verifier has read with the suite's own options: the same answer (`7`, `B`) on many
    # questions is checked once.
    readable: set[str] = set()
    # The first question's format (text or chat) and id: a suite's prompts are all one (TRL's
    # datasets are), and a problem every chat question shares is reported once.
    first_kind: list[tuple[bool, str]] = []
    chat_reported: set[str] = set()

    def chat_question(index: int, q: QuestionSpec, qline: int | None, keypath: tuple) -> None:
        """SuiteError for a question that is a chat (a list of messages) and cannot be sent as one."""
        assert isinstance(q.question, list)
        found = chat_problems(q.question, f"questions[{index}] ({_clip(q.id, 40)}).question")
        if found:
            at, message = found[0]
            raise SuiteError(where_path, line_of(lines, keypath + ("question",) + at) if inline else qline, message)
        shared = None
        if spec.prompt != "{question}":
            shared = (f"question {_short(q.id)} is a chat (a list of messages), which is sent as it is: the suite's "
                      "prompt must be the default {question}; remove prompt (a system message goes in "
                      "model.system_instruction)")
        else:
            setting = _chat_setting_problem(spec, _has_system(q.question))
            if setting:
                shared = f"question {_short(q.id)} is a chat: {setting}"
        if shared:
            key = shared.split(": ", 1)[1]
            if key in chat_reported:
                raise _Reported()
            chat_reported.add(key)
            raise SuiteError(where_path, qline, shared)

    def question(index: int, q: QuestionSpec, qline: int | None, keypath: tuple) -> Question:
        """The question, or SuiteError for its first problem."""
        if not _ID_RE.fullmatch(q.id):
            raise SuiteError(where_path, qline, f"question id {_short(q.id)} must be letters, digits, '.', '_' or '-' "
                             "(it names the cassette file)")
        if q.id in seen:
            raise SuiteError(where_path, qline, f"duplicate question id {_short(q.id)} (first at line {seen[q.id]}); "
                             "ids must be unique within a suite")
        seen[q.id] = qline
        is_chat = isinstance(q.question, list)
        if not first_kind:
            first_kind.append((is_chat, q.id))
        elif first_kind[0][0] != is_chat:
            kinds = ("text", "a chat (a list of messages)")
            raise SuiteError(where_path, qline, f"question {_short(q.id)} is {kinds[is_chat]} but question "
                             f"{_short(first_kind[0][1])} is {kinds[first_kind[0][0]]}; a suite's prompts are all "
                             "text or all chats (TRL's datasets hold one format)")
        if is_chat:
            chat_question(index, q, qline, keypath)
        extra = dict(q.model_extra or {})
        fields = {"question": q.question, **extra}
        taken = fields.keys() & _HARNESS_ARGUMENTS
        if taken:
            raise SuiteError(where_path, qline, f"question {_short(q.id)}: field {min(taken)!r} is an argument "
                             "rlhf-eval gives reward functions; rename it")
        missing = used - fields.keys()
        if missing:
            name = sorted(missing)[0]
            if missing <= unfilled:
                raise _Reported()
            unfilled.update(missing)
            raise SuiteError(where_path, qline, f"prompt uses {{{name}}} but question {_short(q.id)} has no field "
                             f"{name!r}; add it to the question or remove it from the prompt")
        if inline and extra:
            unused = sorted(extra.keys() - used)
            if unused:
                bad = unused[0]
                hint = _hint(bad, ["id", "question", "answer", "thresholds", "verifier"] + sorted(used))
                raise SuiteError(where_path, line_of(lines, keypath + (bad,)),
                                 f"questions[{index}] ({q.id}): unknown key {_short(bad)}{hint}; "
                                 "extra question fields must appear in the prompt as {" + _clip(bad, 40) + "}")
        if q.thresholds:
            threshold_problems = _metric_problems(q.thresholds, QUESTION_METRICS, keypath + ("thresholds",), err,
                                                  QUESTION_INTERVALS, f"questions[{index}] ({q.id}).thresholds",
                                                  samples=spec.samples)
            if threshold_problems:
                raise threshold_problems[0]
        own = options
        if q.verifier and not problem:
            own, own_problem = _checked_verifier(spec.verifier.name, {**options, **q.verifier})
            if own_problem:
                raise err(keypath + ("verifier",), f"questions[{index}] ({q.id}).verifier: {own_problem}")
        if not q.answer.strip():
            raise SuiteError(where_path, qline, f"question {_short(q.id)} has an empty answer")
        if isinstance(q.question, str) and not q.question.strip():  # the APIs refuse an empty message
            raise SuiteError(where_path, qline, f"question {_short(q.id)} has an empty question")
        if not problem and not (own is options and q.answer in readable):
            try:  # a reference the verifier cannot read is a data bug, not a model failure: catch it now
                verify("", q.answer, spec.verifier.name, **own)
            except VerifierError as exc:
                raise SuiteError(where_path, qline,
                                 f"question {_short(q.id)}: answer {_short(q.answer)}: {exc}") from None
            if own is options:
                readable.add(q.answer)
        return Question(id=q.id, question=_as_chat(q.question) if isinstance(q.question, list) else q.question,
                        answer=q.answer,
                        fields=fields,
                        thresholds={**spec.thresholds, **q.thresholds}, verifier_options=own,
                        index=index, line=qline)

    questions: list[Question] = []
    for index, (q, qline, keypath) in enumerate(raw_questions):
        try:
            questions.append(question(index, q, qline, keypath))
        except SuiteError as exc:
            problems.append(exc)
        except _Reported:
            pass
    if not raw_questions:
        problems.append(err(("questions",), "the suite has no questions"))
    if not problems:
        problems += _reward_argument_problems(spec, reward_funcs, questions, err)
    if problems:
        raise SuiteError.joined(problems)
    return Suite(spec=spec, path=path, questions=questions)


def _has_system(messages: list) -> bool:
    return bool(messages) and isinstance(messages[0], dict) and messages[0].get("role") == "system"


def _as_chat(messages: list) -> list[dict[str, str]]:
    """A checked chat as plain `{role, content}` dicts (a copy: the spec stays as written)."""
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _chat_setting_problem(spec: SuiteSpec, has_system: bool) -> str | None:
    """Why the suite's settings cannot send a chat prompt (one with a system message when
    `has_system`), or None."""
    model = spec.model
    if model.provider == "openai" and model.endpoint == "completions":
        return "model.endpoint completions sends text, not messages; use endpoint: chat for a chat prompt"
    if has_system and model.system_instruction:
        return ("it has a system message and model.system_instruction is set; keep one of them (the model takes "
                "one system instruction)")
    for where, scorer in (("model.scorer", model.scorer), ("dpo.reference", spec.dpo.reference)):
        if isinstance(scorer, ScorerConfig) and scorer.provider == "openai":
            return (f"{where} (provider openai) scores text through /v1/completions, which cannot apply a chat "
                    "template; score a chat prompt with provider hf, which applies the tokenizer's chat template")
    return None


def _reward_problems(spec: SuiteSpec, err) -> tuple[list[RewardFunction], list[SuiteError]]:
    """The suite's reward functions (those that resolve), and a SuiteError for each unknown or
    unloadable name, a name given twice (or one function under two names), weights that do not pair
    with the names, and a `rewards:` table no function reads."""
    names = spec.reward_funcs or [DEFAULT_REWARD]
    found: list[RewardFunction] = []
    problems: list[SuiteError] = []
    for i, name in enumerate(names):
        where = ("reward_funcs", i) if spec.reward_funcs else ("rewards",)
        if name in names[:i]:
            problems.append(err(where, f"reward_funcs[{i}]: {_short(name)} is named twice; each reward function "
                                "counts once (give it a larger weight in reward_weights instead)"))
            continue
        try:
            fn = resolve_reward(name)
        except RegistryError as exc:
            problems.append(err(where, f"reward_funcs[{i}]: {exc}"))
            continue
        same = next((j for j, other in enumerate(found) if other.run is fn.run), None)
        if same is not None:  # two names of one function (`accuracy`, `rlhf_eval.rewards:accuracy`)
            problems.append(err(where, f"reward_funcs[{i}]: {_short(name)} is the same function as "
                                f"{_short(found[same].name)}; each reward function counts once (give it a larger "
                                "weight in reward_weights instead)"))
            continue
        found.append(fn)
    weights = spec.reward_weights
    if weights is not None and len(weights) != len(names):
        problems.append(err(("reward_weights",), f"reward_weights: {len(weights)} weight{'s' * (len(weights) != 1)} "
                            f"for {len(names)} reward function{'s' * (len(names) != 1)} ({', '.join(names)}); give "
                            "one weight per function, in the same order, as TRL's GRPOConfig.reward_weights"))
    if "rewards" in spec.model_fields_set and DEFAULT_REWARD not in names:
        problems.append(err(("rewards",), f"rewards: the verdict table is the setting of the built-in "
                            f"{DEFAULT_REWARD!r} reward function, which reward_funcs does not name; add "
                            f"{DEFAULT_REWARD} to reward_funcs, or remove rewards"))
    return found, problems


def _reward_argument_problems(spec: SuiteSpec, funcs: list[RewardFunction], questions: list[Question],
                              err) -> list[SuiteError]:
    """A SuiteError for each argument a reward function requires that no question has (TRL's
    `accuracy_reward` takes `solution`; a suite's reference is `answer`)."""
    given = set(HARNESS_ARGUMENTS) | {"answer"}
    for q in questions:
        given |= q.fields.keys()
    problems = []
    for i, fn in enumerate(funcs):
        missing = [name for name in fn.needs if name not in given]
        if missing:
            where = ("reward_funcs", i) if spec.reward_funcs else ("rewards",)
            problems.append(err(where, f"reward_funcs[{i}]: reward function {fn.name!r} requires the argument "
                                f"{missing[0]!r}, which no question has; it "
                                f"gets {', '.join(sorted(given))} (a JSONL column arrives under its own name, the "
                                "reference as answer)"))
    return problems


_HARNESS_ARGUMENTS = frozenset(HARNESS_ARGUMENTS)


class _Reported(Exception):
    """A question's problem already reported for another question."""


def _checked_verifier(name: str, options: dict) -> tuple[dict, str | None]:
    """`options` as the verifier takes them, and what is wrong with them (None when nothing)."""
    try:
        return prepared_options(name, options), None
    except VerifierError as exc:
        return options, str(exc)
    except RecursionError:  # re.compile recurses once per nested group
        return options, "regex verifier: the pattern nests too deeply"


def _metric_problems(thresholds: dict, allowed, keypath, err, with_interval, shown_key: str = "",
                     samples: int | None = None) -> list:
    """A SuiteError for each threshold naming an unknown metric, an interval it lacks, a fraction
    bound outside 0..1, or (given a question's `samples`) a count of traces above it as a minimum."""
    prefix = shown_key or ".".join(map(str, keypath))
    problems = []
    for name, bound in thresholds.items():
        shown = f"{prefix}.{_clip(name, 40)}"
        if name not in allowed:
            problems.append(err(keypath + (name,), f"{shown}: unknown metric{_closest(name, allowed)}; "
                                f"known: {', '.join(allowed)}"))
        elif bound.on != "point" and name not in with_interval:
            problems.append(err(keypath + (name, "on"), f"{shown}.on: {name} has no interval; "
                                f"`on: {bound.on}` works for {', '.join(with_interval)}"))
        elif name in FRACTIONS:
            problems += [err(keypath + (name, side), f"{shown}.{side}: {name} is a fraction from 0 to 1, "
                             f"not {value:g} (for 50% write 0.5)")
                         for side, value in (("min", bound.min), ("max", bound.max))
                         if value is not None and not 0.0 <= value <= 1.0]
        elif name in TRACE_COUNTS and samples is not None and bound.min is not None and bound.min > samples:
            problems.append(err(keypath + (name, "min"), f"{shown}.min: {bound.min:g} can never be met: a question "
                                f"has {samples} traces (samples: {samples})"))
    return problems


def _closest(word: str, candidates) -> str:
    match = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


_EXPECTED = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
    "bool_parsing": "true or false", "string_type": "a string", "dict_type": "a mapping",
    "list_type": "a list", "model_type": "a mapping", "model_attributes_type": "a mapping",
    "finite_number": "a finite number",
}


def _get(value: Any, key: str) -> Any:
    """`value[key]` where `value` is a mapping; None where the user wrote something else (`dpo: 5`)."""
    return value.get(key) if isinstance(value, dict) else None


def _schema_problems(path: Path, exc: ValidationError, lines: dict, data: dict) -> list[SuiteError]:
    """pydantic's errors, one SuiteError each with its YAML line and a suggestion: first the one
    most worth reading (an unknown key before the required key it misspells), then file order."""
    problems: list[tuple[bool, int, SuiteError]] = []
    for e in _on_written_branch(exc.errors(), data):
        loc = tuple(x for x in e["loc"] if not (isinstance(x, str) and (
            x.startswith(("list[", "function-", "literal[")) or x in ("QuestionSource", "ScorerConfig"))))
        problem = _schema_problem(path, e, loc, lines, data)
        if problem is not None:
            problems.append((e["type"] != "extra_forbidden", len(problems), problem))
    first = min(problems, key=lambda p: p[:2])
    rest = sorted((p for p in problems if p is not first), key=lambda p: (p[2].line or 0, p[1]))
    unique = {str(p[2]): p[2] for p in [first, *rest]}  # a union's branches can repeat a problem
    return list(unique.values())


def _on_written_branch(errors: list, data: dict) -> list:
    """Unions (questions: a list | a JSONL source; dpo.reference: "none" | a scorer): only the
    errors of the branch whose shape the user wrote."""
    wanted = {("questions",): "list" if isinstance(data.get("questions"), list) else "QuestionSource",
              ("dpo", "reference"): "literal" if isinstance(_get(data.get("dpo"), "reference"), str)
              else "ScorerConfig"}
    for prefix, branch in wanted.items():
        n = len(prefix)
        errors = [e for e in errors if not (tuple(e["loc"][:n]) == prefix and len(e["loc"]) > n
                                            and isinstance(e["loc"][n], str)
                                            and branch not in e["loc"][n])] or errors
    return errors


def _schema_problem(path: Path, e: dict, loc: tuple, lines: dict, data: dict) -> SuiteError | None:
    shown = _dotted(loc, data)
    kind, line = e["type"], line_of(lines, loc)
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1], data)
        msg = f"{shown}: unknown key{_hint(loc[-1], list(parent.model_fields) if parent else [])}"
    elif kind == "missing":
        typo = _misspelling(loc, data)
        if typo is not None:  # the typo is the useful report; a strict model reports it by itself
            if _forbids_extra(_model_at(loc[:-1], data)):
                return None
            return SuiteError(path, line_of(lines, loc[:-1] + (typo,)),
                              f"{_dotted(loc[:-1] + (typo,), data)}: unknown key{_hint(typo, [loc[-1]])}")
        msg = f"{shown}: required key is missing"
        line = line_of(lines, loc[:-1])
    elif kind in _EXPECTED:
        msg = f"{shown}: expected {_EXPECTED[kind]}, got {_short(e.get('input'))}"
    elif kind == "literal_error":
        msg = f"{shown}: {e['msg'].replace('Input should be', 'expected')}, got {_short(e.get('input'))}"
    else:
        msg = f"{shown}: {e['msg'].removeprefix('Value error, ')}"
    return SuiteError(path, line, msg)


# Keys people write for a field, too unlike its name for a spelling match: key -> (field, why).
_MEANT = {
    "k": ("samples", "the number of traces per question is `samples`"),
    "n": ("samples", "the number of traces per question is `samples`"),
    "model_name": ("name", "the model is named by model.name"),
}


def _hint(key: Any, fields: list) -> str:
    """' (did you mean …?)' or a `_MEANT` explanation for an unknown `key` among `fields`; or ''."""
    meant = _MEANT.get(str(key))
    if meant and meant[0] in fields:
        return f"; {meant[1]}"
    if str(key) in VLLMConfig.model_fields and "vllm" in fields:
        return f"; {key} is a vLLM engine setting: write it under model.vllm"
    return _closest(key, fields)


def _misspelling(loc: tuple, data: Any) -> str | None:
    """The key written beside a missing one that misspells it (`anwser` for `answer`), if any."""
    parent = _value_at(loc[:-1], data)
    if not isinstance(parent, dict):
        return None
    model = _model_at(loc[:-1], data)
    known = set(model.model_fields) if model else set()
    for key in parent:
        if key not in known and (_MEANT.get(key, ("",))[0] == loc[-1] or _closest(key, [loc[-1]])):
            return key
    return None


def _forbids_extra(model) -> bool:
    return model is not None and model.model_config.get("extra") == "forbid"


def _value_at(loc: tuple, data: Any) -> Any:
    node = data
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _short(value: Any, width: int = 60) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int too long for repr (YAML 1.1 sexagesimal `1:2:3…` can build one)
        text = f"<{type(value).__name__} too long to show>"
    return _clip(text, width)


def _dotted(loc: tuple, data: Any) -> str:
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            qid = (node[part].get("id")
                   if isinstance(node, list) and part < len(node) and isinstance(node[part], dict) else None)
            out += f"[{part}]" + (f" ({qid})" if qid is not None and out == "questions" else "")
        else:
            out += ("." if out else "") + str(part)
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    return out


def _model_at(loc: tuple, data: Any = None):
    """The pydantic model class that owns the keys at `loc` (for typo suggestions)."""
    if tuple(loc) == ("questions",) and isinstance((data or {}).get("questions"), dict):
        return QuestionSource
    if tuple(loc) == ("dpo", "reference"):
        return ScorerConfig
    model: Any = SuiteSpec
    pending_dict_value = None
    for part in loc:
        if pending_dict_value is not None:  # `part` is a key of a dict[str, Model]
            model, pending_dict_value = pending_dict_value, None
            continue
        if isinstance(part, int):
            continue
        if model is SuiteSpec and part == "questions":
            model = QuestionSpec
            continue
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return None
        ann = fields[part].annotation
        if get_origin(ann) is dict:
            pending_dict_value = get_args(ann)[1]
            model = None
        else:
            # `vertex: VertexConfig | None`: the model of an optional block
            options = get_args(ann) if get_origin(ann) in (Union, types.UnionType) else (ann,)
            model = next((a for a in options if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return model
