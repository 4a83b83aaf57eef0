"""What the eval found, as datasets TRL's trainers read without conversion (one folder per suite).

Under `DIR/<suite>/`, one file per dataset (`.jsonl`, or `.parquet` with `format="parquet"`):

- `dpo` — DPOTrainer and RewardTrainer (TRL's preference format): `prompt`, `chosen`, `rejected`,
  one row per distinct preference pair of the report.
- `grpo_prompts` — GRPOTrainer: `prompt`, `answer` (the reference) and the question's columns
  (`question`, a dataset's other columns by their own names), which reward functions receive.
- `grpo_groups` — the recorded groups: those columns, `completions`, `rewards`, `advantages`.
- `sft` — SFTTrainer (prompt-completion): every distinct verified-correct trace (rejection sampling).

Every row also carries `question_id` and `pass_rate` (the question's accuracy over its k traces),
and what the report knows of its traces (see `COLUMNS`). `datasets.load_dataset("parquet",
data_files={"train": "DIR/<suite>/dpo.parquet"})` (or "json" and the `.jsonl`) gives the
`DatasetDict` a trainer takes. `DIR/summary.json` holds what was kept and dropped per suite;
`Export.line` says it in one line.

A filter keeps the questions whose pass rate lies in a band and/or whose reward spread is not zero
(a group GRPO learns from; DAPO's dynamic sampling keeps 0 < accuracy < 1): every dataset is built
from the kept questions only. Pass rate and spread come from the report's metrics, so exporting a
JSON report gives what the run's own export gave.

A chat suite's prompts (README "Chat prompts"), and every prompt of a suite with a system
instruction, are conversational (lists of messages, TRL's "conversational" format, completions as
`[{"role": "assistant", ...}]`), so no turn is lost; otherwise plain strings ("standard").
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from .credentials import CheckedWriter, refuse_secrets, write_chunks_without_secrets, write_without_secrets
from .objectives import ZERO_TOL
from .paths import FOLDER_NAME_RE, FOLDER_NAME_RULE, shown_path
from .report_model import Question, Report, ReportError, Suite

FORMATS = ("jsonl", "parquet")
# Verdicts of traces the model's answer never reached us for (an API error, an answer the API
# withheld): no completion to train on or to reject, nor a sign of how hard the question is.
UNANSWERED = ("error", "blocked")
DATASETS = ("dpo", "grpo_prompts", "grpo_groups", "sft")
NEEDS_DATASETS = "the parquet export needs the datasets library: pip install 'rlhf-eval[datasets]'"
# The columns of each dataset, in order. Two names TRL's trainers would act on are avoided:
# `margin` (RewardTrainer takes it as its loss margin; ours is the DPO margin, `dpo_margin`) and
# `ref_chosen_logps` / `ref_rejected_logps` (DPOTrainer with `precompute_ref_log_probs=True` adds
# columns of these names and fails on a duplicate; without it, it ignores them).
COLUMNS = {
    "dpo": ("prompt", "chosen", "rejected", "question_id", "pass_rate", "dpo_margin", "chosen_logps",
            "rejected_logps", "chosen_ref_logps", "rejected_ref_logps", "chosen_reward", "rejected_reward",
            "chosen_rewards_by_function", "rejected_rewards_by_function"),
    "grpo_prompts": ("prompt", "answer", "question_id", "pass_rate", "spread"),
    "grpo_groups": ("prompt", "answer", "question_id", "pass_rate", "spread", "completions", "rewards",
                    "advantages", "rewards_by_function", "logps"),
    "sft": ("prompt", "completion", "question_id", "pass_rate", "reward", "rewards_by_function", "logp"),
}
# A lone surrogate (a dataset's or an API's "\ud800", which json reads as one): a dataset row holds
# U+FFFD, the replacement character, in its place, as the HTML page shows it.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# GRPO rows carry the question's columns too (after `answer`), except one of these names: ours wins.
_OWN_COLUMNS = frozenset(COLUMNS["grpo_groups"])


# --------------------------------------------------------------------------------------- the filter

_NUMBER = r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)?\s*"
_BAND = re.compile(rf"\s*([\[(]?){_NUMBER}[:,]{_NUMBER}([\])]?)\s*")
BAND_HELP = "LOW:HIGH with 0 <= LOW <= HIGH <= 1, both ends kept (0.2:0.8), or brackets for open ends ((0:1), [0.25:1))"


@dataclass(frozen=True)
class PassRateBand:
    """A range of pass rates (0 ≤ low ≤ high ≤ 1); `low_open` / `high_open` leave that end out."""
    low: float = 0.0
    high: float = 1.0
    low_open: bool = False
    high_open: bool = False

    def __post_init__(self) -> None:
        for name in ("low", "high"):
            value = getattr(self, name)
            if (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
                    or not 0 <= value <= 1):
                raise ValueError(f"{name} {value!r} is not a number from 0 to 1")
        if self.low > self.high:
            raise ValueError(f"LOW {self.low:g} is above HIGH {self.high:g}")
        if self.low == self.high and (self.low_open or self.high_open):
            raise ValueError(f"{self} holds no pass rate")

    @classmethod
    def parse(cls, text: str) -> PassRateBand:
        """`"0.2:0.8"` (closed), `"(0:1)"`, `"[0.25,1)"`, `":0.5"` (from 0); ValueError (one line) otherwise."""
        match = _BAND.fullmatch(text) if isinstance(text, str) else None
        if match is None or not (match[2] or match[3]):
            raise ValueError(f"pass rate band {text!r}: expected {BAND_HELP}")
        opening, low, high, closing = match.groups()
        if bool(opening) != bool(closing):  # `[0.2:0.8` or `0.2:0.8)`: which end was meant open is a guess
            raise ValueError(f"pass rate band {text!r}: a bracket at one end only; bracket both ends or neither "
                             f"({BAND_HELP})")
        try:
            return cls(float(low) if low else 0.0, float(high) if high else 1.0, opening == "(", closing == ")")
        except ValueError as e:
            raise ValueError(f"pass rate band {text!r}: {e}; expected {BAND_HELP}") from None

    @classmethod
    def of(cls, value: PassRateBand | str | tuple[float, float] | list[float]) -> PassRateBand:
        """A band from a band, its text (`parse`), or a (low, high) pair (both ends kept)."""
        if isinstance(value, PassRateBand):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        if isinstance(value, (tuple, list)) and len(value) == 2:
            try:
                return cls(*value)
            except ValueError as e:
                raise ValueError(f"pass rate band {tuple(value)!r}: {e}") from None
        raise ValueError(f"pass rate band {value!r}: expected a (LOW, HIGH) pair or {BAND_HELP}")

    def __contains__(self, rate: float) -> bool:
        above_low = rate > self.low if self.low_open else rate >= self.low
        below_high = rate < self.high if self.high_open else rate <= self.high
        return above_low and below_high

    def __str__(self) -> str:
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


@dataclass(frozen=True)
class ExportFilter:
    """Which questions' data is exported: pass rate in `pass_rate` (None: any), and with
    `nonzero_spread` only questions whose rewards differ (reward spread above 1e-12, as the report's
    `frac_zero_spread` counts)."""
    pass_rate: PassRateBand | None = None
    nonzero_spread: bool = False

    @classmethod
    def of(cls, pass_rate: Any = None, nonzero_spread: bool = False) -> ExportFilter:
        """Raises ValueError (one line) for a band that is not one (see `PassRateBand.of`)."""
        return cls(None if pass_rate is None else PassRateBand.of(pass_rate), bool(nonzero_spread))

    def drop_reason(self, question: Question) -> str | None:
        """Why `question` is left out ("errored", "below", "above", "zero_spread"), None when kept.
        A question that misses on several counts is counted once, by the first of these."""
        m = question.metrics
        if m is None or m.accuracy is None:
            return "errored"  # no traces to export
        if question.traces and all(t.verdict in UNANSWERED for t in question.traces):
            return "errored"  # its pass rate 0 measures the API, not the question's difficulty
        band = self.pass_rate
        if band is not None and m.accuracy not in band:
            return "below" if m.accuracy <= band.low else "above"
        if self.nonzero_spread and not (m.spread is not None and abs(m.spread) >= ZERO_TOL):
            return "zero_spread"
        return None

    def __str__(self) -> str:
        parts = [f"pass rate in {self.pass_rate}"] if self.pass_rate is not None else []
        return " and ".join(parts + ["nonzero spread"] * self.nonzero_spread)


def check_format(format: str) -> None:
    """Raises ValueError (one line) for a format that is not one, or parquet without `datasets`."""
    if format not in FORMATS:
        raise ValueError(f"export format {format!r}: expected one of {', '.join(FORMATS)}")
    if format == "parquet":
        try:
            missing = importlib.util.find_spec("datasets") is None
        except ValueError:  # sys.modules["datasets"] is None: its import is blocked
            missing = True
        if missing:
            raise ValueError(NEEDS_DATASETS)


# -------------------------------------------------------------------------------------- the records

def _system(suite: Suite) -> str | None:
    return suite.model.get("system_instruction")


def trl_prompt(prompt: Any, system: str | None) -> Any:
    """A prompt as sent (`Suite.render_prompt`: text, or a chat with the system instruction already
    first) in TRL's format: a chat as its messages, text with a system instruction as [system,
    user] messages (so no turn is lost), other text as it is."""
    if isinstance(prompt, list):
        return [dict(m) for m in prompt]
    if system:
        return [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
    return prompt


def grpo_prompt_row(prompt: Any, answer: str | None, columns: dict[str, Any], question_id: str,
                    pass_rate: float | None, spread: float | None) -> dict[str, Any]:
    """One `grpo_prompts` row: `prompt` (TRL's format, see `trl_prompt`), `answer`, the question's
    columns (its fields, which GRPOTrainer hands to reward functions as the eval did; a column
    named like one of ours is left out), `question_id`, `pass_rate` and `spread` (None: not
    measured, as for a suite not yet run: `rlhf_eval.trl.suite_dataset`)."""
    own = {k: v for k, v in columns.items() if k not in _OWN_COLUMNS}
    return {"prompt": prompt, "answer": answer, **own, "question_id": question_id, "pass_rate": pass_rate,
            "spread": spread}


def _prompt(suite: Suite, question: Question) -> Any:
    return trl_prompt(question.prompt, _system(suite))


def _conversational(suite: Suite) -> bool:
    """Whether the suite's completions are `[{"role": "assistant", ...}]` (its prompts are chats, or it
    has a system instruction) rather than text. A suite's prompts are all text or all chats: the
    first recorded prompt says which."""
    first = next((q.prompt for q in suite.questions if q.prompt is not None), None)
    return isinstance(first, list) or bool(_system(suite))


def _completion(conversational: bool, text: str) -> Any:
    """A completion in the format of the suite's prompts (`_conversational`)."""
    return [{"role": "assistant", "content": text}] if conversational else text


def _key(*values: Any) -> str:
    """Identity of a row's texts (strings or message lists) for deduplication."""
    return json.dumps(values, ensure_ascii=False, sort_keys=True)


@dataclass
class SuiteExport:
    """One suite's datasets (name → rows) and what the filter and the deduplication left out."""
    name: str
    questions: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("errored", "below", "above",
                                                                             "zero_spread"), 0))
    records: dict[str, list[dict]] = field(default_factory=dict)  # by `suite_records`; empty when streamed
    rows: dict[str, int] = field(default_factory=dict)  # how many rows each dataset has
    duplicates: dict[str, int] = field(default_factory=dict)  # rows removed as identical to an earlier one
    unanswered: dict[str, int] = field(default_factory=lambda: {"dpo": 0})  # pairs with an UNANSWERED trace

    def summary(self) -> dict[str, Any]:
        return {"questions": self.questions, "kept": self.kept, "dropped": self.dropped,
                "rows": dict(self.rows), "duplicates_removed": self.duplicates,
                "unanswered_removed": self.unanswered}


def suite_records(suite: Suite, keep: ExportFilter | None = None) -> SuiteExport:
    """The four datasets of one suite from its report section, from the questions `keep` keeps
    (all scored ones by default), identical DPO and SFT rows removed (the first is kept)."""
    out = SuiteExport(suite.name, questions=len(suite.questions))
    out.records = {name: [] for name in DATASETS}
    for name, row in suite_rows(suite, keep, out):
        out.records[name].append(row)
    return out


def suite_rows(suite: Suite, keep: ExportFilter | None, out: SuiteExport) -> Iterator[tuple[str, dict]]:
    """`suite_records`'s rows one at a time, as (dataset, row), in its order; `out`'s counts are
    complete once they are all read. Holds no row it has yielded: identical rows are told by a
    digest of their texts (16 bytes a row), so a suite read from disk (rlhf_eval.spool) is
    exported a question at a time."""
    keep = keep or ExportFilter()
    conversational = _conversational(suite)
    seen: set[bytes] = set()  # digests of the DPO and SFT rows' texts (`_key`)
    rows = dict.fromkeys(DATASETS, 0)
    out.rows = rows
    pairs_seen = sft_seen = 0

    def first(*texts: Any) -> bool:
        digest = hashlib.blake2b(_key(*texts).encode("utf-8", "surrogatepass"), digest_size=16).digest()
        if digest in seen:
            return False
        seen.add(digest)
        return True

    for q in suite.questions:
        reason = keep.drop_reason(q)
        if reason:
            out.dropped[reason] += 1
            continue
        out.kept += 1
        m = q.metrics
        assert m is not None  # drop_reason drops a question without metrics
        prompt, traces = _prompt(suite, q), q.traces
        common = {"question_id": q.id, "pass_rate": m.accuracy}
        for p in q.pairs:
            w, lo = traces[p.chosen], traces[p.rejected]
            if w.verdict in UNANSWERED or lo.verdict in UNANSWERED:  # "" or a cut text is no rejected answer
                out.unanswered["dpo"] += 1
                continue
            pairs_seen += 1
            row = {"prompt": prompt, "chosen": _completion(conversational, w.text),
                   "rejected": _completion(conversational, lo.text)}
            if first("dpo", row["prompt"], row["chosen"], row["rejected"]):
                rows["dpo"] += 1
                yield "dpo", {
                    **row, **common, "dpo_margin": p.margin, "chosen_logps": w.logp, "rejected_logps": lo.logp,
                    "chosen_ref_logps": w.ref_logp, "rejected_ref_logps": lo.ref_logp,
                    "chosen_reward": w.reward, "rejected_reward": lo.reward,
                    "chosen_rewards_by_function": w.rewards_by_function,
                    "rejected_rewards_by_function": lo.rewards_by_function}
        rows["grpo_prompts"] += 1
        yield "grpo_prompts", grpo_prompt_row(prompt, q.answer, q.columns, q.id, m.accuracy, m.spread)
        columns = {k: v for k, v in q.columns.items() if k not in _OWN_COLUMNS}
        names = sorted({name for t in traces for name in (t.rewards_by_function or {})})
        rows["grpo_groups"] += 1
        yield "grpo_groups", {"prompt": prompt, "answer": q.answer, **columns, **common, "spread": m.spread,
                              "completions": [_completion(conversational, t.text) for t in traces],
                              "rewards": [t.reward for t in traces], "advantages": [t.advantage for t in traces],
                              "rewards_by_function": ({n: [(t.rewards_by_function or {}).get(n) for t in traces]
                                                       for n in names} or None),
                              "logps": [t.logp for t in traces]}
        for t in traces:
            if t.verdict == "correct":
                sft_seen += 1
                row = {"prompt": prompt, "completion": _completion(conversational, t.text)}
                if first("sft", row["prompt"], row["completion"]):
                    rows["sft"] += 1
                    yield "sft", {**row, **common, "reward": t.reward, "rewards_by_function": t.rewards_by_function,
                                  "logp": t.logp}
    out.duplicates = {"dpo": pairs_seen - rows["dpo"], "sft": sft_seen - rows["sft"]}


# ------------------------------------------------------------------------------------------ the files

@dataclass(frozen=True)
class ExportFile:
    """One file of an export: `data` (text, or parquet bytes) and `text`, what is checked for the
    run's secrets before it is written (the data itself, or the parquet's rows as JSON lines); or,
    `stale`, a file of an earlier export to remove."""
    path: Path
    data: str | bytes
    text: str
    # A file an earlier export into the same folder wrote (by its summary.json) that this one does
    # not: `write` removes it, so a glob over DIR/*/dpo.* never mixes two exports.
    stale: bool = False
    # A suite read from disk (rlhf_eval.spool): its JSON lines wait in a temporary file, `text`
    # and (jsonl) `data` are empty, and the file is checked and written a piece at a time.
    lines: SpooledLines | None = None

    def write(self) -> None:
        """Atomically; raises SecretInOutput (nothing written) or OSError."""
        if self.stale:
            self.path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # the suite's folder, if nothing else is in it
                self.path.parent.rmdir()
            return
        if self.lines is not None and isinstance(self.data, str):
            write_chunks_without_secrets(self.path, self.lines.chunks())
        elif isinstance(self.data, str):
            write_without_secrets(self.path, self.data)
        else:
            if self.lines is not None:
                checked = CheckedWriter(self.path, _Discard())
                for chunk in self.lines.chunks():
                    checked.write(chunk)
                checked.flush()
            else:
                refuse_secrets(self.path, self.text)
            _write_bytes(self.path, self.data)

    def content(self) -> str | bytes:
        """What `write` writes: the text (jsonl) or the parquet bytes."""
        return "".join(self.lines.chunks()) if self.lines is not None and isinstance(self.data, str) else self.data


class _Discard:
    """A file that keeps nothing: what `CheckedWriter` writes to when it only checks."""

    def write(self, text: str) -> None:
        pass


class SpooledLines:
    """A dataset's JSON lines in an anonymous temporary file (in TMPDIR; gone when closed or
    collected): an export of a suite too large to hold. Raises OSError when TMPDIR cannot take it."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile("w+", encoding="utf-8", prefix="rlhf-eval-export-")

    def add(self, line: str) -> None:
        self._file.write(line)

    def chunks(self, size: int = 1 << 20) -> Iterator[str]:
        self._file.flush()
        self._file.seek(0)
        while chunk := self._file.read(size):
            yield chunk

    def rows(self) -> Iterator[dict]:
        self._file.flush()
        self._file.seek(0)
        for line in self._file:
            yield json.loads(line)


@dataclass
class Export:
    """What `build_export` made: the files to write, and per suite what was kept and dropped."""
    directory: Path
    filter: ExportFilter
    format: str
    suites: list[SuiteExport]
    files: list[ExportFile]

    def summary(self) -> dict[str, Any]:
        """The content of `summary.json`: the filter, totals, and each suite's counts and files."""
        totals: dict[str, Any] = {"questions": 0, "kept": 0, "dropped": {}, "rows": {}, "duplicates_removed": {},
                                  "unanswered_removed": {}}
        for s in self.suites:
            one = s.summary()
            totals["questions"] += one["questions"]
            totals["kept"] += one["kept"]
            for key in ("dropped", "rows", "duplicates_removed", "unanswered_removed"):
                for name, n in one[key].items():
                    totals[key][name] = totals[key].get(name, 0) + n
        return {"format": self.format,
                "filter": {"pass_rate": None if self.filter.pass_rate is None else str(self.filter.pass_rate),
                           "nonzero_spread": self.filter.nonzero_spread},
                "totals": totals,
                "suites": {s.name: {**s.summary(), "files": {k: f"{s.name}/{k}.{self.format}" for k in DATASETS}}
                           for s in self.suites}}

    def line(self) -> str:
        """The one line a run or the command prints, e.g. "rlhf-eval: exported 3 suites to out/: 31 of
        60 questions kept (pass rate in [0.2, 0.8]: 17 below, 12 above), 48 DPO pairs (202 before
        dedupe), ...; per suite: out/summary.json"."""
        t = self.summary()["totals"]
        where = shown_path(self.directory)
        n = len(self.suites)
        kept = f"{t['kept']} of {t['questions']} questions kept"
        why = [f"{t['dropped'][k]} {label}" for k, label in (("below", "below"), ("above", "above"),
                                                              ("zero_spread", "zero spread"),
                                                              ("errored", "errored")) if t["dropped"].get(k)]
        if self.filter.pass_rate is not None or self.filter.nonzero_spread:
            kept += f" by {self.filter}"
        if why:
            kept += f" ({', '.join(why)} left out)"
        rows, dups = t["rows"], t["duplicates_removed"]

        unanswered = t["unanswered_removed"]

        def deduped(name: str, label: str) -> str:
            count = rows.get(name, 0)
            notes = [f"{count + dups[name]} before dedupe"] if dups.get(name) else []
            if unanswered.get(name):
                notes.append(f"{unanswered[name]} with an errored or blocked trace left out")
            extra = f" ({'; '.join(notes)})" if notes else ""
            return f"{count} {label}{'s' * (count != 1)}{extra}"

        stale = sum(f.stale for f in self.files)
        removed = f"; removed {stale} file{'s' * (stale != 1)} of an earlier export" if stale else ""
        return (f"rlhf-eval: exported {n} suite{'s' * (n != 1)} to {where}/: {kept}; {deduped('dpo', 'DPO pair')}, "
                f"{deduped('sft', 'SFT row')}, {deduped('grpo_prompts', 'GRPO prompt')} "
                f"({self.format}){removed}; per suite: {shown_path(self.directory / 'summary.json')}")


def build_export(report: Report | dict, directory: str | Path, *, pass_rate: Any = None,
                 nonzero_spread: bool = False, format: str = "jsonl") -> Export:
    """Every suite's datasets, dataset card and the summary, as the files `export_report` writes.

    Args:
        pass_rate: keep the questions whose pass rate (accuracy) is in this band: (low, high) with
            both ends kept, a `PassRateBand`, or its text ("0.2:0.8", "(0:1)"); None keeps all.
        nonzero_spread: keep only questions whose rewards differ (a GRPO group with signal).
        format: "jsonl" or "parquet" (needs `datasets`).

    A suite's name is a folder name (the report model checks it), so every path is inside `directory`.
    Raises ReportError (one line, "suites[i].name: ...") when two suites share a name: their files would
    overwrite each other; ValueError (one line) for a bad band or format."""
    keep = ExportFilter.of(pass_rate, nonzero_spread)
    check_format(format)
    suites = Report.of(report).suites
    first: dict[str, int] = {}
    for i, suite in enumerate(suites):
        if not FOLDER_NAME_RE.fullmatch(suite.name):  # loading checked it; a name assigned since was not
            raise ReportError(f"suites[{i}].name: {suite.name!r} is not a suite name ({FOLDER_NAME_RULE})")
        if suite.name == "summary.json":  # its folder would be the export's summary file
            raise ReportError(f"suites[{i}].name: {suite.name!r} is the name of the export's summary file; "
                              "rename the suite to export it")
        if suite.name in first:
            raise ReportError(f"suites[{i}].name: {suite.name!r} is also the name of suites[{first[suite.name]}]; "
                              "export writes one folder per suite, so suite names must differ")
        first[suite.name] = i
    directory = Path(directory)
    exports, files = [], []
    for suite in suites:
        if not isinstance(suite.questions, list):  # read from disk: so are its rows, to be written
            one, spooled = _spooled_records(suite, keep)
            exports.append(one)
            for name, lines in spooled.items():
                path = directory / suite.name / f"{name}.{format}"
                data: str | bytes = "" if format == "jsonl" else _parquet(list(lines.rows()), COLUMNS[name])
                files.append(ExportFile(path, data, "", lines=lines))
            continue
        one = suite_records(suite, keep)
        exports.append(one)
        for name, rows in one.records.items():
            text = "".join(_json_line(r) for r in rows)
            if _LONE_SURROGATE.search(text):  # UTF-8 (and so a trainer's loader) cannot hold one
                text = _LONE_SURROGATE.sub("\ufffd", text)
                rows = [json.loads(line) for line in text.splitlines()]
            path = directory / suite.name / f"{name}.{format}"
            data = text if format == "jsonl" else _parquet(rows, COLUMNS[name])
            files.append(ExportFile(path, data, text))
    written = {f.path for f in files}
    files += [ExportFile(path, "", "", stale=True) for path in _earlier_files(directory) if path not in written]
    export = Export(directory, keep, format, exports, files)
    summary = json.dumps(export.summary(), indent=1, ensure_ascii=False) + "\n"
    files.append(ExportFile(directory / "summary.json", summary, summary))
    return export


def _json_line(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False) + "\n"


def _spooled_records(suite: Suite, keep: ExportFilter) -> tuple[SuiteExport, dict[str, SpooledLines]]:
    """A suite read from disk, exported in one pass over its questions: its counts, and each
    dataset's JSON lines in a temporary file (what `suite_records` would hold). OSError when TMPDIR
    cannot take them."""
    one = SuiteExport(suite.name, questions=len(suite.questions))
    spooled = {name: SpooledLines() for name in DATASETS}
    for name, row in suite_rows(suite, keep, one):
        line = _json_line(row)
        if _LONE_SURROGATE.search(line):  # as a held suite's rows (see build_export)
            line = _LONE_SURROGATE.sub("\ufffd", line)
        spooled[name].add(line)
    return one, spooled


def _earlier_files(directory: Path) -> list[Path]:
    """The dataset files an earlier export wrote under `directory`, as its summary.json lists them
    (none when there is none, or it is not one of ours): only these are ever removed."""
    try:
        earlier = json.loads((directory / "summary.json").read_text(encoding="utf-8"))
        listed = [f for suite in earlier["suites"].values() for f in suite["files"].values()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []
    names = {f"{d}.{fmt}" for d in DATASETS for fmt in FORMATS}
    out = []
    for f in listed:
        parts = f.split("/") if isinstance(f, str) else []
        # `<suite>/<dataset>.<format>` exactly: a summary edited to name another file removes nothing
        if len(parts) == 2 and FOLDER_NAME_RE.fullmatch(parts[0]) and parts[1] in names:
            path = directory / parts[0] / parts[1]
            if path.is_file():
                out.append(path)
    return out


def export_files(report: Report | dict, directory: str | Path, **options: Any) -> dict[Path, str | bytes]:
    """The files `export_report` writes: path → text (bytes for parquet). Options as `build_export`."""
    return {f.path: f.content() for f in build_export(report, directory, **options).files if not f.stale}


def export_report(report: Report | dict, directory: str | Path, **options: Any) -> Export:
    """Write every suite's datasets under `directory/<suite>/` (options as `build_export`); returns
    the `Export` (its `line()` says what was written, `summary()` is `summary.json`).

    Raises ReportError for two suites of one name, ValueError for a bad option (nothing is written
    for either), OSError, or SecretInOutput for a file that would contain one of the run's secrets
    (that file is not written)."""
    export = build_export(report, directory, **options)
    for f in export.files:
        f.write()
    return export


def _parquet(rows: list[dict], columns: Iterable[str]) -> bytes:
    """`rows` as a parquet file of the table `datasets` builds from them (its feature types in the
    file's metadata, as `Dataset.to_parquet` writes; written here to skip its progress bar)."""
    try:
        import datasets
        import pyarrow.parquet as pq  # type: ignore[import-untyped]
    except ImportError:
        raise ValueError(NEEDS_DATASETS) from None
    if rows:
        table = datasets.Dataset.from_list(rows)
    else:  # no rows: the columns still exist, so a trainer's column check says "empty", not "missing"
        table = datasets.Dataset.from_dict({c: [] for c in columns})
    buffer = io.BytesIO()
    if rows:
        pq.write_table(table.data.table, buffer)
    else:  # no row group at all: `datasets` reads a row group of 0 rows as a batch size of 0, and fails
        pq.ParquetWriter(buffer, table.data.table.schema).close()
    return buffer.getvalue()


def _write_bytes(path: Path, data: bytes) -> None:
    """As `atomic.atomic_write_text`, for bytes: temp file beside `path`, then a rename."""
    from .atomic import _UMASK, make_directory

    make_directory(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # as the text files: mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
