"""The graph forward is the model: all edges live = the bridge, all ablated = the corrupted run,
and each compiled model's ground-truth circuit alone reproduces its clean outputs."""

from __future__ import annotations

import pytest
import torch

from mikb.compiled.load import available, load
from mikb.methods.edge_task import EdgeTask
from mikb.methods.graph import Graph, GraphForward


def test_graph_ids_follow_mib():
    g = Graph(2, 2, True)
    assert g.writers == ("input", "a0.h0", "a0.h1", "m0", "a1.h0", "a1.h1", "m1")
    assert "input->a0.h0<q>" in g.edge_index and "a0.h1->m0" in g.edge_index
    assert "a0.h0->a0.h1<k>" not in g.edge_index and "m1->a1.h0<v>" not in g.edge_index
    # heads x 3 inputs x writers before them (1 in layer 0, 4 in layer 1); MLPs read 3 and 6
    # writers; the logits all 7
    assert g.n_edges == 2 * 3 * 1 + 3 + 2 * 3 * 4 + 6 + 7


def test_masked_forward_is_the_model_both_ways():
    from conftest import small_native_model

    model = small_native_model()
    gen = torch.Generator().manual_seed(0)
    clean = torch.randint(0, model.cfg.d_vocab, (3, 7), generator=gen)
    corrupt = torch.randint(0, model.cfg.d_vocab, (3, 7), generator=gen)
    gf = GraphForward(model)
    with torch.no_grad():
        assert torch.allclose(gf.run(clean).logits, model(clean), atol=1e-4)
        abl = gf.writer_outputs(corrupt)
        both = gf.run(clean, mask=torch.stack([torch.ones(gf.graph.n_edges),
                                               torch.zeros(gf.graph.n_edges)]), ablated=abl)
        assert torch.allclose(both.logits[:3], model(clean), atol=1e-4)
        assert torch.allclose(both.logits[3:], model(corrupt), atol=1e-4)


@pytest.mark.parametrize("model_id", available())
def test_ground_truth_circuit_alone_is_the_model(model_id):
    cm = load(model_id)
    gf = GraphForward(cm.bridge)
    for ablation in ("zero", "resample"):
        task = EdgeTask(gf, cm.sample_tokens(16, 0), cm.sample_tokens(16, 1), slice(1, None),
                        "numerical" if cm.numerical else "categorical", ablation)
        masks = torch.stack([gf.graph.mask_from(cm.ground_truth_edges), torch.zeros(gf.graph.n_edges)])
        circuit, empty = task.evaluate(masks).tolist()
        assert circuit < 1e-6, (ablation, circuit)
        if ablation == "zero":
            assert empty > 1e-3


def test_single_edge_patch_equals_mikb_path_patching():
    """A sender->receiver<c> edge carrying the clean output inside the corrupted run is what
    mikb.methods.fast_patching.path_patching_from_head computes (the existing reference)."""
    from conftest import small_native_model

    from mikb.methods.fast_patching import logit_diff_readout, path_patching_from_head

    model = small_native_model()
    gen = torch.Generator().manual_seed(5)
    clean = torch.randint(0, model.cfg.d_vocab, (3, 7), generator=gen)
    corrupt = clean.clone()
    corrupt[:, 1:4] = torch.randint(0, model.cfg.d_vocab, (3, 3), generator=gen)
    readout = logit_diff_readout(torch.randint(0, model.cfg.d_vocab, (3, 2), generator=gen))
    gf = GraphForward(model)
    g = gf.graph
    with torch.no_grad():
        clean_out = gf.writer_outputs(clean)
        for sender, c in (((0, 1), "q"), ((1, 2), "k"), ((0, 3), "v")):
            ref = path_patching_from_head(model, clean, corrupt, readout, sender, c)
            receivers = [(la, h) for la in range(sender[0] + 1, g.n_layers) for h in range(g.n_heads)]
            masks = torch.ones(len(receivers), g.n_edges)
            for row, (la, h) in enumerate(receivers):
                masks[row, g.edge_index[f"a{sender[0]}.h{sender[1]}->a{la}.h{h}<{c}>"]] = 0.0
            logits = gf.run(corrupt, mask=masks, ablated=clean_out).logits
            ours = readout_per_variant(readout, logits, len(receivers))
            for row, (la, h) in enumerate(receivers):
                assert abs(float(ours[row]) - float(ref[la, h])) < 1e-4


def readout_per_variant(readout, logits, n_var):
    n = logits.shape[0] // n_var
    return torch.stack([readout.per_example(logits[v * n : (v + 1) * n]).mean() for v in range(n_var)])


@pytest.mark.parametrize("ablation", ["zero", "resample"])
def test_inactive_edges_have_no_effect(ablation):
    """An edge whose ablated output its reader cannot see changes nothing (exact patching)."""
    from mikb.methods.edge_patching import edge_patching

    cm = load("tracr-reverse")
    task = EdgeTask(GraphForward(cm.bridge), cm.sample_tokens(8, 0), cm.sample_tokens(8, 1),
                    slice(1, None), "categorical", ablation)
    active = task.active_edges()
    effect = edge_patching(task).scores.abs()
    assert bool((effect[~active] < 1e-6).all())
    truth = torch.tensor([e in cm.ground_truth_edges for e in task.graph.edges])
    assert not bool((active & ~truth).any())  # nothing outside the program is ever active
