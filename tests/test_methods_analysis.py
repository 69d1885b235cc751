"""Circuit evaluation, copy suppression, self-repair and edge-score export on the planted model,
whose answers we know by construction."""

import json

import pytest
import torch

from mikb.data.ioi import make_ioi_dataset
from mikb.lm.planted_ioi import build_planted_ioi, ground_truth_components, planted_names
from mikb.methods.ablation import head_means
from mikb.methods.circuit_eval import completeness, faithfulness, minimality
from mikb.methods.copy_suppression import ablation_effect, ov_copy_score
from mikb.methods.edge_scores import edge_name, mib_graph
from mikb.methods.self_repair import self_repair

PLANTED = {role: [tuple(int(x) for x in h.split(".")) for h in heads]
           for role, heads in ground_truth_components().items()}
NM, NEG, SINH = PLANTED["name mover head"], PLANTED["negative name mover head"], PLANTED["S-inhibition head"]
COPIER, SUPPRESSOR = (4, 7), (4, 0)  # the two planted backups (see mikb.lm.planted_ioi)
UNUSED = (5, 5)  # a head the planted model leaves at zero


@pytest.fixture(scope="module")
def env():
    torch.set_num_threads(1)
    model = build_planted_ioi()
    ds = make_ioi_dataset(6, seed=4, names=planted_names())
    ref = make_ioi_dataset(6, seed=5, names=planted_names())
    return model, ds, head_means(model, ref.corrupted_tokens)


def test_faithfulness_of_planted_circuit_and_of_a_broken_one(env):
    model, ds, means = env
    full = {h for hs in PLANTED.values() for h in hs}
    assert abs(faithfulness(model, ds, means, full)["fraction"] - 1.0) < 1e-4
    # Dropping a name mover alone is repaired by the backups (that is the planted self-repair),
    # so break the circuit upstream: without the S-inhibition heads the name movers see S.
    assert faithfulness(model, ds, means, full - {NM[0]})["fraction"] > 0.9
    broken = full - set(SINH)
    assert faithfulness(model, ds, means, broken)["fraction"] < 0.9


def test_completeness_detects_a_missing_head(env):
    model, ds, means = env
    full = {h for hs in PLANTED.values() for h in hs}
    assert completeness(model, ds, means, full, PLANTED, n_random=1)["max_gap"] < 1e-4
    missing = full - {SINH[0]}
    assert completeness(model, ds, means, missing, PLANTED, n_random=1)["max_gap"] > 0.05


def test_minimality_separates_used_from_unused_heads(env):
    model, ds, means = env
    circuit = {h for hs in PLANTED.values() for h in hs} | {UNUSED}
    mini = minimality(model, ds, means, circuit, {"nm": NM})
    assert mini["3.1"] > 0.1 and mini["2.4"] > 0.01
    assert mini["5.5"] < 1e-6


def test_copy_scores_sign(env):
    model, ds, _ = env
    names = torch.unique(torch.cat([ds.io_ids, ds.s_ids]))
    assert ov_copy_score(model, *NEG[0], names, negative=True) == 1.0
    assert ov_copy_score(model, *NEG[0], names, negative=False) == 0.0
    assert ov_copy_score(model, *NM[0], names, negative=False) == 1.0
    assert ov_copy_score(model, *UNUSED, names, negative=True) == 0.0
    # The S-suppressing backup reads only the duplicate signal: it copies no name embedding.
    assert ov_copy_score(model, *SUPPRESSOR, names, negative=True) == 0.0


def test_ablating_negative_heads_raises_logit_diff(env):
    model, ds, means = env
    assert ablation_effect(model, ds, means, NEG) > 0.5
    # The backups repair most of a name-mover knock-out; without them it hurts.
    assert ablation_effect(model, ds, means, NM + [COPIER, SUPPRESSOR]) < -0.5


def test_self_repair_comes_from_backup_and_negative_heads(env):
    model, ds, means = env
    res = self_repair(model, ds, means, NM, [COPIER, SUPPRESSOR, *NEG, UNUSED])
    assert res["self_repair_fraction"] > 0.5
    assert res["downstream_de_change"]["4.7"] > 0.5  # copies IO
    assert res["downstream_de_change"]["4.0"] > 0.3  # suppresses S
    assert res["downstream_de_change"]["4.5"] > 0.3  # suppresses less
    assert abs(res["downstream_de_change"]["5.5"]) < 1e-6
    # Bookkeeping: the drop that happened = expected drop - compensation (no other heads here).
    assert abs(res["actual_drop"] - (res["expected_drop"] - res["self_repair"])) < 1e-5


def test_edge_score_json_follows_eap_ig_names():
    graph = mib_graph(2, 2, [((0, 1), (1, 0), "q", 0.5, True), ((1, 1), "logits", None, -0.2, False)],
                      {"ablation": "mean"}, attn_only=True)
    assert edge_name((0, 1), (1, 0), "k") == "a0.h1->a1.h0<k>"
    assert graph["edges"]["a0.h1->a1.h0<q>"] == {"score": 0.5, "in_graph": True}
    assert graph["edges"]["a1.h1->logits"]["in_graph"] is False
    assert graph["nodes"]["a0.h1"] and not graph["nodes"]["a1.h1"] and "m0" not in graph["nodes"]
    assert json.loads(json.dumps(graph)) == graph


def test_activation_patching_wrappers_on_planted_model(env):
    from mikb.methods.activation_patching import patch_head_outputs, patch_resid_by_pos

    model = env[0]
    ds = make_ioi_dataset(4, seed=0, names=planted_names(), templates=[0])
    heads = patch_head_outputs(model, ds)
    assert heads[3, 1] > 0.3 and heads[4, 2] > 0.3
    assert heads[4, 5] < -0.1 and heads[5, 3] < -0.1
    assert heads[5, 5].abs() < 1e-6
    resid = patch_resid_by_pos(model, ds)
    assert resid[5, -1] > 0.9  # the clean residual at END before the last layer carries IO
    assert resid[0, -1].abs() < 1e-6  # END's own token is the same in both runs
