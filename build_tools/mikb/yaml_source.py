"""Load untrusted YAML while remembering where every value came from.

Entries arrive in strangers' pull requests and CI reads them, so this module treats every
file as hostile:

* files are read only if they are regular files inside the repository, checked with
  ``lstat`` *before* opening (a FIFO would block for ever, ``/dev/zero`` never ends) and
  opened with ``O_NOFOLLOW | O_NONBLOCK`` as a second guard; their size is capped;
* the node tree is composed here, from the parser's events, instead of by PyYAML's
  composer, so nesting depth, alias uses and the size an alias expands to are limited
  (a 1 KB "billion laughs" file would otherwise take minutes and gigabytes, and libyaml's
  own composer overflows the C stack on deep nesting);
* only plain data survives: explicit tags other than the core ones, merge keys, non-text
  keys and non-finite numbers are reported, never constructed;
* every problem becomes a :class:`~mikb.diagnostics.Diagnostic` at the line it comes from,
  never an exception.

A map from each value's path (a tuple of keys and indices) to its 1-based line and column
lets later checks point at the offending field. Timestamps stay strings (the schema checks
dates as text) and duplicate keys are reported instead of silently overwritten.
"""

from __future__ import annotations

import errno
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mikb.diagnostics import Diagnostic, clip

PathKey = tuple[Any, ...]

MAX_ENTRY_BYTES = 1 << 20  # 1 MiB: the largest real entry is a few KB
MAX_REGISTRY_BYTES = 8 << 20  # literature/papers.yaml is ~60 KB today; room to grow
MAX_DEPTH = 64  # real entries nest 5 levels deep
MAX_ALIAS_USES = 100  # real entries use none
MAX_NODES = 200_000  # values after alias expansion; papers.yaml has ~2,000

_CORE = "tag:yaml.org,2002:"
_ALLOWED_TAGS = {_CORE + name for name in ("str", "int", "float", "bool", "null", "seq", "map")}
_MERGE_TAG = _CORE + "merge"

_FastLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser keeps marks and is ~10x faster


class _EventLoader(_FastLoader):  # type: ignore[misc, valid-type]
    """Used only for its parser and resolver: we compose nodes ourselves (see module doc)."""


_EventLoader.yaml_implicit_resolvers = {  # dates stay text; a bare '=' is text, not the 'value' type
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_CORE + "timestamp", _CORE + "value")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

_CONSTRUCTOR = yaml.constructor.SafeConstructor()


class _Refused(Exception):
    """Input we will not load, with the mark it is located at."""

    def __init__(self, mark: Any, message: str):
        super().__init__(message)
        self.mark = mark
        self.message = message


@dataclass
class YamlDocument:
    """A parsed YAML file: its data, and the position of every value and key in it."""

    path: Path
    display: str
    data: Any
    positions: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    problems: list[Diagnostic] = field(default_factory=list)
    line_count: int = 1

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
        return self.at(line, col, message, severity)

    def at(self, line: int, col: int, message: str, severity: str = "error") -> Diagnostic:
        """A diagnostic at ``line``, clamped into the file (parsers report end-of-stream one past it)."""
        if line > self.line_count:
            line, col = self.line_count, 1
        return Diagnostic(self.display, max(1, line), max(1, col), message, severity)


def read_yaml(path: Path, display: str, *, root: Path | None = None, max_bytes: int = MAX_ENTRY_BYTES) -> YamlDocument:
    """Parse ``path``. Unreadable or refused input yields ``data=None`` and problems."""
    doc = YamlDocument(path=path, display=display, data=None)
    raw, why = read_entry_bytes(path, root, max_bytes)
    if why:
        doc.problems.append(Diagnostic(display, 1, 1, why))
        return doc
    text = _decode(raw, doc)
    if text is None:
        return doc
    doc.line_count = yaml_line_count(text)
    parse_text(text, doc)
    return doc


_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")  # what YAML 1.1 (and so the parser's marks) counts


def yaml_line_count(text: str) -> int:
    """Lines as the parser numbers them: a final line break does not start a new line."""
    breaks = len(_LINE_BREAK.findall(text))
    ends_with_break = bool(text) and text[-1] in "\r\n\x85\u2028\u2029"
    return max(1, breaks + (0 if ends_with_break else 1))


def parse_text(text: str, doc: YamlDocument) -> None:
    """Fill ``doc`` from ``text``; every failure becomes one diagnostic in ``doc.problems``."""
    if all(not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines()):
        doc.problems.append(doc.at(1, 1, "empty file: expected a YAML mapping"))
        return
    loader = _EventLoader(text)
    try:
        node = _Composer(loader).single_node()
    except _Refused as exc:
        doc.problems.append(doc.at(*_mark_position(exc.mark), exc.message))
        return
    except yaml.MarkedYAMLError as exc:
        line, col, reason = _syntax_error(exc)
        doc.problems.append(doc.at(line, col, f"YAML syntax error: {reason}"))
        return
    except yaml.reader.ReaderError as exc:
        line, col = _offset_position(text, exc.position)
        doc.problems.append(doc.at(line, col, f"YAML syntax error: character {exc.character!r} is not allowed"))
        return
    except yaml.YAMLError as exc:
        doc.problems.append(doc.at(1, 1, f"YAML error: {clip(str(exc))}"))
        return
    finally:
        loader.dispose()
    if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == _CORE + "null"):
        where = _mark_position(node.start_mark) if node is not None else (1, 1)
        doc.problems.append(doc.at(*where, "empty document (null): expected a YAML mapping"))
        return
    try:
        doc.data = _Converter(doc).convert(node, ())
    except _Refused as exc:
        doc.data = None
        doc.problems.append(doc.at(*_mark_position(exc.mark), exc.message))


def read_entry_bytes(path: Path, root: Path | None, max_bytes: int) -> tuple[bytes, str | None]:
    """The bytes of ``path``, or a reason not to read it.

    Only a regular file whose real location lies inside ``root`` is read. The type is
    checked with ``lstat`` before opening, so a FIFO or device is never opened; the open
    itself uses ``O_NOFOLLOW | O_NONBLOCK`` and ``fstat`` confirms the file did not change
    between the check and the open. At most ``max_bytes`` are read.
    """
    try:
        target = _real_target(path, root)
        before = os.lstat(target)
    except _Unsafe as exc:
        return b"", str(exc)
    except OSError as exc:
        return b"", f"cannot read file: {exc.strerror or exc}"
    if why := _not_regular(before):
        return b"", why
    if before.st_size > max_bytes:
        return b"", _too_large(before.st_size, max_bytes)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(target, flags)
    except OSError as exc:
        return b"", f"cannot read file: {exc.strerror or exc}"
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino) or _not_regular(now):
            return b"", "file changed while it was being read"
        raw = _read_at_most(fd, max_bytes + 1)
    except OSError as exc:
        return b"", f"cannot read file: {exc.strerror or exc}"
    finally:
        os.close(fd)
    if len(raw) > max_bytes:
        return b"", _too_large(len(raw), max_bytes)
    return raw, None


class _Unsafe(Exception):
    """A path we refuse to follow (symlink loop, outside the repository)."""


def _real_target(path: Path, root: Path | None) -> Path:
    """Where ``path`` really is, after every symlink; refused if outside ``root``."""
    try:
        real = path.resolve(strict=True)
    except RuntimeError as exc:  # Python 3.11 reports symlink loops this way
        raise _Unsafe("symlink loop: the link never reaches a file") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _Unsafe("symlink loop: the link never reaches a file") from exc
        if path.is_symlink():
            raise _Unsafe("broken symlink: its target does not exist") from exc
        raise
    if root is not None and not real.is_relative_to(root.resolve()):
        raise _Unsafe("symlink points outside the repository: entries must be files inside it")
    return real


def _not_regular(st: os.stat_result) -> str | None:
    if stat.S_ISREG(st.st_mode):
        return None
    kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode)
            else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
            else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a file")
    return f"not a regular file ({kind}): entries must be plain YAML files"


def _too_large(size: int, limit: int) -> str:
    return f"file too large ({size:,} bytes; the limit is {limit:,}): split it or shorten it"


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _decode(raw: bytes, doc: YamlDocument) -> str | None:
    """UTF-8 text (a leading byte-order mark is allowed and dropped), or None with a diagnostic."""
    if b"\x00" in raw:
        doc.problems.append(Diagnostic(doc.display, 1, 1, "binary file: expected YAML text"))
        return None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        doc.problems.append(Diagnostic(
            doc.display, line, col, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x}): save the file as UTF-8"))
        return None


def _syntax_error(exc: yaml.MarkedYAMLError) -> tuple[int, int, str]:
    """Where a syntax error really is. An unclosed quote or bracket is only noticed at the end
    of the file; the parser's context mark says where the unclosed thing started."""
    reason = exc.problem or exc.context or "invalid YAML"
    mark = exc.problem_mark or exc.context_mark
    if exc.context_mark is not None and exc.problem and "end of stream" in exc.problem:
        mark = exc.context_mark
        reason = f"{exc.context or 'a value'} that is never closed ({exc.problem})"
    line, col = _mark_position(mark)
    return line, col, reason


def field_name(path: PathKey) -> str:
    """``('components', 2, 'location')`` -> ``components[2].location``, as messages name fields."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{clip(part, 40)}" if text else clip(part, 40))
    return text


def _mark_position(mark: Any) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


def _offset_position(text: str, offset: int) -> tuple[int, int]:
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


class _Composer:
    """Events -> nodes, like PyYAML's composer, but with limits and a tag whitelist.

    ``sizes`` holds how many values each node stands for once aliases are expanded, so an
    alias bomb is refused at the alias that would make the document too big, long before
    anything is expanded.
    """

    def __init__(self, loader: Any):
        self.loader = loader
        self.anchors: dict[str, yaml.Node] = {}
        self.open_anchors: set[str] = set()
        self.sizes: dict[int, int] = {}
        self.alias_uses = 0
        self.total = 0

    def single_node(self) -> yaml.Node | None:
        events = self.loader
        events.get_event()  # stream start
        node = None
        if not events.check_event(yaml.StreamEndEvent):
            events.get_event()  # document start
            node = self.node(0)
            events.get_event()  # document end
        if not events.check_event(yaml.StreamEndEvent):
            raise _Refused(events.peek_event().start_mark,
                           "more than one YAML document (a second '---'): an entry is one document")
        events.get_event()
        return node

    def node(self, depth: int) -> yaml.Node:
        event = self.loader.peek_event()
        if depth > MAX_DEPTH:
            raise _Refused(event.start_mark, f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(event, yaml.AliasEvent):
            return self.alias(self.loader.get_event())
        anchor = event.anchor
        if anchor is not None:
            self.open_anchors.add(anchor)
        if isinstance(event, yaml.ScalarEvent):
            node: yaml.Node = self.scalar(self.loader.get_event())
        elif isinstance(event, yaml.SequenceStartEvent):
            node = self.sequence(depth)
        else:
            node = self.mapping(depth)
        if anchor is not None:
            self.open_anchors.discard(anchor)
            self.anchors[anchor] = node
        return node

    def alias(self, event: Any) -> yaml.Node:
        name = event.anchor
        if name in self.open_anchors:
            raise _Refused(event.start_mark, f"alias *{clip(name, 40)} refers to the value that contains it (a cycle)")
        if name not in self.anchors:
            raise _Refused(event.start_mark, f"alias *{clip(name, 40)} names no earlier anchor &{clip(name, 40)}")
        self.alias_uses += 1
        if self.alias_uses > MAX_ALIAS_USES:
            raise _Refused(event.start_mark, f"more than {MAX_ALIAS_USES} aliases (*name): write the values out")
        node = self.anchors[name]
        self.count(self.sizes[id(node)], event.start_mark)
        return node

    def count(self, size: int, mark: Any) -> None:
        self.total += size
        if self.total > MAX_NODES:
            raise _Refused(mark, f"document too large: more than {MAX_NODES:,} values once aliases are expanded")

    def tag(self, event: Any, kind: type, value: str | None) -> str:
        tag = event.tag
        if tag is None or tag == "!":
            return self.loader.resolve(kind, value, event.implicit if kind is yaml.ScalarNode else True)
        if tag not in _ALLOWED_TAGS:
            shown = "!!" + tag.removeprefix(_CORE) if tag.startswith(_CORE) else tag
            raise _Refused(event.start_mark, f"YAML tag {clip(shown, 60)} is not allowed: entries hold plain data")
        return tag

    def scalar(self, event: Any) -> yaml.ScalarNode:
        node = yaml.ScalarNode(self.tag(event, yaml.ScalarNode, event.value), event.value,
                               event.start_mark, event.end_mark, style=event.style)
        self.sizes[id(node)] = 1
        self.count(1, event.start_mark)
        return node

    def sequence(self, depth: int) -> yaml.SequenceNode:
        start = self.loader.get_event()
        node = yaml.SequenceNode(self.tag(start, yaml.SequenceNode, None), [], start.start_mark, None,
                                 flow_style=start.flow_style)
        while not self.loader.check_event(yaml.SequenceEndEvent):
            node.value.append(self.node(depth + 1))
        node.end_mark = self.loader.get_event().end_mark
        self.sizes[id(node)] = 1 + sum(self.sizes[id(child)] for child in node.value)
        self.count(1, start.start_mark)
        return node

    def mapping(self, depth: int) -> yaml.MappingNode:
        start = self.loader.get_event()
        node = yaml.MappingNode(self.tag(start, yaml.MappingNode, None), [], start.start_mark, None,
                                flow_style=start.flow_style)
        while not self.loader.check_event(yaml.MappingEndEvent):
            key = self.node(depth + 1)
            node.value.append((key, self.node(depth + 1)))
        node.end_mark = self.loader.get_event().end_mark
        self.sizes[id(node)] = 1 + sum(self.sizes[id(k)] + self.sizes[id(v)] for k, v in node.value)
        self.count(1, start.start_mark)
        return node


class _Converter:
    """Nodes -> plain Python data (dict, list, str, int, float, bool, None) with positions."""

    def __init__(self, doc: YamlDocument):
        self.doc = doc

    def convert(self, node: yaml.Node, path: PathKey) -> Any:
        self.doc.positions[path] = _mark_position(node.start_mark)
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.scalar(node, path)

    def mapping(self, node: yaml.MappingNode, path: PathKey) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self.key(key_node)
            child = (*path, key)
            line, col = _mark_position(key_node.start_mark)
            if key in result:
                self.doc.problems.append(self.doc.at(line, col, f"duplicate key '{clip(key)}'"))
            self.doc.key_positions[child] = (line, col)
            result[key] = self.convert(value_node, child)
        return result

    def key(self, node: yaml.Node) -> str:
        if not isinstance(node, yaml.ScalarNode):
            raise _Refused(node.start_mark, "a key must be text, not a list or mapping")
        if node.tag == _MERGE_TAG:
            raise _Refused(node.start_mark, "merge keys (<<: *name) are not supported: write the fields out")
        key = self.scalar(node, ())
        if not isinstance(key, str) or key == "":
            shown = "an empty key" if key in ("", None) else f"key {node.value!r} is not text"
            raise _Refused(node.start_mark, f"{clip(shown)}: field names are words (quote it if you must)")
        return key

    def scalar(self, node: yaml.ScalarNode, path: PathKey) -> Any:
        where = f"{field_name(path)}: " if path else ""
        if node.tag == _MERGE_TAG:
            raise _Refused(node.start_mark, "merge keys (<<: *name) are not supported: write the fields out")
        try:
            value = _CONSTRUCTOR.construct_object(node, deep=True)
        except (ValueError, KeyError, OverflowError, TypeError, yaml.YAMLError):
            short = node.tag.removeprefix(_CORE)
            raise _Refused(node.start_mark, f"{where}cannot read {clip(node.value)!s} as {short}") from None
        finally:
            _CONSTRUCTOR.constructed_objects.clear()
        if isinstance(value, float) and not math.isfinite(value):
            raise _Refused(node.start_mark, f"{where}{clip(node.value)} is not a finite number (no .nan or .inf)")
        return value
