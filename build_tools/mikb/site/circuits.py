"""Circuit zoo pages: the index and one page per circuit with diagram, claims and results.

Every number on a circuit page is either *reported* (from the entry, with its citation) or
*measured* (from a results.json written by `mikb reproduce`, shown with its provenance). A
measurement is a reproduction only on a model that learned the behaviour; on a hand-built
model it is a method check (mikb.evidence), and the page says which everywhere it shows one.
Where a model was not run, the page says "not run" and gives the command; it never fills in.
"""

from __future__ import annotations

import json
import re

from mikb.entries import Circuit, Claim
from mikb.evidence import LABELS, METHOD_CHECK, evidence_of
from mikb.graph import component_node, node_id
from mikb.reproduce.claims import judge
from mikb.results_files import contained_file, publishable_files, valid_figures
from mikb.site.context import SiteContext
from mikb.site.diagram import circuit_svg
from mikb.site.md import (
    admonition,
    cell,
    component_anchor,
    esc,
    fmt_value,
    front_matter,
    rel_url,
    state_badge,
    status_badge,
)
from mikb.site.methods import circuit_methods_section
from mikb.site.safe_html import block, code, inline, pre
from mikb.site.writer import SiteWriter

INDEX = "circuits/index.md"
MODEL_KIND_LABELS = {"pretrained": "pretrained", "trained-here": "trained here", "planted": "planted",
                     "compiled": "compiled", "random": "random weights", "paper": "the paper's own, weights not available"}


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
            # Only plain files that stay inside the results folder are published (a crafted
            # results.json must not copy files of the build machine into the site).
            for path in publishable_files(circuit, model_id, res.results):
                out.copy(f"circuits/{circuit.id}/results/{model_id}/{path.name}", path)


def _component_url(page: str, comp) -> str:
    """Where a diagram node links: the component's row on its model's page."""
    node = component_node(comp.model, comp.location, comp.kind, comp.id)
    return f"{rel_url(page, f'models/{comp.model}.md')}#{component_anchor(node)}"


def _evidence(ctx: SiteContext, model_id: str) -> str:
    model = ctx.kb.models.get(model_id)
    return evidence_of(model.kind if model else None)


def _model_label(ctx: SiteContext, model_id: str) -> str:
    model = ctx.kb.models.get(model_id)
    if not model:
        return model_id
    return f"{model.name} ({MODEL_KIND_LABELS.get(model.kind, model.kind)})"  # plain text: escape where used


def _index(ctx: SiteContext, circuits: list[Circuit]) -> str:
    lines = [front_matter(title="Circuit zoo"), "# Circuit zoo\n",
             "Each circuit is a YAML entry with a script beside it. Reported numbers come from the papers (with "
             "citations); measured numbers come from running the script, on the model named beside them. A run is a "
             "**reproduction** only on a model that learned the behaviour (pretrained, or trained here by the script); "
             "on a model whose weights were set by hand it is a **method check**: it shows the script finds the "
             "circuit that was built in, and says nothing about the paper's model.\n",
             "| Circuit | Task | Models | Runs |", "|---|---|---|---|"]
    for c in circuits:
        states = []
        for model_id in c.models:
            res = ctx.results(c, model_id)
            states.append(f"{esc(model_id)}: {state_badge(res.state, _evidence(ctx, model_id))}")
        models = ", ".join(ctx.link(INDEX, node_id("model", m), _model_label(ctx, m)) for m in c.models)
        lines.append(f"| [{esc(c.name)}]({c.id}/index.md) | {inline(c.task)} | {cell(models)} | {cell('<br>'.join(states))} |")
    return "\n".join(lines) + "\n"


def _circuit(ctx: SiteContext, c: Circuit) -> str:
    page = circuit_page(c)
    me = node_id("circuit", c.id)
    lines = [
        front_matter(title=c.name, tags=c.tags, hide=["navigation"], mikb_source=ctx.kb.rel(c.doc.path)),
        f"# {esc(c.name)}\n",
        f"**Task.** {inline(c.task)}\n",
        "**Models.** " + ", ".join(ctx.link(page, node_id("model", m), _model_label(ctx, m)) for m in c.models) + "\n",
        block(c.behaviour) + "\n",
        "## Diagram\n",
        '<div class="mikb-diagram-wrap">' + circuit_svg(c, lambda comp: _component_url(page, comp)) + "</div>\n",
        "## Components\n",
        "| Component | Model | Role | Notes |", "|---|---|---|---|",
    ]
    for comp in c.components:
        lines.append(f"| {code(comp.label)} | {esc(comp.model)} | {inline(comp.role)} | {inline(comp.description or '')} |")
    lines.append("")
    if c.edges:
        lines += ["## Edges\n", "| From | To | Input | What flows |", "|---|---|---|---|"]
        for e in c.edges:
            src, dst = c.component(e.source), c.component(e.target)
            lines.append(f"| {code(src.label if src else e.source)} | {code(dst.label if dst else e.target)} | "
                         f"{esc(e.input or '—')} | {inline(e.description or '')} |")
        lines.append("")
    lines += _claims_table(ctx, page, c)
    lines += circuit_methods_section(ctx, page, c)
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
        lines.append(f"- {ctx.paper_link(page, key)}" + (f" — <em>{esc(paper.title)}</em>" if paper else ""))
    lines.append("")
    if c.notes:
        lines.append(admonition("note", "Notes", block(c.notes)))
    lines.append(ctx.edit_link(ctx.kb.rel(c.doc.path)) + "\n")
    return "\n".join(lines)


def _claims_table(ctx: SiteContext, page: str, c: Circuit) -> list[str]:
    if not c.claims:
        return []
    lines = ["## Claims: reported and measured\n",
             "Reported values are the papers' own numbers on the model the paper studied (named under each value). "
             "Measured values come from `mikb reproduce` runs on the model in the column header: a *reproduction* on a "
             "model that learned the behaviour, a *method check* on a hand-built one. The verdict compares a value with "
             "the paper's (same model) or with the entry's expectation for that model; a metric the run did not record "
             "is *missing*, which counts against the run.\n"]
    head = "| Claim | Reported | " + " | ".join(
        f"{LABELS[_evidence(ctx, m)].capitalize()} on {esc(m)}" for m in c.models) + " |"
    lines += [head, "|" + "---|" * (2 + len(c.models))]
    for claim in c.claims:
        lines.append(f"| **{esc(claim.id)}**<br>{inline(claim.statement)} | {cell(_reported(ctx, page, claim))} | "
                     + " | ".join(cell(_reproduced(ctx, c, claim, m)) for m in c.models) + " |")
    lines.append("")
    return lines


def _reported(ctx: SiteContext, page: str, claim: Claim) -> str:
    if not claim.reported:
        return "—"
    src = claim.reported["source"]
    where = f", {esc(src['where'])}" if src.get("where") else ""
    unit = f" {esc(claim.unit)}" if claim.unit else ""
    model_id = claim.reported["model"]
    model = ctx.kb.models.get(model_id)
    measured_on = ctx.link(page, node_id("model", model_id), model.name) if model else esc(model_id)
    return (f"{esc(claim.reported_text)}{unit} <br><small>on {measured_on}; "
            f"{ctx.paper_link(page, src['paper'])}{where}</small>")


def _reproduced(ctx: SiteContext, c: Circuit, claim: Claim, model_id: str) -> str:
    res = ctx.results(c, model_id)
    if res.state in ("not-run", "unavailable") and not res.results:
        return f"{state_badge('not-run')} {code(reproduce_command(c, model_id))}"
    if not res.results:
        return state_badge(res.state)
    verdict = judge(claim, model_id, res.metrics)
    unit = f" {esc(claim.unit)}" if claim.unit and isinstance(verdict.value, (int, float)) else ""
    value = "—" if verdict.value is None else esc(fmt_value(verdict.value)) + unit
    stale = " " + state_badge("stale") if res.state == "stale" else ""
    return f"{value} {state_badge(verdict.verdict)}{stale}<br><small>{esc(verdict.criterion)}</small>"


def _results_section(ctx: SiteContext, c: Circuit, model_id: str) -> list[str]:
    """Everything here but the section heading comes from results files, which a pull
    request can craft: every value is escaped or rendered through the sanitiser."""
    res = ctx.results(c, model_id)
    model = ctx.kb.models.get(model_id)
    kind = MODEL_KIND_LABELS.get(model.kind, model.kind) if model else "unknown"
    base = f"results/{model_id}"
    evidence = _evidence(ctx, model_id)
    lines = [f"### {LABELS[evidence].capitalize()} on {esc(_model_label(ctx, model_id))}\n",
             f"State: {state_badge(res.state, evidence)}\n"]
    if evidence == METHOD_CHECK:
        lines.append("*A method check: this model's weights were set by hand so that the circuit is known. The run "
                     "shows whether the script recovers it; it is no evidence about the paper's model.*\n")
    command = reproduce_command(c, model_id)
    if res.state in ("failed", "unavailable"):
        lines.append(_failure_box(res.state, res.failure or {}, command))
        if res.results:
            lines.append("The results below are from the last successful run.\n")
    if res.state == "stale":
        reasons = "; ".join(res.stale_reasons)
        lines.append(admonition("warning", "Stale results",
                                f"<p>{esc(reasons)}. Re-run with {code(command)}.</p>"))
    if not res.results:
        if res.state == "not-run":
            lines.append(f"**Not run.** No results have been produced for this model yet. Run: {code(command)}\n")
        return lines
    r = res.results
    prov = r.get("provenance", {}) if isinstance(r.get("provenance"), dict) else {}
    notes = [n for n in r.get("notes", []) if isinstance(n, str)]
    # A script's notes are plain text, not Markdown: "2*pi*k" must not turn into emphasis.
    lines += [f"- {esc(note)}" for note in notes]
    if notes:
        lines.append("")
    for fig in valid_figures(r, res.folder):
        path = f"{base}/{fig['file']}"
        caption = str(fig.get("caption", ""))
        if fig.get("kind") == "interactive":
            lines.append(f'<div class="mikb-plotly" data-src="{esc(path)}" data-caption="{esc(caption)}"></div>\n')
            lines.append(f'<p class="mikb-caption">{esc(caption)} (interactive; <a href="{esc(path)}">data</a>)</p>\n')
        else:
            size = svg_size(res.folder / fig["file"])
            dims = f' width="{size[0]}" height="{size[1]}"' if size else ""
            lines.append(f'<figure class="mikb-figure"><img src="{esc(path)}" alt="{esc(caption)}"{dims} loading="lazy">'
                         f"<figcaption>{esc(caption)} — {esc(model_id)} ({esc(kind)}), seed {esc(prov.get('seed', '?'))}</figcaption></figure>\n")
    metrics = r.get("metrics", {}) if isinstance(r.get("metrics"), dict) else {}
    lines += _edge_graph(res.folder, base, model_id, metrics)
    lines += _found_vs_truth(metrics)
    claimed = {cl.metric for cl in c.claims}
    extra = {k: v for k, v in metrics.items() if k not in claimed and not isinstance(v, (list, dict))}
    if extra:
        lines.append('??? info "All scalar metrics of this run"\n')
        lines.append("    | Metric | Value |\n    |---|---|")
        lines += [f"    | {code(k)} | {esc(fmt_value(v))} |" for k, v in sorted(extra.items(), key=lambda kv: str(kv[0]))]
        lines.append("")
    lines += _provenance(prov, kind, f"{base}/results.json", command, r)
    return lines


EDGE_SCORES_FILE = "edge_scores.json"


def _edge_graph(folder, base: str, model_id: str, metrics: dict) -> list[str]:
    """The interactive graph of the run's edge scores (edges.js draws it from the published
    edge_scores.json), with node roles taken from the components the script discovered."""
    if folder is None or contained_file(folder, EDGE_SCORES_FILE) is None:
        return []
    roles: dict[str, str] = {}
    found = metrics.get(FOUND_METRIC)
    if isinstance(found, dict):
        for role, heads in sorted(found.items()):
            for head in heads if isinstance(heads, list) else []:
                match = re.fullmatch(r"(\d+)\.(\d+)", str(head))
                if match:
                    roles.setdefault(f"a{match.group(1)}.h{match.group(2)}", str(role))
    src = f"{base}/{EDGE_SCORES_FILE}"
    return [f'<div class="mikb-edges" data-src="{esc(src)}" data-state="edges-{esc(model_id)}" '
            f'data-roles="{esc(json.dumps(roles, sort_keys=True))}">Interactive edge scores need JavaScript; '
            f'<a href="{esc(src)}">the scores as JSON</a>.</div>\n',
            f'<p class="mikb-caption">Edge scores of this run (MIB edge-score format), drawn interactively: width grows '
            f'with |score|, blue above zero, red below, dashed where the edge is outside the circuit; the threshold is kept '
            f'in the address, so the view can be shared (<a href="{esc(src)}">data</a>).</p>\n']


def svg_size(path) -> tuple[int, int] | None:
    """Width and height of an SVG figure in CSS pixels, read from its root element (matplotlib
    writes them in points), so the page reserves the figure's space before it loads."""
    try:
        head = path.read_bytes()[:4096].decode("utf-8", "replace")
    except OSError:
        return None
    match = re.search(r'<svg[^>]*\swidth="([\d.]+)(pt|px)?"[^>]*\sheight="([\d.]+)(pt|px)?"', head)
    if not match:
        return None
    scale = 4 / 3 if match.group(2) == "pt" else 1.0
    return round(float(match.group(1)) * scale), round(float(match.group(3)) * scale)


FOUND_METRIC, TRUTH_METRIC = "discovered_components", "ground_truth_components"


def _found_vs_truth(metrics: dict) -> list[str]:
    """What the script found, role by role, beside the ground truth built into the model:
    hits, misses and false positives (the planted or compiled model's answer key)."""
    found, truth = metrics.get(FOUND_METRIC), metrics.get(TRUTH_METRIC)
    if not isinstance(found, dict):
        return []
    truth = truth if isinstance(truth, dict) else None
    title = "Components the script found" + (" and the ground truth" if truth is not None else "")
    lines = [f"#### {title}\n"]
    if truth is None:
        lines += ["| Role | Found |", "|---|---|"]
        lines += [f"| {esc(role)} | {esc(', '.join(map(str, _as_list(found[role]))) or '—')} |" for role in sorted(found, key=str)]
        return [*lines, ""]
    lines += ["| Role | Found | Ground truth | Hits | Misses | False positives |", "|---|---|---|---|---|---|"]
    totals = [0, 0, 0]
    for role in sorted(set(found) | set(truth), key=str):
        got, want = set(map(str, _as_list(found.get(role)))), set(map(str, _as_list(truth.get(role))))
        hits, misses, extra = got & want, want - got, got - want
        totals = [totals[0] + len(hits), totals[1] + len(misses), totals[2] + len(extra)]
        lines.append(f"| {esc(role)} | {_heads(got)} | {_heads(want)} | {len(hits)} | {_heads(misses) if misses else '0'} | "
                     f"{_heads(extra) if extra else '0'} |")
    lines.append(f"| **all roles** | | | **{totals[0]}** | **{totals[1]}** | **{totals[2]}** |")
    return [*lines, ""]


def _as_list(value: object) -> list:
    return value if isinstance(value, list) else [] if value is None else [value]


def _heads(items: set[str]) -> str:
    return esc(", ".join(sorted(items, key=_location_order))) or "—"


def _location_order(label: str) -> tuple:
    parts = label.split(".")
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts)


def _failure_box(state: str, failure: dict, command: str) -> str:
    """The "not run" / "failed" box, as raw HTML so no error text or log can leave it."""
    unavailable = state == "unavailable"
    title = "Not run: the model's weights could not be obtained here" if unavailable else "The latest run failed"
    body = [f"<p>{inline(str(failure.get('error', '')).strip())}</p>"]  # sanitised Markdown: commands show as code
    if failure.get("log_tail"):
        body.append(pre("\n".join(str(failure["log_tail"]).splitlines()[-20:])))
    where = "where the weights are available" if unavailable else "again"
    body.append(f"<p>Run it {where}: {code(command)}</p>")
    return admonition("info" if unavailable else "failure", title, "\n".join(body))


def _provenance(prov: dict, kind: str, results_url: str, command: str, r: dict) -> list[str]:
    packages = prov.get("packages", {})
    versions = ", ".join(f"{k} {v}" for k, v in sorted(packages.items())) if isinstance(packages, dict) else ""
    wall, peak = prov.get("wall_time_s"), prov.get("peak_rss_mb")
    timing = f"{wall:.1f} s" if isinstance(wall, (int, float)) else "not recorded"
    if isinstance(peak, (int, float)) and peak:
        timing += f", peak memory {peak:.0f} MiB"
    rows = [
        ("Model", esc(f"{prov.get('model_id', '?')} ({kind})")),
        ("Weights", esc(prov.get("weights_source") or "not recorded")),
        ("Seed", esc(prov.get("seed"))),
        ("Mode", "quick" if r.get("quick") else "full"),
        ("Parameters", code(json.dumps(r.get("params", {}), sort_keys=True, default=str))),
        ("Script hash", code(str(prov.get("script_sha256", ""))[:12])),
        ("Entry hash (models, reproduction)", code(str(prov.get("entry_run_sha256", ""))[:12])),
        ("Git commit", code(str(prov.get("git_commit") or "unknown")[:12]) + (" (uncommitted changes)" if prov.get("git_dirty") else "")),
        ("Versions", esc(versions)),
        ("Device", esc(prov.get("device"))),
        ("Wall time", esc(timing)),
        ("Finished", esc(prov.get("finished_at"))),
    ]
    (first_key, first_value), *rest = rows  # the first row heads the table: no empty header row
    lines = ['??? abstract "Provenance"\n', f"    | {first_key} | {cell(first_value)} |\n    |---|---|"]
    lines += [f"    | {k} | {cell(v)} |" for k, v in rest]
    log_url = results_url.rsplit("/", 1)[0] + "/log.txt"
    lines.append(f"\n    Raw results: [results.json]({results_url}) · log: [log.txt]({log_url}) · reproduce: {code(command)}\n")
    return lines
