"""A small transformer trained here, from scratch, on IOI-template text (no pretrained weights).

Why this exists: every other IOI run in mikb is either GPT-2 small (whose circuit the paper
already describes) or a planted model (whose circuit mikb wrote in by hand), so neither is
independent evidence that the IOI discovery scripts find a circuit nobody put there. Here a
model learns the task from text, and the scripts have to find whatever it learned.

Data: the paper's own templates, names, places and objects (``mikb.data.ioi``, the templates of
one token length, ABBA and BABA), tokenised with GPT-2's BPE and then mapped onto a compact
vocabulary of the ids that occur (BOS, template words, places, objects, names), so the model's
vocabulary is about 150 tokens. Training sequences are a prompt followed by its answer (IO),
trained with next-token loss at every position. A fixed pool of tokenised prompts supplies
templates, places and objects; every batch writes freshly drawn names into each row's IO, S1,
S2 and answer slots (positions are known), so the model sees new name combinations at every
step. A fixed share of the unordered name pairs never appears in training (as IO and S in
either order) and is used for evaluation: accuracy there is accuracy on held-out pairs.

Everything that analyses the model gets an ordinary :class:`~mikb.data.ioi.IOIDataset` whose
token ids are the compact ones, so the library's IOI methods (path patching, DLA, mean
ablation, circuit evaluation) run unchanged. The two library helpers that look up GPT-2 ids
(the effective embedding behind the copy score, and the token-swap prompts of the signal
decomposition) have compact-vocabulary twins here.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mikb.data.gpt2_bpe import get_tokenizer
from mikb.data.ioi import (
    OBJECTS,
    PLACES,
    IOIDataset,
    default_templates,
    make_ioi_dataset,
    single_token_names,
)
from mikb.lm.lean_native import LeanConfig, Params, forward, init_params, trainable
from mikb.lm.training import OptimConfig, train
from mikb.methods.hooks import Head


@dataclass
class CompactVocab:
    """GPT-2 ids <-> compact ids; index 0 is BOS."""

    gpt2_ids: list[int]  # compact id -> GPT-2 id
    index: dict[int, int]  # GPT-2 id -> compact id
    names: list[str]
    name_ids: torch.Tensor  # compact id of each name in `names`

    @property
    def size(self) -> int:
        return len(self.gpt2_ids)

    def remap(self, t: torch.Tensor) -> torch.Tensor:
        lut = torch.full((max(self.gpt2_ids) + 1,), -1, dtype=torch.long)
        lut[torch.tensor(self.gpt2_ids)] = torch.arange(self.size)
        out = lut[t]
        if bool((out < 0).any()):
            raise KeyError("token outside the compact vocabulary")
        return out

    def words(self, ids) -> list[str]:
        tok = get_tokenizer()
        return [tok.token_str(self.gpt2_ids[int(i)]) for i in ids]


def build_vocab(templates: list[int] | None = None) -> CompactVocab:
    """Every id the templates (all places, objects and names) can produce, BOS first."""
    tok = get_tokenizer()
    names = single_token_names(tok)
    ds = make_ioi_dataset(400, seed=12345, templates=templates, names=names)
    ids = set(ds.tokens.flatten().tolist()) | set(ds.corrupted_tokens.flatten().tolist())
    for word in list(PLACES) + list(OBJECTS) + names:
        i = tok.single_token_id(" " + word)
        if i is not None:
            ids.add(i)
    bos = tok.bos_token_id
    ordered = [bos] + sorted(ids - {bos})
    index = {g: c for c, g in enumerate(ordered)}
    name_ids = torch.tensor([index[tok.encode(" " + n)[0]] for n in names])
    return CompactVocab(ordered, index, names, name_ids)


def compact_dataset(ds: IOIDataset, vocab: CompactVocab) -> IOIDataset:
    """The same prompts with compact token ids (positions, names and flags unchanged)."""
    return IOIDataset(
        prompts=ds.prompts, corrupted_prompts=ds.corrupted_prompts,
        tokens=vocab.remap(ds.tokens), corrupted_tokens=vocab.remap(ds.corrupted_tokens),
        io_ids=vocab.remap(ds.io_ids), s_ids=vocab.remap(ds.s_ids), pos=ds.pos, orders=ds.orders,
        template_ids=ds.template_ids, names=ds.names,
        flags={**ds.flags, "vocabulary": f"compact ({vocab.size} tokens), remapped from GPT-2 BPE ids"},
    )


def held_out_pairs(n_names: int, fraction: float, seed: int) -> set[tuple[int, int]]:
    """Unordered name-index pairs (i < j) kept out of training."""
    rng = random.Random(seed)
    pairs = [(i, j) for i in range(n_names) for j in range(i + 1, n_names)]
    rng.shuffle(pairs)
    return set(pairs[: int(round(fraction * len(pairs)))])


def _pair(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


def eval_dataset(n: int, seed: int, vocab: CompactVocab, held: set[tuple[int, int]],
                 held_out: bool) -> IOIDataset:
    """`n` IOI prompts whose (IO, S) pair is held out of training (or, with held_out False, is
    a training pair), compact ids, ABC corruptions as in the library."""
    name_of = {int(c): i for i, c in enumerate(vocab.name_ids)}
    size = 8 * n
    while True:
        big = make_ioi_dataset(size, seed=seed, names=vocab.names)
        io = [name_of[vocab.index[int(g)]] for g in big.io_ids]
        s = [name_of[vocab.index[int(g)]] for g in big.s_ids]
        keep = [i for i in range(size) if (_pair(io[i], s[i]) in held) == held_out]
        if min(sum(big.orders[i] == o for i in keep) for o in ("ABBA", "BABA")) >= (n + 1) // 2:
            break
        size *= 2
    # Alternate orders as the library does: take the first n/2 of each order.
    abba = [i for i in keep if big.orders[i] == "ABBA"][: (n + 1) // 2]
    baba = [i for i in keep if big.orders[i] == "BABA"][: n // 2]
    idx = [x for pair in zip(abba, baba, strict=False) for x in pair] + abba[len(baba):]
    return compact_dataset(big.subset(idx[:n]), vocab)


@dataclass
class PromptPool:
    """Tokenised prompts + answer (compact ids), with the name slots that batches overwrite."""

    tokens: torch.Tensor  # [n, seq + 1]: prompt then answer
    io_pos: torch.Tensor
    s1_pos: torch.Tensor
    s2_pos: torch.Tensor


def prompt_pool(n: int, seed: int, vocab: CompactVocab) -> PromptPool:
    ds = compact_dataset(make_ioi_dataset(n, seed=seed, names=vocab.names), vocab)
    tokens = torch.cat([ds.tokens, ds.io_ids[:, None]], dim=1)
    return PromptPool(tokens, ds.pos["IO"], ds.pos["S1"], ds.pos["S2"])


def sample_batch(pool: PromptPool, vocab: CompactVocab, train_pairs: torch.Tensor, batch: int,
                 gen: torch.Generator) -> torch.Tensor:
    """Pool rows with a fresh training (IO, S) name pair written into every name slot."""
    rows = torch.randint(len(pool.tokens), (batch,), generator=gen)
    pick = train_pairs[torch.randint(len(train_pairs), (batch,), generator=gen)]
    swap = torch.rand(batch, generator=gen) < 0.5  # either name of the pair can be IO
    io_idx = torch.where(swap, pick[:, 1], pick[:, 0])
    s_idx = torch.where(swap, pick[:, 0], pick[:, 1])
    io, s = vocab.name_ids[io_idx], vocab.name_ids[s_idx]
    toks = pool.tokens[rows].clone()
    b = torch.arange(batch)
    toks[b, pool.io_pos[rows]] = io
    toks[b, pool.s1_pos[rows]] = s
    toks[b, pool.s2_pos[rows]] = s
    toks[:, -1] = io
    return toks


@dataclass
class TrainResult:
    cfg: LeanConfig
    params: Params
    steps: list[int]
    train_loss: list[float]
    heldout_answer_loss: list[float]
    heldout_accuracy: list[float]
    heldout_logit_diff: list[float]


def model_config(p: dict, vocab: CompactVocab, seq: int) -> LeanConfig:
    d_model, n_heads = int(p["d_model"]), int(p["n_heads"])
    return LeanConfig(n_layers=int(p["n_layers"]), n_heads=n_heads, d_model=d_model,
                      d_head=d_model // n_heads, d_vocab=vocab.size, n_ctx=seq,
                      attn_only=bool(p["attn_only"]), d_mlp=int(p.get("d_mlp") or 4 * d_model),
                      act_fn="gelu")


def train_ioi(p: dict, vocab: CompactVocab, held: set[tuple[int, int]], heldout: IOIDataset,
              seed: int, progress=None, log=None) -> TrainResult:
    """Train the lean model with next-token loss on IOI text; evaluate answer loss, accuracy and
    logit difference on the held-out-pair prompts every ``eval_every`` steps."""
    pool = prompt_pool(int(p["pool_size"]), seed + 7, vocab)
    n = len(vocab.names)
    pairs = torch.tensor([(i, j) for i in range(n) for j in range(i + 1, n) if (i, j) not in held])
    cfg = model_config(p, vocab, pool.tokens.shape[1])
    params = init_params(cfg, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    res = TrainResult(cfg, params, [], [], [], [], [])
    last_loss = [math.nan]
    b = torch.arange(len(heldout))

    def loss_fn(prm: Params, step: int) -> torch.Tensor:
        toks = sample_batch(pool, vocab, pairs, int(p["batch"]), gen)
        logits = forward(cfg, prm, toks[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, cfg.d_vocab), toks[:, 1:].reshape(-1))
        last_loss[0] = float(loss.detach())
        return loss

    def on_eval(step: int, prm: Params) -> bool:
        end = forward(cfg, prm, heldout.tokens)[b, heldout.end]
        ld = end[b, heldout.io_ids] - end[b, heldout.s_ids]
        res.steps.append(step)
        res.train_loss.append(last_loss[0])
        res.heldout_answer_loss.append(float(F.cross_entropy(end, heldout.io_ids)))
        res.heldout_accuracy.append(float((ld > 0).float().mean()))
        res.heldout_logit_diff.append(float(ld.mean()))
        if log is not None and step % (10 * int(p["eval_every"])) == 0:
            log(f"step {step}: train loss {last_loss[0]:.3f}, held-out answer loss "
                f"{res.heldout_answer_loss[-1]:.3f}, accuracy {res.heldout_accuracy[-1]:.3f}, "
                f"logit diff {res.heldout_logit_diff[-1]:.2f}")
        return False

    optim = OptimConfig(lr=float(p["lr"]), weight_decay=float(p["weight_decay"]),
                        warmup_steps=int(p["warmup_steps"]), grad_clip=1.0)
    train(params, trainable(cfg, params), loss_fn, int(p["steps"]), optim, int(p["eval_every"]),
          on_eval, progress)
    res.params = params
    return res


def effective_name_embeddings(model, vocab: CompactVocab) -> torch.Tensor:
    """Residual stream after block 0 at each name token preceded by BOS (compact twin of
    ``mikb.methods.copy_suppression.effective_name_embeddings``), [n_names, d_model]."""
    tokens = torch.stack([torch.zeros_like(vocab.name_ids), vocab.name_ids], dim=1)
    name = "blocks.1.hook_resid_pre" if model.cfg.n_layers > 1 else "ln_final.hook_normalized"
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n == name)
    return cache[name][:, 1]


def copy_scores(model, vocab: CompactVocab, heads: list[Head], k: int = 5,
                negative: bool = False) -> dict[Head, float]:
    """Wang et al.'s copy score over the compact vocabulary: the share of names whose own token
    is in the top k (bottom k when ``negative``) of W_U applied to the head's OV output of the
    name's effective embedding (no norms in these models)."""
    emb = effective_name_embeddings(model, vocab)
    out: dict[Head, float] = {}
    with torch.no_grad():
        for la, h in heads:
            attn = model.blocks[la].attn
            logits = emb @ attn.W_V[h] @ attn.W_O[h] @ model.W_U
            if negative:
                logits = -logits
            top = logits.topk(k, dim=-1).indices
            out[(la, h)] = (top == vocab.name_ids[:, None]).any(-1).float().mean().item()
    return out


def default_template_ids() -> list[int]:
    return default_templates()
