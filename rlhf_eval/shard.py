"""Which questions a shard runs: `--rlhf-shard I/N` (`run_suites(shard="I/N")`, `rlhf-eval run --shard`).

A run split into N shards (one per CI machine) runs every question in exactly one shard, and
`rlhf-eval merge` (rlhf_eval.merge) builds the single run's report from the shards' reports.

The assignment depends only on the suite's name and its question ids, through SHA-256, so it is
the same on every machine, in every process and Python version (never `hash()`, which
PYTHONHASHSEED changes): within a suite, the questions are ordered by the SHA-256 of
`<suite>/<question id>` (the cassette's path under the cassette folder) and dealt to the shards in
turn, starting at shard `1 + int(sha256(<suite>)[:8 bytes]) mod N`:

    rank r (0-based, in that order) → shard 1 + (start + r) mod N

Each shard gets ⌊n/N⌋ or ⌈n/N⌉ of a suite's n questions (the start differs from suite to suite, so
no shard takes every suite's extra one), and a question keeps its shard as long as its suite has the
same questions: adding or removing one moves the ranks after it, so many others change shard (the
price of shards that differ by at most one question; the merge refuses shards of different suite
files anyway). A shard's report records each suite's size (`Report.shard.suite_sizes`), so the merge
knows how many questions every shard was dealt (`Shard.dealt`) and refuses a shard that ran fewer.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Iterable

__all__ = ["Shard", "assign", "question_digest"]

_SPEC = re.compile(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*")
_USAGE = "expected I/N, shard I of N with 1 ≤ I ≤ N, e.g. 2/3"


@dataclass(frozen=True)
class Shard:
    """Shard `index` (1..`count`) of `count`; `str(shard)` is "I/N"."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def of(cls, value: Any) -> Shard:
        """A Shard from "I/N" text (or a Shard). Raises ValueError, one line saying what is wrong
        (without the option's name: the caller puts its own in front)."""
        if isinstance(value, Shard):
            return cls(value.index, value.count) if _valid(value.index, value.count) else _raise(value)
        if not isinstance(value, str):
            raise ValueError(f"{_USAGE} (got a {type(value).__name__})")
        match = _SPEC.fullmatch(value)
        if match is None:
            raise ValueError(_USAGE)
        index, count = int(match.group(1)), int(match.group(2))
        if count < 1:
            raise ValueError(f"N = {count}: a run has at least 1 shard; {_USAGE}")
        if not 1 <= index <= count:
            raise ValueError(f"there is no shard {index} of {count}: shards are numbered 1 to {count}")
        return cls(index, count)

    def selects(self, suite_name: str, question_ids: Iterable[str]) -> set[str]:
        """The ids, of a suite's questions `question_ids` (all of them: the assignment deals the whole
        suite), that this shard runs."""
        return {qid for qid, shard in assign(suite_name, question_ids, self.count).items() if shard == self.index}

    def dealt(self, suite_name: str, size: int) -> int:
        """How many of a suite's `size` questions this shard is dealt (what `assign` gives it, from the
        suite's name and size alone, in constant time whatever N)."""
        # this shard (0-based index - 1) takes the ranks r ≡ index - 1 - start (mod count)
        first = (self.index - 1 - _start(suite_name, self.count)) % self.count
        return 0 if first >= size else 1 + (size - 1 - first) // self.count

    def to_dict(self) -> dict[str, int]:
        """As a report holds it: {"index": I, "count": N}."""
        return {"index": self.index, "count": self.count}


def _valid(index: Any, count: Any) -> bool:
    return (all(isinstance(v, int) and not isinstance(v, bool) for v in (index, count))
            and 1 <= index <= count)


def _raise(value: Shard) -> Shard:
    raise ValueError(f"there is no shard {value.index} of {value.count}: {_USAGE}")


def question_digest(suite_name: str, question_id: str) -> bytes:
    """SHA-256 of "<suite>/<question id>" (UTF-8): what orders a suite's questions for dealing."""
    # surrogatepass: a lone surrogate (a hand-edited JSON report's "\ud800") is hashed, not a traceback;
    # every other string encodes as plain UTF-8
    return hashlib.sha256(f"{suite_name}/{question_id}".encode("utf-8", "surrogatepass")).digest()


def _start(suite_name: str, count: int) -> int:
    """The 0-based shard a suite's first-ranked question goes to."""
    return int.from_bytes(hashlib.sha256(suite_name.encode("utf-8", "surrogatepass")).digest()[:8], "big") % count


def assign(suite_name: str, question_ids: Iterable[str], count: int) -> dict[str, int]:
    """{question id: its shard, 1..count} for every question of a suite (see the module's formula)."""
    start = _start(suite_name, count)
    ordered = sorted(set(question_ids), key=lambda qid: question_digest(suite_name, qid))
    return {qid: 1 + (start + rank) % count for rank, qid in enumerate(ordered)}
