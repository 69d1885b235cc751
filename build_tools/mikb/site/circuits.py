"""Circuit zoo pages: the index and one page per circuit with diagram, claims and results.

Every number on a circuit page is either *reported* (from the entry, with its citation) or
*reproduced* (from a results.json written by `mikb reproduce`, shown with its provenance).
Where a model was not run, the page says "not run" and gives the command; it never fills in.
"""

from __future__ import annotations

import json

from mikb.entries import Circuit, Claim
from mikb.graph import node_id
from mikb.reproduce.claims import judge
from mikb.site.context import SiteContext
from mikb.site.diagram import circuit_svg
from mikb.site.md import cell, esc, fmt_value, front_matter, state_badge, status_badge
from mikb.site.writer import SiteWriter

INDEX = "circuits/index.md"
MODEL_KIND_LABELS = {"pretrained": "pretrained", "trained-here": "trained here", "planted": "planted", "random": "random weights"}


def circuit_page(circuit: Circuit) -> str:
    return f"circuits/{circuit.id}/index.md"


def reproduce_command(circuit: Circuit, model_id: str) -> str:
    return f"mikb reproduce {circuit.id} --model {model_id}"


def write_circuit_pages(ctx: SiteContext, out: SiteWriter) -> None:
    circuits = sorted(ctx.kb.circuits.values(), key=lambda c: c.name.lower())
    out.text(INDEX, _index(ctx, circuits))
    for circuit in circuits:
        page = circuit_page(circuit)
        out.text(page, _circuit(ctx, circuit))
        for model_id in circuit.models:
            res = ctx.results(circuit, model_id)
            for path in res.figure_files():
                out.copy(f"circuits/{circuit.id}/results/{model_id}/{path.name}", path)
            for name in ("results.json", "log.txt", "failure.json"):
                if (res.folder / name).is_file():
                    out.copy(f"circuits/{circuit.id}/results/{model_id}/{name}", res.folder / name)
            for extra in sorted(res.folder.glob("*.json")) if res.folder.is_dir() else []:
                if extra.name not in ("results.json", "failure.json"):
                    out.copy(f"circuits/{circuit.id}/results/{model_id}/{extra.name}", extra)


def _model_label(ctx: SiteContext, model_id: str) -> str:
    model = ctx.kb.models.get(model_id)
    if not model:
        return model_id
    return f"{model.name} ({MODEL_KIND_LABELS.get(model.kind, model.kind)})"


def _index(ctx: SiteContext, circuits: list[Circuit]) -> str:
    lines = [front_matter(title="Circuit zoo"), "# Circuit zoo\n",
             "Each circuit is a YAML entry with a reproduction script beside it. Reported numbers come from the "
             "papers (with citations); reproduced numbers come from running the script, on the model named beside them.\n",
             "| Circuit | Task | Models | Reproduced |", "|---|---|---|---|"]
    for c in circuits:
        states = []
        for model_id in c.models:
            res = ctx.results(c, model_id)
            states.append(f"{esc(model_id)}: {state_badge(res.state)}")
        models = ", ".join(ctx.link(INDEX, node_id("model", m), _model_label(ctx, m)) for m in c.models)
        lines.append(f"| [{c.name}]({c.id}/index.md) | {cell(c.task)} | {cell(models)} | {cell('<br>'.join(states))} |")
    return "\n".join(lines) + "\n"


def _circuit(ctx: SiteContext, c: Circuit) -> str:
    page = circuit_page(c)
    me = node_id("circuit", c.id)
    lines = [
        front_matter(title=c.name, tags=c.tags, hide=["navigation"], mikb_source=ctx.kb.rel(c.doc.path)),
        f"# {c.name}\n",
        f"**Task.** {c.task}\n",
        "**Models.** " + ", ".join(ctx.link(page, node_id("model", m), _model_label(ctx, m)) for m in c.models) + "\n",
        c.behaviour.strip() + "\n",
        "## Diagram\n",
        '<div class="mikb-diagram-wrap">' + circuit_svg(c) + "</div>\n",
        "## Components\n",
        "| Component | Model | Role | Notes |", "|---|---|---|---|",
    ]
    for comp in c.components:
        lines.append(f"| `{comp.label}` | {cell(comp.model)} | {cell(comp.role)} | {cell(comp.description or '')} |")
    lines.append("")
    if c.edges:
        lines += ["## Edges\n", "| From | To | Input | What flows |", "|---|---|---|---|"]
        for e in c.edges:
            src, dst = c.component(e.source), c.component(e.target)
            lines.append(f"| `{src.label if src else e.source}` | `{dst.label if dst else e.target}` | {e.input or '—'} | {cell(e.description or '')} |")
        lines.append("")
    lines += _claims_table(ctx, page, c)
    lines.append("## Reproductions\n")
    for model_id in c.models:
        lines += _results_section(ctx, c, model_id)
    problems = sorted(set(c.related_problems) | {
        src.split(":", 1)[1] for src, _, d in ctx.graph.out_edges(me, data=True) if d["type"] == "addresses"
    })
    lines.append("## Open problems this circuit addresses\n")
    if problems:
        for pid in problems:
            node = node_id("problem", pid)
            if node in ctx.graph:
                lines.append(f"- {ctx.link(page, node)} {status_badge(ctx.graph.nodes[node]['status'])}")
    else:
        lines.append("None linked yet.")
    lines.append("\n## References\n")
    for key in c.references:
        paper = ctx.kb.papers.get(key)
        lines.append(f"- {ctx.paper_link(page, key)}" + (f" — *{paper.title}*" if paper else ""))
    lines.append("")
    if c.notes:
        lines.append(f'!!! note "Notes"\n    {c.notes.strip()}\n')
    lines.append(ctx.edit_link(ctx.kb.rel(c.doc.path)) + "\n")
    return "\n".join(lines)


def _claims_table(ctx: SiteContext, page: str, c: Circuit) -> list[str]:
    if not c.claims:
        return []
    lines = ["## Claims: reported and reproduced\n",
             "Reported values are the papers' own numbers on the model they studied. Reproduced values come from "
             "`mikb reproduce` runs on the model named in the column header; the verdict compares them with the "
             "paper's value (same model) or with the entry's expectation for that model.\n"]
    head = "| Claim | Reported | " + " | ".join(f"Reproduced on {esc(m)}" for m in c.models) + " |"
    lines += [head, "|" + "---|" * (2 + len(c.models))]
    for claim in c.claims:
        lines.append(f"| **{esc(claim.id)}**<br>{cell(claim.statement)} | {cell(_reported(ctx, page, claim))} | "
                     + " | ".join(cell(_reproduced(ctx, c, claim, m)) for m in c.models) + " |")
    lines.append("")
    return lines


def _reported(ctx: SiteContext, page: str, claim: Claim) -> str:
    if not claim.reported:
        return "—"
    src = claim.reported["source"]
    where = f", {src['where']}" if src.get("where") else ""
    unit = f" {claim.unit}" if claim.unit else ""
    return f"{claim.reported_text}{unit} <br><small>{claim.reported['model']}; {ctx.paper_link(page, src['paper'])}{where}</small>"


def _reproduced(ctx: SiteContext, c: Circuit, claim: Claim, model_id: str) -> str:
    res = ctx.results(c, model_id)
    if res.state in ("not-run", "unavailable") and not res.results:
        return f"{state_badge('not-run')} `{reproduce_command(c, model_id)}`"
    if not res.results:
        return state_badge(res.state)
    verdict = judge(claim, model_id, res.metrics)
    value = "—" if verdict.value is None else fmt_value(verdict.value)
    stale = " " + state_badge("stale") if res.state == "stale" else ""
    return f"{value} {state_badge(verdict.verdict)}{stale}<br><small>{esc(verdict.criterion)}</small>"


def _results_section(ctx: SiteContext, c: Circuit, model_id: str) -> list[str]:
    res = ctx.results(c, model_id)
    model = ctx.kb.models.get(model_id)
    kind = MODEL_KIND_LABELS.get(model.kind, model.kind) if model else "unknown"
    base = f"results/{model_id}"
    lines = [f"### On {_model_label(ctx, model_id)} {state_badge(res.state)}\n"]
    command = reproduce_command(c, model_id)
    if res.state in ("failed", "unavailable"):
        f = res.failure or {}
        title = "Not run: the model's weights could not be obtained here" if res.state == "unavailable" else "The latest run failed"
        lines.append(f'!!! {"info" if res.state == "unavailable" else "failure"} "{title}"')
        lines.append(f"    {esc(f.get('error', '')).strip()}\n")
        if f.get("log_tail"):
            lines.append('    ```text\n' + "\n".join("    " + ln for ln in f["log_tail"].splitlines()[-20:]) + "\n    ```\n")
        lines.append(f"    Run it where the weights are available: `{command}`\n")
        if res.results:
            lines.append("The results below are from the last successful run.\n")
    if res.state == "stale":
        lines.append('!!! warning "Stale results"\n    ' + "; ".join(res.stale_reasons) + f". Re-run with `{command}`.\n")
    if not res.results:
        if res.state == "not-run":
            lines.append(f"**Not run.** No results have been produced for this model yet. Run: `{command}`\n")
        return lines
    r = res.results
    prov = r.get("provenance", {})
    for note in r.get("notes", []):
        lines.append(f"- {note}")
    if r.get("notes"):
        lines.append("")
    for fig in r.get("figures", []):
        path = f"{base}/{fig['file']}"
        if fig.get("kind") == "interactive":
            lines.append(f'<div class="mikb-plotly" data-src="{esc(path)}" data-caption="{esc(fig["caption"])}"></div>\n')
            lines.append(f"<p class=\"mikb-caption\">{esc(fig['caption'])} (interactive; <a href=\"{esc(path)}\">data</a>)</p>\n")
        else:
            lines.append(f'<figure class="mikb-figure"><img src="{esc(path)}" alt="{esc(fig["caption"])}" loading="lazy">'
                         f"<figcaption>{esc(fig['caption'])} — {esc(model_id)} ({esc(kind)}), seed {esc(prov.get('seed', '?'))}</figcaption></figure>\n")
    metrics = r.get("metrics", {})
    claimed = {cl.metric for cl in c.claims}
    extra = {k: v for k, v in metrics.items() if k not in claimed and not isinstance(v, (list, dict))}
    if extra:
        lines.append('??? info "All scalar metrics of this run"\n')
        lines.append("    | Metric | Value |\n    |---|---|")
        lines += [f"    | `{esc(k)}` | {cell(fmt_value(v))} |" for k, v in sorted(extra.items())]
        lines.append("")
    lines += _provenance(prov, kind, f"{base}/results.json", command, r)
    return lines


def _provenance(prov: dict, kind: str, results_url: str, command: str, r: dict) -> list[str]:
    packages = ", ".join(f"{k} {v}" for k, v in sorted(prov.get("packages", {}).items()))
    rows = [
        ("Model", f"{prov.get('model_id', '?')} ({kind})"),
        ("Weights", prov.get("weights_source") or "not recorded"),
        ("Seed", prov.get("seed")),
        ("Mode", "quick" if r.get("quick") else "full"),
        ("Parameters", f"`{json.dumps(r.get('params', {}), sort_keys=True)}`"),
        ("Script hash", f"`{str(prov.get('script_sha256', ''))[:12]}`"),
        ("Entry hash", f"`{str(prov.get('entry_sha256', ''))[:12]}`"),
        ("Git commit", f"`{str(prov.get('git_commit') or 'unknown')[:12]}`" + (" (uncommitted changes)" if prov.get("git_dirty") else "")),
        ("Versions", packages),
        ("Device", prov.get("device")),
        ("Wall time", f"{prov.get('wall_time_s', 0):.1f} s"
                      + (f", peak memory {prov['peak_rss_mb']:.0f} MiB" if prov.get("peak_rss_mb") else "")),
        ("Finished", prov.get("finished_at")),
    ]
    lines = ['??? abstract "Provenance"\n', "    | | |\n    |---|---|"]
    lines += [f"    | {k} | {cell(v)} |" for k, v in rows]
    lines.append(f"\n    Raw results: [results.json]({results_url}) · log: [log.txt]({results_url.rsplit('/', 1)[0]}/log.txt) · reproduce: `{command}`\n")
    return lines
