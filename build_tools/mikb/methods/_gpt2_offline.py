"""A randomly initialised Hugging Face GPT-2 behind ``TransformerBridge.boot_transformers``.

Why: the hub is unreachable here, yet the fast patching paths must be proven on the bridge
users get from ``boot_transformers("gpt2")`` (a different attention bridge from the TL-native
one, and the only one on which TransformerLens's direct path patching runs). Passing
``hf_model=`` skips the weight download; the bridge still loads a tokenizer, so we hand it a
placeholder word-level tokenizer (token ``t<i>`` -> id ``i``) saved to a temporary folder.
Token ids, not text, are what the tests and benchmarks feed in.
"""

from __future__ import annotations

import tempfile
from functools import cache

import torch


@cache
def _placeholder_tokenizer_dir(vocab_size: int) -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(vocab_size)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="t1"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="t0", eos_token="t0", unk_token="t1", pad_token="t0"
    )
    folder = tempfile.mkdtemp(prefix="mikb-placeholder-tokenizer-")
    tok.save_pretrained(folder)
    return folder


def random_gpt2_bridge(
    n_layer: int = 12,
    n_head: int = 12,
    n_embd: int = 768,
    vocab_size: int = 50257,
    n_positions: int = 1024,
    seed: int = 0,
):
    """A GPT-2-architecture bridge (GPT-2 small's shape by default) with seeded random weights."""
    import transformer_lens.model_bridge.sources  # noqa: F401  (registers the boot_* sources)
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    config = GPT2Config(
        n_layer=n_layer, n_head=n_head, n_embd=n_embd, vocab_size=vocab_size,
        n_positions=n_positions,
    )
    hf_model = GPT2LMHeadModel(config).eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(_placeholder_tokenizer_dir(vocab_size))
    bridge = TransformerBridge.boot_transformers("gpt2", hf_model=hf_model, tokenizer=tokenizer)
    return bridge.eval()
