"""ACDC (Conmy et al. 2023): prune edges by exact patching, one receiver at a time.

The algorithm, as the paper defines it: start from the full graph; visit receivers in reverse
topological order (logits first); for each incoming edge of the receiver, ablate it (the
task's ablation) in the *current* circuit and remove it for good if the distance from the
clean model (KL by default) rises by less than ``threshold``; otherwise keep it. A receiver
whose own output reaches nothing in the current circuit is skipped and its incoming edges are
dropped (they cannot change the output); at the end, edges whose child no longer reaches the
logits are removed.

Batching without changing the answer: the sequential test of edges ``e1, e2, ...`` is
evaluated speculatively in one batched forward, assuming each test removes its edge (the
masks are the current circuit minus ``e1``, minus ``e1, e2``, ...). Every decision up to and
including the first *keep* is exactly the sequential one; the remaining edges are re-batched
from there. So the number of forwards is about one per kept edge, and each removal costs a
batch row rather than a forward.

Scores: each edge's measured distance increase when it was tested (0 for edges ACDC never
tested), so ACDC's output is also a ranking, and ``in_circuit`` is its pruned circuit.
"""

from __future__ import annotations

import torch

from mikb.methods.edge_task import EdgeTask
from mikb.methods.scores import EdgeScores


def acdc(task: EdgeTask, threshold: float, metric: str = "distance") -> EdgeScores:
    g = task.graph
    # Masks and scores are bookkeeping on the CPU (GraphForward.run moves a mask to the model).
    current = torch.ones(g.n_edges, device="cpu")
    scores = torch.zeros(g.n_edges, device="cpu")
    tested = torch.zeros(g.n_edges, dtype=torch.bool, device="cpu")
    n_forwards = 0

    def value(masks: torch.Tensor) -> torch.Tensor:
        nonlocal n_forwards
        n_forwards += -(-masks.shape[0] // task.chunk)
        v = task.evaluate(masks, "distance" if metric == "distance" else "metric").cpu()
        return v if metric == "distance" else -v  # higher = further from clean

    base = value(current[None])[0]
    # Receivers by node, latest first; a head's q, k and v inputs are one node's inputs.
    nodes = ["logits"] + [w for w in reversed(g.writers) if w != "input"]
    by_child: dict[str, list[int]] = {}
    for i, e in enumerate(g.edges):
        by_child.setdefault(g.child(e), []).append(i)
    out_edges: dict[str, list[int]] = {}
    for i, e in enumerate(g.edges):
        out_edges.setdefault(g.parent(e), []).append(i)
    for node in nodes:
        incoming = sorted(by_child.get(node, []), key=lambda i: -g.slot(g.parent(g.edges[i])))
        if node != "logits" and not any(current[j] > 0 for j in out_edges.get(node, [])):
            current[incoming] = 0.0
            continue
        todo = list(incoming)
        while todo:
            masks = current.repeat(len(todo), 1)
            for row in range(len(todo)):
                masks[row:, todo[row]] = 0.0
            values = value(masks)
            prev = base
            stop = len(todo)
            for row, edge in enumerate(todo):
                delta = values[row] - prev
                scores[edge] = float(delta)
                tested[edge] = True
                if delta < threshold:
                    current[edge] = 0.0
                    prev = values[row]
                else:
                    stop = row
                    break
            base = prev
            todo = todo[stop + 1 :]
    kept = _prune_dangling(g, current > 0)
    return EdgeScores("ACDC", g, scores, {
        **task.flags(), "threshold": threshold,
        "metric": "distance" if metric == "distance" else "task metric",
        "ranking": "absolute", "forwards": n_forwards, "edges_tested": int(tested.sum())},
        in_circuit=kept)


def acdc_roc(task: EdgeTask, truth: set[str], thresholds: list[float]) -> dict:
    """ACDC's own ROC (as in the paper): one ACDC run per threshold, each giving one
    (false-positive rate, true-positive rate) point of its pruned circuit against ``truth``;
    the AUC is the trapezoid area through the points with (0, 0) and (1, 1) added."""
    g = task.graph
    y = torch.tensor([e in truth for e in g.edges], device="cpu")
    points = []
    for tau in thresholds:
        kept = acdc(task, tau).in_circuit
        tp = int((kept & y).sum())
        fp = int((kept & ~y).sum())
        points.append({"threshold": tau, "fpr": fp / max(1, int((~y).sum())),
                       "tpr": tp / max(1, int(y.sum())), "edges": int(kept.sum())})
    curve = sorted({(0.0, 0.0), (1.0, 1.0), *((p["fpr"], p["tpr"]) for p in points)})
    auc = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(curve, curve[1:], strict=False))
    return {"points": points, "auc": float(auc)}


def _prune_dangling(g, kept: torch.Tensor) -> torch.Tensor:
    """Drop edges whose child does not reach the logits through kept edges."""
    kept = kept.clone()
    changed = True
    while changed:
        changed = False
        reaching = {"logits"} | {g.parent(e) for e, k in zip(g.edges, kept.tolist(), strict=True)
                                 if k and g.child(e) in ("logits",)}
        # propagate backwards
        grew = True
        while grew:
            grew = False
            for e, k in zip(g.edges, kept.tolist(), strict=True):
                if k and g.child(e) in reaching and g.parent(e) not in reaching:
                    reaching.add(g.parent(e))
                    grew = True
        for i, e in enumerate(g.edges):
            if kept[i] and g.child(e) not in reaching:
                kept[i] = False
                changed = True
    return kept
