"""Fast patching refuses what it would compute wrong, instead of answering silently wrong.

Each case below used to run through the fast forward and give numbers 0.06 to 1.9 away from
TransformerLens's hook-based result. The first test shows the gap is real (the model's own
output differs from what the fast forward would compute); the rest hold the refusal, and
that a supported model still passes the probe that backs the flag checks.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import small_native_model

from mikb.methods import _fast_forward as ff
from mikb.methods import _weights_adapter as wa
from mikb.methods._gpt2_offline import _placeholder_tokenizer_dir


def _refusal(model) -> str:
    with pytest.raises(NotImplementedError) as info:
        ff.extract_weights(model)
    return str(info.value)


def test_a_supported_model_passes_the_probe_and_matches_its_own_forward() -> None:
    model = small_native_model()
    w = ff.extract_weights(model)
    tokens = torch.tensor([[3, 1, 4, 1, 5, 9], [2, 7, 1, 8, 2, 8]])
    final = ff.run_with_cache(w, tokens).resid_pre[-1]
    ours = ff.norm(final, w.ln_final) @ w.w_u + w.b_u
    assert torch.allclose(ours, model(tokens), atol=1e-4)


def test_bidirectional_attention_is_refused() -> None:
    assert "bidirectional attention" in _refusal(small_native_model(attention_dir="bidirectional"))


def test_solu_ln_is_refused() -> None:
    assert "solu_ln" in _refusal(small_native_model(act_fn="solu_ln"))


def test_an_attached_hook_is_refused_until_it_is_removed() -> None:
    model = small_native_model()
    model.blocks[1].attn.hook_z.add_hook(lambda z, hook: z * 0, is_permanent=True)
    message = _refusal(model)
    assert "hooks attached" in message and "blocks.1" in message
    model.reset_hooks(including_permanent=True)
    ff.extract_weights(model)  # supported again


def test_gpt_neo_local_attention_is_read_with_its_window() -> None:
    """GPT-Neo's local layers used to crash the fast forward; now the window is read from the
    config and the probe (8 tokens, window 4, so the window binds) holds the result to the
    model's own logits."""
    import transformer_lens.model_bridge.sources  # noqa: F401
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import GPTNeoConfig, GPTNeoForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    config = GPTNeoConfig(vocab_size=64, max_position_embeddings=32, hidden_size=32, num_layers=2, num_heads=4,
                          attention_types=[[["global", "local"], 1]], window_size=4)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(_placeholder_tokenizer_dir(64))
    try:
        bridge = TransformerBridge.boot_transformers("EleutherAI/gpt-neo-125M", hf_model=GPTNeoForCausalLM(config).eval(),
                                                     tokenizer=tokenizer).eval()
    except Exception as exc:  # noqa: BLE001 - the bridge itself may not build offline
        pytest.skip(f"TransformerBridge cannot build GPT-Neo offline here: {exc}")
    w = ff.extract_weights(bridge)
    assert [lw.window for lw in w.layers] == [None, 4]
    assert "sliding-window attention" in w.features()


def test_the_probe_refuses_weights_that_do_not_reproduce_the_model() -> None:
    """What no flag names: if the weights read out do not give the model's own logits (here:
    a perturbed unembedding), the probe refuses and says by how much they differ."""
    model = small_native_model()
    w = ff.extract_weights(model)
    broken = dataclasses.replace(w, w_u=w.w_u * 1.5)
    with pytest.raises(NotImplementedError, match="does not reproduce this model's logits"):
        wa._verify_against_model(model, broken)
