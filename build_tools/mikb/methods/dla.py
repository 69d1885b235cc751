"""Direct logit attribution (DLA) of every attention head to the IOI logit difference.

Why our own next to TransformerLens' `direct_logit_attribution`: we need it per head at each
prompt's END position with per-prompt answer pairs, and on models whose final norm is not
folded. Where the final norm is a LayerNorm we divide by the cached final scale, which is the
standard linearisation (the scale is frozen at its clean value).
"""

from __future__ import annotations

from typing import Any

import torch

from mikb.data.ioi import IOIDataset
from mikb.methods.hooks import head_write


def logit_diff_directions(model: Any, ds: IOIDataset) -> torch.Tensor:
    """W_U[:, IO] - W_U[:, S] per prompt, [batch, d_model]."""
    w_u = model.W_U
    return (w_u[:, ds.io_ids] - w_u[:, ds.s_ids]).T


def final_scale(cache: Any, ds: IOIDataset) -> torch.Tensor | float:
    """The final LayerNorm's scale at END ([batch, 1]) if the model has one, else 1."""
    for name in ("ln_final.hook_scale",):
        if name in cache:
            b = torch.arange(len(ds))
            return cache[name][b, ds.end]
    return 1.0


def head_dla(model: Any, cache: Any, ds: IOIDataset, per_prompt: bool = False) -> torch.Tensor:
    """[n_layers, n_heads] direct effect of each head on logit(IO) - logit(S) (mean over prompts)."""
    b = torch.arange(len(ds))
    dirs = logit_diff_directions(model, ds)
    scale = final_scale(cache, ds)
    n_l, n_h = model.cfg.n_layers, model.cfg.n_heads
    out = torch.zeros(n_l, n_h, len(ds))
    for layer in range(n_l):
        for h in range(n_h):
            write = head_write(model, cache, layer, h)[b, ds.end] / scale
            out[layer, h] = (write * dirs).sum(-1)
    return out if per_prompt else out.mean(-1)


def tl_head_dla(model: Any, cache: Any, ds: IOIDataset) -> torch.Tensor:
    """The same quantity from TransformerLens' `direct_logit_attribution(unit="head")`.

    Used only to cross-check `head_dla`; it needs every prompt's END at the last position.
    """
    from transformer_lens.tools.analysis import direct_logit_attribution

    assert bool((ds.end == ds.tokens.shape[1] - 1).all()), "TL DLA reads position -1"
    res = direct_logit_attribution(
        model, answer_tokens=ds.io_ids, incorrect_tokens=ds.s_ids, unit="head", cache=cache
    )
    n_l, n_h = model.cfg.n_layers, model.cfg.n_heads
    heads = torch.zeros(n_l, n_h)
    for i, label in enumerate(res.labels):
        if label.startswith("L") and "H" in label:
            layer, h = label[1:].split("H")
            heads[int(layer), int(h)] = res.attribution[i].mean()
    return heads
