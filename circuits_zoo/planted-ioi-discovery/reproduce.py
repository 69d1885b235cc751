"""Method check on the planted IOI model: score ACDC, EAP, EAP-IG and exact edge patching
against an answer key that no method produced.

The planted model's residual stream is a set of one-hot blocks and its heads outside the
circuit are all zeros, so its edge-level circuit is read off the weights
(mikb.lm.planted_discovery: an edge is in the circuit when a dimension its writer writes is
one its reader reads). The task is IOI as the paper poses it: clean prompts from the
equal-length templates (ABBA and BABA), corrupted prompts the ABC twins (same template, three
fresh names), read at END. Every method runs on mikb's one graph through the same scoring
loop as the compiled method check (mikb.methods.discovery_bench).
"""

from __future__ import annotations

import torch

from mikb.lm.planted_discovery import PlantedIOIGroundTruth
from mikb.methods.discovery_bench import score_methods
from mikb.methods.edge_task import EdgeTask
from mikb.methods.graph import GraphForward
from mikb.reproduce import ReproContext, ScriptSpec

SPEC = ScriptSpec(
    models=("planted-ioi",),
    params={"n_prompts": 4, "ablations": ["resample"], "acdc_threshold": 1e-4, "ig_steps": 5,
            "acdc_sweep": [1e-4, 1e-3, 1e-2], "timing_budget_s": 0.0, "threads": 1, "chunk": 32},
    quick_params={"n_prompts": 2, "acdc_sweep": [1e-3]},
    timeout_s=3600,
    description="Score ACDC, EAP, EAP-IG and exact edge patching against the planted IOI model's weight-level answer key.",
)


def run(ctx: ReproContext) -> None:
    p = ctx.params
    ctx.seed_everything()
    torch.set_num_threads(p["threads"])  # timings on one thread: comparable across machines
    key = PlantedIOIGroundTruth()
    ctx.set_weights_source("set by hand in mikb.lm.planted_ioi (no training); metrics read the 32 name logits, "
                           "outside which the planted unembedding is zero")
    gf = GraphForward(key.weights, key.graph)
    truth = key.ground_truth_edges
    ctx.metric("n_edges", key.graph.n_edges)
    ctx.metric("n_ground_truth_edges", len(truth))
    ctx.metric("ground_truth_nodes", sorted(key.ground_truth_nodes))
    ctx.save_json("ground_truth.json", key.answer_key())
    clean, corrupted = key.prompts(p["n_prompts"], ctx.seed)
    end = clean.shape[1] - 1
    board = []
    for ablation in p["ablations"]:
        task = EdgeTask(gf, clean, corrupted, slice(end, None), "categorical", ablation,
                        corrupted_distribution="ABC prompts: the same template with three fresh names",
                        chunk=p["chunk"])
        board += score_methods(ctx, task, truth, key.ground_truth_nodes, p, "planted answer key")
    ctx.save_json("leaderboard.json", board)
    kept = {r["method"]: r.get("circuit") for r in board if r.get("circuit")}
    ctx.note(f"ACDC at threshold {p['acdc_threshold']:g} kept {kept}; the answer key has {len(truth)} of "
             f"{key.graph.n_edges} edges. Edges that carry a constant on these prompts (for example reads of the "
             "constant or BOS direction) are invisible to every ablation; auc_active scores only the visible ones.")
