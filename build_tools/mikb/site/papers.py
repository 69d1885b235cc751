"""Paper pages (everything that cites the paper) and model pages (circuits in the model)."""

from __future__ import annotations

from collections import defaultdict
from urllib.parse import quote

from mikb.entries import Paper
from mikb.graph import incoming, node_id
from mikb.site.context import SiteContext
from mikb.site.md import cell, component_anchor, esc, front_matter, status_badge
from mikb.site.safe_html import block, code, inline, link
from mikb.site.writer import SiteWriter

PAPERS_INDEX = "papers/index.md"
MODELS_INDEX = "models/index.md"


def write_paper_pages(ctx: SiteContext, out: SiteWriter) -> None:
    papers = sorted(ctx.kb.papers.values(), key=lambda p: (-p.year, p.key))
    lines = [front_matter(title="Papers"), "# Papers and posts\n",
             f"{len(papers)} works that the problems and circuits rest on. Each page lists what cites it.\n",
             "| Year | Work | Authors | Venue | Cited by |", "|---|---|---|---|---|"]
    for p in papers:
        count = len(incoming(ctx.graph, node_id("paper", p.key), "cites"))
        lines.append(f"| {esc(p.year)} | [{esc(p.title)}]({p.key}.md) | {esc(p.short_authors)} | {esc(p.venue or '')} | {count} |")
    out.text(PAPERS_INDEX, "\n".join(lines) + "\n")
    for p in papers:
        out.text(f"papers/{p.key}.md", _paper(ctx, p))


def _paper(ctx: SiteContext, p: Paper) -> str:
    page = f"papers/{p.key}.md"
    me = node_id("paper", p.key)
    links = [link(p.url, "link")]
    if p.arxiv:
        links.append(link(f"https://arxiv.org/abs/{quote(p.arxiv, safe='./')}", f"arXiv:{p.arxiv}"))
    if p.doi:
        links.append(link(f"https://doi.org/{quote(p.doi, safe='./')}", f"doi:{p.doi}"))
    doc, _ = ctx.kb.paper_docs[p.key]
    lines = [
        front_matter(title=p.title, tags=p.tags, mikb_source=doc.display),
        f"# {esc(p.title)}\n",
        f"**{esc(', '.join(p.authors))}** · {esc(p.year)}" + (f" · {esc(p.venue)}" if p.venue else "") + f" · {esc(p.kind)}\n",
        " · ".join(links) + "\n",
    ]
    if p.summary:
        lines.append(block(p.summary) + "\n")
    citing = incoming(ctx.graph, me, "cites")
    by_type: dict[str, list[str]] = defaultdict(list)
    for node in citing:
        by_type[ctx.graph.nodes[node]["type"]].append(node)
    lines.append("## Cited by\n")
    if not citing:
        lines.append("Nothing in mikb cites this work yet.\n")
    for kind, title in (("problem", "Problems"), ("circuit", "Circuits"), ("model", "Models")):
        nodes = by_type.get(kind, [])
        if not nodes:
            continue
        lines.append(f"### {title}\n")
        for node in nodes:
            extra = f" {status_badge(ctx.graph.nodes[node]['status'])}" if kind == "problem" else ""
            lines.append(f"- {ctx.link(page, node)}{extra}")
        lines.append("")
    evidence = [pr for pr in ctx.kb.problems.values()
                if any(ch.evidence == p.key and ch.status != "open" for ch in pr.status_history)]
    if evidence:
        lines.append("### Evidence for status changes\n")
        for pr in sorted(evidence, key=lambda x: x.sort_key):
            change = next(ch for ch in pr.status_history if ch.evidence == p.key and ch.status != "open")
            lines.append(f"- {ctx.link(page, node_id('problem', pr.id))}: {status_badge(change.status)} on {change.date}"
                         + (f" — {inline(change.note)}" if change.note else ""))
        lines.append("")
    lines.append(f"Key: {code(p.key)}\n")
    lines.append(ctx.edit_link(doc.display) + "\n")
    return "\n".join(lines)


def _shape(model) -> str:
    return f"{esc(model.n_layers)} × {esc(model.n_heads)}" if model.n_layers and model.n_heads else "—"


def write_model_pages(ctx: SiteContext, out: SiteWriter) -> None:
    models = sorted(ctx.kb.models.values(), key=lambda m: m.id)
    lines = [front_matter(title="Models"), "# Models\n",
             "Models that circuits are stated or reproduced on. *Kind* says where weights come from: "
             "**pretrained** (downloaded from a hub by the user), **trained here** (by a script in this repo), "
             "**planted** (weights set by hand so the circuit is known by construction) or **random**.\n",
             "| Model | Kind | Layers × heads | Circuits |", "|---|---|---|---|"]
    for m in models:
        circuits = incoming(ctx.graph, node_id("model", m.id), "runs-on")
        lines.append(f"| [{esc(m.name)}]({m.id}.md) | {esc(m.kind)} | {_shape(m)} | {len(circuits)} |")
    out.text(MODELS_INDEX, "\n".join(lines) + "\n")
    for m in models:
        page = f"models/{m.id}.md"
        me = node_id("model", m.id)
        body = [front_matter(title=m.name), f"# {esc(m.name)}\n",
                f"- Kind: **{esc(m.kind)}**", (f"- Shape: {esc(m.n_layers)} layers × {esc(m.n_heads)} heads"
                 + (f", d_model {esc(m.d_model)}" if m.d_model else "") + (f", vocabulary {esc(m.d_vocab)}" if m.d_vocab else ""))
                if m.n_layers else "- Shape: not stated here (a paper's own model)",
                f"- Weights: {inline(m.weights) if m.weights else 'not stated'}", ""]
        if m.description:
            body.append(block(m.description) + "\n")
        body.append("## Circuits in this model\n")
        circuits = incoming(ctx.graph, me, "runs-on", "circuit")
        body += [f"- {ctx.link(page, c)}" for c in circuits] or ["None yet."]
        comps = incoming(ctx.graph, me, "part-of", "component")
        if comps:
            body += ["", "## Components named by circuits\n", "| Component | Roles |", "|---|---|"]
            for comp in comps:
                roles = ctx.graph.nodes[comp].get("roles", {})
                text = "; ".join(f"{inline(r)} ({ctx.link(page, node_id('circuit', cid), cid)})" for cid, r in sorted(roles.items()))
                anchor = esc(component_anchor(comp))
                body.append(f"| <span id=\"{anchor}\"></span>{code(ctx.graph.nodes[comp]['label'])} | {cell(text)} |")
        if m.references:
            body += ["", "## References\n"] + [f"- {ctx.paper_link(page, k)}" for k in m.references]
        doc, _ = ctx.kb.model_docs[m.id]
        body += ["", ctx.edit_link(doc.display), ""]
        out.text(page, "\n".join(body))
