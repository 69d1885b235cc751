"""The RASP programs mikb compiles, and how to sample their inputs (no jax needed here).

Each program comes from tracr's own library (``tracr.compiler.lib``), so its meaning is the
library's. What mikb adds is the compile settings (vocabulary, maximum length) and a sampler
of valid inputs: clean and corrupted prompts are drawn from the same sampler, so a corrupted
prompt is another valid input of the same length (resample ablation in ACDC's sense).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

COMPILER_BOS = "BOS"
MLP_EXACTNESS = 100


@dataclass(frozen=True)
class Program:
    name: str  # model id suffix: model id is f"tracr-{name}"
    library_call: str  # the tracr.compiler.lib expression compiled
    vocab: tuple[Any, ...]
    max_seq_len: int
    numerical: bool  # numerical output (one residual dimension) rather than categorical
    description: str
    sampler: Callable[[random.Random, int], list[Any]]  # (rng, length) -> tokens, no BOS

    @property
    def model_id(self) -> str:
        return f"tracr-{self.name}"

    def build(self) -> Any:
        """The RASP program (imports tracr)."""
        from tracr.compiler import lib  # noqa: F401 - used by eval
        from tracr.rasp import rasp  # noqa: F401

        return eval(self.library_call, {"lib": lib, "rasp": rasp})  # noqa: S307 - fixed strings


def _uniform(vocab: tuple[Any, ...]) -> Callable[[random.Random, int], list[Any]]:
    return lambda rng, n: [rng.choice(vocab) for _ in range(n)]


def _distinct(vocab: tuple[Any, ...]) -> Callable[[random.Random, int], list[Any]]:
    return lambda rng, n: rng.sample(list(vocab), n)


PROGRAMS: dict[str, Program] = {
    p.name: p
    for p in [
        Program(
            "reverse", "lib.make_reverse(rasp.tokens)", ("a", "b", "c"), 5, False,
            "Reverse the input: length by SelectorWidth, opp_index = length - index - 1, "
            "then an Aggregate that reads the token at opp_index.",
            _uniform(("a", "b", "c")),
        ),
        Program(
            "sort", "lib.make_sort_unique(rasp.tokens, rasp.tokens)", (1, 2, 3, 4, 5, 6), 5, False,
            "Sort distinct tokens: each position counts the smaller keys (SelectorWidth) to find "
            "its target position, and an Aggregate moves each token there.",
            _distinct((1, 2, 3, 4, 5, 6)),
        ),
        Program(
            "hist", "lib.make_hist()", ("a", "b", "c"), 5, False,
            "Histogram: at each position, how many tokens equal this one (one SelectorWidth).",
            _uniform(("a", "b", "c")),
        ),
        Program(
            "frac-prevs", "lib.make_frac_prevs(rasp.tokens == 'x')", ("x", "y"), 5, True,
            "Fraction of the tokens so far that are 'x' (a numerical Map, then a numerical "
            "mean Aggregate over previous positions).",
            _uniform(("x", "y")),
        ),
        Program(
            "pair-balance", "lib.make_pair_balance(rasp.tokens, '(', ')')", ("(", ")"), 6, True,
            "Running balance of '(' over ')': two numerical mean Aggregates in parallel heads (the "
            "fraction of openers and of closers so far) and an MLP that takes their difference.",
            _uniform(("(", ")")),
        ),
        Program(
            "shuffle-dyck", "lib.make_shuffle_dyck(['()'])", ("(", ")"), 6, False,
            "Shuffle-Dyck with one bracket pair: balanced so far (running fraction of openers "
            "minus closers never negative) and balanced at the end, combined per position.",
            _uniform(("(", ")")),
        ),
    ]
}
