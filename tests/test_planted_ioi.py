"""The planted model does IOI through the circuit we wrote into it (mikb.lm.planted_ioi)."""

import pytest
import torch

from mikb.data.ioi import make_ioi_dataset
from mikb.lm.planted_ioi import (
    build_planted_ioi,
    ground_truth,
    ground_truth_components,
    planted_names,
)
from mikb.methods.ablation import head_means, run_ablated_with_cache
from mikb.methods.ioi_common import PAPER_HEADS, ROLES
from mikb.methods.ioi_signals import paper_signal_grid
from mikb.methods.metrics import logit_diff

GT = {role: [tuple(int(x) for x in h.split(".")) for h in heads]
      for role, heads in ground_truth_components().items()}


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    model = build_planted_ioi()
    ds = make_ioi_dataset(12, seed=2, names=planted_names())
    with torch.no_grad():
        logits, cache = model.run_with_cache(ds.tokens)
        corrupted_logits = model(ds.corrupted_tokens)
    return model, ds, logits, cache, corrupted_logits


def test_no_planted_head_sits_at_a_paper_index():
    paper = {f"{la}.{h}" for heads in PAPER_HEADS.values() for la, h in heads}
    assert not paper & set(ground_truth())


def test_ground_truth_covers_every_role_in_the_circuit_yaml_vocabulary():
    assert set(ground_truth_components()) == set(ROLES)
    assert len(ground_truth()) == sum(len(v) for v in ground_truth_components().values())


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
    p = ds.pos

    def att(head, dst, src):
        return cache[f"blocks.{head[0]}.attn.hook_pattern"][b, head[1], dst, src].mean().item()

    for v in GT["previous token head"]:
        assert att(v, p["S1"] + 1, p["S1"]) > 0.9
    for v in GT["duplicate token head"]:
        assert att(v, p["S2"], p["S1"]) > 0.9
    for v in GT["induction head"]:
        assert 0.6 < att(v, p["S2"], p["S1"] + 1) < 0.99  # graded, not saturated
    for v in GT["S-inhibition head"]:
        assert att(v, ds.end, p["S2"]) > 0.9
    for v in GT["name mover head"]:
        assert att(v, ds.end, p["IO"]) > 0.8
    for v in GT["negative name mover head"]:
        assert att(v, ds.end, p["IO"]) > 0.9
    # Backups idle on clean prompts: the copier attends to the sink, the S-suppressor to the
    # predicted name (IO), whose value (the duplicate signal) is empty, so it writes nothing.
    copier, suppressor = (4, 7), (4, 0)
    assert set(GT["backup name mover head"]) == {copier, suppressor}
    assert att(copier, ds.end, p["IO"]) < 0.01
    assert att(suppressor, ds.end, p["S2"]) < 0.05 and att(suppressor, ds.end, p["IO"]) > 0.9


def test_backups_wake_up_differently_when_name_movers_are_ablated(setup):
    model, ds, _, _, _ = setup
    means = head_means(model, ds.corrupted_tokens)
    _, cache = run_ablated_with_cache(model, ds.tokens, means, GT["name mover head"])
    b = torch.arange(len(ds))
    copier, suppressor = (4, 7), (4, 0)
    assert cache["blocks.4.attn.hook_pattern"][b, copier[1], ds.end, ds.pos["IO"]].mean() > 0.9
    assert cache["blocks.4.attn.hook_pattern"][b, suppressor[1], ds.end, ds.pos["S2"]].mean() > 0.9


def test_position_signal_dominates_the_token_signal(setup):
    model, ds, logits, _, _ = setup
    """The paper's protocol (six source datasets, linear fit): the planted S-inhibition heads
    carry more position than token signal, and inverting the position alone flips the answer."""
    res = paper_signal_grid(model, ds, GT["S-inhibition head"])
    assert res["signal_position_inverted_logit_diff"] < 0  # S-inhibition output now points at IO
    assert res["signal_fit_position_coef"] > res["signal_fit_token_coef"] > 0
    assert res["signal_fit_position_share"] > 0.6
