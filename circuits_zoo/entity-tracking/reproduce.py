"""Reproduce the entity-tracking circuit of Llama-7B (prakash2024finetuning).

Prompts "The apple is in Box F, the key is in Box Q, the coin is in Box T. Box Q contains the"
(objects and box labels single tokens); the answer is the object in the queried box. The
corrupted prompt queries another box of the same context. The metric is the right object's logit
minus the mean logit of the other objects in the context. Heads are patched (clean into
corrupted) at the three positions where the paper's four groups sit: the last token, the query
label and the token before it. At the last token, heads that attend to the right object are
classed as value fetchers and the other strong ones as position transmitters; strong heads at
the query label are position detectors and at the previous token structure readers. On
llama-7b the paper's 72 heads are scored, and the circuit is evaluated by mean-ablating every
other head.
"""

from __future__ import annotations

import random

import torch
from mikb.lm.pretrained import load_for
from mikb.methods.hooks import all_heads, head_label, parse_head, z_name
from mikb.methods.prompt_tasks import (
    FLAGS,
    PromptPairs,
    ablate_heads_effect,
    batched_patching,
    clean_and_corrupted,
    heads_in,
    scores_at,
    stack_prompts,
    top_heads,
)
from mikb.reproduce import ReproContext, ScriptSpec

# The paper's circuit as released (experiment_1/results/circuits/llama_circuit.json).
PAPER_GROUPS = {
    "value fetcher": ["15.13", "21.3", "24.5", "20.14", "18.8", "29.7", "18.3", "15.18", "17.28",
                      "21.4", "21.25", "23.15", "18.28", "23.19", "23.20", "19.30", "23.5",
                      "17.27", "15.5", "21.0", "23.17", "15.2", "17.3", "19.20", "19.11", "19.8",
                      "15.6", "20.29", "16.23", "24.0", "25.14", "14.13", "21.26", "24.8", "18.6",
                      "19.26", "23.16", "16.27", "18.20", "18.25"],
    "position transmitter": ["14.27", "11.23", "12.23", "19.12", "13.0", "16.2", "13.14"],
    "position detector": ["10.3", "13.14", "9.2", "9.7", "11.23", "9.10", "1.9", "7.17", "13.0",
                          "6.10", "4.4", "7.26", "9.21", "8.1", "12.0", "8.22", "10.4", "11.7",
                          "7.9", "10.15"],
    "structure reader": ["8.21", "12.23", "11.9", "8.12", "11.23"],
}
OBJECTS = ("apple key coin book cup ring pen bell map shoe hat box bag card lamp clock watch "
           "ball doll fan").split()
LABELS = list("ABCDEFGHJKLMNPQRSTVWXZ")

SPEC = ScriptSpec(
    models=("llama-7b",),
    params={"n_prompts": 32, "n_boxes": 4, "top_k": 10, "threshold": 0.01, "max_rows": 256},
    quick_params={"n_prompts": 4, "n_boxes": 3, "max_rows": 128},
    devices=("cpu", "cuda"),
    description="Entity tracking: head patching at three positions; four head groups.",
)


def make_prompts(tok, n: int, n_boxes: int, seed: int):
    """Prompts built segment by segment, so each object's and label's token (and position) is
    known by construction whatever the tokenizer (LLaMA's SentencePiece merges differently from
    GPT-2's BPE across word boundaries)."""
    rng = random.Random(seed)
    objs = [o for o in OBJECTS if tok.single(f" {o}") is not None]
    labels = [c for c in LABELS if tok.single(f" {c}") is not None]
    if len(objs) < n_boxes or len(labels) < n_boxes:
        raise RuntimeError(f"the tokenizer splits too many objects/labels: {len(objs)} objects, "
                           f"{len(labels)} labels are single tokens, {n_boxes} boxes needed")
    rows, bad, ans, others, obj_pos = [], [], [], [], []
    for _ in range(n):
        os_, ls = rng.sample(objs, n_boxes), rng.sample(labels, n_boxes)
        q, q2 = rng.sample(range(n_boxes), 2)
        head, where = [tok.bos_id], []
        for i, (o, b) in enumerate(zip(os_, ls, strict=True)):
            head += tok.encode("The" if i == 0 else " the")
            where.append(len(head))
            head += [tok.single(f" {o}")] + tok.encode(" is in Box") + [tok.single(f" {b}")]
            head += tok.encode("," if i < n_boxes - 1 else ".")
        rows.append(head + tok.encode(" Box") + [tok.single(f" {ls[q]}")] + tok.encode(" contains the"))
        bad.append(head + tok.encode(" Box") + [tok.single(f" {ls[q2]}")] + tok.encode(" contains the"))
        ids = [tok.single(f" {o}") for o in os_]
        ans.append(ids[q])
        others.append([t for i, t in enumerate(ids) if i != q])
        obj_pos.append(where[q])
    return (stack_prompts(rows), stack_prompts(bad), torch.tensor(ans), torch.tensor(others),
            torch.tensor(obj_pos))


def run(ctx: ReproContext) -> None:
    lm = load_for(ctx)
    model, p = lm.model, ctx.params
    clean, corrupted, ans, others, obj_pos = make_prompts(
        lm.tok, int(p["n_prompts"]), int(p["n_boxes"]), ctx.seed)

    def metric(logits: torch.Tensor) -> torch.Tensor:
        last = logits[:, -1]
        b = torch.arange(last.shape[0])
        return last[b, ans] - last[b[:, None], others].mean(-1)

    pairs = PromptPairs(clean, corrupted, metric)
    ctx.metric("flags", {**FLAGS, "metric": "logit(right object) - mean logit(other objects)",
                         "corruption": "another box of the same context is queried",
                         "ablation": "mean over the corrupted prompts", "scores": "signed"})
    ctx.metric("n_prompts", int(clean.shape[0]))
    m_clean, m_corrupt, cache, _ = clean_and_corrupted(model, pairs)
    ctx.metric("logit_diff_clean", m_clean)
    ctx.metric("logit_diff_corrupted", m_corrupt)
    with torch.no_grad():
        top = model(clean)[:, -1]
    cand = torch.cat([ans[:, None], others], 1)
    ctx.metric("accuracy_among_objects",
               (top.gather(-1, cand).argmax(-1) == 0).float().mean().item())

    def at(h: int, pos: int):
        def fn(z: torch.Tensor, clean_z: torch.Tensor) -> torch.Tensor:
            z[:, pos, h] = clean_z[:, pos, h]
            return z
        return fn

    span = (m_clean - m_corrupt) or 1e-9
    t = clean.shape[1]
    label_pos = t - len(lm.tok.encode(" contains the")) - 1
    scores = {}
    for name, pos in (("last", t - 1), ("query_label", label_pos),
                      ("previous_query_label", label_pos - 1)):
        patches = [(z_name(la), at(h, pos)) for la, h in all_heads(model)]
        vals = batched_patching(model, pairs, cache, patches, int(p["max_rows"]))
        scores[name] = ((vals - m_corrupt) / span).view(model.cfg.n_layers, model.cfg.n_heads)
        ctx.metric(f"head_patching_{name}", scores[name])
    k, thr = int(p["top_k"]), float(p["threshold"])
    last = top_heads(scores["last"], k, thr)
    b = torch.arange(clean.shape[0])

    def attn_to_object(label: str) -> float:
        la, h = parse_head(label)
        return cache[f"blocks.{la}.attn.hook_pattern"][b, h, -1, obj_pos].mean().item()

    fetchers = [h for h in last if attn_to_object(h) > 0.1]
    ctx.metric("discovered_components", {
        "value fetcher": fetchers,
        "position transmitter": [h for h in last if h not in fetchers],
        "position detector": top_heads(scores["query_label"], k, thr),
        "structure reader": top_heads(scores["previous_query_label"], k, thr)})
    if ctx.model_id == "llama-7b":
        where = {"value fetcher": "last", "position transmitter": "last",
                 "position detector": "query_label", "structure reader": "previous_query_label"}
        ctx.metric("paper_groups_patching", {
            g: scores_at(scores[where[g]], [parse_head(h) for h in heads_in(model, hs)])
            for g, hs in PAPER_GROUPS.items()})
        ctx.metric("paper_value_fetchers_attention_to_object",
                   {h: attn_to_object(h) for h in heads_in(model, PAPER_GROUPS["value fetcher"])})
        circuit = {parse_head(h) for hs in PAPER_GROUPS.values() for h in heads_in(model, hs)}
        ablated, _ = ablate_heads_effect(model, pairs, corrupted,
                                         [v for v in all_heads(model) if v not in circuit])
        ctx.metric("paper_circuit_only_logit_diff", ablated)
        ctx.metric("paper_circuit_only_fraction", ablated / (m_clean or 1e-9))
        ctx.metric("paper_circuit_size", len(circuit))
        found = {h for v in ctx.metrics["discovered_components"].values() for h in v}
        ctx.metric("paper_heads_recovered_by_discovery",
                   len(found & {head_label(v) for v in circuit}) / max(1, len(circuit)))
