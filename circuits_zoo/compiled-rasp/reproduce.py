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
from mikb.methods.acdc import acdc, acdc_roc
from mikb.methods.eap import eap, eap_ig, node_scores
from mikb.methods.edge_patching import edge_patching, node_patching
from mikb.methods.edge_task import EdgeTask
from mikb.methods.graph import GraphForward
from mikb.methods.measure import measured
from mikb.methods.scores import MIB_BUDGETS, faithfulness_curve, labels_for, roc_auc, roc_curve
from mikb.reproduce import ReproContext, ScriptSpec

MODELS = ("tracr-reverse", "tracr-sort", "tracr-hist", "tracr-frac-prevs", "tracr-pair-balance",
          "tracr-shuffle-dyck")
METHODS = ("exact", "acdc", "eap", "eap_ig")
LABELS = {"exact": "exact edge patching", "acdc": "ACDC", "eap": "EAP", "eap_ig": "EAP-IG"}

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
    y = labels_for(g, truth)
    node_truth = cm.ground_truth_nodes | {"input"}  # the embedding feeds every program
    y_nodes = torch.tensor([w in node_truth for w in g.writers])
    ctx.metric("n_edges", g.n_edges)
    ctx.metric("n_ground_truth_edges", len(truth))
    ctx.metric("ground_truth_nodes", sorted(cm.ground_truth_nodes))
    ctx.save_json("ground_truth.json", cm.meta["ground_truth"])
    clean = cm.sample_tokens(p["n_prompts"], ctx.seed)
    corrupted = cm.sample_tokens(p["n_prompts"], ctx.seed + 1)
    kind = "numerical" if cm.numerical else "categorical"
    board = []
    for ablation in p["ablations"]:
        task = EdgeTask(gf, clean, corrupted, slice(1, None), kind, ablation,
                        corrupted_distribution="independent samples of the program's input sampler")
        runs = {
            "exact": lambda t=task: edge_patching(t),
            "acdc": lambda t=task: acdc(t, p["acdc_threshold"]),
            "eap": lambda t=task: eap(t),
            "eap_ig": lambda t=task: eap_ig(t, p["ig_steps"]),
        }
        # Clean and ablated writer outputs are shared inputs of every method: compute them
        # before any timing so the first method does not pay for them.
        task.ablated, task.clean_writers, task.clean_labels  # noqa: B018
        # Ground-truth edges that carry a constant on these prompts under this ablation no
        # method can find; AUC "active" scores only the ones an ablation can see.
        active = task.active_edges()
        seen = ~y | active
        ctx.metric(f"n_active_ground_truth_edges.{ablation}", int((y & active).sum()))
        curves, rocs = {}, {}
        for name in METHODS:
            scores, wall, mem = _timed(runs[name], p["timing_budget_s"])
            ctx.log(f"{ablation:9s} {LABELS[name]:20s} {wall:7.3f}s  {mem} MiB")
            auc = roc_auc(scores.ranking_values(), y)
            auc_active = roc_auc(scores.ranking_values()[seen], y[seen])
            faith = faithfulness_curve(scores, task.faithfulness_metric)
            rocs[name] = roc_curve(scores.ranking_values(), y)
            curves[name] = faith
            key = f"{ablation}.{name}"
            ctx.metric(f"auc.{key}", auc)
            ctx.metric(f"auc_active.{key}", auc_active)
            ctx.metric(f"cpr.{key}", faith["cpr"])
            ctx.metric(f"cmd.{key}", faith["cmd"])
            ctx.metric(f"wall_s.{key}", round(wall, 4))
            ctx.metric(f"peak_rss_mib.{key}", None if mem is None else round(mem, 2))
            ctx.save_json(f"edge-scores-{ablation}-{name}.json", scores.to_mib())
            row = {"model": ctx.model_id, "ablation": ablation, "method": LABELS[name],
                   "auc": auc, "auc_active": auc_active, "cpr": faith["cpr"], "cmd": faith["cmd"], "wall_s": wall,
                   "peak_rss_mib": mem, "flags": scores.flags,
                   "faithfulness": faith["faithfulness"], "budgets": list(MIB_BUDGETS)}
            if name in ("exact", "eap", "eap_ig"):
                nodes = node_patching(task) if name == "exact" else node_scores(scores)
                # None where every node is in the circuit (hist): a ranking then means nothing
                node_auc = None if bool(y_nodes.all()) else roc_auc(
                    torch.tensor([abs(nodes[w]) for w in g.writers]), y_nodes)
                ctx.metric(f"node_auc.{key}", node_auc)
                row["node_auc"] = node_auc
            if name == "acdc":
                sweep = acdc_roc(task, truth, p["acdc_sweep"])
                ctx.metric(f"acdc_sweep_auc.{ablation}", sweep["auc"])
                row["acdc_sweep"] = sweep
                rocs["acdc_sweep"] = sweep
                found = {e for e, k in zip(g.edges, scores.in_circuit.tolist(), strict=True) if k}
                tp, fp, fn = len(found & truth), len(found - truth), len(truth - found)
                ctx.metric(f"acdc_true_positives.{ablation}", tp)
                ctx.metric(f"acdc_false_positives.{ablation}", fp)
                ctx.metric(f"acdc_missed_edges.{ablation}", sorted(truth - found))
                ctx.metric(f"acdc_exact.{ablation}", fp == 0 and fn == 0)
                row["circuit"] = {"true_positives": tp, "false_positives": fp, "false_negatives": fn}
            if name == "exact":
                invisible = sorted(e for e, s in zip(g.edges, scores.scores.tolist(), strict=True)
                                   if e in truth and abs(s) < 1e-9)
                ctx.metric(f"ground_truth_edges_without_effect.{ablation}", invisible)
            board.append(row)
        _figures(ctx, ablation, rocs, curves)
    ctx.save_json("leaderboard.json", board)
    _tl_check(ctx, cm, gf, kind)


def _timed(fn, budget_s: float):
    """Run ``fn`` at least once and until ``budget_s`` is spent (at most 5 runs); the fastest
    wall time and the largest memory peak (a shared CPU makes single timings noisy)."""
    result, best, peak = None, float("inf"), 0.0  # peak None: the platform cannot say
    spent, runs = 0.0, 0
    while runs == 0 or (spent < budget_s and runs < 5):
        result, wall, mem = measured(fn)
        best, spent, runs = min(best, wall), spent + wall, runs + 1
        peak = None if mem is None or peak is None else max(peak, mem)
    return result, best, peak


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


def _figures(ctx: ReproContext, ablation: str, rocs: dict, curves: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 4))
    for name, curve in rocs.items():
        if name == "acdc_sweep":
            pts = curve["points"]
            ax.scatter([q["fpr"] for q in pts], [q["tpr"] for q in pts], marker="x", s=30,
                       color="black", zorder=3, label="ACDC, threshold sweep")
            continue
        fpr, tpr = curve
        ax.plot(fpr, tpr, marker=".", label=LABELS[name])
    ax.plot([0, 1], [0, 1], color="grey", lw=0.6, ls=":")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate",
           title=f"{ctx.model_id}, {ablation} ablation")
    ax.legend(fontsize=8)
    ctx.save_figure(fig, f"roc-{ablation}",
                    f"ROC curves of each method's edge ranking against the compiled ground truth ({ablation} ablation).")
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for name, c in curves.items():
        ax.plot([max(b, 5e-4) for b in c["budgets"]], c["faithfulness"], marker=".", label=LABELS[name])
    ax.set_xscale("log")
    ax.set(xlabel="edge budget (fraction of edges; 0 drawn at 5e-4)", ylabel="faithfulness",
           title=f"{ctx.model_id}, {ablation} ablation")
    ax.legend(fontsize=8)
    ctx.save_figure(fig, f"faithfulness-{ablation}",
                    f"Faithfulness of each method's top edges over MIB's edge budgets ({ablation} ablation): 1 - distance(circuit) / distance(empty circuit).")
