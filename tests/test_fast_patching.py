"""The fast patching paths give TransformerLens's hook-based answers (within 1e-4).

Small models (3 layers, 4 heads) on both bridge sources: TL-native (``boot_native``) and
Hugging Face GPT-2 (``boot_transformers`` with random weights). Timings live in
``benchmarks/bench_patching.py``, not here.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import small_native_model  # noqa: E402

from mikb.methods._fast_forward import first_difference
from mikb.methods.fast_patching import (
    LogitReadout,
    extract_weights,
    head_out_patching,
    logit_diff_readout,
    path_patching_from_head,
    unpatched_metric,
)

warnings.filterwarnings("ignore", category=FutureWarning)
VOCAB = 50
BATCH, SEQ = 4, 9


def _native(**overrides):
    return small_native_model(**overrides)


@pytest.fixture(scope="module")
def native():
    return _native()


@pytest.fixture(scope="module")
def hf_gpt2():
    from mikb.methods._gpt2_offline import random_gpt2_bridge

    return random_gpt2_bridge(n_layer=3, n_head=4, n_embd=64, vocab_size=VOCAB, n_positions=32)


def _prompts(diff_pos: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, VOCAB, (BATCH, SEQ), generator=g)
    corrupt = clean.clone()
    corrupt[:, diff_pos] = (clean[:, diff_pos] + 1 + torch.randint(0, VOCAB - 1, (BATCH,),
                                                                   generator=g)) % VOCAB
    corrupt[:, -2] = torch.randint(0, VOCAB, (BATCH,), generator=g)
    answers = torch.randint(0, VOCAB, (BATCH, 2), generator=g)
    return clean, corrupt, logit_diff_readout(answers)


def _close(ours: torch.Tensor, ref: torch.Tensor) -> None:
    assert ref.abs().max() > 1e-2, "reference too small for the comparison to mean anything"
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-4)


@pytest.mark.parametrize("which", ["native", "hf_gpt2"])
def test_unpatched_metric_equals_bridge_forward(which, request):
    model = request.getfixturevalue(which)
    clean, _, readout = _prompts()
    with torch.no_grad():
        ref = readout.per_example(model(clean))
    _close(unpatched_metric(model, clean, readout), ref)


@pytest.mark.parametrize("which", ["native", "hf_gpt2"])
@pytest.mark.parametrize("diff_pos", [0, 3])
def test_head_out_patching_equals_tl(which, diff_pos, request):
    from transformer_lens import patching

    model = request.getfixturevalue(which)
    clean, corrupt, readout = _prompts(diff_pos)
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean)
        ref = patching.get_act_patch_attn_head_out_all_pos(
            model, corrupt, clean_cache, readout.as_tl_metric()
        )
    _close(head_out_patching(model, clean, corrupt, readout), ref)


def test_head_out_patching_per_example_equals_hook_loop(native):
    """The straightforward way: one hooked forward per head, z of that head swapped in."""
    clean, corrupt, readout = _prompts()
    cfg = native.cfg
    ref = torch.zeros(cfg.n_layers, cfg.n_heads, BATCH)
    with torch.no_grad():
        _, cache = native.run_with_cache(clean)
        for layer in range(cfg.n_layers):
            clean_z = cache[f"blocks.{layer}.attn.hook_z"]
            for head in range(cfg.n_heads):

                def swap(z, hook, head=head, clean_z=clean_z):
                    z = z.clone()
                    z[:, :, head] = clean_z[:, :, head]
                    return z

                logits = native.run_with_hooks(
                    corrupt, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", swap)]
                )
                ref[layer, head] = readout.per_example(logits)
    _close(head_out_patching(native, clean, corrupt, readout, reduce="none"), ref)


def test_readout_at_earlier_positions_and_small_chunks(native):
    """Per-example read-out positions and tiny run chunks change nothing."""
    from transformer_lens import patching

    clean, corrupt, base = _prompts()
    readout = LogitReadout(base.token_ids, base.fn, positions=torch.tensor([8, 6, 7, 5]))
    with torch.no_grad():
        _, clean_cache = native.run_with_cache(clean)
        ref = patching.get_act_patch_attn_head_out_all_pos(
            native, corrupt, clean_cache, readout.as_tl_metric()
        )
    _close(head_out_patching(native, clean, corrupt, readout, max_rows=1), ref)


@pytest.mark.parametrize("component", ["q", "k", "v"])
def test_path_patching_equals_tl_on_gpt2(hf_gpt2, component):
    from transformer_lens import patching

    clean, corrupt, readout = _prompts()
    with torch.no_grad():
        _, clean_cache = hf_gpt2.run_with_cache(clean)
        _, corrupt_cache = hf_gpt2.run_with_cache(corrupt)
    ref = patching.get_act_patch_direct_path(
        hf_gpt2, corrupt, clean_cache, corrupt_cache, readout.as_tl_metric(), 0, 2, component,
        verbose=False,
    )
    _close(path_patching_from_head(hf_gpt2, clean, corrupt, readout, (0, 2), component), ref)


@pytest.mark.parametrize("component", ["q", "k", "v"])
def test_path_patching_on_native_equals_hook_reference(native, component):
    """TL's direct path patching needs a pre-Q/K/V fork the native bridge lacks, so the
    reference here swaps one head's q/k/v (hook_q/k/v) for the projection of
    ``ln1(resid_pre + sender's write change)``, computed from the caches."""
    clean, corrupt, readout = _prompts()
    sender = (0, 1)
    cfg = native.cfg
    ref = torch.zeros(cfg.n_layers, cfg.n_heads)
    with torch.no_grad():
        _, cc = native.run_with_cache(clean)
        _, kc = native.run_with_cache(corrupt)
        attn0 = native.blocks[sender[0]].attn
        z_name = f"blocks.{sender[0]}.attn.hook_z"
        delta = (cc[z_name][:, :, sender[1]] - kc[z_name][:, :, sender[1]]) @ attn0.W_O[sender[1]]
        for layer in range(sender[0] + 1, cfg.n_layers):
            block = native.blocks[layer]
            shifted = block.ln1.original_component(kc[f"blocks.{layer}.hook_resid_pre"] + delta)
            w_c = getattr(block.attn, f"W_{component.upper()}")
            b_c = getattr(block.attn, f"b_{component.upper()}")
            for head in range(cfg.n_heads):
                new = shifted @ w_c[head] + b_c[head]

                def swap(act, hook, head=head, new=new):
                    act = act.clone()
                    act[:, :, head] = new
                    return act

                logits = native.run_with_hooks(
                    corrupt, fwd_hooks=[(f"blocks.{layer}.attn.hook_{component}", swap)]
                )
                ref[layer, head] = readout.per_example(logits).mean()
    _close(path_patching_from_head(native, clean, corrupt, readout, sender, component), ref)


def test_attention_only_model_without_norms(request):
    from transformer_lens import patching

    model = _native(attn_only=True, normalization_type=None)
    clean, corrupt, readout = _prompts()
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean)
        ref = patching.get_act_patch_attn_head_out_all_pos(
            model, corrupt, clean_cache, readout.as_tl_metric()
        )
    _close(head_out_patching(model, clean, corrupt, readout), ref)


def test_first_difference():
    a = torch.tensor([[1, 2, 3, 4], [1, 2, 3, 4]])
    b = a.clone()
    assert first_difference(a, b) == 4
    b[1, 2] = 9
    assert first_difference(a, b) == 2


def test_the_adapter_names_the_features_it_read():
    """What the fast forward branches on is stated by name (the families test holds each to
    hook loops); a GPT-2-style model has none of them."""
    assert extract_weights(_native()).features() == []
    model = _native(gated_mlp=True, act_fn="silu", normalization_type="RMS",
                    positional_embedding_type="rotary", n_key_value_heads=2)
    assert extract_weights(model).features() == [
        "RMSNorm", "rotary positions", "grouped-query attention", "gated MLP"]
