"""What the S-inhibition heads move: a position signal and a token signal (wang2022ioi, Sec. 3).

Our decomposition: the S-inhibition heads' outputs at END are taken from a run on an altered
prompt and patched into the clean run, so only what they carry changes.
  * position swap: IO and S1 exchange places (same names, so the token signal still says S,
    but any position signal now points at IO's place);
  * token swap: S1 and S2 become a fresh name (positions unchanged, so the position signal
    still points at S1, but the token signal names someone absent).
The logit difference (with the clean IO and S) kept in each case says which signal the name
movers rely on: the swap that hurts more carries the signal that matters more.
"""

from __future__ import annotations

import random
from typing import Any

import torch

from mikb.data.gpt2_bpe import get_tokenizer
from mikb.data.ioi import IOIDataset
from mikb.methods.hooks import Head, z_name
from mikb.methods.metrics import logit_diff


def position_swapped_tokens(ds: IOIDataset) -> torch.Tensor:
    """Clean prompts with the IO and S1 tokens exchanged (S2 stays S)."""
    toks = ds.tokens.clone()
    b = torch.arange(len(ds))
    toks[b, ds.pos["IO"]] = ds.tokens[b, ds.pos["S1"]]
    toks[b, ds.pos["S1"]] = ds.tokens[b, ds.pos["IO"]]
    return toks


def token_swapped_tokens(ds: IOIDataset, seed: int = 0) -> torch.Tensor:
    """Clean prompts with S1 and S2 replaced by a name that is neither IO nor S."""
    tok = get_tokenizer()
    ids = [tok.encode(" " + n)[0] for n in ds.names]
    rng = random.Random(seed)
    toks = ds.tokens.clone()
    b = torch.arange(len(ds))
    fresh = []
    for io, s in zip(ds.io_ids.tolist(), ds.s_ids.tolist(), strict=True):
        fresh.append(rng.choice([i for i in ids if i not in (io, s)]))
    fresh_t = torch.tensor(fresh)
    toks[b, ds.pos["S1"]] = fresh_t
    toks[b, ds.pos["S2"]] = fresh_t
    return toks


def logit_diff_with_heads_from(model: Any, ds: IOIDataset, heads: list[Head],
                               source_tokens: torch.Tensor) -> float:
    """Logit diff of the clean run with `heads`' outputs at END taken from `source_tokens`."""
    layers = sorted({la for la, _ in heads})
    names = [z_name(la) for la in layers]
    with torch.no_grad():
        _, src = model.run_with_cache(source_tokens, names_filter=lambda n: n in names)
    b = torch.arange(len(ds))

    def make(layer: int):
        hs = [h for la, h in heads if la == layer]

        def hook(z: torch.Tensor, hook: Any) -> torch.Tensor:
            z = z.clone()
            for h in hs:
                z[b, ds.end, h] = src[z_name(layer)][b, ds.end, h]
            return z

        return hook

    with torch.no_grad():
        logits = model.run_with_hooks(ds.tokens, fwd_hooks=[(z_name(la), make(la)) for la in layers])
    return logit_diff(logits, ds).item()


def signal_decomposition(model: Any, ds: IOIDataset, sinh: list[Head], ld_clean: float,
                         seed: int = 0) -> dict[str, float]:
    """Fractions of the clean logit difference kept under each swap, and the position share."""
    if not sinh:
        return {}
    pos_ld = logit_diff_with_heads_from(model, ds, sinh, position_swapped_tokens(ds))
    tok_ld = logit_diff_with_heads_from(model, ds, sinh, token_swapped_tokens(ds, seed))
    pos_drop, tok_drop = ld_clean - pos_ld, ld_clean - tok_ld
    total = pos_drop + tok_drop
    return {
        "position_swap_ld_fraction": pos_ld / ld_clean,
        "token_swap_ld_fraction": tok_ld / ld_clean,
        "position_signal_share": pos_drop / total if abs(total) > 1e-9 else float("nan"),
    }
