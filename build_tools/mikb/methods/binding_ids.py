"""Binding-ID mean interventions on a context whose activations are held fixed (feng2023binding).

Why a frozen context: Feng and Steinhardt treat the context's activations at every layer as one
stacked object that the query reads; an intervention edits that object at chosen token
positions (adding a vector at each layer) and leaves everything else in the context as the clean
run computed it. Their released code does this by overwriting the residual stream at the
context positions at every layer (``resid_pre``) with the clean run's values, edited where the
intervention applies, so that only the query positions are recomputed. ``frozen_context_logits``
does the same through TransformerBridge hooks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def resid_names(model: Any) -> list[str]:
    return [f"blocks.{la}.hook_resid_pre" for la in range(model.cfg.n_layers)]


@torch.no_grad()
def context_resid(model: Any, tokens: torch.Tensor, ctx_end: int) -> torch.Tensor:
    """[layer, batch, ctx_end, d_model]: the residual stream before each block, context only."""
    names = resid_names(model)
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    return torch.stack([cache[n][:, :ctx_end].detach().clone() for n in names])


@torch.no_grad()
def frozen_context_logits(model: Any, tokens: torch.Tensor, clean_resid: torch.Tensor,
                          edit: torch.Tensor | None = None) -> torch.Tensor:
    """Logits at the last position with the context (the first ``clean_resid.shape[2]`` positions)
    held at ``clean_resid`` (+ ``edit``, same shape) at every layer; the rest is recomputed."""
    ctx_end = clean_resid.shape[2]
    target = clean_resid if edit is None else clean_resid + edit

    def make(layer: int):
        def hook(act: torch.Tensor, hook: Any) -> torch.Tensor:
            act = act.clone()
            act[:, :ctx_end] = target[layer].to(act.dtype)
            return act
        return hook

    hooks = [(n, make(la)) for la, n in enumerate(resid_names(model))]
    return model.run_with_hooks(tokens, fwd_hooks=hooks)[:, -1]


def slot_edit(shape: Sequence[int], positions: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """An edit of ``shape`` [layer, batch, ctx, d] adding ``vectors`` [layer, width, d] at
    ``positions`` [batch] + 0..width-1 (one slot per prompt)."""
    edit = torch.zeros(*shape, dtype=vectors.dtype)
    b = torch.arange(shape[1])
    for w in range(vectors.shape[1]):
        edit[:, b, positions + w] += vectors[:, w][:, None, :]
    return edit


def matched_random(vectors: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random directions with the norm of each [layer, width] vector of ``vectors``."""
    r = torch.randn(vectors.shape, generator=generator, dtype=vectors.dtype)
    return r / r.norm(dim=-1, keepdim=True) * vectors.norm(dim=-1, keepdim=True)
