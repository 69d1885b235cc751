"""The home page, the tags page and the graph explorer page."""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict

import networkx as nx

from mikb.site.context import SiteContext
from mikb.site.md import STATUS_LABELS, esc, front_matter, status_badge
from mikb.site.problems import TAG_PATTERN
from mikb.site.safe_html import code, inline
from mikb.site.writer import SiteWriter

EXPLORE = "explore.md"
RECENT_ON_HOME = 12
GRAPH_LAYOUT = "data/graph-layout.json"


def write_home(ctx: SiteContext, out: SiteWriter, intro: str) -> None:
    kb = ctx.kb
    counts = Counter(p.status for p in kb.problems.values())
    changes = sorted(
        ((ch.date, p, ch) for p in kb.problems.values() for ch in p.status_history[1:]),
        key=lambda item: (item[0], item[1].id), reverse=True,
    )
    lines = [front_matter(title="Home", hide=["navigation"]), intro.strip() + "\n",
             '<div class="mikb-counts">',
             f'<a class="mikb-count-card" href="problems/"><b>{len(kb.problems)}</b><span>problems tracked</span>'
             f'<small>{counts.get("open", 0)} still open</small></a>',
             f'<a class="mikb-count-card" href="circuits/"><b>{len(kb.circuits)}</b><span>circuits</span></a>',
             f'<a class="mikb-count-card" href="papers/"><b>{len(kb.papers)}</b><span>papers and posts</span></a>',
             f'<a class="mikb-count-card" href="models/"><b>{len(kb.models)}</b><span>models</span></a>',
             "</div>\n", "## Problems by status\n", "| Status | Problems |", "|---|---|"]
    for status in STATUS_LABELS:
        lines.append(f"| {status_badge(status)} | [{counts.get(status, 0)}](problems/index.md?status={status}) |")
    if len(kb.lists) > 1:
        lines += ["", "## Problem lists\n", "| List | Problems | Moved | Still open |", "|---|---|---|---|"]
        for source_list in kb.lists.values():
            members = [p for p in kb.problems.values() if kb.list_of(p) == source_list.slug]
            moved = sum(1 for p in members if len(p.status_history) > 1)
            still_open = sum(1 for p in members if p.status == "open")
            lines.append(f"| [{esc(source_list.name)}](problems/index.md?list={esc(source_list.slug)}) | {len(members)} "
                         f"| {moved} | {still_open} |")
    lines += ["", "## Recently changed\n",
              "The newest status changes, whichever problem they belong to. All of them, per list and category, are "
              "under [recently addressed](problems/recent.md); [solved problems](problems/index.md?status=solved); "
              "subscribe to the [Atom feed of status changes](feed.xml).\n",
              "| Date | Problem | Change |", "|---|---|---|"]
    for date, problem, change in changes[:RECENT_ON_HOME]:
        number = ctx.problem_number(problem)
        label = f"{number} {problem.title}" if number else problem.title
        lines.append(f"| {esc(date)} | [{esc(label)}](problems/{problem.id}.md) | {status_badge(change.status)} "
                     f"{inline(change.note or '')} |")
    lines += ["", "## Circuit zoo\n"]
    for c in sorted(kb.circuits.values(), key=lambda c: c.name):
        lines.append(f"- [{esc(c.name)}](circuits/{c.id}/index.md) — {inline(c.task)}")
    lines.append("")
    out.text("index.md", "\n".join(lines))


def write_tags(ctx: SiteContext, out: SiteWriter) -> None:
    tagged: dict[str, list[str]] = defaultdict(list)
    for p in ctx.kb.sorted_problems():
        for t in p.tags:
            tagged[t].append(f"[{esc(ctx.problem_number(p) or p.id)} {esc(p.title)}](problems/{p.id}.md)")
    for c in ctx.kb.circuits.values():
        for t in c.tags:
            tagged[t].append(f"[{esc(c.name)}](circuits/{c.id}/index.md) (circuit)")
    for p in ctx.kb.papers.values():
        for t in p.tags:
            tagged[t].append(f"[{esc(p.citation)}: {esc(p.title)}](papers/{p.key}.md) (paper)")
    # A tag becomes a heading anchor ({ #tag } is attr_list syntax): only well-formed tags do.
    tagged = {t: items for t, items in tagged.items() if TAG_PATTERN.fullmatch(t)}
    lines = [front_matter(title="Tags"), "# Tags\n",
             " ".join(f"[{code(t)} ({len(v)})](#{t})" for t, v in sorted(tagged.items())) + "\n"]
    for tag, items in sorted(tagged.items()):
        # One paragraph per tag, entries separated by dots: a bullet per entry made this page
        # tens of thousands of pixels tall.
        lines.append(f'## {tag} {{ #{tag} }}\n')
        lines.append(" · ".join(items) + "\n")
    out.text("tags.md", "\n".join(lines))


def _layout_positions(g: nx.MultiDiGraph, previous: dict | None) -> tuple[str, dict]:
    """Seeded spring layout, reused from the previous build when the graph's shape is the same
    (the layout is the slowest step of page generation and depends only on the shape)."""
    shape = hashlib.sha256(json.dumps([sorted(g.nodes), sorted((s, t) for s, t in g.edges())]).encode()).hexdigest()
    if previous and previous.get("shape") == shape:
        return shape, {n["id"]: (n["x"] / 1000, n["y"] / 1000) for n in previous["nodes"]}
    simple = nx.Graph()
    simple.add_nodes_from(g.nodes)
    simple.add_edges_from((s, t) for s, t in g.edges())
    pos = nx.spring_layout(simple, seed=7, k=1.6 / max(1, len(simple)) ** 0.5, iterations=60) if len(simple) else {}
    return shape, pos


def graph_layout(ctx: SiteContext, previous: dict | None = None) -> dict:
    """Positions computed here so the browser only draws and pans."""
    g = ctx.graph
    shape, pos = _layout_positions(g, previous)
    nodes = []
    for n in sorted(g.nodes):
        data = g.nodes[n]
        page = ctx.page_for(n)
        x, y = pos.get(n, (0.0, 0.0))
        nodes.append({"id": n, "type": data["type"], "label": data.get("label", n), "x": round(float(x) * 1000, 1),
                      "y": round(float(y) * 1000, 1), "url": page, "status": data.get("status")})
    edges = [{"s": s, "t": t, "type": d["type"]} for s, t, d in g.edges(data=True)]
    edges.sort(key=lambda e: (e["s"], e["t"], e["type"]))
    return {"shape": shape, "nodes": nodes, "edges": edges}


def write_explore(ctx: SiteContext, out: SiteWriter) -> None:
    previous = None
    existing = out.root / GRAPH_LAYOUT
    if existing.is_file():
        try:
            previous = json.loads(existing.read_text())
        except ValueError:
            previous = None
    out.text(GRAPH_LAYOUT, json.dumps(graph_layout(ctx, previous), separators=(",", ":"), sort_keys=True) + "\n")
    types = ["problem", "circuit", "paper", "model", "component"]
    toggles = "".join(f'<label><input type="checkbox" data-type="{t}" checked> {t}s</label>' for t in types)
    out.text(EXPLORE, front_matter(title="Graph explorer", hide=["toc"]) + (
        "# Graph explorer\n\n"
        "The knowledge graph of mikb: problems, circuits, papers, models and components, and the links between them. "
        "Drag to pan, scroll or use the buttons to zoom (names appear when zoomed in), hover to see a node's "
        "neighbours, click or tap a node to list them in the side panel and open its page from there. "
        "The same graph is downloadable as [JSON](data/graph.json) and [GraphML](data/graph.graphml).\n\n"
        f'<div class="mikb-graph-controls">{toggles}'
        '<input type="search" class="mikb-graph-search" placeholder="Highlight nodes by name" aria-label="Highlight nodes">'
        '<button type="button" data-zoom="in" aria-label="Zoom in">+</button>'
        '<button type="button" data-zoom="out" aria-label="Zoom out">−</button>'
        '<button type="button" data-zoom="reset">Reset</button></div>\n'
        '<div class="mikb-graph-wrap">'
        f'<div id="mikb-graph" class="mikb-graph" data-src="{GRAPH_LAYOUT}" data-root="./"></div>'
        '<aside class="mikb-graph-panel" aria-live="polite" hidden></aside></div>\n'
        '<p class="mikb-graph-info" aria-live="polite"></p>\n'
    ))
