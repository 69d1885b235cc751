"""Every entry as plain JSON: the data must outlive any website built from it."""

from __future__ import annotations

from dataclasses import asdict, fields, is_dataclass
from typing import Any

from mikb import __version__
from mikb.evidence import evidence_of
from mikb.loader import KnowledgeBase


def export_entries(kb: KnowledgeBase) -> dict[str, Any]:
    def clean(entry: Any) -> dict[str, Any]:
        # Field by field (not asdict on the whole entry): asdict would deep-copy the parsed
        # YAML document each entry keeps for diagnostics, which dominates the export's cost.
        data = {}
        for f in fields(entry):
            if f.name == "doc":
                continue
            value = getattr(entry, f.name)
            if f.name == "folder":
                value = kb.rel(value) if value else None
            elif isinstance(value, list):
                value = [asdict(v) if is_dataclass(v) else v for v in value]
            data[f.name] = value
        return data

    return {
        "format": "mikb-entries",
        "version": 1,
        "generator": f"mikb {__version__}",
        "categories": [clean(c) for c in kb.categories.values()],
        "problems": [clean(p) | {"source_file": kb.rel(p.doc.path)} for p in kb.sorted_problems()],
        "circuits": [clean(c) | {"source_file": kb.rel(c.doc.path)} for c in sorted(kb.circuits.values(), key=lambda c: c.id)],
        # What a run on each model is evidence of: reproduction, method check, smoke test.
        "models": [clean(m) | {"evidence": evidence_of(m.kind)} for m in sorted(kb.models.values(), key=lambda m: m.id)],
        "papers": [clean(p) for p in sorted(kb.papers.values(), key=lambda p: p.key)],
    }
