"""Zero-ablation of attention heads through hooks: the simplest knock-out, as one helper.

Why a module of its own: several trained-model scripts knock a head out by zeroing its
``hook_z`` (its output before ``W_O``, so the head writes only ``b_O``'s share, which is the
layer's and not the head's). Mean ablation, which IOI's criteria use, lives in
:mod:`mikb.methods.ablation`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from mikb.methods.hooks import Head, z_name


def zero_head_hooks(heads: Iterable[Head]) -> list[tuple[str, Any]]:
    """Forward hooks that zero each listed ``(layer, head)``'s ``z``: pass to
    ``run_with_hooks(fwd_hooks=...)`` or ``model.hooks(fwd_hooks=...)``."""
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)

    def make(hs: list[int]):
        def hook(z: torch.Tensor, hook: Any) -> torch.Tensor:
            z = z.clone()
            z[:, :, hs] = 0.0
            return z

        return hook

    return [(z_name(layer), make(hs)) for layer, hs in by_layer.items()]
