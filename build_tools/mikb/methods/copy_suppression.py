"""Copy-suppression analysis of one attention head (mcdougall2023copysuppression).

Three checks, each a number: (1) OV: pushed through the head's OV circuit and unembedded, does a
name token's effective embedding lower that same name's logit (negative copying score, the
paper's Section 3.1 / wang2022ioi's copy score with the sign flipped)? (2) QK: at END, does the
head attend more to the name that earlier layers already predict (logit lens on its input)?
(3) Effect: how much does mean-ablating the head raise the logit difference? And (4) the
paper's copy-suppression-preserving ablation (CSPA, its Section 3.3), `cspa_paper`.
"""

from __future__ import annotations

import math
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
    hit = (top == name_ids[:, None]).any(-1) & _writes_something(out, emb)
    return hit.float().mean().item()


def _writes_something(out: torch.Tensor, emb: torch.Tensor, rel: float = 1e-4) -> torch.Tensor:
    """Per name: whether the OV output is more than numerical dust next to the input, so that a
    head writing (almost) nothing is not credited with copying by the order of near-zero logits."""
    return out.norm(dim=-1) > rel * emb.norm(dim=-1)


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


def ov_copy_scores(
    model: Any, heads: list[tuple[int, int]], name_ids: torch.Tensor, k: int = 5,
    negative: bool = False,
) -> dict[tuple[int, int], float]:
    """`ov_copy_score` for many heads, sharing one effective-embedding pass."""
    emb = effective_name_embeddings(model, name_ids)
    out: dict[tuple[int, int], float] = {}
    with torch.no_grad():
        for layer, head in heads:
            x = _maybe(getattr(model.blocks[layer], "ln1", None), emb[:, None, :])[:, 0]
            o = x @ model.blocks[layer].attn.W_V[head] @ model.blocks[layer].attn.W_O[head]
            o = _maybe(getattr(model, "ln_final", None), o[:, None, :])[:, 0]
            logits = o @ model.W_U
            if negative:
                logits = -logits
            top = logits.topk(k, dim=-1).indices
            hit = (top == name_ids[:, None]).any(-1) & _writes_something(o, emb)
            out[(layer, head)] = hit.float().mean().item()
    return out


def cspa_paper(
    model: Any, tokens: torch.Tensor, means: dict, layer: int, head: int, k_frac: float = 0.05,
    per_token: bool = False,
) -> dict[str, Any]:
    """CSPA as mcdougall2023copysuppression define it (Section 3.3.1), with its two halves.

    Direct effect only: the head's write to the final residual stream is replaced (the final
    LayerNorm scale kept from the clean run); later layers see the clean head. The head's
    output at destination d is a sum over sources s of attention-weighted writes; the baseline
    for each (d, s) is the head's mean output at d weighted by the same attention.
      * QK half: at each d, keep the ceil(k_frac * (d + 1)) sources (first occurrences ranked,
        every occurrence kept) whose token the logit lens of the head's input at d predicts most;
        every other source's write becomes its baseline;
      * OV half: a write's difference from its baseline is projected onto the unembedding of
        the source's own token and only a negative component is kept;
      * CSPA = both; "ov" = the OV half at every source; "qk" = the QK half alone.
    Effect explained = 1 - KL(clean || ablation) / KL(clean || mean ablation of the direct
    effect), averaged over every position. With `per_token`, the per-position KL divergences
    and next-token losses of the clean run, the mean ablation and CSPA come back as tensors too
    (for `cspa_token_summary`). Flags: single-token projections (the paper also
    projects onto semantically similar tokens) and no function-word mask on the sources.
    """
    from mikb.methods.hooks import z_name

    n_layers = model.cfg.n_layers
    final = f"blocks.{n_layers - 1}.hook_resid_post"
    names = {z_name(layer), f"blocks.{layer}.hook_resid_pre", f"blocks.{layer}.attn.hook_pattern",
             f"blocks.{layer}.attn.hook_v", final, "ln_final.hook_scale"}
    with torch.no_grad():
        clean_logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
        seq = tokens.shape[1]
        ln = getattr(model, "ln_final", None)
        scale = cache["ln_final.hook_scale"] if "ln_final.hook_scale" in cache else None
        resid_final = cache[final]

        frozen = scale is not None and hasattr(ln, "w") and hasattr(ln, "b")

        def to_logits(resid: torch.Tensor) -> torch.Tensor:
            if frozen:
                x = resid - resid.mean(-1, keepdim=True)
                x = x / scale * ln.w + ln.b
            else:
                x = _maybe(ln, resid)
            return x @ model.W_U + model.b_U

        w_o = model.blocks[layer].attn.W_O[head]
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"][:, head]  # [b, dst, src]
        v = cache[f"blocks.{layer}.attn.hook_v"][:, :, head]  # [b, src, d_head]
        per_src = pattern[..., None] * (v @ w_o)[:, None, :, :]  # [b, dst, src, d_model]
        orig = per_src.sum(2)
        mean_res = means[layer][None, :seq, head] @ w_o  # [1, dst, d_model]
        base = pattern[..., None] * mean_res[:, :, None, :]  # [b, dst, src, d_model]

        lens = _maybe(ln, cache[f"blocks.{layer}.hook_resid_pre"]) @ model.W_U  # [b, dst, vocab]
        b_n = tokens.shape[0]
        src_tok = tokens[:, None, :].expand(-1, seq, -1)
        score = lens.gather(-1, src_tok)  # [b, dst, src]: prediction at dst of src's token
        causal = torch.ones(seq, seq, dtype=torch.bool).tril()
        score = score.masked_fill(~causal, float("-inf"))
        first = torch.zeros_like(tokens, dtype=torch.bool)
        for i in range(seq):
            first[:, i] = ~(tokens[:, :i] == tokens[:, i:i + 1]).any(1)
        ranked = score.masked_fill(~first[:, None, :], float("-inf"))
        keep = torch.zeros(b_n, seq, seq, dtype=torch.bool)
        for d in range(seq):
            k = min(math.ceil(k_frac * (d + 1)), d + 1)
            thr = ranked[:, d].topk(k, dim=-1).values[:, -1:]
            keep[:, d] = (score[:, d] >= thr - 1e-6) & causal[d][None, :]

        u = model.W_U[:, src_tok].permute(1, 2, 3, 0)  # [b, dst, src, d_model]
        u_hat = u / u.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        coef = ((per_src - base) * u_hat).sum(-1, keepdim=True).clamp(max=0.0)
        ov = base + coef * u_hat
        variants = {
            "cspa": torch.where(keep[..., None], ov, base).sum(2),
            "ov": ov.sum(2),
            "qk": torch.where(keep[..., None], per_src, base).sum(2),
        }
        p = clean_logits.log_softmax(-1)

        nxt = tokens[:, 1:, None]
        tok_kl: dict[str, torch.Tensor] = {}
        tok_loss = {"clean": -p[:, :-1].gather(-1, nxt)[..., 0]}

        def kl(name: str, new_head_out: torch.Tensor) -> float:
            q = to_logits(resid_final - orig + new_head_out).log_softmax(-1)
            tok_kl[name] = (p.exp() * (p - q)).sum(-1)
            tok_loss[name] = -q[:, :-1].gather(-1, nxt)[..., 0]
            return tok_kl[name].mean().item()

        kl_mean = kl("mean", mean_res.expand_as(orig))
        out: dict[str, Any] = {"kl_mean_ablation": kl_mean, "final_ln_scale_frozen": float(frozen)}
        for name, new in variants.items():
            kv = kl(name, new)
            out[f"kl_{name}"] = kv
            out[f"{name}_fraction_explained"] = 1.0 - kv / kl_mean if kl_mean > 0 else float("nan")
    if per_token:
        out["per_token"] = {"kl_mean": tok_kl["mean"], "kl_cspa": tok_kl["cspa"],
                            "loss_clean": tok_loss["clean"], "loss_mean": tok_loss["mean"],
                            "loss_cspa": tok_loss["cspa"]}
    return out


def cspa_token_summary(per_token: dict[str, torch.Tensor], top_frac: float = 0.01
                       ) -> dict[str, float | None]:
    """Effect explained by CSPA on the positions where mean ablation moves the output most (the
    top `top_frac` by KL, the paper's maximal percentile, Section 3.3.2), and by two loss
    versions of the ratio (Appendix J.2): 1 - mean(L_cspa - L) / mean(L_mean - L) (net) and the
    same with absolute differences."""
    kl_m, kl_c = per_token["kl_mean"].flatten(), per_token["kl_cspa"].flatten()
    n_top = max(1, math.ceil(top_frac * kl_m.numel()))
    top = kl_m.topk(n_top).indices
    den = kl_m[top].mean().item()
    d_mean = (per_token["loss_mean"] - per_token["loss_clean"]).flatten()
    d_cspa = (per_token["loss_cspa"] - per_token["loss_clean"]).flatten()
    net, absd = d_mean.mean().item(), d_mean.abs().mean().item()
    return {
        "top_percentile_fraction_explained": 1.0 - kl_c[top].mean().item() / den if den > 0 else None,
        "top_percentile_positions": n_top,
        "net_loss_fraction_explained": 1.0 - d_cspa.mean().item() / net if net != 0 else None,
        "abs_loss_fraction_explained": (1.0 - d_cspa.abs().mean().item() / absd
                                        if absd > 0 else None),
    }
