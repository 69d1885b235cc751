"""A 12x12 attention-only transformer whose weights are set by hand to do IOI through a known circuit.

Why: GPT-2 weights cannot be downloaded here, so the IOI / copy-suppression / backup-name-mover
scripts are proven on a model whose answer key we wrote ourselves. Heads sit at the GPT-2 small
indices reported by wang2022ioi so the same scripts (same head lists, same hooks) run on both.

Residual stream layout (all one-hot, so there is no cross-talk between names):
  CONST  1 on every token;          BOS    1 on <|endoftext|>;
  FLAG   1 on name tokens;          DUP    written by duplicate-token heads at S2;
  POS    one-hot position;          NAME   one-hot name identity (token embedding);
  INH    S-inhibition signal (the subject's name, written at END);
  OUT    what the model predicts (the unembedding reads only this block).

Mechanism (every head not listed is all zeros):
  0.1, 3.0     duplicate token: attend to an earlier copy of the current name (self excluded by
               a -c * [same position] term), write FLAG of the attended token into DUP.
  7.3 7.9 8.6 8.10  S-inhibition: attend to the DUP position (S2), copy its NAME into INH.
  9.9 9.6 10.0 name movers: attend to names, minus the names in INH; copy NAME into OUT.
  10.7 11.10   negative name movers (copy suppression): attend to names that OUT already
               predicts, write minus their NAME into OUT.
  10.10        backup name mover: a name mover whose query also subtracts what OUT already
               predicts, so it attends to the sink while the name movers work and to IO once they
               are ablated.
Every attention head can also attend to BOS (a sink whose value is zero), which is what it does
when its pattern has nothing to find.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mikb.data.gpt2_bpe import get_tokenizer
from mikb.data.ioi import single_token_names

N_LAYERS = 12
N_HEADS = 12
N_CTX = 24
N_NAMES = 32  # the planted model knows the first 32 one-token paper names (keeps it fast)
UNEMBED_SCALE = 2.0

# head -> role. The ground truth the tests recover.
GROUND_TRUTH: dict[str, str] = {
    "0.1": "duplicate token",
    "3.0": "duplicate token",
    "7.3": "s-inhibition",
    "7.9": "s-inhibition",
    "8.6": "s-inhibition",
    "8.10": "s-inhibition",
    "9.9": "name mover",
    "9.6": "name mover",
    "10.0": "name mover",
    "10.7": "negative name mover",
    "11.10": "negative name mover",
    "10.10": "backup name mover",
}
DUP_WEIGHTS = {(0, 1): 0.5, (3, 0): 0.5}
SINH_WEIGHTS = {(7, 3): 0.2, (7, 9): 0.3, (8, 6): 0.3, (8, 10): 0.2}
NM_WEIGHTS = {(9, 9): 1.0, (9, 6): 0.6, (10, 0): 0.8}
NEG_WEIGHTS = {(10, 7): 0.5, (11, 10): 0.3}
BACKUP_WEIGHTS = {(10, 10): 1.0}


@dataclass(frozen=True)
class Layout:
    """Offsets of the residual-stream blocks (see module docstring)."""

    n_names: int
    n_ctx: int = N_CTX

    const: int = 0
    bos: int = 1
    flag: int = 2
    dup: int = 3

    @property
    def pos(self) -> int:
        return 4

    @property
    def name(self) -> int:
        return self.pos + self.n_ctx

    @property
    def inh(self) -> int:
        return self.name + self.n_names

    @property
    def out(self) -> int:
        return self.inh + self.n_names

    @property
    def d_model(self) -> int:
        return self.out + self.n_names

    @property
    def d_head(self) -> int:
        # slot 0: sink, slot 1: flag/dup match, then one slot per name, then one per position
        return 2 + self.n_names + self.n_ctx


def planted_names() -> list[str]:
    """The names the planted model treats as names; IOI prompts for it must use only these."""
    return single_token_names()[:N_NAMES]


def ground_truth() -> dict[str, str]:
    """Head ("L.H") -> role, as planted."""
    return dict(GROUND_TRUTH)


def build_planted_ioi(device: str = "cpu"):
    """Boot a native TransformerBridge and overwrite every weight with the planted circuit."""
    import transformer_lens.model_bridge.sources  # noqa: F401  (registers boot_native)
    from transformer_lens.model_bridge import TransformerBridge

    tok = get_tokenizer()
    names = planted_names()
    name_ids = [tok.encode(" " + n)[0] for n in names]
    lay = Layout(n_names=len(names))
    cfg = {
        "n_layers": N_LAYERS,
        "n_heads": N_HEADS,
        "d_model": lay.d_model,
        "d_head": lay.d_head,
        "d_vocab": tok.vocab_size,
        "n_ctx": lay.n_ctx,
        "attn_only": True,
        "act_fn": "gelu",
        "normalization_type": None,
        "seed": 0,
    }
    model = TransformerBridge.boot_native(cfg, device=device)
    om = model.original_model
    n, dh = lay.n_names, lay.d_head
    scale = math.sqrt(dh)  # undo the 1/sqrt(d_head) of attention scores
    with torch.no_grad():
        for p in om.parameters():
            p.zero_()
        emb = om.tok_embed.weight  # [vocab, d_model]
        emb[:, lay.const] = 1.0
        emb[tok.bos_token_id, lay.bos] = 1.0
        for k, tid in enumerate(name_ids):
            emb[tid, lay.flag] = 1.0
            emb[tid, lay.name + k] = 1.0
        om.pos.weight[torch.arange(lay.n_ctx), lay.pos + torch.arange(lay.n_ctx)] = 1.0
        unembed = om.head.weight  # [vocab, d_model]
        for k, tid in enumerate(name_ids):
            unembed[tid, lay.out + k] = UNEMBED_SCALE

        names_r = torch.arange(n)

        def head(layer: int, h: int):
            attn = om.layers[layer].attn
            rows = slice(h * dh, (h + 1) * dh)
            return attn.q.weight[rows], attn.k.weight[rows], attn.v.weight[rows], attn.o.weight[:, rows]

        def sink(q, k, strength: float) -> None:
            q[0, lay.const] = strength * scale
            k[0, lay.bos] = 1.0

        def copy_names(v, o, target: int, weight: float) -> None:
            v[names_r, lay.name + names_r] = 1.0
            o[target + names_r, names_r] = weight

        for (layer, h), w in DUP_WEIGHTS.items():
            q, k, v, o = head(layer, h)
            sink(q, k, 6.0)
            q[2 + names_r, lay.name + names_r] = 12.0 * scale
            k[2 + names_r, lay.name + names_r] = 1.0
            ctx = torch.arange(lay.n_ctx)
            q[2 + n + ctx, lay.pos + ctx] = -12.0 * scale
            k[2 + n + ctx, lay.pos + ctx] = 1.0
            v[0, lay.flag] = 1.0
            o[lay.dup, 0] = w
        for (layer, h), w in SINH_WEIGHTS.items():
            q, k, v, o = head(layer, h)
            sink(q, k, 6.0)
            q[1, lay.const] = 14.0 * scale
            k[1, lay.dup] = 1.0
            copy_names(v, o, lay.inh, w)
        for (layer, h), w in (NM_WEIGHTS | BACKUP_WEIGHTS).items():
            q, k, v, o = head(layer, h)
            sink(q, k, 4.0)
            q[1, lay.const] = 10.0 * scale
            k[1, lay.flag] = 1.0
            # Name movers are only partly inhibited (-3.5: IO:S attention odds e^3.5), so every
            # S-inhibition head has a graded effect; the backup is inhibited hard (-20).
            backup = (layer, h) in BACKUP_WEIGHTS
            q[2 + names_r, lay.inh + names_r] = (-20.0 if backup else -3.5) * scale
            if backup:
                q[2 + names_r, lay.out + names_r] = -10.0 * scale
            k[2 + names_r, lay.name + names_r] = 1.0
            copy_names(v, o, lay.out, w)
        for (layer, h), w in NEG_WEIGHTS.items():
            q, k, v, o = head(layer, h)
            sink(q, k, 6.0)
            q[2 + names_r, lay.out + names_r] = 8.0 * scale
            k[2 + names_r, lay.name + names_r] = 1.0
            copy_names(v, o, lay.out, -w)
    model.eval()
    return model
