"""Run the three IOI-family reproduction scripts on the planted model (quick mode) and check they
recover every planted role and meet the planted-model criteria written in their circuit.yaml."""

import importlib.util
import json
import time
from pathlib import Path

import pytest
import yaml

from mikb.lm.planted_ioi import ground_truth
from mikb.reproduce import ModelUnavailable, ReproContext

ZOO = Path(__file__).resolve().parents[1] / "circuits_zoo"
CIRCUITS = ["ioi", "copy-suppression", "backup-name-movers"]


def load_script(circuit_id: str):
    spec = importlib.util.spec_from_file_location(
        f"repro_{circuit_id.replace('-', '_')}", ZOO / circuit_id / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_quick(circuit_id: str, model_id: str, out_dir: Path) -> ReproContext:
    module = load_script(circuit_id)
    ctx = ReproContext(circuit_id=circuit_id, model_id=model_id, seed=0, quick=True,
                       params={**module.SPEC.params, **module.SPEC.quick_params},
                       out_dir=out_dir, show_progress=False)
    module.run(ctx)
    return ctx


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return {c: run_quick(c, "planted-ioi", tmp_path_factory.mktemp(c)) for c in CIRCUITS}


def roles(role: str) -> set[str]:
    return {h for h, r in ground_truth().items() if r == role}


def test_ioi_recovers_planted_roles_by_path_patching(runs):
    m = runs["ioi"].metrics
    assert set(m["path_to_logits_name_movers"]) == roles("name mover")
    assert set(m["path_to_logits_negative"]) == roles("negative name mover")
    assert set(m["path_to_nm_queries_s_inhibition"]) == roles("s-inhibition")
    assert set(m["path_to_sinh_keys_heads"]) == roles("duplicate token")


def test_copy_suppression_finds_negative_heads_by_copying_score(runs):
    m = runs["copy-suppression"].metrics
    assert set(m["negative_copying_heads_found"]) == roles("negative name mover")


def test_backup_compensation_is_measured(runs):
    m = runs["backup-name-movers"].metrics
    assert m["backup_heads_found"] == sorted(roles("backup name mover"))
    assert m["self_repair_fraction"] > 0.5
    assert m["de_ablated_10.10"] > 10 * max(m["de_clean_10.10"], 0.01)


@pytest.mark.parametrize("circuit_id", CIRCUITS)
def test_planted_expectations_in_circuit_yaml_hold(runs, circuit_id):
    entry = yaml.safe_load((ZOO / circuit_id / "circuit.yaml").read_text())
    ctx = runs[circuit_id]
    checked = 0
    for claim in entry["claims"]:
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
    numbers = [v for v in ctx.metrics.values() if isinstance(v, float)]
    assert numbers and all(math.isfinite(v) for v in numbers)
