"""Reproduce self-repair of IOI (wang2022ioi Section 3.4; mcgrath2023hydra): mean-ablate the name
movers and measure how much of the expected drop in logit difference does not happen, and
which downstream heads (backup name movers, negative heads) change their direct effect.
"""

from __future__ import annotations

from mikb.methods.ablation import FLAGS as ABLATION_FLAGS
from mikb.methods.edge_scores import mib_graph
from mikb.methods.hooks import head_label
from mikb.methods.ioi_common import PAPER_CLASSES, setup
from mikb.methods.self_repair import self_repair
from mikb.reproduce import ReproContext, ScriptSpec

SPEC = ScriptSpec(
    models=("gpt2-small", "planted-ioi"),
    params={"n_prompts": 100, "n_mean_prompts": 100, "backup_threshold": 0.1},
    quick_params={"n_prompts": 8, "n_mean_prompts": 8},
    description="Self-repair: ablate the name movers, measure downstream compensation.",
)


def run(ctx: ReproContext) -> None:
    s = setup(ctx)
    model, ds, p = s.model, s.ds, ctx.params
    ctx.metric("flags", {**ABLATION_FLAGS, "direct_effect": "logit-diff direction, final-norm "
                         "scale of each run", "scores": "signed"})
    backups = PAPER_CLASSES["backup name mover"]
    negatives = PAPER_CLASSES["negative name mover"]
    later = [(la, h) for la in range(9, model.cfg.n_layers) for h in range(model.cfg.n_heads)
             if (la, h) not in PAPER_CLASSES["name mover"]]
    res = self_repair(model, ds, s.means, PAPER_CLASSES["name mover"], later)
    for key in ("logit_diff_clean", "logit_diff_ablated", "expected_drop", "actual_drop",
                "self_repair", "self_repair_fraction"):
        ctx.metric(key, res[key])
    change = res["downstream_de_change"]
    ctx.metric("de_change_per_head", change)
    ctx.metric("backup_compensation", sum(change[head_label(v)] for v in backups))
    neg_comp = sum(change[head_label(v)] for v in negatives)
    ctx.metric("negative_heads_compensation", neg_comp)
    ctx.metric("negative_heads_share_of_self_repair", neg_comp / res["self_repair"])
    found = [h for h, c in sorted(change.items(), key=lambda kv: -kv[1])
             if c > p["backup_threshold"] * res["expected_drop"] and res["de_clean"][h] >= 0]
    ctx.metric("backup_heads_found", found)
    for v in backups[:6] + negatives:
        lab = head_label(v)
        ctx.metric(f"de_clean_{lab}", res["de_clean"][lab])
        ctx.metric(f"de_ablated_{lab}", res["de_ablated"][lab])

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [h for h, c in sorted(change.items(), key=lambda kv: -abs(kv[1]))][:12]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(labels, [change[h] for h in labels], color="tab:blue")
    ax.axhline(0, color="black", lw=0.6)
    ax.set_ylabel("change of direct effect")
    ax.set_title("Direct-effect change of later heads when name movers are mean-ablated",
                 fontsize=9)
    ax.tick_params(axis="x", rotation=60)
    ctx.save_figure(fig, "self_repair_de_change", "Change of each later head's direct effect on "
                    "the logit difference when 9.9, 9.6 and 10.0 are mean-ablated.")
    edges = [(tuple(map(int, h.split("."))), "logits", None, c, h in found)
             for h, c in change.items()]
    ctx.save_json("edge_scores.json", mib_graph(
        model.cfg.n_layers, model.cfg.n_heads, edges,
        {"score": "change of direct effect when name movers are mean-ablated"},
        attn_only=bool(getattr(model.cfg, "attn_only", False))))
