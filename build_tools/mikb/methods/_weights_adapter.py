"""The one weights adapter: a TransformerBridge read into plain tensors, with its features named.

Why one adapter: every fast method (exact head and path patching, the discovery graph,
attribution patching) runs the model's arithmetic on raw tensors, and each family of models
computes that arithmetic a little differently (norm kind, positional scheme, shared key/value
heads, gated MLPs, parallel blocks, soft-caps, extra norms). This module states those
differences once, as fields of :class:`ModelWeights`, so the forward in
:mod:`mikb.methods._fast_forward` branches on them in one place. What it cannot state it
refuses by name, and what no check names is caught by running the fast forward against the
model's own on a probe (:func:`_verify_against_model`): a model is never patched silently
wrong.

Sources read: TL-native bridges (``TransformerBridge.boot_native``: LayerNorm, RMSNorm and
their parameter-free variants, rotary or learned positions, grouped-query attention, gated
MLPs, soft-caps) and Hugging Face models through ``boot_transformers`` for the GPT-2, Llama,
Qwen2, Gemma 2, GPT-NeoX (Pythia) and GPT-J families. Each norm module is also checked
numerically against what this adapter will compute for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Activation = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class NormParams:
    """A LayerNorm or RMSNorm as the model computes it (``weight``/``bias`` None = absent)."""

    kind: Literal["layer", "rms"]
    weight: Tensor | None
    bias: Tensor | None
    eps: float

    def __call__(self, x: Tensor) -> Tensor:
        if self.kind == "layer":
            return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)
        out = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.weight is not None:
            out = out * self.weight
        return out if self.bias is None else out + self.bias


@dataclass(frozen=True)
class Rope:
    """Rotary position embedding: which dims rotate, how pairs are formed, and the tables.

    ``style="half"`` pairs dim ``i`` with ``i + rot/2`` (Llama, NeoX, Gemma in Hugging Face);
    ``"interleaved"`` pairs ``2i`` with ``2i+1`` (GPT-J, TL-native). ``tables(n)`` returns
    ``cos, sin`` of shape ``[n, rot_dim]`` in the layout the style multiplies elementwise.
    """

    rot_dim: int
    style: Literal["half", "interleaved"]
    tables: Callable[[int], tuple[Tensor, Tensor]]
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def cos_sin(self, n: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        key = (n, str(device), dtype)
        if key not in self._cache:
            self._cache.clear()
            cos, sin = self.tables(n)
            self._cache[key] = (cos.to(device, dtype), sin.to(device, dtype))
        return self._cache[key]

    def apply(self, x: Tensor, positions: Tensor) -> Tensor:
        """Rotate ``x`` ``[..., pos, d_head]`` at absolute ``positions`` (``[pos]`` or
        ``[n, 1, pos]``-broadcastable long tensor)."""
        n = int(positions.max()) + 1
        cos, sin = self.cos_sin(n, x.device, x.dtype)
        cos, sin = cos[positions], sin[positions]
        r = self.rot_dim
        x_rot, x_pass = x[..., :r], x[..., r:]
        if self.style == "half":
            a, b = x_rot[..., : r // 2], x_rot[..., r // 2 :]
            turned = torch.cat([-b, a], dim=-1)
        else:
            a, b = x_rot[..., 0::2], x_rot[..., 1::2]
            turned = torch.stack([-b, a], dim=-1).flatten(-2)
        out = x_rot * cos + turned * sin
        return torch.cat([out, x_pass], dim=-1) if x_pass.shape[-1] else out


@dataclass(frozen=True)
class LayerWeights:
    """One block's weights, with per-head matrices fused so each projection is one GEMM."""

    ln1: NormParams | None  # None = no normalisation
    # [d_model, heads * d_head]: q over the query heads, k and v over the key-value heads;
    # columns ordered (head, d_head).
    w_q: Tensor
    w_k: Tensor
    w_v: Tensor
    b_q: Tensor  # [n_heads * d_head]
    b_k: Tensor  # [n_kv_heads * d_head]
    b_v: Tensor
    w_o: Tensor  # [n_heads * d_head, d_model]
    b_o: Tensor  # [d_model]
    ln2: NormParams | None  # the MLP's input norm (for GPT-J's parallel block, ln1 again)
    w_in: Tensor | None  # [d_model, d_mlp]; None for attention-only models
    b_in: Tensor | None
    w_out: Tensor | None  # [d_mlp, d_model]
    b_out: Tensor | None
    attn_scale: float  # scores are divided by this
    w_gate: Tensor | None = None  # [d_model, d_mlp] for gated MLPs: act(x W_gate) * (x W_in)
    b_gate: Tensor | None = None
    attn_post: NormParams | None = None  # Gemma 2's norm on the attention output
    mlp_post: NormParams | None = None  # ... and on the MLP output
    window: int | None = None  # sliding-window attention: keys at most window-1 back


@dataclass(frozen=True)
class ModelWeights:
    """Everything the fast forward reads, detached from autograd and the bridge."""

    layers: tuple[LayerWeights, ...]
    ln_final: NormParams | None
    w_u: Tensor  # [d_model, d_vocab]
    b_u: Tensor | None  # [d_vocab]
    w_e: Tensor  # [d_vocab, d_model]
    w_pos: Tensor | None  # [n_ctx, d_model]; None with rotary positions
    n_heads: int
    d_head: int
    eps: float
    act: Activation
    n_kv_heads: int = 0  # 0 = same as n_heads
    rope: Rope | None = None
    parallel: bool = False  # attention and MLP both read the block's input
    attn_soft_cap: float | None = None  # scores -> cap * tanh(scores / cap)
    logit_soft_cap: float | None = None
    embed_scale: float = 1.0  # Gemma multiplies token embeddings by sqrt(d_model)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def d_model(self) -> int:
        return int(self.w_u.shape[0])

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def group(self) -> int:
        """Query heads per key-value head (1 without grouped-query attention)."""
        return self.n_heads // self.kv_heads

    def per_head(self, layer: int, which: str) -> Tensor:
        """``W_Q`` ``[n_heads, d_model, d_head]``; ``W_K``/``W_V`` per key-value head."""
        block = getattr(self.layers[layer], f"w_{which}")
        return block.reshape(block.shape[0], -1, self.d_head).permute(1, 0, 2)

    def w_o_per_head(self, layer: int) -> Tensor:
        """``W_O`` of one layer as ``[n_heads, d_head, d_model]``."""
        return self.layers[layer].w_o.reshape(self.n_heads, self.d_head, -1)

    def features(self) -> list[str]:
        """The features beyond GPT-2's architecture this model has, by name."""
        out = []
        if any(lw.ln1 is not None and lw.ln1.kind == "rms" for lw in self.layers):
            out.append("RMSNorm")
        if self.rope is not None:
            out.append("rotary positions")
        if self.kv_heads != self.n_heads:
            out.append("grouped-query attention")
        if any(lw.w_gate is not None for lw in self.layers):
            out.append("gated MLP")
        if self.parallel:
            out.append("parallel attention/MLP")
        if self.attn_soft_cap or self.logit_soft_cap:
            out.append("soft-capping")
        if any(lw.attn_post is not None or lw.mlp_post is not None for lw in self.layers):
            out.append("post-attention/MLP norms")
        if any(lw.window is not None for lw in self.layers):
            out.append("sliding-window attention")
        if self.embed_scale != 1.0:
            out.append("scaled embeddings")
        return out


# -- reading the pieces ------------------------------------------------------------------------


def _inner(module: torch.nn.Module) -> torch.nn.Module:
    return getattr(module, "original_component", module)


def _read_norm(module: torch.nn.Module | None, what: str) -> NormParams | None:
    """The norm a (wrapped) module computes, checked numerically against the module itself."""
    if module is None:
        return None
    inner = _inner(module)
    name = type(inner).__name__
    if isinstance(inner, torch.nn.Identity):
        return None
    if isinstance(inner, torch.nn.LayerNorm):
        params = NormParams("layer", None if inner.weight is None else inner.weight.detach(),
                            None if inner.bias is None else inner.bias.detach(), float(inner.eps))
    elif name.endswith("RMSNorm") or name.endswith("RMSNormPre") or name.endswith("LayerNormPre"):
        eps = float(getattr(inner, "variance_epsilon", getattr(inner, "eps", 1e-6)))
        weight = getattr(inner, "weight", None)
        weight = None if weight is None else weight.detach()
        if weight is not None and name.startswith("Gemma"):
            weight = 1.0 + weight  # Gemma scales by (1 + w)
        kind: Literal["layer", "rms"] = "layer" if name.endswith("LayerNormPre") else "rms"
        params = NormParams(kind, weight, None, eps)
    else:
        raise NotImplementedError(f"{what}: norm {name} is not supported")
    _check_norm(inner, params, what)
    return params


def _check_norm(inner: torch.nn.Module, params: NormParams, what: str) -> None:
    d = int(params.weight.shape[0]) if params.weight is not None else None
    if d is None:
        return  # parameter-free: nothing model-specific to get wrong beyond the kind
    probe = torch.randn(3, d, generator=torch.Generator().manual_seed(0)).to(params.weight)
    with torch.no_grad():
        theirs = inner(probe)
    gap = float((theirs - params(probe)).abs().max())
    if not gap <= 1e-4 * max(1.0, float(theirs.abs().max())):
        raise NotImplementedError(f"{what}: {type(inner).__name__} computes something else than "
                                  f"a {params.kind} norm (difference {gap:.3g})")


def _attn_scale(attn: torch.nn.Module, d_head: int) -> float:
    inner = _inner(attn)
    scale = getattr(inner, "scale", None)
    if isinstance(scale, (int, float)) and not hasattr(inner, "scale_attn_weights"):
        return float(scale)  # TL-native: divide by scale
    if hasattr(inner, "scale_attn_weights"):  # Hugging Face GPT-2
        value = math.sqrt(d_head) if inner.scale_attn_weights else 1.0
        if getattr(inner, "scale_attn_by_inverse_layer_idx", False):
            value *= float(inner.layer_idx + 1)
        return value
    scale_attn = getattr(inner, "scale_attn", None)  # GPT-J: divides by sqrt(head_dim)
    if isinstance(scale_attn, (int, float, Tensor)):
        return float(scale_attn)
    scaling = getattr(inner, "scaling", None)  # Llama, Qwen2, Gemma 2, NeoX: multiply
    if isinstance(scaling, (int, float)):
        return 1.0 / float(scaling)
    if type(inner).__name__.startswith("GPTNeoSelf"):
        return 1.0  # GPT-Neo does not scale its attention scores
    raise NotImplementedError(f"cannot read the attention scale of {type(inner).__name__}")


def _or_zeros(t: Tensor | None, n: int, like: Tensor) -> Tensor:
    return torch.zeros(n, dtype=like.dtype, device=like.device) if t is None else t.detach().reshape(-1)


def _hf_config(model: torch.nn.Module):
    return getattr(getattr(model, "original_model", None), "config", None)


def _rope(model: torch.nn.Module, d_head: int) -> Rope | None:
    """The model's rotary embedding, read from the module that computes it."""
    cfg = model.cfg
    if (getattr(cfg, "positional_embedding_type", None) or "standard") != "rotary":
        return None
    native_rotary = getattr(_inner(model.blocks[0].attn), "rotary", None)
    if native_rotary is not None and hasattr(native_rotary, "cos_cached"):
        cos, sin = native_rotary.cos_cached, native_rotary.sin_cached

        def native_tables(n: int) -> tuple[Tensor, Tensor]:
            if n > cos.shape[0]:
                raise ValueError(f"prompt longer than the model's n_ctx ({cos.shape[0]})")
            return cos[:n], sin[:n]

        return Rope(int(native_rotary.rotary_dim), "interleaved", native_tables)
    hf = getattr(model, "original_model", None)
    if hf is None:
        raise NotImplementedError("rotary positions on a bridge that is neither native nor Hugging Face")
    rotary = [m for _, m in hf.named_modules() if type(m).__name__.endswith("RotaryEmbedding")]
    gptj = getattr(_inner(model.blocks[0].attn), "embed_positions", None)  # older GPT-J layout
    if gptj is None and len(rotary) == 1:
        gptj = getattr(rotary[0], "embed_positions", None)
    if gptj is not None:  # GPT-J: a [max_pos, rot] table of (sin | cos), pairs interleaved
        rot = int(gptj.shape[-1])

        def gptj_tables(n: int) -> tuple[Tensor, Tensor]:
            sin, cos = gptj[:n].float().split(rot // 2, dim=-1)
            return cos.repeat_interleave(2, -1), sin.repeat_interleave(2, -1)

        return Rope(rot, "interleaved", gptj_tables)
    if len(rotary) != 1:
        raise NotImplementedError(f"found {len(rotary)} rotary-embedding modules; expected one")
    emb = rotary[0]

    # The tables are computed where the rotary module lives (its inverse frequencies are a
    # buffer there); Rope.cos_sin then moves them to the activations' device.
    device = next(iter(emb.buffers()), next(model.parameters())).device

    def hf_tables(n: int) -> tuple[Tensor, Tensor]:
        ids = torch.arange(n, device=device)[None]
        probe = torch.zeros(1, n, d_head, dtype=torch.float32, device=device)
        with torch.no_grad():
            cos, sin = emb(probe, ids)
        return cos[0], sin[0]

    rot = int(hf_tables(1)[0].shape[-1])
    return Rope(rot, "half", hf_tables)


def _layer_types(model: torch.nn.Module) -> list[str | None]:
    hf_cfg = _hf_config(model)
    n = int(model.cfg.n_layers)
    types = getattr(hf_cfg, "layer_types", None)
    if types:
        return [str(t) for t in types]
    kinds = getattr(model.cfg, "attn_types", None) or getattr(hf_cfg, "attention_layers", None)
    if kinds:
        return ["sliding_attention" if str(k).lower() == "local" else "full_attention" for k in kinds]
    return [None] * n


def _window(model: torch.nn.Module, layer_type: str | None) -> int | None:
    if layer_type != "sliding_attention":
        return None
    hf_cfg = _hf_config(model)
    window = getattr(hf_cfg, "sliding_window", None) or getattr(hf_cfg, "window_size", None)
    if not window:
        raise NotImplementedError("a sliding-window layer without a window size")
    return int(window)


def _check_supported(model: torch.nn.Module, bidirectional_ok: bool = False) -> None:
    """Refuse, by name, what the adapter cannot state (everything else it reads)."""
    cfg = model.cfg
    problems = []
    if (getattr(cfg, "attention_dir", None) or "causal") != "causal" and not bidirectional_ok:
        problems.append(f"{cfg.attention_dir} attention (the fast forward is causal)")
    if str(getattr(cfg, "act_fn", "") or "").lower().endswith("_ln"):
        problems.append(f"activation {cfg.act_fn} (a LayerNorm inside the MLP)")
    pos = getattr(cfg, "positional_embedding_type", None) or "standard"
    if pos not in ("standard", "rotary"):
        problems.append(f"{pos} positional embedding")
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


def _parallel(model: torch.nn.Module) -> bool:
    """Whether attention and MLP both read the block input, from the wrapped model itself."""
    hf_cfg = _hf_config(model)
    if hf_cfg is None:
        return False  # TL-native blocks are sequential whatever the cfg flag says
    if getattr(hf_cfg, "model_type", "") == "gptj":
        return True
    return bool(getattr(hf_cfg, "use_parallel_residual", False))


def _soft_cap(value) -> float | None:
    value = float(value or -1.0)
    return value if value > 0 else None


def _activation(mlp: torch.nn.Module, what: str) -> Activation:
    inner = _inner(mlp)
    act = getattr(inner, "act", None) or getattr(inner, "act_fn", None)
    if act is None:
        raise NotImplementedError(f"{what} exposes no activation function")
    return act


def _mlp_parts(block: torch.nn.Module, i: int, gated: bool) -> dict:
    mlp = block.mlp
    w_in = mlp.W_in.detach()
    d_mlp = int(w_in.shape[1])
    parts = {
        "w_in": w_in, "b_in": _or_zeros(mlp.b_in, d_mlp, w_in),
        "w_out": mlp.W_out.detach(), "b_out": _or_zeros(mlp.b_out, int(w_in.shape[0]), w_in),
    }
    if gated:
        parts["w_gate"] = mlp.W_gate.detach()
        b_gate = getattr(mlp, "b_gate", None)
        parts["b_gate"] = _or_zeros(b_gate, d_mlp, w_in)
    return parts


def extract_weights(model: torch.nn.Module, *, bidirectional_ok: bool = False) -> ModelWeights:
    """Read a bridge's weights into a :class:`ModelWeights` (views where the bridge allows).

    ``bidirectional_ok`` lets a caller that computes attention itself (the discovery graph)
    read a bidirectional model; the causal fast forward refuses one. What the adapter cannot
    state is refused by name, and the result is run against the model's own forward on a
    probe before anyone patches with it.
    """
    _check_supported(model, bidirectional_ok)
    cfg = model.cfg
    n_heads, d_head = int(cfg.n_heads), int(cfg.d_head)
    attn_only = bool(getattr(cfg, "attn_only", False))
    gated = bool(getattr(cfg, "gated_mlp", False))
    parallel = _parallel(model)
    layer_types = _layer_types(model)
    layers = []
    act: Activation | None = None
    n_kv = n_heads
    with torch.no_grad():
        for i, blk in enumerate(model.blocks):
            attn = blk.attn
            proj = {c: getattr(attn, f"W_{c.upper()}").detach() for c in "qkv"}
            n_kv = int(proj["k"].shape[0])
            flat = {c: proj[c].permute(1, 0, 2).reshape(cfg.d_model, -1) for c in "qkv"}
            bias = {c: _or_zeros(getattr(attn, f"b_{c.upper()}"), flat[c].shape[1], flat[c]) for c in "qkv"}
            ln1 = _read_norm(blk.ln1, f"blocks.{i}.ln1")
            mlp_parts: dict = {}
            ln2 = None
            if not attn_only:
                mlp_parts = _mlp_parts(blk, i, gated)
                ln2 = _read_norm(getattr(blk, "ln2", None), f"blocks.{i}.ln2")
                if ln2 is None and parallel:
                    ln2 = ln1  # GPT-J: the MLP reads the same normalised input
                act = _activation(blk.mlp, f"blocks.{i}.mlp")
            layers.append(
                LayerWeights(
                    ln1=ln1,
                    w_q=flat["q"], w_k=flat["k"], w_v=flat["v"],
                    b_q=bias["q"], b_k=bias["k"], b_v=bias["v"],
                    w_o=attn.W_O.detach().reshape(n_heads * d_head, -1),
                    b_o=_or_zeros(attn.b_O, int(cfg.d_model), flat["q"]),
                    ln2=ln2,
                    w_in=mlp_parts.get("w_in"), b_in=mlp_parts.get("b_in"),
                    w_out=mlp_parts.get("w_out"), b_out=mlp_parts.get("b_out"),
                    w_gate=mlp_parts.get("w_gate"), b_gate=mlp_parts.get("b_gate"),
                    attn_scale=_attn_scale(attn, d_head),
                    attn_post=_read_norm(getattr(blk, "ln1_post", None), f"blocks.{i}.ln1_post"),
                    mlp_post=_read_norm(getattr(blk, "ln2_post", None), f"blocks.{i}.ln2_post"),
                    window=_window(model, layer_types[i] if i < len(layer_types) else None),
                )
            )
        b_u = getattr(model, "b_U", None)
        hf_cfg = _hf_config(model)
        is_gemma = str(getattr(hf_cfg, "model_type", "")).startswith("gemma")
        rope = _rope(model, d_head)
        w_pos = getattr(model, "W_pos", None) if rope is None else None
        weights = ModelWeights(
            layers=tuple(layers),
            ln_final=_read_norm(model.ln_final, "ln_final"),
            w_u=model.W_U.detach(),
            b_u=None if b_u is None else b_u.detach(),
            w_e=model.W_E.detach(),
            w_pos=None if w_pos is None else w_pos.detach(),
            n_heads=n_heads,
            d_head=d_head,
            eps=float(cfg.eps),
            act=act if act is not None else F.gelu,
            n_kv_heads=n_kv,
            rope=rope,
            parallel=parallel,
            attn_soft_cap=_soft_cap(getattr(cfg, "attn_scores_soft_cap", None)),
            logit_soft_cap=_soft_cap(getattr(cfg, "output_logits_soft_cap", None)),
            embed_scale=math.sqrt(cfg.d_model) if is_gemma else 1.0,
        )
    if weights.rope is None and weights.w_pos is None:
        raise NotImplementedError("the model has neither position embeddings nor rotary positions")
    if (getattr(cfg, "attention_dir", None) or "causal") == "causal":
        # A bidirectional model is read only for a caller with its own attention (the
        # discovery graph, held to TransformerLens in its tests); this forward is causal.
        _verify_against_model(model, weights)
    return weights


def _verify_against_model(model: torch.nn.Module, w: ModelWeights) -> None:
    """Run the fast forward and the model itself on a short probe and refuse if they differ.

    The reads above state what is known; this catches what they miss (a wrapped module
    computing something the weights alone do not say), so an unsupported model is refused
    instead of patched silently wrong. Two prompts that differ from the first token on, so
    position and token effects both show.
    """
    from mikb.methods._fast_forward import final_logits, run_with_cache

    n_ctx = int(getattr(model.cfg, "n_ctx", 8) or 8)
    vocab = int(w.w_e.shape[0])
    t = max(2, min(8, n_ctx))
    tokens = (torch.arange(2 * t, device=w.w_e.device).reshape(2, t) * 7 + 1) % vocab
    with torch.no_grad():
        theirs = model(tokens)
        theirs = getattr(theirs, "logits", theirs)
        ours = final_logits(w, run_with_cache(w, tokens).resid_pre[-1])
    if not isinstance(theirs, Tensor) or theirs.shape != ours.shape:
        raise NotImplementedError("fast patching could not compare its forward with the model's (unexpected output)")
    gap = float((ours - theirs.to(ours.dtype)).abs().max())
    scale = max(1.0, float(theirs.abs().max()))
    if not gap <= 1e-3 * scale:
        raise NotImplementedError(f"the fast forward does not reproduce this model's logits (largest difference {gap:.3g}); "
                                  "some feature of the model is unsupported, so fast patching refuses it")
