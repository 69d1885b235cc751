"""Diagnostics: one problem in one entry, located by file, line and column.

Every error mikb reports about user input goes through :class:`Diagnostic` so that it prints
as ``path:line:col: message`` (the form editors and CI annotators understand) and never as a
Python traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_ECHO = 80  # characters of a user's value repeated in a message
MAX_MESSAGE = 400  # a last guard: no message floods a terminal or a CI log


@dataclass(frozen=True, order=True)
class Diagnostic:
    path: str
    line: int
    col: int
    message: str
    severity: str = "error"  # "error", "warning" or "note" (a consequence of an error reported elsewhere)

    def __post_init__(self) -> None:
        if len(self.message) > MAX_MESSAGE:
            object.__setattr__(self, "message", self.message[: MAX_MESSAGE - 1] + "…")

    def format(self) -> str:
        prefix = f"{self.severity}: " if self.severity in ("warning", "note") else ""
        path = self.path if self.path.isprintable() else self.path.encode("unicode_escape").decode("ascii")
        return f"{path}:{self.line}:{self.col}: {prefix}{self.message}"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


def clip(value: Any, limit: int = MAX_ECHO) -> str:
    """A user's value as it may be echoed in a message: one line, at most ``limit`` characters.

    Entries are hostile input; a 1 MB title or a value full of newlines must not flood the
    output or fake extra diagnostic lines."""
    text = (value if isinstance(value, str) else repr(value))[: limit + 1]
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def display_path(path: Path, root: Path | None) -> str:
    """Paths relative to the repository root when possible: short and clickable.

    The link itself is named, not its target: a symlink (or a symlink loop) in
    ``problems/`` is reported under its own name, and resolving never raises."""
    if root is not None:
        for candidate in (path, path.absolute()):
            try:
                return str(candidate.relative_to(root))
            except ValueError:
                pass
        try:
            return str(path.resolve().relative_to(root.resolve()))
        except (ValueError, OSError, RuntimeError):
            pass
    return str(path)


class EntryError(Exception):
    """Raised where a single diagnostic makes going on pointless (e.g. unreadable file)."""

    def __init__(self, diagnostic: Diagnostic):
        super().__init__(diagnostic.format())
        self.diagnostic = diagnostic
