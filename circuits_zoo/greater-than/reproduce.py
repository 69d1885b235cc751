"""Reproduce the greater-than circuit of GPT-2 small (hanna2023greaterthan).

Prompts "The NOUN lasted from the year XXYY to the year XX" against the paper's "01" corruption
(start year XX01); the metric is the paper's probability difference: the probability GPT-2 puts
on two-digit end years above YY minus that on years at or below YY. Heads and MLPs are
discovered by denoising activation patching (clean output into the 01 run); the heads that
matter should attend from the last position to YY. On gpt2-small the paper's own heads and MLPs
are scored as well.
"""

from __future__ import annotations

import random

import torch
from mikb.lm.pretrained import load_for
from mikb.methods.hooks import parse_head
from mikb.methods.ioi_common import heatmap
from mikb.methods.prompt_tasks import (
    FLAGS,
    PromptPairs,
    attention_to,
    clean_and_corrupted,
    heads_in,
    patch_heads,
    patch_mlps,
    scores_at,
    stack_prompts,
    top_heads,
    top_layers,
)
from mikb.reproduce import ReproContext, ScriptSpec

# hanna2023greaterthan's circuit (released code, circuit_discovery.py: the heads patched
# together with MLPs 8-11 in the circuit evaluation).
PAPER_HEADS = ["5.1", "5.5", "6.9", "7.10", "8.8", "8.11", "9.1"]
PAPER_MLPS = [8, 9, 10, 11]
NOUNS = ["war", "dispute", "conflict", "campaign", "expedition", "reign", "project", "trial",
         "strike", "occupation", "crisis", "voyage", "siege", "treaty", "festival", "drought"]

SPEC = ScriptSpec(
    models=("gpt2-small",),
    params={"n_prompts": 96, "century": 17, "top_k_heads": 8, "top_k_mlps": 4,
            "threshold": 0.02},
    quick_params={"n_prompts": 4},
    description="Greater-than: probability difference on year spans; patching heads and MLPs.",
)


def run(ctx: ReproContext) -> None:
    lm = load_for(ctx)
    model, tok, p = lm.model, lm.tok, ctx.params
    cent = int(p["century"])
    year_ids = torch.tensor([tok.single(f"{yy:02d}") or -1 for yy in range(100)])
    nouns = [n for n in NOUNS if tok.single(f" {n}") is not None]
    valid_yy = [yy for yy in range(2, 99) if len(tok.encode(f" {cent}{yy:02d}")) == 2
                and tok.encode(f" {cent}{yy:02d}")[1] == year_ids[yy]]
    if (year_ids < 0).any() or not nouns or not valid_yy:
        raise RuntimeError("tokenizer does not split years as GPT-2 does (' 17' + 'YY')")
    rng = random.Random(ctx.seed)
    n = int(p["n_prompts"])
    yys = [valid_yy[i % len(valid_yy)] for i in rng.sample(range(10 * n), n)]
    rows, bad = [], []
    for yy in yys:
        noun = rng.choice(nouns)
        stem = f"The {noun} lasted from the year {cent}"
        rows.append([tok.bos_id] + tok.encode(f"{stem}{yy:02d} to the year {cent}"))
        bad.append([tok.bos_id] + tok.encode(f"{stem}01 to the year {cent}"))
    clean, corrupted = stack_prompts(rows), stack_prompts(bad)
    yy_t = torch.tensor(yys)
    above = torch.arange(100)[None, :] > yy_t[:, None]  # [batch, 100]

    def prob_diff(logits: torch.Tensor) -> torch.Tensor:
        probs = logits[:, -1].softmax(-1)[:, year_ids]
        return (probs * above).sum(-1) - (probs * ~above).sum(-1)

    pairs = PromptPairs(clean, corrupted, prob_diff)
    # YY is the token right after " 17" in "from the year 17YY".
    yy_pos = len([tok.bos_id] + tok.encode(f"The {nouns[0]} lasted from the year {cent}"))
    ctx.metric("flags", {**FLAGS, "metric": "probability difference (years > YY minus <= YY)",
                         "corruption": "start year XX01 (the paper's 01-dataset)",
                         "scores": "signed"})
    ctx.metric("n_prompts", n)
    pd_clean, pd_corrupt, clean_cache, _ = clean_and_corrupted(model, pairs)
    ctx.metric("prob_diff_clean", pd_clean)
    ctx.metric("prob_diff_corrupted", pd_corrupt)
    ctx.log(f"probability difference {pd_clean:.3f} (01-corrupted {pd_corrupt:.3f})")

    heads = patch_heads(model, pairs, pd_clean, pd_corrupt, clean_cache)
    mlps = patch_mlps(model, pairs, pd_clean, pd_corrupt, clean_cache)
    ctx.save_figure(heatmap(heads, "Greater-than: head output patching (01 -> clean)",
                            "recovered probability difference"), "head_patching",
                    "Fraction of the clean probability difference recovered when one head's "
                    "clean output is patched into the 01-corrupted run.")
    found_heads = top_heads(heads, int(p["top_k_heads"]), float(p["threshold"]))
    found_mlps = top_layers(mlps, int(p["top_k_mlps"]), float(p["threshold"]))
    ctx.metric("discovered_components", {"year-mover attention head": found_heads,
                                         "greater-than MLP": found_mlps})
    ctx.metric("head_patching", heads)
    ctx.metric("mlp_patching", mlps)
    ctx.metric("attention_end_to_yy_discovered", {
        h: attention_to(clean_cache, parse_head(h), -1, yy_pos) for h in found_heads})
    ctx.metric("mlp_patching_top", max(mlps.tolist()))

    if ctx.model_id == "gpt2-small":
        ph = [parse_head(h) for h in PAPER_HEADS]
        ctx.metric("paper_heads_patching", scores_at(heads, ph))
        ctx.metric("paper_heads_attention_end_to_yy",
                   {h: attention_to(clean_cache, parse_head(h), -1, yy_pos)
                    for h in heads_in(model, PAPER_HEADS)})
        ctx.metric("paper_mlps_patching", {str(m): float(mlps[m]) for m in PAPER_MLPS})
        ctx.metric("paper_mlps_patching_sum", float(mlps[PAPER_MLPS].sum()))
        ctx.metric("paper_heads_recovered_by_discovery",
                   len(set(found_heads) & set(PAPER_HEADS)) / len(PAPER_HEADS))
