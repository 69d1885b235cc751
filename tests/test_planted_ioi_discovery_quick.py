"""The planted-IOI discovery method check in --quick mode: every method's ranking recovers the
weight-level answer key far better than chance, exact patching and EAP reach the ceiling on the
edges an ablation can see, and ACDC keeps no edge outside the key."""

from __future__ import annotations

import pytest
from conftest import run_quick

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def metrics(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_quick("planted-ioi-discovery", "planted-ioi", tmp_path_factory.mktemp("planted-discovery")).metrics


def test_every_method_recovers_the_answer_key(metrics: dict) -> None:
    for method in ("exact", "acdc", "eap", "eap_ig"):
        assert metrics[f"auc.resample.{method}"] > 0.75, method
    assert metrics["auc_active.resample.exact"] > 0.99  # the ceiling: every visible key edge ranks first


def test_acdc_keeps_nothing_outside_the_key(metrics: dict) -> None:
    assert metrics["acdc_false_positives.resample"] == 0
    assert metrics["acdc_true_positives.resample"] > 20
    assert 0 < metrics["n_active_ground_truth_edges.resample"] < metrics["n_ground_truth_edges"]
