"""A run's questions on disk: what keeps a run's memory flat in the number of questions.

A question's report entry (its traces' texts, reasoning, log-probabilities, pairs) is ~60 KB in
memory; 50,000 of them would be 3 GB. A `QuestionSpool` writes each one, as it arrives, to an
anonymous temporary file (deleted when the spool is closed or collected; ~15 KB a question of
k = 8 on disk) as the JSON text the report will hold, and keeps only where it is: three numbers a
question. The run's `SuiteTally` keeps what the aggregates need (rlhf_eval.tally).

`SpooledQuestions` is a suite's questions read back from the spool, in report order (by index, in
arrival order among equals, as `report.build_report` sorts them): a read-only sequence of
`report_model.Question` that parses one question at a time, so the terminal table, the HTML page,
the export and a comparison walk 50,000 questions without holding them. `Report.to_json` /
`Report.dump` (report_model) write a report whose suites hold one by streaming each question's
text: the same bytes as the report built in memory.
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
import threading
from array import array
from typing import Iterator, Sequence, overload

from pydantic import ValidationError

from .report_model import Question, model_json

ENCODING = ("utf-8", "surrogatepass")  # a lone surrogate in a model's text survives the spool


def question_json(q: Question) -> str:
    """`q` as the report's JSON holds it, at the top level (indent 1): the text `Report.to_json`
    nests at its place (NaN and infinities are kept as tokens here: writing the report refuses them)."""
    return model_json(q)[0]  # a lone surrogate in a text or a key: the json module writes it, as to_json does


class QuestionSpool:
    """Questions written to a temporary file as they arrive, read back by suite in report order.

    `add` may be called from several threads. The file is deleted when `close` is called or the
    spool is garbage collected (a `SpooledQuestions` of it keeps it alive). Raises OSError when
    the temporary folder (TMPDIR) cannot take the file."""

    def __init__(self, directory: str | None = None) -> None:
        self._file = tempfile.TemporaryFile(prefix="rlhf-eval-questions-", dir=directory)
        self._fd = self._file.fileno()
        self._end = 0
        self._lock = threading.Lock()
        # suite -> (question index, offset, length) of each question, in arrival order
        self._where: dict[str, tuple[array, array, array]] = {}

    def add(self, q: Question) -> tuple[int, int]:
        """Write question `q` (a validated report question) to the spool; returns where it is,
        (offset, length), for a `SpooledQuestions` of questions in an order of the caller's."""
        data = question_json(q).encode(*ENCODING)
        with self._lock:
            offset = self._end
            view, written = memoryview(data), 0
            while written < len(data):  # a write that meets a full disk writes what fits and says so
                n = os.pwrite(self._fd, view[written:], offset + written)
                if n <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                written += n
            self._end += len(data)  # only now: a question cut short is never read back
            index, offsets, lengths = self._where.setdefault(q.suite, (array("q"), array("q"), array("q")))
            index.append(q.index)
            offsets.append(offset)
            lengths.append(len(data))
        return offset, len(data)

    def __len__(self) -> int:
        return sum(len(w[0]) for w in self._where.values())

    def suites(self) -> list[str]:
        """The names of the suites that have questions in the spool (arrival order)."""
        return list(self._where)

    def questions(self, suite: str) -> SpooledQuestions:
        """`suite`'s questions in report order (none when it has none)."""
        index, offsets, lengths = self._where.get(suite, (array("q"), array("q"), array("q")))
        order = sorted(range(len(index)), key=index.__getitem__)  # stable: arrival order among equal indices
        return SpooledQuestions(self, array("q", (offsets[i] for i in order)), array("q", (lengths[i] for i in order)))

    def read(self, offset: int, length: int) -> str:
        return os.pread(self._fd, length, offset).decode(*ENCODING)

    def close(self) -> None:
        self._file.close()


class SpooledQuestions(Sequence[Question]):
    """One suite's questions in a `QuestionSpool`, in report order: a read-only sequence that parses a
    question each time one is asked for (mutating one changes nothing in the spool)."""

    def __init__(self, spool: QuestionSpool, offsets: array, lengths: array) -> None:
        self._spool = spool
        self._offsets = offsets
        self._lengths = lengths

    def __len__(self) -> int:
        return len(self._offsets)

    @overload
    def __getitem__(self, i: int) -> Question: ...

    @overload
    def __getitem__(self, i: slice) -> list[Question]: ...

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        text = self.json_text(i)
        try:
            return Question.model_validate_json(text, strict=True)
        except ValidationError:  # written from a valid question: only strictness (a number's type) can differ
            pass
        try:
            return Question.model_validate_json(text, strict=False)
        except ValidationError:  # a lone surrogate's "\ud800" escape: pydantic's parser refuses it, json's reads it
            return Question.model_validate(json.loads(text), strict=False)

    def __iter__(self) -> Iterator[Question]:
        for i in range(len(self)):
            yield self[i]

    def json_text(self, i: int) -> str:
        """Question `i` as `question_json` wrote it."""
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError("question index out of range")
        return self._spool.read(self._offsets[i], self._lengths[i])

    def json_texts(self) -> Iterator[str]:
        """Every question's text, in order (what `Report.to_json` nests)."""
        for i in range(len(self)):
            yield self.json_text(i)

    def __repr__(self) -> str:
        return f"<{len(self)} questions spooled to disk>"


__all__ = ["QuestionSpool", "SpooledQuestions", "question_json"]
