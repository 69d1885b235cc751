"""A duplicate-token head written by hand: every weight is set, nothing is trained.

The construction (mikb's own, in the spirit of reading softmax in QK circuits geometrically):
each ordinary token ``t`` of a vocabulary of ``V`` sits on the unit circle at angle
``2*pi*t/V``; the query and key of a token are that point, so the QK score of two positions is
``beta * cos(angle difference)``: largest, ``beta``, exactly when the key's token equals the
query's. A BOS token at position 0 has no circle part but a constant key score ``b`` placed
half-way between ``beta * cos(2*pi/V)`` (the nearest other token) and ``beta``: with no
duplicate in context the head rests on BOS. One-hot positions subtract ``gamma`` from a
position's score with itself, so the head never "finds" the current token. ``beta`` is the
inverse temperature: the margin between the duplicate and its nearest rival is
``beta * (1 - cos(2*pi/V)) / 2``, which shrinks like ``1/V**2``, so a larger vocabulary needs a
proportionally colder softmax for the same sharpness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

BOS = 0


@dataclass(frozen=True)
class DuplicateHeadSpec:
    vocab: int  # ordinary tokens 1..vocab; token 0 is BOS
    n_ctx: int
    beta: float  # inverse temperature of the QK circle
    gamma: float = 50.0  # how strongly a position is kept from attending to itself

    @property
    def d_model(self) -> int:
        return 3 + self.n_ctx

    @property
    def bos_score(self) -> float:
        return self.beta * (1 + math.cos(2 * math.pi / self.vocab)) / 2


def build_duplicate_head(spec: DuplicateHeadSpec) -> Any:
    """A one-layer, one-head attention-only TransformerBridge with the construction's weights."""
    import transformer_lens.model_bridge.sources  # noqa: F401 - registers boot_native
    from transformer_lens.model_bridge import TransformerBridge

    d = spec.d_model
    model = TransformerBridge.boot_native({
        "n_layers": 1, "n_heads": 1, "d_model": d, "d_head": d, "d_vocab": spec.vocab + 1, "n_ctx": spec.n_ctx,
        "attn_only": True, "act_fn": "gelu", "normalization_type": None, "seed": 0,
        "positional_embedding_type": "standard"})
    scale = math.sqrt(d)  # TransformerLens divides scores by sqrt(d_head); undo it
    angles = 2 * math.pi * torch.arange(1, spec.vocab + 1, dtype=torch.float64) / spec.vocab
    embed = torch.zeros(spec.vocab + 1, d, dtype=torch.float64)
    embed[1:, 0], embed[1:, 1] = torch.cos(angles), torch.sin(angles)
    embed[BOS, 2] = 1.0
    pos = torch.zeros(spec.n_ctx, d, dtype=torch.float64)
    pos[torch.arange(spec.n_ctx), 3 + torch.arange(spec.n_ctx)] = 1.0
    w_q = torch.zeros(d, d, dtype=torch.float64)
    w_k = torch.zeros(d, d, dtype=torch.float64)
    w_q[0, 0] = w_q[1, 1] = spec.beta * scale  # query: the token's point, scaled by beta
    w_k[0, 0] = w_k[1, 1] = 1.0  # key: the token's point
    b_q = torch.zeros(d, dtype=torch.float64)
    b_q[2] = spec.bos_score * scale  # every query meets BOS's flag with score b
    w_k[2, 2] = 1.0
    idx = 3 + torch.arange(spec.n_ctx)
    w_q[idx, idx] = scale  # query and key share their position's one-hot ...
    w_k[idx, idx] = -spec.gamma  # ... with a negative sign on the key: no attention to oneself
    attn = model.blocks[0].attn
    state = {
        "tok_embed._original_component.weight": embed,
        "pos._original_component.weight": pos,
        "layers.0._original_component.attn._original_component.q._original_component.weight": w_q,
        "layers.0._original_component.attn._original_component.q._original_component.bias": b_q,
        "layers.0._original_component.attn._original_component.k._original_component.weight": w_k,
    }
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].dtype))
        for name in ("k", "v", "o"):
            for kind in ("bias",) if name == "k" else ("weight", "bias"):
                params[f"layers.0._original_component.attn._original_component.{name}._original_component.{kind}"].zero_()
    del attn
    return model.eval()


def ground_truth() -> dict[str, list[str]]:
    """The one head, and its role, by construction."""
    return {"duplicate-token": ["0.0"]}
