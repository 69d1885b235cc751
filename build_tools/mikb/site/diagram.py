"""Circuit diagrams drawn as plain SVG from the entry's components and edges.

Drawing in Python (rather than shipping a diagram library to the browser) keeps the site
offline-capable and makes the diagram a deterministic function of the YAML: components are
placed in columns by layer (embedding left, unembedding right), stacked within a column,
and edges are coloured by which attention input (q, k, v) they feed.
"""

from __future__ import annotations

from mikb.entries import Circuit, Component
from mikb.site.md import esc

NODE_W, NODE_H = 104, 40
COL_GAP, ROW_GAP, MARGIN = 44, 14, 20
INPUT_COLOURS = {"q": "#1f77b4", "k": "#2ca02c", "v": "#d62728", "": "#7f7f7f"}
ROLE_PALETTE = ["#e8f1fb", "#fdf0e1", "#e9f7ec", "#fbe9ea", "#f1ebf8", "#eef6f7", "#fbf6e3", "#f3f3f3"]


def _column(comp: Component) -> float:
    if comp.kind == "embed":
        return -1
    if comp.kind == "unembed":
        return 10_000
    layer = comp.layer if comp.layer is not None else 0
    return layer + (0.5 if comp.kind == "mlp" else 0)  # an MLP sits after its layer's heads


def circuit_svg(circuit: Circuit) -> str:
    columns = sorted({_column(c) for c in circuit.components})
    col_index = {col: i for i, col in enumerate(columns)}
    stacks: dict[float, list[Component]] = {col: [] for col in columns}
    for comp in circuit.components:
        stacks[_column(comp)].append(comp)
    rows = max(len(v) for v in stacks.values())
    width = MARGIN * 2 + len(columns) * NODE_W + (len(columns) - 1) * COL_GAP
    height = MARGIN * 2 + 22 + rows * NODE_H + (rows - 1) * ROW_GAP + 40
    roles = list(dict.fromkeys(c.role for c in circuit.components))
    fills = {role: ROLE_PALETTE[i % len(ROLE_PALETTE)] for i, role in enumerate(roles)}

    pos: dict[str, tuple[float, float]] = {}
    for col, comps in stacks.items():
        x = MARGIN + col_index[col] * (NODE_W + COL_GAP)
        offset = (rows - len(comps)) * (NODE_H + ROW_GAP) / 2
        for i, comp in enumerate(comps):
            pos[comp.id] = (x, MARGIN + 22 + offset + i * (NODE_H + ROW_GAP))

    parts = [
        f'<svg class="mikb-diagram" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="Diagram of the {esc(circuit.name)} circuit">',
        "<defs>",
        *(
            f'<marker id="arrow-{name or "none"}-{esc(circuit.id)}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
            f'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="{colour}"/></marker>'
            for name, colour in INPUT_COLOURS.items()
        ),
        "</defs>",
    ]
    for col in columns:
        x = MARGIN + col_index[col] * (NODE_W + COL_GAP) + NODE_W / 2
        label = "embed" if col == -1 else "unembed" if col == 10_000 else f"layer {int(col)}" + (" MLP" if col % 1 else "")
        parts.append(f'<text class="mikb-diagram-col" x="{x:.0f}" y="{MARGIN + 8}" text-anchor="middle">{esc(label)}</text>')
    for edge in circuit.edges:
        if edge.source not in pos or edge.target not in pos:
            continue
        (x1, y1), (x2, y2) = pos[edge.source], pos[edge.target]
        colour = INPUT_COLOURS.get(edge.input or "", INPUT_COLOURS[""])
        sx, sy, tx, ty = x1 + NODE_W, y1 + NODE_H / 2, x2, y2 + NODE_H / 2
        if tx <= sx:  # same or earlier column: route below
            sx, sy, tx, ty = x1 + NODE_W / 2, y1 + NODE_H, x2 + NODE_W / 2, y2 + NODE_H
            mid_y = max(sy, ty) + 28
            d = f"M {sx:.1f} {sy:.1f} C {sx:.1f} {mid_y:.1f}, {tx:.1f} {mid_y:.1f}, {tx:.1f} {ty:.1f}"
            lx, ly = (sx + tx) / 2, mid_y - 4
        else:
            dx = (tx - sx) / 2
            d = f"M {sx:.1f} {sy:.1f} C {sx + dx:.1f} {sy:.1f}, {tx - dx:.1f} {ty:.1f}, {tx:.1f} {ty:.1f}"
            lx, ly = (sx + tx) / 2, (sy + ty) / 2 - 4
        title = f"{edge.source} → {edge.target}" + (f" ({edge.input} input)" if edge.input else "")
        if edge.description:
            title += f": {edge.description}"
        parts.append(
            f'<g class="mikb-edge"><title>{esc(title)}</title><path d="{d}" fill="none" stroke="{colour}" '
            f'stroke-width="1.8" marker-end="url(#arrow-{edge.input or "none"}-{esc(circuit.id)})"/>'
            + (f'<text x="{lx:.1f}" y="{ly:.1f}" fill="{colour}" text-anchor="middle" class="mikb-edge-label">{esc(edge.input)}</text>' if edge.input else "")
            + "</g>"
        )
    for comp in circuit.components:
        x, y = pos[comp.id]
        role = comp.role if len(comp.role) <= 17 else comp.role[:16] + "…"
        parts.append(
            f'<g class="mikb-node" data-component="{esc(comp.id)}"><title>{esc(comp.label)}: {esc(comp.role)}'
            f'{" — " + esc(comp.description) if comp.description else ""}</title>'
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{NODE_W}" height="{NODE_H}" rx="7" fill="{fills[comp.role]}" stroke="#555"/>'
            f'<text x="{x + NODE_W / 2:.1f}" y="{y + 17:.1f}" text-anchor="middle" class="mikb-node-label">{esc(comp.label)}</text>'
            f'<text x="{x + NODE_W / 2:.1f}" y="{y + 32:.1f}" text-anchor="middle" class="mikb-node-role">{esc(role)}</text></g>'
        )
    legend_y = height - 14
    legend_x = MARGIN
    for name, colour in INPUT_COLOURS.items():
        text = f"{name} input" if name else "other"
        parts.append(f'<line x1="{legend_x}" y1="{legend_y - 4}" x2="{legend_x + 18}" y2="{legend_y - 4}" stroke="{colour}" stroke-width="2"/>'
                     f'<text x="{legend_x + 22}" y="{legend_y}" class="mikb-legend">{esc(text)}</text>')
        legend_x += 90
    parts.append("</svg>")
    return "".join(parts)
