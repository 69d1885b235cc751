"""Mean ablation of attention heads (replace a head's output by its mean over a reference set).

Why mean ablation over the ABC distribution: it is the ablation wang2022ioi use for circuit
evaluation (Section 4); it removes a head's prompt-specific information while keeping the
average signal that later layers rely on, unlike zero ablation.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from mikb.methods.hooks import Head, z_name

FLAGS = {
    "ablation": "mean",
    "mean_over": "ABC-corrupted prompts, per position (all prompts have one length)",
    "ablated_activation": "hook_z (head output before W_O)",
}


def head_means(model: Any, tokens: torch.Tensor) -> dict[int, torch.Tensor]:
    """Per layer: the mean of hook_z over the batch, [pos, n_heads, d_head]."""
    names = [z_name(la) for la in range(model.cfg.n_layers)]
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    return {la: cache[z_name(la)].mean(0) for la in range(model.cfg.n_layers)}


def ablation_hooks(means: dict[int, torch.Tensor], heads: Iterable[Head]) -> list[tuple[str, Any]]:
    """Forward hooks that put the mean output in place of each listed head's output."""
    by_layer: dict[int, list[int]] = {}
    for la, h in heads:
        by_layer.setdefault(la, []).append(h)

    def make(layer: int, hs: list[int]):
        def hook(z: torch.Tensor, hook: Any) -> torch.Tensor:
            z = z.clone()
            z[:, :, hs] = means[layer][None, : z.shape[1], hs].to(z.dtype)
            return z

        return hook

    return [(z_name(la), make(la, hs)) for la, hs in by_layer.items()]


def run_ablated(
    model: Any, tokens: torch.Tensor, means: dict[int, torch.Tensor], heads: Iterable[Head]
) -> torch.Tensor:
    """Logits with the listed heads mean-ablated."""
    hooks = ablation_hooks(means, list(heads))
    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=hooks) if hooks else model(tokens)


def run_ablated_with_cache(
    model: Any, tokens: torch.Tensor, means: dict[int, torch.Tensor], heads: Iterable[Head]
) -> tuple[torch.Tensor, Any]:
    """Logits and cache of the run with the listed heads mean-ablated."""
    hooks = ablation_hooks(means, list(heads))
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        return model.run_with_cache(tokens)
