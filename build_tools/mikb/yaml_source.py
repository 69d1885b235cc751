"""Load YAML while remembering where every value came from.

PyYAML's ``safe_load`` throws away positions, but ``mikb check`` must point at the exact
line of a bad field. We compose the node tree ourselves and convert it, keeping a map from
each value's path (a tuple of keys and indices) to its 1-based line and column. Timestamps
are left as strings (JSON Schema validates dates as text), and duplicate keys are reported
instead of silently overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mikb.diagnostics import Diagnostic

PathKey = tuple[Any, ...]


_FastLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml keeps marks too, and is ~10x faster


class _NoDatesLoader(_FastLoader):  # type: ignore[misc, valid-type]
    """Safe loader that keeps dates and times as plain strings."""


class _NoDatesConstructor(yaml.constructor.SafeConstructor):
    """Builds scalar values from nodes; one instance serves every file."""


_NoDatesLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass
class YamlDocument:
    """A parsed YAML file: its data, and the position of every value and key in it."""

    path: Path
    display: str
    data: Any
    positions: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    problems: list[Diagnostic] = field(default_factory=list)

    def where(self, path: PathKey, *, key: bool = False) -> tuple[int, int]:
        """Line and column of ``path``; falls back to the nearest located ancestor."""
        table = self.key_positions if key else self.positions
        probe = tuple(path)
        while probe:
            if probe in table:
                return table[probe]
            if probe in self.positions:
                return self.positions[probe]
            probe = probe[:-1]
        return self.positions.get((), (1, 1))

    def diag(self, path: PathKey, message: str, *, key: bool = False, severity: str = "error") -> Diagnostic:
        line, col = self.where(path, key=key)
        return Diagnostic(self.display, line, col, message, severity)


def read_yaml(path: Path, display: str) -> YamlDocument:
    """Parse ``path``. Unreadable input yields a document with ``data=None`` and problems."""
    doc = YamlDocument(path=path, display=display, data=None)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        doc.problems.append(Diagnostic(display, 1, 1, f"cannot read file: {exc.strerror}"))
        return doc
    if b"\x00" in raw:
        doc.problems.append(Diagnostic(display, 1, 1, "binary file: expected YAML text"))
        return doc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        doc.problems.append(
            Diagnostic(display, line, col, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x}): save the file as UTF-8")
        )
        return doc
    if not text.strip() or all(not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines()):
        doc.problems.append(Diagnostic(display, 1, 1, "empty file: expected a YAML mapping"))
        return doc
    try:
        loader = _NoDatesLoader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        reason = exc.problem or exc.context or "invalid YAML"
        doc.problems.append(Diagnostic(display, line, col, f"YAML syntax error: {reason}"))
        return doc
    except yaml.YAMLError as exc:  # pragma: no cover - unmarked errors are rare
        doc.problems.append(Diagnostic(display, 1, 1, f"YAML error: {exc}"))
        return doc
    if node is None:
        doc.problems.append(Diagnostic(display, 1, 1, "empty file: expected a YAML mapping"))
        return doc
    doc.data = _convert(node, (), doc)
    return doc


def _convert(node: yaml.Node, path: PathKey, doc: YamlDocument) -> Any:
    doc.positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            child = (*path, key)
            if key in result:
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                doc.problems.append(Diagnostic(doc.display, line, col, f"duplicate key '{key}'"))
            doc.key_positions[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            result[key] = _convert(value_node, child, doc)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), doc) for i, item in enumerate(node.value)]
    return _scalar(node)


_CONSTRUCTOR = _NoDatesConstructor()


def _scalar(node: yaml.ScalarNode) -> Any:
    try:
        return _CONSTRUCTOR.construct_object(node, deep=True)
    finally:
        _CONSTRUCTOR.constructed_objects.clear()
