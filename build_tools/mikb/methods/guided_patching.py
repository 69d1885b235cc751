"""Attribution-guided exact head patching: rank every head cheaply, patch only the top k exactly.

An exact all-heads sweep cannot beat a hook loop by more than the ratio of their arithmetic
(about 3-4x when the prompts differ early; see the README's Performance section): each of
the ``L x H`` patched runs must recompute every later layer. Doing less exact work is the only
way past that ceiling. Attribution patching (one forward and backward) estimates every head's
effect; the ``k`` heads with the largest estimated ``|effect|`` are then patched exactly, each
by the same resume from the cached corrupted run that :func:`head_out_patching` uses. The cost
is one attribution pass plus ``k / (L x H)`` of the exact sweep.

The trade is stated in the result, not hidden: heads outside the chosen ``k`` get no exact
value (NaN), and a head attribution underrates (a saturated softmax, a nonlinear interaction)
can be missed. ``estimate`` keeps the first-order value for every head so a user can see how
close the ranking came to the cut-off, and the benchmark reports recall against the full sweep.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mikb.methods._fast_forward import (
    LogitReadout,
    ModelWeights,
    RunCache,
    first_difference,
    resume_from_mid,
    run_with_cache,
)
from mikb.methods.attribution import attribution_patching
from mikb.methods.fast_patching import _check_tokens, _weights, head_write_changes

__all__ = ["GuidedHeadPatching", "guided_head_patching"]


@dataclass(frozen=True)
class GuidedHeadPatching:
    """Exact values for the chosen heads, first-order estimates for all of them.

    ``exact`` and ``estimate`` are ``[n_layers, n_heads]`` batch means of the metric with that
    head's clean output patched into the corrupted run (the quantity of
    :func:`~mikb.methods.fast_patching.head_out_patching`); ``exact`` is NaN for heads that
    were not run. ``chosen`` lists the exactly patched heads, largest ``|estimated effect|``
    first.
    """

    exact: Tensor
    estimate: Tensor
    chosen: list[tuple[int, int]]
    corrupted_metric: float


@torch.no_grad()
def _exact_for(
    w: ModelWeights, clean: RunCache, corrupted_tokens: Tensor, start: int, readout: LogitReadout,
    chosen: list[tuple[int, int]], max_rows: int,
) -> Tensor:
    """Exact head-output patching for ``chosen`` heads only; NaN elsewhere."""
    corrupt = run_with_cache(w, corrupted_tokens, kv_prefix=start)
    exact = torch.full((w.n_layers, w.n_heads), float("nan"), dtype=clean.z[0].dtype,
                       device=clean.z[0].device)
    for layer in sorted({la for la, _ in chosen}):
        heads = [h for la, h in chosen if la == layer]
        deltas = head_write_changes(w, clean, corrupt, layer, heads)
        exact[layer, heads] = resume_from_mid(w, layer, corrupt, deltas, readout, start, max_rows).mean(-1)
    return exact


def guided_head_patching(
    model: torch.nn.Module | ModelWeights,
    clean_tokens: Tensor,
    corrupted_tokens: Tensor,
    readout: LogitReadout,
    k: int,
    *,
    examples_per_pass: int | None = None,
    max_rows: int = 2048,
) -> GuidedHeadPatching:
    """Rank heads by attribution patching, then patch the top ``k`` exactly.

    ``examples_per_pass`` is passed to :func:`attribution_patching` (its memory/speed trade);
    ``max_rows`` to the exact resumes. ``k`` is clipped to the number of heads.
    """
    _check_tokens(clean_tokens, corrupted_tokens)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    w = _weights(model)
    with torch.no_grad():  # one clean forward serves the ranking and the exact resumes
        clean = run_with_cache(w, clean_tokens, resid=False)
    scores = attribution_patching(w, clean_tokens, corrupted_tokens, readout, edges=False,
                                  examples_per_pass=examples_per_pass, clean_z=clean.z)
    node = scores.node.detach()
    order = torch.argsort(node.abs().flatten().cpu(), descending=True, stable=True)
    chosen = [divmod(int(i), w.n_heads) for i in order[: min(k, node.numel())]]
    start = first_difference(clean_tokens, corrupted_tokens)
    exact = _exact_for(w, clean, corrupted_tokens, start, readout, chosen, max_rows)
    base = float(scores.corrupted_metric)
    return GuidedHeadPatching(exact=exact, estimate=base + node, chosen=chosen, corrupted_metric=base)
