"""Reproduce the binding-ID mechanism of entity binding in LLaMA (feng2023binding).

Prompts in the authors' CAPITALS format: two statements "NAME lives in the capital city of
COUNTRY." and the question "Which city does NAME live in? ... NAME lives in the city of"; the
answer is the capital of the queried name's country. The binding-ID differences are estimated
from data, as the paper's mean interventions do: for the entity slot, the mean over prompts of
the residual stream (every layer) at a name when it is the second entity minus the same name
when it is the first (its statement moved to the front); likewise for the country. Adding the
difference to the first slot and subtracting it from the second, with the rest of the context
held at its clean activations, swaps the two binding IDs: the model should then answer with the
other name's capital, and swapping both the entity and the attribute IDs should leave the answer
as it was. Vectors of the same norms in random directions are the control.
"""

from __future__ import annotations

import random

import torch
from mikb.lm.pretrained import load_for
from mikb.methods.binding_ids import context_resid, frozen_context_logits, matched_random, slot_edit
from mikb.reproduce import ReproContext, ScriptSpec

NAMES = ("Alice Bob Carol David Emma Frank Grace Henry Jack Kate Laura Mark Nancy Oliver Paul "
         "Rachel Sarah Thomas Victor William Anna Peter James Mary Linda Robert Susan George "
         "Helen Karen").split()
CAPITALS = {"France": "Paris", "Japan": "Tokyo", "Italy": "Rome", "Russia": "Moscow",
            "Egypt": "Cairo", "Germany": "Berlin", "Spain": "Madrid", "Canada": "Ottawa",
            "Kenya": "Nairobi", "Peru": "Lima", "Greece": "Athens", "Poland": "Warsaw",
            "Austria": "Vienna", "Thailand": "Bangkok", "Cuba": "Havana", "Norway": "Oslo",
            "Ireland": "Dublin", "Portugal": "Lisbon", "Sweden": "Stockholm", "Chile": "Santiago",
            "Turkey": "Ankara", "Iran": "Tehran", "China": "Beijing", "India": "Delhi",
            "Denmark": "Copenhagen", "Finland": "Helsinki", "Hungary": "Budapest"}
HEADER = "Answer the question based on the context below. Keep the answer short.\n\nContext:"
NAME_WIDTH = 2  # the name and the next token, as the released code's entity width
COUNTRY_WIDTH = 1

SPEC = ScriptSpec(
    models=("llama-7b",),
    params={"n_mean": 200, "n_test": 100, "batch": 25, "max_rows": 100},
    quick_params={"n_mean": 4, "n_test": 4, "batch": 4, "max_rows": 40},
    devices=("cpu", "cuda"),
    description="Entity binding: binding-ID mean interventions on entity and attribute tokens.",
)


class Prompts:
    """Two-statement prompts, tokenised as whole strings; each name's and country's token is found
    from the tokenizer's character offsets. Why not segment by segment: SentencePiece (LLaMA)
    and BPE (GPT-2) both attach the leading space to the word, and a word encoded on its own
    can tokenise differently from the same word in running text."""

    def __init__(self, tok) -> None:
        self.tok = tok
        probe_c = next(iter(CAPITALS))
        self.names = [n for n in NAMES if self._single([n, "Bob" if n != "Bob" else "Ann"],
                                                       [probe_c, probe_c], 0, "names")]
        usable = [c for c in CAPITALS if self._single(["Ann", "Bob"], [c, c], 0, "countries")]
        first = {}
        for c in usable:  # the capitals must differ in the token that follows "city of"
            first.setdefault(self.answer_token(["Ann", "Bob"], [c, c], 0, CAPITALS[c]), c)
        self.countries = [(c, CAPITALS[c]) for c in first.values()]
        if len(self.names) < 8 or len(self.countries) < 8:
            raise RuntimeError(f"the tokenizer splits too many names/countries: {len(self.names)} "
                               f"names, {len(self.countries)} countries are usable")

    @staticmethod
    def text(ents, countries, query: int) -> tuple[str, list[tuple[int, int]], list[tuple[int, int]], int]:
        out, e_spans, c_spans = HEADER, [], []
        for e, c in zip(ents, countries, strict=True):
            out += " "
            e_spans.append((len(out), len(out) + len(e)))
            out += f"{e} lives in the capital city of "
            c_spans.append((len(out), len(out) + len(c)))
            out += f"{c}."
        ctx_chars = len(out)
        q = ents[query]
        out += f"\n\nQuestion: Which city does {q} live in?\n\nAnswer: {q} lives in the city of"
        return out, e_spans, c_spans, ctx_chars

    def _single(self, ents, countries, query, which) -> bool:
        text, e_spans, c_spans, _ = self.text(ents, countries, query)
        _, offsets = self.tok.encode_with_offsets(text)
        spans = e_spans if which == "names" else c_spans
        return len(self.tok.tokens_over(offsets, spans[0])) == 1

    def answer_token(self, ents, countries, query: int, capital: str) -> int:
        text = self.text(ents, countries, query)[0]
        ids, _ = self.tok.encode_with_offsets(text)
        with_answer, _ = self.tok.encode_with_offsets(f"{text} {capital}")
        if with_answer[:len(ids)] != ids:
            raise RuntimeError("the answer changes the prompt's tokenisation")
        return with_answer[len(ids)]

    def build(self, ents, ctrs, query: int):
        """Token ids, the names' and countries' positions, and where the context ends."""
        text, e_spans, c_spans, ctx_chars = self.text(ents, [c for c, _ in ctrs], query)
        ids, offsets = self.tok.encode_with_offsets(text)
        e_pos = [self.tok.tokens_over(offsets, sp)[0] for sp in e_spans]
        c_pos = [self.tok.tokens_over(offsets, sp)[0] for sp in c_spans]
        ctx_end = next(i for i, (s, _) in enumerate(offsets) if i > 0 and s >= ctx_chars)
        return ids, e_pos, c_pos, ctx_end

    def sample(self, rng: random.Random, names, countries, n: int):
        return [(rng.sample(names, 2), rng.sample(countries, 2)) for _ in range(n)]


def stack(rows):
    if len({len(r) for r in rows}) != 1:
        raise ValueError("prompts must tokenise to one length")
    return torch.tensor(rows, dtype=torch.long)


def layout(built):
    """The names' and countries' positions and the context end, shared by all ``built`` prompts."""
    shapes = {(tuple(b[1]), tuple(b[2]), b[3]) for b in built}
    if len(shapes) != 1:
        raise ValueError(f"prompts place names/countries at different positions: {sorted(shapes)}")
    e_pos, c_pos, ctx_end = shapes.pop()
    return list(e_pos), list(c_pos), ctx_end


def run(ctx: ReproContext) -> None:
    lm = load_for(ctx)
    model, p = lm.model, ctx.params
    pr = Prompts(lm.tok)
    rng = random.Random(ctx.seed)
    # Disjoint halves of the names and countries for estimating the means and for testing.
    names, countries = pr.names[:], pr.countries[:]
    rng.shuffle(names)
    rng.shuffle(countries)
    train = (names[: len(names) // 2], countries[: len(countries) // 2])
    test = (names[len(names) // 2:], countries[len(countries) // 2:])
    bs = int(p["batch"])

    # -- binding-ID differences, Delta = mean(slot 1) - mean(same token in slot 0) ---------------
    # Both orders of a statement pair go through one forward (the context does not depend on
    # the query, so query 0 stands for both).
    d_e = d_c = None
    samples = pr.sample(rng, *train, int(p["n_mean"]))
    for first in range(0, len(samples), bs):
        chunk = samples[first:first + bs]
        built = [pr.build(e, c, 0) for e, c in chunk]
        flipped = [pr.build(e[::-1], c[::-1], 0) for e, c in chunk]
        (e0, e1), (c0, c1), ctx_end = layout(built + flipped)
        n = len(chunk)
        both = context_resid(model, stack([b[0] for b in built + flipped]), ctx_end)
        r, rf = both[:, :n], both[:, n:]
        part_e = torch.stack([(r[:, :, e1 + w] - rf[:, :, e0 + w]).sum(1)
                              for w in range(NAME_WIDTH)], 1)
        part_c = torch.stack([(r[:, :, c1 + w] - rf[:, :, c0 + w]).sum(1)
                              for w in range(COUNTRY_WIDTH)], 1)
        d_e = part_e if d_e is None else d_e + part_e
        d_c = part_c if d_c is None else d_c + part_c
    d_e, d_c = d_e / len(samples), d_c / len(samples)  # [layer, width, d_model]
    gen = torch.Generator().manual_seed(ctx.seed)
    r_e, r_c = matched_random(d_e, gen), matched_random(d_c, gen)

    # -- interventions on held-out prompts, both queries ----------------------------------------
    # expected answer slot under the binding-ID account: a swap of one ID flips the answer.
    conditions = {"clean": (None, None, False), "swap_entity": (d_e, None, True),
                  "swap_attribute": (None, d_c, True), "swap_both": (d_e, d_c, False),
                  "random_control": (r_e, r_c, False)}
    hits = {k: [] for k in conditions}
    margins = {k: [] for k in conditions}
    tests = pr.sample(rng, *test, int(p["n_test"]))
    for first in range(0, len(tests), bs):
        chunk = tests[first:first + bs]
        n = len(chunk)
        by_query = [[pr.build(e, c, query) for e, c in chunk] for query in (0, 1)]
        e_pos, c_pos, ctx_end = layout(by_query[0] + by_query[1])
        clean = context_resid(model, stack([b[0] for b in by_query[0]]), ctx_end)
        caps = torch.tensor([[pr.answer_token(e, [x for x, _ in c], 0, cap) for _, cap in c]
                             for e, c in chunk])
        edits = {}
        for name, (ve, vc, _) in conditions.items():
            edit = torch.zeros_like(clean)
            for vec, pos in ((ve, e_pos), (vc, c_pos)):
                if vec is not None:
                    edit += slot_edit(clean.shape, torch.full((n,), pos[0]), vec)
                    edit += slot_edit(clean.shape, torch.full((n,), pos[1]), -vec)
            edits[name] = edit
        # Every (condition, query) block of this chunk, several blocks per forward.
        blocks = [(name, query) for name in conditions for query in (0, 1)]
        per = max(1, int(p["max_rows"]) // n)
        for g in range(0, len(blocks), per):
            group = blocks[g:g + per]
            tokens = torch.cat([stack([b[0] for b in by_query[q]]) for _, q in group])
            logits = frozen_context_logits(model, tokens, clean.repeat(1, len(group), 1, 1),
                                           torch.cat([edits[c] for c, _ in group], 1))
            for i, (name, query) in enumerate(group):
                want = 1 - query if conditions[name][2] else query
                two = logits[i * n:(i + 1) * n].gather(-1, caps)  # [batch, 2]
                margin = two[:, want] - two[:, 1 - want]
                hits[name] += (margin > 0).float().tolist()
                margins[name] += margin.tolist()

    ctx.metric("flags", {"intervention": "binding-ID mean difference added at every layer's "
                         "resid_pre; other context positions held at clean values",
                         "accuracy": "fraction of (prompt, query) pairs whose preferred capital "
                         "of the two in context is the binding-ID account's answer"})
    ctx.metric("n_names_countries", [len(pr.names), len(pr.countries)])
    ctx.metric("n_test_queries", len(hits["clean"]))
    for name in conditions:
        ctx.metric(f"accuracy_{name}", sum(hits[name]) / len(hits[name]))
        ctx.metric(f"margin_{name}", sum(margins[name]) / len(margins[name]))
    resid_norm = clean.norm(dim=-1).mean(dim=(1, 2))  # [layer], last test batch
    ctx.metric("entity_delta_relative_norm_by_layer",
               (d_e.norm(dim=-1).mean(1) / resid_norm).tolist())
    ctx.metric("attribute_delta_relative_norm_by_layer",
               (d_c.norm(dim=-1).mean(1) / resid_norm).tolist())
    found = [slot for slot, key in (("entity tokens", "swap_entity"),
                                    ("attribute tokens", "swap_attribute"))
             if ctx.metrics[f"accuracy_{key}"] > 0.5]
    ctx.metric("discovered_components", {"binding-ID carrier": found})

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), constrained_layout=True)
    keys = list(conditions)
    ax.bar(range(len(keys)), [ctx.metrics[f"accuracy_{k}"] for k in keys], color="tab:blue")
    ax.set_xticks(range(len(keys)), [k.replace("_", " ") for k in keys], fontsize=8)
    ax.set_ylim(0, 1)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("intervention on the context")
    ax.set_ylabel("accuracy (binding-ID account)")
    ax.set_title("Swapping one binding ID should flip the answer; both or random should not",
                 fontsize=9)
    ctx.save_figure(fig, "mean_interventions",
                    "Fraction of held-out queries on which the model prefers the capital that "
                    "the binding-ID account predicts after each intervention (dashed: chance "
                    "between the two capitals in context).")
