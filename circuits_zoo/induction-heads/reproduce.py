"""Induction heads, trained from scratch: a 2-layer attention-only transformer
(TransformerLens 4, TransformerBridge.boot_native) is trained on random tokens in which a
random segment recurs at a random distance, and evaluated on the classic test: a random
sequence followed by its exact repeat. The script records the loss curves and the phase change, scores every head as a
previous-token and induction head, measures K-composition between the two, and ablates the
induction head to show that in-context copying depends on it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mikb.methods.induction import (
    diagonal_scores,
    half_losses,
    k_composition,
    ov_copying_accuracy,
    repeated_segments,
    repeated_tokens,
)
from mikb.reproduce import ReproContext, ScriptSpec
from mikb.methods.zero_ablation import zero_head_hooks

SPEC = ScriptSpec(
    models=("attn-only-2l",),
    params={"steps": 4000, "batch": 64, "n_ctx": 48, "half": 20, "vocab": 50, "d_model": 64, "n_heads": 4,
            "lr": 3e-3, "weight_decay": 0.01, "eval_every": 25},
    quick_params={"steps": 1800},
    timeout_s=1800,
    description="Train a 2-layer attention-only transformer on repeated random tokens; find its induction circuit.",
)


def build_model(p: dict, seed: int):
    from transformer_lens.model_bridge import TransformerBridge
    import transformer_lens.model_bridge.sources  # noqa: F401 - registers boot_native

    cfg = {"n_layers": 2, "n_heads": p["n_heads"], "d_model": p["d_model"], "d_head": p["d_model"] // p["n_heads"],
           "d_vocab": p["vocab"], "n_ctx": p["n_ctx"], "attn_only": True, "act_fn": "gelu",
           "normalization_type": None, "seed": seed}
    return TransformerBridge.boot_native(cfg)


def run(ctx: ReproContext) -> None:
    p = ctx.params
    ctx.seed_everything()
    model = build_model(p, ctx.seed)
    ctx.set_weights_source(f"trained here from scratch by this script (seed {ctx.seed}, {p['steps']} steps)")
    gen = torch.Generator().manual_seed(ctx.seed)
    eval_tokens = repeated_tokens(256, p["half"], p["vocab"], torch.Generator().manual_seed(10_000 + ctx.seed))
    opt = torch.optim.AdamW(model.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
    steps, first_curve, second_curve = [], [], []
    for step in ctx.progress(range(p["steps"] + 1), desc="training", total=p["steps"] + 1):
        if step % p["eval_every"] == 0:
            model.eval()
            with torch.no_grad():
                first, second = half_losses(model(eval_tokens), eval_tokens, p["half"])
            steps.append(step)
            first_curve.append(first)
            second_curve.append(second)
            model.train()
        if step == p["steps"]:
            break
        tokens = repeated_segments(p["batch"], p["n_ctx"], p["vocab"], gen)
        logits = model(tokens)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, p["vocab"]), tokens[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    ctx.log(f"final losses: first half {first_curve[-1]:.3f}, repeated half {second_curve[-1]:.3f}")
    _loss_metrics(ctx, steps, first_curve, second_curve)
    _head_metrics(ctx, model, eval_tokens)


def _loss_metrics(ctx: ReproContext, steps: list[int], first: list[float], second: list[float]) -> None:
    import math

    chance = math.log(ctx.params["vocab"] - 1)
    ctx.metric("loss_first_half", first[-1])
    ctx.metric("loss_repeated_half", second[-1])
    ctx.metric("repeated_half_loss_ratio", second[-1] / first[-1])
    # Phase change: where the repeated-half loss crosses halfway between its plateau and its
    # final value, and how much of the drop happens within 10% of training around it.
    start, end = max(second[: max(2, len(second) // 10)]), second[-1]
    midpoint = (start + end) / 2
    cross = next(i for i, v in enumerate(second) if v <= midpoint)
    window = max(1, len(steps) // 20)
    lo, hi = max(0, cross - window), min(len(second) - 1, cross + window)
    sharpness = (second[lo] - second[hi]) / max(1e-9, start - end)
    ctx.metric("phase_change_step", steps[cross])
    ctx.metric("phase_change_drop_fraction", sharpness)
    ctx.metric("chance_loss", chance)
    ctx.note(f"The repeated-half loss fell from {start:.2f} to {end:.2f} nats; half of that drop was reached at step "
             f"{steps[cross]}, and {sharpness:.0%} of it happened within {2 * window * (steps[1] - steps[0])} steps "
             "(10% of training) around that point.")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot(steps, first, label="first half (unpredictable)")
    ax.plot(steps, second, label="repeated half")
    ax.axhline(chance, color="grey", lw=0.8, ls=":", label="uniform guess")
    ax.axvline(steps[cross], color="black", lw=0.8, ls="--", label="phase change")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss (nats)")
    ax.legend(frameon=False, fontsize=8)
    ax.set_title("Loss on the repeated half drops abruptly when induction heads form", fontsize=9)
    ctx.save_figure(fig, "loss_curves", caption="Per-half loss during training; the dashed line marks the phase change.")


def _head_metrics(ctx: ReproContext, model, tokens: torch.Tensor) -> None:
    half = ctx.params["half"]
    n_heads = ctx.params["n_heads"]
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens)
    prev = torch.stack([diagonal_scores(cache[f"blocks.{layer}.attn.hook_pattern"], 1, 1) for layer in (0, 1)])
    ind = torch.stack([diagonal_scores(cache[f"blocks.{layer}.attn.hook_pattern"], half - 1, half + 1)
                       for layer in (0, 1)])
    best_prev = int(prev[0].argmax())
    best_ind = int(ind[1].argmax())
    ctx.metric("previous_token_scores", prev)
    ctx.metric("induction_scores", ind)
    ctx.metric("best_previous_token_head", f"0.{best_prev}")
    ctx.metric("best_induction_head", f"1.{best_ind}")
    ctx.metric("previous_token_score_best_l0", prev[0, best_prev])
    ctx.metric("induction_score_best_l1", ind[1, best_ind])
    ctx.metric("induction_score_max_l0", ind[0].max())
    ctx.metric("induction_margin_l1_over_l0", ind[1, best_ind] - ind[0].max())
    blocks = model.blocks
    w_e, w_u = model.W_E.detach(), model.W_U.detach()
    a1 = blocks[1].attn
    ctx.metric("induction_head_ov_copying", ov_copying_accuracy(
        w_e, a1.W_V[best_ind].detach(), a1.W_O[best_ind].detach(), w_u))
    a0 = blocks[0].attn
    kcomp = torch.tensor([[k_composition(a1.W_Q[j].detach(), a1.W_K[j].detach(), a0.W_V[i].detach(), a0.W_O[i].detach())
                           for j in range(n_heads)] for i in range(n_heads)])
    ctx.metric("k_composition_scores", kcomp)
    ctx.metric("k_composition_prev_to_induction", kcomp[best_prev, best_ind])
    ctx.metric("k_composition_ratio_to_median", kcomp[best_prev, best_ind] / kcomp.median())
    # K-composition, causally: recompute only the induction head's keys from a residual stream
    # in which the previous-token head is zero-ablated, and see its induction score collapse.
    k_only = _induction_score_with_ablated_keys(model, tokens, best_prev, best_ind, half)
    ctx.metric("induction_score_prev_head_ablated_in_keys", k_only)
    ctx.metric("k_composition_induction_drop_fraction", 1 - k_only / float(ind[1, best_ind]))
    _, base_second = half_losses(logits, tokens, half)
    ablated = _loss_with_zeroed_head(model, tokens, 1, best_ind)
    no_prev = _loss_with_zeroed_head(model, tokens, 0, best_prev)
    ctx.metric("ablate_induction_head_repeated_loss", ablated)
    ctx.metric("ablate_induction_head_loss_increase", ablated - base_second)
    ctx.metric("ablate_previous_token_head_loss_increase", no_prev - base_second)
    ctx.note(f"This seed's circuit: previous-token head 0.{best_prev} (score {prev[0, best_prev]:.2f}) composes "
             f"through its keys with induction head 1.{best_ind} (score {ind[1, best_ind]:.2f}); zero-ablating 1.{best_ind} "
             f"raises the repeated-half loss from {base_second:.2f} to {ablated:.2f} nats.")
    _plot_heads(ctx, prev, ind, cache, best_ind)


def _induction_score_with_ablated_keys(model, tokens: torch.Tensor, prev_head: int, ind_head: int, half: int) -> float:
    # run_with_cache ignores fwd_hooks on TransformerBridge 4.3, so hooks are installed with
    # the model.hooks() context instead.
    with torch.no_grad():
        with model.hooks(fwd_hooks=zero_head_hooks([(0, prev_head)])):
            _, ablated = model.run_with_cache(tokens, names_filter="blocks.1.attn.hook_k")
        keys = ablated["blocks.1.attn.hook_k"]

        def swap_keys(k: torch.Tensor, hook) -> torch.Tensor:  # noqa: ANN001
            return keys

        with model.hooks(fwd_hooks=[("blocks.1.attn.hook_k", swap_keys)]):
            _, cache = model.run_with_cache(tokens, names_filter="blocks.1.attn.hook_pattern")
    return float(diagonal_scores(cache["blocks.1.attn.hook_pattern"], half - 1, half + 1)[ind_head])


def _loss_with_zeroed_head(model, tokens: torch.Tensor, layer: int, head: int) -> float:
    with torch.no_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=zero_head_hooks([(layer, head)]))
    return half_losses(logits, tokens, tokens.shape[1] // 2)[1]


def _plot_heads(ctx: ReproContext, prev: torch.Tensor, ind: torch.Tensor, cache, best_ind: int) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(7.6, 2.8), constrained_layout=True)
    for ax, scores, title in ((axes[0], prev, "previous-token score"), (axes[1], ind, "induction score")):
        im = ax.imshow(scores.numpy(), vmin=0, vmax=1, cmap="Blues", aspect="auto")
        ax.set_yticks([0, 1], ["0", "1"])
        ax.set_xticks(range(scores.shape[1]))
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_title(title, fontsize=9)
        for (i, j), v in _cells(scores):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v > 0.6 else "black")
    fig.colorbar(im, ax=axes, shrink=0.8, label="score (attention weight, 0 to 1)")
    ctx.save_figure(fig, "head_scores", caption="Previous-token and induction scores of every head.")
    pattern = cache["blocks.1.attn.hook_pattern"][0, best_ind].numpy()
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    im = ax.imshow(pattern, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, shrink=0.8, label="attention weight")
    ax.set_xlabel("key position")
    ax.set_ylabel("query position")
    ax.set_title(f"Attention of induction head 1.{best_ind} on a repeated sequence", fontsize=9)
    ctx.save_figure(fig, "induction_pattern", caption="The induction head attends to the token after the previous occurrence (the off-diagonal stripe).")


def _cells(scores: torch.Tensor):
    for i in range(scores.shape[0]):
        for j in range(scores.shape[1]):
            yield (i, j), float(scores[i, j])
