"""In-context learning of Markov chains (ICL-MC; Edelman et al. 2024, edelman2024statistical).

Every sequence is drawn from its own Markov chain on ``k`` states: each row of the transition
matrix is an independent Dirichlet(1) sample (uniform over the simplex), the first state is
drawn from the chain's stationary distribution, as in the authors' released ``datasets.py``.
A model that predicts well must estimate the chain's transitions from the context itself.

The reference predictors are the authors' "rule of succession" n-gram estimators
(``test_error.ngram`` in their code): counts in the context plus one, normalised.

* uniform: ``1/k`` for every state;
* unigram: ``(#{s <= t: x_s = j} + 1) / (t + 1 + k)`` - how often ``j`` has occurred so far;
* bigram: ``(#{s < t: x_s = x_t, x_{s+1} = j} + 1) / (#{s < t: x_s = x_t} + k)`` - how often
  ``j`` followed the current state so far. Under the Dirichlet(1) prior this is the Bayes
  posterior mean of the current state's transition row, i.e. the optimal in-context predictor.

Distances are KL divergences in nats, averaged over sequences and positions:
``KL(p || q) = sum_j p_j (log p_j - log q_j)`` with the reference (truth or estimator) as ``p``
and the model as ``q``, the direction the authors' ``test_last_token`` uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class MarkovBatch:
    tokens: torch.Tensor  # [batch, seq] long
    transitions: torch.Tensor  # [batch, k, k]; row i is P(next | current = i)


def stationary(transitions: torch.Tensor) -> torch.Tensor:
    """Stationary distribution of each chain, ``[batch, k]`` (power iteration in float64:
    Dirichlet(1) rows are strictly positive, so every chain is ergodic)."""
    p = transitions.double()
    pi = torch.full(p.shape[:-1], 1.0 / p.shape[-1], dtype=torch.float64)
    for _ in range(200):
        pi = torch.einsum("bi,bij->bj", pi, p)
    return (pi / pi.sum(-1, keepdim=True)).float()


def sample_markov(batch: int, seq: int, k: int, gen: torch.Generator) -> MarkovBatch:
    """``batch`` sequences of length ``seq``, each from its own random chain."""
    # Dirichlet(1) = normalised i.i.d. Exponential(1) draws.
    e = -torch.log(torch.rand(batch, k, k, generator=gen).clamp_min(1e-12))
    trans = e / e.sum(-1, keepdim=True)
    pi = stationary(trans)
    tokens = torch.empty(batch, seq, dtype=torch.long)
    tokens[:, 0] = torch.multinomial(pi, 1, generator=gen).squeeze(-1)
    cum = trans.cumsum(-1)
    for t in range(1, seq):
        rows = cum[torch.arange(batch), tokens[:, t - 1]]  # [batch, k]
        u = torch.rand(batch, 1, generator=gen)
        tokens[:, t] = (u > rows).sum(-1).clamp_max(k - 1)
    return MarkovBatch(tokens, trans)


def true_next(b: MarkovBatch) -> torch.Tensor:
    """The chain's next-state distribution at every position, ``[batch, seq, k]``."""
    idx = torch.arange(b.tokens.shape[0])[:, None]
    return b.transitions[idx, b.tokens]


def unigram_estimate(tokens: torch.Tensor, k: int) -> torch.Tensor:
    """Rule-of-succession unigram prediction at every position, ``[batch, seq, k]``."""
    counts = torch.nn.functional.one_hot(tokens, k).float().cumsum(1) + 1.0
    return counts / counts.sum(-1, keepdim=True)


def bigram_estimate(tokens: torch.Tensor, k: int) -> torch.Tensor:
    """Rule-of-succession bigram prediction at every position, ``[batch, seq, k]``: counts of
    the transitions out of the current state seen so far, plus one."""
    batch, seq = tokens.shape
    onehot = torch.nn.functional.one_hot(tokens, k).float()  # [b, s, k]
    # pair counts after position t: C_t[i, j] = #{s < t : x_s = i, x_{s+1} = j}
    pairs = torch.einsum("bsi,bsj->bsij", onehot[:, :-1], onehot[:, 1:])  # transition s -> s+1
    cum = torch.zeros(batch, seq, k, k)
    cum[:, 1:] = pairs.cumsum(1)
    rows = torch.einsum("bsi,bsij->bsj", onehot, cum) + 1.0
    return rows / rows.sum(-1, keepdim=True)


def kl(p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """``KL(p || q)`` per position (nats), with ``q`` given as log-probabilities."""
    return (p * (p.clamp_min(1e-30).log() - log_q)).sum(-1)


def references(b: MarkovBatch, k: int) -> dict[str, torch.Tensor]:
    """The truth and the two estimators at every position (computed once per evaluation set)."""
    return {"truth": true_next(b), "unigram": unigram_estimate(b.tokens, k), "bigram": bigram_estimate(b.tokens, k)}


def kl_summary(log_q: torch.Tensor, refs: dict[str, torch.Tensor], start: int = 0) -> dict[str, float]:
    """Mean KL (nats) over sequences and positions ``>= start`` from each reference in
    ``refs`` (see :func:`references`) to the model with log-probabilities ``log_q``
    ``[batch, seq, k]``."""
    sl = slice(start, None)
    return {name: float(kl(p[:, sl], log_q[:, sl]).mean()) for name, p in refs.items()}


def estimator_losses(b: MarkovBatch, k: int, start: int = 0) -> dict[str, float]:
    """KL (nats) from the truth to the uniform, unigram and bigram predictors."""
    sl = slice(start, None)
    truth = true_next(b)[:, sl]
    out = {"uniform": float(kl(truth, torch.full_like(truth, 1.0 / k).log()).mean())}
    for name, est in (("unigram", unigram_estimate(b.tokens, k)), ("bigram", bigram_estimate(b.tokens, k))):
        out[name] = float(kl(truth, est[:, sl].log()).mean())
    return out


def previous_token_score(pattern: torch.Tensor) -> torch.Tensor:
    """Mean attention from each query to the position just before it, per head:
    ``pattern`` ``[batch, head, q, k]`` -> ``[head]`` (queries 1..end)."""
    seq = pattern.shape[-1]
    q = torch.arange(1, seq)
    return pattern[:, :, q, q - 1].mean(dim=(0, 2))


def statistical_induction_score(pattern: torch.Tensor, tokens: torch.Tensor, start: int = 1) -> torch.Tensor:
    """Share of each head's attention that lands on keys whose *previous* token equals the
    query's current token (the positions right after an earlier occurrence of the current
    state), per head ``[head]``, averaged over queries ``>= start``. A statistical induction
    head puts almost all its weight there; a uniform head puts the base rate there."""
    seq = tokens.shape[1]
    prev = torch.full_like(tokens, -1)
    prev[:, 1:] = tokens[:, :-1]
    match = (prev[:, None, :] == tokens[:, :, None]).float()  # [b, q, key]
    match = match * torch.tril(torch.ones(seq, seq))  # causal keys only
    mass = torch.einsum("bhqk,bqk->bhq", pattern, match)
    return mass[:, :, start:].mean(dim=(0, 2))


def matching_base_rate(tokens: torch.Tensor, start: int = 1) -> float:
    """What uniform causal attention would score on :func:`statistical_induction_score`."""
    seq = tokens.shape[1]
    uniform = torch.tril(torch.ones(seq, seq)) / torch.arange(1, seq + 1)[:, None]
    return float(statistical_induction_score(uniform[None, None].expand(tokens.shape[0], 1, seq, seq), tokens, start)[0])
