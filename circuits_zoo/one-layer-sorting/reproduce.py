"""One-layer list sorting, trained from scratch: a 1-layer attention-only transformer learns to
write a list of numbers in ascending order after a separator (Urdshals & Urdshals 2025).
Training uses the lean plain-torch forward (``mikb.lm.sorting``); the trained weights are copied
into a ``TransformerBridge`` and every analysis runs there. The script scores every head by
where it attends from each output position (the next number to write, numbers already written),
by its full OV circuit (copying: own token highest; suppression: own token lowest), by its
direct logit contribution to the answer and to the number already written, and by ablation; the
copying head and the component that suppresses already-written numbers are found from those
scores, not given.
"""

from __future__ import annotations

import torch

from mikb.lm.lean_native import forward, to_bridge
from mikb.lm.sorting import SortTask, accuracy, sort_loss, step_masks, train_sorter
from mikb.lm.training import OptimConfig, downsample
from mikb.reproduce import ReproContext, ScriptSpec
from mikb.methods.zero_ablation import zero_head_hooks

SPEC = ScriptSpec(
    models=("sort-1l-attn-only",),
    params={"n_numbers": 48, "length": 8, "n_heads": 2, "d_model": 64, "steps": 2500, "batch": 256,
            "lr": 1e-3, "weight_decay": 0.01, "eval_every": 100, "n_eval": 2000},
    quick_params={"steps": 500, "n_eval": 1000},
    timeout_s=3600,
    description="Train a 1-layer attention-only transformer to sort lists; find its copying and suppression terms.",
)


def run(ctx: ReproContext) -> None:
    p = ctx.params
    ctx.seed_everything()
    task = SortTask(int(p["n_numbers"]), int(p["length"]))
    cfg = task.lean_config(int(p["n_heads"]), int(p["d_model"]))
    eval_tokens = task.batch(int(p["n_eval"]), torch.Generator().manual_seed(10_000 + ctx.seed))
    params, hist = train_sorter(
        task, cfg, steps=int(p["steps"]), batch=int(p["batch"]),
        optim=OptimConfig(lr=float(p["lr"]), weight_decay=float(p["weight_decay"])), seed=ctx.seed,
        eval_tokens=eval_tokens, eval_every=int(p["eval_every"]),
        progress=lambda it: ctx.progress(it, desc="training", total=int(p["steps"])))
    ctx.set_weights_source(f"trained here from scratch by this script (seed {ctx.seed}, {p['steps']} steps)")
    model = to_bridge(cfg, params, seed=ctx.seed)
    with torch.no_grad():
        logits, cache = model.run_with_cache(eval_tokens)
        lean = forward(cfg, params, eval_tokens)
    ctx.metric("bridge_lean_max_abs_diff", (logits - lean).abs().max().item())
    tok_acc, list_acc = accuracy(task, logits, eval_tokens)
    ctx.metric("token_accuracy", tok_acc)
    ctx.metric("list_accuracy", list_acc)
    ctx.metric("eval_loss", sort_loss(task, logits, eval_tokens).item())
    ctx.metric("chance_token_accuracy", 1.0 / task.n_numbers)
    masks = step_masks(task, eval_tokens)
    right = task.output_logits(logits).argmax(-1) == task.targets(eval_tokens)
    ctx.metric("token_accuracy_duplicate_steps", right[masks["duplicate"]].float().mean().item())
    ctx.metric("token_accuracy_distinct_steps", right[~masks["duplicate"] & ~masks["first"]].float().mean().item())
    ctx.metric("duplicate_step_fraction", masks["duplicate"].float().mean().item())
    ctx.log(f"token accuracy {tok_acc:.3f}, lists sorted exactly {list_acc:.3f}")
    heads = _head_scores(ctx, model, cache, eval_tokens, task, masks)
    _ablations(ctx, model, eval_tokens, task, tok_acc)
    _figures(ctx, hist, heads, cache, eval_tokens, task)


def _head_scores(ctx: ReproContext, model, cache, tokens: torch.Tensor, task: SortTask, masks: dict) -> dict:
    L, n_heads = task.length, ctx.params["n_heads"]
    pattern = cache["blocks.0.attn.hook_pattern"][:, :, L: 2 * L]  # [b, H, L(query), n_ctx]
    later = ~masks["first"]
    distinct = later & ~masks["duplicate"]
    tgt_keys, cur_keys, gt_keys = (masks[k][:, None].float() for k in ("target_keys", "current_keys", "greater_keys"))
    to_target = (pattern * tgt_keys).sum(-1)  # [b, H, L]
    to_current = (pattern * cur_keys).sum(-1)
    to_greater = (pattern * gt_keys).sum(-1)
    visible = masks["visible"].float().sum(-1)
    uniform_target = (masks["target_keys"].float().sum(-1) / visible).mean().item()
    # Among input numbers larger than the current one, the share of attention on the smallest of
    # them (the next number to write), against the share a uniform head would give it.
    nearest = torch.stack([(to_target[:, h] / to_greater[:, h].clamp_min(1e-9))[distinct] for h in range(n_heads)])
    uniform_nearest = (masks["target_keys"].float().sum(-1) / masks["greater_keys"].float().sum(-1).clamp_min(1))[distinct]
    w_e, w_u = model.W_E.detach()[: task.n_numbers], model.W_U.detach()
    attn = model.blocks[0].attn
    ov = torch.stack([w_e @ attn.W_V[h].detach() @ attn.W_O[h].detach() @ w_u for h in range(n_heads)])
    ids = torch.arange(task.n_numbers)
    ov_pos = (ov.argmax(-1) == ids).float().mean(-1)
    ov_neg = (ov.argmin(-1) == ids).float().mean(-1)
    ov_diag = (ov.diagonal(dim1=1, dim2=2) - ov.mean(-1)).mean(-1)  # own-token logit above the row mean
    # Direct logit contributions: each head's output and the direct path (embeddings) to the answer
    # and to the number already written (the current token), relative to the mean over numbers.
    z = cache["blocks.0.attn.hook_z"][:, L: 2 * L]  # [b, L, H, d_head]
    per_head = torch.einsum("bqhd,hdm,mv->bhqv", z, attn.W_O.detach(), w_u)
    direct = cache["blocks.0.hook_resid_pre"][:, L: 2 * L] @ w_u  # [b, L, vocab]
    comps = torch.cat([per_head, direct[:, None]], 1)  # [b, H+1, L, vocab]
    comps = comps - comps.mean(-1, keepdim=True)
    tgt = task.targets(tokens)
    cur = tokens[:, L: 2 * L].clamp_max(task.n_numbers - 1)
    on_target = comps.gather(-1, tgt[:, None, :, None].expand(-1, n_heads + 1, -1, 1))[..., 0]
    on_current = comps.gather(-1, cur[:, None, :, None].expand(-1, n_heads + 1, -1, 1))[..., 0]
    dla_target = torch.stack([on_target[:, c][later] for c in range(n_heads + 1)]).mean(-1)
    dla_current = torch.stack([on_current[:, c][distinct] for c in range(n_heads + 1)]).mean(-1)
    total_current = comps.sum(1).gather(-1, cur[..., None])[..., 0][distinct].mean().item()

    names = [f"0.{h}" for h in range(n_heads)] + ["direct path"]
    copy_head = int(dla_target[:n_heads].argmax())
    suppressor = int(dla_current.argmin())
    neg_head = int(ov_neg.argmax())
    ctx.metric("attn_to_next_number", to_target.mean(-1).mean(0))
    ctx.metric("attn_to_written_number", torch.stack([to_current[:, h][distinct] for h in range(n_heads)]).mean(-1))
    ctx.metric("attn_to_next_number_uniform", uniform_target)
    ctx.metric("nearest_greater_share", nearest.mean(-1))
    ctx.metric("nearest_greater_share_uniform", uniform_nearest.mean().item())
    ctx.metric("ov_copy_score", ov_pos)
    ctx.metric("ov_negative_copy_score", ov_neg)
    ctx.metric("ov_diagonal_minus_row_mean", ov_diag)
    ctx.metric("dla_answer_by_component", dla_target)
    ctx.metric("dla_written_number_by_component", dla_current)
    ctx.metric("component_names", names)
    ctx.metric("copying_head", names[copy_head])
    ctx.metric("copying_head_attn_to_next_number", to_target[:, copy_head].mean().item())
    ctx.metric("copying_head_attn_ratio_to_uniform", to_target[:, copy_head].mean().item() / uniform_target)
    ctx.metric("copying_head_nearest_greater_ratio_to_uniform",
               nearest[copy_head].mean().item() / uniform_nearest.mean().item())
    ctx.metric("copying_head_ov_copy_score", ov_pos[copy_head])
    ctx.metric("most_negative_ov_head", names[neg_head])
    ctx.metric("best_negative_copy_score", ov_neg[neg_head])
    ctx.metric("suppressing_component", names[suppressor])
    ctx.metric("suppressing_component_written_number_logit", dla_current[suppressor])
    ctx.metric("written_number_total_logit", total_current)
    found = [names[copy_head]] + ([names[suppressor]] if dla_current[suppressor] < 0 else [])
    ctx.metric("discovered_components", found)
    # Vocabulary splitting: how differently the heads share the answer across ranges of numbers
    # (0 = every head contributes equally everywhere, 1 = each range is handled by one head).
    n_bins = 4
    bins = (tgt * n_bins // task.n_numbers)[later]
    per_bin = torch.stack([torch.stack([on_target[:, h][later][bins == b].mean() for b in range(n_bins)])
                           for h in range(n_heads)])  # [H, bins]
    ctx.metric("dla_answer_by_head_and_number_bin", per_bin)
    clipped = per_bin.clamp_min(0)
    ctx.metric("vocab_split_index", ((clipped.max(0).values - clipped.min(0).values)
                                     / clipped.sum(0).clamp_min(1e-9)).mean().item())
    kind = "a head with a negative OV diagonal" if ov_neg[neg_head] >= 0.5 else "no head with a negative OV diagonal"
    ctx.note(
        f"Copying head {names[copy_head]}: from each output position it puts {to_target[:, copy_head].mean():.2f} "
        f"of its attention on the next number to write (a uniform head: {uniform_target:.2f}) and its OV circuit "
        f"maps {ov_pos[copy_head]:.0%} of numbers to themselves. The number just written gets a net logit of "
        f"{total_current:+.1f} against the mean; the most negative contribution to it comes from "
        f"{names[suppressor]} ({dla_current[suppressor]:+.1f}). This run has {kind} "
        f"(best negative copy score {ov_neg[neg_head]:.2f}, head {names[neg_head]}).")
    return {"to_target": to_target, "to_current": to_current, "ov": ov, "names": names, "copy_head": copy_head,
            "dla_current": dla_current, "dla_target": dla_target}


def _ablations(ctx: ReproContext, model, tokens: torch.Tensor, task: SortTask, base_acc: float) -> None:
    drops = []
    for h in range(ctx.params["n_heads"]):
        with torch.no_grad():
            logits = model.run_with_hooks(tokens, fwd_hooks=zero_head_hooks([(0, h)]))
        drops.append(base_acc - accuracy(task, logits, tokens)[0])
    ctx.metric("ablation_token_accuracy_drop", drops)
    ctx.metric("ablation_max_token_accuracy_drop", max(drops))


def _figures(ctx: ReproContext, hist, heads: dict, cache, tokens: torch.Tensor, task: SortTask) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = downsample(hist.steps, 200)
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    ax.plot([hist.steps[i] for i in idx], [hist.token_acc[i] for i in idx], label="numbers written correctly")
    ax.plot([hist.steps[i] for i in idx], [hist.list_acc[i] for i in idx], label="lists sorted exactly")
    ax.set_xlabel("training step")
    ax.set_ylabel("accuracy (fraction)")
    ax.set_ylim(0, 1)
    ax.legend(frameon=False, fontsize=8)
    ax.set_title("Held-out sorting accuracy during training", fontsize=9)
    fig.tight_layout()
    ctx.save_figure(fig, "accuracy_curves", caption="Per-number and whole-list accuracy on held-out lists.")

    n_heads = len(heads["names"]) - 1
    fig, axes = plt.subplots(1, n_heads, figsize=(3.4 * n_heads, 3.2), constrained_layout=True)
    vmax = float(heads["ov"].abs().max())
    for h, ax in enumerate(axes if n_heads > 1 else [axes]):
        im = ax.imshow(heads["ov"][h].numpy(), cmap="RdBu", vmin=-vmax, vmax=vmax)
        ax.set_xlabel("output number (logit)")
        ax.set_ylabel("attended number (input)")
        ax.set_title(f"head 0.{h} full OV circuit", fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.8, label="logit contribution (blue +, red -)")
    ctx.save_figure(fig, "ov_circuits", caption="W_E W_V W_O W_U for every head: a blue diagonal copies the attended "
                    "number, a red one would suppress it.")

    L = task.length
    ex = 0
    pat = cache["blocks.0.attn.hook_pattern"][ex, heads["copy_head"], L: 2 * L, :L].numpy()
    order = tokens[ex, :L].argsort().tolist()
    fig, ax = plt.subplots(figsize=(4.4, 3.8), constrained_layout=True)
    im = ax.imshow(pat[:, order], cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(L), [str(int(tokens[ex, i])) for i in order], fontsize=7)
    ax.set_yticks(range(L), ["SEP"] + [str(int(t)) for t in tokens[ex, L + 1: 2 * L]], fontsize=7)
    ax.set_xlabel("input number (sorted for display)")
    ax.set_ylabel("number at the query position")
    ax.set_title(f"Copying head {heads['names'][heads['copy_head']]} on one list", fontsize=9)
    fig.colorbar(im, ax=ax, label="attention weight")
    ctx.save_figure(fig, "copying_head_attention", caption="From each output position the copying head attends to "
                    "the smallest input number larger than the one just written (the cell right of the diagonal).")
