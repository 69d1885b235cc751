"""n-digit addition in one layer, trained from scratch (Quirke & Barez 2023): a 1-layer
transformer with 3 heads and an MLP learns ``D..D + D'..D' = A..A`` with the answer written high
digit first. Training uses the lean plain-torch forward (``mikb.lm.addition``); the trained
weights are copied into a ``TransformerBridge`` for the analysis. The script measures per-digit
accuracy and accuracy split by carry type (none, simple carry, carry cascading through columns
that sum to 9), finds which digit pair each head reads for each answer digit from the attention
patterns, and ablates every head to see which answer digits and carry types depend on it.
"""

from __future__ import annotations

import torch

from mikb.lm.addition import AddTask, add_loss, digit_correct, train_adder
from mikb.lm.lean_native import forward, to_bridge
from mikb.lm.training import OptimConfig, downsample
from mikb.reproduce import ReproContext, ScriptSpec
from mikb.methods.zero_ablation import zero_head_hooks

SPEC = ScriptSpec(
    models=("add-1l-4digit",),
    params={"n_digits": 4, "n_heads": 3, "d_model": 96, "d_mlp": 384, "steps": 3000, "batch": 256, "lr": 1e-3,
            "weight_decay": 0.1, "betas": [0.9, 0.98], "sum9_frac": 0.2, "enrich_every": 5, "eval_every": 100,
            "n_eval": 20000, "n_eval_cascade": 10000, "attend_threshold": 0.25},
    quick_params={"steps": 700, "n_eval": 4000, "n_eval_cascade": 4000},
    timeout_s=3600,
    description="Train a 1-layer transformer on n-digit addition; per-digit, per-carry-type accuracy and head roles.",
)

KINDS = ("no carry", "simple carry", "cascade")


def run(ctx: ReproContext) -> None:
    p = ctx.params
    ctx.seed_everything()
    task = AddTask(int(p["n_digits"]))
    cfg = task.lean_config(int(p["n_heads"]), int(p["d_model"]), int(p["d_mlp"]))
    q_uniform = task.questions(int(p["n_eval"]), torch.Generator().manual_seed(10_000 + ctx.seed))
    # Cascades through a 9 are rare in uniform data (the point of the paper); a second held-out
    # set with half of the columns forced to sum to 9 gives enough of them to measure.
    q_cascade = task.questions(int(p["n_eval_cascade"]), torch.Generator().manual_seed(20_000 + ctx.seed), 0.5)
    t_uniform = task.tokens(q_uniform)
    params, hist = train_adder(
        task, cfg, steps=int(p["steps"]), batch=int(p["batch"]),
        optim=OptimConfig(lr=float(p["lr"]), weight_decay=float(p["weight_decay"]),
                          betas=(float(p["betas"][0]), float(p["betas"][1]))),
        seed=ctx.seed, sum9_frac=float(p["sum9_frac"]), enrich_every=int(p["enrich_every"]),
        eval_tokens=t_uniform[:2000], eval_every=int(p["eval_every"]),
        progress=lambda it: ctx.progress(it, desc="training", total=int(p["steps"])))
    ctx.set_weights_source(f"trained here from scratch by this script (seed {ctx.seed}, {p['steps']} steps)")
    model = to_bridge(cfg, params, seed=ctx.seed)
    with torch.no_grad():
        logits, cache = model.run_with_cache(t_uniform)
        lean = forward(cfg, params, t_uniform[:500])
    ctx.metric("bridge_lean_max_abs_diff", (logits[:500] - lean).abs().max().item())
    n = task.n_digits
    right = digit_correct(task, logits, t_uniform)
    names = [f"A{n - j}" for j in range(n + 1)]
    ctx.metric("answer_digit_names", names)
    ctx.metric("per_digit_accuracy", right.float().mean(0))
    ctx.metric("mean_digit_accuracy", right.float().mean().item())
    ctx.metric("exact_accuracy", right.all(-1).float().mean().item())
    ctx.metric("eval_loss", add_loss(task, logits, t_uniform).item())
    ctx.log(f"exact accuracy {right.all(-1).float().mean():.4f}; per digit {right.float().mean(0).tolist()}")
    both_q = torch.cat([q_uniform, q_cascade])
    both_t = task.tokens(both_q)
    with torch.no_grad():
        both_right = digit_correct(task, model(both_t), both_t)
    kind, depth = task.carry_types(both_q)
    _carry_metrics(ctx, both_right, kind, depth, right, task.carry_types(q_uniform))
    att = _attention_metrics(ctx, cache, task)
    _ablations(ctx, model, both_t, both_right, kind, task)
    _figures(ctx, hist, att, both_right, kind, depth, names)


def _acc(right: torch.Tensor, mask: torch.Tensor) -> float | None:
    return right[mask].float().mean().item() if mask.any() else None


def _carry_metrics(ctx, right, kind, depth, right_uniform, uniform_types) -> None:
    ctx.metric("digit_accuracy_no_carry", _acc(right, kind == 0))
    ctx.metric("digit_accuracy_simple_carry", _acc(right, kind == 1))
    ctx.metric("digit_accuracy_cascade", _acc(right, kind == 2))
    ctx.metric("digit_accuracy_cascade_depth1", _acc(right, (kind == 2) & (depth == 1)))
    ctx.metric("digit_accuracy_cascade_depth2plus", _acc(right, (kind == 2) & (depth >= 2)))
    ctx.metric("digit_count_by_carry_type", [int((kind == k).sum()) for k in range(3)])
    per = torch.tensor([[_acc(right[:, j], kind[:, j] == k) if (kind[:, j] == k).any() else float("nan")
                         for k in range(3)] for j in range(right.shape[1])])
    ctx.metric("digit_accuracy_by_digit_and_carry_type", [[None if v != v else v for v in row] for row in per.tolist()])
    max_depth = depth.max(-1).values
    any_carry = (kind > 0).any(-1)
    exact = right.all(-1)
    ctx.metric("exact_accuracy_questions_without_carry", _acc(exact, ~any_carry))
    ctx.metric("exact_accuracy_questions_simple_carries_only", _acc(exact, any_carry & (max_depth == 0)))
    ctx.metric("exact_accuracy_questions_cascade_depth1", _acc(exact, max_depth == 1))
    ctx.metric("exact_accuracy_questions_cascade_depth2plus", _acc(exact, max_depth >= 2))
    simple, deep = _acc(right, kind == 1), _acc(right, (kind == 2) & (depth >= 2))
    ctx.metric("simple_minus_deep_cascade_digit_accuracy", None if simple is None or deep is None else simple - deep)
    u_kind, u_depth = uniform_types
    ctx.metric("uniform_share_of_questions_with_cascade", (u_depth.max(-1).values >= 1).float().mean().item())
    ctx.metric("uniform_share_of_questions_with_deep_cascade", (u_depth.max(-1).values >= 2).float().mean().item())
    u_exact = right_uniform.all(-1)
    wrong = ~u_exact
    ctx.metric("uniform_errors_with_cascade_share", _acc((u_depth.max(-1).values >= 1), wrong))
    ctx.note(f"Digits with no carry in: {_acc(right, kind == 0):.4f} right; with a simple carry: "
             f"{simple:.4f}; with a carry cascading through one 9-column: {_acc(right, (kind == 2) & (depth == 1))}; "
             f"through two or more: {deep}.")


def _attention_metrics(ctx, cache, task: AddTask) -> torch.Tensor:
    n, n_heads = task.n_digits, ctx.params["n_heads"]
    pattern = cache["blocks.0.attn.hook_pattern"]  # [b, H, q, k]
    att = torch.zeros(n_heads, n + 1, n)  # head, answer digit (A_n first), column (units = 0)
    for j in range(n + 1):
        digit = n - j
        q = task.query_pos(digit)
        for c in range(n):
            att[:, j, c] = (pattern[:, :, q, task.x_pos(c)] + pattern[:, :, q, task.y_pos(c)]).mean(0)
    thr = float(ctx.params["attend_threshold"])
    reads = att >= thr
    own = [bool(reads[:, n - i, i].any()) for i in range(n)]  # A_i reads column i (base add)
    carry = [bool(reads[:, n - i, i - 1].any()) for i in range(1, n + 1)]  # A_i reads column i-1 (carry)
    ctx.metric("attention_head_digit_column", att)
    ctx.metric("own_column_read_fraction", sum(own) / len(own))
    ctx.metric("carry_column_read_fraction", sum(carry) / len(carry))
    ctx.metric("attention_on_digit_pairs_mean", att.sum(-1).mean().item())
    top = att.argmax(-1)  # [H, n+1]
    roles = {f"0.{h}": [f"A{n - j}<-col{int(top[h, j])}" for j in range(n + 1) if att[h, j].max() >= thr]
             for h in range(n_heads)}
    ctx.metric("head_reads", roles)
    offsets = {f"0.{h}": sorted({(n - j) - int(top[h, j]) for j in range(n + 1) if att[h, j].max() >= thr})
               for h in range(n_heads)}
    ctx.metric("head_column_offsets", offsets)
    ctx.metric("discovered_components", [f"0.{h}" for h in range(n_heads) if roles[f"0.{h}"]])
    ctx.note("Which digit pair each head reads for each answer digit (attention >= "
             f"{thr:g} on the two digits of a column): " + "; ".join(f"{h}: {', '.join(r) or 'none'}"
                                                                      for h, r in roles.items())
             + ". Offset 0 = the answer digit's own column (base add), 1 = the column below (carry), 2 = two below.")
    return att


def _ablations(ctx, model, tokens, base_right, kind, task: AddTask) -> torch.Tensor:
    n_heads = ctx.params["n_heads"]
    drops = torch.zeros(n_heads, task.n_digits + 1)
    kind_drops = torch.zeros(n_heads, 3)
    for h in range(n_heads):
        with torch.no_grad():
            logits = model.run_with_hooks(tokens, fwd_hooks=zero_head_hooks([(0, h)]))
        r = digit_correct(task, logits, tokens)
        drops[h] = base_right.float().mean(0) - r.float().mean(0)
        for k in range(3):
            kind_drops[h, k] = base_right[kind == k].float().mean() - r[kind == k].float().mean()
    ctx.metric("ablation_digit_accuracy_drop", drops)
    ctx.metric("ablation_carry_type_accuracy_drop", kind_drops)
    # Parallel streams: each head matters for some answer digits and much less for others.
    ctx.metric("ablation_max_drop", drops.max().item())
    ctx.metric("ablation_head_specialisation", (drops.max(-1).values - drops.min(-1).values).mean().item())
    return drops


def _figures(ctx, hist, att, right, kind, depth, names) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = downsample(hist.steps, 200)
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for j, name in enumerate(names):
        ax.plot([hist.steps[i] for i in idx], [hist.digit_acc[i][j] for i in idx], label=name, lw=1)
    ax.plot([hist.steps[i] for i in idx], [hist.exact_acc[i] for i in idx], label="whole answer", color="black")
    ax.set_xlabel("training step")
    ax.set_ylabel("held-out accuracy (fraction)")
    ax.set_ylim(0, 1)
    ax.legend(frameon=False, fontsize=7, ncol=3)
    ax.set_title("Answer digits are learned semi-independently", fontsize=9)
    fig.tight_layout()
    ctx.save_figure(fig, "digit_accuracy_curves", caption="Held-out accuracy of every answer digit during training.")

    n_heads, n_ans, n_cols = att.shape
    fig, axes = plt.subplots(1, n_heads, figsize=(3.0 * n_heads + 0.8, 2.8), constrained_layout=True)
    for h, ax in enumerate(axes):
        im = ax.imshow(att[h].numpy(), cmap="Blues", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(n_cols), [f"col {c}" for c in range(n_cols)], fontsize=7)
        ax.set_yticks(range(n_ans), names, fontsize=7)
        ax.set_xlabel("operand column (units = 0)")
        ax.set_ylabel("answer digit being predicted")
        ax.set_title(f"head 0.{h}", fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.8, label="attention weight on the pair")
    ctx.save_figure(fig, "head_digit_attention", caption="Attention from the position predicting each answer digit to "
                    "each column's two operand digits, per head.")

    acc = torch.full((len(names), 4), float("nan"))
    for j in range(len(names)):
        for k, mask in enumerate((kind[:, j] == 0, kind[:, j] == 1, (kind[:, j] == 2) & (depth[:, j] == 1),
                                  (kind[:, j] == 2) & (depth[:, j] >= 2))):
            if mask.sum() >= 20:
                acc[j, k] = right[mask, j].float().mean()
    fig, ax = plt.subplots(figsize=(5.2, 3.2), constrained_layout=True)
    im = ax.imshow(acc.numpy(), cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(4), ["no carry", "simple carry", "cascade x1", "cascade x2+"], fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("carry into this digit")
    ax.set_ylabel("answer digit")
    for j in range(len(names)):
        for k in range(4):
            if acc[j, k] == acc[j, k]:
                ax.text(k, j, f"{acc[j, k]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if acc[j, k] > 0.6 else "black")
    ax.set_title("Accuracy by carry type (blank: under 20 cases)", fontsize=9)
    fig.colorbar(im, ax=ax, label="accuracy (fraction)")
    ctx.save_figure(fig, "accuracy_by_carry_type", caption="Per-digit accuracy split by how the carry reaches the "
                    "digit: none, from the column below, or cascading through one or more columns that sum to 9.")
