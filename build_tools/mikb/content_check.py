"""`mikb check`: text in entries that would be unsafe or misleading on a page.

The site escapes and sanitises every field anyway (:mod:`mikb.site.safe_html`), so nothing
here is the last line of defence. It exists so that a contributor learns at review time, at
the exact line, that raw HTML is dropped, that a ``javascript:`` link is never published, or
that a right-to-left override makes a title read differently from what it says.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mikb.diagnostics import Diagnostic, display_path
from mikb.loader import KnowledgeBase
from mikb.site.safe_html import SAFE_SCHEMES, url_scheme
from mikb.yaml_source import YamlDocument

# A tag starts right after '<' (as in HTML: "a < b" is text); code spans and fences are code.
RAW_HTML = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?=[\s/>]|$)|<!--|<!\[CDATA\[|<\?", re.MULTILINE)
CODE = re.compile(r"```.*?```|~~~.*?~~~|(`+)(?:(?!\1).)+?\1", re.DOTALL)
INLINE_LINK = re.compile(r"\]\(\s*<?([^)\s>]*)")
REFERENCE_DEFINITION = re.compile(r"^[ \t]{0,3}\[[^\]\n]+\]:[ \t]*<?(\S+)", re.MULTILINE)
DANGEROUS_SCHEME_WORD = re.compile(r"\b(?:javascript|vbscript|livescript|data|file)\s*:", re.IGNORECASE)
# C0/C1 controls other than tab and newline, and the Unicode bidirectional controls that
# make text display in another order than it is stored ("Trojan Source").
HIDDEN_CHARACTERS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
URL_FIELDS = frozenset({"url", "evidence", "homepage", "code"})
PLAIN_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
ECHO_LIMIT = 40


def check_entry_content(kb: KnowledgeBase) -> list[Diagnostic]:
    """Unsafe text in every loaded entry, plus links among the files the site copies as-is."""
    found: list[Diagnostic] = _check_copied_sources(kb)
    for doc in kb.documents.values():
        found += _check_file_name(doc)
        if doc.data is not None:
            source = _source_text(doc.path)
            found += list(_check_value(doc, source, (), doc.data))
    return found


def _check_copied_sources(kb: KnowledgeBase) -> list[Diagnostic]:
    """docs/ and CONTRIBUTING.md are copied into the site verbatim: a symlink there would
    publish whatever file of the build machine it points at."""
    candidates = [kb.root / "CONTRIBUTING.md"]
    docs = kb.layout.docs_dir
    if docs.is_dir() or docs.is_symlink():
        candidates.append(docs)
        if not docs.is_symlink():
            candidates += [Path(current) / name for current, dirs, files in os.walk(docs) for name in [*dirs, *files]]
    return [Diagnostic(kb.rel(path) if not path.is_symlink() else display_path(path.parent, kb.root) + "/" + path.name,
                       1, 1, "symlinks are not published: replace it with the file itself")
            for path in sorted(candidates) if path.is_symlink()]


def _check_file_name(doc: YamlDocument) -> list[Diagnostic]:
    name = Path(doc.display).name
    if PLAIN_FILE_NAME.fullmatch(name):
        return []
    return [Diagnostic(doc.display, 1, 1, "file name may use only letters, digits, '.', '_' and '-' "
                       "(it becomes part of page addresses and edit links)")]


def _source_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _check_value(doc: YamlDocument, source: str, path: tuple[Any, ...], value: Any) -> Iterator[Diagnostic]:
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                yield from _check_string(doc, source, (*path, key), key, is_key=True)
            yield from _check_value(doc, source, (*path, key), item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _check_value(doc, source, (*path, index), item)
    elif isinstance(value, str):
        yield from _check_string(doc, source, path, value)


def _check_string(doc: YamlDocument, source: str, path: tuple[Any, ...], value: str, *, is_key: bool = False) -> Iterator[Diagnostic]:
    field = str(path[-1]) if path else ""
    hidden = HIDDEN_CHARACTERS.search(value)
    if hidden:
        yield _at(doc, source, path, value, hidden.start(), is_key,
                  f"invisible control character U+{ord(hidden.group()):04X}: remove it "
                  "(it can make the text display differently from what it says)")
    if is_key:
        return
    prose = CODE.sub(lambda m: " " * len(m.group()), value)  # same offsets, code blanked out
    for match in RAW_HTML.finditer(prose):
        yield _at(doc, source, path, value, match.start(), False,
                  f"raw HTML is not allowed in entries (found '{_echo(match.group())}'): write Markdown instead")
    for pattern in (INLINE_LINK, REFERENCE_DEFINITION):
        for match in pattern.finditer(value):
            yield from _unsafe_url(doc, source, path, value, match.start(1), match.group(1), "link")
    if field == "url" or (field in URL_FIELDS and url_scheme(value) is not None):
        yield from _unsafe_url(doc, source, path, value, 0, value, field)
    for match in DANGEROUS_SCHEME_WORD.finditer(value):
        yield _at(doc, source, path, value, match.start(), False,
                  f"'{_echo(match.group())}' address: only http, https and mailto links are published")


def _unsafe_url(doc: YamlDocument, source: str, path: tuple[Any, ...], value: str, offset: int, url: str, what: str) -> Iterator[Diagnostic]:
    scheme = url_scheme(url)
    if what == "url" and scheme is None:
        yield _at(doc, source, path, value, offset, False, f"url must be an absolute http(s) address, got '{_echo(url)}'")
    elif scheme is not None and scheme not in SAFE_SCHEMES:
        yield _at(doc, source, path, value, offset, False,
                  f"unsafe {what} '{_echo(url)}': only http, https, mailto and relative links are allowed")


def _at(doc: YamlDocument, source: str, path: tuple[Any, ...], value: str, offset: int, is_key: bool, message: str) -> Diagnostic:
    """Locate ``value[offset]`` in the file: the first line at or after the value's start
    (and after the line breaks before ``offset``) holding the text that follows it. Exact for
    plain, quoted and block scalars without escapes; the value's start otherwise."""
    line, col = doc.where(path, key=is_key)
    lines = source.splitlines()
    snippet = value[offset:].split("\n", 1)[0][:30]
    first = line - 1 + value[:offset].count("\n")
    if snippet:
        for index in range(first, min(len(lines), first + 200)):
            start = col - 1 if index == line - 1 else 0
            found = lines[index].find(snippet, start)
            if found >= 0:
                return Diagnostic(doc.display, index + 1, found + 1, message)
    return doc.diag(path, message, key=is_key)


def _echo(text: str) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= ECHO_LIMIT else text[: ECHO_LIMIT - 1] + "…"
