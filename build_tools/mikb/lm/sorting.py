"""List sorting for a one-layer attention-only transformer (the task of Urdshals & Urdshals 2025).

A sequence is ``x_1 .. x_L SEP y_1 .. y_L``: L numbers drawn uniformly with replacement from
``0 .. n_numbers-1``, a separator token (id ``n_numbers``), and the same numbers sorted in
ascending order. The model predicts ``y_1`` at SEP and ``y_{k+1}`` at ``y_k``; only those L
predictions enter the loss. Training uses the lean functional forward of
:mod:`mikb.lm.lean_native` (biases held at zero), and every analysis runs on the
``TransformerBridge`` built by :func:`mikb.lm.lean_native.to_bridge`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from mikb.lm.lean_native import LeanConfig, Params, forward, init_params, trainable
from mikb.lm.training import OptimConfig, train


@dataclass(frozen=True)
class SortTask:
    n_numbers: int
    length: int

    @property
    def sep(self) -> int:
        return self.n_numbers

    @property
    def n_ctx(self) -> int:
        return 2 * self.length + 1

    def lean_config(self, n_heads: int, d_model: int) -> LeanConfig:
        return LeanConfig(n_layers=1, n_heads=n_heads, d_model=d_model, d_head=d_model // n_heads,
                          d_vocab=self.n_numbers + 1, d_vocab_out=self.n_numbers, n_ctx=self.n_ctx,
                          attn_only=True, use_bias=False)

    def batch(self, size: int, gen: torch.Generator) -> torch.Tensor:
        x = torch.randint(0, self.n_numbers, (size, self.length), generator=gen)
        return torch.cat([x, torch.full((size, 1), self.sep), x.sort(-1).values], 1)

    def output_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits at the L positions whose next token is a sorted output (SEP .. y_{L-1})."""
        return logits[:, self.length: 2 * self.length]

    def targets(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, self.length + 1:]


@dataclass
class SortHistory:
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    token_acc: list[float] = field(default_factory=list)
    list_acc: list[float] = field(default_factory=list)


def accuracy(task: SortTask, logits: torch.Tensor, tokens: torch.Tensor) -> tuple[float, float]:
    """Per-token accuracy of the sorted outputs and the share of lists sorted exactly."""
    right = task.output_logits(logits).argmax(-1) == task.targets(tokens)
    return right.float().mean().item(), right.all(-1).float().mean().item()


def sort_loss(task: SortTask, logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    out = task.output_logits(logits)
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), task.targets(tokens).reshape(-1))


def train_sorter(task: SortTask, cfg: LeanConfig, *, steps: int, batch: int, optim: OptimConfig, seed: int,
                 eval_tokens: torch.Tensor, eval_every: int,
                 progress: Callable[[Iterable[int]], Iterable[int]] | None = None) -> tuple[Params, SortHistory]:
    """Train from a seeded init on fresh random lists every step; evaluate on ``eval_tokens``."""
    params = init_params(cfg, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    hist = SortHistory()

    def loss_fn(p: Params, step: int) -> torch.Tensor:
        tokens = task.batch(batch, gen)
        return sort_loss(task, forward(cfg, p, tokens), tokens)

    def on_eval(step: int, p: Params) -> bool:
        logits = forward(cfg, p, eval_tokens)
        tok, lst = accuracy(task, logits, eval_tokens)
        hist.steps.append(step)
        hist.loss.append(sort_loss(task, logits, eval_tokens).item())
        hist.token_acc.append(tok)
        hist.list_acc.append(lst)
        return False

    train(params, trainable(cfg, params), loss_fn, steps, optim, eval_every, on_eval, progress=progress)
    return params, hist


def step_masks(task: SortTask, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """Boolean masks over the L output steps ``[batch, L]`` and key masks ``[batch, L, n_ctx]``.

    ``target_keys``: input positions holding the next sorted number; ``current_keys``: positions
    (input or already-output) holding the number the query position itself holds, i.e. a number
    already written (at SEP there is none); ``greater_keys``: input positions holding a number
    larger than the current one. ``duplicate`` marks steps whose answer equals the current number.
    """
    L = task.length
    cur = tokens[:, L: 2 * L]  # the token at each query position (SEP first)
    tgt = task.targets(tokens)
    keys = tokens[:, None, :].expand(-1, L, -1)  # [b, L(query), n_ctx]
    qpos = torch.arange(L, 2 * L)[None, :, None]
    kpos = torch.arange(tokens.shape[1])[None, None, :]
    visible = kpos <= qpos
    is_input = kpos < L
    first = torch.zeros_like(cur, dtype=torch.bool)
    first[:, 0] = True
    return {
        "target_keys": is_input & (keys == tgt[:, :, None]),
        "current_keys": visible & (keys == cur[:, :, None]) & ~first[:, :, None],
        "greater_keys": is_input & ((keys > cur[:, :, None]) | first[:, :, None]),
        "visible": visible.expand_as(keys),
        "duplicate": (tgt == cur) & ~first,
        "first": first,
    }
