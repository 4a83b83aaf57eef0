"""YAML loading that remembers where each value came from, so errors can name file:line.

Only plain data is built: strings, numbers, booleans, null, mappings and lists. Any other tag
(`!!python/object`, `!!binary`, `!foo`) is refused at its line, a value its tag cannot read
(`!!int hi`) too, and aliases may not make a small file expand into a huge one (billion laughs).
"""
from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

try:  # libyaml is ~10x faster when present; the pure-Python loader is the fallback
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader

Path_ = tuple  # a path into the document: keys and list indices

_CORE = "tag:yaml.org,2002:"
_SCALAR_TAGS = frozenset(_CORE + t for t in ("str", "int", "float", "bool", "null"))
# Tags YAML 1.1 gives some plain words on its own (`2024-01-01`, `=`, `<<` as a value): a suite
# has no dates and no such values, so these stay the text that was written.
_KEPT_AS_TEXT = frozenset(_CORE + t for t in ("timestamp", "value", "merge"))
_MERGE = _CORE + "merge"
_KIND_TAG = {MappingNode: (_CORE + "map", "a mapping"), SequenceNode: (_CORE + "seq", "a list")}
# A suite is a few levels deep; anything much deeper is a mistake (and deep recursion a crash).
MAX_DEPTH = 100
# How many values aliases may add beyond those written out: far more than a suite shares (a
# threshold block for many questions), far fewer than the billions nested aliases expand to, and
# few enough to cost no more than a few milliseconds.
MAX_ALIASED_VALUES = 10_000


class YamlError(ValueError):
    def __init__(self, line: int | None, message: str):
        super().__init__(message)
        self.line = line
        self.message = message


def load_with_lines(text: str) -> tuple[Any, dict[Path_, int]]:
    """Parse `text`; return the data and a map from each key/item path to its 1-based line.

    Raises YamlError (a line, or None, and one line of text) for invalid YAML, a tag other than
    str/int/float/bool/null/map/seq, a value its tag cannot read, a recursive alias, nesting deeper
    than MAX_DEPTH, or aliases that expand to more than MAX_ALIASED_VALUES extra values."""
    node = _compose(text)
    lines: dict[Path_, int] = {}
    if node is None:
        return None, lines
    return _Builder(lines).build(node, ()), lines


def _compose(text: str):
    try:
        return yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        if mark is not None and _char_at(text, mark.line, mark.column) == "\t":
            problem = "a tab character indents this line; indent with spaces"
        raise YamlError(line, f"invalid YAML: {problem}") from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow; it has no line, only a position
        line = text[: exc.position].count("\n") + 1
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise YamlError(line, f"invalid YAML: unacceptable character #x{char:04x}: {exc.reason}") from None
    except yaml.YAMLError as exc:
        raise YamlError(None, f"invalid YAML: {str(exc).splitlines()[0]}") from None
    except RecursionError:  # the pure-Python composer recurses once per level of nesting
        raise YamlError(None, f"values are nested more than {MAX_DEPTH} levels deep; "
                              "a suite needs only a few") from None


def _line(node) -> int:
    return node.start_mark.line + 1


class _Builder:
    """Builds the data from the node graph, refusing what would make it blow up: an alias inside its
    own anchor (a cycle), nesting past MAX_DEPTH, and aliases expanding past MAX_ALIASED_VALUES (a
    billion-laughs file is refused after that many values, not after a billion)."""

    def __init__(self, lines: dict):
        self.lines = lines
        self.constructor = yaml.constructor.SafeConstructor()
        self.built: set[int] = set()  # ids of the mappings and lists built so far: seen again = an alias
        self.open: set[int] = set()  # ids of the mappings and lists being built (the current path)
        self.aliased = 0  # values built again for aliases
        self.alias_line: int | None = None  # where the alias being expanded is used

    def build(self, node, path: Path_, depth: int = 0, parent_line: int | None = None) -> Any:
        self.lines[path] = _line(node)
        if self.alias_line is not None:
            self.aliased += 1
            if self.aliased > MAX_ALIASED_VALUES:
                raise YamlError(self.alias_line, f"YAML aliases expand to more than {MAX_ALIASED_VALUES:,} "
                                                 "values; write the values out or alias less")
        if isinstance(node, ScalarNode):
            return _scalar(node, self.constructor)
        if depth > MAX_DEPTH:
            raise YamlError(_line(node), f"values are nested more than {MAX_DEPTH} levels deep; "
                                         "a suite needs only a few")
        key = id(node)
        if key in self.open:
            raise YamlError(_line(node), "this anchor's value contains an alias to itself (a recursive "
                                         "structure); a suite cannot hold one, remove the alias")
        if key in self.built and self.alias_line is None:
            self.alias_line = parent_line or _line(node)
            try:
                return self._collection(node, path, depth)
            finally:
                self.alias_line = None
        self.built.add(key)
        return self._collection(node, path, depth)

    def _collection(self, node, path: Path_, depth: int) -> Any:
        _check_collection_tag(node)
        key = id(node)
        self.open.add(key)
        line = _line(node)
        if isinstance(node, SequenceNode):
            out: Any = [self.build(item, path + (i,), depth + 1, line) for i, item in enumerate(node.value)]
        else:
            out = {}
            for key_node, value_node in node.value:
                name = _key(key_node)
                if name in out:
                    raise YamlError(_line(key_node), f"duplicate key {name!r}")
                child = path + (name,)
                out[name] = self.build(value_node, child, depth + 1, _line(key_node))
                self.lines[child] = _line(key_node)
        self.open.discard(key)
        return out


def _key(node) -> str:
    """A mapping key as the text written: a suite's keys are names, and YAML 1.1 would read
    `on`/`yes` as booleans and `1` as a number."""
    if not isinstance(node, ScalarNode):
        raise YamlError(_line(node), "a mapping key must be a plain value")
    if node.tag == _MERGE:
        raise YamlError(_line(node), "YAML merge keys (<<) are not supported in suites")
    if node.tag not in _SCALAR_TAGS and node.tag not in _KEPT_AS_TEXT:
        raise YamlError(_line(node), _tag_problem(node.tag))
    return node.value


def _scalar(node, constructor) -> Any:
    if node.tag in _KEPT_AS_TEXT:
        return node.value
    if node.tag not in _SCALAR_TAGS:
        raise YamlError(_line(node), _tag_problem(node.tag))
    try:
        return constructor.yaml_constructors[node.tag](constructor, node)
    except (ValueError, KeyError, AttributeError, TypeError, OverflowError, yaml.YAMLError):
        raise YamlError(_line(node), _unreadable(node)) from None


def _check_collection_tag(node) -> None:
    expected, kind = _KIND_TAG[type(node)]
    if node.tag == expected:
        return
    if node.tag in _SCALAR_TAGS or node.tag in _KEPT_AS_TEXT or node.tag in (_CORE + "map", _CORE + "seq"):
        raise YamlError(_line(node), f"YAML tag {_shown_tag(node.tag)!r} cannot tag {kind}; remove it")
    raise YamlError(_line(node), _tag_problem(node.tag))


def _tag_problem(tag: str) -> str:
    shown = _shown_tag(tag)
    if tag.startswith(_CORE):
        return f"YAML tag {shown!r} is not supported in suites (only plain values, lists and mappings); remove it"
    return f"unknown YAML tag {shown!r}; remove it"


def _unreadable(node) -> str:
    digits = node.value.strip().lstrip("+-").replace("_", "")
    if node.tag == _CORE + "int" and digits.isdigit():
        return f"the number {_shortened(node.value)} has {len(digits):,} digits; write a smaller number"
    return f"{_shortened(node.value)!r} is not a valid {_shown_tag(node.tag)}; fix the value or remove the tag"


def _shown_tag(tag: str) -> str:
    return "!!" + tag[len(_CORE):] if tag.startswith(_CORE) else _shortened(tag)


def _shortened(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _char_at(text: str, line: int, column: int) -> str:
    lines = text.split("\n", line + 1)
    if line < len(lines):
        row = lines[line]
        # The scanner stops at the tab, or at the start of the line the tab indents.
        return "\t" if "\t" in row[: max(column, 0) + 1] or row.startswith("\t") else row[column:column + 1]
    return ""


def line_of(lines: dict[Path_, int], path: Path_) -> int | None:
    """The line of `path`, or of its nearest ancestor that has one."""
    path = tuple(path)
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())
