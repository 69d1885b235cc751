"""Check every internal link and anchor of a built site.

MkDocs validates Markdown links, but not links inside raw HTML (the problem tables, figures,
graph data), nor anchors into generated pages; this walks the rendered HTML instead, so what
it checks is exactly what a reader clicks.
"""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlsplit

SKIP_SCHEMES = ("http", "https", "mailto", "javascript", "data", "tel")


@dataclass(frozen=True)
class BrokenLink:
    page: str
    target: str
    reason: str

    def format(self) -> str:
        return f"{self.page}: {self.target}: {self.reason}"


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("id", "name") if tag == "a" else ("id",):
            if values.get(name):
                self.ids.add(values[name])
        attr = {"a": "href", "link": "href", "img": "src", "script": "src", "iframe": "src"}.get(tag)
        if attr and values.get(attr):
            if tag == "link" and values.get("rel") in ("canonical", "alternate"):
                return
            self.links.append(values[attr])


def _parse(path: Path) -> _Collector:
    collector = _Collector()
    collector.feed(path.read_text(encoding="utf-8", errors="replace"))
    return collector


def check_site(site: Path) -> tuple[int, list[BrokenLink]]:
    """Return (number of internal links checked, broken ones)."""
    pages = {p: _parse(p) for p in site.rglob("*.html")}
    broken: list[BrokenLink] = []
    checked = 0
    for page, parsed in pages.items():
        if page.name == "404.html":  # served at any URL; its links are absolute to site_url
            continue
        for link in parsed.links:
            scheme = urlsplit(link).scheme
            if scheme in SKIP_SCHEMES or link.startswith("//"):
                continue
            checked += 1
            url, fragment = urldefrag(link)
            path_part = unquote(urlsplit(url).path)
            if not path_part:
                target = page
            elif path_part.startswith("/"):
                target = site / path_part.lstrip("/")
            else:
                target = (page.parent / path_part).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(BrokenLink(str(page.relative_to(site)), link, "target does not exist"))
                continue
            if fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else _parse(target).ids
                if fragment not in ids:
                    broken.append(BrokenLink(str(page.relative_to(site)), link, f"no anchor '#{fragment}'"))
    return checked, sorted(broken, key=lambda b: (b.page, b.target))
