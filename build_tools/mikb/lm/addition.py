"""n-digit integer addition for a one-layer transformer (the task of Quirke & Barez 2023).

A sequence is ``D_{n-1} .. D_0 + D'_{n-1} .. D'_0 = A_n .. A_0``: the most significant digit
first, as in the authors' released notebook, with tokens 0-9 for digits, 10 for '+' and 11 for
'='. The answer has one digit more than the operands and is written high digit first, so every
answer digit must be computed before the lower digits are written. The model predicts answer
token ``A_{n-j}`` at position ``2n+1+j``; only those n+1 predictions enter the loss.

Carry types, per answer digit ``A_i`` (column ``i``, units = 0): *no carry* when nothing is
carried into column i; *simple carry* when column i-1 itself sums to 10 or more; *cascade* when
column i-1 sums to exactly 9 and passes on a carry from further down (the paper's "use sum 9").
The cascade depth is the number of such 9-columns the carry runs through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from mikb.lm.lean_native import LeanConfig, Params, forward, init_params, trainable
from mikb.lm.training import OptimConfig, train

PLUS, EQUALS = 10, 11


@dataclass(frozen=True)
class AddTask:
    n_digits: int

    @property
    def n_ctx(self) -> int:
        return 3 * self.n_digits + 3

    @property
    def first_query(self) -> int:
        """Position of '=' (it predicts the first answer digit, A_n)."""
        return 2 * self.n_digits + 1

    def x_pos(self, column: int) -> int:
        return self.n_digits - 1 - column

    def y_pos(self, column: int) -> int:
        return 2 * self.n_digits - column

    def query_pos(self, answer_digit: int) -> int:
        """The position whose next-token prediction is answer digit ``A_answer_digit``."""
        return self.first_query + (self.n_digits - answer_digit)

    def lean_config(self, n_heads: int, d_model: int, d_mlp: int) -> LeanConfig:
        return LeanConfig(n_layers=1, n_heads=n_heads, d_model=d_model, d_head=d_model // n_heads, d_vocab=12,
                          d_vocab_out=10, n_ctx=self.n_ctx, d_mlp=d_mlp, attn_only=False, act_fn="relu",
                          use_bias=False)

    def questions(self, size: int, gen: torch.Generator, sum9_frac: float = 0.0) -> torch.Tensor:
        """Operand digits ``[size, 2, n]`` (units last); ``sum9_frac`` of the columns are forced to
        sum to 9, which makes carry cascades common (the authors enrich their data similarly)."""
        x = torch.randint(0, 10, (size, self.n_digits), generator=gen)
        y = torch.randint(0, 10, (size, self.n_digits), generator=gen)
        if sum9_frac > 0:
            y = torch.where(torch.rand(size, self.n_digits, generator=gen) < sum9_frac, 9 - x, y)
        return torch.stack([x, y], 1)

    def tokens(self, q: torch.Tensor) -> torch.Tensor:
        size = q.shape[0]
        ans = self.answers(q)
        return torch.cat([q[:, 0], torch.full((size, 1), PLUS), q[:, 1], torch.full((size, 1), EQUALS), ans], 1)

    def answers(self, q: torch.Tensor) -> torch.Tensor:
        """Answer digits ``[size, n+1]``, A_n first."""
        s = q[:, 0] + q[:, 1]  # column sums, MSB first
        ans = torch.zeros(q.shape[0], self.n_digits + 1, dtype=torch.long)
        carry = torch.zeros(q.shape[0], dtype=torch.long)
        for j in range(self.n_digits - 1, -1, -1):
            t = s[:, j] + carry
            ans[:, j + 1] = t % 10
            carry = t // 10
        ans[:, 0] = carry
        return ans

    def carry_types(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per answer digit, columns ordered A_n .. A_0 (like the answer): the carry type
        (0 none, 1 simple, 2 cascade) and the cascade depth (0 unless a cascade)."""
        n = self.n_digits
        col_sum = (q[:, 0] + q[:, 1]).flip(-1)  # units first: col_sum[:, c]
        kind = torch.zeros(q.shape[0], n + 1, dtype=torch.long)  # units first for now
        depth = torch.zeros_like(kind)
        carry = torch.zeros(q.shape[0], dtype=torch.long)
        run = torch.zeros_like(carry)  # 9-columns the current carry has passed through
        for c in range(n):
            # carry into column c+1 comes out of column c
            out = (col_sum[:, c] + carry) // 10
            generated = col_sum[:, c] >= 10
            passed = (col_sum[:, c] == 9) & (carry == 1)
            run = torch.where(generated, torch.zeros_like(run), torch.where(passed, run + 1, torch.zeros_like(run)))
            kind[:, c + 1] = torch.where(out == 0, 0, torch.where(passed, 2, 1))
            depth[:, c + 1] = torch.where(passed, run, torch.zeros_like(run))
            carry = out
        return kind.flip(-1), depth.flip(-1)

    def answer_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return logits[:, self.first_query: self.first_query + self.n_digits + 1]


@dataclass
class AddHistory:
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    digit_acc: list[list[float]] = field(default_factory=list)
    exact_acc: list[float] = field(default_factory=list)


def add_loss(task: AddTask, logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    out = task.answer_logits(logits)
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), tokens[:, task.first_query + 1:].reshape(-1))


def digit_correct(task: AddTask, logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``[size, n+1]`` booleans, A_n first (teacher-forced: earlier answer digits are the true ones)."""
    return task.answer_logits(logits).argmax(-1) == tokens[:, task.first_query + 1:]


def train_adder(task: AddTask, cfg: LeanConfig, *, steps: int, batch: int, optim: OptimConfig, seed: int,
                sum9_frac: float, enrich_every: int, eval_tokens: torch.Tensor, eval_every: int,
                progress: Callable[[Iterable[int]], Iterable[int]] | None = None) -> tuple[Params, AddHistory]:
    """Fresh random questions every step; every ``enrich_every``-th batch has sum-9 columns forced."""
    params = init_params(cfg, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    hist = AddHistory()

    def loss_fn(p: Params, step: int) -> torch.Tensor:
        frac = sum9_frac if enrich_every and step % enrich_every == 0 else 0.0
        tokens = task.tokens(task.questions(batch, gen, frac))
        return add_loss(task, forward(cfg, p, tokens), tokens)

    def on_eval(step: int, p: Params) -> bool:
        logits = forward(cfg, p, eval_tokens)
        right = digit_correct(task, logits, eval_tokens).float()
        hist.steps.append(step)
        hist.loss.append(add_loss(task, logits, eval_tokens).item())
        hist.digit_acc.append(right.mean(0).tolist())
        hist.exact_acc.append(right.all(-1).float().mean().item())
        return False

    train(params, trainable(cfg, params), loss_fn, steps, optim, eval_every, on_eval, progress=progress)
    return params, hist
