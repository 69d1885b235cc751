"""Path patching (wang2022ioi, Section 3.1) from sender heads to receivers.

A path sender -> receiver is patched by adding the sender's (source run - base run) write to the
receiver's own copy of its input (q, k or v) only, while every other reader keeps the base run's
value; the logits are the receiver "logits" when the change goes only into the final residual.
This is the direct-path variant (paths through MLPs are not included), the same intervention as
TransformerLens' `get_act_patch_direct_path`, which our tests compare against. Ours adds:
several senders and several receivers patched at once (e.g. all S-inhibition heads into all
name movers' queries), the logits receiver without a forward pass, and the IOI sign convention
(base = clean, source = ABC-corrupted; score = relative change of the logit difference).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from mikb.data.ioi import IOIDataset
from mikb.methods.dla import final_scale, logit_diff_directions
from mikb.methods.hooks import Head, head_write

FLAGS = {
    "path_patching": "direct paths only (sender write added to receiver input; MLP paths excluded)",
    "base_run": "clean",
    "source_run": "ABC-corrupted",
    "score": "relative change of logit diff: (patched - clean) / clean (negative = important)",
}


def sender_delta(model: Any, source_cache: Any, base_cache: Any, senders: Sequence[Head]) -> torch.Tensor:
    """Sum over senders of their (source - base) residual write, [batch, pos, d_model]."""
    return sum(
        head_write(model, source_cache, la, h) - head_write(model, base_cache, la, h)
        for la, h in senders
    )


def path_patch_to_logits(
    model: Any, ds: IOIDataset, base_cache: Any, source_cache: Any, senders: Sequence[Head]
) -> torch.Tensor:
    """Change of the mean logit diff when the senders' writes reach only the unembedding.

    Exact for models without a final LayerNorm; with one, its scale is frozen at the base run's
    value (the same linearisation as direct logit attribution).
    """
    b = torch.arange(len(ds))
    delta = sender_delta(model, source_cache, base_cache, senders)[b, ds.end]
    delta = delta / final_scale(base_cache, ds)
    return (delta * logit_diff_directions(model, ds)).sum(-1).mean()


def path_patch_to_heads(
    model: Any,
    tokens: torch.Tensor,
    base_cache: Any,
    source_cache: Any,
    senders: Sequence[Head],
    receivers: Sequence[Head],
    component: str,
    metric: Callable[[torch.Tensor], torch.Tensor],
    positions: torch.Tensor | None = None,
) -> float:
    """Metric of the base run with the senders' (source - base) writes added to the receivers'
    `component` ("q", "k" or "v") input only; with `positions` ([batch] token indices) only at
    that position of each prompt (e.g. S1+1 for the induction heads' keys)."""
    delta = sender_delta(model, source_cache, base_cache, senders)
    if positions is not None:
        mask = torch.zeros(delta.shape[:2], dtype=delta.dtype, device=delta.device)
        mask[torch.arange(delta.shape[0]), positions.to(delta.device)] = 1.0
        delta = delta * mask[:, :, None]
    by_layer: dict[int, list[int]] = {}
    for la, h in receivers:
        by_layer.setdefault(la, []).append(h)
    fired: list[bool] = []

    def make_hook(heads: list[int]):
        def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:
            fired.append(True)
            x = x.clone()
            x[:, :, heads] += delta[:, :, None, :]
            return x

        return hook

    def make_linear_hook(model: Any, layer: int, heads: list[int], comp: str):
        weight = getattr(model.blocks[layer].attn, f"W_{comp.upper()}")  # [head, d_model, d_head]

        def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:
            fired.append(True)
            x = x.clone()
            for h in heads:
                x[:, :, h] += delta @ weight[h]
            return x

        return hook

    if _has_qkv_fork(model):
        hooks = [
            (f"blocks.{la}.attn.hook_{component}_input", make_hook(hs)) for la, hs in by_layer.items()
        ]
        saved = bool(getattr(model.cfg, "use_split_qkv_input", False))
        model.set_use_split_qkv_input(True)
        try:
            with torch.no_grad():
                logits = model.run_with_hooks(tokens, fwd_hooks=hooks)
        finally:
            model.set_use_split_qkv_input(saved)
    else:
        # No per-head input fork (e.g. TL-native attention). Without a norm before attention
        # the projection is linear, so adding delta to the input equals adding delta @ W_c to
        # the receiver's q/k/v; with a norm this would be wrong, so refuse.
        if getattr(model.cfg, "normalization_type", None) is not None:
            raise NotImplementedError("path patching needs a q/k/v input fork on normed models")
        hooks = [
            (f"blocks.{la}.attn.hook_{component}", make_linear_hook(model, la, hs, component))
            for la, hs in by_layer.items()
        ]
        with torch.no_grad():
            logits = model.run_with_hooks(tokens, fwd_hooks=hooks)
    if len(fired) != len(hooks):
        raise NotImplementedError("a receiver's q/k/v hook did not fire on this model")
    return float(metric(logits))


def _has_qkv_fork(model: Any) -> bool:
    """Whether the bridge exposes per-head q/k/v inputs (GPT-2's joint-QKV attention does)."""
    try:
        saved = bool(getattr(model.cfg, "use_split_qkv_input", False))
        model.set_use_split_qkv_input(True)
        model.set_use_split_qkv_input(saved)
        return True
    except NotImplementedError:
        return False


def sweep_senders_to_logits(
    model: Any, ds: IOIDataset, base_cache: Any, source_cache: Any, base_value: float
) -> torch.Tensor:
    """[n_layers, n_heads] relative change of the logit diff for each head -> logits path."""
    n_l, n_h = model.cfg.n_layers, model.cfg.n_heads
    out = torch.zeros(n_l, n_h)
    for la in range(n_l):
        for h in range(n_h):
            change = path_patch_to_logits(model, ds, base_cache, source_cache, [(la, h)])
            out[la, h] = change / base_value
    return out


def sweep_senders_to_heads(
    model: Any,
    ds: IOIDataset,
    base_cache: Any,
    source_cache: Any,
    receivers: Sequence[Head],
    component: str,
    metric: Callable[[torch.Tensor], torch.Tensor],
    base_value: float,
    sender_layers: Sequence[int] | None = None,
    positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """[n_layers, n_heads] relative change when each earlier head's path into the receivers'
    `component` is patched (NaN where a sender is not before every receiver); `positions` as in
    `path_patch_to_heads`."""
    n_l, n_h = model.cfg.n_layers, model.cfg.n_heads
    out = torch.full((n_l, n_h), float("nan"))
    first = min(la for la, _ in receivers)
    layers = sender_layers if sender_layers is not None else range(first)
    for la in layers:
        if la >= first:
            continue
        for h in range(n_h):
            val = path_patch_to_heads(
                model, ds.tokens, base_cache, source_cache, [(la, h)], receivers, component, metric,
                positions=positions,
            )
            out[la, h] = (val - base_value) / base_value
    return out
