"""Max-of-K in --quick mode (600 training steps, no enumeration): the trained model attends to
the maximum and copies it, and the mechanism-only bound is sound. One quick run is shared."""

from __future__ import annotations

import pytest
import torch
from conftest import run_quick

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def metrics(tmp_path_factory):
    return run_quick("max-of-k", "max-of-4-1l", tmp_path_factory.mktemp("maxk")).metrics


def test_model_solves_the_task(metrics) -> None:
    assert metrics["sampled_accuracy"] > 0.97
    assert metrics["bridge_path_max_abs_diff"] < 1e-3  # path tables reproduce the bridge's logits


def test_mechanism(metrics) -> None:
    assert metrics["attention_on_max_mean"] > 0.8
    assert metrics["qk_rank_correlation_median"] > 0.9
    assert metrics["ov_copying_fraction_upper_half"] > 0.9
    assert metrics["uniform_attention_accuracy_drop"] > 0.5


def test_bound_is_sound_and_exact_count_is_right() -> None:
    """On a tiny vocabulary, the enumeration and the bound agree with a direct forward pass."""
    from mikb.lm.lean_native import forward, init_params
    from mikb.methods.max_of_k import brute_force, certified_bound, model_config, paths

    cfg = model_config(8, 3, 16)
    params = init_params(cfg, 0)
    # Plant a max-finding head: keys score by token value, OV copies, so most inputs are right.
    e = torch.eye(8, 16) * 4
    params["tok_embed.weight"] = e
    params["pos.weight"] = torch.zeros(3, 16)
    params["layers.0.attn.q.weight"] = torch.zeros(16, 16)
    params["layers.0.attn.q.weight"][0, :8] = 1.0
    params["layers.0.attn.k.weight"] = torch.zeros(16, 16)
    params["layers.0.attn.k.weight"][0, :8] = torch.arange(8.0) * 2
    params["layers.0.attn.v.weight"] = torch.eye(16)
    params["layers.0.attn.o.weight"] = torch.eye(16)
    params["head.weight"] = torch.eye(8, 16)
    pt = paths(cfg, params)
    tokens = torch.cartesian_prod(*[torch.arange(8)] * 3)
    direct = (forward(cfg, params, tokens, last_only=True).argmax(-1) == tokens.max(1).values).double().mean()
    bf = brute_force(pt, 8, 3)
    assert bf["n_inputs"] == 8**3
    assert abs(bf["accuracy"] - float(direct)) < 1e-12
    bound = certified_bound(pt, 8, 3)["accuracy_bound"]
    assert 0 < bound <= bf["accuracy"] + 1e-12
