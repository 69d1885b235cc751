"""Read every entry of a repository into validated entry models.

Each file is parsed with positions, validated against its schema, and only then turned into
an entry; a file with schema errors contributes diagnostics but no entry, so later stages
never see malformed data. Cross-reference checks happen in :mod:`mikb.crossref`.

Failures are recorded so their consequences can be silenced: a registry that could not be
read at all (``unreadable``) and entries that exist but are invalid (``invalid_ids``) are
not also reported as hundreds of "unknown key" errors wherever they are referenced.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mikb.diagnostics import Diagnostic, clip, display_path
from mikb.entries import (
    Category,
    Circuit,
    Claim,
    Component,
    Edge,
    Model,
    Paper,
    Problem,
    SourceList,
    StatusChange,
    path_escape,
)
from mikb.layout import Layout
from mikb.schema_check import validate_document
from mikb.yaml_source import MAX_REGISTRY_BYTES, YamlDocument, read_yaml


@dataclass
class KnowledgeBase:
    """All entries of one repository plus what was wrong with them."""

    layout: Layout
    problems: dict[str, Problem] = field(default_factory=dict)
    categories: dict[str, Category] = field(default_factory=dict)
    lists: dict[str, SourceList] = field(default_factory=dict)
    circuits: dict[str, Circuit] = field(default_factory=dict)
    models: dict[str, Model] = field(default_factory=dict)
    papers: dict[str, Paper] = field(default_factory=dict)
    documents: dict[str, YamlDocument] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    registry_docs: dict[str, YamlDocument] = field(default_factory=dict)
    paper_docs: dict[str, tuple[YamlDocument, int]] = field(default_factory=dict)
    model_docs: dict[str, tuple[YamlDocument, int]] = field(default_factory=dict)
    unreadable: dict[str, Diagnostic] = field(default_factory=dict)  # registry kind -> why it failed to load
    invalid_ids: dict[str, set[str]] = field(default_factory=dict)  # kind -> ids of entries that failed
    unchecked_refs: Counter[str] = field(default_factory=Counter)  # registry kind -> references not checked

    def mark_invalid(self, kind: str, entry_id: Any) -> None:
        """Remember an entry that exists but failed validation, so references to it are not 'unknown'."""
        if isinstance(entry_id, str):  # stripped: 'key\n' is invalid, but references name 'key'
            self.invalid_ids.setdefault(kind, set()).add(entry_id.strip())

    def is_invalid(self, kind: str, entry_id: str) -> bool:
        return entry_id in self.invalid_ids.get(kind, set())

    @property
    def root(self) -> Path:
        return self.layout.root

    def rel(self, path: Path) -> str:
        return display_path(path, self.root)

    def sorted_problems(self) -> list[Problem]:
        """Problems of one source list together (lists in registry order), numbered within it."""
        order = {slug: i for i, slug in enumerate(self.lists)}
        return sorted(self.problems.values(), key=lambda p: (order.get(self.list_of(p) or "", len(order)), p.sort_key))

    def list_of(self, problem: Problem) -> str | None:
        """The slug of the source list a problem belongs to (through its category)."""
        category = self.categories.get(problem.category)
        return category.list if category else None


def load_knowledge_base(root: Path) -> KnowledgeBase:
    """Load and schema-check everything under ``root`` (no cross-reference checks)."""
    kb = KnowledgeBase(layout=Layout(root.resolve()))
    for step in (_load_categories, _load_models, _load_papers, _load_problems, _load_circuits, _report_misnamed):
        step(kb)
    return kb


def _parse(kb: KnowledgeBase, path: Path, max_bytes: int | None = None) -> YamlDocument:
    """Read one file; an unexpected exception becomes a diagnostic, not a traceback.

    The catch-all is a backstop for bugs in this package, not a way of handling input: the
    fuzz tests fail on any 'internal error' message."""
    display = kb.rel(path)
    try:
        doc = read_yaml(path, display, root=kb.root, **({"max_bytes": max_bytes} if max_bytes else {}))
    except Exception as exc:  # noqa: BLE001 - see docstring
        doc = YamlDocument(path=path, display=display, data=None)
        doc.problems.append(Diagnostic(display, 1, 1, f"internal error while reading this file: {clip(repr(exc))}"))
    kb.documents[doc.display] = doc
    kb.diagnostics.extend(doc.problems)
    return doc


def _read(kb: KnowledgeBase, path: Path, schema: str) -> YamlDocument | None:
    doc = _parse(kb, path)
    if doc.data is None:
        return None
    problems = validate_document(doc, schema)
    kb.diagnostics.extend(problems)
    return None if problems or doc.problems else doc


def _read_registry(kb: KnowledgeBase, path: Path, schema: str, list_key: str) -> tuple[YamlDocument | None, list[Any]]:
    """Registries are validated item by item, so one bad paper does not hide the others.

    A registry that cannot be read at all, or has no list of items, is recorded in
    ``kb.unreadable`` (its references are then not checked); an item with errors is
    recorded in ``kb.invalid_ids`` (references to it are not 'unknown')."""
    if not path.exists() and not path.is_symlink():
        return None, []
    doc = _parse(kb, path, MAX_REGISTRY_BYTES)
    if doc.data is None or doc.problems:
        kb.unreadable.setdefault(schema, doc.problems[0])
        return None, []
    problems = validate_document(doc, schema)
    kb.diagnostics.extend(problems)
    items = doc.data.get(list_key) if isinstance(doc.data, dict) else None
    if not isinstance(items, list):
        kb.unreadable.setdefault(schema, problems[0] if problems else doc.diag((), "no list of entries"))
        return doc, []
    bad_items = {_item_index(doc, d, list_key) for d in problems}
    id_field = "slug" if schema == "categories" else "key" if schema == "papers" else "id"
    good = []
    for i, item in enumerate(items):
        if i in bad_items or not isinstance(item, dict):
            kb.mark_invalid(schema, item.get(id_field) if isinstance(item, dict) else None)
        else:
            good.append((i, item))
    return doc, good


def _item_index(doc: YamlDocument, diagnostic: Diagnostic, list_key: str) -> int | None:
    """Which list item a registry diagnostic belongs to (by line range)."""
    starts = sorted(
        (line, path[1]) for path, (line, _) in doc.positions.items()
        if len(path) == 2 and path[0] == list_key and isinstance(path[1], int)
    )
    owner = None
    for line, index in starts:
        if line <= diagnostic.line:
            owner = index
    return owner


def _load_categories(kb: KnowledgeBase) -> None:
    doc, items = _read_registry(kb, kb.layout.categories_file, "categories", "categories")
    if doc:
        kb.registry_docs["categories"] = doc
        lists = doc.data.get("lists") if isinstance(doc.data, dict) else None
        for index, item in enumerate(lists if isinstance(lists, list) else []):
            if isinstance(item, dict) and isinstance(item.get("slug"), str) and item["slug"] not in kb.lists:
                kb.lists[item["slug"]] = SourceList(
                    slug=item["slug"], name=str(item.get("name", item["slug"])), source=str(item.get("source", "")),
                    id_prefix=item.get("id_prefix"), description=item.get("description"), index=index)
    for index, item in items:
        slug = item["slug"]
        if slug in kb.categories:
            kb.diagnostics.append(doc.diag(("categories", index, "slug"), f"duplicate category slug '{slug}'"))
            continue
        kb.categories[slug] = Category(
            slug=slug, name=item["name"], description=item["description"],
            number=item.get("number"), source=item.get("source"), list=item.get("list"), index=index,
        )


def _load_models(kb: KnowledgeBase) -> None:
    doc, items = _read_registry(kb, kb.layout.models_file, "models", "models")
    if doc:
        kb.registry_docs["models"] = doc
    for index, item in items:
        model_id = item["id"]
        if model_id in kb.models:
            kb.diagnostics.append(doc.diag(("models", index, "id"), f"duplicate model id '{model_id}'"))
            continue
        kb.models[model_id] = Model(
            id=model_id, name=item["name"], kind=item["kind"], n_layers=item.get("n_layers"),
            n_heads=item.get("n_heads"), d_model=item.get("d_model"), d_vocab=item.get("d_vocab"),
            n_neurons=item.get("n_neurons", item.get("d_mlp")), weights=item.get("weights"),
            description=item.get("description"), references=item.get("references", []), index=index,
        )
        kb.model_docs[model_id] = (doc, index)


def _load_papers(kb: KnowledgeBase) -> None:
    for path in kb.layout.paper_files():
        doc, items = _read_registry(kb, path, "papers", "papers")
        for index, item in items:
            key = item["key"]
            if key in kb.papers:
                first_doc, first_index = kb.paper_docs[key]
                line = first_doc.where(("papers", first_index))[0]
                kb.diagnostics.append(doc.diag(
                    ("papers", index, "key"), f"duplicate paper key '{key}' (first defined at {first_doc.display}:{line})"))
                continue
            kb.papers[key] = Paper(
                key=key, title=item["title"], authors=item["authors"], year=item["year"], url=item["url"],
                venue=item.get("venue"), kind=item.get("kind", "paper"), arxiv=item.get("arxiv"),
                doi=item.get("doi"), date=item.get("date"), summary=item.get("summary"),
                tags=item.get("tags", []), index=index,
            )
            kb.paper_docs[key] = (doc, index)


def _load_problems(kb: KnowledgeBase) -> None:
    for path in kb.layout.problem_files():
        doc = _read(kb, path, "problem")
        if doc is None:
            kb.mark_invalid("problem", path.stem)  # a valid problem's id equals its file name
            continue
        data = doc.data
        problem = Problem(
            id=data["id"], title=data["title"], category=data["category"], difficulty=data["difficulty"],
            status=data["status"], summary=data["summary"], source=data["source"],
            status_history=[StatusChange(**change) for change in data["status_history"]],
            number=data.get("number"), subcategory=data.get("subcategory"),
            priority=data.get("priority", "unknown"),
            related_problems=data.get("related_problems", []), related_circuits=data.get("related_circuits", []),
            references=data.get("references", []), tags=data.get("tags", []),
            contributors=data.get("contributors", []), notes=data.get("notes"),
            difficulty_spreadsheet=data.get("difficulty_spreadsheet"), doc=doc,
        )
        if problem.id in kb.problems:
            other = kb.problems[problem.id].doc
            kb.diagnostics.append(doc.diag(("id",), f"duplicate problem id '{problem.id}' (also in {other.display})"))
            continue
        kb.problems[problem.id] = problem


def _load_circuits(kb: KnowledgeBase) -> None:
    for folder in kb.layout.circuit_dirs():
        path = folder / "circuit.yaml"
        if not path.exists() and not path.is_symlink():
            kb.diagnostics.append(Diagnostic(kb.rel(folder), 1, 1, "circuit folder has no circuit.yaml"))
            kb.mark_invalid("circuit", folder.name)
            continue
        doc = _read(kb, path, "circuit")
        if doc is None or not _safe_reproduction_paths(kb, doc, folder):
            kb.mark_invalid("circuit", folder.name)  # a valid circuit's id equals its folder name
            continue
        data = doc.data
        models = data["models"]
        components = [
            Component(id=c["id"], kind=c["kind"], role=c["role"], model=c.get("model", models[0]),
                      location=c.get("location"), description=c.get("description"), index=i)
            for i, c in enumerate(data["components"])
        ]
        edges = [
            Edge(source=e["from"], target=e["to"], input=e.get("input"), description=e.get("description"), index=i)
            for i, e in enumerate(data.get("edges", []))
        ]
        claims = [
            Claim(id=c["id"], statement=c["statement"], metric=c["metric"], reported=c.get("reported"),
                  tolerance=c.get("tolerance"), expect=c.get("expect", {}), unit=c.get("unit"), index=i)
            for i, c in enumerate(data.get("claims", []))
        ]
        circuit = Circuit(
            id=data["id"], name=data["name"], models=models, task=data["task"], behaviour=data["behaviour"],
            components=components, edges=edges, claims=claims, references=data["references"],
            reproduction=data["reproduction"], related_problems=data.get("related_problems", []),
            tags=data.get("tags", []), contributors=data.get("contributors", []), notes=data.get("notes"),
            folder=folder, doc=doc,
        )
        if circuit.id in kb.circuits:
            kb.diagnostics.append(doc.diag(("id",), f"duplicate circuit id '{circuit.id}'"))
            continue
        kb.circuits[circuit.id] = circuit


def _safe_reproduction_paths(kb: KnowledgeBase, doc: YamlDocument, folder: Path) -> bool:
    """Report script/outputs paths that leave the circuit's folder; True when both are safe.

    Checked before a :class:`Circuit` exists, so nothing downstream (the runner deletes
    stale results under ``outputs``) ever holds a path outside the folder."""
    reproduction = doc.data["reproduction"]
    safe = True
    for name, default in (("script", None), ("outputs", "results")):
        value = reproduction.get(name, default)
        why = path_escape(folder, value)
        if why:
            kb.diagnostics.append(doc.diag(("reproduction", name), f"reproduction.{name} {why} (got {clip(repr(value))})"))
            safe = False
    return safe


def _report_misnamed(kb: KnowledgeBase) -> None:
    for path in kb.layout.misnamed_files():
        kb.diagnostics.append(Diagnostic(
            kb.rel(path), 1, 1, f"'{clip(path.name)}' is not read: entries must end in '.yaml' (rename it)"))
