"""Max-of-K (Gross et al. 2024): a one-layer, one-head, attention-only transformer that reads
K tokens and predicts their maximum at the last position.

Because the model has one attention layer and no MLP, its logits at the last position split
exactly into three paths (the paper's decomposition): the direct path ``(E[q] + P[-1]) U``,
and, for each position ``i``, an attention weight ``a_i`` from the QK circuit times the
value-to-logit vector ``(E[t_i] + P[i]) W_V W_O U`` (the OV circuit). The tables below hold
those paths for every token and position, so the model's logits on all ``d_vocab ** K``
inputs can be computed exactly without running the model input by input: the brute-force
accuracy is exact, not sampled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mikb.lm.lean_native import LeanConfig, Params


def model_config(d_vocab: int, k: int, d_model: int) -> LeanConfig:
    """One layer, one head (d_head = d_model), attention only, no normalisation, no biases."""
    return LeanConfig(n_layers=1, n_heads=1, d_model=d_model, d_head=d_model, d_vocab=d_vocab, n_ctx=k,
                      attn_only=True, use_bias=False)


def sample_batch(batch: int, d_vocab: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """Uniform random token lists, as in the authors' training data."""
    return torch.randint(0, d_vocab, (batch, k), generator=gen)


@dataclass(frozen=True)
class Paths:
    """Every path of the one-layer model, as tables over tokens and positions.

    ``scores[i, q, t]``: attention score (before softmax, scaled) from the last position holding
    query token ``q`` to position ``i`` holding token ``t``. ``values[i, t]``: the logits that
    position ``i`` holding ``t`` adds when fully attended (OV circuit incl. positional part).
    ``direct[q]``: the direct-path logits of the last token.
    """

    scores: torch.Tensor  # [k, vocab, vocab]
    values: torch.Tensor  # [k, vocab, vocab_out]
    direct: torch.Tensor  # [vocab, vocab_out]


def paths(cfg: LeanConfig, p: Params) -> Paths:
    e, pos, u = p["tok_embed.weight"], p["pos.weight"][: cfg.n_ctx], p["head.weight"].T
    wq, wk = p["layers.0.attn.q.weight"].T, p["layers.0.attn.k.weight"].T
    wv, wo = p["layers.0.attn.v.weight"].T, p["layers.0.attn.o.weight"].T
    last = cfg.n_ctx - 1
    q = (e + pos[last]) @ wq  # [vocab, d_head]
    keys = (e[None] + pos[:, None]) @ wk  # [k, vocab, d_head]
    scores = torch.einsum("qd,ktd->kqt", q, keys) / math.sqrt(cfg.d_head)
    values = (e[None] + pos[:, None]) @ wv @ wo @ u
    return Paths(scores=scores, values=values, direct=(e + pos[last]) @ u)


def path_logits(pt: Paths, tokens: torch.Tensor) -> torch.Tensor:
    """Last-position logits of ``tokens`` [batch, k] from the path tables (exact)."""
    k = tokens.shape[1]
    q = tokens[:, -1]
    s = torch.stack([pt.scores[i, q, tokens[:, i]] for i in range(k)], dim=1)
    a = s.softmax(-1)
    out = pt.direct[q].clone()
    for i in range(k):
        out += a[:, i : i + 1] * pt.values[i, tokens[:, i]]
    return out


def brute_force(pt: Paths, d_vocab: int, k: int) -> dict:
    """Exact accuracy over all ``d_vocab ** k`` inputs, one last token at a time.

    Returns the accuracy overall and per value of the maximum, and the mean attention that
    the last position pays to the positions holding the maximum.
    """
    rest = torch.cartesian_prod(*[torch.arange(d_vocab)] * (k - 1)) if k > 2 else torch.arange(d_vocab)[:, None]
    correct = torch.zeros(d_vocab, dtype=torch.float64)
    count = torch.zeros(d_vocab, dtype=torch.float64)
    attn_on_max = 0.0
    for q in range(d_vocab):
        tokens = torch.cat([rest, torch.full((rest.shape[0], 1), q)], dim=1)
        qs = tokens[:, -1]
        s = torch.stack([pt.scores[i, qs, tokens[:, i]] for i in range(k)], dim=1)
        a = s.softmax(-1)
        logits = pt.direct[q].expand(tokens.shape[0], -1).clone()
        for i in range(k):
            logits += a[:, i : i + 1] * pt.values[i, tokens[:, i]]
        mx = tokens.max(1).values
        ok = (logits.argmax(-1) == mx).double()
        correct.index_add_(0, mx, ok)
        count.index_add_(0, mx, torch.ones_like(ok))
        attn_on_max += float((a * (tokens == mx[:, None])).sum())
    n = float(count.sum())
    return {"accuracy": float(correct.sum()) / n, "n_inputs": int(n), "n_wrong": int(n - correct.sum()),
            "accuracy_by_max": (correct / count.clamp(min=1)).tolist(), "count_by_max": count.tolist(),
            "attention_on_max": attn_on_max / n}


def qk_monotonicity(scores: torch.Tensor) -> tuple[float, torch.Tensor]:
    """For the token part of the QK circuit at one key position (``[query, key]`` scores):
    the fraction of (query, key, key + 1) triples in which the larger key gets the larger
    score, and each query row's rank correlation with the key index."""
    frac = float((scores[:, 1:] > scores[:, :-1]).double().mean())
    ranks = scores.argsort(-1).argsort(-1).double()
    idx = torch.arange(scores.shape[1], dtype=torch.float64)
    r = ranks - ranks.mean(-1, keepdim=True)
    i = idx - idx.mean()
    rho = (r * i).sum(-1) / (r.norm(dim=-1) * i.norm())
    return frac, rho


def ov_copying(ov: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Fraction of input tokens whose own logit is the largest in the full OV circuit row, and
    each row's margin (own logit minus the best other logit)."""
    diag = ov.diagonal()
    off = ov.clone()
    off.fill_diagonal_(float("-inf"))
    margin = diag - off.max(-1).values
    return float((margin > 0).double().mean()), margin


def certified_bound(pt: Paths, d_vocab: int, k: int) -> dict:
    """A sound lower bound on accuracy over all inputs, built from the mechanism alone.

    Inputs are grouped by last token ``q``, maximum ``m`` and largest non-maximum token
    ``t2`` (the paper's cubic-cost grouping). Within a group the bound assumes the worst case
    for everything else: the other tokens are whichever tokens up to ``t2``, at whichever
    positions, minimise the margin. The QK circuit bounds the attention paid to the maximum,
    ``A >= 1 / (1 + (k - 1) exp(-g))``, with ``g`` the smallest score gap between a maximum
    and any key up to ``t2``; the OV and direct paths give the worst logit difference
    ``l[m] - l[y]`` for a fully attended maximum (``w_max``) and a fully attended smaller
    token (``w_other``). The logits are a convex combination of the attended values, so the
    margin is at least ``min(w_max, A w_max + (1 - A) w_other)`` plus the direct path; a
    group is certified when that is positive for every wrong answer ``y``, and its inputs are
    counted exactly. Cost ``O(k * d_vocab ** 4)`` arithmetic, no forward passes, against
    ``d_vocab ** k`` forward passes for brute force.
    """
    s, v, d = pt.scores.double(), pt.values.double(), pt.direct.double()
    certified = 0

    def n_inputs(a: int, q: int, m: int) -> int:
        # length-k inputs with last token q, maximum m, other tokens <= a (a = -1: none)
        if q == m:
            return (a + 2) ** (k - 1)
        if q > a:
            return 0
        return (a + 2) ** (k - 1) - (a + 1) ** (k - 1)

    for m in range(d_vocab):
        w = v[:, : m + 1, m : m + 1] - v[:, : m + 1, :]  # [pos, t, y]: margin added by attending t
        w_max = w[:, m].min(0).values  # [y]
        if m > 0:
            w_other = w[:, :m].min(0).values.cummin(0).values  # [t2, y]: worst token <= t2
        for q in range(m + 1):
            d_margin = d[q, m] - d[q]
            # t2 = -1: every token is the maximum (only possible when q == m)
            if q == m:
                margin = d_margin + w_max
                margin[m] = float("inf")
                if bool((margin > 0).all()):
                    certified += 1
            if m == 0:
                continue
            s_other = s[:, q, :m].max(0).values.cummax(0).values  # [t2]
            g = s[:, q, m].min() - s_other
            a = (1.0 / (1.0 + (k - 1) * torch.exp(-g)))[:, None]
            lb = torch.minimum(w_max[None], a * w_max[None] + (1 - a) * w_other)
            margin = d_margin[None] + lb
            margin[:, m] = float("inf")
            ok = (margin > 0).all(-1)
            for t2 in range(m):
                if bool(ok[t2]):
                    certified += n_inputs(t2, q, m) - n_inputs(t2 - 1, q, m)
    return {"accuracy_bound": certified / d_vocab**k, "n_certified": certified}
