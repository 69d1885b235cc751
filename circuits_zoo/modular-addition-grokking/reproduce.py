"""Modular addition and grokking: train the one-layer model of Nanda et al. (2023) and
measure the grokking curves, the key Fourier frequencies and the progress measures.

Training uses a lean plain-torch loop with the same parameterisation as the TL-native
model (see ``mikb.lm.lean_native``), because a full-batch step through TransformerBridge
costs more than twice as much on CPU (``benchmarks/bench_grokking_step.py``); the trained weights are loaded into a
``TransformerBridge`` for the end-of-run analysis (embedding, MLP neurons, logits). The run
stops once the cleanup phase is over (train/test gap closed) rather than after the paper's
fixed 40,000 epochs. The optimiser settings are the authors' (AdamW, lr 1e-3, weight decay
1.0, betas (0.9, 0.98), a 10-step linear warm-up, full batch, 30% of pairs for training), as
set in their released training code; see the circuit entry for the source. Training also
runs on a GPU with ``--device cuda``; the analysis always runs on the CPU.
"""

from __future__ import annotations

import math

import torch

from mikb.lm.grokking import accuracy, loss_from_logits, make_data
from mikb.lm.grokking_run import (
    StopRule,
    embedding_key_frequencies,
    first_step,
    progress_measures,
    train_grokking,
)
from mikb.lm.lean_native import to_bridge
from mikb.lm.training import OptimConfig, downsample
from mikb.methods.fourier import fourier_basis
from mikb.reproduce.context import ReproContext, ScriptSpec

SPEC = ScriptSpec(
    models=("grokking-1l-p113",),
    params={
        "p": 113,
        "frac_train": 0.3,
        "lr": 1e-3,
        "weight_decay": 1.0,
        "betas": [0.9, 0.98],
        "warmup_steps": 10,
        "max_steps": 30000,
        "eval_every": 50,
        "ckpt_every": 250,
        "stop_gap_ratio": 3.0,
        "stop_patience": 1000,
        "loss_threshold": 1.0,
    },
    # CI-sized: a smaller prime with half the pairs in training groks within ~2,000 full
    # batch steps on two CPU cores; the claims below hold for it too except where noted.
    quick_params={
        "p": 59,
        "frac_train": 0.5,
        "lr": 2e-3,
        "max_steps": 1500,
        "eval_every": 25,
        "ckpt_every": 100,
        "stop_patience": 100,
    },
    timeout_s=3600,
    devices=("cpu", "cuda"),
    description="Train a 1-layer transformer on a+b mod p until it groks; Fourier analysis.",
)


def run(ctx: ReproContext) -> None:
    ctx.seed_everything()
    # Losses near 1e-7 late in training make CPU arithmetic crawl on denormal numbers.
    torch.set_flush_denormal(True)
    prm = ctx.params
    p = int(prm["p"])
    data = make_data(p, float(prm["frac_train"]), seed=ctx.seed + 598)
    optim = OptimConfig(
        lr=float(prm["lr"]),
        weight_decay=float(prm["weight_decay"]),
        betas=(float(prm["betas"][0]), float(prm["betas"][1])),
        warmup_steps=int(prm["warmup_steps"]),
    )
    ctx.log(f"p={p}, {len(data.train_idx)} training pairs, {len(data.test_idx)} test pairs, on {ctx.device}")
    cfg, params, hist = train_grokking(
        data,
        steps=int(prm["max_steps"]),
        optim=optim,
        seed=ctx.seed,
        eval_every=int(prm["eval_every"]),
        ckpt_every=int(prm["ckpt_every"]),
        stop=StopRule(gap_ratio=float(prm["stop_gap_ratio"]), patience=int(prm["stop_patience"])),
        progress=lambda it: ctx.progress(it, desc="grokking", total=int(prm["max_steps"])),
        log=ctx.log,
        device=ctx.device,
    )
    ctx.set_weights_source(f"trained here from scratch (seed {ctx.seed}, {hist.steps[-1]} steps)")
    ctx.metric("steps_trained", hist.steps[-1])
    ctx.metric("n_train", len(data.train_idx))

    # --- end-of-run analysis on the TransformerBridge model -----------------------------
    bridge = to_bridge(cfg, params, seed=ctx.seed)
    with torch.no_grad():
        logits_b, cache = bridge.run_with_cache(data.tokens)
    logits = logits_b[:, -1]
    from mikb.lm.grokking import final_logits

    with torch.no_grad():
        lean = final_logits(cfg, params, data.tokens)
    ctx.metric("bridge_lean_max_abs_diff", (logits - lean).abs().max().item())
    tr, te = data.train_idx, data.test_idx
    ctx.metric("train_acc_final", accuracy(logits[tr], data.labels[tr]))
    ctx.metric("test_acc_final", accuracy(logits[te], data.labels[te]))
    ctx.metric("train_loss_final", loss_from_logits(logits[tr], data.labels[tr]).item())
    ctx.metric("test_loss_final", loss_from_logits(logits[te], data.labels[te]).item())
    ctx.metric("chance_acc", 1.0 / p)

    norms, keys = embedding_key_frequencies(bridge.W_E.detach(), p)
    ctx.metric("key_frequencies", keys)
    ctx.metric("n_key_frequencies", len(keys))
    key_share = float(norms[[k - 1 for k in keys]].sum() / norms.sum())
    ctx.metric("embed_key_freq_norm_frac", key_share)
    ctx.note(
        f"Seed {ctx.seed} found key frequencies {keys} (w = 2*pi*k/{p}); they hold "
        f"{key_share:.0%} of the embedding's squared norm outside the constant direction."
    )
    neuron_frac = _neuron_key_freq_fraction(cache["blocks.0.mlp.hook_post"][:, -1], p, keys)
    ctx.metric("mlp_key_freq_variance_frac", neuron_frac)

    # --- phases and progress measures ------------------------------------------------------
    thr = float(prm["loss_threshold"])
    mem = first_step(hist.steps, hist.train_acc, lambda v: v >= 0.99)
    grok = first_step(hist.steps, hist.test_acc, lambda v: v >= 0.95)
    ctx.metric("memorised_step", mem)
    ctx.metric("grokked_step", grok)
    ctx.metric("cleanup_end_step", hist.stop_step)
    if mem and grok:
        ctx.metric("grokking_delay_ratio", grok / mem)
    pm = progress_measures(cfg, data, hist, keys)
    r_step = first_step(pm.steps, pm.restricted_loss, lambda v: v < thr)
    t_step = first_step(pm.steps, pm.test_loss, lambda v: v < thr)
    ctx.metric("restricted_below_threshold_step", r_step)
    ctx.metric("test_below_threshold_step", t_step)
    if r_step is not None and t_step is not None:
        ctx.metric("restricted_lead_steps", t_step - r_step)
    peak_i = max(range(len(pm.steps)), key=lambda i: pm.excluded_loss[i])
    peak_step = pm.steps[peak_i]
    ctx.metric("excluded_peak_step", peak_step)
    mem_i = next((i for i, s in enumerate(pm.steps) if mem is not None and s >= mem), 0)
    ctx.metric(
        "excluded_loss_rise_ratio", pm.excluded_loss[peak_i] / max(pm.excluded_loss[mem_i], 1e-12)
    )
    ctx.metric(
        "cleanup_test_loss_drop_log10",
        math.log10(pm.test_loss[peak_i] / max(pm.test_loss[-1], 1e-300)),
    )
    w_at_peak = hist.weight_sq[hist.steps.index(peak_step)]
    ctx.metric("cleanup_weight_norm_ratio", math.sqrt(hist.weight_sq[-1] / w_at_peak))
    ctx.log(
        f"keys {keys}; memorised {mem}, restricted<{thr} at {r_step}, test<{thr} at {t_step}, "
        f"excluded peak {peak_step}, grokked {grok}, cleanup over {hist.stop_step}"
    )
    ctx.save_json(
        "curves.json",
        {
            "steps": hist.steps,
            "train_loss": hist.train_loss,
            "test_loss": hist.test_loss,
            "train_acc": hist.train_acc,
            "test_acc": hist.test_acc,
            "weight_sq": hist.weight_sq,
            "progress": pm.__dict__,
            "frequency_norms": norms,
        },
    )
    _figures(ctx, hist, pm, norms, keys, p, mem, peak_step, hist.stop_step)


def _neuron_key_freq_fraction(acts: torch.Tensor, p: int, keys: list[int]) -> float:
    """Share of the MLP neurons' (centred) activation variance over the ``(a, b)`` grid that
    lies in 2-D Fourier terms built only from the constant and key-frequency components."""
    basis, _ = fourier_basis(p)
    grid = acts.double().T.reshape(-1, p, p)  # [neurons, a, b]
    grid = grid - grid.mean(dim=(1, 2), keepdim=True)
    coef = torch.einsum("ia,nab,jb->nij", basis, grid, basis).pow(2)
    keep = [0] + [i for k in keys for i in (2 * k - 1, 2 * k)]
    kept = coef[:, keep][:, :, keep].sum()
    return float(kept / coef.sum())


def _figures(ctx, hist, pm, norms, keys, p, mem, peak, stop) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = downsample(hist.steps, 400)
    steps = [max(hist.steps[i], 1) for i in idx]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot(steps, [hist.train_loss[i] for i in idx], label="train loss")
    ax1.plot(steps, [hist.test_loss[i] for i in idx], label="test loss")
    ax1.set_yscale("log")
    ax2.plot(steps, [hist.train_acc[i] for i in idx], label="train accuracy")
    ax2.plot(steps, [hist.test_acc[i] for i in idx], label="test accuracy")
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_xlabel("training step (full batch)")
        for s in (mem, peak, stop):
            if s:
                ax.axvline(s, color="grey", ls=":", lw=1)
        ax.legend(fontsize=8)
    ax1.set_ylabel("cross-entropy")
    ax2.set_ylabel("accuracy")
    fig.suptitle(f"Grokking on a + b mod {p} (dotted: memorised, cleanup start, gap closed)")
    ctx.save_figure(fig, "grokking_curves", "Train and test loss and accuracy (log axes).")

    fig, ax = plt.subplots(figsize=(8, 3))
    ks = list(range(1, len(norms) + 1))
    colors = ["tab:red" if k in keys else "tab:blue" for k in ks]
    ax.bar(ks, norms.tolist(), color=colors)
    ax.set_xlabel("frequency k (w = 2πk/p)")
    ax.set_ylabel("embedding norm²")
    ax.set_title(f"Embedding in the Fourier basis; key frequencies (red): {keys}")
    ctx.save_figure(fig, "fourier_embedding", "Squared norm of the embedding per frequency.")

    fig, ax = plt.subplots(figsize=(8, 3.6))
    ps = [max(s, 1) for s in pm.steps]
    idx_t = downsample(hist.steps, 400)
    ax.plot([max(hist.steps[i], 1) for i in idx_t], [hist.train_loss[i] for i in idx_t], label="train")
    ax.plot(ps, pm.test_loss, label="test")
    ax.plot(ps, pm.restricted_loss, label="restricted (key freqs only)")
    ax.plot(ps, pm.excluded_loss, label="excluded (key freqs removed, train)")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("cross-entropy")
    ax2 = ax.twinx()
    ax2.plot(
        [max(hist.steps[i], 1) for i in idx_t],
        [math.sqrt(hist.weight_sq[i]) for i in idx_t],
        color="black",
        ls="--",
        lw=1,
        label="weight norm",
    )
    ax2.set_ylabel("total weight norm (dashed)")
    for s in (mem, peak, stop):
        if s:
            ax.axvline(s, color="grey", ls=":", lw=1)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("Progress measures over training")
    ctx.save_figure(fig, "progress_measures", "Restricted and excluded loss, with weight norm.")

    import plotly.graph_objects as go

    pfig = go.Figure()
    for name, ys in (("train loss", hist.train_loss), ("test loss", hist.test_loss)):
        pfig.add_trace(go.Scatter(x=steps, y=[ys[i] for i in idx], name=name, mode="lines"))
    pfig.add_trace(go.Scatter(x=pm.steps, y=pm.restricted_loss, name="restricted loss"))
    pfig.add_trace(go.Scatter(x=pm.steps, y=pm.excluded_loss, name="excluded loss"))
    pfig.update_layout(xaxis_title="step", yaxis_type="log", yaxis_title="loss", height=380)
    ctx.save_figure(pfig, "progress_measures", "Interactive loss curves and progress measures.")
