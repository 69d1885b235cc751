"""The Clock and the Pizza (Zhong et al. 2023): two one-layer transformers trained here on
(a + b) mod 59, one with standard attention (attention rate 1) and one with constant attention
(rate 0), told apart by gradient symmetricity and distance irrelevance.

The model family, inputs and optimiser follow the authors' released ``code/train-main.py``
(see ``mikb.lm.attention_rate``). Training uses a lean plain-torch forward; the trained
weights are loaded into a ``TransformerBridge`` with a ``hook_pattern`` hook that applies the
attention rate, and every measurement below runs on the bridge. The script records that the
two forwards agree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mikb.lm import attention_rate as ar
from mikb.lm.lean_native import init_params, to_bridge
from mikb.lm.training import OptimConfig, train
from mikb.methods.fourier import frequency_norms, key_frequencies
from mikb.reproduce import ReproContext, ScriptSpec

RATES = {"modadd-1l-p59-attn1": 1.0, "modadd-1l-p59-attn0": 0.0}

SPEC = ScriptSpec(
    models=tuple(RATES),
    params={"p": 59, "frac_train": 0.8, "d_model": 128, "lr": 1e-3, "weight_decay": 2.0, "betas": [0.9, 0.98],
            "warmup_steps": 10, "max_steps": 3000, "eval_every": 50, "patience": 500, "n_triples": 400},
    quick_params={"max_steps": 700, "patience": 100, "n_triples": 200},
    timeout_s=2400,
    description="Train 1-layer modular-addition transformers with attention rate 1 and 0; measure Clock vs Pizza signatures.",
)


def run(ctx: ReproContext) -> None:
    prm = ctx.params
    p = int(prm["p"])
    rate = RATES[ctx.model_id]
    ctx.seed_everything()
    torch.set_flush_denormal(True)
    cfg = ar.model_config(p, d_model=int(prm["d_model"]))
    params = init_params(cfg, ctx.seed)
    inputs, labels = ar.modular_pairs(p)
    perm = torch.randperm(p * p, generator=torch.Generator().manual_seed(ctx.seed + 59))
    n_train = int(float(prm["frac_train"]) * p * p)
    tr, te = perm[:n_train].sort().values, perm[n_train:].sort().values
    hist: dict[str, list[float]] = {"step": [], "train_loss": [], "test_loss": [], "train_acc": [], "test_acc": []}
    state = {"perfect_since": None}

    def loss_fn(pr, step: int) -> torch.Tensor:
        return F.cross_entropy(ar.last_logits(cfg, pr, inputs[tr], rate).double(), labels[tr])

    def on_eval(step: int, pr) -> bool:
        logits = ar.last_logits(cfg, pr, inputs, rate).double()
        hist["step"].append(step)
        for split, idx in (("train", tr), ("test", te)):
            hist[f"{split}_loss"].append(F.cross_entropy(logits[idx], labels[idx]).item())
            hist[f"{split}_acc"].append((logits[idx].argmax(-1) == labels[idx]).double().mean().item())
        if hist["test_acc"][-1] == 1.0 and hist["train_acc"][-1] == 1.0:
            state["perfect_since"] = state["perfect_since"] if state["perfect_since"] is not None else step
            return step - state["perfect_since"] >= int(prm["patience"])
        state["perfect_since"] = None
        return False

    optim = OptimConfig(lr=float(prm["lr"]), weight_decay=float(prm["weight_decay"]),
                        betas=(float(prm["betas"][0]), float(prm["betas"][1])), warmup_steps=int(prm["warmup_steps"]))
    steps = train(params, ar.trainable_names(params), loss_fn, int(prm["max_steps"]), optim, int(prm["eval_every"]),
                  on_eval, progress=lambda it: ctx.progress(it, desc="training", total=int(prm["max_steps"])))
    ctx.set_weights_source(f"trained here from scratch by this script (seed {ctx.seed}, attention rate {rate:g}, "
                           f"{steps} full-batch steps)")
    ctx.metric("attention_rate", rate)
    ctx.metric("steps_trained", steps)
    ctx.metric("n_train", int(n_train))
    ctx.metric("first_perfect_step", state["perfect_since"])

    # --- analysis on the TransformerBridge ------------------------------------------------
    model = to_bridge(cfg, params, seed=ctx.seed)
    hook = ("blocks.0.attn.hook_pattern", ar.rate_hook(rate))
    with torch.no_grad():
        with model.hooks(fwd_hooks=[hook]):
            logits = model(inputs)[:, -1]
        lean = ar.last_logits(cfg, params, inputs, rate)
    ctx.metric("bridge_lean_max_abs_diff", (logits - lean).abs().max().item())
    for split, idx in (("train", tr), ("test", te)):
        ctx.metric(f"{split}_acc_final", (logits[idx].argmax(-1) == labels[idx]).double().mean().item())
        ctx.metric(f"{split}_loss_final", F.cross_entropy(logits[idx].double(), labels[idx]).item())
    ctx.metric("chance_acc", 1.0 / p)

    def bridge_logits(tokens: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:
        def put(x: torch.Tensor, hook) -> torch.Tensor:  # noqa: ANN001 - TransformerLens hook signature
            return embeds

        with model.hooks(fwd_hooks=[("hook_embed", put), hook]):
            return model(tokens)[:, -1]

    triples = torch.randint(0, p, (int(prm["n_triples"]), 3), generator=torch.Generator().manual_seed(42 + ctx.seed))
    w_e = model.W_E.detach()
    gs = ar.gradient_symmetricity(bridge_logits, w_e, triples)
    grid = ar.correct_logit_grid(logits, p)
    di = ar.distance_irrelevance(grid)
    ctx.metric("gradient_symmetricity", gs)
    ctx.metric("distance_irrelevance", di)
    norms = frequency_norms(w_e)
    keys = key_frequencies(norms)
    ctx.metric("key_frequencies", keys)
    ctx.metric("n_key_frequencies", len(keys))
    ctx.metric("embed_key_freq_norm_frac", float(norms[[kk - 1 for kk in keys]].sum() / norms.sum()))
    algo = "Pizza-like" if gs > 0.95 and di < 0.5 else ("Clock-like" if gs < 0.9 and di > 0.7 else "neither cleanly")
    ctx.metric("signature", algo)
    ctx.note(f"Attention rate {rate:g}: test accuracy {ctx.metrics['test_acc_final']:.1%} after {steps} steps; "
             f"gradient symmetricity {gs:.3f}, distance irrelevance {di:.3f} ({algo}); key frequencies {keys} "
             f"(w = 2*pi*k/{p}).")
    ctx.save_json("curves.json", {"history": hist, "frequency_norms": norms, "correct_logits": grid})
    _figures(ctx, hist, grid, norms, keys, p, rate, gs, di)


def _figures(ctx: ReproContext, hist: dict, grid: torch.Tensor, norms: torch.Tensor, keys: list[int], p: int,
             rate: float, gs: float, di: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), constrained_layout=True,
                             gridspec_kw={"width_ratios": [1, 1.1, 1.1]})
    ax = axes[0]
    ax.plot(hist["step"], hist["train_acc"], label="train")
    ax.plot(hist["step"], hist["test_acc"], label="test")
    ax.set_xlabel("training step (full batch)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(f"Attention rate {rate:g}: accuracy", fontsize=9)
    ax = axes[1]
    vmax = float(grid.abs().max())
    im = ax.imshow(grid.numpy(), cmap="RdBu", vmin=-vmax, vmax=vmax, aspect="auto")
    ax.set_xlabel("(a - b) mod p")
    ax.set_ylabel("(a + b) mod p")
    ax.set_title(f"Correct-answer logit (blue > 0); distance irrelevance {di:.2f}", fontsize=9)
    fig.colorbar(im, ax=ax, label="logit of the answer")
    ax = axes[2]
    ks = list(range(1, len(norms) + 1))
    ax.bar(ks, norms.tolist(), color=["tab:red" if kk in keys else "tab:blue" for kk in ks])
    ax.set_xlabel("frequency k (w = 2πk/p)")
    ax.set_ylabel("embedding norm² in frequency k")
    ax.set_title(f"Embedding spectrum; key frequencies (red) {keys}", fontsize=9)
    fig.suptitle(f"Attention rate {rate:g}: gradient symmetricity {gs:.3f}", fontsize=10)
    ctx.save_figure(fig, "signatures", caption="Accuracy during training, the correct-answer logit over (a+b, a-b) "
                    "(vertical stripes = it depends on a-b, the Pizza's signature; uniform = distance irrelevant, the "
                    "Clock's), and the embedding's Fourier spectrum.")
