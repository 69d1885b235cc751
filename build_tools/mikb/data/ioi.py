"""Indirect-object-identification prompts (Wang et al. 2022) and their ABC corruption.

Why a generator of our own: every IOI script needs the same clean/corrupted pairs with the
positions of IO, S1, S2 and END known per prompt, tokenised with GPT-2's real BPE so that the
same ids work on GPT-2 small and on the planted model. Templates, names, places and objects are
the ones of the paper's released dataset (wang2022ioi, Appendix / released `ioi_dataset`); we
keep only names that are one GPT-2 token with their leading space.

Every prompt in one dataset has the same token length (we keep only templates of one length),
so position-indexed methods (patching by position, per-position mean ablation) compare like
with like and no padding is needed.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import torch

from mikb.data.gpt2_bpe import GPT2Tokenizer, get_tokenizer

# Names from the paper's dataset (wang2022ioi, released ioi_dataset.py NAMES).
PAPER_NAMES: tuple[str, ...] = (
    "Aaron Adam Alan Alex Alice Amy Anderson Andre Andrew Andy Anna Anthony Arthur Austin Blake "
    "Brandon Brian Carter Charles Charlie Christian Christopher Clark Cole Collins Connor Crew "
    "Crystal Daniel David Dean Edward Elizabeth Emily Eric Eva Ford Frank George Georgia Graham "
    "Grant Henry Ian Jack Jacob Jake James Jamie Jane Jason Jay Jennifer Jeremy Jessica John "
    "Jonathan Jordan Joseph Joshua Justin Kate Kelly Kevin Kyle Laura Leon Lewis Lisa Louis Luke "
    "Madison Marco Marcus Maria Mark Martin Mary Matthew Max Michael Michelle Morgan Patrick Paul "
    "Peter Prince Rachel Richard River Robert Roman Rose Ruby Russell Ryan Sarah Scott Sean Simon "
    "Stephen Steven Sullivan Taylor Thomas Tyler Victoria Warren William"
).split()

PLACES: tuple[str, ...] = (
    "store", "garden", "restaurant", "school", "hospital", "office", "house", "station",
)
OBJECTS: tuple[str, ...] = (
    "ring", "kiss", "bone", "basketball", "computer", "necklace", "drink", "snack",
)

# BABA templates of the paper's dataset; [B] is the subject S, [A] the indirect object IO.
# The final " [A]" (the answer) is not part of the prompt.
BABA_TEMPLATES: tuple[str, ...] = (
    "Then, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to",
    "Then, [B] and [A] had a lot of fun at the [PLACE]. [B] gave a [OBJECT] to",
    "Then, [B] and [A] were working at the [PLACE]. [B] decided to give a [OBJECT] to",
    "Then, [B] and [A] were thinking about going to the [PLACE]. [B] wanted to give a [OBJECT] to",
    "Then, [B] and [A] had a long argument, and afterwards [B] said to",
    "After [B] and [A] went to the [PLACE], [B] gave a [OBJECT] to",
    "When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give it to",
    "When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give the [OBJECT] to",
    "While [B] and [A] were working at the [PLACE], [B] gave a [OBJECT] to",
    "While [B] and [A] were commuting to the [PLACE], [B] gave a [OBJECT] to",
    "After the lunch, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to",
    "Afterwards, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to",
    "Then, [B] and [A] had a long argument. Afterwards [B] said to",
    "The [PLACE] [B] and [A] went to had a [OBJECT]. [B] gave it to",
    "Friends [B] and [A] found a [OBJECT] at the [PLACE]. [B] gave it to",
)


def abba_from_baba(template: str) -> str:
    """Swap the first [B] and [A] so the IO comes first (ABBA order)."""
    i_b, i_a = template.index("[B]"), template.index("[A]")
    assert i_b < i_a
    return template[:i_b] + "[A]" + template[i_b + 3 : i_a] + "[B]" + template[i_a + 3 :]


ABBA_TEMPLATES: tuple[str, ...] = tuple(abba_from_baba(t) for t in BABA_TEMPLATES)


def single_token_names(tok: GPT2Tokenizer | None = None) -> list[str]:
    """The paper's names that are one token with a leading space (IOI needs one-token answers)."""
    tok = tok or get_tokenizer()
    return [n for n in PAPER_NAMES if tok.single_token_id(" " + n) is not None]


@dataclass
class IOIDataset:
    """Clean IOI prompts, their ABC-corrupted twins and the token positions that matter."""

    prompts: list[str]
    corrupted_prompts: list[str]
    tokens: torch.Tensor  # [batch, pos], BOS first when prepend_bos
    corrupted_tokens: torch.Tensor
    io_ids: torch.Tensor  # [batch] token id of " IO"
    s_ids: torch.Tensor  # [batch] token id of " S"
    pos: dict[str, torch.Tensor]  # "IO", "S1", "S2", "END" -> [batch] positions
    orders: list[str]  # "ABBA" / "BABA" per prompt
    template_ids: list[int]
    names: list[str]
    flags: dict[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def end(self) -> torch.Tensor:
        return self.pos["END"]

    def subset(self, idx: list[int]) -> IOIDataset:
        index = torch.tensor(idx, dtype=torch.long)
        return IOIDataset(
            prompts=[self.prompts[i] for i in idx],
            corrupted_prompts=[self.corrupted_prompts[i] for i in idx],
            tokens=self.tokens[index],
            corrupted_tokens=self.corrupted_tokens[index],
            io_ids=self.io_ids[index],
            s_ids=self.s_ids[index],
            pos={k: v[index] for k, v in self.pos.items()},
            orders=[self.orders[i] for i in idx],
            template_ids=[self.template_ids[i] for i in idx],
            names=self.names,
            flags=dict(self.flags),
        )


def _fill(template: str, a: str, b: str, place: str, obj: str, c: str | None = None) -> str:
    """Fill a template; with `c`, the second [B] (S2) becomes a third name (ABC corruption)."""
    text = template.replace("[PLACE]", place).replace("[OBJECT]", obj).replace("[A]", a)
    first = text.index("[B]")
    text = text[:first] + b + text[first + 3 :]
    return text.replace("[B]", c if c is not None else b)


def template_lengths(prepend_bos: bool = True) -> list[int]:
    """Token length of every BABA template (ABBA has the same length: names are one token)."""
    tok = get_tokenizer()
    return [
        len(tok.encode(_fill(t, " Mary", " John", "store", "drink").replace("  ", " "), prepend_bos))
        for t in BABA_TEMPLATES
    ]


def default_templates() -> list[int]:
    """Indices of the largest group of equal-length templates (so prompts need no padding)."""
    lengths = template_lengths()
    common = Counter(lengths).most_common(1)[0][0]
    return [i for i, n in enumerate(lengths) if n == common]


def make_ioi_dataset(
    n: int,
    seed: int = 0,
    templates: list[int] | None = None,
    orders: tuple[str, ...] = ("ABBA", "BABA"),
    prepend_bos: bool = True,
    names: list[str] | None = None,
) -> IOIDataset:
    """Sample `n` IOI prompts (orders alternate) and their ABC corruptions.

    The corrupted prompt keeps the template, place and object and replaces IO, S1 and S2 by
    three fresh distinct names (the paper's "ABC" distribution), so no name is repeated and the
    prompt carries no information about which name is the indirect object.
    """
    tok = get_tokenizer()
    rng = random.Random(seed)
    names = names or single_token_names(tok)
    templates = templates if templates is not None else default_templates()
    places = [p for p in PLACES if tok.single_token_id(" " + p) is not None]
    objects = [o for o in OBJECTS if tok.single_token_id(" " + o) is not None]
    prompts, corrupted, ords, tids, ios, ss = [], [], [], [], [], []
    for i in range(n):
        order = orders[i % len(orders)]
        tid = templates[rng.randrange(len(templates))]
        base = BABA_TEMPLATES[tid] if order == "BABA" else ABBA_TEMPLATES[tid]
        io, s, x, y, z = rng.sample(names, 5)
        place, obj = rng.choice(places), rng.choice(objects)
        prompts.append(_fill(base, io, s, place, obj))
        corrupted.append(_fill(base, x, y, place, obj, c=z))
        ords.append(order)
        tids.append(tid)
        ios.append(io)
        ss.append(s)
    clean_ids = [tok.encode(p, prepend_bos) for p in prompts]
    corr_ids = [tok.encode(p, prepend_bos) for p in corrupted]
    lengths = {len(t) for t in clean_ids} | {len(t) for t in corr_ids}
    if len(lengths) != 1:
        raise ValueError(f"templates {templates} give prompts of different lengths {lengths}")
    io_ids = [tok.encode(" " + nm)[0] for nm in ios]
    s_ids = [tok.encode(" " + nm)[0] for nm in ss]
    pos: dict[str, list[int]] = {"IO": [], "S1": [], "S2": [], "END": []}
    for ids, io_id, s_id in zip(clean_ids, io_ids, s_ids, strict=True):
        s_positions = [j for j, t in enumerate(ids) if t == s_id]
        assert len(s_positions) == 2 and ids.count(io_id) == 1, "names must be single tokens"
        pos["IO"].append(ids.index(io_id))
        pos["S1"].append(s_positions[0])
        pos["S2"].append(s_positions[1])
        pos["END"].append(len(ids) - 1)
    return IOIDataset(
        prompts=prompts,
        corrupted_prompts=corrupted,
        tokens=torch.tensor(clean_ids),
        corrupted_tokens=torch.tensor(corr_ids),
        io_ids=torch.tensor(io_ids),
        s_ids=torch.tensor(s_ids),
        pos={k: torch.tensor(v) for k, v in pos.items()},
        orders=ords,
        template_ids=tids,
        names=names,
        flags={
            "corrupted_distribution": "ABC (IO, S1, S2 replaced by three fresh names)",
            "templates": templates,
            "orders": list(orders),
            "prepend_bos": prepend_bos,
            "seed": seed,
        },
    )
