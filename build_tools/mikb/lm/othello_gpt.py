"""A small Othello-GPT: tensors from random games, lean next-move training, legal-move scores.

Tokens are square ids ``0 .. n*n-1`` (the four centre squares never occur) plus one padding
token ``n*n``; the output is a distribution over the ``n*n`` squares. Position ``t`` sees
moves ``0..t`` and is trained to predict move ``t+1`` (plain next-token prediction on games
of uniformly random legal moves, as in Li et al.), so the loss's optimum is the uniform
distribution over the legal moves. Training uses the lean TL-native forward of
:mod:`mikb.lm.lean_native`; the analysis runs on the ``TransformerBridge`` copy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from mikb.data.othello import Games
from mikb.lm.lean_native import LeanConfig, Params, forward, init_params, trainable
from mikb.lm.training import OptimConfig, train


@dataclass
class MoveData:
    """``tokens [G, T]`` moves ``0..T-1`` (padding after the end), ``targets [G, T]`` the next
    move (``-1`` where there is none), ``legal [G, T, n*n]`` the legal next moves."""

    tokens: torch.Tensor
    targets: torch.Tensor
    legal: torch.Tensor

    @property
    def has_target(self) -> torch.Tensor:
        return self.targets >= 0


def move_data(games: Games) -> MoveData:
    """Model inputs from games: the last move of a full game is never an input."""
    pad = games.n * games.n
    tok = torch.from_numpy(games.moves[:, :-1].copy())
    tok[tok < 0] = pad
    tgt = torch.from_numpy(games.moves[:, 1:].copy())
    legal = torch.from_numpy(games.legal[:, :-1].copy())
    return MoveData(tokens=tok, targets=tgt, legal=legal)


def othello_config(n: int, n_layers: int, d_model: int, n_heads: int, d_mlp: int) -> LeanConfig:
    return LeanConfig(
        n_layers=n_layers,
        n_heads=n_heads,
        d_model=d_model,
        d_head=d_model // n_heads,
        d_vocab=n * n + 1,
        d_vocab_out=n * n,
        n_ctx=n * n - 5,
        d_mlp=d_mlp,
        act_fn="gelu",
    )


def legal_move_scores(logits: torch.Tensor, legal: torch.Tensor) -> dict[str, float]:
    """``top1_legal``: share of positions whose top move is legal; ``topk_set_match``: share
    whose top-k moves (k = number of legal moves) are exactly the legal moves; ``legal_mass``:
    mean probability the model puts on legal moves. Only positions with a legal move count."""
    m = legal.any(-1)
    lg, lo = legal[m], logits[m]
    top1 = lo.argmax(-1)
    k = lg.sum(-1)
    return {
        "top1_legal": float(lg.gather(-1, top1[:, None]).float().mean()),
        "topk_set_match": float(topk_sets(lo, k).eq(lg).all(-1).float().mean()),
        "legal_mass": float((lo.softmax(-1) * lg).sum(-1).mean()),
    }


def topk_sets(logits: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Boolean masks ``[N, V]`` of each row's ``k[i]`` highest logits."""
    order = logits.argsort(-1, descending=True)
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(logits.shape[-1]).expand_as(order))
    return rank < k[:, None]


@dataclass
class TrainHistory:
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    top1_legal: list[float] = field(default_factory=list)
    topk_set_match: list[float] = field(default_factory=list)


def train_othello_gpt(
    cfg: LeanConfig,
    train_data: MoveData,
    eval_data: MoveData,
    steps: int,
    batch: int,
    optim: OptimConfig,
    seed: int,
    eval_every: int,
    progress: Callable | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[Params, TrainHistory]:
    """Next-move training on minibatches drawn (seeded) from ``train_data``."""
    params = init_params(cfg, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    hist = TrainHistory()
    n_games = train_data.tokens.shape[0]

    def loss_fn(p: Params, step: int) -> torch.Tensor:
        idx = torch.randint(0, n_games, (batch,), generator=gen)
        logits = forward(cfg, p, train_data.tokens[idx])
        y = train_data.targets[idx]
        m = y >= 0
        return F.cross_entropy(logits[m], y[m])

    def on_eval(step: int, p: Params) -> bool:
        logits = forward(cfg, p, eval_data.tokens)
        m = eval_data.has_target
        loss = float(F.cross_entropy(logits[m], eval_data.targets[m]))
        sc = legal_move_scores(logits, eval_data.legal)
        hist.steps.append(step)
        hist.loss.append(loss)
        hist.top1_legal.append(sc["top1_legal"])
        hist.topk_set_match.append(sc["topk_set_match"])
        if log is not None:
            log(f"step {step}: eval loss {loss:.3f}, top-1 legal {sc['top1_legal']:.3f}, "
                f"top-k set match {sc['topk_set_match']:.3f}")
        return False

    train(params, trainable(cfg, params), loss_fn, steps, optim, eval_every, on_eval, progress=progress)
    return params, hist


def entropy_floor(legal: torch.Tensor) -> float:
    """The loss of the ideal predictor (uniform over the legal moves), in nats."""
    k = legal[legal.any(-1)].sum(-1).double()
    return float(np.log(k.numpy()).mean())
