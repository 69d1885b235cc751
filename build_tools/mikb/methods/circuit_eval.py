"""Faithfulness, completeness and minimality of a circuit, as wang2022ioi define them (Section 4).

F(X) is the mean logit difference when every head outside X is mean-ablated (MLPs and
embeddings are kept). Faithfulness compares F(C) with F(M) for the full model M; completeness
asks that removing any subset K from both C and M hurts them alike, |F(C\\K) - F(M\\K)| small;
minimality asks that every head v in C matters for some K, |F(C\\(K+v)) - F(C\\K)| large.
The paper picks K by hand, at random and greedily; we use every head class and seeded random
subsets for completeness, and for minimality K = {} and K = v's other class members.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch

from mikb.data.ioi import IOIDataset
from mikb.methods.ablation import run_ablated
from mikb.methods.hooks import Head, all_heads, head_label
from mikb.methods.metrics import logit_diff


def score_with_heads(model: Any, ds: IOIDataset, means: dict, keep: set[Head]) -> float:
    """F(keep): mean logit diff with every head not in `keep` mean-ablated."""
    ablate = [h for h in all_heads(model) if h not in keep]
    return logit_diff(run_ablated(model, ds.tokens, means, ablate), ds).item()


def faithfulness(model: Any, ds: IOIDataset, means: dict, circuit: set[Head]) -> dict[str, float]:
    f_model = score_with_heads(model, ds, means, set(all_heads(model)))
    f_circuit = score_with_heads(model, ds, means, circuit)
    return {
        "F_model": f_model,
        "F_circuit": f_circuit,
        "fraction": f_circuit / f_model,
        "relative_gap": abs(f_model - f_circuit) / abs(f_model),
    }


def completeness(
    model: Any,
    ds: IOIDataset,
    means: dict,
    circuit: set[Head],
    classes: dict[str, list[Head]],
    n_random: int = 4,
    seed: int = 0,
) -> dict[str, Any]:
    """|F(C\\K) - F(M\\K)| for each class K and random K (each head kept with prob 1/2)."""
    model_heads = set(all_heads(model))
    rng = random.Random(seed)
    subsets: dict[str, set[Head]] = {f"class:{k}": set(v) for k, v in classes.items()}
    ordered = sorted(circuit)
    for i in range(n_random):
        subsets[f"random:{i}"] = {h for h in ordered if rng.random() < 0.5}
    gaps: dict[str, float] = {}
    for name, k in subsets.items():
        f_c = score_with_heads(model, ds, means, circuit - k)
        f_m = score_with_heads(model, ds, means, model_heads - k)
        gaps[name] = abs(f_c - f_m)
    worst = max(gaps, key=gaps.get)
    return {"gaps": gaps, "max_gap": gaps[worst], "worst_subset": worst}


def minimality(
    model: Any,
    ds: IOIDataset,
    means: dict,
    circuit: set[Head],
    classes: dict[str, list[Head]],
    heads: Sequence[Head] | None = None,
) -> dict[str, float]:
    """Per head v: max over K in {{}, v's class minus v} of |F(C\\(K+v)) - F(C\\K)| / F(C)."""
    f_c = score_with_heads(model, ds, means, circuit)
    out: dict[str, float] = {}
    for v in heads if heads is not None else sorted(circuit):
        same = next((set(c) - {v} for c in classes.values() if v in c), set())
        best = 0.0
        for k in (set(), same):
            without_k = score_with_heads(model, ds, means, circuit - k)
            without_kv = score_with_heads(model, ds, means, circuit - k - {v})
            best = max(best, abs(without_kv - without_k) / abs(f_c))
        out[head_label(v)] = best
    return out


def heads_from_classes(classes: dict[str, list[Head]]) -> set[Head]:
    return {h for hs in classes.values() for h in hs}


def per_prompt_logit_diff(model: Any, ds: IOIDataset) -> torch.Tensor:
    with torch.no_grad():
        return logit_diff(model(ds.tokens), ds, per_prompt=True)


def greedy_incompleteness(
    model: Any,
    ds: IOIDataset,
    means: dict,
    circuit: set[Head],
    n_steps: int = 5,
    sample_size: int = 10,
    n_runs: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """Search for a K that makes the circuit look incomplete (wang2022ioi's greedy K search).

    Each run grows K one head at a time: from `sample_size` heads of C \\ K drawn at random it
    adds the one that maximises |F(C \\ (K+v)) - F(M \\ (K+v))|. Returns the largest gap found
    (absolute and relative to F(M)) and its K.
    """
    model_heads = set(all_heads(model))
    f_model = score_with_heads(model, ds, means, model_heads)
    rng = random.Random(seed)
    best: tuple[float, set[Head]] = (0.0, set())
    for _ in range(n_runs):
        k: set[Head] = set()
        for _ in range(n_steps):
            pool = sorted(circuit - k)
            if not pool:
                break
            gaps = []
            for v in rng.sample(pool, min(sample_size, len(pool))):
                kv = k | {v}
                gap = abs(score_with_heads(model, ds, means, circuit - kv)
                          - score_with_heads(model, ds, means, model_heads - kv))
                gaps.append((gap, v))
            gap, v = max(gaps)
            k.add(v)
            if gap > best[0]:
                best = (gap, set(k))
    return {"max_gap": best[0], "max_gap_relative": best[0] / abs(f_model),
            "worst_k": sorted(head_label(h) for h in best[1])}


def minimality_with_k(
    model: Any,
    ds: IOIDataset,
    means: dict,
    circuit: set[Head],
    k_sets: dict[Head, list[set[Head]]],
) -> dict[str, float]:
    """Per head v: max over the given K sets (plus K = {}) of |F(C\\(K+v)) - F(C\\K)| / F(C)."""
    f_c = score_with_heads(model, ds, means, circuit)
    cache: dict[frozenset, float] = {}

    def score(keep: set[Head]) -> float:
        key = frozenset(keep)
        if key not in cache:
            cache[key] = score_with_heads(model, ds, means, keep)
        return cache[key]

    out: dict[str, float] = {}
    for v in sorted(circuit):
        best = 0.0
        for k in [set()] + [set(x) - {v} for x in k_sets.get(v, [])]:
            best = max(best, abs(score(circuit - k - {v}) - score(circuit - k)) / abs(f_c))
        out[head_label(v)] = best
    return out
