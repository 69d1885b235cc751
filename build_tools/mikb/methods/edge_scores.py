"""Export circuit edge scores in the JSON layout of MIB / EAP-IG graph files.

Why this layout: MIB's circuit-localization track (mueller2025mib) and the EAP-IG code read a
graph as {"cfg", "nodes": {name: in_graph}, "edges": {name: {"score", "in_graph"}}}, with nodes
"input", "a{L}.h{H}", "m{L}", "logits" and edges "parent->child" plus "<q|k|v>" when the child is
an attention head. Writing ours the same way lets their tools load and compare our circuits.
Scores we did not measure are absent, not zero.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mikb.methods.hooks import Head


def node_name(node: Head | str) -> str:
    if isinstance(node, str):
        return node
    return f"a{node[0]}.h{node[1]}"


def edge_name(parent: Head | str, child: Head | str, qkv: str | None = None) -> str:
    name = f"{node_name(parent)}->{node_name(child)}"
    if not isinstance(child, str):
        name += f"<{qkv or 'q'}>"
    return name


def mib_graph(
    n_layers: int,
    n_heads: int,
    scored_edges: Iterable[tuple[Head | str, Head | str, str | None, float, bool]],
    flags: dict[str, Any],
    attn_only: bool = False,
) -> dict[str, Any]:
    """Build the JSON object; each scored edge is (parent, child, qkv, score, in_graph)."""
    nodes: dict[str, bool] = {"input": False, "logits": True}
    for la in range(n_layers):
        for h in range(n_heads):
            nodes[f"a{la}.h{h}"] = False
        if not attn_only:
            nodes[f"m{la}"] = False
    edges: dict[str, dict[str, Any]] = {}
    for parent, child, qkv, score, in_graph in scored_edges:
        edges[edge_name(parent, child, qkv)] = {"score": float(score), "in_graph": bool(in_graph)}
        if in_graph:
            nodes[node_name(parent)] = True
            nodes[node_name(child)] = True
    return {
        "cfg": {"n_layers": n_layers, "n_heads": n_heads, "parallel_attn_mlp": False},
        "nodes": nodes,
        "edges": edges,
        "mikb_flags": flags,
    }
