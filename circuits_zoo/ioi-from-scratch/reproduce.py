"""IOI in a small transformer trained here from scratch, and its circuit discovered with the
IOI methods used on GPT-2 small (wang2022ioi).

1. Train a 2-layer attention-only model (compact vocabulary of the paper's names and template
   words, mikb.lm.ioi_trained) with next-token loss on IOI text; a fifth of the name pairs never
   occurs in training and every measurement below uses prompts built from those held-out pairs.
2. Discover, from the logits backwards and with no head given: heads -> logits by path patching
   (heads that raise the logit difference; those attending to IO are name movers, those
   attending to S are direct S-suppressors), heads -> name movers' queries (S-inhibition),
   heads -> S-inhibition values (duplicate-token / induction, told apart by attention from S2),
   heads -> induction keys at S1+1 (previous-token), backups by self-repair.
3. Measure what the paper measured on the found classes: attention, copy scores, the
   position/token signal split, knock-outs, faithfulness, completeness, minimality.
"""

from __future__ import annotations

import math

import torch

from mikb.lm.ioi_trained import (
    build_vocab,
    copy_scores,
    eval_dataset,
    held_out_pairs,
    train_ioi,
)
from mikb.lm.lean_native import forward, to_bridge
from mikb.methods import activation_patching, path_patching
from mikb.methods.ioi_signals import paper_signal_grid
from mikb.methods.ablation import head_means, run_ablated
from mikb.methods.circuit_eval import (
    completeness,
    faithfulness,
    greedy_incompleteness,
    heads_from_classes,
    minimality_with_k,
    score_with_heads,
)
from mikb.methods.dla import head_dla
from mikb.methods.hooks import all_heads, head_label
from mikb.methods.ioi_common import (
    BACKUP,
    DUP,
    IND,
    NEG,
    NM,
    PREV,
    SINH,
    as_heads,
    attention_grid,
    mean_attention,
    top_heads,
)
from mikb.methods.metrics import logit_diff, logit_diff_metric
from mikb.methods.self_repair import self_repair
from mikb.reproduce import ReproContext, ScriptSpec

# Classes that are not among the paper's seven (the paper did not sweep the name movers' keys
# and values, and found no head raising the logit difference by attending to S).
SUPP = "direct S-suppression head"  # raises the logit difference but attends to S more than IO
NMKV = "name-mover key/value head"  # matters through the name movers' keys or values

SPEC = ScriptSpec(
    models=("ioi-trained-small",),
    params={
        "n_layers": 2, "n_heads": 4, "d_model": 64, "attn_only": True, "d_mlp": None,
        "steps": 1500, "batch": 128, "lr": 3e-3, "weight_decay": 0.01, "warmup_steps": 100,
        "eval_every": 50, "pool_size": 2000, "held_out_fraction": 0.2,
        "n_prompts": 200, "n_mean_prompts": 200,
        "logits_threshold": 0.05, "query_threshold": 0.03, "value_threshold": 0.02,
        "induction_key_threshold": 0.02, "backup_threshold": 0.05, "max_receivers": 4,
        "n_random_subsets": 8, "greedy_runs": 3, "greedy_steps": 4, "greedy_sample": 6,
        "copy_top_k": 5, "activation_patching": True,
    },
    quick_params={"steps": 1000, "n_prompts": 60, "n_mean_prompts": 60, "n_random_subsets": 2,
                  "greedy_runs": 1, "greedy_steps": 2, "greedy_sample": 4,
                  "activation_patching": False},
    timeout_s=2400,
    description="Train a 2-layer transformer on IOI text from scratch; discover its IOI circuit.",
)


def run(ctx: ReproContext) -> None:
    ctx.seed_everything()
    # Tiny matrices: with the default two threads a training step spends most of its time
    # handing work between threads (more than 10x slower on a busy machine).
    torch.set_num_threads(1)
    p = ctx.params
    vocab = build_vocab()
    held = held_out_pairs(len(vocab.names), float(p["held_out_fraction"]), ctx.seed)
    ds = eval_dataset(int(p["n_prompts"]), ctx.seed + 1000, vocab, held, held_out=True)
    ref = eval_dataset(int(p["n_mean_prompts"]), ctx.seed + 2000, vocab, held, held_out=True)
    seen = eval_dataset(int(p["n_prompts"]), ctx.seed + 3000, vocab, held, held_out=False)
    ctx.log(f"vocabulary {vocab.size} tokens, {len(vocab.names)} names, {len(held)} held-out pairs")
    res = train_ioi(p, vocab, held, ds, ctx.seed,
                    progress=lambda it: ctx.progress(it, desc="training", total=int(p["steps"])),
                    log=ctx.log)
    ctx.set_weights_source(f"trained here from scratch by this script (seed {ctx.seed}, "
                           f"{p['steps']} steps)")
    model = to_bridge(res.cfg, res.params, seed=ctx.seed)
    with torch.no_grad():
        lean_logits = forward(res.cfg, res.params, ds.tokens)
        clean_logits, clean = model.run_with_cache(ds.tokens)
        corr_logits, corrupted = model.run_with_cache(ds.corrupted_tokens)
        seen_logits = model(seen.tokens)
    ctx.metric("bridge_lean_max_abs_diff", (clean_logits - lean_logits).abs().max().item())
    ld_clean = logit_diff(clean_logits, ds).item()
    means = head_means(model, ref.corrupted_tokens)
    _behaviour_metrics(ctx, res, ds, seen, clean_logits, corr_logits, seen_logits, vocab)

    n_l, n_h = model.cfg.n_layers, model.cfg.n_heads
    pos, top_r = ds.pos, int(p["max_receivers"])
    metric = logit_diff_metric(ds)
    ctx.metric("flags", {**path_patching.FLAGS, "training": "next-token loss on IOI text",
                         "evaluation_prompts": "name pairs held out of training"})

    def sweep(receivers, comp, positions=None):
        receivers = [v for v in receivers if v[0] > 0]  # layer-0 heads have no senders
        if not receivers:
            return torch.full((n_l, n_h), float("nan"))
        return path_patching.sweep_senders_to_heads(model, ds, clean, corrupted, receivers, comp,
                                                    metric, ld_clean, positions=positions)

    # Attention from END and from S2, per head.
    att = {name: attention_grid(clean, ds, n_l, n_h, dst, src) for name, (dst, src) in {
        "END->IO": (ds.end, pos["IO"]), "END->S1": (ds.end, pos["S1"]), "END->S2": (ds.end, pos["S2"]),
        "S2->S1": (pos["S2"], pos["S1"]), "S2->S1+1": (pos["S2"], pos["S1"] + 1)}.items()}
    att_s = att["END->S1"] + att["END->S2"]

    # 1. heads -> logits: supporters split by where they look.
    to_logits = path_patching.sweep_senders_to_logits(model, ds, clean, corrupted, ld_clean)
    support = as_heads(top_heads(to_logits, p["logits_threshold"], sign=-1))
    nm = [v for v in support if att["END->IO"][v] > att_s[v]]
    supp = [v for v in support if v not in nm]
    neg = as_heads(top_heads(to_logits, p["logits_threshold"], sign=+1))
    # 2. heads -> name movers' queries.
    to_q = sweep(nm[:top_r], "q")
    sinh = as_heads(top_heads(to_q, p["query_threshold"], sign=-1))
    # 2b. heads -> name movers' keys and values (not swept in the paper).
    to_nm_k, to_nm_v = sweep(nm[:top_r], "k"), sweep(nm[:top_r], "v")
    nmkv = as_heads(top_heads(torch.minimum(torch.nan_to_num(to_nm_k, nan=0.0),
                                            torch.nan_to_num(to_nm_v, nan=0.0)),
                              p["query_threshold"], sign=-1))
    # 3. heads -> S-inhibition values (and keys).
    to_v, to_k = sweep(sinh[:top_r], "v"), sweep(sinh[:top_r], "k")
    v_heads = as_heads(top_heads(to_v, p["value_threshold"], sign=-1))
    dup = [v for v in v_heads if att["S2->S1"][v] >= att["S2->S1+1"][v]]
    ind = [v for v in v_heads if att["S2->S1"][v] < att["S2->S1+1"][v]]
    # 4. heads -> induction keys at S1+1.
    to_ind_k = sweep(ind[:top_r], "k", positions=pos["S1"] + 1)
    prev = as_heads(top_heads(to_ind_k, p["induction_key_threshold"], sign=-1))
    # 5. backups: direct effect that rises when the name movers are mean-ablated.
    backups: list = []
    if nm:
        later = [v for v in all_heads(model) if v[0] >= min(la for la, _ in nm) and v not in nm + supp + neg]
        rep = self_repair(model, ds, means, nm, later)
        backups = [v for v in later
                   if rep["downstream_de_change"][head_label(v)] > p["backup_threshold"] * rep["expected_drop"]]
    discovered = {PREV: prev, DUP: dup, IND: ind, SINH: sinh, NM: nm, NEG: neg, BACKUP: backups,
                  SUPP: supp, NMKV: nmkv}
    _record(ctx, discovered)
    ctx.metric("found_role_classes", [r for r, hs in discovered.items() if hs])
    ctx.metric("n_found_role_classes", sum(bool(hs) for hs in discovered.values()))
    ctx.metric("n_discovered_heads", len({v for hs in discovered.values() for v in hs}))
    ctx.metric("path_patching_to_logits", _grid(to_logits))
    ctx.metric("path_patching_to_nm_queries", _grid(to_q))
    ctx.metric("path_patching_to_sinh_values", _grid(to_v))
    ctx.metric("path_patching_to_sinh_keys", _grid(to_k))
    ctx.metric("path_patching_to_nm_keys", _grid(to_nm_k))
    ctx.metric("path_patching_to_nm_values", _grid(to_nm_v))
    ctx.metric("attention", att)

    # Class measurements (the paper's quantities, on the found heads).
    dla = head_dla(model, clean, ds)
    ctx.metric("dla_per_head", dla)
    ctx.metric("nm_path_to_logits_mean", _mean([to_logits[v] for v in nm]))
    ctx.metric("sinh_path_to_nm_queries_mean", _mean([to_q[v] for v in sinh]))
    # Summed over the heads found through the values: 0 when none was found (no effect).
    ctx.metric("dup_ind_to_sinh_values_total", _sum(to_v, dup + ind) or 0.0)
    ctx.metric("nm_attn_to_io", mean_attention(clean, ds, nm, ds.end, pos["IO"]) if nm else None)
    ctx.metric("nm_attn_to_s", (mean_attention(clean, ds, nm, ds.end, pos["S1"])
                                + mean_attention(clean, ds, nm, ds.end, pos["S2"])) if nm else None)
    ctx.metric("sinh_attn_to_s2", mean_attention(clean, ds, sinh, ds.end, pos["S2"]) if sinh else None)
    # Does the S-inhibition head find S2 because S is repeated, or because S2 is the last name?
    # On ABC prompts no name repeats; the same position still gets the attention if it is the latter.
    ctx.metric("sinh_attn_to_s2_on_abc", mean_attention(corrupted, ds, sinh, ds.end, pos["S2"])
               if sinh else None)
    ctx.metric("max_duplicate_token_attention_s2_to_s1", att["S2->S1"].max().item())
    ctx.metric("max_induction_attention_s2_to_s1p1", att["S2->S1+1"].max().item())
    k = int(p["copy_top_k"])
    pos_copy = copy_scores(model, vocab, all_heads(model), k=k)
    neg_copy = copy_scores(model, vocab, all_heads(model), k=k, negative=True)
    ctx.metric("copy_scores", {head_label(v): s for v, s in pos_copy.items()})
    ctx.metric("negative_copy_scores", {head_label(v): s for v, s in neg_copy.items()})
    ctx.metric("copy_score_name_movers", _mean([pos_copy[v] for v in nm]))
    ctx.metric("copy_score_all_heads", _mean(list(pos_copy.values())))
    ctx.metric("negative_copy_score_s_suppressors", _mean([neg_copy[v] for v in supp]))
    # Position vs token signal: the paper's six source datasets and linear fit (Appendix A).
    for key, val in paper_signal_grid(model, ds, sinh, ctx.seed, vocab.name_ids.tolist()).items():
        ctx.metric(f"sinh_{key}", val)
    if nm:
        ld_ko = logit_diff(run_ablated(model, ds.tokens, means, nm), ds).item()
        ctx.metric("nm_knockout_drop_fraction", (ld_clean - ld_ko) / ld_clean)

    # Circuit evaluation (mean ablation over ABC prompts of held-out pairs) of the circuit the
    # paper's procedure finds (every class but the key/value heads, which the paper did not
    # seek); the circuit with them added is scored too.
    classes = {r: hs for r, hs in discovered.items() if hs and r != NMKV}
    circuit = heads_from_classes(classes)
    faith = faithfulness(model, ds, means, circuit)
    with_kv = circuit | set(nmkv)
    ctx.metric("circuit_with_kv_heads_share_of_heads", len(with_kv) / (n_l * n_h))
    ctx.metric("faithfulness_fraction_with_kv_heads",
               faithfulness(model, ds, means, with_kv)["fraction"])
    ctx.metric("F_model", faith["F_model"])
    ctx.metric("F_circuit", faith["F_circuit"])
    ctx.metric("faithfulness_fraction", faith["fraction"])
    ctx.metric("circuit_share_of_heads", len(circuit) / (n_l * n_h))
    single = {head_label(v): score_with_heads(model, ds, means, {v}) / faith["F_model"]
              for v in all_heads(model)}
    ctx.metric("single_head_faithfulness", single)
    ctx.metric("single_head_faithfulness_max", max(single.values()))
    if classes:
        comp = completeness(model, ds, means, circuit, classes, n_random=int(p["n_random_subsets"]),
                            seed=ctx.seed)
        ctx.metric("completeness_max_gap_relative", comp["max_gap"] / abs(faith["F_model"]))
        greedy = greedy_incompleteness(model, ds, means, circuit, n_steps=int(p["greedy_steps"]),
                                       sample_size=int(p["greedy_sample"]),
                                       n_runs=int(p["greedy_runs"]), seed=ctx.seed)
        ctx.metric("greedy_incompleteness_relative", greedy["max_gap_relative"])
        mini = minimality_with_k(model, ds, means, circuit,
                                 {v: [set(hs)] for hs in classes.values() for v in hs})
        ctx.metric("minimality", mini)
        ctx.metric("minimality_min", min(mini.values()))
    if p["activation_patching"]:
        ctx.metric("act_patch_heads", activation_patching.patch_head_outputs(model, ds))
        ctx.metric("act_patch_resid_by_pos", activation_patching.patch_resid_by_pos(model, ds))
    _notes(ctx, discovered, att, sinh, ld_clean)
    _figures(ctx, res, dla, to_logits, to_q, att)


def _record(ctx: ReproContext, discovered: dict) -> None:
    ctx.metric("discovered_components", {r: [head_label(v) for v in sorted(hs)] for r, hs in discovered.items()})


def _behaviour_metrics(ctx, res, ds, seen, clean_logits, corr_logits, seen_logits, vocab) -> None:
    b = torch.arange(len(ds))
    end = clean_logits[b, ds.end]
    ld = end[b, ds.io_ids] - end[b, ds.s_ids]
    ctx.metric("n_prompts", len(ds))
    ctx.metric("vocab_size", vocab.size)
    ctx.metric("logit_diff_clean", ld.mean().item())
    ctx.metric("logit_diff_corrupted", logit_diff(corr_logits, ds).item())
    ctx.metric("io_over_s_accuracy", (ld > 0).float().mean().item())
    per_order = []
    for order in ("ABBA", "BABA"):
        idx = torch.tensor([i for i, o in enumerate(ds.orders) if o == order])
        per_order.append((ld[idx] > 0).float().mean().item())
        ctx.metric(f"io_over_s_accuracy_{order.lower()}", per_order[-1])
    ctx.metric("io_over_s_accuracy_worse_order", min(per_order))
    ctx.metric("io_prob_mean", end.softmax(-1)[b, ds.io_ids].mean().item())
    ctx.metric("io_top1_accuracy", (end.argmax(-1) == ds.io_ids).float().mean().item())
    sb = torch.arange(len(seen))
    s_end = seen_logits[sb, seen.end]
    ctx.metric("io_over_s_accuracy_training_pairs",
               (s_end[sb, seen.io_ids] > s_end[sb, seen.s_ids]).float().mean().item())
    ctx.metric("training_steps", res.steps[-1])
    ctx.metric("heldout_accuracy_curve", {"steps": res.steps, "accuracy": res.heldout_accuracy,
                                          "logit_diff": res.heldout_logit_diff})


def _notes(ctx, discovered, att, sinh, ld_clean) -> None:
    found = ", ".join(f"{r}: {' '.join(head_label(v) for v in sorted(hs))}" for r, hs in discovered.items() if hs)
    ctx.note(f"Found on held-out name pairs (mean logit difference {ld_clean:.2f}): {found}.")
    missing = [r for r in (DUP, IND, PREV, SINH, BACKUP, NEG) if not discovered[r]]
    if missing:
        ctx.note("No head was found for: " + ", ".join(missing) + ". Every prompt's S2 is its last "
                 "name, so a head can find S by position alone; a duplicate-token detector is not "
                 "needed for this training distribution.")


def _figures(ctx, res, dla, to_logits, to_q, att) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8.4, 3.2), constrained_layout=True)
    ax1.plot(res.steps, res.heldout_accuracy)
    ax1.set_ylim(0, 1.02)
    ax1.set_xlabel("training step")
    ax1.set_ylabel("accuracy (share of prompts, IO > S)")
    ax1.set_title("Held-out name pairs: IO above S", fontsize=9)
    ax2.plot(res.steps, res.heldout_logit_diff)
    ax2.axhline(0, color="grey", lw=0.8, ls=":")
    ax2.set_xlabel("training step")
    ax2.set_ylabel("logit(IO) - logit(S) (nats)")
    ax2.set_title("Held-out logit difference (above 0 = IO preferred)", fontsize=9)
    ctx.save_figure(fig, "training", caption="Accuracy and mean logit difference on prompts built "
                    "from name pairs never seen in training, during training.")

    panels = [(dla, "direct logit attribution (nats)", "DLA per head (blue = pushes IO over S)"),
              (to_logits, "relative change of logit diff", "Path patching head -> logits\n(red = head supports IO)"),
              (to_q, "relative change of logit diff", "Path patching head -> name-mover queries\n(red = head helps)")]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), constrained_layout=True)
    for ax, (grid, label, title) in zip(axes, panels, strict=True):
        data = torch.nan_to_num(grid.detach().float(), nan=0.0).numpy()
        lim = float(abs(data).max()) or 1.0
        im = ax.imshow(data, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_xticks(range(data.shape[1]))
        ax.set_yticks(range(data.shape[0]))
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_title(title, fontsize=8)
        fig.colorbar(im, ax=ax, label=label)
    ctx.save_figure(fig, "head_effects", caption="Per head: direct logit attribution at END, "
                    "path patching of its path to the logits, and of its path into the "
                    "discovered name movers' queries (ABC-corrupted sender; white = no "
                    "effect or no possible path).")

    fig, axes = plt.subplots(1, len(att), figsize=(12, 2.6), constrained_layout=True)
    for ax, (name, grid) in zip(axes, att.items(), strict=True):
        im = ax.imshow(grid.numpy(), cmap="Blues", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(grid.shape[1]))
        ax.set_yticks(range(grid.shape[0]))
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_title(f"attention {name}", fontsize=8)
    fig.colorbar(im, ax=axes, label="attention weight")
    ctx.save_figure(fig, "attention", caption="Mean attention of every head between the positions "
                    "the IOI classes are defined by (END to IO, S1, S2; S2 to S1 for duplicate-token "
                    "heads, S2 to S1+1 for induction heads).")


def _num(x) -> float | None:
    v = float(x.detach()) if hasattr(x, "detach") else float(x)
    return v if math.isfinite(v) else None


def _mean(vals) -> float | None:
    vals = [_num(v) for v in vals]
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else None


def _sum(grid: torch.Tensor, heads) -> float | None:
    vals = [_num(grid[v]) for v in heads]
    vals = [v for v in vals if v is not None]
    return sum(vals) if vals else None


def _grid(t: torch.Tensor) -> list[list[float | None]]:
    """A layer x head grid with NaN (no possible path) as None."""
    return [[_num(x) for x in row] for row in t.tolist()]
