"""Scoring knows nothing of methods: ROC AUC, faithfulness curves (CPR/CMD), MIB JSON."""

from __future__ import annotations

import itertools

import pytest
import torch

from mikb.methods.graph import Graph
from mikb.methods.scores import EdgeScores, budget_sizes, faithfulness_curve, roc_auc, roc_curve


def _mann_whitney(values, labels):
    pos = [v for v, y in zip(values, labels, strict=True) if y]
    neg = [v for v, y in zip(values, labels, strict=True) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_roc_auc_known_cases_and_ties():
    y = torch.tensor([1, 1, 0, 0, 0]).bool()
    assert roc_auc(torch.tensor([5.0, 4, 3, 2, 1]), y) == 1.0
    assert roc_auc(torch.tensor([1.0, 2, 3, 4, 5]), y) == 0.0
    assert roc_auc(torch.zeros(5), y) == 0.5
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        v = torch.randint(0, 4, (12,), generator=gen).float()
        lab = torch.rand(12, generator=gen) > 0.6
        if lab.any() and (~lab).any():
            assert abs(roc_auc(v, lab) - _mann_whitney(v.tolist(), lab.tolist())) < 1e-12
    with pytest.raises(ValueError):
        roc_auc(torch.ones(3), torch.ones(3).bool())
    fpr, tpr = roc_curve(torch.tensor([3.0, 2, 1]), torch.tensor([True, False, True]))
    assert fpr == [0.0, 0.0, 1.0, 1.0] and tpr == [0.0, 0.5, 0.5, 1.0]


def test_faithfulness_curve_cpr_cmd():
    g = Graph(1, 1, False)  # input->a0.h0<q,k,v>, input->logits, a0.h0->logits
    scores = EdgeScores("toy", g, torch.tensor([0.1, 0.2, 0.3, 0.9, 0.5]))

    def evaluate(masks):  # metric = number of the two "useful" edges kept; full = 2
        useful = torch.zeros(g.n_edges)
        useful[g.edge_index["input->logits"]] = 1
        useful[g.edge_index["a0.h0->logits"]] = 1
        return masks @ useful

    out = faithfulness_curve(scores, evaluate, budgets=(0.0, 0.2, 0.4, 1.0))
    assert out["edges"] == [0, 1, 2, 5]
    assert out["faithfulness"] == [0.0, 0.5, 1.0, 1.0]
    assert abs(out["cpr"] - (0.2 * 0.25 + 0.2 * 0.75 + 0.6 * 1.0)) < 1e-12
    assert abs(out["cmd"] - (0.2 * 0.75 + 0.2 * 0.25)) < 1e-12
    assert budget_sizes(1000)[:3] == [0, 1, 2]


def test_mib_json_layout():
    g = Graph(1, 1, True)
    s = EdgeScores("toy", g, torch.arange(g.n_edges).float(), {"ablation": "zero"},
                   in_circuit=torch.tensor([e == "input->m0" for e in g.edges]))
    js = s.to_mib()
    assert js["edges"]["input->a0.h0<q>"] == {"score": 0.0, "in_graph": False}
    assert js["nodes"]["input"] and js["nodes"]["m0"] and not js["nodes"]["a0.h0"]
    assert js["mikb_flags"]["method"] == "toy" and js["mikb_flags"]["ablation"] == "zero"
