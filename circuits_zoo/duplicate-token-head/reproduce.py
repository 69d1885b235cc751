"""Hand-built duplicate-token head (a method check: the weights are written, not learned).

Builds the one-head model of mikb.lm.duplicate_head, finds its duplicate-token head by the
usual score (attention from a token's repeat to its earlier occurrence), and measures what the
construction promises: attention to the duplicate when there is one, rest on BOS when there
is none, no attention to the current position, and how the inverse temperature needed for a
sharp head grows with the vocabulary (the circle's nearest-rival margin shrinks like 1/V**2).
"""

from __future__ import annotations

import math

import torch

from mikb.lm.duplicate_head import BOS, DuplicateHeadSpec, build_duplicate_head, ground_truth
from mikb.reproduce import ReproContext, ScriptSpec

SPEC = ScriptSpec(
    models=("hand-built-dup-head",),
    params={"vocab": 64, "beta": 2000.0, "n_ctx": 16, "prompts": 256,
            "sweep_vocabs": [8, 16, 32, 64, 128, 256, 512], "target": 0.9},
    quick_params={"prompts": 64, "sweep_vocabs": [8, 32, 128]},
    timeout_s=600,
    description="A duplicate-token head written by hand; attention to duplicates, rest on BOS, sharpness vs vocabulary.",
)


def prompts(vocab: int, n_ctx: int, count: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """BOS then distinct random tokens, with the last one repeating an earlier one in half the
    prompts; returns the tokens and the earlier position (-1 where the last token is new)."""
    rows, where = [], []
    length = min(n_ctx - 1, vocab)  # distinct tokens: a small vocabulary gives shorter prompts
    for i in range(count):
        body = torch.randperm(vocab, generator=gen)[:length] + 1
        if i % 2 == 0:
            earlier = int(torch.randint(0, length - 1, (1,), generator=gen))
            body[-1] = body[earlier]
            where.append(earlier + 1)
        else:
            where.append(-1)
        rows.append(torch.cat([torch.tensor([BOS]), body]))
    return torch.stack(rows), torch.tensor(where)


def last_position_attention(model, tokens: torch.Tensor) -> torch.Tensor:
    store = {}

    def keep(pattern, hook):  # noqa: ARG001 - the hook API passes the hook
        store["pattern"] = pattern.detach()

    with torch.no_grad(), model.hooks(fwd_hooks=[("blocks.0.attn.hook_pattern", keep)]):
        model(tokens)
    return store["pattern"][:, 0]  # [batch, query, key]


def duplicate_attention(vocab: int, beta: float, n_ctx: int, count: int, seed: int) -> dict[str, float]:
    model = build_duplicate_head(DuplicateHeadSpec(vocab=vocab, n_ctx=n_ctx, beta=beta))
    tokens, earlier = prompts(vocab, n_ctx, count, torch.Generator().manual_seed(seed))
    pattern = last_position_attention(model, tokens)
    last = pattern[:, -1]
    has_dup = earlier >= 0
    to_dup = last[has_dup].gather(1, earlier[has_dup, None]).squeeze(1)
    return {"duplicate": to_dup.mean().item(), "bos_without_duplicate": last[~has_dup, 0].mean().item(),
            "self": pattern.diagonal(dim1=1, dim2=2)[:, 1:].max().item()}


def beta_needed(vocab: int, target: float, n_ctx: int, count: int, seed: int) -> float:
    """Smallest inverse temperature (to 2%) whose mean duplicate attention reaches ``target``."""
    low, high = 1.0, 1.0
    while duplicate_attention(vocab, high, n_ctx, count, seed)["duplicate"] < target:
        low, high = high, high * 2
    while high / low > 1.02:
        mid = math.sqrt(low * high)
        low, high = (mid, high) if duplicate_attention(vocab, mid, n_ctx, count, seed)["duplicate"] < target else (low, mid)
    return high


def run(ctx: ReproContext) -> None:
    p = ctx.params
    ctx.set_weights_source("hand-built: every weight set by mikb.lm.duplicate_head (no training)")
    main = duplicate_attention(p["vocab"], p["beta"], p["n_ctx"], p["prompts"], ctx.seed)
    ctx.metric("duplicate_attention", main["duplicate"])
    ctx.metric("bos_attention_without_duplicate", main["bos_without_duplicate"])
    ctx.metric("max_self_attention", main["self"])
    # Discovery by the standard duplicate-token score, as on any model.
    score = main["duplicate"]
    ctx.metric("duplicate_token_score_0.0", score)
    ctx.metric("discovered_components", {"duplicate-token": ["0.0"] if score > 0.5 else []})
    ctx.metric("ground_truth_components", ground_truth())

    vocabs = p["sweep_vocabs"]
    at_fixed = [duplicate_attention(v, p["beta"], p["n_ctx"], p["prompts"], ctx.seed)["duplicate"] for v in vocabs]
    needed = [beta_needed(v, p["target"], p["n_ctx"], p["prompts"], ctx.seed) for v in ctx.progress(vocabs, desc="vocab sweep")]
    slope = _log_log_slope(vocabs[len(vocabs) // 2:], needed[len(vocabs) // 2:])
    ctx.metric("sweep_vocabs", vocabs)
    ctx.metric("duplicate_attention_at_fixed_beta", at_fixed)
    ctx.metric("beta_needed", needed)
    ctx.metric("beta_needed_slope", slope)
    ctx.note(f"At inverse temperature {p['beta']:g}, attention to the duplicate falls from {at_fixed[0]:.3f} "
             f"(V={vocabs[0]}) to {at_fixed[-1]:.3f} (V={vocabs[-1]}); the temperature needed for {p['target']:.0%} "
             f"grows like V^{slope:.2f} over the larger vocabularies.")
    _figure(ctx, vocabs, at_fixed, needed, p)


def _log_log_slope(xs: list[float], ys: list[float]) -> float:
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum((a - mx) ** 2 for a in lx)


def _figure(ctx: ReproContext, vocabs, at_fixed, needed, p) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2), constrained_layout=True)
    left.plot(vocabs, at_fixed, "o-")
    left.set_xscale("log", base=2)
    left.set_ylim(0, 1.02)
    left.set_xlabel("vocabulary size V")
    left.set_ylabel("attention to the duplicate")
    left.set_title(f"fixed inverse temperature {p['beta']:g}")
    right.loglog(vocabs, needed, "o-", base=2)
    right.set_xlabel("vocabulary size V")
    right.set_ylabel(f"inverse temperature for {p['target']:.0%}")
    right.set_title("sharpness costs ~V² in temperature")
    ctx.save_figure(fig, "sharpness_vs_vocab", caption="Hand-built duplicate-token head: attention to the duplicate at a "
                    "fixed inverse temperature (left) and the inverse temperature needed for 90% (right), by vocabulary size.")
    plt.close(fig)
