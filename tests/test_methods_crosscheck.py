"""Cross-check our IOI methods against TransformerLens on the same models and inputs (1e-4).

Two models: the planted IOI model (TL-native attention, no norms) and a tiny randomly
initialised GPT-2-architecture model built offline from a `transformers` config (LayerNorm,
MLPs and the joint-QKV attention that TL's direct path patching needs).
"""

import pytest
import torch
from transformer_lens import patching
from transformer_lens.patching import get_act_patch_direct_path

from mikb.data.ioi import make_ioi_dataset
from mikb.lm.planted_ioi import build_planted_ioi, planted_names
from mikb.methods.ablation import head_means, run_ablated
from mikb.methods.dla import head_dla, tl_head_dla
from mikb.methods.hooks import z_name
from mikb.methods.metrics import logit_diff, logit_diff_metric
from mikb.methods.path_patching import path_patch_to_heads, path_patch_to_logits

TOL = 1e-4


@pytest.fixture(scope="module")
def tiny_gpt2():
    from transformer_lens.model_bridge.sources._bridge_builder import build_bridge_from_module
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_head=4, n_embd=32, vocab_size=50257, n_positions=32)
    hf = GPT2LMHeadModel(cfg).eval()
    return build_bridge_from_module(hf, architecture="GPT2LMHeadModel", hf_config=cfg).eval()


@pytest.fixture(scope="module")
def planted():
    torch.set_num_threads(1)
    return build_planted_ioi()


@pytest.fixture(scope="module")
def ds():
    return make_ioi_dataset(6, seed=0, names=planted_names())


@pytest.mark.parametrize("component", ["q", "k", "v"])
def test_path_patching_matches_tl_direct_path(tiny_gpt2, ds, component):
    model = tiny_gpt2
    metric = logit_diff_metric(ds)
    with torch.no_grad():
        _, clean = model.run_with_cache(ds.tokens)
        _, corrupted = model.run_with_cache(ds.corrupted_tokens)
    for src_head in range(model.cfg.n_heads):
        theirs = get_act_patch_direct_path(
            model, ds.corrupted_tokens, clean, corrupted, metric, 0, src_head, component,
            verbose=False)
        for dst_head in range(model.cfg.n_heads):
            ours = path_patch_to_heads(model, ds.corrupted_tokens, corrupted, clean,
                                       [(0, src_head)], [(1, dst_head)], component, metric)
            assert abs(ours - theirs[1, dst_head].item()) < TOL


def test_path_patching_moves_the_metric_somewhere(tiny_gpt2, ds):
    """Guard against a silently unpatched run: some path must change the metric."""
    model = tiny_gpt2
    metric = logit_diff_metric(ds)
    with torch.no_grad():
        _, clean = model.run_with_cache(ds.tokens)
        base_logits, corrupted = model.run_with_cache(ds.corrupted_tokens)
    base = metric(base_logits).item()
    changes = [abs(path_patch_to_heads(model, ds.corrupted_tokens, corrupted, clean, [(0, h)],
                                       [(1, d)], "v", metric) - base)
               for h in range(4) for d in range(4)]
    assert max(changes) > 1e-4


def test_head_dla_matches_tl(ds):
    model = build_planted_ioi()
    model.enable_compatibility_mode()
    with torch.no_grad():
        _, cache = model.run_with_cache(ds.tokens)
    ours, theirs = head_dla(model, cache, ds), tl_head_dla(model, cache, ds)
    assert (ours - theirs).abs().max().item() < TOL
    assert ours.abs().max().item() > 0.5


def test_head_dla_sums_to_logit_diff_without_biases(planted, ds):
    with torch.no_grad():
        logits, cache = planted.run_with_cache(ds.tokens)
    assert abs(head_dla(planted, cache, ds).sum().item() - logit_diff(logits, ds).item()) < TOL


def test_mean_ablation_matches_tl_activation_patching(tiny_gpt2, ds):
    """Mean ablation of one head = TL patching that head's output from a cache of means."""
    model = tiny_gpt2
    means = head_means(model, ds.corrupted_tokens)
    mean_cache = {z_name(la): means[la][None].expand(len(ds), -1, -1, -1)
                  for la in range(model.cfg.n_layers)}
    metric = logit_diff_metric(ds)
    with torch.no_grad():
        theirs = patching.get_act_patch_attn_head_out_all_pos(model, ds.tokens, mean_cache, metric)
    for la in range(model.cfg.n_layers):
        for h in range(model.cfg.n_heads):
            ours = logit_diff(run_ablated(model, ds.tokens, means, [(la, h)]), ds).item()
            assert abs(ours - theirs[la, h].item()) < TOL


def test_path_to_logits_matches_brute_force_patch_of_final_residual(planted, ds):
    """Without a final norm, the analytic head->logits path equals adding the write at the end."""
    with torch.no_grad():
        clean_logits, clean = planted.run_with_cache(ds.tokens)
        _, corrupted = planted.run_with_cache(ds.corrupted_tokens)
    for la, h in [(3, 1), (4, 5), (2, 4)]:
        w_o = planted.blocks[la].attn.W_O[h]
        delta = corrupted[z_name(la)][:, :, h] @ w_o - clean[z_name(la)][:, :, h] @ w_o

        def hook(x, hook, delta=delta):
            return x + delta

        with torch.no_grad():
            logits = planted.run_with_hooks(
                ds.tokens, fwd_hooks=[(f"blocks.{planted.cfg.n_layers - 1}.hook_resid_post", hook)])
        brute = logit_diff(logits, ds).item() - logit_diff(clean_logits, ds).item()
        ours = path_patch_to_logits(planted, ds, clean, corrupted, [(la, h)]).item()
        assert abs(ours - brute) < TOL


def _edges_from_kept_writers(model, seq_len, keep_heads):
    """Every residual-stream edge of TL's graph whose writer is kept (embed, MLPs, kept heads),
    built the way `enumerate_edges` orders the graph."""
    from transformer_lens.tools.analysis import Node

    n_l, n_h = model.cfg.n_layers, model.cfg.n_heads
    edges = []
    for pos in range(seq_len):
        available = [Node(kind="embed", position=pos)]
        for la in range(n_l):
            for kind in ("q_input", "k_input", "v_input"):
                for h in range(n_h):
                    reader = Node(kind=kind, layer=la, head=h, position=pos)
                    edges += [(w, reader) for w in available]
            available = available + [Node(kind="attn_head_out", layer=la, head=h, position=pos)
                                     for h in range(n_h) if (la, h) in keep_heads]
            mlp_in = Node(kind="mlp_in", layer=la, position=pos)
            edges += [(w, mlp_in) for w in available]
            available = available + [Node(kind="mlp_out", layer=la, position=pos)]
        logits = Node(kind="logits", layer=n_l - 1, position=pos)
        edges += [(w, logits) for w in available]
    return edges


def test_circuit_score_matches_tl_faithfulness(tiny_gpt2, ds):
    """F(C) with heads outside C mean-ablated = TL's ablate-outside faithfulness (mean mode)."""
    from transformer_lens.tools.analysis import FaithfulnessConfig
    from transformer_lens.tools.analysis import faithfulness as tl_faithfulness

    from mikb.methods.circuit_eval import score_with_heads

    model = tiny_gpt2
    ref = make_ioi_dataset(8, seed=11, names=planted_names())
    means = head_means(model, ref.corrupted_tokens)
    keep = {(0, 1), (1, 2), (1, 3)}
    one = ds.subset([0])
    metric = logit_diff_metric(one)
    res = tl_faithfulness(model, one.tokens, one.corrupted_tokens, metric,
                          _edges_from_kept_writers(model, one.tokens.shape[1], keep),
                          FaithfulnessConfig(ablation="mean"), mean_tokens=ref.corrupted_tokens)
    theirs = res.corrupt_metric + res.recovered * (res.full_metric - res.corrupt_metric)
    ours = score_with_heads(model, one, means, keep)
    assert abs(ours - theirs) < TOL
    assert abs(ours - res.full_metric) > 1e-3  # the ablation did something
