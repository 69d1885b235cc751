"""`mikb check`: schema, cross-reference and graph checks in one pass.

All problems are collected before anything is reported, so one run shows every error
(contributors fix a file once, not once per error).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import networkx as nx

from mikb.content_check import check_entry_content
from mikb.crossref import check_cross_references
from mikb.diagnostics import Diagnostic
from mikb.entry_hygiene import check_entry_hygiene
from mikb.graph import build_graph, orphan_warnings
from mikb.loader import KnowledgeBase, load_knowledge_base
from mikb.results_files import check_results_files


@dataclass
class CheckResult:
    kb: KnowledgeBase
    graph: nx.MultiDiGraph
    diagnostics: list[Diagnostic]

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    @property
    def notes(self) -> list[Diagnostic]:
        """Consequences of an error reported elsewhere (e.g. references not checked)."""
        return [d for d in self.diagnostics if d.severity == "note"]

    def only(self, paths: list[Path]) -> CheckResult:
        """Keep diagnostics under the given files or folders (the whole repo is still loaded
        so that cross-references resolve)."""
        if not paths:
            return self
        wanted = [self.kb.rel(p) for p in paths]
        keep = [d for d in self.diagnostics if any(d.path == w or d.path.startswith(w.rstrip("/") + "/") or w in (".", "") for w in wanted)]
        return CheckResult(self.kb, self.graph, keep)


def run_check(root: Path) -> CheckResult:
    kb = load_knowledge_base(root)
    graph = build_graph(kb)
    found = [*kb.diagnostics, *check_cross_references(kb), *orphan_warnings(kb, graph),
             *check_entry_content(kb), *check_entry_hygiene(kb), *check_results_files(list(kb.circuits.values()), kb.root)]
    unique = sorted(set(found), key=_reading_order)
    return CheckResult(kb, graph, unique)


_SEVERITY_ORDER = {"error": 0, "warning": 1, "note": 2}


def _reading_order(d: Diagnostic) -> tuple[str, int, int, int, str]:
    """By place, and at one place the cause before the note about its consequences."""
    return (d.path, d.line, d.col, _SEVERITY_ORDER.get(d.severity, 3), d.message)
