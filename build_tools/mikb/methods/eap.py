"""Edge attribution patching (EAP, Syed et al. 2023) and EAP-IG (Hanna et al. 2024).

Both estimate, for every edge ``W -> R``, the metric change from ablating it with one
first-order term: ``(a_ablated[W] - a_clean[W]) . dM/d(input of R)``, summed over positions
and averaged over prompts (``M`` is the batch mean of the task's gradient metric). What
differs is where the gradient is taken:

* ``eap(..., direction="noising")``: at the clean run (MIB's and EAP-IG's convention);
* ``eap(..., direction="denoising")``: at the corrupted run (resample ablation only), with the
  sign of ``a_clean - a_corrupted``: TransformerLens's
  ``attribution_patch`` convention, which the tests match to 1e-4;
* ``eap_ig(..., steps=m)``: the gradient averaged over ``m`` runs whose input embedding moves
  from the ablated to the clean one (MIB's recommended "inputs" variant), noising sign. The
  reference implementation (hannamw/EAP-IG, ``get_scores_eap_ig``) takes alpha = k/m for
  k = 0..m-1 (``grid="left"``, the default: the corrupted end is included, the clean end
  not); ``grid="right"`` takes k = 1..m, so that one step is exactly noising EAP.

Behind Gemma 2's post-attention norm a head's write does not add into a reader's input (the
layer's heads are summed and normalised first), so the same first-order term is taken as the
derivative of the graph's masked forward with respect to the edge's mask at 1, where the
ablated output is set to ``live - delta`` (:func:`_mask_products`): lowering the mask moves
that writer's contribution by ``-delta`` through the norm's Jacobian. Where writers add, the
two forms are the same number (the tests check both ways).

Node scores (:func:`node_scores`) are each writer's sum over its outgoing edges: the writer's
own ``(a_ablated - a_clean) . dM/da``, since a writer enters every later reader with
coefficient one.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mikb.methods.edge_task import EdgeTask
from mikb.methods.scores import EdgeScores


def _reader_grads(task: EdgeTask, input_embed: Tensor) -> Tensor:
    """dM/d(reader input) for every reader on an unpatched run, [n_readers, n, pos, d_model].

    ``M`` reads the clean prompts' labels whichever prompts (or embeddings) are run."""
    if task.forward.post_norm:
        # writer-change . d(M)/d(reader input) needs writers that add into the reader's input
        raise ValueError("reader-input gradients do not give edge scores behind a post-attention norm; "
                         "use _mask_products")
    input_embed = input_embed.detach().requires_grad_(True)
    with torch.enable_grad():
        run = task.forward.run(input_embed=input_embed, keep=True)
        metric = task.metric(run.logits)[0]
        grads = torch.autograd.grad(metric, run.reader_in, allow_unused=True)
    return torch.cat([g if g is not None else torch.zeros_like(r)
                      for g, r in zip(grads, run.reader_in, strict=True)])


def _mask_products(task: EdgeTask, delta: Tensor, input_embed: Tensor) -> Tensor:
    """``delta[W] . dM/d(W's contribution to R)`` for every edge ``[n_edges]``: the gradient of
    the metric with respect to the edge mask at 1, on the run from ``input_embed``, with the
    ablated outputs set to ``live - delta`` (so the run at mask 1 is the unpatched run and
    ``d input / d mask = delta`` before any post-attention norm)."""
    f = task.forward
    input_embed = input_embed.detach()
    with torch.no_grad():
        live = f.run(input_embed=input_embed, keep=True).writer_out
    mask = torch.ones(1, task.graph.n_edges, device="cpu", dtype=input_embed.dtype, requires_grad=True)
    with torch.enable_grad():
        run = f.run(input_embed=input_embed, mask=mask, ablated=(live - delta).detach())
        (grad,) = torch.autograd.grad(task.metric(run.logits)[0], mask)
    return grad[0]


def _scores(task: EdgeTask, delta: Tensor, input_embed: Tensor) -> Tensor:
    """Edge scores ``delta . dM/d(reader input)`` on the run from ``input_embed``."""
    if task.forward.post_norm:
        return _mask_products(task, delta, input_embed)
    return _edge_products(task, delta, _reader_grads(task, input_embed))


def _edge_products(task: EdgeTask, delta: Tensor, grads: Tensor) -> Tensor:
    g = task.graph
    full = torch.einsum("pntd,rntd->pr", delta, grads).cpu()  # scores are CPU bookkeeping
    return full[g.edge_writer, g.edge_reader]


def eap(task: EdgeTask, direction: str = "noising") -> EdgeScores:
    g = task.graph
    clean = task.clean_writers
    ablated = task.ablated.expand_as(clean)
    if direction == "noising":
        tokens = task.clean
        delta = ablated - clean
    elif direction == "denoising":
        if task.ablation != "resample":
            raise ValueError("denoising EAP takes its gradient on the corrupted run: it needs "
                             "resample ablation")
        tokens = task.corrupted
        delta = clean - ablated
    else:
        raise ValueError("direction must be noising or denoising")
    scores = _scores(task, delta, task.forward.embed(tokens))
    return EdgeScores("EAP", g, scores.detach().float(),
                      {**task.flags(), "direction": direction, "metric": _metric_name(task),
                       "ranking": "absolute"})


def eap_ig(task: EdgeTask, steps: int = 5, grid: str = "left") -> EdgeScores:
    """EAP-IG, inputs variant: integrated gradients along the input embedding."""
    if steps < 1:
        raise ValueError("steps must be >= 1")
    if grid not in ("left", "right"):
        raise ValueError("grid must be left (k = 0..steps-1) or right (k = 1..steps)")
    ks = range(steps) if grid == "left" else range(1, steps + 1)
    g = task.graph
    clean = task.clean_writers
    ablated = task.ablated.expand_as(clean)
    emb_clean, emb_abl = clean[0], ablated[0]
    # Scores are linear in the gradient, so averaging per-step scores is averaging gradients.
    scores = sum(_scores(task, ablated - clean, emb_abl + (k / steps) * (emb_clean - emb_abl))
                 for k in ks) / steps
    return EdgeScores("EAP-IG", g, scores.detach().float(),
                      {**task.flags(), "direction": "noising", "ig_steps": steps,
                       "ig_variant": "inputs",
                       "ig_alphas": [k / steps for k in ks],
                       "metric": _metric_name(task), "ranking": "absolute"})


def node_scores(scores: EdgeScores) -> dict[str, float]:
    """Each writer's total over its outgoing edges (node-level EAP)."""
    g = scores.graph
    totals = torch.zeros(len(g.writers), device="cpu").index_add_(0, g.edge_writer, scores.scores.double().float())
    return {w: float(v) for w, v in zip(g.writers, totals.tolist(), strict=True)}


def _metric_name(task: EdgeTask) -> str:
    return ("mean log-probability of the clean label" if task.kind == "categorical"
            else "mean output value")
