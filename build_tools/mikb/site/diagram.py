"""Circuit diagrams drawn as plain SVG from the entry's components and edges.

Drawing in Python (rather than shipping a diagram library to the browser) keeps the site
offline-capable and makes the diagram a deterministic function of the YAML: components are
placed in columns by layer (embedding left, unembedding right), stacked within a column,
and edges are coloured by which attention input (q, k, v) they feed.

Edges never pass through a node they do not touch: an edge between neighbouring columns is a
short curve (nothing stands between them), and every other edge runs in a lane of its own
above the nodes (forward edges) or below them (edges to the same or an earlier column). Each
input enters its node at its own height (q high, k middle, v low), so parallel edges between
the same two nodes stay apart. Nodes link to their component's entry on the model page.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass

from mikb.entries import Circuit, Component, Edge
from mikb.site.md import esc

NODE_W, NODE_H = 128, 50
COL_GAP, ROW_GAP, MARGIN = 56, 16, 20
LANE_GAP, HEADER = 9, 22
INPUT_COLOURS = {"q": "#1f77b4", "k": "#2ca02c", "v": "#d62728", "": "#7f7f7f"}
PORT_HEIGHT = {"q": 0.25, "k": 0.5, "v": 0.75, "": 0.5}
ROLE_PALETTE = ["#e8f1fb", "#fdf0e1", "#e9f7ec", "#fbe9ea", "#f1ebf8", "#eef6f7", "#fbf6e3", "#f3f3f3"]
ROLE_LINE_CHARS = 19


@dataclass(frozen=True)
class _Box:
    x: float
    y: float

    @property
    def right(self) -> float:
        return self.x + NODE_W

    @property
    def centre_x(self) -> float:
        return self.x + NODE_W / 2


def _column(comp: Component) -> float:
    if comp.kind == "embed":
        return -1
    if comp.kind == "unembed":
        return 10_000
    layer = comp.layer if comp.layer is not None else 0
    return layer + (0.5 if comp.kind == "mlp" else 0)  # an MLP sits after its layer's heads


def _column_label(col: float) -> str:
    if col == -1:
        return "embed"
    if col == 10_000:
        return "unembed"
    return f"layer {int(col)}" + (" MLP" if col % 1 else "")


def circuit_svg(circuit: Circuit, component_href: Callable[[Component], str | None] | None = None) -> str:
    """The circuit as an inline SVG; ``component_href`` gives each node's link (or None)."""
    columns = sorted({_column(c) for c in circuit.components})
    col_index = {col: i for i, col in enumerate(columns)}
    stacks: dict[float, list[Component]] = {col: [] for col in columns}
    for comp in circuit.components:
        stacks[_column(comp)].append(comp)
    rows = max(len(v) for v in stacks.values())
    by_id = {c.id: c for c in circuit.components}
    drawable = [e for e in circuit.edges if e.source in by_id and e.target in by_id]
    adjacent = {id(e) for e in drawable if col_index[_column(by_id[e.target])] == col_index[_column(by_id[e.source])] + 1}
    above = [e for e in drawable if id(e) not in adjacent and _column(by_id[e.target]) > _column(by_id[e.source])]
    below = [e for e in drawable if id(e) not in adjacent and e not in above]

    top = MARGIN + HEADER + len(above) * LANE_GAP + (LANE_GAP if above else 0)
    nodes_height = rows * NODE_H + (rows - 1) * ROW_GAP
    width = MARGIN * 2 + len(columns) * NODE_W + (len(columns) - 1) * COL_GAP
    bottom_lanes = len(below) * LANE_GAP + (LANE_GAP if below else 0)
    height = top + nodes_height + bottom_lanes + 44
    roles = list(dict.fromkeys(c.role for c in circuit.components))
    fills = {role: ROLE_PALETTE[i % len(ROLE_PALETTE)] for i, role in enumerate(roles)}

    boxes: dict[str, _Box] = {}
    for col, comps in stacks.items():
        x = MARGIN + col_index[col] * (NODE_W + COL_GAP)
        offset = (rows - len(comps)) * (NODE_H + ROW_GAP) / 2
        for i, comp in enumerate(comps):
            boxes[comp.id] = _Box(x, top + offset + i * (NODE_H + ROW_GAP))

    marker = f"arrow-{esc(circuit.id)}"
    parts = [
        f'<svg class="mikb-diagram" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height:.0f}" '
        f'width="{width}" height="{height:.0f}" style="max-width: 100%; height: auto" role="img" '
        f'aria-label="Diagram of the {esc(circuit.name)} circuit">',
        "<defs>",
        *(
            f'<marker id="{marker}-{name or "none"}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
            f'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="{colour}"/></marker>'
            for name, colour in INPUT_COLOURS.items()
        ),
        "</defs>",
    ]
    for col in columns:
        x = MARGIN + col_index[col] * (NODE_W + COL_GAP) + NODE_W / 2
        parts.append(f'<text class="mikb-diagram-col" x="{x:.0f}" y="{MARGIN + 8}" text-anchor="middle">{esc(_column_label(col))}</text>')

    lane_top = MARGIN + HEADER + LANE_GAP / 2
    lane_bottom = top + nodes_height + LANE_GAP
    for edge in drawable:
        src, dst = boxes[edge.source], boxes[edge.target]
        if id(edge) in adjacent:
            d, label_at = _adjacent_path(src, dst, edge.input or "")
        elif edge in above:
            lane = above.index(edge)
            d, label_at = _lane_path(src, dst, lane_top + lane * LANE_GAP, edge.input or "", lane=lane, up=True)
        else:
            lane = below.index(edge)
            d, label_at = _lane_path(src, dst, lane_bottom + lane * LANE_GAP, edge.input or "", lane=lane, up=False)
        parts.append(_edge_svg(edge, by_id, d, label_at, marker))
    for comp in circuit.components:
        parts.append(_node_svg(comp, boxes[comp.id], fills[comp.role], component_href(comp) if component_href else None))

    legend_y, legend_x = height - 14, MARGIN
    for name, colour in INPUT_COLOURS.items():
        label = f"{name} input" if name else "other"
        parts.append(f'<line x1="{legend_x}" y1="{legend_y - 4:.0f}" x2="{legend_x + 18}" y2="{legend_y - 4:.0f}" '
                     f'stroke="{colour}" stroke-width="2"/>'
                     f'<text x="{legend_x + 22}" y="{legend_y:.0f}" class="mikb-legend">{esc(label)}</text>')
        legend_x += 90
    parts.append("</svg>")
    return "".join(parts)


def _adjacent_path(src: _Box, dst: _Box, input_name: str) -> tuple[str, tuple[float, float]]:
    sx, sy = src.right, src.y + NODE_H / 2
    tx, ty = dst.x, dst.y + NODE_H * PORT_HEIGHT.get(input_name, 0.5)
    dx = (tx - sx) / 2
    d = f"M {sx:.1f} {sy:.1f} C {sx + dx:.1f} {sy:.1f}, {tx - dx:.1f} {ty:.1f}, {tx:.1f} {ty:.1f}"
    return d, ((sx + tx) / 2, (sy + ty) / 2 - 4)


def _lane_path(src: _Box, dst: _Box, lane_y: float, input_name: str, *, lane: int, up: bool) -> tuple[str, tuple[float, float]]:
    """Leave the source on its right into the gap beside its column, climb (or drop) to the
    edge's own lane above (or below) every node, run along it, and come down (or up) in the
    gap before the target into the port of ``input_name``. Only gaps and lanes are crossed,
    never a node; each edge's offset in the gaps keeps parallel edges apart."""
    shift = (lane % 5) * 4 - 8
    sx, sy = src.right, src.y + NODE_H / 2
    exit_x = src.right + COL_GAP / 2 + shift
    port_y = dst.y + NODE_H * PORT_HEIGHT.get(input_name, 0.5)
    approach_x = dst.x - COL_GAP / 2 + {"q": -8, "k": 0, "v": 8}.get(input_name, 4) + (shift if not up else 0)
    d = (f"M {sx:.1f} {sy:.1f} L {exit_x:.1f} {sy:.1f} L {exit_x:.1f} {lane_y:.1f} L {approach_x:.1f} {lane_y:.1f} "
         f"L {approach_x:.1f} {port_y:.1f} L {dst.x:.1f} {port_y:.1f}")
    return d, ((exit_x + approach_x) / 2, lane_y - 2 if up else lane_y + 11)


def _edge_svg(edge: Edge, by_id: dict[str, Component], d: str, label_at: tuple[float, float], marker: str) -> str:
    colour = INPUT_COLOURS.get(edge.input or "", INPUT_COLOURS[""])
    title = f"{by_id[edge.source].label} → {by_id[edge.target].label}" + (f" ({edge.input} input)" if edge.input else "")
    if edge.description:
        title += f": {edge.description}"
    lx, ly = label_at
    label = (f'<text x="{lx:.1f}" y="{ly:.1f}" fill="{colour}" text-anchor="middle" class="mikb-edge-label">'
             f"{esc(edge.input)}</text>") if edge.input else ""
    return (f'<g class="mikb-edge"><title>{esc(title)}</title><path d="{d}" fill="none" stroke="{colour}" '
            f'stroke-width="1.8" marker-end="url(#{marker}-{edge.input or "none"})"/>{label}</g>')


def _node_svg(comp: Component, box: _Box, fill: str, href: str | None) -> str:
    role_lines = textwrap.wrap(comp.role, ROLE_LINE_CHARS)[:2] or [""]
    if len(textwrap.wrap(comp.role, ROLE_LINE_CHARS)) > 2:  # the whole role is in the tooltip and the table
        role_lines[-1] = role_lines[-1][: ROLE_LINE_CHARS - 1] + "…"
    title = f"{comp.label}: {comp.role}" + (f" — {comp.description}" if comp.description else "")
    texts = [f'<text x="{box.centre_x:.1f}" y="{box.y + 17:.1f}" text-anchor="middle" class="mikb-node-label">{esc(comp.label)}</text>']
    for i, line in enumerate(role_lines):
        texts.append(f'<text x="{box.centre_x:.1f}" y="{box.y + 31 + i * 12:.1f}" text-anchor="middle" '
                     f'class="mikb-node-role">{esc(line)}</text>')
    body = (f'<title>{esc(title)}</title><rect x="{box.x:.1f}" y="{box.y:.1f}" width="{NODE_W}" height="{NODE_H}" rx="7" '
            f'fill="{fill}" stroke="#555"/>' + "".join(texts))
    if href:
        body = f'<a href="{esc(href)}">{body}</a>'
    return f'<g class="mikb-node" data-component="{esc(comp.id)}">{body}</g>'
