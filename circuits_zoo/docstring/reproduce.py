"""Reproduce the docstring circuit of the 4-layer attention-only model (heimersheim2023docstring).

Prompts are Python methods whose docstring lists the first two arguments with ":param"; the
model should complete the third ":param" with the remaining argument name. The corruption
replaces the argument names in the signature (the docstring is unchanged), so the answer cannot
be read off the definition. The metric is logit(correct argument) minus the largest logit of
the other arguments. Heads are discovered by denoising activation patching; a discovered head
that also writes the answer directly (positive direct logit attribution) is classed as an
argument mover, the others as upstream heads. On attn-only-4l the heads of the authors' manual
circuit are scored as well.
"""

from __future__ import annotations

import random
from collections import Counter

import torch
from mikb.lm.pretrained import load_for
from mikb.methods.hooks import parse_head
from mikb.methods.ioi_common import heatmap
from mikb.methods.prompt_tasks import (
    FLAGS,
    PromptPairs,
    attention_to,
    clean_and_corrupted,
    head_dla,
    heads_in,
    patch_heads,
    scores_at,
    stack_prompts,
    top_heads,
)
from mikb.reproduce import ReproContext, ScriptSpec

# The manual circuit (ACDC's docstring ground truth, "the manual graph, from Stefan").
PAPER_HEADS = {"0.5": "upstream", "1.2": "upstream", "1.4": "upstream", "2.0": "upstream",
               "3.0": "argument mover", "3.6": "argument mover"}
ARG_NAMES = ("data name file value test result line user key request path output node item url "
             "model response text version function log string field start number values index "
             "error context image message state row config options group content client results "
             "command format color order count match tag title parent session token server host "
             "date description mode project page header option task shape load names port root").split()
WORDS = ("price control action cost issue process position course type research subject force "
         "order value matter health street class mind paper bank section table building sense "
         "team plan product practice evidence ground letter game food union role event land art "
         "support range stage trade voice field history account material care record example "
         "window light quality rule story tax model nature method unit detail").split()

SPEC = ScriptSpec(
    models=("attn-only-4l",),
    params={"n_prompts": 64, "top_k_heads": 8, "threshold": 0.05},
    quick_params={"n_prompts": 4},
    description="Docstring: argument completion in a 4-layer attention-only model; head patching.",
)


def _prompt(met: str, args: list[str], doc_args: list[str], desc: list[str],
            arg_desc: list[list[str]]) -> str:
    lines = [f"def {met}(self, {', '.join(args)}):", f'    """{" ".join(desc)}', ""]
    lines += [f"    :param {a}: {' '.join(d)}" for a, d in zip(doc_args, arg_desc, strict=True)]
    return "\n".join(lines) + "\n    :param"


def make_prompts(tok, n: int, seed: int):
    """(clean rows, corrupted rows, answer ids, wrong ids [n, 2], C_def position)."""
    rng = random.Random(seed)
    names = [w for w in ARG_NAMES if tok.single(f" {w}") is not None]
    words = [w for w in WORDS if tok.single(f" {w}") is not None]
    cands = []
    for _ in range(6 * n):
        met, *args = rng.sample(names, 4)
        other = rng.sample([w for w in names if w not in args and w != met], 3)
        desc = rng.sample(words, 3)
        arg_desc = [rng.sample(words, 2) for _ in range(2)]
        clean = [tok.bos_id] + tok.encode(_prompt(met, args, args[:2], desc, arg_desc))
        corr = [tok.bos_id] + tok.encode(_prompt(met, other, args[:2], desc, arg_desc))
        ids = [tok.single(f" {a}") for a in args]
        cands.append((clean, corr, ids))
    length = Counter(len(c) for c, x, _ in cands if len(c) == len(x)).most_common(1)[0][0]
    kept = [c for c in cands if len(c[0]) == len(c[1]) == length][:n]
    c_def = [i for i, t in enumerate(kept[0][0]) if t == kept[0][2][2]][0]
    return (stack_prompts([k[0] for k in kept]), stack_prompts([k[1] for k in kept]),
            torch.tensor([k[2][2] for k in kept]), torch.tensor([k[2][:2] for k in kept]), c_def)


def run(ctx: ReproContext) -> None:
    lm = load_for(ctx)
    model, p = lm.model, ctx.params
    clean, corrupted, answer, wrong, c_def = make_prompts(lm.tok, int(p["n_prompts"]), ctx.seed)

    def metric(logits: torch.Tensor) -> torch.Tensor:
        last = logits[:, -1]
        b = torch.arange(last.shape[0])
        return last[b, answer] - last[b[:, None], wrong].max(-1).values

    pairs = PromptPairs(clean, corrupted, metric)
    ctx.metric("flags", {**FLAGS, "metric": "logit(correct arg) - max logit(other def args)",
                         "corruption": "signature argument names replaced (docstring unchanged)",
                         "scores": "signed"})
    ctx.metric("n_prompts", int(clean.shape[0]))
    m_clean, m_corrupt, cache, _ = clean_and_corrupted(model, pairs)
    ctx.metric("logit_diff_clean", m_clean)
    ctx.metric("logit_diff_corrupted", m_corrupt)
    with torch.no_grad():
        top1 = model(clean)[:, -1].argmax(-1)
    ctx.metric("top1_accuracy", (top1 == answer).float().mean().item())

    heads = patch_heads(model, pairs, m_clean, m_corrupt, cache)
    dirs = model.W_U[:, answer].T - model.W_U[:, wrong].mean(-1).T
    dla = head_dla(model, cache, dirs)
    ctx.save_figure(heatmap(heads, "Docstring: head output patching", "recovered logit diff"),
                    "head_patching", "Fraction of the clean logit difference recovered when "
                    "one head's clean output is patched into the corrupted-signature run.")
    found = top_heads(heads, int(p["top_k_heads"]), float(p["threshold"]))
    movers = [h for h in found if dla[parse_head(h)] > 0 and
              attention_to(cache, parse_head(h), -1, c_def) > 0.1]
    ctx.metric("discovered_components", {
        "argument mover": movers, "upstream head": [h for h in found if h not in movers]})
    ctx.metric("head_patching", heads)
    ctx.metric("head_dla", dla)

    if ctx.model_id == "attn-only-4l":
        labels = heads_in(model, list(PAPER_HEADS))
        ph = [parse_head(h) for h in labels]
        ctx.metric("paper_heads_patching", scores_at(heads, ph))
        ctx.metric("paper_heads_dla", scores_at(dla, ph))
        movers_paper = [h for h in labels if PAPER_HEADS[h] == "argument mover"]
        ctx.metric("paper_movers_attention_to_c_def",
                   {h: attention_to(cache, parse_head(h), -1, c_def) for h in movers_paper})
        ctx.metric("paper_heads_recovered_by_discovery",
                   len(set(found) & set(labels)) / max(1, len(labels)))
