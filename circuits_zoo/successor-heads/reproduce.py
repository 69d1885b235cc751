"""Find successor heads in GPT-2 small (gould2023successor): heads whose OV circuit maps an
ordinal token (a number, day, month or letter) onto the next one.

Weights-only, as in the paper's analysis of the OV circuit: each token's effective embedding
(the residual stream after block 0 on "<bos> token", i.e. including MLP0), normalised as the
head's LayerNorm would, is sent through the head's W_V W_O, normalised again and unembedded;
the head succeeds on that token if, among the tokens of the same sequence, the successor gets
the highest logit. A head's succession score is its success rate over all sequences. Heads above
a threshold are the discovered successor heads.
"""

from __future__ import annotations

import torch
from mikb.lm.pretrained import load_for
from mikb.methods.hooks import all_heads, head_label
from mikb.methods.ioi_common import heatmap
from mikb.reproduce import ReproContext, ScriptSpec

SEQUENCES = {
    "numbers": [f" {i}" for i in range(1, 31)],
    "number words": " one two three four five six seven eight nine ten".split(" ")[1:],
    "days": [f" {d}" for d in "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()],
    "months": [f" {m}" for m in ("January February March April May June July August September "
                                 "October November December").split()],
    "letters": [f" {c}" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"],
}

# GPT-2 small's successor head as we recall it from the paper (index not checked against the
# paper text; see circuit.yaml notes).
RECALLED_HEAD = (9, 1)

SPEC = ScriptSpec(
    models=("gpt2-small",),
    params={"threshold": 0.5},
    description="Successor heads: OV succession score of every head on ordinal sequences.",
)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    """LayerNorm without affine terms (folded into the weights in compatibility mode)."""
    x = x - x.mean(-1, keepdim=True)
    return x / (x.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt()


@torch.no_grad()
def succession_scores(model, tok) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """[n_layers, n_heads] overall score and the per-sequence scores."""
    seqs = {name: [t for t in (tok.single(w) for w in words) if t is not None]
            for name, words in SEQUENCES.items()}
    seqs = {k: v for k, v in seqs.items() if len(v) >= 3}
    ids = sorted({t for v in seqs.values() for t in v})
    rows = torch.tensor([[tok.bos_id, t] for t in ids])
    _, cache = model.run_with_cache(rows, names_filter=lambda n: n == "blocks.0.hook_resid_post")
    eff = dict(zip(ids, _normalise(cache["blocks.0.hook_resid_post"][:, 1]), strict=True))
    n_l, n_h = model.cfg.n_layers, model.cfg.n_heads
    per_seq = {}
    for name, toks in seqs.items():
        x = torch.stack([eff[t] for t in toks[:-1]])  # [n-1, d_model]
        target = torch.arange(1, len(toks))
        w_u = model.W_U[:, toks]  # [d_model, n]
        score = torch.zeros(n_l, n_h)
        for la, h in all_heads(model):
            attn = model.blocks[la].attn
            out = _normalise(x @ attn.W_V[h] @ attn.W_O[h]) @ w_u
            score[la, h] = (out.argmax(-1) == target).float().mean()
        per_seq[name] = score
    total = sum(len(v) - 1 for v in seqs.values())
    overall = sum(per_seq[k] * (len(seqs[k]) - 1) for k in per_seq) / total
    return overall, per_seq


def run(ctx: ReproContext) -> None:
    lm = load_for(ctx)
    model = lm.model
    overall, per_seq = succession_scores(model, lm.tok)
    ctx.metric("flags", {"score": "top-1 successor among the sequence's tokens, OV circuit of "
                                  "the effective embedding (after block 0)", "scores": "signed"})
    ctx.metric("succession_scores", overall)
    order = sorted(((overall[v].item(), head_label(v)) for v in all_heads(model)), reverse=True)
    found = [lab for s, lab in order if s >= float(ctx.params["threshold"])]
    ctx.metric("discovered_components", {"successor head": found})
    ctx.metric("best_head", order[0][1])
    ctx.metric("best_succession_score", order[0][0])
    ctx.metric("best_head_per_sequence", {
        k: {"head": head_label(divmod(int(v.argmax()), model.cfg.n_heads)), "score": v.max().item()}
        for k, v in per_seq.items()})
    ctx.metric("chance_succession_score", sum(1 / len(s) for s in SEQUENCES.values()) / len(SEQUENCES))
    if ctx.model_id == "gpt2-small" and model.cfg.n_heads > RECALLED_HEAD[1]:
        ctx.metric("recalled_head_succession_score", overall[RECALLED_HEAD].item())
    ctx.save_figure(heatmap(overall, "Succession score (OV circuit, ordinal sequences)", "score"),
                    "succession_scores", "Fraction of ordinal tokens whose successor is the "
                    "top logit (within its sequence) after the head's OV circuit.")
