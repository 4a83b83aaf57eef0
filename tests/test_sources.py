"""Question sources (rlhf_eval/sources.py): suites read their questions from datasets on disk —
a `save_to_disk` folder, Parquet, CSV, JSON arrays, `.jsonl.gz` — and from the Hugging Face
cache offline, with dotted column paths, shuffle/offset/limit, and one line for each mistake.
Every dataset is built here, on disk; nothing reaches a network."""
import gzip
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import GSM8K_TEST, REPO, TEST_KEY
from rlhf_eval import SuiteError, load_suite, run_suites

datasets = pytest.importorskip("datasets")  # in the dev extra; pyarrow comes with it
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

HEAD = "suite: s\nmodel: {name: gemini-2.0-flash}\nsamples: 2\nprompt: '{question} Options: {choices}'\n"
# Nested rows, as datasets on the Hub have them: a struct column, a list inside a struct.
ROWS = [{"uid": f"r{i}", "problem": {"text": f"What is {i} + {i}?", "level": i % 3},
         "meta": {"answer": str(2 * i)}, "options": {"list": [str(2 * i), str(2 * i + 1)]}} for i in range(12)]
MAPPING = ("  question_field: problem.text\n  answer_field: meta.answer\n  id_field: uid\n"
           "  fields: {choices: options.list}\n")


def write(tmp_path, text, name="s.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path) -> str:
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message, message
    return message


def flat(row):
    """A row as a flat CSV row: nested keys as dotted column names."""
    return {"uid": row["uid"], "problem.text": row["problem"]["text"], "meta.answer": row["meta"]["answer"],
            "options.list": " | ".join(row["options"]["list"])}


def save(tmp_path, kind, rows=ROWS) -> str:
    """`rows` written as `kind` under tmp_path; the value for `source:`."""
    if kind == "saved":
        datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
        return "saved"
    if kind == "saved_dict":
        half = len(rows) // 2
        datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[half:]),
                              "test": datasets.Dataset.from_list(rows[:half])}).save_to_disk(str(tmp_path / "dd"))
        return "dd"
    if kind == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / "q.parquet")
        return "q.parquet"
    if kind == "json":
        (tmp_path / "q.json").write_text(json.dumps(rows, indent=2))
        return "q.json"
    if kind == "jsonl":
        (tmp_path / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return "q.jsonl"
    if kind == "jsonl.gz":
        (tmp_path / "q.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
        return "q.jsonl.gz"
    if kind == "csv":
        import csv
        with open(tmp_path / "q.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(flat(rows[0])))
            writer.writeheader()
            writer.writerows(flat(r) for r in rows)
        return "q.csv"
    raise AssertionError(kind)


# ---------------------------------------------------------------------------------------------
# Every format, nested columns by dotted paths
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,lines", [
    ("saved", None), ("parquet", None), ("json", None),  # rows have no line of their own
    ("jsonl", [3, 4, 5]), ("jsonl.gz", [3, 4, 5]), ("csv", [4, 5, 6]),  # CSV: the header is line 1
])
def test_each_format_gives_the_same_questions(tmp_path, kind, lines):
    source = save(tmp_path, kind)
    body = f"questions:\n  source: {source}\n" + MAPPING + "  offset: 2\n  limit: 3\n"
    suite = load_suite(write(tmp_path, HEAD + body))
    assert [(q.id, q.question, q.answer) for q in suite.questions] == [
        ("r2", "What is 2 + 2?", "4"), ("r3", "What is 3 + 3?", "6"), ("r4", "What is 4 + 4?", "8")]
    assert [q.line for q in suite.questions] == (lines or [None] * 3)
    choices = suite.questions[0].fields["choices"]
    assert choices == ("4 | 5" if kind == "csv" else ["4", "5"])  # a column's value, as the format holds it
    if kind != "csv":  # the other columns arrive under their own names, nested values unchanged
        assert suite.questions[0].fields["problem"] == {"text": "What is 2 + 2?", "level": 2}
    assert suite.render_prompt(suite.questions[0]).startswith("What is 2 + 2? Options: ")


def test_a_dataset_dict_folder_takes_the_named_split(tmp_path):
    source = save(tmp_path, "saved_dict")
    suite = load_suite(write(tmp_path, HEAD + f"questions:\n  source: {source}\n  split: test\n" + MAPPING))
    assert [q.id for q in suite.questions] == [f"r{i}" for i in range(6)]
    message = error_of(write(tmp_path, HEAD + f"questions:\n  source: {source}\n" + MAPPING))
    assert message == "s.yaml:6: questions.source: dd: it has the splits train, test; name one as questions.split" \
        or message.endswith("questions.source: dd: it has the splits train, test; name one as questions.split")
    message = error_of(write(tmp_path, HEAD + f"questions:\n  source: {source}\n  split: tset\n" + MAPPING))
    assert message.endswith("questions.source: dd: no split 'tset' (did you mean 'test'?); it has train, test")


def test_default_ids_are_the_row_numbers_and_the_file_name(tmp_path):
    rows = [{"question": f"{i}+1?", "answer": i + 1} for i in range(3)]
    (tmp_path / "gsm.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "gsm.parquet")
    for source in ("gsm.jsonl.gz", "gsm.parquet"):
        head = HEAD.replace(" Options: {choices}", "")
        suite = load_suite(write(tmp_path, head + f"questions: {{source: {source}}}\n"))
        assert [(q.id, q.answer) for q in suite.questions] == [("gsm-0000", "1"), ("gsm-0001", "2"), ("gsm-0002", "3")]


def test_a_json_file_of_json_lines_and_a_tsv_file(tmp_path):
    (tmp_path / "q.json").write_text('{"question": "1+1?", "answer": "2"}\n\n{"question": "2+2?", "answer": "4"}\n')
    (tmp_path / "q.tsv").write_text("question\tanswer\n1+1?\t2\n\"2,\t2?\"\t4\n")
    head = HEAD.replace(" Options: {choices}", "")
    suite = load_suite(write(tmp_path, head + "questions: {source: q.json}\n"))
    assert [(q.question, q.line) for q in suite.questions] == [("1+1?", 1), ("2+2?", 3)]
    suite = load_suite(write(tmp_path, head + "questions: {source: q.tsv}\n"))
    assert [(q.question, q.answer, q.line) for q in suite.questions] == [("1+1?", "2", 2), ("2,\t2?", "4", 3)]


def test_a_dataset_repository_folder_loads_by_config(tmp_path, monkeypatch):
    """A dataset repository checked out locally (a card naming configs, Parquet under main/), as
    `datasets.load_dataset(folder, config)` reads it; its cache goes to a folder of the test's."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "repo" / "main").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(ROWS[:4]), tmp_path / "repo" / "main" / "test-00000-of-00001.parquet")
    (tmp_path / "repo" / "README.md").write_text(
        "---\nconfigs:\n- config_name: main\n  data_files:\n  - split: test\n    path: main/test-*\n---\n# tiny\n")
    suite = load_suite(write(tmp_path, HEAD + "questions:\n  source: repo\n  config: main\n  split: test\n"
                             + MAPPING))
    assert [(q.id, q.answer) for q in suite.questions] == [("r0", "0"), ("r1", "2"), ("r2", "4"), ("r3", "6")]


def test_a_missing_library_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save(tmp_path, "parquet")
    save(tmp_path, "saved")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # an import of it now fails, as when it is not installed
    monkeypatch.setitem(sys.modules, "datasets", None)
    for source, what in (("q.parquet", "Parquet needs the pyarrow"), ("saved", "a dataset folder needs the datasets")):
        assert error_of(write(tmp_path, HEAD + f"questions:\n  source: {source}\n" + MAPPING)) == \
            f"s.yaml:6: questions: reading {what} library; pip install 'rlhf-eval[datasets]'"


def test_text_sources_import_neither_datasets_nor_pyarrow(tmp_path):
    save(tmp_path, "jsonl.gz")
    save(tmp_path, "csv")
    code = ("import sys\nfrom rlhf_eval import load_suite\n"
            "for name in ('gz.yaml', 'csv.yaml'):\n    assert len(load_suite(name).questions) == 12\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('datasets', 'pyarrow', 'pandas')))\n")
    write(tmp_path, HEAD + "questions:\n  source: q.jsonl.gz\n" + MAPPING, "gz.yaml")
    write(tmp_path, HEAD + "questions:\n  source: q.csv\n" + MAPPING, "csv.yaml")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "plugin")]))
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# shuffle, then offset/limit: the rows datasets' .shuffle(seed).select(range(...)) picks
# ---------------------------------------------------------------------------------------------

# Ids that shuffle_seed 7 picks from ROWS, offset 2, limit 5 (NumPy's default_rng(7).permutation(12)
# is [4, 6, 10, 0, 1, 3, 8, 7, 2, 5, 9, 11]): written out, so a change of NumPy's stream is seen.
SEED_7 = ["r10", "r0", "r1", "r3", "r8"]


@pytest.mark.parametrize("kind", ["saved", "parquet", "jsonl", "jsonl.gz", "csv", "json"])
def test_shuffle_picks_what_datasets_shuffle_picks(tmp_path, kind):
    source = save(tmp_path, kind)
    picked = datasets.Dataset.from_list(ROWS).shuffle(seed=7).select(range(2, 7))["uid"]
    assert picked == SEED_7  # datasets itself, computed independently of rlhf-eval
    body = HEAD + f"questions:\n  source: {source}\n" + MAPPING + "  shuffle: true\n  shuffle_seed: 7\n  offset: 2\n"
    suite = load_suite(write(tmp_path, body + "  limit: 5\n"))
    assert [q.id for q in suite.questions] == SEED_7
    longer = load_suite(write(tmp_path, body + "  limit: 8\n"))
    assert [q.id for q in longer.questions][:5] == SEED_7  # a larger limit keeps what a smaller one chose
    again = load_suite(write(tmp_path, body + "  limit: 5\n"))
    assert [q.id for q in again.questions] == SEED_7


def test_default_ids_follow_the_stored_row_not_the_shuffled_place(tmp_path):
    (tmp_path / "q.jsonl").write_text("".join(json.dumps({"question": f"{i}?", "answer": i}) + "\n" for i in range(12)))
    suite = load_suite(write(tmp_path, HEAD.replace(" Options: {choices}", "")
                             + "questions: {source: q.jsonl, shuffle: true, shuffle_seed: 7, limit: 3}\n"))
    assert [(q.id, q.answer, q.line) for q in suite.questions] == [("q-0004", "4", 5), ("q-0006", "6", 7),
                                                                    ("q-0010", "10", 11)]


# ---------------------------------------------------------------------------------------------
# Mistakes: one line each
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,expected", [
    ("jsonl", "q.jsonl:1: no field 'problem.txt' (did you mean 'problem.text'?); set questions.question_field in "
              "the suite"),
    ("jsonl.gz", "q.jsonl.gz:1: no field 'problem.txt' (did you mean 'problem.text'?); set "
                 "questions.question_field in the suite"),
    ("parquet", "q.parquet: row 0: no field 'problem.txt' (did you mean 'problem.text'?); set "
                "questions.question_field in the suite"),
    ("saved", "saved: row 0: no field 'problem.txt' (did you mean 'problem.text'?); set questions.question_field "
              "in the suite"),
    ("json", "q.json: row 0: no field 'problem.txt' (did you mean 'problem.text'?); set questions.question_field "
             "in the suite"),
])
def test_a_missing_nested_column_names_the_row_and_the_closest_key(tmp_path, monkeypatch, kind, expected):
    monkeypatch.chdir(tmp_path)
    source = save(tmp_path, kind)
    body = MAPPING.replace("problem.text", "problem.txt")
    assert error_of(write(tmp_path, HEAD + f"questions:\n  source: {source}\n" + body)) == expected


@pytest.mark.parametrize("mapping,expected", [
    ("  question_field: problem.text.more\n", "no field 'problem.text.more' ('problem.text' is a string, not a "
                                              "mapping); set questions.question_field in the suite"),
    ("  question_field: problem.zzz\n", "no field 'problem.zzz' ('problem' has the keys text, level); set "
                                        "questions.question_field in the suite"),
    ("  question_field: problem.text\n  fields: {choices: options.list.5}\n",
     "no field 'options.list.5' ('options.list' has 2 items); set questions.fields.choices in the suite"),
    ("  question_field: problm.text\n", "no field 'problm.text' (did you mean 'problem'?); set "
                                        "questions.question_field in the suite"),
])
def test_what_a_dotted_path_misses(tmp_path, monkeypatch, mapping, expected):
    monkeypatch.chdir(tmp_path)
    save(tmp_path, "parquet")
    body = "  answer_field: meta.answer\n  fields: {choices: options.list}\n" if "fields" not in mapping else \
        "  answer_field: meta.answer\n"
    assert error_of(write(tmp_path, HEAD + "questions:\n  source: q.parquet\n" + mapping + body)) == \
        "q.parquet: row 0: " + expected


def test_duplicate_ids_in_a_positional_source_name_both_rows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = [dict(r, uid="same" if i in (1, 4) else r["uid"]) for i, r in enumerate(ROWS)]
    save(tmp_path, "parquet", rows)
    assert error_of(write(tmp_path, HEAD + "questions:\n  source: q.parquet\n" + MAPPING)) == \
        "q.parquet: row 4: duplicate question id 'same' (first at row 1); ids must be unique within a suite"


@pytest.mark.parametrize("name,content,expected", [
    ("q.jsonl.gz", gzip.compress(b'{"question": "1+1?", "answer": "2"}\n' * 50, mtime=0)[:40],
     "q.jsonl.gz: not a readable gzip file (Compressed file ended before the end-of-stream marker was reached); "
     "download or compress it again"),
    ("q.jsonl.gz", b"\x1f\x8b\x08\x00 this is not deflate data at all",
     "q.jsonl.gz: not a readable gzip file (Error -3 while decompressing data: invalid stored block lengths); "
     "download or compress it again"),
    ("q.xlsx", b"PK\x03\x04 a workbook", "s.yaml:6: questions.source: q.xlsx is a zip archive (or an Excel workbook); "
     "sources are JSONL (.jsonl, .jsonl.gz), JSON arrays (.json), CSV/TSV, Parquet, a folder saved by datasets, or a "
     "Hub dataset (hf:): convert it"),
    ("q.jsonl.bz2", b"BZh91AY&SY", "s.yaml:6: questions.source: q.jsonl.bz2 is a bzip2-compressed file; sources are "
     "JSONL (.jsonl, .jsonl.gz), JSON arrays (.json), CSV/TSV, Parquet, a folder saved by datasets, or a Hub dataset "
     "(hf:): convert it"),
    ("q.parquet.gz", gzip.compress(b"PAR1", mtime=0),
     "s.yaml:6: questions.source: q.parquet.gz is a gzip-compressed .parquet; "
     "only JSONL, JSON and CSV/TSV are read compressed: decompress it"),
    ("q.csv", b"question,answer\n1+1?,2,3\n", "q.csv:2: 3 values for the 2 columns of the header line; quote values "
     "that hold the delimiter"),
    ("q.csv", b"question,answer\n\xe9,2\n", "q.csv:2: not UTF-8 text; save the file as UTF-8"),
    ("q.csv", b"question,answer\r1+1?,2\r", "q.csv:1: lines end with a bare carriage return (\\r, as Excel's \"CSV "
     "(Macintosh)\" writes); save the file with \\n or \\r\\n line ends"),
    ("q.json", b'{"data": [{"question": "1+1?"}]}', "q.json:1: no field 'question' (the row has the keys data); set "
     "questions.question_field in the suite"),
    ("q.csv", b"question,answer,answer\n1+1?,2,3\n", "q.csv:1: the header line names the column 'answer' twice; give "
     "each column its own name"),
    ("q.csv", b'question,answer\n"1+1?,2\n"2+2?",4\n', "q.csv:2: not valid CSV: ',' expected after '\"' (a quoted "
     "value ends at its closing quote; write a quote inside a value as two: \"\")"),  # not one row of two merged
    ("q.csv", b'question,answer\n1+1?,2\n"2+2?,4\n3+3?,6\n', "q.csv:3: a quoted value opened on this line is never "
     "closed; close the quote, or write a quote inside a value as two (\"\")"),
    ("q.json", b'[{"question": "1+1?", "answer": 2}, 7]', "q.json: row 1: each row must be a JSON object, got 7"),
    ("q.json", b'{\n "data": []\n}\n', "q.json:1: not valid JSON: Expecting property name enclosed in double quotes "
     "(a .json source holds an array [{...}, ...] or one object per line)"),
    ("q.json", b'[{"question": "1+1?",\n "answer": 2},,]', "q.json:2: not valid JSON: Expecting value"),
])
def test_bad_files_one_line_each(tmp_path, monkeypatch, name, content, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_bytes(content)
    assert error_of(write(tmp_path, HEAD.replace(" Options: {choices}", "") + f"questions:\n  source: {name}\n")) \
        == expected


@pytest.mark.parametrize("questions,expected", [
    ("{source: nothing.parquet}", "s.yaml:5: questions.source: no file 'nothing.parquet' (looked for <TMP>/nothing"
                                  ".parquet)"),
    ("{question_field: q}", "s.yaml:5: questions: give source (a local file or folder) or hf (a Hugging Face Hub "
                            "dataset id), e.g. source: data/test.jsonl"),
    ("{source: q.jsonl, hf: openai/gsm8k}", "s.yaml:5: questions: give source (a local file or folder) or hf (a "
                                            "Hugging Face Hub dataset id), not both"),
    ("{source: q.jsonl, revision: main}", "s.yaml:5: questions: revision is for a Hub dataset (hf:); a local source "
                                          "has none"),
    ("{source: q.jsonl, shuffle_seed: 3}", "s.yaml:5: questions: shuffle_seed is set but shuffle is not; add "
                                           "shuffle: true"),
    ("{source: q.jsonl, shuffle: 'yes'}", "s.yaml:5: questions.shuffle: expected true or false, got 'yes'"),
    ("{hf: 'not a/hub id'}", "s.yaml:5: questions.hf: 'not a/hub id' is not a Hub dataset id (owner/name, e.g. "
                             "openai/gsm8k); a local file or folder goes in source"),
    ("{source: q.jsonl, question_field: problem..text}", "s.yaml:5: questions.question_field: 'problem..text' is not "
                                                         "a column name or a dotted path to one (e.g. problem.text)"),
    ("{source: q.jsonl, fields: {answer: meta.answer}}", "s.yaml:5: questions.fields: 'answer' cannot name a prompt "
                                                         "field (letters, digits and _, not question, answer or id: "
                                                         "those have their own *_field keys)"),
    ("{source: q.jsonl, split: test}", "s.yaml:5: questions.split: q.jsonl is one file, with no splits; remove split "
                                       "(it is for a Hub dataset or a folder saved by datasets)"),
    ("{source: q.jsonl, shufle: true}", "s.yaml:5: questions.shufle: unknown key (did you mean 'shuffle'?)"),
    ("{source: .}", "s.yaml:5: questions.source: .: a folder, but not one saved by datasets (no dataset_dict.json or "
                    "state.json) nor a dataset repository (no dataset card README.md, no Parquet files); name a "
                    "file or such a folder"),
])
def test_bad_settings_one_line_each(tmp_path, monkeypatch, questions, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "q.jsonl").write_text('{"question": "1+1?", "answer": "2"}\n')
    message = error_of(write(tmp_path, HEAD.replace(" Options: {choices}", "") + f"questions: {questions}\n"))
    assert message == expected.replace("<TMP>", str(tmp_path))


PLAIN = HEAD.replace(" Options: {choices}", "")


@pytest.mark.parametrize("rows,mapping,expected", [
    # A value the data does not hold is never str()'d into the reference "None", "nan" or "True".
    ([{"question": "1+1?", "answer": "2"}, {"question": "2+2?", "answer": None}], "",
     "row 1: 'answer' (answer_field) is null (a missing value); fill it in, or leave the row out of the file"),
    ([{"question": "1+1?", "answer": 2.0}, {"question": "2+2?", "answer": float("nan")}], "",
     "row 1: 'answer' (answer_field) is NaN (a missing value in a column of numbers, as pandas writes one); fill it "
     "in, or leave the row out"),
    ([{"question": "1+1?", "answer": ["2", "two"]}], "",
     "row 0: 'answer' (answer_field) is a list (['2', 'two']), not one value; name one item with a dotted path "
     "(e.g. answer.0)"),
    ([{"question": "1+1?", "answer": "2", "uid": None}], "  id_field: uid\n",
     "row 0: 'uid' (id_field) is null (a missing value); fill it in, or leave the row out of the file"),
    ([{"question": "1+1?", "answer": "2", "uid": True}], "  id_field: uid\n",
     "row 0: 'uid' (id_field) is True, a boolean; write it as text"),
    ([{"question": "1+1?", "answer": "2", "opts": None}], "  fields: {choices: opts}\n",
     "row 0: 'opts' (fields.choices) is null (a missing value); fill it in, or leave the row out of the file"),
])
def test_a_missing_or_compound_value_is_one_line_never_a_made_up_text(tmp_path, monkeypatch, rows, mapping,
                                                                       expected):
    monkeypatch.chdir(tmp_path)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "q.parquet")
    head = PLAIN.replace("'{question}'", "'{question} {choices}'") if "choices" in mapping else PLAIN
    suite = head + "verifier: exact\nquestions:\n  source: q.parquet\n" + mapping
    assert error_of(write(tmp_path, suite)) == "q.parquet: " + expected
    # the same row in JSON lines is named by its line
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(r, allow_nan=True) + "\n" for r in rows))
    line = f"q.jsonl:{int(expected.split()[1].rstrip(':')) + 1}: " + expected.split(": ", 1)[1]
    assert error_of(write(tmp_path, suite.replace("q.parquet", "q.jsonl"))) == line


def test_an_empty_question_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "q.csv").write_text("question,answer\n1+1?,2\n ,4\n")
    assert error_of(write(tmp_path, PLAIN + "questions: {source: q.csv}\n")) == \
        "q.csv:3: question 'q-0001' has an empty question"
    assert error_of(write(tmp_path, PLAIN + "questions:\n  - {id: a, question: '', answer: '1'}\n")) == \
        "s.yaml:6: question 'a' has an empty question"


@pytest.mark.parametrize("kind", ["parquet", "csv", "csv_header", "jsonl", "json", "jsonl.gz", "saved"])
def test_a_source_without_rows_or_an_offset_past_them_is_one_line_naming_it(tmp_path, monkeypatch, kind):
    monkeypatch.chdir(tmp_path)
    empty = {"parquet": "q.parquet", "csv": "q.csv", "csv_header": "q.csv", "jsonl": "q.jsonl", "json": "q.json",
             "jsonl.gz": "q.jsonl.gz", "saved": "saved"}[kind]
    if kind == "parquet":  # was pyarrow's traceback: it cannot take() an empty list of indices
        pq.write_table(pa.table({"question": pa.array([], pa.string()), "answer": pa.array([], pa.string())}),
                       tmp_path / empty)
    elif kind == "saved":  # datasets itself cannot load it (IndexError)
        datasets.Dataset.from_dict({"question": [], "answer": []}).save_to_disk(str(tmp_path / empty))
    elif kind == "jsonl.gz":
        (tmp_path / empty).write_bytes(gzip.compress(b"", mtime=0))
    else:
        (tmp_path / empty).write_text({"csv_header": "question,answer\n", "json": "[]"}.get(kind, ""))
    assert error_of(write(tmp_path, PLAIN + f"questions:\n  source: {empty}\n")) == \
        f"s.yaml:6: questions.source: {empty}: the dataset has no rows; name a file or split that holds the questions"
    source = save(tmp_path, kind.removesuffix("_header"), ROWS[:3])
    for shuffle in ("", "  shuffle: true\n"):
        assert error_of(write(tmp_path, HEAD + f"questions:\n  source: {source}\n  offset: 3\n" + shuffle + MAPPING)) \
            == f"s.yaml:7: questions.offset: 3 skips every row of {source}, which has 3; give an offset below 3"


def test_a_linked_file_is_read_by_the_name_the_suite_gives_it(tmp_path, monkeypatch):
    """DVC, git-annex and the Hugging Face cache link a data file to a blob named by its hash, with
    no suffix: the format and the default ids go by the link's name (errors name the file read)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blobs").mkdir()
    (tmp_path / "blobs" / "3f2a").write_text("question,answer\n1+1?,2\n2+2?,four\n")
    (tmp_path / "blobs" / "9c1d").write_text(json.dumps([{"question": "1+1?", "answer": "2"}], indent=1))
    (tmp_path / "test.csv").symlink_to("blobs/3f2a")
    (tmp_path / "test.json").symlink_to("blobs/9c1d")
    suite = load_suite(write(tmp_path, PLAIN + "verifier: exact\nquestions: {source: test.csv}\n"))
    assert [(q.id, q.question, q.answer) for q in suite.questions] == [("test-0000", "1+1?", "2"),
                                                                       ("test-0001", "2+2?", "four")]
    assert error_of(write(tmp_path, PLAIN + "questions: {source: test.csv}\n")) == \
        "blobs/3f2a:3: question 'test-0001': answer 'four': numeric verifier: reference 'four' contains no number"
    suite = load_suite(write(tmp_path, PLAIN + "questions: {source: test.json}\n"))
    assert [q.id for q in suite.questions] == ["test-0000"]


@pytest.mark.parametrize("name", ["q.jsonl", "q.json", "q.csv", "q.jsonl.gz"])
def test_a_byte_order_mark_opens_any_text_file(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    text = "question,answer\n1+1?,2\n" if name == "q.csv" else '[{"question": "1+1?", "answer": "2"}]' \
        if name == "q.json" else '{"question": "1+1?", "answer": "2"}\n'
    data = "\ufeff".encode() + text.encode()  # as Notepad, Excel and PowerShell save UTF-8
    (tmp_path / name).write_bytes(gzip.compress(data, mtime=0) if name.endswith(".gz") else data)
    suite = load_suite(write(tmp_path, PLAIN + f"questions: {{source: {name}}}\n"))
    assert [(q.question, q.answer) for q in suite.questions] == [("1+1?", "2")]


# ---------------------------------------------------------------------------------------------
# Hub datasets, offline: from the local cache, or one line saying how to fetch them
# ---------------------------------------------------------------------------------------------

HUB_SUITE = HEAD.replace(" Options: {choices}", "") + "questions:\n  hf: {hf}\n  config: main\n  split: test\n"
LOAD = ("import sys, json\nfrom rlhf_eval import SuiteError, load_suite\nout = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n        out[name] = [[q.id, q.question, q.answer] for q in load_suite(name).questions]\n"
        "    except SuiteError as exc:\n        out[name] = str(exc)\n"
        "print(json.dumps(out))\n")


def offline_load(cwd, home, *names) -> dict:
    """load_suite on each suite in a fresh process with HF_HUB_OFFLINE=1 and HF_HOME=`home`
    (`datasets` reads both when imported): {name: [[id, question, answer], ...] or the error line}."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(home), PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "plugin")]))
    proc = subprocess.run([sys.executable, "-c", LOAD, *names], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_hub_dataset_absent_offline_is_one_line_saying_how_to_fetch_it(tmp_path):
    (tmp_path / "home").mkdir()
    write(tmp_path, HUB_SUITE.replace("{hf}", "testorg/absent") + "  revision: v1.0\n")
    assert offline_load(tmp_path, tmp_path / "home", "s.yaml") == {"s.yaml": (
        f"s.yaml:6: questions.hf: testorg/absent, config 'main', split 'test', revision 'v1.0': not in the local "
        f"Hugging Face cache ({tmp_path / 'home'}) and HF_HUB_OFFLINE is set; fetch it once with network: "
        "hf download testorg/absent --repo-type dataset --revision v1.0")}


def test_a_cached_hub_dataset_loads_offline(tmp_path):
    """Two caches a machine with network leaves: the one `datasets.load_dataset("testorg/tiny",
    "main")` prepares (built here by the same Parquet builder, under the folder name it uses), and
    a snapshot of the dataset repository that `hf download --repo-type dataset` leaves."""
    rows = [{"question": {"text": f"{i} + 1?"}, "answer": str(i + 1)} for i in range(4)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "test.parquet")
    home = tmp_path / "home"
    sha = "0123456789abcdef0123456789abcdef01234567"
    from datasets.packaged_modules.parquet.parquet import Parquet
    builder = Parquet(cache_dir=str(tmp_path / "build"), dataset_name="tiny", config_name="main", hash=sha,
                      data_files={"test": str(tmp_path / "test.parquet")})
    builder.download_and_prepare()
    (home / "datasets" / "testorg___tiny" / "main" / "0.0.0").mkdir(parents=True)
    shutil.move(builder.cache_dir, home / "datasets" / "testorg___tiny" / "main" / "0.0.0" / sha)
    repo = home / "hub" / "datasets--testorg--snap"
    (repo / "snapshots" / sha / "main").mkdir(parents=True)
    shutil.copy(tmp_path / "test.parquet", repo / "snapshots" / sha / "main" / "test-00000-of-00001.parquet")
    (repo / "snapshots" / sha / "README.md").write_text(
        "---\nconfigs:\n- config_name: main\n  data_files:\n  - split: test\n    path: main/test-*\n---\n")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    mapping = "  question_field: question.text\n  limit: 3\n"
    write(tmp_path, HUB_SUITE.replace("{hf}", "testorg/tiny") + mapping, "tiny.yaml")
    write(tmp_path, HUB_SUITE.replace("{hf}", "testorg/snap") + mapping, "snap.yaml")
    typo = HUB_SUITE.replace("{hf}", "testorg/snap").replace("config: main", "config: mian")
    write(tmp_path, typo + mapping, "typo.yaml")
    expected = [["tiny-0000", "0 + 1?", "1"], ["tiny-0001", "1 + 1?", "2"], ["tiny-0002", "2 + 1?", "3"]]
    out = offline_load(tmp_path, home, "tiny.yaml", "snap.yaml", "typo.yaml")
    assert out["tiny.yaml"] == expected
    assert out["snap.yaml"] == [[q.replace("tiny", "snap"), t, a] for q, t, a in expected]
    assert out["typo.yaml"].startswith("typo.yaml:6: questions.hf: testorg/snap, config 'mian', split 'test': ")
    assert "mian" in out["typo.yaml"].split(": ", 3)[-1] and "\n" not in out["typo.yaml"]


# ---------------------------------------------------------------------------------------------
# Done when (issue 13, 2): each source records through the emulator and replays offline
# ---------------------------------------------------------------------------------------------

def gsm8k_rows(n: int) -> list[dict]:
    with open(GSM8K_TEST, encoding="utf-8") as handle:
        return [json.loads(next(handle)) for _ in range(n)]


def test_suites_from_each_source_record_then_replay_offline(tmp_path, monkeypatch, live):
    """A saved HF dataset, Parquet, CSV and .jsonl.gz, each holding GSM8K rows (nested under
    `problem` where the format can nest), record through the emulator and replay with no key and
    no server: the same report."""
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "suites" / "data"
    data.mkdir(parents=True)
    rows = [{"problem": {"question": r["question"]}, "solution": r["answer"]} for r in gsm8k_rows(6)]
    datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)}).save_to_disk(str(data / "saved"))
    pq.write_table(pa.Table.from_pylist(rows), data / "q.parquet")
    (data / "q.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    import csv
    with open(data / "q.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["problem.question", "solution"])
        writer.writerows([r["problem"]["question"], r["solution"]] for r in rows)
    for name, source in [("saved", "data/saved\n  split: test"), ("parquet", "data/q.parquet"),
                         ("csv", "data/q.csv"), ("gz", "data/q.jsonl.gz")]:
        (tmp_path / "suites" / f"{name}.yaml").write_text(
            f"suite: {name}\nmodel: {{name: gemini-2.0-flash, max_output_tokens: 400, logprobs: true}}\nsamples: 2\n"
            "seed: 100\nprompt: \"Solve it and end with 'A: <number>'.\\n\\nQuestion: {question}\"\n"
            f"questions:\n  source: {source}\n  question_field: problem.question\n  answer_field: solution\n"
            "  answer_regex: '####\\s*(.+)$'\n  shuffle: true\n  shuffle_seed: 3\n  limit: 2\n")
    recorded = run_suites(["suites"], record_mode="once", report_json="rec.json").to_dict()
    picked = datasets.Dataset.from_list(rows).shuffle(seed=3).select(range(2))["problem"]
    for suite in recorded["suites"]:
        assert [q["prompt"].rsplit("Question: ", 1)[1] for q in suite["questions"]] == \
            [p["question"] for p in picked], suite["name"]
        cassettes = sorted(p.name for p in (tmp_path / "cassettes" / suite["name"]).glob("*.yaml"))
        assert cassettes == sorted(f"{q['id']}.yaml" for q in suite["questions"]) and len(cassettes) == 2
        assert TEST_KEY not in "".join(p.read_text() for p in (tmp_path / "cassettes" / suite["name"]).glob("*"))
    assert sorted(s["name"] for s in recorded["suites"]) == ["csv", "gz", "parquet", "saved"]
    monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("GEMINI_API_KEY")
    replayed = run_suites(["suites"]).to_dict()
    assert recorded == json.loads((tmp_path / "rec.json").read_text())
    assert replayed.pop("provenance")["time"] and recorded.pop("provenance")["time"]  # when differs, nothing else
    assert replayed == recorded
    assert all(q.get("error") is None and q["traces"] for s in replayed["suites"] for q in s["questions"])
