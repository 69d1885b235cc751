"""The planted IOI model as a ground truth for circuit-discovery methods.

Why it is a fair answer key: the planted model's residual stream is a set of one-hot blocks
(names, positions, the previous-token signal, the duplicate signal, ...; see
:mod:`mikb.lm.planted_ioi`) and every head not in its circuit is all zeros. So which edges
carry information can be read off the weights alone, the way tracr's compiled ground truth is
read off the program: graph edge ``W -> R<c>`` is in the circuit when a residual dimension
that writer ``W`` writes (the embedding's non-zero columns, a head's ``W_O`` rows) is one that
reader ``R`` reads on input ``c`` (non-zero rows of its ``W_Q``, ``W_K`` or ``W_V``; the
unembedding for the logits). No method's output enters the answer key.

The read-out: the planted unembedding is zero outside the 32 names the model knows, so every
other logit is exactly zero on every prompt. The task's metrics read the 32 name logits; KL
divergence over those (a softmax over the names) is what the discovery methods score against.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from torch import Tensor

from mikb.data.gpt2_bpe import get_tokenizer
from mikb.data.ioi import default_templates, make_ioi_dataset
from mikb.lm.planted_ioi import build_planted_ioi, ground_truth, planted_names
from mikb.methods._fast_forward import ModelWeights, extract_weights
from mikb.methods.graph import Graph, edge_id

SUPPORT_TOL = 1e-9


def weight_ground_truth(w: ModelWeights, graph: Graph, tol: float = SUPPORT_TOL) -> set[str]:
    """Edges whose writer writes a residual dimension their reader reads (see the module
    docstring); needs an attention-only model (MLP writers are not in the planted graph)."""
    if graph.has_mlp:
        raise ValueError("weight_ground_truth reads attention-only graphs")
    writes = {"input": (w.w_e.abs().sum(0) > tol) | (w.w_pos.abs().sum(0) > tol)}
    reads: dict[tuple[str, str | None], Tensor] = {("logits", None): w.w_u.abs().sum(1) > tol}
    for layer in range(w.n_layers):
        w_o = w.w_o_per_head(layer)  # [heads, d_head, d_model]
        for head in range(w.n_heads):
            writes[f"a{layer}.h{head}"] = w_o[head].abs().sum(0) > tol
        for which in "qkv":
            w_x = w.per_head(layer, which)  # [heads, d_model, d_head]
            for head in range(w.n_heads):
                reads[(f"a{layer}.h{head}", which)] = w_x[head].abs().sum(1) > tol
    truth = set()
    for node, which in graph.readers:
        for writer in graph.writers:
            if graph.slot(writer) < graph.slot(node) and bool((writes[writer] & reads[(node, which)]).any()):
                truth.add(edge_id(writer, node, which))
    return truth


@dataclass
class PlantedIOIGroundTruth:
    """The planted model, its name read-out, its graph and its answer key."""

    model_id: str = "planted-ioi"
    numerical: bool = False

    @cached_property
    def bridge(self) -> Any:
        return build_planted_ioi()

    @cached_property
    def name_ids(self) -> Tensor:
        tok = get_tokenizer()
        return torch.tensor([tok.single_token_id(" " + name) for name in planted_names()])

    @cached_property
    def weights(self) -> ModelWeights:
        w = extract_weights(self.bridge)
        outside = torch.ones(w.w_u.shape[1], dtype=torch.bool)
        outside[self.name_ids] = False
        if float(w.w_u[:, outside].abs().max()) > 0 or (w.b_u is not None and float(w.b_u[outside].abs().max()) > 0):
            raise ValueError("the planted unembedding is not zero outside the names: reading only the names "
                             "would change the model's output distribution")
        return dataclasses.replace(w, w_u=w.w_u[:, self.name_ids],
                                   b_u=None if w.b_u is None else w.b_u[self.name_ids])

    @cached_property
    def graph(self) -> Graph:
        return Graph(self.weights.n_layers, self.weights.n_heads, has_mlp=False)

    @cached_property
    def ground_truth_edges(self) -> set[str]:
        return weight_ground_truth(self.weights, self.graph)

    @property
    def ground_truth_nodes(self) -> set[str]:
        heads = {f"a{label.split('.')[0]}.h{label.split('.')[1]}" for label in ground_truth()}
        return heads | {"input"}

    def prompts(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        """``n`` IOI prompts (ABBA and BABA, equal-length templates) and their ABC twins."""
        ds = make_ioi_dataset(n, seed=seed, templates=default_templates(), names=planted_names())
        last = ds.tokens.shape[1] - 1
        if not bool((ds.end == last).all()):
            raise ValueError("IOI prompts must end at END so the metric can read the last position")
        return ds.tokens, ds.corrupted_tokens

    def answer_key(self) -> dict[str, Any]:
        return {"edges": sorted(self.ground_truth_edges), "heads": ground_truth(),
                "rule": "writer writes a residual dimension the reader reads (non-zero weights)"}
