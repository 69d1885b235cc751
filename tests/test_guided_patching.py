"""Attribution-guided exact patching: exact where it runs, honest where it does not.

On random families the chosen heads' values must equal the full exact sweep's; on the
planted IOI model (whose circuit is known) the guided top k must recover the heads with the
largest exact effects.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from test_fast_patching_families import _bridge, _prompts

from mikb.methods.attribution import attribution_patching
from mikb.methods.fast_patching import (
    extract_weights,
    head_out_patching,
    logit_diff_readout,
    unpatched_metric,
)
from mikb.methods.guided_patching import guided_head_patching

warnings.filterwarnings("ignore")


@pytest.mark.parametrize("family", ["llama", "neox", "gemma2"])
def test_chosen_heads_get_the_exact_sweeps_values_and_the_rest_none(family):
    w = extract_weights(_bridge(family))
    clean, corrupt, readout = _prompts(2)
    k = 5
    got = guided_head_patching(w, clean, corrupt, readout, k)
    full = head_out_patching(w, clean, corrupt, readout)
    node = attribution_patching(w, clean, corrupt, readout, edges=False).node
    expected_order = torch.argsort(node.abs().flatten(), descending=True, stable=True)[:k]
    assert got.chosen == [divmod(int(i), w.n_heads) for i in expected_order]
    ran = torch.zeros_like(full, dtype=torch.bool)
    for layer, head in got.chosen:
        ran[layer, head] = True
    torch.testing.assert_close(got.exact[ran], full[ran], rtol=0, atol=1e-5)
    assert torch.isnan(got.exact[~ran]).all()
    base = float(unpatched_metric(w, corrupt, readout).mean())
    assert got.corrupted_metric == pytest.approx(base, abs=1e-5)
    torch.testing.assert_close(got.estimate, base + node, rtol=0, atol=1e-5)


def test_k_covering_every_head_is_the_full_sweep():
    w = extract_weights(_bridge("llama"))
    clean, corrupt, readout = _prompts(3)
    got = guided_head_patching(w, clean, corrupt, readout, k=10_000)
    assert len(got.chosen) == w.n_layers * w.n_heads
    torch.testing.assert_close(got.exact, head_out_patching(w, clean, corrupt, readout), rtol=0, atol=1e-5)


def test_bad_inputs_are_refused():
    w = extract_weights(_bridge("llama"))
    clean, corrupt, readout = _prompts(3)
    with pytest.raises(ValueError, match="k must be at least 1"):
        guided_head_patching(w, clean, corrupt, readout, k=0)
    with pytest.raises(ValueError, match="equal-shape"):
        guided_head_patching(w, clean, corrupt[:, :-1], readout, k=3)


def test_on_the_planted_ioi_model_the_guided_top_k_holds_the_largest_exact_effects():
    """The planted circuit's heads move the logit difference most; attribution must rank
    them into the top k, so the guided run finds what the full sweep finds."""
    from mikb.data.ioi import make_ioi_dataset
    from mikb.lm.planted_ioi import build_planted_ioi, planted_names

    model = build_planted_ioi().eval()
    ds = make_ioi_dataset(16, seed=3, names=planted_names())
    readout = logit_diff_readout(torch.stack([ds.io_ids, ds.s_ids], dim=1), ds.end)
    w = extract_weights(model)
    full = head_out_patching(w, ds.tokens, ds.corrupted_tokens, readout)
    base = unpatched_metric(w, ds.corrupted_tokens, readout).mean()
    effect = (full - base).abs().flatten()
    strong = {divmod(int(i), w.n_heads) for i in (effect > 0.1).nonzero().flatten()}
    assert 3 <= len(strong) < w.n_layers * w.n_heads // 4, "a few planted heads should stand out"
    got = guided_head_patching(w, ds.tokens, ds.corrupted_tokens, readout, k=len(strong))
    assert set(got.chosen) == strong


def test_attribution_reuses_a_clean_cache_the_caller_already_has():
    """Guided patching hands its clean run's z to attribution instead of a second clean
    forward; the scores must be the same, also when attribution scores in groups."""
    from mikb.methods._fast_forward import run_with_cache

    w = extract_weights(_bridge("neox"))
    clean, corrupt, readout = _prompts(2)
    clean_z = run_with_cache(w, clean, resid=False).z
    for per_pass in (None, 2):
        fresh = attribution_patching(w, clean, corrupt, readout, edges=True, examples_per_pass=per_pass)
        reused = attribution_patching(w, clean, corrupt, readout, edges=True, examples_per_pass=per_pass,
                                      clean_z=clean_z)
        torch.testing.assert_close(reused.node, fresh.node, rtol=0, atol=1e-6)
        for c in "qkv":
            torch.testing.assert_close(reused.edges[c], fresh.edges[c], rtol=0, atol=1e-6)
