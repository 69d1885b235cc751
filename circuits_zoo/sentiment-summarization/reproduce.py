"""Reproduce the simple sentiment circuit of GPT-2 small and the summarization motif
(tigges2023sentiment).

Prompts "I thought this movie was ADJ, I VRB it. \nConclusion: This movie is" (the authors'
simple template) with a positive adjective and verb; the corrupted prompt swaps in negative ones.
The metric is the positive answers' logits minus the negative ones'. Heads are discovered by
denoising activation patching; discovered heads at the final position that write the answer
directly and attend to the adjective are classed as direct attribute extraction heads. The
summarization motif is measured by patching the clean residual stream at one position at a time
(adjective, verb, the comma and full stop that carry no sentiment of their own): a large effect
at the punctuation means sentiment has been summarised there.
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
    batched_patching,
    clean_and_corrupted,
    head_dla,
    heads_in,
    patch_heads,
    scores_at,
    stack_prompts,
    top_heads,
)
from mikb.reproduce import ReproContext, ScriptSpec

# Heads of the authors' notes for this template (circuit.md; the same lists as DAE_HEADS and
# IAE_HEADS in circuit_analysis_simple_sentiment_gpt2_small.py). 7.1 is in both groups.
PAPER_HEADS = {"7.1": "direct attribute extraction head", "10.1": "direct attribute extraction head",
               "10.4": "direct attribute extraction head", "11.9": "direct attribute extraction head",
               "8.5": "intermediate attribute extraction head",
               "9.2": "intermediate attribute extraction head",
               "9.10": "intermediate attribute extraction head"}
POS_ADJ = "great amazing wonderful excellent fantastic perfect brilliant good".split()
NEG_ADJ = "terrible awful horrible bad dreadful boring poor weak".split()
POS_VRB = "loved enjoyed liked adored".split()
NEG_VRB = "hated disliked despised loathed".split()
ANSWERS = [("good", "bad"), ("great", "terrible")]

SPEC = ScriptSpec(
    models=("gpt2-small",),
    params={"n_prompts": 64, "top_k_heads": 8, "threshold": 0.02},
    quick_params={"n_prompts": 4},
    description="Sentiment: head patching and per-position residual patching (summarization).",
)


def _prompt(adj: str, vrb: str) -> str:
    return f"I thought this movie was {adj}, I {vrb} it. \nConclusion: This movie is"


def run(ctx: ReproContext) -> None:
    lm = load_for(ctx)
    model, tok, p = lm.model, lm.tok, ctx.params
    rng = random.Random(ctx.seed)

    def ok(words):
        return [w for w in words if tok.single(f" {w}") is not None]

    pa, na, pv, nv = ok(POS_ADJ), ok(NEG_ADJ), ok(POS_VRB), ok(NEG_VRB)
    rows, bad = [], []
    for _ in range(int(p["n_prompts"])):
        rows.append([tok.bos_id] + tok.encode(_prompt(rng.choice(pa), rng.choice(pv))))
        bad.append([tok.bos_id] + tok.encode(_prompt(rng.choice(na), rng.choice(nv))))
    clean, corrupted = stack_prompts(rows), stack_prompts(bad)
    pos_ids = torch.tensor([tok.single(f" {a}") for a, _ in ANSWERS])
    neg_ids = torch.tensor([tok.single(f" {b}") for _, b in ANSWERS])

    def metric(logits: torch.Tensor) -> torch.Tensor:
        last = logits[:, -1]
        return (last[:, pos_ids] - last[:, neg_ids]).mean(-1)

    pairs = PromptPairs(clean, corrupted, metric)
    ctx.metric("flags", {**FLAGS, "metric": "mean logit(positive answer) - logit(negative answer)",
                         "corruption": "negative adjective and verb", "scores": "signed"})
    ctx.metric("n_prompts", int(clean.shape[0]))
    m_clean, m_corrupt, cache, _ = clean_and_corrupted(model, pairs)
    ctx.metric("logit_diff_clean", m_clean)
    ctx.metric("logit_diff_corrupted", m_corrupt)

    # Positions in "<bos> I thought this movie was ADJ , I VRB it . \nConclusion: ..."
    stem = [tok.bos_id] + tok.encode("I thought this movie was")
    adj, comma = len(stem), len(stem) + 1
    vrb = len(stem) + 3
    stop = vrb + 2
    heads = patch_heads(model, pairs, m_clean, m_corrupt, cache)
    dirs = (model.W_U[:, pos_ids] - model.W_U[:, neg_ids]).mean(-1)[None].expand(clean.shape[0], -1)
    dla = head_dla(model, cache, dirs)
    found = top_heads(heads, int(p["top_k_heads"]), float(p["threshold"]))
    dae = [h for h in found if dla[parse_head(h)] > 0 and
           attention_to(cache, parse_head(h), -1, adj) > 0.1]
    ctx.metric("discovered_components", {"direct attribute extraction head": dae,
                                         "intermediate head": [h for h in found if h not in dae]})
    ctx.metric("head_patching", heads)
    ctx.metric("head_dla", dla)
    ctx.save_figure(heatmap(heads, "Sentiment: head output patching", "recovered logit diff"),
                    "head_patching", "Fraction of the positive-minus-negative answer logit "
                    "difference recovered when one head's clean output is patched into the "
                    "negative run.")

    def at(pos: int):
        def fn(act: torch.Tensor, clean_act: torch.Tensor) -> torch.Tensor:
            act[:, pos] = clean_act[:, pos]
            return act
        return fn

    span = (m_clean - m_corrupt) or 1e-9
    positions = {"adjective": adj, "comma": comma, "verb": vrb, "full_stop": stop}
    by_pos = {}
    for name, pos in positions.items():
        patches = [(f"blocks.{la}.hook_resid_pre", at(pos)) for la in range(model.cfg.n_layers)]
        by_pos[name] = ((batched_patching(model, pairs, cache, patches) - m_corrupt) / span).tolist()
    ctx.metric("resid_patching_by_position", by_pos)
    # Summarization: late-layer patching at punctuation recovers sentiment the adjective no longer
    # carries there (the last third of the layers).
    late = range(2 * model.cfg.n_layers // 3, model.cfg.n_layers)
    ctx.metric("late_resid_patching_comma", max(by_pos["comma"][la] for la in late))
    ctx.metric("late_resid_patching_adjective", max(by_pos["adjective"][la] for la in late))
    if ctx.model_id == "gpt2-small":
        labels = heads_in(model, list(PAPER_HEADS))
        ph = [parse_head(h) for h in labels]
        ctx.metric("paper_heads_patching", scores_at(heads, ph))
        ctx.metric("paper_heads_dla", scores_at(dla, ph))
        ctx.metric("paper_dae_attention_to_adjective", {
            h: attention_to(cache, parse_head(h), -1, adj) for h in labels
            if PAPER_HEADS[h] == "direct attribute extraction head"})
