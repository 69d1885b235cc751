"""Activation patching of head outputs and of the residual stream, via TransformerLens.

Why a wrapper and not our own loop: `transformer_lens.patching` already implements denoising
patching (clean activation into the corrupted run) exactly; we only fix the IOI metric and the
normalisation, and return plain tensors with the flags that produced them.
"""

from __future__ import annotations

from typing import Any

import torch
from transformer_lens import patching

from mikb.data.ioi import IOIDataset
from mikb.methods.metrics import logit_diff, normalized_metric

FLAGS = {
    "patching_direction": "denoising: clean activation patched into the ABC-corrupted run",
    "metric": "normalised logit diff (0 = corrupted run, 1 = clean run)",
}


def _setup(model: Any, ds: IOIDataset):
    with torch.no_grad():
        clean_logits, clean_cache = model.run_with_cache(ds.tokens)
        corrupted_logits = model(ds.corrupted_tokens)
    metric = normalized_metric(
        ds, logit_diff(clean_logits, ds).item(), logit_diff(corrupted_logits, ds).item()
    )
    return clean_cache, metric


def patch_head_outputs(model: Any, ds: IOIDataset) -> torch.Tensor:
    """[n_layers, n_heads]: recovery when one head's output (all positions) is patched."""
    clean_cache, metric = _setup(model, ds)
    with torch.no_grad():
        return patching.get_act_patch_attn_head_out_all_pos(
            model, ds.corrupted_tokens, clean_cache, metric
        ).detach()


def patch_resid_by_pos(model: Any, ds: IOIDataset) -> torch.Tensor:
    """[n_layers, pos]: recovery when the residual stream before a block at one position is patched."""
    clean_cache, metric = _setup(model, ds)
    with torch.no_grad():
        return patching.get_act_patch_resid_pre(
            model, ds.corrupted_tokens, clean_cache, metric
        ).detach()
