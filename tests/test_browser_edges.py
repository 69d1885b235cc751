"""The interactive edge-score graph on circuit pages, in headless Chromium: drawn from the run's
edge_scores.json, pruned by a threshold that travels in the URL, and a hovered node names the
role the script found for it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from browser_support import require_browser, serve_directory
from conftest import REPO

pytestmark = pytest.mark.browser
require_browser()

from playwright.sync_api import expect  # noqa: E402

RUN = REPO / "circuits_zoo/ioi/results/planted-ioi"


@pytest.fixture
def page(browser, repo_site: Path):
    with serve_directory(repo_site) as base:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.base, pg.errors = base, errors  # type: ignore[attr-defined]
        yield pg
        context.close()


def _shown(page) -> int:
    """Edges a reader actually sees (rendered with a size), not merely unmarked ones."""
    return page.eval_on_selector_all(".mikb-edges path.mikb-edges-edge",
                                     "ps => ps.filter(p => getComputedStyle(p).display !== 'none').length")


def test_edge_graph_prunes_by_threshold_keeps_it_in_the_url_and_names_roles(page) -> None:
    scores = json.loads((RUN / "edge_scores.json").read_text())["edges"]
    nonzero = sorted((abs(v["score"]) for v in scores.values() if isinstance(v["score"], (int, float)) and v["score"] != 0),
                     reverse=True)  # undefined scores are null
    found = json.loads((RUN / "results.json").read_text())["metrics"]["discovered_components"]
    mover = found["name mover head"][0]

    page.goto(page.base + "/circuits/ioi/")
    box = page.locator(".mikb-edges").first
    expect(box.locator("svg")).to_be_visible()
    assert _shown(page) == min(30, len(nonzero))  # default view: the 30 strongest edges
    assert box.get_attribute("data-shown") == str(_shown(page))

    threshold = nonzero[4]  # keep the five strongest
    box.locator("input[type=range]").evaluate(
        "(el, t) => { el.value = t; el.dispatchEvent(new Event('input')); }", threshold)
    kept = sum(1 for s in nonzero if s >= float(box.locator("input[type=range]").input_value()))
    assert _shown(page) == kept and 1 <= kept <= 6
    assert "edges-planted-ioi=" in page.url

    page.goto(page.url)  # the shared address restores the view
    page.reload()
    expect(page.locator(".mikb-edges svg").first).to_be_visible()
    assert _shown(page) == kept

    layer, head = mover.split(".")
    node = page.locator(f".mikb-edges [data-node='a{layer}.h{head}']").first
    node.hover()
    expect(page.locator(".mikb-edges-info").first).to_contain_text("name mover head")
    assert page.errors == []  # type: ignore[attr-defined]


def test_interactive_plot_ticks_are_plain_numbers(page) -> None:
    """The grokking page's plotly figure names no exponent format; the site must not let plotly
    print SI prefixes ("100μ" for a loss of 0.0001)."""
    page.goto(page.base + "/circuits/modular-addition-grokking/")
    plot = page.locator(".mikb-plotly").first
    expect(plot.locator(".main-svg").first).to_be_attached(timeout=30_000)
    formats = plot.evaluate("el => [el._fullLayout.xaxis.exponentformat, el._fullLayout.yaxis.exponentformat]")
    assert formats == ["none", "power"]
    ticks = plot.evaluate("el => [...el.querySelectorAll('.ytick text')].map(t => t.textContent)")
    assert ticks and not any("μ" in t or t.endswith(("m", "k")) for t in ticks)
    assert page.errors == []  # type: ignore[attr-defined]
