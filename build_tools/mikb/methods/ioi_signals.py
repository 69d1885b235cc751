"""What the S-inhibition heads move: a position signal and a token signal (wang2022ioi, Sec. 3.2
and Appendix A), measured by the paper's protocol (below): their END outputs are patched in
from six source datasets that set the token and the position signal independently, and the
logit differences are fitted linearly in the two signals.
"""

from __future__ import annotations

import random
from typing import Any

import torch

from mikb.data.gpt2_bpe import get_tokenizer
from mikb.data.ioi import IOIDataset
from mikb.methods.hooks import Head, z_name
from mikb.methods.metrics import logit_diff


def logit_diff_with_heads_from(model: Any, ds: IOIDataset, heads: list[Head],
                               source_tokens: torch.Tensor) -> float:
    """Logit diff of the clean run with `heads`' outputs at END taken from `source_tokens`."""
    layers = sorted({la for la, _ in heads})
    names = [z_name(la) for la in layers]
    with torch.no_grad():
        _, src = model.run_with_cache(source_tokens, names_filter=lambda n: n in names)
    b = torch.arange(len(ds))

    def make(layer: int):
        hs = [h for la, h in heads if la == layer]

        def hook(z: torch.Tensor, hook: Any) -> torch.Tensor:
            z = z.clone()
            for h in hs:
                z[b, ds.end, h] = src[z_name(layer)][b, ds.end, h]
            return z

        return hook

    with torch.no_grad():
        logits = model.run_with_hooks(ds.tokens, fwd_hooks=[(z_name(la), make(la)) for la in layers])
    return logit_diff(logits, ds).item()


# --- The paper's protocol (wang2022ioi, Section 3.2 and Appendix A) ---------------------------
#
# Six source datasets, one per (token signal, position signal) pair, are built from the clean
# prompts by substituting names at the IO, S1 and S2 positions (A = IO, B = S, C and D fresh):
#   token  1 (original), position  1: A B ... B   (the clean prompts)
#   token  1,            position -1: B A ... B   (IO and S1 exchanged)
#   token  0 (random),   position  1: D C ... C   (IO and S replaced by fresh names)
#   token  0,            position -1: C D ... C
#   token -1 (inverted), position -1: A B ... A   (S2 replaced by IO: the repeated name is IO's)
#   token -1,            position  1: B A ... A
# The S-inhibition heads' outputs at END are taken from each source run and patched into the
# clean run; the logit difference is read with the clean IO and S. The paper then fits the six
# logit differences linearly in the two signals. The construction follows the released code of
# the paper (redwoodresearch/Easy-Transformer, experiments.py, "Token and position signal").

SIGNAL_KEYS: tuple[tuple[int, int], ...] = ((1, 1), (1, -1), (0, 1), (0, -1), (-1, -1), (-1, 1))


def signal_source_tokens(ds: IOIDataset, seed: int = 0, name_ids: list[int] | None = None
                         ) -> dict[tuple[int, int], torch.Tensor]:
    """The six (token signal, position signal) source prompts of the paper's protocol.

    ``name_ids``: the token id of every name the fresh ones are drawn from, in the dataset's
    own vocabulary (default: GPT-2's BPE of ``ds.names``; a model trained on a compact
    vocabulary passes its own)."""
    if name_ids is None:
        tok = get_tokenizer()
        name_ids = [tok.encode(" " + n)[0] for n in ds.names]
    ids = list(name_ids)
    rng = random.Random(seed)
    b = torch.arange(len(ds))
    io_p, s1_p, s2_p = ds.pos["IO"], ds.pos["S1"], ds.pos["S2"]
    a, s = ds.io_ids, ds.s_ids
    c, d = [], []
    for io, sj in zip(a.tolist(), s.tolist(), strict=True):
        x, y = rng.sample([i for i in ids if i not in (io, sj)], 2)
        c.append(x)
        d.append(y)
    c_t, d_t = torch.tensor(c), torch.tensor(d)

    def put(io_tok, s1_tok, s2_tok):
        t = ds.tokens.clone()
        t[b, io_p], t[b, s1_p], t[b, s2_p] = io_tok, s1_tok, s2_tok
        return t

    return {
        (1, 1): ds.tokens.clone(),
        (1, -1): put(s, a, s),
        (0, 1): put(d_t, c_t, c_t),
        (0, -1): put(c_t, d_t, c_t),
        (-1, -1): put(a, s, a),
        (-1, 1): put(s, a, a),
    }


def paper_signal_grid(model: Any, ds: IOIDataset, sinh: list[Head], seed: int = 0,
                      name_ids: list[int] | None = None) -> dict[str, Any]:
    """Logit differences with the S-inhibition heads' END outputs from each of the six source
    datasets, and two least-squares fits of them: ld = a*pos + b*tok (no intercept) and
    ld = c + a*pos + b*tok. `position_share` = |a| / (|a| + |b|) of the fit without intercept."""
    if not sinh:
        return {}
    srcs = signal_source_tokens(ds, seed, name_ids)
    lds = {k: logit_diff_with_heads_from(model, ds, sinh, t) for k, t in srcs.items()}
    y = torch.tensor([lds[k] for k in SIGNAL_KEYS], dtype=torch.float64)
    tok_s = torch.tensor([k[0] for k in SIGNAL_KEYS], dtype=torch.float64)
    pos_s = torch.tensor([k[1] for k in SIGNAL_KEYS], dtype=torch.float64)
    x0 = torch.stack([pos_s, tok_s], 1)
    x1 = torch.stack([torch.ones_like(pos_s), pos_s, tok_s], 1)
    f0 = torch.linalg.lstsq(x0, y[:, None]).solution[:, 0]
    f1 = torch.linalg.lstsq(x1, y[:, None]).solution[:, 0]
    a, bt = float(f0[0]), float(f0[1])
    den = abs(a) + abs(bt)
    names = {1: "original", 0: "random", -1: "inverted"}
    return {
        "signal_grid_logit_diff": {f"token_{names[k[0]]}__position_{names[k[1]]}": v
                                   for k, v in lds.items()},
        "signal_fit_position_coef": a,
        "signal_fit_token_coef": bt,
        "signal_fit_intercept_model": {"intercept": float(f1[0]), "position_coef": float(f1[1]),
                                       "token_coef": float(f1[2])},
        "signal_fit_position_share": abs(a) / den if den > 1e-9 else None,
        "signal_position_inverted_logit_diff": lds[(1, -1)],
        "signal_token_random_logit_diff": lds[(0, 1)],
    }
