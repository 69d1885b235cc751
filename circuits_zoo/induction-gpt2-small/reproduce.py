"""Find the induction circuit of GPT-2 small on repeated random tokens.

Sequences [BOS, x_1..x_L, x_1..x_L] of random tokens: in the second copy only in-context
copying can predict the next token. Every head gets a previous-token score (attention to the
position before) and an induction score (attention from x_i in the second copy to the token
after x_i's first occurrence); heads above the thresholds are the discovered previous-token
and induction heads. Mean-ablating the discovered induction heads should raise the loss on the
second copy. On gpt2-small the induction and previous-token heads of the IOI paper are scored
as well.
"""

from __future__ import annotations

import torch
from mikb.lm.pretrained import load_for
from mikb.methods.ablation import head_means, run_ablated
from mikb.methods.hooks import all_heads, head_label, parse_head
from mikb.methods.induction import diagonal_scores, half_losses, repeated_tokens
from mikb.methods.ioi_common import heatmap
from mikb.methods.prompt_tasks import heads_in, scores_at
from mikb.reproduce import ReproContext, ScriptSpec

# wang2022ioi's induction and previous-token heads (the IOI circuit's classes).
PAPER_HEADS = {"5.5": "induction head", "5.8": "induction head", "5.9": "induction head",
               "6.9": "induction head", "2.2": "previous token head", "4.11": "previous token head"}

SPEC = ScriptSpec(
    models=("gpt2-small",),
    params={"n_seqs": 32, "half": 40, "induction_threshold": 0.4, "prev_threshold": 0.4},
    quick_params={"n_seqs": 4, "half": 12},
    description="Induction heads in GPT-2 small: attention scores on repeated random tokens.",
)


def run(ctx: ReproContext) -> None:
    lm = load_for(ctx)
    model, p = lm.model, ctx.params
    half = int(p["half"])
    gen = torch.Generator().manual_seed(ctx.seed)
    # Random ids from the ordinary-word range, clear of special tokens.
    tokens = repeated_tokens(int(p["n_seqs"]), half, 20000, gen, bos=lm.tok.bos_id)
    reference = repeated_tokens(int(p["n_seqs"]), half, 20000, gen, bos=lm.tok.bos_id)
    with torch.no_grad():
        logits, cache = model.run_with_cache(
            tokens, names_filter=lambda n: n.endswith("attn.hook_pattern"))
    n_l, n_h = model.cfg.n_layers, model.cfg.n_heads
    ind = torch.zeros(n_l, n_h)
    prev = torch.zeros(n_l, n_h)
    for la in range(n_l):
        pattern = cache[f"blocks.{la}.attn.hook_pattern"]
        ind[la] = diagonal_scores(pattern, half - 1, half + 1)
        prev[la] = diagonal_scores(pattern, 1, 1)
    first, second = half_losses(logits, tokens, half)
    ctx.metric("flags", {"induction_score": "attention from x_i (second copy) to x_{i+1} (first copy)",
                         "previous_token_score": "attention to the previous position",
                         "ablation": "mean over other repeated random sequences, per position",
                         "scores": "signed"})
    ctx.metric("loss_first_copy", first)
    ctx.metric("loss_second_copy", second)
    ctx.metric("induction_scores", ind)
    ctx.metric("previous_token_scores", prev)

    def above(scores: torch.Tensor, threshold: float) -> list[str]:
        order = sorted(((scores[v].item(), head_label(v)) for v in all_heads(model)), reverse=True)
        return [lab for s, lab in order if s >= threshold]

    found_ind = above(ind, float(p["induction_threshold"]))
    found_prev = above(prev, float(p["prev_threshold"]))
    ctx.metric("discovered_components", {"induction head": found_ind,
                                         "previous token head": found_prev})
    means = head_means(model, reference)

    def second_copy_loss(heads: list[str]) -> float:
        ablated = run_ablated(model, tokens, means, [parse_head(h) for h in heads])
        return half_losses(ablated, tokens, half)[1]

    ctx.metric("loss_second_copy_discovered_induction_ablated", second_copy_loss(found_ind))
    ctx.save_figure(heatmap(ind, "Induction score on repeated random tokens", "attention"),
                    "induction_scores", "Mean attention from each token of the second copy to "
                    "the token after its first occurrence.")
    if ctx.model_id == "gpt2-small":
        labels = heads_in(model, list(PAPER_HEADS))
        ind_paper = [h for h in labels if PAPER_HEADS[h] == "induction head"]
        prev_paper = [h for h in labels if PAPER_HEADS[h] == "previous token head"]
        ctx.metric("paper_induction_heads_score", scores_at(ind, [parse_head(h) for h in ind_paper]))
        ctx.metric("paper_previous_token_heads_score",
                   scores_at(prev, [parse_head(h) for h in prev_paper]))
        ctx.metric("loss_second_copy_paper_induction_ablated", second_copy_loss(ind_paper))
        ctx.metric("paper_induction_heads_recovered_by_discovery",
                   len(set(found_ind) & set(ind_paper)) / max(1, len(ind_paper)))
