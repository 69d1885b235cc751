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


class BoxPrompts:
    """Box prompts tokenised as whole strings; each object's and label's token is found from the
    tokenizer's character offsets. Why not segment by segment: LLaMA's SentencePiece encodes
    " apple" on its own as two pieces (a lone "▁" and "▁apple"), and a word encoded
    alone can tokenise differently from the same word in running text. A word is usable only if
    it is exactly one token in context and that token is also what the model would emit after
    "contains the" (so the answer is a single next token)."""

    def __init__(self, tok, n_boxes: int) -> None:
        self.tok = tok
        self.objects = [o for o in OBJECTS if self._usable_object(o)]
        self.labels = [c for c in LABELS if self._usable_label(c)]
        if len(self.objects) < n_boxes or len(self.labels) < n_boxes:
            raise RuntimeError(
                f"entity-tracking needs {n_boxes} objects and {n_boxes} box labels that are single "
                f"tokens in context under this model's tokenizer; only {len(self.objects)} of "
                f"{len(OBJECTS)} objects and {len(self.labels)} of {len(LABELS)} labels are")

    @staticmethod
    def text(objs, labels, query: int):
        """The prompt, the objects' and labels' character spans, and the query label's span."""
        out, o_spans, l_spans = "", [], []
        for i, (o, b) in enumerate(zip(objs, labels, strict=True)):
            out += "The " if i == 0 else " the "
            o_spans.append((len(out), len(out) + len(o)))
            out += f"{o} is in Box "
            l_spans.append((len(out), len(out) + len(b)))
            out += b + ("," if i < len(objs) - 1 else ".")
        out += " Box "
        q_span = (len(out), len(out) + len(labels[query]))
        out += f"{labels[query]} contains the"
        return out, o_spans, l_spans, q_span

    def answer_token(self, text: str, word: str) -> int | None:
        """The one token the model would emit for " word" after ``text``, else None."""
        ids, _ = self.tok.encode_with_offsets(text)
        with_answer, _ = self.tok.encode_with_offsets(f"{text} {word}")
        if with_answer[:len(ids)] != ids or len(with_answer) != len(ids) + 1:
            return None
        return with_answer[-1]

    def _probe(self, objs, labels):
        text, o_spans, l_spans, q_span = self.text(objs, labels, 1)
        return text, self.tok.encode_with_offsets(text)[1], o_spans, l_spans, q_span

    def _usable_object(self, o: str) -> bool:
        probe = ["key", "coin"] if o != "key" else ["coin", "cup"]
        text, offsets, o_spans, _, _ = self._probe([probe[0], o, probe[1]], ["F", "Q", "T"])
        tok_in = self.tok.tokens_over(offsets, o_spans[1])
        ans = self.answer_token(text, o)
        return (len(tok_in) == 1 and ans is not None and self.tok.encode_with_offsets(text)[0][tok_in[0]] == ans
                and ans != getattr(self.tok.hf, "unk_token_id", None))

    def _usable_label(self, c: str) -> bool:
        probe = ["F", "T"] if c != "F" else ["Q", "T"]
        _, offsets, _, l_spans, q_span = self._probe(["key", "coin", "cup"], [probe[0], c, probe[1]])
        return (len(self.tok.tokens_over(offsets, l_spans[1])) == 1
                and len(self.tok.tokens_over(offsets, q_span)) == 1)

    def build(self, objs, labels, query: int):
        """Token ids, the queried object's position, the query label's position, and the
        answer and other objects' tokens; None where this draw does not tokenise cleanly."""
        text, o_spans, l_spans, q_span = self.text(objs, labels, query)
        ids, offsets = self.tok.encode_with_offsets(text)
        over = [self.tok.tokens_over(offsets, sp) for sp in [*o_spans, *l_spans, q_span]]
        if any(len(t) != 1 for t in over):
            return None
        answers = [self.answer_token(text, o) for o in objs]
        if any(a is None for a in answers) or len(set(answers)) != len(answers):
            return None
        return ids, over[query][0], over[-1][0], answers


def make_prompts(tok, n: int, n_boxes: int, seed: int):
    """``n`` clean/corrupted pairs (the corrupted prompt queries another box of the same
    context), with the answers, the other objects, the queried object's position and the shared
    query-label position. Draws that tokenise differently are redrawn; a tokenizer under which
    the prompts cannot share one layout is refused with a message, not a traceback."""
    rng = random.Random(seed)
    bp = BoxPrompts(tok, n_boxes)
    rows, bad, ans, others, obj_pos, label_pos = [], [], [], [], [], set()
    for _ in range(50 * n):
        if len(rows) == n:
            break
        os_, ls = rng.sample(bp.objects, n_boxes), rng.sample(bp.labels, n_boxes)
        q, q2 = rng.sample(range(n_boxes), 2)
        clean, corrupt = bp.build(os_, ls, q), bp.build(os_, ls, q2)
        if clean is None or corrupt is None or len(clean[0]) != len(corrupt[0]):
            continue
        if rows and (len(clean[0]) != len(rows[0]) or clean[2] != next(iter(label_pos))):
            continue  # keep one layout: the label positions are shared across the batch
        rows.append(clean[0])
        bad.append(corrupt[0])
        ans.append(clean[3][q])
        others.append([t for i, t in enumerate(clean[3]) if i != q])
        obj_pos.append(clean[1])
        label_pos.add(clean[2])
    if len(rows) < n:
        raise RuntimeError(f"entity-tracking could build only {len(rows)} of {n} box prompts of one "
                           "token layout under this model's tokenizer")
    return (stack_prompts(rows), stack_prompts(bad), torch.tensor(ans), torch.tensor(others),
            torch.tensor(obj_pos), label_pos.pop())


def run(ctx: ReproContext) -> None:
    lm = load_for(ctx)
    model, p = lm.model, ctx.params
    clean, corrupted, ans, others, obj_pos, label_pos = make_prompts(
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
