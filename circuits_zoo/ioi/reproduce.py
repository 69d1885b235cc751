"""Reproduce the IOI circuit (wang2022ioi) by discovering it, class by class, from the logits back.

1. heads -> logits (path patching): name movers (lower the logit difference when corrupted) and
   negative name movers (raise it);
2. heads -> name movers' queries: S-inhibition heads;
3. heads -> S-inhibition heads' values (V-composition): duplicate-token and induction heads,
   told apart by where they attend from S2 (S1: duplicate token; S1+1: induction). The same
   sweep into the keys is recorded too, for comparison;
4. heads -> induction heads' keys at S1+1 (K-composition): previous-token heads;
5. name movers mean-ablated: heads whose direct effect rises are backup name movers.
Then it scores the discovered circuit (the paper's own circuit on GPT-2 small, the one place
its head list is used): attention patterns, copy scores, the S-inhibition position/token signal
split (the paper's six-dataset protocol), the adversarial prompts with IO repeated, the
name-mover knock-out, faithfulness, completeness (class, random and greedy K),
minimality, the naive circuit, and the MLP0 knock-out where the model has MLPs.
"""

from __future__ import annotations

import math

import torch
from mikb.methods import activation_patching, path_patching
from mikb.methods.ablation import FLAGS as ABLATION_FLAGS
from mikb.methods.ablation import run_ablated
from mikb.methods.circuit_eval import (
    completeness,
    faithfulness,
    greedy_incompleteness,
    heads_from_classes,
    minimality_with_k,
)
from mikb.methods.copy_suppression import ov_copy_scores
from mikb.methods.dla import head_dla
from mikb.methods.edge_scores import mib_graph
from mikb.methods.hooks import all_heads, head_label
from mikb.methods.ioi_common import (
    BACKUP,
    DUP,
    IND,
    NEG,
    NM,
    PREV,
    ROLES,
    SINH,
    as_heads,
    attention_grid,
    heatmap,
    mean_attention,
    paper_heads_for,
    record_components,
    setup,
    top_heads,
)
from mikb.methods.ioi_adversarial import adversarial_metrics
from mikb.methods.ioi_signals import paper_signal_grid
from mikb.methods.metrics import logit_diff, logit_diff_metric
from mikb.methods.self_repair import self_repair
from mikb.reproduce import ReproContext, ScriptSpec

SPEC = ScriptSpec(
    models=("gpt2-small", "planted-ioi"),
    params={
        "n_prompts": 100,
        "n_mean_prompts": 100,
        "logits_threshold": 0.05,  # |relative change| for a head -> logits path to count
        "query_threshold": 0.03,  # relative drop for a head -> name-mover-query path
        "value_threshold": 0.02,  # relative drop for a head -> S-inhibition-value path
        "induction_key_threshold": 0.02,  # relative drop for a head -> induction-key path
        "backup_threshold": 0.05,  # direct-effect rise, as a share of the expected drop
        "max_receivers": 4,  # strongest heads of a class used as receivers of the next sweep
        "n_random_subsets": 8,
        "greedy_runs": 3,
        "greedy_steps": 5,
        "greedy_sample": 10,
        "copy_top_k": 5,
        "activation_patching": True,
        "adversarial_sentences": 2,  # IO sentences added before S2 (fewer if the context is short)
    },
    quick_params={"n_prompts": 8, "n_mean_prompts": 8, "n_random_subsets": 2, "greedy_runs": 1,
                  "greedy_steps": 2, "greedy_sample": 4, "activation_patching": False},
    description="IOI circuit discovered by path patching; DLA, patching and circuit evaluation.",
)


def run(ctx: ReproContext) -> None:
    s = setup(ctx)
    model, ds, p = s.model, s.ds, ctx.params
    n_l, n_h = model.cfg.n_layers, model.cfg.n_heads
    metric = logit_diff_metric(ds)
    paper = paper_heads_for(ctx.model_id)
    ctx.metric("flags", {**path_patching.FLAGS, **ABLATION_FLAGS, "scores": "signed",
                         "evaluated_circuit": "paper's heads" if paper else "discovered heads"})
    pos = ds.pos
    top_r = int(p["max_receivers"])

    def sweep(receivers, comp, positions=None):
        if not receivers:
            return torch.full((n_l, n_h), float("nan"))
        return path_patching.sweep_senders_to_heads(
            model, ds, s.clean_cache, s.corrupted_cache, receivers, comp, metric, s.ld_clean,
            positions=positions)

    # 1. heads -> logits.
    ctx.log("path patching: heads -> logits")
    to_logits = path_patching.sweep_senders_to_logits(
        model, ds, s.clean_cache, s.corrupted_cache, s.ld_clean)
    nm = as_heads(top_heads(to_logits, p["logits_threshold"], sign=-1))
    neg = as_heads(top_heads(to_logits, p["logits_threshold"], sign=+1))
    ctx.save_figure(heatmap(to_logits, "Path patching head -> logits (relative change of "
                            "logit diff; red = head supports IO, blue = against)",
                            "relative change of logit diff (red < 0 < blue)"),
                    "path_patching_logits", "Relative change of the IO-S logit difference when "
                    "each head's path to the logits carries its ABC-corrupted output.")

    # 2. heads -> name movers' queries.
    ctx.log(f"path patching: heads -> queries of {nm[:top_r]}")
    to_q = sweep(nm[:top_r], "q")
    sinh = as_heads(top_heads(to_q, p["query_threshold"], sign=-1))
    ctx.save_figure(heatmap(to_q, "Path patching head -> name-mover queries", "relative change"),
                    "path_patching_nm_queries", "Relative change of the logit difference when "
                    "each earlier head's path into the discovered name movers' queries is "
                    "corrupted.")

    # 3. heads -> S-inhibition values (and keys, for comparison).
    ctx.log(f"path patching: heads -> values and keys of {sinh[:top_r]}")
    to_v = sweep(sinh[:top_r], "v")
    to_k = sweep(sinh[:top_r], "k")
    dup_attn = attention_grid(s.clean_cache, ds, n_l, n_h, pos["S2"], pos["S1"])
    ind_attn = attention_grid(s.clean_cache, ds, n_l, n_h, pos["S2"], pos["S1"] + 1)
    v_heads = as_heads(top_heads(to_v, p["value_threshold"], sign=-1))
    dup = [v for v in v_heads if dup_attn[v] >= ind_attn[v]]
    ind = [v for v in v_heads if dup_attn[v] < ind_attn[v]]
    ctx.save_figure(heatmap(to_v, "Path patching head -> S-inhibition values", "relative change"),
                    "path_patching_sinh_values", "Relative change of the logit difference when "
                    "each earlier head's path into the discovered S-inhibition heads' values is "
                    "corrupted (V-composition).")

    # 4. heads -> induction keys at S1+1.
    ctx.log(f"path patching: heads -> keys of {ind[:top_r]} at S1+1")
    to_ind_k = sweep(ind[:top_r], "k", positions=pos["S1"] + 1)
    prev = as_heads(top_heads(to_ind_k, p["induction_key_threshold"], sign=-1))

    # 5. backup name movers: direct-effect rise when the name movers are mean-ablated.
    later = [v for v in all_heads(model) if nm and v[0] >= min(la for la, _ in nm) and v not in nm]
    backups: list = []
    if nm:
        rep = self_repair(model, ds, s.means, nm, later)
        change = rep["downstream_de_change"]
        backups = [v for v in later if head_label(v) not in {head_label(x) for x in neg}
                   and change[head_label(v)] > p["backup_threshold"] * rep["expected_drop"]]
    discovered = {PREV: prev, DUP: dup, IND: ind, SINH: sinh, NM: nm, NEG: neg, BACKUP: backups}
    record_components(ctx, s, discovered)

    # The circuit whose properties are measured below: the paper's own heads on GPT-2 small
    # (with the sweeps redone into the paper's receivers), the discovered heads elsewhere.
    evald = paper or discovered
    if paper:
        ctx.log("path patching into the paper's receivers")
        ev_grids = {"q": sweep(paper[NM], "q"), "v": sweep(paper[SINH], "v"),
                    "k": sweep(paper[SINH], "k"),
                    "ind_k": sweep(paper[IND], "k", positions=pos["S1"] + 1)}
    else:
        ev_grids = {"q": to_q, "v": to_v, "k": to_k, "ind_k": to_ind_k}
    dla = head_dla(model, s.clean_cache, ds)

    def scores_of(v, g):
        return {"path_to_logits": _num(to_logits[v]), "path_to_nm_queries": _num(g["q"][v]),
                "path_to_sinh_values": _num(g["v"][v]), "path_to_sinh_keys": _num(g["k"][v]),
                "path_to_induction_keys_s1p1": _num(g["ind_k"][v]),
                "attn_s2_to_s1": _num(dup_attn[v]), "attn_s2_to_s1p1": _num(ind_attn[v]),
                "dla": _num(dla[v])}

    own = {"q": to_q, "v": to_v, "k": to_k, "ind_k": to_ind_k}
    ctx.metric("discovered_head_scores", {role: {head_label(v): scores_of(v, own) for v in heads}
                                          for role, heads in discovered.items()})
    if paper:
        ctx.metric("paper_head_scores", {role: {head_label(v): scores_of(v, ev_grids)
                                                for v in heads} for role, heads in paper.items()})
        found = {head_label(v) for hs in discovered.values() for v in hs}
        ctx.metric("paper_heads_rediscovered_fraction",
                   sum(head_label(v) in found for hs in paper.values() for v in hs)
                   / sum(len(hs) for hs in paper.values()))

    # Class-level path-patching scores of the evaluated circuit.
    ctx.metric("nm_path_to_logits_mean", _mean([_num(to_logits[v]) for v in evald[NM]]))
    ctx.metric("neg_path_to_logits_mean", _mean([_num(to_logits[v]) for v in evald[NEG]]))
    ctx.metric("sinh_path_to_nm_queries_mean", _mean([_num(ev_grids["q"][v]) for v in evald[SINH]]))
    ctx.metric("dup_ind_to_sinh_values_total", _sum(ev_grids["v"], evald[DUP] + evald[IND]))
    ctx.metric("dup_ind_to_sinh_keys_total", _sum(ev_grids["k"], evald[DUP] + evald[IND]))
    ctx.metric("dup_to_sinh_keys_total", _sum(ev_grids["k"], evald[DUP]))
    ctx.metric("prev_to_induction_keys_mean",
               _mean([_num(ev_grids["ind_k"][v]) for v in evald[PREV]]))

    # Attention patterns of the evaluated circuit.
    ctx.metric("nm_attn_to_io", mean_attention(s.clean_cache, ds, evald[NM], ds.end, pos["IO"]))
    ctx.metric("nm_attn_to_s", mean_attention(s.clean_cache, ds, evald[NM], ds.end, pos["S1"])
               + mean_attention(s.clean_cache, ds, evald[NM], ds.end, pos["S2"]))
    ctx.metric("sinh_attn_to_s2", mean_attention(s.clean_cache, ds, evald[SINH], ds.end, pos["S2"]))
    ctx.metric("dup_attn_s2_to_s1", mean_attention(s.clean_cache, ds, evald[DUP], pos["S2"],
                                                   pos["S1"]))
    ctx.metric("ind_attn_s2_to_s1p1", mean_attention(s.clean_cache, ds, evald[IND], pos["S2"],
                                                     pos["S1"] + 1))
    ctx.metric("prev_attn_s1p1_to_s1", mean_attention(s.clean_cache, ds, evald[PREV],
                                                      pos["S1"] + 1, pos["S1"]))

    # Copy scores (OV circuit on the names' effective embeddings).
    k = int(p["copy_top_k"])
    name_ids = torch.tensor(sorted(set(ds.io_ids.tolist()) | set(ds.s_ids.tolist())))
    pos_copy = ov_copy_scores(model, all_heads(model), name_ids, k=k)
    neg_copy = ov_copy_scores(model, all_heads(model), name_ids, k=k, negative=True)
    ctx.metric("copy_score_name_movers", _mean([pos_copy[v] for v in evald[NM]]))
    ctx.metric("copy_score_all_heads", _mean(list(pos_copy.values())))
    ctx.metric("negative_copy_score_negative_heads", _mean([neg_copy[v] for v in evald[NEG]]))

    # Position vs token signal moved by the S-inhibition heads: the paper's six source datasets
    # (Appendix A), their END outputs patched into the clean run, and the linear fit.
    for key, val in paper_signal_grid(model, ds, evald[SINH], ctx.seed).items():
        ctx.metric(f"sinh_{key}", val)

    # Adversarial prompts (Section 4.4): IO repeated in added sentences before S2.
    for key, val in adversarial_metrics(model, ds, int(p["adversarial_sentences"]),
                                        ctx.seed).items():
        ctx.metric(key, val)

    # Knocking out the name movers.
    if evald[NM]:
        ld_ko = logit_diff(run_ablated(model, ds.tokens, s.means, evald[NM]), ds).item()
        ctx.metric("nm_knockout_logit_diff", ld_ko)
        ctx.metric("nm_knockout_drop_fraction", (s.ld_clean - ld_ko) / s.ld_clean)

    # MLP0 knock-out (models with MLPs only; mean over the ABC reference prompts).
    if not getattr(model.cfg, "attn_only", False):
        ctx.metric("mlp0_knockout_logit_diff", _mlp0_knockout(model, ds, s))

    # 6. Circuit evaluation.
    classes = {r: evald[r] for r in ROLES if evald[r]}
    circuit = heads_from_classes(classes)
    faith = faithfulness(model, ds, s.means, circuit)
    ctx.metric("F_model", faith["F_model"])
    ctx.metric("F_circuit", faith["F_circuit"])
    ctx.metric("faithfulness_fraction", faith["fraction"])
    comp = completeness(model, ds, s.means, circuit, classes,
                        n_random=int(p["n_random_subsets"]), seed=ctx.seed)
    ctx.metric("completeness_max_gap", comp["max_gap"])
    ctx.metric("completeness_max_gap_relative", comp["max_gap"] / abs(faith["F_model"]))
    ctx.metric("completeness_gaps", comp["gaps"])
    ctx.log("greedy search for an incompleteness-maximising K")
    greedy = greedy_incompleteness(model, ds, s.means, circuit, n_steps=int(p["greedy_steps"]),
                                   sample_size=int(p["greedy_sample"]),
                                   n_runs=int(p["greedy_runs"]), seed=ctx.seed)
    ctx.metric("greedy_incompleteness", greedy["max_gap"])
    ctx.metric("greedy_incompleteness_relative", greedy["max_gap_relative"])
    ctx.metric("greedy_worst_k", greedy["worst_k"])
    # Minimality: K = {}, v's class-mates, and for backups the name movers with the backups.
    k_sets = {}
    for role, heads in classes.items():
        for v in heads:
            k_sets[v] = [set(heads)]
            if role == BACKUP:
                k_sets[v].append(set(classes.get(NM, [])) | set(heads))
    mini = minimality_with_k(model, ds, s.means, circuit, k_sets)
    ctx.metric("minimality", mini)
    ctx.metric("minimality_min", min(mini.values()) if mini else None)
    for role, heads in classes.items():
        ctx.metric(f"minimality_max_{role.replace(' ', '_').replace('-', '_')}",
                   max(mini[head_label(v)] for v in heads))
    naive = set(classes.get(NM, [])) | set(classes.get(SINH, []))
    if naive:
        naive_faith = faithfulness(model, ds, s.means, naive)
        ctx.metric("naive_faithfulness_fraction", naive_faith["fraction"])
        naive_comp = completeness(model, ds, s.means, naive,
                                  {r: classes[r] for r in (NM, SINH) if r in classes},
                                  n_random=int(p["n_random_subsets"]), seed=ctx.seed)
        ctx.metric("naive_completeness_max_gap_relative",
                   naive_comp["max_gap"] / abs(faith["F_model"]))

    # Activation patching (denoising), full runs only.
    if p["activation_patching"]:
        ctx.log("activation patching: head outputs and residual stream")
        heads_ap = activation_patching.patch_head_outputs(model, ds)
        ctx.save_figure(heatmap(heads_ap, "Activation patching of head outputs (recovery)",
                                "recovered fraction"), "act_patching_heads",
                        "Fraction of the clean logit difference recovered by patching each "
                        "head's clean output into the ABC-corrupted run.")
        ctx.metric("act_patch_resid_by_pos", activation_patching.patch_resid_by_pos(model, ds))
        ctx.metric("flags_activation_patching", activation_patching.FLAGS)

    # Edge scores (MIB / EAP-IG graph layout).
    in_circuit = {head_label(v) for hs in discovered.values() for v in hs}
    edges = []
    sweeps = [(nm[:top_r], "q", to_q, sinh), (sinh[:top_r], "v", to_v, dup + ind),
              (sinh[:top_r], "k", to_k, []), (ind[:top_r], "k", to_ind_k, prev)]
    for v in all_heads(model):
        edges.append((v, "logits", None, to_logits[v].item(), v in nm + neg))
        for receivers, comp_name, grid, senders in sweeps:
            for rec in receivers:
                if v[0] < rec[0]:
                    edges.append((v, rec, comp_name, float(grid[v]), v in senders))  # save_json writes NaN as null
    ctx.save_json("edge_scores.json", mib_graph(
        n_l, n_h, edges, {**path_patching.FLAGS, "scores": "signed relative change of logit diff",
                          "induction_keys": "patched at S1+1 only"},
        attn_only=bool(getattr(model.cfg, "attn_only", False))))
    ctx.metric("n_discovered_heads", len(in_circuit))
    if s.ground_truth is not None:
        ctx.note("Planted model (method check, not a reproduction): compare "
                 "discovered_components with ground_truth_components.")


def _num(x) -> float | None:
    """A score as a number, or None where it is undefined (path patching marks a sender that
    cannot reach the receiver with NaN; results hold no NaN)."""
    v = float(x.detach()) if hasattr(x, "detach") else float(x)
    return v if math.isfinite(v) else None


def _sum(grid: torch.Tensor, heads) -> float | None:
    vals = [float(grid[v]) for v in heads if math.isfinite(float(grid[v]))]
    return sum(vals) if vals else None


def _mean(vals: list[float | None]) -> float | None:
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


def _mlp0_knockout(model, ds, s) -> float:
    """Logit diff with MLP0's output replaced by its per-position mean over the ABC prompts."""
    name = "blocks.0.hook_mlp_out"
    with torch.no_grad():
        _, ref = model.run_with_cache(ds.corrupted_tokens, names_filter=lambda n: n == name)
    mean = ref[name].mean(0, keepdim=True)

    def hook(x, hook):
        return mean.expand_as(x).clone()

    with torch.no_grad():
        logits = model.run_with_hooks(ds.tokens, fwd_hooks=[(name, hook)])
    return logit_diff(logits, ds).item()
