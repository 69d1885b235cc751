"""The modular-addition task and model of Nanda et al. (2023), "Progress measures for grokking".

Each input is ``[a, b, =]`` with ``a, b`` in ``0..p-1`` and ``=`` the extra token ``p``; the
label is ``(a + b) mod p`` read at the ``=`` position. The model is one layer, four heads,
``d_model`` 128, ``d_mlp`` 512, ReLU, no LayerNorm, untied embed/unembed and no biases
(held at zero), as in the paper's setup (nanda2023grokking, Section 3 and Appendix).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mikb.lm.lean_native import LeanConfig, Params, forward


def model_config(p: int = 113) -> LeanConfig:
    """The paper's one-layer ReLU transformer for modulus ``p`` (input vocab ``p + 1``)."""
    return LeanConfig(
        n_layers=1,
        n_heads=4,
        d_model=128,
        d_head=32,
        d_mlp=512,
        d_vocab=p + 1,
        d_vocab_out=p,
        n_ctx=3,
        attn_only=False,
        act_fn="relu",
        use_bias=False,
    )


@dataclass(frozen=True)
class ModAddData:
    """All ``p*p`` pairs, in row-major order ``(a, b)``, and a fixed train/test split."""

    p: int
    tokens: torch.Tensor  # [p*p, 3]
    labels: torch.Tensor  # [p*p]
    train_idx: torch.Tensor
    test_idx: torch.Tensor


def make_data(p: int, frac_train: float, seed: int) -> ModAddData:
    """Every pair ``(a, b)``; a random ``frac_train`` of them (seeded) is the training set."""
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    eq = torch.full_like(a, p)
    tokens = torch.stack([a, b, eq], dim=1)
    labels = (a + b) % p
    perm = torch.randperm(p * p, generator=torch.Generator().manual_seed(seed))
    n_train = int(round(frac_train * p * p))
    return ModAddData(p, tokens, labels, perm[:n_train].sort().values, perm[n_train:].sort().values)


def loss_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy in float64: the losses reach 1e-7 and below, where float32 log-softmax
    rounds to zero and the curves (plotted on a log scale) would be meaningless."""
    return F.cross_entropy(logits.double(), labels)


def final_logits(cfg: LeanConfig, params: Params, tokens: torch.Tensor) -> torch.Tensor:
    """Logits at the ``=`` position only."""
    return forward(cfg, params, tokens, last_only=True)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(-1) == labels).double().mean().item()
