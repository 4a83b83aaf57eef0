"""Mutation fuzzing of suite files: whatever a suite file holds, load_suite returns a Suite or raises
SuiteError whose every line names the file — never another exception, never a hang.

The mutants start from the shipped suites and the bad-input corpus, and are written to real files
(next to a link to the data they name), so the whole loader runs: bytes, YAML, schema, sources.
"""
import json
import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO
from rlhf_eval import SuiteError, load_suite
from rlhf_eval.yamlines import MAX_ALIASED_VALUES

BAD = Path(__file__).resolve().parent / "bad_input"
SEEDS = sorted((REPO / "suites").glob("*.yaml")) + sorted(BAD.glob("*.yaml"))
SEED_TEXT = {p: p.read_bytes().decode("utf-8", "replace").removeprefix("\ufeff") for p in SEEDS}
# Every key a suite has, so inserted and renamed keys hit the schema, not only "unknown key".
KEYS = sorted({k for text in SEED_TEXT.values() for k in re.findall(r"(?m)^\s*-?\s*([A-Za-z_]\w*)\s*:", text)}
              | {"k", "n", "flags", "pattern", "id_field", "<<", "on", "yes", "~", "1"})
TAGS = ["!!int", "!!float", "!!bool", "!!null", "!!str", "!!binary", "!!timestamp", "!!set", "!!omap", "!!map",
        "!!seq", "!!python/object:os.system", "!!python/object/apply:os.system", "!!python/name:os.system",
        "!foo", "!", "!<tag:example.com,2024:x>", "!!merge", "!!value"]
SCALARS = ["hi", "3", "-1", "0", "1.5", "1e400", ".nan", "-.inf", "~", "null", "yes", "off", "2024-01-01",
           "2001-12-14t21:59:43.10-05:00", "=", "<<", "''", '""', "0x1F", "0o17", "1:30:00", "1_000", "aGVsbG8=",
           "'{question}'", "'{answer}'", "'{{x}}'", "MULTILINE|DOTALL", "[M, I]", "'(' ", "data/gsm8k/test.jsonl",
           "/dev/zero", "'\\x00'", '"\\0"', "A" * 300]

scalar = st.one_of(
    st.sampled_from(SCALARS),
    st.integers().map(str),
    st.floats().map(repr),
    st.text(max_size=30),  # raw, unquoted: anything YAML may choke on
    st.text(max_size=30).map(lambda t: '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"'),
    st.builds(lambda n: "x" * n, st.integers(1_000, 200_000)),  # very long strings
    st.builds(lambda n: "9" * n, st.integers(20, 6_000)),  # huge ints, past Python's 4300-digit limit too
    st.builds(lambda n: ":".join(["59"] * n), st.integers(2, 3_000)),  # YAML 1.1 base 60: an enormous int
)


@st.composite
def value(draw, depth=0):
    """A YAML value as text, for the right of `key: `."""
    kind = draw(st.sampled_from(["scalar", "scalar", "tagged", "list", "map", "anchor", "alias", "deep"]))
    if kind == "tagged":
        return f"{draw(st.sampled_from(TAGS))} {draw(value(depth + 1)) if depth < 2 else draw(scalar)}"
    if kind in ("list", "map") and depth < 2:
        items = draw(st.lists(value(depth + 1), max_size=3))
        if kind == "list":
            return "[" + ", ".join(items) + "]"
        return "{" + ", ".join(f"{draw(st.sampled_from(KEYS))}: {v}" for v in items) + "}"
    if kind == "anchor":
        return f"&a{draw(st.integers(0, 2))} {draw(value(depth + 1)) if depth < 2 else draw(scalar)}"
    if kind == "alias":
        return f"*a{draw(st.integers(0, 2))}"
    if kind == "deep":
        n = draw(st.integers(50, 1_500))
        return draw(st.sampled_from(["[" * n + "]" * n, "{a: " * n + "1" + "}" * n]))
    return draw(scalar)


def billion_laughs(levels: int = 9, fold: int = 9) -> str:
    lines = ["lol0: &l0 [" + ", ".join(["lol"] * fold) + "]"]
    lines += [f"lol{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * fold) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


@st.composite
def mutant(draw):
    """(seed file, mutated text): one to four edits of a real suite."""
    seed = draw(st.sampled_from(SEEDS))
    lines = SEED_TEXT[seed].split("\n")
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, max(len(lines) - 1, 0)))
        line = lines[i] if lines else ""
        indent = line[: len(line) - len(line.lstrip(" -"))]
        edit = draw(st.sampled_from(["delete", "duplicate", "revalue", "revalue", "rekey", "insert", "swap",
                                     "unicode", "retype", "laughs", "recursive"]))
        if edit == "delete" and lines:
            del lines[i]
        elif edit == "duplicate" and lines:
            lines.insert(i, line)
        elif edit == "revalue" and ":" in line:
            lines[i] = line.split(":", 1)[0] + ": " + draw(value())
        elif edit == "rekey" and ":" in line:
            lines[i] = indent + draw(st.sampled_from(KEYS)) + ":" + line.split(":", 1)[1]
        elif edit == "insert":
            lines.insert(i, indent.replace("-", " ") + f"{draw(st.sampled_from(KEYS))}: {draw(value())}")
        elif edit == "swap" and lines:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif edit == "unicode":
            at = draw(st.integers(0, len(line)))
            lines[i] = line[:at] + draw(st.text(min_size=1, max_size=5)) + line[at:]
        elif edit == "retype" and ":" in line:  # scalar -> list -> mapping, or a block turned scalar
            key, rest = line.split(":", 1)
            rest = rest.strip() or draw(scalar)
            lines[i] = key + ": " + draw(st.sampled_from([f"[{rest}]", f"{{x: {rest}}}", f"[[{rest}]]", "7"]))
        elif edit == "laughs":
            lines.insert(i if not indent else 0, billion_laughs(draw(st.integers(2, 9))))
        elif edit == "recursive":
            lines.insert(0, draw(st.sampled_from(["loop: &r [*r]", "loop: &r {a: *r}", "loop: &r [[a, *r]]"])))
    return seed, "\n".join(lines)


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory):
    """A folder per seed folder, with `data` linked, so mutants' relative sources resolve."""
    dirs = {}
    for folder in {p.parent for p in SEEDS}:
        work = tmp_path_factory.mktemp(folder.name)
        (work / "data").symlink_to(folder / "data", target_is_directory=True)
        dirs[folder] = work
    return dirs


def load_outcome(path: Path) -> str:
    """'loaded', or the SuiteError text; any other exception fails the test with its type."""
    try:
        load_suite(path)
    except SuiteError as exc:
        return str(exc)
    return "loaded"


def assert_plain_lines_naming(message: str, name: str) -> None:
    for line in message.split("\n"):
        assert line.startswith(name + ":") or line.startswith("data/") or "/data/" in line.split(":")[0], message
        assert "\r" not in line and "Traceback" not in line and "pydantic" not in line.lower(), message
        assert len(line) < 1000, line[:300]


@settings(max_examples=400, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(case=mutant())
def test_a_mutated_suite_loads_or_raises_suite_error_only(case, workdirs, monkeypatch):
    seed, text = case
    work = workdirs[seed.parent]
    monkeypatch.chdir(work)
    path = work / "mutant.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    start = time.process_time()
    outcome = load_outcome(path)
    seconds = time.process_time() - start
    if outcome != "loaded":
        assert_plain_lines_naming(outcome, "mutant.yaml")
    assert seconds < 1.0, f"{seconds:.2f} s CPU for {len(text)} bytes from {seed.name}"


# ---------------------------------------------------------------------------------------------
# The faults the fuzzing found, each on its own
# ---------------------------------------------------------------------------------------------

HEAD = "suite: s\nmodel: {name: gemini-2.0-flash}\nsamples: 2\n"
QUESTIONS = "questions:\n  - {id: a, question: q, answer: 2}\n"


def error_of(path: Path) -> str:
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    return str(info.value)


def test_billion_laughs_is_refused_at_once(tmp_path, monkeypatch):
    """9 levels of 9-fold aliases: 387 million values once expanded (24 s and 2.5 GB before)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(HEAD + billion_laughs() + QUESTIONS)
    start = time.process_time()
    message = error_of(tmp_path / "s.yaml")
    assert time.process_time() - start < 0.5
    assert message == (f"s.yaml:8: YAML aliases expand to more than {MAX_ALIASED_VALUES:,} values; "
                       "write the values out or alias less")


def test_aliases_that_share_a_little_still_load(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(
        HEAD + "thresholds: &t {accuracy: {min: 0.5}}\nquestions:\n"
        "  - {id: a, question: q, answer: 2, thresholds: *t}\n  - {id: b, question: q, answer: 3, thresholds: *t}\n")
    suite = load_suite(tmp_path / "s.yaml")
    assert [q.thresholds["accuracy"].min for q in suite.questions] == [0.5, 0.5]


def test_aliases_up_to_the_limit_are_quick(tmp_path, monkeypatch):
    """As many aliased values as allowed (25,000 questions, every one a duplicate): within a second of CPU,
    and the problems are listed up to a count."""
    monkeypatch.chdir(tmp_path)
    per = MAX_ALIASED_VALUES // 7  # each aliased question is 7 values: the mapping, its 3 keys and 3 values
    text = HEAD + "questions:\n  - &q {id: a, question: q, answer: 2}\n" + "  - *q\n" * (per - 1)
    (tmp_path / "s.yaml").write_text(text)
    start = time.process_time()
    message = error_of(tmp_path / "s.yaml")
    assert time.process_time() - start < 1.0
    # An alias has no line of its own in the parsed YAML: the anchor's line stands for it.
    assert message.split("\n")[0] == ("s.yaml:5: duplicate question id 'a' (first at line 5); "
                                      "ids must be unique within a suite")
    assert message.split("\n")[-1] == f"s.yaml: and {per - 1 - 20} more problems"


@pytest.mark.parametrize("flags,letters", [("MULTILINE", "m"), ("MULTILINE|IGNORECASE", "mi"), ("im", "im"),
                                           ("re.DOTALL", "s"), (["MULTILINE", "s"], "ms"), ("", "")])
def test_regex_flags_by_name_or_letter(tmp_path, flags, letters):
    (tmp_path / "s.yaml").write_text(HEAD + "verifier:\n  name: regex\n  pattern: 'A: (?P<answer>[0-9]+)'\n"
                                     f"  flags: {json.dumps(flags)}\n" + QUESTIONS)
    suite = load_suite(tmp_path / "s.yaml")
    assert suite.questions[0].verifier_options["flags"] == letters


FRACTIONS = ["accuracy", "pass_at_k", "maj_at_k", "unparsable_rate", "reward_accuracy"]


@pytest.mark.parametrize("where", ["thresholds", "question"])
@pytest.mark.parametrize("metric", FRACTIONS)
@pytest.mark.parametrize("side,bound", [("min", 1.5), ("max", -0.1), ("max", 100)])
def test_a_fraction_bound_outside_0_1_is_refused(tmp_path, monkeypatch, where, metric, side, bound):
    monkeypatch.chdir(tmp_path)
    threshold = f"{{{metric}: {{{side}: {bound}}}}}"
    if where == "thresholds":
        text, line, key = HEAD + f"thresholds: {threshold}\n" + QUESTIONS, 4, f"thresholds.{metric}.{side}"
    else:
        text = HEAD + f"questions:\n  - {{id: a, question: q, answer: 2, thresholds: {threshold}}}\n"
        line, key = 5, f"questions[0] (a).thresholds.{metric}.{side}"
    (tmp_path / "s.yaml").write_text(text)
    assert error_of(tmp_path / "s.yaml") == (f"s.yaml:{line}: {key}: {metric} is a fraction from 0 to 1, "
                                             f"not {bound:g} (for 50% write 0.5)")


@pytest.mark.parametrize("side,bound", [("min", 1.5), ("max", -0.5)])
def test_a_suite_fraction_bound_outside_0_1_is_refused(tmp_path, monkeypatch, side, bound):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(HEAD + f"suite_thresholds:\n  frac_zero_spread: {{{side}: {bound}}}\n"
                                     + QUESTIONS)
    assert error_of(tmp_path / "s.yaml") == (f"s.yaml:5: suite_thresholds.frac_zero_spread.{side}: frac_zero_spread "
                                             f"is a fraction from 0 to 1, not {bound:g} (for 50% write 0.5)")
