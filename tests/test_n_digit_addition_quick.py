"""n-digit addition in --quick mode through the real runner on a scratch copy of the entry: the
model must learn base add, its heads must read digit pairs, and the carry split must be measured."""

from __future__ import annotations

import pytest
from conftest import quick_through_runner

pytestmark = pytest.mark.slow

CIRCUIT, MODEL = "n-digit-addition", "add-1l-4digit"


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return quick_through_runner(tmp_path_factory.mktemp("addition"), CIRCUIT, MODEL)


def test_model_learns_base_add(results: dict) -> None:
    m = results["metrics"]
    assert m["bridge_lean_max_abs_diff"] < 1e-3  # lean training forward and TransformerBridge agree
    assert m["digit_accuracy_no_carry"] > 0.9  # chance is 1 in 10
    assert m["mean_digit_accuracy"] > 0.8


def test_heads_read_digit_pairs(results: dict) -> None:
    m = results["metrics"]
    assert m["own_column_read_fraction"] >= 0.75
    assert m["attention_on_digit_pairs_mean"] > 0.5  # most attention goes to operand digits
    assert len(results["figures"]) == 3


def test_carry_types_are_split(results: dict) -> None:
    m = results["metrics"]
    counts = m["digit_count_by_carry_type"]
    assert min(counts) > 100  # every carry type is measured on enough digits
    assert m["digit_accuracy_no_carry"] >= m["digit_accuracy_cascade"]
