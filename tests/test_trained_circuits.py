"""The two trained-here circuits in --quick mode, through the real runner, on a scratch copy
of their entries (the committed full results are never touched). The phenomenon must show
even in CI-sized runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import quick_through_runner

pytestmark = pytest.mark.slow


def _quick(tmp_path: Path, circuit: str, model: str) -> dict:
    return quick_through_runner(tmp_path, circuit, model)


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
