"""Reading a large JSON report a piece at a time: what keeps `rlhf-eval merge`, a `--rlhf-compare`
baseline and `rlhf-eval html/export/show` of a 50,000-question report within a few hundred MB.

`Report.load` reads a file larger than `STREAM_ABOVE_BYTES` (or any, with `stream=True`) with
`load_streamed`: the text is read 1 MiB at a time; each question of each suite is parsed on its own,
validated into a `report_model.Question` (strictly, as a whole load validates it) and written to a
`spool.QuestionSpool`; everything else of the report (version, provenance, shard, suite settings and
aggregates, comparison) is small and is validated as a whole load validates it. The returned
`Report`'s suites hold `spool.SpooledQuestions` in file order, as `report.build_streamed_report`
makes them: the same Report as a whole load, `to_json` byte for byte.

Every value (a question, a suite's aggregates...) is parsed by the standard library's own JSON
scanner (`json.JSONDecoder.raw_decode`, its C implementation): the same numbers, strings (a lone
surrogate escape, 1e400 as infinity, NaN), the same limits and the same error messages with the same
line and column as `json.loads` of the whole text. Only the containers that hold the questions (the
report object, its `suites` list, a suite object, its `questions` list) are walked here; a syntax
error in their punctuation is worded by `json.loads` itself, on the same text from the last comma or
bracket. Streaming parsers such as ijson (yajl) were measured and left out: yajl reads no NaN or
Infinity (a whole load names their field), turns a "\\ud800" escape into "?", reports no byte
position for an error, and building Python objects from its events was 3-4x slower than the
scanner on a report of 10,000 questions x 8.

Problems are reported as a whole load reports them, in the same order of precedence: invalid JSON
(path:line); not a report; the version; the first validation problem in field order with how many
more there are; a pair index; a pass@k curve; a NaN or infinite number. One exception, so that a
report of a newer version is not read to its end: a bad `version` written before the suites (where
rlhf-eval writes it) is refused at once, before a syntax error later in the file.
"""
from __future__ import annotations

import codecs
import functools
import json
import re
import tempfile
from array import array
from json.decoder import JSONDecodeError, scanstring  # type: ignore[attr-defined]  # json's own, since 2.6
from pathlib import Path
from typing import Any, Callable, TextIO

from pydantic import ValidationError

from .comparison_spool import SpooledComparisons
from .report_model import (FILE_FIX, REPORT_VERSION, WRITE_HINT, Comparison, Question, QuestionComparison, Report,
                           ReportError, Suite, SuiteComparison, _float_noting_overflow, _path, bad_curve, bad_pair,
                           check_version, non_finite_at, problem_of)
from .spool import QuestionSpool, SpooledQuestions

__all__ = ["STREAM_ABOVE_BYTES", "load_streamed"]

# Above this file size `Report.load` streams: ~1,000 questions of k = 8 (12-15 KB each), the size
# above which a run keeps its questions on disk too (runner.IN_MEMORY_QUESTIONS). A whole load of a
# file this size peaks at ~8x it in memory.
STREAM_ABOVE_BYTES = 16 * 2**20
_CHUNK = 1 << 20  # characters read at a time
_NEAR_END = 16  # an error this close to the end of the text read may be a token cut by it: read on
_WS = re.compile(r"[ \t\n\r]*")  # json's whitespace
_REPORT_FIELDS = list(Report.model_fields)
_SUITE_FIELDS = list(Suite.model_fields)
_COMPARISON_FIELDS = list(Comparison.model_fields)
_COMPARED_FIELDS = list(SuiteComparison.model_fields)


def load_streamed(path: Path, source: str, what: str = "report") -> Report:
    """The Report in the JSON file `path`, its questions spooled to a temporary file (see the
    module's docstring). `source` names the file in messages. Raises ReportError (one line),
    OSError when the file cannot be opened (`Report.load` words it)."""
    with open(path, encoding="utf-8") as f:  # universal newlines, as Path.read_text of a whole load
        try:
            return _Loader(f, source).load()
        except UnicodeDecodeError:
            raise ReportError(f"{source}: cannot read the {what}: {_decode_problem(path)}") from None
        except RecursionError:
            raise ReportError(f"{source}: not a report: nested too deeply to read; {WRITE_HINT}") from None


class _Text:
    """The file's text read a chunk at a time: `buf` holds it from character `offset` on, and
    `lines` newlines (the last `tail` characters after the last one) came before it."""

    def __init__(self, f: TextIO, source: str) -> None:
        self.f, self.source = f, source
        self.buf = ""
        self.eof = False
        self.offset = self.lines = self.tail = 0

    def more(self) -> bool:
        """Read the next chunk onto `buf`; False at the end of the file."""
        if not self.eof:
            # as much as is held: a value cut by the end of the text read is read again a few times, not once a chunk
            chunk = self.f.read(max(_CHUNK, len(self.buf)))
            self.buf += chunk
            self.eof = not chunk
        return not self.eof

    def char(self, i: int) -> str:
        """The character at `i` ("" at the end of the file)."""
        while i >= len(self.buf):
            if not self.more():
                return ""
        return self.buf[i]

    def ws(self, i: int) -> int:
        """`i` past whitespace."""
        while True:
            i = _WS.match(self.buf, i).end()  # type: ignore[union-attr]  # matches the empty string
            if i < len(self.buf) or not self.more():
                return i

    def drop(self, i: int) -> int:
        """Forget the text before `i` once it is a chunk or more; `i` in the text kept."""
        if i < _CHUNK:
            return i
        newlines = self.buf.count("\n", 0, i)
        last = self.buf.rfind("\n", 0, i)
        self.lines += newlines
        self.tail = i - last - 1 if last >= 0 else self.tail + i
        self.offset += i
        self.buf = self.buf[i:]
        return 0

    def parse(self, i: int, parse: Callable[[str, int], tuple[Any, int]]) -> tuple[Any, int]:
        """`parse(buf, i)` (a JSON value or string at `i`: (it, the index after it)), reading on
        while the text read ends inside it; a JSON error is a ReportError at its line."""
        while True:
            try:
                value, end = parse(self.buf, i)
            except JSONDecodeError as e:
                cut = e.msg.startswith("Unterminated string") or e.pos >= len(self.buf) - _NEAR_END
                if self.eof or not cut:
                    raise self.error(e.msg, e.pos) from None
            except ValueError:  # json's only other error: an integer of over 4300 digits (int's limit)
                raise ReportError(f"{self.source}: not a report: it holds a number of over 4300 digits; "
                                  f"{WRITE_HINT}") from None
            else:
                if end < len(self.buf) or self.eof:  # a number at the end of the text read may go on
                    return value, end
            self.more()

    def error(self, msg: str, pos: int) -> ReportError:
        """`path:line: not valid JSON: msg (column c)` for position `pos` of `buf`, as a whole load says it."""
        last = self.buf.rfind("\n", 0, pos)
        line = self.lines + self.buf.count("\n", 0, pos) + 1
        column = pos - last if last >= 0 else self.tail + pos + 1
        return ReportError(f"{self.source}:{line}: not valid JSON: {msg} (column {column})")

    def syntax_error(self, state: str, start: int, pos: int) -> ReportError:
        """json's own error for the punctuation at `pos` of a container: `json.loads` of the text
        from `start` (its last bracket, comma or key) behind `state`, text that puts json's parser
        where this walk is (so a trailing comma is worded as the running Python words it)."""
        self.char(pos + 64)
        try:
            json.loads(state + self.buf[start:pos + 64])
        except JSONDecodeError as e:
            return self.error(e.msg, e.pos - len(state) + start)
        except (ValueError, RecursionError):
            pass
        return self.error("Expecting value", pos)  # not reached: the text has an error at `pos`


# the states of json's parser that `_Text.syntax_error` recreates
_IN_OBJECT = '{"":0'  # after a member: "," or "}" next
_IN_ARRAY = "[0"  # after an item: "," or "]" next


class _Loader:
    """One streamed load: walks the report, its suites and their questions."""

    def __init__(self, f: TextIO, source: str) -> None:
        self.text = _Text(f, source)
        self.source = source
        self.noted: list[str] = []  # non-finite tokens of the last value parsed
        note = functools.partial(_float_noting_overflow, self.noted)
        self.decoder = json.JSONDecoder(parse_float=note, parse_constant=note)
        self.spool: QuestionSpool | None = None
        self.where: list[tuple[array, array]] = []  # per suite: (offsets, lengths) in the spool, file order
        # what a whole load would report, gathered as the questions go by
        self.errors: list[tuple[tuple, int, dict]] = []  # (order, sequence, first error) of each question
        self.error_count = 0
        self.pair: str | None = None  # the first bad pair index
        self.curves: dict[int, str] = {}  # suite -> its first question whose curve is bad
        self.non_finite: tuple[int, tuple, float] | None = None  # (offset, location, value) of the first
        # the comparison's per-question entries (~6 KB each as models, one per question of a run
        # compared with a baseline): validated one at a time and kept on disk, by comparison suite
        self.compared: dict[int, SpooledComparisons] = {}
        self.entry_errors: dict[tuple[int, str], tuple[tuple, dict, int]] = {}  # (order, first error, count)

    # ------------------------------------------------------------------------------ the walk

    def load(self) -> Report:
        t = self.text
        i = t.ws(0)
        if t.char(0) == "\ufeff":
            raise t.error("Unexpected UTF-8 BOM (decode using utf-8-sig)", 0)
        if t.char(i) == "{":
            report: Any = {}
            i = self.object(i, lambda key, j: self.top_member(report, key, j))
        elif t.char(i) == "[":  # a list, not a report: not read to its end (it may be large)
            raise ReportError(f"{self.source}: not an rlhf-eval report (no 'suites' list); {WRITE_HINT}")
        else:
            report, i = self.value(i, ())
        i = t.ws(i)
        if t.char(i):
            raise t.error("Extra data", i)
        return self.finish(report)

    def object(self, i: int, member: Callable[[str, int], int]) -> int:
        """Walk the object at `i` (its "{"): `member(key, j)` parses the value at `j` and gives the
        index after it. Returns the index after the object."""
        t = self.text
        start, j = i, t.ws(i + 1)
        if t.char(j) == "}":
            return j + 1
        state = ""  # json.loads of the text from the "{" itself
        while True:
            if t.char(j) != '"':
                raise t.syntax_error(state, start, j)
            key_at = j
            key, j = t.parse(j, lambda buf, k: scanstring(buf, k + 1))
            j = t.ws(j)
            if t.char(j) != ":":
                raise t.syntax_error("{", key_at, j)
            j = t.ws(member(key, t.ws(j + 1)))
            if t.char(j) == "}":
                return j + 1
            if t.char(j) != ",":
                raise t.syntax_error(_IN_OBJECT, j, j)
            start, state, j = j, _IN_OBJECT, t.ws(j + 1)

    def array(self, i: int, item: Callable[[int, int], int]) -> int:
        """Walk the array at `i` (its "["): `item(n, j)` parses item n at `j`, giving the index
        after it. Returns the index after the array."""
        t = self.text
        j = t.ws(i + 1)
        if t.char(j) == "]":
            return j + 1
        n = 0
        while True:
            j = t.ws(t.drop(item(n, j)))
            if t.char(j) == "]":
                return j + 1
            if t.char(j) != ",":
                raise t.syntax_error(_IN_ARRAY, j, j)
            comma, j = j, t.ws(j + 1)
            if t.char(j) in ("]", ""):  # a trailing comma: worded as json words it
                raise t.syntax_error(_IN_ARRAY, comma, j)
            n += 1

    def value(self, i: int, at: tuple) -> tuple[Any, int]:
        """The JSON value at `i` (field path `at`) and the index after it; notes a NaN or infinity."""
        self.noted.clear()
        start = self.text.offset + i
        value, end = self.text.parse(i, self.decoder.raw_decode)
        if self.noted and (found := non_finite_at(value, at)) and (
                self.non_finite is None or start < self.non_finite[0]):
            self.non_finite = (start, *found)
        return value, end

    def top_member(self, report: dict, key: str, i: int) -> int:
        if key == "suites" and self.text.char(i) == "[":
            suites: list[Any] = []
            self.where = []
            report[key] = suites
            return self.array(i, lambda n, j: self.suite(suites, n, j))
        if key == "comparison" and self.text.char(i) == "{":
            comparison: dict[str, Any] = {}
            report[key] = comparison
            self._forget_entries()  # a second "comparison" key replaces the first, as in json
            return self.object(i, lambda k, j: self.comparison_member(comparison, k, j))
        report[key], end = self.value(i, (key,))
        if key == "version" and "suites" not in report:
            # before any question: a report of a newer version is not read on (its fields may mean other things)
            check_version(report[key], self.source)
        return end

    def suite(self, suites: list, n: int, i: int) -> int:
        self.where.append((array("q"), array("q")))
        if self.text.char(i) != "{":
            value, end = self.value(i, ("suites", n))
            suites.append(value)
            return end
        suite: dict[str, Any] = {}
        suites.append(suite)

        def member(key: str, j: int) -> int:
            if key == "questions" and self.text.char(j) == "[":
                suite[key] = []
                self.where[n] = (array("q"), array("q"))  # a second "questions" key replaces the first, as in json
                return self.array(j, lambda m, k: self.question(n, m, k))
            suite[key], end = self.value(j, ("suites", n, key))
            return end

        return self.object(i, member)

    def question(self, n: int, m: int, i: int) -> int:
        """Question m of suite n, at `i`: validated and spooled, or its problem noted."""
        at = ("suites", n, "questions", m)
        data, end = self.value(i, at)
        try:
            q = Question.model_validate(data, strict=True)
        except ValidationError as e:
            errors = e.errors(include_url=False)
            first = {**errors[0], "loc": (*at, *errors[0]["loc"])}
            self.errors.append(((_REPORT_FIELDS.index("suites"), n, _SUITE_FIELDS.index("questions"), m),
                                len(self.errors), first))
            self.error_count += len(errors)
            return end
        if self.errors:
            return end  # the load fails: counting the problems, not keeping the questions
        where = _path(at)
        if self.pair is None:
            self.pair = bad_pair(q, where)
        if n not in self.curves and q.metrics is not None and (curve := bad_curve(f"{where}.metrics", q.metrics,
                                                                                  q.metrics.k)):
            self.curves[n] = curve
        offsets, lengths = self.where[n]
        spool = self._spool()
        try:
            offset, length = spool.add(q)
        except OSError as exc:  # else worded as the report file's: "cannot read the report: File too large"
            raise _spool_full(self.source, "its questions", exc) from None
        offsets.append(offset)
        lengths.append(length)
        return end

    def comparison_member(self, comparison: dict, key: str, i: int) -> int:
        if key == "suites" and self.text.char(i) == "[":
            suites: list[Any] = []
            comparison[key] = suites
            self._forget_entries()
            return self.array(i, lambda n, j: self.compared_suite(suites, n, j))
        comparison[key], end = self.value(i, ("comparison", key))
        return end

    def compared_suite(self, suites: list, n: int, i: int) -> int:
        if self.text.char(i) != "{":
            value, end = self.value(i, ("comparison", "suites", n))
            suites.append(value)
            return end
        suite: dict[str, Any] = {}
        suites.append(suite)

        def member(key: str, j: int) -> int:
            if key == "questions" and self.text.char(j) == "{":
                suite[key] = {}  # validated with the report; its entries are in `compared[n]`
                self._forget_entries(n)
                return self.object(j, lambda question_id, k: self.entry(n, question_id, k))
            suite[key], end = self.value(j, ("comparison", "suites", n, key))
            return end

        return self.object(i, member)

    def entry(self, n: int, question_id: str, i: int) -> int:
        """The comparison entry of question `question_id` of comparison suite n, at `i`: validated
        and spooled, or its problem noted. A key given twice keeps its first place and its last
        value, as a dict of json's does."""
        at = ("comparison", "suites", n, "questions", question_id)
        data, end = self.value(i, at)
        spool = self.compared.get(n)
        if spool is None:
            spool = self.compared[n] = self._temporary(SpooledComparisons, "its comparison's entries")
        try:
            entry = QuestionComparison.model_validate(data, strict=True)
        except ValidationError as e:
            errors = e.errors(include_url=False)
            order = (_REPORT_FIELDS.index("comparison"), _COMPARISON_FIELDS.index("suites"), n,
                     _COMPARED_FIELDS.index("questions"), spool.reserve(question_id))
            self.entry_errors[(n, question_id)] = (order, {**errors[0], "loc": (*at, *errors[0]["loc"])}, len(errors))
            return end
        self.entry_errors.pop((n, question_id), None)  # a good entry replaces a bad one of its key
        if self.errors:  # the load fails (a question's problem): its entries are only counted
            spool.reserve(question_id)
            return end
        try:
            spool[question_id] = entry
        except OSError as exc:
            raise _spool_full(self.source, "its comparison's entries", exc) from None
        return end

    def _forget_entries(self, n: int | None = None) -> None:
        """The entries of comparison suite n (of every one: None) read so far are replaced."""
        for k in [k for k in self.compared if n is None or k == n]:
            self.compared.pop(k).close()
        for key in [key for key in self.entry_errors if n is None or key[0] == n]:
            del self.entry_errors[key]

    def _temporary(self, make: Callable[[], Any], what: str) -> Any:
        """`make()`: a spool's temporary file; one that cannot be made is a ReportError."""
        try:
            return make()
        except OSError as exc:
            from .atomic import os_reason

            raise ReportError(f"{self.source}: cannot write {what} to a temporary file in {_temp_folder()} "
                              f"({os_reason(exc)}); set TMPDIR to a writable folder") from None

    def _spool(self) -> QuestionSpool:
        if self.spool is None:
            self.spool = self._temporary(QuestionSpool, "its questions")
        return self.spool

    # ------------------------------------------------------------------------------ the checks

    def finish(self, data: Any) -> Report:
        """The checks of `Report._validated`, in its order, over the report without its questions
        and what the questions gave; then the Report, each suite's questions read from the spool."""
        source = self.source
        if not isinstance(data, dict) or not isinstance(data.get("suites"), list):
            raise ReportError(f"{source}: not an rlhf-eval report (no 'suites' list); {WRITE_HINT}")
        check_version(data.get("version", REPORT_VERSION), source)
        try:
            report = Report.model_validate(data, strict=True)
            problems: list[Any] = []
        except ValidationError as e:
            problems = e.errors(include_url=False)
        errors = [(_order(p["loc"]), -1, p) for p in problems] + self.errors + [
            (order, 0, first) for order, first, _ in self.entry_errors.values()]
        if errors:
            first = min(errors, key=lambda e: (e[0], e[1]))[2]
            count = len(problems) + self.error_count + sum(c for _, _, c in self.entry_errors.values())
            raise ReportError(problem_of(source, first, count))
        problem = self.pair
        for n, suite in enumerate(report.suites):
            if problem:
                break
            problem = bad_curve(f"suites[{n}].aggregates", suite.aggregates, None) or self.curves.get(n)
        if problem is None and self.non_finite is not None:
            _, loc, value = self.non_finite
            problem = f"{_path(loc)}: {value!r} is not a finite number (JSON has no NaN or infinity)"
        if problem:
            raise ReportError(f"{source}: {problem}; {FILE_FIX}")
        spool = self.spool or QuestionSpool()
        for suite, (offsets, lengths) in zip(report.suites, self.where):
            suite.questions = SpooledQuestions(spool, offsets, lengths)  # type: ignore[assignment]
        if report.comparison is not None:
            for n, entries in self.compared.items():
                report.comparison.suites[n].questions = entries  # type: ignore[assignment]  # validated as read
        return report


def _temp_folder() -> str:
    try:
        return tempfile.gettempdir()
    except OSError:  # none of TMPDIR, /tmp, /var/tmp, ... is usable
        return "the temporary folder"


def _spool_full(source: str, what: str, exc: OSError) -> ReportError:
    """The one line for a spool's temporary file that a write failed on (a full disk, a size cap)."""
    from .atomic import os_reason

    return ReportError(f"{source}: cannot write {what} to a temporary file in {_temp_folder()} ({os_reason(exc)}); "
                       "free space there or set TMPDIR to a folder with room")


def _order(loc: tuple) -> tuple:
    """Where pydantic lists a problem of the report without its questions among a whole load's
    problems: by field (a suite's questions are its last field) and item; in the comparison, by its
    field, suite, the suite's field (its per-question entries are read on their own) and entry."""
    top = _REPORT_FIELDS.index(loc[0]) if loc and loc[0] in _REPORT_FIELDS else len(_REPORT_FIELDS)
    if loc and loc[0] == "comparison":
        field = _COMPARISON_FIELDS.index(loc[1]) if len(loc) >= 2 and loc[1] in _COMPARISON_FIELDS else -1
        if len(loc) >= 3 and loc[1] == "suites" and isinstance(loc[2], int):
            sub = _COMPARED_FIELDS.index(loc[3]) if len(loc) >= 4 and loc[3] in _COMPARED_FIELDS else -1
            return top, field, loc[2], sub, -1
        return top, field, -1, -1, -1
    if len(loc) >= 2 and loc[0] == "suites":
        field = _SUITE_FIELDS.index(loc[2]) if len(loc) >= 3 and loc[2] in _SUITE_FIELDS else -1
        return top, loc[1], field, -1
    return top, -1, -1, -1


def _decode_problem(path: Path) -> str:
    """The UnicodeDecodeError `Path.read_text` gives for the file, worded as it words it (the byte's
    position in the whole file), found a chunk at a time."""
    decode = codecs.getincrementaldecoder("utf-8")()
    base = 0  # the file offset of the decoder's first undecoded byte
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_CHUNK)
            pending = decode.getstate()[0]
            data = pending + chunk
            try:
                decode.decode(chunk, final=not chunk)
            except UnicodeDecodeError as e:
                at = base + e.start
                if e.end - e.start == 1:
                    return f"'utf-8' codec can't decode byte 0x{data[e.start]:02x} in position {at}: {e.reason}"
                return f"'utf-8' codec can't decode bytes in position {at}-{at + e.end - e.start - 1}: {e.reason}"
            if not chunk:
                return "not UTF-8"  # not reached: the text reader found an error
            base += len(data) - len(decode.getstate()[0])
