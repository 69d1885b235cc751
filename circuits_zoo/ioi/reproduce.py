"""Reproduce the IOI circuit (wang2022ioi): find name movers, negative name movers, S-inhibition
and duplicate-token heads by path patching, check them by direct logit attribution and
activation patching, and evaluate the paper's circuit (faithfulness, completeness, minimality).
"""

from __future__ import annotations

import torch
from mikb.methods import activation_patching, path_patching
from mikb.methods.ablation import FLAGS as ABLATION_FLAGS
from mikb.methods.circuit_eval import completeness, faithfulness, heads_from_classes, minimality
from mikb.methods.dla import head_dla
from mikb.methods.edge_scores import mib_graph
from mikb.methods.hooks import parse_head
from mikb.methods.ioi_common import PAPER_CLASSES, heatmap, setup, top_heads
from mikb.methods.metrics import logit_diff_metric
from mikb.reproduce import ReproContext, ScriptSpec

SPEC = ScriptSpec(
    models=("gpt2-small", "planted-ioi"),
    params={
        "n_prompts": 100,
        "n_mean_prompts": 100,
        "logits_threshold": 0.05,  # |relative change| for a head -> logits path to count
        "query_threshold": 0.03,  # relative drop for a head -> name-mover-query path
        "n_random_subsets": 8,
        "activation_patching": True,
    },
    quick_params={"n_prompts": 8, "n_mean_prompts": 8, "n_random_subsets": 2,
                  "activation_patching": False},
    description="IOI circuit: path patching, DLA, activation patching and circuit evaluation.",
)


def run(ctx: ReproContext) -> None:
    s = setup(ctx)
    model, ds, p = s.model, s.ds, ctx.params
    metric = logit_diff_metric(ds)
    ctx.metric("flags", {**path_patching.FLAGS, **ABLATION_FLAGS, "scores": "signed"})
    b = torch.arange(len(ds))
    end_logits = s.clean_logits[b, ds.end]
    ctx.metric("io_over_s_accuracy",
               (end_logits[b, ds.io_ids] > end_logits[b, ds.s_ids]).float().mean().item())

    # 1. Which heads write the answer? Path patching head -> logits.
    ctx.log("path patching: heads -> logits")
    to_logits = path_patching.sweep_senders_to_logits(
        model, ds, s.clean_cache, s.corrupted_cache, s.ld_clean)
    name_movers = top_heads(to_logits, p["logits_threshold"], sign=-1)
    negative = top_heads(to_logits, p["logits_threshold"], sign=+1)
    ctx.metric("path_to_logits_name_movers", name_movers)
    ctx.metric("path_to_logits_negative", negative)
    for label in ("9.9", "9.6", "10.0", "10.7", "11.10"):
        ctx.metric(f"path_to_logits_{label}", to_logits[parse_head(label)].item())
    ctx.save_figure(heatmap(to_logits, "Path patching head -> logits (relative change of "
                            "logit diff; blue = head supports IO)", "relative change"),
                    "path_patching_logits", "Relative change of the IO-S logit difference when "
                    "each head's path to the logits carries its ABC-corrupted output.")

    # 2. Which heads tell the name movers what to avoid? Path patching -> name-mover queries.
    receivers = [parse_head(h) for h in name_movers[:3]] or PAPER_CLASSES["name mover"]
    ctx.log(f"path patching: heads -> queries of {receivers}")
    to_q = path_patching.sweep_senders_to_heads(
        model, ds, s.clean_cache, s.corrupted_cache, receivers, "q", metric, s.ld_clean)
    s_inhibition = top_heads(to_q, p["query_threshold"], sign=-1)
    ctx.metric("path_to_nm_queries_s_inhibition", s_inhibition)
    for la, h in PAPER_CLASSES["s-inhibition"]:
        ctx.metric(f"path_to_nm_queries_{la}.{h}", to_q[la, h].item())
    ctx.save_figure(heatmap(to_q, "Path patching head -> name-mover queries", "relative change"),
                    "path_patching_nm_queries", "Relative change of the logit difference when "
                    "each earlier head's path into the name movers' queries is corrupted.")

    # 3. Which heads tell the S-inhibition heads where S2 is? Path patching -> their keys.
    sinh = [parse_head(h) for h in s_inhibition[:4]] or PAPER_CLASSES["s-inhibition"]
    ctx.log(f"path patching: heads -> keys of {sinh}")
    to_k = path_patching.sweep_senders_to_heads(
        model, ds, s.clean_cache, s.corrupted_cache, sinh, "k", metric, s.ld_clean)
    dup_like = top_heads(to_k, p["query_threshold"], sign=-1)
    ctx.metric("path_to_sinh_keys_heads", dup_like)
    for la, h in PAPER_CLASSES["duplicate token"] + PAPER_CLASSES["induction"]:
        ctx.metric(f"path_to_sinh_keys_{la}.{h}", to_k[la, h].item())

    # 4. Direct logit attribution (cross-checks step 1 with the clean run alone).
    dla = head_dla(model, s.clean_cache, ds)
    for label in ("9.9", "9.6", "10.0", "10.7", "11.10"):
        ctx.metric(f"dla_{label}", dla[parse_head(label)].item())

    # 5. Activation patching (denoising), full runs only.
    if p["activation_patching"]:
        ctx.log("activation patching: head outputs and residual stream")
        heads_ap = activation_patching.patch_head_outputs(model, ds)
        ctx.save_figure(heatmap(heads_ap, "Activation patching of head outputs (recovery)",
                                "recovered fraction"), "act_patching_heads",
                        "Fraction of the clean logit difference recovered by patching each "
                        "head's clean output into the ABC-corrupted run.")
        resid = activation_patching.patch_resid_by_pos(model, ds)
        ctx.metric("act_patch_resid_by_pos", resid)
        ctx.metric("flags_activation_patching", activation_patching.FLAGS)

    # 6. Circuit evaluation of the paper's circuit.
    circuit = heads_from_classes(PAPER_CLASSES)
    faith = faithfulness(model, ds, s.means, circuit)
    ctx.metric("F_model", faith["F_model"])
    ctx.metric("F_circuit", faith["F_circuit"])
    ctx.metric("faithfulness_fraction", faith["fraction"])
    comp = completeness(model, ds, s.means, circuit, PAPER_CLASSES,
                        n_random=int(p["n_random_subsets"]), seed=ctx.seed)
    ctx.metric("completeness_max_gap", comp["max_gap"])
    ctx.metric("completeness_max_gap_relative", comp["max_gap"] / abs(faith["F_model"]))
    ctx.metric("completeness_gaps", comp["gaps"])
    mini = minimality(model, ds, s.means, circuit, PAPER_CLASSES)
    ctx.metric("minimality", mini)
    ctx.metric("minimality_min", min(mini.values()))
    for cls, heads in PAPER_CLASSES.items():
        vals = [mini[f"{la}.{h}"] for la, h in heads]
        ctx.metric(f"minimality_max_{cls.replace(' ', '_').replace('-', '_')}", max(vals))

    # 7. Edge scores (MIB / EAP-IG graph layout).
    edges = []
    for la in range(model.cfg.n_layers):
        for h in range(model.cfg.n_heads):
            edges.append(((la, h), "logits", None, to_logits[la, h].item(),
                          f"{la}.{h}" in name_movers + negative))
            for rec in receivers:
                if la < rec[0]:
                    edges.append(((la, h), rec, "q", to_q[la, h].item(),
                                  f"{la}.{h}" in s_inhibition))
            for rec in sinh:
                if la < rec[0]:
                    edges.append(((la, h), rec, "k", to_k[la, h].item(), f"{la}.{h}" in dup_like))
    ctx.save_json("edge_scores.json", mib_graph(
        model.cfg.n_layers, model.cfg.n_heads, edges,
        {**path_patching.FLAGS, "scores": "signed relative change of logit diff"},
        attn_only=bool(getattr(model.cfg, "attn_only", False))))
    if s.ground_truth is not None:
        ctx.note("Planted model: roles are known by construction (mikb.lm.planted_ioi); "
                 "compare the *_found metrics with them.")
