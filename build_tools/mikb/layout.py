"""Where things live in a mikb repository.

One place names every folder and registry file, so the loader, the runner, the site
generator and the scaffolder agree, and a test can point all of them at a fixture tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def problems_dir(self) -> Path:
        return self.root / "problems"

    @property
    def categories_file(self) -> Path:
        return self.problems_dir / "_categories.yaml"

    @property
    def circuits_dir(self) -> Path:
        return self.root / "circuits_zoo"

    @property
    def models_file(self) -> Path:
        return self.circuits_dir / "models.yaml"

    @property
    def literature_dir(self) -> Path:
        return self.root / "literature"

    @property
    def docs_dir(self) -> Path:
        """Hand-written pages, copied verbatim into the generated site source."""
        return self.root / "docs"

    @property
    def site_src_dir(self) -> Path:
        """Generated Markdown + assets that MkDocs (or another generator) builds from."""
        return self.root / "site_src"

    @property
    def site_dir(self) -> Path:
        return self.root / "site"

    def problem_files(self) -> list[Path]:
        if not self.problems_dir.is_dir():
            return []
        return sorted(p for p in self.problems_dir.glob("*.yaml") if not p.name.startswith("_"))

    def circuit_dirs(self) -> list[Path]:
        if not self.circuits_dir.is_dir():
            return []
        return sorted(p for p in self.circuits_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))

    def paper_files(self) -> list[Path]:
        if not self.literature_dir.is_dir():
            return []
        return sorted(p for p in self.literature_dir.glob("*.yaml") if not p.name.startswith("_"))

    def misnamed_files(self) -> list[Path]:
        """YAML files the loader would skip because of their extension (``.yml``, ``.YAML``).

        Skipping them silently would let an entry vanish from the site while ``mikb check``
        passes, so the loader reports each one instead."""
        found: list[Path] = []
        for folder in (self.problems_dir, self.literature_dir):
            found += [p for p in _listing(folder) if p.suffix.lower() in (".yml", ".yaml") and p.suffix != ".yaml"]
        for folder in self.circuit_dirs():
            found += [p for p in _listing(folder) if p.name.lower() in ("circuit.yml", "circuit.yaml") and p.name != "circuit.yaml"]
        return sorted(found)


def _listing(folder: Path) -> list[Path]:
    """A folder's entries; an unreadable or missing folder has none (its files are reported elsewhere)."""
    try:
        return list(folder.iterdir()) if folder.is_dir() else []
    except OSError:
        return []


def find_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` that holds mkdocs.yml or problems/."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "mkdocs.yml").is_file() or (candidate / "problems").is_dir():
            return candidate
    return here
