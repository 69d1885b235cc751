"""Circuit-discovery methods: one page per method and one leaderboard per ground-truth task.

A circuit's script may publish ``leaderboard.json`` beside its results: one row per method and
ablation run on a model whose circuit is known (compiled or planted), with the ROC AUC of the
method's edge ranking against the ground truth, MIB's CPR and CMD, wall time and peak memory.
These pages gather those rows, rank them, and link each to the run that produced it (whose
provenance is on its circuit page). Nothing is computed here but ordering and averages of
published numbers; every row names its run.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from mikb.entries import Circuit
from mikb.evidence import LABELS, evidence_of
from mikb.results_files import contained_file
from mikb.site.context import SiteContext
from mikb.site.md import esc, fmt_value, front_matter, rel_link
from mikb.site.writer import SiteWriter

INDEX = "methods/index.md"
LEADERBOARD_FILE = "leaderboard.json"

# What each method computes and where it is known to fail, in mikb's words; the keys are the
# method names the scripts record.
METHODS: dict[str, dict[str, str]] = {
    "exact edge patching": {
        "slug": "exact-edge-patching",
        "summary": "Patches one edge of the computational graph at a time (the sender's output as seen by one "
                   "receiver) from the ablated run into the clean run and records how far the output moves. "
                   "Exact, and the reference the approximations are judged against, but one forward pass per edge.",
        "fails": "Scores edges one at a time, so effects that only appear when several edges are removed together "
                 "(backup heads, redundancy) are missed.",
    },
    "ACDC": {
        "slug": "acdc",
        "summary": "Automatic Circuit DisCovery (Conmy et al. 2023): walks the graph from the output backwards and "
                   "removes every edge whose removal changes the output by less than a threshold, keeping the "
                   "removals as it goes. Sweeping the threshold gives the ranking the ROC curve is drawn from.",
        "fails": "Greedy and order-dependent; the answer depends on the threshold, the metric (KL or a task metric) "
                 "and the ablation; costly on large graphs.",
    },
    "EAP": {
        "slug": "eap",
        "summary": "Edge attribution patching (Syed et al. 2023): a first-order Taylor estimate of every edge's "
                   "effect from one clean forward pass, one ablated pass and one backward pass.",
        "fails": "Linear in the activations: wrong where the metric saturates or attention softmaxes switch, "
                 "and at zero gradient (for example a KL metric at the clean run).",
    },
    "EAP-IG": {
        "slug": "eap-ig",
        "summary": "EAP with integrated gradients (Hanna et al. 2024; the inputs variant MIB recommends): averages "
                   "the gradient along the path from the ablated to the clean inputs before multiplying by the "
                   "activation difference.",
        "fails": "Costs one backward pass per step; the number of steps and the alpha grid change the scores.",
    },
}


@dataclass(frozen=True)
class Row:
    circuit: Circuit
    model_id: str
    data: dict[str, Any]

    @property
    def method(self) -> str:
        return str(self.data.get("method", ""))

    @property
    def ablation(self) -> str:
        return str(self.data.get("ablation", ""))

    def number(self, key: str) -> float | None:
        value = self.data.get(key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def leaderboard_rows(ctx: SiteContext) -> list[Row]:
    """Every published leaderboard row, read only from plain files inside results folders."""
    rows: list[Row] = []
    for circuit in sorted(ctx.kb.circuits.values(), key=lambda c: c.id):
        for model_id in circuit.models:
            res = ctx.results(circuit, model_id)
            path = contained_file(res.folder, LEADERBOARD_FILE) if res.results else None
            if path is None:
                continue
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            rows += [Row(circuit, model_id, item) for item in data if isinstance(item, dict)] if isinstance(data, list) else []
    return rows


def method_page(name: str) -> str:
    slug = METHODS.get(name, {}).get("slug") or "".join(ch if ch.isalnum() else "-" for ch in name.lower())
    return f"methods/{slug}/index.md"


def task_page(model_id: str) -> str:
    return f"methods/tasks/{model_id}/index.md"


def write_method_pages(ctx: SiteContext, out: SiteWriter) -> None:
    rows = leaderboard_rows(ctx)
    out.text(INDEX, _index(ctx, rows))
    for name in sorted({r.method for r in rows} | set(METHODS)):
        out.text(method_page(name), _method(ctx, name, [r for r in rows if r.method == name]))
    for model_id in sorted({r.model_id for r in rows}):
        out.text(task_page(model_id), _task(ctx, model_id, [r for r in rows if r.model_id == model_id]))


def _fmt(value: float | None, digits: str = ".3f") -> str:
    return "—" if value is None else format(value, digits)


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _index(ctx: SiteContext, rows: list[Row]) -> str:
    lines = [front_matter(title="Circuit-discovery methods"), "# Circuit-discovery methods\n",
             "Each method ranks the edges of a model's computational graph by how much they matter for a task. On "
             "models whose circuit is known (compiled from a RASP program, or built by hand) the ranking is scored "
             "against that ground truth: the ROC AUC of the ranking (ACDC's measure), and MIB's CPR (area under the "
             "faithfulness curve over edge budgets; higher is better) and CMD (area between that curve and 1; lower "
             "is better). These runs are **method checks**: they show how each method behaves where the answer is "
             "known, and say nothing directly about a pretrained model.\n"]
    if not rows:
        lines.append("No leaderboard has been published yet.\n")
        return "\n".join(lines)
    lines += ["## Averages over every task\n", "| Method | Ablation | Tasks | Mean AUC | Mean CPR | Mean CMD |", "|---|---|---|---|---|---|"]
    groups: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        groups.setdefault((r.method, r.ablation), []).append(r)
    ranked = sorted(groups.items(), key=lambda kv: (-(_mean([r.number("auc") for r in kv[1]]) or 0), kv[0]))
    for (method, ablation), members in ranked:
        lines.append(f"| [{esc(method)}]({rel_link(INDEX, method_page(method))}) | {esc(ablation)} | {len({r.model_id for r in members})} "
                     f"| {_fmt(_mean([r.number('auc') for r in members]))} | {_fmt(_mean([r.number('cpr') for r in members]))} "
                     f"| {_fmt(_mean([r.number('cmd') for r in members]))} |")
    lines += ["", "## Leaderboards by task\n"]
    for model_id in sorted({r.model_id for r in rows}):
        model = ctx.kb.models.get(model_id)
        lines.append(f"- [{esc(model.name if model else model_id)}]({rel_link(INDEX, task_page(model_id))})")
    lines.append("")
    return "\n".join(lines)


def _method(ctx: SiteContext, name: str, rows: list[Row]) -> str:
    page = method_page(name)
    info = METHODS.get(name, {})
    lines = [front_matter(title=name), f"# {esc(name)}\n"]
    if info:
        lines += [info["summary"] + "\n", "**Where it fails.** " + info["fails"] + "\n"]
    if not rows:
        lines.append("No published run of this method yet.\n")
        return "\n".join(lines)
    flags = sorted({json.dumps(r.data.get("flags", {}), sort_keys=True) for r in rows})
    lines += ["## Results\n", "| Task | Ablation | AUC | CPR | CMD | Wall time | Peak memory |", "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r.model_id, r.ablation)):
        lines.append(f"| [{esc(r.model_id)}]({rel_link(page, task_page(r.model_id))}) | {esc(r.ablation)} | {_fmt(r.number('auc'))} "
                     f"| {_fmt(r.number('cpr'))} | {_fmt(r.number('cmd'))} | {_fmt(r.number('wall_s'), '.3g')} s "
                     f"| {_fmt(r.number('peak_rss_mib'), '.3g')} MiB |")
    lines += ["", "## Flags that change the answer\n"]
    for text in flags[:12]:
        items = json.loads(text)
        lines.append("- " + "; ".join(f"{esc(k)}: {esc(fmt_value(v))}" for k, v in sorted(items.items())))
    lines.append("")
    return "\n".join(lines)


def _task(ctx: SiteContext, model_id: str, rows: list[Row]) -> str:
    page = task_page(model_id)
    model = ctx.kb.models.get(model_id)
    title = f"Leaderboard: {model.name if model else model_id}"
    lines = [front_matter(title=title), f"# {esc(title)}\n"]
    if model is not None:
        lines.append(f"Ground truth: the circuit recorded with the model ({esc(LABELS[evidence_of(model.kind)])}). "
                     + (esc(model.description.strip()) if model.description else "") + "\n")
    for ablation in sorted({r.ablation for r in rows}):
        members = sorted((r for r in rows if r.ablation == ablation),
                         key=lambda r: (-(r.number("auc") or 0), -(r.number("cpr") or 0), r.method))
        lines += [f"## {esc(ablation)} ablation\n", "| Rank | Method | AUC | CPR | CMD | Wall time | Run |", "|---|---|---|---|---|---|---|"]
        for rank, r in enumerate(members, 1):
            run = rel_link(page, f"circuits/{r.circuit.id}/index.md")
            lines.append(f"| {rank} | [{esc(r.method)}]({rel_link(page, method_page(r.method))}) | {_fmt(r.number('auc'))} "
                         f"| {_fmt(r.number('cpr'))} | {_fmt(r.number('cmd'))} | {_fmt(r.number('wall_s'), '.3g')} s "
                         f"| [{esc(r.circuit.name)}]({run}) |")
        lines.append("")
    return "\n".join(lines)


def circuit_methods_section(ctx: SiteContext, page: str, circuit: Circuit) -> list[str]:
    """On a circuit's page: which discovery methods were scored on its models, how well each
    recovered the model's circuit (best AUC over ablations), and the leaderboard per model."""
    rows = [r for r in leaderboard_rows(ctx) if r.circuit.id == circuit.id]
    if not rows:
        return []
    lines = ["## Discovery methods that recover it\n",
             "Each method ranked the model's edges without being told the circuit; the score is how well that "
             "ranking recovers the known circuit (ROC AUC, best over the ablations tried; 1 is perfect, 0.5 is chance).\n",
             "| Model | " + " | ".join(f"[{esc(m)}]({rel_link(page, method_page(m))})" for m in sorted({r.method for r in rows}))
             + " | Leaderboard |"]
    methods = sorted({r.method for r in rows})
    lines.append("|---|" + "---|" * len(methods) + "---|")
    for model_id in sorted({r.model_id for r in rows}):
        best = []
        for method in methods:
            aucs = [a for r in rows if r.model_id == model_id and r.method == method if (a := r.number("auc")) is not None]
            best.append(_fmt(max(aucs)) if aucs else "—")
        lines.append(f"| {esc(model_id)} | " + " | ".join(best) + f" | [leaderboard]({rel_link(page, task_page(model_id))}) |")
    lines.append("")
    return lines

