"""Task metrics for IOI: the logit difference between the indirect object and the subject.

Why the logit difference: it is the metric of wang2022ioi (Section 2), it is linear in the final
residual stream (so direct effects add up), and it is insensitive to the rest of the vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mikb.data.ioi import IOIDataset


def logit_diff(logits: torch.Tensor, ds: IOIDataset, per_prompt: bool = False) -> torch.Tensor:
    """logit(IO) - logit(S) at END; mean over prompts unless `per_prompt`."""
    b = torch.arange(len(ds), device=logits.device)
    end_logits = logits[b, ds.end.to(logits.device)]
    diff = end_logits[b, ds.io_ids.to(logits.device)] - end_logits[b, ds.s_ids.to(logits.device)]
    return diff if per_prompt else diff.mean()


def logit_diff_metric(ds: IOIDataset) -> Callable[[torch.Tensor], torch.Tensor]:
    """A scalar metric of logits, as TransformerLens' patching functions expect."""
    return lambda logits: logit_diff(logits, ds)


def normalized_metric(
    ds: IOIDataset, clean_value: float, corrupted_value: float
) -> Callable[[torch.Tensor], torch.Tensor]:
    """0 at the corrupted run's logit difference, 1 at the clean run's (recovery fraction)."""
    span = clean_value - corrupted_value
    if abs(span) < 1e-9:
        raise ValueError("clean and corrupted logit differences are equal; nothing to normalise")
    return lambda logits: (logit_diff(logits, ds) - corrupted_value) / span
