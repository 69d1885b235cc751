"""Method check on tracr-compiled models: score ACDC, EAP, EAP-IG and exact edge patching
against circuits whose answer is known.

Each model is a RASP program from tracr's library compiled to weights (committed under
build_tools/mikb/compiled/weights/ with their provenance; no jax needed here). The ground
truth is read off the compiled program: an edge is in the circuit when the writer's residual
subspace is one the reader reads (the data flow of the program's computation graph). For each
ablation (zero, resample, mean) the script runs every method through mikb.methods on one graph,
scores each method's edge ranking by ROC AUC against the ground truth, measures the
faithfulness of its top edges over MIB's edge budgets (CPR, CMD), times it and records its
peak memory, and writes its edge scores in MIB's JSON layout. It also checks mikb's EAP
against TransformerLens's own node-level attribution patching on the same model, scores node
rankings (exact node patching, EAP and EAP-IG node totals) against the ground-truth nodes, and
sweeps ACDC's threshold for the paper's own ROC.
"""

from __future__ import annotations

import torch

from mikb.compiled.load import load
from mikb.methods.discovery_bench import score_methods
from mikb.methods.eap import eap, node_scores
from mikb.methods.edge_task import EdgeTask
from mikb.methods.graph import GraphForward
from mikb.reproduce import ReproContext, ScriptSpec

MODELS = ("tracr-reverse", "tracr-sort", "tracr-hist", "tracr-frac-prevs", "tracr-pair-balance",
          "tracr-shuffle-dyck")

SPEC = ScriptSpec(
    models=MODELS,
    params={"n_prompts": 32, "ablations": ["zero", "resample", "mean"], "acdc_threshold": 1e-6,
            "ig_steps": 5, "tl_check_prompts": 4,
            "acdc_sweep": [0.0, 1e-6, 1e-4, 1e-3, 1e-2, 0.03, 0.1, 0.3, 1.0, 3.0], "timing_budget_s": 2.0,
            "threads": 1},
    quick_params={"n_prompts": 8, "ablations": ["zero"]},
    timeout_s=1800,
    description="Score ACDC, EAP, EAP-IG and exact edge patching against tracr-compiled ground truth.",
)


def run(ctx: ReproContext) -> None:
    p = ctx.params
    ctx.seed_everything()
    torch.set_num_threads(p["threads"])  # timings on one thread: comparable across machines
    cm = load(ctx.model_id)
    prov = cm.meta["provenance"]
    ctx.set_weights_source(
        f"compiled by tracr {prov['tracr']} from tracr.compiler.lib: {cm.meta['program']['library_call']} "
        f"(vocab {prov['vocab']}, max_seq_len {prov['max_seq_len']}); committed weights "
        f"sha256 {prov['weights_sha256'][:12]}")
    gf = GraphForward(cm.bridge)
    g = gf.graph
    truth = cm.ground_truth_edges
    ctx.metric("n_edges", g.n_edges)
    ctx.metric("n_ground_truth_edges", len(truth))
    ctx.metric("ground_truth_nodes", sorted(cm.ground_truth_nodes))
    ctx.save_json("ground_truth.json", cm.meta["ground_truth"])
    clean = cm.sample_tokens(p["n_prompts"], ctx.seed)
    corrupted = cm.sample_tokens(p["n_prompts"], ctx.seed + 1)
    kind = "numerical" if cm.numerical else "categorical"
    node_truth = cm.ground_truth_nodes | {"input"}  # the embedding feeds every program
    board = []
    for ablation in p["ablations"]:
        task = EdgeTask(gf, clean, corrupted, slice(1, None), kind, ablation,
                        corrupted_distribution="independent samples of the program's input sampler")
        board += score_methods(ctx, task, truth, node_truth, p, "compiled ground truth")
    ctx.save_json("leaderboard.json", board)
    _tl_check(ctx, cm, gf, kind)


def _tl_check(ctx: ReproContext, cm, gf: GraphForward, kind: str) -> None:
    """mikb's EAP (denoising, resample) against TL's node-level attribution_patch."""
    from transformer_lens.tools.analysis import attribution_patching as tl_ap

    n = ctx.params["tl_check_prompts"]
    clean, corrupted = cm.sample_tokens(n, ctx.seed + 2), cm.sample_tokens(n, ctx.seed + 3)
    task = EdgeTask(gf, clean, corrupted, slice(1, None), kind, "resample")
    ours = node_scores(eap(task, direction="denoising"))
    labels = task.clean_labels
    theirs: dict[str, float] = {}
    for i in range(n):
        def metric_fn(logits, i=i):
            out = logits[:, 1:]
            if kind == "numerical":
                return out.sum(-1).mean()
            lp = out.log_softmax(-1)
            return lp.gather(-1, labels[i : i + 1].unsqueeze(-1)).mean()

        res = tl_ap.attribution_patch(cm.bridge, clean[i : i + 1], corrupted[i : i + 1], metric_fn)
        for node, s in res.node_scores.items():
            key = {"embed": "input", "attn_head_out": f"a{node.layer}.h{node.head}",
                   "mlp_out": f"m{node.layer}"}[node.kind]
            theirs[key] = theirs.get(key, 0.0) + s / n
    diff = max(abs(ours[k] - theirs[k]) for k in theirs)
    ctx.metric("tl_eap_node_max_abs_diff", diff)
    ctx.metric("tl_eap_node_max_abs_score", max(abs(v) for v in theirs.values()))
