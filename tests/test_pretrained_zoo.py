"""Run every pretrained-zoo reproduction script end to end on a seeded random-weight stand-in of
its model's architecture (GPT-2's real BPE attached), and check each fails fast offline.

Only the code path is tested here: the stand-ins have no task ability, so numbers are
meaningless; they must exist, be finite and have the recorded shape.
"""

import math
import time
from pathlib import Path

import pytest
import yaml
from conftest import run_quick

from mikb.lm import pretrained
from mikb.reproduce import ModelUnavailable

ZOO = Path(__file__).resolve().parents[1] / "circuits_zoo"
# circuit id -> the pretrained model its script is exercised on
CIRCUITS = {
    "greater-than": "gpt2-small",
    "docstring": "attn-only-4l",
    "successor-heads": "gpt2-small",
    "acronyms": "gpt2-small",
    "induction-gpt2-small": "gpt2-small",
    "athlete-sport-recall": "pythia-2-8b",
    "entity-tracking": "llama-7b",
    "verb-agreement": "gpt2-small",
    "sentiment-summarization": "gpt2-small",
}
# Stand-in shapes for the tests: the architecture family and layer count of the real model,
# fewer heads and a narrower width so that 2 CPU cores run every script in seconds. Paper heads
# beyond the stand-in's head count are skipped by the scripts' scoring (scores_at).
TEST_SHAPES = {
    "gpt2-small": {"n_heads": 4, "d_model": 32},
    "gpt2-medium": {"n_heads": 4, "d_model": 32},
    "pythia-2-8b": {"n_heads": 4, "d_model": 32},
    "attn-only-4l": {"n_heads": 8, "d_model": 64},
    "llama-7b": {"n_heads": 2, "d_model": 32},
}
# Weights-only scripts are cheap, so their stand-ins keep the real head count.
CIRCUIT_SHAPES = {"successor-heads": {"n_heads": 12, "d_model": 48},
                  "induction-gpt2-small": {"n_heads": 12, "d_model": 48}}




def _finite(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


@pytest.mark.parametrize("circuit_id", sorted(CIRCUITS))
def test_script_runs_on_standin(circuit_id, tmp_path, monkeypatch):
    model_id = CIRCUITS[circuit_id]
    monkeypatch.setattr(pretrained, "_boot",
                        lambda mid, device: pretrained.standin_bridge(
                            mid, **CIRCUIT_SHAPES.get(circuit_id, TEST_SHAPES[mid])))
    start = time.monotonic()
    ctx = run_quick(circuit_id, model_id, tmp_path)
    print(f"{circuit_id} on {model_id} stand-in: {time.monotonic() - start:.1f}s")
    assert ctx.weights_source == f"Hugging Face hub: {pretrained.PRETRAINED[model_id].hf_name}"
    found = ctx.metrics["discovered_components"]
    assert isinstance(found, dict) and found
    assert all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in found.values())
    assert all(_finite(v) for v in ctx.metrics.values())
    entry = yaml.safe_load((ZOO / circuit_id / "circuit.yaml").read_text())
    assert entry["models"][0] == model_id
    for claim in entry.get("claims", []):
        assert claim["metric"] in ctx.metrics, claim["id"]
    for fig in ctx.figures:
        assert (ctx.out_dir / fig.file).stat().st_size > 1000


@pytest.mark.parametrize("circuit_id", sorted(CIRCUITS))
def test_fails_fast_offline(circuit_id, tmp_path):
    from huggingface_hub import try_to_load_from_cache

    model_id = CIRCUITS[circuit_id]
    hf_name = pretrained.PRETRAINED[model_id].hf_name
    if isinstance(try_to_load_from_cache(hf_name, "config.json"), str):
        pytest.skip(f"{hf_name} is in the local Hugging Face cache")
    start = time.monotonic()
    with pytest.raises(ModelUnavailable, match="not in the local cache"):
        run_quick(circuit_id, model_id, tmp_path)
    assert time.monotonic() - start < 60


def test_standin_tokenizer_is_gpt2_bpe():
    from mikb.data.gpt2_bpe import GPT2Tokenizer

    text = " The war lasted from the year 1732 to the year 17"
    tok = pretrained.Tok(pretrained.gpt2_bpe_tokenizer())
    assert tok.encode(text) == GPT2Tokenizer().encode(text)


def test_batched_head_patching_matches_transformer_lens():
    """prompt_tasks.patch_heads (many patched runs per forward) equals TL's hook-per-head sweep."""
    import torch

    from mikb.methods.prompt_tasks import (
        PromptPairs,
        clean_and_corrupted,
        logit_diff_metric,
        patch_heads,
        patch_mlps,
        tl_patch_heads,
    )

    model = pretrained.standin_bridge("gpt2-small", n_layers=3, n_heads=2, d_model=16)
    model.enable_compatibility_mode()
    gen = torch.Generator().manual_seed(0)
    clean = torch.randint(0, 50000, (3, 7), generator=gen)
    corrupted = clean.clone()
    corrupted[:, 2] = torch.randint(0, 50000, (3,), generator=gen)
    pairs = PromptPairs(clean, corrupted, logit_diff_metric(clean[:, 0], clean[:, 1]))
    c, x, cache, _ = clean_and_corrupted(model, pairs)
    ours = patch_heads(model, pairs, c, x, cache, max_rows=9)
    theirs = tl_patch_heads(model, pairs, c, x, cache)
    assert torch.allclose(ours, theirs, atol=1e-4)
    assert patch_mlps(model, pairs, c, x, cache).shape == (3,)
