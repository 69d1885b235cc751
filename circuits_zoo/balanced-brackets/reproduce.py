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
    quick_params={"n_train": 6000, "n_test": 1500, "steps": 1200},
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

    # 4. Ablations: mean-ablate each head (its z) and each MLP, accuracy per failure kind.
    base = _category_accuracy(bridge, tokens, labels, ends, cats, [])
    abl = {}
    for layer in range(n_layers):
        z = cache[f"blocks.{layer}.attn.hook_z"]
        for h in range(n_heads):
            mean = z[:, :, h][real].mean(0)
            abl[f"{layer}.{h}"] = _category_accuracy(bridge, tokens, labels, ends, cats,
                                                     [(f"blocks.{layer}.attn.hook_z", _mean_head(h, mean))])
        m = cache[f"blocks.{layer}.hook_mlp_out"][real].mean(0)
        abl[f"mlp{layer}"] = _category_accuracy(bridge, tokens, labels, ends, cats,
                                                [(f"blocks.{layer}.hook_mlp_out", _mean_all(m))])
    ctx.metric("ablation_accuracy", abl)
    ctx.metric("baseline_category_accuracy", base)
    # The head whose ablation hurts negative-failure detection most, and how much it spares
    # elevation-failure detection.
    heads = [f"{layer}.{h}" for layer in range(1, n_layers) for h in range(n_heads)]
    neg_head = min(heads, key=lambda k: abl[k]["negative_only"])
    ctx.metric("negative_detector_head", neg_head)
    li, hi = (int(x) for x in neg_head.split("."))
    ctx.metric("negative_detector_attention_ratio", neg_ratio[li, hi])
    ctx.metric("negative_detector_ablation_negative_only_drop", base["negative_only"] - abl[neg_head]["negative_only"])
    ctx.metric("negative_detector_ablation_elevation_only_drop", base["elevation_only"] - abl[neg_head]["elevation_only"])
    ctx.metric("negative_detector_ablation_balanced_drop", base["balanced"] - abl[neg_head]["balanced"])
    ctx.metric("negative_detector_selectivity", (base["negative_only"] - abl[neg_head]["negative_only"])
               - (base["elevation_only"] - abl[neg_head]["elevation_only"]))
    ch = f"{count_head[0]}.{count_head[1]}"
    ctx.metric("counting_head_ablation_elevation_only_drop", base["elevation_only"] - abl[ch]["elevation_only"])
    ctx.metric("counting_head_ablation_mean_drop", sum(base[c] - abl[ch][c] for c in CATEGORIES) / len(CATEGORIES))
    ctx.note(f"This seed's circuit: head {ch} attends almost uniformly (mean total-variation distance from uniform "
             f"{float(uniform_tv[count_head]):.2f}) and its output predicts the running fraction of '(' with R^2 "
             f"{float(frac_r2[count_head]):.3f}. 'This prefix is negative' is linearly readable (probe accuracy "
             f"{probe_acc[1]:.3f}, {probe_acc[2]:.3f}, {probe_acc[3]:.3f} after layers 0, 1, 2; base rate "
             f"{float(neg.double().mean()):.2f}). Head {neg_head} carries it to [end]: ablating it drops accuracy on "
             f"negative-only failures from {base['negative_only']:.2f} to {abl[neg_head]['negative_only']:.2f}, on "
             f"elevation-only failures from {base['elevation_only']:.2f} to {abl[neg_head]['elevation_only']:.2f}.")
    _dla(ctx, bridge, tokens, ends, cats, cache)
    _plot_mechanism(ctx, uniform_tv, frac_r2, neg_ratio, abl, base, cache, tokens, ends, count_head)


def _probe_accuracy(x: torch.Tensor, y: torch.Tensor) -> float:
    """Training accuracy of a logistic-regression probe (full batch, LBFGS): an upper bound
    on what a linear read-out of ``x`` can do, enough to tell where the feature exists."""
    x = (x - x.mean(0)) / x.std(0).clamp(min=1e-6)
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")
    yf = y.double().float()

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(x @ w + b, yf) + 1e-4 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((x @ w + b > 0).long() == y).double().mean())


def _mean_head(h: int, mean: torch.Tensor):
    def hook(z, hook):  # noqa: ANN001 - TransformerLens hook signature
        z = z.clone()
        z[:, :, h] = mean
        return z

    return hook


def _mean_all(mean: torch.Tensor):
    def hook(x, hook):  # noqa: ANN001
        return mean.expand_as(x).clone()

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


def _plot_mechanism(ctx, uniform_tv, frac_r2, neg_ratio, abl, base, cache, tokens, ends, count_head) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8.6, 3.2), constrained_layout=True)
    comps = [f"{layer}.{h}" for layer in range(3) for h in range(2)] + ["mlp0", "mlp1", "mlp2"]
    drops = torch.tensor([[base[c] - abl[k][c] for c in CATEGORIES] for k in comps])
    lim = max(float(drops.abs().max()), 1e-6)
    im = axes[0].imshow(drops.T.numpy(), cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    axes[0].set_xticks(range(len(comps)), comps, rotation=45, fontsize=7)
    axes[0].set_yticks(range(len(CATEGORIES)), [c.replace("_", " ") for c in CATEGORIES], fontsize=7)
    axes[0].set_xlabel("mean-ablated component (layer.head or MLP)")
    axes[0].set_ylabel("test category")
    axes[0].set_title("Accuracy change when ablated\n(red = accuracy lost)", fontsize=9)
    fig.colorbar(im, ax=axes[0], shrink=0.85, label="accuracy change (fraction)")
    # Counting head's attention from [end] on one example.
    li, hi = count_head
    i = int(torch.argmax(ends))
    n = int(ends[i]) + 1
    pat = cache[f"blocks.{li}.attn.hook_pattern"][i, hi, :n, :n].numpy()
    im = axes[1].imshow(pat, cmap="Blues", vmin=0, vmax=max(float(pat[1:].max()), 1e-6) if False else 1, aspect="auto")
    labels = ["S"] + ["(" if int(t) == OPEN else ")" if int(t) == CLOSE else "E" if int(t) == END else "?"
                      for t in tokens[i, 1:n]]
    axes[1].set_xticks(range(n), labels, fontsize=7)
    axes[1].set_yticks(range(n), labels, fontsize=7)
    axes[1].set_xlabel("key token")
    axes[1].set_ylabel("query token")
    axes[1].set_title(f"Counting head {li}.{hi}: attention pattern", fontsize=9)
    fig.colorbar(im, ax=axes[1], shrink=0.85, label="attention weight")
    ctx.save_figure(fig, "mechanism", caption="Left: accuracy change per test category when each head or MLP is "
                    "mean-ablated; the two failure kinds depend on different components. Right: the counting head "
                    "spreads its attention evenly over the prefix, so its output is the fraction of '('.")
