"""Reproduce the subject-verb agreement circuit of GPT-2 small (africa2025verbconjugation).

Clean prompts have a plural subject, "Alice and Bob", corrupted ones the same names joined into
a singular subject, "Alice with Bob"; the metric is the logit of the plural verb form minus the
singular one ("walk" minus "walks"), averaged over several verbs. Heads are discovered by
denoising activation patching; on gpt2-small the paper's base-setting circuit is scored, and
evaluated by mean-ablating every head outside it.
"""

from __future__ import annotations

import random

import torch
from mikb.lm.pretrained import load_for
from mikb.methods.hooks import all_heads, parse_head
from mikb.methods.ioi_common import heatmap
from mikb.methods.prompt_tasks import (
    FLAGS,
    PromptPairs,
    ablate_heads_effect,
    clean_and_corrupted,
    heads_in,
    patch_heads,
    scores_at,
    stack_prompts,
    top_heads,
)
from mikb.reproduce import ReproContext, ScriptSpec

# The base-setting circuit in the author's released code (head_categorization.py,
# circuit_accuracy_results_per_setting.csv).
PAPER_HEADS = ["11.6", "0.4", "11.4", "0.8", "11.7", "2.6", "1.0", "2.1", "1.1", "6.0", "10.0",
               "9.4"]
NAMES = ("Alice Bob Charlie Dana Eve Frank Grace Jack Leo Mia Nina Oscar Paul Rose Sam "
         "Tina").split()
VERBS = [("walk", "walks"), ("run", "runs"), ("talk", "talks"), ("jump", "jumps"),
         ("sleep", "sleeps"), ("write", "writes"), ("read", "reads"), ("sing", "sings")]

SPEC = ScriptSpec(
    models=("gpt2-small",),
    params={"n_prompts": 64, "top_k_heads": 12, "threshold": 0.02},
    quick_params={"n_prompts": 4},
    description="Subject-verb agreement: plural vs singular subject; head patching, ablation.",
)


def run(ctx: ReproContext) -> None:
    lm = load_for(ctx)
    model, tok, p = lm.model, lm.tok, ctx.params
    rng = random.Random(ctx.seed)
    names = [n for n in NAMES if tok.single(f" {n}") is not None and tok.single(n) is not None]
    verbs = [(pl, sg) for pl, sg in VERBS
             if tok.single(f" {pl}") is not None and tok.single(f" {sg}") is not None]
    plural_ids = torch.tensor([tok.single(f" {pl}") for pl, _ in verbs])
    singular_ids = torch.tensor([tok.single(f" {sg}") for _, sg in verbs])
    rows, bad = [], []
    for _ in range(int(p["n_prompts"])):
        a, b = rng.sample(names, 2)
        rows.append([tok.bos_id] + tok.encode(f"{a} and {b}"))
        bad.append([tok.bos_id] + tok.encode(f"{a} with {b}"))
    clean, corrupted = stack_prompts(rows), stack_prompts(bad)

    def metric(logits: torch.Tensor) -> torch.Tensor:
        last = logits[:, -1]
        return (last[:, plural_ids] - last[:, singular_ids]).mean(-1)

    pairs = PromptPairs(clean, corrupted, metric)
    ctx.metric("flags", {**FLAGS, "metric": "logit(plural verb) - logit(singular verb), mean over "
                         "verbs", "corruption": "'A and B' -> 'A with B' (singular subject)",
                         "ablation": "mean over the corrupted prompts", "scores": "signed"})
    ctx.metric("n_prompts", int(clean.shape[0]))
    m_clean, m_corrupt, cache, _ = clean_and_corrupted(model, pairs)
    ctx.metric("logit_diff_clean", m_clean)
    ctx.metric("logit_diff_corrupted", m_corrupt)
    heads = patch_heads(model, pairs, m_clean, m_corrupt, cache)
    found = top_heads(heads, int(p["top_k_heads"]), float(p["threshold"]))
    ctx.metric("head_patching", heads)
    ctx.metric("discovered_components", {"agreement circuit head": found})
    ctx.save_figure(heatmap(heads, "Verb agreement: head output patching", "recovered logit diff"),
                    "head_patching", "Fraction of the plural-minus-singular verb logit difference "
                    "recovered when one head's clean output is patched into the singular run.")

    def circuit_only(circuit: list[str]) -> float:
        keep = {parse_head(h) for h in circuit}
        ablated, _ = ablate_heads_effect(model, pairs, corrupted,
                                         [v for v in all_heads(model) if v not in keep])
        return ablated

    ctx.metric("discovered_circuit_only_logit_diff", circuit_only(found))
    if ctx.model_id == "gpt2-small":
        labels = heads_in(model, PAPER_HEADS)
        ctx.metric("paper_heads_patching", scores_at(heads, [parse_head(h) for h in labels]))
        only = circuit_only(labels)
        ctx.metric("paper_circuit_only_logit_diff", only)
        ctx.metric("paper_circuit_only_fraction", only / (m_clean or 1e-9))
        ctx.metric("paper_heads_recovered_by_discovery",
                   len(set(found) & set(labels)) / max(1, len(labels)))
