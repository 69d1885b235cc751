"""Balanced-bracket classifier, trained from scratch: a 3-layer, 2-head transformer (d_model
56, MLP width 56, ReLU, no LayerNorm; the layer, head and width sizes of the ARENA bracket
model) learns to tell balanced from unbalanced parenthesis strings. Unlike ARENA's
bidirectional model, which reads its answer at [start], this one is causal and reads its
answer at the [end] token (which sees the whole string), so every analysis runs on a real
``TransformerBridge`` with hooks.

The script finds, by scores and interventions rather than by index: the head that attends
uniformly and carries the running fraction of '(' (the elevation count), the layer where a
linear probe first reads "this prefix went negative", the head that gathers that flag into
[end], and the effect of ablating each head and MLP on the two failure modes: unequal
counts (elevation failure) and a prefix with more ')' than '(' (negative failure).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mikb.lm.lean_native import LeanConfig, forward, init_params, to_bridge, trainable
from mikb.lm.training import OptimConfig, downsample, train
from mikb.methods.brackets import CATEGORIES, CLOSE, END, OPEN, make_dataset, prefix_stats, r_squared
from mikb.reproduce import ReproContext, ScriptSpec

SPEC = ScriptSpec(
    models=("brackets-3l-causal",),
    params={"max_len": 20, "n_train": 20000, "n_test": 3000, "steps": 4000, "batch": 128, "lr": 2e-3,
            "weight_decay": 0.01, "warmup_steps": 100, "eval_every": 100},
    quick_params={"n_train": 5000, "n_test": 1200, "steps": 1000},
    timeout_s=2700,
    description="Train a 3-layer, 2-head causal transformer to classify balanced brackets; find its elevation and negative-prefix circuits.",
)


def model_config(max_len: int) -> LeanConfig:
    return LeanConfig(n_layers=3, n_heads=2, d_model=56, d_head=28, d_vocab=5, n_ctx=max_len + 2, d_vocab_out=2,
                      d_mlp=56, act_fn="relu")


def end_logits(cfg: LeanConfig, params, tokens: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    logits = forward(cfg, params, tokens)
    return logits[torch.arange(tokens.shape[0]), ends]


def run(ctx: ReproContext) -> None:
    p = ctx.params
    ctx.seed_everything()
    max_len = int(p["max_len"])
    cfg = model_config(max_len)
    tr_tok, tr_lab, tr_end, _ = make_dataset(int(p["n_train"]), max_len, torch.Generator().manual_seed(ctx.seed))
    te_tok, te_lab, te_end, te_cat = make_dataset(int(p["n_test"]), max_len, torch.Generator().manual_seed(10_000 + ctx.seed))
    params = init_params(cfg, ctx.seed)
    gen = torch.Generator().manual_seed(ctx.seed + 1)
    curve: dict[str, list[float]] = {"step": [], "loss": [], "acc": []}

    def loss_fn(prm, step):
        idx = torch.randint(0, tr_tok.shape[0], (int(p["batch"]),), generator=gen)
        return F.cross_entropy(end_logits(cfg, prm, tr_tok[idx], tr_end[idx]), tr_lab[idx])

    def on_eval(step, prm):
        logits = end_logits(cfg, prm, te_tok, te_end)
        curve["step"].append(step)
        curve["loss"].append(float(F.cross_entropy(logits, te_lab)))
        curve["acc"].append(float((logits.argmax(-1) == te_lab).double().mean()))

    optim = OptimConfig(lr=float(p["lr"]), weight_decay=float(p["weight_decay"]), warmup_steps=int(p["warmup_steps"]))
    steps = train(params, trainable(cfg, params), loss_fn, int(p["steps"]), optim, int(p["eval_every"]), on_eval,
                  progress=lambda it: ctx.progress(it, desc="training", total=int(p["steps"])))
    ctx.set_weights_source(f"trained here from scratch by this script (seed {ctx.seed}, {steps} steps)")
    ctx.log(f"trained {steps} steps: test loss {curve['loss'][-1]:.4f}, accuracy {curve['acc'][-1]:.4f}")
    ctx.metric("steps_trained", steps)
    ctx.metric("test_accuracy", curve["acc"][-1])
    ctx.metric("test_loss_final", curve["loss"][-1])

    bridge = to_bridge(cfg, params, seed=ctx.seed)
    rows = torch.arange(te_tok.shape[0])
    with torch.no_grad():
        b_logits, cache = bridge.run_with_cache(te_tok)
    ctx.metric("bridge_lean_max_abs_diff", (b_logits[rows, te_end] - end_logits(cfg, params, te_tok, te_end)).abs().max())
    pred = b_logits[rows, te_end].argmax(-1)
    cats = list(te_cat)
    for c in CATEGORIES:
        mask = torch.tensor([x == c for x in cats])
        ctx.metric(f"accuracy_{c}", float((pred[mask] == te_lab[mask]).double().mean()) if mask.any() else None)
        ctx.metric(f"n_test_{c}", int(mask.sum()))
    _analyse(ctx, bridge, te_tok, te_lab, te_end, cats, cache)
    _plot_training(ctx, curve)


def _real_positions(tokens: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """Mask of bracket positions (between [start] and [end])."""
    pos = torch.arange(tokens.shape[1])[None]
    return (pos >= 1) & (pos < ends[:, None])


def _analyse(ctx: ReproContext, bridge, tokens, labels, ends, cats, cache) -> None:
    n_layers, n_heads = 3, 2
    rows = torch.arange(tokens.shape[0])
    elev, frac = prefix_stats(tokens)
    real = _real_positions(tokens, ends) | (torch.arange(tokens.shape[1])[None] == ends[:, None])
    # 1. The counting head: attends (nearly) uniformly over the prefix, and its output carries
    # the running fraction of '(' linearly. Scored for every head.
    uniform_tv = torch.zeros(n_layers, n_heads)
    frac_r2 = torch.zeros(n_layers, n_heads)
    for layer in range(n_layers):
        pat = cache[f"blocks.{layer}.attn.hook_pattern"]  # [b, h, q, k]
        z = cache[f"blocks.{layer}.attn.hook_z"]  # [b, q, h, d]
        seq = tokens.shape[1]
        unif = torch.tril(torch.ones(seq, seq)) / torch.arange(1, seq + 1)[:, None]
        for h in range(n_heads):
            tv = 0.5 * (pat[:, h] - unif[None]).abs().sum(-1)  # [b, q]
            uniform_tv[layer, h] = tv[real].mean()
            frac_r2[layer, h] = r_squared(z[:, :, h][real], frac[real])
    ctx.metric("head_uniformity_tv", uniform_tv)
    ctx.metric("head_open_fraction_r2", frac_r2)
    count_flat = int(frac_r2.flatten().argmax())
    count_head = divmod(count_flat, n_heads)
    ctx.metric("counting_head", f"{count_head[0]}.{count_head[1]}")
    ctx.metric("counting_head_open_fraction_r2", frac_r2[count_head])
    ctx.metric("counting_head_uniformity_tv", uniform_tv[count_head])

    # 2. Where "this prefix went negative" becomes linearly readable, per residual stream.
    brackets = _real_positions(tokens, ends)
    neg = (elev < 0)[brackets].long()
    probe_acc = []
    for name in ["hook_embed"] + [f"blocks.{layer}.hook_resid_post" for layer in range(n_layers)]:
        x = (cache[name] + (cache["hook_pos_embed"] if name == "hook_embed" else 0))[brackets]
        probe_acc.append(_probe_accuracy(x, neg))
    ctx.metric("negative_prefix_probe_accuracy_by_layer", probe_acc)  # [embed, after L0, L1, L2]
    ctx.metric("negative_prefix_base_rate", float(neg.double().mean()))
    ctx.metric("negative_prefix_probe_accuracy_max", max(probe_acc[1:]))
    ctx.metric("negative_prefix_probe_accuracy_embed", probe_acc[0])
    first = next((i for i, a in enumerate(probe_acc) if a >= 0.95), None)
    ctx.metric("negative_prefix_first_readable_layer", None if first is None or first == 0 else first - 1)

    # 3. The negative-detector head: from [end], puts its attention on positions whose prefix
    # is negative (scored on strings with such positions, as a ratio to their share of the prefix).
    has_neg = torch.tensor([c in ("negative_only", "both") for c in cats])
    negpos = (elev < 0) & brackets
    share = negpos[has_neg].double().sum(1) / (ends[has_neg] + 1).double()
    neg_ratio = torch.zeros(n_layers, n_heads)
    for layer in range(n_layers):
        pat = cache[f"blocks.{layer}.attn.hook_pattern"][rows, :, ends]  # [b, h, k]
        for h in range(n_heads):
            mass = (pat[has_neg, h] * negpos[has_neg]).sum(-1)
            neg_ratio[layer, h] = (mass / share).mean()
    ctx.metric("head_attention_to_negative_prefix_ratio", neg_ratio)

    # 4. Causal tests. A component is "patched" by replacing its output at [end] with its mean
    # over balanced strings: it then tells the rest of the model "nothing wrong here".
    cand = [(layer, h) for layer in range(1, n_layers) for h in range(n_heads)]
    neg_heads = [lh for lh in cand if neg_ratio[lh] >= 2.0] or [max(cand, key=lambda lh: float(neg_ratio[lh]))]
    bal = torch.tensor([c == "balanced" for c in cats])
    base = _category_accuracy(bridge, tokens, labels, ends, cats, [])
    ctx.metric("baseline_category_accuracy", base)
    ctx.metric("negative_detector_heads", [f"{layer}.{h}" for layer, h in neg_heads])
    ctx.metric("negative_detector_attention_ratio", min(float(neg_ratio[lh]) for lh in neg_heads))
    patched_neg = _category_accuracy(bridge, tokens, labels, ends, cats, _end_patch(
        [(f"blocks.{layer}.attn.hook_z", h) for layer, h in neg_heads], cache, ends, bal))
    ctx.metric("negative_heads_patched_accuracy", patched_neg)
    neg_drop = base["negative_only"] - patched_neg["negative_only"]
    elev_drop = base["elevation_only"] - patched_neg["elevation_only"]
    ctx.metric("negative_heads_patch_negative_only_drop", neg_drop)
    ctx.metric("negative_heads_patch_elevation_only_drop", elev_drop)
    ctx.metric("negative_detector_selectivity", neg_drop - elev_drop)
    mlp_patch = {}
    for layer in range(n_layers):
        acc = _category_accuracy(bridge, tokens, labels, ends, cats,
                                 _end_patch([(f"blocks.{layer}.hook_mlp_out", None)], cache, ends, bal))
        mlp_patch[f"mlp{layer}"] = acc
    ctx.metric("mlp_patched_accuracy", mlp_patch)
    # The count check: the MLP whose patch at [end] loses elevation-only failures while
    # sparing negative-only ones (the most selective one).
    sel = {k: (base["elevation_only"] - a["elevation_only"]) - (base["negative_only"] - a["negative_only"])
           for k, a in mlp_patch.items()}
    elev_mlp = max(sel, key=sel.get)
    ctx.metric("elevation_check_mlp", elev_mlp)
    ctx.metric("elevation_check_mlp_selectivity", sel[elev_mlp])
    ctx.metric("elevation_check_mlp_elevation_only_drop", base["elevation_only"] - mlp_patch[elev_mlp]["elevation_only"])
    # Counting heads: every layer-0 head whose output carries the open fraction (R^2 >= 0.9);
    # mean-ablating all of them (at every position) removes the count.
    counting = [h for h in range(n_heads) if frac_r2[0, h] >= 0.9] or [int(frac_r2[0].argmax())]
    ctx.metric("counting_heads", [f"0.{h}" for h in counting])
    z0 = cache["blocks.0.attn.hook_z"]
    abl = _category_accuracy(bridge, tokens, labels, ends, cats,
                             [("blocks.0.attn.hook_z", _mean_heads(counting, z0[real].mean(0)))])
    ctx.metric("counting_heads_ablated_accuracy", abl)
    ctx.metric("counting_heads_ablation_mean_drop", sum(base[c] - abl[c] for c in CATEGORIES) / len(CATEGORIES))
    ctx.metric("counting_heads_ablation_elevation_only_drop", base["elevation_only"] - abl["elevation_only"])
    heads = ", ".join(f"{layer}.{h}" for layer, h in neg_heads)
    ctx.note(f"This seed's circuit: layer-0 head(s) {', '.join(f'0.{h}' for h in counting)} attend almost uniformly "
             f"(best: {count_head[0]}.{count_head[1]}, total-variation distance from uniform "
             f"{float(uniform_tv[count_head]):.2f}, R^2 {float(frac_r2[count_head]):.3f} against the running fraction of "
             f"'('). 'This prefix is negative' is linearly readable after layer 0 (probe accuracy {probe_acc[1]:.3f}; "
             f"{probe_acc[0]:.3f} from the embeddings alone, base rate {float(neg.double().mean()):.2f}). Head(s) {heads} "
             f"attend from [end] to the negative positions (at least {min(float(neg_ratio[lh]) for lh in neg_heads):.1f}x "
             f"their share); patching them with their balanced-string mean drops accuracy on negative-only failures "
             f"from {base['negative_only']:.2f} to {patched_neg['negative_only']:.2f} but on elevation-only failures "
             f"only from {base['elevation_only']:.2f} to {patched_neg['elevation_only']:.2f}. The count check runs "
             f"through {elev_mlp}: patching it at [end] drops elevation-only accuracy to "
             f"{mlp_patch[elev_mlp]['elevation_only']:.2f} (negative-only: {mlp_patch[elev_mlp]['negative_only']:.2f}).")
    dla = _dla(ctx, bridge, tokens, ends, cats, cache)
    _plot_mechanism(ctx, dla, cache, tokens, ends, count_head)
    _plot_failure_modes(ctx, base, patched_neg, mlp_patch[elev_mlp], heads, elev_mlp)


def _end_patch(spec, cache, ends, ref_mask):
    """Hooks that set each named activation (a head of hook_z, or a whole hook) at the [end]
    position to its mean over the reference strings' [end] positions."""
    rows = torch.arange(ends.shape[0])
    hooks = []
    for name, head in spec:
        ref = cache[name][rows, ends][ref_mask].mean(0)

        def hook(x, hook, head=head, ref=ref):  # noqa: ANN001 - TransformerLens hook signature
            x = x.clone()
            if head is None:
                x[rows, ends] = ref
            else:
                x[rows, ends, head] = ref[head]
            return x

        hooks.append((name, hook))
    return hooks


def _probe_accuracy(x: torch.Tensor, y: torch.Tensor) -> float:
    """Training accuracy of a logistic-regression probe (full batch, LBFGS): an upper bound
    on what a linear read-out of ``x`` can do, enough to tell where the feature exists."""
    x = (x - x.mean(0)) / x.std(0).clamp(min=1e-6)
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=100, line_search_fn="strong_wolfe")
    yf = y.double().float()

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(x @ w + b, yf) + 1e-4 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((x @ w + b > 0).long() == y).double().mean())


def _mean_heads(heads: list[int], mean: torch.Tensor):
    def hook(z, hook):  # noqa: ANN001 - TransformerLens hook signature
        z = z.clone()
        for h in heads:
            z[:, :, h] = mean[h]
        return z

    return hook


def _category_accuracy(bridge, tokens, labels, ends, cats, hooks) -> dict[str, float]:
    with torch.no_grad():
        logits = bridge.run_with_hooks(tokens, fwd_hooks=hooks) if hooks else bridge(tokens)
    pred = logits[torch.arange(tokens.shape[0]), ends].argmax(-1)
    out = {}
    for c in CATEGORIES:
        mask = torch.tensor([x == c for x in cats])
        out[c] = float((pred[mask] == labels[mask]).double().mean()) if mask.any() else 0.0
    return out


def _dla(ctx: ReproContext, bridge, tokens, ends, cats, cache) -> None:
    """Direct logit attribution at [end]: each head's and MLP's contribution to the
    'unbalanced minus balanced' logit, averaged per category."""
    rows = torch.arange(tokens.shape[0])
    w_u = bridge.W_U.detach()
    direction = w_u[:, 1] - w_u[:, 0]
    out = {}
    for layer in range(3):
        z = cache[f"blocks.{layer}.attn.hook_z"][rows, ends]  # [b, h, d]
        w_o = bridge.blocks[layer].attn.W_O.detach()  # [h, d, model]
        per_head = torch.einsum("bhd,hdm,m->bh", z, w_o, direction)
        mlp = cache[f"blocks.{layer}.hook_mlp_out"][rows, ends] @ direction
        for h in range(2):
            out[f"{layer}.{h}"] = {c: float(per_head[torch.tensor([x == c for x in cats]), h].mean()) for c in CATEGORIES}
        out[f"mlp{layer}"] = {c: float(mlp[torch.tensor([x == c for x in cats])].mean()) for c in CATEGORIES}
    ctx.metric("direct_logit_attribution_unbalanced", out)
    return out


def _plot_training(ctx: ReproContext, curve: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = downsample(curve["step"], 60)
    fig, ax = plt.subplots(figsize=(5.4, 3.0))
    ax.plot([curve["step"][i] for i in idx], [curve["acc"][i] for i in idx])
    ax.set_xlabel("training step")
    ax.set_ylabel("test accuracy (fraction)")
    ax.set_ylim(0.4, 1.02)
    ax2 = ax.twinx()
    ax2.plot([curve["step"][i] for i in idx], [curve["loss"][i] for i in idx], color="tab:orange")
    ax2.set_ylabel("test loss (nats)")
    ax.set_title("Bracket classifier training: accuracy (blue), loss (orange)", fontsize=9)
    fig.tight_layout()
    ctx.save_figure(fig, "training", caption="Accuracy and cross-entropy on the fixed test set during training.")


def _plot_mechanism(ctx, dla, cache, tokens, ends, count_head) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8.8, 3.3), constrained_layout=True)
    comps = list(dla)
    grid = torch.tensor([[dla[k][c] for c in CATEGORIES] for k in comps])
    lim = max(float(grid.abs().max()), 1e-6)
    im = axes[0].imshow(grid.T.numpy(), cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    axes[0].set_xticks(range(len(comps)), comps, rotation=45, fontsize=7)
    axes[0].set_yticks(range(len(CATEGORIES)), [c.replace("_", " ") for c in CATEGORIES], fontsize=7)
    axes[0].set_xlabel("component at [end] (layer.head or MLP)")
    axes[0].set_ylabel("test category")
    axes[0].set_title("Direct logit attribution\n(blue = pushes towards 'unbalanced')", fontsize=9)
    fig.colorbar(im, ax=axes[0], shrink=0.85, label="logit difference (unbalanced - balanced)")
    li, hi = count_head
    i = int(torch.argmax(ends))
    n = int(ends[i]) + 1
    pat = cache[f"blocks.{li}.attn.hook_pattern"][i, hi, :n, :n].numpy()
    im = axes[1].imshow(pat, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    labels = ["S"] + ["(" if int(t) == OPEN else ")" if int(t) == CLOSE else "E" if int(t) == END else "?"
                      for t in tokens[i, 1:n]]
    axes[1].set_xticks(range(n), labels, fontsize=7)
    axes[1].set_yticks(range(n), labels, fontsize=7)
    axes[1].set_xlabel("key token")
    axes[1].set_ylabel("query token")
    axes[1].set_title(f"Counting head {li}.{hi}: attention pattern", fontsize=9)
    fig.colorbar(im, ax=axes[1], shrink=0.85, label="attention weight")
    ctx.save_figure(fig, "mechanism", caption="Left: each head's and MLP's direct contribution at [end] to the "
                    "unbalanced-minus-balanced logit, averaged per kind of string. Right: the counting head spreads "
                    "its attention evenly over the prefix (S = [start], E = [end]), so its output is the fraction of '('.")


def _plot_failure_modes(ctx, base, patched_neg, patched_mlp, heads: str, mlp: str) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    width = 0.27
    for j, (acc, label) in enumerate(((base, "trained model"), (patched_neg, f"negative head(s) {heads} patched"),
                                      (patched_mlp, f"{mlp} patched"))):
        ax.bar([i + (j - 1) * width for i in range(len(CATEGORIES))], [acc[c] for c in CATEGORIES], width, label=label)
    ax.set_xticks(range(len(CATEGORIES)), [c.replace("_", " ") for c in CATEGORIES], fontsize=8)
    ax.set_xlabel("kind of test string")
    ax.set_ylabel("accuracy (fraction)")
    ax.set_ylim(0, 1.05)
    ax.legend(frameon=False, fontsize=7, loc="lower left")
    ax.set_title("Two failure modes, two paths: patching at [end] with balanced-string means", fontsize=9)
    fig.tight_layout()
    ctx.save_figure(fig, "failure_modes", caption="Accuracy per kind of string after patching, at [end], the "
                    "negative-detector head(s) or the count-check MLP with their mean over balanced strings. Each "
                    "patch removes the detection of one failure mode and leaves the other.")
