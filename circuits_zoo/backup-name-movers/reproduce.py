"""Reproduce self-repair of IOI (wang2022ioi, backup name movers; mcgrath2023hydra).

Discovery on every model: name movers and negative name movers by path patching each head's
path to the logits (as the ioi script does); then the name movers are mean-ablated and every
later head whose direct effect rises by more than a set share of the expected drop is a backup
name mover. The evaluated heads (the paper's on GPT-2 small, the discovered ones elsewhere) give
the self-repair numbers: the expected drop (the name movers' direct effects), the actual drop,
their difference (self-repair), and how much of it comes from the backups and from the negative
heads suppressing less. Each backup is also described by what it does once the name movers are
gone: whether it starts attending to IO and copying (a copier), or compensates otherwise.
"""

from __future__ import annotations

import torch
from mikb.methods import path_patching
from mikb.methods.ablation import FLAGS as ABLATION_FLAGS
from mikb.methods.ablation import run_ablated_with_cache
from mikb.methods.copy_suppression import ov_copy_scores
from mikb.methods.edge_scores import mib_graph
from mikb.methods.hooks import all_heads, head_label
from mikb.methods.ioi_common import (
    BACKUP,
    NEG,
    NM,
    as_heads,
    paper_heads_for,
    record_components,
    setup,
    top_heads,
)
from mikb.methods.self_repair import self_repair
from mikb.reproduce import ReproContext, ScriptSpec

SPEC = ScriptSpec(
    models=("gpt2-small", "planted-ioi"),
    params={"n_prompts": 100, "n_mean_prompts": 100, "logits_threshold": 0.05,
            "backup_threshold": 0.05, "copy_threshold": 0.5, "top_k": 5},
    quick_params={"n_prompts": 8, "n_mean_prompts": 8},
    description="Self-repair: discover and ablate the name movers, measure who compensates.",
)


def run(ctx: ReproContext) -> None:
    s = setup(ctx)
    model, ds, p = s.model, s.ds, ctx.params
    paper = paper_heads_for(ctx.model_id)
    ctx.metric("flags", {**ABLATION_FLAGS, "direct_effect": "logit-diff direction, final-norm "
                         "scale of each run", "scores": "signed",
                         "evaluated_heads": "paper's heads" if paper else "discovered heads"})
    to_logits = path_patching.sweep_senders_to_logits(
        model, ds, s.clean_cache, s.corrupted_cache, s.ld_clean)
    nm = as_heads(top_heads(to_logits, p["logits_threshold"], sign=-1))
    neg = as_heads(top_heads(to_logits, p["logits_threshold"], sign=+1))
    backups: list = []
    if nm:
        first = min(la for la, _ in nm)
        later = [v for v in all_heads(model) if v[0] >= first and v not in nm]
        rep = self_repair(model, ds, s.means, nm, later)
        change = rep["downstream_de_change"]
        backups = sorted((v for v in later if v not in neg
                          and change[head_label(v)] > p["backup_threshold"] * rep["expected_drop"]),
                         key=lambda v: -change[head_label(v)])
    record_components(ctx, s, {NM: nm, NEG: neg, BACKUP: backups})

    ev_nm = paper[NM] if paper else nm
    ev_backup = paper[BACKUP] if paper else backups
    ev_neg = paper[NEG] if paper else neg
    if not ev_nm:
        ctx.note("No name movers found: nothing to ablate.")
        return
    first = min(la for la, _ in ev_nm)
    later = [v for v in all_heads(model) if v[0] >= first and v not in ev_nm]
    res = self_repair(model, ds, s.means, ev_nm, later)
    for key in ("logit_diff_ablated", "expected_drop", "actual_drop", "self_repair",
                "self_repair_fraction"):
        ctx.metric(key, res[key])
    ctx.metric("nm_knockout_drop_fraction", res["actual_drop"] / s.ld_clean)
    change = res["downstream_de_change"]
    ctx.metric("de_change_per_head", change)
    ctx.metric("backup_compensation", sum(change[head_label(v)] for v in ev_backup))
    neg_comp = sum(change[head_label(v)] for v in ev_neg)
    ctx.metric("negative_heads_compensation", neg_comp)
    ctx.metric("negative_heads_share_of_self_repair", neg_comp / res["self_repair"])
    ctx.metric("backup_share_of_self_repair",
               sum(change[head_label(v)] for v in ev_backup) / res["self_repair"])

    # What each backup does once the name movers are gone.
    _, abl_cache = run_ablated_with_cache(model, ds.tokens, s.means, ev_nm)
    name_ids = torch.tensor(sorted(set(ds.io_ids.tolist()) | set(ds.s_ids.tolist())))
    pos_copy = ov_copy_scores(model, ev_backup, name_ids, k=int(p["top_k"]))
    neg_copy = ov_copy_scores(model, ev_backup, name_ids, k=int(p["top_k"]), negative=True)
    b = torch.arange(len(ds))

    def att(cache, v, src):
        return cache[f"blocks.{v[0]}.attn.hook_pattern"][b, v[1], ds.end, src].mean().item()

    behaviour, copiers = {}, 0
    for v in ev_backup:
        lab = head_label(v)
        d = {"de_clean": res["de_clean"][lab], "de_ablated": res["de_ablated"][lab],
             "attn_io_clean": att(s.clean_cache, v, ds.pos["IO"]),
             "attn_io_ablated": att(abl_cache, v, ds.pos["IO"]),
             "attn_s_clean": att(s.clean_cache, v, ds.pos["S1"]) + att(s.clean_cache, v, ds.pos["S2"]),
             "attn_s_ablated": att(abl_cache, v, ds.pos["S1"]) + att(abl_cache, v, ds.pos["S2"]),
             "copy_score": pos_copy[v], "neg_copy_score": neg_copy[v]}
        d["copies_io"] = bool(d["attn_io_ablated"] > d["attn_io_clean"]
                              and d["copy_score"] >= p["copy_threshold"])
        copiers += d["copies_io"]
        behaviour[lab] = d
    ctx.metric("backup_behaviour", behaviour)
    if ev_backup:
        ctx.metric("backup_copier_fraction", copiers / len(ev_backup))
    for v in ev_backup + ev_neg:
        lab = head_label(v)
        ctx.metric(f"de_clean_{lab}", res["de_clean"][lab])
        ctx.metric(f"de_ablated_{lab}", res["de_ablated"][lab])
    quiet = max((abs(res["de_clean"][head_label(v)]) for v in ev_backup), default=None)
    ctx.metric("backup_de_clean_max_relative", None if quiet is None else quiet / s.ld_clean)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [h for h, c in sorted(change.items(), key=lambda kv: -abs(kv[1]))][:12]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(labels, [change[h] for h in labels], color="tab:blue")
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xlabel("head (layer.head)")
    ax.set_ylabel("change of direct effect (logits)")
    ax.set_title("Direct-effect change of later heads when name movers are mean-ablated",
                 fontsize=9)
    ax.tick_params(axis="x", rotation=60)
    ctx.save_figure(fig, "self_repair_de_change", "Change of each later head's direct effect on "
                    "the logit difference when the name movers ("
                    + ", ".join(head_label(v) for v in ev_nm) + ") are mean-ablated.")
    found = {head_label(v) for v in backups}
    edges = [(tuple(map(int, h.split("."))), "logits", None, c, h in found)
             for h, c in change.items()]
    ctx.save_json("edge_scores.json", mib_graph(
        model.cfg.n_layers, model.cfg.n_heads, edges,
        {"score": "change of direct effect when name movers are mean-ablated"},
        attn_only=bool(getattr(model.cfg, "attn_only", False))))
