"""Every page with tables, at a 390 px phone width, in headless Chromium: nothing is cut off at
the right edge. A table may neither widen the page nor hide columns in a sideways-scrolling
box; it has to wrap (or turn into cards) so a reader on a phone sees every cell.

The pages are found from the built site, not listed by hand: every circuit page, every method
and leaderboard page, the zoo index, the statuses page, and every problem page that carries a
status history, so a new entry is covered the day it lands.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from browser_support import require_browser, serve_directory

pytestmark = pytest.mark.browser
require_browser()

PHONE = {"width": 390, "height": 844}
SLACK_PX = 2

# For each table: how much wider its content is than the box it sits in (a positive number
# means a column is cut off or needs a sideways scroll), and the widest cell's text.
_TABLE_OVERFLOW = """
() => [...document.querySelectorAll('article table')].map(t => {
  const box = t.closest('.md-typeset__table, .md-typeset__scrollwrap') || t.parentElement;
  const scroller = t.closest('.md-typeset__scrollwrap') || box;
  return {
    overflow: Math.max(t.scrollWidth - box.clientWidth, scroller.scrollWidth - scroller.clientWidth,
                       t.getBoundingClientRect().right - window.innerWidth),
    header: (t.querySelector('tr') || t).innerText.slice(0, 80),
  };
}).filter(r => r.overflow > SLACK)
""".replace("SLACK", str(SLACK_PX))


def _pages(site: Path) -> list[str]:
    def url(index: Path) -> str:
        return "/" + index.parent.relative_to(site).as_posix() + "/"

    pages = [url(p) for p in sorted((site / "circuits").glob("*/index.html"))]
    pages += [url(p) for p in sorted((site / "methods").rglob("index.html"))]
    pages += ["/circuits/", "/problems/statuses/"]
    # Problem pages whose status changed carry a status-history table; the ten longest are the
    # hardest to fit (one page per problem would make this test take minutes).
    changed = [p for p in (site / "problems").glob("*/index.html")
               if re.search(r'class="mikb-banner mikb-banner-(?!open)', p.read_text(errors="replace"))]
    pages += [url(p) for p in sorted(changed, key=lambda p: (-p.stat().st_size, p))[:10]]
    return pages


@pytest.fixture(scope="module")
def phone(browser, repo_site: Path):
    with serve_directory(repo_site) as base:
        context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
        yield context.new_page(), base
        context.close()


def test_no_table_is_cut_off_at_phone_width(phone, repo_site: Path) -> None:
    page, base = phone
    pages = _pages(repo_site)
    assert len([p for p in pages if p.startswith("/circuits/") and p != "/circuits/"]) >= 16
    assert any(p.startswith("/problems/") and p != "/problems/statuses/" for p in pages)
    failures = []
    for path in pages:
        page.goto(base + path)
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > PHONE["width"] + SLACK_PX:
            failures.append(f"{path}: the page is {width} px wide")
        failures += [f"{path}: table {t['header']!r} is cut off by {t['overflow']:.0f} px"
                     for t in page.evaluate(_TABLE_OVERFLOW)]
    assert failures == []
