"""Every entry as plain JSON: the data must outlive any website built from it."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from mikb import __version__
from mikb.loader import KnowledgeBase


def export_entries(kb: KnowledgeBase) -> dict[str, Any]:
    def clean(entry: Any) -> dict[str, Any]:
        data = asdict(entry)
        data.pop("doc", None)
        if "folder" in data:
            data["folder"] = kb.rel(data["folder"]) if data["folder"] else None
        return data

    return {
        "format": "mikb-entries",
        "version": 1,
        "generator": f"mikb {__version__}",
        "categories": [clean(c) for c in kb.categories.values()],
        "problems": [clean(p) | {"source_file": kb.rel(p.doc.path)} for p in kb.sorted_problems()],
        "circuits": [clean(c) | {"source_file": kb.rel(c.doc.path)} for c in sorted(kb.circuits.values(), key=lambda c: c.id)],
        "models": [clean(m) for m in sorted(kb.models.values(), key=lambda m: m.id)],
        "papers": [clean(p) for p in sorted(kb.papers.values(), key=lambda p: p.key)],
    }
