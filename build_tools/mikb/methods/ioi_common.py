"""What the three IOI-family scripts share: model + dataset + caches, discovery helpers, a heatmap.

Every script *discovers* its heads (path patching, ablation, copy scores) on every model. The
paper's own GPT-2 small head list (`PAPER_HEADS`) is used in one place only: on gpt2-small, to
record the paper's heads' scores next to the discovered ones and to evaluate the paper's circuit
(`paper_heads_for`). The planted model's heads sit elsewhere (mikb.lm.planted_ioi).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any

import torch

from mikb.data.ioi import IOIDataset, make_ioi_dataset
from mikb.lm.hub import load_model
from mikb.methods.ablation import head_means
from mikb.methods.hooks import Head
from mikb.methods.metrics import logit_diff

# Role ids: the `role` strings of the IOI entries' components (circuits_zoo/ioi/circuit.yaml).
NM, NEG, BACKUP = "name mover head", "negative name mover head", "backup name mover head"
SINH, IND, DUP, PREV = ("S-inhibition head", "induction head", "duplicate token head",
                        "previous token head")
ROLES = (PREV, DUP, IND, SINH, NM, NEG, BACKUP)

# GPT-2 small's 26 heads in seven classes (wang2022ioi, abstract; the circuit diagram).
PAPER_HEADS: dict[str, list[Head]] = {
    NM: [(9, 9), (9, 6), (10, 0)],
    BACKUP: [(9, 0), (9, 7), (10, 1), (10, 2), (10, 6), (10, 10), (11, 2), (11, 9)],
    NEG: [(10, 7), (11, 10)],
    SINH: [(7, 3), (7, 9), (8, 6), (8, 10)],
    IND: [(5, 5), (5, 8), (5, 9), (6, 9)],
    DUP: [(0, 1), (0, 10), (3, 0)],
    PREV: [(2, 2), (4, 11)],
}
PAPER_MODEL = "gpt2-small"


def paper_heads_for(model_id: str) -> dict[str, list[Head]] | None:
    """The paper's head list where it applies (the paper's own model), else None."""
    return PAPER_HEADS if model_id == PAPER_MODEL else None


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
    b = torch.arange(len(ds))
    end_logits = clean_logits[b, ds.end]
    ctx.metric("io_over_s_accuracy",
               (end_logits[b, ds.io_ids] > end_logits[b, ds.s_ids]).float().mean().item())
    ctx.metric("io_prob_mean", end_logits.softmax(-1)[b, ds.io_ids].mean().item())
    ctx.metric("logit_diff_clean", s.ld_clean)
    ctx.metric("logit_diff_corrupted", s.ld_corrupted)
    ctx.metric("flags_dataset", ds.flags)
    if loaded.ground_truth is not None:
        ctx.save_json("planted_ground_truth.json", loaded.ground_truth)
    return s


def labels(heads) -> list[str]:
    return [f"{la}.{h}" for la, h in sorted(heads)]


def as_heads(label_list) -> list[Head]:
    return [tuple(int(x) for x in lab.split(".")) for lab in label_list]


def record_components(ctx: Any, s: IOISetup, discovered: dict[str, list[Head]]) -> None:
    """`discovered_components` {role: ["L.H", ...]} on every model and, on the planted model,
    `ground_truth_components` in the same shape (the site shows hits, misses, false positives)."""
    found = {role: labels(heads) for role, heads in discovered.items()}
    ctx.metric("discovered_components", found)
    if s.ground_truth is not None:
        truth: dict[str, list[str]] = {}
        for head, role in s.ground_truth.items():
            truth.setdefault(role, []).append(head)
        truth = {r: labels(as_heads(h)) for r, h in truth.items() if r in discovered}
        ctx.metric("ground_truth_components", truth)
        hits = sum(len(set(found.get(r, [])) & set(h)) for r, h in truth.items())
        total = sum(len(h) for h in truth.values())
        false_pos = sum(len(set(f) - set(truth.get(r, []))) for r, f in found.items())
        ctx.metric("ground_truth_recall", hits / total if total else float("nan"))
        ctx.metric("ground_truth_false_positives", false_pos)


def mean_attention(cache: Any, ds: IOIDataset, heads, dst: torch.Tensor, src: torch.Tensor) -> float:
    """Mean over prompts and heads of the attention from position dst to position src."""
    if not heads:
        return float("nan")
    b = torch.arange(len(ds))
    vals = [cache[f"blocks.{la}.attn.hook_pattern"][b, h, dst, src].mean().item() for la, h in heads]
    return sum(vals) / len(vals)


def attention_grid(cache: Any, ds: IOIDataset, n_layers: int, n_heads: int,
                   dst: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """[n_layers, n_heads] mean attention from dst to src (per prompt positions)."""
    b = torch.arange(len(ds))
    out = torch.zeros(n_layers, n_heads)
    for la in range(n_layers):
        out[la] = cache[f"blocks.{la}.attn.hook_pattern"][b, :, dst, src].mean(0)
    return out


def top_heads(scores: torch.Tensor, threshold: float, sign: int) -> list[str]:
    """Heads whose score*sign exceeds threshold, strongest first, as 'L.H' labels."""
    s = torch.nan_to_num(scores * sign, nan=0.0)
    idx = [(s[la, h].item(), la, h) for la in range(s.shape[0]) for h in range(s.shape[1])]
    return [f"{la}.{h}" for v, la, h in sorted(idx, reverse=True) if v > threshold]


def heatmap(scores: torch.Tensor, title: str, label: str):
    """A layer x head heatmap (matplotlib, diverging, centred on zero). One colour convention on
    every page: red below zero, blue above, white at zero; titles say what each sign means."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = torch.nan_to_num(scores.detach().float(), nan=0.0).numpy()
    lim = float(abs(data).max()) or 1.0
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    im = ax.imshow(data, cmap="RdBu", vmin=-lim, vmax=lim)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(textwrap.fill(title, 60), fontsize=9)  # a long title would run over the colour bar
    fig.colorbar(im, ax=ax, label=label)
    return fig
