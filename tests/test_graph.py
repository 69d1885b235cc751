"""The knowledge graph: typed nodes and edges, backlinks and exports."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
from conftest import run_mikb

from mikb.check import run_check
from mikb.graph import EDGE_TYPES, NODE_TYPES, incoming, outgoing, related_problems


def test_graph_has_typed_nodes_and_edges(kb_root: Path) -> None:
    g = run_check(kb_root).graph
    assert {d["type"] for _, d in g.nodes(data=True)} == set(NODE_TYPES)
    assert {d["type"] for _, _, d in g.edges(data=True)} <= set(EDGE_TYPES)
    assert set(g.nodes) >= {"problem:fx-1", "circuit:toy-copy", "paper:doe2022toys", "model:toy-2l",
                            "component:toy-2l:0.1", "component:toy-2l:1.*"}


def test_backlinks(kb_root: Path) -> None:
    g = run_check(kb_root).graph
    assert incoming(g, "paper:roe2023methods", "cites") == ["circuit:toy-copy", "problem:fx-1", "problem:fx-3"]
    assert incoming(g, "problem:fx-1", "addresses", "circuit") == ["circuit:toy-copy"]
    assert incoming(g, "model:toy-2l", "runs-on") == ["circuit:toy-copy"]
    assert outgoing(g, "component:toy-2l:0.1", "part-of", "circuit") == ["circuit:toy-copy"]
    # related-to is declared on fx-1 (-> fx-2) and fx-3 (-> fx-1); readers see it both ways
    assert related_problems(g, "problem:fx-1") == ["problem:fx-2", "problem:fx-3"]
    feeds = [(s, t, d["input"]) for s, t, d in g.edges(data=True) if d["type"] == "feeds"]
    assert ("component:toy-2l:0.1", "component:toy-2l:1.*", "k") in feeds


def test_status_evidence_counts_as_citation(kb_root: Path) -> None:
    g = run_check(kb_root).graph
    assert "problem:fx-1" in incoming(g, "paper:roe2023methods", "cites")


def test_shared_component_is_one_node(kb_root: Path) -> None:
    second = kb_root / "circuits_zoo" / "toy-copy-2"
    second.mkdir()
    (second / "reproduce.py").write_text((kb_root / "circuits_zoo/toy-copy/reproduce.py").read_text())
    text = (kb_root / "circuits_zoo/toy-copy/circuit.yaml").read_text().replace("id: toy-copy", "id: toy-copy-2")
    (second / "circuit.yaml").write_text(text.replace("role: previous-token head", "role: positional head"))
    g = run_check(kb_root).graph
    node = g.nodes["component:toy-2l:0.1"]
    assert node["roles"] == {"toy-copy": "previous-token head", "toy-copy-2": "positional head"}


def test_exports_round_trip(kb_root: Path, tmp_path: Path) -> None:
    out_json, out_ml = tmp_path / "g.json", tmp_path / "g.graphml"
    assert run_mikb(kb_root, "graph", "--format", "json", "-o", str(out_json)).returncode == 0
    assert run_mikb(kb_root, "graph", "--format", "graphml", "-o", str(out_ml)).returncode == 0
    data = json.loads(out_json.read_text())
    g = run_check(kb_root).graph
    assert len(data["nodes"]) == g.number_of_nodes() and len(data["edges"]) == g.number_of_edges()
    loaded = nx.read_graphml(out_ml)
    assert loaded.number_of_nodes() == g.number_of_nodes()
    assert loaded.nodes["paper:doe2022toys"]["type"] == "paper"


def test_related_circuits_declared_on_the_problem_alone_reach_the_graph(kb_root: Path) -> None:
    entry = kb_root / "circuits_zoo/toy-copy/circuit.yaml"
    entry.write_text(entry.read_text().replace("related_problems: [fx-1]\n", ""))
    g = run_check(kb_root).graph
    assert incoming(g, "problem:fx-1", "addresses", "circuit") == ["circuit:toy-copy"]
