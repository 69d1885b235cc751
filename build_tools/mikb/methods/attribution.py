"""Attribution patching for every head and every head-to-head edge from one forward/backward.

Attribution patching (Nanda's first-order approximation to activation patching, made edge-wise
as EAP by Syed et al.) replaces each patched forward by a dot product: the clean-minus-corrupted
change of a writer times the gradient of the metric at the reader, both from the corrupted run.
Here one batched forward and one backward pass of the corrupted prompts give

* ``node[L, h]``: ``sum_{pos} (z_clean - z_corrupt)[L, h] . dM/dz[L, h]``, the estimate of
  :func:`mikb.methods.fast_patching.head_out_patching` minus the corrupted baseline;
* ``edges[c][Ls, hs, Lr, hr]``: sender ``(Ls, hs)``'s write change ``dz @ W_O`` dotted with the
  gradient at receiver ``(Lr, hr)``'s own pre-LayerNorm ``c`` input (``c`` in q, k, v), the
  estimate of :func:`~mikb.methods.fast_patching.path_patching_from_head` minus the baseline;
* ``direct[L, h]``: the sender's write dotted with the gradient at the final residual (its
  path to the logits that skips every later component).

The gradient at a receiver's private input is not a separate backward: it is the gradient at
the receiver's q/k/v (which the backward gives for all heads at once) mapped back through
``W_Q[h]`` and the LayerNorm's Jacobian at the corrupted residual, in closed form; with
RMSNorm or rotary positions, by one vector-Jacobian product through that layer's norm,
projection and rotation. With grouped-query attention the edges into k and v are per query
head (the shared projection applied to each query head's own input, as in the discovery
graph). Edges are refused for Gemma 2's post-attention norm, where a head's write is not
``dz @ W_O``; node scores run on every family, and edge scores for Gemma 2 come from EAP on
the discovery graph (:func:`mikb.methods.eap.eap`, through the norm's Jacobian).

``M`` is the batch mean of the readout's metric, the quantity TransformerLens's
``attribution_patch`` averages per example; summing its per-position node or edge scores over
positions gives the numbers here (the tests check that).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from mikb.methods._fast_forward import (
    LogitReadout,
    ModelWeights,
    NormParams,
    attend,
    attn_out,
    embed,
    extract_weights,
    mlp,
    norm,
    qkv,
    readout_metric,
    rotate,
    run_with_cache,
)

__all__ = ["AttributionScores", "attribution_patching"]


@dataclass
class AttributionScores:
    """First-order estimates of patching effects (metric change, denoising direction)."""

    node: Tensor  # [n_layers, n_heads]
    edges: dict[str, Tensor] | None  # "q"/"k"/"v" -> [n_layers, n_heads, n_layers, n_heads]
    direct: Tensor | None  # [n_layers, n_heads]: sender -> logits
    corrupted_metric: Tensor  # batch mean of the metric on the corrupted run


def _layer_norm_vjp(x: Tensor, params: NormParams | None, g: Tensor) -> Tensor:
    """Gradient w.r.t. LayerNorm's input ``x`` given ``g`` at its output (closed form)."""
    if params is None:
        return g
    mu = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=False)
    inv = torch.rsqrt(var + params.eps)
    xhat = (x - mu) * inv
    gw = g if params.weight is None else g * params.weight
    return inv * (
        gw - gw.mean(dim=-1, keepdim=True) - xhat * (gw * xhat).mean(dim=-1, keepdim=True)
    )


def _per_query_head(w: ModelWeights, layer: int, which: str) -> tuple[Tensor, Tensor]:
    """``W`` ``[n_heads, d_model, d_head]`` and bias ``[n_heads, d_head]`` of q, k or v, with
    a shared key-value head repeated for each query head of its group."""
    rep = 1 if which == "q" else w.group
    bias = getattr(w.layers[layer], f"b_{which}").view(-1, w.d_head)
    return w.per_head(layer, which).repeat_interleave(rep, 0), bias.repeat_interleave(rep, 0)


def _input_gradient(w: ModelWeights, layer: int, which: str, resid: Tensor, g: Tensor) -> Tensor:
    """Gradient at each head's private pre-norm ``which`` input, ``[heads, batch, pos, d]``,
    from the gradient ``g`` ``[batch, heads, pos, d_head]`` at its (rotated) projection.

    LayerNorm (or none) without rotary positions: the closed form (``W`` then LayerNorm's
    Jacobian). Otherwise (RMSNorm, rotary) one vector-Jacobian product through this
    layer's norm, projection and rotation for all heads at once.
    """
    lw = w.layers[layer]
    weight, bias = _per_query_head(w, layer, which)
    if w.rope is None and (lw.ln1 is None or lw.ln1.kind == "layer"):
        g_ln_out = torch.einsum("bhtk,hdk->hbtd", g, weight)
        return _layer_norm_vjp(resid.unsqueeze(0), lw.ln1, g_ln_out)
    with torch.enable_grad():
        xs = resid.detach().unsqueeze(0).expand(w.n_heads, *resid.shape).clone().requires_grad_(True)
        proj = torch.einsum("hbtd,hdk->bhtk", norm(xs, lw.ln1), weight) + bias[None, :, None, :]
        if which != "v":
            proj = rotate(w, proj)
        (g_in,) = torch.autograd.grad(proj, xs, grad_outputs=g)
    return g_in


def _corrupted_forward_with_grads(
    w: ModelWeights, tokens: Tensor, readout: LogitReadout, *, edges: bool = True
) -> tuple[Tensor, list[Tensor], list[Tensor], list[tuple[Tensor, Tensor, Tensor]] | None,
           list[Tensor], Tensor | None]:
    """One forward with autograd, one backward.

    Returns the metric, the corrupted ``z`` of every layer (detached: the same numbers an
    unpatched forward gives, so no second corrupted forward is needed), their gradients, and
    with ``edges`` the q/k/v and final-residual gradients (``None`` without: not asked of
    autograd, so the first layer's attention is not back-propagated).
    """
    # Weights are detached, so the graph starts at the embedding.
    x = embed(w, tokens).requires_grad_(True)
    per_query_head = dataclasses.replace(w, n_kv_heads=0)
    zs, qkvs, resid_pre = [], [], []
    for layer in range(w.n_layers):
        resid_pre.append(x.detach())
        q, k, v = qkv(w, layer, x)
        if w.group > 1:  # per-query-head keys and values, so their gradients are per head
            k, v = (t.repeat_interleave(w.group, dim=1) for t in (k, v))
        z = attend(per_query_head, layer, q, k, v)
        zs.append(z)
        qkvs.append((q, k, v))
        a = attn_out(w, layer, z)
        if w.parallel:
            x = x + a + mlp(w, layer, x)
        else:
            x = x + a
            x = x + mlp(w, layer, x)
    final = x
    batch, seq = tokens.shape
    pos = readout.positions_for(batch, seq, x.device)
    metric = readout_metric(w, readout, final[torch.arange(batch, device=pos.device)[:, None], pos]).mean()
    inputs = zs + ([t for triple in qkvs for t in triple] + [final] if edges else [])
    grads = torch.autograd.grad(metric, inputs, allow_unused=True)
    n = w.n_layers
    g_z = [g if g is not None else torch.zeros_like(z) for g, z in zip(grads[:n], zs, strict=True)]
    z_values = [z.detach() for z in zs]
    if not edges:
        return metric.detach(), z_values, g_z, None, resid_pre, None
    flat = grads[n : 4 * n]
    g_qkv = []
    for layer in range(n):
        trio = []
        for c in range(3):
            g = flat[3 * layer + c]
            trio.append(g if g is not None else torch.zeros_like(qkvs[layer][c]))
        g_qkv.append(tuple(trio))
    g_final = grads[4 * n]
    return metric.detach(), z_values, g_z, g_qkv, resid_pre, g_final


def attribution_patching(
    model: torch.nn.Module | ModelWeights,
    clean_tokens: Tensor,
    corrupted_tokens: Tensor,
    readout: LogitReadout,
    *,
    edges: bool = True,
    examples_per_pass: int | None = None,
    clean_z: list[Tensor] | None = None,
) -> AttributionScores:
    """Node (per head) and, with ``edges``, head-to-head q/k/v edge attribution scores.

    ``examples_per_pass`` bounds memory: examples are scored in groups of that size (one
    forward and backward each) and the batch means combined; ``None`` = all in one pass.
    It is a speed/memory trade, not a free choice: one pass is the fast setting but keeps
    every example's activations for the backward; one example per pass keeps the peak near
    TransformerLens's per-example ``attribution_patch`` and runs at about its speed (see the
    Performance section of the README, measured by ``benchmarks/bench_patching.py --tasks attr
    --attr-chunks 1,4,all``).

    ``clean_z``: the clean run's per-layer ``z`` where the caller already has it (a
    :class:`RunCache`'s ``z``), so the clean forward is not run twice.
    """
    if clean_tokens.shape != corrupted_tokens.shape:
        raise ValueError("clean and corrupted tokens must have the same shape")
    w = model if isinstance(model, ModelWeights) else extract_weights(model)
    if edges and any(lw.attn_post is not None for lw in w.layers):
        raise NotImplementedError("attribution patching of edges does not support a post-attention norm "
                                  "(Gemma 2): a head's write is not dz @ W_O there; node scores (edges=False) work, and "
                                  "mikb.methods.eap.eap on GraphForward scores Gemma 2's edges")
    batch = clean_tokens.shape[0]
    if examples_per_pass is not None and examples_per_pass < batch:
        parts = []
        for first in range(0, batch, examples_per_pass):
            sl = slice(first, first + examples_per_pass)
            sub = readout.subset(sl)
            n = len(range(batch)[sl])
            parts.append((n / batch, attribution_patching(
                w, clean_tokens[sl], corrupted_tokens[sl], sub, edges=edges,
                clean_z=None if clean_z is None else [z[sl] for z in clean_z])))
        return AttributionScores(
            node=sum(f * p.node for f, p in parts),
            edges=None if not edges else {
                c: sum(f * p.edges[c] for f, p in parts) for c in "qkv"},
            direct=None if not edges else sum(f * p.direct for f, p in parts),
            corrupted_metric=sum(f * p.corrupted_metric for f, p in parts),
        )
    if clean_z is None:
        with torch.no_grad():
            clean_z = run_with_cache(w, clean_tokens, resid=False).z
    with torch.enable_grad():
        metric, corrupt_z, g_z, g_qkv, resid_pre, g_final = _corrupted_forward_with_grads(
            w, corrupted_tokens, readout, edges=edges
        )
    with torch.no_grad():
        dz = [clean_z[i] - corrupt_z[i] for i in range(w.n_layers)]  # [batch, heads, pos, dh]
        node = torch.stack([(d * g).sum(dim=(0, 2, 3)) for d, g in zip(dz, g_z, strict=True)])
        if not edges:
            return AttributionScores(node=node, edges=None, direct=None, corrupted_metric=metric)
        # Every sender's write change, flattened: [n_layers * n_heads, batch * pos * d_model].
        writes = torch.stack(
            [
                torch.einsum("bhtk,hkd->hbtd", dz[i], w.w_o_per_head(i))
                for i in range(w.n_layers)
            ]
        )
        L, H = w.n_layers, w.n_heads
        writes = writes.reshape(L * H, -1)
        direct = (writes @ g_final.reshape(-1)).view(L, H)
        out = {}
        for c, name in enumerate("qkv"):
            scores = torch.zeros(L, H, L, H, dtype=writes.dtype, device=writes.device)
            for layer in range(1, L):
                g_in = _input_gradient(w, layer, name, resid_pre[layer], g_qkv[layer][c])
                senders = writes[: layer * H]
                scores[:layer, :, layer, :] = (senders @ g_in.reshape(H, -1).T).view(layer, H, H)
            out[name] = scores
    return AttributionScores(node=node, edges=out, direct=direct, corrupted_metric=metric)
