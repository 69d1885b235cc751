"""A plain-tensor forward pass over a TransformerBridge's weights, for fast exact patching.

Why not hooks: a hooked forward recomputes every layer and the full vocabulary for every
patched run. Patching methods only need the layers *after* the patch and the few logits the
metric reads, and they need many runs that differ only by a residual-stream delta. This module
runs the same arithmetic as the bridge on raw weight tensors so callers can resume from any
layer, batch many runs in one matrix multiply and stop at the logits the metric reads. The
tests in ``tests/test_fast_patching.py`` hold it to TransformerLens's hook-based results.

Supported: TL-native models (``TransformerBridge.boot_native``) with LayerNorm or no norm,
standard positional embeddings, plain (non-gated) MLPs or attention-only, no GQA and no
soft-capping; and Hugging Face GPT-2 (``TransformerBridge.boot_transformers``). Anything else
raises ``NotImplementedError`` rather than computing something subtly different.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

Activation = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class LayerWeights:
    """One block's weights, with per-head matrices fused so each projection is one GEMM."""

    ln1: tuple[Tensor, Tensor] | None  # (weight, bias) or None for no normalisation
    # [d_model, n_heads * d_head] each: views of the model's own parameters where the bridge
    # allows (no copy, so extracting costs no memory); columns ordered (head, d_head).
    w_q: Tensor
    w_k: Tensor
    w_v: Tensor
    b_q: Tensor  # [n_heads * d_head]
    b_k: Tensor
    b_v: Tensor
    w_o: Tensor  # [n_heads * d_head, d_model]
    b_o: Tensor  # [d_model]
    ln2: tuple[Tensor, Tensor] | None
    w_in: Tensor | None  # [d_model, d_mlp]; None for attention-only models
    b_in: Tensor | None
    w_out: Tensor | None  # [d_mlp, d_model]
    b_out: Tensor | None
    attn_scale: float  # scores are divided by this


@dataclass(frozen=True)
class ModelWeights:
    """Everything the fast forward reads, detached from autograd and the bridge."""

    layers: tuple[LayerWeights, ...]
    ln_final: tuple[Tensor, Tensor] | None
    w_u: Tensor  # [d_model, d_vocab]
    b_u: Tensor | None  # [d_vocab]
    w_e: Tensor  # [d_vocab, d_model]
    w_pos: Tensor  # [n_ctx, d_model]
    n_heads: int
    d_head: int
    eps: float
    act: Activation

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def d_model(self) -> int:
        return int(self.w_u.shape[0])

    def per_head(self, layer: int, which: str) -> Tensor:
        """``W_Q``/``W_K``/``W_V`` of one layer as ``[n_heads, d_model, d_head]``."""
        block = getattr(self.layers[layer], f"w_{which}")
        return block.reshape(-1, self.n_heads, self.d_head).permute(1, 0, 2)

    def w_o_per_head(self, layer: int) -> Tensor:
        """``W_O`` of one layer as ``[n_heads, d_head, d_model]``."""
        return self.layers[layer].w_o.reshape(self.n_heads, self.d_head, -1)


# -- weight extraction -------------------------------------------------------------------------


def _ln_params(module: torch.nn.Module, what: str) -> tuple[Tensor, Tensor] | None:
    inner = getattr(module, "original_component", module)
    if isinstance(inner, torch.nn.Identity):
        return None
    if isinstance(inner, torch.nn.LayerNorm) and inner.elementwise_affine:
        bias = inner.bias if inner.bias is not None else torch.zeros_like(inner.weight)
        return inner.weight.detach(), bias.detach()
    raise NotImplementedError(f"{what}: only affine LayerNorm or no norm is supported")


def _attn_scale(bridge_attn: torch.nn.Module, d_head: int) -> float:
    inner = getattr(bridge_attn, "original_component", bridge_attn)
    scale = getattr(inner, "scale", None)
    if isinstance(scale, (int, float)):
        return float(scale)
    # Hugging Face GPT-2 attention: sqrt(d_head), optionally times (layer_idx + 1).
    if hasattr(inner, "scale_attn_weights"):
        value = math.sqrt(d_head) if inner.scale_attn_weights else 1.0
        if getattr(inner, "scale_attn_by_inverse_layer_idx", False):
            value *= float(inner.layer_idx + 1)
        return value
    raise NotImplementedError(f"cannot read the attention scale of {type(inner).__name__}")


def _check_supported(model: torch.nn.Module, bidirectional_ok: bool = False) -> None:
    cfg = model.cfg
    problems = []
    if getattr(cfg, "n_key_value_heads", None) not in (None, cfg.n_heads):
        problems.append("grouped-query attention")
    if getattr(cfg, "gated_mlp", False):
        problems.append("gated MLP")
    if (getattr(cfg, "positional_embedding_type", None) or "standard") != "standard":
        problems.append("non-standard positional embedding")
    if float(getattr(cfg, "attn_scores_soft_cap", -1.0) or -1.0) > 0:
        problems.append("attention soft-cap")
    if float(getattr(cfg, "output_logits_soft_cap", -1.0) or -1.0) > 0:
        problems.append("logit soft-cap")
    if getattr(cfg, "parallel_attn_mlp", False):
        problems.append("parallel attention/MLP")
    if (getattr(cfg, "attention_dir", None) or "causal") != "causal" and not bidirectional_ok:
        problems.append(f"{cfg.attention_dir} attention (the fast forward is causal)")
    if str(getattr(cfg, "act_fn", "") or "").lower().endswith("_ln"):
        problems.append(f"activation {cfg.act_fn} (a LayerNorm inside the MLP)")
    hf_cfg = getattr(getattr(model, "original_model", None), "config", None)
    kinds = [str(a).lower() for a in (getattr(cfg, "attn_types", None) or getattr(hf_cfg, "attention_layers", None) or [])]
    if "local" in kinds or getattr(hf_cfg, "sliding_window", None):
        problems.append("local (sliding-window) attention")
    # Hooks on hook points are what users (and TransformerLens's helpers) attach; the bridge's
    # own capture hooks on its wrapped modules are part of its plumbing and change nothing.
    from transformer_lens.hook_points import HookPoint

    hooked = [name for name, module in model.named_modules()
              if isinstance(module, HookPoint) and (module._forward_hooks or module._forward_pre_hooks)]
    if hooked:
        problems.append(f"hooks attached to the model ({', '.join(hooked[:3])}{', ...' if len(hooked) > 3 else ''}): "
                        "a hook changes what the model computes and the fast forward would ignore it; "
                        "remove it (model.reset_hooks(including_permanent=True)) or patch with hooks")
    if problems:
        raise NotImplementedError("fast patching does not support: " + "; ".join(problems))


def _verify_against_model(model: torch.nn.Module, w: ModelWeights) -> None:
    """Run the fast forward and the model itself on a short probe and refuse if they differ.

    The flag checks above list what is known to differ; this catches what they miss (a
    wrapped module computing something the weights alone do not say), so an unsupported
    model is refused instead of patched silently wrong. Two prompts that differ from the
    first token on, so position and token effects both show.
    """
    n_ctx = int(getattr(model.cfg, "n_ctx", 8) or 8)
    vocab = int(w.w_e.shape[0])
    t = max(2, min(8, n_ctx))
    tokens = (torch.arange(2 * t, device=w.w_e.device).reshape(2, t) * 7 + 1) % vocab
    with torch.no_grad():
        theirs = model(tokens)
        theirs = getattr(theirs, "logits", theirs)
        final = run_with_cache(w, tokens).resid_pre[-1]
        ours = norm(final, w.ln_final, w.eps) @ w.w_u
        if w.b_u is not None:
            ours = ours + w.b_u
    if not isinstance(theirs, Tensor) or theirs.shape != ours.shape:
        raise NotImplementedError("fast patching could not compare its forward with the model's (unexpected output)")
    gap = float((ours - theirs.to(ours.dtype)).abs().max())
    scale = max(1.0, float(theirs.abs().max()))
    if not gap <= 1e-3 * scale:
        raise NotImplementedError(f"the fast forward does not reproduce this model's logits (largest difference {gap:.3g}); "
                                  "some feature of the model is unsupported, so fast patching refuses it")


def extract_weights(model: torch.nn.Module, *, bidirectional_ok: bool = False) -> ModelWeights:
    """Read a bridge's weights (native or HF GPT-2) into a :class:`ModelWeights` (no copies
    where the bridge's properties are views).

    ``bidirectional_ok`` lets a caller that computes attention itself (the discovery graph)
    read a bidirectional model; the causal fast forward here refuses one. Every other
    unsupported feature is refused by name, and what no flag names is caught by running this
    forward against the model's own on a short probe.

    The attention and MLP matrices come from the bridge's TransformerLens-convention
    properties (``W_Q`` ``[n_heads, d_model, d_head]`` etc.), which the bridge defines for both
    sources; norms and the activation come from the wrapped modules.
    """
    _check_supported(model, bidirectional_ok)
    cfg = model.cfg
    n_heads, d_head = int(cfg.n_heads), int(cfg.d_head)
    attn_only = bool(getattr(cfg, "attn_only", False))
    layers = []
    act: Activation | None = None
    with torch.no_grad():
        for i, block in enumerate(model.blocks):
            attn = block.attn
            proj = {c: getattr(attn, f"W_{c.upper()}").detach().permute(1, 0, 2)
                    .reshape(cfg.d_model, -1) for c in "qkv"}
            bias = {c: getattr(attn, f"b_{c.upper()}").detach().reshape(-1) for c in "qkv"}
            mlp_parts: tuple[Tensor | None, ...] = (None, None, None, None)
            ln2 = None
            if not attn_only:
                mlp = block.mlp
                mlp_parts = tuple(getattr(mlp, n).detach() for n in ("W_in", "b_in", "W_out", "b_out"))
                ln2 = _ln_params(block.ln2, f"blocks.{i}.ln2")
                act = getattr(getattr(mlp, "original_component", mlp), "act", None)
                if act is None:
                    raise NotImplementedError(f"blocks.{i}.mlp exposes no activation function")
            layers.append(
                LayerWeights(
                    ln1=_ln_params(block.ln1, f"blocks.{i}.ln1"),
                    w_q=proj["q"], w_k=proj["k"], w_v=proj["v"],
                    b_q=bias["q"], b_k=bias["k"], b_v=bias["v"],
                    w_o=attn.W_O.detach().reshape(n_heads * d_head, -1),
                    b_o=attn.b_O.detach(),
                    ln2=ln2,
                    w_in=mlp_parts[0],
                    b_in=mlp_parts[1],
                    w_out=mlp_parts[2],
                    b_out=mlp_parts[3],
                    attn_scale=_attn_scale(attn, d_head),
                )
            )
        b_u = getattr(model, "b_U", None)
        weights = ModelWeights(
            layers=tuple(layers),
            ln_final=_ln_params(model.ln_final, "ln_final"),
            w_u=model.W_U.detach(),
            b_u=None if b_u is None else b_u.detach(),
            w_e=model.W_E.detach(),
            w_pos=model.W_pos.detach(),
            n_heads=n_heads,
            d_head=d_head,
            eps=float(cfg.eps),
            act=act if act is not None else F.gelu,
        )
    if (getattr(cfg, "attention_dir", None) or "causal") == "causal":
        # A bidirectional model is read only for a caller with its own attention (the
        # discovery graph, held to TransformerLens in its tests); this forward is causal.
        _verify_against_model(model, weights)
    return weights


# -- the metric's view of the logits ------------------------------------------------------------


@dataclass(frozen=True)
class LogitReadout:
    """The logits a metric reads: one position and a few vocabulary columns per example.

    ``fn`` maps the selected logits ``[batch, k]`` to one value per example. Naming what the
    metric reads is what lets the fast paths skip the rest of the unembedding (50257 columns
    for GPT-2) and every other position at the last layer.
    """

    token_ids: Tensor  # [batch, k] vocabulary columns read per example
    fn: Callable[[Tensor], Tensor]  # [batch, k] -> [batch]
    positions: Tensor | None = None  # [batch] position read per example; None = last

    def positions_for(self, batch: int, seq: int) -> Tensor:
        if self.positions is None:
            return torch.full((batch,), seq - 1, dtype=torch.long)
        return self.positions.long()

    def per_example(self, logits: Tensor) -> Tensor:
        """The metric per example from full logits ``[batch, pos, d_vocab]`` (the slow way)."""
        batch, seq = logits.shape[:2]
        pos = self.positions_for(batch, seq).to(logits.device)
        at_pos = logits[torch.arange(batch, device=logits.device), pos]
        return self.fn(at_pos.gather(1, self.token_ids.to(logits.device)))

    def as_tl_metric(self) -> Callable[[Tensor], Tensor]:
        """A TransformerLens-style metric (full logits -> batch-mean scalar)."""
        return lambda logits: self.per_example(logits).mean()


def logit_diff_readout(answer_ids: Tensor, positions: Tensor | None = None) -> LogitReadout:
    """Logit of ``answer_ids[:, 0]`` minus logit of ``answer_ids[:, 1]`` (IOI's metric)."""
    return LogitReadout(
        token_ids=answer_ids.long(), fn=lambda sel: sel[:, 0] - sel[:, 1], positions=positions
    )


# -- the forward pieces -------------------------------------------------------------------------


def norm(x: Tensor, params: tuple[Tensor, Tensor] | None, eps: float) -> Tensor:
    if params is None:
        return x
    return F.layer_norm(x, (x.shape[-1],), params[0], params[1], eps)


def embed(w: ModelWeights, tokens: Tensor) -> Tensor:
    """Token plus position embedding: ``blocks.0.hook_resid_pre``."""
    return w.w_e[tokens] + w.w_pos[: tokens.shape[1]]


def qkv(w: ModelWeights, layer: int, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Queries, keys and values ``[n, n_heads, pos, d_head]`` from a residual ``[n, pos, d]``."""
    lw = w.layers[layer]
    n, t, _ = x.shape
    h = norm(x, lw.ln1, w.eps).reshape(n * t, -1)
    return tuple(  # type: ignore[return-value]
        project(lw, c, h).view(n, t, w.n_heads, w.d_head).transpose(1, 2) for c in "qkv"
    )


def project(lw: LayerWeights, which: str, h: Tensor) -> Tensor:
    """``h @ W_which + b_which`` for one of q, k, v on flattened rows ``[rows, d_model]``."""
    return torch.addmm(getattr(lw, f"b_{which}"), h, getattr(lw, f"w_{which}"))


def attend(
    w: ModelWeights,
    layer: int,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    prefix: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """Causal attention; returns ``z`` as ``[n, n_heads, pos_q, d_head]``.

    ``prefix`` holds keys and values ``[n, heads, start, d_head]`` of positions before the
    ones in ``q``/``k``/``v`` (positions a patch cannot change, reused from a cached run).
    """
    scale = 1.0 / w.layers[layer].attn_scale
    if prefix is None or prefix[0].shape[2] == 0:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    start, t = prefix[0].shape[2], q.shape[2]
    keys = torch.cat([prefix[0], k], dim=2)
    values = torch.cat([prefix[1], v], dim=2)
    positions = torch.arange(start + t, device=q.device)  # on q's device: CUDA runs need no CPU mask
    allowed = positions[None, :] <= (positions[:t, None] + start)
    return F.scaled_dot_product_attention(q, keys, values, attn_mask=allowed, scale=scale)


def attn_out(w: ModelWeights, layer: int, z: Tensor) -> Tensor:
    """The attention block's residual write ``[n, pos, d]`` from ``z`` ``[n, heads, pos, dh]``."""
    lw = w.layers[layer]
    n, _, t, _ = z.shape
    flat = z.transpose(1, 2).reshape(n * t, -1)
    return torch.addmm(lw.b_o, flat, lw.w_o).view(n, t, -1)


def mlp(w: ModelWeights, layer: int, x: Tensor) -> Tensor:
    """The MLP's residual write (zero for attention-only models)."""
    lw = w.layers[layer]
    if lw.w_in is None:
        return torch.zeros_like(x)
    shape = x.shape
    hidden = torch.addmm(lw.b_in, norm(x, lw.ln2, w.eps).reshape(-1, shape[-1]), lw.w_in)
    return torch.addmm(lw.b_out, w.act(hidden), lw.w_out).view(shape)


def block(
    w: ModelWeights, layer: int, x: Tensor, prefix: tuple[Tensor, Tensor] | None = None
) -> Tensor:
    """One full block: ``resid_pre[layer] -> resid_pre[layer + 1]`` (positions in ``x`` only)."""
    q, k, v = qkv(w, layer, x)
    x = x + attn_out(w, layer, attend(w, layer, q, k, v, prefix))
    return x + mlp(w, layer, x)


def last_block_at(
    w: ModelWeights, x: Tensor, pos: Tensor, prefix: tuple[Tensor, Tensor] | None = None
) -> Tensor:
    """The final block evaluated only at one query position per row: returns ``[n, d]``.

    Keys and values are still needed at every position, but the query, attention output
    and MLP are computed for the read-out position alone. ``pos`` indexes ``x``'s positions;
    ``prefix`` (keys, values) covers positions before them.
    """
    layer = w.n_layers - 1
    n, t, _ = x.shape
    rows = torch.arange(n, device=x.device)
    lw = w.layers[layer]
    h = norm(x, lw.ln1, w.eps)
    k, v = (project(lw, c, h.reshape(n * t, -1)).view(n, t, w.n_heads, w.d_head).transpose(1, 2)
            for c in "kv")
    start = 0
    if prefix is not None:
        start = prefix[0].shape[2]
        k, v = torch.cat([prefix[0], k], dim=2), torch.cat([prefix[1], v], dim=2)
    q = project(lw, "q", h[rows, pos]).view(n, w.n_heads, 1, w.d_head)
    mask = (torch.arange(start + t, device=x.device)[None, :] <= pos[:, None] + start)
    z = F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask[:, None, None, :], scale=1.0 / lw.attn_scale
    )
    x_pos = x[rows, pos] + attn_out(w, layer, z)[:, 0]
    return x_pos + mlp(w, layer, x_pos)


def read_logits(w: ModelWeights, final_resid: Tensor, token_ids: Tensor) -> Tensor:
    """Logits of the named columns only: ``[n, d] x [n, k] -> [n, k]``."""
    h = norm(final_resid, w.ln_final, w.eps)
    cols = w.w_u.T[token_ids]  # [n, k, d]
    out = torch.einsum("nd,nkd->nk", h, cols)
    return out if w.b_u is None else out + w.b_u[token_ids]


@dataclass
class RunCache:
    """Per-layer residuals and head outputs of one unpatched run (our own forward)."""

    resid_pre: list[Tensor]  # n_layers + 1 entries; the last is the final residual
    resid_mid: list[Tensor]
    z: list[Tensor]  # [batch, n_heads, pos, d_head]
    k: list[Tensor]  # [batch, n_heads, pos, d_head]
    v: list[Tensor]

    def prefix(self, layer: int, start: int, repeats: int) -> tuple[Tensor, Tensor] | None:
        """Keys and values of positions ``< start`` at ``layer``, tiled for ``repeats`` runs."""
        if start == 0:
            return None
        k = self.k[layer][:, :, :start].repeat(repeats, 1, 1, 1)
        v = self.v[layer][:, :, :start].repeat(repeats, 1, 1, 1)
        return k, v


def run_with_cache(
    w: ModelWeights, tokens: Tensor, *, resid: bool = True, kv_prefix: int = 0
) -> RunCache:
    """An unpatched forward keeping what the patching methods resume from.

    ``z`` is always kept; residuals only with ``resid``; keys and values only for the first
    ``kv_prefix`` positions (the ones patched runs reuse). Keeping less is what keeps the
    methods' peak memory near a single hooked forward's.
    """
    x = embed(w, tokens)
    cache = RunCache(resid_pre=[], resid_mid=[], z=[], k=[], v=[])
    for layer in range(w.n_layers):
        if resid:
            cache.resid_pre.append(x)
        q, k, v = qkv(w, layer, x)
        z = attend(w, layer, q, k, v)
        cache.z.append(z)
        cache.k.append(k[:, :, :kv_prefix].clone())
        cache.v.append(v[:, :, :kv_prefix].clone())
        x = x + attn_out(w, layer, z)
        if resid:
            cache.resid_mid.append(x)
        x = x + mlp(w, layer, x)
    if resid:
        cache.resid_pre.append(x)
    return cache


def head_write(w: ModelWeights, layer: int, z_head: Tensor, head: int) -> Tensor:
    """One head's residual write without bias: ``z[:, head] @ W_O[head]`` -> ``[n, pos, d]``."""
    return z_head @ w.w_o_per_head(layer)[head]


def first_difference(clean: Tensor, corrupted: Tensor) -> int:
    """The first position at which any example's two prompts differ (``pos`` if none).

    Attention is causal, so every activation at earlier positions is the same in the clean,
    corrupted and any patched run: patched runs need not recompute them.
    """
    differs = (clean != corrupted).any(dim=0).nonzero()
    return int(differs[0]) if len(differs) else int(clean.shape[1])


def resume_from_mid(
    w: ModelWeights,
    layer: int,
    base: RunCache,
    deltas: Tensor,
    readout: LogitReadout,
    start: int = 0,
    max_rows: int = 2048,
) -> Tensor:
    """Metric per (run, example) for runs whose ``resid_mid[layer]`` is ``base``'s plus a delta.

    ``deltas`` is ``[runs, batch, pos, d]`` and must be zero before position ``start``;
    positions before ``start`` are taken from ``base`` instead of recomputed. Returns
    ``[runs, batch]``. Runs go in chunks of at most ``max_rows`` (example, position) rows so
    memory stays bounded however many runs are asked for.
    """
    runs, batch, t, _ = deltas.shape
    pos = readout.positions_for(batch, t).to(deltas.device)
    start = min(start, int(pos.min()))
    resid_mid = base.resid_mid[layer][:, start:]
    per_chunk = max(1, max_rows // (batch * (t - start)))
    per_chunk = -(-runs // -(-runs // per_chunk))  # same number of chunks, balanced sizes
    out = []
    for first in range(0, runs, per_chunk):
        d = deltas[first : first + per_chunk, :, start:]
        r = d.shape[0]
        x = (resid_mid.unsqueeze(0) + d).reshape(r * batch, t - start, -1)
        rpos = pos.repeat(r) - start
        if layer == w.n_layers - 1:
            rows = torch.arange(r * batch, device=x.device)
            x_pos = x[rows, rpos]
            final = x_pos + mlp(w, layer, x_pos)
        else:
            x = x + mlp(w, layer, x)
            for later in range(layer + 1, w.n_layers - 1):
                x = block(w, later, x, base.prefix(later, start, r))
            final = last_block_at(w, x, rpos, base.prefix(w.n_layers - 1, start, r))
        logits = read_logits(w, final, readout.token_ids.repeat(r, 1))
        out.append(readout.fn(logits).view(r, batch))
    return torch.cat(out)


def metric_from_tokens(w: ModelWeights, tokens: Tensor, readout: LogitReadout) -> Tensor:
    """The unpatched metric per example."""
    x = embed(w, tokens)
    for layer in range(w.n_layers - 1):
        x = block(w, layer, x)
    pos = readout.positions_for(tokens.shape[0], tokens.shape[1]).to(x.device)
    return readout.fn(read_logits(w, last_block_at(w, x, pos), readout.token_ids))
