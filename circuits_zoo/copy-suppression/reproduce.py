"""Reproduce copy suppression (mcdougall2023copysuppression) on IOI prompts.

Discovery first, on every model: a head is a copy-suppression (negative name mover) head when
its OV circuit sends a name's effective embedding to minus that name (negative copy score) and
its direct effect on the IOI logit difference is negative; a name mover when it copies
(positive copy score) with a positive direct effect. Then, for the evaluated heads (the paper's
10.7 and 11.10 on GPT-2 small, the discovered ones elsewhere): the QK side (at END the head
attends to the name earlier layers predict, by logit lens), the effect of mean-ablating them,
and a copy-suppression-preserving ablation (CSPA, the paper's Section 3.3.1, with its OV and QK
halves also alone): how much of the head's direct effect survives when everything but its
copy-suppression part is mean-ablated. The paper's CSPA figure is measured on
OpenWebText; the script measures it there only when that text is available (gpt2-small, full
runs, `owt_dataset`), and on IOI prompts always.
"""

from __future__ import annotations

import torch
from mikb.methods.ablation import FLAGS as ABLATION_FLAGS
from mikb.methods.ablation import head_means
from mikb.methods.copy_suppression import (
    ablation_effect,
    attends_to_predicted,
    cspa_paper,
    cspa_token_summary,
    ov_copy_scores,
)
from mikb.methods.dla import head_dla
from mikb.methods.edge_scores import mib_graph
from mikb.methods.hooks import all_heads, head_label
from mikb.methods.ioi_common import NEG, NM, heatmap, paper_heads_for, record_components, setup
from mikb.reproduce import ReproContext, ScriptSpec

SPEC = ScriptSpec(
    models=("gpt2-small", "planted-ioi"),
    params={"n_prompts": 100, "n_mean_prompts": 100, "top_k": 5, "copy_threshold": 0.5,
            "dla_threshold": 0.05, "cspa_prompts": 50, "cspa_source_frac": 0.05,
            "owt_dataset": "stas/openwebtext-10k", "owt_sequences": 32, "owt_seq_len": 64},
    quick_params={"n_prompts": 8, "n_mean_prompts": 8, "cspa_prompts": 8, "owt_dataset": ""},
    description="Copy suppression: discovered negative heads, OV/QK checks, ablation, CSPA.",
)


def run(ctx: ReproContext) -> None:
    s = setup(ctx)
    model, ds, p = s.model, s.ds, ctx.params
    k = int(p["top_k"])
    paper = paper_heads_for(ctx.model_id)
    ctx.metric("flags", {**ABLATION_FLAGS, "copy_score": f"own name in top-{k} of OV->unembed "
                         f"logits of its effective embedding (negative: bottom-{k})",
                         "scores": "signed",
                         "evaluated_heads": "paper's heads" if paper else "discovered heads"})
    name_ids = torch.tensor(sorted(set(ds.io_ids.tolist()) | set(ds.s_ids.tolist())))
    heads = all_heads(model)
    neg = ov_copy_scores(model, heads, name_ids, k=k, negative=True)
    pos = ov_copy_scores(model, heads, name_ids, k=k)
    dla = head_dla(model, s.clean_cache, ds)
    cut = p["dla_threshold"] * abs(s.ld_clean)
    found_neg = sorted((v for v in heads if neg[v] >= p["copy_threshold"] and dla[v] < -cut),
                       key=lambda v: dla[v].item())
    found_nm = sorted((v for v in heads if pos[v] >= p["copy_threshold"] and dla[v] > cut),
                      key=lambda v: -dla[v].item())
    record_components(ctx, s, {NEG: found_neg, NM: found_nm})
    grid = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for v in heads:
        grid[v] = neg[v]
    ctx.save_figure(heatmap(grid, f"Negative copying score (own name in bottom-{k})", "score"),
                    "negative_copy_scores", "Fraction of names whose own logit is among the "
                    "lowest after passing the name through each head's OV circuit.")
    ev_neg = paper[NEG] if paper else found_neg
    ev_nm = paper[NM] if paper else found_nm
    per_head = {head_label(v): {"neg_copy_score": neg[v], "copy_score": pos[v],
                                "dla": dla[v].item()} for v in sorted(set(ev_neg + ev_nm))}
    ctx.metric("evaluated_head_scores", per_head)
    ctx.metric("neg_copy_score_negative_heads", _mean([neg[v] for v in ev_neg]))
    ctx.metric("copy_score_name_movers", _mean([pos[v] for v in ev_nm]))
    ctx.metric("copy_score_all_heads", _mean(list(pos.values())))

    # QK: attention to the name earlier layers predict.
    fracs = []
    for v in ev_neg:
        att = attends_to_predicted(model, s.clean_cache, ds, *v)
        per_head[head_label(v)].update(att)
        fracs.append(att["attends_to_predicted_frac"])
    ctx.metric("attends_to_predicted_frac", _mean(fracs))

    # Effect of removing the negative heads.
    if ev_neg:
        effect = ablation_effect(model, ds, s.means, ev_neg)
        ctx.metric("ablate_negative_heads_logit_diff_change", effect)
        ctx.metric("ablate_negative_heads_relative_change", effect / s.ld_clean)

    # CSPA of the strongest evaluated negative head (10.7 on GPT-2 small).
    if ev_neg:
        main = ev_neg[0]
        ctx.metric("cspa_head", head_label(main))
        sub = ds.subset(list(range(min(int(p["cspa_prompts"]), len(ds)))))
        res = cspa_paper(model, sub.tokens, s.means, *main, k_frac=float(p["cspa_source_frac"]),
                         per_token=True)
        res.update(cspa_token_summary(res.pop("per_token")))
        for key, val in _cspa_names(res).items():
            ctx.metric(f"cspa_ioi_{key}", val)
        owt = _owt_tokens(ctx, model) if paper and p["owt_dataset"] else None
        if owt is not None:
            ctx.log(f"CSPA on {len(owt)} OpenWebText sequences")
            res = _batched_cspa(model, owt, *main, k_frac=float(p["cspa_source_frac"]))
            for key, val in _cspa_names(res).items():
                ctx.metric(f"cspa_owt_{key}", val)

    edges = [(v, "logits", None, dla[v].item(), v in found_neg + found_nm) for v in heads]
    ctx.save_json("edge_scores.json", mib_graph(
        model.cfg.n_layers, model.cfg.n_heads, edges,
        {"score": "direct logit attribution to logit(IO) - logit(S), signed"},
        attn_only=bool(getattr(model.cfg, "attn_only", False))))


def _mean(vals: list[float]) -> float:
    return sum(vals) / len(vals) if vals else None


def _owt_tokens(ctx: ReproContext, model) -> torch.Tensor | None:
    """OpenWebText sequences (BOS + `owt_seq_len` tokens) if the dataset can be loaded."""
    p = ctx.params
    try:
        from datasets import load_dataset

        data = load_dataset(p["owt_dataset"], split="train")
    except Exception as exc:  # noqa: BLE001 - no dataset means no OWT metric (shown as missing)
        ctx.note(f"OpenWebText ({p['owt_dataset']}) unavailable, CSPA on it not measured: "
                 f"{type(exc).__name__}")
        return None
    tok = model.tokenizer
    n, length = int(p["owt_sequences"]), int(p["owt_seq_len"])
    seqs = []
    for row in data:
        ids = tok.encode(row["text"])[:length]
        if len(ids) == length:
            seqs.append([tok.bos_token_id] + ids)
        if len(seqs) == n:
            break
    return torch.tensor(seqs) if seqs else None


def _cspa_names(res: dict) -> dict:
    """Metric names: CSPA itself as `fraction_explained`, its halves as `ov_only_...`/`qk_only_...`."""
    ren = {"cspa_fraction_explained": "fraction_explained",
           "ov_fraction_explained": "ov_only_fraction_explained",
           "qk_fraction_explained": "qk_only_fraction_explained"}
    return {ren.get(k, k): v for k, v in res.items()}


def _batched_cspa(model, tokens: torch.Tensor, layer: int, head: int, k_frac: float,
                  batch: int = 4) -> dict[str, float]:
    """cspa_paper over batches of `tokens`: the KL divergences are averaged over all sequences
    (equal lengths, so equal weights per position) before the ratios are taken."""
    means = head_means(model, tokens)
    sums: dict[str, float] = {}
    per_token: dict[str, list[torch.Tensor]] = {}
    for i in range(0, len(tokens), batch):
        r = cspa_paper(model, tokens[i:i + batch], means, layer, head, k_frac=k_frac,
                       per_token=True)
        for key, val in r.pop("per_token").items():
            per_token.setdefault(key, []).append(val)
        w = len(tokens[i:i + batch]) / len(tokens)
        for key, val in r.items():
            if key.startswith("kl_") or key == "final_ln_scale_frozen":
                sums[key] = sums.get(key, 0.0) + w * val
    out: dict = dict(sums)
    for name in ("cspa", "ov", "qk"):
        out[f"{name}_fraction_explained"] = (1.0 - sums[f"kl_{name}"] / sums["kl_mean_ablation"]
                                             if sums["kl_mean_ablation"] > 0 else None)
    out.update(cspa_token_summary({k: torch.cat(v) for k, v in per_token.items()}))
    return out
