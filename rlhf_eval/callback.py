"""Watching the signal during training: `RLHFEvalCallback`, a `transformers.TrainerCallback` that
evaluates suites on the trainer's live policy every N steps (optional extra `trl`)::

    from trl import GRPOConfig, GRPOTrainer
    from rlhf_eval.callback import RLHFEvalCallback

    trainer = GRPOTrainer(model=..., reward_funcs=..., args=GRPOConfig(output_dir="grpo"), train_dataset=...)
    trainer.add_callback(RLHFEvalCallback("suites/policy.yaml", trainer=trainer, every=50,
                                          stop_when="frac_zero_spread >= 0.9"))
    trainer.train()

At step 0 (`on_train_begin`), every `every` steps (`on_step_end`) and at the last step, each
suite's questions are sampled from the trainer's model as it is at that step — in process, through
the `hf` sampler (`rlhf_eval.backends.hf_sampler.HFSampler` on the model and `processing_class`
the trainer hands its callbacks: kept on its device, in its dtype, back in training mode after) —
and run through `rlhf_eval.runner.finished_run`, so every number is the one `rlhf-eval run` computes.

What it writes, under `<args.output_dir>/rlhf/` (or `output_dir=`), one folder per evaluated step::

    step-000000/report.json          the JSON report (`--rlhf-report-json`); from the second
                                     evaluation on, with its comparison against the first
    step-000000/cassettes/<suite>/<question>.yaml   that step's traces (`local://hf/generate`)
    step-000002/...

A step's report replays offline from its own cassettes, without the model:
``rlhf-eval run SUITE --cassette-dir <out>/rlhf/step-000002/cassettes`` gives the same numbers.
``rlhf-eval html <out>/rlhf steps.html`` draws each metric over the steps (`rlhf_eval.steps_report`).

What it logs, at each evaluated step, one value per suite and metric (those the report has):
``rlhf/<suite>/<metric>`` for `LOGGED_METRICS` (the report's suite aggregates of the same name).
They reach `trainer.state.log_history` (with that `step`) and every reporting integration
(W&B and TensorBoard show them as ``train/rlhf/...``: transformers prefixes training logs so).

Stopping: `stop_when` rules on those metrics (``"frac_zero_spread >= 0.9"``,
``"gsm8k/accuracy < 0.05"``, or a callable), `stop_on_regression` rules in `--rlhf-compare-fail`'s
syntax (``"accuracy:0.05"``: worse by more than 0.05 *and* significant, by `rlhf_eval.compare`)
against the first evaluation (in a resumed training, the `step-000000` its output folder holds),
and `stop_on_thresholds` (a suite's `suite_thresholds` failed). The first rule that holds sets
`control.should_training_stop`, logs one line (`logging.getLogger("rlhf_eval.callback")`,
warning) and is kept as `callback.stopped`. The trainer checks the flag after a step: a rule that
holds at step 0 stops training after step 1.

A suite with `model.provider: trl_vllm` is sampled on the vLLM server the trainer generates with
(`GRPOConfig(use_vllm=True, vllm_mode="server")`; `rlhf_eval.backends.trl_vllm`) instead: the
callback first pushes the step's weights to the server, as the trainer does before it generates
(`trainer.vllm_generation.sync_weights()`), so the server answers with that step's policy; the
suite's `base_url` is the trainer's server, its `name` the model the server serves (`trl
vllm-serve --model`). Its cassettes hold the server's HTTP exchanges, and the same suite replays
them. Its logprobs are TRL's *processed* ones (see that module).

Any other route goes through `backends(suite, replay, policy)`, the hook `run_suites` takes: it may
return a suite's `rlhf_eval.Backends`; None falls back to the routes above. Without it every suite
must say `model.provider: hf` (its `name` labels the policy in the cassettes; nothing is loaded
from it while training) or `trl_vllm`.

Under several processes each samples (the same seeds and weights, so the same rule fires on all of
them) and only the main one writes under the output folder. A model sharded by DeepSpeed ZeRO-3 or
FSDP cannot be sampled in place: give a `backends` hook that samples elsewhere.
"""
from __future__ import annotations

import logging
import math
import operator
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, Union

import transformers

from .backends.trl_vllm import TRLVLLMSampler, trainer_server_url
from .discovery import suite_files
from .evaluate import Backends
from .registry import suggest
from .report_model import Report
from .sampling import Scorer
from .steps_report import LOGGED_METRICS, PREFIX, STEP_FOLDER, step_metrics, step_number
from .suite import Suite, load_suite
from .throttle import RequestPolicy

__all__ = ["LOGGED_METRICS", "RLHFEvalCallback", "RLHFEvalError", "StepEval", "Stop", "StopRuleError",
           "step_metrics"]

logger = logging.getLogger(__name__)

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, "<": lambda a, b: a < b}
_RULE = re.compile(r"^\s*(?:(?:train/)?rlhf/)?(?:(?P<suite>[^/\s<>=]+)/)?(?P<metric>[^/\s<>=!]+)\s*(?P<op>>=|<=|>|<)\s*"
                   r"(?P<value>\S+)\s*$")

# A callable rule gets the step's logged metrics ({"rlhf/<suite>/<metric>": value}) and the step;
# it fires when it returns True or a non-empty reason.
RuleFunction = Callable[[dict[str, float], int], Union[bool, str, None]]


class StopRuleError(ValueError):
    """A stop rule that cannot be read (raised when the callback is made, never at step 500); one line."""


class RLHFEvalError(RuntimeError):
    """The first evaluation could not score a question (a bad suite for this policy): one line, before
    any training step is spent."""


@dataclass(frozen=True)
class Stop:
    """Why training was stopped: the rule (as written), at which step, and the one line logged."""
    step: int
    rule: str
    line: str

    def __str__(self) -> str:
        return self.line


@dataclass
class StepEval:
    """One evaluated step: its folder (report.json, cassettes/), its report and what was logged."""
    step: int
    folder: Path
    report: Report
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Threshold:
    text: str
    suite: str | None
    metric: str
    op: str
    value: float

    def measured(self, metrics: dict[str, float], suites: list[str]) -> bool:
        """Whether some suite the rule reads has its metric at this step."""
        return any(f"{PREFIX}/{name}/{self.metric}" in metrics for name in ([self.suite] if self.suite else suites))

    def check(self, metrics: dict[str, float], suites: list[str]) -> str | None:
        for name in [self.suite] if self.suite else suites:
            got = metrics.get(f"{PREFIX}/{name}/{self.metric}")
            if got is not None and _OPS[self.op](got, self.value):
                return f"suite {name}: {self.metric} = {got:.4g} ({self.op} {self.value:g})"
        return None


def _parse_rules(stop_when: Any, suites: list[str]) -> list[_Threshold | RuleFunction]:
    if stop_when is None:
        return []
    if isinstance(stop_when, str) or callable(stop_when):
        given = [stop_when]
    elif isinstance(stop_when, (list, tuple)):
        given = list(stop_when)
    else:
        raise StopRuleError(f"stop_when {stop_when!r}: expected a rule such as 'frac_zero_spread >= 0.9', a "
                            "callable(metrics, step), or a list of them")
    rules: list[_Threshold | RuleFunction] = []
    for rule in given:
        if callable(rule):
            rules.append(rule)
            continue
        if not isinstance(rule, str):
            raise StopRuleError(f"stop_when {rule!r}: expected a rule such as 'frac_zero_spread >= 0.9' or a "
                                "callable(metrics, step)")
        m = _RULE.match(rule)
        if not m:
            raise StopRuleError(f"stop_when {rule!r}: expected '[SUITE/]METRIC OP NUMBER' with OP one of "
                                ">=, >, <=, < (e.g. 'frac_zero_spread >= 0.9')")
        metric, suite = m["metric"], m["suite"]
        if metric not in LOGGED_METRICS:
            raise StopRuleError(f"stop_when {rule!r}: no metric {metric!r}{suggest(metric, LOGGED_METRICS)}")
        if suite is not None and suite not in suites:
            raise StopRuleError(f"stop_when {rule!r}: no suite {suite!r} among this callback's{suggest(suite, suites)}")
        try:
            value = float(m["value"])
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise StopRuleError(f"stop_when {rule!r}: {m['value']!r} is not a finite number")
        rules.append(_Threshold(rule.strip(), suite, metric, m["op"], value))
    return rules


def _regression_rules(stop_on_regression: Any) -> dict[str, float]:
    from .compare import parse_fail_rules

    if stop_on_regression is None:
        given = []
    elif isinstance(stop_on_regression, str):
        given = [stop_on_regression]
    elif isinstance(stop_on_regression, (list, tuple)) and all(isinstance(r, str) for r in stop_on_regression):
        given = list(stop_on_regression)
    else:
        raise StopRuleError(f"stop_on_regression {stop_on_regression!r}: expected a METRIC:DELTA rule such as "
                            "'accuracy:0.05', or a list of them")
    try:
        return parse_fail_rules(given)
    except ValueError as exc:
        raise StopRuleError(str(exc).replace("--rlhf-compare-fail", "stop_on_regression", 1)) from None


def _whole(value: Any) -> int:
    """`value` as an int when it is a whole number of any integer type (numpy's too), else -1."""
    if isinstance(value, bool):
        return -1
    try:
        return operator.index(value)
    except TypeError:
        return -1


def _check_settings(*, batch_size: Any, backends: Any, output_dir: Any, **flags: Any) -> None:
    """The plain settings, checked when the callback is made rather than at the first evaluation."""
    if batch_size is not None and _whole(batch_size) < 1:
        raise ValueError(f"RLHFEvalCallback: batch_size = {batch_size!r}; expected a whole number of traces per "
                         "forward pass, at least 1")
    if backends is not None and not callable(backends):
        raise ValueError(f"RLHFEvalCallback: backends = {backends!r}; expected a function backends(suite, replay, "
                         "policy) returning rlhf_eval.Backends or None")
    if output_dir is not None and not isinstance(output_dir, (str, Path)):
        raise ValueError(f"RLHFEvalCallback: output_dir = {output_dir!r}; expected a folder path")
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise ValueError(f"RLHFEvalCallback: {name} = {value!r}; expected True or False")


def _tokenizer(processing_class: Any) -> Any:
    """The tokenizer of a trainer's processing class (a processor holds one)."""
    if processing_class is not None and not hasattr(processing_class, "convert_tokens_to_ids"):
        return getattr(processing_class, "tokenizer", processing_class)
    return processing_class


class RLHFEvalCallback(transformers.TrainerCallback):
    """Evaluates `suites` on the trainer's live policy at step 0, every `every` steps and at the end;
    logs `rlhf/<suite>/<metric>`, writes each step's report and cassettes, and stops on a rule.

    Args:
        suites: suite files or folders (as `run_suites` takes them); each suite is loaded now
            (SuiteError, one line, for a bad one).
        trainer: the `transformers.Trainer` (a TRL trainer) the callback is added to: its `log`
            carries the metrics to `state.log_history` and the reporting integrations.
        every: evaluate every this many optimizer steps (≥ 1).
        output_dir: where the step folders go (default `<args.output_dir>/rlhf`).
        at_start, at_end: also evaluate before the first step / after the last one.
        stop_when: a rule, or a list of rules: '[SUITE/]METRIC OP NUMBER' (METRIC one of
            `LOGGED_METRICS`, OP one of >=, >, <=, <; without SUITE, any suite), or a callable
            `rule(metrics, step)` returning True or a reason when training should stop.
        stop_on_regression: 'METRIC:DELTA' rules (`--rlhf-compare-fail`'s): stop when METRIC is
            worse than at the first evaluation by more than DELTA and the change is significant.
        stop_on_thresholds: stop when a suite's `suite_thresholds` fail.
        backends: `backends(suite, replay, policy)` → `rlhf_eval.Backends` or None (then the
            in-process hf sampler on the trainer's model).
        reference_model: the model that scores a suite's `dpo.reference: {provider: hf, ...}`, as
            it is (e.g. a DPOTrainer's `ref_model`), instead of loading that checkpoint; margins are
            then TRL's β·((ℓ_w − ℓ_w^ref) − (ℓ_l − ℓ_l^ref)).
        batch_size: traces per forward pass of the hf sampler (default: the suite's
            `model.batch_size`, else 8).

    Raises StopRuleError (one line) for a rule that cannot be read, SuiteError for a bad suite,
    ValueError for a bad setting. After training, `history` holds each `StepEval` and `stopped`
    the `Stop` that ended it (None when none did), of the last `train()` call."""

    def __init__(self, suites: str | Path | Iterable[str | Path], *, trainer: Any, every: int,
                 output_dir: str | Path | None = None, at_start: bool = True, at_end: bool = True,
                 stop_when: str | RuleFunction | Sequence[str | RuleFunction] | None = None,
                 stop_on_regression: str | Sequence[str] = (), stop_on_thresholds: bool = False,
                 backends: Callable[[Suite, bool, RequestPolicy], Backends | None] | None = None,
                 reference_model: Any = None, batch_size: int | None = None) -> None:
        if _whole(every) < 1:
            raise ValueError(f"RLHFEvalCallback: every = {every!r}; expected a whole number of steps, at least 1")
        if not isinstance(trainer, transformers.Trainer):
            raise ValueError(f"RLHFEvalCallback: trainer = {type(trainer).__name__}; pass the transformers/TRL "
                             "Trainer the callback is added to (trainer.add_callback(RLHFEvalCallback(..., "
                             "trainer=trainer)))")
        _check_settings(batch_size=batch_size, backends=backends, output_dir=output_dir, at_start=at_start,
                        at_end=at_end, stop_on_thresholds=stop_on_thresholds)
        paths = [suites] if isinstance(suites, (str, Path)) else list(suites)
        try:
            self.paths = suite_files(paths, Path.cwd())
        except FileNotFoundError as exc:
            raise ValueError(f"RLHFEvalCallback: {exc}") from None
        if not self.paths:
            raise ValueError(f"RLHFEvalCallback: no suite file in {', '.join(map(str, paths)) or 'no paths'}")
        self.suites = [load_suite(p) for p in self.paths]
        names = [s.name for s in self.suites]
        for s in self.suites:
            if names.count(s.name) > 1:
                raise ValueError(f"RLHFEvalCallback: two suites are named {s.name!r}; each needs its own name "
                                 "(it names its metrics and cassette folder)")
            if backends is None and s.spec.model.provider not in ("hf", "trl_vllm"):
                raise ValueError(f"RLHFEvalCallback: suite {s.name} ({s.path}) has model.provider "
                                 f"{s.spec.model.provider!r}; the callback samples the trainer's model through the "
                                 "hf sampler: set model.provider: hf (model.name labels the policy), or trl_vllm "
                                 "when the trainer generates on a vLLM server, or pass backends=")
            if backends is None and s.spec.model.provider == "trl_vllm" and trainer_server_url(trainer.args) is None:
                raise ValueError(f"RLHFEvalCallback: suite {s.name} ({s.path}) has model.provider trl_vllm, but the "
                                 "trainer generates on no vLLM server (its args need use_vllm=True, "
                                 "vllm_mode='server'); set model.provider: hf to sample the model in process")
            if reference_model is not None and (s.spec.dpo.reference == "none"
                                                or s.spec.dpo.reference.provider != "hf"):
                raise ValueError(f"RLHFEvalCallback: reference_model= scores the suite's DPO reference, but suite "
                                 f"{s.name} ({s.path}) has none of provider hf; set dpo.reference: "
                                 "{provider: hf, name: <the reference's name>}")
        self.rules = _parse_rules(stop_when, names)
        self.regression_rules = _regression_rules(stop_on_regression)
        self.stop_on_thresholds = bool(stop_on_thresholds)
        self.trainer = trainer
        self.every = _whole(every)
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.at_start, self.at_end = at_start, at_end
        self.backends = backends
        self.batch_size = None if batch_size is None else _whole(batch_size)
        self.reference_model = reference_model
        self.history: list[StepEval] = []
        self.stopped: Stop | None = None
        self._scratch: tempfile.TemporaryDirectory | None = None  # other processes' output
        self._baseline: Path | None = None  # the step folder every later step is compared with
        self._unmeasured: set[str] = set()  # stop_when rules already said to lack their metric

    # ----------------------------------------------------------------------------- the events

    def on_train_begin(self, args, state, control, **kwargs):
        self._check_trainer(args, state)
        # A second trainer.train() with this callback is a new training: its own history, stop and
        # baseline (the earlier training's step folders are removed just below).
        self.history = []
        self.stopped = None
        self._baseline = None
        self._unmeasured = set()
        self._clear_later_steps(args, state)
        if self.at_start:
            self._evaluate(args, state, control, kwargs)

    def on_step_end(self, args, state, control, **kwargs):
        # DefaultFlowCallback (the first callback) has already flagged the last step by now.
        last = control.should_training_stop or state.global_step >= state.max_steps
        if state.global_step % self.every == 0 or (self.at_end and last):
            self._evaluate(args, state, control, kwargs)

    def on_train_end(self, args, state, control, **kwargs):
        # Stopped by a callback after this one: the last step is not evaluated yet.
        if self.at_end and (not self.history or self.history[-1].step != state.global_step):
            self._evaluate(args, state, control, kwargs, stop=False)

    def _check_trainer(self, args, state) -> None:
        """Before step 0: this callback is the trainer's, and the only one writing to its folder."""
        callbacks = self.trainer.callback_handler.callbacks
        if self not in callbacks:
            # Its metrics would go into another trainer's log (or none): say so before step 0.
            raise RLHFEvalError("RLHFEvalCallback: trainer= is not the trainer this callback was added to, so its "
                                "metrics would miss this training's logs; make the trainer first, then "
                                "trainer.add_callback(RLHFEvalCallback(..., trainer=trainer))")
        if not state.is_world_process_zero:
            return
        mine = self._root(args, state).resolve()
        if any(c is not self and isinstance(c, RLHFEvalCallback) and c._root(args, state).resolve() == mine
               for c in callbacks):
            raise RLHFEvalError(f"RLHFEvalCallback: two callbacks of this trainer write their steps to {mine} "
                                "(each step's report.json would be the other's); give one callback all the "
                                "suites, or each its own output_dir=")

    # --------------------------------------------------------------------------- one evaluation

    def _clear_later_steps(self, args, state) -> None:
        """Remove step folders an earlier run left after this training's first step (all of them
        in a training from scratch; those after the checkpoint in a resumed one), as TensorBoard's
        `purge_step` does: the folder then holds one run, so the steps page never mixes two and a
        resumed training's baseline is this run's step 0."""
        if not state.is_world_process_zero:
            return
        root = self._root(args, state)
        if not root.is_dir():
            return
        start = state.global_step
        stale = sorted(p for p in root.iterdir() if p.is_dir() and (n := step_number(p.name)) is not None
                       and (n > start or (start == 0 and n == 0)))
        if not stale:
            return
        for p in stale:
            shutil.rmtree(p)
        names = ", ".join(p.name for p in stale[:3]) + (f" and {len(stale) - 3} more" if len(stale) > 3 else "")
        logger.warning(f"rlhf-eval: removed {len(stale)} step folder(s) of an earlier run from {root} ({names}): "
                       f"this training starts at step {start}")

    def _root(self, args, state) -> Path:
        """Where step folders go: the output folder on the main process, a scratch one elsewhere."""
        if not state.is_world_process_zero:
            self._scratch = self._scratch or tempfile.TemporaryDirectory(prefix="rlhf-eval-")
            return Path(self._scratch.name)
        return self.output_dir if self.output_dir is not None else Path(args.output_dir) / PREFIX

    def live_backends(self, suite: Suite, replay: bool, policy: RequestPolicy, *, model: Any, tokenizer: Any,
                      step: int) -> Backends:
        """The in-process route: the hf sampler on `model` as it is (its device, dtype), each trace's
        model version `<model.name>@step-<step>`; the suite's DPO reference scored by
        `reference_model` as it is, or as the suite says."""
        from .backends import make_scorer
        from .backends.hf import HFScorer
        from .backends.hf_sampler import HFSampler

        spec = suite.spec
        sampler: Any
        if spec.model.provider == "trl_vllm":
            server = {"base_url": trainer_server_url(self.trainer.args)}
            sampler = TRLVLLMSampler(spec.model.model_copy(update=server), replay=replay, policy=policy)
        else:
            sampler = HFSampler(spec.model, replay=replay, policy=policy, model=model, tokenizer=tokenizer,
                                batch_size=self.batch_size, model_version=f"{spec.model.name}@step-{step}")
        reference: Scorer | None = None
        if spec.dpo.reference != "none" and self.reference_model is not None:
            reference = HFScorer(spec.dpo.reference, model=self.reference_model, tokenizer=tokenizer, replay=replay,
                                 policy=policy, as_is=True)
        elif spec.dpo.reference != "none":
            reference = make_scorer(spec.dpo.reference, replay=replay, policy=policy)
        return Backends(sampler=sampler, reference=reference)

    def _evaluate(self, args, state, control, kwargs: dict[str, Any], *, stop: bool = True) -> None:
        from .runner import RunError, finished_run

        step = state.global_step
        if self.history and self.history[-1].step == step:
            return  # on_step_end may come twice for one step
        tokenizer = _tokenizer(kwargs.get("processing_class"))
        model = kwargs.get("model")
        if self.backends is None and (model is None or tokenizer is None):
            raise RLHFEvalError("RLHFEvalCallback: the trainer gave its callbacks no model or no processing_class "
                                "(tokenizer) to sample; pass processing_class= to the trainer")
        generation = getattr(self.trainer, "vllm_generation", None)
        if generation is not None and any(s.spec.model.provider == "trl_vllm" for s in self.suites):
            # The trainer syncs before it generates, so its server may still hold the weights of
            # the step before; the trainer's own next sync of the same weights is repeated work only.
            generation.sync_weights()
        live = partial(self.live_backends, model=model, tokenizer=tokenizer, step=step)
        hook = self.backends

        def make(suite: Suite, replay: bool, policy: RequestPolicy) -> Backends:
            return (hook(suite, replay, policy) if hook else None) or live(suite, replay, policy)

        root = self._root(args, state)
        folder = root / STEP_FOLDER.format(step)
        first = self.history[0] if self.history else None
        if first is None and step > 0 and (root / STEP_FOLDER.format(0) / "report.json").is_file():
            # a resumed training: compare with the run's step 0, not with the checkpoint's step
            self._baseline = root / STEP_FOLDER.format(0)
        elif first is not None and self._baseline is None:
            self._baseline = first.folder
        options: dict[str, Any] = {}
        if self._baseline is not None:
            # compared with the first evaluation: drift notes in every report, and the regression rules
            options = {"baseline": self._baseline / "report.json", "baseline_name": self._baseline.name,
                       "fail_rules": [f"{m}:{d}" for m, d in self.regression_rules.items()]}
        # One question at a time: concurrent questions would switch the shared model between
        # eval and train mode under each other. Mode rewrite: a folder left by an earlier run
        # (a resumed training) is replaced, never replayed.
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RLHFEvalError(f"RLHFEvalCallback: cannot write step {step}'s report under {root} "
                                f"({exc.strerror or exc}); pass output_dir= a writable folder") from None
        try:
            run = finished_run(self.paths, record_mode="rewrite", cassette_dir=folder / "cassettes",
                               backends=make, concurrency=1, report_json=folder / "report.json", **options)
        except RunError as exc:  # a setting or a place on disk: the runner's one line, as this callback's error
            raise RLHFEvalError(f"RLHFEvalCallback: step {step}: {exc}") from None
        for problem in run.problems:
            logger.warning(problem)
        report = run.report
        assert report is not None
        self._check_errors(report, step, first is None)
        metrics = step_metrics(report)
        self.history.append(StepEval(step, folder, report, metrics))
        self._log(control, metrics)
        if stop and self.stopped is None:
            self._check_stop(report, metrics, step, control)

    def _check_errors(self, report: Report, step: int, first: bool) -> None:
        for s in report.suites:
            errors = [q for q in s.questions if q.error]
            if not errors:
                continue
            line = (f"rlhf-eval: step {step}: suite {s.name}: {len(errors)} of {len(s.questions)} questions could "
                    f"not be scored; {errors[0].id}: {errors[0].error}")
            if first:  # the suite does not fit this policy: say so before a training step is spent
                raise RLHFEvalError(line)
            logger.warning(line)

    def _log(self, control, metrics: dict[str, float]) -> None:
        """Into `state.log_history` and every reporting integration (W&B, TensorBoard, ...).

        `Trainer.log` is the one road to both: it appends to the history and calls each callback's
        `on_log`, which is where the integrations write (changing `logs` in our own `on_log` would
        come after them, and after the history's copy). It is the base class's: TRL's trainers
        override `log` to add the metrics they gathered since their last log and then clear them,
        which would move the step's reward and loss averages into this entry. `on_log` also clears
        `should_log`, `should_evaluate` and `should_save` (set for this step by DefaultFlowCallback
        before us): they are put back, so the trainer's own log, eval and checkpoint still happen."""
        if not metrics:
            return
        trainer = self.trainer
        flags = ("should_log", "should_evaluate", "should_save")
        kept = {f: getattr(control, f) for f in flags}
        transformers.Trainer.log(trainer, dict(metrics))
        for c in {id(control): control, id(trainer.control): trainer.control}.values():
            for f, v in kept.items():
                setattr(c, f, v)

    def _check_stop(self, report: Report, metrics: dict[str, float], step: int, control) -> None:
        names = [s.name for s in report.suites]
        for rule in self.rules:
            if isinstance(rule, _Threshold):
                why = rule.check(metrics, names)
                text = rule.text
                if why is None and not rule.measured(metrics, names) and text not in self._unmeasured:
                    self._unmeasured.add(text)  # said once: a rule that never fires should not be silent
                    logger.warning(f"rlhf-eval: step {step}: stop_when {text!r} cannot be checked: no suite has "
                                   f"{rule.metric} at this step (it needs preference pairs, and log-probabilities "
                                   "for margins); it is checked at the steps that have it")
            else:
                fired = rule(dict(metrics), step)
                why = fired if isinstance(fired, str) else ("it returned True" if fired is True else None)
                text = getattr(rule, "__name__", repr(rule))
            if why:
                return self._stop(control, step, f"stop_when {text!r}", why)
        if self.regression_rules and report.comparison is not None and report.comparison.failures:
            rules = ", ".join(f"{m}:{d:g}" for m, d in self.regression_rules.items())
            return self._stop(control, step, f"stop_on_regression {rules}",
                              f"significant drop against {report.comparison.baseline}: "
                              f"{report.comparison.failures[0]}")
        if self.stop_on_thresholds:
            for s in report.suites:
                if s.threshold_failures:
                    return self._stop(control, step, "stop_on_thresholds",
                                      f"suite {s.name}: {s.threshold_failures[0]}")
        return None

    def _stop(self, control, step: int, rule: str, why: str) -> None:
        line = f"rlhf-eval: stopping training at step {step}: {rule}: {why}"
        control.should_training_stop = True
        self.stopped = Stop(step, rule, line)
        logger.warning(line)
