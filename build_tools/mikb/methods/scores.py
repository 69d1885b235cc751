"""The one score type every discovery method returns, and the scoring that never asks which.

:class:`EdgeScores` is edge id -> score over a :class:`~mikb.methods.graph.Graph`, plus the
flags that produced it (ablation, corrupted distribution, positions, metric, direction,
signed or absolute ranking, method parameters). From it: ROC curves and ROC AUC against a
ground-truth edge set (ACDC's measure), faithfulness curves over MIB's edge budgets with
their areas CPR and CMD, and MIB's edge-score JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from mikb.methods.graph import Graph

# MIB's circuit-size budgets, as fractions of all edges (mueller2025mib, circuit localization).
MIB_BUDGETS = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


@dataclass
class EdgeScores:
    method: str
    graph: Graph
    scores: Tensor  # [n_edges], in graph.edges order
    flags: dict[str, Any] = field(default_factory=dict)
    in_circuit: Tensor | None = None  # [n_edges] bool, for methods that pick a circuit (ACDC)

    def ranking_values(self) -> Tensor:
        """What edges are ranked by: |score| unless the flags say signed."""
        return self.scores if self.flags.get("ranking") == "signed" else self.scores.abs()

    def top(self, k: int) -> list[str]:
        order = torch.argsort(self.ranking_values(), descending=True, stable=True)
        return [self.graph.edges[i] for i in order[:k].tolist()]

    def as_dict(self) -> dict[str, float]:
        return {e: float(s) for e, s in zip(self.graph.edges, self.scores.tolist(), strict=True)}

    def to_mib(self) -> dict[str, Any]:
        """MIB / EAP-IG graph JSON: {"cfg", "nodes", "edges": {id: {"score", "in_graph"}}}."""
        g = self.graph
        kept = self.in_circuit if self.in_circuit is not None else torch.zeros(g.n_edges, dtype=torch.bool)
        nodes = {w: False for w in g.writers} | {"logits": True}
        edges = {}
        for e, s, k in zip(g.edges, self.scores.tolist(), kept.tolist(), strict=True):
            edges[e] = {"score": float(s), "in_graph": bool(k)}
            if k:
                nodes[g.parent(e)] = nodes[g.child(e)] = True
        return {"cfg": {"n_layers": g.n_layers, "n_heads": g.n_heads, "parallel_attn_mlp": False},
                "nodes": nodes, "edges": edges,
                "mikb_flags": {"method": self.method, **self.flags}}


def labels_for(graph: Graph, truth: set[str]) -> Tensor:
    unknown = truth - set(graph.edges)
    if unknown:
        raise ValueError(f"ground-truth edges not in the graph: {sorted(unknown)[:5]}")
    return torch.tensor([e in truth for e in graph.edges])


def roc_curve(values: Tensor, labels: Tensor) -> tuple[list[float], list[float]]:
    """(FPR, TPR) points from the highest threshold down; tied values move together."""
    order = torch.argsort(values, descending=True, stable=True)
    v, y = values[order], labels[order].float()
    pos, neg = float(y.sum()), float((1 - y).sum())
    fpr, tpr = [0.0], [0.0]
    tp = fp = 0.0
    i = 0
    while i < len(v):
        j = i
        while j < len(v) and v[j] == v[i]:
            tp += float(y[j])
            fp += 1.0 - float(y[j])
            j += 1
        fpr.append(fp / neg if neg else 0.0)
        tpr.append(tp / pos if pos else 0.0)
        i = j
    return fpr, tpr


def roc_auc(values: Tensor, labels: Tensor) -> float:
    """Area under the ROC curve (trapezoids, so ties count half): the probability that a true
    edge outranks a false one. Undefined (ValueError) without both kinds of label."""
    if bool(labels.all()) or not bool(labels.any()):
        raise ValueError("ROC AUC needs both positive and negative labels")
    fpr, tpr = roc_curve(values, labels)
    return float(sum((fpr[i + 1] - fpr[i]) * (tpr[i + 1] + tpr[i]) / 2 for i in range(len(fpr) - 1)))


def budget_sizes(n_edges: int, budgets: Sequence[float] = MIB_BUDGETS) -> list[int]:
    """Edge counts for each budget fraction (rounded, at least one edge for a nonzero budget)."""
    return [0 if b == 0 else max(1, round(b * n_edges)) for b in budgets]


def faithfulness_curve(
    scores: EdgeScores,
    evaluate: Callable[[Tensor], Tensor],
    budgets: Sequence[float] = MIB_BUDGETS,
) -> dict[str, Any]:
    """Faithfulness of the top-k circuit at each budget.

    ``evaluate`` maps masks ``[V, n_edges]`` to the task metric ``[V]`` of each circuit (edges
    outside it ablated). Faithfulness is ``(m(C) - m(empty)) / (m(full) - m(empty))``; CPR is
    the area under it over the budget axis (fraction of edges, trapezoids) and CMD the area
    between it and 1 (MIB's two circuit metrics; higher CPR, lower CMD are better).
    """
    g = scores.graph
    sizes = budget_sizes(g.n_edges, budgets)
    order = torch.argsort(scores.ranking_values(), descending=True, stable=True)
    masks = torch.zeros(len(sizes) + 2, g.n_edges)
    for i, k in enumerate(sizes):
        masks[i, order[:k]] = 1.0
    masks[-2] = 1.0  # full model; masks[-1] stays empty
    with torch.no_grad():
        m = evaluate(masks).double()
    full, empty = m[-2], m[-1]
    faith = ((m[:-2] - empty) / (full - empty)).tolist()
    x = list(budgets)
    cpr = sum((x[i + 1] - x[i]) * (faith[i + 1] + faith[i]) / 2 for i in range(len(x) - 1))
    gap = [abs(1 - f) for f in faith]
    cmd = sum((x[i + 1] - x[i]) * (gap[i + 1] + gap[i]) / 2 for i in range(len(x) - 1))
    return {"budgets": x, "edges": sizes, "faithfulness": faith, "cpr": float(cpr),
            "cmd": float(cmd), "metric_full": float(full), "metric_empty": float(empty)}
