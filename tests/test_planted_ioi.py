"""The planted model does IOI through the circuit we wrote into it."""

import pytest
import torch

from mikb.data.ioi import make_ioi_dataset
from mikb.lm.planted_ioi import build_planted_ioi, ground_truth, planted_names
from mikb.methods.ablation import head_means, run_ablated_with_cache
from mikb.methods.metrics import logit_diff


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    model = build_planted_ioi()
    ds = make_ioi_dataset(12, seed=2, names=planted_names())
    with torch.no_grad():
        logits, cache = model.run_with_cache(ds.tokens)
        corrupted_logits = model(ds.corrupted_tokens)
    return model, ds, logits, cache, corrupted_logits


def test_shape_matches_gpt2_small_head_grid(setup):
    model = setup[0]
    assert (model.cfg.n_layers, model.cfg.n_heads, model.cfg.d_vocab) == (12, 12, 50257)


def test_solves_ioi_and_abc_removes_the_preference(setup):
    model, ds, logits, _, corrupted_logits = setup
    per_prompt = logit_diff(logits, ds, per_prompt=True)
    assert (per_prompt > 1.0).all()
    b = torch.arange(len(ds))
    assert (logits[b, ds.end].argmax(-1) == ds.io_ids).all()
    assert abs(logit_diff(corrupted_logits, ds).item()) < 0.05


def test_attention_patterns_follow_the_roles(setup):
    _, ds, _, cache, _ = setup
    b = torch.arange(len(ds))

    def att(layer, head, dst, src):
        return cache[f"blocks.{layer}.attn.hook_pattern"][b, head, dst, src].mean().item()

    assert att(0, 1, ds.pos["S2"], ds.pos["S1"]) > 0.9  # duplicate token
    assert att(7, 9, ds.end, ds.pos["S2"]) > 0.9  # S-inhibition
    assert att(9, 9, ds.end, ds.pos["IO"]) > 0.8  # name mover
    assert att(10, 7, ds.end, ds.pos["IO"]) > 0.9  # negative head attends to the prediction
    assert att(10, 10, ds.end, ds.pos["IO"]) < 0.01  # backup idle on clean prompts


def test_backup_wakes_up_when_name_movers_are_ablated(setup):
    model, ds, _, _, _ = setup
    means = head_means(model, ds.corrupted_tokens)
    _, cache = run_ablated_with_cache(model, ds.tokens, means, [(9, 9), (9, 6), (10, 0)])
    b = torch.arange(len(ds))
    assert cache["blocks.10.attn.hook_pattern"][b, 10, ds.end, ds.pos["IO"]].mean() > 0.9


def test_ground_truth_lists_every_planted_head():
    truth = ground_truth()
    assert truth["9.9"] == "name mover" and truth["10.10"] == "backup name mover"
    assert sorted(set(truth.values())) == [
        "backup name mover", "duplicate token", "name mover", "negative name mover",
        "s-inhibition"]
