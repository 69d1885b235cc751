"""End-to-end tests of the built site in headless Chromium (Debian's chromium + Playwright).

The repository's own site is built once per session and served on a free localhost port.
Screenshots of every flow are saved under test-artifacts/screenshots/. Without chromium the
module is skipped on a developer machine, but fails under CI (CI=true).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_support import require_browser, serve_directory
from conftest import REPO

pytestmark = pytest.mark.browser
ARTIFACTS = REPO / "test-artifacts" / "screenshots"
require_browser()

from playwright.sync_api import Page, expect  # noqa: E402


@pytest.fixture(scope="session")
def base_url(repo_site: Path):
    with serve_directory(repo_site) as url:
        yield url


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.errors = errors  # type: ignore[attr-defined]
    yield pg
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"))
    context.close()


def _visible_rows(page: Page) -> list[dict[str, str]]:
    return page.eval_on_selector_all(
        "#mikb-problem-table tbody tr:not([hidden])",
        "rows => rows.map(r => ({category: r.dataset.category, status: r.dataset.status}))")


def test_home_filter_problem_paper_backlink(page: Page, base_url: str) -> None:
    page.goto(base_url + "/")
    expect(page.locator(".mikb-count-card").first).to_contain_text("problems tracked")
    expect(page.locator(".mikb-count-card").first).to_contain_text("still open")
    page.locator(".mikb-count-card", has_text="problems tracked").click()
    page.wait_for_url("**/problems/")
    total = len(_visible_rows(page))
    assert total > 300
    page.select_option("select[data-filter=category]", "polysemanticity-and-superposition")
    by_category = _visible_rows(page)
    assert 0 < len(by_category) < total and {r["category"] for r in by_category} == {"polysemanticity-and-superposition"}
    page.select_option("select[data-filter=status]", "partially-solved")
    both = _visible_rows(page)
    assert 0 < len(both) < len(by_category)
    assert {(r["category"], r["status"]) for r in both} == {("polysemanticity-and-superposition", "partially-solved")}
    assert "category=polysemanticity-and-superposition" in page.url and "status=partially-solved" in page.url
    page.reload()
    assert len(_visible_rows(page)) == len(both)  # the filter survives a reload via the URL
    page.locator("#mikb-problem-table tbody tr:not([hidden]) td:nth-child(2) a").first.click()
    page.wait_for_selector("h2#references")
    problem_url = page.url
    problem_title = page.locator("h1").inner_text()
    page.locator("h2#references + ul a").first.click()
    page.wait_for_selector("h2#cited-by")
    cited_by = page.locator("h2#cited-by ~ ul a").evaluate_all("links => links.map(a => a.href)")
    assert problem_url in cited_by, (problem_title, cited_by[:5])
    assert page.errors == []  # type: ignore[attr-defined]


def test_text_filter_and_search_find_a_problem_by_summary_words(page: Page, base_url: str) -> None:
    page.goto(base_url + "/problems/")
    page.fill("input[data-filter=text]", "othello")
    rows = page.locator("#mikb-problem-table tbody tr:not([hidden])")
    assert 0 < rows.count() < 20
    page.goto(base_url + "/")
    page.locator("label.md-search__icon, .md-search__input").first.click()
    page.fill("input.md-search__input", "trigram")
    page.wait_for_selector(".md-search-result__item", timeout=15000)
    results = page.locator(".md-search-result__item").all_inner_texts()
    assert any("trigram" in r.lower() for r in results), results[:5]


@pytest.mark.parametrize("circuit", ["ioi", "induction-heads"])
def test_circuit_page_diagram_and_figures_without_console_errors(page: Page, base_url: str, circuit: str) -> None:
    page.goto(f"{base_url}/circuits/{circuit}/")
    page.wait_for_load_state("networkidle")
    assert page.locator("svg.mikb-diagram .mikb-node").count() >= 2
    images = page.locator("figure.mikb-figure img")
    assert images.count() >= 1
    for i in range(images.count()):
        img = images.nth(i)
        img.scroll_into_view_if_needed()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img.element_handle(), timeout=10000)
    expect(page.locator("text=Provenance").first).to_be_visible()
    assert page.errors == []  # type: ignore[attr-defined]


def test_graph_explorer_renders_zooms_and_navigates(page: Page, base_url: str) -> None:
    page.goto(base_url + "/explore/")
    page.wait_for_selector("#mikb-graph[data-ready=true]", timeout=20000)
    assert page.locator("#mikb-graph circle").count() > 300
    before = page.get_attribute("svg.mikb-graph-svg", "viewBox")
    page.click("button[data-zoom=in]")
    assert page.get_attribute("svg.mikb-graph-svg", "viewBox") != before
    page.click("button[data-zoom=reset]")
    page.uncheck("input[data-type=problem]")
    assert page.locator("g.mikb-graph-node[data-type=problem]").first.evaluate("g => g.style.display") == "none"
    circuit = page.locator("g.mikb-graph-node[data-type=circuit]").first
    circuit.dispatch_event("mouseenter")  # hover: the node's neighbours stay lit, the rest dims
    assert page.locator("svg.mikb-graph-focused").count() == 1
    assert page.locator("g.mikb-graph-node.mikb-graph-near").count() >= 2
    circuit.dispatch_event("click")  # a click selects: the side panel lists the links
    panel = page.locator(".mikb-graph-panel")
    expect(panel).to_be_visible()
    assert panel.locator("li button").count() >= 1
    assert page.locator(".mikb-graph-swatch").count() == 5  # the colour legend
    page.click("button[data-zoom=in]")
    page.click("button[data-zoom=in]")
    page.click("button[data-zoom=in]")
    page.click("button[data-zoom=in]")
    page.click("button[data-zoom=in]")
    assert page.locator("svg.mikb-graph-zoomed").count() == 1  # names show once zoomed in
    panel.locator("a.mikb-graph-open").click()
    page.wait_for_url("**/circuits/**")
    assert page.errors == []  # type: ignore[attr-defined]


def test_dark_mode_toggle(page: Page, base_url: str) -> None:
    page.goto(base_url + "/")
    scheme = page.get_attribute("body", "data-md-color-scheme")
    page.locator("form[data-md-component=palette] label:visible").first.click()
    page.wait_for_function(f"document.body.getAttribute('data-md-color-scheme') !== '{scheme}'")
    assert page.get_attribute("body", "data-md-color-scheme") in ("slate", "default")
    assert page.get_attribute("body", "data-md-color-scheme") != scheme


def test_phone_width_problem_index(browser, base_url: str) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    pg = context.new_page()
    pg.goto(base_url + "/problems/")
    overflow = pg.evaluate("document.documentElement.scrollWidth")
    pg.select_option("select[data-filter=status]", "solved")
    shown = pg.locator("#mikb-problem-table tbody tr:not([hidden])").count()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / "phone_problems.png"))
    context.close()
    assert overflow <= 390 + 2
    assert shown >= 1


def _column(page: Page, n: int) -> list[str]:
    return page.eval_on_selector_all(f"#mikb-problem-table tbody tr:not([hidden]):not(.mikb-empty) td:nth-child({n})",
                                     "cells => cells.map(c => c.textContent.trim())")


def test_problem_index_sorts_numerically_and_filters_by_range(page: Page, base_url: str) -> None:
    page.goto(base_url + "/problems/")
    numbers = _column(page, 1)
    assert numbers.index("6.7") < numbers.index("6.52") and numbers.index("1.2") < numbers.index("1.10")
    assert "2.25" in numbers and "2.25b" in numbers  # the source's two 2.25s are told apart
    page.click("th button[data-sort=number]")  # ascending (same as the default order)
    page.click("th button[data-sort=number]")  # descending
    assert page.get_attribute("th:has(button[data-sort=number])", "aria-sort") == "descending"
    descending = _column(page, 1)
    assert descending.index("6.52") < descending.index("6.7")
    page.select_option("select[data-filter=difficulty]", "B")
    marks = set(_column(page, 4))
    assert "B" in marks and marks & {"A-B", "B-C", "B-D"} and not marks & {"A", "C", "D", "C-D", "unknown"}
    page.check("input[data-filter=star]")
    starred = page.locator("#mikb-problem-table tbody tr:not([hidden]):not(.mikb-empty)")
    assert 0 < starred.count() and starred.locator(".mikb-star").count() == starred.count()
    page.click(".mikb-filters [data-clear]")
    assert len(_column(page, 1)) > 300 and "difficulty" not in page.url
    page.check("input[data-filter=circuit]")
    with_circuit = _column(page, 2)
    assert 0 < len(with_circuit) < 100
    page.fill("input[data-filter=text]", "zzzz-no-such-problem")
    expect(page.locator("tr.mikb-empty")).to_be_visible()
    page.locator("tr.mikb-empty button[data-clear]").click()
    expect(page.locator("tr.mikb-empty")).to_be_hidden()
    assert page.errors == []  # type: ignore[attr-defined]


def test_not_run_box_keeps_its_text_inside(page: Page, base_url: str) -> None:
    page.goto(base_url + "/circuits/ioi/")
    box = page.locator(".admonition.info", has_text="Not run").first
    expect(box).to_be_visible()
    text = box.inner_text()
    assert "mikb reproduce ioi --model gpt2-small" in text
    assert "`" not in text and "&lt;" not in text and "<circuit>" not in text
    assert box.locator("code", has_text="mikb reproduce ioi --model gpt2-small").count() >= 1
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 392
