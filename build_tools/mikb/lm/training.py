"""Shared lean training loop for the models trained here (induction heads, grokking).

The loop is deliberately plain: AdamW over a dict of leaf tensors, a loss closure that
receives the step number (so it can draw a fresh batch or reuse the full batch), and an
evaluation callback on a schedule. The callback may return ``True`` to stop early, which is
how the grokking run ends once its cleanup phase is over instead of after a fixed budget.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from mikb.lm.lean_native import Params


@dataclass(frozen=True)
class OptimConfig:
    """AdamW settings; ``warmup_steps`` ramps the learning rate linearly from 0."""

    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    grad_clip: float | None = None


def train(
    params: Params,
    names: Iterable[str],
    loss_fn: Callable[[Params, int], torch.Tensor],
    steps: int,
    optim: OptimConfig,
    eval_every: int,
    on_eval: Callable[[int, Params], bool | None],
    progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
) -> int:
    """Optimise ``params[names]`` in place; returns the number of steps taken.

    ``on_eval(step, params)`` is called before the first step (step 0), every
    ``eval_every`` steps and after the last step; it returns ``True`` to stop.
    """
    leaves = []
    for name in names:
        params[name] = params[name].detach().clone().requires_grad_(True)
        leaves.append(params[name])
    opt = torch.optim.AdamW(leaves, lr=optim.lr, weight_decay=optim.weight_decay, betas=optim.betas)
    sched = None
    if optim.warmup_steps > 0:
        warm = optim.warmup_steps
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))

    def _eval(step: int) -> bool:
        with torch.no_grad():
            return bool(on_eval(step, params))

    if _eval(0):
        return 0
    it: Iterable[int] = range(1, steps + 1)
    if progress is not None:
        it = progress(it)
    step = 0
    for step in it:
        loss = loss_fn(params, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if optim.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(leaves, optim.grad_clip)
        opt.step()
        if sched is not None:
            sched.step()
        if step % eval_every == 0 or step == steps:
            if _eval(step):
                break
    for name in list(params):
        params[name] = params[name].detach()
    return step


def downsample(xs: list[float], max_points: int) -> list[int]:
    """Indices of at most ``max_points`` evenly spread entries (always keeping the last).

    Figures on the site must stay small; curves are thinned before plotting.
    """
    n = len(xs)
    if n <= max_points:
        return list(range(n))
    stride = n / max_points
    idx = sorted({int(i * stride) for i in range(max_points)} | {n - 1})
    return idx
