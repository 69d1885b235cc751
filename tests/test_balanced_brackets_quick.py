"""Balanced-bracket classifier in --quick mode: the causal classifier learns the task, a
layer-0 head counts uniformly, and the two failure modes go through different components.
One quick run is shared by the asserts."""

from __future__ import annotations

import pytest
import torch
from conftest import run_quick

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def metrics(tmp_path_factory):
    return run_quick("balanced-brackets", "brackets-3l-causal", tmp_path_factory.mktemp("brackets")).metrics


def test_classifier_learns_both_failure_modes(metrics) -> None:
    assert metrics["test_accuracy"] > 0.95
    assert metrics["accuracy_elevation_only"] > 0.9
    assert metrics["accuracy_negative_only"] > 0.9
    assert metrics["bridge_lean_max_abs_diff"] < 1e-3  # lean training forward == TransformerBridge


def test_counting_head_and_negative_flag(metrics) -> None:
    assert metrics["counting_head_open_fraction_r2"] > 0.9
    assert metrics["counting_head_uniformity_tv"] < 0.25
    assert metrics["negative_prefix_probe_accuracy_max"] > 0.95


def test_two_paths(metrics) -> None:
    # patching the negative-detector heads spares elevation failures, and the count-check MLP
    # spares negative failures
    assert metrics["negative_detector_selectivity"] > 0.2
    assert metrics["elevation_check_mlp_selectivity"] > 0.2


def test_dataset_categories_are_what_they_say() -> None:
    from mikb.methods.brackets import CLOSE, OPEN, category, make_dataset

    assert category([OPEN, CLOSE]) == "balanced"
    assert category([OPEN, OPEN, CLOSE]) == "elevation_only"
    assert category([OPEN, CLOSE, CLOSE, OPEN]) == "negative_only"
    assert category([CLOSE]) == "both"
    tokens, labels, ends, cats = make_dataset(400, 12, torch.Generator().manual_seed(0))
    assert set(cats) == {"balanced", "elevation_only", "negative_only", "both"}
    for row, cat in zip(range(400), cats, strict=True):
        assert category(tokens[row, 1 : int(ends[row])].tolist()) == cat
        assert int(labels[row]) == (cat != "balanced")
