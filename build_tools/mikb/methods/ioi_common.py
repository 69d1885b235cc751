"""What the three IOI-family scripts share: model + dataset + caches, head lists, a heatmap.

Head indices are GPT-2 small's as wang2022ioi report them (Figure 2 / Section 3); the planted
model puts its heads at the same places, so the scripts need no per-model branches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from mikb.data.ioi import IOIDataset, make_ioi_dataset
from mikb.lm.hub import load_model
from mikb.methods.ablation import head_means
from mikb.methods.hooks import Head
from mikb.methods.metrics import logit_diff

PAPER_CLASSES: dict[str, list[Head]] = {
    "name mover": [(9, 9), (9, 6), (10, 0)],
    "backup name mover": [(9, 0), (9, 7), (10, 1), (10, 2), (10, 6), (10, 10), (11, 2), (11, 9)],
    "negative name mover": [(10, 7), (11, 10)],
    "s-inhibition": [(7, 3), (7, 9), (8, 6), (8, 10)],
    "induction": [(5, 5), (5, 8), (5, 9), (6, 9)],
    "duplicate token": [(0, 1), (0, 10), (3, 0)],
    "previous token": [(2, 2), (4, 11)],
}


@dataclass
class IOISetup:
    model: Any
    ds: IOIDataset
    clean_logits: torch.Tensor
    clean_cache: Any
    corrupted_cache: Any
    means: dict
    ld_clean: float
    ld_corrupted: float
    ground_truth: dict[str, str] | None


def setup(ctx: Any) -> IOISetup:
    """Load the model (ModelUnavailable propagates), sample prompts, cache both runs."""
    ctx.seed_everything()
    loaded = load_model(ctx.model_id, ctx.device)
    ctx.set_weights_source(loaded.weights_source)
    if ctx.model_id == "planted-ioi" and ctx.device == "cpu":
        torch.set_num_threads(1)  # tiny matrices: thread hand-off costs more than it saves
    p = ctx.params
    ds = make_ioi_dataset(int(p["n_prompts"]), seed=ctx.seed, names=loaded.names)
    ref = make_ioi_dataset(int(p["n_mean_prompts"]), seed=ctx.seed + 1, names=loaded.names)
    model = loaded.model
    with torch.no_grad():
        clean_logits, clean_cache = model.run_with_cache(ds.tokens)
        corr_logits, corrupted_cache = model.run_with_cache(ds.corrupted_tokens)
    means = head_means(model, ref.corrupted_tokens)
    s = IOISetup(
        model, ds, clean_logits, clean_cache, corrupted_cache, means,
        logit_diff(clean_logits, ds).item(), logit_diff(corr_logits, ds).item(),
        loaded.ground_truth,
    )
    ctx.metric("n_prompts", len(ds))
    ctx.metric("logit_diff_clean", s.ld_clean)
    ctx.metric("logit_diff_corrupted", s.ld_corrupted)
    ctx.metric("flags_dataset", ds.flags)
    if loaded.ground_truth is not None:
        ctx.save_json("planted_ground_truth.json", loaded.ground_truth)
    return s


def top_heads(scores: torch.Tensor, threshold: float, sign: int) -> list[str]:
    """Heads whose score*sign exceeds threshold, strongest first, as 'L.H' labels."""
    s = torch.nan_to_num(scores * sign, nan=0.0)
    idx = [(s[la, h].item(), la, h) for la in range(s.shape[0]) for h in range(s.shape[1])]
    return [f"{la}.{h}" for v, la, h in sorted(idx, reverse=True) if v > threshold]


def heatmap(scores: torch.Tensor, title: str, label: str):
    """A layer x head heatmap (matplotlib, diverging, centred on zero)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = torch.nan_to_num(scores.detach().float(), nan=0.0).numpy()
    lim = float(abs(data).max()) or 1.0
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    im = ax.imshow(data, cmap="RdBu", vmin=-lim, vmax=lim)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label=label)
    return fig
