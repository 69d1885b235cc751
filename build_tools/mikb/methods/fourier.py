"""Fourier analysis for modular-addition models (Nanda et al. 2023, nanda2023grokking).

A model that adds mod ``p`` with the paper's algorithm represents each input through
``cos(w k x)`` / ``sin(w k x)`` with ``w = 2 pi / p`` for a few *key frequencies* ``k``, and
its logits are sums of ``cos(w k (a + b - c))``. The tools here: the real Fourier basis
over ``Z_p``, the per-frequency norm of an embedding matrix, a rule that picks the key
frequencies from those norms, and the two progress measures built on the logits —
*restricted* logits (only the key-frequency ``a + b`` directions kept) and *excluded* logits
(those directions removed).
"""

from __future__ import annotations

import math

import torch


def fourier_basis(p: int) -> tuple[torch.Tensor, list[str]]:
    """Orthonormal real Fourier basis of R^p, rows: constant, then cos k and sin k for
    k = 1..(p-1)/2 (``p`` odd)."""
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.ones(p, dtype=torch.float64)]
    names = ["const"]
    for k in range(1, (p - 1) // 2 + 1):
        rows.append(torch.cos(2 * math.pi * k * x / p))
        rows.append(torch.sin(2 * math.pi * k * x / p))
        names += [f"cos {k}", f"sin {k}"]
    basis = torch.stack(rows)
    return basis / basis.norm(dim=1, keepdim=True), names


def frequency_norms(w_e: torch.Tensor) -> torch.Tensor:
    """Squared norm of the embedding in each frequency ``k = 1..(p-1)/2`` (cos + sin parts).

    ``w_e`` is ``[p, d_model]`` (the number tokens only, not ``=``). Index ``k - 1`` holds
    frequency ``k``; the constant direction is left out because it carries no information
    about which number was seen.
    """
    p = w_e.shape[0]
    basis, _ = fourier_basis(p)
    coeffs = basis @ w_e.double()  # [p, d_model]
    sq = coeffs.pow(2).sum(-1)
    return sq[1::2] + sq[2::2]


def key_frequencies(norms: torch.Tensor, max_keys: int = 12, dynamic_range: float = 10.0) -> list[int]:
    """Frequencies (1-based) above the largest gap in the sorted log-norms.

    A trained model's embedding is sparse in frequency: a few norms stand far above the
    rest. Cutting at the largest log-gap finds that group without a hand-set count, so the
    same rule serves every seed. Only frequencies whose norm is within ``dynamic_range`` of
    the strongest (and at most ``max_keys``) are candidates, plus the first one below them:
    just after cleanup the embedding still holds a decaying tail of former components, and
    the log-spacing deep inside that tail can hold the largest gap (one full run counted
    eleven "keys", four of them under 1% of the norm, while five held 83%).
    """
    order = torch.argsort(norms, descending=True)
    ranked = norms[order].clamp_min(1e-30)
    n_candidates = int((ranked >= ranked[0] / dynamic_range).sum().item())
    n_candidates = min(n_candidates, max_keys, len(ranked) - 1)
    if n_candidates < 1:
        return [int(order[0]) + 1]
    top = ranked[: n_candidates + 1].log()
    gaps = top[:-1] - top[1:]
    n_keys = int(torch.argmax(gaps).item()) + 1
    return sorted(int(i) + 1 for i in order[:n_keys])


def apb_directions(p: int, freqs: list[int]) -> torch.Tensor:
    """Unit vectors over the ``p*p`` inputs (row-major ``(a, b)``) along ``cos(w k (a+b))``
    and ``sin(w k (a+b))`` for each ``k`` in ``freqs``: ``[2 * len(freqs), p*p]``.

    Over the full grid these vectors are mutually orthogonal for distinct ``k``, so
    projecting on them one by one equals projecting on their span.
    """
    a = torch.arange(p, dtype=torch.float64).repeat_interleave(p)
    b = torch.arange(p, dtype=torch.float64).repeat(p)
    rows = []
    for k in freqs:
        angle = 2 * math.pi * k * (a + b) / p
        rows += [torch.cos(angle), torch.sin(angle)]
    if not rows:
        return torch.zeros(0, p * p, dtype=torch.float64)
    dirs = torch.stack(rows)
    return dirs / dirs.norm(dim=1, keepdim=True)


def split_logits(logits: torch.Tensor, p: int, freqs: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(restricted, excluded) logits for all ``p*p`` inputs in row-major ``(a, b)`` order.

    Restricted: the per-output mean plus the components along the key-frequency ``a + b``
    directions; that is all the generalising algorithm uses. Excluded: the logits with
    exactly those components removed; what is left is what memorisation must carry.
    """
    logits = logits.double()
    dirs = apb_directions(p, freqs)  # [m, p*p]
    proj = dirs.T @ (dirs @ logits)  # [p*p, p]
    mean = logits.mean(0, keepdim=True)
    restricted = mean + proj
    excluded = logits - proj
    return restricted, excluded
