"""Exact edge and node patching: ablate one edge (or every outgoing edge of one node) at a
time in the full model, measure the distance.

The reference every approximation is held to: for each edge, the model with only that edge
ablated (per the task's ablation), scored by the task's distance from the clean model (KL or
squared error). Edges are batched as masks, ``task.chunk`` per forward.
"""

from __future__ import annotations

import torch

from mikb.methods.edge_task import EdgeTask
from mikb.methods.scores import EdgeScores


def edge_patching(task: EdgeTask) -> EdgeScores:
    g = task.graph
    masks = torch.ones(g.n_edges, g.n_edges, device="cpu") - torch.eye(g.n_edges, device="cpu")
    base = task.evaluate(torch.ones(1, g.n_edges, device="cpu"))[0]
    scores = (task.evaluate(masks) - base).cpu()
    return EdgeScores("exact edge patching", g, scores.float(),
                      {**task.flags(), "metric": "distance increase", "ranking": "absolute"})


def node_patching(task: EdgeTask) -> dict[str, float]:
    """Distance increase from ablating each writer node (all of its outgoing edges)."""
    g = task.graph
    masks = torch.ones(len(g.writers), g.n_edges, device="cpu")
    masks[g.edge_writer, torch.arange(g.n_edges, device="cpu")] = 0.0
    base = task.evaluate(torch.ones(1, g.n_edges, device="cpu"))[0]
    scores = (task.evaluate(masks) - base).cpu()
    return {w: float(s) for w, s in zip(g.writers, scores.tolist(), strict=True)}
