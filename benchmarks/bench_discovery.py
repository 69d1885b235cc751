"""Benchmark mikb's circuit-discovery methods, and its EAP against TransformerLens's.

Run: ``python benchmarks/bench_discovery.py`` (a minute or two on 2 CPU cores; ``--layers``,
``--heads``, ``--d-model`` scale it). Prints a Markdown table: per method, time (median of
``--reps`` repetitions in one process, one thread), peak extra memory (each method once in a
fresh subprocess, see ``_memory.py``) and, for EAP, the max |difference| from TL's
``attribution_patch`` at edge granularity (summed over positions).

Setup: a GPT-2-architecture ``boot_transformers`` bridge with seeded random weights (TL's
edge-level attribution needs its per-head results, which the native attention bridge does
not offer), random prompts with a few corrupted positions, metric = log-probability of the
clean model's prediction at the last position, resample ablation. TL's EAP loops over
examples (its API scores one pair at a time); mikb's runs the batch at once.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _memory import measure_extra_peak, run_probe  # noqa: E402

warnings.filterwarnings("ignore")
os.environ.setdefault("TQDM_DISABLE", "1")
SCRIPT = Path(__file__).resolve()
METHODS = ("exact edge patching", "ACDC", "EAP", "EAP-IG", "TL EAP (edge)")


def setup(args: argparse.Namespace):
    from mikb.methods._gpt2_offline import random_gpt2_bridge
    from mikb.methods.edge_task import EdgeTask
    from mikb.methods.graph import GraphForward

    model = random_gpt2_bridge(n_layer=args.layers, n_head=args.heads, n_embd=args.d_model,
                               vocab_size=args.vocab, n_positions=args.seq, seed=0)
    gen = torch.Generator().manual_seed(1)
    clean = torch.randint(0, args.vocab, (args.batch, args.seq), generator=gen)
    corrupt = clean.clone()
    corrupt[:, 2:5] = torch.randint(0, args.vocab, (args.batch, 3), generator=gen)
    task = EdgeTask(GraphForward(model), clean, corrupt, [args.seq - 1])
    task.ablated, task.clean_writers, task.clean_labels  # noqa: B018 - shared caches first
    return model, task


def method(name: str, model, task, args: argparse.Namespace):
    from mikb.methods.acdc import acdc
    from mikb.methods.eap import eap, eap_ig
    from mikb.methods.edge_patching import edge_patching

    if name == "exact edge patching":
        return lambda: edge_patching(task)
    if name == "ACDC":
        return lambda: acdc(task, args.threshold)
    if name == "EAP":
        return lambda: eap(task, "denoising")
    if name == "EAP-IG":
        return lambda: eap_ig(task, args.ig_steps)
    return lambda: tl_eap(model, task)


def tl_eap(model, task) -> dict[str, float]:
    from transformer_lens.tools.analysis import attribution_patching as ap

    labels = task.clean_labels
    pos = task.positions
    out: dict[str, float] = {}
    n = task.n
    for i in range(n):
        def metric_fn(logits, i=i):
            lp = logits[:, pos].log_softmax(-1)
            return lp.gather(-1, labels[i : i + 1].unsqueeze(-1)).mean()

        res = ap.attribution_patch(model, task.clean[i : i + 1], task.corrupted[i : i + 1],
                                   metric_fn, ap.EdgeAttributionConfig(granularity="edge"))
        for (w, r), s in res.edge_scores.items():
            key = f"{_tl_name(w)}->{_tl_name(r)}"
            out[key] = out.get(key, 0.0) + s / n
    return out


def _tl_name(node) -> str:
    if node.kind == "embed":
        return "input"
    if node.kind == "attn_head_out":
        return f"a{node.layer}.h{node.head}"
    if node.kind in ("q_input", "k_input", "v_input"):
        return f"a{node.layer}.h{node.head}<{node.kind[0]}>"
    if node.kind in ("mlp_out", "mlp_in"):
        return f"m{node.layer}"
    return "logits"


def probe(name: str, args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    model, task = setup(args)
    _, extra, baseline = measure_extra_peak(method(name, model, task, args))
    print(json.dumps({"extra_peak_bytes": extra, "baseline_bytes": baseline}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=256)
    parser.add_argument("--seq", type=int, default=12)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threshold", type=float, default=0.01)
    parser.add_argument("--ig-steps", type=int, default=5)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe(args.probe, args)
        return
    torch.set_num_threads(1)
    model, task = setup(args)
    passthrough = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                   if k in ("layers", "heads", "d_model", "vocab", "seq", "batch", "threshold", "ig_steps")]
    rows: list[dict[str, Any]] = []
    results: dict[str, Any] = {}
    for name in METHODS:
        fn = method(name, model, task, args)
        times = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            results[name] = fn()
            times.append(time.perf_counter() - t0)
        mem = None if args.no_memory else run_probe(SCRIPT, name, passthrough)["extra_peak_bytes"]
        rows.append({"method": name, "time_s": statistics.median(times),
                     "peak_extra_mib": None if mem is None else mem / 2**20})
    ours = results["EAP"].as_dict()
    theirs = results["TL EAP (edge)"]
    diff = max(abs(ours[k] - theirs[k]) for k in ours)
    info = {"edges": task.graph.n_edges, "model": f"{args.layers} layers x {args.heads} heads, "
            f"d_model {args.d_model}", "prompts": f"{args.batch} x {args.seq} tokens",
            "eap_vs_tl_max_abs_diff": diff,
            "eap_max_abs_score": max(abs(v) for v in theirs.values())}
    print(f"Model: {info['model']}, {info['edges']} edges; prompts {info['prompts']}; "
          f"mikb EAP vs TL EAP max |diff| {diff:.2e} (scores up to {info['eap_max_abs_score']:.2e})\n")
    print("| method | time (s) | peak extra memory (MiB) |\n|---|---|---|")
    for r in rows:
        mem = "n/a" if r["peak_extra_mib"] is None else f"{r['peak_extra_mib']:.1f}"
        print(f"| {r['method']} | {r['time_s']:.3f} | {mem} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
