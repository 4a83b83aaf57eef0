"""What the eval found, as datasets TRL's trainers read without conversion (one folder per suite).

- `dpo.jsonl` — DPOTrainer: `prompt`, `chosen`, `rejected`; exactly the report's preference pairs.
- `grpo_prompts.jsonl` — GRPOTrainer: `prompt` plus `answer`, the column a reward function receives.
- `grpo_groups.jsonl` — the recorded groups: `prompt`, `completions`, `rewards`, `advantages`.
- `sft.jsonl` — SFTTrainer (prompt-completion): every verified-correct trace (rejection sampling).

A chat suite's prompts (README "Chat prompts"), and every prompt of a suite with a system
instruction, are conversational (lists of messages, TRL's "conversational" format, completions as
`[{"role": "assistant", ...}]`), so no turn is lost; otherwise plain strings ("standard").
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .credentials import write_without_secrets
from .paths import FOLDER_NAME_RE, FOLDER_NAME_RULE
from .report_model import Question, Report, ReportError, Suite


def _system(suite: Suite) -> str | None:
    return suite.model.get("system_instruction")


def _prompt(suite: Suite, question: Question) -> Any:
    """The question's prompt in TRL's format: a chat prompt as its messages (the system
    instruction already first among them), text with a system instruction as [system, user]
    messages, other text as it is."""
    if isinstance(question.prompt, list):
        return [dict(m) for m in question.prompt]
    system = _system(suite)
    if system:
        return [{"role": "system", "content": system}, {"role": "user", "content": question.prompt}]
    return question.prompt


def _completion(suite: Suite, text: str) -> Any:
    """A completion in the format of the suite's prompts: `[{"role": "assistant", ...}]` when they
    are conversational (a chat prompt, or a system instruction), else the text."""
    # A suite's prompts are all text or all chats: the first recorded prompt says which.
    first = next((q.prompt for q in suite.questions if q.prompt is not None), None)
    conversational = isinstance(first, list) or bool(_system(suite))
    return [{"role": "assistant", "content": text}] if conversational else text


def suite_records(suite: Suite) -> dict[str, list[dict]]:
    """The four datasets of one suite from its report section: name → records."""
    dpo, prompts, groups, sft = [], [], [], []
    for q in suite.questions:
        if not q.metrics:
            continue  # an item that errored has no traces to export
        prompt, traces = _prompt(suite, q), q.traces
        for p in q.pairs:
            dpo.append({"prompt": prompt, "chosen": _completion(suite, traces[p.chosen].text),
                        "rejected": _completion(suite, traces[p.rejected].text)})
        prompts.append({"prompt": prompt, "answer": q.answer, "question_id": q.id})
        groups.append({"prompt": prompt, "question_id": q.id,
                       "completions": [_completion(suite, t.text) for t in traces],
                       "rewards": [t.reward for t in traces], "advantages": [t.advantage for t in traces]})
        sft += [{"prompt": prompt, "completion": _completion(suite, t.text)}
                for t in traces if t.verdict == "correct"]
    return {"dpo": dpo, "grpo_prompts": prompts, "grpo_groups": groups, "sft": sft}


def export_files(report: Report | dict, directory: str | Path) -> dict[Path, str]:
    """Every suite's datasets as the files `export_report` writes: path under `directory/<suite>/` → text.

    A suite's name is a folder name (the report model checks it), so every path is inside `directory`.
    Raises ReportError (one line, "suites[i].name: ...") when two suites share a name: their files would
    overwrite each other."""
    suites = Report.of(report).suites
    first: dict[str, int] = {}
    for i, suite in enumerate(suites):
        if not FOLDER_NAME_RE.fullmatch(suite.name):  # loading checked it; a name assigned since was not
            raise ReportError(f"suites[{i}].name: {suite.name!r} is not a suite name ({FOLDER_NAME_RULE})")
        if suite.name in first:
            raise ReportError(f"suites[{i}].name: {suite.name!r} is also the name of suites[{first[suite.name]}]; "
                              "export writes one folder per suite, so suite names must differ")
        first[suite.name] = i
    return {Path(directory) / suite.name / f"{name}.jsonl":
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
            for suite in suites for name, rows in suite_records(suite).items()}


def export_report(report: Report | dict, directory: str | Path) -> list[Path]:
    """Write every suite's datasets under `directory/<suite>/`; returns the files written.

    Raises ReportError for two suites of one name (nothing is written), OSError, or SecretInOutput for a
    file that would contain one of the run's secrets (that file is not written)."""
    written = []
    for path, text in export_files(report, directory).items():
        write_without_secrets(path, text)
        written.append(path)
    return written
