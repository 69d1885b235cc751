"""How mikb's speed-up on exact head-output patching grows with prompt length and batch size.

Run: ``python benchmarks/bench_patching_scaling.py`` (``--quick`` for a smoke test). For each
(batch, length) it times TransformerLens's ``get_act_patch_attn_head_out_all_pos`` and mikb's
``head_out_patching`` interleaved in one process (``--reps`` rounds, order reversed on odd
rounds), measures each one's peak extra memory in a fresh subprocess (``_memory.py``), prints
a Markdown table and draws ``docs/img/patching_scaling.png``.

Model: GPT-2-shaped but smaller, so the peer's sweep (16 hooked forwards per point) fits the
shared 2-core machine: 4 layers, 4 heads of d_head 128, d_model 512, d_mlp 2048, vocabulary
50257, LayerNorm, gelu, seeded random weights (``TransformerBridge.boot_native``). Prompts are random tokens; the corrupted ones
differ at position 2 and at length - 3 (see ``bench_patching.random_batch``), so exact
patching recomputes nearly every position: the case where the speed-up is smallest.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_patching as bp  # noqa: E402
from _memory import measure_extra_peak, run_probe  # noqa: E402

warnings.filterwarnings("ignore")
os.environ.setdefault("TQDM_DISABLE", "1")
SCRIPT = Path(__file__).resolve()
PLOT = Path(__file__).resolve().parent.parent / "docs" / "img" / "patching_scaling.png"
SHAPE = dict(n_layers=4, n_heads=4, n_kv=4, d_model=512, d_head=128, d_mlp=2048, gated=False,
             vocab=50257)
QUICK = dict(SHAPE, n_layers=2, n_heads=4, n_kv=4, d_model=128, d_head=32, d_mlp=512, vocab=1000)


def shape(quick: bool) -> dict[str, Any]:
    return QUICK if quick else SHAPE


SEQ_BATCH, BATCH_SEQ = 1, 16  # lengths are swept at batch 1, batch sizes at 16 tokens


def grid(quick: bool) -> list[tuple[int, int]]:
    """(batch, length) points: lengths 16-256 at batch 1, batch sizes 1-16 at 16 tokens (the
    peer's 32 hooked forwards per point at 256 tokens x 16 prompts would not fit the machine)."""
    seqs = [16, 32, 64] if quick else [16, 32, 64, 128, 256]
    return [(SEQ_BATCH, t) for t in seqs] + [(b, BATCH_SEQ) for b in (4, 16)]


def methods(c: dict[str, Any], model: Any, batch: int, seq: int) -> dict[str, Any]:
    from transformer_lens import patching

    from mikb.methods.fast_patching import head_out_patching

    clean, corrupt, readout = bp.random_batch(batch, seq, c["vocab"])
    metric = readout.as_tl_metric()
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean)
    return {
        "tl": lambda: patching.get_act_patch_attn_head_out_all_pos(
            model, corrupt, clean_cache, metric),
        "fast": lambda: head_out_patching(model, clean, corrupt, readout),
    }


def probe(args: argparse.Namespace) -> None:
    c = shape(args.quick)
    model = bp.native_model(args.quick, cfg=c)
    fn = methods(c, model, args.batch, args.seq)[args.probe]
    with torch.no_grad():
        _, extra, baseline = measure_extra_peak(fn)
    print(json.dumps({"probe": args.probe, "extra_peak_bytes": extra,
                      "baseline_rss_bytes": baseline}))


def time_point(c: dict[str, Any], model: Any, batch: int, seq: int, reps: int) -> dict[str, Any]:
    fns = methods(c, model, batch, seq)
    with torch.no_grad():
        for fn in methods(c, model, 1, seq).values():  # warm-up at this length
            fn()
        wall: dict[str, list[float]] = {"tl": [], "fast": []}
        cpu: dict[str, list[float]] = {"tl": [], "fast": []}
        out: dict[str, torch.Tensor] = {}
        load_before = bp.load()
        for rep in range(reps):
            for name in ("tl", "fast") if rep % 2 == 0 else ("fast", "tl"):
                c0, t0 = time.process_time(), time.perf_counter()
                out[name] = fns[name]()
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
                print(f"  b={batch} t={seq} {name} rep {rep}: {wall[name][-1]:.2f}s "
                      f"load {bp.load()[0]}", file=sys.stderr, flush=True)
    ratios = [a / b for a, b in zip(wall["tl"], wall["fast"], strict=True)]
    from mikb.methods._fast_forward import first_difference

    clean, corrupt, _ = bp.random_batch(batch, seq, c["vocab"])
    start = first_difference(clean, corrupt)
    return {"batch": batch, "seq": seq, "first_difference": start,
            "tl": bp.spread(wall["tl"]), "fast": bp.spread(wall["fast"]),
            "tl_cpu": bp.spread(cpu["tl"]), "fast_cpu": bp.spread(cpu["fast"]),
            "ratio": bp.spread(ratios), "ratio_all": ratios,
            "max_abs_diff": float((out["tl"] - out["fast"]).abs().max()),
            "flop_ceiling": bp.flops_tl_head(c, batch, seq) / bp.flops_fast_head(c, batch, seq, start),
            "load_before": load_before, "load_after": bp.load()}


def markdown(report: dict[str, Any]) -> str:
    c = report["shape"]
    lines = [
        f"GPT-2-shaped, smaller: {c['n_layers']} layers, {c['n_heads']} heads of "
        f"{c['d_head']}, d_model "
        f"{c['d_model']}, d_mlp {c['d_mlp']}, vocabulary {c['vocab']}; random prompts, first "
        f"difference at position 2. {report['date_utc']} UTC, {report['cpus']} CPUs, torch "
        f"threads {report['torch_threads']}; times are median (min-max) of {report['reps']} "
        "interleaved repetitions.", "",
        "| batch | tokens | TL time | mikb time | speed-up | FLOP ceiling | peak extra mem TL / "
        "mikb | max abs diff | load avg before -> after |",
        "|---|---|---|---|---|---|---|---|---|"]
    for p in report["points"]:
        mem = (f"{p['tl_mem'] / 2**20:.0f} / {p['fast_mem'] / 2**20:.0f} MiB"
               + (" (>2x TL)" if p["fast_mem"] > 2 * p["tl_mem"] else "")) if "tl_mem" in p else "-"
        r = p["ratio"]
        lines.append(
            f"| {p['batch']} | {p['seq']} | {bp.fmt_s(p['tl'])} | {bp.fmt_s(p['fast'])} | "
            f"{r['median']:.1f}x ({r['min']:.1f}-{r['max']:.1f}) | {p['flop_ceiling']:.1f}x | "
            f"{mem} | {p['max_abs_diff']:.1e} | {p['load_before'][0]:.2f} -> "
            f"{p['load_after'][0]:.2f} |")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = report["points"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, fixed, label in ((axes[0], "seq", ("batch", SEQ_BATCH), "prompt length (tokens)"),
                                  (axes[1], "batch", ("seq", BATCH_SEQ), "batch size (prompts)")):
        sel = sorted((p for p in pts if p[fixed[0]] == fixed[1]), key=lambda p: p[key])
        xs = [p[key] for p in sel]
        med = [p["ratio"]["median"] for p in sel]
        err = [[m - p["ratio"]["min"] for m, p in zip(med, sel, strict=True)],
               [p["ratio"]["max"] - m for m, p in zip(med, sel, strict=True)]]
        ax.errorbar(xs, med, yerr=err, marker="o", capsize=3,
                    label=f"measured (median, min-max of {report['reps']})")
        ax.plot(xs, [p["flop_ceiling"] for p in sel], "k--", label="FLOP ceiling (TL / mikb FLOPs)")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel(label)
        ax.set_ylabel("speed-up (TL time / mikb time, x)")
        other = "batch" if key == "seq" else "prompt length"
        ax.set_title(f"{other} {fixed[1]}{' tokens' if key == 'batch' else ''}", fontsize=10)
        ax.legend(fontsize=8)
    c = report["shape"]
    fig.suptitle(f"Exact head-output patching, all heads: mikb vs TransformerLens "
                 f"({c['n_layers']}-layer GPT-2-shaped, d_model {c['d_model']}, CPU, "
                 f"{report['torch_threads']} threads)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--plot", default=str(PLOT))
    parser.add_argument("--json", default=None, help="write the report here after each point")
    parser.add_argument("--replot", default=None,
                        help="print the table and draw the plot from a --json file; no timing")
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seq", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe(args)
        return
    if args.replot:
        report = json.loads(Path(args.replot).read_text())
        print(markdown(report))
        plot(report, Path(args.plot))
        return
    c = shape(args.quick)
    model = bp.native_model(args.quick, cfg=c)
    report: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/bench_patching_scaling.py", *sys.argv[1:]]),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "reps": args.reps,
        "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(), "shape": c,
        "load_start": bp.load(), "points": []}
    for batch, seq in grid(args.quick):
        point = time_point(c, model, batch, seq, args.reps)
        if not args.no_memory:
            extra = ["--batch", str(batch), "--seq", str(seq)] + (["--quick"] if args.quick else [])
            for name in ("tl", "fast"):
                point[f"{name}_mem"] = run_probe(SCRIPT, name, extra)["extra_peak_bytes"]
        report["points"].append(point)
        print(json.dumps(point), file=sys.stderr, flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1))
    report["load_end"] = bp.load()
    print(json.dumps(report, indent=1))
    print(markdown(report))
    if args.plot:
        plot(report, Path(args.plot))


if __name__ == "__main__":
    main()
