"""Adversarial IOI prompts (wang2022ioi, Section 4.4): IO repeated in an added sentence.

Why: the paper's circuit says the name movers copy whichever name the S-inhibition signal does
not rule out, and that signal comes from a name being *repeated*. Repeating IO as well, in a
short sentence that does not change who gives what to whom, should therefore confuse the
model. The construction follows the paper's released code (redwoodresearch/Easy-Transformer,
advex.py): after the punctuation that closes the first clause (the last "." or "," before S2),
insert sentences whose subject is IO, then S2 and the rest of the prompt as before. The
sentences here are our own (short, neutral, one each), not the released list.

Measured on the adversarial prompts, against the same prompts without the sentences: the mean
logit difference logit(IO) - logit(S) at END, the mean probability of IO, the share of prompts
where S's logit beats IO's, and the share flipped (IO ahead on the clean prompt, S ahead on the
adversarial one).
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import torch

from mikb.data.gpt2_bpe import get_tokenizer
from mikb.data.ioi import IOIDataset

# Our own distractor sentences; [A] is replaced by IO. Each starts with a space.
DISTRACTORS: tuple[str, ...] = (
    " [A] was in a good mood.",
    " [A] felt very tired.",
    " [A] liked the weather.",
    " [A] was quite hungry.",
    " [A] smiled a lot.",
)


def adversarial_tokens(ds: IOIDataset, n_sentences: int = 2, seed: int = 0,
                       max_len: int | None = None) -> tuple[list[list[int]], int]:
    """Each clean prompt with `n_sentences` IO sentences inserted before S2.

    Returns the token lists and the number of sentences used: fewer than asked when the longest
    adversarial prompt would not fit `max_len` (the model's context)."""
    tok = get_tokenizer()
    punct = {tok.encode(".")[0], tok.encode(",")[0]}
    rng = random.Random(seed)
    picks = [[rng.randrange(len(DISTRACTORS)) for _ in range(max(n_sentences, 0))]
             for _ in range(len(ds))]
    for n in range(max(n_sentences, 0), 0, -1):
        out = []
        for i in range(len(ds)):
            ids = ds.tokens[i].tolist()
            s2 = int(ds.pos["S2"][i])
            cut = max(j for j in range(s2) if ids[j] in punct) + 1
            io_name = tok.decode([int(ds.io_ids[i])])
            extra = []
            for k in picks[i][:n]:
                extra += tok.encode(DISTRACTORS[k].replace(" [A]", io_name))
            out.append(ids[:cut] + extra + ids[cut:])
        if max_len is None or max(len(t) for t in out) <= max_len:
            return out, n
    return [], 0


def _end_stats(model: Any, seqs: list[list[int]], io: torch.Tensor, s: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-prompt logit difference and IO probability at the last position (prompts grouped by
    length, so no padding)."""
    groups: dict[int, list[int]] = defaultdict(list)
    for i, t in enumerate(seqs):
        groups[len(t)].append(i)
    ld = torch.empty(len(seqs))
    p_io = torch.empty(len(seqs))
    with torch.no_grad():
        for idx in groups.values():
            logits = model(torch.tensor([seqs[i] for i in idx]))[:, -1]
            ix = torch.tensor(idx)
            r = torch.arange(len(idx))
            ld[ix] = (logits[r, io[ix]] - logits[r, s[ix]]).float()
            p_io[ix] = logits.softmax(-1)[r, io[ix]].float()
    return ld, p_io


def adversarial_metrics(model: Any, ds: IOIDataset, n_sentences: int = 2, seed: int = 0
                        ) -> dict[str, Any]:
    """Logit difference, IO probability and S-over-IO share on the adversarial prompts."""
    n_ctx = getattr(getattr(model, "cfg", None), "n_ctx", None)
    seqs, used = adversarial_tokens(ds, n_sentences, seed, max_len=n_ctx)
    if not seqs:
        return {}
    clean = [t.tolist() for t in ds.tokens]
    ld_c, p_c = _end_stats(model, clean, ds.io_ids, ds.s_ids)
    ld_a, p_a = _end_stats(model, seqs, ds.io_ids, ds.s_ids)
    return {
        "adversarial_logit_diff": ld_a.mean().item(),
        "adversarial_io_prob_mean": p_a.mean().item(),
        "adversarial_s_over_io_fraction": (ld_a < 0).float().mean().item(),
        "adversarial_flipped_fraction": ((ld_a < 0) & (ld_c > 0)).float().mean().item(),
        "adversarial_clean_logit_diff": ld_c.mean().item(),
        "adversarial_clean_io_prob_mean": p_c.mean().item(),
        "adversarial_sentences_used": used,
        "adversarial_example": get_tokenizer().decode(seqs[0]),
    }
