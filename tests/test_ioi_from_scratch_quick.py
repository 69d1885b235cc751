"""ioi-from-scratch in --quick mode, through the real runner on a scratch copy of the entry:
the model trained here must solve IOI on held-out name pairs, the lean training forward and
the TransformerBridge must agree, and the discovery must find name movers and the heads that
feed their queries (found, not given)."""

from __future__ import annotations

import pytest
from conftest import quick_through_runner

pytestmark = pytest.mark.slow

CIRCUIT, MODEL = "ioi-from-scratch", "ioi-trained-small"


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return quick_through_runner(tmp_path_factory.mktemp("repo"), CIRCUIT, MODEL)


def test_model_solves_ioi_on_held_out_pairs(results: dict) -> None:
    m = results["metrics"]
    assert m["io_over_s_accuracy"] > 0.85
    assert m["io_over_s_accuracy_worse_order"] > 0.8  # both ABBA and BABA
    assert m["logit_diff_clean"] > 2.0
    assert m["bridge_lean_max_abs_diff"] < 1e-4  # lean training forward == TransformerBridge


def test_discovery_finds_name_movers_and_their_query_inputs(results: dict) -> None:
    m = results["metrics"]
    found = m["discovered_components"]
    assert found["name mover head"], found
    assert found["S-inhibition head"], found
    assert m["nm_path_to_logits_mean"] < -0.1
    assert m["sinh_path_to_nm_queries_mean"] < -0.1
    assert m["nm_knockout_drop_fraction"] > 0.5  # the name movers carry the logit difference
    assert set(m["found_role_classes"]) == {r for r, hs in found.items() if hs}
    verdicts = {c["id"]: c["verdict"] for c in results["claims"]}
    assert verdicts["io-preferred"] == "pass", results["claims"]
    assert verdicts["name-movers-direct-path"] == "pass", results["claims"]
    assert len(results["figures"]) == 3
