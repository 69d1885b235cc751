"""What every page module needs: the entries, the graph, results, and where pages live."""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from mikb.entries import Circuit
from mikb.loader import KnowledgeBase
from mikb.reproduce.results import ModelResults, load_model_results
from mikb.site.md import esc, rel_link, rel_url


@dataclass
class SiteOptions:
    repo_url: str | None = None
    branch: str = "main"
    site_name: str = "mikb"


@dataclass
class SiteContext:
    kb: KnowledgeBase
    graph: nx.MultiDiGraph
    options: SiteOptions
    _results: dict[tuple[str, str], ModelResults] = field(default_factory=dict)

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
            return label
        return f"[{label.replace('[', '(').replace(']', ')')}]({rel_link(from_page, target)})"

    def html_link(self, from_page: str, node: str, text: str) -> str:
        """HTML anchor for use inside raw HTML blocks (MkDocs rewrites .md hrefs)."""
        target = self.page_for(node)
        if target is None:
            return esc(text)
        return f'<a href="{esc(rel_url(from_page, target))}">{esc(text)}</a>'

    def edit_link(self, source_rel: str) -> str:
        """A link to edit the YAML source of an entry (not the generated page)."""
        if not self.options.repo_url:
            return f"Source: `{source_rel}`"
        url = f"{self.options.repo_url.rstrip('/')}/edit/{self.options.branch}/{source_rel}"
        return f'[:material-pencil: Edit this entry (`{source_rel}`)]({url}){{ .mikb-edit }}'

    # -- reproduction results ------------------------------------------------------------
    def results(self, circuit: Circuit, model_id: str) -> ModelResults:
        key = (circuit.id, model_id)
        if key not in self._results:
            self._results[key] = load_model_results(circuit, model_id)
        return self._results[key]

    def paper_link(self, from_page: str, key: str) -> str:
        paper = self.kb.papers.get(key)
        return self.link(from_page, f"paper:{key}", paper.citation if paper else key)
