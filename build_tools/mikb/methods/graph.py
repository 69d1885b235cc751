"""One computational graph per model, and a forward pass that runs any subgraph of it.

Nodes follow MIB / EAP-IG names: ``input`` (token plus position embedding), ``a{L}.h{H}``
(one head's output), ``m{L}`` (one MLP) and ``logits``. A head reads the residual stream
three times, so its incoming edges are split by input: ``parent->a{L}.h{H}<q|k|v>``; an MLP
or the logits read once: ``parent->m{L}``. Every writer feeds every reader after it (heads of
layer L read the residual before layer L; the MLP of layer L reads it after layer L's heads).
ACDC, EAP, EAP-IG, exact edge patching and the ground truth of compiled models all speak in
these edge ids; :mod:`mikb.methods.scores` holds the one score type over them.

:class:`GraphForward` computes the model on plain tensors (read from a ``TransformerBridge``
by :func:`mikb.methods._fast_forward.extract_weights`) with every reader's input rebuilt as a
sum over its incoming edges, each edge carrying either its writer's live output or the
writer's ablated output (zero, mean or resampled from corrupted prompts), chosen by a mask.
With the mask all ones it is the model; all zeros (resample ablation) it is the model on the
corrupted prompts; many masks run in one batch. Each head's q, k and v get their own input
(with their own LayerNorm), which is what makes q/k/v edges separately patchable.

Gemma 2 normalises the sum of a layer's heads (plus ``b_O``) before it joins the residual, so
its heads do not add into a reader's input: there each reader gets that layer's norm of the
sum of its own incoming head edges, live or ablated. Ablating one edge then means what path
patching means (the reader sees the layer's output with that sender alone changed), and the
all-live and all-ablated graphs are still the model on clean and corrupted prompts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from mikb.methods._fast_forward import (
    ModelWeights,
    NormParams,
    embed,
    extract_weights,
    final_logits,
    mlp,
    norm,
    rotate,
    soft_cap,
)

QKV = ("q", "k", "v")


@dataclass(frozen=True)
class Graph:
    """Nodes and edges of a model's residual-stream graph, in a fixed order."""

    n_layers: int
    n_heads: int
    has_mlp: bool = True
    parallel: bool = False  # the MLP of layer L reads the residual before layer L's heads

    @classmethod
    def from_model(cls, model: torch.nn.Module) -> Graph:
        cfg = model.cfg
        return cls(int(cfg.n_layers), int(cfg.n_heads), not bool(getattr(cfg, "attn_only", False)))

    @classmethod
    def from_weights(cls, w: ModelWeights) -> Graph:
        return cls(w.n_layers, w.n_heads, w.layers[0].w_in is not None, w.parallel)

    def feeds(self, writer: str, reader: str) -> bool:
        """Whether ``writer``'s output is in ``reader``'s input (forward order, and in a
        parallel block the MLP does not see its own layer's heads)."""
        if not self.slot(writer) < self.slot(reader):
            return False
        if self.parallel and reader.startswith("m") and writer.startswith("a"):
            return writer.split(".")[0][1:] != reader[1:]
        return True

    @cached_property
    def writers(self) -> tuple[str, ...]:
        out = ["input"]
        for la in range(self.n_layers):
            out += [f"a{la}.h{h}" for h in range(self.n_heads)]
            if self.has_mlp:
                out.append(f"m{la}")
        return tuple(out)

    @cached_property
    def readers(self) -> tuple[tuple[str, str | None], ...]:
        """(node, input) in forward order: per layer q of each head, k, v, then the MLP."""
        out: list[tuple[str, str | None]] = []
        for la in range(self.n_layers):
            for c in QKV:
                out += [(f"a{la}.h{h}", c) for h in range(self.n_heads)]
            if self.has_mlp:
                out.append((f"m{la}", None))
        out.append(("logits", None))
        return tuple(out)

    @staticmethod
    def slot(node: str) -> float:
        """Order in the forward pass: input, then per layer its heads, then its MLP, logits."""
        if node == "input":
            return -1
        if node == "logits":
            return float("inf")
        layer = int(node[1:].split(".")[0])
        return 2 * layer + (1 if node.startswith("m") else 0)

    @cached_property
    def edges(self) -> tuple[str, ...]:
        """Edge ids, grouped by reader in forward order."""
        return tuple(e for e, _, _ in self._edge_triples)

    @cached_property
    def _edge_triples(self) -> tuple[tuple[str, int, int], ...]:
        out = []
        for r, (node, c) in enumerate(self.readers):
            for w, writer in enumerate(self.writers):
                if self.feeds(writer, node):
                    out.append((edge_id(writer, node, c), w, r))
        return tuple(out)

    @cached_property
    def edge_index(self) -> dict[str, int]:
        return {e: i for i, e in enumerate(self.edges)}

    @cached_property
    def edge_writer(self) -> Tensor:
        return torch.tensor([w for _, w, _ in self._edge_triples], dtype=torch.long, device="cpu")

    @cached_property
    def edge_reader(self) -> Tensor:
        return torch.tensor([r for _, _, r in self._edge_triples], dtype=torch.long, device="cpu")

    @property
    def n_edges(self) -> int:
        return len(self.edges)

    def parent(self, edge: str) -> str:
        return edge.split("->")[0]

    def child(self, edge: str) -> str:
        return edge.split("->")[1].split("<")[0]

    def dense(self, values: Tensor) -> Tensor:
        """Edge values ``[..., n_edges]`` -> ``[..., n_writers, n_readers]`` (zero off-graph)."""
        shape = values.shape[:-1]
        out = values.new_zeros(*shape, len(self.writers), len(self.readers))
        out[..., self.edge_writer.to(values.device), self.edge_reader.to(values.device)] = values
        return out

    def mask_from(self, kept: set[str] | list[str]) -> Tensor:
        m = torch.zeros(self.n_edges, device="cpu")
        for e in kept:
            m[self.edge_index[e]] = 1.0
        return m


def edge_id(writer: str, reader: str, qkv: str | None = None) -> str:
    return f"{writer}->{reader}" + (f"<{qkv}>" if qkv else "")


@dataclass
class Run:
    """What one graph forward returns: logits, and (when asked) writer outputs and reader
    inputs, both ``[n, batch, pos, d_model]`` in the graph's writer / reader order."""

    logits: Tensor  # [batch, pos, d_vocab_out]
    writer_out: Tensor | None = None
    reader_in: list[Tensor] | None = None


class GraphForward:
    """The model's forward pass over its graph (see the module docstring)."""

    def __init__(self, model: torch.nn.Module | ModelWeights, graph: Graph | None = None,
                 causal: bool | None = None):
        self.w = model if isinstance(model, ModelWeights) else extract_weights(model, bidirectional_ok=True)
        if graph is None:
            graph = Graph.from_weights(self.w)
        if graph.parallel != self.w.parallel:
            raise ValueError("the graph's block layout (parallel or not) differs from the model's")
        self.graph = graph
        if causal is None:
            causal = getattr(getattr(model, "cfg", None), "attention_dir", "causal") != "bidirectional"
        self.causal = causal
        H, dh, group = self.w.n_heads, self.w.d_head, self.w.group
        # With grouped-query attention the shared key/value projection is applied to each
        # query head's own input: k and v edges are per query head, as in MHA, and the model
        # is recovered whenever a group's inputs agree (always, with the mask all ones).
        self._qkv_w = [{c: self.w.per_head(la, c).repeat_interleave(1 if c == "q" else group, 0)
                        for c in QKV} for la in range(self.w.n_layers)]
        self._qkv_b = [{c: getattr(self.w.layers[la], f"b_{c}").view(-1, dh)
                        .repeat_interleave(1 if c == "q" else group, 0) for c in QKV}
                       for la in range(self.w.n_layers)]
        assert all(self._qkv_w[la][c].shape[0] == H for la in range(self.w.n_layers) for c in QKV)
        self._wo = [self.w.w_o_per_head(la) for la in range(self.w.n_layers)]
        # Gemma 2 normalises the sum of a layer's heads before it joins the residual, so a
        # head's write is not additive there: each reader gets that layer's norm of the sum of
        # its own incoming head edges (live or ablated). ``_post_heads`` lists those layers'
        # head writer indices; every other writer adds linearly.
        self._post_heads = {la: [g_i for g_i, name in enumerate(graph.writers)
                                 if name.startswith(f"a{la}.h")]
                            for la in range(self.w.n_layers) if self.w.layers[la].attn_post is not None}
        linear = torch.ones(len(graph.writers), dtype=torch.bool)
        for idx in self._post_heads.values():
            linear[idx] = False
        self._linear_writers = linear

    @property
    def post_norm(self) -> bool:
        """Whether some layer normalises its heads' sum (heads are not additive writers)."""
        return bool(self._post_heads)

    def embed(self, tokens: Tensor) -> Tensor:
        return embed(self.w, tokens)

    def writer_outputs(self, tokens: Tensor) -> Tensor:
        """Every writer's output on unpatched prompts, ``[n_writers, batch, pos, d_model]``."""
        return self.run(tokens, keep=True).writer_out  # type: ignore[return-value]

    def run(
        self,
        tokens: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        ablated: Tensor | None = None,
        input_embed: Tensor | None = None,
        keep: bool = False,
    ) -> Run:
        """Forward over the graph.

        ``mask``: ``[n_edges]`` or ``[V, n_edges]`` (1 = edge carries the live output, 0 =
        the ablated one; fractional values interpolate). With ``V`` masks the prompts are
        repeated ``V`` times, variant-major: output batch is ``V * batch``. ``ablated``:
        ``[n_writers, batch or 1, pos, d_model]`` writer outputs used where the mask is 0
        (needed whenever a mask is given). ``input_embed`` replaces the embedding of
        ``tokens``. ``keep`` returns writer outputs and reader inputs (for gradients).
        """
        w, g = self.w, self.graph
        x0 = self.embed(tokens) if input_embed is None else input_embed  # type: ignore[arg-type]
        n, t, d = x0.shape
        dense = None
        n_var = 1
        if mask is not None:
            if ablated is None:
                raise ValueError("a mask needs ablated writer outputs")
            m = mask if mask.dim() == 2 else mask[None]
            dense = g.dense(m.to(x0.device, x0.dtype))  # masks are CPU bookkeeping  # [V, P, R]
            n_var = m.shape[0]
            x0 = x0.repeat(n_var, 1, 1)
            abl = ablated.expand(-1, n, -1, -1)  # [P, n, t, d]
            linear = self._linear_writers.to(x0.device)
            lin_dense = dense * linear[None, :, None].to(dense.dtype)
            # sum of the first p ablated linear writers, for each p
            abl_cum = (abl * linear[:, None, None, None].to(abl.dtype)).cumsum(0)
            # Writers' outputs go into one preallocated buffer, unless a gradient is wanted
            # (EAP's mask gradient): writing into a buffer that earlier readers read from
            # would invalidate their saved tensors, so then the outputs are stacked instead.
            in_place = not torch.is_grad_enabled()
            if in_place:
                buf = x0.new_empty(len(g.writers), n_var * n, t, d)
                buf[0] = x0
        outs: list[Tensor] = [x0]
        running = x0  # unmasked: the residual stream so far (without constant biases)
        const = torch.zeros_like(x0[:1])
        reader_in: list[Tensor] = []
        r_next = 0

        def gather(count: int) -> Tensor:
            """Inputs of the next ``count`` readers, [count, V*n, t, d]."""
            nonlocal r_next
            p = len(outs)
            if dense is None:
                res = (running + const).unsqueeze(0).expand(count, -1, -1, -1)
            else:
                coef = lin_dense[:, :p, r_next : r_next + count]  # [V, p, count]
                live = (buf[:p] if in_place else torch.stack(outs)).view(p, n_var, n, t, d)
                mixed = torch.einsum("vpr,pvntd->rvntd", coef, live)
                mixed = mixed - torch.einsum("vpr,pntd->rvntd", coef, abl[:p])
                mixed = mixed + (abl_cum[p - 1] + const)[None, None]
                for la, idx in self._post_heads.items():
                    if idx[-1] >= p:
                        break
                    c_h = dense[:, idx, r_next : r_next + count]  # [V, H, count]
                    summed = torch.einsum("vhr,hvntd->rvntd", c_h, live[idx])
                    summed = summed + torch.einsum("vhr,hntd->rvntd", 1 - c_h, abl[idx])
                    mixed = mixed + norm(summed + w.layers[la].b_o, w.layers[la].attn_post)
                res = mixed.reshape(count, n_var * n, t, d)
            r_next += count
            if keep:
                reader_in.append(res)
            return res

        def emit(new: list[Tensor], post: NormParams | None = None, bias: Tensor | None = None) -> None:
            """Record writers' outputs; ``post`` (with ``bias``) normalises their sum first."""
            nonlocal running
            if dense is not None and in_place:
                buf[len(outs) : len(outs) + len(new)] = torch.stack(new)
            outs.extend(new)
            if dense is None:
                running = running + (sum(new) if post is None else norm(sum(new) + bias, post))

        H = w.n_heads
        for la in range(w.n_layers):
            lw = w.layers[la]
            proj = {}
            for c in QKV:
                x = norm(gather(H), lw.ln1)  # [H, N, t, d]
                proj[c] = torch.einsum("hntd,hdk->nhtk", x, self._qkv_w[la][c]) + \
                    self._qkv_b[la][c][None, :, None, :]
            if g.parallel and g.has_mlp:
                mlp_in = gather(1)[0]  # the MLP reads the block input, not its heads
            scores = rotate(w, proj["q"]) @ rotate(w, proj["k"]).transpose(-1, -2) / lw.attn_scale
            scores = soft_cap(scores, w.attn_soft_cap)
            if self.causal:
                pos = torch.arange(t, device=scores.device)
                diff = pos[:, None] - pos[None, :]
                allowed = diff >= 0
                if lw.window is not None:
                    allowed = allowed & (diff < lw.window)
                scores = scores.masked_fill(~allowed, float("-inf"))
            z = scores.softmax(-1) @ proj["v"]  # [N, H, t, dh]
            head_outs = list(torch.einsum("nhtk,hkd->hntd", z, self._wo[la]).unbind(0))
            if lw.attn_post is None:
                emit(head_outs)
                const = const + lw.b_o
            else:  # b_O goes inside the post-attention norm, with the heads
                emit(head_outs, lw.attn_post, lw.b_o)
            if g.has_mlp:
                if not g.parallel:
                    mlp_in = gather(1)[0]
                emit([mlp(w, la, mlp_in)])
        logits = final_logits(w, gather(1)[0])
        return Run(logits, torch.stack(outs) if keep else None, reader_in if keep else None)
