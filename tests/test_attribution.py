"""Attribution patching from one forward/backward equals TL's per-example version.

TL's ``attribution_patch`` scores per position and per example (batch mean); summing its
head scores over positions must give ours. Edge scores are checked on the HF GPT-2 bridge,
the only one on which TL's edge granularity (which needs the pre-Q/K/V fork) runs.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import small_native_model, tl_attribution_scores  # noqa: E402

from mikb.methods.attribution import attribution_patching
from mikb.methods.fast_patching import (
    head_out_patching,
    logit_diff_readout,
    unpatched_metric,
)

warnings.filterwarnings("ignore", category=FutureWarning)
VOCAB = 50
BATCH, SEQ = 3, 8


def _native(**overrides):
    return small_native_model(**overrides)


def _prompts(seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, VOCAB, (BATCH, SEQ), generator=g)
    corrupt = clean.clone()
    corrupt[:, 2] = torch.randint(0, VOCAB, (BATCH,), generator=g)
    corrupt[:, 5] = torch.randint(0, VOCAB, (BATCH,), generator=g)
    return clean, corrupt, logit_diff_readout(torch.randint(0, VOCAB, (BATCH, 2), generator=g))


def _rel_close(ours: torch.Tensor, ref: torch.Tensor) -> None:
    scale = float(ref.abs().max())
    assert scale > 0
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-4 * scale)


def test_node_scores_equal_tl_on_native():
    model = _native()
    clean, corrupt, readout = _prompts()
    ref, _ = tl_attribution_scores(model, clean, corrupt, readout, "node")
    _rel_close(attribution_patching(model, clean, corrupt, readout, edges=False).node, ref)


def test_edge_scores_equal_tl_on_gpt2():
    from mikb.methods._gpt2_offline import random_gpt2_bridge

    model = random_gpt2_bridge(n_layer=3, n_head=4, n_embd=64, vocab_size=VOCAB, n_positions=32)
    clean, corrupt, readout = _prompts()
    ref_node, ref_edges = tl_attribution_scores(model, clean, corrupt, readout, "edge")
    ours = attribution_patching(model, clean, corrupt, readout)
    for c in "qkv":
        _rel_close(ours.edges[c], ref_edges[c])
    # Edges only go forward in depth.
    assert ours.edges["q"][2, :, :3].abs().max() == 0


def test_last_layer_attribution_is_exact_when_the_readout_is_linear():
    """With no final LayerNorm, a last-layer head's patch moves the logit difference
    linearly, so the first-order estimate must equal exact patching there."""
    model = _native(attn_only=True, normalization_type=None)
    clean, corrupt, readout = _prompts()
    exact = head_out_patching(model, clean, corrupt, readout)
    base = unpatched_metric(model, corrupt, readout).mean()
    node = attribution_patching(model, clean, corrupt, readout, edges=False).node
    _rel_close(node[-1], exact[-1] - base)
    with pytest.raises(AssertionError):  # earlier layers go through attention: not linear
        _rel_close(node[0], exact[0] - base)


def test_scoring_in_groups_of_examples_changes_nothing():
    model = _native()
    clean, corrupt, readout = _prompts()
    whole = attribution_patching(model, clean, corrupt, readout)
    grouped = attribution_patching(model, clean, corrupt, readout, examples_per_pass=2)
    _rel_close(grouped.node, whole.node)
    for c in "qkv":
        _rel_close(grouped.edges[c], whole.edges[c])
