"""Benchmark mikb's fast patching against TransformerLens's own patching functions.

Run: ``python benchmarks/bench_patching.py`` (about 15 minutes on 2 CPU cores; ``--quick``
shrinks the model for a smoke test). Prints a Markdown table: time (median of ``--reps``
interleaved repetitions in one process), ratio, peak extra memory (each method once, in a
fresh subprocess, see ``_memory.py``) and the max |difference| between the two results.

Setup: a GPT-2-shaped model (12 layers, 12 heads, d_model 768, vocabulary 50257, LayerNorm,
gelu MLPs) with seeded random weights; IOI prompts from :mod:`mikb.data.ioi` (batch 20, ABC
corruption), metric = logit(IO) - logit(S) at the last position, batch mean.

* Head-output patching runs on ``TransformerBridge.boot_native``.
* Path patching runs on a GPT-2-architecture ``boot_transformers`` bridge (random weights):
  TL's ``get_act_patch_direct_path`` needs the pre-Q/K/V fork, which the native attention
  bridge does not offer.
* TL's timings exclude building its ``clean_cache``/``corrupted_cache`` (its inputs); ours
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


def model_cfg(quick: bool) -> dict[str, Any]:
    if quick:
        return {"n_layers": 4, "n_heads": 4, "d_model": 128, "d_head": 32, "d_mlp": 512}
    return {"n_layers": 12, "n_heads": 12, "d_model": 768, "d_head": 64, "d_mlp": 3072}


def native_model(quick: bool, seed: int = 0):
    import transformer_lens.model_bridge.sources  # noqa: F401
    from transformer_lens.model_bridge import TransformerBridge

    torch.manual_seed(seed)
    cfg = dict(model_cfg(quick), d_vocab=50257, n_ctx=1024, act_fn="gelu",
               normalization_type="LN", seed=seed)
    return TransformerBridge.boot_native(cfg).eval()


def hf_model(quick: bool, seed: int = 0):
    from mikb.methods._gpt2_offline import random_gpt2_bridge

    c = model_cfg(quick)
    return random_gpt2_bridge(c["n_layers"], c["n_heads"], c["d_model"], seed=seed)


def ioi_batch(n: int) -> tuple[torch.Tensor, torch.Tensor, LogitReadout]:
    from mikb.data.ioi import make_ioi_dataset

    ds = make_ioi_dataset(n, seed=0)
    answers = torch.stack([ds.io_ids, ds.s_ids], dim=1)
    return ds.tokens, ds.corrupted_tokens, logit_diff_readout(answers, ds.end)


# -- the methods, each as a zero-argument callable after setup ---------------------------------


def make_method(
    name: str, args: argparse.Namespace, model: Any = None, batch: int | None = None
) -> tuple[Callable[[], torch.Tensor], Any]:
    """``name`` is ``<task>:<tl|fast>``; returns the call and the model it runs on."""
    from transformer_lens import patching

    from mikb.methods.attribution import attribution_patching
    from mikb.methods.fast_patching import head_out_patching, path_patching_from_head

    task, impl = name.split(":")
    clean, corrupt, readout = ioi_batch(batch or args.batch)
    if model is None:
        model = hf_model(args.quick) if task == "path" else native_model(args.quick)
    sender = tuple(int(x) for x in args.sender.split("."))
    if impl == "tl":
        metric = readout.as_tl_metric()
        with torch.no_grad():
            _, clean_cache = model.run_with_cache(clean)
            corrupt_cache = model.run_with_cache(corrupt)[1] if task == "path" else None
    if task == "head":
        if impl == "tl":
            return (lambda: patching.get_act_patch_attn_head_out_all_pos(
                model, corrupt, clean_cache, metric)), model
        return (lambda: head_out_patching(model, clean, corrupt, readout)), model
    if task == "path":
        if impl == "tl":
            return (lambda: patching.get_act_patch_direct_path(
                model, corrupt, clean_cache, corrupt_cache, metric, sender[0], sender[1],
                args.component, verbose=False)), model
        return (lambda: path_patching_from_head(
            model, clean, corrupt, readout, sender, args.component)), model
    if task == "attr":
        if impl == "tl":
            return (lambda: tl_node_attribution(model, clean, corrupt, readout)), model
        return (lambda: attribution_patching(
            model, clean, corrupt, readout, edges=False, examples_per_pass=args.attr_chunk
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


def layer_flops(c: dict[str, int], rows: int, ctx: int) -> dict[str, float]:
    """Multiply-add FLOPs (2 per MAC) of one block's parts on ``rows`` token rows."""
    d, hd, m = c["d_model"], c["n_heads"] * c["d_head"], c["d_mlp"]
    return {
        "qkv": 2.0 * rows * d * 3 * hd,
        "attn": 2.0 * rows * 2 * hd * ctx / 2,  # scores + mixing, causal average
        "o": 2.0 * rows * hd * d,
        "mlp": 2.0 * rows * 2 * d * m,
    }


def full_block(c: dict[str, int], rows: int, ctx: int) -> float:
    return sum(layer_flops(c, rows, ctx).values())


def flops_tl_head(c: dict[str, int], b: int, t: int, vocab: int = 50257) -> float:
    per_forward = c["n_layers"] * full_block(c, b * t, t) + 2.0 * b * t * c["d_model"] * vocab
    return c["n_layers"] * c["n_heads"] * per_forward


def flops_tl_path(c: dict[str, int], b: int, t: int, src_layer: int, vocab: int = 50257) -> float:
    per_forward = c["n_layers"] * full_block(c, b * t, t) + 2.0 * b * t * c["d_model"] * vocab
    return (c["n_layers"] - 1 - src_layer) * c["n_heads"] * per_forward


def flops_resume(c: dict[str, int], layer: int, runs: int, b: int, t: int, start: int) -> float:
    """FLOPs of the exact recompute after patching ``runs`` runs at ``resid_mid[layer]``."""
    n_layers, rows = c["n_layers"], runs * b * (t - start)
    if layer == n_layers - 1:
        return layer_flops(c, runs * b, t)["mlp"] + 2.0 * runs * b * c["d_model"] * 2
    total = layer_flops(c, rows, t)["mlp"]
    total += (n_layers - 2 - layer) * full_block(c, rows, t)
    last_rows = layer_flops(c, rows, t)
    total += last_rows["qkv"] * 2 / 3  # keys and values at every position
    total += full_block(c, runs * b, 2 * t) - layer_flops(c, runs * b, t)["qkv"] * 2 / 3
    return total + 2.0 * runs * b * c["d_model"] * 2  # two unembedding columns


def flops_fast_head(c: dict[str, int], b: int, t: int, start: int) -> float:
    caches = 2 * c["n_layers"] * full_block(c, b * t, t)
    return caches + sum(
        flops_resume(c, layer, c["n_heads"], b, t, start) for layer in range(c["n_layers"])
    )


def flops_fast_path(c: dict[str, int], b: int, t: int, start: int, src_layer: int) -> float:
    caches = 2 * c["n_layers"] * full_block(c, b * t, t)
    total = caches
    for layer in range(src_layer + 1, c["n_layers"]):
        parts = layer_flops(c, b * t, t)
        total += parts["qkv"] * 4 / 3 + parts["attn"]  # base + patched projection, attention
        total += flops_resume(c, layer, c["n_heads"], b, t, start)
    return total


def gemm_gflops(c: dict[str, int], reps: int = 5) -> float:
    """Measured throughput of the model's largest GEMM at our batch shape (best of reps)."""
    a = torch.randn(3840, c["d_model"])
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


def time_pair(task: str, args: argparse.Namespace) -> dict[str, Any]:
    """Interleave TL and fast runs in this process; median seconds of each and max |diff|."""
    tl_fn, model = make_method(f"{task}:tl", args)
    fast_fn, _ = make_method(f"{task}:fast", args, model)
    # Warm up both (first-call costs: kernel selection, allocator growth) on a 2-prompt batch.
    with torch.enable_grad() if task == "attr" else torch.no_grad():
        for impl in ("tl", "fast"):
            make_method(f"{task}:{impl}", args, model, batch=2)[0]()
    times: dict[str, list[float]] = {"tl": [], "fast": []}
    results: dict[str, torch.Tensor] = {}
    for rep in range(args.reps):
        order = [("tl", tl_fn), ("fast", fast_fn)]
        for impl, fn in order if rep % 2 == 0 else order[::-1]:
            grad = torch.enable_grad() if task == "attr" else torch.no_grad()
            with grad:  # TL gets no_grad where it needs no gradients (its fastest setting)
                t0 = time.perf_counter()
                out = fn()
            times[impl].append(time.perf_counter() - t0)
            results[impl] = out.detach()
            print(f"  {task}:{impl} rep {rep}: {times[impl][-1]:.2f}s", file=sys.stderr, flush=True)
        if task == "attr" and rep == 0:
            break  # TL's per-example loop is slow; one interleaved pair is enough for a ratio
    diff = float((results["tl"] - results["fast"]).abs().max())
    # The speed-up is taken per interleaved pair (same load), then the median of pairs.
    ratios = [a / b for a, b in zip(times["tl"], times["fast"], strict=False)]
    return {"tl_s": statistics.median(times["tl"]), "fast_s": statistics.median(times["fast"]),
            "ratio": statistics.median(ratios), "ratio_min": min(ratios),
            "tl_all": times["tl"], "fast_all": times["fast"], "max_abs_diff": diff,
            "max_abs_value": float(results["tl"].abs().max())}


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
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--sender", default=None, help="path patching sender L.H (5.1; quick 1.1)")
    parser.add_argument("--component", default="q", choices=["q", "k", "v"])
    parser.add_argument("--tasks", default="head,path,attr")
    parser.add_argument("--quick", action="store_true", help="small model smoke test")
    parser.add_argument("--attr-chunk", type=int, default=1, help="examples per attribution pass")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--no-correlation", action="store_true")
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.manual_seed(0)
    args.sender = args.sender or ("1.1" if args.quick else "5.1")
    if args.probe:
        with torch.no_grad():
            probe(args.probe, args)
        return
    passthrough = ["--batch", str(args.batch), "--sender", args.sender,
                   "--attr-chunk", str(args.attr_chunk),
                   "--component", args.component] + (["--quick"] if args.quick else [])
    c = model_cfg(args.quick)
    clean, corrupt, _ = ioi_batch(args.batch)
    from mikb.methods._fast_forward import first_difference

    b, t = clean.shape
    start = first_difference(clean, corrupt)
    src_layer = int(args.sender.split(".")[0])
    flops = {
        "head": (flops_tl_head(c, b, t), flops_fast_head(c, b, t, start)),
        "path": (flops_tl_path(c, b, t, src_layer), flops_fast_path(c, b, t, start, src_layer)),
    }
    report: dict[str, Any] = {"batch": b, "seq": t, "first_difference": start,
                              "gemm_gflops_before": gemm_gflops(c)}
    for task in args.tasks.split(","):
        print(f"timing {task} ...", file=sys.stderr, flush=True)
        entry = time_pair(task, args)
        if not args.no_memory:
            for impl in ("tl", "fast"):
                mem = run_probe(SCRIPT, f"{task}:{impl}", passthrough)
                entry[f"{impl}_mem"] = mem["extra_peak_bytes"]
                entry[f"{impl}_baseline_rss"] = mem["baseline_rss_bytes"]
        if task in flops:
            entry["tl_gflop"], entry["fast_gflop"] = (f / 1e9 for f in flops[task])
        report[task] = entry
        print(json.dumps({task: entry}), file=sys.stderr, flush=True)
    report["gemm_gflops_after"] = gemm_gflops(c)
    if not args.no_correlation:
        print("correlation ...", file=sys.stderr, flush=True)
        report["correlation"] = correlation_report(args)
    print(json.dumps(report, indent=1))
    print(markdown(report, args))


def markdown(report: dict[str, Any], args: argparse.Namespace) -> str:
    names = {"head": "Head-output patching, all heads (`get_act_patch_attn_head_out_all_pos`)",
             "path": f"Path patching {args.sender} -> later heads' {args.component} "
                     "(`get_act_patch_direct_path`)",
             "attr": "Attribution patching, all heads (`attribution_patch`, node)"}
    lines = ["| method | TL time | mikb time | speed-up | TL peak extra mem | mikb peak extra mem"
             " | max abs diff |", "|---|---|---|---|---|---|---|"]
    for task in ("head", "path", "attr"):
        e = report.get(task)
        if not e:
            continue
        mem = (f"{e['tl_mem'] / 2**20:.0f} MiB", f"{e['fast_mem'] / 2**20:.0f} MiB") \
            if "tl_mem" in e else ("-", "-")
        lines.append(f"| {names[task]} | {e['tl_s']:.1f} s | {e['fast_s']:.2f} s | "
                     f"{e['ratio']:.1f}x | {mem[0]} | {mem[1]} | "
                     f"{e['max_abs_diff']:.1e} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
