"""Circuit diagrams: no edge runs through a node it does not touch, parallel edges stay
apart, every role is legible, and nodes link to their component's row on the model page."""

from __future__ import annotations

import html
import re

import pytest
from conftest import REPO

from mikb.loader import load_knowledge_base
from mikb.site.diagram import NODE_H, NODE_W, circuit_svg

CIRCUITS = load_knowledge_base(REPO).circuits


def _points(d: str) -> list[tuple[float, float]]:
    nums = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", d)]
    pts = list(zip(nums[::2], nums[1::2], strict=True))
    if " C " in d:
        (x0, y0), (x1, y1), (x2, y2), (x3, y3) = pts[:4]
        return [((1 - t) ** 3 * x0 + 3 * (1 - t) ** 2 * t * x1 + 3 * (1 - t) * t * t * x2 + t ** 3 * x3,
                 (1 - t) ** 3 * y0 + 3 * (1 - t) ** 2 * t * y1 + 3 * (1 - t) * t * t * y2 + t ** 3 * y3)
                for t in (i / 60 for i in range(61))]
    out = []
    for (a, b), (c, e) in zip(pts, pts[1:], strict=False):
        out += [(a + (c - a) * t, b + (e - b) * t) for t in (i / 40 for i in range(41))]
    return out


@pytest.mark.parametrize("circuit_id", sorted(CIRCUITS))
def test_no_edge_crosses_a_node(circuit_id: str) -> None:
    svg = circuit_svg(CIRCUITS[circuit_id])
    boxes = [(float(x), float(y)) for x, y in re.findall(r'<rect x="([\d.]+)" y="([\d.]+)"', svg)]
    paths = re.findall(r'<path d="(M [^"]+)" fill="none"', svg)
    assert len(paths) == len([e for e in CIRCUITS[circuit_id].edges])
    for d in paths:
        inside = [(x, y) for x, y in _points(d) for bx, by in boxes
                  if bx + 0.5 < x < bx + NODE_W - 0.5 and by + 0.5 < y < by + NODE_H - 0.5]
        assert inside == [], d
    assert len(set(paths)) == len(paths)  # parallel edges (q, k, v into one head) take different routes


def test_roles_are_wrapped_not_cut_and_nodes_link_to_components() -> None:
    circuit = CIRCUITS["induction-heads"]
    svg = html.unescape(circuit_svg(circuit, lambda comp: f"../../models/{comp.model}/#{comp.id}"))
    roles = re.findall(r'class="mikb-node-role">([^<]*)<', svg)
    assert "token and position" in roles and "embeddings" in roles  # two lines, nothing dropped
    assert not any(r.endswith("...") for r in roles)
    assert svg.count('<a href="../../models/attn-only-2l/#') == len(circuit.components)
    assert "prev-token" not in re.sub(r'data-component="[^"]*"|href="[^"]*"', "", svg)  # hover text shows labels, not ids
