"""ACDC held to known answers: it recovers a compiled program's circuit exactly, and its
batched speculation decides exactly as the sequential algorithm does."""

from __future__ import annotations

import torch

from mikb.compiled.load import load
from mikb.methods.acdc import acdc
from mikb.methods.edge_task import EdgeTask
from mikb.methods.graph import GraphForward


def _task(model_id: str, ablation: str, n: int = 16) -> tuple[EdgeTask, object]:
    cm = load(model_id)
    task = EdgeTask(GraphForward(cm.bridge), cm.sample_tokens(n, 0), cm.sample_tokens(n, 1),
                    slice(1, None), "numerical" if cm.numerical else "categorical", ablation)
    return task, cm


def _found(scores) -> set[str]:
    return {e for e, k in zip(scores.graph.edges, scores.in_circuit.tolist(), strict=True) if k}


def test_acdc_recovers_hist_circuit_exactly():
    task, cm = _task("tracr-hist", "zero")
    assert _found(acdc(task, threshold=1e-6)) == cm.ground_truth_edges


def test_acdc_finds_only_ground_truth_edges_on_every_compiled_model():
    """Non-circuit edges carry nothing the readers read, so ACDC never keeps one."""
    for model_id in ("tracr-sort", "tracr-frac-prevs", "tracr-reverse"):
        task, cm = _task(model_id, "resample", n=8)
        found = _found(acdc(task, threshold=1e-6))
        assert found and found <= cm.ground_truth_edges, model_id


def _sequential_acdc(task: EdgeTask, threshold: float) -> torch.Tensor:
    """The paper's loop, one forward per edge test (no batching)."""
    g = task.graph
    current = torch.ones(g.n_edges)
    base = task.evaluate(current[None])[0]
    nodes = ["logits"] + [w for w in reversed(g.writers) if w != "input"]
    for node in nodes:
        incoming = sorted([i for i, e in enumerate(g.edges) if g.child(e) == node],
                          key=lambda i: -g.slot(g.parent(g.edges[i])))
        outgoing = [i for i, e in enumerate(g.edges) if g.parent(e) == node]
        if node != "logits" and not any(current[j] > 0 for j in outgoing):
            current[incoming] = 0.0
            continue
        for i in incoming:
            trial = current.clone()
            trial[i] = 0.0
            value = task.evaluate(trial[None])[0]
            if value - base < threshold:
                current, base = trial, value
    return current > 0


def test_batched_acdc_equals_sequential():
    from mikb.methods.acdc import _prune_dangling

    task, _ = _task("tracr-sort", "resample", n=8)
    for threshold in (1e-6, 0.05, 0.5):
        ours = acdc(task, threshold)
        ref = _prune_dangling(task.graph, _sequential_acdc(task, threshold))
        assert torch.equal(ours.in_circuit, ref), threshold


def test_acdc_roc_sweep_points_are_monotone_in_threshold():
    from mikb.methods.acdc import acdc_roc

    task, cm = _task("tracr-hist", "zero", n=8)
    out = acdc_roc(task, cm.ground_truth_edges, [0.0, 1e-6, 1e-2, 10.0])
    sizes = [p["edges"] for p in out["points"]]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < sizes[0]
    assert out["points"][1]["tpr"] == 1.0 and out["points"][1]["fpr"] == 0.0
    assert out["auc"] == 1.0


def test_node_patching_ablates_every_outgoing_edge():
    from mikb.methods.edge_patching import node_patching

    task, cm = _task("tracr-hist", "zero", n=8)
    nodes = node_patching(task)
    assert set(nodes) == set(task.graph.writers)
    assert all(nodes[n] > 1e-6 for n in cm.ground_truth_nodes)
