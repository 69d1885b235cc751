"""Exact head and path patching on the architectures people study now, held to hooks.

Each family is built from its ``transformers`` config class with seeded random weights and
booted through ``TransformerBridge.boot_transformers`` (Llama, Qwen2, Gemma 2, GPT-NeoX as in
Pythia with partial rotary, GPT-J, GPT-Neo with a local layer), plus TL-native bridges with
RMSNorm, rotary, grouped-query attention, gated MLPs and soft-caps. Every parameter is
re-randomised first: norm weights and biases at their initial ones and zeros would hide a
missing bias or a wrong norm. The references are plain hook loops on the bridge (swap one
head's ``hook_z``; swap one head's ``hook_q/k/v`` for the projection of its shifted input), so
they are whatever the bridge computes, not our arithmetic. Tolerance 1e-4 throughout.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import small_native_model, tl_attribution_scores

from mikb.methods.fast_patching import (
    extract_weights,
    head_out_patching,
    logit_diff_readout,
    path_patching_from_head,
    unpatched_metric,
)

warnings.filterwarnings("ignore")
VOCAB, BATCH, SEQ = 61, 3, 9
HF_NAMES = {
    "llama": "meta-llama/Llama-3.2-1B",
    "qwen2": "Qwen/Qwen2.5-0.5B",
    "gemma2": "google/gemma-2-2b",
    "neox": "EleutherAI/pythia-70m",
    "gptj": "EleutherAI/gpt-j-6B",
    "gptneo": "EleutherAI/gpt-neo-125M",
}


def _hf_model(family: str):
    import transformers as tf

    small = dict(vocab_size=VOCAB, max_position_embeddings=32)
    if family == "llama":
        cfg = tf.LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                             num_attention_heads=4, num_key_value_heads=2, **small)
        return tf.LlamaForCausalLM(cfg)
    if family == "qwen2":
        cfg = tf.Qwen2Config(hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                             num_attention_heads=4, num_key_value_heads=2, **small)
        return tf.Qwen2ForCausalLM(cfg)
    if family == "gemma2":
        # Window 4 on the sliding layers, so it binds on 9-token prompts.
        cfg = tf.Gemma2Config(hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                              num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                              sliding_window=4, attn_logit_softcapping=2.0,
                              final_logit_softcapping=3.0, **small)
        return tf.Gemma2ForCausalLM(cfg)
    if family == "neox":
        cfg = tf.GPTNeoXConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                               num_attention_heads=4, rotary_pct=0.25, **small)
        return tf.GPTNeoXForCausalLM(cfg)
    if family == "gptj":
        cfg = tf.GPTJConfig(vocab_size=VOCAB, n_embd=64, n_layer=3, n_head=4, n_positions=32,
                            rotary_dim=8)
        return tf.GPTJForCausalLM(cfg)
    if family == "gptneo":
        cfg = tf.GPTNeoConfig(vocab_size=VOCAB, max_position_embeddings=32, hidden_size=64,
                              num_layers=3, num_heads=4, window_size=4,
                              attention_types=[[["global", "local", "global"], 1]])
        return tf.GPTNeoForCausalLM(cfg)
    raise KeyError(family)


def _rerandomise(model: torch.nn.Module, seed: int = 0) -> None:
    """Every parameter random: matrices around their init, norms and biases off 1 and 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if p.ndim == 1 and ("norm" in name or "ln" in name):
                p.copy_(1.0 + 0.3 * noise)
            elif p.ndim == 1:
                p.copy_(0.2 * noise)
            else:
                p.copy_(noise * (1.0 / p.shape[-1] ** 0.5))


def _bridge(family: str):
    import transformer_lens.model_bridge.sources  # noqa: F401
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import PreTrainedTokenizerFast

    from mikb.methods._gpt2_offline import _placeholder_tokenizer_dir

    torch.manual_seed(0)
    hf = _hf_model(family).eval()
    _rerandomise(hf)
    tok = PreTrainedTokenizerFast.from_pretrained(_placeholder_tokenizer_dir(VOCAB))
    return TransformerBridge.boot_transformers(HF_NAMES[family], hf_model=hf, tokenizer=tok).eval()


NATIVE = {
    "native-rms-rotary-gqa-gated": dict(normalization_type="RMS", positional_embedding_type="rotary",
                                        rotary_dim=8, n_key_value_heads=2, gated_mlp=True, act_fn="silu"),
    "native-softcap-mqa": dict(attn_scores_soft_cap=2.0, output_logits_soft_cap=3.0, n_key_value_heads=1),
}


@pytest.fixture(scope="module", params=list(HF_NAMES) + list(NATIVE))
def model(request):
    if request.param in NATIVE:
        m = small_native_model(d_vocab=VOCAB, **NATIVE[request.param])
        _rerandomise(m, seed=1)
        return m
    return _bridge(request.param)


def _prompts(diff_pos: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, VOCAB, (BATCH, SEQ), generator=g)
    corrupt = clean.clone()
    corrupt[:, diff_pos] = (clean[:, diff_pos] + 1 + torch.randint(0, VOCAB - 1, (BATCH,), generator=g)) % VOCAB
    corrupt[:, -2] = torch.randint(0, VOCAB, (BATCH,), generator=g)
    answers = torch.randint(0, VOCAB, (BATCH, 2), generator=g)
    return clean, corrupt, logit_diff_readout(answers)


def _close(ours: torch.Tensor, ref: torch.Tensor, floor: float = 1e-2) -> None:
    assert ref.abs().max() > floor, "reference too small for the comparison to mean anything"
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-4 if floor >= 1e-2 else floor / 10)


def _swap(index: int, new: torch.Tensor):
    def hook(act, hook):
        act = act.clone()
        act[:, :, index] = new
        return act

    return hook


def _hook_head_patching(model, clean, corrupt, readout, **run_kwargs) -> torch.Tensor:
    """The reference: one hooked forward per head, swapping that head's ``hook_z`` for its
    clean value, metric batch-averaged: ``[n_layers, n_heads]``."""
    cfg = model.cfg
    ref = torch.zeros(cfg.n_layers, cfg.n_heads)
    with torch.no_grad():
        _, cc = model.run_with_cache(clean, **run_kwargs)
        for layer in range(cfg.n_layers):
            name = f"blocks.{layer}.attn.hook_z"
            for head in range(cfg.n_heads):
                logits = model.run_with_hooks(corrupt, fwd_hooks=[(name, _swap(head, cc[name][:, :, head]))],
                                              **run_kwargs)
                ref[layer, head] = readout.per_example(logits).mean()
    return ref


def test_the_fast_forward_reads_the_model(model):
    clean, _, readout = _prompts(0)
    with torch.no_grad():
        ref = readout.per_example(model(clean))
    _close(unpatched_metric(model, clean, readout), ref)


@pytest.mark.parametrize("diff_pos", [0, 3])
def test_head_out_patching_equals_a_hook_loop(model, diff_pos):
    clean, corrupt, readout = _prompts(diff_pos)
    _close(head_out_patching(model, clean, corrupt, readout), _hook_head_patching(model, clean, corrupt, readout))


@pytest.mark.parametrize("component", ["q", "k", "v"])
def test_path_patching_equals_a_hook_reference(model, component):
    """The sender's write change is what its clean z alone does to the attention block's
    output (``hook_attn_out``, after any post-attention norm); the receiver's q/k/v (before
    rotary positions) is swapped for the projection of its norm of the shifted residual.
    With shared key-value heads the receiver of k or v is the key-value head."""
    clean, corrupt, readout = _prompts(3)
    sender = (0, 1)
    cfg = model.cfg
    w = extract_weights(model)
    receivers = cfg.n_heads if component == "q" else w.kv_heads
    ref = torch.zeros(cfg.n_layers, receivers)
    with torch.no_grad():
        _, cc = model.run_with_cache(clean)
        _, kc = model.run_with_cache(corrupt)
        z_name = f"blocks.{sender[0]}.attn.hook_z"
        out_name = f"blocks.{sender[0]}.hook_attn_out"
        patched_out = {}
        model.run_with_hooks(corrupt, fwd_hooks=[
            (z_name, _swap(sender[1], cc[z_name][:, :, sender[1]])),
            (out_name, lambda act, hook: patched_out.setdefault("a", act.clone())),
        ])
        delta = patched_out["a"] - kc[out_name]
        for layer in range(sender[0] + 1, cfg.n_layers):
            block = model.blocks[layer]
            shifted = block.ln1(kc[f"blocks.{layer}.hook_resid_pre"] + delta)
            w_c = getattr(block.attn, f"W_{component.upper()}")
            b_c = getattr(block.attn, f"b_{component.upper()}")
            for head in range(receivers):
                new = shifted @ w_c[head] + (0.0 if b_c is None else b_c[head])
                logits = model.run_with_hooks(
                    corrupt, fwd_hooks=[(f"blocks.{layer}.attn.hook_{component}", _swap(head, new))])
                ref[layer, head] = readout.per_example(logits).mean()
    _close(path_patching_from_head(model, clean, corrupt, readout, sender, component), ref)


def test_right_padded_prompts_read_at_their_last_real_token(model):
    """Prompts of different lengths, padded on the right and read at each one's last real
    token, give what the bridge gives with a padding mask (causal attention never looks
    right, so the pads cannot matter)."""
    clean, corrupt, _ = _prompts(2)
    lengths = torch.tensor([SEQ, SEQ - 3, SEQ - 1])
    mask = (torch.arange(SEQ)[None] < lengths[:, None]).long()
    clean, corrupt = clean * mask, corrupt * mask
    answers = torch.randint(0, VOCAB, (BATCH, 2), generator=torch.Generator().manual_seed(5))
    readout = logit_diff_readout(answers, positions=lengths - 1)
    ref = _hook_head_patching(model, clean, corrupt, readout, attention_mask=mask)
    with torch.no_grad():
        base = readout.per_example(model(corrupt, attention_mask=mask))
    _close(unpatched_metric(model, corrupt, readout), base)
    _close(head_out_patching(model, clean, corrupt, readout), ref)


def test_the_discovery_graph_is_the_model_both_ways(model):
    """All edges live = the bridge on clean prompts; all ablated (resampled) = the bridge on
    corrupted prompts. Gemma 2's post-attention norm applies, per reader, to the sum of
    that reader's incoming head edges."""
    from mikb.methods.graph import GraphForward

    clean, corrupt, _ = _prompts(0)
    gf = GraphForward(model)
    with torch.no_grad():
        torch.testing.assert_close(gf.run(clean).logits, model(clean), rtol=0, atol=1e-4)
        ablated = gf.writer_outputs(corrupt)
        masks = torch.stack([torch.ones(gf.graph.n_edges), torch.zeros(gf.graph.n_edges)])
        both = gf.run(clean, mask=masks, ablated=ablated).logits
    torch.testing.assert_close(both[:BATCH], model(clean), rtol=0, atol=1e-4)
    torch.testing.assert_close(both[BATCH:], model(corrupt), rtol=0, atol=1e-4)


@pytest.mark.parametrize("component", ["q", "k", "v"])
def test_a_single_graph_edge_is_a_path_patch(model, component):
    """Ablating sender->receiver<c> on clean prompts (the reader sees the sender's corrupted
    output) is path patching with the prompts' roles swapped, which the hook test above holds
    to the bridge. With shared key-value heads the graph's k/v edges are per query head, so
    for k and v the comparison needs one query head per key-value head. Behind Gemma 2's
    post-attention norm both sides mean the same thing: the reader sees the layer's norm of
    its heads' sum with the sender alone changed."""
    from mikb.methods.graph import GraphForward

    w = extract_weights(model)
    if component != "q" and w.group > 1:
        pytest.skip("not a per-query-head path patch here (see the docstring)")
    clean, corrupt, readout = _prompts(3)
    sender = (0, 1)
    expected = path_patching_from_head(model, corrupt, clean, readout, sender, component)
    gf = GraphForward(model)
    g = gf.graph
    with torch.no_grad():
        ablated = gf.writer_outputs(corrupt)
        receivers = [(la, h) for la in range(1, w.n_layers) for h in range(w.n_heads)]
        masks = torch.ones(len(receivers), g.n_edges)
        for i, (la, h) in enumerate(receivers):
            masks[i, g.edge_index[f"a0.h1->a{la}.h{h}<{component}>"]] = 0.0
        logits = gf.run(clean, mask=masks, ablated=ablated).logits.view(len(receivers), BATCH, SEQ, -1)
    got = torch.stack([readout.per_example(x).mean() for x in logits])
    torch.testing.assert_close(got, torch.stack([expected[la, h] for la, h in receivers]), rtol=0, atol=1e-4)


def test_eap_and_eap_ig_run_through_the_graph(model):
    """Edge attribution (EAP, EAP-IG) runs on the graph's own gradients, so it works wherever
    the graph does: finite scores for every edge, and some edge carries signal."""
    from mikb.methods.eap import eap, eap_ig
    from mikb.methods.edge_task import EdgeTask
    from mikb.methods.graph import GraphForward

    clean, corrupt, _ = _prompts(0)
    task = EdgeTask(GraphForward(model), clean, corrupt, slice(SEQ - 1, None), "categorical", "resample")
    for scores in (eap(task), eap_ig(task, steps=2)):
        assert scores.scores.shape == (task.graph.n_edges,)
        assert torch.isfinite(scores.scores).all() and scores.scores.abs().max() > 1e-6


def test_eap_scores_are_the_derivative_of_the_edge_mask(model):
    """EAP's term ``delta . dM/d(reader input)`` is the derivative of the masked graph
    forward with respect to the edge's mask at 1. Where writers add, the closed form (reader
    gradients) and the mask gradient agree; behind Gemma 2's post-attention norm, where EAP
    uses the mask gradient, it equals central finite differences of the masked forward."""
    from mikb.methods.eap import _edge_products, _mask_products, _reader_grads, eap
    from mikb.methods.edge_task import EdgeTask
    from mikb.methods.graph import GraphForward

    clean, corrupt, _ = _prompts(0)
    task = EdgeTask(GraphForward(model), clean, corrupt, slice(SEQ - 1, None), "categorical", "resample")
    scores = eap(task).scores
    delta = task.ablated.expand_as(task.clean_writers) - task.clean_writers
    emb = task.forward.embed(task.clean)
    if not task.forward.post_norm:
        closed = _edge_products(task, delta, _reader_grads(task, emb))
        torch.testing.assert_close(_mask_products(task, delta, emb), closed, rtol=0,
                                   atol=1e-4 * float(closed.abs().max()))
        return
    eps = 1e-2
    heads_first = [i for i in torch.argsort(scores.abs(), descending=True).tolist()
                   if task.graph.edges[i].startswith("a")][:6]
    live = task.forward.writer_outputs(task.clean)
    ablated = live - delta
    for i in heads_first:
        masks = torch.ones(2, task.graph.n_edges)
        masks[0, i], masks[1, i] = 1 + eps, 1 - eps
        with torch.no_grad():
            up, down = task.metric(task.forward.run(task.clean, mask=masks, ablated=ablated).logits)
        finite = float(up - down) / (2 * eps)
        assert abs(float(scores[i]) - finite) <= 2e-3 * float(scores.abs().max()), task.graph.edges[i]


def _full_vocab_readouts(model, clean, corrupt):
    from mikb.methods._fast_forward import kl_readout, logprob_readout, loss_readout

    positions = torch.tensor([[4, 6, 8], [5, 7, 8], [3, 6, 8]])
    with torch.no_grad():
        ref = model(clean)[torch.arange(BATCH)[:, None], positions]
    targets = torch.randint(0, VOCAB, (BATCH, 3), generator=torch.Generator().manual_seed(3))
    return {"kl": kl_readout(ref, positions), "logprob": logprob_readout(targets, positions),
            "loss": loss_readout(corrupt),
            "logit-diff-several": logit_diff_readout(targets[:, :2], positions)}


@pytest.mark.parametrize("metric", ["kl", "logprob", "loss", "logit-diff-several"])
def test_full_vocabulary_and_several_position_metrics(model, metric):
    """KL to the clean run, log-probability and loss read the whole vocabulary at several
    positions per example (as ACDC and MIB do); head patching with them equals the hook
    loop with the same metric on full logits."""
    clean, corrupt, _ = _prompts(2)
    readout = _full_vocab_readouts(model, clean, corrupt)[metric]
    ref = _hook_head_patching(model, clean, corrupt, readout)
    with torch.no_grad():
        base = readout.per_example(model(corrupt))
    floor = 1e-3 if metric == "kl" else 1e-2  # soft-capped logits keep KL small
    _close(unpatched_metric(model, corrupt, readout), base, floor)
    _close(head_out_patching(model, clean, corrupt, readout), ref, floor)


def _graph_edge_attribution(model, clean, corrupt, readout):
    """Head-to-head q/k/v edge attribution from the discovery graph's own autograd: each
    sender's clean-minus-corrupted output dotted with the gradient of the batch-mean metric
    at the receiver's private input, on the corrupted run (a reference independent of the
    closed forms and vector-Jacobian products in mikb.methods.attribution)."""
    from mikb.methods.graph import GraphForward

    gf = GraphForward(model)
    g = gf.graph
    with torch.no_grad():
        delta = gf.writer_outputs(clean) - gf.writer_outputs(corrupt)
    emb = gf.embed(corrupt).detach().requires_grad_(True)
    with torch.enable_grad():
        run = gf.run(input_embed=emb, keep=True)
        metric = readout.per_example(run.logits).mean()
        grads = torch.autograd.grad(metric, run.reader_in, allow_unused=True)
    grads = torch.cat([gr if gr is not None else torch.zeros_like(r) for gr, r in zip(grads, run.reader_in, strict=True)])
    full = torch.einsum("pntd,rntd->pr", delta, grads)
    L, H = model.cfg.n_layers, model.cfg.n_heads
    out = {c: torch.zeros(L, H, L, H) for c in "qkv"}
    writer = {name: i for i, name in enumerate(g.writers)}
    for r, (node, c) in enumerate(g.readers):
        if c is None:
            continue
        lr, hr = (int(x) for x in node[1:].split(".h"))
        for ls in range(lr):
            for hs in range(H):
                out[c][ls, hs, lr, hr] = full[writer[f"a{ls}.h{hs}"], r]
    return out


def test_attribution_patching_equals_tl_and_the_graph(model):
    """Node scores equal TransformerLens's attribution_patch on every family. Edge scores
    equal TL's where TL's edge granularity runs (it refuses grouped-query models, GPT-J and
    GPT-Neo's attention bridges, and Gemma 2), and equal the discovery graph's own autograd
    everywhere the graph runs (per query head with shared key-value heads)."""
    from mikb.methods.attribution import attribution_patching

    clean, corrupt, readout = _prompts(2)
    w = extract_weights(model)
    ref_node, _ = tl_attribution_scores(model, clean, corrupt, readout, "node")
    scale = float(ref_node.abs().max())
    assert scale > 0
    if any(lw.attn_post is not None for lw in w.layers):
        with pytest.raises(NotImplementedError, match="post-attention norm"):
            attribution_patching(model, clean, corrupt, readout)
        ours = attribution_patching(model, clean, corrupt, readout, edges=False)
        torch.testing.assert_close(ours.node, ref_node, rtol=0, atol=1e-4 * scale)
        return
    ours = attribution_patching(model, clean, corrupt, readout)
    torch.testing.assert_close(ours.node, ref_node, rtol=0, atol=1e-4 * scale)
    try:
        _, ref_edges = tl_attribution_scores(model, clean, corrupt, readout, "edge")
    except (ValueError, NotImplementedError):
        ref_edges = None  # TL refuses this architecture at edge granularity
    graph_edges = _graph_edge_attribution(model, clean, corrupt, readout)
    for c in "qkv":
        edge_scale = float(graph_edges[c].abs().max())
        assert edge_scale > 0
        torch.testing.assert_close(ours.edges[c], graph_edges[c], rtol=0, atol=1e-4 * edge_scale)
        if ref_edges is not None:
            torch.testing.assert_close(ours.edges[c], ref_edges[c], rtol=0, atol=1e-4 * edge_scale)
