"""Reproduce copy suppression by the negative heads 10.7 and 11.10 (mcdougall2023copysuppression):
their OV circuits lower the logit of the name they attend to, they attend to the name earlier
layers predict, and removing them raises the IOI logit difference.
"""

from __future__ import annotations

import torch
from mikb.methods.ablation import FLAGS as ABLATION_FLAGS
from mikb.methods.copy_suppression import ablation_effect, attends_to_predicted, ov_copy_score
from mikb.methods.dla import head_dla
from mikb.methods.edge_scores import mib_graph
from mikb.methods.hooks import all_heads, head_label
from mikb.methods.ioi_common import heatmap, setup
from mikb.reproduce import ReproContext, ScriptSpec

NEGATIVE_HEADS = [(10, 7), (11, 10)]
NAME_MOVERS = [(9, 9), (9, 6), (10, 0)]

SPEC = ScriptSpec(
    models=("gpt2-small", "planted-ioi"),
    params={"n_prompts": 100, "n_mean_prompts": 100, "top_k": 5, "copy_threshold": 0.5},
    quick_params={"n_prompts": 8, "n_mean_prompts": 8},
    description="Copy suppression: OV negative copying, QK attention to predicted names, ablation.",
)


def run(ctx: ReproContext) -> None:
    s = setup(ctx)
    model, ds, p = s.model, s.ds, ctx.params
    k = int(p["top_k"])
    ctx.metric("flags", {**ABLATION_FLAGS, "copy_score": f"own name in top-{k} of OV->unembed "
                         "logits of its effective embedding (negative: bottom-{k})",
                         "scores": "signed"})
    name_ids = torch.tensor(sorted({int(t) for t in ds.io_ids} | {int(t) for t in ds.s_ids}))

    # OV: negative copying score of every head (weights only, so cheap for all 144).
    neg = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    pos = torch.zeros_like(neg)
    for la, h in all_heads(model):
        neg[la, h] = ov_copy_score(model, la, h, name_ids, k=k, negative=True)
        pos[la, h] = ov_copy_score(model, la, h, name_ids, k=k, negative=False)
    dla = head_dla(model, s.clean_cache, ds)
    found = [head_label(v) for v in all_heads(model)
             if neg[v] >= p["copy_threshold"] and dla[v] < 0]
    ctx.metric("negative_copying_heads_found", found)
    ctx.save_figure(heatmap(neg, f"Negative copying score (own name in bottom-{k})", "score"),
                    "negative_copy_scores", "Fraction of names whose own logit is among the "
                    "lowest after passing the name through each head's OV circuit.")
    for v in NEGATIVE_HEADS + NAME_MOVERS:
        lab = head_label(v)
        ctx.metric(f"neg_copy_score_{lab}", neg[v].item())
        ctx.metric(f"copy_score_{lab}", pos[v].item())
        ctx.metric(f"dla_{lab}", dla[v].item())

    # QK: attention to the name that earlier layers predict.
    for v in NEGATIVE_HEADS:
        att = attends_to_predicted(model, s.clean_cache, ds, *v)
        for key, val in att.items():
            ctx.metric(f"{key}_{head_label(v)}", val)

    # Effect of removing the negative heads.
    effect = ablation_effect(model, ds, s.means, NEGATIVE_HEADS)
    ctx.metric("ablate_negative_heads_logit_diff_change", effect)
    ctx.metric("ablate_negative_heads_relative_change", effect / s.ld_clean)
    for v in NEGATIVE_HEADS:
        ctx.metric(f"ablate_{head_label(v)}_logit_diff_change",
                   ablation_effect(model, ds, s.means, [v]))

    edges = [(v, "logits", None, dla[v].item(), head_label(v) in found) for v in all_heads(model)]
    ctx.save_json("edge_scores.json", mib_graph(
        model.cfg.n_layers, model.cfg.n_heads, edges,
        {"score": "direct logit attribution to logit(IO) - logit(S), signed"},
        attn_only=bool(getattr(model.cfg, "attn_only", False))))
