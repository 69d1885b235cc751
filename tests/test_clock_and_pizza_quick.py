"""clock-and-pizza in --quick mode, both models, in-process: the constant-attention model must
show the Pizza's signature (symmetric gradients, distance-dependent correct logits) more
strongly than the standard-attention one, and both must solve the task."""

from __future__ import annotations

import pytest
from conftest import run_quick

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    out = {}
    for model in ("modadd-1l-p59-attn1", "modadd-1l-p59-attn0"):
        ctx = run_quick("clock-and-pizza", model, tmp_path_factory.mktemp(model))
        out[model] = ctx.metrics
    return out


def test_both_models_solve_modular_addition(runs: dict) -> None:
    for m in runs.values():
        assert m["test_acc_final"] > 0.95
        assert m["bridge_lean_max_abs_diff"] < 1e-3  # lean forward and TransformerBridge agree


def test_constant_attention_has_symmetric_gradients(runs: dict) -> None:
    pizza, clock = runs["modadd-1l-p59-attn0"], runs["modadd-1l-p59-attn1"]
    assert pizza["gradient_symmetricity"] > 0.95
    assert pizza["gradient_symmetricity"] > clock["gradient_symmetricity"] + 0.05


def test_constant_attention_logits_depend_on_distance(runs: dict) -> None:
    pizza, clock = runs["modadd-1l-p59-attn0"], runs["modadd-1l-p59-attn1"]
    assert pizza["distance_irrelevance"] < clock["distance_irrelevance"]


def test_key_frequencies_are_sparse(runs: dict) -> None:
    for m in runs.values():
        assert 1 <= m["n_key_frequencies"] <= 8
