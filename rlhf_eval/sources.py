"""Question sources: the rows of a dataset → a suite's question rows.

A suite's `questions:` may name a dataset instead of listing its questions (`QuestionSource` in
suite.py): a local file or folder (`source:`) or a Hugging Face Hub dataset (`hf:`). This module
reads it and maps each row to a question, and nothing else; suite.py checks the questions.

Formats, by suffix (then by the file's first bytes):

| source | read with | errors name |
| --- | --- | --- |
| `.jsonl`, `.ndjson` (any other suffix too) | json, line by line, streamed | the line |
| `.json`: an array `[{...}, ...]` (or JSON lines) | json | the row (the line for JSON lines) |
| `.csv`, `.tsv` | the stdlib csv module: every value the text written, as a JSONL string | the line |
| `.parquet` | pyarrow | the row |
| `X.gz` (X one of the text formats above; gzip by its magic bytes too) | gzip, streamed | the line |
| a folder: `Dataset`/`DatasetDict.save_to_disk`, or a dataset repository | datasets | the row |
| `hf: owner/name` (`config`, `split`, `revision`) | `datasets.load_dataset`, offline from the local cache | the row |

CSV goes through the csv module rather than pyarrow so that values stay as written (an id `007`
or an answer `1,234` is not turned into a number) and errors can name the line, as for JSONL.

Rows are numbered from 0 as stored (`dataset[i]`; the default id is `<prefix>-<i:04d>`, so a
row keeps its id whatever is selected). Selection: `shuffle` permutes the rows exactly as
`datasets.Dataset.shuffle(seed=shuffle_seed)` does (NumPy's `default_rng(seed).permutation(n)`),
then `offset`/`limit` take a slice of that order, as `.shuffle(seed).select(range(offset,
offset + limit))`: a larger `limit` keeps the questions a smaller one chose, and a training script
that shuffles the same dataset with the same seed sees the same rows.

Column names (`question_field`, `answer_field`, `id_field`, the values of `fields`) are dotted
paths into nested rows (`problem.text`, `choices.0`); a column whose own name has the dots wins.
`datasets` and `pyarrow` are imported only when a source needs them.
"""
from __future__ import annotations

import csv
import gzip
import json
import math
import os
import re
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from pydantic import ValidationError

from .paths import shown_path
from .suite import _EXPECTED, QuestionSpec, SuiteError, _clip, _closest, _short
from .verify import VerifierError, extract_reference
from .yamlines import line_of

if TYPE_CHECKING:
    from .suite import QuestionSource

# What a question file starts with when it is in a format no source reads, and what it then is.
_MAGIC = {b"BZh": "a bzip2-compressed file", b"\xfd7zXZ\x00": "an xz-compressed file",
          b"\x28\xb5\x2f\xfd": "a zstd-compressed file", b"PK\x03\x04": "a zip archive (or an Excel workbook)",
          b"ARROW1": "an Arrow file"}
_SUFFIXES = {".xlsx": "an Excel workbook", ".xls": "an Excel workbook", ".zip": "a zip archive",
             ".bz2": "a bzip2-compressed file", ".xz": "an xz-compressed file", ".zst": "a zstd-compressed file",
             ".arrow": "an Arrow file", ".feather": "an Arrow file", ".7z": "a 7-Zip archive", ".tar": "a tar archive"}
_GZIP, _PARQUET = b"\x1f\x8b", b"PAR1"
_TEXT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv"}
_SAVED_BY_DATASETS = ("dataset_dict.json", "state.json")  # what Dataset(Dict).save_to_disk writes
_KNOWN = ("JSONL (.jsonl, .jsonl.gz), JSON arrays (.json), CSV/TSV, Parquet, a folder saved by datasets, "
          "or a Hub dataset (hf:)")

Row = tuple[int, "int | None", Any]  # (row number from 0, line in the file or None, the decoded row)
QuestionRow = tuple[QuestionSpec, "int | None", tuple]  # what suite._expand checks: (spec, line, keypath)


def read_source(src: QuestionSource, suite_path: Path, lines: dict, verifier: str | None,
                ) -> tuple[list[QuestionRow], str]:
    """The questions of `src`, and the path that errors about them name (the file, or the suite for
    a Hub dataset). Each question is (QuestionSpec, line in the file or None, ("questions",)).

    `verifier`: the suite's verifier name, which reads each answer field (None: it is unknown, and
    reported elsewhere). Raises SuiteError, one line: a file that is missing, unreadable or in an
    unknown format; a Hub dataset that is neither cached nor reachable; a row without a named
    column (its line, or its row number, and the closest key); a library that is not installed."""
    reader: _Reader
    if src.hf is not None:
        reader = _HubReader(src, suite_path, lines)
    else:
        reader = _file_reader(src, suite_path, lines)
    questions = _questions(src, reader, verifier)
    if not questions and reader.total is not None:
        _nothing_chosen(src, reader, suite_path, lines)
    return questions, reader.where_path


def _nothing_chosen(src: QuestionSource, reader: _Reader, suite_path: Path, lines: dict) -> None:
    """SuiteError for a source that gave no question: it holds no rows, or `offset` skips them all."""
    named = f"questions.hf: {_clip(src.hf, 80)}" if src.hf else f"questions.source: {_clip(src.source or '', 60)}"
    if reader.total:
        raise SuiteError(suite_path, line_of(lines, ("questions", "offset")),
                         f"questions.offset: {src.offset} skips every row of {named.split(': ', 1)[1]}, which has "
                         f"{reader.total}; give an offset below {reader.total}")
    raise SuiteError(suite_path, line_of(lines, ("questions", "hf" if src.hf else "source")),
                     f"{named}: the dataset has no rows; name a file or split that holds the questions")


# ---------------------------------------------------------------------------------------------
# Readers: each gives rows (number, line, value) in the order the suite takes them
# ---------------------------------------------------------------------------------------------

class _Reader:
    where_path: str  # the path SuiteErrors about its rows name
    prefix: str  # default id prefix
    located = False  # rows have lines (errors name them): else rows are named by number
    total: int | None = None  # the rows the source holds, once `rows` has gone through them

    def rows(self, src: QuestionSource) -> Iterator[Row]:
        raise NotImplementedError

    def error(self, number: int, line: int | None, message: str) -> SuiteError:
        if line is not None:
            return SuiteError(self.where_path, line, message)
        return SuiteError(self.where_path, None, f"row {number}: {message}")


def _chosen(src: QuestionSource, count: int) -> list[int]:
    """Row numbers taken from a dataset of `count` rows: shuffled as `datasets`' `.shuffle(seed)`,
    then `offset`/`limit`."""
    end = None if src.limit is None else src.offset + src.limit
    if not src.shuffle:
        return list(range(count))[src.offset:end]
    import numpy as np  # a core dependency; imported here as only a shuffled source needs it
    return np.random.default_rng(src.shuffle_seed).permutation(count)[src.offset:end].tolist()


def _file_reader(src: QuestionSource, suite_path: Path, lines: dict) -> _Reader:
    assert src.source is not None
    at = line_of(lines, ("questions", "source"))
    try:
        # Not resolved: a link (DVC, git-annex, the Hugging Face cache) points at a blob with no
        # suffix, and the format and the default ids go by the name the suite wrote.
        file = Path(os.path.abspath(suite_path.parent / src.source))
        is_dir, found = file.is_dir(), file.is_file()
    except (OSError, ValueError) as exc:  # a name too long for the system, a NUL byte in it
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SuiteError(suite_path, at, f"questions.source: {_short(src.source)} cannot be a file name "
                         f"({reason}); give the question file's path") from None
    if is_dir:
        return _FolderReader(src, suite_path, at, file)
    if not found:
        raise SuiteError(suite_path, at, f"questions.source: no file {_short(src.source)} (looked for "
                         f"{file.resolve()})")
    for key in ("split", "config"):
        if getattr(src, key) is not None:
            raise SuiteError(suite_path, line_of(lines, ("questions", key)),
                             f"questions.{key}: {_clip(src.source, 60)} is one file, with no {key}s; remove {key} "
                             "(it is for a Hub dataset or a folder saved by datasets)")
    try:
        with file.open("rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise SuiteError(file, None, f"cannot read question file: {exc.strerror}") from None
    name = file.name.lower()
    compressed = head.startswith(_GZIP)
    if compressed or name.endswith(".gz"):
        inner = Path(name.removesuffix(".gz")).suffix
        kind = _TEXT_FORMATS.get(inner, "jsonl" if inner not in _SUFFIXES and inner != ".parquet" else None)
    elif head.startswith(_PARQUET) or Path(name).suffix in (".parquet", ".pq"):
        return _ParquetReader(src, suite_path, at, file)
    else:
        kind = _TEXT_FORMATS.get(Path(name).suffix, "jsonl")
        foreign = next((k for magic, k in _MAGIC.items() if head.startswith(magic)), None)
        foreign = foreign or _SUFFIXES.get(Path(name).suffix)
        if foreign:
            raise SuiteError(suite_path, at, f"questions.source: {_clip(src.source, 60)} is {foreign}; sources are "
                             f"{_KNOWN}: convert it")
    if kind is None:
        raise SuiteError(suite_path, at, f"questions.source: {_clip(src.source, 60)} is a gzip-compressed "
                         f"{Path(name.removesuffix('.gz')).suffix or 'file'}; only JSONL, JSON and CSV/TSV are read "
                         "compressed: decompress it")
    if kind in ("csv", "tsv"):
        return _CsvReader(file, kind, compressed)
    return _JsonReader(file, kind, compressed)


def _stem(file: Path) -> str:
    name = file.name
    for suffix in (".gz", *_TEXT_FORMATS, ".parquet", ".pq"):
        name = name[: -len(suffix)] if name.lower().endswith(suffix) else name
    return name or file.stem


class _TextFile(_Reader):
    """A text file, plain or gzip-compressed, read line by line as bytes (so a bad byte or a
    truncated gzip stream gets its line, and rows past `limit` are never read)."""

    located = True

    def __init__(self, file: Path, compressed: bool):
        self.file, self.compressed = file, compressed
        self.where_path, self.prefix = str(file), _stem(file)

    def _lines(self) -> Iterator[tuple[int, str]]:
        """(line number, text) of each line, UTF-8 decoded."""
        try:
            raw = self.file.open("rb")
        except OSError as exc:
            raise SuiteError(self.file, None, f"cannot read question file: {exc.strerror}") from None
        handle: Any = gzip.GzipFile(fileobj=raw, mode="rb") if self.compressed else raw
        lineno = 0
        with raw, handle:
            try:
                for lineno, data in enumerate(handle, start=1):
                    try:
                        # A byte order mark (Notepad, Excel, PowerShell write one) is no part of the data.
                        yield lineno, data.decode("utf-8-sig" if lineno == 1 else "utf-8")
                    except UnicodeDecodeError:
                        raise SuiteError(self.file, lineno, "not UTF-8 text; save the file as UTF-8") from None
            except (EOFError, gzip.BadGzipFile, zlib.error) as exc:  # a truncated or corrupt stream
                raise SuiteError(self.file, lineno + 1 if lineno else None,
                                 f"not a readable gzip file ({_first_line(exc) or type(exc).__name__}); "
                                 "download or compress it again") from None
            except OSError as exc:
                raise SuiteError(self.file, None, f"cannot read question file: {exc.strerror or exc}") from None


class _JsonReader(_TextFile):
    """JSON lines (one object a line), or a `.json` file holding one array of objects."""

    def __init__(self, file: Path, kind: str, compressed: bool):
        super().__init__(file, compressed)
        self.kind = kind

    def rows(self, src: QuestionSource) -> Iterator[Row]:
        lines = self._lines()
        if self.kind == "json":
            first = next(((n, t) for n, t in lines if t.strip()), None)
            if first is not None and first[1].lstrip().startswith("["):
                yield from self._array(src, first, lines)
                return
            lines = _chain([first] if first else [], lines)
        nonblank = ((n, t) for n, t in lines if t.strip())
        if src.shuffle:  # every row is counted before any is chosen
            everything = list(nonblank)
            self.total = len(everything)
            for number in _chosen(src, len(everything)):
                lineno, text = everything[number]
                yield number, lineno, self._parse(lineno, text)
            return
        taken = 0
        self.total = 0
        for number, (lineno, text) in enumerate(nonblank):
            self.total = number + 1
            if number < src.offset:
                continue
            if src.limit is not None and taken >= src.limit:
                break
            taken += 1
            yield number, lineno, self._parse(lineno, text)

    def _parse(self, lineno: int, text: str) -> Any:
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            # A .json file may hold one object over several lines: say what a .json source holds.
            shape = " (a .json source holds an array [{...}, ...] or one object per line)" * (self.kind == "json")
            raise SuiteError(self.file, lineno, f"not valid JSON: {exc.msg}{shape}") from None
        except ValueError:  # a number past Python's 4300-digit limit
            raise SuiteError(self.file, lineno, "a number on this line has more than 4300 digits; "
                             "write it as a string") from None
        except RecursionError:
            raise SuiteError(self.file, lineno, "values on this line are nested too deeply for a question") from None
        if not isinstance(row, dict):
            raise SuiteError(self.file, lineno, "each line must be a JSON object")
        return row

    def _array(self, src: QuestionSource, first: tuple[int, str], rest: Iterator[tuple[int, str]]) -> Iterator[Row]:
        self.located = False  # rows of an array have no line of their own
        text = first[1] + "".join(t for _, t in rest)
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SuiteError(self.file, first[0] - 1 + exc.lineno, f"not valid JSON: {exc.msg}") from None
        except ValueError:
            raise SuiteError(self.file, None, "a number has more than 4300 digits; write it as a string") from None
        except RecursionError:
            raise SuiteError(self.file, None, "values are nested too deeply for a question") from None
        self.total = len(rows)
        for number in _chosen(src, len(rows)):
            if not isinstance(rows[number], dict):
                raise self.error(number, None, f"each row must be a JSON object, got {_short(rows[number], 40)}")
            yield number, None, rows[number]


def _chain(*parts: Iterable) -> Iterator:
    for part in parts:
        yield from part


class _CsvReader(_TextFile):
    """CSV (or TSV) with a header line: each row a mapping column → the text written."""

    def __init__(self, file: Path, kind: str, compressed: bool):
        super().__init__(file, compressed)
        self.delimiter = "\t" if kind == "tsv" else ","

    def rows(self, src: QuestionSource) -> Iterator[Row]:
        texts = (text for _, text in self._lines())
        # strict: a stray quote is an error, not a value silently merged with the next row's
        reader = csv.reader(texts, delimiter=self.delimiter, strict=True)
        rows: list[tuple[int, dict]] = []
        start = 1
        try:
            header = next(reader, None)
            if header is None:
                self.total = 0
                return
            repeated = next((name for i, name in enumerate(header) if name in header[:i]), None)
            if repeated is not None:  # a dict of the row would keep the last column of the name, silently
                raise SuiteError(self.file, 1, f"the header line names the column {_short(repeated)} twice; "
                                 "give each column its own name")
            while True:
                start = reader.line_num + 1  # a quoted value may span lines: the record's first line
                values = next(reader, None)
                if values is None:
                    break
                if not values:  # a blank line
                    continue
                if len(values) != len(header):
                    raise SuiteError(self.file, start, f"{len(values)} values for the {len(header)} columns of the "
                                     "header line; quote values that hold the delimiter")
                rows.append((start, dict(zip(header, values))))
        except csv.Error as exc:
            if "new-line character" in str(exc):  # Python's wording asks about a mode the reader does not have
                raise SuiteError(self.file, start, "lines end with a bare carriage return (\\r, as Excel's \"CSV "
                                 "(Macintosh)\" writes); save the file with \\n or \\r\\n line ends") from None
            if "end of data" in str(exc):
                raise SuiteError(self.file, start, "a quoted value opened on this line is never closed; close the "
                                 "quote, or write a quote inside a value as two (\"\")") from None
            raise SuiteError(self.file, start, f"not valid CSV: {exc} (a quoted value ends at its closing quote; "
                             "write a quote inside a value as two: \"\")") from None
        self.total = len(rows)
        for number in _chosen(src, len(rows)):
            yield number, rows[number][0], rows[number][1]


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


def _need(module: str, suite_path: Path, at: int | None, what: str):
    """`module` imported, or one SuiteError line naming the extra that installs it."""
    try:
        return __import__(module)
    except ImportError:
        raise SuiteError(suite_path, at, f"questions: reading {what} needs the {module} library; "
                         "pip install 'rlhf-eval[datasets]'") from None


class _ParquetReader(_Reader):
    def __init__(self, src: QuestionSource, suite_path: Path, at: int | None, file: Path):
        self.file, self.suite_path, self.at = file, suite_path, at
        self.where_path, self.prefix = str(file), _stem(file)

    def rows(self, src: QuestionSource) -> Iterator[Row]:
        _need("pyarrow", self.suite_path, self.at, "Parquet")
        import pyarrow.parquet as pq  # type: ignore[import-untyped]
        try:
            table = pq.read_table(self.file)
        except Exception as exc:  # pyarrow's ArrowInvalid, OSError, ...: one line, never its traceback
            said = _first_line(exc).replace(str(self.file), shown_path(self.file))  # no absolute path
            raise SuiteError(self.file, None, f"not a readable Parquet file ({_clip(said, 160)}); "
                             "write it again (e.g. pyarrow.parquet.write_table)") from None
        import pyarrow as pa
        chosen = _chosen(src, table.num_rows)
        self.total = table.num_rows
        # Typed indices: pyarrow cannot take an empty list, whose type it cannot tell.
        for number, row in zip(chosen, table.take(pa.array(chosen, type=pa.int64())).to_pylist()):
            yield number, None, row


def _one_split(loaded: Any, split: str | None, fail: Callable[[str], SuiteError]) -> Any:
    """The Dataset of `loaded` (a Dataset, or a DatasetDict and the split to take)."""
    if not hasattr(loaded, "keys"):  # a Dataset
        if split is not None and getattr(loaded, "split", None) not in (None, split):
            raise fail(f"it holds the split {str(loaded.split)!r}, not {split!r}; remove split")
        return loaded
    splits = list(loaded.keys())
    if split is None:
        if len(splits) == 1:
            return loaded[splits[0]]
        raise fail(f"it has the splits {', '.join(splits)}; name one as questions.split")
    if split not in splits:
        raise fail(f"no split {split!r}{_closest(split, splits)}; it has {', '.join(splits)}")
    return loaded[split]


class _DatasetRows(_Reader):
    """Rows of a `datasets.Dataset`, selected before they are decoded."""

    dataset: Any

    def rows(self, src: QuestionSource) -> Iterator[Row]:
        self.total = len(self.dataset)
        chosen = _chosen(src, len(self.dataset))
        for number, row in zip(chosen, self.dataset.select(chosen)):
            yield number, None, row


class _FolderReader(_DatasetRows):
    """A folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`, or a dataset
    repository checked out locally (data files and a README.md, as on the Hub)."""

    def __init__(self, src: QuestionSource, suite_path: Path, at: int | None, folder: Path):
        self.where_path, self.prefix = str(folder), folder.name
        saved = any((folder / name).is_file() for name in _SAVED_BY_DATASETS)
        repository = not saved and _dataset_repository(folder)
        shown = _clip(src.source or "", 60)

        def fail(message: str) -> SuiteError:
            return SuiteError(suite_path, at, f"questions.source: {shown}: {message}")

        if not (saved or repository):
            raise fail("a folder, but not one saved by datasets (no dataset_dict.json or state.json) nor a dataset "
                       "repository (no dataset card README.md, no Parquet files); name a file or such a folder")
        datasets = _need("datasets", suite_path, at, "a dataset folder")
        try:
            if saved:
                if src.config is not None:
                    raise fail("a folder saved by datasets has no configs; remove config")
                loaded = datasets.load_from_disk(str(folder))
            else:
                loaded = datasets.load_dataset(str(folder), src.config, split=src.split)
        except SuiteError:
            raise
        except Exception as exc:  # the library's own error, one line
            if saved and isinstance(exc, IndexError):  # datasets 2-5 cannot load what it saved with no rows
                raise fail("the dataset has no rows; name a file or split that holds the questions") from None
            raise fail(f"datasets cannot load it ({type(exc).__name__}: {_clip(_first_line(exc), 160)})") from None
        self.dataset = _one_split(loaded, src.split, fail)


def _dataset_repository(folder: Path) -> bool:
    """Whether `folder` looks like a dataset repository: a dataset card (README.md opening with
    its YAML header) or Parquet files at most two folders down (gsm8k's `main/test-*.parquet`).
    Any other folder (a project's root, a suite folder) is refused, never searched for data."""
    try:
        with open(folder / "README.md", "rb") as card:
            if card.read(4).startswith(b"---"):
                return True
    except OSError:
        pass
    return any(folder.glob("*.parquet")) or any(folder.glob("*/*.parquet"))


class _HubReader(_DatasetRows):
    """A Hugging Face Hub dataset through `datasets.load_dataset` (with `HF_HUB_OFFLINE=1`, or no
    network, from the local cache: the one `datasets` prepared, else a snapshot `hf download`
    left in the hub cache)."""

    def __init__(self, src: QuestionSource, suite_path: Path, lines: dict):
        assert src.hf is not None
        self.at = line_of(lines, ("questions", "hf"))
        self.where_path, self.prefix, self.hf = str(suite_path), src.hf.rsplit("/", 1)[-1], src.hf
        self.suite_path = suite_path
        datasets = _need("datasets", suite_path, self.at, "a Hub dataset")
        which = _clip(src.hf, 80) + "".join(f", {k} {v!r}" for k, v in (("config", src.config), ("split", src.split),
                                                                          ("revision", src.revision)) if v)

        def fail(message: str) -> SuiteError:
            return SuiteError(suite_path, self.at, f"questions.hf: {which}: {message}")

        try:
            loaded = datasets.load_dataset(src.hf, src.config, split=src.split, revision=src.revision)
        except ConnectionError:  # offline (HF_HUB_OFFLINE) or unreachable, and not in the datasets cache
            folder = _hub_snapshot(src.hf, src.revision)
            if folder is None:
                raise fail(_fetch_hint(src)) from None
            try:
                loaded = datasets.load_dataset(folder, src.config, split=src.split)
            except Exception as inner:
                raise fail(f"datasets cannot load its cached snapshot {folder} ({type(inner).__name__}: "
                           f"{_clip(_first_line(inner), 160)})") from None
        except Exception as exc:  # an unknown config or split, a gated dataset, ...: the library's line
            raise fail(f"datasets cannot load it ({type(exc).__name__}: {_clip(_first_line(exc), 200)})") from None
        self.dataset = _one_split(loaded, src.split, fail)

    def error(self, number: int, line: int | None, message: str) -> SuiteError:
        return SuiteError(self.suite_path, self.at, f"questions.hf: {_clip(self.hf, 80)} row {number}: {message}")


def _hub_snapshot(repo_id: str, revision: str | None) -> str | None:
    """The folder of a snapshot of dataset `repo_id` in the local hub cache (`hf download`), or None."""
    try:
        from huggingface_hub import snapshot_download
        return snapshot_download(repo_id, repo_type="dataset", revision=revision, local_files_only=True)
    except Exception:  # not cached (LocalEntryNotFoundError), or no huggingface_hub: nothing there
        return None


def _fetch_hint(src: QuestionSource) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    why = "HF_HUB_OFFLINE is set" if offline else "the Hub cannot be reached"
    revision = f" --revision {src.revision}" if src.revision else ""
    home = os.environ.get("HF_HOME") or "~/.cache/huggingface"
    return (f"not in the local Hugging Face cache ({home}) and {why}; fetch it once with network: "
            f"hf download {src.hf} --repo-type dataset{revision}")


# ---------------------------------------------------------------------------------------------
# Rows → questions
# ---------------------------------------------------------------------------------------------

class _Missing(Exception):
    def __init__(self, hint: str):
        self.hint = hint


def lookup(row: Any, path: str) -> Any:
    """`row` at dotted `path` (`problem.text`, `choices.0`); a key with the dots itself wins.
    Raises _Missing with a hint for the message (' (did you mean …?)', what is there instead, or '')."""
    if isinstance(row, dict) and path in row:
        return row[path]
    node, walked = row, []  # type: tuple[Any, list[str]]
    for part in path.split("."):
        where = ".".join(walked)
        if isinstance(node, dict):
            if part not in node:
                match = _closest(part, list(node))
                if match and walked:
                    match = match.replace("'", f"'{where}.", 1)
                elif not match:
                    match = f" ({where!r} has {_keys(node)})" if walked else f" (the row has {_keys(node)})"
                raise _Missing(match)
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.isdigit():
            if int(part) >= len(node):
                raise _Missing(f" ({where!r} has {len(node)} item{'s' * (len(node) != 1)})")
            node = node[int(part)]
        else:
            raise _Missing(f" ({where!r} is {_kind(node)}, not a mapping)")
        walked.append(part)
    return node


def _keys(node: dict) -> str:
    keys = [str(k) for k in node]
    shown = ", ".join(_clip(k, 30) for k in keys[:8])
    return f"the keys {shown}" + (f" and {len(keys) - 8} more" if len(keys) > 8 else "") if keys else "no keys"


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    return "null" if value is None else f"a {type(value).__name__}"


def _not_a_value(value: Any, setting: str, path: str) -> str | None:
    """Why `value` cannot be the text of `setting` (a reference answer, an id, a prompt field), or None."""
    if value is None:
        return "null (a missing value); fill it in, or leave the row out of the file"
    if isinstance(value, float) and math.isnan(value):
        return "NaN (a missing value in a column of numbers, as pandas writes one); fill it in, or leave the row out"
    if isinstance(value, float) and math.isinf(value):
        return f"{value}, not a finite number; write it as text if it is meant"
    if setting in ("answer_field", "id_field"):
        if isinstance(value, bool):
            return f"{value}, a boolean; write it as text"
        if isinstance(value, (dict, list, tuple)):
            key = "0" if isinstance(value, (list, tuple)) else _clip(str(next(iter(value), "key")), 20)
            return (f"{'a mapping' if isinstance(value, dict) else 'a list'} ({_short(value, 40)}), not one value; "
                    f"name one item with a dotted path (e.g. {path}.{key})")
    return None


_RESERVED = ("thresholds", "verifier", "id")  # question keys of an inline question, never taken from a row


def _questions(src: QuestionSource, reader: _Reader, verifier: str | None) -> list[QuestionRow]:
    answer_re = re.compile(src.answer_regex, re.MULTILINE) if src.answer_regex else None
    prefix = src.id_prefix or reader.prefix
    named = [(src.question_field, "question_field"), (src.answer_field, "answer_field"),
             *([(src.id_field, "id_field")] if src.id_field else []),
             *((path, f"fields.{name}") for name, path in src.fields.items())]
    # Every other column reaches reward functions under its own name, as GRPOTrainer passes a
    # dataset's columns (`solution` for TRL's accuracy_reward, say), bar the ones it does not pass
    # (`prompt`, `completion`, `completion_ids`); `question` and `answer` are the question text and
    # the verifier's reference, whichever columns they are read from.
    taken_columns = {"question", "answer", "prompt", "completion", "completion_ids"}
    out: list[QuestionRow] = []
    first_row: dict[str, int] = {}
    number, line = 0, None
    try:
        for number, line, row in reader.rows(src):
            values = {}
            for path, setting in named:
                try:
                    values[setting] = lookup(row, path)
                except _Missing as missing:
                    raise reader.error(number, line, f"no field {path!r}{missing.hint}; set questions.{setting} "
                                       "in the suite") from None
                # Never str() a missing or compound value into "None", "nan" or "['a', 'b']": a
                # reference, an id or a prompt field the data does not hold is the data's mistake.
                wrong = None if setting == "question_field" else _not_a_value(values[setting], setting, path)
                if wrong:
                    raise reader.error(number, line, f"{path!r} ({setting}) is {wrong}")
            answer = str(values["answer_field"])
            if answer_re:
                m = answer_re.search(answer)
                if not m:
                    raise reader.error(number, line, f"answer_regex {_short(src.answer_regex)} does not match "
                                       f"the answer {answer[-60:]!r}")
                answer = ((m.group(1) if m.groups() else m.group(0)) or "").strip()  # an optional group: None
            elif verifier is not None:  # None: the verifier is wrong, and said so at its own line
                try:
                    answer = extract_reference(answer, verifier)
                except VerifierError as exc:
                    raise reader.error(number, line, f"answer {_short(answer)}: {exc}") from None
            qid = str(values["id_field"]) if src.id_field else f"{prefix}-{number:04d}"
            if not reader.located:  # no line to point at: a repeated id is named by rows here
                if qid in first_row:
                    raise reader.error(number, line, f"duplicate question id {_short(qid)} (first at row "
                                       f"{first_row[qid]}); ids must be unique within a suite")
                first_row[qid] = number
            extra = {k: v for k, v in row.items() if k not in taken_columns and k not in _RESERVED}
            extra.update((name, values[f"fields.{name}"]) for name in src.fields)
            spec = QuestionSpec.model_validate({**extra, "id": qid, "question": values["question_field"],
                                                "answer": answer})
            out.append((spec, line, ("questions",)))
    except ValidationError as exc:
        first = exc.errors()[0]
        what = (f"expected {_EXPECTED[first['type']]}, got {_short(first.get('input'))}"
                if first["type"] in _EXPECTED else first["msg"])
        raise reader.error(number, line, f"{'.'.join(map(str, first['loc']))}: {what}") from None
    return out

