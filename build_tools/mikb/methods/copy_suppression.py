"""Copy-suppression analysis of one attention head (mcdougall2023copysuppression).

Three checks, each a number: (1) OV: pushed through the head's OV circuit and unembedded, does a
name token's effective embedding lower that same name's logit (negative copying score, the
paper's Section 3.1 / wang2022ioi's copy score with the sign flipped)? (2) QK: at END, does the
head attend more to the name that earlier layers already predict (logit lens on its input)?
(3) Effect: how much does mean-ablating the head raise the logit difference?
"""

from __future__ import annotations

from typing import Any

import torch

from mikb.data.gpt2_bpe import get_tokenizer
from mikb.data.ioi import IOIDataset
from mikb.methods.ablation import run_ablated
from mikb.methods.metrics import logit_diff


def _maybe(module: Any, x: torch.Tensor) -> torch.Tensor:
    return module(x) if module is not None else x


def effective_name_embeddings(model: Any, name_ids: torch.Tensor) -> torch.Tensor:
    """Residual stream after block 0 at each name token (preceded by BOS), [n_names, d_model].

    wang2022ioi use this "effective embedding" (it includes MLP0, which in GPT-2 acts largely as
    an extension of the embedding) for their copy scores.
    """
    bos = get_tokenizer().bos_token_id  # both supported models use GPT-2 ids
    tokens = torch.stack([torch.full_like(name_ids, bos), name_ids], dim=1)
    name = "blocks.1.hook_resid_pre"
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n == name)
    return cache[name][:, 1]


def ov_copy_score(
    model: Any, layer: int, head: int, name_ids: torch.Tensor, k: int = 5, negative: bool = False
) -> float:
    """Fraction of names whose own token is among the top-k (or bottom-k when `negative`)
    vocabulary logits of their effective embedding pushed through the head's OV circuit."""
    emb = effective_name_embeddings(model, name_ids)
    with torch.no_grad():
        x = _maybe(getattr(model.blocks[layer], "ln1", None), emb[:, None, :])[:, 0]
        out = x @ model.blocks[layer].attn.W_V[head] @ model.blocks[layer].attn.W_O[head]
        out = _maybe(getattr(model, "ln_final", None), out[:, None, :])[:, 0]
        logits = out @ model.W_U
        if negative:
            logits = -logits
        top = logits.topk(k, dim=-1).indices
    return (top == name_ids[:, None]).any(-1).float().mean().item()


def attends_to_predicted(model: Any, cache: Any, ds: IOIDataset, layer: int, head: int) -> dict[str, float]:
    """Does the head at END attend more to whichever of IO/S its input residual predicts more?

    Prediction = logit lens on blocks.{layer}.hook_resid_pre at END (final norm + unembedding).
    """
    b = torch.arange(len(ds))
    resid = cache[f"blocks.{layer}.hook_resid_pre"][b, ds.end]
    with torch.no_grad():
        lens = _maybe(getattr(model, "ln_final", None), resid[:, None, :])[:, 0] @ model.W_U
    pred_io = lens[b, ds.io_ids] > lens[b, ds.s_ids]
    pattern = cache[f"blocks.{layer}.attn.hook_pattern"][:, head]
    att_io = pattern[b, ds.end, ds.pos["IO"]]
    att_s = pattern[b, ds.end, ds.pos["S1"]] + pattern[b, ds.end, ds.pos["S2"]]
    agrees = torch.where(pred_io, att_io > att_s, att_s > att_io)
    return {
        "attn_to_io": att_io.mean().item(),
        "attn_to_s": att_s.mean().item(),
        "attends_to_predicted_frac": agrees.float().mean().item(),
    }


def ablation_effect(model: Any, ds: IOIDataset, means: dict, heads: list[tuple[int, int]]) -> float:
    """Logit diff after mean-ablating `heads` minus before (positive: the heads were suppressing)."""
    with torch.no_grad():
        clean = logit_diff(model(ds.tokens), ds).item()
    return logit_diff(run_ablated(model, ds.tokens, means, heads), ds).item() - clean
