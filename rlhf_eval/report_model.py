"""The run report as typed models: Report → Suite → Question → Trace / Pair, plus the Comparison
against a baseline. `Report.load(path)` reads a JSON report, `report.dump(path)` writes one.

The written JSON is what these models hold, key for key: a field that was never set (an errored
question has no `prompt`, a run without a baseline no `comparison`) is left out, as before the
models existed, so reports written before and after them compare equal.

Every model allows fields it does not know and keeps them through load → dump: a report written by a
newer rlhf-eval of the same `REPORT_VERSION` (one that adds a field, as per-trace
`rewards_by_function` was added) still loads. Known fields are checked strictly when loading a file (a
string where a number belongs is an error, not converted), and a report of a newer version is
refused: its fields may mean something else.

A report without a `version` key (none was ever written so) is read as version 1; a dump always
writes the version.

Loading also refuses what the writer never writes and a reader would trip on: a suite name that is not
a folder name (it names the export's folder: "../x" would write outside it), a pair index that is not
one of the question's traces, a NaN or infinite number (JSON has none; 1e400 parses as infinity).

A file above `report_stream.STREAM_ABOVE_BYTES` is read a piece at a time (rlhf_eval.report_stream):
its suites' questions are then a sequence read from disk (rlhf_eval.spool), the rest as here; the same
Report and the same errors.

Errors: `Report.load` raises `ReportError` (one line: file, field path, what is wrong, what to do);
`Report.dump` raises OSError, ValueError (a NaN or infinite number, which JSON cannot hold; the
message names its field), or `credentials.SecretInOutput` (and writes nothing).
"""
from __future__ import annotations

import functools
import json
import math
import re
from pathlib import Path
from typing import Any, Iterator, Literal

from pydantic import (BaseModel, ConfigDict, Field, ValidationError, field_serializer, field_validator,
                      model_validator)
from pydantic_core import PydanticCustomError, PydanticSerializationError

from .credentials import write_chunks_without_secrets, write_without_secrets
from .paths import FOLDER_NAME_RE, FOLDER_NAME_RULE

# The shape of the written JSON. Bump it only when a key changes meaning or goes away (and keep
# loading the older version); adding an optional key needs no bump (readers allow unknown keys).
REPORT_VERSION = 1
WRITE_HINT = "write one with pytest --rlhf-report-json=PATH"
# A suite name or question id: it names a folder (cassettes, an export), so no '/', no '..', not empty.
# rlhf_eval.suite checks suite files with this same rule.


class ReportError(ValueError):
    """A report file (or report dict) that cannot be used; the message is one line."""


class _Model(BaseModel):
    # extra="allow": fields of a newer minor version (or another team's addition) survive load → dump.
    # strict: a file's "0.5" where a number belongs is an error; building in memory validates with
    # strict=False (numpy scalars become Python numbers there).
    # ser_json_inf_nan: NaN is written as a token `to_json` then refuses (pydantic would write null).
    model_config = ConfigDict(extra="allow", strict=True, ser_json_inf_nan="constants")


class Pair(_Model):
    """A DPO preference pair: indices into the question's traces; `margin` None when not scored."""
    chosen: int
    rejected: int
    margin: float | None = None


class Trace(_Model):
    """One sampled completion (rlhf_eval.types.Trace) with what the harness decided about it.

    logp / ref_logp: Σ of chosen-token log-probabilities (nats); reward: the verdict's reward;
    advantage: GRPO's group-normalised advantage."""
    text: str = ""
    finish_reason: str | None = None
    token_count: int | None = None
    logp: float | None = None
    seed: int | None = None
    model_version: str | None = None
    candidate_index: int = 0
    logp_source: str | None = None
    ref_logp: float | None = None
    ref_token_count: int | None = None
    reasoning: str = ""
    reasoning_tokens: int | None = None
    logp_note: str | None = None
    answer_missing: str | None = None
    system_fingerprint: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    # the request's billed usage, on its first trace (0 on its other candidates; rlhf_eval.types.charge_request)
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    verdict: str | None = None  # one of rlhf_eval.types.VERDICTS
    extracted: str | None = None
    detail: str = ""
    reward: float | None = None
    advantage: float | None = None
    # per reward function (TRL-style reward_funcs), when the suite has them; None: the function gave none
    rewards_by_function: dict[str, float | None] | None = None


class Failure(_Model):
    """A breached threshold (rlhf_eval.thresholds.ThresholdFailure); `value` None: not measurable."""
    metric: str
    value: int | float | None = None  # a count stays an int (pairs), as written
    bound: str = ""
    reason: str = ""


class QuestionMetrics(_Model):
    """Per-question metrics (rlhf_eval.evaluate.score_question), in the order it computes them."""
    k: int | None = None
    correct: int | None = None
    incorrect: int | None = None
    unparsable: int | None = None
    blocked: int | None = None
    truncated: int | None = None
    error: int | None = None
    accuracy: float | None = None
    pass_at_k: float | None = None
    unparsable_rate: float | None = None
    unique_traces: int | None = None  # distinct answer texts among the k traces
    pairs: int | None = None
    spread: float | None = None
    nonzero_advantages: int | None = None
    mean_tokens: float | None = None
    mean_reasoning_tokens: float | None = None
    mean_logp: float | None = None
    mean_ref_logp: float | None = None
    pairs_scored: int | None = None
    mean_margin: float | None = None
    reward_accuracy: float | None = None
    dpo_loss: float | None = None
    maj_at_k: float | None = None
    pass_at: list[float] | None = None  # pass@k for k = 1..k traces (index k - 1)
    pass_hat: list[float] | None = None  # pass^k, every one of k traces correct, for k = 1..k
    # token usage and cost (rlhf_eval.evaluate.token_usage); length bias (rlhf_eval.length_bias)
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    answer_tokens: int | None = None
    thinking_tokens: int | None = None
    cost_usd: float | None = None
    margin_per_token: float | None = None

    def get(self, key: str) -> Any:
        """The metric named `key` (a field or an extra one), None when absent."""
        return getattr(self, key, None)

    def items(self) -> list[tuple[str, Any]]:
        """(name, value) of the metrics the report holds, in its order."""
        return list(self.model_dump(exclude_unset=True).items())


Interval = list[float]  # [low, high] of a 95% interval


class Question(_Model):
    """One question's result; `metrics` is None (and `error` set) when it errored before scoring."""
    suite: str = ""
    id: str
    # its place in the suite's file; a 64-bit number, as the spool of a large report keeps it (a
    # file's 10**23 was an OverflowError traceback read streamed, not one line)
    index: int = Field(default=0, ge=-2**63, le=2**63 - 1)
    passed: bool = True
    # As sent: text, or a chat — TRL's conversational prompt, [{"role": ..., "content": ...}, ...]
    prompt: str | list[dict[str, Any]] | None = None
    answer: str | None = None
    # the question's fields as reward functions got them: dataset columns by their own names, an
    # inline question's extra keys, `question` (older reports: empty)
    columns: dict[str, Any] = Field(default_factory=dict)
    metrics: QuestionMetrics | None = None
    intervals: dict[str, Interval] = Field(default_factory=dict)
    dpo_unavailable: str | None = None  # why DPO metrics are unavailable
    failures: list[Failure] = Field(default_factory=list)
    unchecked: list[str] = Field(default_factory=list)
    traces: list[Trace] = Field(default_factory=list)
    pairs: list[Pair] = Field(default_factory=list)
    error: str | None = None  # why it could not be scored (one line)

    @property
    def result(self) -> Literal["ERROR", "pass", "FAIL"]:
        return "ERROR" if self.error else "pass" if self.passed else "FAIL"


class SuiteAggregates(_Model):
    """Suite-level metrics pooled over the scored questions (rlhf_eval.report.suite_aggregates)."""
    questions: int = 0
    questions_failed: int = 0
    traces: int = 0
    accuracy: float | None = None
    pass_at_k: float | None = None
    unparsable_rate: float | None = None
    pairs: int = 0
    mean_spread: float | None = None
    frac_zero_spread: float | None = None
    mean_tokens: float | None = None
    mean_reasoning_tokens: float | None = None
    dpo_unavailable: str | None = None
    maj_at_k: float | None = None
    mean_margin: float | None = None
    reward_accuracy: float | None = None
    dpo_loss: float | None = None
    unique_traces: int | None = None  # over the scored questions
    pass_at: list[float] | None = None  # the questions' pass@k curves averaged, k = 1..the fewest traces
    pass_hat: list[float] | None = None
    # token usage summed over the scored questions' traces, and its cost (None: `cost_unavailable` says why)
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    answer_tokens: int | None = None
    thinking_tokens: int | None = None
    cost_usd: float | None = None
    cost_unavailable: str | None = None
    # length bias over every scored pair (rlhf_eval.length_bias); None: DPO metrics unavailable, or the reason
    margin_per_token: float | None = None
    margin_length_corr: float | None = None
    margin_length_corr_unavailable: str | None = None
    intervals: dict[str, Interval] = Field(default_factory=dict)

    def get(self, key: str) -> Any:
        return getattr(self, key, None)


class RewardFunc(_Model):
    """A TRL-style reward function of the suite and its weight in the total reward."""
    name: str
    weight: float = 1.0


class Suite(_Model):
    """A suite's settings (what recomputing its metrics needs), aggregates and questions."""
    name: str
    path: str | None = None
    description: str | None = None
    model: dict[str, Any] = Field(default_factory=dict)  # rlhf_eval.suite.ModelSpec, dumped
    samples: int | None = None
    seed: int | None = None
    verifier: dict[str, Any] = Field(default_factory=dict)  # {"name": ..., **options}
    rewards: dict[str, float] = Field(default_factory=dict)  # verdict -> reward
    reward_funcs: list[RewardFunc] | None = None
    dpo: dict[str, Any] = Field(default_factory=dict)
    grpo: dict[str, Any] = Field(default_factory=dict)
    suite_thresholds: dict[str, dict[str, Any]] = Field(default_factory=dict)
    price: dict[str, Any] | None = None  # {input, output: USD per 1M tokens, source} (rlhf_eval.prices)
    aggregates: SuiteAggregates = Field(default_factory=SuiteAggregates)
    threshold_failures: list[str] = Field(default_factory=list)
    questions: list[Question]

    @field_validator("name")
    @classmethod
    def _name_is_a_folder_name(cls, v: str) -> str:
        if not FOLDER_NAME_RE.fullmatch(v):
            raise PydanticCustomError("suite_name", f"must be a suite name: {FOLDER_NAME_RULE} (it names a folder)")
        return v

    @property
    def failed(self) -> bool:
        """A suite threshold was breached or a question failed."""
        return bool(self.threshold_failures or self.aggregates.questions_failed)


class MetricChange(_Model):
    """One metric against the baseline: Δ = current − baseline, and whether the change is significant."""
    baseline: float | None = None
    current: float | None = None
    delta: float | None = None
    p_value: float | None = None
    test: str | None = None  # the test that gave p_value
    significant: bool = False
    worse: bool = False
    # Why one side has no value, when only one has (a number → None is a lost metric: significant and
    # worse, e.g. reward accuracy when every preference pair is gone); None otherwise.
    reason: str | None = None


class PreferenceFlip(_Model):
    """A (chosen answer, rejected answer) pair whose mean DPO margin changed sign since the baseline.
    "Flip" means this and only this in rlhf-eval (a trace whose verdict changed is a verdict change)."""
    chosen: str
    rejected: str
    baseline_margin: float
    current_margin: float
    direction: Literal["now rejected", "now preferred"] | None = None


class QuestionComparison(_Model):
    metrics: dict[str, MetricChange] = Field(default_factory=dict)
    flips: list[PreferenceFlip] = Field(default_factory=list)
    grpo_signal: str | None = None  # "lost: …" / "gained: …" when the reward spread went to / from zero


class SettingChange(_Model):
    """A suite setting that differs from the baseline's (values as the report's suite settings hold them)."""
    baseline: Any = None
    current: Any = None


class SuiteComparison(_Model):
    name: str
    aggregates: dict[str, MetricChange] = Field(default_factory=dict)
    questions: dict[str, QuestionComparison] = Field(default_factory=dict)  # by question id
    only_in_baseline: list[str] = Field(default_factory=list)
    only_in_current: list[str] = Field(default_factory=list)
    # settings that differ, by dotted key ("model.temperature", "reward_weights"), and the questions
    # (of both runs) whose prompt differs: what besides the change under test may explain a delta
    settings_changed: dict[str, SettingChange] = Field(default_factory=dict)
    prompts_changed: list[str] = Field(default_factory=list)

    @field_serializer("questions", mode="wrap")
    def _questions_read_whole(self, questions: Any, handler: Any) -> Any:
        # A comparison of a run whose questions are on disk keeps these on disk too
        # (rlhf_eval.comparison_spool): `Report.to_json` streams them; a dump of this model alone
        # reads them all.
        return handler(questions if isinstance(questions, dict) else dict(questions.items()))


class Comparison(_Model):
    """This run against a baseline report (rlhf_eval.compare.compare_reports)."""
    baseline: str = ""
    model_version_changed: bool = False
    note: str = ""  # `notes` joined by "; "
    notes: list[str] = Field(default_factory=list)  # one line each: model, settings, suites that did not run
    suites: list[SuiteComparison] = Field(default_factory=list)
    only_in_baseline: list[str] = Field(default_factory=list)  # suites of the baseline that did not run
    only_in_current: list[str] = Field(default_factory=list)  # suites the baseline does not have
    failures: list[str] = Field(default_factory=list)  # --rlhf-compare-fail regressions, one line each

    def suite(self, name: str) -> SuiteComparison | None:
        return next((s for s in self.suites if s.name == name), None)


class ShardSpec(_Model):
    """Which shard of a sharded run a report holds (rlhf_eval.shard): `index` of `count`, 1-based.
    `suite_sizes`: {suite name: how many questions its file has} for the suites the shard collected,
    so the merge can tell a complete shard from one that was interrupted or deselected (absent in
    reports of rlhf-eval before it)."""
    index: int
    count: int
    suite_sizes: dict[str, int] | None = None

    @model_validator(mode="after")
    def _a_shard_of_the_run(self) -> ShardSpec:
        if self.count < 1:
            raise PydanticCustomError("shard", f"count = {self.count}: a run has at least 1 shard")
        if not 1 <= self.index <= self.count:
            raise PydanticCustomError("shard", f"there is no shard {self.index} of {self.count}: shards are "
                                               f"numbered 1 to {self.count}")
        sizes = self.suite_sizes or {}
        negative = next((name for name, n in sizes.items() if n < 0), None)
        if negative is not None:
            raise PydanticCustomError("shard", f"suite_sizes: suite {negative} has {sizes[negative]} questions; "
                                               "a size is at least 0")
        return self


class Report(_Model):
    """The whole run: every suite with its settings, aggregates, questions and traces."""
    version: int = REPORT_VERSION
    # when, with what and from which suite files the report was made (rlhf_eval.provenance);
    # absent from reports written before it existed
    provenance: dict[str, Any] | None = None
    # the shard of a run split with --rlhf-shard I/N (rlhf-eval merge combines them); absent otherwise
    shard: ShardSpec | None = None
    suites: list[Suite]
    comparison: Comparison | None = None

    @model_validator(mode="after")
    def _version_is_always_written(self) -> Report:
        self.model_fields_set.add("version")  # a dump leaves out unset fields; never this one
        return self

    # -- reading

    @classmethod
    def load(cls, path: str | Path, what: str = "report", hint: str | None = None, *,
             stream: bool | None = None) -> Report:
        """Read a JSON report written by ``pytest --rlhf-report-json``; any problem is a one-line ReportError.

        A file larger than `report_stream.STREAM_ABOVE_BYTES` (16 MiB, about 1,000 questions of
        k = 8), or any file with `stream=True`, is read a piece at a time: its suites' questions go
        to a temporary file (rlhf_eval.spool) and are read back one at a time, so the memory does
        not grow with them (rlhf_eval.report_stream). Either way the same Report (`to_json` gives
        the same bytes) and the same errors."""
        if not isinstance(path, (str, Path)) or not str(path):
            raise ReportError(f"no {what} file given (expected a path, got {_clip(path)}); "
                              + (hint or WRITE_HINT))
        p = Path(path)
        from . import report_stream  # it reads Question and the checks from this module

        if stream is None:
            try:
                stream = p.is_file() and p.stat().st_size > report_stream.STREAM_ABOVE_BYTES
            except OSError:
                stream = False  # read_text says why below
        try:
            if stream:
                return report_stream.load_streamed(p, str(path), what)
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise read_error(path, what, hint, e) from None
        non_finite: list[str] = []  # the tokens of NaN / ±Infinity / 1e400: then find their field
        try:
            note = functools.partial(_float_noting_overflow, non_finite)
            data = json.loads(text, parse_constant=note, parse_float=note)
        except json.JSONDecodeError as e:
            raise ReportError(f"{path}:{e.lineno}: not valid JSON: {e.msg} (column {e.colno})") from None
        except RecursionError:
            raise ReportError(f"{path}: not a report: nested too deeply to read; {WRITE_HINT}") from None
        except ValueError:  # the only other one json raises: an integer of over 4300 digits (int's limit)
            raise ReportError(f"{path}: not a report: it holds a number of over 4300 digits; {WRITE_HINT}") from None
        return cls._validated(data, str(path), strict=True, check_finite=bool(non_finite))

    @classmethod
    def from_data(cls, data: Any, *, source: str = "report", strict: bool = True) -> Report:
        """Validate parsed JSON (or a report dict) into a Report; a problem is a one-line ReportError
        naming `source` and the field path. With `strict` (a file's data), a NaN or infinite number
        anywhere is refused too."""
        return cls._validated(data, source, strict=strict, check_finite=strict)

    @classmethod
    def _validated(cls, data: Any, source: str, *, strict: bool, check_finite: bool) -> Report:
        """from_data; `check_finite`: walk the data for a NaN or infinite number (`load` knows from
        the parse whether there is one, and skips the walk, a quarter of the load time, when not)."""
        if not isinstance(data, dict) or not isinstance(data.get("suites"), list):
            raise ReportError(f"{source}: not an rlhf-eval report (no 'suites' list); {WRITE_HINT}")
        check_version(data.get("version", REPORT_VERSION), source)
        try:
            report = cls.model_validate(data, strict=strict)
        except ValidationError as e:
            raise ReportError(problem_line(source, e)) from None
        except RecursionError:
            raise ReportError(f"{source}: not a report: nested too deeply to read; {WRITE_HINT}") from None
        problem = _bad_pair_index(report) or _bad_curve(report)
        if problem is None and check_finite and (bad := _non_finite(data)):
            problem = f"{bad[0]}: {bad[1]!r} is not a finite number (JSON has no NaN or infinity)"
        if problem:
            raise ReportError(f"{source}: {problem}; {FILE_FIX}")
        return report

    @classmethod
    def of(cls, report: Report | dict) -> Report:
        """`report` itself, or the dict validated into a Report (leniently: numpy numbers pass)."""
        return report if isinstance(report, Report) else cls.from_data(report, source="report dict", strict=False)

    # -- writing

    def to_dict(self) -> dict[str, Any]:
        """The report as the JSON `dump` writes holds it, as Python values (fields never set left
        out, unknown ones kept, tuples as lists)."""
        if self.streamed:  # its questions are on disk (rlhf_eval.spool): as its JSON holds them
            return json.loads(self.to_json())
        return self.model_dump(mode="json", exclude_unset=True, fallback=_jsonable)

    @property
    def streamed(self) -> bool:
        """A suite's questions are a sequence read from disk (rlhf_eval.spool), not a list in memory
        (or the comparison's entries of a suite are: rlhf_eval.comparison_spool)."""
        return any(not isinstance(s.questions, list) for s in self.suites) or bool(self._spooled_comparisons())

    def _spooled_comparisons(self) -> list[SuiteComparison]:
        c = self.comparison
        return [cs for cs in c.suites if not isinstance(cs.questions, dict)] if c is not None else []

    def json_chunks(self) -> Iterator[str]:
        """The text `to_json` gives, in pieces: the report without its questions, each question's
        own text nested at its place (a question read from disk at a time, for a streamed report).
        A secret inside a string is whole within one piece. Raises ValueError as `to_json` does."""
        suites = self.suites
        skeleton = self.model_copy(update={"suites": [s.model_copy(update={"questions": []}) for s in suites]})
        if self._spooled_comparisons():  # their entries are nested below, like the questions
            c = self.comparison
            assert c is not None
            skeleton.comparison = c.model_copy(update={"suites": [
                cs if isinstance(cs.questions, dict) else cs.model_copy(update={"questions": {}}) for cs in c.suites]})
        # each suite's `"questions": []` is a line of its own, at the suite's key depth (3): the
        # questions go there; no other line of the report is one (strings hold no newline)
        parts = _QUESTIONS_LINE.split(skeleton.to_json())
        if len(parts) != 2 * len(suites) + 1:
            raise AssertionError(f"{len(parts)} parts for {len(suites)} suites")  # a bug: the layout changed
        for n, suite in enumerate(suites):
            yield parts[2 * n]
            comma = parts[2 * n + 1]
            texts = suite.questions.json_texts() if hasattr(suite.questions, "json_texts") else (
                _question_text(q) for q in suite.questions)
            first = next(texts, None)
            if first is None:
                yield f'   "questions": []{comma}'
                continue
            yield '   "questions": [\n'
            yield _nested(first, suite, 0)
            for j, text in enumerate(texts, 1):
                yield ",\n" + _nested(text, suite, j)
            yield f"\n   ]{comma}"
        yield from _with_compared_questions(parts[-1], self.comparison)

    def to_json(self) -> str:
        """The report as `dump` writes it: the bytes `json.dumps(self.to_dict(), indent=1,
        ensure_ascii=False)` gives (as reports were written before these models), made by pydantic's
        serializer, 3-4× faster than the json module's indenting encoder (pure Python). Raises
        ValueError for a NaN or infinite number, which JSON cannot hold (naming its field)."""
        if self.streamed:
            return "".join(self.json_chunks())
        try:
            text, by_pydantic = model_json(self, allow_nan=False)
            return (_python_numbers(text) if by_pydantic else text) + "\n"
        except ValueError as e:
            bad = _non_finite(self.to_dict())  # walked on this error path only
            if bad is None:
                raise
            raise ValueError(f"Out of range float values are not JSON compliant: {bad[0]} is {bad[1]!r}") from e

    def dump(self, path: str | Path) -> None:
        """Write atomically, so a reader never sees half a report. Raises OSError, or SecretInOutput
        (and writes nothing) if the report would contain one of the run's secrets. A streamed
        report is written a piece at a time (`json_chunks`), never whole in memory."""
        if self.streamed:
            write_chunks_without_secrets(path, self.json_chunks())
        else:
            write_without_secrets(path, self.to_json())

    # -- look-ups

    def suite(self, name: str) -> Suite | None:
        return next((s for s in self.suites if s.name == name), None)

    def question(self, suite: str, question_id: str) -> Question | None:
        s = self.suite(suite)
        return next((q for q in s.questions if q.id == question_id), None) if s else None


def _clip(value: Any, limit: int = 60) -> str:
    """repr(value), cut to `limit` characters (a 400-digit number is not echoed whole)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def read_error(path: str | Path, what: str, hint: str | None, e: OSError | UnicodeDecodeError) -> ReportError:
    """The one line for a report file that cannot be read (missing, a folder, not UTF-8...)."""
    if isinstance(e, FileNotFoundError):
        how = hint or WRITE_HINT.replace("PATH", str(path))
        return ReportError(f"{path}: no such {what} file ({how})")
    if isinstance(e, IsADirectoryError):
        return ReportError(f"{path}: is a directory, not a JSON {what}")
    return ReportError(f"{path}: cannot read the {what}: {getattr(e, 'strerror', None) or e}")


def check_version(version: Any, source: str) -> None:
    """ReportError unless `version` is a report version this rlhf-eval reads."""
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ReportError(f"{source}: version: expected a report version (a whole number ≥ 1), got "
                          f"{_clip(version)}; {WRITE_HINT}")
    if version > REPORT_VERSION:
        raise ReportError(f"{source}: version: the report is version {_clip(version)}, this rlhf-eval reads up "
                          f"to {REPORT_VERSION}; upgrade rlhf-eval (pip install -U rlhf-eval) to read it")


def _float_noting_overflow(noted: list[str], token: str) -> float:
    """json.loads's parser of floats and of NaN / Infinity that notes a value JSON cannot hold (NaN,
    infinity, or a number too large for a float: 1e400 becomes inf)."""
    value = float(token)
    if not math.isfinite(value):
        noted.append(token)
    return value


def _path(loc: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "(top level)"


def _bad_pair_index(report: Report) -> str | None:
    """The first pair index that is not one of its question's traces (negative ones included: Python
    would silently pick a trace from the end), as "field.path: what is wrong"."""
    for i, suite in enumerate(report.suites):
        for j, q in enumerate(suite.questions):
            if problem := bad_pair(q, f"suites[{i}].questions[{j}]"):
                return problem
    return None


def bad_pair(q: Question, where: str) -> str | None:
    """`_bad_pair_index` of one question, whose field path is `where`."""
    n = len(q.traces)
    for k, pair in enumerate(q.pairs):
        for side in ("chosen", "rejected"):
            index = getattr(pair, side)
            if not 0 <= index < n:
                which = f"0 to {n - 1}" if n else "it has none"
                return (f"{where}.pairs[{k}].{side}: {_clip(index)} is not the index of "
                        f"one of the question's traces ({which})")
    return None


def _bad_curve(report: Report) -> str | None:
    """The first pass@k / pass^k curve the HTML chart cannot draw as written: a value that is no
    probability (outside 0..1), pass@k and pass^k of different lengths, or a question's curve not
    one value per budget k = 1..its k; or a count of unique traces below 0 or above k. As
    "field.path: what is wrong"."""
    for i, suite in enumerate(report.suites):
        held: list[tuple[str, SuiteAggregates | QuestionMetrics, int | None]] = [
            (f"suites[{i}].aggregates", suite.aggregates, None)]
        held += [(f"suites[{i}].questions[{j}].metrics", q.metrics, q.metrics.k)
                 for j, q in enumerate(suite.questions) if q.metrics is not None]
        for where, metrics, k in held:
            if problem := bad_curve(where, metrics, k):
                return problem
    return None


def bad_curve(where: str, metrics: SuiteAggregates | QuestionMetrics, k: int | None) -> str | None:
    """`_bad_curve` of one question's metrics (`k` its k) or a suite's aggregates (`k` None)."""
    curves = {name: getattr(metrics, name) for name in ("pass_at", "pass_hat")}
    for name, curve in curves.items():
        for index, value in enumerate(curve or ()):
            if not 0.0 <= value <= 1.0:
                return f"{where}.{name}[{index}]: {_clip(value)} is not a probability (0 to 1)"
        if curve and k is not None and len(curve) != k:
            return f"{where}.{name}: {len(curve)} values for k = {k}; it holds one per budget 1..k"
    at, hat = curves["pass_at"], curves["pass_hat"]
    if at and hat and len(at) != len(hat):
        return (f"{where}: pass_at has {len(at)} value{'s' * (len(at) != 1)} and pass_hat {len(hat)}; "
                "both hold one per budget k")
    unique = metrics.unique_traces
    if unique is not None and not 0 <= unique <= (k if k is not None else unique):
        return (f"{where}.unique_traces: {_clip(unique)} distinct answers "
                + (f"among k = {k} traces" if k is not None else "is negative"))
    return None


def _non_finite(data: Any) -> tuple[str, float] | None:
    """The field path and value of the first NaN or infinite number in `data` (parsed JSON), or None.
    Iterative, so any depth json.loads gave is walked."""
    found = non_finite_at(data)
    return (_path(found[0]), found[1]) if found else None


def non_finite_at(data: Any, at: tuple = ()) -> tuple[tuple, float] | None:
    """`_non_finite` as (location, value), the location under `at`."""
    stack: list[tuple[tuple, Any]] = [(at, data)]
    while stack:
        loc, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return loc, value
        if isinstance(value, dict):
            stack += reversed([((*loc, k), v) for k, v in value.items()])
        elif isinstance(value, list):
            stack += reversed([((*loc, i), v) for i, v in enumerate(value)])
    return None


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def model_json(model: BaseModel, allow_nan: bool = True) -> tuple[str, bool]:
    """`model`'s JSON text (indent 1, the fields set) and whether pydantic's serializer wrote it (its
    numbers are then Rust's: see `_python_numbers`). The json module writes it where pydantic cannot
    write it faithfully: a lone surrogate in a text, which it refuses, or in a dict's key (a
    comparison's question id, a dataset's column), which it writes as U+FFFD (in mode="json" too),
    changing the id without a word; a text with a real U+FFFD goes that way too, to the same bytes.
    ValueError for a NaN or infinity unless `allow_nan`."""
    try:
        text = model.model_dump_json(indent=1, exclude_unset=True, fallback=_jsonable)
        if "\ufffd" not in text:
            return text, True
    except PydanticSerializationError:
        pass
    return escape_lone_surrogates(json.dumps(model.model_dump(exclude_unset=True), indent=1, ensure_ascii=False,
                                             allow_nan=allow_nan, default=_jsonable)), False


def escape_lone_surrogates(text: str) -> str:
    """JSON text with each lone surrogate (a dataset's or an API's "\\ud800", which json reads as
    one) written as its escape, as UTF-8 cannot encode it: `json.loads` reads the same string back.
    Outside strings JSON has no such character, so only strings change."""
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _jsonable(value: Any) -> Any:
    """numpy scalars (in free-form fields such as a trace's `extra`) as Python numbers."""
    if hasattr(value, "item") and type(value).__module__ == "numpy":
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


# A number on a line of indented JSON: the whole line is [indent]["key": ]number[,]. No string can
# match (it would start with a quote), so only value tokens are rewritten.
_NUMBER_LINE = re.compile(r'(\s*(?:"(?:[^"\\]|\\.)*": )?)(-?(?:\d+(?:\.\d+)?(?:e[-+]?\d+)?|NaN|Infinity))(,?)')
# Where pydantic's float text can differ from Python's repr: exponents (1e-6 / 1e-06, 1e16 / 1e+16),
# decimals below 1e-4 (0.00001 / 1e-05); NaN / Infinity, which are refused. Found with str.find,
# several times faster than one regex over a report of 10 MB.
_NEEDLES = ("e-", "e1", "e2", "e3", "0.0000", "NaN", "Infinity")


def _python_numbers(text: str) -> str:
    """Rewrite the number tokens whose text pydantic (Rust's shortest float format) writes
    differently from Python's repr, so the output is byte for byte the json module's."""
    lines: dict[int, int] = {}  # start -> end of each line holding a candidate
    for needle in _NEEDLES:
        i = text.find(needle)
        while i >= 0:
            start = text.rfind("\n", 0, i) + 1
            end = text.find("\n", i)
            lines[start] = len(text) if end < 0 else end
            i = text.find(needle, lines[start])
    out, last = [], 0
    for start in sorted(lines):
        line = _NUMBER_LINE.fullmatch(text, start, lines[start])
        if line is None:
            continue  # the needle is inside a string
        number = line.group(2)
        if number.lstrip("-") in ("NaN", "Infinity"):
            raise ValueError(f"Out of range float values are not JSON compliant: {number} at line "
                             f"{text.count(chr(10), 0, start) + 1} of the report")
        out += [text[last:start], line.group(1), repr(float(number)), line.group(3)]
        last = lines[start]
    out.append(text[last:])
    return "".join(out)


# a suite's (empty) questions in the report written without them, and the comma after it
_QUESTIONS_LINE = re.compile(r'^   "questions": \[\](,?)$', re.MULTILINE)


def _question_text(q: Question) -> str:
    from .spool import question_json

    return question_json(q)


def _nested(text: str, suite: Suite, j: int) -> str:
    """A question's own JSON text (`spool.question_json`) as the report holds it: indented to its
    depth (4), numbers written as Python writes them. ValueError (naming it) for a NaN or infinity."""
    try:
        text = _python_numbers(text)
    except ValueError as e:
        raise ValueError(f"{e} (suites.{suite.name}.questions[{j}])") from None
    return "    " + text.replace("\n", "\n    ")


# a comparison suite's (empty) per-question entries in the report written without them, and the comma after it
_COMPARED_LINE = re.compile(r'^    "questions": \{\}(,?)$', re.MULTILINE)


def _with_compared_questions(tail: str, comparison: Comparison | None) -> Iterator[str]:
    """The report's text after its last question (`tail`), with the per-question entries of the
    comparison's suites that are read from disk (rlhf_eval.comparison_spool) nested where the
    report written without them has `"questions": {}`: the text the dict of them gives."""
    suites = comparison.suites if comparison is not None else []
    if all(isinstance(cs.questions, dict) for cs in suites):
        yield tail
        return
    # the suites whose line that is: those spooled, and those held with no entry
    lined = [cs for cs in suites if "questions" in cs.model_fields_set
             and not (isinstance(cs.questions, dict) and cs.questions)]
    start = tail.index('\n "comparison": {\n')  # a top-level key: a line of its own, once
    parts = _COMPARED_LINE.split(tail[start:])
    if len(parts) != 2 * len(lined) + 1:
        raise AssertionError(f"{len(parts)} parts for {len(lined)} comparisons")  # a bug: the layout changed
    yield tail[:start]
    for n, cs in enumerate(lined):
        yield parts[2 * n]
        comma = parts[2 * n + 1]
        items = iter(()) if isinstance(cs.questions, dict) else cs.questions.json_items()
        first = next(items, None)
        if first is None:
            yield f'    "questions": {{}}{comma}'
            continue
        yield '    "questions": {\n'
        yield _nested_entry(*first, cs)
        for item in items:
            yield ",\n" + _nested_entry(*item, cs)
        yield f"\n    }}{comma}"
    yield parts[-1]


def _nested_entry(question_id: str, text: str, cs: SuiteComparison) -> str:
    """A comparison entry's own JSON text (`comparison_spool.comparison_json`) as the report holds
    it under its question id: indented to its depth (5), numbers as Python writes them."""
    try:
        text = _python_numbers(text)
    except ValueError as e:
        raise ValueError(f"{e} (comparison.suites.{cs.name}.questions.{question_id})") from None
    key = escape_lone_surrogates(json.dumps(question_id, ensure_ascii=False))  # UTF-8 has no lone surrogate
    return f"     {key}: " + text.replace("\n", "\n     ")


FILE_FIX = "fix that field, or write the report again with pytest --rlhf-report-json=PATH"


def problem_line(source: str, error: ValidationError, fix: str = FILE_FIX) -> str:
    """The first validation problem as one line: source: field.path: what is wrong; what to do."""
    return problem_of(source, error.errors(include_url=False)[0], error.error_count(), fix)


def problem_of(source: str, first: Any, count: int, fix: str = FILE_FIX) -> str:
    """`problem_line` of a validation error's first problem (pydantic's error dict) of `count`."""
    loc = _path(first["loc"])
    if first["type"] == "missing":
        what = "is missing"
    else:
        msg = first["msg"]
        what = msg[len("Input "):] if msg.startswith("Input ") else msg[0].lower() + msg[1:]
        got = repr(first.get("input"))
        what += f", got {got if len(got) <= 60 else got[:57] + '...'}"
    more = count - 1
    tail = f" (and {more} more problem{'s' * (more != 1)})" if more else ""
    return f"{source}: {loc}: {what}{tail}; {fix}"
