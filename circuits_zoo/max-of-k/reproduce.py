"""Max-of-K (Gross et al. 2024), trained from scratch: a one-layer, one-head, attention-only
transformer (vocabulary 64, d_model 32, K = 4, no biases, no normalisation: the setup of
the authors' released Max-of-4 configuration) learns to output the largest of four tokens.

Training runs in plain torch (``mikb.lm.lean_native``); the trained weights are copied into a
``TransformerBridge.boot_native`` model, whose logits and attention are checked against the
path tables used for the analysis. The script measures the QK circuit (does the last
position score larger keys higher?), the attention it pays to the maximum, the full OV circuit
(does it copy the attended token?), ablations of each path, the exact accuracy over all
64^4 = 16.8M inputs (computed from the path tables, which is exact for this model), and a
sound accuracy lower bound that uses only the mechanism.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mikb.lm.lean_native import forward, init_params, to_bridge, trainable
from mikb.lm.training import OptimConfig, downsample, train
from mikb.methods.max_of_k import (
    brute_force,
    certified_bound,
    model_config,
    ov_copying,
    path_logits,
    paths,
    qk_monotonicity,
    sample_batch,
)
from mikb.reproduce import ReproContext, ScriptSpec

SPEC = ScriptSpec(
    models=("max-of-4-1l",),
    # The authors' Max-of-4 recipe: AdamW, lr 1e-3, betas (0.9, 0.999), batch 128, 3000 steps.
    params={"d_vocab": 64, "k": 4, "d_model": 32, "steps": 3000, "batch": 128, "lr": 1e-3,
            "weight_decay": 0.01, "eval_every": 100, "brute_force": True},
    quick_params={"steps": 600, "brute_force": False},
    timeout_s=900,
    description="Train a 1-layer attention-only transformer to output the max of 4 tokens; QK/OV circuits, brute force.",
)


def run(ctx: ReproContext) -> None:
    p = ctx.params
    ctx.seed_everything()
    v, k = int(p["d_vocab"]), int(p["k"])
    cfg = model_config(v, k, int(p["d_model"]))
    params = init_params(cfg, ctx.seed)
    gen = torch.Generator().manual_seed(ctx.seed)
    test = sample_batch(4096, v, k, torch.Generator().manual_seed(10_000 + ctx.seed))
    curve: dict[str, list[float]] = {"step": [], "loss": [], "acc": []}

    def loss_fn(prm, step):
        tokens = sample_batch(int(p["batch"]), v, k, gen)
        return F.cross_entropy(forward(cfg, prm, tokens, last_only=True), tokens.max(1).values)

    def on_eval(step, prm):
        logits = forward(cfg, prm, test, last_only=True)
        curve["step"].append(step)
        curve["loss"].append(float(F.cross_entropy(logits, test.max(1).values)))
        curve["acc"].append(float((logits.argmax(-1) == test.max(1).values).double().mean()))

    optim = OptimConfig(lr=float(p["lr"]), weight_decay=float(p["weight_decay"]))
    steps = train(params, trainable(cfg, params), loss_fn, int(p["steps"]), optim, int(p["eval_every"]), on_eval,
                  progress=lambda it: ctx.progress(it, desc="training", total=int(p["steps"])))
    ctx.set_weights_source(f"trained here from scratch by this script (seed {ctx.seed}, {steps} steps)")
    ctx.log(f"trained {steps} steps: test loss {curve['loss'][-1]:.4f}, accuracy {curve['acc'][-1]:.4f}")
    ctx.metric("steps_trained", steps)
    ctx.metric("test_loss_final", curve["loss"][-1])
    ctx.metric("sampled_accuracy", curve["acc"][-1])
    ctx.metric("chance_accuracy", 1.0 / v)

    bridge = to_bridge(cfg, params, seed=ctx.seed)
    with torch.no_grad():
        b_logits, cache = bridge.run_with_cache(test)
    pt = paths(cfg, params)
    t_logits = path_logits(pt, test)
    ctx.metric("bridge_path_max_abs_diff", (b_logits[:, -1] - t_logits).abs().max())
    attn = cache["blocks.0.attn.hook_pattern"][:, 0, -1]  # [batch, key]
    mx = test.max(1).values
    on_max = (attn * (test == mx[:, None])).sum(-1)
    ctx.metric("attention_on_max_mean", on_max.mean())
    top = test[torch.arange(test.shape[0]), attn.argmax(-1)]
    ctx.metric("most_attended_is_max_fraction", float((top == mx).double().mean()))
    _circuits(ctx, pt, v, k)
    _ablations(ctx, pt, test)
    if p["brute_force"]:
        bf = brute_force(pt, v, k)
        ctx.metric("brute_force_accuracy", bf["accuracy"])
        ctx.metric("brute_force_n_inputs", bf["n_inputs"])
        ctx.metric("brute_force_n_wrong", bf["n_wrong"])
        ctx.metric("brute_force_attention_on_max", bf["attention_on_max"])
        ctx.metric("brute_force_accuracy_by_max", bf["accuracy_by_max"])
        ctx.log(f"brute force over {bf['n_inputs']} inputs: accuracy {bf['accuracy']:.5f}")
    cb = certified_bound(pt, v, k)
    ctx.metric("certified_accuracy_bound", cb["accuracy_bound"])
    if p["brute_force"]:
        ctx.metric("certified_bound_is_sound", cb["accuracy_bound"] <= bf["accuracy"] + 1e-12)
        ctx.note(f"Exact accuracy over all {bf['n_inputs']:,} inputs: {bf['accuracy']:.5f} ({bf['n_wrong']:,} wrong). "
                 f"The mechanism-only bound certifies {cb['accuracy_bound']:.4f} of inputs without running any of them.")
    _plots(ctx, curve, pt, v)


def _circuits(ctx: ReproContext, pt, v: int, k: int) -> None:
    # QK circuit: the token part seen from the last position, averaged over key positions
    # (the positional part shifts a row by a constant per position; it does not reorder keys).
    qk = pt.scores.mean(0)
    frac, rho = qk_monotonicity(qk)
    ctx.metric("qk_adjacent_increasing_fraction", frac)
    ctx.metric("qk_rank_correlation_median", rho.median())
    ctx.metric("qk_rank_correlation_min", rho.min())
    # Full OV circuit E W_V W_O U, with positional embeddings averaged over positions.
    ov = pt.values.mean(0)
    copy_frac, margin = ov_copying(ov)
    ctx.metric("ov_copying_fraction", copy_frac)
    ctx.metric("ov_copying_fraction_upper_half", float((margin[v // 2 :] > 0).double().mean()))
    ctx.metric("ov_diag_margin_median", margin.median())
    ctx.metric("ov_diag_margin_min_upper_half", margin[v // 2 :].min())
    first_copied = next((t for t in range(v) if bool((margin[t:] > 0).all())), None)
    ctx.metric("ov_copies_all_tokens_from", first_copied)
    ctx.note(f"QK: {frac:.1%} of adjacent key pairs are ordered (larger key scored higher); median rank correlation "
             f"of a query row with the key value {float(rho.median()):.3f}. OV: {copy_frac:.0%} of tokens have their own "
             f"logit largest (every token from {first_copied} up). Small tokens are rarely the maximum of 4 "
             f"(P(max <= 15) = {(16 / v) ** k:.4f}), so the model has little reason to copy them well.")


def _ablations(ctx: ReproContext, pt, tokens: torch.Tensor) -> None:
    from mikb.methods.max_of_k import Paths

    mx = tokens.max(1).values

    def acc(tables) -> float:
        return float((path_logits(tables, tokens).argmax(-1) == mx).double().mean())

    base = acc(pt)
    uniform = Paths(scores=torch.zeros_like(pt.scores), values=pt.values, direct=pt.direct)
    no_ov = Paths(scores=pt.scores, values=torch.zeros_like(pt.values), direct=pt.direct)
    no_direct = Paths(scores=pt.scores, values=pt.values, direct=torch.zeros_like(pt.direct))
    ctx.metric("accuracy_uniform_attention", acc(uniform))
    ctx.metric("accuracy_without_ov", acc(no_ov))
    ctx.metric("accuracy_without_direct_path", acc(no_direct))
    ctx.metric("uniform_attention_accuracy_drop", base - acc(uniform))


def _plots(ctx: ReproContext, curve: dict, pt, v: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = downsample(curve["step"], 60)
    fig, ax = plt.subplots(figsize=(5.4, 3.0))
    ax.plot([curve["step"][i] for i in idx], [curve["acc"][i] for i in idx], label="accuracy")
    ax.set_xlabel("training step")
    ax.set_ylabel("test accuracy (fraction)")
    ax.set_ylim(0, 1.02)
    ax2 = ax.twinx()
    ax2.plot([curve["step"][i] for i in idx], [curve["loss"][i] for i in idx], color="tab:orange", label="loss")
    ax2.set_ylabel("test loss (nats)")
    ax.set_title("Max-of-4 training: accuracy (blue) and loss (orange)", fontsize=9)
    fig.tight_layout()
    ctx.save_figure(fig, "training", caption="Accuracy and cross-entropy on 4,096 fixed random test lists during training.")

    qk = pt.scores.mean(0)
    qk = qk - qk.mean(-1, keepdim=True)
    ov = pt.values.mean(0)
    ov = ov - ov.mean(-1, keepdim=True)
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.6), constrained_layout=True)
    for ax, mat, title, label in (
        (axes[0], qk, "QK circuit: score from last position\n(blue = attended more)", "attention score, row-centred"),
        (axes[1], ov, "Full OV circuit E W_V W_O U\n(blue = logit raised)", "logit, row-centred"),
    ):
        lim = float(mat.abs().max())
        im = ax.imshow(mat.numpy(), cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("query token" if ax is axes[0] else "attended (input) token")
        ax.set_xlabel("key token" if ax is axes[0] else "output logit token")
        fig.colorbar(im, ax=ax, shrink=0.85, label=label)
    ctx.save_figure(fig, "qk_ov_circuits", caption="Left: the QK circuit grows with the key token in every row, so the "
                    "largest token gets the most attention. Right: the OV circuit's diagonal dominates, so the attended "
                    "token is copied to the output. Positional parts are averaged over positions; rows are centred.")
