"""YAML loading that remembers where each value came from, so errors can name file:line."""
from __future__ import annotations

from typing import Any

import yaml

try:  # libyaml is ~10x faster when present; the pure-Python loader is the fallback
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader

Path_ = tuple  # a path into the document: keys and list indices


class YamlError(ValueError):
    def __init__(self, line: int | None, message: str):
        super().__init__(message)
        self.line = line
        self.message = message


def load_with_lines(text: str) -> tuple[Any, dict[Path_, int]]:
    """Parse `text`; return the data and a map from each key/item path to its 1-based line."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise YamlError(line, f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise YamlError(None, f"invalid YAML: {exc}") from None
    lines: dict[Path_, int] = {}
    if node is None:
        return None, lines
    constructor = yaml.constructor.SafeConstructor()
    return _build(node, (), lines, constructor), lines


def _build(node, path: Path_, lines: dict, constructor) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise YamlError(key_node.start_mark.line + 1, "YAML merge keys (<<) are not supported in suites")
            key = constructor.construct_object(key_node, deep=True)
            if isinstance(key, (list, dict)):
                raise YamlError(key_node.start_mark.line + 1, "a mapping key must be a plain value")
            if key in out:
                raise YamlError(key_node.start_mark.line + 1, f"duplicate key {key!r}")
            child = path + (key,)
            out[key] = _build(value_node, child, lines, constructor)
            lines[child] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, path + (i,), lines, constructor) for i, item in enumerate(node.value)]
    return constructor.construct_object(node, deep=True)


def line_of(lines: dict[Path_, int], path: Path_) -> int | None:
    """The line of `path`, or of its nearest ancestor that has one."""
    path = tuple(path)
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())
