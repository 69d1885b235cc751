"""Run the three IOI-family reproduction scripts on the planted model (quick mode) and check they
recover every planted role and meet the planted-model criteria written in their circuit.yaml."""

import json
import time
from pathlib import Path

import pytest
import yaml
from conftest import run_quick

from mikb.lm.planted_ioi import ground_truth_components
from mikb.reproduce import ModelUnavailable

ZOO = Path(__file__).resolve().parents[1] / "circuits_zoo"
CIRCUITS = ["ioi", "copy-suppression", "backup-name-movers"]




@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return {c: run_quick(c, "planted-ioi", tmp_path_factory.mktemp(c)) for c in CIRCUITS}


def entry(circuit_id: str) -> dict:
    return yaml.safe_load((ZOO / circuit_id / "circuit.yaml").read_text())


@pytest.mark.parametrize("circuit_id", CIRCUITS)
def test_discovered_heads_equal_the_planted_ground_truth(runs, circuit_id):
    m = runs[circuit_id].metrics
    truth = ground_truth_components()
    found = m["discovered_components"]
    assert m["ground_truth_components"] == {r: truth[r] for r in found}
    assert found == m["ground_truth_components"]
    assert m["ground_truth_recall"] == 1.0 and m["ground_truth_false_positives"] == 0
    # Role ids are the entry's component roles, so the site can match them.
    entry_roles = {c["role"] for c in entry(circuit_id)["components"]}
    assert set(found) <= entry_roles


def test_ioi_finds_all_seven_classes_and_the_value_path(runs):
    m = runs["ioi"].metrics
    assert len(m["discovered_components"]) == 7
    assert m["dup_ind_to_sinh_values_total"] < -0.1  # V-composition carries the signal
    assert abs(m["dup_ind_to_sinh_keys_total"]) < 1e-6  # the keys do not
    assert m["sinh_signal_fit_position_share"] > 0.5  # the paper's six-dataset fit
    # Patching from the clean prompts themselves changes nothing.
    grid = m["sinh_signal_grid_logit_diff"]
    assert abs(grid["token_original__position_original"] - m["logit_diff_clean"]) < 1e-4
    assert len(grid) == 6
    # Adversarial prompts: IO repeated once more (one sentence fits the planted context).
    assert m["adversarial_sentences_used"] == 1
    assert abs(m["adversarial_clean_logit_diff"] - m["logit_diff_clean"]) < 1e-4


def test_backup_behaviour_is_described(runs):
    m = runs["backup-name-movers"].metrics
    behaviour = m["backup_behaviour"]
    assert behaviour["4.7"]["copies_io"] and not behaviour["4.0"]["copies_io"]
    assert m["self_repair_fraction"] > 0.5
    assert m["de_ablated_4.7"] > 10 * max(m["de_clean_4.7"], 0.01)


@pytest.mark.parametrize("circuit_id", CIRCUITS)
def test_planted_expectations_in_circuit_yaml_hold(runs, circuit_id):
    ctx = runs[circuit_id]
    checked = 0
    for claim in entry(circuit_id)["claims"]:
        crit = claim.get("expect", {}).get("planted-ioi")
        if crit is None:
            continue
        value = ctx.metrics[claim["metric"]]
        assert crit.get("min", -float("inf")) <= value <= crit.get("max", float("inf")), claim["id"]
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize("circuit_id", CIRCUITS)
def test_outputs_are_recorded(runs, circuit_id):
    ctx = runs[circuit_id]
    assert ctx.weights_source.startswith("planted")
    assert "flags" in ctx.metrics and ctx.metrics["flags"]["scores"] == "signed"
    graph = json.loads((ctx.out_dir / "edge_scores.json").read_text())
    assert {"cfg", "nodes", "edges"} <= set(graph) and graph["edges"]
    for fig in ctx.figures:
        assert (ctx.out_dir / fig.file).stat().st_size > 1000


def test_gpt2_small_fails_fast_offline(tmp_path):
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache("gpt2", "config.json"), str):
        pytest.skip("GPT-2 is in the local Hugging Face cache; the offline failure cannot occur")
    start = time.monotonic()
    with pytest.raises(ModelUnavailable, match="gpt2"):
        run_quick("copy-suppression", "gpt2-small", tmp_path)
    assert time.monotonic() - start < 60


@pytest.mark.parametrize("circuit_id", CIRCUITS)
def test_scripts_run_on_gpt2_architecture(circuit_id, tmp_path, monkeypatch):
    """The gpt2-small code path (boot_transformers bridge, LayerNorm, MLPs, joint QKV,
    compatibility mode) runs end to end on a small random GPT-2-shaped model standing in for
    the real weights; only the numbers are meaningless."""
    import math

    from mikb.lm import hub
    from mikb.methods._gpt2_offline import random_gpt2_bridge

    monkeypatch.setattr(hub, "_boot_gpt2", lambda device: random_gpt2_bridge(n_embd=96, n_positions=64))
    ctx = run_quick(circuit_id, "gpt2-small", tmp_path)
    assert ctx.weights_source == "Hugging Face hub: gpt2"
    m = ctx.metrics
    assert set(m["discovered_components"]) and "ground_truth_components" not in m
    # Every claim's metric is recorded and finite on the gpt2-small path, except those that
    # need data the quick offline run does not have (OpenWebText for CSPA).
    offline_only = {f"cspa_owt_{k}fraction_explained"
                    for k in ("", "ov_only_", "qk_only_", "top_percentile_", "net_loss_",
                              "abs_loss_")}
    for claim in entry(circuit_id)["claims"]:
        if claim["metric"] in offline_only:
            continue
        assert claim["metric"] in m, claim["id"]
        value = m[claim["metric"]]
        assert isinstance(value, (int, float)) and math.isfinite(value), claim["id"]
    if circuit_id == "ioi":
        assert "paper_head_scores" in m and len(m["paper_head_scores"]) == 7
