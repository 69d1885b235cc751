"""A plain-tensor forward pass over a TransformerBridge's weights, for fast exact patching.

Why not hooks: a hooked forward recomputes every layer and the full vocabulary for every
patched run. Patching methods only need the layers *after* the patch and the few logits the
metric reads, and they need many runs that differ only by a change of one block's attention
output. This module runs the same arithmetic as the bridge on raw weight tensors (read by
:mod:`mikb.methods._weights_adapter`, which names every architectural feature) so callers can
resume from any layer, batch many runs in one matrix multiply and stop at the logits the
metric reads. The tests in ``tests/test_fast_patching.py`` and
``tests/test_fast_patching_families.py`` hold it to TransformerLens's hook-based results.

Features handled here, each in one place: RMSNorm and LayerNorm (``NormParams``), rotary
positions (``Rope``, applied to q and k at absolute positions, so resumed runs rotate
correctly), grouped-query attention (key-value heads repeated per query group), gated MLPs,
parallel attention/MLP blocks (the MLP reads the block input; a patch of a head leaves it
unchanged), attention and logit soft-caps, Gemma 2's post-attention and post-MLP norms and
embedding scale, and sliding-window attention.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from mikb.methods._weights_adapter import (  # noqa: F401  (re-exported: the adapter's types)
    LayerWeights,
    ModelWeights,
    NormParams,
    Rope,
    extract_weights,
)

# -- the metric's view of the logits ------------------------------------------------------------


@dataclass(frozen=True)
class LogitReadout:
    """The logits a metric reads: some positions and some (or all) vocabulary columns.

    ``fn`` maps the selected logits to one value per example. With ``positions`` ``None`` (the
    last position) or ``[batch]`` (one per example) and ``token_ids`` ``[batch, k]`` it gets
    ``[batch, k]`` (logit differences: the fast paths then skip the rest of the unembedding
    and every other position at the last layer). With ``positions`` ``[batch, P]`` it gets
    ``[batch, P, k]``, and with ``token_ids`` ``None`` the whole vocabulary,
    ``[batch, (P,) d_vocab]``: what KL divergence, log-probability and loss need (ACDC, MIB).
    An ``fn`` that returns one value per position, ``[batch, P]``, is averaged over them.
    """

    token_ids: Tensor | None  # [batch, k] vocabulary columns read per example; None = all
    fn: Callable[..., Tensor]  # selected logits (, data) -> [batch]
    positions: Tensor | None = None  # [batch] or [batch, P]; None = last
    data: Tensor | None = None  # per-example tensor fn also reads (reference log-probs, targets)

    @property
    def several(self) -> bool:
        return self.positions is not None and self.positions.ndim == 2

    def positions_for(self, batch: int, seq: int, device: torch.device | str = "cpu") -> Tensor:
        """Positions read, always as ``[batch, P]``, on ``device`` (the activations')."""
        if self.positions is None:
            return torch.full((batch, 1), seq - 1, dtype=torch.long, device=device)
        pos = self.positions.long().to(device)
        return pos if pos.ndim == 2 else pos[:, None]

    def apply(self, selected: Tensor) -> Tensor:
        """``fn`` on logits ``[batch, P, k or d_vocab]`` (P dropped unless several)."""
        chosen = selected if self.several else selected[:, 0]
        out = self.fn(chosen) if self.data is None else self.fn(chosen, self.data.to(selected.device))
        return out.mean(-1) if self.several and out.ndim == 2 else out  # per-position values: mean

    def per_example(self, logits: Tensor) -> Tensor:
        """The metric per example from full logits ``[batch, pos, d_vocab]`` (the slow way)."""
        batch, seq = logits.shape[:2]
        pos = self.positions_for(batch, seq, logits.device)
        at_pos = logits[torch.arange(batch, device=logits.device)[:, None], pos]  # [b, P, V]
        if self.token_ids is not None:
            ids = self.token_ids.to(logits.device)[:, None, :].expand(-1, pos.shape[1], -1)
            at_pos = at_pos.gather(2, ids)
        return self.apply(at_pos)

    def as_tl_metric(self) -> Callable[[Tensor], Tensor]:
        """A TransformerLens-style metric (full logits -> batch-mean scalar)."""
        return lambda logits: self.per_example(logits).mean()

    def subset(self, rows: slice) -> LogitReadout:
        """The same metric on a slice of the examples."""
        return LogitReadout(
            None if self.token_ids is None else self.token_ids[rows], self.fn,
            None if self.positions is None else self.positions[rows],
            None if self.data is None else self.data[rows])


def logit_diff_readout(answer_ids: Tensor, positions: Tensor | None = None) -> LogitReadout:
    """Logit of ``answer_ids[:, 0]`` minus logit of ``answer_ids[:, 1]`` (IOI's metric)."""
    return LogitReadout(
        token_ids=answer_ids.long(), fn=lambda sel: sel[..., 0] - sel[..., 1], positions=positions
    )


def _as_matrix(positions: Tensor) -> Tensor:
    return positions.long() if positions.ndim == 2 else positions.long()[:, None]


def _kl(logits: Tensor, ref: Tensor) -> Tensor:
    return (ref.exp() * (ref - logits.log_softmax(-1))).sum(-1).mean(-1)


def _logprob(logits: Tensor, targets: Tensor) -> Tensor:
    return logits.log_softmax(-1).gather(-1, targets[..., None])[..., 0].mean(-1)


def _neg_logprob(logits: Tensor, targets: Tensor) -> Tensor:
    return -_logprob(logits, targets)


def kl_readout(reference_logits: Tensor, positions: Tensor) -> LogitReadout:
    """KL(reference || patched) over the whole vocabulary, averaged over ``positions``
    ``[batch, P]`` (ACDC's and MIB's faithfulness metric; lower = closer to the reference).
    ``reference_logits`` is ``[batch, P, d_vocab]`` at those positions (e.g. the clean run)."""
    return LogitReadout(None, _kl, _as_matrix(positions), reference_logits.log_softmax(-1))


def logprob_readout(target_ids: Tensor, positions: Tensor) -> LogitReadout:
    """Mean log-probability of ``target_ids`` ``[batch, P]`` at ``positions`` ``[batch, P]``
    (needs the whole vocabulary for the normaliser)."""
    return LogitReadout(None, _logprob, _as_matrix(positions), _as_matrix(target_ids))


def loss_readout(tokens: Tensor, positions: Tensor | None = None) -> LogitReadout:
    """Next-token loss (mean negative log-probability) at ``positions`` ``[batch, P]``
    (default: every position but the last), predicting the token after each."""
    if positions is None:
        positions = torch.arange(tokens.shape[1] - 1, device=tokens.device).expand(tokens.shape[0], -1)
    positions = _as_matrix(positions)
    return LogitReadout(None, _neg_logprob, positions, tokens.gather(1, positions + 1))


# -- the forward pieces -------------------------------------------------------------------------


def norm(x: Tensor, params: NormParams | None) -> Tensor:
    """Apply a norm (``None`` = identity); each norm carries its own eps."""
    return x if params is None else params(x)


def soft_cap(x: Tensor, cap: float | None) -> Tensor:
    return x if cap is None else cap * torch.tanh(x / cap)


def embed(w: ModelWeights, tokens: Tensor) -> Tensor:
    """Token (plus learned position) embedding: ``blocks.0.hook_resid_pre``."""
    x = w.w_e[tokens]
    if w.embed_scale != 1.0:
        x = x * torch.tensor(w.embed_scale, dtype=x.dtype, device=x.device)
    return x if w.w_pos is None else x + w.w_pos[: tokens.shape[1]]


def project(lw: LayerWeights, which: str, h: Tensor) -> Tensor:
    """``h @ W_which + b_which`` for one of q, k, v on flattened rows ``[rows, d_model]``."""
    return torch.addmm(getattr(lw, f"b_{which}"), h, getattr(lw, f"w_{which}"))


def heads(w: ModelWeights, flat: Tensor, n: int, t: int) -> Tensor:
    """Projected rows ``[n * t, heads * d_head]`` -> ``[n, heads, t, d_head]``."""
    return flat.view(n, t, -1, w.d_head).transpose(1, 2)


def rotate(w: ModelWeights, x: Tensor, start: int = 0, positions: Tensor | None = None) -> Tensor:
    """Rotary positions on q or k ``[n, heads, t, d_head]`` at ``start + arange(t)``, or at
    ``positions`` ``[n]`` (one per row, for a single-position query)."""
    if w.rope is None:
        return x
    if positions is None:
        positions = torch.arange(start, start + x.shape[2], device=x.device)
    else:
        positions = positions.view(-1, 1, 1)
    return w.rope.apply(x, positions)


def project_head_input(w: ModelWeights, layer: int, which: str, x: Tensor, start: int = 0) -> Tensor:
    """One of q/k/v ``[n, heads, t, d_head]`` from a residual ``[n, t, d]`` (rotated for q, k)."""
    lw = w.layers[layer]
    n, t, _ = x.shape
    out = heads(w, project(lw, which, norm(x, lw.ln1).reshape(n * t, -1)), n, t)
    return out if which == "v" else rotate(w, out, start)


def qkv(w: ModelWeights, layer: int, x: Tensor, start: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Queries ``[n, n_heads, t, d_head]``, keys and values ``[n, kv_heads, t, d_head]``.

    ``start`` is the absolute position of ``x``'s first row (for rotary positions)."""
    return tuple(project_head_input(w, layer, c, x, start) for c in "qkv")  # type: ignore[return-value]


def _allowed(w: ModelWeights, layer: int, q_pos: Tensor, k_pos: Tensor) -> Tensor:
    """Which keys each query may attend to: causal, and within the layer's window."""
    diff = q_pos[..., :, None] - k_pos[None, :]
    ok = diff >= 0
    window = w.layers[layer].window
    return ok if window is None else ok & (diff < window)


def _attention(w: ModelWeights, layer: int, q: Tensor, k: Tensor, v: Tensor, allowed: Tensor) -> Tensor:
    """Softmax attention with the model's scale, soft-cap and key-value grouping."""
    if w.group > 1:
        k = k.repeat_interleave(w.group, dim=1)
        v = v.repeat_interleave(w.group, dim=1)
    scale = 1.0 / w.layers[layer].attn_scale
    if w.attn_soft_cap is None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=scale)
    scores = soft_cap((q @ k.transpose(-1, -2)) * scale, w.attn_soft_cap)
    return scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v


def attend(
    w: ModelWeights,
    layer: int,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    prefix: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """Causal attention; returns ``z`` as ``[n, n_heads, pos_q, d_head]``.

    ``prefix`` holds keys and values ``[n, kv_heads, start, d_head]`` of positions before the
    ones in ``q``/``k``/``v`` (positions a patch cannot change, reused from a cached run).
    """
    start = 0 if prefix is None else prefix[0].shape[2]
    if start:
        k = torch.cat([prefix[0], k], dim=2)  # type: ignore[index]
        v = torch.cat([prefix[1], v], dim=2)  # type: ignore[index]
    t = q.shape[2]
    positions = torch.arange(start + t, device=q.device)  # on q's device: CUDA needs no CPU mask
    return _attention(w, layer, q, k, v, _allowed(w, layer, positions[start:], positions))


def attn_sum(w: ModelWeights, layer: int, z: Tensor) -> Tensor:
    """Sum of the heads' writes plus ``b_O``, ``[n, pos, d]`` from ``z`` ``[n, heads, pos, dh]``
    (before Gemma 2's post-attention norm: per-head changes add here)."""
    lw = w.layers[layer]
    n, _, t, _ = z.shape
    return torch.addmm(lw.b_o, z.transpose(1, 2).reshape(n * t, -1), lw.w_o).view(n, t, -1)


def attn_write(w: ModelWeights, layer: int, summed: Tensor) -> Tensor:
    """What the attention block adds to the residual, from :func:`attn_sum`'s output."""
    return norm(summed, w.layers[layer].attn_post)


def attn_out(w: ModelWeights, layer: int, z: Tensor) -> Tensor:
    """The attention block's residual write ``[n, pos, d]``."""
    return attn_write(w, layer, attn_sum(w, layer, z))


def mlp(w: ModelWeights, layer: int, x: Tensor) -> Tensor:
    """The MLP's residual write from the residual it reads (zero for attention-only models)."""
    lw = w.layers[layer]
    if lw.w_in is None:
        return torch.zeros_like(x)
    shape = x.shape
    h = norm(x, lw.ln2).reshape(-1, shape[-1])
    hidden = torch.addmm(lw.b_in, h, lw.w_in)
    if lw.w_gate is not None:
        hidden = w.act(torch.addmm(lw.b_gate, h, lw.w_gate)) * hidden
    else:
        hidden = w.act(hidden)
    return norm(torch.addmm(lw.b_out, hidden, lw.w_out).view(shape), lw.mlp_post)


def block(
    w: ModelWeights, layer: int, x: Tensor, prefix: tuple[Tensor, Tensor] | None = None
) -> Tensor:
    """One full block: ``resid_pre[layer] -> resid_pre[layer + 1]`` (positions in ``x`` only)."""
    start = 0 if prefix is None else prefix[0].shape[2]
    q, k, v = qkv(w, layer, x, start)
    a = attn_out(w, layer, attend(w, layer, q, k, v, prefix))
    if w.parallel:
        return x + a + mlp(w, layer, x)
    x = x + a
    return x + mlp(w, layer, x)


def last_block_at(
    w: ModelWeights, x: Tensor, pos: Tensor, prefix: tuple[Tensor, Tensor] | None = None
) -> Tensor:
    """The final block evaluated only at the read-out positions: returns ``[n, P, d]``.

    Keys and values are still needed at every position, but the queries, attention output
    and MLP are computed for the read-out positions alone. ``pos`` ``[n, P]`` indexes ``x``'s
    positions; ``prefix`` (keys, values) covers positions before them.
    """
    layer = w.n_layers - 1
    n, t, _ = x.shape
    rows = torch.arange(n, device=x.device)[:, None]
    lw = w.layers[layer]
    start = 0 if prefix is None else prefix[0].shape[2]
    h = norm(x, lw.ln1).reshape(n * t, -1)
    k = rotate(w, heads(w, project(lw, "k", h), n, t), start)
    v = heads(w, project(lw, "v", h), n, t)
    if start:
        k, v = torch.cat([prefix[0], k], dim=2), torch.cat([prefix[1], v], dim=2)  # type: ignore[index]
    x_pos = x[rows, pos]  # [n, P, d]
    p = pos.shape[1]
    q = heads(w, project(lw, "q", norm(x_pos, lw.ln1).reshape(n * p, -1)), n, p)
    if w.rope is not None:
        q = w.rope.apply(q, (pos + start)[:, None, :])
    k_pos = torch.arange(start + t, device=x.device)
    allowed = _allowed(w, layer, pos + start, k_pos)[:, None]  # [n, 1, P, keys]
    a = attn_out(w, layer, _attention(w, layer, q, k, v, allowed))
    if w.parallel:
        return x_pos + a + mlp(w, layer, x_pos)
    x_pos = x_pos + a
    return x_pos + mlp(w, layer, x_pos)


def final_logits(w: ModelWeights, final_resid: Tensor) -> Tensor:
    """Every vocabulary logit from the final residual (for full-vocabulary metrics)."""
    out = norm(final_resid, w.ln_final) @ w.w_u
    return soft_cap(out if w.b_u is None else out + w.b_u, w.logit_soft_cap)


def read_logits(w: ModelWeights, final_resid: Tensor, token_ids: Tensor | None) -> Tensor:
    """Logits of the named columns only, ``[n, P, d] x [n, k] -> [n, P, k]`` (all columns,
    ``[n, P, d_vocab]``, with ``token_ids`` None)."""
    if token_ids is None:
        return final_logits(w, final_resid)
    h = norm(final_resid, w.ln_final)
    cols = w.w_u.T[token_ids]  # [n, k, d]
    out = torch.einsum("npd,nkd->npk", h, cols)
    return soft_cap(out if w.b_u is None else out + w.b_u[token_ids][:, None], w.logit_soft_cap)


def readout_metric(w: ModelWeights, readout: LogitReadout, final_resid: Tensor, repeats: int = 1) -> Tensor:
    """The readout's metric from final residuals at its positions ``[repeats * batch, P, d]``
    (runs stacked run-major), as ``[repeats * batch]``."""
    ids = None if readout.token_ids is None else readout.token_ids.to(final_resid.device).repeat(repeats, 1)
    logits = read_logits(w, final_resid, ids)
    if repeats == 1:
        return readout.apply(logits)
    batch = logits.shape[0] // repeats
    return torch.cat([readout.apply(logits[i * batch : (i + 1) * batch]) for i in range(repeats)])


@dataclass
class RunCache:
    """Per-layer residuals and head outputs of one unpatched run (our own forward).

    ``resid_mid[layer]`` is the block input plus its attention write; in a parallel block
    that is not a point the model passes through, but it is where a head's change lands,
    with ``mlp_out[layer]`` (the MLP's write, read from the block input) added after.
    ``attn_sum`` is kept only for models with a post-attention norm (Gemma 2), where a
    head's change has to pass through that norm.
    """

    resid_pre: list[Tensor]  # n_layers + 1 entries; the last is the final residual
    resid_mid: list[Tensor]
    z: list[Tensor]  # [batch, n_heads, pos, d_head]
    k: list[Tensor]  # [batch, kv_heads, pos, d_head] (rotated)
    v: list[Tensor]
    mlp_out: list[Tensor]  # parallel blocks only
    attn_sum: list[Tensor]  # post-attention-norm models only

    def prefix(self, layer: int, start: int, repeats: int) -> tuple[Tensor, Tensor] | None:
        """Keys and values of positions ``< start`` at ``layer``, tiled for ``repeats`` runs."""
        if start == 0:
            return None
        k = self.k[layer][:, :, :start].repeat(repeats, 1, 1, 1)
        v = self.v[layer][:, :, :start].repeat(repeats, 1, 1, 1)
        return k, v


def run_with_cache(
    w: ModelWeights, tokens: Tensor, *, resid: bool = True, kv_prefix: int = 0
) -> RunCache:
    """An unpatched forward keeping what the patching methods resume from.

    ``z`` is always kept; residuals only with ``resid``; keys and values only for the first
    ``kv_prefix`` positions (the ones patched runs reuse). Keeping less is what keeps the
    methods' peak memory near a single hooked forward's.
    """
    x = embed(w, tokens)
    cache = RunCache(resid_pre=[], resid_mid=[], z=[], k=[], v=[], mlp_out=[], attn_sum=[])
    for layer in range(w.n_layers):
        lw = w.layers[layer]
        if resid:
            cache.resid_pre.append(x)
        q, k, v = qkv(w, layer, x)
        z = attend(w, layer, q, k, v)
        cache.z.append(z)
        cache.k.append(k[:, :, :kv_prefix].clone())
        cache.v.append(v[:, :, :kv_prefix].clone())
        summed = attn_sum(w, layer, z)
        if resid and lw.attn_post is not None:
            cache.attn_sum.append(summed)
        mid = x + attn_write(w, layer, summed)
        if w.parallel:
            m = mlp(w, layer, x)
            if resid:
                cache.mlp_out.append(m)
            x = mid + m
        else:
            x = mid + mlp(w, layer, mid)
        if resid:
            cache.resid_mid.append(mid)
    if resid:
        cache.resid_pre.append(x)
    return cache


def head_write(w: ModelWeights, layer: int, z_head: Tensor, head: int) -> Tensor:
    """One head's residual write without bias: ``z[:, head] @ W_O[head]`` -> ``[n, pos, d]``."""
    return z_head @ w.w_o_per_head(layer)[head]


def first_difference(clean: Tensor, corrupted: Tensor) -> int:
    """The first position at which any example's two prompts differ (``pos`` if none).

    Attention is causal, so every activation at earlier positions is the same in the clean,
    corrupted and any patched run: patched runs need not recompute them.
    """
    differs = (clean != corrupted).any(dim=0).nonzero()
    return int(differs[0]) if len(differs) else int(clean.shape[1])


def mid_after_attn_change(w: ModelWeights, layer: int, base: RunCache, deltas: Tensor, start: int) -> Tensor:
    """``resid_mid[layer]`` of runs whose attention sum is ``base``'s plus ``deltas``
    ``[runs, batch, pos - start, d]`` (positions from ``start``)."""
    if w.layers[layer].attn_post is None:
        return base.resid_mid[layer][:, start:].unsqueeze(0) + deltas
    summed = base.attn_sum[layer][:, start:].unsqueeze(0) + deltas
    return base.resid_pre[layer][:, start:].unsqueeze(0) + attn_write(w, layer, summed)


def resume_from_mid(
    w: ModelWeights,
    layer: int,
    base: RunCache,
    deltas: Tensor,
    readout: LogitReadout,
    start: int = 0,
    max_rows: int = 2048,
) -> Tensor:
    """Metric per (run, example) for runs whose attention output at ``layer`` (the sum of
    its heads' writes) is ``base``'s plus a delta.

    ``deltas`` is ``[runs, batch, pos, d]`` and must be zero before position ``start``;
    positions before ``start`` are taken from ``base`` instead of recomputed. Returns
    ``[runs, batch]``. Runs go in chunks of at most ``max_rows`` (example, position) rows so
    memory stays bounded however many runs are asked for.
    """
    runs, batch, t, _ = deltas.shape
    pos = readout.positions_for(batch, t, deltas.device)  # [batch, P]
    start = min(start, int(pos.min()))
    per_chunk = max(1, max_rows // (batch * (t - start)))
    per_chunk = -(-runs // -(-runs // per_chunk))  # same number of chunks, balanced sizes
    out = []
    for first in range(0, runs, per_chunk):
        d = deltas[first : first + per_chunk, :, start:]
        r = d.shape[0]
        x = mid_after_attn_change(w, layer, base, d, start).reshape(r * batch, t - start, -1)
        if w.parallel:
            x = x + base.mlp_out[layer][:, start:].repeat(r, 1, 1)
        rpos = pos.repeat(r, 1) - start
        if layer == w.n_layers - 1:
            rows = torch.arange(r * batch, device=x.device)[:, None]
            final = x[rows, rpos]
            if not w.parallel:
                final = final + mlp(w, layer, final)
        else:
            if not w.parallel:
                x = x + mlp(w, layer, x)
            for later in range(layer + 1, w.n_layers - 1):
                x = block(w, later, x, base.prefix(later, start, r))
            final = last_block_at(w, x, rpos, base.prefix(w.n_layers - 1, start, r))
        out.append(readout_metric(w, readout, final, r).view(r, batch))
    return torch.cat(out)


def metric_from_tokens(w: ModelWeights, tokens: Tensor, readout: LogitReadout) -> Tensor:
    """The unpatched metric per example."""
    x = embed(w, tokens)
    for layer in range(w.n_layers - 1):
        x = block(w, layer, x)
    pos = readout.positions_for(tokens.shape[0], tokens.shape[1], x.device)
    return readout_metric(w, readout, last_block_at(w, x, pos))
