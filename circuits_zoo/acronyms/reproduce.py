"""Reproduce the acronym circuit of GPT-2 small (garciacarrasco2024acronyms).

Prompts "The W1 W2 W3 (L1L2" where each word is one capitalised token and the acronym letters
are single-letter tokens; at the last three positions the model should predict L1, L2 and L3.
The metric is the paper's: logit of the right capital letter minus the largest logit of any
other capital letter, averaged over the three letters. Heads are discovered by denoising
activation patching against unrelated prompts; discovered heads that attend from the letter
positions to the matching word's capital and write the letter directly are classed as letter
movers. The circuit is evaluated as in the paper, by mean-ablating every head outside it.
"""

from __future__ import annotations

import random

import torch
from mikb.lm.pretrained import load_for
from mikb.methods.hooks import all_heads, head_label, parse_head
from mikb.methods.ioi_common import heatmap
from mikb.methods.prompt_tasks import (
    FLAGS,
    PromptPairs,
    ablate_heads_effect,
    clean_and_corrupted,
    head_dla,
    heads_in,
    patch_heads,
    scores_at,
    stack_prompts,
    top_heads,
)
from mikb.reproduce import ReproContext, ScriptSpec

# The paper's eight heads (released code: evaluation.py circuit_heads; mover_heads.py,
# positional_experiments.py letter_mover_heads; supplementary.py "Fuzzy Previous Heads").
PAPER_HEADS = {"8.11": "letter mover head", "9.9": "letter mover head",
               "10.10": "letter mover head", "11.4": "letter mover head",
               "5.8": "head 5.8", "4.11": "fuzzy previous head",
               "2.2": "fuzzy previous head", "1.0": "fuzzy previous head"}
WORDS = ("Chief Executive Officer National Security Agency Federal Bureau Central Intelligence "
         "United States World Health Organization Public Service General Motors Research "
         "Development Human Resources Air Force Royal Navy Data Science Energy Program Power "
         "System Local Network Open Source Light Vehicle Market Value Young Quality Zone Union "
         "Kingdom Island Journal Oil Bank Food Gold Master Ocean Video Water").split()

SPEC = ScriptSpec(
    models=("gpt2-small",),
    params={"n_prompts": 64, "top_k_heads": 8, "threshold": 0.03},
    quick_params={"n_prompts": 4},
    description="Acronyms: three-letter acronym prediction; head patching and circuit ablation.",
)


def make_prompts(tok, n: int, seed: int):
    rng = random.Random(seed)
    words = [w for w in WORDS if tok.single(f" {w}") is not None and tok.single(w[0])]
    letters = sorted({w[0] for w in words})
    rows, answers = [], []
    for _ in range(n):
        ws = rng.sample(words, 3)
        ls = [tok.single(w[0]) for w in ws]
        rows.append([tok.bos_id] + tok.encode("The " + " ".join(ws) + " (") + ls[:2])
        answers.append(ls)
    cap_ids = torch.tensor([tok.single(c) for c in letters])
    return stack_prompts(rows), torch.tensor(answers), cap_ids


def run(ctx: ReproContext) -> None:
    lm = load_for(ctx)
    model, p = lm.model, ctx.params
    n = int(p["n_prompts"])
    clean, answers, caps = make_prompts(lm.tok, n, ctx.seed)
    corrupted, _, _ = make_prompts(lm.tok, n, ctx.seed + 1)

    def metric(logits: torch.Tensor) -> torch.Tensor:
        last3 = logits[:, -3:]  # predicts L1, L2, L3
        right = last3.gather(-1, answers[..., None]).squeeze(-1)
        others = last3[..., caps].masked_fill(caps[None, None] == answers[..., None], -1e9)
        return (right - others.max(-1).values).mean(-1)

    pairs = PromptPairs(clean, corrupted, metric)
    ctx.metric("flags", {**FLAGS, "metric": "logit(right capital) - max logit(other capitals), "
                         "mean over the three letters", "corruption": "unrelated acronym prompts",
                         "ablation": "mean over the corrupted prompts", "scores": "signed"})
    ctx.metric("n_prompts", n)
    m_clean, m_corrupt, cache, _ = clean_and_corrupted(model, pairs)
    ctx.metric("logit_diff_clean", m_clean)
    ctx.metric("logit_diff_corrupted", m_corrupt)

    heads = patch_heads(model, pairs, m_clean, m_corrupt, cache)
    # Direct effect on the third letter (last position): right letter minus mean capital.
    dirs = model.W_U[:, answers[:, 2]].T - model.W_U[:, caps].mean(-1)[None]
    dla = head_dla(model, cache, dirs)
    found = top_heads(heads, int(p["top_k_heads"]), float(p["threshold"]))
    # Letter movers: attend from the last position to the capital-letter word W3 and write it.
    w3 = clean.shape[1] - 4  # ... W3 ( L1 L2
    movers = [h for h in found if dla[parse_head(h)] > 0 and
              cache[f"blocks.{parse_head(h)[0]}.attn.hook_pattern"][:, parse_head(h)[1], -1, w3]
              .mean() > 0.1]
    ctx.metric("discovered_components", {"letter mover head": movers,
                                         "other circuit head": [h for h in found if h not in movers]})
    ctx.metric("head_patching", heads)
    ctx.metric("head_dla_third_letter", dla)
    ctx.save_figure(heatmap(heads, "Acronyms: head output patching", "recovered logit diff"),
                    "head_patching", "Fraction of the clean logit difference recovered when one "
                    "head's clean output is patched into a run on an unrelated acronym prompt.")

    def circuit_only(circuit: list[str]) -> float:
        keep = {parse_head(h) for h in circuit}
        ablated, _ = ablate_heads_effect(model, pairs, corrupted,
                                         [v for v in all_heads(model) if v not in keep])
        return ablated

    ctx.metric("discovered_circuit_only_logit_diff", circuit_only(found))
    if ctx.model_id == "gpt2-small":
        labels = heads_in(model, list(PAPER_HEADS))
        ph = [parse_head(h) for h in labels]
        ctx.metric("paper_heads_patching", scores_at(heads, ph))
        ctx.metric("paper_heads_dla_third_letter", scores_at(dla, ph))
        ctx.metric("paper_circuit_only_logit_diff", circuit_only(labels))
        ctx.metric("paper_circuit_only_fraction", circuit_only(labels) / (m_clean or 1e-9))
        ctx.metric("paper_heads_recovered_by_discovery",
                   len(set(found) & set(labels)) / max(1, len(labels)))
        ctx.metric("paper_movers_attention_to_w3", {
            head_label(v): cache[f"blocks.{v[0]}.attn.hook_pattern"][:, v[1], -1, w3].mean().item()
            for v in ph if PAPER_HEADS[head_label(v)] == "letter mover head"})
