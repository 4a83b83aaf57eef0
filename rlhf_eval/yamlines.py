"""YAML loading that remembers where each value came from, so errors can name file:line.

Only plain data is built: strings, numbers, booleans, null, mappings and lists. Any other tag
(`!!python/object`, `!!binary`, `!foo`) is refused at its line, a value its tag cannot read
(`!!int hi`) too, and aliases may not make a small file expand into a huge one (billion laughs).
"""
from __future__ import annotations

import contextlib
from typing import Any

import yaml
from yaml.events import (AliasEvent, DocumentStartEvent, MappingEndEvent, MappingStartEvent, ScalarEvent,
                         SequenceEndEvent, SequenceStartEvent)
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

_Loader: type[yaml.SafeLoader]
try:  # libyaml is ~10x faster when present; the pure-Python loader is the fallback
    _Loader = yaml.CSafeLoader
    from yaml._yaml import CParser as _Parser
except (AttributeError, ImportError):  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader
    _Parser = None

Path_ = tuple  # a path into the document: keys and list indices

_CORE = "tag:yaml.org,2002:"
_SCALAR_TAGS = frozenset(_CORE + t for t in ("str", "int", "float", "bool", "null"))
# Tags YAML 1.1 gives some plain words on its own (`2024-01-01`, `=`, `<<` as a value): a suite
# has no dates and no such values, so these stay the text that was written.
_KEPT_AS_TEXT = frozenset(_CORE + t for t in ("timestamp", "value", "merge"))
_MERGE = _CORE + "merge"
_KIND_TAG = {MappingNode: (_CORE + "map", "a mapping"), SequenceNode: (_CORE + "seq", "a list")}
# A suite is a few levels deep; anything much deeper is a mistake (and deep recursion a crash).
MAX_DEPTH = 16  # a suite needs about 5 levels; each level costs every value below it a longer line path
TOO_DEEP = f"values are nested more than {MAX_DEPTH} levels deep; a suite needs only a few"
# How many values aliases may add beyond those written out: far more than a suite shares (a
# threshold block for many questions), far fewer than the billions nested aliases expand to, and
# few enough to cost no more than a few milliseconds.
MAX_ALIASED_VALUES = 10_000
# How many keys and values a suite file may hold for each megabyte of text (150,000 at least):
# every one costs a few microseconds to build with its line, so a file under 1 MB loads in well
# under a second, a bigger one in time linear in its size. A megabyte of inline questions holds
# ~120,000 (17,000 questions); only a file of little else but brackets and commas goes past.
MAX_NODES_PER_MB = 150_000


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
    if _Parser is not None:
        try:
            return _load_plain(text)
        except _NotPlain:
            pass  # anchors, aliases, tags or several documents: the exact path reads them
        with contextlib.suppress(yaml.YAMLError):  # composing says it, with the exact path's wording
            for _ in _count_nodes(text):  # composing is slower: refuse a too dense file first
                pass
    return _load_exact(text)


def _count_nodes(text: str):
    """`text`'s parser events, refusing a file of more keys and values than MAX_NODES_PER_MB allows
    for its size at the first one past the limit."""
    limit = max(MAX_NODES_PER_MB, MAX_NODES_PER_MB * len(text) // 1_000_000)
    nodes = 0
    for event in iter(_Parser(text).get_event, None):
        if type(event) in (ScalarEvent, MappingStartEvent, SequenceStartEvent):
            nodes += 1
            if nodes > limit:
                raise YamlError(event.start_mark.line + 1,
                                f"the file holds more than {limit:,} YAML keys and values, too many to load "
                                "quickly; put the questions in a JSONL file (questions: {source: ...})")
        yield event


def _load_exact(text: str) -> tuple[Any, dict[Path_, int]]:
    """Any YAML: compose the node graph, then build it (anchors, aliases and tags included)."""
    node = _compose(text)
    lines: dict[Path_, int] = {}
    if node is None:
        return None, lines
    return _Builder(lines).build(node, ()), lines


def _compose(text: str):
    try:
        return yaml.compose(text, Loader=_ComposeLoader)
    except (yaml.YAMLError, RecursionError) as exc:
        raise _yaml_error(exc, text) from None


def _yaml_error(exc: Exception, text: str) -> YamlError:
    """The YamlError (a line and one line of text) for what the parser or composer raised."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        if mark is not None and _char_at(text, mark.line, mark.column) == "\t":
            problem = "a tab character indents this line; indent with spaces"
        return YamlError(line, f"invalid YAML: {problem}")
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow; it has no line, only a position
        line = text[: exc.position].count("\n") + 1
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        return YamlError(line, f"invalid YAML: unacceptable character #x{char:04x}: {exc.reason}")
    if isinstance(exc, RecursionError):  # the pure-Python composer recurses once per level of nesting
        return YamlError(None, TOO_DEEP)
    return YamlError(None, f"invalid YAML: {str(exc).splitlines()[0]}")


class _ComposeLoader(_Loader):
    """The loader with a quicker resolver: the composer calls it for every scalar, and PyYAML's
    (a method call, list concatenations and path-resolver checks each time) took half of the
    composing time of a 1 MB suite."""

    def resolve(self, kind, value, implicit):
        if kind is ScalarNode:  # as Resolver.resolve: an implicit tag for a plain scalar, else str
            return _plain_tag(value) if implicit[0] else _STR
        return super().resolve(kind, value, implicit)


# ---------------------------------------------------------------------------------------------
# The fast path: plain YAML (no anchors, aliases, tags or second document), built from events
# ---------------------------------------------------------------------------------------------
# Composing nodes costs a Python resolver call per scalar, node objects for the whole file, and a
# second walk over them: a dense 1 MB suite spent ~1 s there. Building straight
# from libyaml's events in one loop, each event dropped once used, gives the same data, lines and
# errors for what nearly every suite is: plain YAML. A feature the fast path leaves alone raises
# _NotPlain and the text takes the exact path above instead.
#
# Errors keep the exact path's precedence: it composes the whole document before building, so a
# syntax error, or the composer's own (anchors, a second document), anywhere in the file wins
# over a building problem (a duplicate key, say). The fast path reads on past a building problem
# to make sure there is none.


class _NotPlain(Exception):
    """The text uses a YAML feature the fast path leaves to the exact path."""


def _load_plain(text: str) -> tuple[Any, dict[Path_, int]]:
    try:
        events = _count_nodes(text)
        try:
            return _EventBuilder().build(events)
        except YamlError:
            _read_to_the_end(events)  # a syntax or composer error later in the file comes first
            raise
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, text) from None


def _read_to_the_end(events) -> None:
    """Read the remaining events: raises the parser's error, or _NotPlain where the composer
    would object (an anchor, an alias, a second document)."""
    for event in events:
        if type(event) in (AliasEvent, DocumentStartEvent) or getattr(event, "anchor", None) is not None:
            raise _NotPlain


_RESOLVERS = _Loader.yaml_implicit_resolvers  # first character -> [(tag, regexp)], as PyYAML resolves
_STR = _CORE + "str"


class _Anything:
    def __contains__(self, item) -> bool:
        return True


# First characters of the plain scalars some implicit tag may match (all of them, should a
# resolver match on any first character: PyYAML files those under None).
_TYPED_STARTS = _Anything() if None in _RESOLVERS else frozenset(_RESOLVERS)


def _plain_tag(value: str) -> str:
    """The tag YAML 1.1 gives an untagged plain scalar (PyYAML's Resolver.resolve, without its
    method calls and list concatenation per scalar)."""
    for tag, regexp in _RESOLVERS.get(value[:1], ()):
        if regexp.match(value):
            return tag
    for tag, regexp in _RESOLVERS.get(None, ()):
        if regexp.match(value):
            return tag
    return _STR


class _EventBuilder:
    """Builds data and lines from the events of one plain document, in one loop, with the exact
    path's checks in its order: key, duplicate key, value; nesting depth as each list or mapping
    opens. A tag, an anchor or an alias raises _NotPlain."""

    def __init__(self) -> None:
        self.constructor = yaml.constructor.SafeConstructor()
        self.scalars: dict[str, Any] = {}  # plain text -> its value, for the non-strings (numbers repeat)

    def build(self, events) -> tuple[Any, dict[Path_, int]]:
        lines: dict[Path_, int] = {}
        next(events)  # StreamStart
        if type(next(events)) is not DocumentStartEvent:  # StreamEnd: no document, only comments or nothing
            return None, lines
        root = self._document(events, lines)
        next(events)  # DocumentEnd
        if type(next(events)) is DocumentStartEvent:
            raise _NotPlain  # a second document: the composer's error
        return root, lines

    def _document(self, events, lines: dict) -> Any:
        """The document's value, from its events (the loop every value of a suite goes through)."""
        # The open lists and mappings: (container, its path, is_mapping, key awaiting its value).
        stack: list = []
        container: Any = None
        path: Path_ = ()
        is_map = False
        key: Any = None
        for event in events:
            kind = type(event)
            if kind is ScalarEvent:
                if event.tag is not None or event.anchor is not None:
                    raise _NotPlain
                value = event.value
                # Only an unquoted scalar whose first character some tag starts with can be other
                # than text: checking that first spares the resolver most keys, ids and questions.
                typed = event.implicit[0] and value[:1] in _TYPED_STARTS
                if is_map and key is None:  # a key: its text, checked, and the line of the key's path
                    key = self._key(event) if typed else value
                    line = event.start_mark.line + 1
                    if key in container:
                        raise YamlError(line, f"duplicate key {key!r}")
                    lines[path + (key,)] = line
                    continue
                if typed:
                    value = self._scalar(event)
                if is_map:
                    container[key] = value
                    key = None
                elif container is not None:
                    lines[path + (len(container),)] = event.start_mark.line + 1
                    container.append(value)
                else:  # the whole document is this scalar
                    lines[()] = event.start_mark.line + 1
                    return value
            elif kind is MappingStartEvent or kind is SequenceStartEvent:
                if event.tag is not None or event.anchor is not None:
                    raise _NotPlain
                line = event.start_mark.line + 1
                if is_map and key is None:
                    raise YamlError(line, "a mapping key must be a plain value")
                if len(stack) > MAX_DEPTH:
                    raise YamlError(line, TOO_DEEP)
                value = {} if kind is MappingStartEvent else []
                if is_map:  # its key already has the line: the exact path gives an entry its key's line
                    container[key] = value
                    child = path + (key,)
                elif container is not None:
                    child = path + (len(container),)
                    lines[child] = line
                    container.append(value)
                else:  # the document's own list or mapping
                    child = ()
                    lines[child] = line
                stack.append((container, path, is_map, key))
                container, path, is_map, key = value, child, kind is MappingStartEvent, None
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                done = container
                container, path, is_map, _ = stack.pop()
                key = None
                if not stack:
                    return done
            else:  # an alias
                raise _NotPlain
        raise AssertionError("the parser ended a document inside a value")  # pragma: no cover

    @staticmethod
    def _key(event) -> str:
        """A plain mapping key as the text written (see _key); a `<<` is a merge key, refused."""
        tag = _plain_tag(event.value)
        if tag == _STR:
            return event.value
        return _key(ScalarNode(tag, event.value, event.start_mark, event.end_mark))

    def _scalar(self, event) -> Any:
        """The value of a plain scalar: text, or what its resolved tag reads it as."""
        text = event.value
        value = self.scalars.get(text, self)
        if value is not self:
            return value
        tag = _plain_tag(text)
        if tag == _STR:
            return text
        value = _scalar(ScalarNode(tag, text, event.start_mark, event.end_mark), self.constructor)
        self.scalars[text] = value
        return value


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
            raise YamlError(_line(node), TOO_DEEP)
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
    # IndexError: PyYAML reads `!!int` with nothing after it as value[0] of ''
    except (ValueError, KeyError, IndexError, AttributeError, TypeError, OverflowError, yaml.YAMLError):
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
