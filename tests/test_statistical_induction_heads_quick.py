"""statistical-induction-heads in --quick mode, in-process: the model must pass through a
unigram phase, end near the bigram estimator, and have a previous-token head feeding a
statistical induction head that the script finds by their attention scores."""

from __future__ import annotations

import pytest
from conftest import run_quick

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def metrics(tmp_path_factory) -> dict:
    ctx = run_quick("statistical-induction-heads", "markov-attn-only-2l", tmp_path_factory.mktemp("sih"))
    assert len(ctx.figures) == 2
    return ctx.metrics


def test_lean_and_bridge_agree(metrics: dict) -> None:
    assert metrics["bridge_lean_max_abs_diff"] < 1e-4


def test_unigram_phase_then_bigram(metrics: dict) -> None:
    assert metrics["unigram_phase_bigram_over_unigram_kl"] > 2
    assert metrics["unigram_phase_kl_reduction"] > 0.5
    # the quick run stops partway through the switch: closer to bigram than to unigram
    assert metrics["final_unigram_over_bigram_kl"] > 1.2
    assert metrics["final_kl_to_bigram"] < 0.6 * metrics["unigram_phase_kl_to_bigram"]


def test_heads_found_by_scores(metrics: dict) -> None:
    # uniform causal attention over 100 positions gives about 0.05 to the previous position
    assert metrics["previous_token_score_best_l0"] > 0.1
    assert metrics["induction_margin_over_base_rate"] > 0.15
    found = metrics["discovered_components"]
    # without the found layer-0 head the model falls back to unigram-like prediction
    assert metrics["ablate_prev_head_kl_to_unigram"] < 0.5 * metrics["ablate_prev_head_kl_to_bigram"]
    assert found["prev-token"][0].startswith("0.") and found["induction"][0].startswith("1.")
