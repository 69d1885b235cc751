"""The two trained-here circuits in --quick mode, through the real runner, on a scratch copy
of their entries (the committed full results are never touched). The phenomenon must show
even in CI-sized runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import REPO

from mikb.loader import load_knowledge_base
from mikb.reproduce.runner import reproduce

pytestmark = pytest.mark.slow


def _scratch(tmp_path: Path, circuit: str) -> Path:
    root = tmp_path / "repo"
    (root / "circuits_zoo").mkdir(parents=True)
    shutil.copyfile(REPO / "circuits_zoo/models.yaml", root / "circuits_zoo/models.yaml")
    shutil.copytree(REPO / "circuits_zoo" / circuit, root / "circuits_zoo" / circuit,
                    ignore=shutil.ignore_patterns("results"))
    return root


def _quick(tmp_path: Path, circuit: str, model: str) -> dict:
    root = _scratch(tmp_path, circuit)
    outcome = reproduce(load_knowledge_base(root), circuit, model, quick=True, show_progress=False)
    assert outcome.status == "ok", outcome.message
    assert outcome.folder == root / "circuits_zoo" / circuit / "results" / f"{model}.quick"  # never the full results
    return json.loads((outcome.folder / "results.json").read_text())


def test_induction_heads_form_in_a_quick_run(tmp_path: Path) -> None:
    results = _quick(tmp_path, "induction-heads", "attn-only-2l")
    m = results["metrics"]
    induction = m["induction_scores"]
    assert max(induction[1]) > max(induction[0]) + 0.2  # best layer-1 head clearly above every layer-0 head
    assert m["repeated_half_loss_ratio"] < 0.7
    assert m["k_composition_induction_drop_fraction"] > 0.3
    assert m["ablate_induction_head_loss_increase"] > 0.1
    verdicts = {c["id"]: c["verdict"] for c in results["claims"]}
    assert verdicts["induction-head"] == "pass", results["claims"]
    assert len(results["figures"]) == 3


def test_grokking_quick_run_generalises(tmp_path: Path) -> None:
    results = _quick(tmp_path, "modular-addition-grokking", "grokking-1l-p113")
    m = results["metrics"]
    assert m["test_acc_final"] > 20 * m["chance_acc"]  # far above chance
    assert m["train_acc_final"] == 1.0
    assert m["bridge_lean_max_abs_diff"] < 1e-3  # the lean loop and TransformerBridge agree
    assert 1 <= m["n_key_frequencies"] <= 8
    verdicts = {c["id"]: c["verdict"] for c in results["claims"]}
    assert verdicts["grokking"] == "pass", results["claims"]
