"""Diagnostics: one problem in one entry, located by file, line and column.

Every error mikb reports about user input goes through :class:`Diagnostic` so that it prints
as ``path:line:col: message`` (the form editors and CI annotators understand) and never as a
Python traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, order=True)
class Diagnostic:
    path: str
    line: int
    col: int
    message: str
    severity: str = "error"  # "error" or "warning"

    def format(self) -> str:
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{self.path}:{self.line}:{self.col}: {prefix}{self.message}"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


def display_path(path: Path, root: Path | None) -> str:
    """Paths relative to the repository root when possible: short and clickable."""
    if root is not None:
        try:
            return str(path.resolve().relative_to(root.resolve()))
        except ValueError:
            pass
    return str(path)


class EntryError(Exception):
    """Raised where a single diagnostic makes going on pointless (e.g. unreadable file)."""

    def __init__(self, diagnostic: Diagnostic):
        super().__init__(diagnostic.format())
        self.diagnostic = diagnostic
