"""The planted IOI model's edge-level answer key, read off its weights (not off any method):
the heads it connects are exactly the planted ones, and the edges follow the wiring the
planted model documents (K-composition into the induction heads, values into S-inhibition)."""

from __future__ import annotations

import pytest

from mikb.lm.planted_discovery import PlantedIOIGroundTruth
from mikb.lm.planted_ioi import ground_truth


@pytest.fixture(scope="module")
def key() -> PlantedIOIGroundTruth:
    return PlantedIOIGroundTruth()


def test_the_answer_key_connects_exactly_the_planted_heads(key: PlantedIOIGroundTruth) -> None:
    truth = key.ground_truth_edges
    touched = {part.split("<")[0] for edge in truth for part in edge.split("->")} - {"input", "logits"}
    planted = {f"a{la}.h{h}" for la, h in (label.split(".") for label in ground_truth())}
    assert touched == planted
    assert len(truth) < key.graph.n_edges / 10  # a sparse circuit, not the whole graph


def test_the_answer_key_follows_the_documented_wiring(key: PlantedIOIGroundTruth) -> None:
    truth = key.ground_truth_edges
    assert {"a0.h3->a1.h1<k>", "a0.h6->a1.h5<k>"} <= truth  # previous-token -> induction keys
    assert "a0.h3->a1.h1<q>" not in truth  # ... and not their queries
    assert {"a0.h5->a2.h4<v>", "a1.h1->a2.h7<v>"} <= truth  # duplicate/induction -> S-inhibition values
    assert {"a2.h4->a3.h1<q>", "a2.h7->a4.h2<q>"} <= truth  # S-inhibition -> name-mover queries
    assert {f"{h}->logits" for h in ("a3.h1", "a3.h6", "a4.h2")} <= truth  # name movers write the answer
    assert "a2.h4->logits" not in truth  # S-inhibition heads write nothing the unembedding reads


def test_prompts_end_at_end_and_the_read_out_keeps_the_names(key: PlantedIOIGroundTruth) -> None:
    clean, corrupted = key.prompts(8, seed=0)
    assert clean.shape == corrupted.shape and (clean != corrupted).any()
    assert key.weights.w_u.shape[1] == len(key.name_ids) == 32
