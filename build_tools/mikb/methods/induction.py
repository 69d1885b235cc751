"""Scores that identify previous-token and induction heads, and their composition.

All scores read a model's own attention patterns or weights, so they apply to any
TransformerLens model; the induction-heads reproduction uses them on a model trained here.
"""

from __future__ import annotations

import torch


def repeated_tokens(batch: int, half: int, vocab: int, generator: torch.Generator, bos: int = 0) -> torch.Tensor:
    """[BOS, x_1..x_L, x_1..x_L] with x drawn uniformly from 1..vocab-1 (0 is BOS)."""
    body = torch.randint(1, vocab, (batch, half), generator=generator)
    return torch.cat([torch.full((batch, 1), bos, dtype=torch.long), body, body], dim=1)


def repeated_segments(batch: int, n_ctx: int, vocab: int, generator: torch.Generator,
                      min_len: int = 6, max_len: int = 14) -> torch.Tensor:
    """Random tokens in which a random segment recurs at a random distance.

    Varying the segment's length and both copies' positions is what forces an induction
    circuit: with a fixed distance a single layer could copy by position alone.
    """
    tokens = torch.randint(1, vocab, (batch, n_ctx), generator=generator)
    tokens[:, 0] = 0
    for b in range(batch):
        length = int(torch.randint(min_len, max_len + 1, (1,), generator=generator))
        gap = int(torch.randint(0, n_ctx - 1 - 2 * length + 1, (1,), generator=generator))
        start = 1 + int(torch.randint(0, n_ctx - 1 - 2 * length - gap + 1, (1,), generator=generator))
        tokens[b, start + length + gap : start + 2 * length + gap] = tokens[b, start : start + length]
    return tokens


def per_position_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of predicting token t+1 at position t, shape [batch, pos-1]."""
    logp = logits[:, :-1].log_softmax(-1)
    return -logp.gather(-1, tokens[:, 1:, None])[..., 0]


def half_losses(logits: torch.Tensor, tokens: torch.Tensor, half: int) -> tuple[float, float]:
    """Mean loss on the first (unpredictable) and the repeated second half."""
    loss = per_position_loss(logits, tokens)
    first = loss[:, 1:half].mean().item()  # predicting x_2..x_L from the first copy
    second = loss[:, half + 1 :].mean().item()  # predicting x_2..x_L from the repeat
    return first, second


def diagonal_scores(pattern: torch.Tensor, offset: int, start: int) -> torch.Tensor:
    """Mean attention from query q to key q - offset, for queries q >= start.

    pattern: [batch, head, q, k]. offset 1 gives the previous-token score; offset half - 1
    on the repeated half gives the induction (prefix-matching) score.
    """
    n = pattern.shape[-1]
    q = torch.arange(start, n)
    k = q - offset
    keep = k >= 0
    return pattern[:, :, q[keep], k[keep]].mean(dim=(0, 2))


def ov_copying_accuracy(w_e: torch.Tensor, w_v: torch.Tensor, w_o: torch.Tensor, w_u: torch.Tensor) -> float:
    """Fraction of tokens t whose full OV circuit W_E W_V W_O W_U maps t to itself (argmax)."""
    full = w_e @ w_v @ w_o @ w_u  # [vocab, vocab]
    tokens = torch.arange(1, full.shape[0])
    return (full[tokens].argmax(-1) == tokens).float().mean().item()


def k_composition(w_q: torch.Tensor, w_k: torch.Tensor, w_v: torch.Tensor, w_o: torch.Tensor) -> float:
    """Elhage et al.'s K-composition score between an earlier head's OV matrix (w_v w_o)
    and a later head's QK matrix (w_q w_k^T): ||W_QK^T W_OV^T||_F / (||W_QK||_F ||W_OV||_F)."""
    w_ov = w_v @ w_o  # [d_model, d_model]
    w_qk = w_q @ w_k.T  # [d_model, d_model]
    num = torch.linalg.matrix_norm(w_qk.T @ w_ov.T)
    return (num / (torch.linalg.matrix_norm(w_qk) * torch.linalg.matrix_norm(w_ov))).item()
