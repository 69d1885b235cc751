"""A 6-layer x 8-head attention-only transformer whose weights are set by hand to do IOI.

Why: GPT-2 weights cannot be downloaded here, so the IOI / copy-suppression / backup-name-mover
scripts are proven on a model whose answer key we wrote ourselves (a *method check*, never a
reproduction). The wiring follows the mechanism Wang et al. describe for GPT-2 small
(wang2022ioi, Sec. 3 and its circuit diagram), but the heads sit at indices of our own choosing
(nothing here is at a GPT-2 index the scripts could have hard-coded), so a script passes only if
it *finds* them.

Residual stream layout (one-hot blocks, so names and positions never interfere):
  CONST  1 on every token;        BOS   1 on <|endoftext|>;      FLAG  1 on name tokens;
  POS    one-hot position;        NAME  one-hot name identity (token embedding);
  PREV   name of the previous token   (written by previous-token heads, at every position);
  DPOS   position of an earlier copy  (written at S2 by duplicate-token and induction heads);
  DTOK   identity of the duplicated name (written at S2 by the same heads);
  IPOS   S-inhibition *position* signal at END (the positions of S1 and S2);
  ITOK   S-inhibition *token* signal at END (the subject's name);
  OUT    the prediction (the unembedding reads only this block).

Mechanism (every head not listed is all zeros; weights in the *_HEADS tables below):
  previous token   0.3, 0.6   attend p -> p-1 and copy NAME into PREV.
  duplicate token  0.5, 1.3   attend from a name to an earlier copy of it (self excluded) and
                              write the copy's position (DPOS) and identity (DTOK).
  induction        1.1, 1.5   K-composition with the previous-token heads: the query (current
                              NAME) matches keys whose PREV is that name, i.e. S1+1 when at S2;
                              they write the attended position minus one (= S1) into DPOS and
                              PREV into DTOK.
  S-inhibition     2.4, 2.7   attend from END to the latest name (S2; keys: FLAG plus a recency
                              ramp, no duplicate signal) and move, through their *values*, what
                              the duplicate/induction heads wrote there (V-composition):
                              DPOS + S2's own position -> IPOS (strong), DTOK -> ITOK (weak).
  name movers      3.1, 3.6, 4.2  attend from END to names, penalised by IPOS (position match)
                              and ITOK (token match); copy NAME into OUT.
  negative movers  4.5, 5.3   attend to the name OUT already predicts; write minus it.
  backup (copier)  4.7        a name mover whose query is also penalised by OUT: quiet while
                              the name movers predict IO, copies IO once they are ablated.
  backup (S-suppressor) 4.0   not a copier: its values read DTOK, which only S2 carries. While
                              OUT predicts a name it attends to that name (and writes nothing);
                              without the name movers it attends to S2 and writes minus S.
Every head can attend to BOS (a sink whose value is zero) when its pattern has nothing to find.
The attention logits are set so that each upstream head's effect is graded (not saturated):
path patching one S-inhibition, duplicate, induction or previous-token head moves the logit
difference by several percent, which is what lets the scripts discover them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mikb.data.gpt2_bpe import get_tokenizer
from mikb.data.ioi import single_token_names

N_LAYERS = 6
N_HEADS = 8
N_CTX = 24
N_NAMES = 32  # the planted model knows the first 32 one-token paper names (keeps it fast)
UNEMBED_SCALE = 2.0

# Role names are the `role` strings of the IOI entries' components (circuits_zoo/*/circuit.yaml).
PREV_HEADS = {(0, 3): 0.6, (0, 6): 0.4}
DUP_HEADS = {(0, 5): 0.35, (1, 3): 0.25}
IND_HEADS = {(1, 1): 0.25, (1, 5): 0.15}
SINH_HEADS = {(2, 4): 0.6, (2, 7): 0.4}
NM_HEADS = {(3, 1): 1.0, (3, 6): 0.6, (4, 2): 0.8}
NEG_HEADS = {(4, 5): 0.5, (5, 3): 0.3}
BACKUP_COPY_HEADS = {(4, 7): 0.9}
BACKUP_SUPPRESS_HEADS = {(4, 0): 0.5}

ROLE_TABLES: dict[str, dict] = {
    "previous token head": PREV_HEADS,
    "duplicate token head": DUP_HEADS,
    "induction head": IND_HEADS,
    "S-inhibition head": SINH_HEADS,
    "name mover head": NM_HEADS,
    "negative name mover head": NEG_HEADS,
    "backup name mover head": BACKUP_COPY_HEADS | BACKUP_SUPPRESS_HEADS,
}

# Attention-logit constants (before the 1/sqrt(d_head) the model applies, which we undo).
PREV_MATCH, PREV_SINK = 12.0, 4.0
DUP_MATCH, DUP_SINK = 12.0, 6.0
IND_MATCH, IND_SINK = 10.0, 8.0  # graded: PREV of 1.0 -> ~0.9 attention, 0.6 -> ~0.1
SINH_FLAG, SINH_RAMP, SINH_SINK = 14.0, 24.0, 6.0
SINH_SELF_POS = 1.0  # S2's own position joins the position signal
NM_FLAG, NM_SINK = 10.0, 4.0
NM_POS_PENALTY, NM_TOK_PENALTY = 2.2, 0.8  # position signal dominates the token signal
NEG_MATCH, NEG_SINK = 8.0, 6.0
BCOPY_POS_PENALTY, BCOPY_TOK_PENALTY, BCOPY_OUT_PENALTY = 12.0, 8.0, 10.0
BSUP_S2, BSUP_OUT, BSUP_SINK = 6.0, 8.0, 0.0


@dataclass(frozen=True)
class Layout:
    """Offsets of the residual-stream blocks (see module docstring)."""

    n_names: int
    n_ctx: int = N_CTX

    const: int = 0
    bos: int = 1
    flag: int = 2

    @property
    def pos(self) -> int:
        return 3

    @property
    def name(self) -> int:
        return self.pos + self.n_ctx

    @property
    def prev(self) -> int:
        return self.name + self.n_names

    @property
    def dpos(self) -> int:
        return self.prev + self.n_names

    @property
    def dtok(self) -> int:
        return self.dpos + self.n_ctx

    @property
    def ipos(self) -> int:
        return self.dtok + self.n_names

    @property
    def itok(self) -> int:
        return self.ipos + self.n_ctx

    @property
    def out(self) -> int:
        return self.itok + self.n_names

    @property
    def d_model(self) -> int:
        return self.out + self.n_names

    @property
    def d_head(self) -> int:
        # slots 0-2: sink / flag / ramp, then one per name, then one per position
        return 3 + self.n_names + self.n_ctx


def planted_names() -> list[str]:
    """The names the planted model treats as names; IOI prompts for it must use only these."""
    return single_token_names()[:N_NAMES]


def ground_truth() -> dict[str, str]:
    """Head ("L.H") -> role, as planted (roles are the circuit.yaml component roles)."""
    return {f"{la}.{h}": role for role, table in ROLE_TABLES.items() for (la, h) in table}


def ground_truth_components() -> dict[str, list[str]]:
    """Role -> sorted head labels: the shape the scripts record as `ground_truth_components`."""
    out: dict[str, list[str]] = {}
    for head, role in ground_truth().items():
        out.setdefault(role, []).append(head)
    return {role: sorted(heads, key=_head_key) for role, heads in out.items()}


def _head_key(label: str) -> tuple[int, int]:
    la, h = label.split(".")
    return int(la), int(h)


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
    n, dh, nc = lay.n_names, lay.d_head, lay.n_ctx
    scale = math.sqrt(dh)  # undo the 1/sqrt(d_head) of attention scores
    names_r, ctx_r = torch.arange(n), torch.arange(nc)
    name_slot = 3 + names_r  # d_head slots
    pos_slot = 3 + n + ctx_r
    with torch.no_grad():
        for p in om.parameters():
            p.zero_()
        emb = om.tok_embed.weight  # [vocab, d_model]
        emb[:, lay.const] = 1.0
        emb[tok.bos_token_id, lay.bos] = 1.0
        for k, tid in enumerate(name_ids):
            emb[tid, lay.flag] = 1.0
            emb[tid, lay.name + k] = 1.0
        om.pos.weight[ctx_r, lay.pos + ctx_r] = 1.0
        unembed = om.head.weight  # [vocab, d_model]
        for k, tid in enumerate(name_ids):
            unembed[tid, lay.out + k] = UNEMBED_SCALE

        def head(layer: int, h: int):
            attn = om.layers[layer].attn
            rows = slice(h * dh, (h + 1) * dh)
            return attn.q.weight[rows], attn.k.weight[rows], attn.v.weight[rows], attn.o.weight[:, rows]

        def sink(q, k, strength: float) -> None:
            q[0, lay.const] = strength * scale
            k[0, lay.bos] = 1.0

        def copy_names(v, o, src: int, dst: int, weight: float) -> None:
            v[name_slot, src + names_r] = 1.0
            o[dst + names_r, name_slot] = weight

        for (layer, h), w in PREV_HEADS.items():
            q, k, v, o = head(layer, h)
            sink(q, k, PREV_SINK)
            q[pos_slot[1:], lay.pos + ctx_r[1:]] = PREV_MATCH * scale  # query at p ...
            k[pos_slot[1:], lay.pos + ctx_r[:-1]] = 1.0  # ... matches the key at p - 1
            copy_names(v, o, lay.name, lay.prev, w)
        for (layer, h), w in DUP_HEADS.items():
            q, k, v, o = head(layer, h)
            sink(q, k, DUP_SINK)
            q[name_slot, lay.name + names_r] = DUP_MATCH * scale
            k[name_slot, lay.name + names_r] = 1.0
            q[pos_slot, lay.pos + ctx_r] = -2 * DUP_MATCH * scale  # not itself
            k[pos_slot, lay.pos + ctx_r] = 1.0
            copy_names(v, o, lay.name, lay.dtok, w)
            v[pos_slot, lay.pos + ctx_r] = 1.0
            o[lay.dpos + ctx_r, pos_slot] = w
        for (layer, h), w in IND_HEADS.items():
            q, k, v, o = head(layer, h)
            sink(q, k, IND_SINK)
            q[name_slot, lay.name + names_r] = IND_MATCH * scale
            k[name_slot, lay.prev + names_r] = 1.0
            copy_names(v, o, lay.prev, lay.dtok, w)
            v[pos_slot[1:], lay.pos + ctx_r[1:]] = 1.0
            o[lay.dpos + ctx_r[:-1], pos_slot[1:]] = w  # attended position minus one
        for (layer, h), w in SINH_HEADS.items():
            q, k, v, o = head(layer, h)
            sink(q, k, SINH_SINK)
            q[1, lay.const] = SINH_FLAG * scale
            k[1, lay.flag] = 1.0
            q[2, lay.const] = SINH_RAMP * scale
            k[2, lay.pos + ctx_r] = ctx_r.float() / nc
            copy_names(v, o, lay.dtok, lay.itok, w)
            v[pos_slot, lay.dpos + ctx_r] = 1.0
            v[pos_slot, lay.pos + ctx_r] = SINH_SELF_POS
            o[lay.ipos + ctx_r, pos_slot] = w
        for (layer, h), w in (NM_HEADS | BACKUP_COPY_HEADS).items():
            q, k, v, o = head(layer, h)
            sink(q, k, NM_SINK)
            q[1, lay.const] = NM_FLAG * scale
            k[1, lay.flag] = 1.0
            backup = (layer, h) in BACKUP_COPY_HEADS
            tok_pen = BCOPY_TOK_PENALTY if backup else NM_TOK_PENALTY
            q[name_slot, lay.itok + names_r] = -tok_pen * scale
            k[name_slot, lay.name + names_r] = 1.0
            if backup:
                q[name_slot, lay.out + names_r] = -BCOPY_OUT_PENALTY * scale
            pos_pen = BCOPY_POS_PENALTY if backup else NM_POS_PENALTY
            q[pos_slot, lay.ipos + ctx_r] = -pos_pen * scale
            k[pos_slot, lay.pos + ctx_r] = 1.0
            copy_names(v, o, lay.name, lay.out, w)
        for (layer, h), w in NEG_HEADS.items():
            q, k, v, o = head(layer, h)
            sink(q, k, NEG_SINK)
            q[name_slot, lay.out + names_r] = NEG_MATCH * scale
            k[name_slot, lay.name + names_r] = 1.0
            copy_names(v, o, lay.name, lay.out, -w)
        for (layer, h), w in BACKUP_SUPPRESS_HEADS.items():
            q, k, v, o = head(layer, h)
            sink(q, k, BSUP_SINK)
            q[1, lay.const] = BSUP_S2 * scale  # keys carrying a duplicate signal (S2)
            k[1, lay.dtok + names_r] = 1.0
            q[name_slot, lay.out + names_r] = BSUP_OUT * scale  # ... unless a name is predicted
            k[name_slot, lay.name + names_r] = 1.0
            copy_names(v, o, lay.dtok, lay.out, -w)
    model.eval()
    return model
