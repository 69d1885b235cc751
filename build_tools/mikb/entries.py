"""Validated entry models: the typed form of the YAML entries that the graph and pages use.

Entries are built only from documents that passed their JSON Schema, so the fields here can
be trusted to have the right types; cross-references are checked afterwards (crossref.py).
Each entry keeps the document it came from so later checks can point at its lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from mikb.yaml_source import YamlDocument

STATUSES = ("open", "in-progress", "partially-solved", "solved")


def path_escape(folder: Path, relative: Any) -> str | None:
    """Why ``relative`` may not be used below ``folder``, or None when it is safe.

    The reproduction runner runs ``reproduction.script`` and writes and deletes inside
    ``reproduction.outputs``; an absolute path, a ``..`` component or a symlink out of the
    circuit's folder would let an entry point it anywhere on the machine."""
    if not isinstance(relative, str) or not relative.strip():
        return "must be a path relative to the circuit's folder"
    if any(ch in relative for ch in "\x00\\\n\r"):
        return "must be a plain relative path (no backslashes, newlines or NUL characters)"
    pure = PurePosixPath(relative)
    if len(relative) > 200 or any(len(part) > 100 for part in pure.parts):
        return "is too long (at most 200 characters, 100 per folder or file name)"
    if pure.is_absolute() or relative.startswith("~"):
        return "must be relative to the circuit's folder, not an absolute path"
    if ".." in pure.parts:
        return "must not contain '..': keep it inside the circuit's folder"
    if not pure.parts or pure.parts == (".",):
        return "must name something inside the circuit's folder, not the folder itself"
    try:
        base = folder.resolve()
        real = (folder / pure).resolve()
    except (OSError, RuntimeError):
        return "cannot be resolved (a symlink loop?)"
    if real == base or not real.is_relative_to(base):
        return "leads out of the circuit's folder through a symlink"
    return None


def inside_folder(folder: Path, relative: Any, what: str) -> Path:
    """``folder / relative``, refused (ValueError) unless :func:`path_escape` accepts it."""
    why = path_escape(folder, relative)
    if why:
        raise ValueError(f"{what} {why}")
    return folder / relative


@dataclass
class StatusChange:
    date: str
    status: str
    evidence: str
    note: str | None = None

    @property
    def evidence_is_url(self) -> bool:
        return self.evidence.startswith(("http://", "https://"))


@dataclass
class SourceList:
    """One list of open problems (a post sequence, a review) that categories belong to."""

    slug: str
    name: str
    source: str
    id_prefix: str | None = None
    description: str | None = None
    index: int = 0


@dataclass
class Category:
    slug: str
    name: str
    description: str
    number: int | None = None
    source: str | None = None
    list: str | None = None
    index: int = 0  # position in the registry, for locating diagnostics


@dataclass
class Problem:
    id: str
    title: str
    category: str
    difficulty: str
    status: str
    status_history: list[StatusChange]
    summary: str
    source: dict[str, Any]
    number: str | None = None
    subcategory: str | None = None
    priority: str = "unknown"
    related_problems: list[str] = field(default_factory=list)
    related_circuits: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    contributors: list[str] = field(default_factory=list)
    notes: str | None = None
    difficulty_spreadsheet: str | None = None
    doc: YamlDocument | None = field(default=None, repr=False, compare=False)

    @property
    def difficulty_from_spreadsheet(self) -> bool:
        """True when the source's own mark is unknown and the companion spreadsheet's is shown."""
        return self.difficulty == "unknown" and bool(self.difficulty_spreadsheet)

    @property
    def shown_difficulty(self) -> str:
        """The difficulty readers filter on: the source's mark, else the spreadsheet's, else unknown."""
        return self.difficulty_spreadsheet if self.difficulty_from_spreadsheet else self.difficulty

    @property
    def last_changed(self) -> str:
        return max(change.date for change in self.status_history)

    @property
    def sort_key(self) -> tuple[Any, ...]:
        """Numbered problems sort numerically (1.2 before 1.10, 2.1.2c before 2.1.3), the rest by id."""
        if self.number:
            parts = []
            for part in self.number.split("."):
                digits = len(part) - len(part.lstrip("0123456789"))
                parts.append((int(part[:digits]) if digits else 0, part[digits:]))
            return (0, parts, self.id)
        return (1, [], self.id)


@dataclass
class Component:
    id: str
    kind: str
    role: str
    model: str
    location: str | None = None
    description: str | None = None
    index: int = 0

    @property
    def label(self) -> str:
        if self.kind == "head" and self.location:
            return f"H{self.location}" if "*" not in self.location else f"L{self.location[:-2]} head"
        if self.kind in ("mlp", "layer") and self.location is not None:
            return f"{'MLP' if self.kind == 'mlp' else 'Layer'} {self.location}"
        if self.kind == "neuron" and self.location:
            return f"N{self.location}"
        return self.kind

    @property
    def layer(self) -> int | None:
        if self.location is None:
            return None
        return int(self.location.split(".")[0])


@dataclass
class Edge:
    source: str
    target: str
    input: str | None = None
    description: str | None = None
    index: int = 0


@dataclass
class Claim:
    id: str
    statement: str
    metric: str
    reported: dict[str, Any] | None = None
    tolerance: float | None = None
    expect: dict[str, dict[str, float]] = field(default_factory=dict)
    unit: str | None = None
    index: int = 0

    @property
    def reported_text(self) -> str:
        """The paper's number as a reader should see it (value, range or words)."""
        if not self.reported:
            return ""
        if "value" in self.reported:
            text = f"{self.reported['value']:g}"
            if self.tolerance:
                text += f" (±{self.tolerance:g})"
            return text
        if "range" in self.reported:
            low, high = self.reported["range"]
            return f"{low:g} – {high:g}"
        return str(self.reported.get("text", ""))


@dataclass
class Circuit:
    id: str
    name: str
    models: list[str]
    task: str
    behaviour: str
    components: list[Component]
    edges: list[Edge]
    claims: list[Claim]
    references: list[str]
    reproduction: dict[str, Any]
    related_problems: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    contributors: list[str] = field(default_factory=list)
    notes: str | None = None
    folder: Path | None = None
    doc: YamlDocument | None = field(default=None, repr=False, compare=False)

    @property
    def script_path(self) -> Path:
        """The reproduction script; never outside the circuit's folder (ValueError if it would be)."""
        assert self.folder is not None
        return inside_folder(self.folder, self.reproduction["script"], "reproduction.script")

    @property
    def outputs_dir(self) -> Path:
        """Where results are written (and stale ones deleted); never outside the circuit's folder."""
        assert self.folder is not None
        return inside_folder(self.folder, self.reproduction.get("outputs", "results"), "reproduction.outputs")

    def component(self, component_id: str) -> Component | None:
        return next((c for c in self.components if c.id == component_id), None)


@dataclass
class Model:
    id: str
    name: str
    kind: str
    n_layers: int | None  # None only for kind "paper": a paper's model whose shape mikb does not state
    n_heads: int | None
    d_model: int | None = None
    d_vocab: int | None = None
    n_neurons: int | None = None
    weights: str | None = None
    description: str | None = None
    references: list[str] = field(default_factory=list)
    index: int = 0


@dataclass
class Paper:
    key: str
    title: str
    authors: list[str]
    year: int
    url: str
    venue: str | None = None
    kind: str = "paper"
    arxiv: str | None = None
    doi: str | None = None
    date: str | None = None
    summary: str | None = None
    tags: list[str] = field(default_factory=list)
    index: int = 0

    @property
    def short_authors(self) -> str:
        """Surnames, as citations are read: "Wang et al.", "Elhage and Olah"."""
        surnames = [a.split()[-1] if " " in a else a for a in self.authors if a != "others"]
        if not surnames:
            return "Anonymous"
        if len(surnames) <= 2 and "others" not in self.authors:
            return " and ".join(surnames)
        return f"{surnames[0]} et al."

    @property
    def citation(self) -> str:
        return f"{self.short_authors} ({self.year})"
