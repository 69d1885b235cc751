"""Benchmark mikb's fast patching against TransformerLens's own patching functions.

Run: ``python benchmarks/bench_patching.py`` (GPT-2-shaped; ``--family llama`` or
``--family pythia`` for the other shapes; ``--quick`` shrinks the model for a smoke test).
Prints a Markdown table: time (median and min-max of ``--reps`` repetitions interleaved
peer, mikb, peer, mikb... in one process), the speed-up per interleaved pair (median and
min-max), CPU time per wall second, peak extra memory (each method once, in a fresh
subprocess, see ``_memory.py``), the max |difference| between the two results, the machine's
load average before and after each task, and the FLOP model's ceiling on the speed-up.

Setups (seeded random weights; metric = logit(answer 0) - logit(answer 1) at the last
position, batch mean):

* ``gpt2``: 12 layers, 12 heads, d_model 768, vocabulary 50257, LayerNorm, gelu MLPs; IOI
  prompts from :mod:`mikb.data.ioi` (batch 20, ABC corruption). Head-output patching runs on
  ``TransformerBridge.boot_native``; path patching on a GPT-2-architecture
  ``boot_transformers`` bridge (TL's ``get_act_patch_direct_path`` needs the pre-Q/K/V fork,
  which the native attention bridge does not offer).
* ``llama``: Llama-3.2-1B-shaped blocks (32 query heads, 8 key-value heads, d_model 2048,
  d_head 64, SwiGLU d_mlp 8192, RMSNorm, rotary) with ``--layers`` of them and a
  ``--vocab`` vocabulary, from ``transformers.LlamaConfig`` via ``boot_transformers``.
* ``pythia``: Pythia-160m-shaped blocks (12 heads, d_model 768, d_mlp 3072, parallel
  attention and MLP, rotary on 25% of each head, LayerNorm), ``--layers`` of them, vocabulary
  50304, from ``transformers.GPTNeoXConfig``.

For ``llama`` and ``pythia`` the prompts are random tokens of length ``--seq``; the corrupted
prompt differs at position 2 and at position seq - 3 (as IOI's ABC corruption changes early
and late names), so exact patching must recompute from position 2 on.

TL's timings exclude building its ``clean_cache``/``corrupted_cache`` (its inputs); ours
include everything (weight extraction and both cached runs).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _memory import measure_extra_peak, run_probe  # noqa: E402

from mikb.methods._fast_forward import LogitReadout, logit_diff_readout  # noqa: E402

warnings.filterwarnings("ignore")
os.environ.setdefault("TQDM_DISABLE", "1")  # TL's sweeps draw progress bars
SCRIPT = Path(__file__).resolve()


# -- setup ------------------------------------------------------------------------------------


FAMILIES: dict[str, dict[str, Any]] = {
    # The shapes as published; runs may cut n_layers (--layers) and the vocabulary (--vocab).
    "gpt2": dict(n_layers=12, n_heads=12, n_kv=12, d_model=768, d_head=64, d_mlp=3072,
                 gated=False, vocab=50257),
    "llama": dict(n_layers=16, n_heads=32, n_kv=8, d_model=2048, d_head=64, d_mlp=8192,
                  gated=True, vocab=128256),
    "pythia": dict(n_layers=12, n_heads=12, n_kv=12, d_model=768, d_head=64, d_mlp=3072,
                   gated=False, vocab=50304),
}
QUICK = dict(n_layers=4, n_heads=4, n_kv=4, d_model=128, d_head=32, d_mlp=512)


def model_cfg(quick: bool, family: str = "gpt2", layers: int | None = None,
              vocab: int | None = None) -> dict[str, Any]:
    """The shape a run uses: the family's, or the quick one, with overrides applied."""
    c = dict(FAMILIES[family])
    if quick:
        c.update(QUICK, n_kv=2 if family == "llama" else 4)
    if layers:
        c["n_layers"] = layers
    if vocab:
        c["vocab"] = vocab
    return c


def args_cfg(args: argparse.Namespace) -> dict[str, Any]:
    return model_cfg(args.quick, args.family, args.layers, args.vocab)


def native_model(quick: bool, seed: int = 0, cfg: dict[str, Any] | None = None):
    import transformer_lens.model_bridge.sources  # noqa: F401
    from transformer_lens.model_bridge import TransformerBridge

    c = cfg or model_cfg(quick)
    torch.manual_seed(seed)
    tl_cfg = {k: c[k] for k in ("n_layers", "n_heads", "d_model", "d_head", "d_mlp")}
    tl_cfg.update(d_vocab=c["vocab"], n_ctx=1024, act_fn="gelu", normalization_type="LN",
                  seed=seed)
    return TransformerBridge.boot_native(tl_cfg).eval()


def hf_model(quick: bool, seed: int = 0):
    from mikb.methods._gpt2_offline import random_gpt2_bridge

    c = model_cfg(quick)
    return random_gpt2_bridge(c["n_layers"], c["n_heads"], c["d_model"], seed=seed)


def hf_family_model(c: dict[str, Any], family: str, seed: int = 0):
    """A Llama- or Pythia-shaped ``transformers`` model booted as a TransformerBridge."""
    import transformer_lens.model_bridge.sources  # noqa: F401
    import transformers as tf
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import PreTrainedTokenizerFast

    from mikb.methods._gpt2_offline import _placeholder_tokenizer_dir

    torch.manual_seed(seed)
    common = dict(vocab_size=c["vocab"], hidden_size=c["d_model"],
                  intermediate_size=c["d_mlp"], num_hidden_layers=c["n_layers"],
                  num_attention_heads=c["n_heads"], max_position_embeddings=2048)
    if family == "llama":
        hf = tf.LlamaForCausalLM(tf.LlamaConfig(num_key_value_heads=c["n_kv"],
                                                head_dim=c["d_head"], **common))
        name = "meta-llama/Llama-3.2-1B"
    else:
        hf = tf.GPTNeoXForCausalLM(tf.GPTNeoXConfig(rotary_pct=0.25,
                                                    use_parallel_residual=True, **common))
        name = "EleutherAI/pythia-160m"
    tok = PreTrainedTokenizerFast.from_pretrained(_placeholder_tokenizer_dir(c["vocab"]))
    return TransformerBridge.boot_transformers(name, hf_model=hf.eval(), tokenizer=tok).eval()


_MODELS: dict[tuple, Any] = {}


def family_model(args: argparse.Namespace):
    key = (args.family, args.quick, args.layers, args.vocab)
    if key not in _MODELS:  # one model per process: the Llama shape is slow to build
        _MODELS[key] = hf_family_model(args_cfg(args), args.family)
    return _MODELS[key]


def ioi_batch(n: int) -> tuple[torch.Tensor, torch.Tensor, LogitReadout]:
    from mikb.data.ioi import make_ioi_dataset

    ds = make_ioi_dataset(n, seed=0)
    answers = torch.stack([ds.io_ids, ds.s_ids], dim=1)
    return ds.tokens, ds.corrupted_tokens, logit_diff_readout(answers, ds.end)


def random_batch(n: int, seq: int, vocab: int, seed: int = 0
                 ) -> tuple[torch.Tensor, torch.Tensor, LogitReadout]:
    """Random prompts; the corrupted ones differ at position 2 and at seq - 3."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, vocab, (n, seq), generator=g)
    corrupt = clean.clone()
    for pos in sorted({min(2, seq - 1), max(seq - 3, 0)}):
        corrupt[:, pos] = (clean[:, pos] + 1 + torch.randint(0, vocab - 1, (n,), generator=g)) % vocab
    answers = torch.randint(0, vocab, (n, 2), generator=g)
    return clean, corrupt, logit_diff_readout(answers)


def prompts(args: argparse.Namespace, batch: int | None = None):
    if args.family == "gpt2":
        return ioi_batch(batch or args.batch)
    return random_batch(batch or args.batch, args.seq, args_cfg(args)["vocab"])


# -- the methods, each as a zero-argument callable after setup ---------------------------------


def make_method(
    name: str, args: argparse.Namespace, model: Any = None, batch: int | None = None
) -> tuple[Callable[[], torch.Tensor], Any]:
    """``name`` is ``<task>:<tl|fast>``; returns the call and the model it runs on."""
    from transformer_lens import patching

    from mikb.methods.attribution import attribution_patching
    from mikb.methods.fast_patching import (
        extract_weights,
        head_out_patching,
        path_patching_from_head,
    )
    from mikb.methods.guided_patching import guided_head_patching

    # attr:fast:<examples per pass> ("all" = None), head:fast:<max rows>, guided:fast:<k>
    task, impl, *variant = name.split(":")
    clean, corrupt, readout = prompts(args, batch)
    if model is None and args.family != "gpt2":
        model = family_model(args)
    elif model is None:
        model = hf_model(args.quick) if task == "path" else native_model(args.quick)
    sender = tuple(int(x) for x in args.sender.split("."))
    if impl == "tl":
        metric = readout.as_tl_metric()
        with torch.no_grad():
            _, clean_cache = model.run_with_cache(clean)
            corrupt_cache = model.run_with_cache(corrupt)[1] if task == "path" else None
    # "fastw": mikb on weights extracted during setup, as TL's caches are built during setup
    # (extraction runs one verifying forward, whose memory is otherwise counted as mikb's).
    src = extract_weights(model) if impl == "fastw" else model
    if task in ("head", "guided"):
        if impl == "tl":
            return (lambda: patching.get_act_patch_attn_head_out_all_pos(
                model, corrupt, clean_cache, metric)), model
        if task == "guided":  # exact values for the top k only (NaN elsewhere)
            k = int(variant[0]) if variant else 8
            return (lambda: guided_head_patching(src, clean, corrupt, readout, k).exact), model
        rows = int(variant[0]) if variant else 2048
        return (lambda: head_out_patching(src, clean, corrupt, readout, max_rows=rows)), model
    if task == "path":
        if impl == "tl":
            return (lambda: patching.get_act_patch_direct_path(
                model, corrupt, clean_cache, corrupt_cache, metric, sender[0], sender[1],
                args.component, verbose=False)), model
        return (lambda: path_patching_from_head(
            src, clean, corrupt, readout, sender, args.component)), model
    if task == "attr":
        if impl == "tl":
            return (lambda: tl_node_attribution(model, clean, corrupt, readout)), model
        chunk = variant[0] if variant else str(args.attr_chunk)
        per_pass = None if chunk == "all" else int(chunk)
        return (lambda: attribution_patching(
            src, clean, corrupt, readout, edges=False, examples_per_pass=per_pass
        ).node), model
    raise ValueError(name)


def tl_node_attribution(model, clean, corrupt, readout: LogitReadout) -> torch.Tensor:
    """TL's ``attribution_patch`` (node granularity), head scores summed over positions.

    TL scores one example per forward/backward and averages; its metric sees only logits, so
    each example is passed on its own with its own answer ids (the same per-example work).
    """
    from transformer_lens.tools.analysis.attribution_patching import attribution_patch

    cfg = model.cfg
    total = torch.zeros(cfg.n_layers, cfg.n_heads)
    for b in range(clean.shape[0]):
        one = LogitReadout(readout.token_ids[b : b + 1], readout.fn,
                           None if readout.positions is None else readout.positions[b : b + 1])
        res = attribution_patch(model, clean[b : b + 1], corrupt[b : b + 1], one.as_tl_metric())
        for node, score in res.node_scores.items():
            if node.kind == "attn_head_out":
                total[node.layer, node.head] += score
    return total / clean.shape[0]


# -- FLOP model -------------------------------------------------------------------------------


def layer_flops(c: dict[str, Any], rows: int, ctx: int) -> dict[str, float]:
    """Multiply-add FLOPs (2 per MAC) of one block's parts on ``rows`` token rows.

    Grouped-query attention: ``n_kv`` key-value heads (``n_kv == n_heads`` without it);
    gated MLPs (SwiGLU) have three ``d_model x d_mlp`` matrices, plain ones two. Norms,
    rotary, softmax and activations are elementwise and left out (a few % at these sizes).
    """
    d, hd, m = c["d_model"], c["n_heads"] * c["d_head"], c["d_mlp"]
    kvd = c.get("n_kv", c["n_heads"]) * c["d_head"]
    return {
        "q": 2.0 * rows * d * hd,
        "kv": 2.0 * rows * d * 2 * kvd,
        "attn": 2.0 * rows * 2 * hd * ctx / 2,  # scores + mixing, causal average
        "o": 2.0 * rows * hd * d,
        "mlp": 2.0 * rows * (3 if c.get("gated") else 2) * d * m,
    }


def full_block(c: dict[str, Any], rows: int, ctx: int) -> float:
    return sum(layer_flops(c, rows, ctx).values())


def flops_forward(c: dict[str, Any], b: int, t: int) -> float:
    """One full hooked forward as TL runs it: every block, the whole vocabulary everywhere."""
    return c["n_layers"] * full_block(c, b * t, t) + 2.0 * b * t * c["d_model"] * c["vocab"]


def flops_tl_head(c: dict[str, Any], b: int, t: int) -> float:
    return c["n_layers"] * c["n_heads"] * flops_forward(c, b, t)


def flops_tl_path(c: dict[str, Any], b: int, t: int, src_layer: int) -> float:
    return (c["n_layers"] - 1 - src_layer) * c["n_heads"] * flops_forward(c, b, t)


def flops_resume(c: dict[str, Any], layer: int, runs: int, b: int, t: int, start: int) -> float:
    """FLOPs of the exact recompute after patching ``runs`` runs at ``resid_mid[layer]``:
    positions from ``start`` on through the later blocks, the last block's attention output
    and MLP only at the read-out position (its keys and values everywhere), two unembedding
    columns."""
    n_layers, rows = c["n_layers"], runs * b * (t - start)
    if layer == n_layers - 1:
        return layer_flops(c, runs * b, t)["mlp"] + 2.0 * runs * b * c["d_model"] * 2
    total = layer_flops(c, rows, t)["mlp"]
    total += (n_layers - 2 - layer) * full_block(c, rows, t)
    total += layer_flops(c, rows, t)["kv"]  # keys and values at every position
    total += full_block(c, runs * b, 2 * t) - layer_flops(c, runs * b, t)["kv"]
    return total + 2.0 * runs * b * c["d_model"] * 2  # two unembedding columns


def flops_fast_head(c: dict[str, Any], b: int, t: int, start: int) -> float:
    caches = 2 * c["n_layers"] * full_block(c, b * t, t)
    return caches + sum(
        flops_resume(c, layer, c["n_heads"], b, t, start) for layer in range(c["n_layers"])
    )


def flops_fast_path(c: dict[str, Any], b: int, t: int, start: int, src_layer: int) -> float:
    """Receivers of q: per receiving layer, q/k/v of the corrupted residual and the patched q
    projection, one attention call for every head at once, then a resume with one run per
    receiving head."""
    caches = 2 * c["n_layers"] * full_block(c, b * t, t)
    total = caches
    for layer in range(src_layer + 1, c["n_layers"]):
        parts = layer_flops(c, b * t, t)
        total += 2 * parts["q"] + parts["kv"] + parts["attn"]  # base q/k/v, patched q
        total += flops_resume(c, layer, c["n_heads"], b, t, start)
    return total


def gemm_gflops(c: dict[str, Any], reps: int = 5, rows: int = 3840) -> float:
    """Measured throughput of the model's largest GEMM at a patching-sized shape (best of reps)."""
    a = torch.randn(rows, c["d_model"])
    w = torch.randn(c["d_model"], c["d_mlp"])
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ w
        best = min(best, time.perf_counter() - t0)
    return 2.0 * a.shape[0] * a.shape[1] * w.shape[1] / best / 1e9


# -- driver -----------------------------------------------------------------------------------


def probe(name: str, args: argparse.Namespace) -> None:
    """Subprocess entry: set up one method, run it once, print its peak extra memory."""
    fn, _ = make_method(name, args)
    with torch.no_grad() if not name.startswith("attr") else torch.enable_grad():
        _, extra, baseline = measure_extra_peak(fn)
    print(json.dumps({"probe": name, "extra_peak_bytes": extra, "baseline_rss_bytes": baseline}))


def spread(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def time_group(task: str, variants: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Interleave the peer and each mikb variant in this process, ``args.reps`` rounds.

    Each round runs every method once, the order reversed on odd rounds (peer, mikb / mikb,
    peer, ...), so slow drifts in machine load hit both sides alike. The speed-up is taken
    per round (the same load) and summarised by its median and range. Returns wall and CPU
    seconds (``time.process_time``: all threads of this process) per call, the load average
    before and after, and the max |difference| between the peer's and each variant's result.
    """
    names = [f"{task}:tl"] + [f"{task}:{v}" for v in variants]
    fns: dict[str, Callable[[], torch.Tensor]] = {}
    model = None
    for name in names:
        fns[name], model = make_method(name, args, model)
    grad = (lambda: torch.enable_grad()) if task == "attr" else (lambda: torch.no_grad())
    # Warm up each (first-call costs: kernel selection, allocator growth) on a 2-prompt batch.
    with grad():
        for name in names:
            make_method(name, args, model, batch=2)[0]()
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    results: dict[str, torch.Tensor] = {}
    load_before = load()
    for rep in range(args.reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            with grad():  # TL gets no_grad where it needs no gradients (its fastest setting)
                c0, t0 = time.process_time(), time.perf_counter()
                out = fns[name]()
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
            results[name] = out.detach()
            print(f"  {name} rep {rep}: {wall[name][-1]:.2f}s (cpu {cpu[name][-1]:.2f}s) "
                  f"load {load()[0]}", file=sys.stderr, flush=True)
    entry: dict[str, Any] = {"load_before": load_before, "load_after": load(), "methods": {}}
    ref = results[names[0]]
    if task == "guided":  # the corrupted run's metric, on the model already loaded
        from mikb.methods.fast_patching import unpatched_metric

        _, corrupt, readout = prompts(args)
        base = float(unpatched_metric(model, corrupt, readout).mean())
    for name in names:
        m: dict[str, Any] = {"wall": spread(wall[name]), "cpu": spread(cpu[name]),
                             "wall_all": wall[name], "cpu_all": cpu[name]}
        if name != names[0]:
            ratios = [a / b for a, b in zip(wall[names[0]], wall[name], strict=True)]
            m["ratio"] = spread(ratios)
            m["ratio_all"] = ratios
            ran = torch.isfinite(results[name])  # guided patching leaves unrun heads NaN
            m["max_abs_diff"] = float((ref - results[name])[ran].abs().max())
            if task == "guided":
                m["recall"] = top_k_recall(ref, ran, base)
        entry["methods"][name] = m
    entry["max_abs_value"] = float(ref.abs().max())
    return entry


def top_k_recall(exact: torch.Tensor, ran: torch.Tensor, base: float) -> float:
    """Share of the k heads with the largest exact |effect| (from the peer's full sweep, minus
    the corrupted run's metric ``base``) that the guided run patched exactly (k = heads it ran)."""
    k = int(ran.sum())
    top = torch.argsort((exact - base).abs().flatten(), descending=True)[:k]
    return float(ran.flatten()[top].float().mean())


def correlation_report(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Attribution vs exact patching (Pearson r): planted IOI if present, and random GPT-2."""
    models: list[tuple[str, Any, list[tuple[int, int]]]] = []
    try:
        from mikb.lm.planted_ioi import build_planted_ioi, ground_truth

        senders = sorted(tuple(int(x) for x in key.split(".")) for key in ground_truth())
        models.append(("planted IOI (mikb.lm.planted_ioi)", build_planted_ioi().eval(), senders))
    except ImportError:
        pass
    c = model_cfg(args.quick)
    random_senders = [(0, 0), (c["n_layers"] // 3, 1), (c["n_layers"] // 2, 2),
                      (c["n_layers"] - 3, 3)]
    models.append(("random GPT-2-shaped (boot_native)", native_model(args.quick), random_senders))
    return [correlation_on(name, model, senders, args) for name, model, senders in models]


def correlation_on(
    which: str, model: Any, senders: list[tuple[int, int]], args: argparse.Namespace
) -> dict[str, Any]:
    from mikb.methods.attribution import attribution_patching
    from mikb.methods.fast_patching import (
        extract_weights,
        head_out_patching,
        path_patching_from_head,
        unpatched_metric,
    )

    clean, corrupt, readout = ioi_batch(args.batch)
    w = extract_weights(model)
    base = unpatched_metric(w, corrupt, readout).mean()
    exact_node = head_out_patching(w, clean, corrupt, readout) - base
    t0 = time.perf_counter()
    attr = attribution_patching(w, clean, corrupt, readout, edges=True)
    attr_s = time.perf_counter() - t0
    out: dict[str, Any] = {
        "model": which, "attribution_s": attr_s,
        "clean_metric": float(unpatched_metric(w, clean, readout).mean()),
        "corrupted_metric": float(base), "node_r": pearson(attr.node, exact_node),
        "senders": [f"{a}.{b}" for a, b in senders],
    }
    xs, ys = [], []
    for comp in "qkv":
        cx, cy = [], []
        for s_layer, s_head in senders:
            if s_layer >= w.n_layers - 1:
                continue
            exact = path_patching_from_head(w, clean, corrupt, readout, (s_layer, s_head), comp)
            cx.append(attr.edges[comp][s_layer, s_head, s_layer + 1 :].reshape(-1))
            cy.append((exact[s_layer + 1 :] - base).reshape(-1))
        out[f"edge_r_{comp}"] = pearson(torch.cat(cx), torch.cat(cy))
        xs += cx
        ys += cy
    out["edge_r_all"] = pearson(torch.cat(xs), torch.cat(ys))
    out["edge_exact_max_abs"] = float(torch.cat(ys).abs().max())
    return out


def pearson(x: torch.Tensor, y: torch.Tensor) -> float | None:
    x, y = x.reshape(-1).double(), y.reshape(-1).double()
    x, y = x - x.mean(), y - y.mean()
    denom = x.norm() * y.norm()
    return float((x @ y) / denom) if denom > 0 else None  # undefined when one side is constant


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", default="gpt2", choices=sorted(FAMILIES))
    parser.add_argument("--layers", type=int, default=None, help="cut the family to N layers")
    parser.add_argument("--vocab", type=int, default=None, help="override the vocabulary size")
    parser.add_argument("--seq", type=int, default=16, help="prompt length (llama, pythia)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--sender", default=None, help="path patching sender L.H (5.1; quick 1.1)")
    parser.add_argument("--component", default="q", choices=["q", "k", "v"])
    parser.add_argument("--tasks", default="head,path,attr")
    parser.add_argument("--quick", action="store_true", help="small model smoke test")
    parser.add_argument("--attr-chunk", type=int, default=1, help="examples per attribution pass")
    parser.add_argument("--attr-chunks", default=None,
                        help="several examples-per-pass settings timed side by side, e.g. 1,4,all")
    parser.add_argument("--head-rows", default=None,
                        help="head sweep at several max_rows settings (its memory/speed knob), "
                             "e.g. 2048,64,16")
    parser.add_argument("--guided-k", default="8,32",
                        help="task 'guided': attribution-guided exact patching of the top k heads")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--memory-only", default=None,
                        help="only peak memory (fresh subprocess each) of these methods, e.g. "
                             "attr:tl,attr:fast:1,attr:fastw:1; no timing")
    parser.add_argument("--no-correlation", action="store_true")
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.manual_seed(0)
    args.sender = args.sender or ("1.1" if args.quick or args.family != "gpt2" else "5.1")
    if args.probe:
        with torch.no_grad():
            probe(args.probe, args)
        return
    passthrough = ["--family", args.family, "--seq", str(args.seq), "--batch", str(args.batch),
                   "--sender", args.sender, "--attr-chunk", str(args.attr_chunk),
                   "--component", args.component] + (["--quick"] if args.quick else [])
    passthrough += ["--layers", str(args.layers)] if args.layers else []
    passthrough += ["--vocab", str(args.vocab)] if args.vocab else []
    if args.memory_only:
        rows = ["| method | peak extra memory | baseline RSS |", "|---|---|---|"]
        for name in args.memory_only.split(","):
            mem = run_probe(SCRIPT, name, passthrough)
            rows.append(f"| `{name}` | {mem['extra_peak_bytes'] / 2**20:.1f} MiB | "
                        f"{mem['baseline_rss_bytes'] / 2**20:.0f} MiB |")
        print(f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, load {load()}")
        print("\n".join(rows))
        return
    c = args_cfg(args)
    clean, corrupt, _ = prompts(args)
    from mikb.methods._fast_forward import first_difference

    b, t = clean.shape
    start = first_difference(clean, corrupt)
    src_layer = int(args.sender.split(".")[0])
    flops = {
        "head": (flops_tl_head(c, b, t), flops_fast_head(c, b, t, start)),
        "path": (flops_tl_path(c, b, t, src_layer), flops_fast_path(c, b, t, start, src_layer)),
    }
    full = model_cfg(False, args.family)  # the published shape, for the FLOP model alone
    flops_full = {"head": (flops_tl_head(full, b, t), flops_fast_head(full, b, t, start)),
                  "path": (flops_tl_path(full, b, t, src_layer),
                           flops_fast_path(full, b, t, start, src_layer))}
    report: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/bench_patching.py", *sys.argv[1:]]),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
        "family": args.family, "shape": c, "batch": b, "seq": t, "first_difference": start,
        "load_start": load(), "gemm_gflops_before": gemm_gflops(c)}
    for task in args.tasks.split(","):
        print(f"timing {task} ...", file=sys.stderr, flush=True)
        variants = ["fast"]
        if task == "attr" and args.attr_chunks:
            variants = [f"fast:{k}" for k in args.attr_chunks.split(",")]
        if task == "head" and args.head_rows:
            variants = [f"fast:{r}" for r in args.head_rows.split(",")]
        if task == "guided":
            variants = [f"fast:{k}" for k in args.guided_k.split(",")]
        entry = time_group(task, variants, args)
        if not args.no_memory:
            for name in entry["methods"]:
                mem = run_probe(SCRIPT, name, passthrough)
                entry["methods"][name]["mem"] = mem["extra_peak_bytes"]
                entry["methods"][name]["baseline_rss"] = mem["baseline_rss_bytes"]
        if task in flops:
            entry["tl_gflop"], entry["fast_gflop"] = (f / 1e9 for f in flops[task])
            entry["full_shape_tl_gflop"], entry["full_shape_fast_gflop"] = (
                f / 1e9 for f in flops_full[task])
        report[task] = entry
        print(json.dumps({task: entry}), file=sys.stderr, flush=True)
    report["gemm_gflops_after"] = gemm_gflops(c)
    report["load_end"] = load()
    if not args.no_correlation and args.family == "gpt2":
        print("correlation ...", file=sys.stderr, flush=True)
        report["correlation"] = correlation_report(args)
    print(json.dumps(report, indent=1))
    print(markdown(report, args))


def fmt_s(x: dict[str, float]) -> str:
    digits = 1 if x["median"] >= 10 else 2
    return f"{x['median']:.{digits}f} s ({x['min']:.{digits}f}-{x['max']:.{digits}f})"


def fmt_mem(m: dict[str, Any]) -> str:
    return f"{m['mem'] / 2**20:.0f} MiB" if "mem" in m else "-"


def markdown(report: dict[str, Any], args: argparse.Namespace) -> str:
    names = {"head": "head-output patching, all heads (`get_act_patch_attn_head_out_all_pos`)",
             "path": f"path patching {args.sender} -> every later head's {args.component} "
                     "(`get_act_patch_direct_path`)",
             "attr": "attribution patching, all heads, node (`attribution_patch`)",
             "guided": "attribution-guided exact patching of the top k heads, against TL's "
                       "all-heads sweep (`get_act_patch_attn_head_out_all_pos`)"}
    c = report["shape"]
    lines = [
        f"{report['family']}-shaped: {c['n_layers']} layers, {c['n_heads']} heads "
        f"({c['n_kv']} key-value), d_model {c['d_model']}, d_mlp {c['d_mlp']}"
        f"{' gated' if c['gated'] else ''}, vocabulary {c['vocab']}; batch {report['batch']} x "
        f"{report['seq']} tokens, first difference at position {report['first_difference']}. "
        f"{report['date_utc']} UTC, {report['cpus']} CPUs, torch threads "
        f"{report['torch_threads']}, GEMM {report['gemm_gflops_before']:.0f} / "
        f"{report['gemm_gflops_after']:.0f} GFLOP/s before / after; times are median "
        f"(min-max) of {args.reps} interleaved repetitions.",
        "",
        "| method | TL time | mikb time | speed-up | CPU s per wall s TL / mikb "
        "| peak extra mem TL / mikb | max abs diff | load avg before -> after |",
        "|---|---|---|---|---|---|---|---|"]
    for task in ("head", "path", "attr", "guided"):
        e = report.get(task)
        if not e:
            continue
        tl = e["methods"][f"{task}:tl"]
        for name, m in e["methods"].items():
            if name == f"{task}:tl":
                continue
            label = names[task]
            if task == "attr":
                chunk = name.split(":")[2] if name.count(":") == 2 else str(args.attr_chunk)
                label += f", {chunk} example{'' if chunk == '1' else 's'} per pass"
            if task == "head" and name.count(":") == 2:
                label += f", max_rows {name.split(':')[2]}"
            if task == "guided":
                label += (f", k = {name.split(':')[2]} (recall of the exact top k: "
                          f"{m['recall']:.0%})")
            over = " (>2x TL)" if "mem" in m and "mem" in tl and m["mem"] > 2 * tl["mem"] else ""
            r = m["ratio"]
            lines.append(
                f"| {label} | {fmt_s(tl['wall'])} | {fmt_s(m['wall'])} | {r['median']:.1f}x "
                f"({r['min']:.1f}-{r['max']:.1f}) | "
                f"{tl['cpu']['median'] / tl['wall']['median']:.1f} / "
                f"{m['cpu']['median'] / m['wall']['median']:.1f} | "
                f"{fmt_mem(tl)} / {fmt_mem(m)}{over} | {m['max_abs_diff']:.1e} | "
                f"{e['load_before'][0]:.2f} -> {e['load_after'][0]:.2f} |")
    flop_lines = []
    gflops = max(report["gemm_gflops_before"], report["gemm_gflops_after"])
    for task in ("head", "path"):
        e = report.get(task)
        if not e or "tl_gflop" not in e:
            continue
        fast = min(m["wall"]["median"] for n, m in e["methods"].items() if not n.endswith(":tl"))
        flop_lines.append(
            f"| {task} | {e['tl_gflop']:,.0f} | {e['fast_gflop']:,.0f} | "
            f"{e['tl_gflop'] / e['fast_gflop']:.1f}x | {e['fast_gflop'] / gflops:.2f} s | "
            f"{fast:.2f} s | {e['full_shape_tl_gflop'] / e['full_shape_fast_gflop']:.1f}x |")
    if flop_lines:
        lines += ["", "| task | TL GFLOP | mikb GFLOP (minimal exact recompute) | FLOP ceiling on "
                  "the speed-up | mikb floor at the faster GEMM rate | mikb measured | ceiling at "
                  "the published shape |", "|---|---|---|---|---|---|---|", *flop_lines]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
