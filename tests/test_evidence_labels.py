"""A run on a hand-built model is a method check everywhere the site shows it; only a model
that learned the behaviour is "reproduced". Found components sit beside the ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mikb.evidence import METHOD_CHECK, REPRODUCTION, SMOKE_TEST, evidence_of
from mikb.export import export_entries
from mikb.loader import load_knowledge_base
from mikb.reproduce.fingerprint import entry_run_sha256, script_sha256
from mikb.site.generate import generate_site


def _publish_results(root: Path) -> None:
    folder = root / "circuits_zoo/toy-copy/results/toy-2l"
    folder.mkdir(parents=True)
    results = {
        "schema_version": 1, "circuit": "toy-copy", "model": "toy-2l", "status": "ok", "quick": False, "seed": 0,
        "params": {}, "claims": [], "figures": [], "notes": [],
        "metrics": {"copy_score": 0.9, "discovered_components": {"prev": ["0.1", "0.3"], "copy": ["1.2"]},
                    "ground_truth_components": {"prev": ["0.1"], "copy": ["1.2", "1.0"]}},
        "provenance": {"model_id": "toy-2l", "seed": 0, "finished_at": "2026-01-01T00:00:00+00:00",
                       "script_sha256": script_sha256(root / "circuits_zoo/toy-copy/reproduce.py"),
                       "entry_run_sha256": entry_run_sha256(yaml.safe_load((root / "circuits_zoo/toy-copy/circuit.yaml").read_text()))},
    }
    (folder / "results.json").write_text(json.dumps(results))


def _set_kind(root: Path, kind: str) -> None:
    models = root / "circuits_zoo/models.yaml"
    models.write_text(models.read_text().replace("kind: planted", f"kind: {kind}"))


@pytest.mark.parametrize("kind, evidence", [("planted", METHOD_CHECK), ("compiled", METHOD_CHECK),
                                            ("pretrained", REPRODUCTION), ("trained-here", REPRODUCTION),
                                            ("random", SMOKE_TEST)])
def test_evidence_follows_where_weights_came_from(kind: str, evidence: str) -> None:
    assert evidence_of(kind) == evidence


def test_planted_run_is_a_method_check_on_every_page(kb_root: Path, tmp_path: Path) -> None:
    _publish_results(kb_root)
    out = tmp_path / "src"
    generate_site(kb_root, out)
    circuit = (out / "circuits/toy-copy/index.md").read_text()
    index = (out / "circuits/index.md").read_text()
    for page in (circuit, index):
        assert "method check ran" in page
        assert ">reproduced<" not in page
    assert "Method check on toy&#45;2l" in circuit or "Method check on toy-2l" in circuit
    assert "| Role | Found | Ground truth | Hits | Misses | False positives |" in circuit
    assert "| prev | 0.1, 0.3 | 0.1 | 1 | 0 | 0.3 |" in circuit
    assert "| copy | 1.2 | 1.0, 1.2 | 1 | 1.0 | 0 |" in circuit
    assert "| **all roles** | | | **2** | **1** | **1** |" in circuit
    exported = {m["id"]: m["evidence"] for m in export_entries(load_knowledge_base(kb_root))["models"]}
    assert exported == {"toy-2l": METHOD_CHECK}


def test_learned_model_run_is_a_reproduction(kb_root: Path, tmp_path: Path) -> None:
    _set_kind(kb_root, "trained-here")
    _publish_results(kb_root)
    out = tmp_path / "src"
    generate_site(kb_root, out)
    circuit = (out / "circuits/toy-copy/index.md").read_text()
    assert ">reproduced<" in circuit and "mikb-state-method" not in circuit and "Method check on" not in circuit
    assert "Reproduction on toy" in circuit


def test_unrecorded_metric_is_missing_only_where_a_criterion_applies() -> None:
    from mikb.entries import Claim
    from mikb.reproduce.claims import judge

    claim = Claim(id="c", statement="s", metric="m", tolerance=0.1,
                  reported={"value": 1.0, "model": "paper-model", "source": {"paper": "p"}},
                  expect={"planted": {"min": 0.5}})
    assert judge(claim, "paper-model", {}).verdict == "missing"  # the paper's number applies: a failure
    assert judge(claim, "planted", {}).verdict == "missing"  # an expectation applies: a failure
    assert judge(claim, "other", {}).verdict == "n/a"  # nothing applies to this model: no verdict
    assert judge(claim, "paper-model", {"m": 1.05}).verdict == "pass"
    assert judge(claim, "planted", {"m": 0.4}).verdict == "fail"
