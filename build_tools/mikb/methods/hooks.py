"""Small shared helpers: head labels, hook names and a head's write into the residual stream."""

from __future__ import annotations

from typing import Any

import torch

Head = tuple[int, int]


def parse_head(label: str) -> Head:
    """'9.9' -> (9, 9)."""
    layer, head = label.split(".")
    return int(layer), int(head)


def head_label(head: Head) -> str:
    return f"{head[0]}.{head[1]}"


def z_name(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_z"


def head_write(model: Any, cache: Any, layer: int, head: int) -> torch.Tensor:
    """What head (layer, head) adds to the residual stream, [batch, pos, d_model] (z @ W_O).

    The output bias b_O is shared by all heads of a layer and is not attributed to any head.
    """
    return cache[z_name(layer)][:, :, head] @ model.blocks[layer].attn.W_O[head]


def all_heads(model: Any) -> list[Head]:
    return [(la, h) for la in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]
