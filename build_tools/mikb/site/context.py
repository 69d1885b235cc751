"""What every page module needs: the entries, the graph, results, and where pages live."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import networkx as nx

from mikb.entries import Circuit
from mikb.loader import KnowledgeBase
from mikb.reproduce.results import ModelResults, load_model_results
from mikb.results_files import FAILURE_FILE, RESULTS_FILE, contained_file, model_folder
from mikb.site.md import esc, rel_link, rel_url
from mikb.site.safe_html import code

_PLAIN_REPO_PATH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*")


def is_plain_repo_path(path: str) -> bool:
    """Letters, digits, ``._-`` and slashes only: safe in a URL and in an attribute."""
    return bool(_PLAIN_REPO_PATH.fullmatch(path)) and ".." not in path.split("/")


@dataclass
class SiteOptions:
    repo_url: str | None = None
    branch: str = "main"
    site_name: str = "mikb"
    site_url: str | None = None


@dataclass
class SiteContext:
    kb: KnowledgeBase
    graph: nx.MultiDiGraph
    options: SiteOptions
    _results: dict[tuple[str, str], ModelResults] = field(default_factory=dict)
    _number_counts: Counter | None = None

    # -- where pages live ---------------------------------------------------------------
    @staticmethod
    def page_for(node: str) -> str | None:
        kind, _, key = node.partition(":")
        if kind == "problem":
            return f"problems/{key}.md"
        if kind == "circuit":
            return f"circuits/{key}/index.md"
        if kind == "paper":
            return f"papers/{key}.md"
        if kind == "model":
            return f"models/{key}.md"
        if kind == "component":
            return f"models/{key.split(':', 1)[0]}.md"
        return None

    def link(self, from_page: str, node: str, text: str | None = None) -> str:
        """Markdown link to a node's page, labelled by the node's label unless given."""
        target = self.page_for(node)
        label = text if text is not None else self.graph.nodes[node].get("label", node) if node in self.graph else node
        if target is None:
            return esc(label)
        return f"[{esc(label)}]({rel_link(from_page, target)})"

    def html_link(self, from_page: str, node: str, text: str) -> str:
        """HTML anchor for use inside raw HTML blocks (MkDocs rewrites .md hrefs)."""
        target = self.page_for(node)
        if target is None:
            return esc(text)
        return f'<a href="{esc(rel_url(from_page, target))}">{esc(text)}</a>'

    def edit_link(self, source_rel: str) -> str:
        """A link to edit the YAML source of an entry (not the generated page); a path that
        is not a plain repository path is shown, never linked."""
        if not self.options.repo_url or not is_plain_repo_path(source_rel):
            return f"Source: {code(source_rel)}"
        url = f"{self.options.repo_url.rstrip('/')}/edit/{self.options.branch}/{source_rel}"
        return f'<a class="mikb-edit" href="{esc(url)}">:material-pencil: Edit this entry ({code(source_rel)})</a>'

    def problem_number(self, problem) -> str:
        """The number shown for a problem. The source numbers two problems 2.25; where numbers
        collide, the id's own suffix (2.25b) tells them apart everywhere they are listed."""
        if not problem.number:
            return ""
        if self._number_counts is None:
            self._number_counts = Counter(p.number for p in self.kb.problems.values() if p.number)
        if self._number_counts[problem.number] < 2:
            return problem.number
        tail = problem.id.split("-", 1)[-1]
        return tail if tail.startswith(problem.number) else f"{problem.number} ({problem.id})"

    # -- reproduction results ------------------------------------------------------------
    def results(self, circuit: Circuit, model_id: str) -> ModelResults:
        """Published results, read only from plain files inside the circuit's folder (a
        symlinked results.json reads as no results; `mikb check` reports it)."""
        key = (circuit.id, model_id)
        if key not in self._results:
            folder = model_folder(circuit, model_id)
            found = load_model_results(circuit, model_id) if folder is not None else None
            if found is None:
                found = ModelResults(circuit.id, model_id, circuit.folder / "results" / "_invalid")
            if found.results is not None and contained_file(found.folder, RESULTS_FILE) is None:
                found.results, found.stale_reasons = None, []
            if found.failure is not None and contained_file(found.folder, FAILURE_FILE) is None:
                found.failure = None
            self._results[key] = found
        return self._results[key]

    def paper_link(self, from_page: str, key: str) -> str:
        paper = self.kb.papers.get(key)
        return self.link(from_page, f"paper:{key}", paper.citation if paper else key)
