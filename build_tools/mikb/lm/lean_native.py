"""A lean, functional twin of TransformerLens's TL-native model, for fast training on CPU.

Why this exists: a full-batch step of a small model run through ``TransformerBridge`` pays
for hook dispatch on every sub-module, which dominates the cost of tiny models (the
modular-addition model spends most of a step in wrappers, not arithmetic). Here the same
parameters live in a plain ``dict[str, Tensor]`` keyed exactly like the parameters of
``transformer_lens.model_bridge.sources.native.NativeModel`` (``tok_embed.weight``,
``layers.0.attn.q.weight``, ...), a few lines of torch compute the same function, and
:func:`to_bridge` copies the trained tensors into a ``TransformerBridge.boot_native`` model,
so every analysis (hooks, caches, ablations) runs on the real bridge. A test checks that
both compute the same logits.

Only what the two trained-here models need is supported: standard positional embeddings,
no normalisation, causal attention, optional ReLU/GELU MLP, and optionally frozen
(zero) biases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class LeanConfig:
    """The subset of a TL-native config that the lean forward understands."""

    n_layers: int
    n_heads: int
    d_model: int
    d_head: int
    d_vocab: int
    n_ctx: int
    d_vocab_out: int = -1
    d_mlp: int | None = None
    attn_only: bool = False
    act_fn: str = "relu"
    use_bias: bool = True

    @property
    def vocab_out(self) -> int:
        return self.d_vocab_out if self.d_vocab_out > 0 else self.d_vocab

    def bridge_config(self, seed: int = 0) -> dict[str, Any]:
        """The dict passed to ``TransformerBridge.boot_native`` for the same architecture."""
        cfg: dict[str, Any] = {
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "d_model": self.d_model,
            "d_head": self.d_head,
            "d_vocab": self.d_vocab,
            "d_vocab_out": self.vocab_out,
            "n_ctx": self.n_ctx,
            "attn_only": self.attn_only,
            "act_fn": self.act_fn,
            "normalization_type": None,
            "seed": seed,
        }
        if not self.attn_only:
            cfg["d_mlp"] = self.d_mlp or 4 * self.d_model
        return cfg


def init_params(cfg: LeanConfig, seed: int, init_std: float | None = None) -> Params:
    """Gaussian init of every weight (std ``0.8/sqrt(d_model)`` by default); biases zero.

    The default std is TransformerLens's GPT-2-style ``initializer_range``, the init the
    TransformerLens grokking replication used; drawing from a private generator keeps the
    global RNG untouched.
    """
    std = init_std if init_std is not None else 0.8 / math.sqrt(cfg.d_model)
    gen = torch.Generator().manual_seed(seed)

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * std

    hd = cfg.n_heads * cfg.d_head
    p: Params = {
        "tok_embed.weight": normal(cfg.d_vocab, cfg.d_model),
        "pos.weight": normal(cfg.n_ctx, cfg.d_model),
    }
    for layer in range(cfg.n_layers):
        pre = f"layers.{layer}."
        for name in ("q", "k", "v"):
            p[f"{pre}attn.{name}.weight"] = normal(hd, cfg.d_model)
            p[f"{pre}attn.{name}.bias"] = torch.zeros(hd)
        p[f"{pre}attn.o.weight"] = normal(cfg.d_model, hd)
        p[f"{pre}attn.o.bias"] = torch.zeros(cfg.d_model)
        if not cfg.attn_only:
            d_mlp = cfg.d_mlp or 4 * cfg.d_model
            p[f"{pre}mlp.fc_in.weight"] = normal(d_mlp, cfg.d_model)
            p[f"{pre}mlp.fc_in.bias"] = torch.zeros(d_mlp)
            p[f"{pre}mlp.fc_out.weight"] = normal(cfg.d_model, d_mlp)
            p[f"{pre}mlp.fc_out.bias"] = torch.zeros(cfg.d_model)
    p["head.weight"] = normal(cfg.vocab_out, cfg.d_model)
    return p


def trainable(cfg: LeanConfig, params: Params) -> list[str]:
    """Names of the parameters to optimise: all, or all but the biases when biases are off."""
    return [n for n in params if cfg.use_bias or not n.endswith(".bias")]


def _act(cfg: LeanConfig, x: torch.Tensor) -> torch.Tensor:
    return F.relu(x) if cfg.act_fn == "relu" else F.gelu(x)


def forward(
    cfg: LeanConfig, params: Params, tokens: torch.Tensor, last_only: bool = False
) -> torch.Tensor:
    """Logits ``[batch, seq, vocab_out]`` (or ``[batch, vocab_out]`` with ``last_only``).

    ``last_only`` computes only the final query position in the last layer: the modular
    addition loss reads only the ``=`` position, so skipping the other queries' attention
    and MLP there is exact and saves most of the work.
    """
    batch, seq = tokens.shape
    x = params["tok_embed.weight"][tokens] + params["pos.weight"][:seq]
    nh, dh = cfg.n_heads, cfg.d_head
    mask = torch.triu(torch.ones(seq, seq, dtype=torch.bool, device=tokens.device), diagonal=1)
    for layer in range(cfg.n_layers):
        pre = f"layers.{layer}."
        final = last_only and layer == cfg.n_layers - 1
        xq = x[:, -1:] if final else x
        q = F.linear(xq, params[pre + "attn.q.weight"], params[pre + "attn.q.bias"])
        k = F.linear(x, params[pre + "attn.k.weight"], params[pre + "attn.k.bias"])
        v = F.linear(x, params[pre + "attn.v.weight"], params[pre + "attn.v.bias"])
        q = q.view(batch, -1, nh, dh).transpose(1, 2)
        k = k.view(batch, seq, nh, dh).transpose(1, 2)
        v = v.view(batch, seq, nh, dh).transpose(1, 2)
        scores = q @ k.transpose(-2, -1) / math.sqrt(dh)
        if not final:
            scores = scores.masked_fill(mask, float("-inf"))
        z = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, -1, nh * dh)
        x = xq + F.linear(z, params[pre + "attn.o.weight"], params[pre + "attn.o.bias"])
        if not cfg.attn_only:
            h = _act(cfg, F.linear(x, params[pre + "mlp.fc_in.weight"], params[pre + "mlp.fc_in.bias"]))
            x = x + F.linear(h, params[pre + "mlp.fc_out.weight"], params[pre + "mlp.fc_out.bias"])
    logits = x @ params["head.weight"].T
    return logits[:, -1] if last_only else logits


def to_bridge(cfg: LeanConfig, params: Params, seed: int = 0) -> Any:
    """Build a ``TransformerBridge`` (TL-native) holding ``params``, in eval mode.

    Bridge parameter names wrap each native module as ``<name>._original_component``;
    stripping that gives the native names used here, so the copy is by name and fails loudly
    if the two ever disagree.
    """
    import transformer_lens.model_bridge.sources  # noqa: F401 - registers boot_native
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_native(cfg.bridge_config(seed))
    seen = set()
    with torch.no_grad():
        for name, tensor in bridge.named_parameters():
            key = name.replace("._original_component", "")
            if key not in params:
                raise KeyError(f"bridge parameter {name} has no lean counterpart {key}")
            tensor.copy_(params[key])
            seen.add(key)
    missing = set(params) - seen
    if missing:
        raise KeyError(f"lean parameters not in the bridge: {sorted(missing)}")
    return bridge.eval()


def state_copy(params: Params, device: str | None = None) -> Params:
    """A detached copy (for checkpoints kept in memory during training), on ``device`` if
    given (checkpoints of a GPU run are kept on the CPU for the analysis)."""
    return {k: v.detach().to(device or v.device, copy=True) for k, v in params.items()}
