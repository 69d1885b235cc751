"""The compiled-rasp method check in --quick mode, through the real runner, on a scratch copy
of its entry (the committed full results are never touched)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import REPO

from mikb.loader import load_knowledge_base
from mikb.reproduce.runner import reproduce

pytestmark = pytest.mark.slow


def test_compiled_rasp_quick_run_scores_every_method(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "circuits_zoo").mkdir(parents=True)
    shutil.copyfile(REPO / "circuits_zoo/models.yaml", root / "circuits_zoo/models.yaml")
    shutil.copytree(REPO / "circuits_zoo/compiled-rasp", root / "circuits_zoo/compiled-rasp",
                    ignore=shutil.ignore_patterns("results"))
    outcome = reproduce(load_knowledge_base(root), "compiled-rasp", "tracr-hist", quick=True,
                        show_progress=False)
    assert outcome.status == "ok", outcome.message
    folder = root / "circuits_zoo/compiled-rasp/results/tracr-hist.quick"
    results = json.loads((folder / "results.json").read_text())
    m = results["metrics"]
    for method in ("exact", "acdc", "eap", "eap_ig"):
        assert m[f"auc.zero.{method}"] == 1.0  # every true edge outranks every false one
    assert m["acdc_false_positives.zero"] == 0 and m["acdc_true_positives.zero"] == 6
    assert m["tl_eap_node_max_abs_diff"] < 1e-4
    assert {c["verdict"] for c in results["claims"]} <= {"pass", "n/a"}
    board = json.loads((folder / "leaderboard.json").read_text())
    assert {r["method"] for r in board} == {"exact edge patching", "ACDC", "EAP", "EAP-IG"}
    mib = json.loads((folder / "edge-scores-zero-eap.json").read_text())
    assert set(mib) >= {"cfg", "nodes", "edges"} and "input->a0.h0<q>" in mib["edges"]
