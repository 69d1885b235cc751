"""Self-repair: how much downstream heads compensate when the name movers are ablated.

Following mcgrath2023hydra / rushing2024selfrepair: ablating a component should lower the
logit difference by its direct effect; the part of that expected drop that does not happen is
self-repair, and the change of each downstream head's direct effect shows who repairs it.
Flags: mean ablation over the ABC distribution; direct effects via the logit-difference
direction (final-norm scale frozen per run).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mikb.data.ioi import IOIDataset
from mikb.methods.ablation import run_ablated_with_cache
from mikb.methods.dla import head_dla
from mikb.methods.hooks import Head, head_label
from mikb.methods.metrics import logit_diff


def self_repair(
    model: Any,
    ds: IOIDataset,
    means: dict,
    ablated: Sequence[Head],
    downstream: Sequence[Head],
) -> dict[str, Any]:
    with torch.no_grad():
        clean_logits, clean_cache = model.run_with_cache(ds.tokens)
    abl_logits, abl_cache = run_ablated_with_cache(model, ds.tokens, means, ablated)
    dla_clean = head_dla(model, clean_cache, ds)
    dla_abl = head_dla(model, abl_cache, ds)
    ld_clean = logit_diff(clean_logits, ds).item()
    ld_abl = logit_diff(abl_logits, ds).item()
    expected_drop = sum((dla_clean[la, h] - dla_abl[la, h]).item() for la, h in ablated)
    actual_drop = ld_clean - ld_abl
    change = {head_label(v): (dla_abl[v] - dla_clean[v]).item() for v in downstream}
    return {
        "logit_diff_clean": ld_clean,
        "logit_diff_ablated": ld_abl,
        "expected_drop": expected_drop,
        "actual_drop": actual_drop,
        "self_repair": expected_drop - actual_drop,
        "self_repair_fraction": (expected_drop - actual_drop) / expected_drop,
        "downstream_de_change": change,
        "downstream_compensation": sum(change.values()),
        "de_clean": {head_label(v): dla_clean[v].item() for v in downstream},
        "de_ablated": {head_label(v): dla_abl[v].item() for v in downstream},
    }
