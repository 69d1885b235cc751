"""Writes the generated site source, touching only what changed.

MkDocs' live reload watches the generated folder: rewriting unchanged files would trigger
endless rebuilds, and rewriting them on every build would defeat incremental builds. So each
file is compared with what is on disk and written (atomically) only when different; files
from an earlier generation that this one did not produce are removed at the end.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mikb.atomic import write_bytes_atomic


@dataclass
class SiteWriter:
    root: Path
    written: list[str] = field(default_factory=list)
    unchanged: int = 0
    produced: set[str] = field(default_factory=set)

    def text(self, rel: str, content: str) -> None:
        self.bytes(rel, content.encode("utf-8"))

    def bytes(self, rel: str, content: bytes) -> None:
        self.produced.add(rel)
        target = self.root / rel
        if target.is_file() and target.stat().st_size == len(content) and target.read_bytes() == content:
            self.unchanged += 1
            return
        write_bytes_atomic(target, content, durable=False)
        self.written.append(rel)

    def copy(self, rel: str, source: Path) -> None:
        """Copy a file (figure, asset) unless an identical copy is already there."""
        self.produced.add(rel)
        target = self.root / rel
        if target.is_file() and target.stat().st_size == source.stat().st_size and target.read_bytes() == source.read_bytes():
            self.unchanged += 1
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(source, tmp)
        tmp.replace(target)
        self.written.append(rel)

    def remove_stale(self) -> list[str]:
        """Delete files left from a previous generation that this one did not produce."""
        removed = []
        if not self.root.is_dir():
            return removed
        for path in sorted(self.root.rglob("*"), reverse=True):
            rel = path.relative_to(self.root).as_posix()
            if path.is_file() and rel not in self.produced:
                path.unlink()
                removed.append(rel)
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        return removed
