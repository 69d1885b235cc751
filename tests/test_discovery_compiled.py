"""Committed tracr-compiled models: their weights run as tracr ran them, their ground truth
agrees with what the weights can read and write, and (with the tracr extra) a fresh compile
gives the same weights."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from mikb.compiled.load import WEIGHTS_DIR, available, load
from mikb.compiled.programs import PROGRAMS
from mikb.methods.graph import GraphForward

MODELS = available()


def test_every_program_committed():
    assert sorted(MODELS) == sorted(p.model_id for p in PROGRAMS.values())
    assert len(MODELS) >= 5


@pytest.mark.parametrize("model_id", MODELS)
def test_bridge_reproduces_tracr_outputs(model_id):
    cm = load(model_id)
    for sample in cm.meta["samples"]:
        with torch.no_grad():
            out = cm.bridge(cm.encode(sample["tokens"])[None])[0]
        assert torch.allclose(out, torch.tensor(sample["output"], dtype=out.dtype), atol=1e-4)
        if not cm.numerical:  # the decoded program output is the argmax at every position
            inv = {v: k for k, v in cm.meta["output_vocab"].items()}
            decoded = [inv[i] for i in out[1:].argmax(-1).tolist()]
            assert decoded == [str(v) for v in sample["decoded"]]


def _reads_writes(cm):
    """Residual dimensions each node writes and each reader reads, from the weights alone."""
    sd = {k: v.numpy() for k, v in cm.state_dict.items()}
    cfg = cm.meta["cfg"]
    H, dh = cfg["n_heads"], cfg["d_head"]
    nz = lambda a, axis: set(np.nonzero(np.abs(a).sum(axis=axis) > 0)[0].tolist())  # noqa: E731
    writes = {"input": nz(sd["tok_embed.weight"], 0) | nz(sd["pos.weight"], 0)}
    reads = {("logits", None): nz(sd["head.weight"], 0)}
    for la in range(cfg["n_layers"]):
        for h in range(H):
            cols = slice(h * dh, (h + 1) * dh)
            node = f"a{la}.h{h}"
            writes[node] = nz(sd[f"layers.{la}.attn.o.weight"][:, cols], 1)
            for c in "qkv":
                reads[(node, c)] = nz(sd[f"layers.{la}.attn.{c}.weight"][cols], 0)
        writes[f"m{la}"] = nz(sd[f"layers.{la}.mlp.fc_out.weight"], 1)
        reads[(f"m{la}", None)] = nz(sd[f"layers.{la}.mlp.fc_in.weight"], 0)
    return reads, writes


@pytest.mark.parametrize("model_id", MODELS)
def test_ground_truth_matches_what_the_weights_connect(model_id):
    """Every edge the weights connect (a written dimension that the reader reads) is in the
    ground truth; ground-truth edges the weights do not connect are only those whose reader
    ignores a direction it formally reads (a zero weight row)."""
    cm = load(model_id)
    g = GraphForward(cm.bridge).graph
    reads, writes = _reads_writes(cm)
    connected = set()
    for node, c in g.readers:
        for w in g.writers:
            if g.slot(w) < g.slot(node) and writes[w] & reads[(node, c)]:
                connected.add(f"{w}->{node}" + (f"<{c}>" if c else ""))
    assert connected <= cm.ground_truth_edges, sorted(connected - cm.ground_truth_edges)
    assert len(connected) >= 0.75 * len(cm.ground_truth_edges)
    assert cm.ground_truth_edges <= set(g.edges)
    assert cm.ground_truth_nodes <= set(g.writers)


@pytest.mark.parametrize("model_id", MODELS)
def test_weights_digest_matches_provenance(model_id):
    from mikb.compiled.compile import weights_digest

    cm = load(model_id)
    sd = {k: v.numpy() for k, v in cm.state_dict.items()}
    assert weights_digest(sd) == cm.meta["provenance"]["weights_sha256"]


HAVE_TRACR = importlib.util.find_spec("tracr") is not None


@pytest.mark.skipif(not HAVE_TRACR, reason="tracr is not installed (optional extra: pip install "
                    "-e '.[tracr]'); the committed weights are tested without it")
@pytest.mark.parametrize("name", ["hist", "frac-prevs"])
def test_fresh_compile_gives_committed_weights(name):
    from mikb.compiled.compile import compile_program

    sd, meta = compile_program(PROGRAMS[name])
    committed = load(PROGRAMS[name].model_id)
    assert set(sd) == set(committed.state_dict)
    for key, value in sd.items():
        assert np.array_equal(value, committed.state_dict[key].numpy()), key
    # edges are graph ids, so they must match exactly (SOp labels in the component
    # descriptions carry tracr's global id counter and may differ between compiles)
    assert meta["ground_truth"]["edges"] == committed.meta["ground_truth"]["edges"]
    assert meta["cfg"] == committed.meta["cfg"]
    assert (WEIGHTS_DIR / f"{PROGRAMS[name].model_id}.npz").exists()
