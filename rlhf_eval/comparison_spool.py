"""A comparison's per-question entries on disk: what keeps comparing two large runs flat in memory.

`compare.compare_suite` gives every question both runs scored a `QuestionComparison` (4 metric
changes with their tests, the preference flips, the GRPO signal): about 6 KB a question in memory,
0.8 KB as JSON (measured on 1,000 questions × 8 traces). For a run whose questions are read from
disk (rlhf_eval.spool), `SpooledComparisons` holds them instead: each entry is written, as it is
computed, to an anonymous temporary file as the JSON text the report holds, and only where it is
is kept (an id and two numbers an entry). It is a read-only `Mapping[str, QuestionComparison]` by
question id, in the order the entries were added, so `SuiteComparison.questions` reads the same
whether it is a dict or spooled; `Report.to_json` / `dump` (report_model) nest each entry's text
at its place: the same bytes as the dict gives.
"""
from __future__ import annotations

import errno
import os
import tempfile
from array import array
from typing import Iterator, Mapping

from pydantic import ValidationError

from .report_model import QuestionComparison, model_json

ENCODING = ("utf-8", "surrogatepass")  # a lone surrogate in an answer (a flip's) survives the file


def comparison_json(entry: QuestionComparison) -> str:
    """`entry` as the report's JSON holds it, at the top level (indent 1; NaN kept as a token:
    writing the report refuses it)."""
    return model_json(entry)[0]  # a lone surrogate in an answer or an id: the json module writes it, as to_json does


class SpooledComparisons(Mapping[str, QuestionComparison]):
    """Question id → `QuestionComparison`, kept in a temporary file and parsed on each access.

    Setting an id again replaces its entry and keeps its place (as a dict does). The file is
    deleted when `close` is called or the object is garbage collected. Raises OSError when the
    temporary folder (TMPDIR) cannot take the file, or when setting an entry meets a full disk
    (the entry is then not set: a cut entry is never read back)."""

    def __init__(self, directory: str | None = None) -> None:
        self._file = tempfile.TemporaryFile(prefix="rlhf-eval-comparisons-", dir=directory)
        self._fd = self._file.fileno()
        self._end = 0
        self._position: dict[str, int] = {}  # id -> its place (insertion order, as the JSON holds it)
        self._offsets = array("q")
        self._lengths = array("q")

    def __setitem__(self, question_id: str, entry: QuestionComparison) -> None:
        data = comparison_json(entry).encode(*ENCODING)
        view, written = memoryview(data), 0
        while written < len(data):  # a write that meets a full disk writes what fits and says so
            n = os.pwrite(self._fd, view[written:], self._end + written)
            if n <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written += n
        i = self._position.setdefault(question_id, len(self._offsets))
        if i == len(self._offsets):
            self._offsets.append(self._end)
            self._lengths.append(len(data))
        else:
            self._offsets[i], self._lengths[i] = self._end, len(data)
        self._end += len(data)

    def __getitem__(self, question_id: str) -> QuestionComparison:
        text = self._text(self._position[question_id])
        try:
            return QuestionComparison.model_validate_json(text, strict=True)
        except ValidationError:  # written from a valid entry: only strictness (a number's type) can differ
            return QuestionComparison.model_validate_json(text, strict=False)

    def __contains__(self, question_id: object) -> bool:
        return question_id in self._position

    def __iter__(self) -> Iterator[str]:
        return iter(self._position)

    def __len__(self) -> int:
        return len(self._position)

    def reserve(self, question_id: str) -> int:
        """Give `question_id` its place (as a dict's key set first) without an entry yet: a reader
        that meets a bad entry keeps its key's place for a good one given later under the same key.
        Until one is set, reading it is an error. Returns the place."""
        i = self._position.setdefault(question_id, len(self._offsets))
        if i == len(self._offsets):
            self._offsets.append(0)
            self._lengths.append(0)
        return i

    def position(self, question_id: str) -> int:
        """The place of `question_id`'s entry (0 for the first added); KeyError when it has none."""
        return self._position[question_id]

    def json_items(self) -> Iterator[tuple[str, str]]:
        """(question id, its entry's text as `comparison_json` wrote it), in order."""
        for question_id, i in self._position.items():
            yield question_id, self._text(i)

    def _text(self, i: int) -> str:
        return os.pread(self._fd, self._lengths[i], self._offsets[i]).decode(*ENCODING)

    def close(self) -> None:
        self._file.close()

    def __repr__(self) -> str:
        return f"<{len(self)} question comparisons spooled to disk>"


def is_spooled(entries: Mapping[str, QuestionComparison]) -> bool:
    """Whether a `SuiteComparison.questions` is read from disk rather than a dict in memory."""
    return not isinstance(entries, dict)


__all__ = ["SpooledComparisons", "comparison_json", "is_spooled"]
