"""A circuit-discovery task on a graph: prompts, ablation, metrics, and circuit evaluation.

Every discovery method (:mod:`~mikb.methods.acdc`, :mod:`~mikb.methods.eap`,
:mod:`~mikb.methods.edge_patching`) takes an :class:`EdgeTask`, so the flags that change the
answer are set in one place and recorded with every score:

* ``ablation``: what an ablated edge carries: ``resample`` (its writer's output on the paired
  corrupted prompt), ``mean`` (the writer's mean output over the corrupted prompts, per
  position) or ``zero``;
* the corrupted distribution (a description string, for the record);
* ``positions``: which positions the metrics read (the task's output positions);
* ``kind``: ``categorical`` outputs are scored with KL divergence from the clean model (ACDC's
  default) and, where a gradient is needed, with the clean label's log-probability (the KL's
  gradient vanishes at the clean point); ``numerical`` outputs with the squared error from
  the clean model and the output value itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from torch import Tensor

from mikb.methods.graph import GraphForward

ABLATIONS = ("resample", "mean", "zero")


@dataclass
class EdgeTask:
    forward: GraphForward
    clean: Tensor  # [n, pos] token ids
    corrupted: Tensor  # [n, pos]
    positions: slice | list[int]
    kind: str = "categorical"  # or "numerical"
    ablation: str = "resample"
    corrupted_distribution: str = ""
    chunk: int = 64  # masks per batched forward
    extra_flags: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ablation not in ABLATIONS:
            raise ValueError(f"ablation must be one of {ABLATIONS}")
        if self.kind not in ("categorical", "numerical"):
            raise ValueError("kind must be categorical or numerical")

    @property
    def graph(self):
        return self.forward.graph

    @property
    def n(self) -> int:
        return int(self.clean.shape[0])

    def flags(self) -> dict[str, Any]:
        pos = self.positions
        pos_text = f"{pos.start or 0}:{'' if pos.stop is None else pos.stop}" if isinstance(pos, slice) else list(pos)
        return {"ablation": self.ablation, "corrupted_distribution": self.corrupted_distribution,
                "positions": pos_text, "n_prompts": self.n, "task_kind": self.kind,
                "distance": "KL(clean || circuit)" if self.kind == "categorical" else "squared error vs clean",
                **self.extra_flags}

    @cached_property
    def clean_writers(self) -> Tensor:
        with torch.no_grad():
            return self.forward.writer_outputs(self.clean)

    @cached_property
    def ablated(self) -> Tensor:
        """Writer outputs an ablated edge carries, [n_writers, n or 1, pos, d_model]."""
        with torch.no_grad():
            corrupt = self.forward.writer_outputs(self.corrupted)
        if self.ablation == "resample":
            return corrupt
        if self.ablation == "mean":
            return corrupt.mean(1, keepdim=True)
        return torch.zeros_like(corrupt[:, :1])

    @cached_property
    def clean_logits(self) -> Tensor:
        with torch.no_grad():
            return self.forward.run(self.clean).logits[:, self.positions]

    @cached_property
    def clean_labels(self) -> Tensor:
        return self.clean_logits.argmax(-1)

    def _per_variant(self, logits: Tensor) -> Tensor:
        return logits[:, self.positions].reshape(-1, self.n, *self.clean_logits.shape[1:])

    def distance(self, logits: Tensor) -> Tensor:
        """[V * n, pos, out] -> [V]: mean KL(clean || circuit) or squared error."""
        out = self._per_variant(logits)
        ref = self.clean_logits[None]
        if self.kind == "numerical":
            return ((out - ref) ** 2).sum(-1).mean((1, 2))
        logp = ref.log_softmax(-1)
        return (logp.exp() * (logp - out.log_softmax(-1))).sum(-1).mean((1, 2))

    def metric(self, logits: Tensor) -> Tensor:
        """[V * n, pos, out] -> [V]: clean label's log-probability, or the output value."""
        out = self._per_variant(logits)
        if self.kind == "numerical":
            return out.sum(-1).mean((1, 2))
        lp = out.log_softmax(-1)
        idx = self.clean_labels[None].expand(lp.shape[0], -1, -1).unsqueeze(-1)
        return lp.gather(-1, idx).squeeze(-1).mean((1, 2))

    def evaluate(self, masks: Tensor, what: str = "distance") -> Tensor:
        """The distance (or metric) of each circuit ``[V, n_edges]`` -> ``[V]``, in chunks."""
        fn = self.distance if what == "distance" else self.metric
        out = []
        with torch.no_grad():
            for i in range(0, masks.shape[0], self.chunk):
                run = self.forward.run(self.clean, mask=masks[i : i + self.chunk], ablated=self.ablated)
                out.append(fn(run.logits))
        return torch.cat(out)

    def active_edges(self, tol: float = 1e-6) -> Tensor:
        """[n_edges] bool: does ablating the edge change anything its reader reads?

        The writer's clean-minus-ablated output, projected on the reader's input weights
        (its W_Q, W_K or W_V head block, the MLP's W_in, or W_U), must exceed ``tol`` at some
        prompt and position. That is necessary for an edge to have any effect under this
        ablation, whatever the method, and it needs no method to compute: a ground-truth
        edge that is inactive carries a constant on this task's prompts (tracr's BOS and
        "one" directions, or the length of fixed-length inputs). Behind a LayerNorm, any
        change that is not constant across d_model counts as reaching the reader.
        """
        f, g, w = self.forward, self.graph, self.forward.w
        delta = self.clean_writers - self.ablated  # [P, n, t, d]
        out = torch.zeros(g.n_edges, dtype=torch.bool, device="cpu")
        for i, (p, r) in enumerate(zip(g.edge_writer.tolist(), g.edge_reader.tolist(), strict=True)):
            node, c = g.readers[r]
            d = delta[p]
            if node == "logits":
                norm_params, read = w.ln_final, w.w_u
            elif node.startswith("m"):
                lw = w.layers[int(node[1:])]
                norm_params, read = lw.ln2, lw.w_in
            else:
                layer, head = (int(x) for x in node[1:].split(".h"))
                norm_params, read = w.layers[layer].ln1, f._qkv_w[layer][c][head]
            if norm_params is not None and norm_params.kind == "layer":
                out[i] = bool((d - d.mean(-1, keepdim=True)).abs().max() > tol)
            elif norm_params is not None:  # RMSNorm keeps a change constant across d_model
                out[i] = bool(d.abs().max() > tol)
            else:
                out[i] = bool((d @ read).abs().max() > tol)
        return out

    def faithfulness_metric(self, masks: Tensor) -> Tensor:
        """Higher is better, 0 for the full model: minus the distance (for CPR / CMD)."""
        return -self.evaluate(masks, "distance")
