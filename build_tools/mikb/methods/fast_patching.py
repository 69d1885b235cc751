"""Exact activation and path patching that avoids the work hook-based sweeps repeat.

TransformerLens's ``get_act_patch_attn_head_out_all_pos`` runs one full hooked forward per
head, and ``get_act_patch_direct_path`` one per receiving head. Each of those forwards
recomputes layers the patch cannot have changed and the whole vocabulary at every position.
The functions here give the same numbers (the tests hold them to TL within 1e-4) with:

* one unpatched clean and corrupted forward, cached per layer;
* each patched run resumed from the cached residual at the patched layer, as
  ``resid_mid[layer] + delta`` where ``delta`` is the patched head's change of its write;
* all heads of a layer batched into one forward (runs x examples rows per GEMM);
* the last block evaluated only at the read-out position (keys and values still at all
  positions), and only the vocabulary columns the metric reads.

Path patching into a head's q/k/v input reduces to the same resume: changing one receiving
head's input changes only that head's ``z``, so its effect is again a delta on
``resid_mid[receiver layer]``; every receiving head of a layer comes out of one attention call
because heads are independent.

Inputs are equal-length token batches without padding masks (right padding is fine when
``positions`` in the readout points at each example's last real token).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from mikb.methods._fast_forward import (
    LogitReadout,
    ModelWeights,
    RunCache,
    attend,
    extract_weights,
    first_difference,
    logit_diff_readout,
    metric_from_tokens,
    mid_after_attn_change,
    project_head_input,
    qkv,
    resume_from_mid,
    run_with_cache,
)

__all__ = [
    "LogitReadout",
    "ModelWeights",
    "extract_weights",
    "head_out_patching",
    "head_write_changes",
    "logit_diff_readout",
    "path_patching_from_head",
    "unpatched_metric",
]

Reduce = Literal["mean", "none"]


def _weights(model: torch.nn.Module | ModelWeights) -> ModelWeights:
    return model if isinstance(model, ModelWeights) else extract_weights(model)


def _reduce(values: Tensor, reduce: Reduce) -> Tensor:
    """``[..., batch]`` -> batch mean (TL's scalar metric) or kept per example."""
    if reduce == "mean":
        return values.mean(dim=-1)
    if reduce == "none":
        return values
    raise ValueError(f"reduce must be 'mean' or 'none', got {reduce!r}")


def _check_tokens(clean: Tensor, corrupted: Tensor) -> None:
    if clean.shape != corrupted.shape or clean.ndim != 2:
        raise ValueError(
            f"clean and corrupted tokens must be equal-shape [batch, pos], got "
            f"{tuple(clean.shape)} and {tuple(corrupted.shape)}"
        )


@torch.no_grad()
def unpatched_metric(
    model: torch.nn.Module | ModelWeights, tokens: Tensor, readout: LogitReadout
) -> Tensor:
    """The metric of an unpatched run, per example ``[batch]``."""
    return metric_from_tokens(_weights(model), tokens, readout)


@torch.no_grad()
def head_out_patching(
    model: torch.nn.Module | ModelWeights,
    clean_tokens: Tensor,
    corrupted_tokens: Tensor,
    readout: LogitReadout,
    *,
    reduce: Reduce = "mean",
    max_rows: int = 2048,
) -> Tensor:
    """Patch each head's clean output (all positions) into the corrupted run.

    Same quantity as ``transformer_lens.patching.get_act_patch_attn_head_out_all_pos``
    with ``readout.as_tl_metric()`` as its metric. Returns ``[n_layers, n_heads]`` (batch
    mean) or ``[n_layers, n_heads, batch]`` with ``reduce="none"``.
    """
    _check_tokens(clean_tokens, corrupted_tokens)
    w = _weights(model)
    start = first_difference(clean_tokens, corrupted_tokens)
    clean = run_with_cache(w, clean_tokens, resid=False)
    corrupt = run_with_cache(w, corrupted_tokens, kv_prefix=start)
    rows = [resume_from_mid(w, layer, corrupt, head_write_changes(w, clean, corrupt, layer),
                            readout, start, max_rows) for layer in range(w.n_layers)]
    return _reduce(torch.stack(rows), reduce)


def head_write_changes(
    w: ModelWeights, clean: RunCache, corrupt: RunCache, layer: int, heads: list[int] | None = None
) -> Tensor:
    """Each head's clean-minus-corrupted write ``[len(heads), batch, pos, d_model]`` at
    ``layer`` (all heads with ``heads`` None): the delta a head-output patch adds."""
    dz = clean.z[layer] - corrupt.z[layer]  # [batch, heads, pos, d_head]
    w_o = w.w_o_per_head(layer)
    if heads is not None:
        dz, w_o = dz[:, heads], w_o[heads]
    return dz.transpose(0, 1) @ w_o.unsqueeze(1)


@torch.no_grad()
def path_patching_from_head(
    model: torch.nn.Module | ModelWeights,
    clean_tokens: Tensor,
    corrupted_tokens: Tensor,
    readout: LogitReadout,
    sender: tuple[int, int],
    component: Literal["q", "k", "v"] = "q",
    *,
    reduce: Reduce = "mean",
    max_rows: int = 2048,
) -> Tensor:
    """Patch the sender head's clean write into each later head's ``component`` input alone.

    Same quantity as ``transformer_lens.patching.get_act_patch_direct_path``: the sender's
    clean-minus-corrupted write is added, at every position, to the pre-norm input of one
    receiving head's q, k or v, while every other reader keeps the corrupted residual. The
    sender's write is ``(z_clean - z_corrupt) @ W_O`` (passed through the post-attention norm
    where a model has one: the change of the residual with that head alone patched). Returns
    ``[n_layers, n_heads]`` (rows ``<= sender layer`` are 0.0 placeholders, as in TL) or
    ``[n_layers, n_heads, batch]``.

    With grouped-query attention a key-value head is shared by a group of query heads, so
    patching ``k`` or ``v`` patches that shared head's input for its whole group (what the
    model can compute), and the result has one column per key-value head:
    ``[n_layers, n_kv_heads]``. ``q`` is always per query head.
    """
    _check_tokens(clean_tokens, corrupted_tokens)
    if component not in ("q", "k", "v"):
        raise ValueError(f"component must be 'q', 'k' or 'v', got {component!r}")
    w = _weights(model)
    src_layer, src_head = sender
    start = first_difference(clean_tokens, corrupted_tokens)
    clean = run_with_cache(w, clean_tokens, resid=False)
    corrupt = run_with_cache(w, corrupted_tokens, kv_prefix=start)
    z_delta = clean.z[src_layer][:, src_head] - corrupt.z[src_layer][:, src_head]
    head_delta = (z_delta @ w.w_o_per_head(src_layer)[src_head]).unsqueeze(0)
    src_delta = (mid_after_attn_change(w, src_layer, corrupt, head_delta, 0)[0]
                 - corrupt.resid_mid[src_layer])  # [batch, pos, d_model]
    batch = clean_tokens.shape[0]
    receivers = w.n_heads if component == "q" else w.kv_heads
    out = torch.zeros(w.n_layers, receivers, batch, dtype=src_delta.dtype, device=src_delta.device)
    which = "qkv".index(component)
    for layer in range(src_layer + 1, w.n_layers):
        base = corrupt.resid_pre[layer]
        # Only the patched component changes: project the shifted residual with its weights.
        qkv_heads = list(qkv(w, layer, base))
        qkv_heads[which] = project_head_input(w, layer, component, base + src_delta)
        # Heads are independent, so one call gives every receiver's z with only its own input
        # patched (a shared key-value head changes the z of its whole query group).
        z_new = attend(w, layer, *qkv_heads)
        dz = (z_new - corrupt.z[layer]).transpose(0, 1)  # [heads, batch, pos, d_head]
        deltas = dz @ w.w_o_per_head(layer).unsqueeze(1)
        if receivers != w.n_heads:
            deltas = deltas.view(receivers, w.group, *deltas.shape[1:]).sum(1)
        out[layer] = resume_from_mid(w, layer, corrupt, deltas, readout, start, max_rows)
    return _reduce(out, reduce)
