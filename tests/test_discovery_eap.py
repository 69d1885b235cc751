"""mikb's EAP and EAP-IG held to known answers: TransformerLens 4's attribution_patch (edge
granularity) to 1e-4, and, as the integration path shrinks, exact patching."""

from __future__ import annotations

import pytest
import torch

from mikb.compiled.load import load
from mikb.methods.eap import eap, eap_ig, node_scores
from mikb.methods.edge_task import EdgeTask
from mikb.methods.graph import GraphForward

tl_ap = pytest.importorskip("transformer_lens.tools.analysis.attribution_patching")


def _random_model(normalization: str | None, attention_dir: str = "causal"):
    import transformer_lens.model_bridge.sources  # noqa: F401
    from transformer_lens.model_bridge import TransformerBridge

    cfg = {"n_layers": 2, "n_heads": 2, "d_model": 16, "d_head": 8, "d_mlp": 32, "d_vocab": 11,
           "n_ctx": 8, "act_fn": "gelu", "normalization_type": normalization, "seed": 3,
           "attention_dir": attention_dir}
    model = TransformerBridge.boot_native(cfg)
    model.eval()
    return model


def _tl_edge_ids(model, result) -> dict[str, float]:
    """TL's per-position edge scores summed over positions, in mikb's edge ids."""
    def name(node) -> str:
        if node.kind == "embed":
            return "input"
        if node.kind == "attn_head_out":
            return f"a{node.layer}.h{node.head}"
        if node.kind == "mlp_out":
            return f"m{node.layer}"
        if node.kind in ("q_input", "k_input", "v_input"):
            return f"a{node.layer}.h{node.head}<{node.kind[0]}>"
        if node.kind == "mlp_in":
            return f"m{node.layer}"
        return "logits"

    out: dict[str, float] = {}
    for (writer, reader), score in result.edge_scores.items():
        r = name(reader)
        key = f"{name(writer)}->{r}"
        out[key] = out.get(key, 0.0) + score
    return out


def _compare(model, clean, corrupt, positions, labels):
    gf = GraphForward(model)
    task = EdgeTask(gf, clean, corrupt, positions)
    task.__dict__["clean_labels"] = labels  # fix the label the metric reads
    ours = eap(task, direction="denoising").as_dict()

    def metric_fn(logits):
        # one example's logits [1, pos, vocab] -> its log-prob of its label, averaged
        lp = logits[:, positions].log_softmax(-1)
        idx = metric_fn.labels.unsqueeze(-1)
        return lp.gather(-1, idx).mean()

    theirs: dict[str, float] = {}
    for i in range(clean.shape[0]):  # TL averages per example; give each its own labels
        metric_fn.labels = labels[i : i + 1]
        res = tl_ap.attribution_patch(model, clean[i : i + 1], corrupt[i : i + 1], metric_fn,
                                      tl_ap.EdgeAttributionConfig(granularity="edge"))
        for k, v in _tl_edge_ids(model, res).items():
            theirs[k] = theirs.get(k, 0.0) + v / clean.shape[0]
    assert set(theirs) == set(ours)
    worst = max(abs(ours[k] - theirs[k]) for k in ours)
    assert worst < 1e-4, worst
    return ours


def test_eap_matches_transformer_lens_edges_on_gpt2_bridge():
    """TL's edge granularity needs per-head results, which only its HF GPT-2 bridge exposes."""
    from mikb.methods._gpt2_offline import random_gpt2_bridge

    model = random_gpt2_bridge(n_layer=2, n_head=2, n_embd=16, vocab_size=11, n_positions=8, seed=4)
    gen = torch.Generator().manual_seed(0)
    clean = torch.randint(0, 11, (4, 6), generator=gen)
    corrupt = torch.randint(0, 11, (4, 6), generator=gen)
    labels = torch.randint(0, 11, (4, 5), generator=gen)
    ours = _compare(model, clean, corrupt, slice(1, None), labels)
    assert max(abs(v) for v in ours.values()) > 1e-3  # not trivially zero


def _native_and_compiled():
    gen = torch.Generator().manual_seed(1)
    clean = torch.randint(0, 11, (3, 6), generator=gen)
    corrupt = torch.randint(0, 11, (3, 6), generator=gen)
    yield "native-LN", _random_model("LN"), clean, corrupt
    cm = load("tracr-sort")
    yield "tracr-sort", cm.bridge, cm.sample_tokens(3, 0), cm.sample_tokens(3, 1)


@pytest.mark.parametrize("case", list(_native_and_compiled()), ids=lambda c: c[0])
def test_node_scores_sum_edges_and_match_tl_node_attribution(case):
    """Node level on TL-native bridges (dense and compiled): mikb's node score (a writer's
    total over its outgoing edges) equals TL's node-granularity attribution_patch."""
    _, model, clean, corrupt = case
    task = EdgeTask(GraphForward(model), clean, corrupt, slice(1, None))
    nodes = node_scores(eap(task, direction="denoising"))
    labels = task.clean_labels

    def metric_fn(logits):
        lp = logits[:, 1:].log_softmax(-1)
        return lp.gather(-1, metric_fn.labels.unsqueeze(-1)).mean()

    total: dict[str, float] = {}
    for i in range(3):
        metric_fn.labels = labels[i : i + 1]
        res = tl_ap.attribution_patch(model, clean[i : i + 1], corrupt[i : i + 1], metric_fn)
        for node, s in res.node_scores.items():
            key = {"embed": "input", "attn_head_out": f"a{node.layer}.h{node.head}",
                   "mlp_out": f"m{node.layer}"}[node.kind]
            total[key] = total.get(key, 0.0) + s / 3
    for key, value in total.items():
        assert abs(nodes[key] - value) < 1e-4, (key, nodes[key], value)


def test_eap_ig_one_step_is_eap_and_many_steps_approach_exact():
    """On the right grid one step is EAP (noising); on the reference's left grid one step is
    the gradient at the corrupted run, i.e. minus denoising EAP; with many steps the input's
    node total approaches the exact metric change of ablating every edge (IG completeness)."""
    model = _random_model("LN", "bidirectional")
    gen = torch.Generator().manual_seed(2)
    clean = torch.randint(0, 11, (4, 6), generator=gen)
    corrupt = torch.randint(0, 11, (4, 6), generator=gen)
    task = EdgeTask(GraphForward(model), clean, corrupt, slice(1, None))
    assert torch.allclose(eap_ig(task, steps=1, grid="right").scores, eap(task).scores, atol=1e-6)
    assert torch.allclose(eap_ig(task, steps=1).scores, -eap(task, "denoising").scores, atol=1e-6)
    g = task.graph
    exact = (task.evaluate(torch.zeros(1, g.n_edges), "metric")
             - task.evaluate(torch.ones(1, g.n_edges), "metric"))[0]
    many = node_scores(eap_ig(task, steps=64))["input"]
    assert abs(many - float(exact)) < 0.02 * abs(float(exact)) + 1e-4
