"""Balanced-bracket classification data and the two ways a string can fail.

A bracket string is balanced when (1) it has as many '(' as ')' (its final *elevation*,
opens minus closes, is zero) and (2) no prefix has more ')' than '(' (the elevation never
goes negative). A classifier must detect both failures: the *elevation failure* (counts
differ) and the *negative failure* (some prefix dips below zero even though the counts may
match). Tokens: 0 = [start], 1 = [pad], 2 = [end], 3 = '(', 4 = ')'. A sequence is
``[start] brackets [end] [pad]...``; the causal classifier reads its answer at [end].
"""

from __future__ import annotations

import torch

START, PAD, END, OPEN, CLOSE = 0, 1, 2, 3, 4
CATEGORIES = ("balanced", "elevation_only", "negative_only", "both")


def _dyck(n_pairs: int, gen: torch.Generator) -> list[int]:
    """A random balanced string with ``n_pairs`` pairs (random walk conditioned to stay >= 0
    and end at 0, drawn by accepting the '(' step with the exact conditional probability)."""
    out, opens, closes = [], 0, 0
    from math import comb

    def count(o: int, c: int) -> int:  # balanced completions after o opens and c closes
        n, h = 2 * n_pairs - o - c, o - c
        if h < 0 or n < h or (n - h) % 2:
            return 0
        up = (n + h) // 2 - h  # further opens
        return comb(n, up) - (comb(n, up - 1) if up >= 1 else 0)

    while opens + closes < 2 * n_pairs:
        total = count(opens, closes)
        p_open = count(opens + 1, closes) / total if opens < n_pairs else 0.0
        if float(torch.rand((), generator=gen)) < p_open:
            out.append(OPEN)
            opens += 1
        else:
            out.append(CLOSE)
            closes += 1
    return out


def category(brackets: list[int]) -> str:
    h, low = 0, 0
    for b in brackets:
        h += 1 if b == OPEN else -1
        low = min(low, h)
    elev, neg = h != 0, low < 0
    return "balanced" if not (elev or neg) else "both" if elev and neg else "elevation_only" if elev else "negative_only"


def _draw(kind: str, n: int, gen: torch.Generator) -> list[int]:
    """One bracket string of length ``n`` (even for balanced / negative-only) of the given kind."""
    while True:
        if kind == "balanced":
            s = _dyck(n // 2, gen)
        elif kind == "negative_only":  # equal counts, shuffled until some prefix dips
            s = [OPEN] * (n // 2) + [CLOSE] * (n // 2)
            s = [s[i] for i in torch.randperm(n, generator=gen).tolist()]
        elif kind == "elevation_only":  # unequal counts: a balanced prefix, then extra opens in random places
            extra = 1 if n % 2 else 2 * int(torch.randint(1, max(2, n // 4 + 1), (1,), generator=gen))
            base = _dyck((n - extra) // 2, gen)
            s = list(base)
            for _ in range(extra):
                s.insert(int(torch.randint(0, len(s) + 1, (1,), generator=gen)), OPEN)
        else:  # "both" or random: uniform random brackets
            s = torch.randint(OPEN, CLOSE + 1, (n,), generator=gen).tolist()
        if kind == "random" or category(s) == kind:
            return s


def make_dataset(n: int, max_len: int, gen: torch.Generator, mix: dict[str, float] | None = None):
    """``n`` sequences ``[start] brackets [end] [pad]...`` (width ``max_len + 2``), their labels
    (1 = unbalanced), [end] positions, and categories. Half are balanced by default; the rest
    are drawn from each failure kind so that neither failure is rare."""
    mix = mix or {"balanced": 0.5, "elevation_only": 0.15, "negative_only": 0.2, "both": 0.05, "random": 0.1}
    kinds, weights = list(mix), torch.tensor(list(mix.values()))
    tokens = torch.full((n, max_len + 2), PAD, dtype=torch.long)
    ends = torch.zeros(n, dtype=torch.long)
    cats: list[str] = []
    for row in range(n):
        kind = kinds[int(torch.multinomial(weights, 1, generator=gen))]
        lo = 2
        length = int(torch.randint(lo // 2, max_len // 2 + 1, (1,), generator=gen)) * 2
        if kind == "elevation_only" and float(torch.rand((), generator=gen)) < 0.5:
            length -= 1  # odd lengths always fail the count check
        if kind == "random" and float(torch.rand((), generator=gen)) < 0.5:
            length -= 1
        s = _draw(kind, max(length, 1), gen)
        tokens[row, 0] = START
        tokens[row, 1 : 1 + len(s)] = torch.tensor(s)
        tokens[row, 1 + len(s)] = END
        ends[row] = 1 + len(s)
        cats.append(category(s))
    labels = torch.tensor([c != "balanced" for c in cats], dtype=torch.long)
    return tokens, labels, ends, cats


def prefix_stats(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per position: elevation of the prefix up to and including it, and the fraction of '('
    among the brackets up to it (0.5 where there are none)."""
    step = (tokens == OPEN).long() - (tokens == CLOSE).long()
    elev = step.cumsum(1)
    n_br = ((tokens == OPEN) | (tokens == CLOSE)).long().cumsum(1)
    opens = (tokens == OPEN).long().cumsum(1)
    frac = torch.where(n_br > 0, opens.double() / n_br.clamp(min=1), torch.full_like(opens, 0.5, dtype=torch.double))
    return elev, frac


def r_squared(x: torch.Tensor, y: torch.Tensor) -> float:
    """R^2 of a least-squares linear fit (with intercept) of ``y`` [n] on ``x`` [n, d]."""
    x = torch.cat([x.double(), torch.ones(x.shape[0], 1, dtype=torch.double)], 1)
    y = y.double()
    sol = torch.linalg.lstsq(x, y[:, None]).solution
    resid = y - (x @ sol)[:, 0]
    return float(1 - resid.pow(2).sum() / (y - y.mean()).pow(2).sum().clamp(min=1e-12))
