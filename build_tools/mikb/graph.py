"""The knowledge graph: typed nodes and typed edges joining every entry.

Node ids are ``<type>:<id>`` (components: ``component:<model>:<location>``, so the same head
named by two circuits is one node, which is how "circuits sharing a head" falls out of the
graph). Every backlink on the site and the orphan check come from here, so what the pages say
about connections is exactly what the exported graph says.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import networkx as nx

from mikb.diagnostics import Diagnostic
from mikb.loader import KnowledgeBase

NODE_TYPES = ("problem", "circuit", "paper", "model", "component")
EDGE_TYPES = ("cites", "addresses", "related-to", "part-of", "runs-on", "feeds")


def node_id(kind: str, key: str) -> str:
    return f"{kind}:{key}"


def component_node(model_id: str, location: str | None, kind: str, component_id: str) -> str:
    where = location if location is not None else kind
    if kind in ("mlp", "layer"):
        where = f"{kind}{location}"
    if kind in ("embed", "unembed"):
        where = kind
    return node_id("component", f"{model_id}:{where}") if where else node_id("component", f"{model_id}:{component_id}")


def build_graph(kb: KnowledgeBase) -> nx.MultiDiGraph:
    """Build the graph from validated entries; edges to unknown ids are simply not added
    (crossref reports them), so the graph only ever holds real links."""
    g = nx.MultiDiGraph()
    for paper in kb.papers.values():
        g.add_node(node_id("paper", paper.key), type="paper", label=paper.citation, title=paper.title, year=paper.year)
    for model in kb.models.values():
        g.add_node(node_id("model", model.id), type="model", label=model.name, kind=model.kind)
        for key in model.references:
            _edge(g, node_id("model", model.id), node_id("paper", key), "cites")
    for problem in kb.problems.values():
        g.add_node(node_id("problem", problem.id), type="problem", label=f"{problem.number or problem.id} {problem.title}",
                   status=problem.status, category=problem.category)
    # Every entry node exists before any edge is drawn: _edge drops links to missing nodes,
    # so a problem's related_circuits added before the circuit nodes would vanish.
    for circuit in kb.circuits.values():
        g.add_node(node_id("circuit", circuit.id), type="circuit", label=circuit.name)
    for problem in kb.problems.values():
        me = node_id("problem", problem.id)
        for key in dict.fromkeys([*problem.references, problem.source["paper"],
                                  *(c.evidence for c in problem.status_history if not c.evidence_is_url)]):
            _edge(g, me, node_id("paper", key), "cites")
        for other in problem.related_problems:
            _edge(g, me, node_id("problem", other), "related-to")
        for circuit_id in problem.related_circuits:
            _edge(g, node_id("circuit", circuit_id), me, "addresses")
    for circuit in kb.circuits.values():
        me = node_id("circuit", circuit.id)
        for model_id in circuit.models:
            _edge(g, me, node_id("model", model_id), "runs-on")
        keys = [*circuit.references, *(c.reported["source"]["paper"] for c in circuit.claims if c.reported)]
        for key in dict.fromkeys(keys):
            _edge(g, me, node_id("paper", key), "cites")
        for problem_id in circuit.related_problems:
            _edge(g, me, node_id("problem", problem_id), "addresses")
        nodes: dict[str, str] = {}
        for comp in circuit.components:
            cid = component_node(comp.model, comp.location, comp.kind, comp.id)
            nodes[comp.id] = cid
            if cid not in g:
                g.add_node(cid, type="component", label=f"{comp.label} ({comp.model})", kind=comp.kind, model=comp.model)
            roles = g.nodes[cid].setdefault("roles", {})
            roles[circuit.id] = comp.role
            _edge(g, cid, me, "part-of", role=comp.role)
            _edge(g, cid, node_id("model", comp.model), "part-of")
        for edge in circuit.edges:
            if edge.source in nodes and edge.target in nodes:
                _edge(g, nodes[edge.source], nodes[edge.target], "feeds", circuit=circuit.id, input=edge.input or "")
    return g


def _edge(g: nx.MultiDiGraph, source: str, target: str, kind: str, **attrs: Any) -> None:
    """Add a typed edge once; links to nodes that do not exist are dropped (crossref reports them)."""
    if source not in g or target not in g:
        return
    for data in g.get_edge_data(source, target, default={}).values():
        if data["type"] == kind and all(data.get(k) == v for k, v in attrs.items()):
            return
    g.add_edge(source, target, type=kind, **attrs)


@dataclass(frozen=True)
class Backlink:
    node: str
    type: str
    edge: str
    label: str


def incoming(g: nx.MultiDiGraph, node: str, edge_type: str, source_type: str | None = None) -> list[str]:
    """Nodes with an ``edge_type`` edge into ``node`` (optionally of one node type), sorted."""
    if node not in g:
        return []
    found = {
        src for src, _, data in g.in_edges(node, data=True)
        if data["type"] == edge_type and (source_type is None or g.nodes[src]["type"] == source_type)
    }
    return sorted(found)


def outgoing(g: nx.MultiDiGraph, node: str, edge_type: str, target_type: str | None = None) -> list[str]:
    if node not in g:
        return []
    found = {
        dst for _, dst, data in g.out_edges(node, data=True)
        if data["type"] == edge_type and (target_type is None or g.nodes[dst]["type"] == target_type)
    }
    return sorted(found)


def related_problems(g: nx.MultiDiGraph, problem_node: str) -> list[str]:
    """Related-to is symmetric for readers: show links declared on either side."""
    return sorted(set(outgoing(g, problem_node, "related-to")) | set(incoming(g, problem_node, "related-to")))


def orphan_warnings(kb: KnowledgeBase, g: nx.MultiDiGraph) -> list[Diagnostic]:
    """Papers nobody cites are warnings: either cite them or drop them from the registry."""
    out: list[Diagnostic] = []
    for paper in kb.papers.values():
        if not incoming(g, node_id("paper", paper.key), "cites"):
            doc, index = kb.paper_docs[paper.key]
            out.append(doc.diag(("papers", index, "key"), f"paper '{paper.key}' is not cited by any problem, circuit or model",
                                severity="warning"))
    return out


def to_json(g: nx.MultiDiGraph) -> dict[str, Any]:
    """Node-link JSON with stable ordering, for export and for the graph explorer."""
    nodes = [{"id": n, **_plain(g.nodes[n])} for n in sorted(g.nodes)]
    edges = sorted(
        ({"source": s, "target": t, **_plain(d)} for s, t, d in g.edges(data=True)),
        key=lambda e: (e["source"], e["target"], e["type"], json.dumps(e, sort_keys=True)),
    )
    return {"directed": True, "multigraph": True, "node_types": list(NODE_TYPES),
            "edge_types": list(EDGE_TYPES), "nodes": nodes, "edges": edges}


def to_graphml(g: nx.MultiDiGraph) -> str:
    """GraphML needs scalar attributes: nested ones (component roles) become JSON text."""
    flat = nx.MultiDiGraph()
    for n, data in g.nodes(data=True):
        flat.add_node(n, **{k: (json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v) for k, v in data.items()})
    for s, t, data in g.edges(data=True):
        flat.add_edge(s, t, **data)
    return "\n".join(nx.generate_graphml(flat)) + "\n"


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in sorted(data.items())}
