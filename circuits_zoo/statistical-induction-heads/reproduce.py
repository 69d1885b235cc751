"""Statistical induction heads, trained from scratch (Edelman et al. 2024): a 2-layer
attention-only transformer learns to predict sequences drawn from random Markov chains, one
chain per sequence, so it must estimate the transition probabilities in context.

Training runs with the lean plain-torch forward of ``mikb.lm.lean_native`` on fresh batches
every step; the script records the model's KL divergence from the true next-state
distribution and from the in-context unigram and bigram estimators over training (the
phases), then loads the final weights into a ``TransformerBridge`` and finds the
previous-token head (layer 0) and the statistical induction head (layer 1) by their
attention scores, and ablates them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mikb.lm.lean_native import LeanConfig, forward, init_params, state_copy, to_bridge, trainable
from mikb.lm.training import OptimConfig, train
from mikb.methods import markov_icl as mc
from mikb.reproduce import ReproContext, ScriptSpec
from mikb.methods.zero_ablation import zero_head_hooks

SPEC = ScriptSpec(
    models=("markov-attn-only-2l",),
    params={"k": 3, "seq": 100, "n_heads": 2, "d_model": 32, "steps": 3000, "batch": 64, "lr": 3e-3,
            "betas": [0.9, 0.95], "init_std": 0.1, "eval_every": 25, "eval_batch": 256, "n_snapshots": 24},
    quick_params={"steps": 1500, "eval_every": 50, "eval_batch": 128, "n_snapshots": 10},
    timeout_s=2400,
    description="Train a 2-layer attention-only transformer on in-context Markov chains; find its statistical induction head.",
)


def model_config(p: dict) -> LeanConfig:
    return LeanConfig(n_layers=2, n_heads=p["n_heads"], d_model=p["d_model"], d_head=p["d_model"] // p["n_heads"],
                      d_vocab=p["k"], n_ctx=p["seq"], attn_only=True, use_bias=False)


def run(ctx: ReproContext) -> None:
    p = ctx.params
    k = int(p["k"])
    ctx.seed_everything()
    cfg = model_config(p)
    params = init_params(cfg, ctx.seed, init_std=float(p["init_std"]))
    gen = torch.Generator().manual_seed(ctx.seed)
    ev = mc.sample_markov(int(p["eval_batch"]), int(p["seq"]), k, torch.Generator().manual_seed(10_000 + ctx.seed))
    refs = mc.estimator_losses(ev, k)
    ev_refs = mc.references(ev, k)
    curve: dict[str, list[float]] = {"step": [], "truth": [], "unigram": [], "bigram": []}
    snap_every = max(1, int(p["steps"]) // int(p["n_snapshots"]))
    snapshots: list[tuple[int, dict]] = []

    def loss_fn(prm, step: int) -> torch.Tensor:
        b = mc.sample_markov(int(p["batch"]), int(p["seq"]), k, gen)
        logits = forward(cfg, prm, b.tokens)
        return F.cross_entropy(logits[:, :-1].reshape(-1, k), b.tokens[:, 1:].reshape(-1))

    def on_eval(step: int, prm) -> None:
        last = step == int(p["steps"])
        if step % snap_every == 0 or last:
            snapshots.append((step, state_copy(prm)))
        if step % int(p["eval_every"]) and not last:
            return
        s = mc.kl_summary(forward(cfg, prm, ev.tokens).log_softmax(-1), ev_refs)
        curve["step"].append(step)
        for name in ("truth", "unigram", "bigram"):
            curve[name].append(s[name])

    optim = OptimConfig(lr=float(p["lr"]), betas=(float(p["betas"][0]), float(p["betas"][1])))
    train(params, trainable(cfg, params), loss_fn, int(p["steps"]), optim, 1, on_eval,
          progress=lambda it: ctx.progress(it, desc="training", total=int(p["steps"])))
    ctx.set_weights_source(f"trained here from scratch by this script (seed {ctx.seed}, {p['steps']} steps)")
    for name, v in refs.items():
        ctx.metric(f"estimator_kl_{name}", v)
    _phase_metrics(ctx, curve, refs)
    model = to_bridge(cfg, params, seed=ctx.seed)
    with torch.no_grad():
        lean = forward(cfg, params, ev.tokens)
        ctx.metric("bridge_lean_max_abs_diff", (model(ev.tokens) - lean).abs().max().item())
    best_prev, best_ind = _head_metrics(ctx, model, ev)
    _ablation_metrics(ctx, model, ev, ev_refs, best_prev, best_ind, refs)
    traj = _head_trajectory(cfg, snapshots, ev, best_prev, best_ind, ctx.seed)
    ctx.save_json("curves.json", {"curve": curve, "estimators": refs, "head_trajectory": traj})
    _plot_phases(ctx, curve, refs, traj)


def _phase_metrics(ctx: ReproContext, curve: dict, refs: dict) -> None:
    steps, truth, uni, bi = curve["step"], curve["truth"], curve["unigram"], curve["bigram"]
    n = len(steps)
    # The unigram phase: where the model is closest to the in-context unigram estimator.
    i_uni = min(range(n), key=lambda i: uni[i])
    ctx.metric("unigram_phase_step", steps[i_uni])
    ctx.metric("unigram_phase_kl_to_unigram", uni[i_uni])
    ctx.metric("unigram_phase_kl_to_bigram", bi[i_uni])
    ctx.metric("unigram_phase_kl_to_truth", truth[i_uni])
    # Closer to unigram than to bigram there: > 1 means the plateau is a unigram solution.
    ctx.metric("unigram_phase_bigram_over_unigram_kl", bi[i_uni] / max(uni[i_uni], 1e-12))
    # How far the model at step 0 is from the unigram estimator (a uniform predictor).
    ctx.metric("initial_kl_to_unigram", uni[0])
    ctx.metric("unigram_phase_kl_reduction", 1 - uni[i_uni] / max(uni[0], 1e-12))
    ctx.metric("final_kl_to_truth", truth[-1])
    ctx.metric("final_kl_to_unigram", uni[-1])
    ctx.metric("final_kl_to_bigram", bi[-1])
    ctx.metric("final_unigram_over_bigram_kl", uni[-1] / max(bi[-1], 1e-12))
    # Share of the gap between the unigram and bigram estimators that the model closed.
    gap = refs["unigram"] - refs["bigram"]
    ctx.metric("final_gap_closed_unigram_to_bigram", (refs["unigram"] - truth[-1]) / gap)
    # Sharpness of the bigram transition: the share of the fall in KL-to-bigram between the
    # unigram phase and the end that happens within 10% of training around its midpoint.
    start, end = bi[i_uni], bi[-1]
    mid = (start + end) / 2
    cross = next(i for i in range(i_uni, n) if bi[i] <= mid)
    window = max(1, n // 20)
    lo, hi = max(i_uni, cross - window), min(n - 1, cross + window)
    sharp = (bi[lo] - bi[hi]) / max(start - end, 1e-12)
    ctx.metric("bigram_transition_step", steps[cross])
    ctx.metric("bigram_transition_drop_fraction", sharp)
    ctx.note(f"The model came closest to the unigram estimator at step {steps[i_uni]} (KL {uni[i_uni]:.3f} nats to "
             f"it, {bi[i_uni]:.3f} to the bigram estimator); the switch to bigram statistics was half done at step "
             f"{steps[cross]}, with {sharp:.0%} of the fall in KL-to-bigram within 10% of training around it. Final KL "
             f"from the truth {truth[-1]:.3f} nats (bigram estimator {refs['bigram']:.3f}, unigram {refs['unigram']:.3f}, "
             f"uniform {refs['uniform']:.3f}).")


def _patterns(model, tokens: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
    return [cache[f"blocks.{layer}.attn.hook_pattern"] for layer in (0, 1)]


def _head_metrics(ctx: ReproContext, model, ev: mc.MarkovBatch) -> tuple[int, int]:
    pats = _patterns(model, ev.tokens)
    prev = torch.stack([mc.previous_token_score(pt) for pt in pats])
    ind = torch.stack([mc.statistical_induction_score(pt, ev.tokens) for pt in pats])
    base = mc.matching_base_rate(ev.tokens)
    best_prev, best_ind = int(prev[0].argmax()), int(ind[1].argmax())
    ctx.metric("previous_token_scores", prev)
    ctx.metric("statistical_induction_scores", ind)
    ctx.metric("matching_base_rate", base)
    ctx.metric("best_previous_token_head", f"0.{best_prev}")
    ctx.metric("best_induction_head", f"1.{best_ind}")
    ctx.metric("previous_token_score_best_l0", prev[0, best_prev])
    ctx.metric("induction_score_best_l1", ind[1, best_ind])
    ctx.metric("induction_score_max_l0", ind[0].max())
    ctx.metric("induction_margin_over_base_rate", ind[1, best_ind] - base)
    ctx.metric("discovered_components", {"prev-token": [f"0.{best_prev}"], "induction": [f"1.{best_ind}"]})
    ctx.note(f"Found by attention scores: previous-token head 0.{best_prev} (mean attention to the previous position "
             f"{prev[0, best_prev]:.2f}); statistical induction head 1.{best_ind} ({ind[1, best_ind]:.2f} of its attention on "
             f"positions whose previous state is the current state, against {base:.2f} for uniform attention).")
    _plot_heads(ctx, prev, ind, pats, ev.tokens, best_ind)
    return best_prev, best_ind


def _ablated_kl(model, ev: mc.MarkovBatch, ev_refs: dict, hooks: list) -> dict[str, float]:
    with torch.no_grad():
        with model.hooks(fwd_hooks=hooks):
            logits = model(ev.tokens)
    return mc.kl_summary(logits.log_softmax(-1), ev_refs)


def _ablation_metrics(ctx: ReproContext, model, ev: mc.MarkovBatch, ev_refs: dict, best_prev: int, best_ind: int,
                      refs: dict) -> None:
    base = _ablated_kl(model, ev, ev_refs, [])
    cases = {
        "prev_head": zero_head_hooks([(0, best_prev)]),
        "induction_head": zero_head_hooks([(1, best_ind)]),
    }
    gap = refs["unigram"] - base["truth"]
    for name, hooks in cases.items():
        s = _ablated_kl(model, ev, ev_refs, hooks)
        ctx.metric(f"ablate_{name}_kl_to_truth", s["truth"])
        ctx.metric(f"ablate_{name}_kl_to_unigram", s["unigram"])
        ctx.metric(f"ablate_{name}_kl_to_bigram", s["bigram"])
        # 0: no harm; 1: as bad as the in-context unigram estimator; above 1: worse than it.
        ctx.metric(f"ablate_{name}_loss_in_unigram_units", (s["truth"] - base["truth"]) / gap)
    ctx.note(f"Zero-ablating previous-token head 0.{best_prev} or induction head 1.{best_ind}: see the ablate_* metrics; "
             "'loss in unigram units' is the rise in KL from the truth divided by the gap between the in-context "
             "unigram estimator and the trained model (1 means back to unigram-level prediction).")


def _head_trajectory(cfg: LeanConfig, snapshots: list, ev: mc.MarkovBatch, best_prev: int, best_ind: int,
                     seed: int) -> dict[str, list]:
    """The found heads' scores at the saved checkpoints (on the bridge), to place their
    formation against the loss curves."""
    tokens = ev.tokens[:64]
    out: dict[str, list] = {"step": [], "prev": [], "induction": []}
    for step, prm in snapshots:
        pats = _patterns(to_bridge(cfg, prm, seed=seed), tokens)
        out["step"].append(step)
        out["prev"].append(float(mc.previous_token_score(pats[0])[best_prev]))
        out["induction"].append(float(mc.statistical_induction_score(pats[1], tokens)[best_ind]))
    return out


def _plot_phases(ctx: ReproContext, curve: dict, refs: dict, traj: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    ax1.plot(curve["step"], curve["truth"], color="black", label="transformer")
    for name, color in (("uniform", "grey"), ("unigram", "tab:orange"), ("bigram", "tab:blue")):
        ax1.axhline(refs[name], color=color, ls=":", lw=1.2, label=f"{name} estimator")
    ax1.set_xlabel("training step")
    ax1.set_ylabel("KL from true next-state distribution (nats)")
    ax1.set_title("Test loss: plateau at unigram level, then a drop to bigram level", fontsize=9)
    ax1.legend(frameon=False, fontsize=7)
    ax2.plot(curve["step"], curve["unigram"], color="tab:orange", label="KL(unigram estimator || model)")
    ax2.plot(curve["step"], curve["bigram"], color="tab:blue", label="KL(bigram estimator || model)")
    ax2.set_xlabel("training step")
    ax2.set_ylabel("KL divergence (nats)")
    ax2.set_title("Which in-context statistic the model follows", fontsize=9)
    ax3 = ax2.twinx()
    ax3.plot(traj["step"], traj["prev"], color="tab:green", ls="--", lw=1, label="prev-token score (found L0 head)")
    ax3.plot(traj["step"], traj["induction"], color="tab:red", ls="--", lw=1, label="induction score (found L1 head)")
    ax3.set_ylim(0, 1)
    ax3.set_ylabel("attention score (dashed)")
    h1, l1 = ax2.get_legend_handles_labels()
    h2, l2 = ax3.get_legend_handles_labels()
    ax2.legend(h1 + h2, l1 + l2, frameon=False, fontsize=7, loc="upper right")
    ctx.save_figure(fig, "phases", caption="Left: the model's KL from the true transition probabilities over "
                    "training, against the three in-context estimators. Right: its KL from the unigram and bigram "
                    "estimators, with the attention scores of the two heads the script found (dashed).")


def _plot_heads(ctx: ReproContext, prev: torch.Tensor, ind: torch.Tensor, pats: list, tokens: torch.Tensor,
                best_ind: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(10, 3.0), constrained_layout=True,
                             gridspec_kw={"width_ratios": [1, 1, 1.3]})
    for ax, scores, title in ((axes[0], prev, "previous-token score"), (axes[1], ind, "statistical induction score")):
        im = ax.imshow(scores.numpy(), vmin=0, vmax=1, cmap="Blues", aspect="auto")
        ax.set_yticks([0, 1], ["0", "1"])
        ax.set_xticks(range(scores.shape[1]))
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_title(title, fontsize=9)
        for i in range(scores.shape[0]):
            for j in range(scores.shape[1]):
                v = float(scores[i, j])
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8, color="white" if v > 0.6 else "black")
        fig.colorbar(im, ax=ax, shrink=0.8, label="attention weight")
    n = 30
    pat = pats[1][0, best_ind, :n, :n].numpy()
    im = axes[2].imshow(pat, cmap="Blues", vmin=0, vmax=1)
    labels = [str(int(t)) for t in tokens[0, :n]]
    axes[2].set_xticks(range(0, n, 3), labels[::3], fontsize=7)
    axes[2].set_yticks(range(0, n, 3), labels[::3], fontsize=7)
    axes[2].set_xlabel("key position (state shown)")
    axes[2].set_ylabel("query position (state shown)")
    axes[2].set_title(f"Head 1.{best_ind}: first {n} positions of one sequence", fontsize=9)
    fig.colorbar(im, ax=axes[2], shrink=0.8, label="attention weight")
    ctx.save_figure(fig, "head_scores", caption="Previous-token and statistical-induction scores of every head, and the "
                    "found induction head's attention on one sequence: it attends to positions whose previous state "
                    "equals the current one.")
